// The legacy format (torch < 1.6, or _use_new_zipfile_serialization=False): one stream of pickles
// (magic number, protocol version, sys_info, the object, the storage keys) followed by each
// storage's bytes, a little-endian element count then the elements (torch/serialization.py
// `_legacy_save`).
#include <algorithm>
#include <cstring>
#include <map>
#include <unordered_map>

#include "../byte_reader.h"
#include "internal.h"

namespace pthio::detail {

checkpoint load_legacy(const byte_source& src, const load_options& opt) {
  checkpoint ck;
  ck.format = checkpoint_format::legacy;
  auto all = src.bytes();
  std::size_t pos = 0;
  auto next_pickle = [&](const char* what, unpickle_options u) {
    std::size_t used = 0;
    u.context = std::string("legacy ") + what;
    value v;
    try {
      v = run_unpickle(all.subspan(pos), u, &used);
    } catch (const error& e) {
      // Offsets inside a sub-pickle are relative to its start: report file offsets.
      throw error(e.kind(), e.message(), e.context(),
                  e.offset() ? std::optional<std::uint64_t>(*e.offset() + pos) : std::nullopt);
    }
    pos += used;
    return v;
  };
  unpickle_options plain = pickle_options_for(opt, "");
  value magic = next_pickle("magic number", plain);
  if (!magic.is_big_int() || magic.as_big_int().to_string() != "119547037146038801333356")
    throw error(errc::corrupt_checkpoint, "legacy stream does not start with torch's magic number");
  value proto = next_pickle("protocol version", plain);
  if (!proto.is_int() || proto.as_int() != 1001)
    throw error(errc::unsupported, "legacy protocol version " +
                                       (proto.is_int() ? std::to_string(proto.as_int()) : "?") +
                                       " is not supported (1001 is)");
  value sys_info = next_pickle("sys_info", plain);
  if (const value* le = sys_info.find("little_endian"); le && le->is_bool() && !le->as_bool())
    ck.byte_order = std::endian::big;

  // A root storage, filled on the host once the pickle is read, then placed on `target`.
  struct pending {
    storage_value sv;
    std::uint64_t nbytes;
    device target;
    storage placed;
  };
  std::map<std::string, pending> roots;
  // Views of root storages (legacy view metadata): the view's host storage -> its root and bytes.
  struct view_of_root {
    storage view;  // held, so no other storage takes its id during the load
    const pending* root;
    std::uint64_t offset;
    std::uint64_t nbytes;
  };
  std::unordered_map<const void*, view_of_root> views;
  std::uint64_t total_declared = 0;
  unpickle_options u = pickle_options_for(opt, "");
  pid_memory last_pid;
  u.persistent_load = [&](const value& pid) -> value {
    // ('module', class, source_file, source): torch.save(model) names each nn.Module class this
    // way, with the class's source text to compare on load. The class (a global the pickle already
    // resolved) is the value; the source is never looked at.
    if (pid.is_tuple() && !pid.items().empty() && pid.items()[0].is_str() &&
        pid.items()[0].as_str() == "module") {
      const auto& a = pid.items();
      if (a.size() != 4 || !a[1].is_global())
        bad_args("persistent id", "of type 'module' must be ('module', class, file, source)");
      return a[1];
    }
    storage_spec s = parse_pid(pid, true, last_pid);
    const device target = opt.map_location.apply(s.location);
    check_target(target, s.location);
    auto it = roots.find(s.key);
    if (it == roots.end()) {
      // Storage bytes come after the pickle; a file cannot declare more than it holds.
      if (!detail::checked_add(total_declared, s.nbytes, total_declared) ||
          total_declared > all.size())
        throw error(errc::corrupt_checkpoint, "storages declare more bytes than the file holds");
      storage_value sv;
      sv.data = storage::allocate(static_cast<std::size_t>(s.nbytes));
      sv.dtype = s.t;
      sv.numel = s.numel;
      sv.key = s.key;
      sv.location = s.location;
      it = roots.emplace(s.key, pending{sv, s.nbytes, target, {}}).first;
    }
    const auto& view = pid.as_tuple()[5];
    if (view.is_none()) return value::make_storage(it->second.sv);
    // (view_key, offset, view_numel): elements of the root storage.
    const char* fn = "legacy storage view";
    auto v = int_sequence(value::make_tuple({view.items().size() == 3 ? view.items()[1] : value(),
                                             view.items().size() == 3 ? view.items()[2] : value()}),
                          fn, "view");
    std::uint64_t es = element_size(it->second.sv.dtype), off_b, len_b, end;
    if (v[0] < 0 || v[1] < 0 || !checked_mul(static_cast<std::uint64_t>(v[0]), es, off_b) ||
        !checked_mul(static_cast<std::uint64_t>(v[1]), es, len_b) ||
        !detail::checked_add(off_b, len_b, end) || end > it->second.nbytes)
      bad_args(fn, "view lies outside its root storage");
    storage_value sv = it->second.sv;
    sv.data = storage::wrap(std::make_shared<storage>(it->second.sv.data),
                            it->second.sv.data.data() + off_b, static_cast<std::size_t>(len_b));
    sv.numel = static_cast<std::uint64_t>(v[1]);
    views.emplace(sv.data.id(), view_of_root{sv.data, &it->second, off_b, len_b});
    return value::make_storage(std::move(sv));
  };
  ck.root = next_pickle("object", u);
  value keys = next_pickle("storage keys", plain);
  if (!keys.is_list())
    throw error(errc::corrupt_checkpoint, "legacy storage key list is not a list", "", pos);
  detail::byte_reader r(all, errc::corrupt_checkpoint, "legacy storages");
  r.seek(pos);
  for (const auto& k : keys.as_list().items) {
    if (!k.is_str()) r.fail("storage key is not a str");
    auto it = roots.find(k.as_str());
    if (it == roots.end())
      r.fail("storage key '" + k.as_str() + "' was not named by the object pickle");
    std::uint64_t count = r.le64();
    std::uint64_t es = element_size(it->second.sv.dtype);
    if (count != it->second.sv.numel)
      r.fail("storage '" + k.as_str() + "' holds " + std::to_string(count) +
             " elements, the pickle declared " + std::to_string(it->second.sv.numel));
    std::uint64_t n;
    if (!checked_mul(count, es, n)) r.fail("storage size overflows");
    auto bytes = r.bytes(n);
    if (n) std::memcpy(it->second.sv.data.data(), bytes.data(), bytes.size());
    if (ck.byte_order == std::endian::big)
      swap_bytes(it->second.sv.data.data(), bytes.size(), it->second.sv.dtype);
  }
  // Storages bound for another device were filled on the host; they go there now, each once, as
  // the zip loader places its records, so tensors that shared a storage still share one.
  device_upload uploads;
  std::unordered_map<const void*, storage> placed;  // host storage id -> the storage on its device
  for (auto& [key, p] : roots) {
    if (p.target == cpu_device) continue;
    const storage& host = p.sv.data;
    p.placed =
        place_storage({host.data(), host.nbytes()}, p.sv.dtype, p.target, false, nullptr, uploads);
    placed.emplace(host.id(), p.placed);
  }
  uploads.finish();
  if (placed.empty()) return ck;
  for (const auto& [id, v] : views) {
    const storage& base = v.root->placed;
    if (!base.defined()) continue;  // its root stays on the host
    const auto offset = static_cast<std::size_t>(v.offset), n = static_cast<std::size_t>(v.nbytes);
    placed.emplace(id, base.data() ? storage::wrap(std::make_shared<storage>(base),
                                                   base.data() + offset, n, base.dev())
                                   : storage::borrow(nullptr, n, base.dev()));
  }
  transform_values(ck.root, [&](const value& v) -> std::optional<value> {
    if (v.is_tensor()) {
      const tensor& t = v.as_tensor();
      auto it = placed.find(t.get_storage().id());
      if (it == placed.end()) return std::nullopt;
      return value(tensor(it->second, t.dtype(), t.shape(), t.strides(), t.storage_offset(),
                          t.requires_grad()),
                   v.is_parameter());
    }
    if (v.is_storage()) {
      auto it = placed.find(v.as_storage().data.id());
      if (it == placed.end()) return std::nullopt;
      storage_value sv = v.as_storage();
      sv.data = it->second;
      return value::make_storage(std::move(sv));
    }
    return std::nullopt;
  });
  return ck;
}

}  // namespace pthio::detail
