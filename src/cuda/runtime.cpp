// CUDA runtime: whether devices exist, device selection, device memory, pinned staging buffers.
#include <cinttypes>
#include <cstdio>
#include <mutex>
#include <new>
#include <vector>

#include "common.h"
#include "cuda_internal.h"
#include "pthio/cuda.hpp"

namespace pthio {

namespace {

struct device_census {
  int count = 0;
  std::string reason;  // why count is 0
};

// cudaGetDeviceCount, asked once: it returns an error (not a crash) without a driver or a device.
const device_census& census() {
  static const device_census c = [] {
    device_census r;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      r.reason = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e);
      (void)cudaGetLastError();
      n = 0;
    } else if (n == 0) {
      r.reason = "cudaGetDeviceCount: no CUDA-capable device is detected";
    }
    r.count = n;
    return r;
  }();
  return c;
}

}  // namespace

bool cuda_built() noexcept { return true; }
bool cuda_available() noexcept { return cuda_device_count() > 0; }
int cuda_device_count() noexcept {
  try {
    return census().count;
  } catch (...) {
    return 0;
  }
}
std::string cuda_unavailable_reason() { return census().reason; }

namespace detail {
namespace cuda {

void fail(cudaError_t e, const std::string& what) {
  (void)cudaGetLastError();
  throw error(errc::cuda, what + ": " + cudaGetErrorString(e) + " (" + cudaGetErrorName(e) + ")");
}

int device_index(const device& dev) {
  if (!dev.is_cuda()) throw error(errc::invalid_argument, "not a CUDA device: " + dev.str());
  const int count = cuda_device_count();
  if (count == 0)
    throw error(errc::cuda, dev.str() + " requested, but no CUDA device is available (" +
                                cuda_unavailable_reason() + ")");
  int index = dev.index();
  if (index < 0) check(cudaGetDevice(&index), "cudaGetDevice");
  if (index >= count)
    throw error(errc::cuda, "cuda:" + std::to_string(index) + " requested, " +
                                std::to_string(count) +
                                (count == 1 ? " device present" : " devices present"));
  return index;
}

device_guard::device_guard(int index) {
  check(cudaGetDevice(&previous_), "cudaGetDevice");
  if (previous_ != index)
    check(cudaSetDevice(index), ("cudaSetDevice(" + std::to_string(index) + ")").c_str());
}

device_guard::~device_guard() {
  int now = -1;
  if (cudaGetDevice(&now) == cudaSuccess && now != previous_) (void)cudaSetDevice(previous_);
}

std::string size_text(std::uint64_t bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 6) {
    v /= 1024;
    ++u;
  }
  char buf[96];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%" PRIu64 " bytes", bytes);
  else
    std::snprintf(buf, sizeof buf, "%.2f %s (%" PRIu64 " bytes)", v, units[u], bytes);
  return buf;
}

storage allocate_uninitialised(std::size_t nbytes, int index) {
  const device dev(device_type::cuda, index);
  if (nbytes == 0) return storage::borrow(nullptr, 0, dev);
  device_guard guard(index);
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, nbytes);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    std::size_t free_b = 0, total_b = 0;
    std::string have;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
      have = " (" + size_text(free_b) + " free of " + size_text(total_b) + ")";
    (void)cudaGetLastError();
    throw error(errc::cuda, "cannot allocate " + size_text(nbytes) + " on " + dev.str() +
                                ": out of device memory" + have);
  }
  if (e != cudaSuccess) fail(e, "cudaMalloc of " + size_text(nbytes) + " on " + dev.str());
  // The last handle frees on the owning device; failures at exit (runtime already unloaded) are
  // moot.
  std::shared_ptr<const void> owner(p, [index](const void* q) {
    int now = -1;
    const bool switched =
        cudaGetDevice(&now) == cudaSuccess && now != index && cudaSetDevice(index) == cudaSuccess;
    (void)cudaFree(const_cast<void*>(q));
    if (switched) (void)cudaSetDevice(now);
    (void)cudaGetLastError();
  });
  return storage::wrap(std::move(owner), p, nbytes, dev);
}

staging_set::~staging_set() {
  int now = -1;
  const bool switched =
      cudaGetDevice(&now) == cudaSuccess && now != device && cudaSetDevice(device) == cudaSuccess;
  for (auto& s : slots) {
    if (s.stream) (void)cudaStreamSynchronize(s.stream);
    if (s.done) (void)cudaEventDestroy(s.done);
    if (s.stream) (void)cudaStreamDestroy(s.stream);
    if (s.host && s.pinned) (void)cudaFreeHost(s.host);
    if (s.host && !s.pinned) ::operator delete (s.host, std::align_val_t{4096});
  }
  if (spare) {
    (void)cudaStreamSynchronize(spare);
    (void)cudaStreamDestroy(spare);
  }
  if (switched) (void)cudaSetDevice(now);
  (void)cudaGetLastError();
}

namespace {

struct staging_pool {
  std::mutex m;
  pthio::cuda::staging_options options;
  std::vector<std::unique_ptr<staging_set>> free;  // at most one per device
};

// Never destroyed: freeing pinned memory after the CUDA runtime has shut down at exit is undefined.
staging_pool& pool() {
  static staging_pool* p = new staging_pool;
  return *p;
}

}  // namespace

std::unique_ptr<staging_set> acquire_staging(int index) {
  pthio::cuda::staging_options opt;
  {
    auto& p = pool();
    std::lock_guard<std::mutex> lk(p.m);
    opt = p.options;
    for (auto it = p.free.begin(); it != p.free.end(); ++it)
      if ((*it)->device == index && (*it)->bytes == opt.buffer_bytes &&
          (*it)->slots.size() == opt.buffers) {
        auto set = std::move(*it);
        p.free.erase(it);
        return set;
      }
  }
  device_guard guard(index);
  auto set = std::make_unique<staging_set>();
  set->device = index;
  set->bytes = opt.buffer_bytes;
  set->slots.resize(opt.buffers);
  const bool pageable = pageable_staging_forced();
  for (auto& s : set->slots) {
    void* h = nullptr;
    cudaError_t e = pageable ? cudaErrorMemoryAllocation
                             : cudaHostAlloc(&h, opt.buffer_bytes, cudaHostAllocPortable);
    if (e == cudaSuccess) {
      s.host = static_cast<std::byte*>(h);
    } else if (e != cudaErrorMemoryAllocation) {
      fail(e, "cudaHostAlloc of a " + size_text(opt.buffer_bytes) + " staging buffer");
    } else {
      // Pinned memory is limited (RLIMIT_MEMLOCK in containers, a busy host): stage through
      // ordinary memory. Slower, since the driver copies it again into its own pinned buffers
      // before each transfer returns, but every load still works.
      (void)cudaGetLastError();
      void* p = ::operator new (opt.buffer_bytes, std::align_val_t{4096}, std::nothrow);
      if (!p)
        throw error(errc::cuda, "cannot allocate a " + size_text(opt.buffer_bytes) +
                                    " staging buffer, pinned or not");
      s.host = static_cast<std::byte*>(p);
      s.pinned = false;
      set->pageable = true;
    }
    check(cudaStreamCreate(&s.stream), "cudaStreamCreate");
    // Blocking sync: a thread waiting for a transfer sleeps rather than spins on a core that the
    // other filling threads need for their reads and CRC-32s.
    check(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming | cudaEventBlockingSync),
          "cudaEventCreate");
  }
  check(cudaStreamCreate(&set->spare), "cudaStreamCreate");
  if (set->pageable) count_pageable_staging_set();
  return set;
}

void release_staging(std::unique_ptr<staging_set> set, bool healthy) noexcept {
  if (!set) return;
  if (healthy) {
    try {
      auto& p = pool();
      std::lock_guard<std::mutex> lk(p.m);
      const bool current =
          set->bytes == p.options.buffer_bytes && set->slots.size() == p.options.buffers;
      bool have = false;
      for (auto& f : p.free) have = have || f->device == set->device;
      // A pageable set is not kept: the next transfer tries to pin its buffers again.
      if (current && !have && !set->pageable) {
        p.free.push_back(std::move(set));
        return;
      }
    } catch (...) {}
  }
  set.reset();
}

}  // namespace cuda

int current_cuda_device() noexcept {
  int now = 0;
  if (cudaGetDevice(&now) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return now;
}

storage cuda_allocate(std::size_t nbytes, const device& dev) {
  const int index = cuda::device_index(dev);
  storage s = cuda::allocate_uninitialised(nbytes, index);
  if (nbytes) {
    cuda::device_guard guard(index);
    // Zeroed like host storages; on the legacy stream, so every later copy is ordered after it.
    cuda::check(cudaMemset(s.data(), 0, nbytes), "cudaMemset");
  }
  return s;
}

}  // namespace detail

namespace cuda {

void set_staging_options(const staging_options& options) {
  detail::check_staging_options(options);
  auto& p = detail::cuda::pool();
  std::vector<std::unique_ptr<detail::cuda::staging_set>> old;
  {
    std::lock_guard<std::mutex> lk(p.m);
    p.options = options;
    old.swap(p.free);
  }
}

staging_options get_staging_options() {
  auto& p = detail::cuda::pool();
  std::lock_guard<std::mutex> lk(p.m);
  return p.options;
}

void synchronize(const device& dev) {
  const int index = detail::cuda::device_index(dev);
  detail::cuda::device_guard guard(index);
  detail::cuda::check(cudaDeviceSynchronize(),
                      ("cudaDeviceSynchronize on cuda:" + std::to_string(index)).c_str());
}

}  // namespace cuda
}  // namespace pthio
