// pthio — element types, with torch's names and sizes.
//
// Every dtype torch has. Names are torch's without the `torch.` prefix ("float32", "bfloat16",
// "bool", "float8_e4m3fn"). Sizes are bytes per element; the sub-byte packed types
// (quint4x2, quint2x4, bits1x8, bits2x4, bits4x2, float4_e2m1fn_x2) count one byte per element as
// torch does. The storage class is the legacy typed-storage name torch pickles ("FloatStorage");
// dtypes without one are saved as UntypedStorage with `_rebuild_tensor_v3`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "pthio/export.hpp"

namespace pthio {

enum class dtype : std::uint8_t {
  float64,
  float32,
  float16,
  bfloat16,
  complex128,
  complex64,
  complex32,
  int64,
  int32,
  int16,
  int8,
  uint8,
  uint16,
  uint32,
  uint64,
  bool_,
  qint8,
  quint8,
  qint32,
  quint4x2,
  quint2x4,
  float8_e4m3fn,
  float8_e5m2,
  float8_e4m3fnuz,
  float8_e5m2fnuz,
  float8_e8m0fnu,
  float4_e2m1fn_x2,
  bits8,
  bits16,
  bits1x8,
  bits2x4,
  bits4x2,
  bcomplex32,
};

inline constexpr std::size_t dtype_count = static_cast<std::size_t>(dtype::bcomplex32) + 1;

// torch's name without `torch.`: "float32".
PTHIO_API std::string_view dtype_name(dtype t) noexcept;
// Accepts torch's names and its aliases ("float", "double", "half", "long", "int", "short",
// "cfloat", "cdouble", "chalf"); nullopt if unknown.
PTHIO_API std::optional<dtype> dtype_from_name(std::string_view name) noexcept;
PTHIO_API std::size_t element_size(dtype t) noexcept;
// "FloatStorage" etc.; empty when the dtype has no legacy storage class.
PTHIO_API std::string_view storage_class_name(dtype t) noexcept;
PTHIO_API std::optional<dtype> dtype_from_storage_class(std::string_view class_name) noexcept;

PTHIO_API bool is_floating_point(dtype t) noexcept;  // includes float8 / bfloat16 / float16
PTHIO_API bool is_complex(dtype t) noexcept;
PTHIO_API bool is_quantized(dtype t) noexcept;

namespace detail {
template <class T>
struct dtype_of_impl;
template <>
struct dtype_of_impl<double> {
  static constexpr dtype value = dtype::float64;
};
template <>
struct dtype_of_impl<float> {
  static constexpr dtype value = dtype::float32;
};
template <>
struct dtype_of_impl<std::int64_t> {
  static constexpr dtype value = dtype::int64;
};
template <>
struct dtype_of_impl<std::int32_t> {
  static constexpr dtype value = dtype::int32;
};
template <>
struct dtype_of_impl<std::int16_t> {
  static constexpr dtype value = dtype::int16;
};
template <>
struct dtype_of_impl<std::int8_t> {
  static constexpr dtype value = dtype::int8;
};
template <>
struct dtype_of_impl<std::uint8_t> {
  static constexpr dtype value = dtype::uint8;
};
template <>
struct dtype_of_impl<std::uint16_t> {
  static constexpr dtype value = dtype::uint16;
};
template <>
struct dtype_of_impl<std::uint32_t> {
  static constexpr dtype value = dtype::uint32;
};
template <>
struct dtype_of_impl<std::uint64_t> {
  static constexpr dtype value = dtype::uint64;
};
template <>
struct dtype_of_impl<bool> {
  static constexpr dtype value = dtype::bool_;
};
}  // namespace detail

// The dtype of a C++ element type: dtype_of<float> == dtype::float32.
template <class T>
inline constexpr dtype dtype_of = detail::dtype_of_impl<T>::value;

// IEEE half and bfloat16 conversions (round to nearest even).
PTHIO_API float half_to_float(std::uint16_t h) noexcept;
PTHIO_API std::uint16_t float_to_half(float f) noexcept;
PTHIO_API float bfloat16_to_float(std::uint16_t b) noexcept;
PTHIO_API std::uint16_t float_to_bfloat16(float f) noexcept;
// A float8 code as float32 (exact: every float8 value is a float32): float8_e4m3fn and
// float8_e5m2 (OCP FP8), float8_e4m3fnuz and float8_e5m2fnuz (no infinities or -0; 0x80 is NaN),
// float8_e8m0fnu (a power of two 2^(bits - 127); 0xff is NaN). Any other dtype gives NaN.
PTHIO_API float float8_to_float(dtype t, std::uint8_t bits) noexcept;

}  // namespace pthio
