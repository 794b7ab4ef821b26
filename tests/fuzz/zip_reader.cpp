// Fuzz target: the zip container. Parses the archive, then reads every entry (inflating deflated
// ones) with CRC-32 verification, looks each up by name, and asks for its owner and CRC.
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  pthio::zip_read_options opts;
  opts.max_inflated_size = std::uint64_t{256} << 20;  // under -rss_limit_mb=2048 with room to spare
  try {
    pthio::zip_reader zip(pthio::byte_source::borrow(pthio_fuzz::as_bytes(data, size), "fuzz.zip"),
                          opts);
    for (const pthio::zip_entry& e : zip.entries()) {
      if (zip.find(e.name) == nullptr) __builtin_trap();  // every parsed name can be found
      try {
        auto bytes = zip.read(e, /*verify_crc=*/true);
        if (bytes.size() != e.uncompressed_size) __builtin_trap();
        if (!zip.owner_of(e) && e.method != 0) __builtin_trap();
        // A stored entry's bytes lie inside the input.
        if (e.method == 0 && !bytes.empty() &&
            (bytes.data() < reinterpret_cast<const std::byte*>(data) ||
             bytes.data() + bytes.size() > reinterpret_cast<const std::byte*>(data) + size))
          __builtin_trap();
        (void)zip.compute_crc(e);
      } catch (const pthio::error&) {
        // One bad entry (CRC, deflate stream) does not stop the others from being read.
      }
    }
  } catch (const pthio::error&) {}
  return 0;
}
