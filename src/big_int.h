// pthio — integers as little-endian two's complement bytes, the layout of pickle's LONG1/LONG4
// (pickletools: "little-endian 2's complement", encode_long writes the fewest bytes) and of
// big_int::le_bytes. The one place those bytes are encoded and decoded: the unpickler, the
// pickler and big_int itself use it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace pthio::detail {

// Drops sign-extension bytes: the minimal form (zero is no bytes at all).
inline void trim_twos_complement(std::vector<std::uint8_t>& b) {
  while (b.size() > 1) {
    const std::uint8_t last = b.back(), prev = b[b.size() - 2];
    if ((last == 0x00 && !(prev & 0x80)) || (last == 0xff && (prev & 0x80)))
      b.pop_back();
    else
      break;
  }
  if (b.size() == 1 && b[0] == 0) b.clear();
}

// The integer of at most 8 bytes, sign-extended from the last one.
inline std::int64_t int64_from_twos_complement(const std::vector<std::uint8_t>& b) noexcept {
  std::uint64_t u = 0;
  for (std::size_t i = b.size(); i-- > 0;) u = (u << 8) | b[i];
  if (!b.empty() && b.size() < 8 && (b.back() & 0x80)) u |= ~std::uint64_t{0} << (8 * b.size());
  return static_cast<std::int64_t>(u);
}

// The minimal bytes of an int64.
inline std::vector<std::uint8_t> twos_complement_of(std::int64_t i) {
  std::vector<std::uint8_t> b(8);
  for (std::size_t k = 0; k < 8; ++k)
    b[k] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(i) >> (8 * k));
  trim_twos_complement(b);
  return b;
}

// b becomes -b (~b + 1), in as many bytes as it has.
inline void negate_twos_complement(std::vector<std::uint8_t>& b) noexcept {
  unsigned carry = 1;
  for (auto& byte : b) {
    const unsigned v = static_cast<unsigned>(static_cast<std::uint8_t>(~byte)) + carry;
    byte = static_cast<std::uint8_t>(v);
    carry = v >> 8;
  }
}

// A magnitude (little-endian, unsigned) and a sign -> the minimal two's complement bytes.
inline std::vector<std::uint8_t> twos_complement_from_magnitude(std::vector<std::uint8_t> mag,
                                                                bool negative) {
  mag.push_back(0);  // room for the sign bit
  if (negative) negate_twos_complement(mag);
  trim_twos_complement(mag);
  return mag;
}

}  // namespace pthio::detail
