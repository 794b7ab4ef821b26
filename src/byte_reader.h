// The one cursor every parser reads input bytes through: checked little- and big-endian reads,
// zero-copy sub-views, counts checked against a cap and the bytes remaining before any
// allocation, and fail() as the single throw point that adds the offset and context.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <string_view>

#include "pthio/error.hpp"

namespace pthio::detail {

// The n-byte (n <= 8) little-endian integer at p, which must hold n bytes.
inline std::uint64_t load_le(const std::byte* p, int n) noexcept {
  if constexpr (std::endian::native == std::endian::little) {
    // One unaligned load for the widths the formats use (the compiler makes each a single mov).
    switch (n) {
      case 1: return std::to_integer<std::uint8_t>(p[0]);
      case 2: {
        std::uint16_t v;
        std::memcpy(&v, p, 2);
        return v;
      }
      case 4: {
        std::uint32_t v;
        std::memcpy(&v, p, 4);
        return v;
      }
      case 8: {
        std::uint64_t v;
        std::memcpy(&v, p, 8);
        return v;
      }
      default: break;
    }
  }
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint8_t>(p[i]);
  return v;
}

// Checked arithmetic: false on overflow.
inline bool checked_add(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  return !__builtin_add_overflow(a, b, &out);
}
inline bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  return !__builtin_mul_overflow(a, b, &out);
}

class byte_reader {
 public:
  byte_reader(std::span<const std::byte> data, errc kind, std::string context,
              std::uint64_t base_offset = 0)
      : data_(data), kind_(kind), context_(std::move(context)), base_(base_offset) {}

  std::size_t pos() const noexcept { return pos_; }
  std::size_t size() const noexcept { return data_.size(); }
  std::size_t remaining() const noexcept { return data_.size() - pos_; }
  bool at_end() const noexcept { return pos_ == data_.size(); }
  std::span<const std::byte> data() const noexcept { return data_; }
  const std::string& context() const noexcept { return context_; }

  void seek(std::uint64_t p) {
    if (p > data_.size())
      fail("seek to " + std::to_string(p) + " past the end (" + std::to_string(data_.size()) +
           " bytes)");
    pos_ = static_cast<std::size_t>(p);
  }
  void skip(std::uint64_t n) {
    need(n, "skip");
    pos_ += static_cast<std::size_t>(n);
  }

  std::uint8_t u8() {
    need(1, "u8");
    return static_cast<std::uint8_t>(data_[pos_++]);
  }
  std::uint16_t le16() { return static_cast<std::uint16_t>(le(2)); }
  std::uint32_t le32() { return static_cast<std::uint32_t>(le(4)); }
  std::uint64_t le64() { return le(8); }
  std::int32_t le_i32() { return static_cast<std::int32_t>(le32()); }
  std::uint64_t be64() {
    need(8, "u64");
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<std::uint8_t>(data_[pos_ + i]);
    pos_ += 8;
    return v;
  }

  // n bytes as a view; fails (without allocating) when fewer remain.
  std::span<const std::byte> bytes(std::uint64_t n) {
    need(n, "bytes");
    auto s = data_.subspan(pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return s;
  }
  std::string_view chars(std::uint64_t n) {
    auto b = bytes(n);
    return {reinterpret_cast<const char*>(b.data()), b.size()};
  }
  // A line ending in '\n' (protocol 0 text opcodes), without the newline.
  std::string_view line() {
    const void* nl = std::memchr(data_.data() + pos_, '\n', remaining());
    if (!nl) fail("text argument has no terminating newline");
    std::size_t n =
        static_cast<std::size_t>(static_cast<const std::byte*>(nl) - (data_.data() + pos_));
    std::string_view s(reinterpret_cast<const char*>(data_.data() + pos_), n);
    pos_ += n + 1;
    return s;
  }
  std::uint8_t peek_u8() const {
    if (remaining() < 1) fail("unexpected end of data");
    return static_cast<std::uint8_t>(data_[pos_]);
  }

  // A count of elements of elem_size bytes each that must fit in what remains and under cap.
  std::size_t read_count(std::uint64_t n, std::uint64_t elem_size, std::uint64_t cap,
                         std::string_view what) const {
    if (n > cap)
      fail(std::string(what) + " " + std::to_string(n) + " exceeds the limit " +
           std::to_string(cap));
    std::uint64_t total;
    if (!checked_mul(n, elem_size, total) || total > remaining())
      fail(std::string(what) + " " + std::to_string(n) + " needs more bytes than the " +
           std::to_string(remaining()) + " remaining");
    return static_cast<std::size_t>(n);
  }

  [[noreturn]] void fail(const std::string& message) const { fail_at(pos_, message); }
  [[noreturn]] void fail_at(std::uint64_t pos, const std::string& message) const {
    throw error(kind_, message, context_, base_ + pos);
  }
  [[noreturn]] void fail_kind(errc kind, std::uint64_t pos, const std::string& message) const {
    throw error(kind, message, context_, base_ + pos);
  }

 private:
  void need(std::uint64_t n, const char* what) const {
    if (n > remaining()) [[unlikely]]
      short_read(n, what);
  }
  // Out of line and cold, so that need() inlines to one compare.
  [[noreturn, gnu::cold, gnu::noinline]] void short_read(std::uint64_t n, const char* what) const {
    fail(std::string("unexpected end of data: ") + what + " needs " + std::to_string(n) +
         " bytes, " + std::to_string(remaining()) + " remain");
  }
  std::uint64_t le(int n) {
    need(static_cast<std::uint64_t>(n), "integer");
    const std::uint64_t v = load_le(data_.data() + pos_, n);
    pos_ += static_cast<std::size_t>(n);
    return v;
  }

  std::span<const std::byte> data_;
  std::size_t pos_ = 0;
  errc kind_;
  std::string context_;
  std::uint64_t base_;
};

}  // namespace pthio::detail
