#include "pthio/dtype.hpp"

#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace pthio {

namespace {

struct dtype_info {
  dtype t;
  std::string_view name;
  std::size_t size;
  std::string_view storage_class;
  bool floating;
  bool complex;
  bool quantized;
};

// torch/_utils.py and torch/storage.py: names, sizes and legacy storage classes.
constexpr std::array<dtype_info, dtype_count> infos{{
    {dtype::float64, "float64", 8, "DoubleStorage", true, false, false},
    {dtype::float32, "float32", 4, "FloatStorage", true, false, false},
    {dtype::float16, "float16", 2, "HalfStorage", true, false, false},
    {dtype::bfloat16, "bfloat16", 2, "BFloat16Storage", true, false, false},
    {dtype::complex128, "complex128", 16, "ComplexDoubleStorage", false, true, false},
    {dtype::complex64, "complex64", 8, "ComplexFloatStorage", false, true, false},
    {dtype::complex32, "complex32", 4, "", false, true, false},
    {dtype::int64, "int64", 8, "LongStorage", false, false, false},
    {dtype::int32, "int32", 4, "IntStorage", false, false, false},
    {dtype::int16, "int16", 2, "ShortStorage", false, false, false},
    {dtype::int8, "int8", 1, "CharStorage", false, false, false},
    {dtype::uint8, "uint8", 1, "ByteStorage", false, false, false},
    {dtype::uint16, "uint16", 2, "", false, false, false},
    {dtype::uint32, "uint32", 4, "", false, false, false},
    {dtype::uint64, "uint64", 8, "", false, false, false},
    {dtype::bool_, "bool", 1, "BoolStorage", false, false, false},
    {dtype::qint8, "qint8", 1, "QInt8Storage", false, false, true},
    {dtype::quint8, "quint8", 1, "QUInt8Storage", false, false, true},
    {dtype::qint32, "qint32", 4, "QInt32Storage", false, false, true},
    {dtype::quint4x2, "quint4x2", 1, "QUInt4x2Storage", false, false, true},
    {dtype::quint2x4, "quint2x4", 1, "QUInt2x4Storage", false, false, true},
    {dtype::float8_e4m3fn, "float8_e4m3fn", 1, "", true, false, false},
    {dtype::float8_e5m2, "float8_e5m2", 1, "", true, false, false},
    {dtype::float8_e4m3fnuz, "float8_e4m3fnuz", 1, "", true, false, false},
    {dtype::float8_e5m2fnuz, "float8_e5m2fnuz", 1, "", true, false, false},
    {dtype::float8_e8m0fnu, "float8_e8m0fnu", 1, "", true, false, false},
    {dtype::float4_e2m1fn_x2, "float4_e2m1fn_x2", 1, "", true, false, false},
    {dtype::bits8, "bits8", 1, "", false, false, false},
    {dtype::bits16, "bits16", 2, "", false, false, false},
    {dtype::bits1x8, "bits1x8", 1, "", false, false, false},
    {dtype::bits2x4, "bits2x4", 1, "", false, false, false},
    {dtype::bits4x2, "bits4x2", 1, "", false, false, false},
    {dtype::bcomplex32, "bcomplex32", 4, "", false, true, false},
}};

const dtype_info& info(dtype t) noexcept { return infos[static_cast<std::size_t>(t)]; }

}  // namespace

std::string_view dtype_name(dtype t) noexcept { return info(t).name; }
std::size_t element_size(dtype t) noexcept { return info(t).size; }
std::string_view storage_class_name(dtype t) noexcept { return info(t).storage_class; }
bool is_floating_point(dtype t) noexcept { return info(t).floating; }
bool is_complex(dtype t) noexcept { return info(t).complex; }
bool is_quantized(dtype t) noexcept { return info(t).quantized; }

std::optional<dtype> dtype_from_name(std::string_view name) noexcept {
  if (name.starts_with("torch.")) name.remove_prefix(6);
  for (const auto& i : infos)
    if (i.name == name) return i.t;
  struct alias {
    std::string_view name;
    dtype t;
  };
  static constexpr alias aliases[] = {
      {"float", dtype::float32},       {"double", dtype::float64},     {"half", dtype::float16},
      {"long", dtype::int64},          {"int", dtype::int32},          {"short", dtype::int16},
      {"cfloat", dtype::complex64},    {"cdouble", dtype::complex128}, {"chalf", dtype::complex32},
      {"complex32", dtype::complex32},
  };
  for (const auto& a : aliases)
    if (a.name == name) return a.t;
  return std::nullopt;
}

std::optional<dtype> dtype_from_storage_class(std::string_view class_name) noexcept {
  if (class_name.empty()) return std::nullopt;
  for (const auto& i : infos)
    if (i.storage_class == class_name) return i.t;
  return std::nullopt;
}

float half_to_float(std::uint16_t h) noexcept {
  std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000) << 16;
  std::uint32_t exp = (h >> 10) & 0x1f;
  std::uint32_t man = h & 0x3ff;
  std::uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      do {
        ++e;
        man <<= 1;
      } while ((man & 0x400) == 0);
      bits = sign | static_cast<std::uint32_t>(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | man << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | man << 13;
  }
  return std::bit_cast<float>(bits);
}

std::uint16_t float_to_half(float f) noexcept {
  std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000);
  std::uint32_t exp = (x >> 23) & 0xff;
  std::uint32_t man = x & 0x7fffff;
  if (exp == 0xff)
    return static_cast<std::uint16_t>(sign | 0x7c00 | (man ? 0x200 | (man >> 13) : 0));
  int e = static_cast<int>(exp) - 127 + 15;
  if (e >= 0x1f) return static_cast<std::uint16_t>(sign | 0x7c00);
  if (e <= 0) {
    if (e < -10) return sign;
    man |= 0x800000;
    int shift = 14 - e;
    std::uint32_t half = man >> shift;
    std::uint32_t rem = man & ((1u << shift) - 1);
    std::uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return static_cast<std::uint16_t>(sign | half);
  }
  std::uint32_t half = static_cast<std::uint32_t>(e) << 10 | man >> 13;
  std::uint32_t rem = man & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
    ++half;  // may carry into the exponent: correct
  return static_cast<std::uint16_t>(sign | half);
}

float bfloat16_to_float(std::uint16_t b) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

std::uint16_t float_to_bfloat16(float f) noexcept {
  std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7fffffff) > 0x7f800000)
    return static_cast<std::uint16_t>((x >> 16) | 0x40);  // quiet NaN
  std::uint32_t rounding = 0x7fff + ((x >> 16) & 1);
  return static_cast<std::uint16_t>((x + rounding) >> 16);
}

namespace {

// A sign, exponent and mantissa float8 layout. `fnuz` formats (Graphcore's, in torch as *fnuz) have
// no infinities and no negative zero: 0x80 is their only NaN, and their bias is one more than the
// OCP format's. OCP e4m3fn gives up infinities for range: only S.1111.111 is NaN. OCP e5m2 follows
// IEEE: an all-ones exponent is infinity or NaN.
float decode_float8(std::uint8_t b, int exp_bits, int bias, bool fnuz) noexcept {
  const int man_bits = 7 - exp_bits;
  const int exp_mask = (1 << exp_bits) - 1;
  const bool negative = (b & 0x80) != 0;
  const int e = (b >> man_bits) & exp_mask;
  const int m = b & ((1 << man_bits) - 1);
  constexpr float nan = std::numeric_limits<float>::quiet_NaN();
  if (fnuz) {
    if (b == 0x80) return nan;
  } else if (exp_bits == 4) {
    if (e == exp_mask && m == (1 << man_bits) - 1) return nan;
  } else if (e == exp_mask) {
    if (m != 0) return nan;
    constexpr float inf = std::numeric_limits<float>::infinity();
    return negative ? -inf : inf;
  }
  // Subnormals (e == 0) have no implicit leading one and the exponent of e == 1.
  const int significand = e == 0 ? m : (1 << man_bits) | m;
  const int exponent = (e == 0 ? 1 : e) - bias - man_bits;
  const float v = std::ldexp(static_cast<float>(significand), exponent);
  return negative ? -v : v;
}

}  // namespace

float float8_to_float(dtype t, std::uint8_t bits) noexcept {
  switch (t) {
    case dtype::float8_e4m3fn: return decode_float8(bits, 4, 7, false);
    case dtype::float8_e5m2: return decode_float8(bits, 5, 15, false);
    case dtype::float8_e4m3fnuz: return decode_float8(bits, 4, 8, true);
    case dtype::float8_e5m2fnuz: return decode_float8(bits, 5, 16, true);
    case dtype::float8_e8m0fnu:
      // Exponent only, unsigned: 2^-127 (a float32 subnormal) up to 2^127.
      if (bits == 0xff) return std::numeric_limits<float>::quiet_NaN();
      return std::ldexp(1.0f, static_cast<int>(bits) - 127);
    default: return std::numeric_limits<float>::quiet_NaN();
  }
}

}  // namespace pthio
