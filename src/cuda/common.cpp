// Compiled in both builds: the parts of the CUDA layer that do not need the toolkit (common.h,
// device_copy.h). The device side of each is copy_to_cuda() and wait_devices(), in copy.cpp with
// CUDA and in none.cpp without.
#include "common.h"

#include <atomic>
#include <cstring>
#include <string>

#include "device_copy.h"
#include "pthio/error.hpp"
#include "pthio/zip.hpp"

namespace pthio::detail {

void check_staging_options(const pthio::cuda::staging_options& options) {
  if (options.buffers == 0 || options.buffers > 16)
    throw error(errc::invalid_argument,
                "staging buffers must be 1 to 16, not " + std::to_string(options.buffers));
  if (options.buffer_bytes < (std::size_t{64} << 10) ||
      options.buffer_bytes > (std::size_t{1} << 30))
    throw error(errc::invalid_argument, "staging buffer size must be 64 KiB to 1 GiB, not " +
                                            std::to_string(options.buffer_bytes) + " bytes");
}

namespace {
std::atomic<bool> pageable_forced{false};
std::atomic<std::uint64_t> pageable_sets{0};
}  // namespace

void force_pageable_staging(bool on) noexcept { pageable_forced = on; }
bool pageable_staging_forced() noexcept { return pageable_forced; }
void count_pageable_staging_set() noexcept { ++pageable_sets; }
std::uint64_t pageable_staging_sets() noexcept { return pageable_sets; }

storage device_upload::copy(std::span<const std::byte> bytes, const device& target, hold h,
                            std::optional<crc_check> verify, std::optional<in_file> file) {
  std::uint32_t* crc = nullptr;
  if (verify) {
    checks_.push_back({0, std::move(*verify)});
    crc = &checks_.back().got;
  }
  if (!target.is_cpu()) return copy_to_cuda(bytes, target, h, crc, file);
  storage s = storage::allocate(bytes.size());
  if (!bytes.empty()) std::memcpy(s.data(), bytes.data(), bytes.size());
  if (crc) *crc = pthio::crc32(bytes);
  return s;
}

void device_upload::finish() {
  wait_devices();
  // Checked once every transfer has landed: a device copy's CRC is computed by its filling thread.
  auto checks = std::move(checks_);
  checks_.clear();
  for (auto& c : checks)
    if (c.got != c.check.expected) c.check.mismatch();
}

storage copy_to_device(std::span<const std::byte> bytes, const device& target) {
  device_upload up;
  storage s = up.copy(bytes, target, device_upload::hold::until_finish);
  up.finish();
  return s;
}

}  // namespace pthio::detail
