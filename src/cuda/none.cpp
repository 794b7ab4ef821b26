// CUDA entry points when pthio is built without the CUDA toolkit: queries say no, cpu targets
// work, anything that needs a device throws pthio::error(errc::cuda). What does not need the
// toolkit (argument checks, device_upload's cpu path and finish()) is shared, in common.cpp.
#include "common.h"
#include "device_copy.h"
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
  detail::check_staging_options(options);
  current_options() = options;
}
staging_options get_staging_options() { return current_options(); }

void synchronize(const device& dev) { no_cuda("cuda::synchronize(" + dev.str() + ")"); }
void gemm(const tensor&, const tensor&, tensor&, float, float) { no_cuda("cuda::gemm"); }
void gemv(const tensor&, const tensor&, tensor&, float, float) { no_cuda("cuda::gemv"); }

}  // namespace cuda

namespace detail {

int current_cuda_device() noexcept { return 0; }

struct device_upload::per_device {};

device_upload::device_upload() = default;
device_upload::~device_upload() = default;

storage device_upload::copy_to_cuda(std::span<const std::byte>, const device& target, hold,
                                    std::uint32_t*, const std::optional<in_file>&) {
  no_cuda("cannot put a storage on " + target.str());
}

// Nothing is ever in flight: copy_to_cuda() never starts a transfer.
void device_upload::wait_devices() {}

void for_each_host_chunk(const storage& s, std::size_t,
                         const std::function<void(std::span<const std::byte>)>&) {
  no_cuda("cannot read a storage on " + s.dev().str());
}

}  // namespace detail
}  // namespace pthio
