// The strided gather kernel's interface (kernels.cu), kept free of pthio headers for nvcc.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace pthio::detail::cuda {

// dst[i] = src[offset of the i-th element in row-major order] for `numel` elements of `elem` bytes
// (1, 2, 4, 8 or 16; both pointers aligned to it), over at most max_gather_dims dimensions
// (strides in elements, non-negative). Enqueued on `stream`.
constexpr int max_gather_dims = 12;
struct gather_shape {
  int dims = 0;
  std::int64_t size[max_gather_dims] = {};
  std::int64_t stride[max_gather_dims] = {};
};
cudaError_t launch_gather(void* dst, const void* src, std::size_t elem, std::int64_t numel,
                          const gather_shape& shape, cudaStream_t stream);

}  // namespace pthio::detail::cuda
