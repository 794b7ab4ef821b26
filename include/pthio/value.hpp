// pthio — value: the Python object model a checkpoint's pickle describes.
//
// A value is one of: None, bool, int (64-bit), big int (any size), float, str (UTF-8), bytes,
// list, tuple, dict (insertion ordered; an OrderedDict remembers its class and the attributes set
// on it, such as a state_dict's `_metadata`), tensor (a Parameter keeps a flag), storage (a torch
// storage saved on its own), a global reference ("collections.OrderedDict") and an opaque object
// (class, constructor args, state, items appended to it). Nothing in a value ever executes.
//
// Lists, dicts and objects are shared handles, as in Python: copying a value copies the handle,
// and pickle's memo hands out the same container twice. Tuples are immutable and shared too, as
// are the text of a str or bytes value and a tensor value's tensor: copying a value never copies
// them. Values produced by the unpickler are acyclic and nested at most load_options' depth limit.
//
// Lifetime: references returned by the as_*() accessors, items(), find() and dict_object::get()
// point into the container and stay valid while a handle to it lives and it is not modified
// (dict_object::set, erase and clear may move entries). A value is not synchronised: share one
// between threads only for reading.
//
// Memory: the containers, tuples and boxes one load (or unpickle call) builds share blocks of
// memory, freed when the last value from that load is gone, on whichever thread drops it. A value
// kept after its checkpoint keeps those blocks (the load's metadata, which max_memory bounded);
// a pthio::tensor copied out of a value does not: its storage is its own.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "pthio/export.hpp"
#include "pthio/tensor.hpp"

namespace pthio {

class value;
namespace detail {
struct value_access;
}

// An integer outside int64, as little-endian two's-complement bytes (pickle's LONG1 layout).
struct PTHIO_API big_int {
  std::vector<std::uint8_t> le_bytes;
  std::string to_string() const;                       // decimal
  static big_int from_decimal(std::string_view text);  // "-123..."; throws invalid_argument
  bool negative() const noexcept { return !le_bytes.empty() && (le_bytes.back() & 0x80); }
  friend bool operator==(const big_int&, const big_int&) = default;
};

struct global_ref {
  std::string module;
  std::string name;
  std::string qualified() const { return module + "." + name; }
  friend bool operator==(const global_ref&, const global_ref&) = default;
};

// A torch storage as a value (the result of a persistent id, or a storage saved on its own).
struct storage_value {
  pthio::storage data;
  pthio::dtype dtype = pthio::dtype::uint8;  // element type of a typed storage; uint8 untyped
  std::uint64_t numel = 0;                   // elements of dtype (bytes when untyped)
  std::string key;                           // the record name under data/
  device location;                           // the location tag saved with it
};

struct list_object {
  std::vector<value> items;
};

class dict_object;
struct opaque_object;

using list_ptr = std::shared_ptr<list_object>;
using dict_ptr = std::shared_ptr<dict_object>;
using object_ptr = std::shared_ptr<opaque_object>;
using storage_ptr = std::shared_ptr<const storage_value>;

class PTHIO_API value {
 public:
  enum class kind : std::uint8_t {
    none,
    boolean,
    integer,
    big_integer,
    floating,
    string,
    bytes,
    list,
    tuple,
    dict,
    tensor,
    storage,
    global,
    object,
  };

  value() = default;
  value(std::nullptr_t) {}
  value(bool b) : v_(b) {}
  template <class I>
  requires(std::is_integral_v<I> && !std::is_same_v<I, bool>) value(I i)
      : v_(static_cast<std::int64_t>(i)) {}
  value(double d) : v_(d) {}
  value(std::string s) : v_(str_box{box(std::move(s))}) {}
  value(std::string_view s) : v_(str_box{box(std::string(s))}) {}
  value(const char* s) : v_(str_box{box(std::string(s))}) {}
  value(pthio::tensor t, bool parameter = false) : v_(tensor_box{box(std::move(t), parameter)}) {}
  value(big_int b);  // normalised: fits int64 -> integer

  static value make_bytes(std::string data);
  static value make_list(std::vector<value> items = {});
  static value make_tuple(std::vector<value> items = {});
  static value make_tuple(std::span<const value> items);  // copies them
  static value make_dict();
  static value make_ordered_dict();
  static value make_global(std::string module, std::string name);
  static value make_object(global_ref type, value args = {});
  static value make_storage(storage_value s);
  static value from(list_ptr p) {
    value v;
    v.v_ = std::move(p);
    return v;
  }
  static value from(dict_ptr p) {
    value v;
    v.v_ = std::move(p);
    return v;
  }
  static value from(object_ptr p) {
    value v;
    v.v_ = std::move(p);
    return v;
  }

  kind type() const noexcept { return static_cast<kind>(v_.index()); }
  std::string_view type_name() const noexcept;  // "None", "int", "dict", ...
  bool is_none() const noexcept { return type() == kind::none; }
  bool is_bool() const noexcept { return type() == kind::boolean; }
  bool is_int() const noexcept { return type() == kind::integer; }
  bool is_float() const noexcept { return type() == kind::floating; }
  bool is_str() const noexcept { return type() == kind::string; }
  bool is_list() const noexcept { return type() == kind::list; }
  bool is_tuple() const noexcept { return type() == kind::tuple; }
  bool is_dict() const noexcept { return type() == kind::dict; }
  bool is_tensor() const noexcept { return type() == kind::tensor; }
  bool is_object() const noexcept { return type() == kind::object; }
  bool is_global() const noexcept { return type() == kind::global; }
  bool is_big_int() const noexcept { return type() == kind::big_integer; }
  bool is_bytes() const noexcept { return type() == kind::bytes; }
  bool is_storage() const noexcept { return type() == kind::storage; }
  // A list, tuple, dict or object: a value that holds other values.
  bool is_container() const noexcept {
    const kind k = type();
    return k == kind::list || k == kind::tuple || k == kind::dict || k == kind::object;
  }

  // Typed access; throws pthio::error(invalid_argument) naming both types on a mismatch.
  bool as_bool() const;
  std::int64_t as_int() const;
  const big_int& as_big_int() const;
  double as_float() const;  // an int converts
  const std::string& as_str() const;
  const std::string& as_bytes() const;
  list_object& as_list() const;
  std::span<const value> as_tuple() const;
  dict_object& as_dict() const;
  const pthio::tensor& as_tensor() const;
  bool is_parameter() const noexcept;
  const storage_value& as_storage() const;
  const global_ref& as_global() const;
  opaque_object& as_object() const;
  // The items of a list or tuple (a span: valid while the container lives and, for a list, is
  // not resized).
  std::span<const value> items() const;
  // The i-th item of a list or tuple; throws pthio::error(invalid_argument) past the end.
  const value& at(std::size_t i) const;

  // Dict lookup by str key; nullptr when absent or not a dict.
  const value* find(std::string_view key) const;

  // Deep equality (tensors: dtype, shape and elements; floats bitwise-equal or both NaN).
  friend PTHIO_API bool operator==(const value& a, const value& b);

  // Identity of a shared container (list, tuple, dict, object) for memo and cycle checks; null
  // otherwise.
  const void* identity() const noexcept;

 private:
  // Every alternative is at most 16 bytes, so a value is 24: strings, bytes, tensors and globals
  // are boxed and shared by copies of the value (the unpickler's memo and stack) rather than
  // copied. Strings and bytes never change once made.
  struct str_box {
    std::shared_ptr<const std::string> s;
  };
  struct bytes_box {
    std::shared_ptr<const std::string> s;
  };
  struct tensor_cell {
    pthio::tensor t;
    bool parameter = false;
  };
  struct tensor_box {
    std::shared_ptr<const tensor_cell> t;
  };
  using global_box = std::shared_ptr<const global_ref>;
  // A tuple's items live in one block with its control block, behind a slot holding their count
  // (an integer value); `items` points at the first item. A tuple never changes size.
  struct tuple_box {
    std::shared_ptr<const value> items;
  };
  friend struct detail::value_access;
  static std::shared_ptr<const std::string> box(std::string s);
  static std::shared_ptr<const tensor_cell> box(pthio::tensor t, bool parameter);
  // A moved-from box holds nothing: an empty tuple, an empty text.
  static std::span<const value> tuple_span(const tuple_box& b) noexcept {
    const value* items = b.items.get();
    if (!items) return {};
    return {items, static_cast<std::size_t>(*std::get_if<std::int64_t>(&items[-1].v_))};
  }
  std::variant<std::monostate, bool, std::int64_t, std::shared_ptr<const big_int>, double, str_box,
               bytes_box, list_ptr, tuple_box, dict_ptr, tensor_box, storage_ptr, global_box,
               object_ptr>
      v_;
};

// A dict in insertion order with a hash index for str, int, bool, None, bytes, float and tuple
// keys.
class PTHIO_API dict_object {
 public:
  using entry = std::pair<value, value>;

  // "" for a plain dict, "collections.OrderedDict", or another dict subclass's qualified name.
  std::string class_name;
  // Attributes set on the object by BUILD (a state_dict's `_metadata`), in order.
  std::vector<std::pair<std::string, value>> attrs;

  const std::vector<entry>& entries() const noexcept { return entries_; }
  std::size_t size() const noexcept { return entries_.size(); }
  // Python's d[k] = v: replaces the value of an equal key, else appends. Keys of the kinds listed
  // above compare by value; other keys (list, dict, object, tensor) by identity.
  void set(value key, value val);
  const value* get(const value& key) const;
  const value* get(std::string_view key) const { return get(value(key)); }
  const value* get(const std::string& key) const { return get(std::string_view(key)); }
  const value* get(const char* key) const { return get(std::string_view(key)); }
  bool erase(const value& key);
  void clear();
  const value* attr(std::string_view name) const;

 private:
  std::vector<entry> entries_;
  std::vector<std::pair<std::size_t, std::size_t>> index_;  // open addressing: (hash, entry+1)
  void rebuild_index();
  std::size_t slot_of(const value& key, std::size_t hash) const;
};

// An instance of a class pthio does not model: kept inert.
struct opaque_object {
  global_ref type;
  value args;   // the tuple given to REDUCE / NEWOBJ (None when built otherwise)
  value state;  // BUILD's argument (None when none)
  bool has_state = false;
  // Made as type.__new__(type, *args) (NEWOBJ, NEWOBJ_EX, copyreg.__newobj__, or
  // copyreg._reconstructor on object: how pickle protocol 2 saves instances, an nn.Module among
  // them) rather than by calling type(*args) (REDUCE); pthio::save writes it back the same way.
  bool created_by_new = false;
  std::vector<value> list_items;                    // APPEND/APPENDS on it
  std::vector<std::pair<value, value>> dict_items;  // SETITEM/SETITEMS on it
};
using object_object [[deprecated("renamed pthio::opaque_object")]] = opaque_object;

// The hash pthio's dict uses (Python-compatible equality: 1 == 1.0 == True).
PTHIO_API std::size_t hash_value(const value& v);

// Destroys `root` (which becomes None) without recursion, however deep it nests: every container
// reachable from it that no other value holds is emptied from a work list. A container another
// value still holds is left whole (only root's reference to it goes).
PTHIO_API void flatten_destroy(value& root);

}  // namespace pthio
