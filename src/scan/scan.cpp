// The static scanner (pthio/scan.hpp): finds every pickle a file holds, however it is packed, runs
// the opcode pass (pickle_pass.h) over each, and judges what the passes found.
#include "pthio/scan.hpp"

#include <libdeflate.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <unordered_map>

#include "../byte_reader.h"
#include "../torch/internal.h"
#include "../zip/format.h"
#include "pickle_pass.h"
#include "pthio/checkpoint.hpp"
#include "pthio/dcp.hpp"
#include "pthio/dtype.hpp"
#include "pthio/io.hpp"
#include "pthio/pickle.hpp"

namespace pthio {

std::string_view scan_verdict_name(scan_verdict v) noexcept {
  switch (v) {
    case scan_verdict::safe: return "safe";
    case scan_verdict::unsafe: return "unsafe";
    case scan_verdict::unknown: return "unknown";
  }
  return "?";
}

namespace {

using detail::load_le;

constexpr int max_depth = 8;                             // zips in zips in ...
constexpr std::uint64_t max_inflated = 64ull << 20;      // one member
constexpr std::uint64_t inflate_budget = 1024ull << 20;  // the whole scan
constexpr std::size_t max_zip_entries = 1u << 20;        // central directory entries followed

enum class judge { weights_only, dcp_metadata };

std::uint32_t le32(std::span<const std::byte> b, std::size_t at) {
  return static_cast<std::uint32_t>(load_le(b.data() + at, 4));
}
std::uint16_t le16(std::span<const std::byte> b, std::size_t at) {
  return static_cast<std::uint16_t>(load_le(b.data() + at, 2));
}
bool sig(std::span<const std::byte> b, std::size_t at, std::uint32_t s) {
  return at <= b.size() && b.size() - at >= 4 && le32(b, at) == s;
}
// The zip vocabulary the reader and writer share (src/zip/format.h).
namespace zipf = detail::zip;
constexpr std::uint32_t local_sig = zipf::local_header_sig, central_sig = zipf::central_header_sig,
                        end_sig = zipf::end_sig, end64_sig = zipf::zip64_end_sig,
                        locator_sig = zipf::zip64_locator_sig;

std::string join(const std::string& parent, const std::string& name) {
  return parent.empty() ? name : parent + ": " + name;
}

// A record name that says pickle, in any case: torch finds records case-insensitively (miniz),
// so its data.pkl may be spelled DATA.PKL.
bool pickle_named(std::string_view name) {
  auto ends_with = [&](std::string_view tail) {
    if (name.size() < tail.size()) return false;
    for (std::size_t i = 0; i < tail.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(name[name.size() - tail.size() + i])) != tail[i])
        return false;
    return true;
  };
  return ends_with(".pkl") || ends_with(".pickle");
}

// The end of central directory record: where it is, where the directory is, and how far the
// archive sits from where its offsets say (data prepended to it).
struct zip_end {
  std::size_t eocd = 0;
  std::uint64_t cd_size = 0, entries = 0;
  // Where a central directory is, and by how much its members' offsets are moved there: just
  // before the end record (as Python's zipfile finds it; moved when data was prepended), and
  // where the end record's offset says (as miniz, torch's reader, finds it). Both, when they
  // differ: a reader may take either.
  struct dir {
    std::uint64_t start = 0;
    std::int64_t shift = 0;
  };
  std::vector<dir> dirs;
  std::size_t end = 0;  // past the record and its comment
};

std::optional<zip_end> find_zip_end(std::span<const std::byte> b, std::vector<std::string>* notes) {
  if (b.size() < zipf::end_size) return std::nullopt;
  const std::size_t lo = b.size() > 65557 ? b.size() - 65557 : 0;
  for (std::size_t i = b.size() - zipf::end_size;; --i) {
    if (sig(b, i, end_sig)) {
      zip_end z;
      z.eocd = i;
      const std::size_t comment = le16(b, i + zipf::end_record::comment_length);
      z.end = i + zipf::end_size + comment;
      if (z.end > b.size()) z.end = b.size();
      z.entries = le16(b, i + 10);
      z.cd_size = le32(b, i + 12);
      std::uint64_t cd_offset = le32(b, i + 16);
      std::size_t dir_end = i;  // the directory ends where the (zip64) end record starts
      if ((z.entries == 0xffff || z.cd_size == 0xffffffffu || cd_offset == 0xffffffffu) &&
          i >= zipf::zip64_locator_size && sig(b, i - zipf::zip64_locator_size, locator_sig)) {
        // zip64: the record usually sits just before its locator.
        const std::uint64_t stated = load_le(b.data() + i - zipf::zip64_locator_size + 8, 8);
        std::optional<std::size_t> at;
        constexpr std::uint64_t before = zipf::zip64_locator_size + zipf::zip64_end_size;
        if (i >= before && sig(b, i - before, end64_sig))
          at = i - before;
        else if (b.size() >= zipf::zip64_end_size && stated <= b.size() - zipf::zip64_end_size &&
                 sig(b, stated, end64_sig))
          at = static_cast<std::size_t>(stated);
        if (at) {
          z.entries = load_le(b.data() + *at + zipf::zip64_end_record::entries, 8);
          z.cd_size = load_le(b.data() + *at + zipf::zip64_end_record::cd_size, 8);
          cd_offset = load_le(b.data() + *at + zipf::zip64_end_record::cd_offset, 8);
          dir_end = *at;
        }
      }
      // Where the directory really is: just before its end record (as Python's zipfile finds
      // it), or where its offset says.
      if (z.cd_size <= dir_end && (sig(b, dir_end - z.cd_size, central_sig) || z.entries == 0)) {
        const std::uint64_t at = dir_end - z.cd_size;
        z.dirs.push_back({at, cd_offset <= b.size() ? static_cast<std::int64_t>(at) -
                                                          static_cast<std::int64_t>(cd_offset)
                                                    : 0});
      }
      if (cd_offset < b.size() && sig(b, cd_offset, central_sig) &&
          (z.dirs.empty() || z.dirs.front().start != cd_offset))
        z.dirs.push_back({cd_offset, 0});
      if (!z.dirs.empty()) return z;
      if (notes)
        notes->push_back("an end of central directory record at offset " + std::to_string(i) +
                         " names no central directory");
    }
    if (i == lo) break;
  }
  return std::nullopt;
}

// What a member's bytes turned out to be.
enum class blob_kind { data, pickle, container };

class scanner {
 public:
  scan_report report;

  void problem(const std::string& member, std::uint64_t offset, std::string message) {
    if (report.errors.size() < scan_max_errors)
      report.errors.push_back({member, offset, std::move(message)});
    ++report.error_count;
  }

  // Records what one pass found, its offsets moved by `base`.
  void add(const detail::pass_result& p, const std::string& member, std::uint64_t base, judge j) {
    for (const auto& imp : p.imports) {
      const bool finding = imp.module.empty();
      std::string name = finding ? imp.name : imp.module + "." + imp.name;
      auto [it, fresh] = index_.emplace(name, report.globals.size());
      if (fresh) report.globals.push_back({name, 0, {}, false, false});
      scan_global& g = report.globals[it->second];
      g.count += imp.count;
      for (const auto& site : imp.sites)
        if (g.where.size() < scan_max_sites)
          g.where.push_back({member, base + site.offset, std::string(site.op)});
      const bool danger = !finding && is_dangerous_global(imp.module, imp.name);
      bool allowed = false;
      if (!finding && !danger)
        allowed = j == judge::dcp_metadata ? is_dcp_metadata_global(imp.module, imp.name)
                                           : is_builtin_safe_global(imp.module, imp.name) ||
                                                 torch_globals().contains(imp.module, imp.name);
      g.dangerous |= danger;
      g.unsafe |= !allowed;
    }
    for (const auto& e : p.errors) problem(member, base + e.offset, e.message);
    if (p.error_count > p.errors.size()) {
      report.error_count += p.error_count - p.errors.size();
    }
  }

  // Every pickle in `b`, through errors.
  void pickles(std::span<const std::byte> b, const std::string& member, std::uint64_t base,
               judge j = judge::weights_only) {
    add(detail::pickle_pass(b, detail::pass_extent::all), member, base, j);
  }

  // One member's (or the file's) bytes: a zip, a numpy array, a legacy or tar checkpoint, a
  // pickle (named one, or found to be one), else data.
  blob_kind blob(std::span<const std::byte> b, const std::string& member, int depth,
                 bool known_pickle) {
    if (depth > max_depth) {
      problem(member, 0, "nested more than " + std::to_string(max_depth) + " deep: not scanned");
      return blob_kind::container;
    }
    if (sig(b, 0, local_sig) || sig(b, 0, end_sig)) {
      zip(b, member, depth);
      return blob_kind::container;
    }
    if (b.size() >= 10 && std::memcmp(b.data(), "\x93NUMPY", 6) == 0) {
      npy(b, member);
      return blob_kind::container;
    }
    if (is_tar(b)) {
      tar(b, member, depth);
      // A tar header starts with a member's name, which may also be a pickle's first opcodes:
      // a file that is both is read both ways.
      if (looks_like_pickle(b)) pickles(b, member, 0);
      return blob_kind::container;
    }
    if (detect_format(b) == checkpoint_format::legacy) {
      legacy(b, member);
      return blob_kind::container;
    }
    if (known_pickle || looks_like_pickle(b)) {
      pickles(b, member, 0);
      return blob_kind::pickle;
    }
    return blob_kind::data;
  }

  // Bytes with no name that says pickle are one when a trial pass names a module the way a
  // pickle does before it loses the stream, runs into one of the pass's limits, or reads,
  // pickle after pickle, cleanly to the last byte (tensor data often starts with a few bytes
  // that read as opcodes, seldom with more).
  static bool looks_like_pickle(std::span<const std::byte> b) {
    std::size_t at = 0;
    while (at < b.size()) {
      const auto trial = detail::pickle_pass(b.subspan(at), detail::pass_extent::one);
      if (plausible_import(trial) || trial.hit_limit || trial.named_stack_global) return true;
      if (!trial.first_clean || trial.end == 0) return false;
      at += trial.end;
    }
    return at > 0;
  }

  // The file itself: as blob(), but a zip is also found from its end record (data prepended to
  // it), and what is none of the formats is read as a pickle stream.
  void file(std::span<const std::byte> b) {
    auto fmt = detect_format(b);
    const bool zip_at_start = sig(b, 0, local_sig) || sig(b, 0, end_sig);
    std::optional<zip_end> end;
    if (!zip_at_start) end = find_zip_end(b, nullptr);
    if (zip_at_start || end) {
      report.format = "zip";
      zip(b, "", 0);
      return;
    }
    if (b.size() >= 10 && std::memcmp(b.data(), "\x93NUMPY", 6) == 0) {
      report.format = "npy";
    } else if (is_tar(b)) {
      report.format = "tar";
    } else if (fmt == checkpoint_format::safetensors) {
      report.format = "safetensors";  // no pickle in it
      return;
    } else if (fmt) {
      report.format = std::string(format_name(*fmt));
    } else {
      report.format = "unknown";
    }
    if (b.empty()) {
      problem("", 0, "the file is empty");
      return;
    }
    blob(b, "", 0, true);
  }

  void dcp(const std::filesystem::path& path);

  // The report, its unsafe and dangerous lists in order of first appearance, and a zip's flavour
  // by its records' names.
  scan_report finish() {
    scan_report r = std::move(report);
    for (const auto& g : r.globals) {
      if (g.unsafe) r.unsafe.push_back(g.name);
      if (g.dangerous) r.dangerous.push_back(g.name);
    }
    if (r.format == "zip")
      for (const auto& n : top_names_) {
        if (n.ends_with("/archive_format") || n == "serialized_exported_program.json" ||
            n.ends_with("/serialized_exported_program.json"))
          r.format = "pt2";
        else if (r.format == "zip" && (n.find("/code/") != n.npos || n.ends_with("/constants.pkl")))
          r.format = "torchscript";
      }
    return r;
  }

 private:
  // A tar header as Python's tarfile (which torch's legacy loader uses) accepts it: its stated
  // checksum is the unsigned or the signed sum of its bytes, the checksum field read as spaces.
  static bool is_tar(std::span<const std::byte> b) {
    if (b.size() < 512) return false;
    std::int64_t sum = 0, signed_sum = 0;
    for (std::size_t i = 0; i < 512; ++i) {
      const auto c = (i >= 148 && i < 156) ? std::uint8_t{32} : std::to_integer<std::uint8_t>(b[i]);
      sum += c;
      signed_sum += static_cast<std::int8_t>(c);
    }
    auto stated = tar_number(b.subspan(148, 8));
    return stated && sum != 256 && (*stated == sum || *stated == signed_sum);
  }

  // tarfile's nti(): base-256 when the first byte says so (0xff: negative), else the text up to
  // the first NUL read by Python's int(text.strip() or "0", 8): surrounding whitespace, a sign,
  // an 0o prefix and underscores between digits are all accepted.
  static std::optional<std::int64_t> tar_number(std::span<const std::byte> f) {
    const auto first = std::to_integer<unsigned char>(f[0]);
    if (first == 0x80 || first == 0xff) {
      std::uint64_t v = 0;
      for (std::size_t i = 1; i < f.size(); ++i) {
        if (v >> 55) return std::nullopt;
        v = v << 8 | std::to_integer<unsigned char>(f[i]);
      }
      if (first == 0x80) return static_cast<std::int64_t>(v);
      const std::uint64_t full = std::uint64_t{1} << (8 * (f.size() - 1));  // 256^(n-1)
      return -static_cast<std::int64_t>(full - v);
    }
    std::string_view t(reinterpret_cast<const char*>(f.data()), f.size());
    t = t.substr(0, t.find('\0'));
    for (char c : t)
      if (static_cast<unsigned char>(c) >= 0x80) return std::nullopt;  // not ASCII: refused
    auto space = [](char c) {
      return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
    };
    while (!t.empty() && space(t.front())) t.remove_prefix(1);
    while (!t.empty() && space(t.back())) t.remove_suffix(1);
    if (t.empty()) return 0;
    bool negative = false;
    if (t.front() == '+' || t.front() == '-') {
      negative = t.front() == '-';
      t.remove_prefix(1);
    }
    if (t.size() >= 2 && t[0] == '0' && (t[1] == 'o' || t[1] == 'O')) {
      t.remove_prefix(2);
      if (t.starts_with("_")) t.remove_prefix(1);  // 0o_17 is valid
    }
    if (t.empty() || t.front() == '_' || t.back() == '_') return std::nullopt;
    std::int64_t v = 0;
    char prev = 0;
    for (char c : t) {
      if (c == '_') {
        if (prev == '_') return std::nullopt;
      } else if (c >= '0' && c <= '7') {
        if (v >> 58) return std::nullopt;
        v = v * 8 + (c - '0');
      } else {
        return std::nullopt;
      }
      prev = c;
    }
    return negative ? -v : v;
  }

  // A trial pass that named a module the way a pickle does (a dotted name, not text that merely
  // starts with 'c' or 'i').
  static bool plausible_import(const detail::pass_result& p) {
    auto dotted = [](const std::string& s) {
      if (s.empty() || s.size() > 64 * 1024) return false;
      for (unsigned char c : s)
        if (!(c == '_' || c == '.' || std::isalnum(c) || c >= 0x80)) return false;
      return true;
    };
    for (const auto& imp : p.imports)
      if (!imp.module.empty() && dotted(imp.module) && dotted(imp.name)) return true;
    return false;
  }

  void zip(std::span<const std::byte> b, const std::string& parent, int depth);
  void tar(std::span<const std::byte> b, const std::string& parent, int depth);
  void npy(std::span<const std::byte> b, const std::string& member);
  void legacy(std::span<const std::byte> b, const std::string& member);
  bool storages_walk(std::span<const std::byte> b, const std::string& member, bool tensors);

  // Inflates a deflated member within the budgets; nullopt (with an error) when it cannot.
  std::optional<std::vector<std::byte>> inflate(std::span<const std::byte> in,
                                                std::uint64_t expected, bool exact,
                                                const std::string& member, std::size_t* consumed);

  std::map<std::string, std::size_t> index_;
  std::vector<std::string> top_names_;  // the file's own zip members
  std::uint64_t inflated_ = 0;
};

std::optional<std::vector<std::byte>> scanner::inflate(std::span<const std::byte> in,
                                                       std::uint64_t expected, bool exact,
                                                       const std::string& member,
                                                       std::size_t* consumed) {
  struct free_d {
    void operator()(libdeflate_decompressor* d) const noexcept { libdeflate_free_decompressor(d); }
  };
  std::unique_ptr<libdeflate_decompressor, free_d> d(libdeflate_alloc_decompressor());
  if (!d) {
    problem(member, 0, "out of memory for a decompressor");
    return std::nullopt;
  }
  std::uint64_t cap = exact ? expected : std::max<std::uint64_t>(expected, 4096);
  for (;;) {
    if (cap > max_inflated || inflated_ + cap > inflate_budget) {
      problem(member, 0,
              "deflated member of " + std::to_string(cap) +
                  " bytes or more: past what the scan inflates (" +
                  std::to_string(max_inflated >> 20) + " MiB a member, " +
                  std::to_string(inflate_budget >> 20) + " MiB in all)");
      return std::nullopt;
    }
    inflated_ += cap;  // every attempt counts, failed ones too
    std::vector<std::byte> out(static_cast<std::size_t>(cap));
    std::size_t in_used = 0, out_used = 0;
    const auto r = libdeflate_deflate_decompress_ex(d.get(), in.data(), in.size(), out.data(),
                                                    out.size(), &in_used, &out_used);
    if (r == LIBDEFLATE_SUCCESS) {
      if (exact && out_used != expected) {
        problem(member, 0,
                "inflates to " + std::to_string(out_used) + " bytes, not the " +
                    std::to_string(expected) + " its header states");
      }
      out.resize(out_used);
      if (consumed) *consumed = in_used;
      return out;
    }
    if (r == LIBDEFLATE_INSUFFICIENT_SPACE && !exact) {
      cap *= 2;
      continue;
    }
    if (r == LIBDEFLATE_INSUFFICIENT_SPACE) {
      problem(member, 0,
              "inflates to more than the " + std::to_string(expected) + " bytes its header states");
      return std::nullopt;
    }
    problem(member, 0, "the deflated bytes are corrupt");
    return std::nullopt;
  }
}

void scanner::zip(std::span<const std::byte> b, const std::string& parent, int depth) {
  std::vector<std::string> notes;
  const std::optional<zip_end> end = find_zip_end(b, &notes);
  for (auto& n : notes) problem(parent, 0, std::move(n));
  if (!end)
    problem(parent, 0, "no end of central directory record: members found by their local headers");

  // [start, end) ranges the central directory's members (header and data) cover.
  std::vector<std::pair<std::size_t, std::size_t>> covered;
  std::size_t first_member = b.size();

  // One member's bytes, scanned; its CRC-32 checked when it was read as a pickle.
  auto member = [&](const std::string& name, std::uint16_t flags, std::uint16_t method,
                    std::uint32_t crc, std::span<const std::byte> stored, std::uint64_t usize,
                    bool sizes_known, std::size_t* consumed, bool named_pickle) {
    const std::string where = join(parent, name);
    if (parent.empty() && depth == 0) top_names_.push_back(name);
    if (flags & zipf::flag_encrypted)
      problem(where, 0, "the member is flagged encrypted: its bytes are scanned as they are");
    std::optional<std::vector<std::byte>> inflated;
    std::span<const std::byte> bytes = stored;
    if (method == 8) {
      inflated = inflate(stored, usize, sizes_known, where, consumed);
      if (!inflated) return;
      bytes = *inflated;
    } else if (method != 0) {
      problem(where, 0,
              "compression method " + std::to_string(method) + " is not read: not scanned");
      return;
    } else if (consumed) {
      *consumed = stored.size();
    }
    const blob_kind k = blob(bytes, where, depth + 1, named_pickle || pickle_named(name));
    if (k == blob_kind::pickle && sizes_known && crc != 0) {
      const std::uint32_t actual =
          static_cast<std::uint32_t>(libdeflate_crc32(0, bytes.data(), bytes.size()));
      if (actual != crc)
        problem(where, 0,
                "CRC-32 " + std::to_string(actual) + " is not the " + std::to_string(crc) +
                    " the archive states");
    }
  };

  if (end && end->dirs.size() > 1)
    problem(parent, end->eocd,
            "two central directories: one before the end record, one where it says; both read");
  // Local headers scanned (entries may share one), and whether a name said pickle.
  std::unordered_map<std::uint64_t, bool> seen;
  for (const zip_end::dir& dir : end ? end->dirs : std::vector<zip_end::dir>{}) {
    std::size_t p = static_cast<std::size_t>(dir.start);
    const std::size_t dir_end = std::min<std::size_t>(end->eocd, b.size());
    std::size_t n = 0;
    while (p + zipf::central_header_size <= dir_end && sig(b, p, central_sig)) {
      if (++n > max_zip_entries) {
        problem(parent, p,
                "more than " + std::to_string(max_zip_entries) +
                    " central directory entries: the rest are not read");
        break;
      }
      const std::uint16_t flags = le16(b, p + 8), method = le16(b, p + 10);
      const std::uint32_t crc = le32(b, p + 16);
      std::uint64_t csize = le32(b, p + 20), usize = le32(b, p + 24);
      const std::size_t nlen = le16(b, p + 28), elen = le16(b, p + 30), clen = le16(b, p + 32);
      std::uint64_t offset = le32(b, p + 42);
      if (p + zipf::central_header_size + nlen + elen > dir_end) {
        problem(parent, p, "a central directory entry runs past the directory");
        break;
      }
      std::string name(reinterpret_cast<const char*>(b.data()) + p + zipf::central_header_size,
                       nlen);
      // zip64 sizes and offset, in that order, for the fields that say 0xffffffff.
      for (std::size_t e = p + zipf::central_header_size + nlen;
           e + 4 <= p + zipf::central_header_size + nlen + elen;) {
        const std::uint16_t id = le16(b, e), sz = le16(b, e + 2);
        if (e + 4 + sz > p + zipf::central_header_size + nlen + elen) break;
        if (id == 1) {
          std::size_t f = e + 4;
          auto next = [&](std::uint64_t& v) {
            if (v == 0xffffffffu && f + 8 <= e + 4 + sz) {
              v = load_le(b.data() + f, 8);
              f += 8;
            }
          };
          next(usize);
          next(csize);
          next(offset);
        }
        e += 4 + sz;
      }
      p += zipf::central_header_size + nlen + elen + clen;
      // The local header: where the offset says, moved by what was prepended.
      std::uint64_t lh = offset + static_cast<std::uint64_t>(dir.shift);
      if (!sig(b, lh, local_sig) && sig(b, offset, local_sig)) lh = offset;
      if (!sig(b, lh, local_sig) || lh > b.size() - zipf::local_header_size) {
        problem(join(parent, name), offset, "no local header where the central directory says");
        continue;
      }
      const std::size_t lnlen = le16(b, lh + 26), lelen = le16(b, lh + 28);
      const std::uint64_t data = lh + zipf::local_header_size + lnlen + lelen;
      const std::string local_name =
          lh + zipf::local_header_size + lnlen <= b.size()
              ? std::string(reinterpret_cast<const char*>(b.data()) + lh + zipf::local_header_size,
                            lnlen)
              : std::string();
      if (local_name != name)
        problem(join(parent, name), lh, "the local header names it \"" + local_name + "\"");
      // Scanned once, unless a later entry's name says pickle where the first one's did not
      // (a reader may go by either name).
      const bool named = pickle_named(name) || pickle_named(local_name);
      if (auto [it, fresh] = seen.emplace(lh, named); !fresh) {
        if (dir.start == end->dirs.front().start)
          problem(join(parent, name), lh,
                  "another central directory entry names this local header");
        if (!named || it->second) continue;
        it->second = true;
      }
      if (data > b.size() || csize > b.size() - data) {
        problem(join(parent, name), lh, "the member's data runs past the end of the archive");
        continue;
      }
      covered.emplace_back(static_cast<std::size_t>(lh), static_cast<std::size_t>(data + csize));
      first_member = std::min<std::size_t>(first_member, static_cast<std::size_t>(lh));
      member(name, flags, method, crc, b.subspan(static_cast<std::size_t>(data), csize), usize,
             true, nullptr, named);
    }
    if (dir.start == end->dirs.front().start && n != end->entries && n <= max_zip_entries)
      problem(parent, dir.start,
              "the central directory holds " + std::to_string(n) +
                  " entries, its end record says " + std::to_string(end->entries));
    covered.emplace_back(
        static_cast<std::size_t>(dir.start),
        static_cast<std::size_t>(dir.start) +
            static_cast<std::size_t>(std::min<std::uint64_t>(end->cd_size, b.size() - dir.start)));
    if (dir.start < first_member) first_member = static_cast<std::size_t>(dir.start);
  }
  if (end) covered.emplace_back(end->eocd, end->end);
  // A member whose header lies inside another's data: torch's own reader refuses such a zip.
  {
    auto sorted = covered;
    std::sort(sorted.begin(), sorted.end());
    for (std::size_t i = 1; i < sorted.size(); ++i)
      if (sorted[i].first < sorted[i - 1].second) {
        problem(parent, sorted[i].first,
                "a member or directory overlaps the one at offset " +
                    std::to_string(sorted[i - 1].first));
        break;
      }
  }

  // Local headers no central directory entry accounts for, searched for in the gaps between the
  // ranges it does (none in an archive torch writes: nothing is read there).
  std::sort(covered.begin(), covered.end());
  std::vector<std::pair<std::size_t, std::size_t>> ranges;  // disjoint, in order
  for (const auto& r : covered)
    if (!ranges.empty() && r.first <= ranges.back().second)
      ranges.back().second = std::max(ranges.back().second, r.second);
    else
      ranges.push_back(r);
  static const std::byte pk[4] = {std::byte{'P'}, std::byte{'K'}, std::byte{3}, std::byte{4}};
  for (std::size_t q = 0; q + zipf::local_header_size <= b.size();) {
    auto next = std::upper_bound(ranges.begin(), ranges.end(),
                                 std::pair<std::size_t, std::size_t>(q, SIZE_MAX));
    if (next != ranges.begin() && q < std::prev(next)->second) {
      q = std::prev(next)->second;
      continue;
    }
    const std::size_t gap_end = next == ranges.end() ? b.size() : next->first;
    const std::byte* hit =
        gap_end - q >= 4
            ? static_cast<const std::byte*>(memmem(b.data() + q, gap_end - q, pk, sizeof pk))
            : nullptr;
    if (!hit) {
      q = gap_end;
      continue;
    }
    const std::size_t at = static_cast<std::size_t>(hit - b.data());
    q = at + 1;
    if (at + zipf::local_header_size > b.size()) continue;
    const std::uint16_t flags = le16(b, at + 6), method = le16(b, at + 8);
    const std::uint32_t crc = le32(b, at + 14);
    const std::uint64_t csize = le32(b, at + 18), usize = le32(b, at + 22);
    const std::size_t nlen = le16(b, at + 26), elen = le16(b, at + 28);
    const std::size_t data = at + zipf::local_header_size + nlen + elen;
    if (data > b.size()) continue;
    std::string name(reinterpret_cast<const char*>(b.data()) + at + zipf::local_header_size, nlen);
    const std::string where = join(parent, name);
    if (end)
      problem(where, at,
              "a member found by its local header that the central directory does not list");
    first_member = std::min(first_member, at);
    const bool sizes = !(flags & zipf::flag_descriptor) || csize != 0;
    std::span<const std::byte> stored;
    if (sizes) {
      if (csize > b.size() - data) {
        problem(where, at, "the member's data runs past the end of the archive");
        continue;
      }
      stored = b.subspan(data, csize);
    } else if (method == 8) {
      stored = b.subspan(data);  // inflation finds the end
    } else {
      // Stored with a data descriptor: up to the next signature.
      std::size_t e = data;
      while (e + 4 <= b.size() && !(b[e] == std::byte{'P'} && b[e + 1] == std::byte{'K'} &&
                                    std::to_integer<int>(b[e + 2]) <= 8))
        ++e;
      stored = b.subspan(data, (e + 4 <= b.size() ? e : b.size()) - data);
    }
    std::size_t used = stored.size();
    member(name, flags, method, crc, stored, usize, sizes, &used, false);
    q = std::max(q, data + std::max<std::size_t>(used, 1));
  }

  // Bytes before the archive (a self-extracting stub, a pickle glued in front): torch reads a
  // file from its first bytes, so a pickle there is what it would load.
  if (first_member > 0 && first_member <= b.size()) {
    problem(join(parent, "<before the archive>"), 0,
            std::to_string(first_member) + " bytes come before the archive's first member");
    blob(b.first(first_member), join(parent, "<before the archive>"), depth + 1, false);
  }
  if (end && end->end < b.size()) {
    problem(join(parent, "<after the archive>"), end->end,
            std::to_string(b.size() - end->end) + " bytes come after the archive's end record");
    blob(b.subspan(end->end), join(parent, "<after the archive>"), depth + 1, false);
  }
}

// A tar archive: torch's legacy format (sys_info, pickle, storages, tensors) or any other.
void scanner::tar(std::span<const std::byte> b, const std::string& parent, int depth) {
  std::size_t p = 0;
  std::string long_name;
  while (p + 512 <= b.size()) {
    const auto h = b.subspan(p, 512);
    if (std::all_of(h.begin(), h.end(), [](std::byte x) { return x == std::byte{0}; })) break;
    if (!is_tar(h)) {
      problem(parent, p, "a tar header whose checksum does not match: the rest is not read");
      return;
    }
    auto size = tar_number(h.subspan(124, 12));
    if (!size || *size < 0 || static_cast<std::uint64_t>(*size) > b.size() - p - 512) {
      problem(parent, p, "a tar member's size runs past the end of the archive");
      return;
    }
    const char type = static_cast<char>(h[156]);
    std::string name(reinterpret_cast<const char*>(h.data()), 100);
    name.resize(std::strlen(name.c_str()));
    const auto body = b.subspan(p + 512, static_cast<std::size_t>(*size));
    p += 512 + static_cast<std::size_t>((*size + 511) / 512 * 512);
    if (type == 'L') {  // GNU long name of the next member
      long_name.assign(reinterpret_cast<const char*>(body.data()), body.size());
      long_name.resize(std::strlen(long_name.c_str()));
      continue;
    }
    if (type == 'x' || type == 'g') {  // PAX headers: a path= record names the next member
      std::string_view s(reinterpret_cast<const char*>(body.data()), body.size());
      if (auto at = s.find(" path="); at != std::string_view::npos && type == 'x') {
        auto nl = s.find('\n', at);
        long_name =
            std::string(s.substr(at + 6, nl == std::string_view::npos ? s.npos : nl - at - 6));
      }
      continue;
    }
    if (!long_name.empty()) name = std::move(long_name), long_name.clear();
    // Links, folders, devices and FIFOs carry no bytes; tarfile reads every other type (an
    // unknown one too) as a regular file.
    if (std::string_view("123456").find(type) != std::string_view::npos && type != '\0') continue;
    if (type == 'X' || type == 'K') continue;
    const std::string where = join(parent, name);
    const std::string base =
        name.substr(name.rfind('/') == std::string::npos ? 0 : name.rfind('/') + 1);
    if (base == "storages" || base == "tensors") {
      if (!storages_walk(body, where, base == "tensors")) pickles(body, where, 0);
    } else {
      blob(body, where, depth + 1, base == "pickle" || base == "sys_info");
    }
  }
}

// torch's legacy tar members: `storages` (a count, then per storage a pickle (key, location,
// type) and its elements, then the views pickle) and `tensors` (a count, then per tensor a
// pickle and its sizes). False when the layout does not hold (the caller then reads the member
// as a pickle stream); what the pickles name is recorded either way.
bool scanner::storages_walk(std::span<const std::byte> b, const std::string& member, bool tensors) {
  std::size_t p = 0;
  // What the pickles name, recorded once the walk holds (else the caller reads the member as a
  // stream and records it then).
  std::vector<std::pair<detail::pass_result, std::size_t>> found;
  // The next pickle, which must read cleanly, decoded inertly (nothing called) for what the walk
  // needs.
  auto next = [&]() -> std::optional<value> {
    auto r = detail::pickle_pass(b.subspan(p), detail::pass_extent::one);
    if (!r.first_clean) return std::nullopt;
    found.emplace_back(r, p);
    const auto bytes = b.subspan(p, r.end);
    p += r.end;
    try {
      unpickle_options u;
      u.context = member;
      return unpickle(bytes, u).root;
    } catch (const error&) {
      return std::nullopt;
    }
  };
  auto count = next();
  if (!count || !count->is_int() || count->as_int() < 0) return false;
  for (std::int64_t i = 0; i < count->as_int(); ++i) {
    // storages: (key, location, storage_type); tensors: (key, storage_id, tensor_type).
    auto args = next();
    if (!args || !args->is_tuple() || args->as_tuple().size() != 3) return false;
    if (tensors) {
      if (b.size() - p < 8) return false;
      const std::uint32_t ndim = le32(b, p);
      const std::uint64_t need = 8 + 16ull * ndim + 8;
      if (ndim > 64 || b.size() - p < need) return false;
      p += static_cast<std::size_t>(need);
      continue;
    }
    // torch reads the storage's dtype from the tuple's third item, the storage type.
    const value& type = args->as_tuple()[2];
    if (!type.is_global()) return false;
    const global_ref& g = type.as_global();
    auto t = g.module == "torch" || g.module == "torch.cuda" ? dtype_from_storage_class(g.name)
                                                             : std::nullopt;
    if (!t || b.size() - p < 8) return false;
    const std::uint64_t numel = load_le(b.data() + p, 8);
    std::uint64_t bytes = 0;
    if (!detail::checked_mul(numel, element_size(*t), bytes) || bytes > b.size() - p - 8)
      return false;
    p += 8 + static_cast<std::size_t>(bytes);
  }
  for (const auto& [r, at] : found) add(r, member, at, judge::weights_only);
  // The views pickle (storages) and anything after it.
  if (p < b.size()) pickles(b.subspan(p), member, p);
  return true;
}

// A .npy array: an object array's elements are a pickle after the header.
void scanner::npy(std::span<const std::byte> b, const std::string& member) {
  const int major = std::to_integer<int>(b[6]);
  std::size_t header_len = 0, at = 0;
  if (major == 1) {
    header_len = le16(b, 8);
    at = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) return problem(member, 0, "the .npy header is cut short");
    header_len = le32(b, 8);
    at = 12;
  } else {
    return problem(member, 6, ".npy version " + std::to_string(major) + " is not read");
  }
  if (header_len > b.size() - at) return problem(member, 8, "the .npy header runs past the end");
  std::string_view h(reinterpret_cast<const char*>(b.data()) + at, header_len);
  const std::size_t data = at + header_len;
  // The data is raw elements only for a plain dtype ('<f4', '|b1', '<M8[ns]') in a header exactly
  // as numpy writes one: {'descr': ..., 'fortran_order': ..., 'shape': (...), } (numpy's reader,
  // literal_eval, also takes repeated keys, comments, escapes and 'de' 'scr' concatenations, so
  // any other spelling is not trusted). Otherwise the data is a pickle when the header names an
  // object ('O' anywhere, an escape), else when it looks like one (a structured dtype's raw
  // records do not).
  static const std::regex numpy_header(
      R"(\{'descr': '([<>|=]?)([biufcSUVmM?])([0-9]*)(\[[A-Za-z0-9]+\])?', )"
      R"('fortran_order': (True|False), 'shape': \(([0-9]+, )*([0-9]+,?)?\), \} *\n?)");
  std::match_results<std::string_view::const_iterator> m;
  bool plain = std::regex_match(h.begin(), h.end(), m, numpy_header);
  // A datetime unit belongs to m8/M8 only.
  if (plain && m[4].matched && m[2] != "m" && m[2] != "M") plain = false;
  if (plain) return;
  const bool names_object = h.find('O') != h.npos || h.find('\\') != h.npos;
  if (names_object || looks_like_pickle(b.subspan(data))) pickles(b.subspan(data), member, data);
}

// A torch < 1.6 file: five pickles (magic, protocol, sys_info, the object, the storage keys),
// the storages' bytes, and nothing after them (anything there is scanned as pickles).
void scanner::legacy(std::span<const std::byte> b, const std::string& member) {
  std::size_t p = 0;
  std::size_t object_at = 0, object_end = 0, keys_at = 0;
  for (int i = 0; i < 5; ++i) {
    auto r = detail::pickle_pass(b.subspan(p), detail::pass_extent::one);
    if (!r.first_clean) {
      // Lost: everything from here is read as a stream.
      pickles(b.subspan(p), member, p);
      return;
    }
    add(r, member, p, judge::weights_only);
    if (i == 3) object_at = p;
    if (i == 4) keys_at = p;
    p += r.end;
    if (i == 3) object_end = p;
  }
  // Where the storages end: their types from the object's persistent ids, their order from the
  // keys. Read inertly (nothing is called); a file that does not allow it is not read further.
  try {
    std::map<std::string, dtype> types;
    detail::pid_memory last;
    unpickle_options u;
    u.context = member;
    u.persistent_load = [&](const value& pid) {
      // torch's legacy persistent_load hands back the class a ('module', class, file, source)
      // id names (a model saved whole): the stream calls it, so the inert object needs it too.
      if (pid.is_tuple() && pid.as_tuple().size() >= 2 && pid.as_tuple()[0].is_str() &&
          pid.as_tuple()[0].as_str() == "module")
        return pid.as_tuple()[1];
      if (pid.is_tuple() && pid.as_tuple().size() == 6) {
        detail::storage_spec s = detail::parse_pid(pid, true, last);
        types.emplace(s.key, s.t);
      }
      return pid;
    };
    unpickle(b.subspan(object_at, object_end - object_at), u);
    unpickle_options k;
    k.context = member;
    value keys = unpickle(b.subspan(keys_at, p - keys_at), k).root;
    if (!keys.is_list()) throw error(errc::corrupt_checkpoint, "the storage keys are no list");
    for (const value& key : keys.as_list().items) {
      const std::string ks = key.is_str()   ? key.as_str()
                             : key.is_int() ? std::to_string(key.as_int())
                                            : "";
      auto t = types.find(ks);
      if (t == types.end())
        throw error(errc::corrupt_checkpoint, "storage key '" + ks + "' is named by no tensor");
      if (b.size() - p < 8)
        throw error(errc::corrupt_checkpoint, "storage '" + ks + "' is cut short");
      std::uint64_t numel = load_le(b.data() + p, 8), bytes = 0;
      if (!detail::checked_mul(numel, element_size(t->second), bytes) || bytes > b.size() - p - 8) {
        numel = __builtin_bswap64(numel);  // a big-endian file
        if (!detail::checked_mul(numel, element_size(t->second), bytes) || bytes > b.size() - p - 8)
          throw error(errc::corrupt_checkpoint, "storage '" + ks + "' runs past the end");
      }
      p += 8 + static_cast<std::size_t>(bytes);
    }
  } catch (const error& e) {
    problem(member, p,
            "the storages after the pickles could not be located (" + e.message() + "): the last " +
                std::to_string(b.size() - p) + " bytes are not scanned");
    return;
  }
  if (p < b.size()) pickles(b.subspan(p), member, p);
}

// A torch.distributed.checkpoint folder: its metadata pickle(s), which torch reads with a plain
// pickle.load (anything but its metadata classes is unsafe there), then every blob.
void scanner::dcp(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  report.format = "dcp";
  const fs::path folder = fs::is_directory(path) ? path : path.parent_path();
  std::vector<fs::path> metadata_files;
  try {
    if (fs::is_regular_file(folder / ".metadata")) {
      metadata_files.push_back(folder / ".metadata");
    } else {
      for (const auto& e : fs::directory_iterator(folder)) {
        const std::string n = e.path().filename().string();
        if (n.starts_with("__") && n.ends_with(".metadata")) metadata_files.push_back(e.path());
      }
      std::sort(metadata_files.begin(), metadata_files.end());
    }
    for (const auto& m : metadata_files) {
      byte_source src = byte_source::map_file(m);
      pickles(src.bytes(), m.filename().string(), 0, judge::dcp_metadata);
    }
    const dcp_metadata meta = read_dcp_folder_metadata(path);
    if (!meta.safetensors_blobs)
      for (const dcp_blob& b : dcp_blobs(meta)) {
        byte_source blob_bytes = read_dcp_blob(folder, b);
        blob(blob_bytes.bytes(), blob_bytes.name(), 1, false);
      }
  } catch (const pthio::error& e) {
    problem("", e.offset().value_or(0), e.what());
  }
}

}  // namespace

scan_report scan_bytes(std::span<const std::byte> bytes, std::string name) {
  scanner s;
  s.report.file = std::move(name);
  s.file(bytes);
  return s.finish();
}

scan_report scan_file(const std::filesystem::path& path) {
  if (is_dcp(path)) {
    scanner s;
    s.report.file = path.string();
    s.dcp(path);
    return s.finish();
  }
  if (std::filesystem::is_directory(path))
    throw error(errc::invalid_argument,
                "a folder that is no torch.distributed.checkpoint (a Hugging Face index and its "
                "shards?): scan each file",
                path.string());
  byte_source src = byte_source::map_file(path);
  return scan_bytes(src.bytes(), path.string());
}

}  // namespace pthio
