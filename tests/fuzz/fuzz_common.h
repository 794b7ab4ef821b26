// Shared by the fuzz targets: the libFuzzer entry point's contract and the checks every target
// applies to what it loads.
//
// Contract (docs/architecture.md#errors): any input either loads or throws pthio::error. Anything
// else escaping a target -- another exception type, a sanitizer report, a hang, an allocation past
// libFuzzer's -rss_limit_mb / -malloc_limit_mb -- is a bug. So the targets catch pthio::error and
// nothing else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "cli/json.h"
#include "pthio/pthio.hpp"

namespace pthio_fuzz {

inline std::span<const std::byte> as_bytes(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const std::byte*>(data), size};
}

// Calls fn on every value reachable from `root`, through every kind of container (dict keys,
// object args, state and items included), each container entered once, until fn returns true;
// returns whether it did. Iterative: values from the unpickler may nest up to max_depth.
template <class F>
bool any_value(const pthio::value& root, F&& fn) {
  std::vector<const pthio::value*> work{&root};
  std::unordered_set<const void*> seen;
  while (!work.empty()) {
    const pthio::value* v = work.back();
    work.pop_back();
    if (fn(*v)) return true;
    const void* id = v->identity();
    if (!id || !seen.insert(id).second) continue;
    switch (v->type()) {
      case pthio::value::kind::list:
      case pthio::value::kind::tuple:
        for (const auto& e : v->items()) work.push_back(&e);
        break;
      case pthio::value::kind::dict:
        for (const auto& [k, e] : v->as_dict().entries()) {
          work.push_back(&k);
          work.push_back(&e);
        }
        for (const auto& [k, e] : v->as_dict().attrs) work.push_back(&e);
        break;
      case pthio::value::kind::object: {
        const auto& o = v->as_object();
        work.push_back(&o.args);
        work.push_back(&o.state);
        for (const auto& e : o.list_items) work.push_back(&e);
        for (const auto& [k, e] : o.dict_items) {
          work.push_back(&k);
          work.push_back(&e);
        }
        break;
      }
      default: break;
    }
  }
  return false;
}

// Every tensor reachable from `root` (any_value's walk).
inline std::vector<const pthio::tensor*> all_tensors(const pthio::value& root) {
  std::vector<const pthio::tensor*> out;
  any_value(root, [&](const pthio::value& v) {
    if (v.is_tensor()) out.push_back(&v.as_tensor());
    return false;
  });
  return out;
}

// Renders a loaded value as `pthio dump --json` and `pthio ls --json` would, which reads every
// element of every tensor (an out-of-bounds view shows up under ASan) -- unless the tensors'
// elements add up to more than `max_bytes`: a stride-0 view may legally claim 2^40 elements
// over a 4-byte storage, and hashing those is the caller's choice, not a load's cost.
// Returns the dump, or "" when skipped (or refused by dump_json as an exponential expansion).
inline std::string exercise(const pthio::value& root,
                            std::uint64_t max_bytes = std::uint64_t{1} << 24) {
  std::uint64_t total = 0;
  for (const pthio::tensor* t : all_tensors(root)) {
    std::uint64_t n = 0;
    if (__builtin_mul_overflow(static_cast<std::uint64_t>(t->numel()),
                               pthio::element_size(t->dtype()), &n) ||
        n > max_bytes || (total += n) > max_bytes)
      return "";
  }
  try {
    std::string dump = pthio::cli::dump_json(root);
    pthio::visit_tensors(root, [](const std::string& key, const pthio::value& v) {
      (void)pthio::cli::tensor_json(v, &key);
    });
    return dump;
  } catch (const pthio::error& e) {
    // Shared containers that would expand exponentially when written out are refused.
    if (e.kind() != pthio::errc::limit_exceeded) throw;
    return "";
  }
}

}  // namespace pthio_fuzz
