// The memo-read pre-pass: one walk over the opcodes, stepping over each argument by its layout
// in opcodes.h, recording the indices GET, BINGET and LONG_BINGET read.
#include "memo_scan.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <string_view>

#include "../byte_reader.h"
#include "opcodes.h"
#include "text.h"

namespace pthio::detail {
namespace {

// How the scan steps over an opcode: by its argument's layout, except for the memo reads it
// records, STOP, and what it cannot follow.
enum class arg : std::uint8_t {
  bad,      // not an opcode, or MEMOIZE (the scan gives up)
  stop,     // STOP
  fixed,    // `size` bytes (0 for most)
  counted,  // a little-endian byte count of `size` bytes, then that many
  lines,    // `size` newline-terminated lines
  get,      // a memo read: a `size`-byte index, or (size 0) a decimal line
};
struct step {
  arg how = arg::bad;
  std::uint8_t size = 0;
};

constexpr std::array<step, 256> steps() {
  constexpr auto layouts = opcode_layouts();
  std::array<step, 256> t{};
  for (std::size_t b = 0; b < 256; ++b) {
    const opcode_layout& l = layouts[b];
    if (!l.known) continue;
    switch (l.arg) {
      case pickle_arg::none: t[b] = {arg::fixed, 0}; break;
      case pickle_arg::fixed: t[b] = {arg::fixed, l.size}; break;
      case pickle_arg::counted: t[b] = {arg::counted, l.size}; break;
      case pickle_arg::lines: t[b] = {arg::lines, l.size}; break;
    }
  }
  // LONG4 and BINSTRING count with a signed int: the machine refuses a negative one where it
  // meets it, so what the scan makes of it (past the end, or a skip) does not matter.
  t[op(opcode::BINGET)] = {arg::get, 1};
  t[op(opcode::LONG_BINGET)] = {arg::get, 4};
  t[op(opcode::GET)] = {arg::get, 0};
  t[op(opcode::STOP)] = {arg::stop, 0};
  t[op(opcode::MEMOIZE)] = {arg::bad, 0};
  return t;
}

}  // namespace

bool memo_reads::scan(std::span<const std::byte> data, std::uint64_t max_memo) {
  static constexpr std::array<step, 256> table = steps();
  // The bits cover indices below a bound tied to the input's size and max_memo; a read past it
  // makes every index past it count as read.
  const std::uint64_t cover =
      std::min<std::uint64_t>(8 * static_cast<std::uint64_t>(data.size()) + 1024, max_memo);
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  const std::size_t n = data.size();
  std::size_t i = 0;
  auto read = [&](std::uint64_t index) {
    if (index >= cover) {
      tail_ = true;
      return;
    }
    if (index >= bits_.size() * 64) bits_.resize(static_cast<std::size_t>(index / 64) + 1);
    bits_[static_cast<std::size_t>(index / 64)] |= std::uint64_t{1} << (index % 64);
  };
  while (i < n) {
    const step st = table[p[i]];
    // Most opcodes: step over the opcode and its fixed argument without reading it. One that runs
    // past the end leaves i > n, which ends the loop with no STOP seen, as a check here would.
    if (st.how == arg::fixed) [[likely]] {
      i += 1 + std::size_t{st.size};
      continue;
    }
    ++i;
    const std::size_t left = n - i;
    switch (st.how) {
      case arg::fixed: break;  // handled above
      case arg::counted: {
        if (st.size > left) return false;
        const std::uint64_t count = detail::load_le(data.data() + i, st.size);
        if (count > left - st.size) return false;
        i += st.size + static_cast<std::size_t>(count);
        break;
      }
      case arg::lines:
        for (int k = 0; k < st.size; ++k) {
          const void* nl = std::memchr(p + i, '\n', n - i);
          if (!nl) return false;
          i = static_cast<std::size_t>(static_cast<const unsigned char*>(nl) - p) + 1;
        }
        break;
      case arg::get: {
        if (st.size > 0) {
          if (st.size > left) return false;
          read(detail::load_le(data.data() + i, st.size));
          i += st.size;
          break;
        }
        const void* nl = std::memchr(p + i, '\n', left);
        if (!nl) return false;
        const std::size_t end = static_cast<std::size_t>(static_cast<const unsigned char*>(nl) - p);
        const auto index =
            memo_index_text(std::string_view(reinterpret_cast<const char*>(p + i), end - i));
        if (!index || *index < 0) return false;
        read(static_cast<std::uint64_t>(*index));
        i = end + 1;
        break;
      }
      case arg::stop: return true;
      case arg::bad: return false;
    }
  }
  return false;  // no STOP
}

}  // namespace pthio::detail
