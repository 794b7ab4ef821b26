// What the CUDA build (src/cuda/runtime.cpp, copy.cpp) and the build without CUDA
// (src/cuda/none.cpp) share, in src/cuda/common.cpp: argument checks, so both builds accept and
// refuse the same arguments with the same messages. device_upload's cpu path and finish() are
// there too (see device_copy.h).
#pragma once

#include <cstdint>

#include "pthio/cuda.hpp"

namespace pthio::detail {

// Throws pthio::error(errc::invalid_argument) unless 1 to 16 buffers of 64 KiB to 1 GiB each.
void check_staging_options(const pthio::cuda::staging_options& options);

// The calling thread's current CUDA device (cudaGetDevice); 0 without CUDA or when the runtime
// cannot say.
int current_cuda_device() noexcept;

// Pinned staging buffers that could not be had: the CUDA build falls back to pageable memory when
// cudaHostAlloc fails. Tests force that failure (staging sets made afterwards: change the staging
// options to drop the pooled ones) and count the sets that fell back.
void force_pageable_staging(bool on) noexcept;
bool pageable_staging_forced() noexcept;
void count_pageable_staging_set() noexcept;
std::uint64_t pageable_staging_sets() noexcept;

}  // namespace pthio::detail
