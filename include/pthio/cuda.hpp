// pthio — CUDA support, compiled only when CMake finds the CUDA toolkit (PTHIO_CUDA).
//
// Without the toolkit, or without a GPU at run time, cuda_available() is false and every
// operation that needs a device throws pthio::error(errc::cuda) saying so; the rest of pthio works.
#pragma once

namespace pthio {

// True when pthio was built with CUDA.
bool cuda_built() noexcept;
// True when built with CUDA and at least one device is usable now.
bool cuda_available() noexcept;
// Number of usable CUDA devices (0 without CUDA).
int cuda_device_count() noexcept;

}  // namespace pthio
