// torch_text: see tensor_text.h. The rules are torch 2.x's torch/_tensor_str.py: _Formatter
// chooses one notation and one width for all the elements shown, _tensor_str_with_formatter lays
// them out, _str_intern wraps them in `tensor(` and adds the suffixes. Dimensions are walked with
// explicit counters, not recursion: a file may give a tensor any number of dimensions.
#include "tensor_text.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <vector>

#include "pthio/error.hpp"

namespace pthio::cli {
namespace {

// torch's default print options (threshold aside): precision 4 lives in the format strings.
constexpr std::int64_t linewidth = 80;
constexpr std::int64_t edgeitems = 3;
constexpr std::string_view prefix = "tensor(";

enum class value_kind { floating, complex, signed_integer, unsigned_integer, boolean };

// How torch shows the elements of a dtype. float8 types are printed as the half they convert to
// exactly, float4_e2m1fn_x2 as its bytes taken for floats (_Formatter and _vector_str view it as
// uint8). torch cannot print the rest; they are shown as the integers they store, with their
// dtype suffix: quantized tensors as the stored integers (torch would dequantize them and add
// size, scale and zero point, which a tensor here does not carry), bits* as unsigned integers of
// their size, bcomplex32 as a complex of two bfloat16.
value_kind kind_of(dtype d) {
  if (is_complex(d)) return value_kind::complex;
  if (is_floating_point(d)) return value_kind::floating;
  switch (d) {
    case dtype::int64:
    case dtype::int32:
    case dtype::int16:
    case dtype::int8:
    case dtype::qint8:
    case dtype::qint32: return value_kind::signed_integer;
    case dtype::bool_: return value_kind::boolean;
    default: return value_kind::unsigned_integer;
  }
}

template <class T>
T load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// A floating element as the double torch's tolist() gives: every value converts exactly.
double floating_value(dtype d, const std::byte* p) {
  switch (d) {
    case dtype::float64: return load<double>(p);
    case dtype::float32: return load<float>(p);
    case dtype::float16: return half_to_float(load<std::uint16_t>(p));
    case dtype::bfloat16: return bfloat16_to_float(load<std::uint16_t>(p));
    case dtype::float4_e2m1fn_x2: return load<std::uint8_t>(p);
    default: return float8_to_float(d, load<std::uint8_t>(p));
  }
}

// The dtype of each half of a complex element.
dtype complex_part_dtype(dtype d) {
  switch (d) {
    case dtype::complex128: return dtype::float64;
    case dtype::complex64: return dtype::float32;
    case dtype::complex32: return dtype::float16;
    default: return dtype::bfloat16;
  }
}

// An integer or bool element as Python's str() of tolist()'s value.
std::string integer_text(dtype d, value_kind kind, const std::byte* p) {
  if (kind == value_kind::boolean) return load<std::uint8_t>(p) != 0 ? "True" : "False";
  const std::size_t size = element_size(d);
  if (kind == value_kind::signed_integer) {
    switch (size) {
      case 1: return std::to_string(load<std::int8_t>(p));
      case 2: return std::to_string(load<std::int16_t>(p));
      case 4: return std::to_string(load<std::int32_t>(p));
      default: return std::to_string(load<std::int64_t>(p));
    }
  }
  switch (size) {
    case 1: return std::to_string(load<std::uint8_t>(p));
    case 2: return std::to_string(load<std::uint16_t>(p));
    case 4: return std::to_string(load<std::uint32_t>(p));
    default: return std::to_string(load<std::uint64_t>(p));
  }
}

enum class notation { fixed, scientific, integral };

// Python's '{:.4f}', '{:.4e}' and '{:.0f}'. C's conversions round the same way (correctly, ties
// to even) and also write at least two exponent digits; only NaN differs: Python never shows its
// sign, C prints "-nan".
std::string python_format(notation n, double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  const auto print = [n, v](char* buf, std::size_t size) {
    switch (n) {
      case notation::fixed: return std::snprintf(buf, size, "%.4f", v);
      case notation::scientific: return std::snprintf(buf, size, "%.4e", v);
      default: return std::snprintf(buf, size, "%.0f", v);
    }
  };
  char buf[64];
  const int len = print(buf, sizeof buf);
  if (len < 0)
    throw error(errc::limit_exceeded, "torch_text: cannot format a number");  // EOVERFLOW
  if (static_cast<std::size_t>(len) < sizeof buf)
    return std::string(buf, static_cast<std::size_t>(len));
  std::string s(static_cast<std::size_t>(len) + 1, '\0');
  print(s.data(), s.size());
  s.pop_back();
  return s;
}

// torch's _Formatter: one width for every element, and for floating values one notation, both
// chosen from the elements shown (get_summarized_data).
class formatter {
 public:
  // For floating values: `for_each` calls its argument with each value shown. Only the nonzero
  // finite ones count. Scientific notation when the largest is over 1e8 times, or over 1,000
  // times the smallest, or the smallest is under 1e-4; integral ("3.") when all are integers.
  template <class ForEach>
  static formatter for_floating(const ForEach& for_each) {
    formatter f;
    bool any = false;
    double min = 0, max = 0;
    for_each([&](double v) {
      if (!std::isfinite(v) || v == 0) return;
      const double a = std::fabs(v);
      min = any ? std::min(min, a) : a;
      max = any ? std::max(max, a) : a;
      any = true;
      if (std::ceil(v) != v) f.int_mode_ = false;
    });
    if (!any) return f;
    f.sci_mode_ = max / min > 1000.0 || max > 1.0e8 || min < 1.0e-4;
    for_each([&](double v) {
      if (!std::isfinite(v) || v == 0) return;
      std::size_t w;
      if (f.sci_mode_)
        w = python_format(notation::scientific, v).size();
      else if (f.int_mode_)
        w = python_format(notation::integral, v).size() + 1;  // the "." to come
      else
        w = python_format(notation::fixed, v).size();
      f.width_ = std::max(f.width_, w);
    });
    return f;
  }
  // For integers and bools: the widest text shown.
  template <class ForEach>
  static formatter for_texts(const ForEach& for_each) {
    formatter f;
    for_each([&](const std::string& s) { f.width_ = std::max(f.width_, s.size()); });
    return f;
  }

  std::size_t width() const { return width_; }

  std::string format(double v) const {
    std::string s;
    if (sci_mode_) {
      s = python_format(notation::scientific, v);
    } else if (int_mode_) {
      s = python_format(notation::integral, v);
      if (std::isfinite(v)) s += '.';  // still a float
    } else {
      s = python_format(notation::fixed, v);
    }
    return pad(std::move(s));
  }
  // Right-aligned in the width; never cut (a "nan" can be wider than the numbers).
  std::string pad(std::string s) const {
    if (s.size() < width_) s.insert(0, width_ - s.size(), ' ');
    return s;
  }

 private:
  bool int_mode_ = true;
  bool sci_mode_ = false;
  std::size_t width_ = 1;
};

class printer {
 public:
  printer(const tensor& t, bool summarize)
      : base_(t.raw_data()),
        dtype_(t.dtype()),
        kind_(kind_of(t.dtype())),
        element_size_(t.element_size()),
        shape_(t.shape()),
        strides_(t.strides()),
        summarize_(summarize) {
    if (kind_ == value_kind::floating) {
      real_ = formatter::for_floating([&](const auto& f) {
        for_each_shown([&](const std::byte* p) { f(floating_value(dtype_, p)); });
      });
    } else if (kind_ == value_kind::complex) {
      // torch formats t.real and t.imag each with a formatter of its own.
      const dtype part = complex_part_dtype(dtype_);
      const std::size_t part_size = element_size(part);
      real_ = formatter::for_floating([&](const auto& f) {
        for_each_shown([&](const std::byte* p) { f(floating_value(part, p)); });
      });
      imag_ = formatter::for_floating([&](const auto& f) {
        for_each_shown([&](const std::byte* p) { f(floating_value(part, p + part_size)); });
      });
    } else {
      real_ = formatter::for_texts([&](const auto& f) {
        for_each_shown([&](const std::byte* p) { f(integer_text(dtype_, kind_, p)); });
      });
    }
  }

  // _tensor_str_with_formatter for the whole tensor, whose first line starts at column `indent`.
  std::string text(std::int64_t indent) const {
    const std::size_t dims = shape_.size();
    if (dims == 0) return element_text(base_);
    if (dims == 1) return vector_text(base_, indent);
    // Dimension k's brackets open at column indent + k. An outer dimension's slices are separated
    // by a comma, a newline for each dimension left inside them, and the next column.
    std::string out = "[";
    std::vector<std::int64_t> position(dims - 1, 0);
    std::vector<const std::byte*> start(dims - 1, base_);
    std::size_t k = 0;
    for (;;) {
      if (position[k] > 0) {
        out += ',';
        out.append(dims - 1 - k, '\n');
        out.append(static_cast<std::size_t>(indent) + k + 1, ' ');
      }
      const std::int64_t index = shown_index(k, position[k]);
      bool descend = false;
      if (index < 0) {
        out += "...";
      } else {
        const std::byte* slice = at(start[k], k, index);
        if (k + 2 == dims) {
          out += vector_text(slice, indent + static_cast<std::int64_t>(dims) - 1);
        } else {
          out += '[';
          ++k;
          position[k] = 0;
          start[k] = slice;
          descend = true;
        }
      }
      if (descend) continue;
      // Next slice of dimension k, closing the dimensions that are done.
      while (++position[k] == shown_count(k)) {
        out += ']';
        if (k == 0) return out;
        --k;
      }
    }
  }

 private:
  bool cut(std::size_t k) const { return summarize_ && shape_[k] > 2 * edgeitems; }
  // The positions dimension k shows: all of them, or the edges and a "..." between.
  std::int64_t shown_count(std::size_t k) const { return cut(k) ? 2 * edgeitems + 1 : shape_[k]; }
  // The index at position j of dimension k; -1 for the "...".
  std::int64_t shown_index(std::size_t k, std::int64_t j) const {
    if (!cut(k) || j < edgeitems) return j;
    if (j == edgeitems) return -1;
    return shape_[k] - (2 * edgeitems + 1) + j;
  }
  const std::byte* at(const std::byte* p, std::size_t k, std::int64_t index) const {
    return p + static_cast<std::size_t>(index * strides_[k]) * element_size_;
  }

  // Calls f with the address of each element shown (any order).
  template <class F>
  void for_each_shown(const F& f) const {
    const std::size_t dims = shape_.size();
    std::vector<std::int64_t> position(dims, 0);
    for (;;) {
      const std::byte* p = base_;
      bool shown = true;
      for (std::size_t k = 0; k < dims && shown; ++k) {
        const std::int64_t index = shown_index(k, position[k]);
        if (index < 0)
          shown = false;
        else
          p = at(p, k, index);
      }
      if (shown) f(p);
      std::size_t k = dims;
      while (k > 0 && ++position[k - 1] == shown_count(k - 1)) position[--k] = 0;
      if (k == 0) return;
    }
  }

  std::string element_text(const std::byte* p) const {
    switch (kind_) {
      case value_kind::floating: return real_.format(floating_value(dtype_, p));
      case value_kind::complex: {
        const dtype part = complex_part_dtype(dtype_);
        std::string real = real_.format(floating_value(part, p));
        std::string imag = imag_.format(floating_value(part, p + element_size(part))) + "j";
        imag.erase(0, imag.find_first_not_of(' '));
        // A sign of its own (negative numbers, -0.) or a "+".
        if (imag[0] != '+' && imag[0] != '-') real += '+';
        return real + imag;
      }
      default: return real_.pad(integer_text(dtype_, kind_, p));
    }
  }

  // _vector_str: the last dimension, as many elements to a line as fit in the line width from
  // the indent, counting each as the formatter's width plus ", " (plus the imaginary part's width
  // and "j" for complex).
  std::string vector_text(const std::byte* row, std::int64_t indent) const {
    const std::size_t k = shape_.size() - 1;
    std::int64_t element_length = static_cast<std::int64_t>(real_.width()) + 2;
    if (kind_ == value_kind::complex)
      element_length += static_cast<std::int64_t>(imag_.width()) + 1;
    const std::int64_t per_line = std::max<std::int64_t>(1, (linewidth - indent) / element_length);
    std::string out = "[";
    const std::int64_t count = shown_count(k);
    for (std::int64_t j = 0; j < count; ++j) {
      if (j > 0) {
        if (j % per_line == 0) {
          out += ",\n";
          out.append(static_cast<std::size_t>(indent) + 1, ' ');
        } else {
          out += ", ";
        }
      }
      const std::int64_t index = shown_index(k, j);
      out += index < 0 ? std::string(" ...") : element_text(at(row, k, index));
    }
    out += ']';
    return out;
  }

  const std::byte* base_;
  dtype dtype_;
  value_kind kind_;
  std::size_t element_size_;
  const shape_t& shape_;
  const shape_t& strides_;
  bool summarize_;
  formatter real_;  // the values of real and integer tensors, the real parts of complex ones
  formatter imag_;
};

// _add_suffixes: each suffix after ", " on the last line, or on a line of its own at the indent
// when that line would pass the line width. torch counts the last line two characters long.
std::string add_suffixes(std::string text, const std::vector<std::string>& suffixes,
                         std::int64_t indent) {
  const std::size_t newline = text.rfind('\n');
  std::int64_t last_line =
      static_cast<std::int64_t>(text.size()) -
      (newline == std::string::npos ? -1 : static_cast<std::int64_t>(newline)) + 1;
  for (const std::string& s : suffixes) {
    const auto len = static_cast<std::int64_t>(s.size());
    if (last_line + len + 2 > linewidth) {
      text += ",\n";
      text.append(static_cast<std::size_t>(indent), ' ');
      last_line = indent + len;
    } else {
      text += ", ";
      last_line += len + 2;
    }
    text += s;
  }
  text += ')';
  return text;
}

}  // namespace

std::string torch_text(const tensor& t, std::int64_t threshold) {
  if (!t.defined()) throw error(errc::invalid_argument, "torch_text: undefined tensor");
  if (!t.dev().is_cpu())
    throw error(errc::invalid_argument,
                "torch_text: needs a CPU tensor; this one is on " + t.dev().str());
  const auto indent = static_cast<std::int64_t>(prefix.size());
  const std::string dtype_suffix = "dtype=torch." + std::string(dtype_name(t.dtype()));
  std::vector<std::string> suffixes;
  std::string text(prefix);
  if (t.numel() == 0) {
    // The shape when it is not (0,), and the dtype unless float32: no element shows it.
    if (t.dim() != 1) {
      std::string size = "size=(";
      for (std::size_t k = 0; k < t.shape().size(); ++k)
        size += (k ? ", " : "") + std::to_string(t.shape()[k]);
      suffixes.push_back(size + ")");
    }
    if (t.dtype() != dtype::float32) suffixes.push_back(dtype_suffix);
    text += "[]";
  } else {
    // The dtypes torch leaves unsaid: the default float32 and complex64, int64 and bool.
    const dtype d = t.dtype();
    if (d != dtype::float32 && d != dtype::complex64 && d != dtype::int64 && d != dtype::bool_)
      suffixes.push_back(dtype_suffix);
    text += printer(t, t.numel() > threshold).text(indent);
  }
  if (t.requires_grad()) suffixes.push_back("requires_grad=True");
  return add_suffixes(std::move(text), suffixes, indent);
}

}  // namespace pthio::cli
