// pthio — pickle reader: a stack machine over every opcode of protocols 0-5, as listed by
// Python's pickletools, with the semantics of CPython's Lib/pickle.py (_Unpickler), except that
// nothing is ever imported or called: globals become values, and calls on them go to a handler
// table, a few built-in handlers, or become inert objects.
//
// This file holds the dispatch (one switch over the opcodes, the shape PyTorch's unpickler has)
// and the checks and teardown at the end; the machine's state and small steps are in machine.h,
// the calls in calls.cpp, the argument decoders in text.cpp, the memo pre-pass in memo_scan.cpp.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compat_names.h"
#include "machine.h"

namespace pthio {
namespace detail {
// ---------------------------------------------------------------------------------------------
// STOP: the result must be acyclic and nested at most max_depth deep.

// Iterative depth-first walk; reachable_ maps each container to its height (0 while on the path).
void pickle_machine::verify(const value& root) {
  reachable_.clear();
  if (!root.identity()) return;
  const std::size_t containers =
      lists_.size() + tuple_count_ + dicts_.size() + unbuilt_dicts_ + objects_.size() + 1;
  charge(64 * static_cast<std::uint64_t>(
                  containers));  // the map: 16-byte slots, at most 4 per container
  reachable_.reserve(containers);
  struct frame {
    const value* v;
    std::size_t next;
    std::uint32_t height;
  };
  std::vector<frame> path;
  path.push_back({&root, 0, 0});
  bool inserted = false;
  reachable_.find_or_insert(root.identity(), inserted);
  auto too_deep = [&] {
    fail(errc::limit_exceeded,
         "containers nest deeper than max_depth (" + std::to_string(lim_.max_depth) + ")");
  };
  if (lim_.max_depth == 0) too_deep();
  while (!path.empty()) {
    frame& f = path.back();
    const value* c = child(*f.v, f.next++);
    if (!c) {
      const std::uint32_t h = f.height + 1;
      reachable_.find_or_insert(f.v->identity(), inserted) = h;
      path.pop_back();
      if (!path.empty()) path.back().height = std::max(path.back().height, h);
      continue;
    }
    if (!c->is_container()) continue;  // no children (storages have an identity but hold no values)
    const void* id = c->identity();
    const std::uint32_t seen = reachable_.find_or_insert(id, inserted);
    if (!inserted) {
      if (seen == 0)
        fail(errc::unsupported,
             "cyclic container: a " + std::string(c->type_name()) + " contains itself");
      if (path.size() + seen > lim_.max_depth) too_deep();
      f.height = std::max(f.height, seen);
      continue;
    }
    if (path.size() + 1 > lim_.max_depth) too_deep();
    path.push_back({c, 0, 0});
  }
}

// Empties every container built here that the result does not reach (all of them after an
// error), so that no cycle leaks and no destructor recurses deeply.
void pickle_machine::release() noexcept {
  // Without sharing every container is at most max_depth deep and acyclic: plain destruction.
  if (succeeded_ && !needs_walk_) return;
  auto dead = [&](const void* id) { return !succeeded_ || !reachable_.contains(id); };
  for (auto& l : lists_)
    if (dead(l.id)) l.p->items.clear();
  for (auto& t : tuples_)
    if (dead(t.id))
      for (auto& e : detail::value_access::mutable_items(t.v)) e = value();
  for (auto& d : dicts_)
    if (dead(d.id)) {
      d.p->clear();
      d.p->attrs.clear();
    }
  for (auto& o : objects_)
    if (dead(o.id)) {
      o.p->args = value();
      o.p->state = value();
      o.p->list_items.clear();
      o.p->dict_items.clear();
    }
}

// ---------------------------------------------------------------------------------------------
// The loop.

unpickle_result pickle_machine::loop() {
  for (;;) {
    if (in_.at_end()) {
      op_pos_ = in_.pos();
      in_.fail_at(in_.pos(), "pickle: the data ends without a STOP opcode");
    }
    op_pos_ = in_.pos();
    op_ = in_.u8();
    switch (static_cast<opcode>(op_)) {
      // -- structure
      case opcode::PROTO: {
        std::uint8_t p = arg_u8();
        if (p > 5)
          fail(errc::unsupported, "pickle protocol " + std::to_string(p) + " is not supported");
        break;
      }
      case opcode::FRAME: {
        // Protocol 4 framing only helps buffered readers; the frame must fit in what remains.
        std::uint64_t n = arg_le64();
        if (n > in_.remaining())
          fail("FRAME length " + std::to_string(n) + " exceeds the " +
               std::to_string(in_.remaining()) + " bytes remaining");
        break;
      }
      case opcode::STOP: {
        value root = pop();
        if (needs_walk_) verify(root);
        succeeded_ = true;
        return {std::move(root), in_.pos()};
      }
      case opcode::MARK:
        // torch's record for a tensor, read in one go when the loader offers a fast path.
        if (opt_.load_tensor_record && stack_.size() > floor() && is_rebuild_v2(stack_.back()) &&
            fast_tensor_record())
          break;
        if (marks_.size() >= lim_.max_depth)
          fail(errc::limit_exceeded,
               "MARK nesting exceeds max_depth (" + std::to_string(lim_.max_depth) + ")");
        marks_.push_back(stack_.size());
        break;
      case opcode::POP:
        // pickle.load_pop: with nothing above the last MARK, POP discards the MARK.
        if (!marks_.empty() && stack_.size() == marks_.back())
          marks_.pop_back();
        else
          pop();
        break;
      case opcode::POP_MARK: pop_mark(); break;
      case opcode::DUP: {
        value v = top();
        if (v.is_container()) needs_walk_ = true;
        push(std::move(v), heights_.back());
        break;
      }

      // -- atoms
      case opcode::NONE: push(value()); break;
      case opcode::NEWTRUE: push(value(true)); break;
      case opcode::NEWFALSE: push(value(false)); break;
      case opcode::BININT: push(value(arg_le_i32())); break;
      case opcode::BININT1: push(value(arg_u8())); break;
      case opcode::BININT2: push(value(arg_le16())); break;
      case opcode::INT: {
        std::string_view t = arg_line();
        // pickle.load_int: protocol 0 writes bools as I00 / I01.
        if (t == "00") {
          push(value(false));
          break;
        }
        if (t == "01") {
          push(value(true));
          break;
        }
        bool too_long = false;
        auto v = parse_int_text(t, true, too_long);
        if (!v) fail(too_long ? "INT has more than 4300 digits" : "INT argument is not an integer");
        push(std::move(*v));
        break;
      }
      case opcode::LONG: {
        std::string_view t = arg_line();
        if (!t.empty() && t.back() == 'L') t.remove_suffix(1);
        bool too_long = false;
        auto v = parse_int_text(t, true, too_long);
        if (!v)
          fail(too_long ? "LONG has more than 4300 digits" : "LONG argument is not an integer");
        push(std::move(*v));
        break;
      }
      case opcode::LONG1: {
        std::uint8_t n = arg_u8();
        need(n);
        charge(n);
        push(long_from_le(in_.bytes(n)));
        break;
      }
      case opcode::LONG4: {
        std::int32_t n = arg_le_i32();
        if (n < 0) fail("LONG4 has a negative byte count");
        auto bytes = std::as_bytes(std::span(arg_payload(static_cast<std::uint32_t>(n))));
        push(long_from_le(bytes));
        break;
      }
      case opcode::FLOAT: {
        std::string_view t = arg_line();
        auto d = parse_float_text(t);
        if (!d) fail("FLOAT argument '" + std::string(t.substr(0, 40)) + "' is not a number");
        push(value(*d));
        break;
      }
      case opcode::BINFLOAT:  // pickletools: BINFLOAT is big-endian
        push(value(std::bit_cast<double>(arg_be64())));
        break;

      // -- strings and bytes
      case opcode::STRING: {
        std::string_view t = arg_line();
        // pickle.load_string: the argument must be quoted with ' or ", then escape-decoded.
        if (t.size() < 2 || t.front() != t.back() || (t.front() != '\'' && t.front() != '"'))
          fail("the STRING opcode argument must be quoted");
        charge(t.size());
        std::string why;
        auto s = escape_decode(t.substr(1, t.size() - 2), why);
        if (!s) fail("STRING: " + why);
        push(py2_string(std::move(*s)));
        break;
      }
      case opcode::BINSTRING: {
        std::int32_t n = arg_le_i32();
        if (n < 0) fail("BINSTRING has a negative byte count");
        push(py2_string(std::string(arg_payload(static_cast<std::uint32_t>(n)))));
        break;
      }
      case opcode::SHORT_BINSTRING: push(py2_string(std::string(arg_payload(arg_u8())))); break;
      case opcode::UNICODE: {
        std::string_view t = arg_line();
        charge(t.size() * 2);
        std::string why;
        auto s = raw_unicode_escape_decode(t, why);
        if (!s) fail("UNICODE: " + why);
        push(text(value(std::move(*s))));
        break;
      }
      case opcode::BINUNICODE: push(make_str(arg_payload(arg_le32()), true)); break;
      case opcode::SHORT_BINUNICODE: push(make_str(arg_payload(arg_u8()), true)); break;
      case opcode::BINUNICODE8: push(make_str(arg_payload(arg_le64()), true)); break;
      case opcode::BINBYTES:
        push(text(value::make_bytes(std::string(arg_payload(arg_le32())))));
        break;
      case opcode::SHORT_BINBYTES:
        push(text(value::make_bytes(std::string(arg_payload(arg_u8())))));
        break;
      case opcode::BINBYTES8:
      case opcode::BYTEARRAY8:  // a bytearray is bytes in pthio's model
        push(text(value::make_bytes(std::string(arg_payload(arg_le64())))));
        break;
      case opcode::NEXT_BUFFER:
      case opcode::READONLY_BUFFER:
        fail(errc::unsupported, op_name() + ": out-of-band buffers (protocol 5) are not supported");

      // -- containers
      case opcode::EMPTY_LIST: push(new_list(), 1); break;
      case opcode::EMPTY_DICT: push(new_dict(), 1); break;
      case opcode::EMPTY_TUPLE: push(empty_tuple_, 1); break;
      case opcode::EMPTY_SET: push(new_object({"builtins", "set"}, empty_tuple_), 2); break;
      case opcode::LIST: {
        std::vector<value> items = pop_mark();
        const std::uint32_t h = up(popped_h_);
        push(new_list(std::move(items)), h);
        break;
      }
      case opcode::TUPLE:
      case opcode::TUPLE1:
      case opcode::TUPLE2:
      case opcode::TUPLE3: {
        value t = tuple_from_stack(
            op_ == static_cast<std::uint8_t>(opcode::TUPLE) ? std::size_t(-1) : op_ - 0x85u + 1);
        push(std::move(t), up(popped_h_));
        break;
      }
      case opcode::DICT: {
        std::vector<value> kv = pop_mark();
        const std::uint32_t h = up(popped_h_);
        value d = new_dict();
        set_items(d, kv);
        push(std::move(d), h);
        break;
      }
      case opcode::FROZENSET: {
        std::vector<value> items = pop_mark();
        const std::uint32_t h = up(popped_h_, 2);
        value s = new_object({"builtins", "frozenset"}, empty_tuple_);
        append_items(s, items);
        push(std::move(s), h);
        break;
      }
      case opcode::APPEND: {
        value item = pop();
        const std::uint32_t h = popped_h_;
        value& target = top();
        std::vector<value>* dst = target.is_list()     ? &target.as_list().items
                                  : target.is_object() ? &target.as_object().list_items
                                                       : nullptr;
        if (!dst) fail("APPEND on a " + std::string(target.type_name()) + ", not a list");
        grow(*dst, 1);
        dst->push_back(std::move(item));
        raise_top(h);
        break;
      }
      case opcode::APPENDS:
      case opcode::ADDITEMS: {
        std::vector<value> items = pop_mark();
        const std::uint32_t h = popped_h_;
        value& target = top();
        if (static_cast<opcode>(op_) == opcode::ADDITEMS && !target.is_object())
          fail("ADDITEMS on a " + std::string(target.type_name()) + ", not a set");
        append_items(target, items);
        raise_top(h);
        break;
      }
      case opcode::SETITEM: {
        require(3);
        value val = pop();
        std::uint32_t h = popped_h_;
        value key = pop();
        h = std::max(h, popped_h_);
        value& target = top();
        if (target.is_dict()) {
          set_item(target.as_dict(), std::move(key), std::move(val));
        } else if (target.is_object()) {
          grow(target.as_object().dict_items, 1);
          target.as_object().dict_items.emplace_back(std::move(key), std::move(val));
        } else {
          fail("SETITEM on a " + std::string(target.type_name()) + ", not a dict");
        }
        raise_top(h);
        break;
      }
      case opcode::SETITEMS: {
        std::vector<value> kv = pop_mark();
        const std::uint32_t h = popped_h_;
        set_items(top(), kv);
        raise_top(h);
        break;
      }

      // -- memo
      case opcode::PUT: memo_put(text_index(arg_line())); break;
      case opcode::BINPUT: memo_put(arg_u8()); break;
      case opcode::LONG_BINPUT: memo_put(arg_le32()); break;
      case opcode::MEMOIZE: memo_put(memo_count_); break;
      case opcode::GET: memo_get(text_index(arg_line())); break;
      case opcode::BINGET: memo_get(arg_u8()); break;
      case opcode::LONG_BINGET: memo_get(arg_le32()); break;

      // -- globals, calls, objects
      case opcode::GLOBAL: {
        global_ref g = read_global_lines();
        named_global(g);
        charge_global(g);
        push(value::make_global(std::move(g.module), std::move(g.name)));
        break;
      }
      case opcode::STACK_GLOBAL: {
        require(2);
        value name = pop();
        value module = pop();
        if (!module.is_str() || !name.is_str()) fail("STACK_GLOBAL requires str module and name");
        global_ref g = python3_name(module.as_str(), name.as_str());
        named_global(g);
        charge_global(g);
        push(value::make_global(std::move(g.module), std::move(g.name)));
        break;
      }
      case opcode::REDUCE: {
        require(2);
        value args = pop();
        std::uint32_t h = popped_h_;
        if (!args.is_tuple())
          fail("REDUCE arguments are a " + std::string(args.type_name()) + ", not a tuple");
        value callable = pop();
        h = std::max(h, popped_h_);
        // A call's result nests at most two levels over its arguments (see call_builtin).
        push(call(callable, args), up(h, 2));
        break;
      }
      case opcode::NEWOBJ: {
        require(2);
        value args = pop();
        const std::uint32_t h = popped_h_;
        value cls = pop();
        if (!args.is_tuple())
          fail("NEWOBJ arguments are a " + std::string(args.type_name()) + ", not a tuple");
        if (!cls.is_global())
          fail("NEWOBJ class is a " + std::string(cls.type_name()) + ", not a global");
        push(call(cls, args, true), up(h, 2));
        break;
      }
      case opcode::NEWOBJ_EX: {
        require(3);
        value kwargs = pop();
        std::uint32_t h = popped_h_;
        value args = pop();
        h = std::max(h, popped_h_);
        value cls = pop();
        push(newobj_ex(cls, args, kwargs), up(h, 2));
        break;
      }
      case opcode::INST: {
        global_ref g = read_global_lines();
        named_global(g);
        charge_global(g);
        value cls = value::make_global(std::move(g.module), std::move(g.name));
        std::vector<value> items = pop_mark();
        const std::uint32_t h = up(popped_h_, 3);
        push(call(cls, new_tuple(std::move(items))), h);
        break;
      }
      case opcode::OBJ: {
        std::vector<value> items = pop_mark();
        const std::uint32_t h = up(popped_h_, 3);
        if (items.empty()) fail("OBJ needs a class above the MARK");
        value cls = std::move(items.front());
        if (!cls.is_global())
          fail("OBJ class is a " + std::string(cls.type_name()) + ", not a global");
        items.erase(items.begin());
        push(call(cls, new_tuple(std::move(items))), h);
        break;
      }
      case opcode::BUILD: {
        require(2);
        value state = pop();
        const std::uint32_t h = popped_h_;
        build(top(), std::move(state));
        if (top().is_object() || top().is_dict()) raise_top(h);
        break;
      }
      case opcode::PERSID:
      case opcode::BINPERSID: {
        value pid;
        if (static_cast<opcode>(op_) == opcode::PERSID) {
          std::string_view t = arg_line();
          if (!std::all_of(t.begin(), t.end(),
                           [](char c) { return static_cast<unsigned char>(c) < 0x80; }))
            fail("PERSID argument is not ASCII");
          charge(t.size());
          pid = text(value(std::string(t)));
        } else {
          pid = pop();
        }
        if (!opt_.persistent_load)
          fail(op_name() + ": a persistent id, but no persistent_load was given");
        value r = opt_.persistent_load(pid);
        if (r.is_container()) needs_walk_ = true;
        push(std::move(r));
        break;
      }
      case opcode::EXT1:
      case opcode::EXT2:
      case opcode::EXT4: {
        std::uint32_t code = op_ == 0x82 ? arg_u8() : op_ == 0x83 ? arg_le16() : arg_le32();
        fail(errc::unsupported, op_name() + " (extension registry code " + std::to_string(code) +
                                    ") is not supported");
      }
      default: fail("unknown opcode " + hex_byte(op_));
    }
  }
}

}  // namespace detail

unpickle_result unpickle(std::span<const std::byte> data, const unpickle_options& options) {
  detail::value_pool_scope pool;  // the objects built here (and by handlers) come from one pool
  detail::pickle_machine m(data, options);
  return m.run();
}

}  // namespace pthio
