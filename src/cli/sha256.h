// SHA-256 (FIPS 180-4) for the `ls --json` "sha256" field: the command's only use of a hash, so
// the library needs no crypto dependency for it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace pthio::cli {

// Incremental: update() any number of times, then digest() once (the object is spent after).
class sha256 {
 public:
  sha256() noexcept;
  void update(std::span<const std::byte> data) noexcept;
  std::array<std::uint8_t, 32> digest() noexcept;

 private:
  void compress(const std::uint8_t* block) noexcept;

  std::array<std::uint32_t, 8> state_;
  std::array<std::uint8_t, 64> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t length_ = 0;  // bytes hashed so far
};

// Lowercase hex SHA-256 of `data`.
std::string sha256_hex(std::span<const std::byte> data);

}  // namespace pthio::cli
