// pthio — tensor: a strided view of a storage.
//
// tensor = storage + storage_offset + shape + strides + dtype + requires_grad, as in torch.
// Offsets and strides count elements, not bytes. Views (transpose, as_strided, narrow) share the
// storage. Construction checks that every element the view can reach lies inside the storage:
// (storage_offset + sum((shape[i]-1) * stride[i]) + 1) * element_size <= storage.nbytes(),
// with checked arithmetic; an empty tensor (a zero in shape) reaches nothing.
// Element access is typed and checks the dtype. <pthio/eigen.hpp> views tensors as Eigen matrices.
//
// Ownership: a tensor is a handle. Copying it, and every view made from it, shares the storage;
// the bytes live until the last handle to the storage (tensor, view, storage, DLPack export) goes.
// Pointers and Eigen maps taken from a tensor (raw_data, data, at, map_matrix ...) do not own
// anything: they stay valid while some handle keeps the storage alive. Writes through any of them
// are seen by every view. A tensor is not synchronised: concurrent reads are fine, concurrent
// writes to shared elements are the caller's to order.
//
// Errors: every failure is a pthio::error. Typed access (data, at, item) throws
// invalid_argument for an undefined tensor, a dtype other than T's, a tensor not on the CPU, or an
// index out of range; views reaching outside the storage throw corrupt_checkpoint (the check that
// guards views read from files); device moves without CUDA throw cuda.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "pthio/dtype.hpp"
#include "pthio/error.hpp"
#include "pthio/export.hpp"
#include "pthio/storage.hpp"

namespace pthio {

using shape_t = std::vector<std::int64_t>;

// Row-major (C-contiguous) strides for a shape.
PTHIO_API shape_t contiguous_strides(std::span<const std::int64_t> shape);
// Product of the extents; throws limit_exceeded on overflow.
PTHIO_API std::int64_t shape_numel(std::span<const std::int64_t> shape);
// "[2, 3]"
PTHIO_API std::string shape_string(std::span<const std::int64_t> shape);

class PTHIO_API tensor {
 public:
  tensor() = default;
  // A view of `s`. Throws pthio::error(corrupt_checkpoint) if the view reaches outside `s`,
  // or an extent or stride is negative.
  tensor(storage s, dtype t, shape_t shape, shape_t strides, std::int64_t storage_offset = 0,
         bool requires_grad = false);

  // A new contiguous, zero-filled tensor in its own storage. Throws invalid_argument for a
  // negative extent, limit_exceeded when the size overflows or cannot be allocated, cuda when
  // `dev` is a CUDA device and CUDA is unavailable.
  static tensor zeros(dtype t, shape_t shape, const device& dev = cpu_device);
  // A new contiguous CPU tensor holding a copy of `values` (numel(shape) of them; otherwise
  // invalid_argument).
  template <class T>
  static tensor from_values(std::span<const T> values, shape_t shape) {
    tensor r = zeros(dtype_of<T>, std::move(shape));
    if (static_cast<std::size_t>(r.numel()) != values.size())
      throw error(errc::invalid_argument, "from_values: " + std::to_string(values.size()) +
                                              " values for shape " + shape_string(r.shape()));
    std::copy(values.begin(), values.end(), r.data<T>());
    return r;
  }
  template <class T>
  static tensor from_values(std::initializer_list<T> values, shape_t shape) {
    return from_values(std::span<const T>(values.begin(), values.size()), std::move(shape));
  }

  bool defined() const noexcept { return storage_.defined(); }
  pthio::dtype dtype() const noexcept { return dtype_; }
  const shape_t& shape() const noexcept { return shape_; }
  const shape_t& strides() const noexcept { return strides_; }
  std::int64_t storage_offset() const noexcept { return offset_; }
  std::int64_t dim() const noexcept { return static_cast<std::int64_t>(shape_.size()); }
  // The extent of dimension d (negative d counts from the end); invalid_argument when out of range.
  std::int64_t size(std::int64_t d) const;
  std::int64_t numel() const noexcept { return numel_; }
  std::size_t element_size() const noexcept { return pthio::element_size(dtype_); }
  // numel * element size: the bytes of the elements, not of the storage.
  std::size_t nbytes() const noexcept { return static_cast<std::size_t>(numel_) * element_size(); }
  bool requires_grad() const noexcept { return requires_grad_; }
  void set_requires_grad(bool r) noexcept { requires_grad_ = r; }
  const pthio::storage& get_storage() const noexcept { return storage_; }
  const device& dev() const noexcept { return storage_.dev(); }
  bool is_contiguous() const noexcept;

  // Address of element 0 (storage data + offset * element size): a host address, or a device
  // address for a CUDA tensor; not a usable address for an undefined or meta tensor (no bytes).
  // Never dereference it for a non-CPU tensor; typed access below checks that.
  std::byte* raw_data() const noexcept {
    return storage_.data() + static_cast<std::size_t>(offset_) * element_size();
  }
  template <class T>
  T* data() const {
    check_access(dtype_of<T>);
    return reinterpret_cast<T*>(raw_data());
  }
  // The element at a full index, bounds-checked.
  template <class T>
  T& at(std::initializer_list<std::int64_t> index) const {
    check_access(dtype_of<T>);
    return reinterpret_cast<T*>(raw_data())[element_offset(index)];
  }
  // The value of a one-element tensor.
  template <class T>
  T item() const {
    if (numel_ != 1)
      throw error(errc::invalid_argument,
                  "item() needs one element, tensor has " + std::to_string(numel_));
    check_access(dtype_of<T>);
    return *reinterpret_cast<const T*>(raw_data());
  }

  // Views sharing the storage (no copy). as_strided throws invalid_argument when the view would
  // reach outside the storage or has a negative extent or stride; transpose and narrow throw
  // invalid_argument for a bad dimension or range.
  tensor as_strided(shape_t shape, shape_t strides, std::int64_t storage_offset) const;
  tensor transpose(std::int64_t d0, std::int64_t d1) const;
  tensor narrow(std::int64_t d, std::int64_t start, std::int64_t length) const;
  tensor reshape(shape_t shape) const;  // a view when contiguous, else a contiguous copy
  // Same shape and dtype in fresh contiguous memory on the same device.
  tensor clone() const;
  // *this when already contiguous, else clone().
  tensor contiguous() const;
  // A copy on `dev` (host<->cuda needs CUDA, else pthio::error(cuda)); *this when already there.
  tensor to(const device& dev) const;
  // A converted copy (floating, integer, bool; float16/bfloat16 via float). *this when same dtype.
  // Integer to integer is exact and keeps the low bits when narrowing (int64 300 -> int8 44), as
  // torch does; floating values pass through a double (complex to real keeps the real part);
  // floating to integer truncates toward zero as torch on x86 does: through int32 for int32 and
  // narrower targets (NaN or a value beyond int32 gives INT32_MIN, then the low bits: 300.0 ->
  // int8 44), through int64 for wider ones (INT64_MIN); to bool is "!= 0". float8 converts from
  // (exactly, as float8_to_float), not to. Throws unsupported for complex32, quantized, float4,
  // bits*, bcomplex32, and to float8. A tensor on a CUDA device gives one on the same device (the
  // elements converted on the host).
  tensor to(pthio::dtype t) const;
  // The elements in row-major order, each little-endian at the element size (host tensors).
  std::vector<std::byte> bytes() const;
  // Copies `src` (same shape, else mismatch) into this tensor's elements in place, converting the
  // dtype if needed; every view of this tensor's storage sees the new values. Both on the CPU, or,
  // in a CUDA build, either or both on CUDA devices: a dtype conversion runs on the host, and a
  // non-contiguous device destination is updated by reading back the bytes its elements span,
  // writing the elements there on the host and copying the span back (its other bytes keep the
  // values read). Other devices: invalid_argument (errc::cuda without CUDA support).
  void copy_from(const tensor& src);

 private:
  void check_access(pthio::dtype want) const;
  std::int64_t element_offset(std::initializer_list<std::int64_t> index) const;

  pthio::storage storage_;
  pthio::dtype dtype_ = pthio::dtype::float32;
  shape_t shape_;
  shape_t strides_;
  std::int64_t offset_ = 0;
  std::int64_t numel_ = 0;
  bool requires_grad_ = false;
};

}  // namespace pthio
