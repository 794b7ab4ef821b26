// pthio — bytes in and out.
//
// byte_source: read-only bytes plus whatever keeps them alive (an mmap of a file, a heap buffer,
// or nothing when the caller owns them). Spans handed out stay valid while any copy of the
// source, or any storage wrapping it, lives.
// sink: where a writer's bytes go. file_sink writes to a temporary file beside the target,
// fsyncs it and renames it over the target only in commit(); destroyed without commit it removes
// the temporary, so a failure or a kill mid-save never replaces a good file with a partial one.
//
// Errors: pthio::error(io) when the operating system refuses an open, read, map, write, fsync or
// rename (the message has strerror's text, the context the path); limit_exceeded when a file is
// too large to hold in memory. A sink is used by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "pthio/export.hpp"

namespace pthio {

class PTHIO_API byte_source {
 public:
  byte_source() = default;
  byte_source(std::shared_ptr<const void> owner, std::span<const std::byte> bytes, std::string name)
      : owner_(std::move(owner)), bytes_(bytes), name_(std::move(name)) {}

  // Memory-maps `path` read-only (copy-on-write private map, so views may be written in-process).
  // The mapping lives until the last copy of the source, or storage wrapping it, goes. The file
  // must not be truncated while mapped (the operating system then faults on access, as for any
  // mmap).
  static byte_source map_file(const std::filesystem::path& path);
  // Reads the whole of `path` into memory with large reads.
  static byte_source read_file(const std::filesystem::path& path);
  // Takes ownership of a buffer (moved in; the spans handed out point into it).
  static byte_source from_vector(std::vector<std::byte> data, std::string name = "<memory>");
  // Takes over bytes no one else holds, kept alive by `owner`, in writable memory: mmap-mode loads
  // view them as they view a private map (from_vector and read_file make such sources too).
  static byte_source adopt(std::shared_ptr<const void> owner, std::span<const std::byte> bytes,
                           std::string name);
  // Borrows caller-owned bytes: they must outlive every copy of the source and everything loaded
  // from it (mmap-mode tensors view them).
  static byte_source borrow(std::span<const std::byte> data, std::string name = "<memory>");

  std::span<const std::byte> bytes() const noexcept { return bytes_; }
  std::size_t size() const noexcept { return bytes_.size(); }
  const std::string& name() const noexcept { return name_; }
  const std::shared_ptr<const void>& owner() const noexcept { return owner_; }
  bool is_mapped() const noexcept { return mapped_; }
  // The bytes belong to this source alone (from_vector, read_file, adopt): they may be viewed.
  bool owns_bytes() const noexcept { return owned_; }

  // Copies out.size() bytes at `offset` (offset + out.size() <= size(), checked by the caller)
  // into `out`. A mapped file is read with pread() from the page cache rather than through the
  // map, so that scattered small reads (a zip's local headers) neither fault the pages around
  // them into the process nor add them to its resident memory; other sources are copied.
  // Throws io if the read fails.
  void copy_out(std::uint64_t offset, std::span<std::byte> out) const;

  // The bytes [offset, offset + length) as a source of their own (a blob inside a larger file, as
  // torch.distributed.checkpoint writes them), sharing this one's owner; a mapped file's part is
  // still mapped (copy_out reads the file at the part's offset). Throws invalid_argument when the
  // range is not inside this source.
  byte_source sub(std::uint64_t offset, std::uint64_t length, std::string name) const;

 private:
  std::shared_ptr<const int> fd_;  // a mapped file's descriptor, kept open for copy_out()
  std::uint64_t base_ = 0;         // where bytes_ starts in that file (sub())
  std::shared_ptr<const void> owner_;
  std::span<const std::byte> bytes_;
  std::string name_;
  bool mapped_ = false;
  bool owned_ = false;
};

class PTHIO_API sink {
 public:
  virtual ~sink() = default;
  virtual void write(const void* data, std::size_t n) = 0;
  virtual std::uint64_t position() const = 0;
  void write(std::span<const std::byte> b) { write(b.data(), b.size()); }
};

class PTHIO_API memory_sink final : public sink {
 public:
  void write(const void* data, std::size_t n) override;
  std::uint64_t position() const override { return buffer_.size(); }
  std::vector<std::byte>& buffer() noexcept { return buffer_; }

 private:
  std::vector<std::byte> buffer_;
};

class PTHIO_API file_sink final : public sink {
 public:
  // Creates "<target>.pthio-tmp-<random>" in the target's folder (io error when it cannot).
  explicit file_sink(std::filesystem::path target);
  ~file_sink() override;  // removes the temporary unless committed
  file_sink(const file_sink&) = delete;
  file_sink& operator=(const file_sink&) = delete;

  void write(const void* data, std::size_t n) override;
  std::uint64_t position() const override { return position_; }
  // Flushes, fsyncs, renames over the target, fsyncs the folder. Afterwards write() throws
  // invalid_argument. On an io error the target is untouched and the destructor removes the
  // temporary.
  void commit();
  const std::filesystem::path& temp_path() const noexcept { return temp_; }
  // Told the position after every write (a progress display); with it set, a large write goes
  // out in pieces of 64 MiB, each one told.
  std::function<void(std::uint64_t position)> on_write;

 private:
  void flush();
  std::filesystem::path target_;
  std::filesystem::path temp_;
  int fd_ = -1;
  std::uint64_t position_ = 0;
  std::vector<std::byte> buffer_;
  bool committed_ = false;
};

}  // namespace pthio
