# pthio as a package: the shared variant of the library and, with PTHIO_INSTALL, the install
# rules, the exported CMake package (find_package(pthio)) and the pkg-config file (pthio.pc).
# Included at the end of the top-level CMakeLists.txt, once every target exists.
#
# Variants, both always built, installed and exported:
#   pthio          pthio::pthio         static libpthio.a; what in-tree targets and the pthio command link
#   pthio_shared   pthio::pthio_shared  shared libpthio.so.<major>.<minor> (SONAME libpthio.so.0.1
#                                       while the version is 0.x: minors may break the ABI)
# The shared library is linked from the static library's objects (compiled once, position
# independent), so the two always hold the same code. Its private dependencies (libdeflate,
# libzstd, CUDA) are those of the static library, taken from it. pthio::eigen (an interface target, where
# Eigen 3 was found) brings Eigen for <pthio/eigen.hpp>; nothing else needs it.

add_library(pthio_shared SHARED $<TARGET_OBJECTS:pthio>)
add_library(pthio::pthio_shared ALIAS pthio_shared)
target_compile_features(pthio_shared PUBLIC cxx_std_20)
target_include_directories(pthio_shared PUBLIC
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_link_libraries(pthio_shared PRIVATE "$<TARGET_PROPERTY:pthio,LINK_LIBRARIES>")
set_target_properties(pthio_shared PROPERTIES
  OUTPUT_NAME pthio
  EXPORT_NAME pthio_shared
  LINKER_LANGUAGE CXX
  VERSION ${PROJECT_VERSION}
  SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
if(CMAKE_SYSTEM_NAME STREQUAL "Linux" AND NOT PTHIO_SANITIZE)
  # Every symbol resolved when the library is linked, not when a program loads it.
  target_link_options(pthio_shared PRIVATE LINKER:--no-undefined)
endif()
set_target_properties(pthio PROPERTIES EXPORT_NAME pthio)
# pthio_version() in the C API.
set_property(SOURCE src/c_api.cpp APPEND PROPERTY COMPILE_DEFINITIONS
  PTHIO_VERSION_STRING="${PROJECT_VERSION}")

if(NOT PTHIO_INSTALL)
  return()
endif()

include(CMakePackageConfigHelpers)
set(PTHIO_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/pthio CACHE STRING
    "Where pthioConfig.cmake is installed, relative to the prefix")
set(PTHIO_PKGCONFIG_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig CACHE STRING
    "Where pthio.pc is installed, relative to the prefix")

set(_pthio_exported pthio pthio_shared)
if(TARGET pthio_eigen)
  list(APPEND _pthio_exported pthio_eigen)
endif()
install(TARGETS ${_pthio_exported} EXPORT pthio-targets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT development
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT development
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
if(TARGET pthio_cli)
  install(TARGETS pthio_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
  # The manual page and the bash completion of the command (share/ in the source tree).
  install(FILES share/man/man1/pthio.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT runtime)
  install(FILES share/bash-completion/completions/pthio
          DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions COMPONENT runtime)
endif()
install(DIRECTORY include/pthio DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT development)
install(EXPORT pthio-targets NAMESPACE pthio:: FILE pthioTargets.cmake
  DESTINATION ${PTHIO_CMAKE_DIR} COMPONENT development)

# What pthioConfig.cmake must find for the static library's link interface.
set(PTHIO_PACKAGE_NEEDS_CUDA OFF)
if(PTHIO_HAVE_CUDA)
  set(PTHIO_PACKAGE_NEEDS_CUDA ON)
endif()
set(PTHIO_PACKAGE_HAS_EIGEN OFF)
if(TARGET pthio_eigen)
  set(PTHIO_PACKAGE_HAS_EIGEN ON)
endif()
configure_package_config_file(cmake/pthioConfig.cmake.in ${PROJECT_BINARY_DIR}/pthioConfig.cmake
  INSTALL_DESTINATION ${PTHIO_CMAKE_DIR})
# 0.x: only the same minor version is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/pthioConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/pthioConfig.cmake ${PROJECT_BINARY_DIR}/pthioConfigVersion.cmake
  DESTINATION ${PTHIO_CMAKE_DIR} COMPONENT development)

# pthio.pc, relocatable: its prefix is found from where the file lies, so `cmake --install
# --prefix elsewhere` and DESTDIR staging both work.
if(IS_ABSOLUTE "${PTHIO_PKGCONFIG_DIR}")
  set(PTHIO_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _pthio_pc_up "/prefix/${PTHIO_PKGCONFIG_DIR}" "/prefix")
  string(REGEX REPLACE "/$" "" _pthio_pc_up "${_pthio_pc_up}")
  set(PTHIO_PC_PREFIX "\${pcfiledir}/${_pthio_pc_up}")
endif()
foreach(_dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_dir}}")
    set(PTHIO_PC_${_dir} "${CMAKE_INSTALL_${_dir}}")
  else()
    set(PTHIO_PC_${_dir} "\${prefix}/${CMAKE_INSTALL_${_dir}}")
  endif()
endforeach()
# A C program linking the static library needs the C++ runtime too.
set(PTHIO_PC_LIBS_PRIVATE "-lstdc++ -lm")
if(CMAKE_CXX_FLAGS MATCHES "-stdlib=libc\\+\\+")
  set(PTHIO_PC_LIBS_PRIVATE "-lc++ -lm")
endif()
# CUDA for a static link (`pkg-config --static`): the toolkit's folder, and its static libraries
# where it has them, in NVIDIA's order for a static cuBLAS (cuBLAS, cuBLASLt, culibos, the static
# runtime and what that needs), so that even `gcc -static` finds every archive. A toolkit without
# static cuBLAS (the pip-installed one, for instance) leaves cuBLAS shared; it needs no CUDA
# runtime of its own, so the static runtime is still the only one in the program.
set(PTHIO_PC_CUDA_LIBS "")
if(PTHIO_HAVE_CUDA)
  set(PTHIO_PC_CUDA_LIBS "-L${CUDAToolkit_LIBRARY_DIR}")
  if(TARGET CUDA::cublas_static AND TARGET CUDA::cublasLt_static AND TARGET CUDA::culibos)
    string(APPEND PTHIO_PC_CUDA_LIBS " -lcublas_static -lcublasLt_static -lculibos")
  else()
    string(APPEND PTHIO_PC_CUDA_LIBS " -lcublas")
  endif()
  if(TARGET CUDA::cudart_static)
    string(APPEND PTHIO_PC_CUDA_LIBS " -lcudart_static -ldl -lpthread -lrt")
  else()
    string(APPEND PTHIO_PC_CUDA_LIBS " -lcudart")
  endif()
  string(PREPEND PTHIO_PC_LIBS_PRIVATE "${PTHIO_PC_CUDA_LIBS} ")
endif()
configure_file(cmake/pthio.pc.in ${PROJECT_BINARY_DIR}/pthio.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/pthio.pc DESTINATION ${PTHIO_PKGCONFIG_DIR} COMPONENT development)
