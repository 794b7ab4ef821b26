// Decoders for pickle opcode arguments: Python's codecs and int()/float() rules, as
// Lib/pickle.py's _Unpickler applies them to protocol 0's text and to LONG1/LONG4.
#include "text.h"

#include <charconv>
#include <cstdlib>
#include <utility>
#include <vector>

#include "../big_int.h"

namespace pthio::detail {
namespace {

// The next code point of a string already known to be valid (surrogates allowed).
std::uint32_t next_code_point(std::string_view s, std::size_t& i) {
  auto c = static_cast<unsigned char>(s[i++]);
  if (c < 0x80) return c;
  int n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
  std::uint32_t cp = c & (0x3f >> n);
  for (int k = 0; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i++]) & 0x3f);
  return cp;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string_view trim_ascii_space(std::string_view s) {
  auto space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// A magnitude (little-endian, unsigned) and a sign -> int or big_int.
value int_from_magnitude(std::vector<std::uint8_t> mag, bool negative) {
  while (!mag.empty() && mag.back() == 0) mag.pop_back();
  if (mag.size() <= 8) {
    std::uint64_t u = 0;
    for (std::size_t i = mag.size(); i-- > 0;) u = (u << 8) | mag[i];
    if (!negative && u <= static_cast<std::uint64_t>(INT64_MAX))
      return value(static_cast<std::int64_t>(u));
    if (negative && u <= static_cast<std::uint64_t>(INT64_MAX) + 1)
      return value(static_cast<std::int64_t>(0 - u));
  }
  return value(big_int{twos_complement_from_magnitude(std::move(mag), negative)});
}

// Python 3.11 refuses int() on more than 4300 decimal digits
// (sys.int_info.str_digits_check_threshold).
constexpr std::size_t max_int_digits = 4300;

}  // namespace

// ---------------------------------------------------------------------------------------------
// Text.

std::optional<std::string> escape_decode(std::string_view s, std::string& why) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    char c = s[i++];
    if (c != '\\') {
      out.push_back(c);
      continue;
    }
    if (i == s.size()) {
      why = "trailing \\ in string";
      return std::nullopt;
    }
    char e = s[i++];
    switch (e) {
      case '\n': break;
      case '\\': out.push_back('\\'); break;
      case '\'': out.push_back('\''); break;
      case '"': out.push_back('"'); break;
      case 'a': out.push_back('\a'); break;
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'n': out.push_back('\n'); break;
      case 'r': out.push_back('\r'); break;
      case 't': out.push_back('\t'); break;
      case 'v': out.push_back('\v'); break;
      case '0':
      case '1':
      case '2':
      case '3':
      case '4':
      case '5':
      case '6':
      case '7': {
        unsigned v = static_cast<unsigned>(e - '0');
        for (int k = 0; k < 2 && i < s.size() && s[i] >= '0' && s[i] <= '7'; ++k)
          v = v * 8 + static_cast<unsigned>(s[i++] - '0');
        out.push_back(static_cast<char>(v & 0xff));
        break;
      }
      case 'x': {
        int hi = i < s.size() ? hex_digit(s[i]) : -1;
        int lo = i + 1 < s.size() ? hex_digit(s[i + 1]) : -1;
        if (hi < 0 || lo < 0) {
          why = "invalid \\x escape";
          return std::nullopt;
        }
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        break;
      }
      default:
        out.push_back('\\');
        out.push_back(e);
        break;
    }
  }
  return out;
}

// The raw-unicode-escape codec (UNICODE's argument): bytes are Latin-1 code points, except
// \uXXXX and \UXXXXXXXX; a backslash before anything else stays literal (CPython 3.11
// _PyUnicode_DecodeRawUnicodeEscapeStateful).
std::optional<std::string> raw_unicode_escape_decode(std::string_view s, std::string& why) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i++]);
    if (c != '\\' || i == s.size()) {
      append_utf8(out, c);
      continue;
    }
    auto e = static_cast<unsigned char>(s[i++]);
    int count = e == 'u' ? 4 : e == 'U' ? 8 : 0;
    if (count == 0) {
      out.push_back('\\');
      append_utf8(out, e);
      continue;
    }
    std::uint32_t cp = 0;
    for (int k = 0; k < count; ++k, ++i) {
      int d = i < s.size() ? hex_digit(s[i]) : -1;
      if (d < 0) {
        why = count == 4 ? "truncated \\uXXXX escape" : "truncated \\UXXXXXXXX escape";
        return std::nullopt;
      }
      cp = (cp << 4) | static_cast<std::uint32_t>(d);
    }
    if (cp > 0x10ffff) {
      why = "\\Uxxxxxxxx out of range";
      return std::nullopt;
    }
    append_utf8(out, cp);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Integers.

value long_from_le(std::span<const std::byte> bytes) {
  std::vector<std::uint8_t> b(bytes.size());
  for (std::size_t i = 0; i < bytes.size(); ++i) b[i] = static_cast<std::uint8_t>(bytes[i]);
  trim_twos_complement(b);
  if (b.size() <= 8) return value(int64_from_twos_complement(b));
  return value(big_int{std::move(b)});
}

// int(text) (base 10) or int(text, 0) (base0: 0x/0o/0b prefixes, no leading zeros) for the text
// forms of INT, LONG, GET and PUT: surrounding whitespace, a sign, digits, single underscores
// between digits. nullopt when malformed.
std::optional<value> parse_int_text(std::string_view s, bool base0, bool& too_long) {
  too_long = false;
  s = trim_ascii_space(s);
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  unsigned base = 10;
  if (base0 && s.size() >= 2 && s[0] == '0') {
    char p = static_cast<char>(s[1] | 0x20);
    if (p == 'x')
      base = 16;
    else if (p == 'o')
      base = 8;
    else if (p == 'b')
      base = 2;
    if (base != 10) {
      s.remove_prefix(2);
      if (!s.empty() && s[0] == '_') s.remove_prefix(1);
    }
  }
  if (s.empty() || s.front() == '_' || s.back() == '_') return std::nullopt;
  std::vector<std::uint8_t> mag;
  std::size_t digits = 0;
  bool nonzero = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      if (s[i - 1] == '_') return std::nullopt;
      continue;
    }
    int d = hex_digit(s[i]);
    if (d < 0 || static_cast<unsigned>(d) >= base) return std::nullopt;
    if (++digits > max_int_digits) {
      too_long = true;
      return std::nullopt;
    }
    if (d) nonzero = true;
    unsigned carry = static_cast<unsigned>(d);
    for (auto& byte : mag) {
      unsigned v = byte * base + carry;
      byte = static_cast<std::uint8_t>(v);
      carry = v >> 8;
    }
    while (carry) {
      mag.push_back(static_cast<std::uint8_t>(carry));
      carry >>= 8;
    }
  }
  // int('010', 0) is an error in Python 3: base 0 takes no leading zeros before a nonzero digit.
  if (base0 && base == 10 && s.size() > 1 && s[0] == '0' && nonzero) return std::nullopt;
  return int_from_magnitude(std::move(mag), negative);
}

// The memo index of a text GET or PUT line (the line's integer; may be negative), or nullopt
// when the line is not an int.
std::optional<std::int64_t> memo_index_text(std::string_view line) {
  bool too_long = false;
  auto v = parse_int_text(line, false, too_long);
  if (!v || !v->is_int()) return std::nullopt;
  return v->as_int();
}

// float(text): whitespace, sign, decimal or exponent forms, inf/infinity/nan in any case.
std::optional<double> parse_float_text(std::string_view s) {
  s = trim_ascii_space(s);
  bool plus = !s.empty() && s[0] == '+';
  if (plus) s.remove_prefix(1);
  if (s.empty() || s[0] == '+' || (plus && s[0] == '-')) return std::nullopt;
  double d = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
  if (p != s.data() + s.size()) return std::nullopt;
  if (ec == std::errc::result_out_of_range) {
    // Python rounds: overflow to inf, underflow to 0; strtod does the same.
    std::string copy(s);
    return std::strtod(copy.c_str(), nullptr);
  }
  if (ec != std::errc()) return std::nullopt;
  return d;
}

// Bytes of a str under a codec _codecs.encode / bytes() accept; nullopt for an unknown codec,
// and `bad` set to the first code point the codec cannot represent.
std::optional<std::string> encode_str(const std::string& s, std::string_view encoding,
                                      std::uint32_t& bad, bool& unencodable) {
  std::string enc;
  for (char c : encoding)
    enc.push_back(c == '_' ? '-' : static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
  unencodable = false;
  if (enc == "utf-8" || enc == "utf8") {
    if (!valid_utf8(s, false)) {
      unencodable = true;
      bad = 0xd800;
    }
    return s;
  }
  std::uint32_t limit;
  if (enc == "latin1" || enc == "latin-1" || enc == "iso-8859-1" || enc == "iso8859-1" ||
      enc == "l1")
    limit = 0x100;
  else if (enc == "ascii" || enc == "us-ascii")
    limit = 0x80;
  else
    return std::nullopt;
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    std::uint32_t cp = next_code_point(s, i);
    if (cp >= limit) {
      unencodable = true;
      bad = cp;
      return out;
    }
    out.push_back(static_cast<char>(cp));
  }
  return out;
}

std::string hex_byte(std::uint8_t b) {
  static constexpr char digits[] = "0123456789abcdef";
  return {'0', 'x', digits[b >> 4], digits[b & 15]};
}

}  // namespace pthio::detail
