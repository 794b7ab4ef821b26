// The command's SHA-256 (src/cli/sha256.cpp) against FIPS 180-4's examples (NIST's "Example
// Algorithms" for SHA-256) and digests Python's hashlib gave for messages around the padding's
// block boundaries. The `ls --json` sha256 fields are checked against hashlib through the fixtures'
// manifest (test_fixtures.cpp, test_cli.cpp).
#include <doctest/doctest.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "cli/sha256.h"

namespace {

std::span<const std::byte> bytes_of(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

std::string hex_of(const std::array<std::uint8_t, 32>& d) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (std::uint8_t b : d) out += std::string{digits[b >> 4], digits[b & 15]};
  return out;
}

}  // namespace

TEST_SUITE("sha256") {
  TEST_CASE("sha256: the FIPS 180-4 examples") {
    using pthio::cli::sha256_hex;
    CHECK(sha256_hex(bytes_of("abc")) ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(sha256_hex(bytes_of("")) ==
          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    // 448 bits: the padding's length no longer fits the block, so it takes a second one.
    CHECK(sha256_hex(bytes_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(sha256_hex(bytes_of("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                              "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")) ==
          "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    const std::string million(1000000, 'a');
    CHECK(sha256_hex(bytes_of(million)) ==
          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  }

  TEST_CASE("sha256: lengths around the block boundaries match Python's hashlib") {
    // hashlib.sha256(bytes((i * 7 + 3) & 255 for i in range(n))).hexdigest()
    const std::vector<std::pair<std::size_t, std::string_view>> want{
        {55, "e7313d333c272e639f790978283f9eb392e843d0f29b7016828bb1daa4aac70b"},
        {56, "4324d65f3c103567f5589c710bc08f8523f929a9272e3af36fc968e52abc6c27"},
        {57, "35df609437dcfea3279283ab79fd554e2bf78f8f7ae2de532d8ee300b09e8f73"},
        {63, "81c80242132f230c3bd41b3e63bbcff16107339549214a99614ff26664625055"},
        {64, "39e3d7b6b5d075d37d053ad89b24b41bef4f3c29760c84447cab3f3be1882241"},
        {65, "aacca6ff74fdbb296d165a45cecfa04e5127bc008770fbbdd48006f2d2fae95e"},
        {119, "9ce7368e4daf32341631b492e80359dc9f594b48453cd0dd5bf0b19279cc177e"},
        {120, "7836b787757e95e58b3ca5aec90b1b004e8deba1e50e9675af9cabf1a13a04b5"},
        {128, "d2742f1f4ac6bb7ca2b239ee18402ba8b3f9f8e652d2a72973c2b9ba11c08cf6"},
    };
    for (const auto& [n, digest] : want) {
      std::vector<std::byte> msg(n);
      for (std::size_t i = 0; i < n; ++i) msg[i] = static_cast<std::byte>((i * 7 + 3) & 255);
      CAPTURE(n);
      CHECK(pthio::cli::sha256_hex(msg) == digest);
      // The same message fed in pieces of every size from 1 to 70 bytes.
      for (std::size_t piece = 1; piece <= 70; ++piece) {
        pthio::cli::sha256 h;
        for (std::size_t at = 0; at < n; at += piece)
          h.update(std::span(msg).subspan(at, std::min(piece, n - at)));
        CAPTURE(piece);
        CHECK(hex_of(h.digest()) == digest);
      }
    }
  }

}  // TEST_SUITE
