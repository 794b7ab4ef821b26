#include "pthio/storage.hpp"

#include <cstring>
#include <new>

#include "pthio/error.hpp"

namespace pthio {

#ifdef PTHIO_HAVE_CUDA
namespace detail {
storage cuda_allocate(std::size_t nbytes, const device& dev);
}
#endif

storage storage::allocate(std::size_t nbytes) {
  storage s = allocate_for_overwrite(nbytes);
  if (nbytes) std::memset(s.data(), 0, nbytes);
  return s;
}

storage storage::allocate_for_overwrite(std::size_t nbytes) {
  constexpr std::align_val_t align{64};
  std::byte* p;
  try {
    p = static_cast<std::byte*>(::operator new(nbytes ? nbytes : 1, align));
  } catch (const std::bad_alloc&) {
    throw error(errc::limit_exceeded,
                "cannot allocate " + std::to_string(nbytes) + " bytes of host memory");
  }
  storage s;
  s.impl_ = std::make_shared<impl>();
  s.impl_->data = p;
  s.impl_->nbytes = nbytes;
  s.impl_->owner = std::shared_ptr<const void>(
      p, [](const void* q) { ::operator delete (const_cast<void*>(q), std::align_val_t{64}); });
  return s;
}

storage storage::allocate(std::size_t nbytes, const device& dev) {
  if (dev.is_cpu()) return allocate(nbytes);
#ifdef PTHIO_HAVE_CUDA
  if (dev.is_cuda()) return detail::cuda_allocate(nbytes, dev);
#endif
  if (dev.is_cuda())
    throw error(errc::cuda, "cannot allocate on " + dev.str() +
                                ": pthio was built without CUDA; map the tensors to the CPU "
                                "(map_location \"cpu\")");
  throw error(errc::unsupported, "cannot allocate memory on device " + dev.str());
}

storage storage::borrow(void* data, std::size_t nbytes, const device& dev) {
  storage s;
  s.impl_ = std::make_shared<impl>();
  s.impl_->data = static_cast<std::byte*>(data);
  s.impl_->nbytes = nbytes;
  s.impl_->dev = dev;
  return s;
}

storage storage::wrap(std::shared_ptr<const void> owner, void* data, std::size_t nbytes,
                      const device& dev) {
  storage s = borrow(data, nbytes, dev);
  s.impl_->owner = std::move(owner);
  return s;
}

}  // namespace pthio
