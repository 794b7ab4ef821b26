// CUDA entry points when pthio is built without the CUDA toolkit.
#include "pthio/cuda.hpp"

namespace pthio {

bool cuda_built() noexcept { return false; }
bool cuda_available() noexcept { return false; }
int cuda_device_count() noexcept { return 0; }

}  // namespace pthio
