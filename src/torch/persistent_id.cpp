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
  if (!a[1].is_global()) bad_args(fn, "storage type must be a global");
  if (!a[2].is_str() && !a[2].is_int()) bad_args(fn, "key must be a str");
  const std::string int_key = a[2].is_int() ? std::to_string(a[2].as_int()) : std::string();
  if (!a[3].is_str()) bad_args(fn, "location must be a str");
  if (!a[4].is_int()) bad_args(fn, "numel must be a non-negative int");
  return parse_pid_fields(a[1].as_global(), a[2].is_str() ? a[2].as_str() : int_key, a[3].as_str(),
                          a[4].as_int(), last);
}

bool& tensor_record_fast_path() noexcept {
  thread_local bool on = true;
  return on;
}

std::uint64_t& tensor_records_read() noexcept {
  thread_local std::uint64_t n = 0;
  return n;
}

storage_spec parse_pid_fields(const global_ref& g, std::string_view key, std::string_view location,
                              std::int64_t numel, pid_memory& last) {
  const char* fn = "persistent id";
  storage_spec s;
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
  // Keys name records and appear in messages: a control byte (a NUL cuts what() short) is refused.
  if (std::any_of(key.begin(), key.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
    bad_args(fn, "key holds a control character");
  s.key = key;
  if (last.location_text.empty() || location != last.location_text) {
    try {
      last.location = device::parse(location);
    } catch (const error&) {
      bad_args(fn, "bad location tag '" + std::string(location) + "'");
    }
    last.location_text = location;
  }
  s.location = last.location;
  if (numel < 0) bad_args(fn, "numel must be a non-negative int");
  s.numel = static_cast<std::uint64_t>(numel);
  if (!checked_mul(s.numel, element_size(s.t), s.nbytes)) bad_args(fn, "storage size overflows");
  return s;
}

}  // namespace pthio::detail
