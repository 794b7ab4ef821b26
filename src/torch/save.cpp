// Saving checkpoints as torch.save does (torch/serialization.py `_save` and `_legacy_save`,
// torch/_tensor.py `_reduce_ex_internal`): tensors pickle as REDUCE of a rebuild function over a
// persistent id naming their storage; each storage is written once, keyed "0", "1", ... in the
// order the pickle first meets it; records are laid out as the chosen torch version lays them.
#include <algorithm>
#include <cstring>
#include <deque>
#include <map>
#include <random>
#include <unordered_map>

#include "../cuda/device_copy.h"
#include "internal.h"
#include "pthio/checkpoint.hpp"

namespace pthio {

namespace {

struct storage_entry {
  storage data;
  std::string key;
  dtype first_dtype;
  device location;
};

class storage_registry {
 public:
  // A lazy checkpoint's placeholders are written with the location their bytes load to, as an
  // eager load of the same file would have them.
  explicit storage_registry(const detail::lazy_records* lazy = nullptr) : lazy_(lazy) {}
  // The key of `s`, registering it on first sight.
  const storage_entry& key_for(const storage& s, dtype t) {
    auto it = index_.find(s.id());
    if (it != index_.end()) {
      const storage_entry& e = entries_[it->second];
      bool typed_a = !storage_class_name(e.first_dtype).empty(),
           typed_b = !storage_class_name(t).empty();
      if (e.first_dtype != t && typed_a && typed_b)
        throw error(errc::invalid_argument,
                    "cannot save tensors that view one storage as different types (" +
                        std::string(dtype_name(e.first_dtype)) + " and " +
                        std::string(dtype_name(t)) + "), as torch.save refuses too");
      return e;
    }
    index_.emplace(s.id(), entries_.size());
    const detail::lazy_records::record* r = lazy_ ? lazy_->find(s) : nullptr;
    entries_.push_back({s, std::to_string(entries_.size()), t, r ? r->target : s.dev()});
    return entries_.back();
  }
  const std::deque<storage_entry>& entries() const { return entries_; }

 private:
  std::unordered_map<const void*, std::size_t> index_;
  std::deque<storage_entry> entries_;  // stable addresses: a key's address is its memo identity
  const detail::lazy_records* lazy_;
};

// Writes the persistent id ('storage', class, key, location, numel[, None]) and BINPERSID, as
// torch's persistent_id returns it and CPython pickles it. The key is one str object per storage
// in torch (id_map.setdefault), distinct from equal text elsewhere (a _metadata key "0" is
// another object), so it is memoized by the storage's identity, not by content.
void write_persistent_id(pickler& p, const storage_entry& e, dtype t, bool legacy,
                         const value& tuple_identity) {
  std::string_view cls = storage_class_name(t);
  const bool typed = !cls.empty();
  const std::size_t es = typed ? element_size(t) : 1;
  const auto raw = [&p](std::string_view s) {
    p.write_raw({reinterpret_cast<const std::byte*>(s.data()), s.size()});
  };
  raw("(");  // MARK
  p.save(value("storage"));
  if (typed)
    p.save_global("torch", cls);
  else
    p.save_global("torch.storage", "UntypedStorage");
  if (!p.get_memo(&e.key)) {
    std::string op = "X";  // BINUNICODE: u32 length, UTF-8
    for (int i = 0; i < 4; ++i) op += static_cast<char>((e.key.size() >> (8 * i)) & 0xff);
    raw(op + e.key);
    p.put_memo(&e.key);
  }
  p.save(value(e.location.str()));
  p.save(value(static_cast<std::int64_t>(e.data.nbytes() / es)));
  if (legacy) p.save(value());
  raw("t");  // TUPLE
  p.put_memo(tuple_identity.identity());
  raw("Q");  // BINPERSID
}

value int_tuple(const shape_t& v) {
  std::vector<value> items;
  items.reserve(v.size());
  for (auto x : v) items.emplace_back(x);
  return value::make_tuple(std::move(items));
}

// The pickle of `root` with storages registered in `reg`.
std::vector<std::byte> pickle_root(const value& root, storage_registry& reg, bool legacy) {
  // The pickler memoizes containers by address, as CPython memoizes by id(); values made here
  // live until the dump ends so no address is reused for a different object.
  std::deque<value> made;  // a deque: references stay valid while nested saves add more
  auto keep = [&made](value v) -> const value& {
    made.push_back(std::move(v));
    return made.back();
  };
  pickle_options po;
  po.save_hook = [&reg, legacy, &keep](pickler& p, const value& v) -> bool {
    if (v.is_storage()) {
      const storage_value& s = v.as_storage();
      write_persistent_id(p, reg.key_for(s.data, s.dtype), s.dtype, legacy,
                          keep(value::make_tuple()));
      return true;
    }
    if (!v.is_tensor()) return false;
    const tensor& t = v.as_tensor();
    if (!t.defined()) throw error(errc::invalid_argument, "cannot save an undefined tensor");
    if (is_quantized(t.dtype()))
      throw error(errc::unsupported,
                  "cannot save a " + std::string(dtype_name(t.dtype())) +
                      " tensor: pthio keeps quantized tensors' integer values but not their "
                      "scale and zero point; convert it to an integer dtype first");
    if (v.is_parameter()) {
      // Parameter.__reduce_ex__: _rebuild_parameter(data, requires_grad, OrderedDict()).
      tensor data = t;
      data.set_requires_grad(false);
      value args =
          value::make_tuple({value(data), value(t.requires_grad()), value::make_ordered_dict()});
      p.save(keep(value::make_object({"torch._utils", "_rebuild_parameter"}, std::move(args))));
      return true;
    }
    const bool v3 = storage_class_name(t.dtype()).empty();
    storage_value sv;
    sv.data = t.get_storage();
    sv.dtype = v3 ? dtype::uint8 : t.dtype();
    std::vector<value> args{value::make_storage(std::move(sv)),
                            value(t.storage_offset()),
                            int_tuple(t.shape()),
                            int_tuple(t.strides()),
                            value(t.requires_grad()),
                            value::make_ordered_dict()};
    if (v3) args.push_back(value::make_global("torch", std::string(dtype_name(t.dtype()))));
    p.save(
        keep(value::make_object({"torch._utils", v3 ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2"},
                                value::make_tuple(std::move(args)))));
    return true;
  };
  pickler pk(po);
  return pk.dump(root);
}

// Calls fn with the first n bytes of a storage, in consecutive pieces: a host storage's in one,
// a device storage's chunk by chunk through pinned buffers (the next chunk's copy overlapping fn).
template <class F>
void with_host_bytes(const storage& s, std::size_t n, F&& fn) {
  if (s.dev().is_cpu()) {
    fn(std::span<const std::byte>(s.data(), n));
  } else if (s.dev().type() == device_type::meta) {
    throw error(errc::unsupported, "cannot save a meta tensor's storage: it has no data");
  } else {
    detail::for_each_host_chunk(s, n, fn);
  }
}

std::string random_serialization_id() {
  std::random_device rd;
  std::mt19937_64 rng((static_cast<std::uint64_t>(rd()) << 32) ^ rd());
  std::string id;
  for (int i = 0; i < 40; ++i) id += static_cast<char>('0' + rng() % 10);
  return id;
}

std::span<const std::byte> text_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

void save_zip(sink& out, const value& root, const save_options& o, const std::string& archive,
              detail::lazy_records* lazy = nullptr) {
  storage_registry reg(lazy);
  std::vector<std::byte> pkl = pickle_root(root, reg, false);
  const std::string prefix = archive + "/";
  zip_writer zip(out);
  zip.set_compute_crc(o.compute_crc32);
  // torch 1.13 writes data records in the lexicographic order of their keys (0, 1, 10, 11, 2, ...);
  // torch 2.x in the order the pickle met them (0, 1, 2, ...).
  std::vector<const storage_entry*> order;
  for (const auto& e : reg.entries()) order.push_back(&e);
  if (o.layout == torch_layout::v1_13)
    std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->key < b->key; });
  // Host records' CRC-32s start on a second thread now, ahead of their writes.
  std::vector<std::span<const std::byte>> host_records;
  for (const auto* e : order)
    if (e->data.dev().is_cpu() && e->data.nbytes() > 0)
      host_records.emplace_back(e->data.data(), e->data.nbytes());
  zip.crc_ahead(std::move(host_records));
  zip.add(prefix + "data.pkl", pkl);
  if (o.layout == torch_layout::v2) {
    zip.add(prefix + ".format_version", text_bytes("1"));
    zip.add(prefix + ".storage_alignment", text_bytes("64"));
    zip.add(prefix + "byteorder", text_bytes("little"));
  }
  for (const auto* e : order) {
    // A placeholder's record is read now and released after its entry: one storage in memory.
    storage data = e->data;
    if (const detail::lazy_records::record* r = lazy ? lazy->find(data) : nullptr)
      data = lazy->read(*r);
    zip.begin_entry(prefix + "data/" + e->key, e->data.nbytes());
    with_host_bytes(data, e->data.nbytes(), [&](std::span<const std::byte> b) {
      constexpr std::size_t chunk = 64u << 20;
      for (std::size_t off = 0; off < b.size(); off += chunk)
        zip.write(b.subspan(off, std::min(chunk, b.size() - off)));
    });
    zip.end_entry();
  }
  zip.add(prefix + "version", text_bytes("3\n"));
  if (o.layout == torch_layout::v2) {
    std::string id = o.serialization_id.empty() ? random_serialization_id() : o.serialization_id;
    if (id.size() != 40 ||
        !std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; }))
      throw error(errc::invalid_argument, "serialization_id must be 40 decimal digits");
    zip.add(prefix + ".data/serialization_id", text_bytes(id));
  }
  zip.finish();
}

void write_pickled(sink& out, const value& v) {
  pickler p;
  auto b = p.dump(v);
  out.write(b);
}

void save_legacy(sink& out, const value& root) {
  // magic number, protocol version, sys_info, object, sorted keys, then each storage as an
  // 8-byte little-endian element count and its bytes (torch/serialization.py _legacy_save).
  write_pickled(out, value(big_int::from_decimal("119547037146038801333356")));
  write_pickled(out, value(1001));
  value sys_info = value::make_dict();
  sys_info.as_dict().set(value("protocol_version"), value(1001));
  sys_info.as_dict().set(value("little_endian"), value(true));
  value sizes = value::make_dict();
  sizes.as_dict().set(value("short"), value(2));
  sizes.as_dict().set(value("int"), value(4));
  sizes.as_dict().set(value("long"), value(4));
  sys_info.as_dict().set(value("type_sizes"), sizes);
  write_pickled(out, sys_info);
  storage_registry reg;
  out.write(pickle_root(root, reg, true));
  std::vector<const storage_entry*> order;
  for (const auto& e : reg.entries()) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->key < b->key; });
  std::vector<value> keys;
  for (const auto* e : order) keys.emplace_back(e->key);
  write_pickled(out, value::make_list(std::move(keys)));
  for (const auto* e : order) {
    std::size_t es = storage_class_name(e->first_dtype).empty() ? 1 : element_size(e->first_dtype);
    std::uint64_t count = e->data.nbytes() / es;
    std::byte le[8];
    for (int i = 0; i < 8; ++i) le[i] = static_cast<std::byte>(count >> (8 * i));
    out.write(le, 8);
    with_host_bytes(e->data, static_cast<std::size_t>(count * es),
                    [&](std::span<const std::byte> b) { out.write(b); });
  }
}

}  // namespace

void detail::save_zip_streaming(sink& out, const value& root, const save_options& options,
                                lazy_records* lazy) {
  save_zip(out, root, options,
           options.archive_name.empty() ? std::string("archive") : options.archive_name, lazy);
}

void save(sink& out, const value& root, const save_options& options) {
  if (options.format == checkpoint_format::legacy) return save_legacy(out, root);
  if (options.format == checkpoint_format::safetensors)
    return detail::save_safetensors(out, root, options);
  if (options.format != checkpoint_format::zip)
    throw error(errc::invalid_argument, "save writes the zip, legacy or safetensors format");
  save_zip(out, root, options,
           options.archive_name.empty() ? std::string("archive") : options.archive_name);
}

void save(const std::filesystem::path& path, const value& root, const save_options& options) {
  try {
    save_options o = options;
    // torch names the archive folder after the file's stem ("model.pth" -> "model").
    if (o.archive_name.empty()) o.archive_name = path.stem().string();
    if (o.archive_name.empty()) o.archive_name = "archive";
    file_sink out(path);
    save(out, root, o);
    out.commit();
  } catch (const error& e) {
    throw e.with_outer_context(path.string());
  }
}

}  // namespace pthio
