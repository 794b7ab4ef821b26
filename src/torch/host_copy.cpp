// Eager host copies of stored records, after the pickle, on several threads (internal.h).
#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <system_error>
#include <thread>

#include "internal.h"

namespace pthio::detail {

void host_copies::add(const zip_reader& zip, const zip_entry& e, std::span<const std::byte> src,
                      std::byte* dst, dtype t, bool swap, bool verify) {
  const std::byte* base = zip.source().bytes().data();
  records_.push_back({&zip.source(), &zip, &e, static_cast<std::uint64_t>(src.data() - base),
                      src.size(), dst, t, swap, verify && e.crc32 != 0});
  bytes_ += src.size();
}

void host_copies::add(const byte_source& source, std::span<const std::byte> src, std::byte* dst) {
  records_.push_back({&source, nullptr, nullptr,
                      static_cast<std::uint64_t>(src.data() - source.bytes().data()), src.size(),
                      dst, dtype::uint8, false, false});
  bytes_ += src.size();
}

void host_copies::finish(unsigned threads) {
  if (records_.empty()) return;
  // Pieces a multiple of every element size, so that each swaps whole elements.
  constexpr std::size_t piece_bytes = std::size_t{4} << 20;
  struct piece {
    std::size_t record;
    std::size_t offset;
    std::size_t length;
    std::uint32_t crc;
    std::exception_ptr failed;  // the source's read error
  };
  std::vector<piece> pieces;
  for (std::size_t i = 0; i < records_.size(); ++i)
    for (std::size_t at = 0; at < records_[i].length; at += piece_bytes)
      pieces.push_back({i, at, std::min(piece_bytes, records_[i].length - at), 0, {}});

  // A mapped file is read with pread() (byte_source::copy_out), not through its map: the file's
  // pages are never mapped into the process, so an eager load's resident memory is its tensors,
  // not its tensors and the file.
  auto run = [this](piece& p) noexcept {
    const record& r = records_[p.record];
    std::byte* to = r.dst + p.offset;
    try {
      r.source->copy_out(r.offset + p.offset, {to, p.length});
    } catch (...) {
      p.failed = std::current_exception();
      return;
    }
    if (r.verify) p.crc = crc32({to, p.length});  // from the copy, while it is in the cache
    if (r.swap) swap_bytes(to, p.length, r.type);
  };
  // Automatic: every core from 8 MiB on; below, starting threads costs more than they save.
  unsigned n = threads;
  if (n == 0)
    n = bytes_ >= (std::uint64_t{8} << 20) ? std::clamp(std::thread::hardware_concurrency(), 1u, 8u)
                                           : 1u;
  n = static_cast<unsigned>(std::min<std::size_t>(n, pieces.size()));
  if (n <= 1) {
    for (piece& p : pieces) run(p);
  } else {
    std::atomic<std::size_t> next{0};
    auto work = [&] {
      for (std::size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < pieces.size();)
        run(pieces[i]);
    };
    std::vector<std::thread> helpers;
    helpers.reserve(n - 1);
    try {
      for (unsigned k = 1; k < n; ++k) helpers.emplace_back(work);
    } catch (const std::system_error&) {
      // No more threads to be had: the ones started and this one share the pieces.
    }
    work();
    for (std::thread& t : helpers) t.join();
  }

  // Each record's CRC-32 from its pieces' in order; the first read error or mismatch is thrown,
  // a mismatch with the reader's error, worded and placed as a sequential load words it.
  std::size_t p = 0;
  for (std::size_t i = 0; i < records_.size(); ++i) {
    std::uint32_t crc = 0;
    for (; p < pieces.size() && pieces[p].record == i; ++p) {
      if (pieces[p].failed) std::rethrow_exception(pieces[p].failed);
      crc = crc32_combine(crc, pieces[p].crc, pieces[p].length);
    }
    const record& r = records_[i];
    if (r.verify && crc != r.entry->crc32) {
      r.zip->read(*r.entry, true);  // throws the reader's CRC-32 error
      throw error(errc::corrupt_zip, "zip: CRC-32 mismatch", r.entry->name);
    }
  }
  records_.clear();
  bytes_ = 0;
}

}  // namespace pthio::detail
