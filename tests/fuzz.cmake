# Fuzz targets (tests/fuzz/, FUZZING.md). Each target is one LLVMFuzzerTestOneInput:
#  - always built as fuzz_replay_<target>, a plain program (any compiler, no libFuzzer) that
#    CTest runs over tests/corpus/<target>/: the seeds and every regression input, replayed in
#    every build, including the ASan+UBSan one;
#  - with PTHIO_FUZZ=ON (clang only; tests/fuzz/run.sh configures a separate build that way)
#    also built as fuzz_<target>, linked with libFuzzer.
option(PTHIO_FUZZ "Build the libFuzzer targets (needs clang)" OFF)

set(PTHIO_FUZZ_TARGETS zip_reader unpickler load safetensors roundtrip)
set(PTHIO_FUZZ_DIR ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)
set(PTHIO_CORPUS_DIR ${CMAKE_CURRENT_SOURCE_DIR}/corpus)

if(PTHIO_FUZZ AND NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "PTHIO_FUZZ needs clang (libFuzzer); configure with -DCMAKE_CXX_COMPILER=clang++")
endif()

foreach(target IN LISTS PTHIO_FUZZ_TARGETS)
  add_executable(fuzz_replay_${target} ${PTHIO_FUZZ_DIR}/${target}.cpp ${PTHIO_FUZZ_DIR}/replay_main.cpp)
  target_link_libraries(fuzz_replay_${target} PRIVATE pthio_cli_core pthio)
  target_compile_options(fuzz_replay_${target} PRIVATE ${PTHIO_WARNINGS})
  add_test(NAME "fuzz: the ${target} corpus replays without a crash, leak or sanitizer report"
           COMMAND fuzz_replay_${target} ${PTHIO_CORPUS_DIR}/${target})
  set_tests_properties("fuzz: the ${target} corpus replays without a crash, leak or sanitizer report"
                       PROPERTIES TIMEOUT 120 LABELS fuzz)

  if(PTHIO_FUZZ)
    add_executable(fuzz_${target} ${PTHIO_FUZZ_DIR}/${target}.cpp)
    target_link_libraries(fuzz_${target} PRIVATE pthio_cli_core pthio)
    target_compile_options(fuzz_${target} PRIVATE ${PTHIO_WARNINGS} -fsanitize=fuzzer)
    target_link_options(fuzz_${target} PRIVATE -fsanitize=fuzzer)
  endif()
endforeach()
