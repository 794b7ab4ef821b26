#include "pthio/tensor.hpp"

#include <cmath>
#include <complex>
#include <cstring>

#include "byte_reader.h"

namespace pthio {

using detail::checked_add;
using detail::checked_mul;

shape_t contiguous_strides(std::span<const std::int64_t> shape) {
  shape_t strides(shape.size());
  std::int64_t s = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= std::max<std::int64_t>(shape[i], 1);
  }
  return strides;
}

std::int64_t shape_numel(std::span<const std::int64_t> shape) {
  std::uint64_t n = 1;
  for (auto d : shape) {
    if (d < 0)
      throw error(errc::invalid_argument, "negative extent in shape " + shape_string(shape));
    if (!checked_mul(n, static_cast<std::uint64_t>(d), n) ||
        n > static_cast<std::uint64_t>(INT64_MAX))
      throw error(errc::limit_exceeded, "shape " + shape_string(shape) + " has too many elements");
  }
  return static_cast<std::int64_t>(n);
}

std::string shape_string(std::span<const std::int64_t> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

tensor::tensor(pthio::storage s, pthio::dtype t, shape_t shape, shape_t strides,
               std::int64_t storage_offset, bool requires_grad)
    : storage_(std::move(s)),
      dtype_(t),
      shape_(std::move(shape)),
      strides_(std::move(strides)),
      offset_(storage_offset),
      requires_grad_(requires_grad) {
  auto bad = [&](const std::string& why) {
    return error(errc::corrupt_checkpoint, "tensor of shape " + shape_string(shape_) + ", stride " +
                                               shape_string(strides_) + ", offset " +
                                               std::to_string(offset_) + ": " + why);
  };
  if (shape_.size() != strides_.size())
    throw bad("shape has " + std::to_string(shape_.size()) + " dimensions but stride has " +
              std::to_string(strides_.size()));
  if (offset_ < 0) throw bad("negative storage offset");
  for (auto st : strides_)
    if (st < 0) throw bad("negative stride");
  for (auto d : shape_)
    if (d < 0) throw bad("negative extent");
  try {
    numel_ = shape_numel(shape_);
  } catch (const error& e) {
    throw bad(e.message());
  }
  if (numel_ == 0) return;
  // Highest element index reachable: offset + sum((n_i - 1) * s_i), checked.
  std::uint64_t last = static_cast<std::uint64_t>(offset_);
  for (std::size_t i = 0; i < shape_.size(); ++i) {
    std::uint64_t span;
    if (!checked_mul(static_cast<std::uint64_t>(shape_[i] - 1),
                     static_cast<std::uint64_t>(strides_[i]), span) ||
        !checked_add(last, span, last))
      throw bad("element index overflows");
  }
  std::uint64_t need;
  if (!checked_add(last, 1, need) || !checked_mul(need, pthio::element_size(dtype_), need))
    throw bad("byte size overflows");
  // A meta storage of size 0 has no bytes at all (_rebuild_meta_tensor_no_storage); other meta
  // storages (a lazy checkpoint's placeholders, map_location "meta") stand for a record of
  // their size, which the view must fit as on any device.
  if (need > storage_.nbytes() &&
      !(storage_.dev().type() == device_type::meta && storage_.nbytes() == 0))
    throw bad("needs " + std::to_string(need) + " bytes of storage but the storage has " +
              std::to_string(storage_.nbytes()));
}

tensor tensor::zeros(pthio::dtype t, shape_t shape, const device& dev) {
  std::int64_t n = shape_numel(shape);
  std::uint64_t bytes;
  if (!checked_mul(static_cast<std::uint64_t>(n), pthio::element_size(t), bytes))
    throw error(errc::limit_exceeded, "tensor of shape " + shape_string(shape) + " is too large");
  auto strides = contiguous_strides(shape);
  return tensor(pthio::storage::allocate(static_cast<std::size_t>(bytes), dev), t, std::move(shape),
                std::move(strides), 0);
}

std::int64_t tensor::size(std::int64_t d) const {
  if (d < 0) d += dim();
  if (d < 0 || d >= dim())
    throw error(errc::invalid_argument, "dimension " + std::to_string(d) + " out of range for a " +
                                            std::to_string(dim()) + "-D tensor");
  return shape_[static_cast<std::size_t>(d)];
}

bool tensor::is_contiguous() const noexcept {
  std::int64_t expected = 1;
  for (std::size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] == 1) continue;
    if (shape_[i] == 0) return true;
    if (strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

void tensor::check_access(pthio::dtype want) const {
  if (!defined()) throw error(errc::invalid_argument, "tensor is undefined");
  if (want != dtype_)
    throw error(errc::invalid_argument, "element type " + std::string(dtype_name(want)) +
                                            " requested from a " + std::string(dtype_name(dtype_)) +
                                            " tensor");
  if (!dev().is_cpu())
    throw error(errc::invalid_argument,
                "element access needs a CPU tensor; this one is on " + dev().str());
}

std::int64_t tensor::element_offset(std::initializer_list<std::int64_t> index) const {
  if (static_cast<std::int64_t>(index.size()) != dim())
    throw error(errc::invalid_argument, std::to_string(index.size()) + " indices for a " +
                                            std::to_string(dim()) + "-D tensor");
  std::int64_t off = 0;
  std::size_t d = 0;
  for (auto i : index) {
    if (i < 0 || i >= shape_[d])
      throw error(errc::invalid_argument, "index " + std::to_string(i) +
                                              " out of range for dimension " + std::to_string(d) +
                                              " of size " + std::to_string(shape_[d]));
    off += i * strides_[d];
    ++d;
  }
  return off;
}

tensor tensor::as_strided(shape_t shape, shape_t strides, std::int64_t storage_offset) const {
  // The constructor's checks speak of a file's data; here the view is the caller's.
  try {
    return tensor(storage_, dtype_, std::move(shape), std::move(strides), storage_offset,
                  requires_grad_);
  } catch (const error& e) {
    if (e.kind() != errc::corrupt_checkpoint) throw;
    throw error(errc::invalid_argument, "as_strided: " + e.message());
  }
}

tensor tensor::transpose(std::int64_t d0, std::int64_t d1) const {
  size(d0);
  size(d1);
  if (d0 < 0) d0 += dim();
  if (d1 < 0) d1 += dim();
  shape_t sh = shape_, st = strides_;
  std::swap(sh[d0], sh[d1]);
  std::swap(st[d0], st[d1]);
  return as_strided(std::move(sh), std::move(st), offset_);
}

tensor tensor::narrow(std::int64_t d, std::int64_t start, std::int64_t length) const {
  std::int64_t n = size(d);
  if (d < 0) d += dim();
  if (start < 0 || length < 0 || start > n || length > n - start)
    throw error(errc::invalid_argument, "narrow(" + std::to_string(d) + ", " +
                                            std::to_string(start) + ", " + std::to_string(length) +
                                            ") out of range for size " + std::to_string(n));
  shape_t sh = shape_;
  sh[d] = length;
  return as_strided(std::move(sh), strides_, offset_ + start * strides_[d]);
}

tensor tensor::reshape(shape_t shape) const {
  std::int64_t infer = -1;
  std::int64_t known = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) throw error(errc::invalid_argument, "reshape: only one dimension can be -1");
      infer = static_cast<std::int64_t>(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) shape[infer] = known ? numel_ / known : 0;
  if (shape_numel(shape) != numel_)
    throw error(errc::invalid_argument, "reshape: shape " + shape_string(shape) +
                                            " is invalid for " + std::to_string(numel_) +
                                            " elements");
  tensor c = contiguous();
  auto st = contiguous_strides(shape);
  return tensor(c.storage_, dtype_, std::move(shape), std::move(st), c.offset_, requires_grad_);
}

namespace {

// Calls fn(byte offset of element) for each element in row-major order.
template <class F>
void for_each_offset(const shape_t& shape, const shape_t& strides, std::size_t elem, F&& fn) {
  const std::size_t nd = shape.size();
  for (auto d : shape)
    if (d == 0) return;
  if (nd == 0) {
    fn(std::size_t{0});
    return;
  }
  std::vector<std::int64_t> idx(nd, 0);
  std::size_t inner_n = static_cast<std::size_t>(shape[nd - 1]);
  std::size_t inner_s = static_cast<std::size_t>(strides[nd - 1]) * elem;
  std::size_t base = 0;
  while (true) {
    for (std::size_t i = 0; i < inner_n; ++i) fn(base + i * inner_s);
    std::size_t d = nd - 1;
    while (true) {
      if (d == 0) return;
      --d;
      base += static_cast<std::size_t>(strides[d]) * elem;
      if (++idx[d] < shape[d]) break;
      base -= static_cast<std::size_t>(strides[d] * shape[d]) * elem;
      idx[d] = 0;
    }
  }
}

void require_host(const tensor& t, const char* what) {
  if (!t.dev().is_cpu() && t.dev().type() != device_type::meta)
    throw error(errc::invalid_argument,
                std::string(what) + " needs a CPU tensor; this one is on " + t.dev().str());
}

}  // namespace

std::vector<std::byte> tensor::bytes() const {
  require_host(*this, "bytes()");
  std::vector<std::byte> out(nbytes());
  if (out.empty()) return out;
  const std::size_t es = element_size();
  if (is_contiguous()) {
    std::memcpy(out.data(), raw_data(), out.size());
    return out;
  }
  std::byte* dst = out.data();
  const std::byte* src = raw_data();
  for_each_offset(shape_, strides_, es, [&](std::size_t off) {
    std::memcpy(dst, src + off, es);
    dst += es;
  });
  return out;
}

#ifdef PTHIO_HAVE_CUDA
namespace detail {
tensor cuda_clone(const tensor& t);
}
#endif

tensor tensor::clone() const {
  if (!defined()) return {};
  if (!dev().is_cpu()) {
#ifdef PTHIO_HAVE_CUDA
    return detail::cuda_clone(*this);
#else
    throw error(errc::cuda, "clone() of a " + dev().str() + " tensor needs CUDA support");
#endif
  }
  tensor r = zeros(dtype_, shape_);
  r.requires_grad_ = requires_grad_;
  auto b = bytes();
  if (!b.empty()) std::memcpy(r.raw_data(), b.data(), b.size());
  return r;
}

tensor tensor::contiguous() const {
  if (!defined() || is_contiguous()) return *this;
  return clone();
}

#ifdef PTHIO_HAVE_CUDA
namespace detail {
tensor cuda_to(const tensor& t, const device& dev);
}
#endif

tensor tensor::to(const device& target) const {
  if (!defined() || dev() == target) return *this;
#ifdef PTHIO_HAVE_CUDA
  return detail::cuda_to(*this, target);
#else
  throw error(errc::cuda, "cannot move a tensor from " + dev().str() + " to " + target.str() +
                              ": pthio was built without CUDA");
#endif
}

namespace {

// One element on its way between dtypes: integers stay exact (int64 and uint64 beyond 2^53
// included); floating values travel as a complex double.
struct elem {
  enum class kind { sint, uint, real } k = kind::real;
  std::int64_t i = 0;
  std::uint64_t u = 0;
  std::complex<double> c;
  bool is_zero() const noexcept {
    return k == kind::sint ? i == 0 : k == kind::uint ? u == 0 : c == 0.0;
  }
};

elem sint(std::int64_t v) {
  elem e;
  e.k = elem::kind::sint;
  e.i = v;
  return e;
}
elem uint(std::uint64_t v) {
  elem e;
  e.k = elem::kind::uint;
  e.u = v;
  return e;
}
elem real(std::complex<double> v) {
  elem e;
  e.c = v;
  return e;
}

elem load_elem(pthio::dtype t, const std::byte* p) {
  auto rd = [p]<class T>(T*) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
  };
  switch (t) {
    case dtype::float64: return real(rd((double*)nullptr));
    case dtype::float32: return real(rd((float*)nullptr));
    case dtype::float16: return real(half_to_float(rd((std::uint16_t*)nullptr)));
    case dtype::bfloat16: return real(bfloat16_to_float(rd((std::uint16_t*)nullptr)));
    case dtype::complex128: return real(rd((std::complex<double>*)nullptr));
    case dtype::complex64: return real(std::complex<double>(rd((std::complex<float>*)nullptr)));
    case dtype::int64: return sint(rd((std::int64_t*)nullptr));
    case dtype::int32: return sint(rd((std::int32_t*)nullptr));
    case dtype::int16: return sint(rd((std::int16_t*)nullptr));
    case dtype::int8: return sint(rd((std::int8_t*)nullptr));
    case dtype::uint8: return uint(rd((std::uint8_t*)nullptr));
    case dtype::uint16: return uint(rd((std::uint16_t*)nullptr));
    case dtype::uint32: return uint(rd((std::uint32_t*)nullptr));
    case dtype::uint64: return uint(rd((std::uint64_t*)nullptr));
    case dtype::bool_: return uint(rd((std::uint8_t*)nullptr) != 0 ? 1 : 0);
    case dtype::float8_e4m3fn:
    case dtype::float8_e5m2:
    case dtype::float8_e4m3fnuz:
    case dtype::float8_e5m2fnuz:
    case dtype::float8_e8m0fnu: return real(float8_to_float(t, rd((std::uint8_t*)nullptr)));
    default:
      throw error(errc::unsupported,
                  "dtype conversion from " + std::string(dtype_name(t)) + " is not supported");
  }
}

template <class T>
void put(std::byte* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

// How a floating value becomes an integer, defined for every input and as torch does on x86:
// truncated toward zero through a 32-bit conversion for int32 and narrower targets (NaN and values
// outside int32 give INT32_MIN), through a 64-bit one for wider targets (INT64_MIN); narrower
// targets then keep the low bits (300.0 -> int8 44). uint64 takes [2^63, 2^64) exactly.
enum class int_route { via32, via64, uint64 };

std::uint64_t float_to_bits(double v, int_route route) {
  if (route == int_route::via32) {
    if (std::isnan(v) || v >= 2147483648.0 || v <= -2147483649.0)
      return static_cast<std::uint64_t>(std::int64_t{INT32_MIN});
    return static_cast<std::uint64_t>(static_cast<std::int64_t>(static_cast<std::int32_t>(v)));
  }
  constexpr double two63 = 9223372036854775808.0;
  if (std::isnan(v)) return std::uint64_t{1} << 63;
  if (route == int_route::uint64 && v >= two63 && v < 2 * two63)
    return static_cast<std::uint64_t>(v);
  if (v >= two63 || v < -two63) return std::uint64_t{1} << 63;
  return static_cast<std::uint64_t>(static_cast<std::int64_t>(v));
}

// The element as the low bits of a 64-bit integer (narrower targets keep the low bits, as C++ and
// torch's integer casts do).
std::uint64_t int_bits(const elem& e, int_route route) {
  switch (e.k) {
    case elem::kind::sint: return static_cast<std::uint64_t>(e.i);
    case elem::kind::uint: return e.u;
    case elem::kind::real: return float_to_bits(e.c.real(), route);
  }
  return 0;
}

double as_double(const elem& e) {
  switch (e.k) {
    case elem::kind::sint: return static_cast<double>(e.i);
    case elem::kind::uint: return static_cast<double>(e.u);
    case elem::kind::real: return e.c.real();
  }
  return 0;
}

void store_elem(pthio::dtype t, std::byte* p, const elem& e) {
  const double v = as_double(e);
  switch (t) {
    case dtype::float64: put(p, v); break;
    case dtype::float32: put(p, static_cast<float>(v)); break;
    case dtype::float16: put(p, float_to_half(static_cast<float>(v))); break;
    case dtype::bfloat16: put(p, float_to_bfloat16(static_cast<float>(v))); break;
    case dtype::complex128: put(p, e.k == elem::kind::real ? e.c : std::complex<double>(v)); break;
    case dtype::complex64:
      put(p, std::complex<float>(e.k == elem::kind::real ? e.c : std::complex<double>(v)));
      break;
    case dtype::int64: put(p, static_cast<std::int64_t>(int_bits(e, int_route::via64))); break;
    case dtype::int32: put(p, static_cast<std::int32_t>(int_bits(e, int_route::via32))); break;
    case dtype::int16: put(p, static_cast<std::int16_t>(int_bits(e, int_route::via32))); break;
    case dtype::int8: put(p, static_cast<std::int8_t>(int_bits(e, int_route::via32))); break;
    case dtype::uint8: put(p, static_cast<std::uint8_t>(int_bits(e, int_route::via32))); break;
    case dtype::uint16: put(p, static_cast<std::uint16_t>(int_bits(e, int_route::via32))); break;
    case dtype::uint32: put(p, static_cast<std::uint32_t>(int_bits(e, int_route::via64))); break;
    case dtype::uint64: put(p, int_bits(e, int_route::uint64)); break;
    case dtype::bool_: put(p, static_cast<std::uint8_t>(e.is_zero() ? 0 : 1)); break;
    default:
      throw error(errc::unsupported,
                  "dtype conversion to " + std::string(dtype_name(t)) + " is not supported");
  }
}

}  // namespace

#ifdef PTHIO_HAVE_CUDA
namespace detail {
void cuda_copy_into(tensor& dst, const tensor& src);
}
#endif

void tensor::copy_from(const tensor& src) {
  if (src.shape_ != shape_)
    throw error(errc::mismatch,
                "copy_from: shape " + shape_string(src.shape_) + " into " + shape_string(shape_));
#ifdef PTHIO_HAVE_CUDA
  if ((dev().is_cuda() || src.dev().is_cuda()) && (dev().is_cpu() || dev().is_cuda()) &&
      (src.dev().is_cpu() || src.dev().is_cuda())) {
    detail::cuda_copy_into(*this, src);
    return;
  }
#else
  if (dev().is_cuda() || src.dev().is_cuda())
    throw error(errc::cuda, "copy_from() between " + src.dev().str() + " and " + dev().str() +
                                " needs CUDA support: pthio was built without CUDA");
#endif
  require_host(*this, "copy_from()");
  require_host(src, "copy_from()");
  if (src.dtype_ == dtype_ && is_contiguous()) {
    auto b = src.bytes();
    if (!b.empty()) std::memcpy(raw_data(), b.data(), b.size());
    return;
  }
  std::vector<std::size_t> dst_offsets;
  dst_offsets.reserve(static_cast<std::size_t>(numel_));
  for_each_offset(shape_, strides_, element_size(),
                  [&](std::size_t off) { dst_offsets.push_back(off); });
  std::size_t i = 0;
  const std::byte* sp = src.raw_data();
  std::byte* dp = raw_data();
  for_each_offset(src.shape_, src.strides_, src.element_size(), [&](std::size_t off) {
    if (src.dtype_ == dtype_)
      std::memcpy(dp + dst_offsets[i], sp + off, element_size());
    else
      store_elem(dtype_, dp + dst_offsets[i], load_elem(src.dtype_, sp + off));
    ++i;
  });
}

tensor tensor::to(pthio::dtype t) const {
  if (!defined() || t == dtype_) return *this;
  // On this tensor's GPU when it is on one (converted on the host by copy_from), else the CPU.
  tensor r = zeros(t, shape_, dev().is_cuda() ? dev() : cpu_device);
  r.copy_from(*this);
  r.requires_grad_ = requires_grad_;
  return r;
}

}  // namespace pthio
