// Where a storage's bytes go once its target device is known: a view of the file, a host copy
// (byte-swapped for a big-endian file), an upload to a GPU, or a meta placeholder.
#include <algorithm>
#include <cstring>

#include "internal.h"
#include "pthio/cuda.hpp"

namespace pthio::detail {

// Big-endian storages to this machine's order. Complex numbers swap each part on its own, as
// torch's byteswap does (torch/storage.py: complex element size halved).
void swap_bytes(std::byte* p, std::size_t n, dtype t) {
  std::size_t unit = is_complex(t) ? element_size(t) / 2 : element_size(t);
  if (unit <= 1) return;
  for (std::size_t i = 0; i + unit <= n; i += unit) std::reverse(p + i, p + i + unit);
}

void check_target(const device& target, const device& saved) {
  if (target.is_cuda() && !cuda_available())
    throw error(errc::cuda, "a storage saved on " + saved.str() + " is mapped to " + target.str() +
                                " but no CUDA device is available (" + cuda_unavailable_reason() +
                                ")" + "; load with map_location \"cpu\" to put it on the CPU");
}

storage place_storage(std::span<const std::byte> bytes, dtype t, const device& target, bool swap,
                      const std::shared_ptr<const void>& view_owner, device_upload& uploads,
                      std::optional<device_upload::crc_check> crc,
                      std::optional<device_upload::in_file> file) {
  if (target.type() == device_type::meta) return storage::borrow(nullptr, bytes.size(), target);
  if (!target.is_cpu() && !target.is_cuda())
    throw error(errc::unsupported, "cannot load storages to device " + target.str() +
                                       "; map them to \"cpu\" or \"cuda:N\" with map_location");
  if (target.is_cuda() && !swap)
    return uploads.copy(bytes, target, device_upload::hold::until_finish, std::move(crc), file);
  if (target.is_cpu() && !swap && view_owner &&
      reinterpret_cast<std::uintptr_t>(bytes.data()) % element_size(t) == 0)
    return storage::wrap(view_owner, const_cast<std::byte*>(bytes.data()), bytes.size());
  storage host = storage::allocate_for_overwrite(bytes.size());
  if (!bytes.empty()) std::memcpy(host.data(), bytes.data(), bytes.size());
  if (swap) swap_bytes(host.data(), host.nbytes(), t);
  if (target.is_cpu()) return host;
  return uploads.copy({host.data(), host.nbytes()}, target, device_upload::hold::until_return,
                      std::move(crc));
}

}  // namespace pthio::detail
