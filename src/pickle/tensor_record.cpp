// pthio — the pickle reader's fast path for torch's tensor records (unpickle_options::
// load_tensor_record). torch.save writes every tensor as the same forty-odd bytes:
//
//   <_rebuild_tensor_v2, memoized> MARK
//     MARK 'storage' <storage class> key location numel TUPLE [PUT]   (the persistent id)
//     BINPERSID
//     offset  <size tuple> [PUT]  <stride tuple> [PUT]  NEWFALSE
//     <OrderedDict> EMPTY_TUPLE REDUCE [PUT]
//   TUPLE [PUT] REDUCE
//
// The general machine builds five tuples, a dict and two vectors for it and dispatches thirty
// opcodes through its stack; this reads the same bytes into a tensor_record and lets the torch
// loader make the tensor, and leaves the machine as the general path would have (its charges to
// max_memory, its count of containers, the tensor's height bound). Nothing the reading does
// changes the result until the record is accepted: anything unexpected (another opcode, a global
// named here for the first time, a memo entry written here that the stream reads back, a limit
// the general path would reach on the way, text that is not UTF-8, a declined or failing record)
// leaves the position at the MARK and the general path runs over the same bytes.
#include <array>

#include "machine.h"

namespace pthio::detail {

namespace {

// Dimensions a record may have on the fast path; more (legal, rare) take the general path.
constexpr std::size_t max_fast_dims = 16;

// A look-ahead over the pickle: its own detail::byte_reader at the machine's position, every read
// checked against what remains first, so that none throws; a record cut short is simply not in
// the expected form.
class record_reader {
 public:
  record_reader(std::span<const std::byte> data, std::size_t pos)
      : in_(data, errc::corrupt_pickle, std::string()) {
    in_.seek(pos);
  }
  std::size_t pos() const noexcept { return in_.pos(); }
  int peek() const { return in_.remaining() ? static_cast<int>(in_.peek_u8()) : -1; }
  bool take(opcode op) {
    if (peek() != static_cast<int>(op)) return false;
    in_.u8();
    return true;
  }
  // A little-endian integer of 1, 2, 4 or 8 bytes (LONG1: 0 to 8).
  bool le(int n, std::uint64_t& v) {
    if (in_.remaining() < static_cast<std::size_t>(n)) return false;
    switch (n) {
      case 1: v = in_.u8(); break;
      case 2: v = in_.le16(); break;
      case 4: v = in_.le32(); break;
      case 8: v = in_.le64(); break;
      default:
        v = 0;
        for (int k = 0; k < n; ++k) v |= std::uint64_t{in_.u8()} << (8 * k);
    }
    return true;
  }
  bool chars(std::uint64_t n, std::string_view& s) {
    if (n > in_.remaining()) return false;
    s = in_.chars(n);
    return true;
  }

 private:
  detail::byte_reader in_;
};

}  // namespace

// A memo entry made inside the record is only skipped when the stream never reads it back (the
// general path would not store it either); the memo itself is only read.
bool pickle_machine::fast_skip_put(void* reader) {
  auto& r = *static_cast<record_reader*>(reader);
  std::uint64_t index;
  if (r.take(opcode::BINPUT)) {
    if (!r.le(1, index)) return false;
  } else if (r.take(opcode::LONG_BINPUT)) {
    if (!r.le(4, index)) return false;
  } else {
    return true;  // no PUT here
  }
  return index < lim_.max_memo && !reads_.will_read(index);
}

const value* pickle_machine::fast_memo(void* reader) {
  auto& r = *static_cast<record_reader*>(reader);
  std::uint64_t index;
  if (r.take(opcode::BINGET)) {
    if (!r.le(1, index)) return nullptr;
  } else if (r.take(opcode::LONG_BINGET)) {
    if (!r.le(4, index)) return nullptr;
  } else {
    return nullptr;
  }
  if (memo_dense_.has(index)) return &memo_dense_[static_cast<std::size_t>(index)];
  if (auto it = memo_sparse_.find(index); it != memo_sparse_.end()) return &it->second;
  return nullptr;
}

bool pickle_machine::fast_str(void* reader, std::string_view& s) {
  auto& r = *static_cast<record_reader*>(reader);
  std::uint64_t n;
  const int op = r.peek();
  if (op == static_cast<int>(opcode::SHORT_BINUNICODE) ||
      op == static_cast<int>(opcode::BINUNICODE) || op == static_cast<int>(opcode::BINUNICODE8)) {
    r.take(static_cast<opcode>(op));
    const int width = op == static_cast<int>(opcode::SHORT_BINUNICODE) ? 1
                      : op == static_cast<int>(opcode::BINUNICODE)     ? 4
                                                                       : 8;
    if (!r.le(width, n) || !r.chars(n, s) || !valid_utf8(s, true)) return false;
    fast_charge_ += n + 64 + (n > 15 ? 24 : 0);  // arg_payload's and text()'s charges
  } else {
    const value* v = fast_memo(reader);
    if (!v || !v->is_str()) return false;
    s = v->as_str();
  }
  return fast_skip_put(reader);
}

bool pickle_machine::fast_int(void* reader, std::int64_t& v) {
  auto& r = *static_cast<record_reader*>(reader);
  std::uint64_t u;
  if (r.take(opcode::BININT1)) {
    if (!r.le(1, u)) return false;
    v = static_cast<std::int64_t>(u);
  } else if (r.take(opcode::BININT2)) {
    if (!r.le(2, u)) return false;
    v = static_cast<std::int64_t>(u);
  } else if (r.take(opcode::BININT)) {
    if (!r.le(4, u)) return false;
    v = static_cast<std::int32_t>(static_cast<std::uint32_t>(u));
  } else if (r.take(opcode::LONG1)) {
    // Python's long: little-endian two's complement; up to 8 bytes is an int64.
    std::uint64_t n;
    if (!r.le(1, n) || n > 8 || !r.le(static_cast<int>(n), u)) return false;
    fast_charge_ += n;  // LONG1's charge
    if (n == 0) {
      v = 0;
    } else {
      const unsigned bits = 8 * static_cast<unsigned>(n);
      if (bits < 64 && (u >> (bits - 1)) & 1) u |= ~std::uint64_t{0} << bits;  // sign-extend
      v = static_cast<std::int64_t>(u);
    }
  } else {
    return false;
  }
  return fast_skip_put(reader);
}

// A tuple of ints: EMPTY_TUPLE, one to three ints and TUPLE1-3, or MARK ints TUPLE.
bool pickle_machine::fast_int_tuple(void* reader, std::int64_t* out, std::size_t& n, bool& marked) {
  auto& r = *static_cast<record_reader*>(reader);
  n = 0;
  marked = false;
  if (r.take(opcode::EMPTY_TUPLE)) return fast_skip_put(reader);
  marked = r.take(opcode::MARK);
  for (;;) {
    const int op = r.peek();
    if (op == static_cast<int>(opcode::TUPLE)) {
      if (!marked) return false;
      break;
    }
    if (op == static_cast<int>(opcode::TUPLE1) || op == static_cast<int>(opcode::TUPLE2) ||
        op == static_cast<int>(opcode::TUPLE3)) {
      if (marked || n != static_cast<std::size_t>(op - static_cast<int>(opcode::TUPLE1) + 1))
        return false;
      break;
    }
    if (n == max_fast_dims || !fast_int(reader, out[n])) return false;
    ++n;
  }
  r.take(static_cast<opcode>(r.peek()));
  // MARK TUPLE with nothing between is the empty tuple, as EMPTY_TUPLE.
  return fast_skip_put(reader);
}

bool pickle_machine::fast_global(void* reader, const value*& g) {
  const value* v = fast_memo(reader);
  if (!v || !v->is_global()) return false;
  g = v;
  return fast_skip_put(reader);
}

// At a MARK whose stack top is the _rebuild_tensor_v2 global: reads the whole record and, when
// the loader accepts it, leaves the tensor in the global's place, past the record's REDUCE, with
// the machine where the general path would have left it: the same charges to max_memory, the
// same count of containers for the walk at STOP, the same height bound. What the general path
// would refuse on the way (a limit, a stack that must grow) is left to it.
bool pickle_machine::fast_tensor_record() {
  record_reader r(in_.data(), in_.pos());
  void* rp = &r;
  fast_charge_ = 0;
  tensor_record rec;
  std::array<std::int64_t, max_fast_dims> size{}, stride{};
  std::size_t size_n = 0, stride_n = 0;
  bool size_marked = false, stride_marked = false;
  std::string_view tag;
  const value* storage_class = nullptr;
  const value* hooks = nullptr;
  bool ok = r.take(opcode::MARK) && fast_str(rp, tag) && tag == "storage" &&
            fast_global(rp, storage_class) && fast_str(rp, rec.key) && fast_str(rp, rec.location) &&
            fast_int(rp, rec.numel) && r.take(opcode::TUPLE) && fast_skip_put(rp) &&
            r.take(opcode::BINPERSID) && fast_skip_put(rp) && fast_int(rp, rec.storage_offset) &&
            fast_int_tuple(rp, size.data(), size_n, size_marked) &&
            fast_int_tuple(rp, stride.data(), stride_n, stride_marked);
  if (!ok) return false;
  rec.storage_class = &storage_class->as_global();
  if (r.take(opcode::NEWTRUE))
    rec.requires_grad = true;
  else if (!r.take(opcode::NEWFALSE))
    return false;
  ok = fast_skip_put(rp) && fast_global(rp, hooks) && is_plain_ordered_dict(*hooks) &&
       r.take(opcode::EMPTY_TUPLE) && fast_skip_put(rp) && r.take(opcode::REDUCE) &&
       fast_skip_put(rp) && r.take(opcode::TUPLE) && fast_skip_put(rp) && r.take(opcode::REDUCE);
  if (!ok) return false;
  // The general path's MARKs (two, three with a tuple in MARK form) and its stack: the values it
  // holds above the global at most (the id's five, a tuple's ints after the offset and the size,
  // or the seven before the OrderedDict's call), without growing the stack's blocks.
  const bool third_mark = size_marked || stride_marked;
  if (marks_.size() + (third_mark ? 3 : 2) > lim_.max_depth) return false;
  const std::size_t peak = stack_.size() + std::max<std::size_t>({7, 2 + size_n, 3 + stride_n});
  if (peak > lim_.max_stack || stack_.capacity() < peak || heights_.capacity() < peak) return false;
  // Its charges: the strings read fresh and LONG1 payloads (fast_charge_), the id's tuple, the
  // size and stride tuples (none when empty), the OrderedDict, the argument tuple.
  auto tuple_bytes = [](std::uint64_t n) { return n ? (n + 1) * slot_bytes + 64 : 0; };
  const std::uint64_t total = fast_charge_ + tuple_bytes(5) + tuple_bytes(size_n) +
                              tuple_bytes(stride_n) + sizeof(dict_object) + 64 + tuple_bytes(6);
  std::uint64_t after;
  if (!detail::checked_add(memory_, total, after) || after > lim_.max_memory) return false;
  rec.size = std::span<const std::int64_t>(size.data(), size_n);
  rec.stride = std::span<const std::int64_t>(stride.data(), stride_n);
  std::optional<value> t;
  try {
    t = opt_.load_tensor_record(rec);
  } catch (const error&) {
    return false;  // the general path meets the same problem and says where
  }
  if (!t) return false;
  charge(total);
  tuple_count_ += 2 + (size_n ? 1 : 0) + (stride_n ? 1 : 0);
  ++unbuilt_dicts_;
  in_.seek(r.pos());
  stack_.back() = std::move(*t);
  // The general path's bound: the OrderedDict's call 3, the argument tuple 4, the call 6.
  heights_.back() = 6;
  note_height(6);
  return true;
}

// Whether v is collections.OrderedDict called as the built-in (no handler in the table replaces
// it): remembered like is_rebuild_v2, the value kept alive so that its address stays its own.
bool pickle_machine::is_plain_ordered_dict(const value& v) {
  const global_ref& g = v.as_global();
  if (!od_global_.is_none() && &od_global_.as_global() == &g) return true;
  if (g.module != "collections" || g.name != "OrderedDict") return false;
  if (opt_.globals)
    if (const reduce_fn* h = opt_.globals->find(g.module, g.name); h && *h) return false;
  od_global_ = v;
  return true;
}

// Whether v is torch._utils._rebuild_tensor_v2 with a handler: remembered by the address of its
// name pair (the memoized global of every record), kept alive in rebuild_v2_.
bool pickle_machine::is_rebuild_v2(const value& v) {
  if (!v.is_global()) return false;
  const global_ref* g = &v.as_global();
  if (!rebuild_v2_.is_none() && &rebuild_v2_.as_global() == g) return true;
  if (g->module != "torch._utils" || g->name != "_rebuild_tensor_v2" || !opt_.globals) return false;
  const reduce_fn* h = opt_.globals->find(g->module, g->name);
  if (!h || !*h) return false;
  rebuild_v2_ = v;
  return true;
}

}  // namespace pthio::detail
