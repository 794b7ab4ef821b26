// Loading torch checkpoints: format detection, torch's rebuild functions, storages from zip
// records or from the legacy stream, map_location.
#include "pthio/checkpoint.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>

#include "byte_reader.h"
#include "checkpoint_internal.h"
#include "value_internal.h"
#include "cuda/device_copy.h"
#include "pthio/cuda.hpp"
#include "pthio/safetensors.hpp"
#include "pthio/sharded.hpp"

namespace pthio {

using detail::checked_mul;

std::string_view format_name(checkpoint_format f) noexcept {
  switch (f) {
    case checkpoint_format::zip: return "zip";
    case checkpoint_format::legacy: return "legacy";
    case checkpoint_format::torchscript: return "torchscript";
    case checkpoint_format::safetensors: return "safetensors";
    case checkpoint_format::pickle: return "pickle";
  }
  return "?";
}

map_location map_location::mapping(std::vector<std::pair<std::string, std::string>> pairs) {
  std::vector<std::pair<device, device>> parsed;
  for (const auto& [from, to] : pairs) parsed.emplace_back(device::parse(from), device::parse(to));
  return function([parsed](const device& saved) {
    for (const auto& [from, to] : parsed)
      if (from == saved) return to;
    return saved;
  });
}

map_location map_location::function(std::function<device(const device& saved)> fn) {
  map_location m;
  m.fn_ = std::move(fn);
  return m;
}

namespace {

// The legacy stream opens with a pickled LONG1 of this magic number (torch/serialization.py).
constexpr std::uint8_t legacy_magic_pickle[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                                0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

}  // namespace

std::optional<checkpoint_format> detect_format(std::span<const std::byte> b) noexcept {
  auto at = [&](std::size_t i) { return static_cast<std::uint8_t>(b[i]); };
  if (b.size() >= 4 && at(0) == 'P' && at(1) == 'K' &&
      ((at(2) == 3 && at(3) == 4) || (at(2) == 5 && at(3) == 6)))
    return checkpoint_format::zip;
  if (b.size() >= sizeof legacy_magic_pickle &&
      std::memcmp(b.data(), legacy_magic_pickle, sizeof legacy_magic_pickle) == 0)
    return checkpoint_format::legacy;
  if (b.size() >= 10) {
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | at(static_cast<std::size_t>(i));
    if (n >= 2 && n <= b.size() - 8 && at(8) == '{') return checkpoint_format::safetensors;
  }
  if (!b.empty() && (at(0) == 0x80 || at(0) == '(' || at(0) == '}' || at(0) == ']' || at(0) == 'c'))
    return checkpoint_format::pickle;
  return std::nullopt;
}

namespace detail {

[[noreturn]] void bad_args(const char* fn, const std::string& why) {
  throw error(errc::corrupt_checkpoint, std::string(fn) + ": " + why);
}

std::vector<std::int64_t> int_sequence(const value& v, const char* fn, const char* what) {
  if (!v.is_tuple() && !v.is_list()) bad_args(fn, std::string(what) + " must be a tuple, got " + std::string(v.type_name()));
  std::vector<std::int64_t> out;
  out.reserve(v.items().size());
  for (const auto& e : v.items()) {
    if (!e.is_int()) bad_args(fn, std::string(what) + " holds a " + std::string(e.type_name()) + ", not an int");
    out.push_back(e.as_int());
  }
  return out;
}

namespace {

void need_args(std::span<const value> a, std::size_t lo, std::size_t hi, const char* fn) {
  if (a.size() < lo || a.size() > hi)
    bad_args(fn, "takes " + std::to_string(lo) + (lo == hi ? "" : "-" + std::to_string(hi)) +
                     " arguments, got " + std::to_string(a.size()));
}

bool truthy(const value& v) {
  if (v.is_bool()) return v.as_bool();
  if (v.is_int()) return v.as_int() != 0;
  return !v.is_none();
}

// storage, offset, size, stride, requires_grad with the storage's dtype or an explicit one.
value rebuild(const char* fn, const value& st, const value& off, const value& size, const value& stride,
              bool requires_grad, std::optional<dtype> explicit_dtype) {
  if (st.type() != value::kind::storage)
    bad_args(fn, "the storage argument is a " + std::string(st.type_name()) + ", not a storage");
  const storage_value& s = st.as_storage();
  dtype t = explicit_dtype ? *explicit_dtype : s.dtype;
  if (!off.is_int()) bad_args(fn, "storage_offset must be an int");
  return value(tensor(s.data, t, int_sequence(size, fn, "size"), int_sequence(stride, fn, "stride"), off.as_int(),
                      requires_grad));
}

dtype dtype_of_global(const value& v, const char* fn) {
  if (!v.is_global() || v.as_global().module != "torch") bad_args(fn, "dtype must be a torch dtype global");
  auto t = dtype_from_name(v.as_global().name);
  if (!t) bad_args(fn, "unknown dtype torch." + v.as_global().name);
  return *t;
}

value rebuild_parameter(std::span<const value> a, const char* fn) {
  if (!a[0].is_tensor()) bad_args(fn, "data must be a tensor");
  tensor t = a[0].as_tensor();
  t.set_requires_grad(truthy(a[1]));
  return value(std::move(t), true);
}

// numpy scalar: (dtype object, raw bytes) -> a number.
value numpy_scalar(std::span<const value> a) {
  const char* fn = "numpy scalar";
  need_args(a, 1, 2, fn);
  if (!a[0].is_object() || a[0].as_object().type.name != "dtype") bad_args(fn, "first argument must be a numpy dtype");
  const auto& dt = a[0].as_object();
  if (!dt.args.is_tuple() || dt.args.items().empty() || !dt.args.items()[0].is_str())
    bad_args(fn, "numpy dtype without a type code");
  std::string code = dt.args.items()[0].as_str();
  bool big = false;
  if (dt.has_state && dt.state.is_tuple() && dt.state.items().size() > 1 && dt.state.items()[1].is_str())
    big = dt.state.items()[1].as_str() == ">";
  if (a.size() < 2 || a[1].type() != value::kind::bytes) bad_args(fn, "missing the scalar's bytes");
  std::string raw = a[1].as_bytes();
  if (big) std::reverse(raw.begin(), raw.end());
  auto need = [&](std::size_t n) {
    if (raw.size() != n) bad_args(fn, "dtype " + code + " needs " + std::to_string(n) + " bytes, got " + std::to_string(raw.size()));
  };
  auto get = [&]<class T>(T) { T v; need(sizeof v); std::memcpy(&v, raw.data(), sizeof v); return v; };
  if (code == "f8") return value(get(double{}));
  if (code == "f4") return value(static_cast<double>(get(float{})));
  if (code == "f2") return value(static_cast<double>(half_to_float(get(std::uint16_t{}))));
  if (code == "i8") return value(get(std::int64_t{}));
  if (code == "i4") return value(get(std::int32_t{}));
  if (code == "i2") return value(get(std::int16_t{}));
  if (code == "i1") return value(get(std::int8_t{}));
  if (code == "u1") return value(get(std::uint8_t{}));
  if (code == "u2") return value(get(std::uint16_t{}));
  if (code == "u4") return value(get(std::uint32_t{}));
  if (code == "u8") {
    std::uint64_t u = get(std::uint64_t{});
    if (u <= static_cast<std::uint64_t>(INT64_MAX)) return value(static_cast<std::int64_t>(u));
    return value(big_int::from_decimal(std::to_string(u)));
  }
  if (code == "b1") return value(get(std::uint8_t{}) != 0);
  throw error(errc::unsupported, "numpy scalar of dtype '" + code + "' is not supported");
}

global_table make_torch_globals() {
  global_table g;
  g.add("torch._utils", "_rebuild_tensor", [](std::span<const value> a) {
    need_args(a, 4, 4, "_rebuild_tensor");
    return rebuild("_rebuild_tensor", a[0], a[1], a[2], a[3], false, std::nullopt);
  });
  g.add("torch._utils", "_rebuild_tensor_v2", [](std::span<const value> a) {
    need_args(a, 6, 7, "_rebuild_tensor_v2");
    return rebuild("_rebuild_tensor_v2", a[0], a[1], a[2], a[3], truthy(a[4]), std::nullopt);
  });
  g.add("torch._utils", "_rebuild_tensor_v3", [](std::span<const value> a) {
    need_args(a, 7, 8, "_rebuild_tensor_v3");
    return rebuild("_rebuild_tensor_v3", a[0], a[1], a[2], a[3], truthy(a[4]),
                   dtype_of_global(a[6], "_rebuild_tensor_v3"));
  });
  g.add("torch._utils", "_rebuild_parameter", [](std::span<const value> a) {
    need_args(a, 3, 3, "_rebuild_parameter");
    return rebuild_parameter(a, "_rebuild_parameter");
  });
  g.add("torch._utils", "_rebuild_parameter_with_state", [](std::span<const value> a) {
    need_args(a, 4, 4, "_rebuild_parameter_with_state");
    return rebuild_parameter(a, "_rebuild_parameter_with_state");
  });
  g.add("torch._utils", "_rebuild_qtensor", [](std::span<const value> a) {
    // (storage, offset, size, stride, quantizer_params, requires_grad, hooks): the integer
    // representation is kept; scale and zero point stay in the file.
    need_args(a, 7, 7, "_rebuild_qtensor");
    return rebuild("_rebuild_qtensor", a[0], a[1], a[2], a[3], truthy(a[5]), std::nullopt);
  });
  g.add("torch._utils", "_rebuild_meta_tensor_no_storage", [](std::span<const value> a) {
    const char* fn = "_rebuild_meta_tensor_no_storage";
    need_args(a, 4, 4, fn);
    storage s = storage::borrow(nullptr, 0, device(device_type::meta));
    return value(tensor(s, dtype_of_global(a[0], fn), int_sequence(a[1], fn, "size"),
                        int_sequence(a[2], fn, "stride"), 0, truthy(a[3])));
  });
  g.add("torch._tensor", "_rebuild_from_type_v2", [](std::span<const value> a) {
    // (func, type, args, state): rebuild with func; a Tensor / Parameter type keeps the result.
    const char* fn = "_rebuild_from_type_v2";
    need_args(a, 4, 4, fn);
    if (!a[0].is_global()) bad_args(fn, "func must be a global");
    const auto& f = a[0].as_global();
    const reduce_fn* h = torch_globals().find(f.module, f.name);
    if (!h || !*h) throw error(errc::unsupported, std::string(fn) + " with " + f.qualified() + " is not supported");
    if (!a[2].is_tuple()) bad_args(fn, "args must be a tuple");
    value r = (*h)(a[2].as_tuple());
    if (a[1].is_global() && a[1].as_global().name == "Parameter" && r.is_tensor()) return value(r.as_tensor(), true);
    return r;
  });
  for (const char* unsupported : {"_rebuild_sparse_tensor", "_rebuild_sparse_csr_tensor", "_rebuild_nested_tensor",
                                  "_rebuild_device_tensor_from_numpy", "_rebuild_wrapper_subclass",
                                  "_rebuild_xla_tensor", "_rebuild_mtia_tensor"}) {
    std::string name = unsupported;
    g.add("torch._utils", name, [name](std::span<const value>) -> value {
      throw error(errc::unsupported, "torch._utils." + name + " tensors are not supported");
    });
  }
  for (std::size_t i = 0; i < dtype_count; ++i) {
    auto t = static_cast<dtype>(i);
    g.add("torch", std::string(dtype_name(t)));
    if (!storage_class_name(t).empty()) g.add("torch", std::string(storage_class_name(t)));
  }
  for (const char* alias : {"float", "double", "half", "long", "int", "short", "cfloat", "cdouble", "chalf"})
    g.add("torch", alias);
  g.add("torch", "UntypedStorage");
  g.add("torch.storage", "UntypedStorage");
  g.add("torch.storage", "TypedStorage");
  g.add("torch", "Tensor");
  g.add("torch._tensor", "Tensor");
  g.add("torch.nn.parameter", "Parameter");
  g.add("torch", "Size", [](std::span<const value> a) {
    need_args(a, 0, 1, "torch.Size");
    if (a.empty()) return value::make_tuple();
    int_sequence(a[0], "torch.Size", "dims");
    return value::make_tuple(a[0].items());
  });
  g.add("torch", "device");
  g.add("torch", "per_tensor_affine");
  g.add("torch", "per_channel_affine");
  g.add("torch", "per_tensor_symmetric");
  g.add("torch", "per_channel_symmetric");
  g.add("torch", "per_channel_affine_float_qparams");
  g.add("torch", "strided");
  g.add("torch", "sparse_coo");
  for (const char* np : {"numpy.core.multiarray", "numpy._core.multiarray"}) {
    g.add(np, "scalar", numpy_scalar);
    g.add(np, "_reconstruct");  // ndarray: inert object, turned into a tensor after unpickling
  }
  g.add("numpy", "dtype");
  g.add("numpy", "ndarray");
  for (const char* np : {"numpy.dtypes", "numpy"})
    for (const char* cls : {"Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "Int16DType",
                            "Int8DType", "UInt8DType", "UInt16DType", "UInt32DType", "UInt64DType", "BoolDType"})
      g.add(np, cls);
  return g;
}

}  // namespace
}  // namespace detail

const global_table& torch_globals() {
  static const global_table table = detail::make_torch_globals();
  return table;
}

namespace detail {

namespace {

struct storage_spec {
  dtype t = dtype::uint8;
  std::uint64_t numel = 0;
  std::uint64_t nbytes = 0;
  std::string key;
  device location;
};

// What the last persistent id of a load named as its storage type and location, and what they
// mean: a state_dict names the same ones for every tensor.
struct pid_memory {
  global_ref type;
  dtype t = dtype::uint8;
  std::string location_text;
  device location;
};

// ('storage', storage_type, key, location, numel[, view_metadata]) -> spec.
storage_spec parse_pid(const value& pid, bool legacy, pid_memory& last) {
  const char* fn = "persistent id";
  if (!pid.is_tuple()) bad_args(fn, "must be a tuple, got " + std::string(pid.type_name()));
  const auto& a = pid.as_tuple();
  if (a.empty() || !a[0].is_str()) bad_args(fn, "must start with a type name");
  if (a[0].as_str() != "storage")
    throw error(errc::unsupported, "persistent id of type '" + a[0].as_str() + "' is not supported");
  if (a.size() != (legacy ? 6u : 5u))
    bad_args(fn, "has " + std::to_string(a.size()) + " fields, expected " + (legacy ? "6" : "5"));
  storage_spec s;
  if (!a[1].is_global()) bad_args(fn, "storage type must be a global");
  const auto& g = a[1].as_global();
  if (!last.type.name.empty() && g == last.type) {
    s.t = last.t;
  } else if (g.name == "UntypedStorage") {
    s.t = dtype::uint8;
  } else if (auto t = dtype_from_storage_class(g.name); t && (g.module == "torch" || g.module == "torch.cuda")) {
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
  if (std::any_of(s.key.begin(), s.key.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
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

// Copies or wraps record bytes into a storage on the mapped device.
storage materialize(std::span<const std::byte> bytes, const std::shared_ptr<const void>& owner, bool zero_copy,
                    std::size_t elem, const device& target) {
  if (target.type() == device_type::meta) return storage::borrow(nullptr, bytes.size(), target);
  if (target.is_cpu()) {
    if (zero_copy && owner && reinterpret_cast<std::uintptr_t>(bytes.data()) % elem == 0)
      return storage::wrap(owner, const_cast<std::byte*>(bytes.data()), bytes.size());
    storage s = storage::allocate_for_overwrite(bytes.size());
    if (!bytes.empty()) std::memcpy(s.data(), bytes.data(), bytes.size());
    return s;
  }
  if (target.is_cuda()) return copy_to_device(bytes, target);
  throw error(errc::unsupported, "cannot load storages to device " + target.str() +
                                     "; map them to \"cpu\" or \"cuda:N\" with map_location");
}

// Big-endian storages to this machine's order. Complex numbers swap each part on its own, as
// torch's byteswap does (torch/storage.py: complex element size halved).
void swap_bytes(std::byte* p, std::size_t n, dtype t) {
  std::size_t unit = is_complex(t) ? element_size(t) / 2 : element_size(t);
  if (unit <= 1) return;
  for (std::size_t i = 0; i + unit <= n; i += unit) std::reverse(p + i, p + i + unit);
}

}  // namespace

storage lazy_records::placeholder(record r) {
  storage s = storage::borrow(nullptr, static_cast<std::size_t>(r.nbytes), device(device_type::meta));
  by_storage.emplace(s.id(), std::move(r));
  placeholders.push_back(s);
  return s;
}

const lazy_records::record* lazy_records::find(const storage& s) const {
  auto it = by_storage.find(s.id());
  return it == by_storage.end() ? nullptr : &it->second;
}

storage lazy_records::read(const record& r) {
  std::span<const std::byte> bytes;
  if (r.entry) {
    std::unique_lock lock(inflate_mutex, std::defer_lock);
    if (r.entry->method != 0) lock.lock();
    bytes = zip->read(*r.entry, verify_crc);
  } else {
    bytes = source.bytes().subspan(static_cast<std::size_t>(r.offset), static_cast<std::size_t>(r.nbytes));
  }
  if (r.target.type() == device_type::meta) return storage::borrow(nullptr, bytes.size(), r.target);
  if (r.target.is_cuda() && !swap) return copy_to_device(bytes, r.target);
  storage host = storage::allocate_for_overwrite(bytes.size());
  if (!bytes.empty()) std::memcpy(host.data(), bytes.data(), bytes.size());
  if (swap) swap_bytes(host.data(), host.nbytes(), r.t);
  if (r.target.is_cuda()) return copy_to_device({host.data(), host.nbytes()}, r.target);
  return host;
}

const tensor* lazy_records::by_key(const value& root, const std::string& key) {
  std::call_once(index_once, [&] {
    visit_tensors(root, [&](const std::string& k, const value& v) { index.try_emplace(k, v.as_tensor()); });
  });
  auto it = index.find(key);
  return it == index.end() ? nullptr : &it->second;
}

namespace {

// numpy arrays come out of the unpickler as _reconstruct objects with a BUILD state
// (version, shape, dtype, is_fortran, raw bytes); turn them into tensors in place.
std::optional<value> numpy_array(const object_object& o) {
  if (o.type.name != "_reconstruct" || !o.has_state || !o.state.is_tuple()) return std::nullopt;
  const auto& st = o.state.as_tuple();
  if (st.size() != 5) return std::nullopt;
  const char* fn = "numpy array";
  auto shape = int_sequence(st[1], fn, "shape");
  if (!st[2].is_object() || !st[2].as_object().args.is_tuple() || st[2].as_object().args.items().empty())
    bad_args(fn, "bad dtype");
  const auto& dto = st[2].as_object();
  std::string code = dto.args.items()[0].as_str();
  bool big = dto.has_state && dto.state.is_tuple() && dto.state.items().size() > 1 &&
             dto.state.items()[1].is_str() && dto.state.items()[1].as_str() == ">";
  static const std::map<std::string, dtype> codes = {
      {"f8", dtype::float64}, {"f4", dtype::float32}, {"f2", dtype::float16}, {"i8", dtype::int64},
      {"i4", dtype::int32},   {"i2", dtype::int16},   {"i1", dtype::int8},    {"u1", dtype::uint8},
      {"u2", dtype::uint16},  {"u4", dtype::uint32},  {"u8", dtype::uint64},  {"b1", dtype::bool_},
      {"c8", dtype::complex64}, {"c16", dtype::complex128}};
  auto it = codes.find(code);
  if (it == codes.end()) throw error(errc::unsupported, "numpy array of dtype '" + code + "' is not supported");
  if (st[4].type() != value::kind::bytes) throw error(errc::unsupported, "numpy object arrays are not supported");
  const std::string& raw = st[4].as_bytes();
  std::int64_t n = shape_numel(shape);
  std::uint64_t need;
  if (!checked_mul(static_cast<std::uint64_t>(n), element_size(it->second), need) || need != raw.size())
    bad_args(fn, "data holds " + std::to_string(raw.size()) + " bytes for shape " + shape_string(shape));
  tensor t = tensor::zeros(it->second, shape);
  if (need) std::memcpy(t.raw_data(), raw.data(), raw.size());
  if (big) swap_bytes(t.raw_data(), raw.size(), it->second);
  bool fortran = truthy(st[3]);
  if (fortran && shape.size() > 1) {
    // Column-major data: same bytes viewed with reversed strides.
    shape_t rev(shape.rbegin(), shape.rend());
    tensor f(t.get_storage(), it->second, rev, contiguous_strides(rev), 0);
    shape_t perm_strides(f.strides().rbegin(), f.strides().rend());
    t = tensor(t.get_storage(), it->second, shape, perm_strides, 0).contiguous();
  }
  return value(std::move(t));
}

void convert_numpy_arrays(value& root) {
  transform_values(root, [](const value& v) -> std::optional<value> {
    return v.is_object() ? numpy_array(v.as_object()) : std::nullopt;
  });
}

void check_target(const device& target, const device& saved) {
  if (target.is_cuda() && !cuda_available())
    throw error(errc::cuda, "a storage saved on " + saved.str() + " is mapped to " + target.str() +
                                " but no CUDA device is available (" + cuda_unavailable_reason() + ")" +
                                "; load with map_location \"cpu\" to put it on the CPU");
}

}  // namespace

void transform_values(value& root, const std::function<std::optional<value>(const value&)>& fn) {
  // Iterative walk replacing values wherever they sit; shared containers are visited once.
  std::vector<value*> work{&root};
  std::unordered_map<const void*, bool> seen;
  while (!work.empty()) {
    value* v = work.back();
    work.pop_back();
    if (auto r = fn(*v)) {
      *v = std::move(*r);
      continue;
    }
    const void* id = v->identity();
    if (!id || !seen.emplace(id, true).second) continue;
    switch (v->type()) {
      case value::kind::list:
        for (auto& e : v->as_list().items) work.push_back(&e);
        break;
      case value::kind::tuple:
        for (auto& e : value_access::mutable_items(*v)) work.push_back(&e);
        break;
      case value::kind::dict: {
        auto& d = v->as_dict();
        for (auto& e : const_cast<std::vector<dict_object::entry>&>(d.entries())) work.push_back(&e.second);
        for (auto& a : d.attrs) work.push_back(&a.second);
        break;
      }
      case value::kind::object: {
        auto& o = v->as_object();
        work.push_back(&o.args);
        work.push_back(&o.state);
        for (auto& e : o.list_items) work.push_back(&e);
        for (auto& e : o.dict_items) work.push_back(&e.second);
        break;
      }
      default: break;
    }
  }
}

namespace {

unpickle_options pickle_options_for(const load_options& opt, std::string context) {
  unpickle_options u;
  u.globals = &torch_globals();
  u.strict = opt.strict;
  u.limits = opt.limits;
  u.context = std::move(context);
  return u;
}

// Objects built per pickle byte at most: a 2-byte BINGET makes a value of ~48 bytes, so real
// files reach ~30x; beyond this a stream is building far more than it describes.
constexpr std::uint64_t amplification_per_input_byte = 64;

// Runs the unpickler and post-processes numpy arrays.
value run_unpickle(std::span<const std::byte> bytes, unpickle_options& u, bool* numpy_seen, std::size_t* consumed) {
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
  if (numpy_seen) *numpy_seen = saw_numpy;
  if (consumed) *consumed = r.consumed;
  return std::move(r.root);
}

checkpoint load_zip(const byte_source& src, const load_options& opt) {
  auto zip_ptr = std::make_shared<const zip_reader>(src, opt.zip);
  const zip_reader& zip = *zip_ptr;
  checkpoint ck;
  const zip_entry* pkl = nullptr;
  for (const auto& e : zip.entries()) {
    auto slash = e.name.find('/');
    if (slash != std::string::npos && e.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      pkl = &e;
      ck.archive_name = e.name.substr(0, slash);
      break;
    }
  }
  if (!pkl) {
    if (zip.find("model.json"))
      throw error(errc::unsupported, "TorchScript archives from torch <= 1.3 (model.json) are not supported");
    throw error(errc::corrupt_checkpoint, "no <archive>/data.pkl record: not a torch checkpoint", src.name());
  }
  // A deflated record is inflated whole before it is read: a pickle record may not make a load
  // hold more than the file's bytes and limits.max_memory (a zip bomb in data.pkl).
  if (pkl->method != 0 && pkl->uncompressed_size > opt.limits.max_memory)
    throw error(errc::limit_exceeded, "deflated pickle record inflates to " + std::to_string(pkl->uncompressed_size) +
                                          " bytes, more than max_memory (" + std::to_string(opt.limits.max_memory) +
                                          " bytes)",
                pkl->name);
  const std::string prefix = ck.archive_name + "/";
  ck.format = (zip.find(prefix + "constants.pkl") || zip.find(prefix + "code/") ) ? checkpoint_format::torchscript
                                                                                    : checkpoint_format::zip;
  if (ck.format == checkpoint_format::zip)
    for (const auto& e : zip.entries())
      if (e.name.starts_with(prefix + "code/")) ck.format = checkpoint_format::torchscript;
  if (const zip_entry* bo = zip.find(prefix + "byteorder")) {
    if (bo->uncompressed_size > 6)  // "little" or "big": refused before a deflated one is inflated
      throw error(errc::corrupt_checkpoint, "byteorder record of " + std::to_string(bo->uncompressed_size) +
                                                " bytes is neither 'little' nor 'big'", src.name() + ": " + bo->name);
    auto b = zip.read(*bo, opt.verify_crc);
    std::string order(reinterpret_cast<const char*>(b.data()), b.size());
    if (order != "little" && order != "big")
      throw error(errc::corrupt_checkpoint, "byteorder record says '" + order.substr(0, 16) + "'",
                  src.name() + ": " + bo->name);
    ck.byte_order = order;
  }
  const bool swap = ck.byte_order == "big";
  const bool zero_copy = opt.mode == load_mode::mmap && src.is_mapped() && !swap;
  std::shared_ptr<lazy_records> lazy;
  if (opt.mode == load_mode::lazy) {
    lazy = std::make_shared<lazy_records>();
    lazy->source = src;
    lazy->zip = zip_ptr;
    lazy->swap = swap;
    lazy->verify_crc = opt.verify_crc;
  }
  // The storages loaded so far (storage values, shared with the result); by zip entry index (one
  // record is one storage), where each is in `loaded` plus one (0: not loaded yet).
  std::vector<value> loaded;
  std::vector<std::uint32_t> loaded_at(zip.entries().size(), 0);
  device_upload uploads;  // storages bound for a GPU: in flight until finish(), CRC-32s checked there

  unpickle_options u = pickle_options_for(opt, pkl->name);
  std::string rec = prefix + "data/";  // the record name, rebuilt in place for each storage
  const std::size_t rec_stem = rec.size();
  pid_memory last_pid;
  u.persistent_load = [&](const value& pid) -> value {
    storage_spec s = parse_pid(pid, false, last_pid);
    rec.resize(rec_stem);
    rec += s.key;
    const zip_entry* e = zip.find(rec);
    if (!e) throw error(errc::corrupt_checkpoint, "storage record " + rec + " is missing");
    std::uint32_t& slot = loaded_at[static_cast<std::size_t>(e - zip.entries().data())];
    if (slot != 0) {
      const storage_value& cached = loaded[slot - 1].as_storage();
      // torch 2.x may name one record as a typed storage and as an UntypedStorage (byte views);
      // each name sees the bytes with its own element type.
      if (s.nbytes > cached.data.nbytes())
        throw error(errc::corrupt_checkpoint, "storage '" + s.key + "' is named again with " + std::to_string(s.nbytes) +
                                                  " bytes, more than its record's " +
                                                  std::to_string(cached.data.nbytes()));
      storage_value again = cached;
      again.dtype = s.t;
      again.numel = s.numel;
      return value::make_storage(std::move(again));
    }
    if (e->uncompressed_size < s.nbytes)
      throw error(errc::corrupt_checkpoint,
                  "storage record " + rec + " holds " + std::to_string(e->uncompressed_size) + " bytes but " +
                      std::to_string(s.numel) + " elements of " + std::string(dtype_name(s.t)) + " need " +
                      std::to_string(s.nbytes));
    // The whole record: another persistent id may name it with a larger element type.
    device target = opt.map_location.apply(s.location);
    check_target(target, s.location);
    const bool verify = opt.verify_crc && opt.mode == load_mode::eager;
    const bool to_gpu = target.is_cuda();
    // A record bound for a GPU streams through pinned buffers, its CRC-32 computed on the way
    // rather than in a pass of its own.
    const bool crc_on_the_way = verify && to_gpu && !swap && e->crc32 != 0;
    storage_value sv;
    if (lazy) {
      sv.data = lazy->placeholder({s.key, e, 0, e->uncompressed_size, s.t, target});
    } else if (swap) {
      auto bytes = zip.read(*e, verify);
      storage tmp = storage::allocate_for_overwrite(bytes.size());
      if (!bytes.empty()) std::memcpy(tmp.data(), bytes.data(), bytes.size());
      swap_bytes(tmp.data(), tmp.nbytes(), s.t);
      std::span<const std::byte> sw(tmp.data(), tmp.nbytes());
      sv.data = target.is_cpu() ? tmp
                : to_gpu          ? uploads.copy(sw, target, device_upload::hold::until_return)
                                  : materialize(sw, nullptr, false, element_size(s.t), target);
    } else if (to_gpu) {
      // The record's bytes (the mapped file, or the reader's inflated copy) outlive uploads.finish().
      auto bytes = zip.read(*e, verify && !crc_on_the_way);
      std::optional<device_upload::crc_check> crc;
      if (crc_on_the_way)
        crc = device_upload::crc_check{e->crc32, [&zip, e, rec] {
                                         zip.read(*e, true);  // throws the reader's CRC-32 error, with its offset
                                         throw error(errc::corrupt_zip, "zip: CRC-32 mismatch", rec);
                                       }};
      sv.data = uploads.copy(bytes, target, device_upload::hold::until_finish, std::move(crc));
    } else {
      sv.data = materialize(zip.read(*e, verify), zip.owner_of(*e), zero_copy && e->method == 0, element_size(s.t),
                            target);
    }
    sv.dtype = s.t;
    sv.numel = s.numel;
    sv.key = s.key;
    sv.location = s.location;
    loaded.push_back(value::make_storage(std::move(sv)));
    slot = static_cast<std::uint32_t>(loaded.size());
    return loaded.back();
  };
  ck.root = run_unpickle(zip.read(*pkl, opt.verify_crc), u, nullptr, nullptr);
  uploads.finish();
  if (lazy && !lazy->empty()) lazy_records::attach(ck, std::move(lazy));
  return ck;
}

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
      v = run_unpickle(all.subspan(pos), u, nullptr, &used);
    } catch (const error& e) {
      // Offsets inside a sub-pickle are relative to its start: report file offsets.
      throw error(e.kind(), e.message(), e.context(), e.offset() ? std::optional<std::uint64_t>(*e.offset() + pos) : std::nullopt);
    }
    pos += used;
    return v;
  };
  unpickle_options plain = pickle_options_for(opt, "");
  value magic = next_pickle("magic number", plain);
  if (magic.type() != value::kind::big_integer || magic.as_big_int().to_string() != "119547037146038801333356")
    throw error(errc::corrupt_checkpoint, "legacy stream does not start with torch's magic number");
  value proto = next_pickle("protocol version", plain);
  if (!proto.is_int() || proto.as_int() != 1001)
    throw error(errc::unsupported, "legacy protocol version " + (proto.is_int() ? std::to_string(proto.as_int()) : "?") +
                                       " is not supported (1001 is)");
  value sys_info = next_pickle("sys_info", plain);
  if (const value* le = sys_info.find("little_endian"); le && le->is_bool() && !le->as_bool())
    ck.byte_order = "big";

  struct pending {
    storage_value sv;
    std::uint64_t nbytes;
  };
  std::map<std::string, pending> roots;
  std::uint64_t total_declared = 0;
  unpickle_options u = pickle_options_for(opt, "");
  pid_memory last_pid;
  u.persistent_load = [&](const value& pid) -> value {
    storage_spec s = parse_pid(pid, true, last_pid);
    check_target(opt.map_location.apply(s.location), s.location);
    auto it = roots.find(s.key);
    if (it == roots.end()) {
      // Storage bytes come after the pickle; a file cannot declare more than it holds.
      if (!detail::checked_add(total_declared, s.nbytes, total_declared) || total_declared > all.size())
        throw error(errc::corrupt_checkpoint, "storages declare more bytes than the file holds");
      storage_value sv;
      sv.data = storage::allocate(static_cast<std::size_t>(s.nbytes));
      sv.dtype = s.t;
      sv.numel = s.numel;
      sv.key = s.key;
      sv.location = s.location;
      it = roots.emplace(s.key, pending{sv, s.nbytes}).first;
    }
    const auto& view = pid.as_tuple()[5];
    if (view.is_none()) return value::make_storage(it->second.sv);
    // (view_key, offset, view_numel): elements of the root storage.
    const char* fn = "legacy storage view";
    auto v = int_sequence(value::make_tuple({view.items().size() == 3 ? view.items()[1] : value(), 
                                             view.items().size() == 3 ? view.items()[2] : value()}), fn, "view");
    std::uint64_t es = element_size(it->second.sv.dtype), off_b, len_b, end;
    if (v[0] < 0 || v[1] < 0 || !checked_mul(static_cast<std::uint64_t>(v[0]), es, off_b) ||
        !checked_mul(static_cast<std::uint64_t>(v[1]), es, len_b) || !detail::checked_add(off_b, len_b, end) ||
        end > it->second.nbytes)
      bad_args(fn, "view lies outside its root storage");
    storage_value sv = it->second.sv;
    sv.data = storage::wrap(std::make_shared<storage>(it->second.sv.data), it->second.sv.data.data() + off_b,
                            static_cast<std::size_t>(len_b));
    sv.numel = static_cast<std::uint64_t>(v[1]);
    return value::make_storage(std::move(sv));
  };
  ck.root = next_pickle("object", u);
  value keys = next_pickle("storage keys", plain);
  if (!keys.is_list()) throw error(errc::corrupt_checkpoint, "legacy storage key list is not a list", "", pos);
  detail::byte_reader r(all, errc::corrupt_checkpoint, "legacy storages");
  r.seek(pos);
  for (const auto& k : keys.as_list().items) {
    if (!k.is_str()) r.fail("storage key is not a str");
    auto it = roots.find(k.as_str());
    if (it == roots.end()) r.fail("storage key '" + k.as_str() + "' was not named by the object pickle");
    std::uint64_t count = r.le64();
    std::uint64_t es = element_size(it->second.sv.dtype);
    if (count != it->second.sv.numel)
      r.fail("storage '" + k.as_str() + "' holds " + std::to_string(count) + " elements, the pickle declared " +
             std::to_string(it->second.sv.numel));
    std::uint64_t n;
    if (!checked_mul(count, es, n)) r.fail("storage size overflows");
    auto bytes = r.bytes(n);
    if (n) std::memcpy(it->second.sv.data.data(), bytes.data(), bytes.size());
    if (ck.byte_order == "big") swap_bytes(it->second.sv.data.data(), bytes.size(), it->second.sv.dtype);
  }
  // Storages bound for another device were filled on the host; move their tensors now.
  bool moved = false;
  for (auto& [key, p] : roots)
    if (!(opt.map_location.apply(p.sv.location) == cpu_device)) moved = true;
  if (moved)
    transform_values(ck.root, [&](const value& v) -> std::optional<value> {
      if (!v.is_tensor()) return std::nullopt;
      const tensor& t = v.as_tensor();
      for (auto& [key, p] : roots)
        if (p.sv.data.same(t.get_storage()) || (t.get_storage().data() >= p.sv.data.data() &&
            t.get_storage().data() < p.sv.data.data() + std::max<std::size_t>(p.sv.data.nbytes(), 1)))
          return value(t.to(opt.map_location.apply(p.sv.location)), v.is_parameter());
      return std::nullopt;
    });
  return ck;
}

}  // namespace


}  // namespace detail

checkpoint load_checkpoint(byte_source source, const load_options& options) {
  const std::string name = source.name();
  try {
    auto fmt = detect_format(source.bytes());
    if (!fmt) throw error(errc::corrupt_checkpoint, "not a torch checkpoint (unrecognised first bytes)", "", 0);
    switch (*fmt) {
      case checkpoint_format::zip: return detail::load_zip(source, options);
      case checkpoint_format::legacy: return detail::load_legacy(source, options);
      case checkpoint_format::safetensors: return detail::load_safetensors(source, options);
      case checkpoint_format::pickle: {
        checkpoint ck;
        ck.format = checkpoint_format::pickle;
        unpickle_options u = detail::pickle_options_for(options, "pickle");
        ck.root = detail::run_unpickle(source.bytes(), u, nullptr, nullptr);
        return ck;
      }
      default: break;
    }
    throw error(errc::unsupported, "unsupported format");
  } catch (const error& e) {
    throw e.with_outer_context(name);
  }
}

checkpoint load_checkpoint(const std::filesystem::path& path, const load_options& options) {
  // Eager loads map the file too: storages are copied out of the map, which is then released.
  byte_source src = byte_source::map_file(path);
  if (!detect_format(src.bytes())) {
    // A Hugging Face index (*.index.json) names shard files beside it; a .safetensors file whose
    // first bytes are not recognised gets the safetensors loader's precise error.
    if (is_sharded_index(src.bytes())) return load_sharded(path, options).merged;
    if (path.extension() == ".safetensors") return load_safetensors(std::move(src), options);
  }
  return load_checkpoint(std::move(src), options);
}

value load(const std::filesystem::path& path, const load_options& options) {
  return load_checkpoint(path, options).root;
}

tensor checkpoint::load_tensor(const tensor& t) const {
  if (!records_) return t;
  const detail::lazy_records::record* r = records_->find(t.get_storage());
  if (!r) return t;  // not a placeholder: loaded already, or built by the caller
  return tensor(records_->read(*r), t.dtype(), t.shape(), t.strides(), t.storage_offset(), t.requires_grad());
}

tensor checkpoint::load_tensor(std::string_view key) const {
  const std::string want(key);
  if (records_) {
    // Key paths of the root as it was when first asked, indexed once.
    if (const tensor* t = records_->by_key(root, want)) return load_tensor(*t);
  } else {
    std::optional<tensor> found;
    visit_tensors(root, [&](const std::string& k, const value& v) {
      if (!found && k == want) found = v.as_tensor();
    });
    if (found) return *found;
  }
  throw error(errc::invalid_argument, "no tensor has the key path '" + want + "'");
}

void checkpoint::materialize() {
  if (!records_) return;
  // Storages shared by several tensors (or named again as another type) are read once.
  std::unordered_map<const void*, storage> done;
  auto read = [&](const storage& placeholder) -> const storage* {
    const detail::lazy_records::record* r = records_->find(placeholder);
    if (!r) return nullptr;
    auto [it, fresh] = done.try_emplace(placeholder.id());
    if (fresh) it->second = records_->read(*r);
    return &it->second;
  };
  detail::transform_values(root, [&](const value& v) -> std::optional<value> {
    if (v.is_tensor()) {
      const tensor& t = v.as_tensor();
      const storage* s = read(t.get_storage());
      if (!s) return std::nullopt;
      return value(tensor(*s, t.dtype(), t.shape(), t.strides(), t.storage_offset(), t.requires_grad()),
                   v.is_parameter());
    }
    if (v.type() == value::kind::storage) {
      const storage* s = read(v.as_storage().data);
      if (!s) return std::nullopt;
      storage_value sv = v.as_storage();
      sv.data = *s;
      return value::make_storage(std::move(sv));
    }
    return std::nullopt;
  });
  records_.reset();
}

std::string key_text(const value& key) {
  switch (key.type()) {
    case value::kind::string: return key.as_str();
    case value::kind::integer: return std::to_string(key.as_int());
    case value::kind::big_integer: return key.as_big_int().to_string();
    case value::kind::none: return "None";
    case value::kind::boolean: return key.as_bool() ? "True" : "False";
    case value::kind::floating: {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.17g", key.as_float());
      return buf;
    }
    case value::kind::tuple: {
      std::string s = "(";
      for (std::size_t i = 0; i < key.items().size(); ++i) s += (i ? ", " : "") + key_text(key.items()[i]);
      return s + (key.items().size() == 1 ? ",)" : ")");
    }
    default: return std::string(key.type_name());
  }
}

namespace detail {

namespace {

bool is_container(const value& v) noexcept {
  const auto k = v.type();
  return k == value::kind::list || k == value::kind::tuple || k == value::kind::dict || k == value::kind::object;
}


}  // namespace

void check_expansion(const value& root, const char* what) {
  if (!is_container(root)) return;
  static constexpr std::uint64_t on_path = UINT64_MAX;
  static constexpr std::uint64_t saturated = UINT64_MAX / 2;
  auto add = [](std::uint64_t a, std::uint64_t b) { return std::min(saturated, a + std::min(saturated, b)); };
  // Iterative post-order walk: each container's expanded size (itself and everything under it,
  // shared containers counted once per reference) is computed once, from its children's.
  std::unordered_map<const void*, std::uint64_t> expanded;
  struct frame { const value* v; std::size_t next; std::uint64_t size; };
  std::vector<frame> path{{&root, 0, 1}};
  expanded[root.identity()] = on_path;
  std::uint64_t distinct = 1;
  std::uint64_t total = 0;
  while (!path.empty()) {
    frame& f = path.back();
    const value* c = child_at(*f.v, f.next++);
    if (!c) {
      const std::uint64_t size = f.size;
      expanded[f.v->identity()] = size;
      path.pop_back();
      if (path.empty()) total = size;
      else path.back().size = add(path.back().size, size);
      continue;
    }
    if (!is_container(*c)) {
      ++distinct;
      f.size = add(f.size, 1);
      continue;
    }
    auto [it, fresh] = expanded.try_emplace(c->identity(), on_path);
    if (!fresh) {
      if (it->second == on_path) throw error(errc::invalid_argument, std::string(what) + ": the value contains itself");
      f.size = add(f.size, it->second);
      continue;
    }
    ++distinct;
    path.push_back({c, 0, 1});
  }
  const std::uint64_t limit = add(16 * distinct, 100'000);
  if (total > limit)
    throw error(errc::limit_exceeded, std::string(what) + ": shared containers written out in full make " +
                                          (total >= saturated ? std::string("more than 2^62") : std::to_string(total)) +
                                          " values of " + std::to_string(distinct) +
                                          ", more than 16 times as many plus 100,000");
}

}  // namespace detail

namespace detail {

bool for_each_key_path_child(const value& v, const std::function<void(const std::string&, const value&)>& fn) {
  switch (v.type()) {
    case value::kind::dict:
      for (const auto& [k, c] : v.as_dict().entries()) fn(key_text(k), c);
      return true;
    case value::kind::list:
    case value::kind::tuple: {
      const auto& items = v.items();
      for (std::size_t i = 0; i < items.size(); ++i) fn(std::to_string(i), items[i]);
      return true;
    }
    case value::kind::object: {
      const auto& o = v.as_object();
      if (o.has_state && o.state.is_dict())
        for (const auto& [k, c] : o.state.as_dict().entries()) fn(key_text(k), c);
      for (std::size_t i = 0; i < o.list_items.size(); ++i) fn(std::to_string(i), o.list_items[i]);
      for (const auto& [k, c] : o.dict_items) fn(key_text(k), c);
      return true;
    }
    default: return false;
  }
}

}  // namespace detail

namespace {
void visit(const value& v, std::string& path, int depth,
           const std::function<void(const std::string&, const value&)>& fn) {
  if (v.is_tensor()) {
    fn(path, v);
    return;
  }
  detail::for_each_key_path_child(v, [&](const std::string& part, const value& c) {
    std::size_t keep = path.size();
    if (depth > 0) path += ".";
    path += part;
    visit(c, path, depth + 1, fn);
    path.resize(keep);
  });
}
}  // namespace

void visit_tensors(const value& root, const std::function<void(const std::string&, const value&)>& fn) {
  detail::check_expansion(root, "key paths");
  std::string path;
  visit(root, path, 0, fn);
}

}  // namespace pthio

