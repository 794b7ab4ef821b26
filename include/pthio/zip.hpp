// pthio — zip: the container of torch checkpoints (APPNOTE 6.3.x subset).
//
// Layout torch writes (caffe2/serialize/inline_container.cc):
//   [local header 30 B + name + extra (zip64, then "FB" padding to a 64-byte data boundary)]
//   [data][data descriptor 16 B, or 24 B with zip64] ... repeated per record
//   [central directory: 46 B + name + extra per record]
//   [zip64 end record "PK\6\6" 56 B][zip64 locator "PK\6\7" 20 B][end record "PK\5\6" 22 B +
//   comment]
// Local headers carry flags 0x0808 (descriptor + UTF-8) with zero CRC and sizes; the central
// directory holds the real values. Records are stored (method 0); other writers may deflate (8).
//
// zip_reader trusts the central directory for sizes and CRCs, reads each local header only to find
// where data starts, and checks relations: every structure inside the file, the central directory
// before the end record, local name equal to central name, data inside the file and not
// overlapping the central directory, entry data ranges not overlapping each other, no duplicate
// names, zip64 values used only where the classic field is 0xFFFF / 0xFFFFFFFF. Stored entries
// are zero-copy spans over the source; deflated ones are inflated into a buffer of exactly the
// declared size (libdeflate), so a zip bomb cannot allocate more than it declares, and the
// declared size is bounded by zip_read_options.
//
// zip_writer writes what torch writes: stored records, data aligned to 64 bytes through an "FB"
// extra field, data descriptors, CRC-32 (libdeflate), zip64 records (always, like torch), per-entry
// zip64 extras once sizes or offsets pass 0xFFFFFFFF, and entry data streamed in pieces.
//
// Errors: zip_reader throws pthio::error(corrupt_zip) with the offset for any broken rule,
// limit_exceeded past zip_read_options' bounds, unsupported for multi-disk archives, encrypted
// entries and compression methods other than 0 and 8, invalid_argument for an entry that is not
// this reader's. zip_writer throws invalid_argument when used out of order (an entry inside an
// entry, a write or add after finish(), more bytes than declared), for an empty name, a name
// with a NUL byte or longer than 65535 bytes, and passes on whatever the sink throws (io).
// Neither is synchronised: read() of a deflated entry caches its inflated copy, so share a reader
// between threads only with a lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pthio/export.hpp"
#include "pthio/io.hpp"

namespace pthio {

struct zip_entry {
  std::string name;
  std::uint64_t local_header_offset = 0;
  std::uint64_t data_offset = 0;      // from the local header
  std::uint64_t compressed_size = 0;  // from the central directory (zip64-resolved)
  std::uint64_t uncompressed_size = 0;
  std::uint32_t crc32 = 0;   // 0 may mean "not computed" (torch's CRC switch)
  std::uint16_t method = 0;  // 0 stored, 8 deflated
  std::uint16_t flags = 0;
};

struct zip_read_options {
  // Largest uncompressed size accepted for a deflated entry (bounds what inflating allocates).
  std::uint64_t max_inflated_size = std::uint64_t{16} << 30;
  // Largest number of entries.
  std::uint64_t max_entries = 10'000'000;
};

// Where a zip file starts; true when `bytes` begins with a local header or is an empty zip.
PTHIO_API bool looks_like_zip(std::span<const std::byte> bytes) noexcept;

// CRC-32 (ISO-HDLC, as zip) through libdeflate; `crc` continues a running value.
PTHIO_API std::uint32_t crc32(std::span<const std::byte> bytes, std::uint32_t crc = 0) noexcept;
// The CRC-32 of A followed by B from crc32(A), crc32(B) and B's length: pieces of one record
// checked on several threads give the record's CRC-32 without reading it again.
PTHIO_API std::uint32_t crc32_combine(std::uint32_t crc_a, std::uint32_t crc_b,
                                      std::uint64_t length_b) noexcept;

class PTHIO_API zip_reader {
 public:
  // Parses the archive's structure; throws pthio::error(corrupt_zip) with the offset.
  explicit zip_reader(byte_source source, zip_read_options options = {});

  const std::vector<zip_entry>& entries() const noexcept { return entries_; }
  const zip_entry* find(std::string_view name) const;
  const byte_source& source() const noexcept { return source_; }

  // The entry's bytes: a zero-copy span for a stored entry; for a deflated one, a span over an
  // inflated copy that lives as long as the reader. Verifies the CRC when `verify_crc` and the
  // central directory's CRC is not 0 (throws corrupt_zip on mismatch).
  std::span<const std::byte> read(const zip_entry& e, bool verify_crc = false) const;
  // Owner keeping read()'s bytes alive (the source's owner, or the inflated buffer).
  std::shared_ptr<const void> owner_of(const zip_entry& e) const;
  // Recomputes the CRC-32 of the entry's uncompressed bytes.
  std::uint32_t compute_crc(const zip_entry& e) const;

 private:
  byte_source source_;
  zip_read_options options_;
  std::vector<zip_entry> entries_;
  // Names to entries: open addressing over entries_ (slot = entry index + 1, 0 empty), a power
  // of two at least twice the entry count; indices, so copies of the reader stay valid.
  std::vector<std::uint32_t> by_name_;
  std::size_t slot_of(std::string_view name) const noexcept;
  mutable std::unordered_map<std::size_t, std::shared_ptr<std::vector<std::byte>>> inflated_;
};

class PTHIO_API zip_writer {
 public:
  // torch's alignment of entry data (PyTorchStreamWriter's kFieldAlignment).
  static constexpr std::uint32_t default_alignment = 64;
  // Writes to `out`, which must outlive the writer. Alignment of entry data: 1 to 32768.
  explicit zip_writer(sink& out, std::uint32_t alignment = default_alignment);
  ~zip_writer();
  zip_writer(const zip_writer&) = delete;
  zip_writer& operator=(const zip_writer&) = delete;

  // Whether entries written from now on get a CRC-32 (default); without, their CRC field is 0, as
  // torch 2.5+ writes after torch.serialization.set_crc32_options(False). Readers that check
  // CRCs (pthio, unzip -t) take 0 as "absent" only if they know that convention.
  void set_compute_crc(bool on) noexcept { compute_crc_ = on; }

  // A whole entry at once.
  void add(std::string_view name, std::span<const std::byte> data);
  // Streaming: begin, any number of write()s, end. Pass the entry's size when known: torch
  // sizes the local header's zip64 field and its flags from it (an empty entry has no data
  // descriptor), so only then are the bytes exactly torch's; end_entry() checks it was met.
  void begin_entry(std::string_view name, std::optional<std::uint64_t> size = std::nullopt);
  void write(std::span<const std::byte> data);
  void end_entry();
  // Central directory and end records; the writer is then finished.
  void finish();

  // Announces the contents of entries to be written next, in this order, each the whole data of
  // one entry (with add(), or begin_entry() and write()s of consecutive pieces of it): their
  // CRC-32s are computed on a second thread from now on, so that writing them waits for none.
  // The bytes must stay valid and unchanged until finish() or the writer's destruction (the
  // thread reads every announced span, in order, whether or not its entry is written as
  // announced). An entry whose data is not the next announced span (other entries may come
  // between) is checksummed as usual. Does nothing without CRCs, on one core, when no thread can
  // be started, or when called twice.
  void crc_ahead(std::vector<std::span<const std::byte>> contents);
  // How many entries took their CRC-32 from crc_ahead's thread.
  std::size_t checksummed_ahead() const noexcept { return checksummed_ahead_; }

 private:
  struct written {
    std::string name;
    std::uint64_t local_offset;
    std::uint64_t size;
    std::uint32_t crc;
    std::uint16_t flags;
  };
  sink& out_;
  std::uint32_t alignment_;
  std::vector<written> done_;
  bool in_entry_ = false;
  bool finished_ = false;
  std::string cur_name_;
  std::uint64_t cur_local_ = 0;
  std::uint64_t cur_size_ = 0;
  std::uint32_t cur_crc_ = 0;
  std::optional<std::uint64_t> cur_declared_;
  // Computes the CRC-32 of large writes on a second thread while this one writes them.
  std::unique_ptr<class crc_worker> crc_worker_;
  // CRC-32s of announced entries (crc_ahead), computed ahead of their writes.
  std::unique_ptr<class crc_pipeline> ahead_;
  std::size_t ahead_next_ = 0;   // the announced span the next entry should be
  bool cur_ahead_ = false;       // the open entry's bytes so far are a prefix of that span
  bool cur_left_ahead_ = false;  // the open entry began as that span, then left it
  std::size_t checksummed_ahead_ = 0;
  void write_pieces(std::span<const std::byte> data, bool crc);
  bool compute_crc_ = true;
};

}  // namespace pthio
