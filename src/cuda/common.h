// What the CUDA build (src/cuda/runtime.cpp, copy.cpp) and the build without CUDA
// (src/cuda/none.cpp) share, in src/cuda/common.cpp: argument checks, so both builds accept and
// refuse the same arguments with the same messages. device_upload's cpu path and finish() are
// there too (see device_copy.h).
#pragma once

#include "pthio/cuda.hpp"

namespace pthio::detail {

// Throws pthio::error(errc::invalid_argument) unless 1 to 16 buffers of 64 KiB to 1 GiB each.
void check_staging_options(const pthio::cuda::staging_options& options);

}  // namespace pthio::detail
