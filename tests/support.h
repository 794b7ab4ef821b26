// Helpers shared by the tests: fixture paths, a scratch folder outside the source tree (removed
// unless a test failed), visible skips, file I/O, CPU load options, the error a call throws.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <unistd.h>

#include <doctest/doctest.h>

#include "pthio/checkpoint.hpp"
#include "pthio/cuda.hpp"

namespace pthio_test {

// The source tree's fixtures/ folder (its tests/data is found beside it): where the build saw it,
// unless the environment variable PTHIO_FIXTURES_DIR names another, for a build carried to a
// machine where the sources lie elsewhere (scripts/gpu-check.sh).
inline std::filesystem::path fixtures_dir() {
  const char* e = std::getenv("PTHIO_FIXTURES_DIR");
  return e && *e ? std::filesystem::path(e) : std::filesystem::path(PTHIO_FIXTURES_DIR);
}
inline std::filesystem::path fixture(const std::string& rel) { return fixtures_dir() / rel; }

// This process's scratch folder: a fresh folder under the system temp dir, made on first use and
// removed, with everything the tests wrote there, when the process exits, unless keep() was
// called. main.cpp calls keep() when a test failed, so what a failing test wrote stays for
// debugging (its path printed); a process that dies of a signal leaves it too.
class scratch_folder {
 public:
  scratch_folder() : owner_(::getpid()) {
    std::string name = (std::filesystem::temp_directory_path() / "pthio-tests-XXXXXX").string();
    if (::mkdtemp(name.data()) == nullptr)
      throw std::runtime_error("cannot make a scratch folder: " + name);
    path_ = name;
  }
  scratch_folder(const scratch_folder&) = delete;
  scratch_folder& operator=(const scratch_folder&) = delete;
  ~scratch_folder() {
    // A forked child that exits normally must not remove its parent's folder.
    if (keep_ || ::getpid() != owner_) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  void keep() { keep_ = true; }

 private:
  std::filesystem::path path_;
  pid_t owner_;
  bool keep_ = false;
};

namespace detail {
// Made by the first scratch_dir() call; none when no test of this process needed one.
inline std::unique_ptr<scratch_folder>& scratch_instance() {
  static std::unique_ptr<scratch_folder> folder;
  return folder;
}
}  // namespace detail

inline std::filesystem::path scratch_dir() {
  auto& folder = detail::scratch_instance();
  if (!folder) folder = std::make_unique<scratch_folder>();
  return folder->path();
}

// Keeps the scratch folder (if one was made) and says where it is.
inline void keep_scratch_dir() {
  if (auto& folder = detail::scratch_instance()) {
    folder->keep();
    std::fprintf(stderr, "pthio tests: scratch files kept in %s\n", folder->path().c_str());
  }
}

// A test that cannot run here (no CUDA device, one device where it needs two) calls skip() and
// returns. The marker line makes CTest report it as Skipped with this reason
// (SKIP_REGULAR_EXPRESSION in tests/CMakeLists.txt); run directly, the program prints it.
inline void skip(const std::string& reason) {
  std::printf("PTHIO_TEST_SKIPPED: %s\n", reason.c_str());
  std::fflush(stdout);
}

// True when the environment sets PTHIO_TESTS_REQUIRE_CUDA=1: a run on a GPU machine, where a
// test that finds no device must fail rather than skip (a run that cannot see the GPU would
// otherwise look green).
inline bool cuda_required() {
  const char* e = std::getenv("PTHIO_TESTS_REQUIRE_CUDA");
  return e && std::string(e) == "1";
}

// For a test that needs `devices` CUDA devices: true when they are there. Otherwise the test is
// skipped, visibly, and the caller returns; with PTHIO_TESTS_REQUIRE_CUDA=1 and no device at all
// it fails instead (a second device is never required: one-GPU machines skip those cases).
inline bool need_cuda(int devices = 1) {
  const int have = pthio::cuda_device_count();
  if (have >= devices) return true;
  const std::string reason =
      have == 0
          ? "no CUDA device (" + pthio::cuda_unavailable_reason() + ")"
          : std::to_string(have) + " CUDA device(s): this case needs " + std::to_string(devices);
  if (have == 0 && cuda_required()) {
    FAIL_CHECK("PTHIO_TESTS_REQUIRE_CUDA=1, but " << reason);
    return false;
  }
  skip(reason);
  return false;
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

// The pthio::error `fn` throws; a test failure when it throws none.
template <class F>
pthio::error error_of(F&& fn) {
  try {
    fn();
  } catch (const pthio::error& e) {
    return e;
  }
  FAIL("no pthio::error thrown");
  return pthio::error(pthio::errc::io, "unreachable");
}

}  // namespace pthio_test
