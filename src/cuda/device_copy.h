// Host<->device streaming used by the checkpoint loader and saver and by tensor::to (internal).
// The cpu side and finish() are in src/cuda/common.cpp, compiled in both builds; the device side
// in src/cuda/copy.cpp, or src/cuda/none.cpp without CUDA (cpu targets only).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>

#include "pthio/io.hpp"
#include "pthio/storage.hpp"

namespace pthio::detail {

// Streams host bytes into new device storages for one load: chunks go through pinned staging
// buffers, filled by several threads, and stay in flight across storages; finish() waits for all
// of them. Not thread-safe.
// Copies to a device up to this size go straight from the caller's bytes with one cudaMemcpyAsync
// (copy.cpp), not through the staging buffers: a copy given an in_file reads the file only above
// it.
inline constexpr std::size_t device_direct_copy_limit = std::size_t{256} << 10;

class device_upload {
 public:
  // How long the caller keeps the bytes given to copy() valid.
  enum class hold {
    until_return,  // copy() returns once every byte has been read
    until_finish,  // reads may still be queued when copy() returns
  };
  // A CRC-32 to check the bytes against; on a mismatch finish() calls `mismatch`, which throws.
  struct crc_check {
    std::uint32_t expected = 0;
    std::function<void()> mismatch;
  };

  // Where copy()'s bytes also lie in a file (they are a map of it): large copies to a device read
  // them from there with byte_source::copy_out, pread() for a mapped file, straight into the
  // pinned staging buffers, rather than through the map, whose pages would fault one by one and
  // stay resident (only copies over device_direct_copy_limit: smaller ones read `bytes`). The
  // source outlives the device_upload: filling threads may read it until the destructor joins them.
  struct in_file {
    const byte_source* source = nullptr;
    std::uint64_t offset = 0;
  };

  device_upload();
  ~device_upload();  // stops reading, waits for transfers in flight; errors are dropped
  device_upload(const device_upload&) = delete;
  device_upload& operator=(const device_upload&) = delete;

  // A storage on `target` (cpu or cuda:N) that holds `bytes` once finish() has returned.
  storage copy(std::span<const std::byte> bytes, const device& target, hold h,
               std::optional<crc_check> verify = std::nullopt,
               std::optional<in_file> file = std::nullopt);
  // Waits for every copy; throws pthio::error(errc::cuda) if one failed, or what a crc_check's
  // mismatch throws (checks run in the order of the copies).
  void finish();

  struct per_device;  // a device's staging buffers, streams and filling threads

 private:
  struct pending_check {
    std::uint32_t got = 0;
    crc_check check;
  };
  per_device& on(int device_index);
  // copy() to a target other than cpu. Without CUDA: throws errc::cuda.
  storage copy_to_cuda(std::span<const std::byte> bytes, const device& target, hold h,
                       std::uint32_t* crc, const std::optional<in_file>& file);
  // finish()'s first half: waits for every device's transfers and hands their buffers back.
  void wait_devices();
  // Declared before devices_, so destroyed after it: ~per_device joins the filling threads, which
  // may still write a `got` here when a load fails midway.
  std::deque<pending_check> checks_;  // stable addresses: the filling threads write `got`
  std::map<int, std::unique_ptr<per_device>> devices_;
};

// A storage on `target` holding a copy of `bytes`: one device_upload, finished.
storage copy_to_device(std::span<const std::byte> bytes, const device& target);

// Calls fn with consecutive host chunks holding bytes [0, n) of `s` (a device storage), through
// pinned buffers: the device->host copy of the next chunks overlaps fn. n <= s.nbytes().
void for_each_host_chunk(const storage& s, std::size_t n,
                         const std::function<void(std::span<const std::byte>)>& fn);

}  // namespace pthio::detail
