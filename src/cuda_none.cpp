// CUDA entry points when pthio is built without the CUDA toolkit: queries say no, cpu targets
// work, anything that needs a device throws pthio::error(errc::cuda).
#include <cstring>

#include "torch/internal.h"
#include "cuda/device_copy.h"
#include "pthio/cuda.hpp"

namespace pthio {

namespace {

constexpr const char* not_built = "pthio was built without CUDA";

[[noreturn]] void no_cuda(const std::string& what) {
  throw error(errc::cuda, what + ": " + not_built + "; use map_location \"cpu\"");
}

}  // namespace

bool cuda_built() noexcept { return false; }
bool cuda_available() noexcept { return false; }
int cuda_device_count() noexcept { return 0; }
std::string cuda_unavailable_reason() { return not_built; }

namespace cuda {

namespace {
staging_options& current_options() {
  static staging_options o;
  return o;
}
}  // namespace

void set_staging_options(const staging_options& options) {
  if (options.buffers == 0 || options.buffers > 16)
    throw error(errc::invalid_argument, "staging buffers must be 1 to 16, not " + std::to_string(options.buffers));
  if (options.buffer_bytes < (std::size_t{64} << 10) || options.buffer_bytes > (std::size_t{1} << 30))
    throw error(errc::invalid_argument, "staging buffer size must be 64 KiB to 1 GiB, not " +
                                            std::to_string(options.buffer_bytes) + " bytes");
  current_options() = options;
}
staging_options get_staging_options() { return current_options(); }

void synchronize(const device& dev) { no_cuda("cuda::synchronize(" + dev.str() + ")"); }
void gemm(const tensor&, const tensor&, tensor&, float, float) { no_cuda("cuda::gemm"); }
void gemv(const tensor&, const tensor&, tensor&, float, float) { no_cuda("cuda::gemv"); }

}  // namespace cuda

namespace detail {

struct device_upload::per_device {};

device_upload::device_upload() = default;
device_upload::~device_upload() = default;

device_upload::per_device& device_upload::on(int) { no_cuda("device copy"); }

storage device_upload::copy(std::span<const std::byte> bytes, const device& target, hold,
                            std::optional<crc_check> verify) {
  if (!target.is_cpu()) no_cuda("cannot put a storage on " + target.str());
  storage s = storage::allocate(bytes.size());
  if (!bytes.empty()) std::memcpy(s.data(), bytes.data(), bytes.size());
  if (verify) checks_.push_back({pthio::crc32(bytes), std::move(*verify)});
  return s;
}

void device_upload::finish() {
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

void for_each_host_chunk(const storage& s, std::size_t, const std::function<void(std::span<const std::byte>)>&) {
  no_cuda("cannot read a storage on " + s.dev().str());
}

}  // namespace detail
}  // namespace pthio
