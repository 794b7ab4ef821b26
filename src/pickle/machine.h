// pthio — the pickle reader's machine (internal): its state, and the small steps every opcode
// takes (argument reads, stack, memory charges, containers, memo), defined here so that they
// inline into the dispatch loop. The loop and the teardown are in unpickler.cpp, the calls and
// globals in calls.cpp; the argument decoders in text.h, the memo pre-pass in memo_scan.h.
//
// Safety rules (docs/style.md): every input byte comes through one detail::byte_reader; every
// length is checked against the bytes remaining and charged to the memory limit before anything is
// allocated; the value stack and the mark stack are explicit and popped through checked
// helpers; nothing recurses on input depth. Every container the machine builds is recorded, so
// that on any error (and for garbage left behind on success) the containers can be emptied one
// by one, which breaks cycles and keeps destruction shallow.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../byte_reader.h"
#include "../value_internal.h"
#include "../value_pool.h"
#include "memo_scan.h"
#include "opcodes.h"
#include "pthio/error.hpp"
#include "pthio/pickle.hpp"
#include "text.h"

namespace pthio::detail {

// An open-addressing map from container identity to a small number, for the walk at STOP: a
// checkpoint holds hundreds of thousands of containers, and node-based maps cost more than the
// parse itself.
class identity_map {
 public:
  void reserve(std::size_t n) {
    std::size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    if (cap > slots_.size()) rehash(cap);
  }
  // The entry for `id`, inserted with value 0 when absent; `inserted` says which.
  std::uint32_t& find_or_insert(const void* id, bool& inserted) {
    if (2 * (size_ + 1) > slots_.size()) rehash(slots_.empty() ? 16 : 2 * slots_.size());
    std::size_t i = index(id);
    while (slots_[i].first && slots_[i].first != id) i = (i + 1) & (slots_.size() - 1);
    inserted = !slots_[i].first;
    if (inserted) {
      slots_[i] = {id, 0};
      ++size_;
    }
    return slots_[i].second;
  }
  bool contains(const void* id) const {
    if (slots_.empty()) return false;
    std::size_t i = index(id);
    while (slots_[i].first) {
      if (slots_[i].first == id) return true;
      i = (i + 1) & (slots_.size() - 1);
    }
    return false;
  }
  void clear() {
    slots_.clear();
    size_ = 0;
  }

 private:
  std::vector<std::pair<const void*, std::uint32_t>> slots_;
  std::size_t size_ = 0;
  std::size_t index(const void* id) const {
    auto h =
        static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(id)) * 0x9e3779b97f4a7c15ull;
    return static_cast<std::size_t>(h >> 32) & (slots_.size() - 1);
  }
  void rehash(std::size_t cap) {
    std::vector<std::pair<const void*, std::uint32_t>> old(cap);
    old.swap(slots_);
    for (const auto& e : old) {
      if (!e.first) continue;
      std::size_t i = index(e.first);
      while (slots_[i].first) i = (i + 1) & (slots_.size() - 1);
      slots_[i] = e;
    }
  }
};

// The dense memo: slots 0..size()-1 in fixed chunks of values, each slot set or not (a bit per
// slot). Growing never moves a value, and no chunk is big enough to make glibc consolidate its free
// lists when it is freed (a deque of optional values, the form before, took 48 bytes a slot and a
// 512-byte block per 10 slots).
class memo_slots {
 public:
  static constexpr std::size_t chunk_slots = 256;  // 256 * sizeof(value): under glibc's 64 KiB
  std::size_t size() const noexcept { return size_; }
  bool has(std::size_t i) const noexcept { return i < size_ && (set_[i / 64] >> (i % 64) & 1); }
  value& operator[](std::size_t i) noexcept { return chunks_[i / chunk_slots][i % chunk_slots]; }
  // Slot i (< size()) becomes v; returns whether it was unset.
  bool assign(std::size_t i, const value& v) {
    (*this)[i] = v;
    std::uint64_t& word = set_[i / 64];
    const std::uint64_t bit = std::uint64_t{1} << (i % 64);
    const bool fresh = !(word & bit);
    word |= bit;
    return fresh;
  }
  void push_back(const value& v) {
    if (size_ % chunk_slots == 0 || size_ % 64 == 0) [[unlikely]]
      resize(size_ + 1);
    else
      ++size_;
    assign(size_ - 1, v);
  }
  // Adds unset slots up to n.
  void resize(std::size_t n) {
    while (chunks_.size() * chunk_slots < n)
      chunks_.push_back(std::make_unique<value[]>(chunk_slots));
    if (set_.size() * 64 < n) set_.resize((n + 63) / 64);
    size_ = std::max(size_, n);
  }
  // The bytes one more slot may cost (its share of a chunk and of the bits).
  static constexpr std::uint64_t slot_cost = sizeof(value) + 1;

 private:
  std::vector<std::unique_ptr<value[]>> chunks_;
  std::vector<std::uint64_t> set_;
  std::size_t size_ = 0;
};

constexpr std::uint64_t slot_bytes = sizeof(value);
// Dense memo slots are added for indices up to this far past the end; beyond, a hash map holds
// the entry, so a sparse LONG_BINPUT 2**31 costs one entry, not 2**31 slots.
constexpr std::size_t memo_dense_gap = 1024;
// Dict keys are hashed and compared by value; a key tuple may not hold more values than this.
constexpr std::size_t max_key_values = 10000;
// Integer keys hash through their decimal text; like Python's 4300-digit rule, keep that cheap.
constexpr std::size_t max_key_int_bytes = 1024;
// copyreg helpers (_reconstructor, __newobj__) may name each other; calls nest at most this deep.
constexpr int max_call_depth = 8;

class pickle_machine {
 public:
  pickle_machine(std::span<const std::byte> data, const unpickle_options& options)
      : in_(data, errc::corrupt_pickle, options.context),
        opt_(options),
        lim_(options.limits),
        reads_(data, options.limits.max_memo) {
    empty_tuple_ = value::make_tuple();
  }
  pickle_machine(const pickle_machine&) = delete;
  pickle_machine& operator=(const pickle_machine&) = delete;
  ~pickle_machine() { release(); }

  unpickle_result run() {
    try {
      charge(reads_.bytes());
      return loop();
    } catch (const error& e) {
      if (e.offset()) throw;
      // A handler or callback refused without saying where: the opcode that called it.
      throw error(e.kind(), e.message(), e.context().empty() ? opt_.context : e.context(), op_pos_);
    }
  }

 private:
  detail::byte_reader in_;
  const unpickle_options& opt_;
  const unpickle_limits& lim_;

  std::size_t op_pos_ = 0;
  std::uint8_t op_ = 0;
  std::vector<value> stack_;
  // Per stack value, an upper bound of its container nesting. While no container is ever
  // shared (fetched from the memo, duplicated, or made by a handler) the values form a tree
  // whose every container is mutated only while on top of the stack, so these bounds hold,
  // no cycle can exist, and the walk at STOP is not needed; otherwise needs_walk_ asks for it.
  std::vector<std::uint32_t> heights_;
  std::uint32_t popped_h_ = 0;
  bool needs_walk_ = false;
  std::vector<std::size_t> marks_;
  memo_reads reads_;
  memo_slots memo_dense_;
  std::unordered_map<std::uint64_t, value> memo_sparse_;
  std::size_t memo_count_ = 0;
  std::uint64_t memory_ = 0;
  int call_depth_ = 0;
  value empty_tuple_;
  struct recent_call {
    value callable;
    const reduce_fn* handler = nullptr;
  };
  recent_call recent_calls_[2];

  // Every container built here, with its identity, for release(); tuples only when they hold a
  // container (one of scalars, strings, tensors and storages neither recurses nor cycles when it
  // is destroyed). tuple_count_ counts them all.
  template <class T>
  struct owned {
    std::shared_ptr<T> p;
    const void* id;
  };
  std::deque<owned<list_object>> lists_;
  struct owned_tuple {
    value v;
    const void* id;
  };
  std::deque<owned_tuple> tuples_;
  std::size_t tuple_count_ = 0;
  std::deque<owned<dict_object>> dicts_;
  std::deque<owned<opaque_object>> objects_;
  // After a successful STOP: identities reachable from the result, which release() keeps.
  identity_map reachable_;
  bool succeeded_ = false;

  // ---- errors

  std::string op_name() const { return std::string(opcode_name(op_)); }
  [[noreturn]] void fail(const std::string& message) const { fail(errc::corrupt_pickle, message); }
  [[noreturn]] void fail(errc kind, const std::string& message) const {
    in_.fail_kind(kind, op_pos_, "pickle: " + message);
  }

  void charge(std::uint64_t bytes) {
    std::uint64_t total;
    if (!detail::checked_add(memory_, bytes, total) || total > lim_.max_memory) [[unlikely]]
      over_budget();
    memory_ = total;
  }
  // A block that lives only for a moment beside everything charged (the old block of a vector
  // while it grows) must fit too: memory in use stays under max_memory at every instant.
  void room_for(std::uint64_t bytes) const {
    std::uint64_t total;
    if (!detail::checked_add(memory_, bytes, total) || total > lim_.max_memory) [[unlikely]]
      over_budget();
  }
  [[noreturn, gnu::cold, gnu::noinline]] void over_budget() const {
    fail(errc::limit_exceeded, op_name() + ": the objects built need more than max_memory (" +
                                   std::to_string(lim_.max_memory) + " bytes)");
  }
  // Room for `extra` more elements, growing geometrically as push_back does; what is charged is
  // the capacity, not the size, and the new block must fit while the old one is still alive.
  template <class T>
  void grow(std::vector<T>& v, std::size_t extra) {
    if (v.capacity() - v.size() >= extra) [[likely]]
      return;
    grow_slow(v, extra);
  }
  template <class T>
  [[gnu::noinline]] void grow_slow(std::vector<T>& v, std::size_t extra) {
    const std::size_t cap = std::max({v.size() + extra, 2 * v.capacity(), std::size_t{8}});
    room_for(cap * sizeof(T));
    charge((cap - v.capacity()) * sizeof(T));
    v.reserve(cap);
  }

  // ---- argument reads (all through the one byte_reader; errors at the opcode's offset)

  void need(std::uint64_t n) const {
    if (n > in_.remaining()) [[unlikely]]
      short_read(n);
  }
  [[noreturn, gnu::cold, gnu::noinline]] void short_read(std::uint64_t n) const {
    fail(op_name() + ": unexpected end of data: needs " + std::to_string(n) + " bytes, " +
         std::to_string(in_.remaining()) + " remain");
  }
  std::uint8_t arg_u8() {
    need(1);
    return in_.u8();
  }
  std::uint16_t arg_le16() {
    need(2);
    return in_.le16();
  }
  std::uint32_t arg_le32() {
    need(4);
    return in_.le32();
  }
  std::int32_t arg_le_i32() {
    need(4);
    return in_.le_i32();
  }
  std::uint64_t arg_le64() {
    need(8);
    return in_.le64();
  }
  std::uint64_t arg_be64() {
    need(8);
    return in_.be64();
  }
  std::string_view arg_line() {
    const std::size_t start = in_.pos();
    auto rest = in_.data().subspan(start);
    if (!std::memchr(rest.data(), '\n', rest.size()))
      fail(op_name() + ": text argument has no terminating newline");
    return in_.line();
  }
  // A length-prefixed payload: checked against what remains and charged before it is copied.
  std::string_view arg_payload(std::uint64_t n) {
    if (n > in_.remaining())
      fail(op_name() + " length " + std::to_string(n) + " exceeds the " +
           std::to_string(in_.remaining()) + " bytes remaining");
    charge(n);
    return in_.chars(n);
  }

  // ---- stack

  std::size_t floor() const noexcept { return marks_.empty() ? 0 : marks_.back(); }

  void require(std::size_t n) const {
    if (stack_.size() - floor() < n) [[unlikely]]
      too_few(n);
  }
  [[noreturn, gnu::cold, gnu::noinline]] void too_few(std::size_t n) const {
    const std::size_t have = stack_.size() - floor();
    if (marks_.empty())
      fail(op_name() + " needs " + std::to_string(n) + " value(s) on the stack, it holds " +
           std::to_string(have));
    fail(op_name() + " needs " + std::to_string(n) + " value(s) above the last MARK, there are " +
         std::to_string(have));
  }
  static std::uint32_t up(std::uint32_t h, std::uint32_t by = 1) noexcept {
    return h > UINT32_MAX - 8 ? h : h + by;
  }
  void note_height(std::uint32_t h) noexcept {
    if (h > lim_.max_depth) needs_walk_ = true;
  }

  // `h` bounds the nesting of containers in v from above (0 for a scalar).
  void push(value&& v, std::uint32_t h = 0) {
    make_room(v, h);
    stack_.push_back(std::move(v));
    heights_.push_back(h);
  }
  void push(const value& v, std::uint32_t h = 0) {
    make_room(v, h);
    stack_.push_back(v);
    heights_.push_back(h);
  }
  void make_room(const value& v, std::uint32_t h) {
    if (stack_.size() >= lim_.max_stack) [[unlikely]]
      stack_full();
    grow(stack_, 1);
    grow(heights_, 1);
    // A big int owns a shared block and a byte vector of its own.
    if (v.is_big_int()) [[unlikely]]
      charge(64 + v.as_big_int().le_bytes.size());
    note_height(h);
  }
  [[noreturn, gnu::cold, gnu::noinline]] void stack_full() const {
    fail(errc::limit_exceeded, op_name() + ": the stack holds more than max_stack (" +
                                   std::to_string(lim_.max_stack) + ") values");
  }
  // Pops the top value; its height bound is left in popped_h_.
  value pop() {
    require(1);
    value v = std::move(stack_.back());
    stack_.pop_back();
    popped_h_ = heights_.back();
    heights_.pop_back();
    return v;
  }
  value& top() {
    require(1);
    return stack_.back();
  }
  // The top `n` values after checking they exist (all those above the last MARK when n is
  // npos, popping the MARK); the largest height bound among them is left in popped_h_.
  std::vector<value> pop_n(std::size_t n) {
    const std::size_t k = take_n(n);
    std::vector<value> items(
        std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(k)),
        std::make_move_iterator(stack_.end()));
    drop_to(k);
    return items;
  }
  // The stack (and its height bounds) cut back to its first k values.
  void drop_to(std::size_t k) {
    stack_.resize(k);
    heights_.resize(k);
  }
  // Checks and unmarks what pop_n takes, leaving it on the stack: the index of its first value.
  std::size_t take_n(std::size_t n) {
    std::size_t k;
    if (n == std::size_t(-1)) {
      if (marks_.empty()) fail(op_name() + " needs a MARK on the stack, there is none");
      k = marks_.back();
      marks_.pop_back();
    } else {
      require(n);
      k = stack_.size() - n;
    }
    room_for((stack_.size() - k) * slot_bytes);  // charged by the caller once it is a container
    popped_h_ = 0;
    for (std::size_t i = k; i < heights_.size(); ++i) popped_h_ = std::max(popped_h_, heights_[i]);
    return k;
  }
  std::vector<value> pop_mark() { return pop_n(std::size_t(-1)); }
  // The top container gained a child of height bound h.
  void raise_top(std::uint32_t h) {
    auto& top_h = heights_.back();
    top_h = std::max(top_h, up(h));
    note_height(top_h);
  }

  // ---- containers

  value new_list(std::vector<value> items = {}) {
    // The items, the list object with its control block, and its entry in lists_.
    charge(items.size() * slot_bytes + sizeof(list_object) + 64);
    auto p = detail::make_pooled<list_object>();
    p->items = std::move(items);
    value v = value::from(p);
    lists_.push_back({std::move(p), v.identity()});
    return v;
  }
  value new_tuple(std::vector<value> items) { return new_tuple(items.data(), items.size()); }
  // A tuple of the n values at `items`, moved from there.
  value new_tuple(value* items, std::size_t n) {
    if (n == 0) return empty_tuple_;
    // The items and the count slot before them, the control block, and an entry in tuples_.
    charge((n + 1) * slot_bytes + 64);
    bool holds_container = false;
    for (std::size_t i = 0; i < n; ++i) holds_container |= items[i].is_container();
    value v = detail::value_access::tuple_moving(items, n);
    ++tuple_count_;
    if (holds_container) tuples_.push_back({v, v.identity()});
    return v;
  }
  // TUPLE, TUPLE1-3: the tuple is built straight from the stack's values.
  value tuple_from_stack(std::size_t n) {
    const std::size_t k = take_n(n);
    value v = new_tuple(stack_.data() + k, stack_.size() - k);
    drop_to(k);
    return v;
  }
  value new_dict(std::string class_name = {}) {
    charge(sizeof(dict_object) + 64);  // with its shared_ptr control block and its entry in dicts_
    auto p = detail::make_pooled<dict_object>();
    p->class_name = std::move(class_name);
    value v = value::from(p);
    dicts_.push_back({std::move(p), v.identity()});
    return v;
  }
  // A global value: its boxed name pair (and control block), and the names beyond SSO.
  void charge_global(const global_ref& g) {
    charge(sizeof(global_ref) + 32 + g.module.size() + g.name.size());
  }

  value new_object(global_ref type, value args, bool by_new = false) {
    // The object, its shared_ptr control block and its entry in objects_; names beyond SSO.
    charge(sizeof(opaque_object) + 64 + type.module.size() + type.name.size());
    auto p = detail::make_pooled<opaque_object>();
    p->type = std::move(type);
    p->args = std::move(args);
    p->created_by_new = by_new;
    value v = value::from(p);
    objects_.push_back({std::move(p), v.identity()});
    return v;
  }
  // A new str or bytes value, charged for its box.
  value text(value v) {
    charge(text_box_bytes(v));
    return v;
  }

  // Python raises TypeError for unhashable keys (list, dict, set); pthio's dict hashes keys by
  // value, so a key tuple is also bounded in size and nesting.
  void check_key(const value& key) {
    if (key.is_list() || key.is_dict())
      fail(op_name() + ": unhashable dict key of type " + std::string(key.type_name()));
    if (key.is_big_int() && key.as_big_int().le_bytes.size() > max_key_int_bytes)
      fail(errc::limit_exceeded, op_name() + ": a dict key integer has more than " +
                                     std::to_string(max_key_int_bytes) + " bytes");
    if (!key.is_tuple()) return;
    struct frame {
      std::span<const value> items;
      std::size_t next;
    };
    std::vector<frame> path{{key.as_tuple(), 0}};
    std::size_t seen = 0;
    while (!path.empty()) {
      frame& f = path.back();
      if (f.next == f.items.size()) {
        path.pop_back();
        continue;
      }
      const value& c = f.items[f.next++];
      if (++seen > max_key_values)
        fail(errc::limit_exceeded, op_name() + ": a dict key tuple holds more than " +
                                       std::to_string(max_key_values) + " values");
      if (c.is_list() || c.is_dict())
        fail(op_name() + ": unhashable dict key (a tuple holding a " + std::string(c.type_name()) +
             ")");
      if (c.is_big_int() && c.as_big_int().le_bytes.size() > max_key_int_bytes)
        fail(errc::limit_exceeded, op_name() + ": a dict key integer has more than " +
                                       std::to_string(max_key_int_bytes) + " bytes");
      if (c.is_tuple()) {
        if (path.size() >= lim_.max_depth)
          fail(errc::limit_exceeded, op_name() + ": a dict key nests deeper than max_depth (" +
                                         std::to_string(lim_.max_depth) + ")");
        path.push_back({c.as_tuple(), 0});
      }
    }
  }

  void set_item(dict_object& d, value key, value val) {
    check_key(key);
    // dict_object's entries are a vector that doubles (charged at capacity, with room for the old
    // block while it moves) and its index holds at most 4 slots of 16 bytes per entry, rebuilt
    // beside the old one: 96 bytes an entry.
    constexpr std::uint64_t entry_bytes = sizeof(dict_object::entry);
    const std::size_t n = d.size();
    if ((n & (n - 1)) == 0) {  // 0, 1, 2, 4, ...: the next new key reallocates
      const std::size_t cap = n ? 2 * n : 1;
      room_for(cap * entry_bytes);
      charge((cap - n) * entry_bytes);
    }
    charge(96);
    d.set(std::move(key), std::move(val));
  }

  // Python's d[k] = v for SETITEM(S) on the value under the new items.
  void set_items(value& target, std::vector<value>& kv) {
    if (kv.size() % 2)
      fail(op_name() + " has an odd number of values (" + std::to_string(kv.size()) + ")");
    if (target.is_dict()) {
      auto& d = target.as_dict();
      for (std::size_t i = 0; i < kv.size(); i += 2)
        set_item(d, std::move(kv[i]), std::move(kv[i + 1]));
    } else if (target.is_object()) {
      auto& o = target.as_object();
      grow(o.dict_items, kv.size() / 2);
      for (std::size_t i = 0; i < kv.size(); i += 2)
        o.dict_items.emplace_back(std::move(kv[i]), std::move(kv[i + 1]));
    } else {
      fail(op_name() + " on a " + std::string(target.type_name()) + ", not a dict");
    }
  }

  // list.append / extend (APPEND, APPENDS), or an object's items (a list subclass, a set).
  void append_items(value& target, std::vector<value>& items) {
    std::vector<value>* dst = nullptr;
    if (target.is_list())
      dst = &target.as_list().items;
    else if (target.is_object())
      dst = &target.as_object().list_items;
    else
      fail(op_name() + " on a " + std::string(target.type_name()) + ", not a list");
    if (dst->capacity() == 0) {
      // The popped items become the container's: no second block of the same size.
      charge(items.capacity() * sizeof(value));
      *dst = std::move(items);
      return;
    }
    grow(*dst, items.size());
    for (auto& v : items) dst->push_back(std::move(v));
  }

  // ---- memo

  void memo_put(std::uint64_t index) {
    if (index >= lim_.max_memo)
      fail(errc::limit_exceeded, op_name() + " memo index " + std::to_string(index) +
                                     " exceeds the limit max_memo (" +
                                     std::to_string(lim_.max_memo) + ")");
    const value& v = top();
    if (!reads_.will_read(index)) return;  // never read: nothing to keep
    charge(slot_bytes);                    // the value itself is shared
    // An index lives in one place: a sparse entry moves into the dense part once that reaches it.
    if (!memo_sparse_.empty() && index < memo_dense_.size() + memo_dense_gap &&
        memo_sparse_.erase(index))
      --memo_count_;
    if (index == memo_dense_.size()) {  // the usual case: BINPUT n counts up from 0
      charge(memo_slots::slot_cost);
      memo_dense_.push_back(v);
      ++memo_count_;
      return;
    }
    if (index < memo_dense_.size() + memo_dense_gap) {
      if (index >= memo_dense_.size()) {
        charge((index + 1 - memo_dense_.size()) * memo_slots::slot_cost);
        memo_dense_.resize(static_cast<std::size_t>(index) + 1);
      }
      if (memo_dense_.assign(static_cast<std::size_t>(index), v)) ++memo_count_;
      return;
    }
    charge(64);  // a hash node and its share of the buckets
    auto [it, inserted] = memo_sparse_.insert_or_assign(index, v);
    if (inserted) ++memo_count_;
  }

  void memo_get(std::uint64_t index) {
    const value* v = nullptr;
    if (memo_dense_.has(index))
      v = &memo_dense_[static_cast<std::size_t>(index)];
    else if (auto it = memo_sparse_.find(index); it != memo_sparse_.end())
      v = &it->second;
    if (!v) fail(op_name() + " memo index " + std::to_string(index) + " is not defined");
    if (v->is_container()) needs_walk_ = true;
    push(*v);
  }

  std::uint64_t text_index(std::string_view line) {
    const auto i = memo_index_text(line);
    if (!i) fail(op_name() + ": memo index '" + std::string(line) + "' is not a number");
    if (*i < 0) fail(op_name() + ": negative memo index " + std::to_string(*i));
    return static_cast<std::uint64_t>(*i);
  }

  // ---- globals and calls (calls.cpp)

  // GLOBAL's and INST's two lines, as a Python 3 name.
  global_ref read_global_lines();
  // Reports a global the stream names and, in weights-only mode, refuses one not allowed.
  void named_global(const global_ref& g);
  // callable(*args) for REDUCE / NEWOBJ / INST / OBJ: a handler from the table, a built-in,
  // else an inert object. `args` is a tuple value; by_new: cls.__new__(cls, *args), which an
  // inert object remembers (opaque_object::created_by_new).
  value call(const value& callable, const value& args, bool by_new = false);
  const reduce_fn* handler_of(const value& callable);
  bool has_handler(const global_ref& g) const;
  std::optional<value> call_builtin(const global_ref& g, std::span<const value> args);
  value ordered_dict(std::span<const value> args);
  std::string encoded(const std::string& s, const value& encoding_value, const char* who);
  value codecs_encode(std::span<const value> args);
  value make_bytes_from(const global_ref& g, std::span<const value> args);
  std::optional<value> make_set(const global_ref& g, std::span<const value> args);
  value newobj_ex(const value& cls, const value& args, const value& kwargs);
  // BUILD: state on an object, attributes on a dict, nothing on a tensor.
  void build(value& inst, value state);

  // ---- STOP (unpickler.cpp): the result must be acyclic and nested at most max_depth deep.

  static const value* child(const value& v, std::size_t i) { return detail::child_at(v, i); }

  void verify(const value& root);
  void release() noexcept;

  // ---- the loop

  value make_str(std::string_view s, bool surrogates_ok) {
    if (!valid_utf8(s, surrogates_ok)) fail(op_name() + " is not valid UTF-8");
    return text(value(std::string(s)));
  }

  // Python 2 str (STRING family): torch loads with encoding='utf-8', so text that decodes is a
  // str; anything else stays bytes.
  value py2_string(std::string s) {
    if (valid_utf8(s, false)) return text(value(std::move(s)));
    return text(value::make_bytes(std::move(s)));
  }

  // ---- torch's tensor records (tensor_record.cpp): unpickle_options::load_tensor_record.

  // At a MARK under the _rebuild_tensor_v2 global: the record read and its tensor pushed, or
  // false, nothing changed, for the general path. The helpers read one part of the record
  // through a record_reader (tensor_record.cpp), false when it is not in the expected form.
  bool fast_tensor_record();
  bool is_rebuild_v2(const value& v);
  bool fast_skip_put(void* reader);
  const value* fast_memo(void* reader);
  bool fast_str(void* reader, std::string_view& s);
  bool fast_int(void* reader, std::int64_t& v);
  bool fast_int_tuple(void* reader, std::int64_t* out, std::size_t& n, bool& marked);
  bool fast_global(void* reader, const value*& g);
  bool is_plain_ordered_dict(const value& v);
  value rebuild_v2_;  // the global last found to be _rebuild_tensor_v2, kept alive
  value od_global_;   // the global last found to be the built-in OrderedDict, kept alive
  std::uint64_t fast_charge_ = 0;  // while a record is read: its strings' and LONG1s' charges
  // The OrderedDicts the general path would have built for records read in one go: counted in
  // the walk at STOP as the dicts themselves would be.
  std::size_t unbuilt_dicts_ = 0;

  // The dispatch: one switch over every opcode (unpickler.cpp).
  unpickle_result loop();
};

}  // namespace pthio::detail
