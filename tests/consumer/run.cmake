# Drives the consumer project (this folder) the way a user would; run by CTest with cmake -P.
#   MODE=install       cmake --install the pthio build tree into WORK_DIR/prefix, check the files,
#                      build the consumer with find_package(pthio), then a C program with
#                      pkg-config against libpthio.so, and run everything.
#   MODE=static        install, keep only libpthio.a, link the C and the C++ consumer with
#                      `pkg-config --static --libs pthio` as given, run them, and check that they
#                      need neither libpthio.so nor, where the toolkit has static libraries
#                      (STATIC_CUDART, STATIC_CUBLAS), CUDA's shared runtime or cuBLAS.
#   MODE=subdirectory  build the consumer with add_subdirectory(PTHIO_SOURCE_DIR) and run it.
#   MODE=tools_off     configure and build pthio itself with PTHIO_BUILD_TOOLS=OFF and tests on,
#                      check that CTest registers no test that runs the command, run the zip suite.
# Everything is written under WORK_DIR, which is emptied first.
cmake_minimum_required(VERSION 3.22)

foreach(var MODE WORK_DIR PTHIO_SOURCE_DIR PTHIO_BUILD_DIR CONSUMER_SOURCE_DIR FIXTURE GENERATOR
            C_COMPILER CXX_COMPILER VERSION LIBDIR BINDIR INCLUDEDIR CMAKEDIR PKGCONFIGDIR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run.cmake: ${var} is not set")
  endif()
endforeach()

function(run)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "WORKING_DIRECTORY;OUTPUT_VARIABLE" "COMMAND")
  if(NOT arg_WORKING_DIRECTORY)
    set(arg_WORKING_DIRECTORY ${WORK_DIR})
  endif()
  string(REPLACE ";" " " shown "${arg_COMMAND}")
  message(STATUS "$ ${shown}")
  execute_process(COMMAND ${arg_COMMAND} WORKING_DIRECTORY ${arg_WORKING_DIRECTORY}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${shown}\n${out}\n${err}")
  endif()
  if(arg_OUTPUT_VARIABLE)
    string(STRIP "${out}" out)
    set(${arg_OUTPUT_VARIABLE} "${out}" PARENT_SCOPE)
  endif()
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(build ${WORK_DIR}/build)
set(out_dir ${WORK_DIR}/out)
file(MAKE_DIRECTORY ${out_dir})

set(configure ${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${build} -G ${GENERATOR}
    -DCMAKE_C_COMPILER=${C_COMPILER} -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
if(CXX_LAUNCHER)
  list(APPEND configure -DCMAKE_CXX_COMPILER_LAUNCHER=${CXX_LAUNCHER})
endif()
if(EXTRA_FLAGS)
  list(APPEND configure "-DCMAKE_C_FLAGS=${EXTRA_FLAGS}" "-DCMAKE_CXX_FLAGS=${EXTRA_FLAGS}"
       "-DCMAKE_EXE_LINKER_FLAGS=${EXTRA_FLAGS}" "-DCMAKE_SHARED_LINKER_FLAGS=${EXTRA_FLAGS}")
endif()
set(build_cmd ${CMAKE_COMMAND} --build ${build})
if(CONFIG)
  list(APPEND build_cmd --config ${CONFIG})
endif()

find_program(PKG_CONFIG NAMES pkg-config pkgconf)
if(NOT PKG_CONFIG AND MODE MATCHES "^(install|static)$")
  message(FATAL_ERROR "pkg-config not found")
endif()

# Installs the build under test into ${WORK_DIR}/prefix (sets `prefix`).
macro(install_pthio)
  set(prefix ${WORK_DIR}/prefix)
  set(install_cmd ${CMAKE_COMMAND} --install ${PTHIO_BUILD_DIR} --prefix ${prefix})
  if(CONFIG)
    list(APPEND install_cmd --config ${CONFIG})
  endif()
  run(COMMAND ${install_cmd})
endmacro()

if(MODE STREQUAL "install")
  install_pthio()
  foreach(f ${INCLUDEDIR}/pthio/pthio.h ${INCLUDEDIR}/pthio/pthio.hpp ${INCLUDEDIR}/pthio/tensor.hpp
            ${INCLUDEDIR}/pthio/dlpack.hpp ${INCLUDEDIR}/pthio/eigen.hpp
            ${LIBDIR}/libpthio.a ${LIBDIR}/libpthio.so ${LIBDIR}/libpthio.so.${VERSION}
            ${CMAKEDIR}/pthioConfig.cmake ${CMAKEDIR}/pthioConfigVersion.cmake
            ${CMAKEDIR}/pthioTargets.cmake ${PKGCONFIGDIR}/pthio.pc)
    if(NOT EXISTS ${prefix}/${f})
      message(FATAL_ERROR "not installed: ${prefix}/${f}")
    endif()
  endforeach()
  # The installed command works from the prefix.
  if(WITH_TOOL)
    if(NOT EXISTS ${prefix}/${BINDIR}/pthio)
      message(FATAL_ERROR "not installed: ${prefix}/${BINDIR}/pthio")
    endif()
    run(COMMAND ${prefix}/${BINDIR}/pthio ls ${FIXTURE} OUTPUT_VARIABLE ls_out)
    if(NOT ls_out MATCHES "weight +float32 +\\[3, 4\\]")
      message(FATAL_ERROR "unexpected output of the installed pthio ls:\n${ls_out}")
    endif()
    # Its manual page and bash completion come with it.
    foreach(f share/man/man1/pthio.1 share/bash-completion/completions/pthio)
      if(NOT EXISTS ${prefix}/${f})
        message(FATAL_ERROR "not installed: ${prefix}/${f}")
      endif()
    endforeach()
  endif()

  run(COMMAND ${configure} -DPTHIO_CONSUMER_MODE=package -DCMAKE_PREFIX_PATH=${prefix})
  run(COMMAND ${build_cmd})
  foreach(exe consumer_cpp consumer_cpp_shared consumer_c consumer_c_static)
    run(COMMAND ${build}/${exe} ${FIXTURE} ${out_dir})
  endforeach()

  # pkg-config: compile the C consumer with what pthio.pc says, against libpthio.so (the static
  # library: MODE=static).
  set(ENV{PKG_CONFIG_PATH} ${prefix}/${PKGCONFIGDIR})
  run(COMMAND ${PKG_CONFIG} --modversion pthio OUTPUT_VARIABLE pc_version)
  if(NOT pc_version STREQUAL VERSION)
    message(FATAL_ERROR "pkg-config --modversion pthio: ${pc_version}, expected ${VERSION}")
  endif()
  run(COMMAND ${PKG_CONFIG} --variable=libdir pthio OUTPUT_VARIABLE pc_libdir)
  get_filename_component(pc_libdir "${pc_libdir}" REALPATH)
  get_filename_component(real_libdir "${prefix}/${LIBDIR}" REALPATH)
  if(NOT pc_libdir STREQUAL real_libdir)
    message(FATAL_ERROR "pthio.pc's libdir is ${pc_libdir}, not ${real_libdir}")
  endif()
  run(COMMAND ${PKG_CONFIG} --cflags pthio OUTPUT_VARIABLE pc_cflags)
  run(COMMAND ${PKG_CONFIG} --libs pthio OUTPUT_VARIABLE pc_libs)
  run(COMMAND ${PKG_CONFIG} --static --libs pthio OUTPUT_VARIABLE pc_static_libs)
  # A C program pays for neither Eigen nor a crypto library.
  if("${pc_cflags} ${pc_static_libs}" MATCHES "eigen|crypt|ssl")
    message(FATAL_ERROR "pthio.pc asks for Eigen or crypto: ${pc_cflags} ${pc_static_libs}")
  endif()
  separate_arguments(pc_cflags UNIX_COMMAND "${pc_cflags}")
  separate_arguments(pc_libs UNIX_COMMAND "${pc_libs}")
  separate_arguments(extra UNIX_COMMAND "${EXTRA_FLAGS}")
  run(COMMAND ${C_COMPILER} -std=c11 ${extra} ${pc_cflags} ${CONSUMER_SOURCE_DIR}/main.c
              -o ${WORK_DIR}/pc_shared ${pc_libs} -Wl,-rpath,${prefix}/${LIBDIR})
  run(COMMAND ${WORK_DIR}/pc_shared ${FIXTURE} ${out_dir})
elseif(MODE STREQUAL "static")
  install_pthio()
  # A static-only install: `-lpthio` can only mean libpthio.a.
  file(GLOB shared_libs ${prefix}/${LIBDIR}/libpthio.so*)
  file(REMOVE ${shared_libs})
  set(ENV{PKG_CONFIG_PATH} ${prefix}/${PKGCONFIGDIR})
  run(COMMAND ${PKG_CONFIG} --cflags pthio OUTPUT_VARIABLE pc_cflags)
  run(COMMAND ${PKG_CONFIG} --static --libs pthio OUTPUT_VARIABLE pc_static_libs)
  message(STATUS "pkg-config --static --libs pthio: ${pc_static_libs}")
  separate_arguments(pc_cflags UNIX_COMMAND "${pc_cflags}")
  separate_arguments(pc_static_libs UNIX_COMMAND "${pc_static_libs}")
  separate_arguments(extra UNIX_COMMAND "${EXTRA_FLAGS}")
  find_program(READELF NAMES readelf)
  if(NOT READELF)
    message(FATAL_ERROR "readelf not found")
  endif()
  foreach(lang c cpp)
    if(lang STREQUAL "c")
      set(compile ${C_COMPILER} -std=c11)
      set(lang_cflags ${pc_cflags})
    else()
      # The C++ consumer includes <pthio/eigen.hpp>, whose users add eigen3 themselves (pthio.pc).
      set(compile ${CXX_COMPILER} -std=c++20)
      run(COMMAND ${PKG_CONFIG} --cflags pthio eigen3 OUTPUT_VARIABLE lang_cflags)
      separate_arguments(lang_cflags UNIX_COMMAND "${lang_cflags}")
    endif()
    set(exe ${WORK_DIR}/static_${lang})
    run(COMMAND ${compile} ${extra} ${lang_cflags} ${CONSUMER_SOURCE_DIR}/main.${lang} -o ${exe} ${pc_static_libs})
    run(COMMAND ${exe} ${FIXTURE} ${out_dir})
    run(COMMAND ${READELF} -d ${exe} OUTPUT_VARIABLE dynamic)
    set(must_not_need libpthio)
    if(STATIC_CUDART)
      list(APPEND must_not_need libcudart)
    endif()
    if(STATIC_CUBLAS)
      list(APPEND must_not_need libcublas libcublasLt)
    endif()
    foreach(lib ${must_not_need})
      if(dynamic MATCHES "NEEDED[^\n]*\\[${lib}\\.so")
        message(FATAL_ERROR "static_${lang}, linked with `pkg-config --static --libs pthio` "
                            "(${pc_static_libs}), needs ${lib}.so:\n${dynamic}")
      endif()
    endforeach()
  endforeach()
elseif(MODE STREQUAL "subdirectory")
  # CUDA is off here to keep the test quick; the main build covers it.
  run(COMMAND ${configure} -DPTHIO_CONSUMER_MODE=subdirectory -DPTHIO_SOURCE_DIR=${PTHIO_SOURCE_DIR}
              -DPTHIO_CUDA=OFF)
  run(COMMAND ${build_cmd})
  foreach(exe consumer_cpp consumer_cpp_shared consumer_c consumer_c_static)
    run(COMMAND ${build}/${exe} ${FIXTURE} ${out_dir})
  endforeach()
elseif(MODE STREQUAL "tools_off")
  # The command's tests are skipped at doctest's listing, so CTest never registers them.
  run(COMMAND ${CMAKE_COMMAND} -S ${PTHIO_SOURCE_DIR} -B ${build} -G ${GENERATOR}
              -DCMAKE_C_COMPILER=${C_COMPILER} -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
              -DCMAKE_CXX_COMPILER_LAUNCHER=${CXX_LAUNCHER} -DPTHIO_CUDA=OFF
              -DPTHIO_BUILD_TOOLS=OFF -DPTHIO_BUILD_TESTS=ON -DPTHIO_BUILD_EXAMPLES=OFF)
  run(COMMAND ${CMAKE_COMMAND} --build ${build} --target pthio_tests)
  run(COMMAND ${CMAKE_CTEST_COMMAND} --test-dir ${build} -N OUTPUT_VARIABLE listed)
  if(NOT listed MATCHES "Test +#[0-9]+: zip: ")
    message(FATAL_ERROR "tools off: the zip tests are not registered:\n${listed}")
  endif()
  foreach(pattern "Test +#[0-9]+: cli: " "the command exits 3" "pthio scan reports" "refused by dump")
    if(listed MATCHES "${pattern}")
      message(FATAL_ERROR "tools off: a test that runs the command is registered (${pattern}):\n${listed}")
    endif()
  endforeach()
  run(COMMAND ${build}/tests/pthio_tests -ts=zip)
else()
  message(FATAL_ERROR "run.cmake: MODE must be install, static, subdirectory or tools_off, not ${MODE}")
endif()
message(STATUS "consumer (${MODE}): ok")
