# CUDA support for pthio, decided by PTHIO_CUDA:
#   AUTO  on when check_language(CUDA) finds nvcc and the toolkit has cuBLAS, off otherwise
#   ON    required: configuring fails without the toolkit
#   OFF   never; src/cuda/none.cpp stands in
# Sets PTHIO_HAVE_CUDA and PTHIO_CUDA_SOURCES (src/cuda/common.cpp in both cases), and defines pthio_use_cuda(target).
# Included from the top-level CMakeLists.txt (enable_language must run at directory scope).

set_property(CACHE PTHIO_CUDA PROPERTY STRINGS AUTO ON OFF)
string(TOUPPER "${PTHIO_CUDA}" _pthio_cuda_mode)
if(NOT _pthio_cuda_mode MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "PTHIO_CUDA is '${PTHIO_CUDA}'; it must be AUTO, ON or OFF")
endif()

set(PTHIO_HAVE_CUDA OFF)
set(_pthio_cuda_why "PTHIO_CUDA=OFF")
if(NOT _pthio_cuda_mode STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
      # Ampere and Hopper machine code, plus Hopper PTX that newer GPUs compile at load time. Only
      # the small kernels in src/cuda/*.cu are built per architecture: keep the list short.
      set(CMAKE_CUDA_ARCHITECTURES 80 90)
    endif()
    # The shared runtime, everywhere: CUDA::cudart is the shared library, and executables linking
    # the static pthio must not pull nvcc's default cudart_static in beside it.
    if(NOT DEFINED CMAKE_CUDA_RUNTIME_LIBRARY)
      set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit)
    if(CUDAToolkit_FOUND AND TARGET CUDA::cudart AND TARGET CUDA::cublas)
      set(PTHIO_HAVE_CUDA ON)
    else()
      set(_pthio_cuda_why "nvcc found but not the CUDA toolkit's cudart and cuBLAS")
    endif()
  else()
    set(_pthio_cuda_why "no CUDA compiler (nvcc) found")
  endif()
  if(NOT PTHIO_HAVE_CUDA AND _pthio_cuda_mode STREQUAL "ON")
    message(FATAL_ERROR "PTHIO_CUDA=ON but ${_pthio_cuda_why}; set CMAKE_CUDA_COMPILER or PTHIO_CUDA=AUTO")
  endif()
endif()

if(PTHIO_HAVE_CUDA)
  message(STATUS "pthio: CUDA ${CUDAToolkit_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")
  set(PTHIO_CUDA_SOURCES
    src/cuda/common.cpp
    src/cuda/runtime.cpp
    src/cuda/copy.cpp
    src/cuda/blas.cpp
    src/cuda/kernels.cu)
else()
  message(STATUS "pthio: building without CUDA (${_pthio_cuda_why})")
  set(PTHIO_CUDA_SOURCES src/cuda/common.cpp src/cuda/none.cpp)
endif()

# The library's CUDA settings: the shared runtime, cuBLAS, PTHIO_HAVE_CUDA for its sources, warnings
# for the .cu files.
function(pthio_use_cuda target)
  if(NOT PTHIO_HAVE_CUDA)
    return()
  endif()
  set_target_properties(${target} PROPERTIES
    CUDA_RUNTIME_LIBRARY Shared
    CUDA_STANDARD 17
    CUDA_STANDARD_REQUIRED ON)
  target_compile_definitions(${target} PRIVATE PTHIO_HAVE_CUDA)
  target_link_libraries(${target} PRIVATE CUDA::cudart CUDA::cublas)
  set(_flags -Xcompiler=-Wall,-Wextra)
  if(PTHIO_WERROR)
    list(APPEND _flags -Werror=all-warnings -Xcompiler=-Werror)
  endif()
  target_compile_options(${target} PRIVATE "$<$<COMPILE_LANGUAGE:CUDA>:${_flags}>")
endfunction()
