// Fuzz target: the pickle machine alone, with torch's global table, in weights-only (strict) mode
// and not. Persistent ids resolve to inert values: a 64-byte float32 storage for a tuple id (so
// torch's rebuild handlers run on real storages), the id itself otherwise.
#include <cstring>

#include "fuzz_common.h"

namespace {

pthio::value inert_persistent(const pthio::value& pid) {
  if (!pid.is_tuple()) return pid;
  pthio::storage_value sv;
  sv.data = pthio::storage::allocate(64);
  std::memset(sv.data.data(), 0x3c, 64);
  sv.dtype = pthio::dtype::float32;
  sv.numel = 16;
  sv.key = "0";
  return pthio::value::make_storage(std::move(sv));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto bytes = pthio_fuzz::as_bytes(data, size);
  for (bool strict : {false, true}) {
    pthio::unpickle_options o;
    o.globals = &pthio::torch_globals();
    o.strict = strict;
    o.persistent_load = inert_persistent;
    o.on_global = [size](const pthio::global_ref&, std::size_t offset) {
      if (offset >= size) __builtin_trap();  // the opcode naming a global lies in the input
    };
    o.context = "fuzz.pkl";
    try {
      pthio::unpickle_result r = pthio::unpickle(bytes, o);
      if (r.consumed == 0 || r.consumed > size) __builtin_trap();
      pthio_fuzz::exercise(r.root);
    } catch (const pthio::error& e) {
      if (e.offset() && *e.offset() > size) __builtin_trap();  // offsets point into the input
    }
  }
  return 0;
}
