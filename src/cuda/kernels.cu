// Device kernels: the strided gather behind contiguous copies of device tensors.
#include <cstdint>

#include "gather.h"

namespace pthio::detail::cuda {
namespace {

struct alignas(16) bytes16 {
  std::uint64_t lo, hi;
};

template <class T>
__global__ void gather_kernel(T* __restrict__ dst, const T* __restrict__ src, std::int64_t numel,
                              gather_shape shape) {
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel;
       i += step) {
    std::int64_t rest = i, off = 0;
    for (int d = shape.dims - 1; d >= 0; --d) {
      off += (rest % shape.size[d]) * shape.stride[d];
      rest /= shape.size[d];
    }
    dst[i] = src[off];
  }
}

template <class T>
cudaError_t launch(void* dst, const void* src, std::int64_t numel, const gather_shape& shape,
                   cudaStream_t stream) {
  constexpr int threads = 256;
  const std::int64_t blocks = (numel + threads - 1) / threads;
  const unsigned grid = static_cast<unsigned>(blocks < 65535 ? blocks : 65535);
  gather_kernel<T><<<grid, threads, 0, stream>>>(static_cast<T*>(dst), static_cast<const T*>(src),
                                                 numel, shape);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_gather(void* dst, const void* src, std::size_t elem, std::int64_t numel,
                          const gather_shape& shape, cudaStream_t stream) {
  if (numel <= 0) return cudaSuccess;
  switch (elem) {
    case 1: return launch<std::uint8_t>(dst, src, numel, shape, stream);
    case 2: return launch<std::uint16_t>(dst, src, numel, shape, stream);
    case 4: return launch<std::uint32_t>(dst, src, numel, shape, stream);
    case 8: return launch<std::uint64_t>(dst, src, numel, shape, stream);
    case 16: return launch<bytes16>(dst, src, numel, shape, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace pthio::detail::cuda
