// pthio — the pickle reader's calls and globals: the global table, the names a stream may use in
// weights-only mode, and what REDUCE, NEWOBJ(_EX), INST, OBJ and BUILD do. Nothing is ever
// imported or called: a global is a value, a call goes to a handler from the table or one of
// the few built-ins below (Lib/pickle.py and copyreg semantics), or becomes an inert object.
#include <algorithm>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compat_names.h"
#include "machine.h"

namespace pthio {

// ---------------------------------------------------------------------------------------------
// global_table

namespace {
void table_key(std::string& key, std::string_view module, std::string_view name) {
  key.assign(module);
  key.push_back('\n');
  key.append(name);
}
}  // namespace

void global_table::add(std::string module, std::string name, reduce_fn handler) {
  std::string key;
  table_key(key, module, name);
  entries_.insert_or_assign(std::move(key), std::move(handler));
}

const reduce_fn* global_table::find(std::string_view module, std::string_view name) const {
  thread_local std::string key;  // every REDUCE looks up its global: no allocation per call
  table_key(key, module, name);
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}

bool is_builtin_safe_global(std::string_view module, std::string_view name) {
  // torch/_weights_only_unpickler.py _get_allowed_globals(): the non-torch entries, plus the
  // inert builtins pthio's own writer and older torch versions emit (bytes, frozenset, slice).
  if (module == "collections") return name == "OrderedDict" || name == "Counter";
  if (module == "_codecs") return name == "encode";
  if (module == "builtins")
    return name == "set" || name == "frozenset" || name == "bytearray" || name == "bytes" ||
           name == "complex" || name == "slice";
  return false;
}

namespace detail {

global_ref pickle_machine::read_global_lines() {
  std::string module(arg_line());
  std::string name(arg_line());
  if (!valid_utf8(module, false) || !valid_utf8(name, false))
    fail(op_name() + ": module or name is not valid UTF-8");
  return python3_name(std::move(module), std::move(name));
}

// Reports a global the stream names and, in weights-only mode, refuses one not allowed.
void pickle_machine::named_global(const global_ref& g) {
  if (opt_.on_global) opt_.on_global(g, op_pos_);
  if (opt_.strict && !(opt_.globals && opt_.globals->contains(g.module, g.name)) &&
      !is_builtin_safe_global(g.module, g.name))
    fail(errc::unsafe_global, "global " + g.qualified() + " is not allowed in weights-only mode");
}

// callable(*args) for REDUCE / NEWOBJ / INST / OBJ: a handler from the table, a built-in,
// else an inert object. `args` is a tuple value.
value pickle_machine::call(const value& callable, const value& args, bool by_new) {
  if (!callable.is_global()) {
    if (callable.is_object() && !opt_.strict) {  // e.g. getattr(obj, 'method') then a call
      // Kept as an object of the callee's class with args (callee, args): unambiguous, and
      // written back as such, unless the class has a handler here, which would read those args
      // as its own. Instances of those (sets, bytes, OrderedDicts) are not callable in Python.
      const global_ref& type = callable.as_object().type;
      if (has_handler(type))
        fail(op_name() + ": a " + type.qualified() + " object is not callable");
      return new_object(type, new_tuple({callable, args}));
    }
    if (opt_.strict)
      fail(errc::unsafe_global, op_name() + " calls a " + std::string(callable.type_name()) +
                                    ", not an allowed global, in weights-only mode");
    fail(op_name() + " cannot call a " + std::string(callable.type_name()));
  }
  const global_ref& g = callable.as_global();
  if (opt_.globals)
    if (const reduce_fn* h = handler_of(callable); h && *h) {
      value r = (*h)(args.as_tuple());
      if (r.is_container()) needs_walk_ = true;  // its shape is the handler's business
      return text(std::move(r));
    }
  if (++call_depth_ > max_call_depth)
    fail(op_name() + ": copyreg calls nest deeper than " + std::to_string(max_call_depth));
  std::optional<value> r = call_builtin(g, args.as_tuple());
  --call_depth_;
  if (r) return text(std::move(*r));
  return new_object(g, args, by_new);
}

// The table's entry for a callable global. A stream calls the same few globals over and over
// (one per tensor), each a memoized value: the last two are remembered by the address of their
// name pair, kept alive here so that the address cannot be reused by another global.
const reduce_fn* pickle_machine::handler_of(const value& callable) {
  const global_ref* g = &callable.as_global();
  for (auto& c : recent_calls_)
    if (!c.callable.is_none() && &c.callable.as_global() == g) return c.handler;
  const reduce_fn* h = opt_.globals->find(g->module, g->name);
  recent_calls_[1] = std::move(recent_calls_[0]);
  recent_calls_[0] = {callable, h};
  return h;
}

// Whether a call of `g` goes to a handler (the table's or a built-in one) rather than building
// an inert object.
bool pickle_machine::has_handler(const global_ref& g) const {
  if (opt_.globals)
    if (const reduce_fn* h = opt_.globals->find(g.module, g.name); h && *h) return true;
  const std::string& m = g.module;
  const std::string& n = g.name;
  return (m == "collections" && n == "OrderedDict") || (m == "_codecs" && n == "encode") ||
         (m == "builtins" &&
          (n == "bytes" || n == "bytearray" || n == "set" || n == "frozenset")) ||
         (m == "copyreg" && (n == "_reconstructor" || n == "__newobj__" || n == "__newobj_ex__"));
}

std::optional<value> pickle_machine::call_builtin(const global_ref& g,
                                                  std::span<const value> args) {
  const std::string& m = g.module;
  const std::string& n = g.name;
  if (m == "collections" && n == "OrderedDict") return ordered_dict(args);
  if (m == "_codecs" && n == "encode") return codecs_encode(args);
  if (m == "builtins" && (n == "bytes" || n == "bytearray")) return make_bytes_from(g, args);
  if (m == "builtins" && (n == "set" || n == "frozenset")) return make_set(g, args);
  if (m == "copyreg" && n == "_reconstructor") {
    // copyreg._reconstructor(cls, base, state): base.__new__(cls, state) (protocols 0-1).
    if (args.size() != 3 || !args[0].is_global())
      fail(op_name() + ": copyreg._reconstructor takes (class, base, state)");
    bool plain = args[1].is_global() && args[1].as_global() == global_ref{"builtins", "object"};
    if (plain || args[2].is_none()) return call(args[0], empty_tuple_, true);
    return call(args[0], new_tuple({args[2]}));
  }
  if (m == "copyreg" && n == "__newobj__") {
    if (args.empty() || !args[0].is_global())
      fail(op_name() + ": copyreg.__newobj__ takes (class, *args)");
    return call(args[0], new_tuple(std::vector<value>(args.begin() + 1, args.end())), true);
  }
  if (m == "copyreg" && n == "__newobj_ex__") {
    if (args.size() != 3) fail(op_name() + ": copyreg.__newobj_ex__ takes (class, args, kwargs)");
    return newobj_ex(args[0], args[1], args[2]);
  }
  return std::nullopt;
}

value pickle_machine::ordered_dict(std::span<const value> args) {
  if (args.size() > 1) fail(op_name() + ": OrderedDict takes at most one argument");
  value d = new_dict("collections.OrderedDict");
  if (args.empty() || args[0].is_none()) return d;
  auto& dict = d.as_dict();
  const value& src = args[0];
  if (src.is_dict()) {  // OrderedDict(mapping)
    for (const auto& [k, v] : src.as_dict().entries()) set_item(dict, k, v);
  } else if (src.is_list() || src.is_tuple()) {  // Python 2: OrderedDict([[k, v], ...])
    for (const auto& pair : src.items()) {
      if (!(pair.is_list() || pair.is_tuple()) || pair.items().size() != 2)
        fail(op_name() + ": OrderedDict items must be (key, value) pairs");
      set_item(dict, pair.items()[0], pair.items()[1]);
    }
  } else {
    fail(op_name() + ": OrderedDict cannot be built from a " + std::string(src.type_name()));
  }
  return d;
}

std::string pickle_machine::encoded(const std::string& s, const value& encoding_value,
                                    const char* who) {
  std::string_view encoding = "utf-8";
  if (!encoding_value.is_none()) {
    if (!encoding_value.is_str()) fail(op_name() + ": " + who + " encoding must be a str");
    encoding = encoding_value.as_str();
  }
  std::uint32_t bad = 0;
  bool unencodable = false;
  charge(s.size());  // what the encoded text takes: at most the UTF-8 text's size
  auto out = encode_str(s, encoding, bad, unencodable);
  if (!out)
    fail(errc::unsupported,
         op_name() + ": " + who + " with encoding '" + std::string(encoding) + "'");
  if (unencodable)
    fail(op_name() + ": " + who + ": code point " + std::to_string(bad) + " cannot be encoded as " +
         std::string(encoding));
  return std::move(*out);
}

// _codecs.encode(str, 'latin1'): how protocol 2 writes bytes.
value pickle_machine::codecs_encode(std::span<const value> args) {
  if (args.empty() || args.size() > 3 || !args[0].is_str())
    fail(op_name() + ": _codecs.encode takes (str, encoding)");
  return value::make_bytes(
      encoded(args[0].as_str(), args.size() > 1 ? args[1] : value(), "_codecs.encode"));
}

// bytes() / bytearray() from nothing, bytes, a str and an encoding, a count, or a list of ints.
value pickle_machine::make_bytes_from(const global_ref& g, std::span<const value> args) {
  const std::string who = g.qualified();
  if (args.empty()) return value::make_bytes({});
  const value& a = args[0];
  if (a.is_str()) {
    if (args.size() < 2) fail(op_name() + ": " + who + "(str) needs an encoding");
    return value::make_bytes(encoded(a.as_str(), args[1], who.c_str()));
  }
  if (args.size() != 1) fail(op_name() + ": " + who + " takes one argument here");
  if (a.is_bytes()) return a;  // immutable: the copy can share its text
  if (a.is_int()) {
    if (a.as_int() < 0) fail(op_name() + ": " + who + " with a negative count");
    charge(static_cast<std::uint64_t>(a.as_int()));
    return value::make_bytes(std::string(static_cast<std::size_t>(a.as_int()), '\0'));
  }
  if (a.is_list() || a.is_tuple()) {
    charge(a.items().size());
    std::string out;
    out.reserve(a.items().size());
    for (const auto& b : a.items()) {
      if (!b.is_int() || b.as_int() < 0 || b.as_int() > 255)
        fail(op_name() + ": " + who + " needs ints in range(0, 256)");
      out.push_back(static_cast<char>(b.as_int()));
    }
    return value::make_bytes(std::move(out));
  }
  fail(op_name() + ": " + who + " cannot be built from a " + std::string(a.type_name()));
}

// set(iterable) / frozenset(iterable): an inert object of that class whose list_items are the
// elements, the same as EMPTY_SET + ADDITEMS and FROZENSET build.
std::optional<value> pickle_machine::make_set(const global_ref& g, std::span<const value> args) {
  if (args.size() > 1) fail(op_name() + ": " + g.qualified() + " takes at most one argument");
  value s = new_object(g, empty_tuple_);
  if (args.empty()) return s;
  const value& src = args[0];
  std::vector<value> items;
  if (src.is_list() || src.is_tuple())
    items.assign(src.items().begin(), src.items().end());
  else if (src.is_dict())
    for (const auto& kv : src.as_dict().entries()) items.push_back(kv.first);
  else if (src.is_object() && (src.as_object().type == global_ref{"builtins", "set"} ||
                               src.as_object().type == global_ref{"builtins", "frozenset"}))
    items = src.as_object().list_items;
  else
    return std::nullopt;  // kept as an inert call
  charge(items.size() * slot_bytes);
  s.as_object().list_items = std::move(items);
  return s;
}

value pickle_machine::newobj_ex(const value& cls, const value& args, const value& kwargs) {
  if (!cls.is_global())
    fail(op_name() + ": the class is a " + std::string(cls.type_name()) + ", not a global");
  if (!args.is_tuple())
    fail(op_name() + ": the arguments are a " + std::string(args.type_name()) + ", not a tuple");
  if (!kwargs.is_dict())
    fail(op_name() + ": the keyword arguments are a " + std::string(kwargs.type_name()) +
         ", not a dict");
  if (kwargs.as_dict().size() != 0)
    fail(errc::unsupported, op_name() + ": keyword arguments to " + cls.as_global().qualified() +
                                " are not supported");
  return call(cls, args, true);
}

// BUILD: state on an object, attributes on a dict (a state_dict's _metadata), nothing on a
// tensor (torch's legacy _rebuild_tensor path sets no state pthio needs).
void pickle_machine::build(value& inst, value state) {
  if (inst.is_object()) {
    auto& o = inst.as_object();
    o.state = std::move(state);
    o.has_state = true;
    return;
  }
  if (inst.is_dict()) {
    // pickle.load_build: state, or (state, slotstate); each None or a dict of attributes.
    auto& d = inst.as_dict();
    std::vector<const value*> parts;
    if (state.is_tuple() && state.as_tuple().size() == 2) {
      parts = {&state.as_tuple()[0], &state.as_tuple()[1]};
    } else {
      parts = {&state};
    }
    for (const value* part : parts) {
      if (part->is_none()) continue;
      if (!part->is_dict())
        fail("BUILD state for a dict is a " + std::string(part->type_name()) + ", not a dict");
      for (const auto& [k, v] : part->as_dict().entries()) {
        if (!k.is_str())
          fail("BUILD attribute name is a " + std::string(k.type_name()) + ", not a str");
        charge(2 * slot_bytes + k.as_str().size());
        const std::string& name = k.as_str();  // clang 14 cannot capture a structured binding
        auto it = std::find_if(d.attrs.begin(), d.attrs.end(),
                               [&](const auto& a) { return a.first == name; });
        if (it != d.attrs.end())
          it->second = v;
        else
          d.attrs.emplace_back(k.as_str(), v);
      }
    }
    return;
  }
  if (inst.is_tensor() && (state.is_none() || state.is_dict() || state.is_tuple())) return;
  fail("BUILD on a " + std::string(inst.type_name()));
}

}  // namespace detail
}  // namespace pthio
