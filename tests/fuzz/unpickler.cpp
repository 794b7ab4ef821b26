// Fuzz target: the pickle machine alone, with torch's global table, in weights-only (strict) mode
// and not; then the static scanner's pass over the same bytes (as a file: every pickle in it,
// through errors, or whatever container the bytes turn out to be). Persistent ids resolve to inert values: a 64-byte float32 storage for a tuple id (so
// torch's rebuild handlers run on real storages), the id itself otherwise.
#include <algorithm>
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
  // The scanner never throws on bad input; what it reports lies in the input.
  const pthio::scan_report r = pthio::scan_bytes(bytes, "fuzz.pkl");
  for (const auto& g : r.globals)
    for (const auto& w : g.where)
      if (w.member.empty() && w.offset >= size) __builtin_trap();
  for (const auto& d : r.dangerous)
    if (std::find(r.unsafe.begin(), r.unsafe.end(), d) == r.unsafe.end()) __builtin_trap();
  if (r.verdict() == pthio::scan_verdict::safe && r.error_count) __builtin_trap();
  return 0;
}
