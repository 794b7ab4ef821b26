// CUDA entry points when pthio is built without the CUDA toolkit.
#include <cstring>

#include "checkpoint_internal.h"
#include "pthio/cuda.hpp"

namespace pthio {

bool cuda_built() noexcept { return false; }
bool cuda_available() noexcept { return false; }
int cuda_device_count() noexcept { return 0; }

namespace detail {

storage copy_to_device(std::span<const std::byte> bytes, const device& target) {
  if (!target.is_cpu())
    throw error(errc::cuda, "cannot put a storage on " + target.str() +
                                ": pthio was built without CUDA; use map_location \"cpu\"");
  storage s = storage::allocate(bytes.size());
  if (!bytes.empty()) std::memcpy(s.data(), bytes.data(), bytes.size());
  return s;
}

}  // namespace detail
}  // namespace pthio
