// The unpickler as the torch loaders run it: torch's globals, a memory budget scaled by the
// pickle's size, numpy arrays turned into tensors afterwards; and the bare pickle format.
#include "../byte_reader.h"
#include "internal.h"

namespace pthio::detail {

namespace {

// Objects built per pickle byte at most: a 2-byte BINGET makes a value of ~48 bytes, so real
// files reach ~30x; beyond this a stream is building far more than it describes.
constexpr std::uint64_t amplification_per_input_byte = 64;

}  // namespace

unpickle_options pickle_options_for(const load_options& opt, std::string context) {
  unpickle_options u;
  u.globals = &torch_globals();
  u.strict = opt.strict;
  u.limits = opt.limits;
  u.context = std::move(context);
  return u;
}

value run_unpickle(std::span<const std::byte> bytes, unpickle_options& u, std::size_t* consumed) {
  // The budget for objects: the fixed allowance plus a bounded amplification of the input.
  std::uint64_t scaled;
  if (!detail::checked_mul(bytes.size(), amplification_per_input_byte, scaled) ||
      !detail::checked_add(scaled, u.limits.max_memory, u.limits.max_memory))
    u.limits.max_memory = UINT64_MAX;
  bool saw_numpy = false;
  u.on_global = [&saw_numpy](const global_ref& g, std::size_t) {
    if (g.name == "_reconstruct") saw_numpy = true;
  };
  auto r = unpickle(bytes, u);
  if (saw_numpy) convert_numpy_arrays(r.root);
  if (consumed) *consumed = r.consumed;
  return std::move(r.root);
}

checkpoint load_pickle(const byte_source& src, const load_options& options) {
  checkpoint ck;
  ck.format = checkpoint_format::pickle;
  unpickle_options u = pickle_options_for(options, "pickle");
  ck.root = run_unpickle(src.bytes(), u, nullptr);
  return ck;
}

}  // namespace pthio::detail
