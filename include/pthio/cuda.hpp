// pthio — CUDA support, compiled only when CMake finds the CUDA toolkit (PTHIO_CUDA).
//
// Without the toolkit, or without a GPU at run time, cuda_available() is false and every
// operation that needs a device throws pthio::error(errc::cuda) saying so; the rest of pthio works.
//
// Where CUDA work runs. Device storages are cudaMalloc'd on their device and cudaFree'd with their
// last handle. Copies to and from a device go through pinned staging buffers on pthio's own
// streams, created blocking (not cudaStreamNonBlocking), so they are ordered after work the caller
// put on the legacy default stream, and load(), save(), tensor::to() return only when the bytes
// have landed. gemm()/gemv() are enqueued on the device's legacy default stream and return at
// once; copying the result to the host waits for them, cuda::synchronize() waits explicitly.
// Callers using their own non-blocking streams synchronize with pthio's work themselves.
//
// Loading to cuda:N: each storage record streams from the mapped file into pinned buffers
// (staging_options: buffers × buffer_bytes, one filling thread per buffer) and from there to the
// device, the reads of one buffer overlapping the host→device copies of the others, across storage
// boundaries; the record's CRC-32 is computed on the way. The checkpoint is never held whole in
// host memory.
#pragma once

#include <cstddef>
#include <string>

#include "pthio/device.hpp"
#include "pthio/export.hpp"
#include "pthio/tensor.hpp"

namespace pthio {

// True when pthio was built with CUDA.
PTHIO_API bool cuda_built() noexcept;
// True when built with CUDA and at least one device is usable now (decided at the first call, by
// cudaGetDeviceCount; never fails, even without a driver).
PTHIO_API bool cuda_available() noexcept;
// Number of usable CUDA devices (0 without CUDA).
PTHIO_API int cuda_device_count() noexcept;
// Why cuda_available() is false: "pthio was built without CUDA", or "cudaGetDeviceCount: <the
// runtime's message>"; empty when it is true.
PTHIO_API std::string cuda_unavailable_reason();

namespace cuda {

// Pinned host memory used to stream storages to and from devices. Changing the options applies to
// transfers that start afterwards. Throws invalid_argument for 0 buffers, more than 16, or a size
// under 64 KiB or over 1 GiB.
struct staging_options {
  std::size_t buffers = 4;
  std::size_t buffer_bytes = std::size_t{8} << 20;
  // How a stored record of a memory-mapped file reaches the buffers in eager and mmap loads:
  // memcpy from the map (false), or pread() from the file (true), which faults no page of the map
  // and leaves none resident in the process. On the Firecracker VM pthio is measured on, memcpy
  // from the map was as fast as the kernel's page-cache copy or up to 1.75x faster (BENCHMARKS.md),
  // hence the default. Lazy loads always read with pread(): their map lives as
  // long as the checkpoint, and pages read through it would stay resident.
  bool pread_mapped_files = false;
};
PTHIO_API void set_staging_options(const staging_options& options);
PTHIO_API staging_options get_staging_options();

// Waits until all work enqueued on `dev` (cuda or cuda:N) has finished.
PTHIO_API void synchronize(const device& dev);

// c = alpha · a · b + beta · c through cuBLAS, with float accumulation (CUBLAS_COMPUTE_32F).
// a [m, k], b [k, n], c [m, n], all on one CUDA device. a and b: float32, float16 or bfloat16
// (the same dtype); c: the same dtype, or float32. Each operand is 2-D with a unit stride in one
// dimension (contiguous, a transpose() of contiguous, or a narrow() of either); c must not overlap
// a or b. Throws invalid_argument (dtype, device, layout), mismatch (shapes), cuda (cuBLAS).
PTHIO_API void gemm(const tensor& a, const tensor& b, tensor& c, float alpha = 1.0f,
                    float beta = 0.0f);
// y = alpha · a · x + beta · y: a [m, n] as in gemm, x [n] and y [m] 1-D with any positive stride.
PTHIO_API void gemv(const tensor& a, const tensor& x, tensor& y, float alpha = 1.0f,
                    float beta = 0.0f);

}  // namespace cuda
}  // namespace pthio
