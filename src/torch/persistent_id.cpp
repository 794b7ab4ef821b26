// Persistent ids: how a torch pickle names the storage behind a tensor
// (torch/serialization.py `persistent_id`): ('storage', storage_type, key, location, numel), with
// a sixth field, view metadata, in the legacy format.
#include <algorithm>

#include "../byte_reader.h"
#include "internal.h"

namespace pthio::detail {

// ('storage', storage_type, key, location, numel[, view_metadata]) -> spec.
storage_spec parse_pid(const value& pid, bool legacy, pid_memory& last) {
  const char* fn = "persistent id";
  if (!pid.is_tuple()) bad_args(fn, "must be a tuple, got " + std::string(pid.type_name()));
  const auto& a = pid.as_tuple();
  if (a.empty() || !a[0].is_str()) bad_args(fn, "must start with a type name");
  if (a[0].as_str() != "storage")
    throw error(errc::unsupported,
                "persistent id of type '" + a[0].as_str() + "' is not supported");
  if (a.size() != (legacy ? 6u : 5u))
    bad_args(fn, "has " + std::to_string(a.size()) + " fields, expected " + (legacy ? "6" : "5"));
  storage_spec s;
  if (!a[1].is_global()) bad_args(fn, "storage type must be a global");
  const auto& g = a[1].as_global();
  if (!last.type.name.empty() && g == last.type) {
    s.t = last.t;
  } else if (g.name == "UntypedStorage") {
    s.t = dtype::uint8;
  } else if (auto t = dtype_from_storage_class(g.name);
             t && (g.module == "torch" || g.module == "torch.cuda")) {
    s.t = *t;
  } else if (g.module == "torch" && dtype_from_name(g.name)) {
    s.t = *dtype_from_name(g.name);  // TorchScript 1.x writes the dtype itself
  } else {
    throw error(errc::unsupported, "storage type " + g.qualified() + " is not supported");
  }
  if (!(g == last.type)) {
    last.type = g;
    last.t = s.t;
  }
  if (!a[2].is_str() && !a[2].is_int()) bad_args(fn, "key must be a str");
  s.key = a[2].is_str() ? a[2].as_str() : std::to_string(a[2].as_int());
  // Keys name records and appear in messages: a control byte (a NUL cuts what() short) is refused.
  if (std::any_of(s.key.begin(), s.key.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
    bad_args(fn, "key holds a control character");
  if (!a[3].is_str()) bad_args(fn, "location must be a str");
  if (last.location_text.empty() || a[3].as_str() != last.location_text) {
    try {
      last.location = device::parse(a[3].as_str());
    } catch (const error&) {
      bad_args(fn, "bad location tag '" + a[3].as_str() + "'");
    }
    last.location_text = a[3].as_str();
  }
  s.location = last.location;
  if (!a[4].is_int() || a[4].as_int() < 0) bad_args(fn, "numel must be a non-negative int");
  s.numel = static_cast<std::uint64_t>(a[4].as_int());
  if (!checked_mul(s.numel, element_size(s.t), s.nbytes)) bad_args(fn, "storage size overflows");
  return s;
}

}  // namespace pthio::detail
