// Fuzz target: safetensors files loaded from memory through load_checkpoint (format detection
// sends an 8-byte little-endian header length followed by '{' to the safetensors reader).
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  for (auto mode : {pthio::load_mode::eager, pthio::load_mode::mmap}) {
    pthio::load_options o;
    o.mode = mode;
    o.map_location = pthio::map_location("cpu");
    try {
      pthio::checkpoint ck = pthio::load_checkpoint(
          pthio::byte_source::borrow(pthio_fuzz::as_bytes(data, size), "fuzz.safetensors"), o);
      pthio_fuzz::exercise(ck.root);
    } catch (const pthio::error&) {}
  }
  return 0;
}
