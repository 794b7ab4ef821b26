// Pieces shared by the CUDA sources (not part of the API; only compiled with PTHIO_HAVE_CUDA).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gather.h"
#include "pthio/device.hpp"
#include "pthio/error.hpp"
#include "pthio/storage.hpp"

namespace pthio::detail::cuda {

// Throws pthio::error(errc::cuda): "<what>: <runtime message> (<error name>)". Clears the runtime's
// last-error slot first so a recoverable failure does not resurface in a later call.
[[noreturn]] void fail(cudaError_t e, const std::string& what);
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail(e, what);
}

// The device index of `dev` ("cuda" is the current device), checked against the devices present:
// "cuda:3 requested, 1 device present". Throws errc::cuda.
int device_index(const device& dev);

// Makes `index` the calling thread's current device for its lifetime.
class device_guard {
 public:
  explicit device_guard(int index);
  ~device_guard();
  device_guard(const device_guard&) = delete;
  device_guard& operator=(const device_guard&) = delete;

 private:
  int previous_ = -1;
};

// nbytes of device memory on device `index`, not initialised, freed with the storage's last handle.
// Out of memory: errc::cuda naming the size asked and the free and total memory.
storage allocate_uninitialised(std::size_t nbytes, int index);

// "1.50 GiB (1610612736 bytes)"
std::string size_text(std::uint64_t bytes);

// Pinned staging buffers with one stream and one completion event each, plus a spare stream for
// small copies; created for one device, lent out whole by staging_pool.
struct staging_slot {
  std::byte* host = nullptr;
  bool pinned = true;  // false: cudaHostAlloc failed, host is ordinary (pageable) memory
  cudaStream_t stream = nullptr;
  cudaEvent_t done = nullptr;  // recorded after the slot's last transfer
};
struct staging_set {
  int device = 0;
  std::size_t bytes = 0;  // per slot
  std::vector<staging_slot> slots;
  cudaStream_t spare = nullptr;
  bool pageable = false;  // some slot's buffer is not pinned
  ~staging_set();
};
// A set for `index` with the current staging options (reused from earlier transfers when one is
// free).
std::unique_ptr<staging_set> acquire_staging(int index);
// Hands a set back for reuse; `healthy` false (a transfer failed) frees it instead.
void release_staging(std::unique_ptr<staging_set> set, bool healthy) noexcept;

}  // namespace pthio::detail::cuda
