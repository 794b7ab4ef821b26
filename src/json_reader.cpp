// JSON reading for safetensors headers and sharded-checkpoint indexes (RFC 8259).
#include "json_reader.h"

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace pthio::detail {

std::optional<std::size_t> find_invalid_utf8(std::span<const std::byte> text) noexcept {
  const std::size_t n = text.size();
  auto at = [&](std::size_t i) { return static_cast<std::uint8_t>(text[i]); };
  std::size_t i = 0;
  while (i < n) {
    std::uint8_t c = at(i);
    if (c < 0x80) {
      ++i;
      continue;
    }
    // Unicode 15, table 3-7: well-formed UTF-8 byte sequences.
    std::size_t len;
    std::uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
      len = 2;
    else if (c == 0xE0) {
      len = 3;
      lo = 0xA0;
    } else if (c == 0xED) {
      len = 3;
      hi = 0x9F;
    } else if (c >= 0xE1 && c <= 0xEF)
      len = 3;
    else if (c == 0xF0) {
      len = 4;
      lo = 0x90;
    } else if (c == 0xF4) {
      len = 4;
      hi = 0x8F;
    } else if (c >= 0xF1 && c <= 0xF3)
      len = 4;
    else
      return i;
    if (n - i < len) return i;
    if (at(i + 1) < lo || at(i + 1) > hi) return i;
    for (std::size_t k = 2; k < len; ++k)
      if (at(i + k) < 0x80 || at(i + k) > 0xBF) return i;
    i += len;
  }
  return std::nullopt;
}

void json_reader::skip_ws() {
  while (!r_.at_end()) {
    std::uint8_t c = r_.peek_u8();
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
    r_.skip(1);
  }
}

int json_reader::peek() {
  skip_ws();
  return r_.at_end() ? -1 : r_.peek_u8();
}

void json_reader::expect_end() {
  skip_ws();
  if (!r_.at_end()) fail("unexpected bytes after the JSON value");
}

bool json_reader::is_null() {
  if (peek() != 'n') return false;
  literal("null");
  return true;
}

void json_reader::literal(std::string_view word) {
  const std::size_t start = r_.pos();
  if (r_.remaining() < word.size() || r_.chars(word.size()) != word)
    fail_at(start, "invalid JSON literal (expected '" + std::string(word) + "')");
}

unsigned json_reader::hex4() {
  if (r_.remaining() < 4) fail("unexpected end of a \\u escape");
  unsigned v = 0;
  for (int i = 0; i < 4; ++i) {
    std::uint8_t c = r_.u8();
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= c - '0';
    else if (c >= 'a' && c <= 'f')
      v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      v |= c - 'A' + 10;
    else
      fail_at(r_.pos() - 1, "invalid hex digit in a \\u escape");
  }
  return v;
}

std::string json_reader::string() {
  if (peek() != '"') fail("expected a JSON string");
  r_.skip(1);
  std::string out;
  for (;;) {
    if (r_.at_end()) fail("unterminated JSON string");
    std::uint8_t c = r_.u8();
    if (c == '"') break;
    if (c < 0x20) fail_at(r_.pos() - 1, "control character in a JSON string (it must be escaped)");
    if (c != '\\') {
      out += static_cast<char>(c);
      continue;
    }
    std::size_t esc = r_.pos() - 1;
    if (r_.at_end()) fail("unterminated JSON string");
    switch (r_.u8()) {
      case '"': out += '"'; break;
      case '\\': out += '\\'; break;
      case '/': out += '/'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'u': {
        unsigned cp = hex4();
        if (cp >= 0xDC00 && cp <= 0xDFFF) fail_at(esc, "lone trailing surrogate in a \\u escape");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (r_.remaining() < 2 || r_.u8() != '\\' || r_.u8() != 'u')
            fail_at(esc, "lone leading surrogate in a \\u escape");
          unsigned lo = hex4();
          if (lo < 0xDC00 || lo > 0xDFFF) fail_at(esc, "lone leading surrogate in a \\u escape");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        if (cp < 0x80) {
          out += static_cast<char>(cp);
        } else if (cp < 0x800) {
          out += static_cast<char>(0xC0 | (cp >> 6));
          out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
          out += static_cast<char>(0xE0 | (cp >> 12));
          out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
          out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
          out += static_cast<char>(0xF0 | (cp >> 18));
          out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
          out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
          out += static_cast<char>(0x80 | (cp & 0x3F));
        }
        break;
      }
      default: fail_at(esc, "invalid escape in a JSON string");
    }
  }
  return out;
}

std::string_view json_reader::number_token(bool& is_integer) {
  const std::size_t start = r_.pos();
  auto digit = [&] { return !r_.at_end() && r_.peek_u8() >= '0' && r_.peek_u8() <= '9'; };
  is_integer = true;
  if (!r_.at_end() && r_.peek_u8() == '-') r_.skip(1);
  if (!digit()) fail_at(start, "invalid JSON number");
  if (r_.peek_u8() == '0') {
    r_.skip(1);
    if (digit()) fail_at(start, "invalid JSON number (leading zero)");
  } else {
    while (digit()) r_.skip(1);
  }
  if (!r_.at_end() && r_.peek_u8() == '.') {
    is_integer = false;
    r_.skip(1);
    if (!digit()) fail_at(start, "invalid JSON number (no digit after '.')");
    while (digit()) r_.skip(1);
  }
  if (!r_.at_end() && (r_.peek_u8() == 'e' || r_.peek_u8() == 'E')) {
    is_integer = false;
    r_.skip(1);
    if (!r_.at_end() && (r_.peek_u8() == '+' || r_.peek_u8() == '-')) r_.skip(1);
    if (!digit()) fail_at(start, "invalid JSON number (no digit in the exponent)");
    while (digit()) r_.skip(1);
  }
  return {reinterpret_cast<const char*>(r_.data().data() + start), r_.pos() - start};
}

std::uint64_t json_reader::uint(const char* what) {
  int c = peek();
  const std::size_t start = r_.pos();
  if (c != '-' && (c < '0' || c > '9')) fail(std::string(what) + " must be a non-negative integer");
  bool is_integer = false;
  std::string_view tok = number_token(is_integer);
  if (!is_integer || tok[0] == '-')
    fail_at(start, std::string(what) + " must be a non-negative integer, got " +
                       std::string(tok.substr(0, 40)));
  std::uint64_t v = 0;
  auto res = std::from_chars(tok.data(), tok.data() + tok.size(), v);
  if (res.ec != std::errc() || res.ptr != tok.data() + tok.size())
    fail_at(start,
            std::string(what) + " " + std::string(tok.substr(0, 40)) + " does not fit in 64 bits");
  return v;
}

void json_reader::skip_value() {
  int c = peek();
  switch (c) {
    case '{':
      object("a JSON value", [&](const std::string&, std::size_t) { skip_value(); });
      return;
    case '[': array("a JSON value", [&](std::size_t) { skip_value(); }); return;
    case '"': string(); return;
    case 't': literal("true"); return;
    case 'f': literal("false"); return;
    case 'n': literal("null"); return;
    default: {
      bool is_integer;
      if (c == '-' || (c >= '0' && c <= '9')) {
        number_token(is_integer);
        return;
      }
      fail(c < 0 ? "unexpected end of JSON" : "invalid JSON value");
    }
  }
}

value json_reader::any_value() {
  int c = peek();
  switch (c) {
    case '{': {
      value d = value::make_dict();
      object("a JSON value",
             [&](const std::string& k, std::size_t) { d.as_dict().set(value(k), any_value()); });
      return d;
    }
    case '[': {
      std::vector<value> items;
      array("a JSON value", [&](std::size_t) { items.push_back(any_value()); });
      return value::make_list(std::move(items));
    }
    case '"': return value(string());
    case 't': literal("true"); return value(true);
    case 'f': literal("false"); return value(false);
    case 'n': literal("null"); return value();
    default: {
      if (c != '-' && (c < '0' || c > '9'))
        fail(c < 0 ? "unexpected end of JSON" : "invalid JSON value");
      const std::size_t start = r_.pos();
      bool is_integer = false;
      std::string_view tok = number_token(is_integer);
      if (is_integer) {
        std::int64_t i = 0;
        auto res = std::from_chars(tok.data(), tok.data() + tok.size(), i);
        if (res.ec == std::errc() && res.ptr == tok.data() + tok.size()) return value(i);
        if (tok.size() > 4300)
          fail_at(start, "JSON integer longer than 4300 digits");  // Python's int limit
        return value(big_int::from_decimal(tok));
      }
      double d = 0;
      auto res = std::from_chars(tok.data(), tok.data() + tok.size(), d);
      if (res.ec == std::errc::result_out_of_range) {
        // Python's float() gives inf for overflow and 0.0 (or a subnormal) for underflow.
        d = std::strtod(std::string(tok).c_str(), nullptr);
      } else if (res.ec != std::errc()) {
        fail_at(start, "invalid JSON number");
      }
      return value(d);
    }
  }
}

std::string json_quote(std::string_view s) {
  std::string out = "\"";
  auto hex4 = [&](unsigned c) {
    char b[8];
    std::snprintf(b, sizeof b, "\\u%04x", c);
    out += b;
  };
  for (std::size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"') {
      out += "\\\"";
      ++i;
      continue;
    }
    if (c == '\\') {
      out += "\\\\";
      ++i;
      continue;
    }
    if (c == '\n') {
      out += "\\n";
      ++i;
      continue;
    }
    if (c == '\r') {
      out += "\\r";
      ++i;
      continue;
    }
    if (c == '\t') {
      out += "\\t";
      ++i;
      continue;
    }
    if (c < 0x20 || c == 0x7f) {
      hex4(c);
      ++i;
      continue;
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    // Validate one UTF-8 sequence; pass it through, or escape the byte as U+FFFD.
    int len = (c >= 0xf0 && c <= 0xf4) ? 4 : (c >= 0xe0) ? 3 : (c >= 0xc2 && c < 0xe0) ? 2 : 0;
    bool ok = len > 0 && i + static_cast<std::size_t>(len) <= s.size();
    for (int k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
    if (ok) {
      out.append(s.substr(i, static_cast<std::size_t>(len)));
      i += static_cast<std::size_t>(len);
    } else {
      hex4(0xfffd);
      ++i;
    }
  }
  return out + "\"";
}

}  // namespace pthio::detail
