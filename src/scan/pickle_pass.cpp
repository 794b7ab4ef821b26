// The scanner's opcode pass (pickle_pass.h). Values are tracked just far enough to name every
// import and to judge every call; everything else is "other".
#include "pickle_pass.h"

#include <cstring>
#include <unordered_map>

#include "../byte_reader.h"
#include "../pickle/compat_names.h"
#include "../pickle/opcodes.h"
#include "../pickle/text.h"

namespace pthio::detail {

namespace {

// Past these the pass stops following values (the rest of the pickle is swept for imports):
// bounded memory whatever the input.
constexpr std::size_t max_stack = std::size_t{1} << 22;
constexpr std::size_t max_memo = std::size_t{1} << 22;
constexpr std::size_t max_containers = std::size_t{1} << 23;
constexpr std::size_t max_string_bytes = std::size_t{64} << 20;
// Strings kept for what they say (a protocol 4 name may be a long dotted path: "path.os." * 80
// + "system" is os.system); longer ones are only known to be strings. The resynchronising sweep
// looks for names of up to sweep_name bytes.
constexpr std::size_t max_name = 64 * 1024;
constexpr std::size_t sweep_name = 512;
constexpr std::size_t max_line = 64 * 1024;  // a protocol 0 argument line

enum class kind : std::uint8_t {
  unknown,     // lost to an error: a call on it is unresolved
  str,         // a literal str or bytes (ref: strings_)
  longstr,     // one longer than max_name: a string, its text not kept
  import,      // an imported object (ref: the import's index in the result)
  called,      // what calling an import returned (ref: the import)
  container,   // a dict, list, tuple, set (ref: containers_)
  persistent,  // what persistent_load returned: torch's legacy loader hands back the class a
               // ('module', class, ...) id names, which the stream then calls; that class is an
               // import of its own, judged where it appears
  other,       // numbers, None, long strings, persistent objects
};

struct aval {
  kind k = kind::other;
  std::uint32_t ref = 0;
};

// Container flags: a dict holds a dunder str key; a dict holds any key; what it is.
constexpr std::uint8_t dunder_key = 1, nonempty = 2, is_dict = 4, is_list = 8, is_tuple = 16,
                       is_set = 32;
constexpr std::uint32_t none = 0xffffffffu;

struct container {
  std::uint8_t flags = 0;
  std::uint32_t dunder = none;  // a dict's first dunder key (strings_)
  // The first two containers a tuple holds: BUILD's (state, slotstate).
  std::uint32_t child[2] = {none, none};
};

bool is_dunder(std::string_view s) {
  return s.size() > 4 && s.starts_with("__") && s.ends_with("__");
}

bool ident_char(unsigned char c, bool first) {
  return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (!first && c >= '0' && c <= '9') || c >= 0x80;
}

// A dotted Python name, as a resynchronising sweep accepts it.
bool dotted_name(std::string_view s) {
  if (s.empty() || s.size() > sweep_name) return false;
  bool first = true;
  for (unsigned char c : s) {
    if (c == '.') {
      if (first) return false;
      first = true;
      continue;
    }
    if (!ident_char(c, first)) return false;
    first = false;
  }
  return !first;
}

std::uint8_t u8(std::span<const std::byte> d, std::size_t i) {
  return std::to_integer<std::uint8_t>(d[i]);
}

constexpr auto layouts = opcode_layouts();

class machine {
 public:
  machine(std::span<const std::byte> data, pass_result& out) : d_(data), out_(out) {}

  enum class ending { stop, lost, eof };

  // Follows one pickle from `pos` to its STOP. On `lost` (a byte that is no opcode, an argument
  // that does not parse, a limit) or `eof`, pos_ is where the trouble is.
  // resynced: the stream was picked up again after a byte the pass could not follow. What it
  // reads there is a guess: only imports spelled as names count, not findings that depend on
  // the values before (Python stops at the first error; a scanner looks on for imports only).
  ending run(std::size_t start, bool resynced) {
    reset();
    resynced_ = resynced;
    pos_ = start;
    while (pos_ < d_.size()) {
      op_pos_ = pos_;
      const std::uint8_t code = u8(d_, pos_++);
      if (!layouts[code].known) {
        error(op_pos_, "byte " + hex_byte(code) + " is no pickle opcode");
        pos_ = op_pos_ + 1;
        return ending::lost;
      }
      op_ = opcode_name(code);
      switch (step(static_cast<opcode>(code))) {
        case flow::go: break;
        case flow::stop: return ending::stop;
        case flow::lost: return ending::lost;
      }
    }
    op_pos_ = pos_;
    return ending::eof;
  }

  std::size_t pos() const noexcept { return pos_; }

  void error(std::uint64_t at, std::string message) {
    if (out_.errors.size() < pass_max_errors) out_.errors.push_back({at, std::move(message)});
    ++out_.error_count;
  }

  // The imports between `from` and the next place the stream can be followed from again: a
  // PROTO, a GLOBAL or INST whose lines are names. Returns that place (or the end).
  std::size_t resync(std::size_t from) {
    for (std::size_t q = from; q < d_.size(); ++q) {
      const std::uint8_t b = u8(d_, q);
      if (b == op(opcode::PROTO) && q + 2 < d_.size() && u8(d_, q + 1) <= 5 &&
          layouts[u8(d_, q + 2)].known)
        return q;
      if (b == op(opcode::GLOBAL) || b == op(opcode::INST)) {
        std::size_t p = q + 1;
        auto m = line_at(p, max_line), n = line_at(p, max_line);
        if (m && n && dotted_name(*m) && dotted_name(*n)) return q;
      }
      // string [memo] string [memo] STACK_GLOBAL
      std::size_t p = q;
      std::string a, b2;
      if (string_at(p, a) && dotted_name(a)) {
        skip_memo_op(p);
        if (string_at(p, b2) && dotted_name(b2)) {
          skip_memo_op(p);
          if (p < d_.size() && u8(d_, p) == op(opcode::STACK_GLOBAL)) {
            add_import(a, b2, p, "STACK_GLOBAL");
            q = p;
          }
        }
      }
    }
    return d_.size();
  }

 private:
  enum class flow { go, stop, lost };

  void reset() {
    stack_.clear();
    marks_.clear();
    memo_.clear();
    strings_.clear();
    string_bytes_ = 0;
    containers_.clear();
  }

  // --- reading arguments -----------------------------------------------------------------------

  bool have(std::size_t n) const { return d_.size() - pos_ >= n; }

  std::size_t newline_after(std::size_t p) const {
    if (nl_from_ <= p && (nl_at_ == SIZE_MAX || p <= nl_at_)) return nl_at_;
    const void* hit = p < d_.size() ? std::memchr(d_.data() + p, '\n', d_.size() - p) : nullptr;
    nl_from_ = p;
    nl_at_ =
        hit ? static_cast<std::size_t>(static_cast<const std::byte*>(hit) - d_.data()) : SIZE_MAX;
    return nl_at_;
  }

  std::optional<std::string_view> line_at(std::size_t& p, std::size_t max) const {
    const std::size_t i = newline_after(p);
    if (i == SIZE_MAX || i - p > max) return std::nullopt;
    std::string_view s(reinterpret_cast<const char*>(d_.data()) + p, i - p);
    p = i + 1;
    return s;
  }

  // A text memo index as CPython's C unpickler reads it: PyLong_FromString stops at a NUL.
  static std::optional<std::int64_t> memo_index(std::string_view line) {
    return memo_index_text(line.substr(0, line.find('\0')));
  }

  // A string or bytes opcode at p and what it holds (short ones only); p moves past it.
  bool string_at(std::size_t& p, std::string& s) const {
    if (p >= d_.size()) return false;
    const std::uint8_t c = u8(d_, p);
    std::size_t width = 0;
    switch (static_cast<opcode>(c)) {
      case opcode::SHORT_BINUNICODE:
      case opcode::SHORT_BINSTRING:
      case opcode::SHORT_BINBYTES: width = 1; break;
      case opcode::BINUNICODE:
      case opcode::BINSTRING:
      case opcode::BINBYTES: width = 4; break;
      case opcode::BINUNICODE8:
      case opcode::BINBYTES8: width = 8; break;
      default: return false;
    }
    if (d_.size() - p - 1 < width) return false;
    const std::uint64_t n = load_le(d_.data() + p + 1, static_cast<int>(width));
    if (n > sweep_name || d_.size() - p - 1 - width < n) return false;
    s.assign(reinterpret_cast<const char*>(d_.data()) + p + 1 + width, n);
    p += 1 + width + n;
    return true;
  }

  void skip_memo_op(std::size_t& p) const {
    if (p >= d_.size()) return;
    const std::uint8_t c = u8(d_, p);
    if (c == op(opcode::MEMOIZE))
      p += 1;
    else if (c == op(opcode::BINPUT) && p + 2 <= d_.size())
      p += 2;
    else if (c == op(opcode::LONG_BINPUT) && p + 5 <= d_.size())
      p += 5;
  }

  std::optional<std::string_view> arg_line() { return line_at(pos_, d_.size()); }

  const std::byte* arg_bytes(std::size_t n) {
    const std::byte* p = d_.data() + pos_;
    pos_ += n;
    return p;
  }

  // --- values ----------------------------------------------------------------------------------

  bool push(aval v) {
    if (stack_.size() >= max_stack) return false;
    stack_.push_back(v);
    return true;
  }

  aval pop() {
    if (stack_.size() > (marks_.empty() ? 0 : marks_.back())) {
      aval v = stack_.back();
      stack_.pop_back();
      return v;
    }
    error(op_pos_, std::string(op_) + ": the stack is empty");
    return {kind::unknown, 0};
  }

  aval& top() {
    static thread_local aval lost;
    if (stack_.size() > (marks_.empty() ? 0 : marks_.back())) return stack_.back();
    error(op_pos_, std::string(op_) + ": the stack is empty");
    lost = {kind::unknown, 0};
    return lost;
  }

  // The values since the last MARK, which is removed.
  std::vector<aval> pop_mark() {
    if (marks_.empty()) {
      error(op_pos_, std::string(op_) + ": no MARK before it");
      std::vector<aval> all(stack_.begin(), stack_.end());
      stack_.clear();
      return all;
    }
    const std::size_t m = marks_.back();
    marks_.pop_back();
    std::vector<aval> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }

  bool push_string(std::string s) {
    // Each string costs its box as well as its text: empty strings are not free.
    const std::size_t cost = sizeof(std::string) + s.size();
    if (s.size() > max_name) return push({kind::longstr, 0});
    if (string_bytes_ + cost > max_string_bytes) {
      out_.hit_limit = true;
      return push({kind::other, 0});
    }
    string_bytes_ += cost;
    strings_.push_back(std::move(s));
    return push({kind::str, static_cast<std::uint32_t>(strings_.size() - 1)});
  }

  bool push_container(std::uint8_t flags, const std::vector<aval>* items = nullptr) {
    if (containers_.size() >= max_containers) {
      out_.hit_limit = true;  // BUILD states past here are not judged: not a clean read
      error(op_pos_, "more containers than the scan follows");
      return push({kind::unknown, 0});
    }
    container c;
    c.flags = flags;
    if (items) {
      int n = 0;
      for (const aval& v : *items)
        if (v.k == kind::container && n < 2) c.child[n++] = v.ref;
    }
    containers_.push_back(c);
    return push({kind::container, static_cast<std::uint32_t>(containers_.size() - 1)});
  }

  // Whether `target` may take what `want` (is_dict, is_list, is_set) takes: an object a call
  // returned or an unknown value may (its own methods run); a literal of another kind may not.
  bool takes(const aval& target, std::uint8_t want) {
    if (target.k == kind::called || target.k == kind::unknown || target.k == kind::persistent)
      return false;
    if (target.k == kind::container && (containers_[target.ref].flags & want)) return true;
    error(op_pos_, std::string(op_) + ": onto a " + what(target) + ", not a " +
                       (want == is_dict  ? "dict"
                        : want == is_set ? "set"
                                         : "list"));
    return false;
  }

  std::string what(const aval& v) const {
    switch (v.k) {
      case kind::str:
      case kind::longstr: return "str";
      case kind::import: return "class or function";
      case kind::container: {
        const std::uint8_t f = containers_[v.ref].flags;
        return f & is_dict ? "dict" : f & is_list ? "list" : f & is_tuple ? "tuple" : "set";
      }
      case kind::other: return "number or constant";
      case kind::persistent: return "persistent object";
      default: return "value";
    }
  }

  // A dict's flags after key `k` is set in it.
  void set_key(const aval& dict, const aval& k) {
    if (!takes(dict, is_dict)) return;
    std::uint8_t& f = containers_[dict.ref].flags;
    f |= nonempty;
    if (k.k == kind::str && is_dunder(strings_[k.ref]) && !(f & dunder_key)) {
      f |= dunder_key;
      containers_[dict.ref].dunder = k.ref;
    }
  }

  std::uint32_t add_import(std::string module, std::string name, std::uint64_t at,
                           std::string_view op) {
    std::string key = module + '\n' + name;
    auto [it, fresh] = import_index_.emplace(std::move(key), out_.imports.size());
    if (fresh) out_.imports.push_back({std::move(module), std::move(name), 0, {}});
    pass_import& i = out_.imports[it->second];
    ++i.count;
    if (i.sites.size() < pass_max_sites) i.sites.push_back({at, op});
    return static_cast<std::uint32_t>(it->second);
  }

  aval import_value(std::string module, std::string name) {
    if (resynced_ && !(module.empty() ? false : dotted_name(module) && dotted_name(name)))
      return {kind::unknown, 0};
    return {kind::import, add_import(std::move(module), std::move(name), op_pos_, op_)};
  }

  aval finding(std::string what) { return import_value("", std::move(what)); }

  std::string qualified(const aval& v) const {
    const pass_import& i = out_.imports[v.ref];
    return i.module.empty() ? i.name : i.module + "." + i.name;
  }

  // The value a call (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST) on `callable` leaves.
  aval call(const aval& callable) {
    switch (callable.k) {
      case kind::import: return {kind::called, callable.ref};
      case kind::persistent: return {kind::persistent, 0};
      // What a call returned, called in turn (getattr(x, 'system')(...)), or a value lost to
      // an error: what runs is not known here.
      case kind::called:
      case kind::unknown: finding("<unresolved call>"); return {kind::unknown, 0};
      default:
        error(op_pos_, std::string(op_) + ": calls a value that is not callable");
        return {kind::unknown, 0};
    }
  }

  aval memo_get(std::uint64_t i) {
    auto it = memo_.find(i);
    if (it != memo_.end()) return it->second;
    error(op_pos_, std::string(op_) + ": memo index " + std::to_string(i) + " is not defined");
    return {kind::unknown, 0};
  }

  bool memo_put(std::uint64_t i) {
    const aval v = top();
    if (memo_.size() >= max_memo && !memo_.contains(i)) return false;
    memo_[i] = v;
    return true;
  }

  flow too_big(const char* what) {
    out_.hit_limit = true;
    error(op_pos_, std::string("the pickle's ") + what + " is past what the scan follows");
    pos_ = op_pos_ + 1;
    return flow::lost;
  }

  // An argument that runs past the end: its length may lie, so the stream is searched on from
  // the byte after the opcode.
  flow cut() {
    error(op_pos_, std::string(op_) + ": the argument runs past the end of the data");
    pos_ = op_pos_ + 1;
    return flow::lost;
  }

  flow bad(std::string why) {
    error(op_pos_, std::string(op_) + ": " + why);
    pos_ = op_pos_ + 1;
    return flow::lost;
  }

  // --- one opcode ------------------------------------------------------------------------------

  flow step(opcode o) {
    const opcode_layout l = layouts[op(o)];
    // Fixed and counted arguments are checked here once.
    std::uint64_t count = 0;
    if (l.arg == pickle_arg::fixed && !have(l.size)) return cut();
    if (l.arg == pickle_arg::counted) {
      if (!have(l.size)) return cut();
      count = load_le(arg_bytes(l.size), l.size);
      if (o == opcode::BINSTRING && count > 0x7fffffffu) return bad("negative length");
      if (!have(count)) return cut();
    }
    auto str_arg = [&] {
      return std::string(reinterpret_cast<const char*>(arg_bytes(count)), count);
    };
    bool pushed = true;
    switch (o) {
      case opcode::MARK: marks_.push_back(stack_.size()); break;
      case opcode::STOP: pop(); return flow::stop;
      case opcode::POP:
        if (stack_.size() > (marks_.empty() ? 0 : marks_.back()))
          stack_.pop_back();
        else if (!marks_.empty())
          pop_mark();  // Python 3: POP on an empty frame drops the mark
        else
          pop();
        break;
      case opcode::POP_MARK: pop_mark(); break;
      case opcode::DUP: pushed = push(top()); break;
      case opcode::FLOAT:
      case opcode::INT:
      case opcode::LONG:
      case opcode::PERSID:
        if (!arg_line()) return cut();
        pushed = push({o == opcode::PERSID ? kind::persistent : kind::other, 0});
        break;
      case opcode::BININT:
      case opcode::BININT1:
      case opcode::BININT2:
      case opcode::BINFLOAT:
        arg_bytes(l.size);
        pushed = push({kind::other, 0});
        break;
      case opcode::LONG1:
      case opcode::LONG4:
      case opcode::BYTEARRAY8:
        arg_bytes(count);
        pushed = push({kind::other, 0});
        break;
      case opcode::NONE:
      case opcode::NEWTRUE:
      case opcode::NEWFALSE:
      case opcode::NEXT_BUFFER: pushed = push({kind::other, 0}); break;
      case opcode::READONLY_BUFFER: top(); break;
      case opcode::BINPERSID:
        pop();
        pushed = push({kind::persistent, 0});
        break;
      case opcode::STRING: {
        auto line = arg_line();
        if (!line) return cut();
        std::string_view s = *line;
        if (s.size() < 2 || s.front() != s.back() || (s.front() != '\'' && s.front() != '"'))
          return bad("the string is not quoted");
        std::string why;
        auto text = escape_decode(s.substr(1, s.size() - 2), why);
        if (!text) return bad(why);
        pushed = push_string(std::move(*text));
        break;
      }
      case opcode::UNICODE: {
        auto line = arg_line();
        if (!line) return cut();
        std::string why;
        auto text = raw_unicode_escape_decode(*line, why);
        if (!text) return bad(why);
        pushed = push_string(std::move(*text));
        break;
      }
      case opcode::BINSTRING:
      case opcode::SHORT_BINSTRING:
      case opcode::BINUNICODE:
      case opcode::SHORT_BINUNICODE:
      case opcode::BINUNICODE8:
      case opcode::BINBYTES:
      case opcode::SHORT_BINBYTES:
      case opcode::BINBYTES8:
        // bytes count as names too: a scanner does not bet on STACK_GLOBAL refusing them.
        if (count > max_name) {
          arg_bytes(count);
          pushed = push({kind::longstr, 0});
        } else {
          pushed = push_string(str_arg());
        }
        break;
      case opcode::EMPTY_DICT: pushed = push_container(is_dict); break;
      case opcode::EMPTY_LIST: pushed = push_container(is_list); break;
      case opcode::EMPTY_TUPLE: pushed = push_container(is_tuple); break;
      case opcode::EMPTY_SET: pushed = push_container(is_set); break;
      case opcode::DICT: {
        auto items = pop_mark();
        pushed = push_container(is_dict);
        if (pushed && stack_.back().k == kind::container) {
          const aval d = stack_.back();
          for (std::size_t i = 0; i + 1 < items.size(); i += 2) set_key(d, items[i]);
          if (items.size() % 2) error(op_pos_, "DICT: an odd number of items");
        }
        break;
      }
      case opcode::LIST:
        pop_mark();
        pushed = push_container(is_list);
        break;
      case opcode::FROZENSET:
        pop_mark();
        pushed = push_container(is_set);
        break;
      case opcode::TUPLE: {
        auto items = pop_mark();
        pushed = push_container(is_tuple, &items);
        break;
      }
      case opcode::TUPLE1:
      case opcode::TUPLE2:
      case opcode::TUPLE3: {
        const int n = o == opcode::TUPLE1 ? 1 : o == opcode::TUPLE2 ? 2 : 3;
        std::vector<aval> items(static_cast<std::size_t>(n));
        for (int i = n - 1; i >= 0; --i) items[static_cast<std::size_t>(i)] = pop();
        pushed = push_container(is_tuple, &items);
        break;
      }
      case opcode::APPEND: {
        pop();
        takes(top(), is_list);
        break;
      }
      case opcode::APPENDS:
      case opcode::ADDITEMS: {
        pop_mark();
        takes(top(), o == opcode::ADDITEMS ? is_set : is_list);
        break;
      }
      case opcode::SETITEM: {
        pop();
        const aval k = pop();
        set_key(top(), k);
        break;
      }
      case opcode::SETITEMS: {
        auto items = pop_mark();
        const aval d = top();
        if (items.empty()) takes(d, is_dict);
        for (std::size_t i = 0; i + 1 < items.size(); i += 2) set_key(d, items[i]);
        if (items.size() % 2) error(op_pos_, "SETITEMS: an odd number of items");
        break;
      }
      case opcode::GET: {
        auto line = arg_line();
        if (!line) return cut();
        auto i = memo_index(*line);
        if (!i || *i < 0) return bad("the memo index is not a number");
        pushed = push(memo_get(static_cast<std::uint64_t>(*i)));
        break;
      }
      case opcode::BINGET:
      case opcode::LONG_BINGET: pushed = push(memo_get(load_le(arg_bytes(l.size), l.size))); break;
      case opcode::PUT: {
        auto line = arg_line();
        if (!line) return cut();
        auto i = memo_index(*line);
        if (!i || *i < 0) return bad("the memo index is not a number");
        if (!memo_put(static_cast<std::uint64_t>(*i))) return too_big("memo");
        break;
      }
      case opcode::BINPUT:
      case opcode::LONG_BINPUT:
        if (!memo_put(load_le(arg_bytes(l.size), l.size))) return too_big("memo");
        break;
      case opcode::MEMOIZE:
        if (!memo_put(memo_.size())) return too_big("memo");
        break;
      case opcode::GLOBAL:
      case opcode::INST: {
        auto m = arg_line();
        if (!m) return cut();
        auto n = arg_line();
        if (!n) return cut();
        global_ref g = python3_name(std::string(*m), std::string(*n));
        const aval imp = import_value(std::move(g.module), std::move(g.name));
        if (o == opcode::GLOBAL) {
          pushed = push(imp);
        } else {
          pop_mark();
          pushed = push(call(imp));
        }
        break;
      }
      case opcode::STACK_GLOBAL: {
        const aval n = pop(), m = pop();
        if (m.k == kind::str && n.k == kind::str) {
          global_ref g = python3_name(strings_[m.ref], strings_[n.ref]);
          pushed = push(import_value(std::move(g.module), std::move(g.name)));
        } else if ((m.k == kind::str || m.k == kind::longstr) &&
                   (n.k == kind::str || n.k == kind::longstr)) {
          out_.named_stack_global = true;
          pushed = push(finding("<unresolved STACK_GLOBAL>"));
        } else {
          for (const aval& v : {m, n})
            if (v.k != kind::str && v.k != kind::unknown && v.k != kind::called) {
              error(op_pos_, "STACK_GLOBAL: the module and name are a " + what(m) + " and a " +
                                 what(n) + ", not strings");
              break;
            }
          pushed = push(finding("<unresolved STACK_GLOBAL>"));
        }
        break;
      }
      case opcode::EXT1:
      case opcode::EXT2:
      case opcode::EXT4: {
        const std::uint64_t code = load_le(arg_bytes(l.size), l.size);
        pushed = push(finding("<copyreg extension " + std::to_string(code) + ">"));
        break;
      }
      case opcode::REDUCE: {
        pop();  // args
        const aval f = pop();
        pushed = push(call(f));
        break;
      }
      case opcode::NEWOBJ: {
        pop();
        const aval cls = pop();
        pushed = push(call(cls));
        break;
      }
      case opcode::NEWOBJ_EX: {
        const aval kwargs = pop();
        pop();
        const aval cls = pop();
        if (kwargs.k == kind::container && (containers_[kwargs.ref].flags & nonempty) &&
            cls.k == kind::import)
          finding("<NEWOBJ_EX keywords to " + qualified(cls) + ">");
        pushed = push(call(cls));
        break;
      }
      case opcode::OBJ: {
        auto items = pop_mark();
        const aval cls = items.empty() ? aval{kind::unknown, 0} : items.front();
        if (items.empty()) error(op_pos_, "OBJ: no class after the MARK");
        pushed = push(call(cls));
        break;
      }
      case opcode::BUILD: {
        const aval state = pop();
        const aval target = top();
        if (target.k == kind::import)
          finding("<BUILD on " + qualified(target) + ">");
        else if (target.k == kind::unknown)
          finding("<unresolved call>");
        if (state.k == kind::container) {
          // The state dict, or a (state, slotstate) tuple's dicts.
          const container& c = containers_[state.ref];
          for (std::uint32_t i : {state.ref, c.child[0], c.child[1]})
            if (i != none && (containers_[i].flags & dunder_key)) {
              finding("<BUILD sets " + strings_[containers_[i].dunder] + ">");
              break;
            }
        }
        break;
      }
      case opcode::PROTO: {
        const std::uint8_t v = u8(d_, pos_);
        arg_bytes(1);
        if (v > 5) error(op_pos_, "PROTO: protocol " + std::to_string(v) + " is not one of 0-5");
        break;
      }
      case opcode::FRAME: arg_bytes(8); break;
    }
    if (!pushed) return too_big("stack");
    return flow::go;
  }

  std::span<const std::byte> d_;
  pass_result& out_;
  std::size_t pos_ = 0, op_pos_ = 0;
  std::string_view op_;
  std::vector<aval> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, aval> memo_;
  std::vector<std::string> strings_;
  std::size_t string_bytes_ = 0;
  std::vector<container> containers_;
  std::unordered_map<std::string, std::size_t> import_index_;  // "module\nname" -> imports
  bool resynced_ = false;
  // The first newline at or after nl_from_ (npos: none), so that text arguments and the resync
  // search do not look for the same newline again: linear time on any input.
  mutable std::size_t nl_from_ = SIZE_MAX, nl_at_ = 0;
};

}  // namespace

pass_result pickle_pass(std::span<const std::byte> data, pass_extent extent) {
  pass_result out;
  machine m(data, out);
  std::size_t pos = 0;
  bool first = true, resynced = false;
  while (pos < data.size()) {
    const std::size_t errors_before = out.error_count;
    const machine::ending e = m.run(pos, resynced);
    resynced = false;
    pos = m.pos();
    if (e == machine::ending::stop) {
      ++out.pickles;
      if (first) out.first_clean = out.error_count == errors_before;
      first = false;
      if (extent == pass_extent::one) break;
      continue;
    }
    first = false;
    if (e == machine::ending::eof) {
      m.error(pos, "the pickle ends without a STOP: the stream is cut short");
      break;
    }
    // Lost: pick the stream up again where it can be.
    if (extent == pass_extent::one) break;
    pos = m.resync(pos);
    resynced = true;
  }
  out.end = std::min(pos, data.size());
  return out;
}

}  // namespace pthio::detail
