// pthio — what pickle opcode arguments decode to (internal): UTF-8 checks, protocol 0's quoted and
// escaped text, integers and floats written as text, LONG1/LONG4 bytes, and str.encode for the
// codecs protocol 2 writes bytes with. The checks every str takes are inline here; the rest is in
// text.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "pthio/value.hpp"

namespace pthio::detail {

// Python's strict UTF-8 decoder: no overlong forms, nothing past U+10FFFF, no truncated
// sequences; surrogates (U+D800-U+DFFF) only under "surrogatepass", which pickle uses for
// BINUNICODE and friends.
inline bool valid_utf8(std::string_view s, bool allow_surrogates) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  // ASCII (every key and record name torch writes) eight bytes at a time.
  while (end - p >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    if (w & 0x8080808080808080u) break;
    p += 8;
  }
  while (p < end) {
    unsigned c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int n;
    std::uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      cp = c & 0x07;
    } else
      return false;
    if (end - p <= n) return false;
    for (int i = 1; i <= n; ++i) {
      if ((p[i] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff))) return false;
    if (!allow_surrogates && cp >= 0xd800 && cp <= 0xdfff) return false;
    p += n + 1;
  }
  return true;
}

// What a str or bytes value holds beyond the text itself (charged when the text was read): its
// shared box (control block and std::string, from the value pool) and, past the SSO size, the
// malloc chunk's rounding. Copies of the value share all of it.
inline std::uint64_t text_box_bytes(const value& v) {
  std::size_t n;
  if (v.is_str())
    n = v.as_str().size();
  else if (v.is_bytes())
    n = v.as_bytes().size();
  else
    return 0;
  return 64 + (n > 15 ? 24 : 0);
}

// codecs.escape_decode, which Python 3 applies to the quoted argument of STRING.
// nullopt (with a reason) on a malformed escape.
std::optional<std::string> escape_decode(std::string_view s, std::string& why);

// The raw-unicode-escape codec (UNICODE's argument); nullopt (with a reason) when malformed.
std::optional<std::string> raw_unicode_escape_decode(std::string_view s, std::string& why);

// A byte as "0x" and two lowercase hex digits, for messages about opcodes.
std::string hex_byte(std::uint8_t b);

// pickle's decode_long: little-endian two's complement of any length -> int or big_int.
value long_from_le(std::span<const std::byte> bytes);

// int(text) (base 10) or int(text, 0) (base0) for the text forms of INT and LONG; nullopt when
// malformed, with too_long set when it has more digits than Python 3.11 converts.
std::optional<value> parse_int_text(std::string_view s, bool base0, bool& too_long);

// The memo index of a text GET or PUT line (may be negative), or nullopt when it is not an int.
std::optional<std::int64_t> memo_index_text(std::string_view line);

// float(text): whitespace, sign, decimal or exponent forms, inf/infinity/nan in any case.
std::optional<double> parse_float_text(std::string_view s);

// Bytes of a str under a codec _codecs.encode / bytes() accept; nullopt for an unknown codec,
// and `bad` set to the first code point the codec cannot represent.
std::optional<std::string> encode_str(const std::string& s, std::string_view encoding,
                                      std::uint32_t& bad, bool& unencodable);

}  // namespace pthio::detail
