# The README's code, compiled and run in every build that has tests: each program under
# examples/readme/ holds the README's C++ and C snippets verbatim, runs them on fixtures PyTorch
# wrote, and checks what they print. tests/readme_check.py then checks that every code block of
# README.md tagged `<!-- snippet: examples/readme/FILE -->` is literally in FILE, and runs the
# command lines of the blocks tagged `<!-- command-output -->`, comparing their output.
# Included from tests/examples.cmake.

set(_readme_dir ${PROJECT_SOURCE_DIR}/examples/readme)
set(_readme_fixtures ${PROJECT_SOURCE_DIR}/fixtures)
set(_readme_scratch ${CMAKE_CURRENT_BINARY_DIR}/readme)

foreach(example inspect lazy load_engine load_c dlpack save resume convert whole_model dcp pt2 scan shard)
  if(EXISTS ${_readme_dir}/${example}.c)
    add_executable(readme_${example} ${_readme_dir}/${example}.c)
    set_target_properties(readme_${example} PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
  else()
    add_executable(readme_${example} ${_readme_dir}/${example}.cpp)
  endif()
  target_link_libraries(readme_${example} PRIVATE pthio)
  if(example MATCHES "^(inspect|load_engine|save)$")  # they include <pthio/eigen.hpp>
    target_link_libraries(readme_${example} PRIVATE pthio_eigen)
  endif()
  target_compile_options(readme_${example} PRIVATE ${PTHIO_WARNINGS})
endforeach()

# Each test passes only when the program prints its final "ok" line (after its own checks) and
# the output holds what the README says it prints. PASS_REGULAR_EXPRESSION makes CTest ignore the
# exit status, so the "ok" line, printed last and only on success, stands for it.
function(_readme_test name regex)
  add_test(NAME "readme: ${name}" COMMAND ${ARGN})
  set_tests_properties("readme: ${name}" PROPERTIES PASS_REGULAR_EXPRESSION "${regex}")
endfunction()

_readme_test("inspect lists fixtures/t2/ckpt_adam.pth"
  "zip checkpoint\nmodel_state_dict.0.weight float32 \\[32, 10\\] cpu\n.*optimizer_state_dict.state.5.exp_avg_sq float32 \\[3\\] cpu\nepoch 3\n0.weight is 32x10, .*readme_inspect: ok\n"
  readme_inspect ${_readme_fixtures}/t2/ckpt_adam.pth)
_readme_test("dcp exports the model of fixtures/dcp/fsdp2 (2 ranks, FSDP2) to one safetensors file"
  "model.safetensors: 4 tensors\n0.weight \\[8, 5\\]\n.*readme_dcp: ok\n"
  readme_dcp ${_readme_fixtures}/dcp/fsdp2 ${_readme_scratch}/dcp)
_readme_test("pt2 lists the weights and the signature of fixtures/t2/export_dynamic.pt2 (torch.export, dynamic batch)"
  "fc1.weight float32 \\[12, 6\\]\n.*bn.num_batches_tracked int64 \\[\\]\ninputs: x float32 s77 6\noutputs: linear_1 float32 s77 4\nreadme_pt2: ok\n"
  readme_pt2 ${_readme_fixtures}/t2/export_dynamic.pt2)
_readme_test("lazy lists fixtures/t2/ckpt_adam.pth without its data, then reads it one tensor at a time"
  "read 11196 bytes one tensor at a time\nreadme_lazy: ok\n"
  readme_lazy ${_readme_fixtures}/t2/ckpt_adam.pth)
_readme_test("load_engine runs nn.Linear(4, 3) from fixtures/t2/linear.pth with Eigen"
  "y\\[0\\] = .*y\\[2\\] = .*readme_load_engine: ok\n"
  readme_load_engine ${_readme_fixtures}/t2/linear.pth)
_readme_test("load_c walks fixtures/t2/linear.pth through the C API"
  "^weight float32 ndim 2 numel 12\nbias float32 ndim 1 numel 3\nweight\\[1\\]\\[2\\] = [-0-9.e]+\nmissing file: io\nreadme_load_c: ok\n$"
  readme_load_c ${_readme_fixtures}/t2/linear.pth)
_readme_test("dlpack exports a tensor that outlives its checkpoint and imports it back"
  "weight\\[1, 2\\] through DLPack = .*readme_dlpack: ok\n"
  readme_dlpack ${_readme_fixtures}/t2/linear.pth)
_readme_test("save writes a state dict and a checkpoint that load back"
  "model.pth: 2 tensors, fc.bias\\[2\\] = 1\nckpt.pth: epoch 7, scale is a parameter: 1\nreadme_save: ok\n"
  readme_save ${_readme_scratch}/save)
_readme_test("resume loads model and Adam state, saves, and shows strict and non-strict loading"
  "resuming at epoch 4, lr 0.001, exp_avg of parameter 0 \\[32, 10\\]\nError\\(s\\) in loading state_dict for Module:\n\tsize mismatch for 4.weight: copying a param with shape torch.Size\\(\\[3, 16\\]\\) from checkpoint, the shape in current model is torch.Size\\(\\[5, 16\\]\\).\n\tsize mismatch for 4.bias: .*\n4 loaded; missing: head.weight head.bias; unexpected: backbone.4.weight backbone.4.bias\nreadme_resume: ok\n"
  readme_resume ${_readme_fixtures}/t2/ckpt_adam.pth ${_readme_scratch}/resume)
_readme_test("convert writes the model of fixtures/t2/ckpt_adam.pth as safetensors, identical on reading"
  "safetensors: 6 tensors\nreadme_convert: ok\n"
  readme_convert ${_readme_fixtures}/t2/ckpt_adam.pth ${_readme_scratch}/convert)
_readme_test("whole_model exports the model and the ema of fixtures/t2/whole_ckpt.pt as state dicts"
  "model.pth: 21 tensors, model.0.conv.weight float32\nema.pth: 21 tensors, model.0.conv.weight float16\nreadme_whole_model: ok\n"
  readme_whole_model ${_readme_fixtures}/t2/whole_ckpt.pt ${_readme_scratch}/whole_model)
_readme_test("scan refuses fixtures/t2/pyvalues.pth in strict mode and loads fixtures/t2/linear.pth"
  "refused: .*pyvalues.pth: pyvalues/data.pkl: offset [0-9]+: pickle: global argparse.Namespace is not allowed in weights-only mode\n.*without strict: \"namespace\" is an inert argparse.Namespace\nreadme_scan: ok\n"
  readme_scan ${_readme_fixtures}/t2/linear.pth ${_readme_fixtures}/t2/pyvalues.pth)

# Any Python runs the consistency check (cmake/pthio_python.cmake found them).
if(TARGET pthio_cli)
  pthio_python_test(NAME "readme: every tagged code block is in its examples/readme file, every command prints what the README shows"
                    COMMAND ${PROJECT_SOURCE_DIR}/tests/readme_check.py
                            --readme ${PROJECT_SOURCE_DIR}/README.md --root ${PROJECT_SOURCE_DIR}
                            --pthio $<TARGET_FILE:pthio_cli> --scratch ${_readme_scratch}/commands)
endif()

# What save.cpp wrote, loaded by real PyTorch (each torch cmake/pthio_python.cmake found).
pthio_python_test(NAME "readme: torch loads what examples/readme/save.cpp wrote"
                  NEEDS torch NAMES_VAR _readme_torch_tests
                  PROPERTIES FIXTURES_REQUIRED readme_save
                             PASS_REGULAR_EXPRESSION "loads both files as the README says"
                  COMMAND ${_readme_dir}/save_in_torch.py ${_readme_scratch}/save)
if(_readme_torch_tests)
  set_tests_properties("readme: save writes a state dict and a checkpoint that load back"
                       PROPERTIES FIXTURES_SETUP readme_save)
endif()
_readme_test("shard loads fixtures/t2/linear.pth as 2 tensor-parallel ranks, each reading its rows"
  "rank 0: weight \\[2, 4\\] bias \\[2\\]\nrank 1: weight \\[1, 4\\] bias \\[1\\]\nreadme_shard: ok\n"
  readme_shard ${_readme_fixtures}/t2/linear.pth 2)
