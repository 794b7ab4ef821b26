# Embedding pthio: the C API from C11 (against both library variants), and consumer projects built
# against an installed prefix (find_package and pkg-config) and through add_subdirectory.
# Included at the end of tests/CMakeLists.txt.

foreach(variant static shared)
  set(target pthio_c_api_test_${variant})
  add_executable(${target} test_c_api.c)
  set_target_properties(${target} PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
  if(variant STREQUAL "static")
    target_link_libraries(${target} PRIVATE pthio)
  else()
    target_link_libraries(${target} PRIVATE pthio_shared)
  endif()
  target_compile_options(${target} PRIVATE ${PTHIO_WARNINGS})
  # The package tests install the build tree: every installed target must be built.
  add_dependencies(pthio_tests ${target})
  set(scratch ${CMAKE_CURRENT_BINARY_DIR}/c_api_${variant})
  file(MAKE_DIRECTORY ${scratch})
  foreach(case_and_title
      "load|loads fixtures/t1/linear.pth eagerly and mapped, with its shapes, strides and values"
      "find|finds tensors by key and reports absent keys and indices as not found"
      "save|builds a state dict from copied, borrowed and strided buffers, saves it and loads it back"
      "errors|reports missing files, corrupt files and bad arguments with a status and a message"
      "threads|keeps the last error message per thread"
      "dlpack|exports a tensor as DLPack that outlives the checkpoint"
      "whole_model|takes the state dicts of a model saved whole and saves them as .pth, safetensors and a DCP folder"
      "slice|reads slices of a lazily opened and an eager checkpoint into tensors the caller frees")
    string(REPLACE "|" ";" parts "${case_and_title}")
    list(GET parts 0 case)
    list(GET parts 1 title)
    add_test(NAME "c api (${variant}): ${title}"
             COMMAND ${target} ${case} ${PROJECT_SOURCE_DIR}/fixtures ${scratch})
  endforeach()
endforeach()

# libpthio.so exports its API only: hidden visibility, PTHIO_API (include/pthio/export.hpp).
if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  set(_pthio_exports_test "package: libpthio.so exports no pthio::detail symbol outside the allowlist")
  add_test(NAME ${_pthio_exports_test}
           COMMAND ${CMAKE_COMMAND} -DLIBRARY=$<TARGET_FILE:pthio_shared> -DNM=${CMAKE_NM}
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/consumer/check_exports.cmake)
  set_tests_properties(${_pthio_exports_test} PROPERTIES LABELS package
                       SKIP_REGULAR_EXPRESSION "PTHIO_TEST_SKIPPED:")
endif()

# The consumer projects re-run CMake and a compiler: give them the same tools and, in sanitizer
# builds, the same instrumentation.
set(_pthio_consumer_flags "")
if(PTHIO_SANITIZE)
  set(_pthio_consumer_flags "-fsanitize=address,undefined -fno-omit-frame-pointer")
endif()
set(_pthio_consumer_args
  -DPTHIO_SOURCE_DIR=${PROJECT_SOURCE_DIR}
  -DPTHIO_BUILD_DIR=${PROJECT_BINARY_DIR}
  -DCONSUMER_SOURCE_DIR=${CMAKE_CURRENT_SOURCE_DIR}/consumer
  -DFIXTURE=${PROJECT_SOURCE_DIR}/fixtures/t1/linear.pth
  -DGENERATOR=${CMAKE_GENERATOR}
  -DC_COMPILER=${CMAKE_C_COMPILER}
  -DCXX_COMPILER=${CMAKE_CXX_COMPILER}
  -DCXX_LAUNCHER=${CMAKE_CXX_COMPILER_LAUNCHER}
  -DEXTRA_FLAGS=${_pthio_consumer_flags}
  -DCONFIG=$<CONFIG>
  -DVERSION=${PROJECT_VERSION}
  -DLIBDIR=${CMAKE_INSTALL_LIBDIR}
  -DBINDIR=${CMAKE_INSTALL_BINDIR}
  -DINCLUDEDIR=${CMAKE_INSTALL_INCLUDEDIR}
  -DCMAKEDIR=${PTHIO_CMAKE_DIR}
  -DPKGCONFIGDIR=${PTHIO_PKGCONFIG_DIR}
  -DWITH_TOOL=$<TARGET_EXISTS:pthio_cli>)
if(PTHIO_INSTALL)
  add_test(NAME "package: an installed pthio is found by find_package and pkg-config, static and shared"
           COMMAND ${CMAKE_COMMAND} -DMODE=install -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/consumer_install
                   ${_pthio_consumer_args} -P ${CMAKE_CURRENT_SOURCE_DIR}/consumer/run.cmake)
endif()
if(PTHIO_INSTALL)
  # Which of CUDA's static libraries pthio.pc names for `pkg-config --static` (cmake/pthio_package.cmake).
  set(_pthio_static_cudart OFF)
  set(_pthio_static_cublas OFF)
  if(PTHIO_HAVE_CUDA AND TARGET CUDA::cudart_static)
    set(_pthio_static_cudart ON)
  endif()
  if(PTHIO_HAVE_CUDA AND TARGET CUDA::cublas_static AND TARGET CUDA::cublasLt_static AND TARGET CUDA::culibos)
    set(_pthio_static_cublas ON)
  endif()
  add_test(NAME "package: C and C++ programs link the installed libpthio.a with pkg-config --static"
           COMMAND ${CMAKE_COMMAND} -DMODE=static -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/consumer_static
                   -DSTATIC_CUDART=${_pthio_static_cudart} -DSTATIC_CUBLAS=${_pthio_static_cublas}
                   ${_pthio_consumer_args} -P ${CMAKE_CURRENT_SOURCE_DIR}/consumer/run.cmake)
  set_tests_properties("package: C and C++ programs link the installed libpthio.a with pkg-config --static"
                       PROPERTIES LABELS package TIMEOUT 600)
endif()
add_test(NAME "package: pthio builds and tests itself without the command (PTHIO_BUILD_TOOLS=OFF)"
         COMMAND ${CMAKE_COMMAND} -DMODE=tools_off -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/consumer_tools_off
                 ${_pthio_consumer_args} -P ${CMAKE_CURRENT_SOURCE_DIR}/consumer/run.cmake)
set_tests_properties("package: pthio builds and tests itself without the command (PTHIO_BUILD_TOOLS=OFF)"
                     PROPERTIES LABELS package TIMEOUT 2400)
add_test(NAME "package: a consumer project builds pthio through add_subdirectory, tests and tools off"
         COMMAND ${CMAKE_COMMAND} -DMODE=subdirectory -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/consumer_subdirectory
                 ${_pthio_consumer_args} -P ${CMAKE_CURRENT_SOURCE_DIR}/consumer/run.cmake)
set_tests_properties(
  "package: a consumer project builds pthio through add_subdirectory, tests and tools off"
  PROPERTIES LABELS package TIMEOUT 1500)
if(PTHIO_INSTALL)
  set_tests_properties(
    "package: an installed pthio is found by find_package and pkg-config, static and shared"
    PROPERTIES LABELS package TIMEOUT 600)
endif()
