// Helpers shared by the tests: fixture paths, a scratch folder outside the source tree, file I/O,
// CPU load options.
#pragma once

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <unistd.h>

#include "pthio/checkpoint.hpp"

namespace pthio_test {

inline std::filesystem::path fixtures_dir() { return PTHIO_FIXTURES_DIR; }
inline std::filesystem::path fixture(const std::string& rel) { return fixtures_dir() / rel; }

// A fresh folder under the system temp dir, unique to this process.
inline std::filesystem::path scratch_dir() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() /
             ("pthio-tests-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline std::vector<std::byte> read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(c.size());
  for (size_t i = 0; i < c.size(); ++i) out[i] = static_cast<std::byte>(c[i]);
  return out;
}

inline void write_bytes(const std::filesystem::path& p, const std::vector<std::byte>& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// Loads in `mode` with every storage on the CPU (fixtures include files saved on cuda:0).
inline pthio::load_options cpu_options(pthio::load_mode mode = pthio::load_mode::eager) {
  pthio::load_options o;
  o.mode = mode;
  o.map_location = pthio::map_location("cpu");
  return o;
}

}  // namespace pthio_test
