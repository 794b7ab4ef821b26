#include "pthio/value.hpp"

#include "big_int.h"
#include "value_internal.h"
#include "value_pool.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace pthio {

// ---- big_int ------------------------------------------------------------------------------------

std::string big_int::to_string() const {
  if (le_bytes.empty()) return "0";
  // Magnitude as little-endian bytes (two's complement negated when negative).
  std::vector<std::uint8_t> mag = le_bytes;
  bool neg = negative();
  if (neg) detail::negate_twos_complement(mag);
  // Repeated division by 10^9 over base-256 digits, most significant first.
  std::vector<std::uint8_t> be(mag.rbegin(), mag.rend());
  std::string digits;
  while (true) {
    std::size_t first = 0;
    while (first < be.size() && be[first] == 0) ++first;
    if (first == be.size()) break;
    std::uint64_t rem = 0;
    for (std::size_t i = first; i < be.size(); ++i) {
      std::uint64_t cur = (rem << 8) | be[i];
      be[i] = static_cast<std::uint8_t>(cur / 1000000000u);
      rem = cur % 1000000000u;
    }
    for (int k = 0; k < 9; ++k) {
      digits.push_back(static_cast<char>('0' + rem % 10));
      rem /= 10;
    }
  }
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  if (digits.empty()) digits = "0";
  if (neg) digits.push_back('-');
  return std::string(digits.rbegin(), digits.rend());
}

big_int big_int::from_decimal(std::string_view text) {
  bool neg = false;
  if (!text.empty() && (text[0] == '-' || text[0] == '+')) {
    neg = text[0] == '-';
    text.remove_prefix(1);
  }
  if (text.empty()) throw error(errc::invalid_argument, "empty integer text");
  std::vector<std::uint8_t> mag;  // little-endian magnitude
  for (char c : text) {
    if (c < '0' || c > '9') throw error(errc::invalid_argument, "bad digit in integer text");
    unsigned carry = static_cast<unsigned>(c - '0');
    for (auto& b : mag) {
      unsigned v = b * 10u + carry;
      b = static_cast<std::uint8_t>(v);
      carry = v >> 8;
    }
    while (carry) {
      mag.push_back(static_cast<std::uint8_t>(carry));
      carry >>= 8;
    }
  }
  return big_int{detail::twos_complement_from_magnitude(std::move(mag), neg)};
}

// ---- value --------------------------------------------------------------------------------------

static_assert(sizeof(void*) != 8 || sizeof(value) == 24,
              "a value is a 16-byte alternative and its index");

value::value(big_int b) {
  if (b.le_bytes.size() <= 8) {
    v_ = detail::int64_from_twos_complement(b.le_bytes);
  } else {
    v_ = detail::make_pooled<const big_int>(std::move(b));
  }
}

std::shared_ptr<const value::tensor_cell> value::box(tensor t, bool parameter) {
  return detail::make_pooled<const tensor_cell>(tensor_cell{std::move(t), parameter});
}
std::shared_ptr<const std::string> value::box(std::string s) {
  return detail::make_pooled<const std::string>(std::move(s));
}

value value::make_bytes(std::string data) {
  value v;
  v.v_ = bytes_box{box(std::move(data))};
  return v;
}
value value::make_list(std::vector<value> items) {
  auto l = detail::make_pooled<list_object>();
  l->items = std::move(items);
  return from(std::move(l));
}
value value::make_tuple(std::span<const value> items) {
  return detail::value_access::tuple_of(items.size(),
                                        [&](std::size_t i) -> const value& { return items[i]; });
}
value value::make_tuple(std::vector<value> items) {
  return detail::value_access::tuple_moving(items.data(), items.size());
}
value value::make_dict() { return from(detail::make_pooled<dict_object>()); }
value value::make_ordered_dict() {
  auto d = detail::make_pooled<dict_object>();
  d->class_name = "collections.OrderedDict";
  return from(std::move(d));
}
value value::make_global(std::string module, std::string name) {
  value v;
  v.v_ = detail::make_pooled<const global_ref>(global_ref{std::move(module), std::move(name)});
  return v;
}
value value::make_object(global_ref type, value args) {
  auto o = detail::make_pooled<opaque_object>();
  o->type = std::move(type);
  o->args = std::move(args);
  return from(std::move(o));
}
value value::make_storage(storage_value s) {
  value v;
  v.v_ = detail::make_pooled<const storage_value>(std::move(s));
  return v;
}

std::string_view value::type_name() const noexcept {
  switch (type()) {
    case kind::none: return "None";
    case kind::boolean: return "bool";
    case kind::integer:
    case kind::big_integer: return "int";
    case kind::floating: return "float";
    case kind::string: return "str";
    case kind::bytes: return "bytes";
    case kind::list: return "list";
    case kind::tuple: return "tuple";
    case kind::dict: return "dict";
    case kind::tensor: return "Tensor";
    case kind::storage: return "Storage";
    case kind::global: return "global";
    case kind::object: return "object";
  }
  return "?";
}

namespace {
const std::string& empty_text() {
  static const std::string empty;
  return empty;
}
[[noreturn]] void wrong(const value& v, std::string_view want) {
  throw error(errc::invalid_argument,
              "value is " + std::string(v.type_name()) + ", not " + std::string(want));
}
}  // namespace

bool value::as_bool() const {
  if (auto p = std::get_if<bool>(&v_)) return *p;
  wrong(*this, "bool");
}
std::int64_t value::as_int() const {
  if (auto p = std::get_if<std::int64_t>(&v_)) return *p;
  if (auto p = std::get_if<bool>(&v_)) return *p ? 1 : 0;
  wrong(*this, "int");
}
const big_int& value::as_big_int() const {
  if (auto p = std::get_if<std::shared_ptr<const big_int>>(&v_)) return **p;
  wrong(*this, "big int");
}
double value::as_float() const {
  if (auto p = std::get_if<double>(&v_)) return *p;
  if (auto p = std::get_if<std::int64_t>(&v_)) return static_cast<double>(*p);
  wrong(*this, "float");
}
const std::string& value::as_str() const {
  if (auto p = std::get_if<str_box>(&v_)) return p->s ? *p->s : empty_text();
  wrong(*this, "str");
}
const std::string& value::as_bytes() const {
  if (auto p = std::get_if<bytes_box>(&v_)) return p->s ? *p->s : empty_text();
  wrong(*this, "bytes");
}
list_object& value::as_list() const {
  if (auto p = std::get_if<list_ptr>(&v_)) return **p;
  wrong(*this, "list");
}
std::span<const value> value::as_tuple() const {
  if (auto p = std::get_if<tuple_box>(&v_)) return tuple_span(*p);
  wrong(*this, "tuple");
}
dict_object& value::as_dict() const {
  if (auto p = std::get_if<dict_ptr>(&v_)) return **p;
  wrong(*this, "dict");
}
const pthio::tensor& value::as_tensor() const {
  if (auto p = std::get_if<tensor_box>(&v_); p && p->t)
    return p->t->t;  // (a moved-from one is refused)
  wrong(*this, "Tensor");
}
bool value::is_parameter() const noexcept {
  auto p = std::get_if<tensor_box>(&v_);
  return p && p->t && p->t->parameter;
}
const storage_value& value::as_storage() const {
  if (auto p = std::get_if<storage_ptr>(&v_)) return **p;
  wrong(*this, "Storage");
}
const global_ref& value::as_global() const {
  if (auto p = std::get_if<global_box>(&v_)) return **p;
  wrong(*this, "global");
}
opaque_object& value::as_object() const {
  if (auto p = std::get_if<object_ptr>(&v_)) return **p;
  wrong(*this, "object");
}
std::span<const value> value::items() const {
  if (auto p = std::get_if<list_ptr>(&v_)) return (*p)->items;
  if (auto p = std::get_if<tuple_box>(&v_)) return tuple_span(*p);
  wrong(*this, "list or tuple");
}

const value& value::at(std::size_t i) const {
  const auto all = items();
  if (i >= all.size())
    throw error(errc::invalid_argument, "index " + std::to_string(i) + " is past the end of a " +
                                            std::string(type_name()) + " of " +
                                            std::to_string(all.size()) + " items");
  return all[i];
}

const value* value::find(std::string_view key) const {
  auto p = std::get_if<dict_ptr>(&v_);
  return p ? (*p)->get(key) : nullptr;
}

const void* value::identity() const noexcept {
  switch (type()) {
    case kind::list: return std::get<list_ptr>(v_).get();
    case kind::tuple: return std::get<tuple_box>(v_).items.get();
    case kind::dict: return std::get<dict_ptr>(v_).get();
    case kind::object: return std::get<object_ptr>(v_).get();
    case kind::storage: return std::get<storage_ptr>(v_).get();
    default: return nullptr;
  }
}

namespace {

bool float_equal(double a, double b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return std::bit_cast<std::uint64_t>(a) == std::bit_cast<std::uint64_t>(b);
}

bool tensor_equal(const tensor& a, const tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  return a.bytes() == b.bytes();
}

// Python-style numeric view for key equality: bool and integral floats compare equal to ints.
bool numeric_key(const value& v, std::int64_t& out) {
  switch (v.type()) {
    case value::kind::boolean: out = v.as_bool(); return true;
    case value::kind::integer: out = v.as_int(); return true;
    case value::kind::floating: {
      double d = v.as_float();
      if (std::trunc(d) == d && std::fabs(d) < 9.2e18) {
        out = static_cast<std::int64_t>(d);
        return true;
      }
      return false;
    }
    default: return false;
  }
}

// A tensor as a dict key: Python hashes tensors by identity, so two tensors with equal elements
// are two keys. pthio keeps no tensor object identity; the view (storage, offset, shape, strides,
// dtype) stands for it, which survives a save and load where the elements' equality would merge
// distinct keys.
bool same_tensor_key(const value& a, const value& b) {
  const tensor& x = a.as_tensor();
  const tensor& y = b.as_tensor();
  return a.is_parameter() == b.is_parameter() && x.dtype() == y.dtype() &&
         x.get_storage().data() == y.get_storage().data() &&
         x.storage_offset() == y.storage_offset() && x.shape() == y.shape() &&
         x.strides() == y.strides() && x.dev() == y.dev();
}

// Keys compare as Python compares them in a dict: numbers by value, tensors by their view, tuples
// element by element, str, bytes and globals by value, and every other object by identity
// (hash_value hashes them by identity): an object's contents are never compared, so a key that
// holds a cyclic object (a set added to itself) cannot send the comparison round its cycle.
// Tuples cannot be cyclic, and the unpickler bounds a key tuple's size and depth.
bool key_equal(const value& a, const value& b) {
  std::int64_t x, y;
  if (numeric_key(a, x) && numeric_key(b, y)) return x == y;
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case value::kind::tensor: return same_tensor_key(a, b);
    case value::kind::tuple: {
      if (a.identity() == b.identity()) return true;
      const auto p = a.items();
      const auto q = b.items();
      if (p.size() != q.size()) return false;
      for (std::size_t i = 0; i < p.size(); ++i)
        if (!key_equal(p[i], q[i])) return false;
      return true;
    }
    case value::kind::list:
    case value::kind::dict:
    case value::kind::object:
    case value::kind::storage: return a.identity() == b.identity();
    default: return a == b;
  }
}

}  // namespace

bool operator==(const value& a, const value& b) {
  if (a.type() != b.type()) return false;
  using k = value::kind;
  switch (a.type()) {
    case k::none: return true;
    case k::boolean: return a.as_bool() == b.as_bool();
    case k::integer: return a.as_int() == b.as_int();
    case k::big_integer: return a.as_big_int() == b.as_big_int();
    case k::floating: return float_equal(a.as_float(), b.as_float());
    case k::string: return a.as_str() == b.as_str();
    case k::bytes: return a.as_bytes() == b.as_bytes();
    case k::list:
    case k::tuple: {
      if (a.identity() == b.identity()) return true;
      const auto x = a.items();
      const auto y = b.items();
      if (x.size() != y.size()) return false;
      for (std::size_t i = 0; i < x.size(); ++i)
        if (!(x[i] == y[i])) return false;
      return true;
    }
    case k::dict: {
      const auto& x = a.as_dict();
      const auto& y = b.as_dict();
      if (&x == &y) return true;
      if (x.class_name != y.class_name || x.size() != y.size() || x.attrs.size() != y.attrs.size())
        return false;
      for (std::size_t i = 0; i < x.size(); ++i)
        if (!(x.entries()[i].first == y.entries()[i].first) ||
            !(x.entries()[i].second == y.entries()[i].second))
          return false;
      for (std::size_t i = 0; i < x.attrs.size(); ++i)
        if (x.attrs[i].first != y.attrs[i].first || !(x.attrs[i].second == y.attrs[i].second))
          return false;
      return true;
    }
    case k::tensor:
      return a.is_parameter() == b.is_parameter() &&
             a.as_tensor().requires_grad() == b.as_tensor().requires_grad() &&
             tensor_equal(a.as_tensor(), b.as_tensor());
    case k::storage: {
      const auto& x = a.as_storage();
      const auto& y = b.as_storage();
      if (x.dtype != y.dtype || x.data.nbytes() != y.data.nbytes()) return false;
      return x.data.nbytes() == 0 ||
             std::memcmp(x.data.data(), y.data.data(), x.data.nbytes()) == 0;
    }
    case k::global: return a.as_global() == b.as_global();
    case k::object: {
      const auto& x = a.as_object();
      const auto& y = b.as_object();
      if (&x == &y) return true;
      if (!(x.type == y.type) || !(x.args == y.args) || x.has_state != y.has_state ||
          x.created_by_new != y.created_by_new || !(x.state == y.state))
        return false;
      if (x.list_items.size() != y.list_items.size() || x.dict_items.size() != y.dict_items.size())
        return false;
      for (std::size_t i = 0; i < x.list_items.size(); ++i)
        if (!(x.list_items[i] == y.list_items[i])) return false;
      for (std::size_t i = 0; i < x.dict_items.size(); ++i)
        if (!(x.dict_items[i].first == y.dict_items[i].first) ||
            !(x.dict_items[i].second == y.dict_items[i].second))
          return false;
      return true;
    }
  }
  return false;
}

std::size_t hash_value(const value& v) {
  constexpr std::size_t mix = 0x9e3779b97f4a7c15ull;
  std::int64_t n;
  if (numeric_key(v, n)) return std::hash<std::int64_t>{}(n) ^ mix;
  switch (v.type()) {
    case value::kind::none: return 0x51ed270b;
    case value::kind::floating: return std::hash<double>{}(v.as_float());
    case value::kind::string: return std::hash<std::string>{}(v.as_str());
    case value::kind::bytes: return std::hash<std::string>{}(v.as_bytes()) * 31;
    case value::kind::big_integer: return std::hash<std::string>{}(v.as_big_int().to_string());
    case value::kind::tuple: {
      // Hash only the first level of elements' kinds and scalars: deep tuples rarely key dicts.
      std::size_t h = 0x345678;
      for (const auto& e : v.items()) {
        std::size_t eh = e.is_tuple() ? e.items().size() : (e.identity() ? 7 : hash_value(e));
        h = (h ^ eh) * 1000003;
      }
      return h;
    }
    case value::kind::global: return std::hash<std::string>{}(v.as_global().qualified());
    case value::kind::tensor:  // by its view (same_tensor_key)
      return (reinterpret_cast<std::size_t>(v.as_tensor().get_storage().data()) +
              static_cast<std::size_t>(v.as_tensor().storage_offset())) *
             mix;
    default: return reinterpret_cast<std::size_t>(v.identity()) * mix;  // identity-hashed
  }
}

// ---- dict_object --------------------------------------------------------------------------------

std::size_t dict_object::slot_of(const value& key, std::size_t hash) const {
  const std::size_t mask = index_.size() - 1;
  std::size_t i = hash & mask;
  while (index_[i].second != 0) {
    if (index_[i].first == hash && key_equal(entries_[index_[i].second - 1].first, key)) return i;
    i = (i + 1) & mask;
  }
  return i;
}

void dict_object::rebuild_index() {
  std::size_t cap = 8;
  while (cap < entries_.size() * 2 + 2) cap *= 2;
  // Growing (every entry is in the old index, under its hash): the hashes are reused, not
  // computed again from the keys; after an erase the entries moved, so they are hashed afresh.
  std::vector<std::pair<std::size_t, std::size_t>> old;
  std::size_t indexed = 0;
  for (const auto& slot : index_) indexed += slot.second != 0;
  if (indexed == entries_.size()) old.swap(index_);
  index_.assign(cap, {0, 0});
  const std::size_t mask = cap - 1;
  auto place = [&](std::size_t h, std::size_t entry1) {
    std::size_t i = h & mask;
    while (index_[i].second != 0) i = (i + 1) & mask;  // keys are distinct: the first free slot
    index_[i] = {h, entry1};
  };
  if (!old.empty() || entries_.empty()) {
    for (const auto& slot : old)
      if (slot.second != 0) place(slot.first, slot.second);
  } else {
    for (std::size_t e = 0; e < entries_.size(); ++e) place(hash_value(entries_[e].first), e + 1);
  }
}

void dict_object::set(value key, value val) {
  if (index_.size() < entries_.size() * 2 + 2) rebuild_index();
  std::size_t h = hash_value(key);
  std::size_t i = slot_of(key, h);
  if (index_[i].second != 0) {
    entries_[index_[i].second - 1].second = std::move(val);
    return;
  }
  entries_.emplace_back(std::move(key), std::move(val));
  index_[i] = {h, entries_.size()};
}

const value* dict_object::get(const value& key) const {
  if (entries_.empty()) return nullptr;
  std::size_t i = slot_of(key, hash_value(key));
  return index_[i].second ? &entries_[index_[i].second - 1].second : nullptr;
}

bool dict_object::erase(const value& key) {
  if (entries_.empty()) return false;
  std::size_t i = slot_of(key, hash_value(key));
  if (!index_[i].second) return false;
  entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(index_[i].second - 1));
  rebuild_index();
  return true;
}

void dict_object::clear() {
  entries_.clear();
  index_.clear();
  attrs.clear();
}

const value* dict_object::attr(std::string_view name) const {
  for (const auto& [k, v] : attrs)
    if (k == name) return &v;
  return nullptr;
}

// ---- walking -----------------------------------------------------------------------------------

namespace detail {

template <class F>
value value_access::tuple_of(std::size_t n, F&& item) {
  // The count, then at least one item slot, so that every tuple, the empty one too, has an
  // identity of its own.
  std::shared_ptr<value[]> block = make_pooled<value[]>(std::max<std::size_t>(n, 1) + 1);
  block[0].v_ = static_cast<std::int64_t>(n);
  for (std::size_t i = 0; i < n; ++i) block[i + 1] = item(i);
  const value* first = block.get() + 1;
  value v;
  v.v_ = value::tuple_box{std::shared_ptr<const value>(std::move(block), first)};
  return v;
}

value value_access::tuple_moving(value* items, std::size_t n) {
  return tuple_of(n, [items](std::size_t i) -> value&& { return std::move(items[i]); });
}

std::span<value> value_access::mutable_items(const value& tuple) noexcept {
  auto* p = std::get_if<value::tuple_box>(&tuple.v_);
  if (!p) return {};
  const auto items = value::tuple_span(*p);
  return {const_cast<value*>(items.data()), items.size()};
}

bool value_access::held_elsewhere(const value& v) noexcept {
  if (const auto* t = std::get_if<value::tuple_box>(&v.v_)) return t->items.use_count() > 1;
  if (const auto* l = std::get_if<list_ptr>(&v.v_)) return l->use_count() > 1;
  if (const auto* d = std::get_if<dict_ptr>(&v.v_)) return d->use_count() > 1;
  if (const auto* o = std::get_if<object_ptr>(&v.v_)) return o->use_count() > 1;
  return false;
}

const value* child_at(const value& v, std::size_t i) {
  switch (v.type()) {
    case value::kind::list:
    case value::kind::tuple: {
      const auto items = v.items();
      return i < items.size() ? &items[i] : nullptr;
    }
    case value::kind::dict: {
      const auto& d = v.as_dict();
      const auto& e = d.entries();
      if (i < 2 * e.size()) return i % 2 ? &e[i / 2].second : &e[i / 2].first;
      i -= 2 * e.size();
      return i < d.attrs.size() ? &d.attrs[i].second : nullptr;
    }
    case value::kind::object: {
      const auto& o = v.as_object();
      if (i == 0) return &o.args;
      if (i == 1) return &o.state;
      i -= 2;
      if (i < o.list_items.size()) return &o.list_items[i];
      i -= o.list_items.size();
      if (i < 2 * o.dict_items.size())
        return i % 2 ? &o.dict_items[i / 2].second : &o.dict_items[i / 2].first;
      return nullptr;
    }
    default: return nullptr;
  }
}

}  // namespace detail

// ---- teardown -----------------------------------------------------------------------------------

void flatten_destroy(value& root) {
  // Move every container's children onto a work list so no destructor sees nested containers.
  // A container another value still holds is that value's: only this reference to it goes.
  std::vector<value> work;
  work.push_back(std::move(root));
  root = value();
  while (!work.empty()) {
    value v = std::move(work.back());
    work.pop_back();
    if (detail::value_access::held_elsewhere(v)) continue;
    switch (v.type()) {
      case value::kind::list: {
        auto& items = v.as_list().items;
        for (auto& e : items) work.push_back(std::move(e));
        items.clear();
        break;
      }
      case value::kind::tuple: {
        // Tuples are immutable, but this is the only reference left: taking it apart is safe.
        for (auto& e : detail::value_access::mutable_items(v))
          work.push_back(std::exchange(e, value()));
        break;
      }
      case value::kind::dict: {
        auto& d = v.as_dict();
        for (const auto& [k, val] : d.entries()) {
          work.push_back(k);
          work.push_back(val);
        }
        for (auto& [k, val] : d.attrs) work.push_back(std::move(val));
        d.clear();
        break;
      }
      case value::kind::object: {
        auto& o = v.as_object();
        work.push_back(std::move(o.args));
        work.push_back(std::move(o.state));
        for (auto& e : o.list_items) work.push_back(std::move(e));
        for (auto& [k, val] : o.dict_items) {
          work.push_back(std::move(k));
          work.push_back(std::move(val));
        }
        o.args = value();
        o.state = value();
        o.list_items.clear();
        o.dict_items.clear();
        break;
      }
      default: break;
    }
  }
}

}  // namespace pthio
