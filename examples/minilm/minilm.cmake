# example_minilm (included from the top CMakeLists.txt when the examples are built).
#
# Eigen's matrix products are the encoder's time: they run on every core through OpenMP where the
# compiler has it, and use the vector units of the machine that builds them (-march=native) unless
# PTHIO_MINILM_NATIVE is OFF (for a binary that must run on older CPUs).
# A binary built so is tied to CPUs with the builder's instruction set: OFF for one to carry
# elsewhere.
option(PTHIO_MINILM_NATIVE "Build example_minilm for this machine's CPU (-march=native)" ON)
find_package(nlohmann_json 3 QUIET)  # config.json
if(NOT nlohmann_json_FOUND)
  message(STATUS "example_minilm not built: it reads config.json with nlohmann-json, not found")
  return()
endif()
find_package(OpenMP COMPONENTS CXX)

add_executable(example_minilm
  examples/minilm/main.cpp
  examples/minilm/bert.cpp
  examples/minilm/tokenizer.cpp)
target_link_libraries(example_minilm PRIVATE pthio pthio_eigen nlohmann_json::nlohmann_json)
target_compile_options(example_minilm PRIVATE ${PTHIO_WARNINGS})
if(OpenMP_CXX_FOUND)
  target_link_libraries(example_minilm PRIVATE OpenMP::OpenMP_CXX)
else()
  # One thread: the `#pragma omp` lines are then unknown pragmas, on purpose.
  target_compile_options(example_minilm PRIVATE -Wno-unknown-pragmas)
endif()
if(PTHIO_MINILM_NATIVE)
  include(CheckCXXCompilerFlag)
  check_cxx_compiler_flag(-march=native PTHIO_HAVE_MARCH_NATIVE)
  if(PTHIO_HAVE_MARCH_NATIVE)
    target_compile_options(example_minilm PRIVATE -march=native)
    # GCC 12's AVX-512 headers initialise a placeholder vector from itself (_mm512_undefined_ps),
    # which -Wuninitialized and -Wmaybe-uninitialized report inside Eigen's kernels on a CPU with
    # AVX-512 (GCC bug 105593): not this code's, and an error under PTHIO_WERROR.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      target_compile_options(example_minilm PRIVATE -Wno-maybe-uninitialized -Wno-uninitialized)
    endif()
  endif()
endif()
