// A JSON reader for headers and index files that come from untrusted files (RFC 8259), reading
// through byte_reader: UTF-8 checked over the whole text first (as the safetensors reference does
// with from_utf8), strings with every escape and surrogate pairs checked, nesting capped at 128
// levels (serde_json's recursion limit), numbers read by the JSON grammar. Offsets in errors are
// the base offset plus the position in the text.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "byte_reader.h"
#include "pthio/value.hpp"

namespace pthio::detail {

// A JSON string literal of `s`: UTF-8 passed through, control characters escaped, bytes that are
// not UTF-8 shown as \ufffd. Error messages show names read from files this way.
std::string json_quote(std::string_view s);

// Position of the first byte that breaks UTF-8 (overlong forms, surrogates, past U+10FFFF
// included), or nullopt when all of `text` is valid.
std::optional<std::size_t> find_invalid_utf8(std::span<const std::byte> text) noexcept;

class json_reader {
 public:
  static constexpr int max_depth = 128;

  json_reader(std::span<const std::byte> text, errc kind, std::string context,
              std::uint64_t base_offset)
      : r_(text, kind, std::move(context), base_offset) {}

  std::size_t pos() const noexcept { return r_.pos(); }
  // Skips JSON whitespace (space, tab, line feed, carriage return).
  void skip_ws();
  // After whitespace: the next byte, or -1 at the end.
  int peek();
  // Fails unless only whitespace remains.
  void expect_end();
  bool is_null();  // consumes a `null` when one comes next

  // An object; calls on_member(key, position of the key) with the reader placed at the member's
  // value.
  template <class F>
  void object(const char* what, F&& on_member) {
    if (peek() != '{') fail(std::string(what) + " must be a JSON object");
    enter();
    r_.skip(1);
    if (peek() == '}') {
      r_.skip(1);
      --depth_;
      return;
    }
    for (;;) {
      if (peek() != '"') fail(std::string("expected a string key in ") + what);
      std::size_t key_pos = r_.pos();
      std::string key = string();
      if (peek() != ':') fail("expected ':' after a key in " + std::string(what));
      r_.skip(1);
      skip_ws();
      on_member(key, key_pos);
      int c = peek();
      if (c == ',') {
        r_.skip(1);
        skip_ws();
        continue;
      }
      if (c == '}') {
        r_.skip(1);
        break;
      }
      fail("expected ',' or '}' in " + std::string(what));
    }
    --depth_;
  }
  // An array; calls on_item(index) with the reader placed at the item.
  template <class F>
  void array(const char* what, F&& on_item) {
    if (peek() != '[') fail(std::string(what) + " must be a JSON array");
    enter();
    r_.skip(1);
    if (peek() == ']') {
      r_.skip(1);
      --depth_;
      return;
    }
    for (std::size_t i = 0;; ++i) {
      skip_ws();
      on_item(i);
      int c = peek();
      if (c == ',') {
        r_.skip(1);
        continue;
      }
      if (c == ']') {
        r_.skip(1);
        break;
      }
      fail("expected ',' or ']' in " + std::string(what));
    }
    --depth_;
  }

  // A string, escapes decoded (a lone surrogate is an error).
  std::string string();
  // A non-negative integer written without fraction or exponent, at most 2^64 - 1.
  std::uint64_t uint(const char* what);
  // Any value, skipped (nesting still capped).
  void skip_value();
  // Any value as a pthio value: null, bool, int (big int past int64), float, str, list, dict.
  value any_value();

  [[noreturn]] void fail(const std::string& message) const { r_.fail(message); }
  [[noreturn]] void fail_at(std::size_t pos, const std::string& message) const {
    r_.fail_at(pos, message);
  }

 private:
  void enter() {
    if (++depth_ > max_depth)
      fail("JSON nesting deeper than " + std::to_string(max_depth) + " levels");
  }
  // The text of a number token per the JSON grammar; is_integer when it has no fraction or
  // exponent.
  std::string_view number_token(bool& is_integer);
  void literal(std::string_view word);
  unsigned hex4();

  byte_reader r_;
  int depth_ = 0;
};

}  // namespace pthio::detail
