#include "pthio/dlpack.hpp"

#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include "byte_reader.h"
#include "cuda/common.h"
#include "pthio/error.hpp"

namespace pthio {

using namespace dlpack;
using detail::checked_add;
using detail::checked_mul;

// The layout is the interface: DLPack 1.1's dlpack.h, LP64.
static_assert(sizeof(DLDevice) == 8 && sizeof(DLDataType) == 4);
static_assert(std::is_standard_layout_v<DLManagedTensorVersioned> &&
              std::is_trivially_copyable_v<DLManagedTensorVersioned>);
static_assert(sizeof(void*) != 8 ||
              (sizeof(DLTensor) == 48 && offsetof(DLTensor, device) == 8 &&
               offsetof(DLTensor, ndim) == 16 && offsetof(DLTensor, dtype) == 20 &&
               offsetof(DLTensor, shape) == 24 && offsetof(DLTensor, strides) == 32 &&
               offsetof(DLTensor, byte_offset) == 40));
static_assert(sizeof(void*) != 8 ||
              (sizeof(DLManagedTensor) == 64 && offsetof(DLManagedTensor, manager_ctx) == 48 &&
               offsetof(DLManagedTensor, deleter) == 56));
static_assert(sizeof(void*) != 8 || (sizeof(DLManagedTensorVersioned) == 80 &&
                                     offsetof(DLManagedTensorVersioned, manager_ctx) == 8 &&
                                     offsetof(DLManagedTensorVersioned, deleter) == 16 &&
                                     offsetof(DLManagedTensorVersioned, flags) == 24 &&
                                     offsetof(DLManagedTensorVersioned, dl_tensor) == 32));

namespace {

struct dtype_pair {
  dtype pthio;
  DLDataType dl;
};

constexpr dtype_pair dtype_table[] = {
    {dtype::float64, {kDLFloat, 64, 1}},
    {dtype::float32, {kDLFloat, 32, 1}},
    {dtype::float16, {kDLFloat, 16, 1}},
    {dtype::bfloat16, {kDLBfloat, 16, 1}},
    {dtype::complex128, {kDLComplex, 128, 1}},
    {dtype::complex64, {kDLComplex, 64, 1}},
    {dtype::complex32, {kDLComplex, 32, 1}},
    {dtype::int64, {kDLInt, 64, 1}},
    {dtype::int32, {kDLInt, 32, 1}},
    {dtype::int16, {kDLInt, 16, 1}},
    {dtype::int8, {kDLInt, 8, 1}},
    {dtype::uint8, {kDLUInt, 8, 1}},
    {dtype::uint16, {kDLUInt, 16, 1}},
    {dtype::uint32, {kDLUInt, 32, 1}},
    {dtype::uint64, {kDLUInt, 64, 1}},
    {dtype::bool_, {kDLBool, 8, 1}},
    {dtype::float8_e4m3fn, {kDLFloat8_e4m3fn, 8, 1}},
    {dtype::float8_e5m2, {kDLFloat8_e5m2, 8, 1}},
    {dtype::float8_e4m3fnuz, {kDLFloat8_e4m3fnuz, 8, 1}},
    {dtype::float8_e5m2fnuz, {kDLFloat8_e5m2fnuz, 8, 1}},
    {dtype::float8_e8m0fnu, {kDLFloat8_e8m0fnu, 8, 1}},
    // torch's Float4_e2m1fn_x2: one byte holds two values, so two 4-bit lanes.
    {dtype::float4_e2m1fn_x2, {kDLFloat4_e2m1fn, 4, 2}},
};

std::string dl_dtype_text(DLDataType t) {
  return "(code " + std::to_string(t.code) + ", bits " + std::to_string(t.bits) + ", lanes " +
         std::to_string(t.lanes) + ")";
}

// The manager context of an exported tensor: one block holding the tensor handle (and so its
// storage), the shape and strides arrays the DLTensor points to, and the managed struct itself.
template <class Managed>
struct export_ctx {
  Managed managed{};
  tensor keep;
  shape_t shape;
  shape_t strides;
};

template <class Managed>
void export_deleter(Managed* self) {
  if (self) delete static_cast<export_ctx<Managed>*>(self->manager_ctx);
}

template <class Managed>
Managed* export_tensor(const tensor& t) {
  if (!t.defined()) throw error(errc::invalid_argument, "to_dlpack: tensor is undefined");
  DLDevice dev = to_dlpack_device(t.dev());
  DLDataType dt = to_dlpack_dtype(t.dtype());
  if (t.dim() > INT32_MAX) throw error(errc::limit_exceeded, "to_dlpack: too many dimensions");
  auto ctx = std::make_unique<export_ctx<Managed>>();
  ctx->keep = t;
  ctx->shape = t.shape();
  ctx->strides = t.strides();
  DLTensor& d = ctx->managed.dl_tensor;
  // DLPack: a tensor of size zero has a null data pointer.
  d.data = t.numel() == 0 ? nullptr : static_cast<void*>(t.raw_data());
  d.device = dev;
  d.ndim = static_cast<std::int32_t>(t.dim());
  d.dtype = dt;
  d.shape = ctx->shape.empty() ? nullptr : ctx->shape.data();
  d.strides = ctx->strides.empty() ? nullptr : ctx->strides.data();
  d.byte_offset = 0;
  if constexpr (std::is_same_v<Managed, DLManagedTensorVersioned>) {
    ctx->managed.version = {version_major, version_minor};
    ctx->managed.flags = 0;
  }
  ctx->managed.manager_ctx = ctx.get();
  ctx->managed.deleter = &export_deleter<Managed>;
  return &ctx.release()->managed;
}

// Owns an imported managed tensor: calls its deleter once, when the last storage handle goes.
// `managed` is set only once nothing can throw any more, so a failed import calls nothing.
struct import_owner {
  DLManagedTensorVersioned* versioned = nullptr;
  DLManagedTensor* legacy = nullptr;
  import_owner() = default;
  import_owner(const import_owner&) = delete;
  import_owner& operator=(const import_owner&) = delete;
  ~import_owner() {
    if (versioned && versioned->deleter) versioned->deleter(versioned);
    if (legacy && legacy->deleter) legacy->deleter(legacy);
  }
};

// Builds a tensor over `t`'s data; `owner` (possibly null) keeps it alive.
tensor import_tensor(const DLTensor& t, std::shared_ptr<const void> owner, const char* what) {
  auto fail = [&](errc kind, const std::string& why) {
    return error(kind, std::string(what) + ": " + why);
  };
  device dev = device_from_dlpack(t.device);
  dtype dt = dtype_from_dlpack(t.dtype);
  if (t.ndim < 0) throw fail(errc::invalid_argument, "negative ndim " + std::to_string(t.ndim));
  if (t.ndim > 0 && !t.shape) throw fail(errc::invalid_argument, "null shape");
  const auto nd = static_cast<std::size_t>(t.ndim);
  shape_t shape(t.shape, t.shape + nd);
  shape_t strides = t.strides ? shape_t(t.strides, t.strides + nd) : contiguous_strides(shape);
  for (std::size_t i = 0; i < nd; ++i) {
    if (shape[i] < 0)
      throw fail(errc::invalid_argument, "negative extent in shape " + shape_string(shape));
    if (strides[i] < 0)
      throw fail(errc::unsupported, "negative stride in " + shape_string(strides) +
                                        " (pthio tensors have non-negative strides)");
  }
  const std::int64_t numel = shape_numel(shape);
  // Bytes reachable from element 0: (sum((n_i - 1) * s_i) + 1) * element size, checked.
  std::uint64_t nbytes = 0;
  if (numel > 0) {
    std::uint64_t last = 0;
    for (std::size_t i = 0; i < nd; ++i) {
      std::uint64_t span;
      if (!checked_mul(static_cast<std::uint64_t>(shape[i] - 1),
                       static_cast<std::uint64_t>(strides[i]), span) ||
          !checked_add(last, span, last))
        throw fail(errc::limit_exceeded, "element index overflows");
    }
    if (!checked_add(last, 1, nbytes) || !checked_mul(nbytes, element_size(dt), nbytes) ||
        nbytes > SIZE_MAX)
      throw fail(errc::limit_exceeded, "byte size overflows");
    if (!t.data)
      throw fail(errc::invalid_argument, "null data for " + std::to_string(numel) + " elements");
  }
  // Element 0 lives at data + byte_offset (bytes); the storage starts there. Device pointers are
  // only offset, never dereferenced.
  void* base =
      t.data ? static_cast<void*>(static_cast<std::byte*>(t.data) + t.byte_offset) : nullptr;
  storage s = owner ? storage::wrap(std::move(owner), base, static_cast<std::size_t>(nbytes), dev)
                    : storage::borrow(base, static_cast<std::size_t>(nbytes), dev);
  return tensor(std::move(s), dt, std::move(shape), std::move(strides), 0);
}

}  // namespace

DLDataType to_dlpack_dtype(dtype t) {
  for (const auto& p : dtype_table)
    if (p.pthio == t) return p.dl;
  throw error(errc::unsupported, "DLPack has no dtype for " + std::string(dtype_name(t)));
}

dtype dtype_from_dlpack(DLDataType t) {
  for (const auto& p : dtype_table)
    if (p.dl.code == t.code && p.dl.bits == t.bits && p.dl.lanes == t.lanes) return p.pthio;
  throw error(errc::unsupported, "pthio has no dtype for DLPack dtype " + dl_dtype_text(t));
}

DLDevice to_dlpack_device(const device& d) {
  if (d.is_cpu()) return {kDLCPU, 0};
  // Plain "cuda" is the current device, as everywhere in pthio: the export names its index.
  if (d.is_cuda()) return {kDLCUDA, d.index() < 0 ? detail::current_cuda_device() : d.index()};
  throw error(errc::unsupported,
              "DLPack export of a tensor on " + d.str() + " (cpu and cuda only)");
}

device device_from_dlpack(DLDevice d) {
  switch (d.device_type) {
    case kDLCPU:
    case kDLCUDAHost: return device(device_type::cpu);
    case kDLCUDA:
    case kDLCUDAManaged:
      if (d.device_id < 0)
        throw error(errc::invalid_argument, "DLPack CUDA device id " + std::to_string(d.device_id));
      return device(device_type::cuda, d.device_id);
    default:
      throw error(errc::unsupported,
                  "DLPack device type " + std::to_string(d.device_type) +
                      " (pthio takes kDLCPU, kDLCUDA, kDLCUDAHost, kDLCUDAManaged)");
  }
}

DLManagedTensorVersioned* to_dlpack_versioned(const tensor& t) {
  return export_tensor<DLManagedTensorVersioned>(t);
}

DLManagedTensor* to_dlpack(const tensor& t) { return export_tensor<DLManagedTensor>(t); }

tensor from_dlpack(DLManagedTensorVersioned* m) {
  if (!m) throw error(errc::invalid_argument, "from_dlpack: null DLManagedTensorVersioned");
  // DLPack: a different major version means a different layout past `flags`.
  if (m->version.major != version_major)
    throw error(errc::unsupported, "from_dlpack: DLPack version " +
                                       std::to_string(m->version.major) + "." +
                                       std::to_string(m->version.minor) + " (pthio reads 1.x)");
  if ((m->flags & flag_is_subbyte_type_padded) && m->dl_tensor.dtype.bits < 8)
    throw error(errc::unsupported, "from_dlpack: padded sub-byte dtypes");
  auto owner = std::make_shared<import_owner>();
  tensor t = import_tensor(m->dl_tensor, owner, "from_dlpack");
  owner->versioned = m;  // nothing below can throw: from here the tensor owns m
  return t;
}

tensor from_dlpack(DLManagedTensor* m) {
  if (!m) throw error(errc::invalid_argument, "from_dlpack: null DLManagedTensor");
  auto owner = std::make_shared<import_owner>();
  tensor t = import_tensor(m->dl_tensor, owner, "from_dlpack");
  owner->legacy = m;
  return t;
}

tensor view_dlpack(const DLTensor& t) { return import_tensor(t, nullptr, "view_dlpack"); }

}  // namespace pthio
