// torch's rebuild functions and the other globals a weights-only load resolves
// (torch/_weights_only_unpickler.py's allowlist): tensors from (storage, offset, size, stride,
// requires_grad[, dtype]), parameters, dtypes, storage classes, torch.Size and the numpy globals.
#include "internal.h"

namespace pthio {

namespace detail {

[[noreturn]] void bad_args(const char* fn, const std::string& why) {
  throw error(errc::corrupt_checkpoint, std::string(fn) + ": " + why);
}

std::vector<std::int64_t> int_sequence(const value& v, const char* fn, const char* what) {
  if (!v.is_tuple() && !v.is_list())
    bad_args(fn, std::string(what) + " must be a tuple, got " + std::string(v.type_name()));
  std::vector<std::int64_t> out;
  out.reserve(v.items().size());
  for (const auto& e : v.items()) {
    if (!e.is_int())
      bad_args(fn, std::string(what) + " holds a " + std::string(e.type_name()) + ", not an int");
    out.push_back(e.as_int());
  }
  return out;
}

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

namespace {

// storage, offset, size, stride, requires_grad with the storage's dtype or an explicit one.
value rebuild(const char* fn, const value& st, const value& off, const value& size,
              const value& stride, bool requires_grad, std::optional<dtype> explicit_dtype) {
  if (!st.is_storage())
    bad_args(fn, "the storage argument is a " + std::string(st.type_name()) + ", not a storage");
  const storage_value& s = st.as_storage();
  dtype t = explicit_dtype ? *explicit_dtype : s.dtype;
  if (!off.is_int()) bad_args(fn, "storage_offset must be an int");
  return value(tensor(s.data, t, int_sequence(size, fn, "size"), int_sequence(stride, fn, "stride"),
                      off.as_int(), requires_grad));
}

dtype dtype_of_global(const value& v, const char* fn) {
  if (!v.is_global() || v.as_global().module != "torch")
    bad_args(fn, "dtype must be a torch dtype global");
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
    if (!h || !*h)
      throw error(errc::unsupported,
                  std::string(fn) + " with " + f.qualified() + " is not supported");
    if (!a[2].is_tuple()) bad_args(fn, "args must be a tuple");
    value r = (*h)(a[2].as_tuple());
    if (a[1].is_global() && a[1].as_global().name == "Parameter" && r.is_tensor())
      return value(r.as_tensor(), true);
    return r;
  });
  for (const char* unsupported :
       {"_rebuild_sparse_tensor", "_rebuild_sparse_csr_tensor", "_rebuild_nested_tensor",
        "_rebuild_device_tensor_from_numpy", "_rebuild_wrapper_subclass", "_rebuild_xla_tensor",
        "_rebuild_mtia_tensor"}) {
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
  for (const char* alias :
       {"float", "double", "half", "long", "int", "short", "cfloat", "cdouble", "chalf"})
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
    for (const char* cls :
         {"Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "Int16DType",
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

}  // namespace pthio
