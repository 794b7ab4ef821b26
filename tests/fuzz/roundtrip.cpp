// Fuzz target: parse(write(x)) == x. The input becomes a value -- a checkpoint when it loads as
// one (zip, TorchScript, legacy), else a pickle unpickled with torch's globals and persistent
// ids resolved to small storages so that tensors appear -- which pthio::save writes to memory
// (the zip layouts of torch 2.x and 1.13, and the legacy format) and load_checkpoint reads back.
// The two must render to the same `dump --json`. A value save() refuses (a pthio::error) is
// fine; a written file that does not load, or loads as something else, is a bug.
#include <algorithm>
#include <cstdio>
#include <cstring>

#include "fuzz_common.h"

namespace {

pthio::value storage_for(const pthio::value& pid) {
  // ('storage', class, key, location, numel): a storage of the named type and key, at most 4 KiB.
  pthio::storage_value sv;
  sv.dtype = pthio::dtype::float32;
  sv.key = "0";
  if (pid.is_tuple() && pid.items().size() >= 3) {
    const auto& a = pid.items();
    if (a[1].is_global())
      if (auto t = pthio::dtype_from_storage_class(a[1].as_global().name)) sv.dtype = *t;
    if (a[2].is_str()) sv.key = a[2].as_str().substr(0, 16);
  }
  const std::size_t es = std::max<std::size_t>(1, pthio::element_size(sv.dtype));
  sv.numel = 4096 / es;
  sv.data = pthio::storage::allocate(sv.numel * es);
  for (std::size_t i = 0; i < sv.data.nbytes(); ++i)
    sv.data.data()[i] = static_cast<std::byte>(i * 7 + sv.key.size());
  return pthio::value::make_storage(std::move(sv));
}

bool build_value(std::span<const std::byte> bytes, pthio::value& out) {
  pthio::load_options lo;
  lo.map_location = pthio::map_location("cpu");
  lo.zip.max_inflated_size = std::uint64_t{64} << 20;
  auto fmt = pthio::detect_format(bytes);
  try {
    if (fmt &&
        (*fmt == pthio::checkpoint_format::zip || *fmt == pthio::checkpoint_format::legacy)) {
      out = pthio::load_checkpoint(pthio::byte_source::borrow(bytes, "fuzz.pth"), lo).root;
      return true;
    }
    pthio::unpickle_options u;
    u.globals = &pthio::torch_globals();
    u.persistent_load = storage_for;
    out = pthio::unpickle(bytes, u).root;
    return true;
  } catch (const pthio::error&) {
    return false;
  }
}

[[noreturn]] void mismatch(const char* what, const std::string& a, const std::string& b) {
  std::fprintf(stderr, "roundtrip: %s\n--- before\n%.4000s\n--- after\n%.4000s\n", what, a.c_str(),
               b.c_str());
  __builtin_trap();
}

// numpy arrays stay inert _reconstruct objects in a bare unpickle; load_checkpoint turns them
// into tensors. Such a value reads back as the tensors it means, not as itself.
bool has_numpy_array(const pthio::value& root) {
  return pthio_fuzz::any_value(root, [](const pthio::value& v) {
    return v.is_object() && v.as_object().type.name == "_reconstruct";
  });
}

struct variant {
  pthio::checkpoint_format format;
  pthio::torch_layout layout;
};

enum class outcome { refused, unreadable, loaded };

// save then load: refused when save() refuses the value, unreadable when what it wrote does not
// load (the message in `why`).
outcome save_and_load(const pthio::value& x, const variant& v, pthio::value& back,
                      std::string& why) {
  pthio::save_options so;
  so.format = v.format;
  so.layout = v.layout;
  so.serialization_id = "0123456789012345678901234567890123456789";
  pthio::memory_sink sink;
  try {
    pthio::save(sink, x, so);
  } catch (const pthio::error&) {
    return outcome::refused;  // a value save() refuses to write, e.g. a quantized tensor
  }
  try {
    pthio::load_options lo;
    lo.map_location = pthio::map_location("cpu");
    back = pthio::load_checkpoint(
               pthio::byte_source::from_vector(std::move(sink.buffer()), "saved.pth"), lo)
               .root;
  } catch (const pthio::error& e) {
    why = e.what();
    return outcome::unreadable;
  }
  return outcome::loaded;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  pthio::value x;
  if (!build_value(pthio_fuzz::as_bytes(data, size), x)) return 0;
  const std::string before = pthio_fuzz::exercise(x, std::uint64_t{1} << 22);
  if (before.empty()) return 0;  // too many tensor elements to compare cheaply
  const bool exact = !has_numpy_array(x);
  for (const variant v : {variant{pthio::checkpoint_format::zip, pthio::torch_layout::v2},
                          variant{pthio::checkpoint_format::zip, pthio::torch_layout::v1_13},
                          variant{pthio::checkpoint_format::legacy, pthio::torch_layout::v2}}) {
    pthio::value back;
    std::string why;
    const outcome first = save_and_load(x, v, back, why);
    if (first == outcome::refused) continue;
    if (exact) {
      if (first == outcome::unreadable)
        mismatch("what pthio::save wrote does not load", before, why);
      const std::string after = pthio::cli::dump_json(back);
      if (after != before) mismatch("the value read back differs", before, after);
      continue;
    }
    // numpy arrays, inert in a bare unpickle, are checked (and may be refused) when a checkpoint
    // loads and become tensors: from there on the value must be a fixed point.
    if (first == outcome::unreadable) continue;
    const std::string after = pthio::cli::dump_json(back);
    pthio::value again;
    const outcome second = save_and_load(back, v, again, why);
    if (second != outcome::loaded)
      mismatch("what was read back cannot be written and read again", after, why);
    const std::string twice = pthio::cli::dump_json(again);
    if (twice != after) mismatch("the value read back a second time differs", after, twice);
  }
  return 0;
}
