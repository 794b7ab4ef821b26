// Walks over a loaded value: in-place replacement (numpy arrays, device mapping, materialize) and
// key paths (visit_tensors, key_text), with the expansion check that bounds both; Python's float
// repr.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <unordered_map>

#include "../value_internal.h"
#include "internal.h"

namespace pthio {

namespace detail {

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
        for (auto& e : const_cast<std::vector<dict_object::entry>&>(d.entries()))
          work.push_back(&e.second);
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

void check_expansion(const value& root, const char* what) {
  if (!root.is_container()) return;
  static constexpr std::uint64_t on_path = UINT64_MAX;
  static constexpr std::uint64_t saturated = UINT64_MAX / 2;
  auto add = [](std::uint64_t a, std::uint64_t b) {
    return std::min(saturated, a + std::min(saturated, b));
  };
  // Iterative post-order walk: each container's expanded size (itself and everything under it,
  // shared containers counted once per reference) is computed once, from its children's.
  std::unordered_map<const void*, std::uint64_t> expanded;
  struct frame {
    const value* v;
    std::size_t next;
    std::uint64_t size;
  };
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
      if (path.empty())
        total = size;
      else
        path.back().size = add(path.back().size, size);
      continue;
    }
    if (!c->is_container()) {
      ++distinct;
      f.size = add(f.size, 1);
      continue;
    }
    auto [it, fresh] = expanded.try_emplace(c->identity(), on_path);
    if (!fresh) {
      if (it->second == on_path)
        throw error(errc::invalid_argument, std::string(what) + ": the value contains itself");
      f.size = add(f.size, it->second);
      continue;
    }
    ++distinct;
    path.push_back({c, 0, 1});
  }
  const std::uint64_t limit = add(16 * distinct, 100'000);
  if (total > limit)
    throw error(errc::limit_exceeded,
                std::string(what) + ": shared containers written out in full make " +
                    (total >= saturated ? std::string("more than 2^62") : std::to_string(total)) +
                    " values of " + std::to_string(distinct) +
                    ", more than 16 times as many plus 100,000");
}

bool for_each_key_path_child(const value& v,
                             const std::function<void(const std::string&, const value&)>& fn) {
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

namespace detail {

namespace {

// Shortest round-trip digits of `sci` (to_chars scientific), laid out as Python's repr: fixed for
// -4 <= exponent < 16, else d.ddde+XX with at least two exponent digits (Python/pystrtod.c).
std::string python_layout(std::string sci);

}  // namespace

std::string python_float_repr(double d) {
  if (!std::isfinite(d)) return std::isnan(d) ? "nan" : d < 0 ? "-inf" : "inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  return python_layout(std::string(buf, r.ptr));
}

std::string python_float_repr(float f) {
  if (!std::isfinite(f)) return std::isnan(f) ? "nan" : f < 0 ? "-inf" : "inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
  return python_layout(std::string(buf, r.ptr));
}

namespace {

std::string python_layout(std::string sci) {
  bool neg = sci[0] == '-';
  if (neg) sci.erase(0, 1);
  auto epos = sci.find('e');
  std::string mant = sci.substr(0, epos);
  int exp = std::stoi(sci.substr(epos + 1));
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  std::string out = neg ? "-" : "";
  int n = static_cast<int>(digits.size());
  if (exp >= -5 + 1 && exp < 16) {
    if (exp < 0) {
      out += "0." + std::string(static_cast<std::size_t>(-exp - 1), '0') + digits;
    } else if (exp + 1 >= n) {
      out += digits + std::string(static_cast<std::size_t>(exp + 1 - n), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<std::size_t>(exp + 1)) + "." +
             digits.substr(static_cast<std::size_t>(exp + 1));
    }
  } else {
    out += digits.substr(0, 1);
    if (n > 1) out += "." + digits.substr(1);
    char e[16];
    std::snprintf(e, sizeof e, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    out += e;
  }
  return out;
}

}  // namespace

}  // namespace detail

std::string key_text(const value& key) {
  switch (key.type()) {
    case value::kind::string: return key.as_str();
    case value::kind::integer: return std::to_string(key.as_int());
    case value::kind::big_integer: return key.as_big_int().to_string();
    case value::kind::none: return "None";
    case value::kind::boolean: return key.as_bool() ? "True" : "False";
    case value::kind::floating: return detail::python_float_repr(key.as_float());  // str(key)
    case value::kind::tuple: {
      std::string s = "(";
      for (std::size_t i = 0; i < key.items().size(); ++i)
        s += (i ? ", " : "") + key_text(key.items()[i]);
      return s + (key.items().size() == 1 ? ",)" : ")");
    }
    default: return std::string(key.type_name());
  }
}

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

void visit_tensors(const value& root,
                   const std::function<void(const std::string&, const value&)>& fn) {
  detail::check_expansion(root, "key paths");
  std::string path;
  visit(root, path, 0, fn);
}

}  // namespace pthio
