// Host<->device copies: storages streamed through pinned staging buffers (loads, tensor::to,
// saves), strided device tensors made contiguous by a gather kernel, device-to-device copies.
#include <cstring>

#include "../torch/internal.h"
#include "cuda_internal.h"
#include "device_copy.h"
#include "pthio/cuda.hpp"
#include "pthio/tensor.hpp"
#include "staging.h"

namespace pthio::detail {

using cuda::check;

namespace {

// Copies up to direct_copy_limit go straight from pageable memory with one cudaMemcpyAsync on the
// spare stream when they must be read before copy() returns, or while an upload has moved less than
// pipeline_after: starting the filling threads, or waiting for one, costs more than that.
constexpr std::size_t direct_copy_limit = device_direct_copy_limit;
constexpr std::size_t pipeline_after = std::size_t{4} << 20;

}  // namespace

struct device_upload::per_device final : staging_pipeline::backend {
  int index = 0;
  std::unique_ptr<cuda::staging_set> set;
  std::unique_ptr<staging_pipeline>
      pipeline;                  // filling threads, started when the direct copies stop
  std::size_t direct_bytes = 0;  // moved by direct copies so far
  bool failed = false;

  std::size_t slots() const override { return set->slots.size(); }
  std::size_t slot_bytes() const override { return set->bytes; }
  void start_thread(std::size_t) override { check(cudaSetDevice(index), "cudaSetDevice"); }
  std::byte* buffer(std::size_t slot) override { return set->slots[slot].host; }
  void wait(std::size_t slot) override {
    check(cudaEventSynchronize(set->slots[slot].done), "host-to-device copy");
  }
  void submit(std::size_t slot, std::byte* dst, std::size_t n) override {
    auto& s = set->slots[slot];
    check(cudaMemcpyAsync(dst, s.host, n, cudaMemcpyHostToDevice, s.stream),
          "cudaMemcpyAsync host-to-device");
    check(cudaEventRecord(s.done, s.stream), "cudaEventRecord");
  }
  // Waits for every transfer of this device.
  void drain() {
    cuda::device_guard guard(index);
    for (auto& s : set->slots) check(cudaStreamSynchronize(s.stream), "host-to-device copy");
    check(cudaStreamSynchronize(set->spare), "host-to-device copy");
  }
  ~per_device() override {
    pipeline.reset();  // joins the filling threads before their buffers go
    if (!set) return;
    try {
      drain();
    } catch (...) {
      failed = true;
    }
    cuda::release_staging(std::move(set), !failed);
  }
};

device_upload::device_upload() = default;
device_upload::~device_upload() = default;

device_upload::per_device& device_upload::on(int index) {
  if (auto it = devices_.find(index); it != devices_.end()) return *it->second;
  auto p = std::make_unique<per_device>();
  p->index = index;
  p->set = cuda::acquire_staging(index);
  return *devices_.emplace(index, std::move(p)).first->second;
}

storage device_upload::copy_to_cuda(std::span<const std::byte> bytes, const device& target, hold h,
                                    std::uint32_t* crc, const std::optional<in_file>& file) {
  if (!target.is_cuda())
    throw error(errc::unsupported, "cannot copy a storage to device " + target.str());
  const int index = cuda::device_index(target);
  storage s = cuda::allocate_uninitialised(bytes.size(), index);
  if (bytes.empty()) {
    if (crc) *crc = 0;
    return s;
  }
  per_device& d = on(index);
  try {
    const bool direct = bytes.size() <= direct_copy_limit &&
                        (h == hold::until_return ||
                         (!d.pipeline && d.direct_bytes + bytes.size() <= pipeline_after));
    if (direct) {
      // Small: straight from `bytes` even when they are a map of `file` (a few pages at most).
      d.direct_bytes += bytes.size();
      if (crc) *crc = pthio::crc32(bytes);
      cuda::device_guard guard(index);
      check(cudaMemcpyAsync(s.data(), bytes.data(), bytes.size(), cudaMemcpyHostToDevice,
                            d.set->spare),
            "cudaMemcpyAsync host-to-device");
      // The driver usually stages pageable bytes before returning, but only a sync promises it.
      if (h == hold::until_return)
        check(cudaStreamSynchronize(d.set->spare), "host-to-device copy");
    } else {
      if (!d.pipeline) d.pipeline = std::make_unique<staging_pipeline>(d);
      const auto ticket =
          file && file->source
              ? d.pipeline->enqueue_file(*file->source, file->offset, bytes.size(), s.data(), crc)
              : d.pipeline->enqueue(bytes.data(), bytes.size(), s.data(), crc);
      if (h == hold::until_return) d.pipeline->wait_read(ticket);
    }
  } catch (...) {
    d.failed = true;
    throw;
  }
  return s;
}

void device_upload::wait_devices() {
  for (auto& [index, d] : devices_) {
    try {
      if (d->pipeline) d->pipeline->wait_all();
      d->drain();
    } catch (...) {
      d->failed = true;
      throw;
    }
  }
  devices_.clear();  // staging buffers back to the pool for the next transfer
}

namespace {

// Device bytes [src, src + n) on device `index`, to fn chunk by chunk through pinned buffers; the
// copies of the next chunks are in flight while fn runs.
void download(int index, const std::byte* src, std::size_t n,
              const std::function<void(std::span<const std::byte>)>& fn) {
  if (n == 0) return;
  auto set = cuda::acquire_staging(index);
  cuda::device_guard guard(index);
  struct give_back {
    std::unique_ptr<cuda::staging_set>& set;
    ~give_back() {
      bool healthy = true;
      for (auto& s : set->slots)
        healthy = cudaStreamSynchronize(s.stream) == cudaSuccess && healthy;
      (void)cudaGetLastError();
      cuda::release_staging(std::move(set), healthy);
    }
  } back{set};
  const std::size_t chunk = set->bytes, k = set->slots.size(), chunks = (n + chunk - 1) / chunk;
  auto length = [&](std::size_t i) { return std::min(chunk, n - i * chunk); };
  auto issue = [&](std::size_t i) {
    auto& s = set->slots[i % k];
    check(cudaMemcpyAsync(s.host, src + i * chunk, length(i), cudaMemcpyDeviceToHost, s.stream),
          "cudaMemcpyAsync device-to-host");
    check(cudaEventRecord(s.done, s.stream), "cudaEventRecord");
  };
  std::size_t issued = 0;
  for (; issued < std::min(k, chunks); ++issued) issue(issued);
  for (std::size_t i = 0; i < chunks; ++i) {
    auto& s = set->slots[i % k];
    check(cudaEventSynchronize(s.done), "device-to-host copy");
    fn(std::span<const std::byte>(s.host, length(i)));
    if (issued < chunks) issue(issued++);  // slot i % k, free again now that fn is done with it
  }
}

// Device bytes [src, src + n) on device `index`, in a new host storage.
storage download_to_host(int index, const std::byte* src, std::size_t n) {
  storage h = storage::allocate(n);
  std::size_t at = 0;
  download(index, src, n, [&](std::span<const std::byte> b) {
    std::memcpy(h.data() + at, b.data(), b.size());
    at += b.size();
  });
  return h;
}

// Dimensions of a strided view merged where the memory allows (size-1 dimensions dropped, a
// dimension folded into the next when stride[d] == stride[d+1] * size[d+1]).
void coalesce(const shape_t& shape, const shape_t& strides, std::vector<std::int64_t>& size,
              std::vector<std::int64_t>& stride) {
  size.clear();
  stride.clear();
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!size.empty() && stride.back() == strides[d] * shape[d]) {
      size.back() *= shape[d];
      stride.back() = strides[d];
    } else {
      size.push_back(shape[d]);
      stride.push_back(strides[d]);
    }
  }
}

// The bytes a view can reach, from its first element: (sum (size-1) * stride + 1) * element size.
std::size_t reach_bytes(const tensor& t) {
  std::size_t last = 0;
  for (std::size_t d = 0; d < t.shape().size(); ++d)
    last += static_cast<std::size_t>(t.shape()[d] - 1) * static_cast<std::size_t>(t.strides()[d]);
  return (last + 1) * t.element_size();
}

tensor upload(const tensor& host, int index);

// A contiguous copy, on the host, of a device view: its reachable bytes come back, the host
// strides them.
tensor gather_on_host(const tensor& t, int index) {
  storage h = download_to_host(index, t.raw_data(), reach_bytes(t));
  return tensor(h, t.dtype(), t.shape(), t.strides(), 0, t.requires_grad()).contiguous();
}

// t itself when contiguous, else a contiguous copy on the same device (the gather kernel, or
// through the host past max_gather_dims dimensions).
tensor device_contiguous(const tensor& t, int index) {
  if (t.is_contiguous() || t.numel() == 0) return t;
  std::vector<std::int64_t> size, stride;
  coalesce(t.shape(), t.strides(), size, stride);
  const std::size_t es = t.element_size();
  // The widest unit dividing the element size and the source's alignment (cudaMalloc'd memory, the
  // destination, is aligned to 256 bytes); an element wider than the unit becomes a last dimension.
  const auto align = reinterpret_cast<std::uintptr_t>(t.raw_data());
  std::size_t unit = 16;
  while (unit > 1 && (es % unit != 0 || align % unit != 0)) unit /= 2;
  if (unit < es) {
    const auto per = static_cast<std::int64_t>(es / unit);
    for (auto& s : stride) s *= per;
    size.push_back(per);
    stride.push_back(1);
  }
  if (size.size() > static_cast<std::size_t>(cuda::max_gather_dims))
    return upload(gather_on_host(t, index), index);
  storage out = cuda::allocate_uninitialised(t.nbytes(), index);
  cuda::gather_shape g;
  g.dims = static_cast<int>(size.size());
  for (std::size_t d = 0; d < size.size(); ++d) {
    g.size[d] = size[d];
    g.stride[d] = stride[d];
  }
  cuda::device_guard guard(index);
  // The legacy stream: ordered after earlier copies and before later ones on pthio's streams.
  check(cuda::launch_gather(out.data(), t.raw_data(), unit,
                            static_cast<std::int64_t>(t.nbytes() / unit), g, cudaStreamLegacy),
        "strided copy kernel");
  return tensor(out, t.dtype(), t.shape(), contiguous_strides(t.shape()), 0, t.requires_grad());
}

// A contiguous host tensor onto device `index`.
tensor upload(const tensor& host, int index) {
  tensor src = host.contiguous();
  device_upload up;
  storage s = up.copy(std::span<const std::byte>(src.raw_data(), src.nbytes()),
                      device(device_type::cuda, index), device_upload::hold::until_finish);
  up.finish();
  return tensor(s, src.dtype(), src.shape(), contiguous_strides(src.shape()), 0,
                host.requires_grad());
}

}  // namespace

void for_each_host_chunk(const storage& s, std::size_t n,
                         const std::function<void(std::span<const std::byte>)>& fn) {
  if (n > s.nbytes())
    throw error(errc::invalid_argument, "for_each_host_chunk: " + std::to_string(n) +
                                            " bytes of a " + std::to_string(s.nbytes()) +
                                            "-byte storage");
  if (!s.dev().is_cuda())
    throw error(errc::invalid_argument, "for_each_host_chunk: storage is on " + s.dev().str());
  download(cuda::device_index(s.dev()), s.data(), n, fn);
}

tensor cuda_to(const tensor& t, const device& target) {
  const device& from = t.dev();
  if ((!from.is_cpu() && !from.is_cuda()) || (!target.is_cpu() && !target.is_cuda()))
    throw error(errc::unsupported,
                "cannot move a tensor from " + from.str() + " to " + target.str());
  if (from.is_cpu()) return upload(t, cuda::device_index(target));
  const int src = cuda::device_index(from);
  if (target.is_cuda() && cuda::device_index(target) == src) return t;
  tensor c = device_contiguous(t, src);
  const shape_t strides = contiguous_strides(t.shape());
  if (target.is_cpu())
    return tensor(download_to_host(src, c.raw_data(), c.nbytes()), t.dtype(), t.shape(), strides, 0,
                  t.requires_grad());
  const int dst = cuda::device_index(target);
  storage d = cuda::allocate_uninitialised(c.nbytes(), dst);
  if (c.nbytes())
    check(
        cudaMemcpyPeer(d.data(), dst, c.raw_data(), src, c.nbytes()),
        ("cudaMemcpyPeer cuda:" + std::to_string(src) + " -> cuda:" + std::to_string(dst)).c_str());
  return tensor(d, t.dtype(), t.shape(), strides, 0, t.requires_grad());
}

tensor cuda_clone(const tensor& t);

void cuda_copy_into(tensor& dst, const tensor& src) {
  if (dst.numel() == 0) return;
  if (dst.dev().is_cpu()) {  // from a device: down as a contiguous host tensor first
    dst.copy_from(cuda_to(src, cpu_device));
    return;
  }
  const int index = cuda::device_index(dst.dev());
  // The source in dst's dtype (converted on the host) and contiguous on dst's device.
  tensor s = src;
  if (s.dtype() != dst.dtype()) s = (s.dev().is_cpu() ? s : cuda_to(s, cpu_device)).to(dst.dtype());
  if (s.dev().is_cpu() || cuda::device_index(s.dev()) != index)
    s = cuda_to(s, dst.dev());  // contiguous once moved
  s = device_contiguous(s, index);
  // The same bytes as the destination's (a view of its storage): copied aside first, since a
  // device-to-device copy between overlapping ranges is undefined.
  if (s.get_storage().same(dst.get_storage())) s = cuda_clone(s);
  cuda::device_guard guard(index);
  if (dst.is_contiguous()) {
    // On the legacy stream, after whatever wrote s; waited for, so s may go when this returns.
    check(cudaMemcpyAsync(dst.raw_data(), s.raw_data(), dst.nbytes(), cudaMemcpyDeviceToDevice,
                          cudaStreamLegacy),
          "cudaMemcpyAsync device-to-device");
    check(cudaStreamSynchronize(cudaStreamLegacy), "device-to-device copy");
    return;
  }
  // A strided destination: the bytes its elements span come to the host, the elements are written
  // there, and the span goes back whole.
  const std::size_t reach = reach_bytes(dst);
  storage h = download_to_host(index, dst.raw_data(), reach);
  tensor view(h, dst.dtype(), dst.shape(), dst.strides(), 0);
  view.copy_from(cuda_to(s, cpu_device));
  check(cudaMemcpy(dst.raw_data(), h.data(), reach, cudaMemcpyHostToDevice),
        "cudaMemcpy host-to-device");
}

tensor cuda_clone(const tensor& t) {
  if (!t.dev().is_cuda())
    throw error(errc::unsupported, "cannot clone a tensor on " + t.dev().str());
  const int index = cuda::device_index(t.dev());
  if (!t.is_contiguous()) return device_contiguous(t, index);
  storage d = cuda::allocate_uninitialised(t.nbytes(), index);
  if (t.nbytes()) {
    cuda::device_guard guard(index);
    check(cudaMemcpyAsync(d.data(), t.raw_data(), t.nbytes(), cudaMemcpyDeviceToDevice,
                          cudaStreamLegacy),
          "cudaMemcpyAsync device-to-device");
  }
  return tensor(d, t.dtype(), t.shape(), contiguous_strides(t.shape()), 0, t.requires_grad());
}

}  // namespace pthio::detail
