// zip_reader: the end records, the central directory and the local headers, checked against each
// other through one byte_reader (APPNOTE 6.3.10 section numbers cited below).
#include <libdeflate.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>

#include "../byte_reader.h"
#include "format.h"
#include "pthio/error.hpp"
#include "pthio/zip.hpp"

namespace pthio {

namespace {

using detail::byte_reader;
using detail::checked_add;

using namespace detail::zip;

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

std::string hex16(std::uint16_t v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%04x", v);
  return buf;
}

// Entry names are bytes from the file: control bytes are shown escaped in messages.
std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

std::string in_quotes(std::string_view s) { return "\"" + printable(s) + "\""; }

std::string entry_context(const std::string& file, std::string_view name) {
  return file + ": " + printable(name);
}

// Errors that name an entry. The context text is built only when one is thrown: building it for
// every entry cost a tenth of parsing 10,000 entries (BENCHMARKS.md).
struct entry_errors {
  const std::string& file;
  std::string_view name;
  [[noreturn]] void fail_at(std::uint64_t at, const std::string& message) const {
    byte_reader({}, errc::corrupt_zip, entry_context(file, name)).fail_at(at, message);
  }
  [[noreturn]] void fail_kind(errc kind, std::uint64_t at, const std::string& message) const {
    byte_reader({}, errc::corrupt_zip, entry_context(file, name)).fail_kind(kind, at, message);
  }
};

std::string method_name(std::uint16_t m) {
  switch (m) {
    case 1: return "shrink";
    case 6: return "implode";
    case 9: return "deflate64";
    case 12: return "bzip2";
    case 14: return "lzma";
    case 93: return "zstd";
    case 95: return "xz";
    case 98: return "ppmd";
    case 99: return "AE-x encryption";
    default: return "unknown";
  }
}

// Guards zip_reader::inflated_ (read() is const and may be called from several threads).
std::mutex inflated_mutex;

struct decompressor_deleter {
  void operator()(libdeflate_decompressor* d) const noexcept { libdeflate_free_decompressor(d); }
};

}  // namespace

bool looks_like_zip(std::span<const std::byte> bytes) noexcept {
  auto starts = [&](std::uint32_t sig) {
    if (bytes.size() < 4) return false;
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i)
      v = (v << 8) | static_cast<std::uint8_t>(bytes[static_cast<std::size_t>(i)]);
    return v == sig;
  };
  return starts(local_header_sig) || (bytes.size() >= end_size && starts(end_sig));
}

std::uint32_t crc32(std::span<const std::byte> bytes, std::uint32_t crc) noexcept {
  // libdeflate returns the initial value for a null buffer, whatever `crc` was.
  if (bytes.empty()) return crc;
  return libdeflate_crc32(crc, bytes.data(), bytes.size());
}

namespace {

// CRC-32 arithmetic: polynomials over GF(2) modulo zip's generator, in the reflected bit order the
// CRC itself uses (the x^0 coefficient in the top bit). Appending n zero bytes to a message
// multiplies its CRC register by x^(8n); the CRC of A then B is that product of A's CRC, xor B's.
constexpr std::uint32_t crc_poly = 0xEDB88320u;  // zip's generator, reflected
constexpr std::uint32_t crc_one = 0x80000000u;   // the polynomial 1

// a · b mod the generator.
constexpr std::uint32_t gf2_multiply(std::uint32_t a, std::uint32_t b) noexcept {
  std::uint32_t product = 0;
  for (std::uint32_t bit = crc_one; bit != 0; bit >>= 1) {
    if (a & bit) product ^= b;
    b = (b & 1) ? (b >> 1) ^ crc_poly : b >> 1;  // b · x
  }
  return product;
}

// x^(2^k) mod the generator for k = 0..63: squaring the previous one.
struct x_powers {
  std::uint32_t of[64] = {};
  constexpr x_powers() {
    of[0] = crc_one >> 1;  // x
    for (int k = 1; k < 64; ++k) of[k] = gf2_multiply(of[k - 1], of[k - 1]);
  }
};
constexpr x_powers powers_of_x;

}  // namespace

std::uint32_t crc32_combine(std::uint32_t crc_a, std::uint32_t crc_b,
                            std::uint64_t length_b) noexcept {
  // x^(8 · length_b) by its binary expansion: 8 · length_b = length_b shifted left by 3 bits.
  std::uint32_t shift = crc_one;
  int k = 3;
  for (std::uint64_t n = length_b; n != 0 && k < 64; n >>= 1, ++k)
    if (n & 1) shift = gf2_multiply(powers_of_x.of[k], shift);
  return gf2_multiply(shift, crc_a) ^ crc_b;
}

zip_reader::zip_reader(byte_source source, zip_read_options options)
    : source_(std::move(source)), options_(options) {
  const std::string& file = source_.name();
  const std::span<const std::byte> all = source_.bytes();
  const std::uint64_t size = all.size();
  byte_reader r(all, errc::corrupt_zip, file);

  // --- End of central directory record (APPNOTE 4.3.16), found scanning back over a comment of
  // at most 65535 bytes; its comment length must reach exactly to the end of the file.
  if (size < end_size)
    r.fail_at(0, "zip: " + std::to_string(size) +
                     " bytes are too few for an end-of-central-directory record (22 bytes)");
  std::uint64_t end_pos = 0;
  bool found = false;
  std::uint64_t mismatched_at = 0;
  bool mismatched = false;
  const std::uint64_t lowest = size - end_size > max_comment ? size - end_size - max_comment : 0;
  for (std::uint64_t p = size - end_size + 1; p-- > lowest;) {
    r.seek(p);
    if (r.le32() != end_sig) continue;
    r.seek(p + end_record::comment_length);
    if (r.le16() == size - p - end_size) {
      end_pos = p;
      found = true;
      break;
    }
    if (!mismatched) {
      mismatched = true;
      mismatched_at = p;
    }
  }
  if (!found) {
    if (mismatched) {
      r.seek(mismatched_at + end_record::comment_length);
      std::uint16_t len = r.le16();
      r.fail_at(mismatched_at, "zip: end-of-central-directory comment length " +
                                   std::to_string(len) + " does not match the " +
                                   std::to_string(size - mismatched_at - end_size) +
                                   " bytes after the record");
    }
    r.fail_at(size, "zip: no end-of-central-directory record (signature PK\\5\\6) in the last " +
                        std::to_string(std::min<std::uint64_t>(size, end_size + max_comment)) +
                        " bytes");
  }

  r.seek(end_pos + 4);
  std::uint16_t disk = r.le16();
  std::uint16_t cd_disk = r.le16();
  std::uint16_t entries_on_disk16 = r.le16();
  std::uint16_t entries16 = r.le16();
  std::uint32_t cd_size32 = r.le32();
  std::uint32_t cd_offset32 = r.le32();

  std::uint64_t entries = entries16;
  std::uint64_t entries_on_disk = entries_on_disk16;
  std::uint64_t cd_size = cd_size32;
  std::uint64_t cd_offset = cd_offset32;
  std::uint64_t disk_number = disk;
  std::uint64_t cd_disk_number = cd_disk;
  std::uint64_t records_start = end_pos;  // the central directory must end before this

  // --- Zip64 end of central directory locator (APPNOTE 4.3.15) right before the end record, and
  // the zip64 end record (4.3.14) it points to. torch always writes both.
  bool has_locator = false;
  if (end_pos >= zip64_locator_size) {
    r.seek(end_pos - zip64_locator_size);
    has_locator = r.le32() == zip64_locator_sig;
  }
  if (has_locator) {
    const std::uint64_t loc_pos = end_pos - zip64_locator_size;
    std::uint32_t z64_disk = r.le32();
    std::uint64_t z64_pos = r.le64();
    std::uint32_t total_disks = r.le32();
    if (total_disks > 1 || z64_disk != 0)
      r.fail_kind(errc::unsupported, loc_pos,
                  "zip: multi-disk archives are not supported (zip64 locator names disk " +
                      std::to_string(z64_disk) + " of " + std::to_string(total_disks) + ")");
    std::uint64_t z64_end;
    if (!checked_add(z64_pos, zip64_end_size, z64_end) || z64_end > loc_pos)
      r.fail_at(loc_pos, "zip: zip64 end record offset " + std::to_string(z64_pos) +
                             " does not leave its 56 bytes before the zip64 locator at " +
                             std::to_string(loc_pos));
    r.seek(z64_pos);
    if (r.le32() != zip64_end_sig)
      r.fail_at(z64_pos, "zip: no zip64 end record signature (PK\\6\\6) at offset " +
                             std::to_string(z64_pos) + " named by the zip64 locator");
    std::uint64_t record_size = r.le64();
    std::uint64_t record_end;
    if (record_size < zip64_end_size - zip64_end_size_field_excludes ||
        !checked_add(z64_pos + zip64_end_size_field_excludes, record_size, record_end) ||
        record_end > loc_pos)
      r.fail_at(z64_pos + zip64_end_record::size,
                "zip: zip64 end record size " + std::to_string(record_size) +
                    " is below 44 or runs past the zip64 locator");
    r.skip(4);  // version made by, version needed
    std::uint32_t z64_disk_number = r.le32();
    std::uint32_t z64_cd_disk = r.le32();
    std::uint64_t z64_entries_on_disk = r.le64();
    std::uint64_t z64_entries = r.le64();
    std::uint64_t z64_cd_size = r.le64();
    std::uint64_t z64_cd_offset = r.le64();

    // APPNOTE 4.4.1.4: a classic field holds 0xFFFF / 0xFFFFFFFF when the zip64 one is meant;
    // otherwise the two must agree.
    auto merge = [&](std::uint64_t& classic, std::uint64_t saturated, std::uint64_t wide,
                     std::uint64_t at, const char* what) {
      if (classic == saturated) {
        classic = wide;
      } else if (classic != wide) {
        r.fail_at(at, std::string("zip: zip64 end record says ") + what + " " +
                          std::to_string(wide) + " but the end record says " +
                          std::to_string(classic));
      }
    };
    merge(disk_number, u16_max, z64_disk_number, z64_pos + zip64_end_record::disk, "disk number");
    merge(cd_disk_number, u16_max, z64_cd_disk, z64_pos + zip64_end_record::cd_disk,
          "central directory disk");
    merge(entries_on_disk, u16_max, z64_entries_on_disk,
          z64_pos + zip64_end_record::entries_on_disk, "entries on this disk");
    merge(entries, u16_max, z64_entries, z64_pos + zip64_end_record::entries, "entry count");
    merge(cd_size, u32_max, z64_cd_size, z64_pos + zip64_end_record::cd_size,
          "central directory size");
    merge(cd_offset, u32_max, z64_cd_offset, z64_pos + zip64_end_record::cd_offset,
          "central directory offset");
    records_start = z64_pos;
  }

  if (disk_number != 0 || cd_disk_number != 0 || entries_on_disk != entries)
    r.fail_kind(errc::unsupported, end_pos,
                "zip: multi-disk archives are not supported (disk " + std::to_string(disk_number) +
                    ", central directory on disk " + std::to_string(cd_disk_number) + ", " +
                    std::to_string(entries_on_disk) + " of " + std::to_string(entries) +
                    " entries here)");

  // --- Central directory (APPNOTE 4.3.12): inside the file, before the end records.
  std::uint64_t cd_end;
  if (!checked_add(cd_offset, cd_size, cd_end) || cd_end > records_start)
    r.fail_at(end_pos, "zip: central directory at offset " + std::to_string(cd_offset) + " of " +
                           std::to_string(cd_size) + " bytes runs past the end records at offset " +
                           std::to_string(records_start));
  byte_reader cd(
      all.subspan(static_cast<std::size_t>(cd_offset), static_cast<std::size_t>(cd_size)),
      errc::corrupt_zip, file, cd_offset);
  if (entries > options_.max_entries)
    cd.fail_kind(errc::limit_exceeded, 0,
                 "zip: " + std::to_string(entries) + " entries exceed the limit of " +
                     std::to_string(options_.max_entries));
  const std::size_t count = cd.read_count(entries, central_header_size, options_.max_entries,
                                          "zip: central directory entry count");
  entries_.reserve(count);

  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t at = cd.pos();
    if (cd.remaining() < central_header_size)
      cd.fail_at(at, "zip: central directory entry " + std::to_string(i) +
                         " of 46 bytes runs past its end (" + std::to_string(cd.remaining()) +
                         " bytes left)");
    if (cd.le32() != central_header_sig)
      cd.fail_at(
          at, "zip: central directory entry " + std::to_string(i) + " has no signature PK\\1\\2");
    cd.skip(4);  // version made by, version needed
    zip_entry e;
    e.flags = cd.le16();
    e.method = cd.le16();
    cd.skip(4);  // DOS time and date
    e.crc32 = cd.le32();
    std::uint32_t csize32 = cd.le32();
    std::uint32_t usize32 = cd.le32();
    std::uint16_t name_len = cd.le16();
    std::uint16_t extra_len = cd.le16();
    std::uint16_t comment_len = cd.le16();
    cd.skip(8);  // disk number start, internal attributes, external attributes
    std::uint32_t local32 = cd.le32();
    if (std::uint64_t{name_len} + extra_len + comment_len > cd.remaining())
      cd.fail_at(at, "zip: central directory entry " + std::to_string(i) +
                         "'s name, extra field and comment (" +
                         std::to_string(std::uint64_t{name_len} + extra_len + comment_len) +
                         " bytes) run past the end of the central directory (" +
                         std::to_string(cd.remaining()) + " bytes left)");
    std::string_view name = cd.chars(name_len);
    const std::uint64_t extra_at = cd_offset + cd.pos();
    std::span<const std::byte> extra = cd.bytes(extra_len);
    cd.skip(comment_len);

    e.name = std::string(name);
    const entry_errors er{file, name};
    if (name.find('\0') != std::string_view::npos)
      er.fail_at(cd_offset + at + central_header_size, "zip: entry name contains a NUL byte");
    if (e.flags & flag_encrypted)
      er.fail_kind(errc::unsupported, cd_offset + at + central_header::flags,
                   "zip: encrypted entries are not supported");
    if (e.method != method_stored && e.method != method_deflate)
      er.fail_kind(errc::unsupported, cd_offset + at + central_header::method,
                   "zip: compression method " + std::to_string(e.method) + " (" +
                       method_name(e.method) +
                       ") is not supported; only 0 (stored) and 8 (deflate)");

    e.compressed_size = csize32;
    e.uncompressed_size = usize32;
    e.local_header_offset = local32;

    // Zip64 extended information (APPNOTE 4.5.3): the 8-byte values, in this order, of exactly
    // the classic fields that hold 0xFFFFFFFF.
    const bool need_usize = usize32 == u32_max, need_csize = csize32 == u32_max,
               need_local = local32 == u32_max;
    bool have_zip64 = false;
    if (!extra.empty()) {
      byte_reader xr(extra, errc::corrupt_zip, entry_context(file, e.name), extra_at);
      while (!xr.at_end()) {
        const std::uint64_t field_at = xr.pos();
        if (xr.remaining() < extra_header_size)
          xr.fail("zip: " + std::to_string(xr.remaining()) +
                  " stray bytes at the end of the extra field");
        std::uint16_t id = xr.le16();
        std::uint16_t len = xr.le16();
        if (len > xr.remaining())
          xr.fail_at(field_at, "zip: extra field " + hex16(id) + " of " + std::to_string(len) +
                                   " bytes runs past the " + std::to_string(xr.remaining()) +
                                   " bytes left");
        std::span<const std::byte> data = xr.bytes(len);
        if (id != zip64_extra_id || have_zip64) continue;
        have_zip64 = true;
        byte_reader zr(data, errc::corrupt_zip, entry_context(file, e.name),
                       extra_at + field_at + extra_header_size);
        auto take = [&](bool needed, std::uint64_t& out, const char* what) {
          if (!needed) return;
          if (zr.remaining() < 8)
            zr.fail(std::string("zip: zip64 extra field of ") + std::to_string(len) +
                    " bytes lacks the " + what);
          out = zr.le64();
        };
        take(need_usize, e.uncompressed_size, "uncompressed size");
        take(need_csize, e.compressed_size, "compressed size");
        take(need_local, e.local_header_offset, "local header offset");
      }
    }
    if ((need_usize || need_csize || need_local) && !have_zip64)
      er.fail_at(cd_offset + at,
                 "zip: a size or offset is 0xFFFFFFFF but there is no zip64 extra field");
    if (e.method == method_stored && e.compressed_size != e.uncompressed_size)
      er.fail_at(cd_offset + at + central_header::compressed_size,
                 "zip: stored entry's compressed size " + std::to_string(e.compressed_size) +
                     " differs from its uncompressed size " + std::to_string(e.uncompressed_size));
    entries_.push_back(std::move(e));
  }
  if (!cd.at_end())
    cd.fail("zip: " + std::to_string(cd.remaining()) +
            " bytes left in the central directory after its " + std::to_string(count) + " entries");

  // --- Local headers (APPNOTE 4.3.7): only where the data starts; sizes and CRC come from the
  // central directory (torch sets bit 3 and leaves them zero here, APPNOTE 4.4.4).
  // Read with byte_source::copy_out: from a mapped file, pread() rather than a fault on each
  // record's first page, which would map the pages around it too (a 1,000-record file would add
  // tens of MiB of page cache to the process's resident memory and most of the open time).
  // When records are small (on average under 64 KiB apart), many headers share each page and the
  // map's faults are the cheaper way: one per page rather than a system call per header.
  std::vector<std::byte> local(local_header_size + 256);
  const bool scattered =
      all.size() / std::max<std::size_t>(entries_.size(), 1) >= (std::size_t{64} << 10);
  auto copy_out = [&](std::uint64_t offset, std::span<std::byte> out) {
    if (scattered)
      source_.copy_out(offset, out);
    else if (!out.empty())
      std::memcpy(out.data(), all.data() + offset, out.size());
  };
  for (zip_entry& e : entries_) {
    const entry_errors le{file, e.name};
    const std::uint64_t lo = e.local_header_offset;
    std::uint64_t fixed_end;
    if (!checked_add(lo, local_header_size, fixed_end) || fixed_end > cd_offset)
      le.fail_at(lo, "zip: local header at offset " + std::to_string(lo) +
                         " does not fit before the central directory at " +
                         std::to_string(cd_offset));
    // The fixed part and, in the same read, up to 256 bytes of the name (all of torch's names).
    const std::size_t first =
        static_cast<std::size_t>(std::min<std::uint64_t>(local.size(), cd_offset - lo));
    copy_out(lo, std::span(local).first(first));
    // first >= 30: the fixed part ends at or before the central directory (checked above).
    if (detail::load_le(local.data(), 4) != local_header_sig)
      le.fail_at(lo, "zip: no local header signature (PK\\3\\4) at offset " + std::to_string(lo));
    const std::uint16_t method =
        static_cast<std::uint16_t>(detail::load_le(local.data() + local_header::method, 2));
    const std::uint16_t name_len =
        static_cast<std::uint16_t>(detail::load_le(local.data() + local_header::name_length, 2));
    const std::uint16_t extra_len =
        static_cast<std::uint16_t>(detail::load_le(local.data() + local_header::extra_length, 2));
    const std::uint64_t data_offset = fixed_end + name_len + extra_len;
    if (data_offset > cd_offset)
      le.fail_at(lo, "zip: local header's name and extra field run into the central directory at " +
                         std::to_string(cd_offset));
    if (local_header_size + name_len > first) {
      local.resize(local_header_size + name_len);
      copy_out(lo, local);
    }
    std::string_view local_name(reinterpret_cast<const char*>(local.data()) + local_header_size,
                                name_len);
    if (local_name != e.name)
      le.fail_at(fixed_end, "zip: local header names " + in_quotes(local_name) +
                                " but the central directory " + in_quotes(e.name));
    if (method != e.method)
      le.fail_at(lo + local_header::method,
                 "zip: local header says method " + std::to_string(method) +
                     " but the central directory " + std::to_string(e.method));
    std::uint64_t data_end;
    if (!checked_add(data_offset, e.compressed_size, data_end) || data_end > cd_offset)
      le.fail_at(data_offset, "zip: data of " + std::to_string(e.compressed_size) +
                                  " bytes at offset " + std::to_string(data_offset) +
                                  " runs past the central directory at " +
                                  std::to_string(cd_offset));
    e.data_offset = data_offset;
  }

  // --- No two entries share bytes: headers and data, in file order.
  std::vector<std::size_t> order(entries_.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  const auto by_offset = [&](std::size_t a, std::size_t b) {
    return entries_[a].local_header_offset < entries_[b].local_header_offset;
  };
  // Writers list entries in file order (torch does): then there is nothing to sort.
  if (!std::is_sorted(order.begin(), order.end(), by_offset))
    std::sort(order.begin(), order.end(), by_offset);
  for (std::size_t k = 1; k < order.size(); ++k) {
    const zip_entry& prev = entries_[order[k - 1]];
    const zip_entry& next = entries_[order[k]];
    if (prev.data_offset + prev.compressed_size > next.local_header_offset)
      byte_reader({}, errc::corrupt_zip, entry_context(file, next.name))
          .fail_at(next.local_header_offset,
                   "zip: entry overlaps " + in_quotes(prev.name) + ", whose data runs to offset " +
                       std::to_string(prev.data_offset + prev.compressed_size));
  }

  std::size_t slots = 16;
  while (slots < 2 * entries_.size()) slots *= 2;
  by_name_.assign(slots, 0);
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const std::size_t at = slot_of(entries_[i].name);
    if (by_name_[at] != 0)
      byte_reader({}, errc::corrupt_zip, entry_context(file, entries_[i].name))
          .fail_at(entries_[i].local_header_offset, "zip: duplicate entry name");
    by_name_[at] = static_cast<std::uint32_t>(i + 1);
  }
}

// The slot holding `name`, or the empty slot where it would go (linear probing; the table is at
// most half full, so a probe always ends).
std::size_t zip_reader::slot_of(std::string_view name) const noexcept {
  const std::size_t mask = by_name_.size() - 1;
  for (std::size_t at = std::hash<std::string_view>{}(name)&mask;; at = (at + 1) & mask) {
    const std::uint32_t k = by_name_[at];
    if (k == 0 || entries_[k - 1].name == name) return at;
  }
}

const zip_entry* zip_reader::find(std::string_view name) const {
  const std::uint32_t k = by_name_[slot_of(name)];
  return k == 0 ? nullptr : &entries_[k - 1];
}

namespace {

// The index of `e` among `entries`: by address when it is one of them, else by name (a copy of
// an entry); the reader then uses its own, validated, copy.
std::size_t index_of(const zip_reader& zip, const zip_entry& e) {
  const auto& entries = zip.entries();
  if (!entries.empty() && &e >= entries.data() && &e < entries.data() + entries.size())
    return static_cast<std::size_t>(&e - entries.data());
  const zip_entry* mine = zip.find(e.name);
  if (!mine || mine->local_header_offset != e.local_header_offset)
    throw error(errc::invalid_argument,
                "zip: " + in_quotes(e.name) + " is not an entry of this archive",
                zip.source().name());
  return static_cast<std::size_t>(mine - entries.data());
}

}  // namespace

std::span<const std::byte> zip_reader::read(const zip_entry& entry, bool verify_crc) const {
  const std::size_t index = index_of(*this, entry);
  const zip_entry& e = entries_[index];
  const entry_errors r{source_.name(), e.name};
  // Inside the file: the constructor checked every entry's data against the central directory.
  std::span<const std::byte> stored = source_.bytes().subspan(
      static_cast<std::size_t>(e.data_offset), static_cast<std::size_t>(e.compressed_size));

  std::span<const std::byte> out;
  if (e.method == method_stored) {
    out = stored;
  } else {
    std::shared_ptr<std::vector<std::byte>> buf;
    {
      std::lock_guard<std::mutex> lock(inflated_mutex);
      auto it = inflated_.find(index);
      if (it != inflated_.end()) buf = it->second;
    }
    if (!buf) {
      // Deflate codes at most 258 bytes in 2 bits: a larger claim is a lie, refused before
      // allocating.
      std::uint64_t ratio_bound;
      if (!detail::checked_mul(e.compressed_size, 1032, ratio_bound) ||
          e.uncompressed_size > ratio_bound + 258)
        r.fail_at(e.data_offset, "zip: deflated entry declares " +
                                     std::to_string(e.uncompressed_size) + " bytes from " +
                                     std::to_string(e.compressed_size) +
                                     " compressed bytes, beyond deflate's 1032:1 limit");
      if (e.uncompressed_size > options_.max_inflated_size || e.uncompressed_size > SIZE_MAX / 2)
        r.fail_kind(errc::limit_exceeded, e.data_offset,
                    "zip: deflated entry declares " + std::to_string(e.uncompressed_size) +
                        " bytes, above the limit of " + std::to_string(options_.max_inflated_size));
      try {
        buf =
            std::make_shared<std::vector<std::byte>>(static_cast<std::size_t>(e.uncompressed_size));
      } catch (const std::bad_alloc&) {
        r.fail_kind(
            errc::limit_exceeded, e.data_offset,
            "zip: cannot allocate " + std::to_string(e.uncompressed_size) + " bytes to inflate");
      }
      std::unique_ptr<libdeflate_decompressor, decompressor_deleter> d(
          libdeflate_alloc_decompressor());
      if (!d)
        r.fail_kind(errc::limit_exceeded, e.data_offset, "zip: cannot allocate a decompressor");
      std::byte dummy{};
      void* dst = buf->empty() ? static_cast<void*>(&dummy) : static_cast<void*>(buf->data());
      std::size_t produced = 0;
      libdeflate_result res = libdeflate_deflate_decompress(d.get(), stored.data(), stored.size(),
                                                            dst, buf->size(), &produced);
      if (res == LIBDEFLATE_INSUFFICIENT_SPACE)
        r.fail_at(e.data_offset, "zip: deflate stream inflates to more than the declared " +
                                     std::to_string(e.uncompressed_size) + " bytes");
      if (res != LIBDEFLATE_SUCCESS) r.fail_at(e.data_offset, "zip: corrupt deflate stream");
      if (produced != buf->size())
        r.fail_at(e.data_offset, "zip: deflate stream inflates to " + std::to_string(produced) +
                                     " bytes, fewer than the declared " +
                                     std::to_string(e.uncompressed_size));
      std::lock_guard<std::mutex> lock(inflated_mutex);
      buf = inflated_.emplace(index, std::move(buf)).first->second;  // another thread may have won
    }
    out = std::span<const std::byte>(buf->data(), buf->size());
  }

  // CRC 0 is what torch writes with CRC computation switched off: treated as absent.
  if (verify_crc && e.crc32 != 0) {
    std::uint32_t got = pthio::crc32(out);
    if (got != e.crc32)
      r.fail_at(e.data_offset,
                "zip: CRC-32 mismatch: expected " + hex32(e.crc32) + " got " + hex32(got));
  }
  return out;
}

std::shared_ptr<const void> zip_reader::owner_of(const zip_entry& entry) const {
  const std::size_t index = index_of(*this, entry);
  if (entries_[index].method == method_stored) return source_.owner();
  read(entries_[index]);
  std::lock_guard<std::mutex> lock(inflated_mutex);
  return inflated_.at(index);
}

std::uint32_t zip_reader::compute_crc(const zip_entry& e) const {
  std::span<const std::byte> whole = read(e, false);  // checks the entry; touches no stored byte
  if (e.method != method_stored || !source_.is_mapped()) return pthio::crc32(whole);
  // A stored entry of a mapped file is read with pread() in bounded pieces: through the map, every
  // page checked would stay resident, and `pthio verify` of a 70 GB file would hold all of it.
  constexpr std::size_t piece = std::size_t{4} << 20;
  std::vector<std::byte> buf(std::min(piece, whole.size()));
  std::uint32_t crc = 0;
  const auto at = static_cast<std::uint64_t>(whole.data() - source_.bytes().data());
  for (std::size_t off = 0; off < whole.size(); off += buf.size()) {
    const std::size_t n = std::min(buf.size(), whole.size() - off);
    source_.copy_out(at + off, {buf.data(), n});
    crc = pthio::crc32({buf.data(), n}, crc);
  }
  return crc;
}

}  // namespace pthio
