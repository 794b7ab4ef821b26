// numpy inside torch files: scalars (numpy.core.multiarray.scalar) and arrays
// (numpy.core.multiarray._reconstruct with a BUILD state), as torch.save pickles them.
#include <algorithm>
#include <cstring>
#include <map>

#include "../byte_reader.h"
#include "internal.h"

namespace pthio::detail {

namespace {

// numpy pickles a dtype as numpy.dtype(code, False, True) with the state (3, byte order, ...);
// the code ("f4", "i8") comes from the file, so it is checked to be a str before it is read.
const std::string& type_code(const opaque_object& dt, const char* fn) {
  if (!dt.args.is_tuple() || dt.args.items().empty() || !dt.args.items()[0].is_str())
    bad_args(fn, "numpy dtype without a type code");
  return dt.args.items()[0].as_str();
}

bool is_big_endian(const opaque_object& dt) {
  return dt.has_state && dt.state.is_tuple() && dt.state.items().size() > 1 &&
         dt.state.items()[1].is_str() && dt.state.items()[1].as_str() == ">";
}

}  // namespace

// numpy scalar: (dtype object, raw bytes) -> a number.
value numpy_scalar(std::span<const value> a) {
  const char* fn = "numpy scalar";
  need_args(a, 1, 2, fn);
  if (!a[0].is_object() || a[0].as_object().type.name != "dtype")
    bad_args(fn, "first argument must be a numpy dtype");
  const auto& dt = a[0].as_object();
  const std::string& code = type_code(dt, fn);
  const bool big = is_big_endian(dt);
  if (a.size() < 2 || !a[1].is_bytes()) bad_args(fn, "missing the scalar's bytes");
  std::string raw = a[1].as_bytes();
  if (big) std::reverse(raw.begin(), raw.end());
  auto need = [&](std::size_t n) {
    if (raw.size() != n)
      bad_args(fn, "dtype " + code + " needs " + std::to_string(n) + " bytes, got " +
                       std::to_string(raw.size()));
  };
  auto get = [&]<class T>(T) {
    T v;
    need(sizeof v);
    std::memcpy(&v, raw.data(), sizeof v);
    return v;
  };
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

namespace {

// numpy arrays come out of the unpickler as _reconstruct objects with a BUILD state
// (version, shape, dtype, is_fortran, raw bytes); turn them into tensors in place.
std::optional<value> numpy_array(const opaque_object& o) {
  if (o.type.name != "_reconstruct" || !o.has_state || !o.state.is_tuple()) return std::nullopt;
  const auto& st = o.state.as_tuple();
  if (st.size() != 5) return std::nullopt;
  const char* fn = "numpy array";
  auto shape = int_sequence(st[1], fn, "shape");
  if (!st[2].is_object() || !st[2].as_object().args.is_tuple() ||
      st[2].as_object().args.items().empty())
    bad_args(fn, "bad dtype");
  const auto& dto = st[2].as_object();
  const std::string& code = type_code(dto, fn);
  const bool big = is_big_endian(dto);
  static const std::map<std::string, dtype> codes = {
      {"f8", dtype::float64},   {"f4", dtype::float32},    {"f2", dtype::float16},
      {"i8", dtype::int64},     {"i4", dtype::int32},      {"i2", dtype::int16},
      {"i1", dtype::int8},      {"u1", dtype::uint8},      {"u2", dtype::uint16},
      {"u4", dtype::uint32},    {"u8", dtype::uint64},     {"b1", dtype::bool_},
      {"c8", dtype::complex64}, {"c16", dtype::complex128}};
  auto it = codes.find(code);
  if (it == codes.end())
    throw error(errc::unsupported, "numpy array of dtype '" + code + "' is not supported");
  if (!st[4].is_bytes()) throw error(errc::unsupported, "numpy object arrays are not supported");
  const std::string& raw = st[4].as_bytes();
  std::int64_t n = shape_numel(shape);
  std::uint64_t need;
  if (!checked_mul(static_cast<std::uint64_t>(n), element_size(it->second), need) ||
      need != raw.size())
    bad_args(
        fn, "data holds " + std::to_string(raw.size()) + " bytes for shape " + shape_string(shape));
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

}  // namespace

void convert_numpy_arrays(value& root) {
  transform_values(root, [](const value& v) -> std::optional<value> {
    return v.is_object() ? numpy_array(v.as_object()) : std::nullopt;
  });
}

}  // namespace pthio::detail
