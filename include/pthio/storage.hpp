// pthio — storage: shared, reference-counted bytes on one device.
//
// A storage is a handle: copies share the same bytes (like torch's untyped storage). The bytes are
// either owned (heap, 64-byte aligned, zero-initialised), backed by a memory map of the checkpoint
// (kept alive as long as any storage or tensor refers to it), borrowed from the caller (the caller
// keeps them alive), or on a CUDA device (see cuda.hpp). A default-constructed storage is empty
// (no bytes, cpu).
//
// Thread safety: handles may be copied and destroyed from any thread (the count is atomic, as
// std::shared_ptr's); the bytes themselves are not synchronised.
#pragma once

#include <cstddef>
#include <memory>

#include "pthio/device.hpp"
#include "pthio/export.hpp"

namespace pthio {

class PTHIO_API storage {
 public:
  storage() = default;

  // nbytes of zeroed, 64-byte aligned host memory; limit_exceeded when it cannot be allocated.
  static storage allocate(std::size_t nbytes);
  // The same memory left uninitialised, for a caller that overwrites all of it at once (as
  // std::make_shared_for_overwrite): no zeroing pass over memory about to be copied into.
  static storage allocate_for_overwrite(std::size_t nbytes);
  // nbytes of memory on `dev` (cpu, or cuda:N when CUDA is available: pthio::error(cuda) when it
  // is not; unsupported for other device types).
  static storage allocate(std::size_t nbytes, const device& dev);
  // Bytes the caller owns and keeps alive longer than every handle to this storage.
  static storage borrow(void* data, std::size_t nbytes, const device& dev = cpu_device);
  // Bytes kept alive by `owner` (an mmap, a buffer): released with the last handle.
  static storage wrap(std::shared_ptr<const void> owner, void* data, std::size_t nbytes,
                      const device& dev = cpu_device);

  std::byte* data() const noexcept { return impl_ ? impl_->data : nullptr; }
  std::size_t nbytes() const noexcept { return impl_ ? impl_->nbytes : 0; }
  const device& dev() const noexcept { return impl_ ? impl_->dev : cpu_device; }
  bool defined() const noexcept { return impl_ != nullptr; }
  // Handles sharing these bytes (0 for an empty storage).
  long use_count() const noexcept { return impl_.use_count(); }
  // True when two handles share the same bytes.
  bool same(const storage& other) const noexcept { return impl_ == other.impl_; }
  // An identity usable as a map key while the storage lives.
  const void* id() const noexcept { return impl_.get(); }

 private:
  struct impl {
    std::byte* data = nullptr;
    std::size_t nbytes = 0;
    device dev;
    std::shared_ptr<const void> owner;  // frees the bytes, or keeps their owner alive
  };
  std::shared_ptr<impl> impl_;
};

}  // namespace pthio
