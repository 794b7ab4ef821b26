// safetensors reading and writing (issue #7).
#include "checkpoint_internal.h"

namespace pthio::detail {

checkpoint load_safetensors(const byte_source&, const load_options&) {
  throw error(errc::unsupported, "safetensors files are not readable yet");
}

void save_safetensors(sink&, const value&, const save_options&) {
  throw error(errc::unsupported, "writing safetensors files is not supported yet");
}

}  // namespace pthio::detail
