#include "json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>

#include "json_reader.h"
#include "sha256.h"
#include "torch/internal.h"

namespace pthio::cli {

std::string python_float_repr(double d) { return detail::python_float_repr(d); }

std::string python_float_repr(float f) { return detail::python_float_repr(f); }

std::string json_quote(std::string_view s) { return detail::json_quote(s); }

std::string tensor_sha256(const tensor& t) {
  if (t.dev().type() == device_type::meta) return "";
  std::vector<std::byte> b = t.dev().is_cpu() ? t.bytes() : t.to(cpu_device).bytes();
  return sha256_hex(b);
}

namespace {

std::string int_list(const shape_t& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

std::string base64(std::string_view in) {
  static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16 |
                 static_cast<unsigned char>(in[i + 1]) << 8 | static_cast<unsigned char>(in[i + 2]);
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += tbl[v & 63];
  }
  if (i + 1 == in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16 | static_cast<unsigned char>(in[i + 1])
                                                               << 8;
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

void render(std::string& out, const value& v, const checkpoint* src);
std::string lazy_tensor_json(const checkpoint& ck, const tensor& t, const std::string* key);

void render_items(std::string& out, std::span<const value> items, const checkpoint* src) {
  out += '[';
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    render(out, items[i], src);
  }
  out += ']';
}

void render_dict(std::string& out, const dict_object& d, const checkpoint* src) {
  out += "{\"dict\": [";
  bool first = true;
  for (const auto& [k, val] : d.entries()) {
    if (!first) out += ", ";
    first = false;
    out += '[';
    render(out, k, src);
    out += ", ";
    render(out, val, src);
    out += ']';
  }
  out += ']';
  if (!d.class_name.empty()) out += ", \"class\": " + json_quote(d.class_name);
  if (!d.attrs.empty()) {
    out += ", \"attrs\": {";
    for (std::size_t i = 0; i < d.attrs.size(); ++i) {
      if (i) out += ", ";
      out += json_quote(d.attrs[i].first) + ": ";
      render(out, d.attrs[i].second, src);
    }
    out += '}';
  }
  out += '}';
}

void render(std::string& out, const value& v, const checkpoint* src) {
  switch (v.type()) {
    case value::kind::none: out += "null"; break;
    case value::kind::boolean: out += v.as_bool() ? "true" : "false"; break;
    case value::kind::integer: {
      std::int64_t i = v.as_int();
      constexpr std::int64_t lim = std::int64_t{1} << 53;
      if (i >= -lim && i <= lim)
        out += std::to_string(i);
      else
        out += "{\"int\": \"" + std::to_string(i) + "\"}";
      break;
    }
    case value::kind::big_integer:
      out += "{\"int\": \"" + v.as_big_int().to_string() + "\"}";
      break;
    case value::kind::floating: {
      double d = v.as_float();
      if (std::isnan(d))
        out += "{\"float\": \"nan\"}";
      else if (std::isinf(d))
        out += d > 0 ? "{\"float\": \"inf\"}" : "{\"float\": \"-inf\"}";
      else
        out += python_float_repr(d);
      break;
    }
    case value::kind::string: out += json_quote(v.as_str()); break;
    case value::kind::bytes: out += "{\"bytes\": \"" + base64(v.as_bytes()) + "\"}"; break;
    case value::kind::list: render_items(out, v.items(), src); break;
    case value::kind::tuple:
      out += "{\"tuple\": ";
      render_items(out, v.items(), src);
      out += '}';
      break;
    case value::kind::dict: render_dict(out, v.as_dict(), src); break;
    case value::kind::tensor:
      // A lazy checkpoint's tensor is read here, hashed and released: one at a time.
      out += "{\"tensor\": " +
             (src ? lazy_tensor_json(*src, v.as_tensor(), nullptr) : tensor_json(v, nullptr)) + "}";
      break;
    case value::kind::storage: {
      const auto& s = v.as_storage();
      out += "{\"storage\": {\"dtype\": " + json_quote(dtype_name(s.dtype)) +
             ", \"numel\": " + std::to_string(s.numel) +
             ", \"device\": " + json_quote((src ? src->load_device(s.data) : s.data.dev()).str()) +
             "}}";
      break;
    }
    case value::kind::global:
      out += "{\"global\": " + json_quote(v.as_global().qualified()) + "}";
      break;
    case value::kind::object: {
      const auto& o = v.as_object();
      if (o.type.module == "builtins" && (o.type.name == "set" || o.type.name == "frozenset") &&
          !o.has_state && o.dict_items.empty() &&
          (o.args.is_none() || (o.args.is_tuple() && o.args.items().empty()))) {
        // As Python reduces a set: set([elements]).
        out += "{\"object\": " + json_quote(o.type.qualified()) + ", \"args\": {\"tuple\": [";
        render_items(out, o.list_items, src);
        out += "]}, \"state\": null}";
        break;
      }
      out += "{\"object\": " + json_quote(o.type.qualified()) + ", \"args\": ";
      render(out, o.args, src);
      out += ", \"state\": ";
      if (o.has_state)
        render(out, o.state, src);
      else
        out += "null";
      if (!o.list_items.empty()) {
        out += ", \"items\": ";
        render_items(out, o.list_items, src);
      }
      if (!o.dict_items.empty()) {
        out += ", \"dict_items\": [";
        for (std::size_t i = 0; i < o.dict_items.size(); ++i) {
          out += i ? ", [" : "[";
          render(out, o.dict_items[i].first, src);
          out += ", ";
          render(out, o.dict_items[i].second, src);
          out += ']';
        }
        out += ']';
      }
      out += '}';
      break;
    }
  }
}

}  // namespace

namespace {

// The ls fields of `t` with the device and SHA-256 of `elements`: `t` itself, or for a lazy
// placeholder its elements as read (load_elements may give a contiguous copy: the view's
// strides and offset are the placeholder's).
std::string tensor_fields(const tensor& t, const tensor& elements, const std::string* key) {
  std::string out = "{";
  if (key) out += "\"key\": " + json_quote(*key) + ", ";
  out += "\"dtype\": " + json_quote(dtype_name(t.dtype()));
  out += ", \"shape\": " + int_list(t.shape());
  out += ", \"stride\": " + int_list(t.strides());
  out += ", \"storage_offset\": " + std::to_string(t.storage_offset());
  out += ", \"device\": " + json_quote(elements.dev().str());
  out += std::string(", \"requires_grad\": ") + (t.requires_grad() ? "true" : "false");
  std::string sha = tensor_sha256(elements);
  out += ", \"sha256\": " + (sha.empty() ? std::string("null") : json_quote(sha));
  return out + "}";
}

// A lazy checkpoint's tensor, read now, hashed and released: one at a time.
std::string lazy_tensor_json(const checkpoint& ck, const tensor& t, const std::string* key) {
  return tensor_fields(t, ck.load_elements(t), key);
}

}  // namespace

std::string tensor_json(const value& v, const std::string* key) {
  const tensor& t = v.as_tensor();
  return tensor_fields(t, t, key);
}

std::string dump_json(const value& v) {
  detail::check_expansion(v, "dump");
  std::string out;
  render(out, v, nullptr);
  return out;
}

std::string dump_json(const checkpoint& ck) {
  detail::check_expansion(ck.root, "dump");
  std::string out;
  render(out, ck.root, ck.is_lazy() ? &ck : nullptr);
  return out;
}

std::string ls_json(const checkpoint& ck, std::string_view file, bool by_size,
                    const std::function<void(std::uint64_t)>& on_tensor) {
  std::string out = "{\"file\": " + json_quote(file) +
                    ", \"format\": " + json_quote(format_name(ck.format)) + ", \"tensors\": [";
  // A lazy checkpoint's tensors are read one at a time, each released once hashed.
  std::vector<std::pair<std::uint64_t, std::string>> rows;
  visit_tensors(ck.root, [&](const std::string& key, const value& t) {
    rows.emplace_back(t.as_tensor().nbytes(), ck.is_lazy()
                                                  ? lazy_tensor_json(ck, t.as_tensor(), &key)
                                                  : tensor_json(t, &key));
    if (on_tensor) on_tensor(t.as_tensor().nbytes());
  });
  if (by_size)
    std::stable_sort(rows.begin(), rows.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
  for (std::size_t i = 0; i < rows.size(); ++i) out += (i ? ",\n  " : "\n  ") + rows[i].second;
  out += rows.empty() ? "]}" : "\n]}";
  return out;
}

std::string binary_size(std::uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  static constexpr const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes) / 1024;
  std::size_t u = 0;
  // 1023.96 KiB would print as "1024.0 KiB": move up a unit before rounding does.
  while (v >= 1023.95 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string grouped(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

}  // namespace pthio::cli
