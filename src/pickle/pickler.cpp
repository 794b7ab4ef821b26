// pthio — pickle writer: protocol 2, byte for byte what CPython's C pickler (Modules/_pickle.c,
// Pickler(protocol=2), fix_imports on) writes for the same object graph, so that a data.pkl
// pthio writes matches torch.save's.
//
// CPython facts this follows (checked with python3's pickle.dumps(obj, protocol=2)):
// - every memoized object is followed by BINPUT n (LONG_BINPUT from 256), n counting from 0;
//   a repeat is BINGET n. Memoized: globals, str, bytes, tuples but (), lists, dicts, objects.
// - ints: BININT1 0..255, BININT2 256..65535, BININT for the rest of int32, else LONG1/LONG4
//   in minimal little-endian two's complement.
// - str: BINUNICODE (protocol 2 has no SHORT_BINUNICODE).
// - bytes: _codecs.encode(latin-1 str, 'latin1'); b'' is __builtin__.bytes(). CPython caches
//   b'' and one-byte bytes (and one-character str), so equal ones share one memo entry.
// - list: EMPTY_LIST, BINPUT, then one item + APPEND, or MARK ... APPENDS per 1000 items.
// - dict: EMPTY_DICT, BINPUT, then one pair + SETITEM, or MARK ... SETITEMS per 1000 pairs; a
//   full batch is always followed by another MARK ... SETITEMS, empty if nothing is left
//   (batch_dict_exact).
// - reduced objects (OrderedDict, set, objects): GLOBAL, args, REDUCE, BINPUT, then items in
//   batches where a batch of one is APPEND / SETITEM (batch_list / batch_dict), then the
//   state and BUILD. OrderedDict's state is its __dict__ ({'_metadata': ...}) when not empty.
// - a tuple that turns out to be memoized while its items were written (it contains itself
//   through a list) is popped (POP per item, or POP_MARK) and fetched with BINGET.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../big_int.h"
#include "compat_names.h"
#include "opcodes.h"
#include "pthio/error.hpp"
#include "pthio/pickle.hpp"

namespace pthio {
namespace {

using detail::op;
using detail::opcode;

// pickle's BATCHSIZE.
constexpr std::size_t batch_size = 1000;
// Values nest at most this deep when written (the writer recurses on the value tree).
constexpr int max_save_depth = 10000;
thread_local int save_depth = 0;

void put_le(std::vector<std::byte>& out, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
}

void put_chars(std::vector<std::byte>& out, std::string_view s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  out.insert(out.end(), p, p + s.size());
}

// A key for one-byte and empty bytes in the globals memo ("module\nname" keys never hold two
// newlines), which CPython shares as singletons.
std::string bytes_singleton_key(const std::string& b) { return "\n\n" + b; }

// Writes items [0, n) in batches the way _pickle.c's batch_list / batch_dict do for an
// iterator: a batch of one item is `one`, longer ones MARK ... `many`.
template <class Emit, class SaveItem>
void batch_generic(std::size_t n, Emit emit, SaveItem save_item, opcode one, opcode many) {
  std::size_t i = 0;
  while (i < n) {
    if (n - i == 1) {
      save_item(i++);
      emit(op(one));
      return;
    }
    emit(op(opcode::MARK));
    const std::size_t end = i + std::min(batch_size, n - i);
    while (i < end) save_item(i++);
    emit(op(many));
  }
}

// batch_list_exact: one item is APPEND, otherwise MARK ... APPENDS per 1000 items.
template <class Emit, class SaveItem>
void batch_list_exact(std::size_t n, Emit emit, SaveItem save_item) {
  if (n == 0) return;
  if (n == 1) {
    save_item(0);
    emit(op(opcode::APPEND));
    return;
  }
  std::size_t i = 0;
  while (i < n) {
    emit(op(opcode::MARK));
    const std::size_t end = i + std::min(batch_size, n - i);
    while (i < end) save_item(i++);
    emit(op(opcode::APPENDS));
  }
}

// batch_dict_exact: one pair is SETITEM; otherwise MARK ... SETITEMS per 1000 pairs, and a full
// batch is followed by another (possibly empty) one.
template <class Emit, class SaveItem>
void batch_dict_exact(std::size_t n, Emit emit, SaveItem save_item) {
  if (n == 0) return;
  if (n == 1) {
    save_item(0);
    emit(op(opcode::SETITEM));
    return;
  }
  std::size_t i = 0, in_batch = 0;
  do {
    emit(op(opcode::MARK));
    in_batch = 0;
    while (i < n) {
      save_item(i++);
      if (++in_batch == batch_size) break;
    }
    emit(op(opcode::SETITEMS));
  } while (in_batch == batch_size);
}

struct depth_guard {
  depth_guard() {
    if (++save_depth > max_save_depth) {
      --save_depth;
      throw error(errc::limit_exceeded, "pickle: values nest deeper than " +
                                            std::to_string(max_save_depth) + " when written");
    }
  }
  ~depth_guard() { --save_depth; }
  depth_guard(const depth_guard&) = delete;
  depth_guard& operator=(const depth_guard&) = delete;
};

}  // namespace

pickler::pickler(pickle_options options) : options_(std::move(options)) {}

std::vector<std::byte> pickler::dump(const value& root) {
  out_.clear();
  memo_.clear();
  str_memo_.clear();
  global_memo_.clear();
  alive_.clear();
  next_memo_ = 0;
  emit(op(opcode::PROTO));
  emit(2);
  save(root);
  emit(op(opcode::STOP));
  memo_.clear();
  alive_.clear();
  return std::exchange(out_, {});
}

void pickler::emit(std::uint8_t o) { out_.push_back(static_cast<std::byte>(o)); }

void pickler::write_raw(std::span<const std::byte> bytes) {
  out_.insert(out_.end(), bytes.begin(), bytes.end());
}

void pickler::emit_put() {
  // _pickle.c memo_put: BINPUT below 256, LONG_BINPUT (u32) above.
  if (next_memo_ < 256) {
    emit(op(opcode::BINPUT));
    emit(static_cast<std::uint8_t>(next_memo_));
  } else {
    emit(op(opcode::LONG_BINPUT));
    put_le(out_, next_memo_, 4);
  }
  ++next_memo_;
}

namespace {
void write_get(std::vector<std::byte>& out, std::uint32_t index) {
  if (index < 256) {
    out.push_back(static_cast<std::byte>(op(opcode::BINGET)));
    out.push_back(static_cast<std::byte>(index));
  } else {
    out.push_back(static_cast<std::byte>(op(opcode::LONG_BINGET)));
    put_le(out, index, 4);
  }
}
}  // namespace

void pickler::put_memo(const void* identity) {
  if (identity) memo_[identity] = next_memo_;
  emit_put();
}

bool pickler::get_memo(const void* identity) {
  if (!identity) return false;
  auto it = memo_.find(identity);
  if (it == memo_.end()) return false;
  write_get(out_, it->second);
  return true;
}

void pickler::save_global(std::string_view module, std::string_view name) {
  if (module.find('\n') != std::string_view::npos || name.find('\n') != std::string_view::npos)
    throw error(errc::invalid_argument, "pickle: a global's module or name contains a newline");
  std::string key;
  key.append(module).push_back('\n');
  key.append(name);
  if (auto it = global_memo_.find(key); it != global_memo_.end()) {
    write_get(out_, it->second);
    return;
  }
  auto [m, n] = detail::python2_name(module, name);
  emit(op(opcode::GLOBAL));
  put_chars(out_, m);
  emit('\n');
  put_chars(out_, n);
  emit('\n');
  global_memo_.emplace(std::move(key), next_memo_);
  emit_put();
}

void pickler::save_persistent_id(const value& pid) {
  save(pid);
  emit(op(opcode::BINPERSID));
}

void pickler::reduce() {
  emit(op(opcode::REDUCE));
  emit_put();
}

void pickler::save_empty_ordered_dict() {
  save_global("collections", "OrderedDict");
  emit(op(opcode::EMPTY_TUPLE));
  reduce();
}

void pickler::save(const value& v) {
  depth_guard guard;
  if (options_.save_hook && options_.save_hook(*this, v)) return;
  switch (v.type()) {
    case value::kind::none: emit(op(opcode::NONE)); break;
    case value::kind::boolean: emit(op(v.as_bool() ? opcode::NEWTRUE : opcode::NEWFALSE)); break;
    case value::kind::integer: save_int(v.as_int()); break;
    case value::kind::big_integer: save_big(v.as_big_int()); break;
    case value::kind::floating: save_float(v.as_float()); break;
    case value::kind::string: save_str(v.as_str()); break;
    case value::kind::bytes: save_bytes(v.as_bytes()); break;
    case value::kind::list:
    case value::kind::tuple:
    case value::kind::dict:
    case value::kind::object:
      if (get_memo(v.identity())) break;
      // CPython's memo holds a reference to every memoized object; so does alive_, so that a
      // temporary a save_hook builds cannot free an address the memo still names.
      alive_.push_back(v);
      if (v.is_list())
        save_list(v);
      else if (v.is_tuple())
        save_tuple(v);
      else if (v.is_dict())
        save_dict(v);
      else
        save_object(v);
      break;
    case value::kind::global: save_global(v.as_global().module, v.as_global().name); break;
    case value::kind::tensor:
    case value::kind::storage:
      throw error(errc::invalid_argument, "pickle: a " + std::string(v.type_name()) +
                                              " is written by the checkpoint layer's save_hook");
  }
}

void pickler::save_int(std::int64_t i) {
  if (i >= 0 && i <= 0xff) {
    emit(op(opcode::BININT1));
    emit(static_cast<std::uint8_t>(i));
  } else if (i >= 0 && i <= 0xffff) {
    emit(op(opcode::BININT2));
    put_le(out_, static_cast<std::uint64_t>(i), 2);
  } else if (i >= INT32_MIN && i <= INT32_MAX) {
    emit(op(opcode::BININT));
    put_le(out_, static_cast<std::uint32_t>(static_cast<std::int32_t>(i)), 4);
  } else {
    const std::vector<std::uint8_t> b = detail::twos_complement_of(i);
    emit(op(opcode::LONG1));
    emit(static_cast<std::uint8_t>(b.size()));
    for (auto c : b) emit(c);
  }
}

void pickler::save_big(const big_int& bi) {
  std::vector<std::uint8_t> b = bi.le_bytes;
  detail::trim_twos_complement(b);
  if (b.size() <= 8) {  // not normalised by whoever built it
    save_int(detail::int64_from_twos_complement(b));
    return;
  }
  if (b.size() > 0x7fffffff)
    throw error(errc::invalid_argument, "pickle: integer too large to write");
  if (b.size() < 256) {
    emit(op(opcode::LONG1));
    emit(static_cast<std::uint8_t>(b.size()));
  } else {
    emit(op(opcode::LONG4));
    put_le(out_, b.size(), 4);
  }
  for (auto c : b) emit(c);
}

void pickler::save_float(double d) {
  emit(op(opcode::BINFLOAT));  // pickletools: BINFLOAT is big-endian
  const auto bits = std::bit_cast<std::uint64_t>(d);
  for (int k = 7; k >= 0; --k) emit(static_cast<std::uint8_t>(bits >> (8 * k)));
}

void pickler::save_str(const std::string& s) {
  if (auto it = str_memo_.find(s); it != str_memo_.end()) {
    write_get(out_, it->second);
    return;
  }
  if (s.size() > 0xffffffffu)
    throw error(errc::invalid_argument, "pickle: protocol 2 cannot write a str of 4 GiB or more");
  emit(op(opcode::BINUNICODE));
  put_le(out_, s.size(), 4);
  put_chars(out_, s);
  str_memo_.emplace(s, next_memo_);
  emit_put();
}

void pickler::save_bytes(const std::string& b) {
  // _pickle.c save_bytes below protocol 3: save_reduce(codecs.encode, (latin-1 str, 'latin1')),
  // or bytes() for b''; the bytes object is memoized after the REDUCE.
  const bool singleton = b.size() <= 1;
  if (singleton) {
    if (auto it = global_memo_.find(bytes_singleton_key(b)); it != global_memo_.end()) {
      write_get(out_, it->second);
      return;
    }
  }
  if (b.empty()) {
    save_global("builtins", "bytes");
    emit(op(opcode::EMPTY_TUPLE));
  } else {
    if (b.size() > 0x7fffffff)
      throw error(errc::invalid_argument, "pickle: protocol 2 cannot write bytes of 2 GiB or more");
    save_global("_codecs", "encode");
    std::string latin1;
    latin1.reserve(b.size() * 2);
    for (char c : b) {
      auto u = static_cast<unsigned char>(c);
      if (u < 0x80) {
        latin1.push_back(c);
      } else {
        latin1.push_back(static_cast<char>(0xc0 | (u >> 6)));
        latin1.push_back(static_cast<char>(0x80 | (u & 0x3f)));
      }
    }
    if (b.size() == 1) {
      save_str(latin1);  // one-character str is a CPython singleton, memoized by content
    } else {
      // A fresh str object in CPython: written and memoized, never shared with an equal str.
      emit(op(opcode::BINUNICODE));
      put_le(out_, latin1.size(), 4);
      put_chars(out_, latin1);
      emit_put();
    }
    save_str("latin1");
    emit(op(opcode::TUPLE2));
    emit_put();
  }
  emit(op(opcode::REDUCE));
  if (singleton) global_memo_.emplace(bytes_singleton_key(b), next_memo_);
  emit_put();
}

void pickler::save_list(const value& v) {
  const auto& items = v.as_list().items;
  emit(op(opcode::EMPTY_LIST));
  put_memo(v.identity());
  batch_list_exact(
      items.size(), [this](std::uint8_t o) { emit(o); }, [&](std::size_t i) { save(items[i]); });
}

void pickler::save_tuple(const value& v) {
  const auto& items = v.as_tuple();
  const std::size_t n = items.size();
  if (n == 0) {
    emit(op(opcode::EMPTY_TUPLE));
    return;
  }
  const void* id = v.identity();
  if (n > 3) emit(op(opcode::MARK));
  for (const auto& item : items) save(item);
  // _pickle.c save_tuple: the tuple may have been memoized while its items were written.
  if (id && memo_.contains(id)) {
    if (n > 3) {
      emit(op(opcode::POP_MARK));
    } else {
      for (std::size_t k = 0; k < n; ++k) emit(op(opcode::POP));
    }
    get_memo(id);
    return;
  }
  static constexpr opcode small[] = {opcode::TUPLE1, opcode::TUPLE2, opcode::TUPLE3};
  emit(op(n > 3 ? opcode::TUPLE : small[n - 1]));
  put_memo(id);
}

void pickler::save_setitems(const std::vector<std::pair<value, value>>& items) {
  batch_generic(
      items.size(), [this](std::uint8_t o) { emit(o); },
      [&](std::size_t i) {
        save(items[i].first);
        save(items[i].second);
      },
      opcode::SETITEM, opcode::SETITEMS);
}

void pickler::save_dict(const value& v) {
  const dict_object& d = v.as_dict();
  auto emit_fn = [this](std::uint8_t o) { emit(o); };
  if (d.class_name.empty()) {
    emit(op(opcode::EMPTY_DICT));
    put_memo(v.identity());
    const auto& e = d.entries();
    batch_dict_exact(e.size(), emit_fn, [&](std::size_t i) {
      save(e[i].first);
      save(e[i].second);
    });
  } else {
    // OrderedDict.__reduce__: (OrderedDict, (), __dict__ or None, None, iter(items)); another
    // dict subclass: object.__reduce_ex__(2), i.e. copyreg.__newobj__ -> NEWOBJ.
    const bool ordered = d.class_name == "collections.OrderedDict";
    const auto dot = d.class_name.rfind('.');
    if (dot == std::string::npos)
      throw error(errc::invalid_argument,
                  "pickle: dict class '" + d.class_name + "' is not module.name");
    save_global(std::string_view(d.class_name).substr(0, dot),
                std::string_view(d.class_name).substr(dot + 1));
    emit(op(opcode::EMPTY_TUPLE));
    emit(op(ordered ? opcode::REDUCE : opcode::NEWOBJ));
    put_memo(v.identity());
    save_setitems(d.entries());
  }
  if (!d.attrs.empty()) {
    // The state is the instance __dict__: a plain dict of the attributes, then BUILD.
    emit(op(opcode::EMPTY_DICT));
    emit_put();
    batch_dict_exact(d.attrs.size(), emit_fn, [&](std::size_t i) {
      save_str(d.attrs[i].first);
      save(d.attrs[i].second);
    });
    emit(op(opcode::BUILD));
  }
}

void pickler::save_object(const value& v) {
  const opaque_object& o = v.as_object();
  auto emit_fn = [this](std::uint8_t c) { emit(c); };
  const bool no_args = o.args.is_none() || (o.args.is_tuple() && o.args.as_tuple().empty());
  const bool is_set =
      o.type == global_ref{"builtins", "set"} || o.type == global_ref{"builtins", "frozenset"};
  save_global(o.type.module, o.type.name);
  if (is_set && no_args && o.dict_items.empty()) {
    // set.__reduce__: (set, (list(self),), getattr(self, '__dict__', None)); the list is fresh.
    emit(op(opcode::EMPTY_LIST));
    emit_put();
    batch_list_exact(o.list_items.size(), emit_fn, [&](std::size_t i) { save(o.list_items[i]); });
    emit(op(opcode::TUPLE1));
    emit_put();
    emit(op(opcode::REDUCE));
    put_memo(v.identity());
  } else {
    if (o.args.is_none()) {
      emit(op(opcode::EMPTY_TUPLE));
    } else if (o.args.is_tuple()) {
      save(o.args);
    } else {
      throw error(errc::invalid_argument, "pickle: the arguments of a " + o.type.qualified() +
                                              " object are a " + std::string(o.args.type_name()) +
                                              ", not a tuple");
    }
    // cls.__new__(cls, *args) as NEWOBJ (pickle.save_reduce's copyreg.__newobj__ case), else a
    // call.
    emit(op(o.created_by_new ? opcode::NEWOBJ : opcode::REDUCE));
    // pickle.save_reduce: an object memoized while its arguments were written is fetched.
    if (memo_.contains(v.identity())) {
      emit(op(opcode::POP));
      get_memo(v.identity());
    } else {
      put_memo(v.identity());
    }
    batch_generic(
        o.list_items.size(), emit_fn, [&](std::size_t i) { save(o.list_items[i]); }, opcode::APPEND,
        opcode::APPENDS);
    save_setitems(o.dict_items);
  }
  if (o.has_state) {
    save(o.state);
    emit(op(opcode::BUILD));
  }
}

}  // namespace pthio
