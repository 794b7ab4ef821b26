// pthio — pickle: a reader for every opcode of protocols 0-5, and a protocol-2 writer.
//
// The unpickler is a stack machine over an untrusted byte stream. It never executes anything:
// a GLOBAL / STACK_GLOBAL / INST / OBJ names a class or function, which is looked up in a
// global_table; REDUCE/NEWOBJ/OBJ/INST on an entry with a handler call that handler (pure C++
// provided by pthio, never code from the file); on anything else they build an inert
// opaque_object. Built in, always available: collections.OrderedDict (an ordered dict),
// _codecs.encode (bytes from protocol 2), builtins.bytes / bytearray (bytes), copyreg's
// _reconstructor and __newobj__ (objects). Python 2 module names (__builtin__, copy_reg) map to
// their Python 3 names.
//
// Limits (unpickle_limits) bound nesting depth, marks, memo entries, container sizes and the
// bytes held by strings and containers; every length field is checked against the bytes
// remaining before anything is allocated. Values built are checked for cycles and depth; on
// any error everything built so far is torn down without recursion.
//
// Errors (pthio::error, with the opcode's offset and options.context): corrupt_pickle for a
// malformed stream (unknown opcode, stack underflow, truncation, missing STOP), limit_exceeded
// when a limit is reached, unsafe_global in strict mode, unsupported for valid constructs pthio
// does not model, and whatever a handler or persistent_load throws. The pickler throws
// invalid_argument for values pickle protocol 2 cannot express (tensors and storages without a
// save_hook, strs of 4 GiB or more, malformed global names).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pthio/export.hpp"
#include "pthio/value.hpp"

namespace pthio {

struct unpickle_limits {
  // Nesting of containers in the result, and of MARKs. A value is destroyed recursively, one
  // stack frame per level: a caller that raises this past a few thousand must take deep results
  // apart with flatten_destroy (value.hpp), or a 200,000-deep value overflows the stack.
  std::size_t max_depth = 1000;
  std::size_t max_memo = 1u << 24;       // highest memo index + 1
  std::size_t max_stack = 1u << 24;      // values on the stack
  std::uint64_t max_memory = 64u << 20;  // bytes of strings, bytes and container slots built
};

// Handler for REDUCE (and NEWOBJ / OBJ / INST) applied to a global: gets the argument tuple,
// returns the value it builds. Throws pthio::error to refuse.
using reduce_fn = std::function<value(std::span<const value> args)>;

class PTHIO_API global_table {
 public:
  // Allow module.name; with a handler, REDUCE on it calls the handler.
  void add(std::string module, std::string name, reduce_fn handler = nullptr);
  // nullptr when absent; *entry is empty (no handler) for a global allowed without one.
  const reduce_fn* find(std::string_view module, std::string_view name) const;
  bool contains(std::string_view module, std::string_view name) const {
    return find(module, name) != nullptr;
  }

 private:
  std::unordered_map<std::string, reduce_fn> entries_;  // key "module\nname"
};

// One tensor as torch.save writes it: torch._utils._rebuild_tensor_v2(storage, storage_offset,
// size, stride, requires_grad, OrderedDict()), whose storage is the persistent id
// ('storage', storage class, key, location, numel). The fields point into the pickle and the
// machine's memo: valid only during the call that receives the record.
struct tensor_record {
  const global_ref* storage_class = nullptr;
  std::string_view key;
  std::string_view location;
  std::int64_t numel = 0;
  std::int64_t storage_offset = 0;
  std::span<const std::int64_t> size;
  std::span<const std::int64_t> stride;
  bool requires_grad = false;
};

struct unpickle_options {
  // Globals with handlers (torch's rebuild functions, numpy); nullptr for the built-ins only.
  const global_table* globals = nullptr;
  // Weights-only mode: any global that is neither built in nor in `globals` raises
  // errc::unsafe_global at the opcode's offset.
  bool strict = false;
  // Resolves PERSID/BINPERSID ids; without it, a persistent id is an error.
  std::function<value(const value& pid)> persistent_load;
  // Observes every global the stream names, with the offset of its opcode (used by scan).
  std::function<void(const global_ref& g, std::size_t offset)> on_global;
  // A fast path for tensors (optional, with persistent_load). When the stream calls
  // torch._utils._rebuild_tensor_v2, a global `globals` has a handler for, in exactly the form
  // torch.save writes (a memoized global for the storage class, the 'storage' tag, the location
  // and OrderedDict; no memo entry made inside the record that is ever read back; ints, strs
  // and tuples of ints in their binary opcodes), the machine reads the record straight from the
  // bytes and asks this for the tensor, instead of building the record's tuples and calling
  // persistent_load and the handler. It must return what that general path would give, or
  // nothing to decline; on nothing, or a pthio::error, the general path runs over the same bytes
  // and reports any error where it meets it. A record read this way is charged to max_memory
  // as the general path would charge it, so that both paths load or refuse alike.
  std::function<std::optional<value>(const tensor_record& r)> load_tensor_record;
  unpickle_limits limits;
  // Name used in errors: "archive/data.pkl".
  std::string context;
};

struct unpickle_result {
  value root;
  std::size_t consumed = 0;  // bytes up to and including STOP
};

// Reads one pickle from the start of `data` (which may continue past STOP). The result owns
// everything it holds except what persistent_load hands back (storages keep their own owners);
// `data` may go once this returns.
PTHIO_API unpickle_result unpickle(std::span<const std::byte> data,
                                   const unpickle_options& options);

// The globals allowed without a table in strict mode (OrderedDict, _codecs.encode, ...).
PTHIO_API bool is_builtin_safe_global(std::string_view module, std::string_view name);

// ---------------------------------------------------------------------------------------------
// Writer: protocol 2, memoizing as CPython's pickler does for the objects torch.save writes
// (containers and tuples by identity, str by content since CPython interns the literals torch
// uses, globals by name), so pthio's data.pkl matches torch's byte for byte.

class pickler;

struct pickle_options {
  // Called for tensors and storages (and any value): return true after writing the value
  // through `p` (e.g. a torch rebuild call with a persistent id), false to use the default.
  std::function<bool(pickler& p, const value& v)> save_hook;
};

class PTHIO_API pickler {
 public:
  explicit pickler(pickle_options options = {});

  // Writes PROTO 2, the value, STOP; returns the stream.
  std::vector<std::byte> dump(const value& root);

  // Building blocks for save_hook.
  void save(const value& v);                                         // any value, memoized
  void save_global(std::string_view module, std::string_view name);  // GLOBAL, memoized
  void save_persistent_id(const value& pid);                         // pid then BINPERSID
  void reduce();                                                     // REDUCE + memoize the result
  void put_memo(const void* identity);  // BINPUT for a new object (alive until dump returns)
  bool get_memo(const void* identity);  // BINGET if memoized; true when written
  void save_empty_ordered_dict();       // OrderedDict() as torch writes it
  void write_raw(std::span<const std::byte> bytes);

 private:
  pickle_options options_;
  std::vector<std::byte> out_;
  std::unordered_map<const void*, std::uint32_t> memo_;
  std::vector<value> alive_;  // memoized values: their addresses must not be reused mid-dump
  std::unordered_map<std::string, std::uint32_t> str_memo_;
  std::unordered_map<std::string, std::uint32_t> global_memo_;
  std::uint32_t next_memo_ = 0;
  void emit(std::uint8_t op);
  void emit_put();
  void save_str(const std::string& s);
  void save_int(std::int64_t i);
  void save_big(const big_int& b);
  void save_float(double d);
  void save_bytes(const std::string& b);
  void save_list(const value& v);
  void save_tuple(const value& v);
  void save_dict(const value& v);
  void save_object(const value& v);
  void save_setitems(const std::vector<std::pair<value, value>>& items);
};

}  // namespace pthio
