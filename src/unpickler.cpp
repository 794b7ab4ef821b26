// pthio — pickle reader: a stack machine over every opcode of protocols 0-5, as listed by
// Python's pickletools, with the semantics of CPython's Lib/pickle.py (_Unpickler), except that
// nothing is ever imported or called: globals become values, and calls on them go to a handler
// table, a few built-in handlers, or become inert objects.
//
// Safety rules (docs/style.md): every input byte comes through one detail::byte_reader; every length
// is checked against the bytes remaining and charged to the memory limit before anything is
// allocated; the value stack and the mark stack are explicit and popped through checked
// helpers; nothing recurses on input depth. Every container the machine builds is recorded, so
// that on any error (and for garbage left behind on success) the containers can be emptied one
// by one, which breaks cycles and keeps destruction shallow.
#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "byte_reader.h"
#include "value_pool.h"
#include "value_internal.h"
#include "pthio/error.hpp"
#include "pthio/pickle.hpp"

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

namespace {

// ---------------------------------------------------------------------------------------------
// Opcodes, spelled and numbered as in Python's pickletools.

#define PTHIO_PICKLE_OPCODES(X)                                                                  \
  X(MARK, '(') X(STOP, '.') X(POP, '0') X(POP_MARK, '1') X(DUP, '2') X(FLOAT, 'F') X(INT, 'I')   \
  X(BININT, 'J') X(BININT1, 'K') X(LONG, 'L') X(BININT2, 'M') X(NONE, 'N') X(PERSID, 'P')        \
  X(BINPERSID, 'Q') X(REDUCE, 'R') X(STRING, 'S') X(BINSTRING, 'T') X(SHORT_BINSTRING, 'U')      \
  X(UNICODE, 'V') X(BINUNICODE, 'X') X(APPEND, 'a') X(BUILD, 'b') X(GLOBAL, 'c') X(DICT, 'd')    \
  X(EMPTY_DICT, '}') X(APPENDS, 'e') X(GET, 'g') X(BINGET, 'h') X(INST, 'i')                     \
  X(LONG_BINGET, 'j') X(LIST, 'l') X(EMPTY_LIST, ']') X(OBJ, 'o') X(PUT, 'p') X(BINPUT, 'q')     \
  X(LONG_BINPUT, 'r') X(SETITEM, 's') X(TUPLE, 't') X(EMPTY_TUPLE, ')') X(SETITEMS, 'u')         \
  X(BINFLOAT, 'G') X(PROTO, 0x80) X(NEWOBJ, 0x81) X(EXT1, 0x82) X(EXT2, 0x83) X(EXT4, 0x84)      \
  X(TUPLE1, 0x85) X(TUPLE2, 0x86) X(TUPLE3, 0x87) X(NEWTRUE, 0x88) X(NEWFALSE, 0x89)             \
  X(LONG1, 0x8a) X(LONG4, 0x8b) X(BINBYTES, 'B') X(SHORT_BINBYTES, 'C')                          \
  X(SHORT_BINUNICODE, 0x8c) X(BINUNICODE8, 0x8d) X(BINBYTES8, 0x8e) X(EMPTY_SET, 0x8f)           \
  X(ADDITEMS, 0x90) X(FROZENSET, 0x91) X(NEWOBJ_EX, 0x92) X(STACK_GLOBAL, 0x93)                  \
  X(MEMOIZE, 0x94) X(FRAME, 0x95) X(BYTEARRAY8, 0x96) X(NEXT_BUFFER, 0x97)                       \
  X(READONLY_BUFFER, 0x98)

enum class opcode : std::uint8_t {
#define PTHIO_X(name, code) name = code,
  PTHIO_PICKLE_OPCODES(PTHIO_X)
#undef PTHIO_X
};

std::string_view opcode_name(std::uint8_t code) {
  switch (static_cast<opcode>(code)) {
#define PTHIO_X(name, code) \
  case opcode::name:        \
    return #name;
    PTHIO_PICKLE_OPCODES(PTHIO_X)
#undef PTHIO_X
  }
  return "unknown opcode";
}

std::string hex_byte(std::uint8_t b) {
  static constexpr char digits[] = "0123456789abcdef";
  return {'0', 'x', digits[b >> 4], digits[b & 15]};
}

// ---------------------------------------------------------------------------------------------
// Python 2 -> 3 names (Lib/_compat_pickle.py NAME_MAPPING, then IMPORT_MAPPING), as
// Unpickler.find_class applies them with fix_imports.

struct import_rename { std::string_view from, to; };
struct name_rename { std::string_view module, name, to_module, to_name; };

constexpr import_rename import_mapping[] = {
    {"BaseHTTPServer", "http.server"}, {"CGIHTTPServer", "http.server"},
    {"ConfigParser", "configparser"}, {"Cookie", "http.cookies"}, {"Dialog", "tkinter.dialog"},
    {"DocXMLRPCServer", "xmlrpc.server"}, {"FileDialog", "tkinter.filedialog"},
    {"HTMLParser", "html.parser"}, {"Queue", "queue"}, {"ScrolledText", "tkinter.scrolledtext"},
    {"SimpleDialog", "tkinter.simpledialog"}, {"SimpleHTTPServer", "http.server"},
    {"SimpleXMLRPCServer", "xmlrpc.server"}, {"SocketServer", "socketserver"},
    {"StringIO", "io"}, {"Tix", "tkinter.tix"}, {"Tkconstants", "tkinter.constants"},
    {"Tkdnd", "tkinter.dnd"}, {"Tkinter", "tkinter"}, {"UserDict", "collections"},
    {"UserList", "collections"}, {"UserString", "collections"}, {"__builtin__", "builtins"},
    {"_abcoll", "collections.abc"}, {"_elementtree", "xml.etree.ElementTree"},
    {"_winreg", "winreg"}, {"anydbm", "dbm"}, {"cPickle", "pickle"}, {"cStringIO", "io"},
    {"commands", "subprocess"}, {"cookielib", "http.cookiejar"}, {"copy_reg", "copyreg"},
    {"dbhash", "dbm.bsd"}, {"dbm", "dbm.ndbm"}, {"dumbdbm", "dbm.dumb"},
    {"dummy_thread", "_dummy_thread"}, {"gdbm", "dbm.gnu"}, {"htmlentitydefs", "html.entities"},
    {"httplib", "http.client"}, {"markupbase", "_markupbase"}, {"repr", "reprlib"},
    {"robotparser", "urllib.robotparser"}, {"test.test_support", "test.support"},
    {"thread", "_thread"}, {"tkColorChooser", "tkinter.colorchooser"},
    {"tkCommonDialog", "tkinter.commondialog"}, {"tkFileDialog", "tkinter.filedialog"},
    {"tkFont", "tkinter.font"}, {"tkMessageBox", "tkinter.messagebox"},
    {"tkSimpleDialog", "tkinter.simpledialog"}, {"ttk", "tkinter.ttk"},
    {"urllib2", "urllib.request"}, {"urlparse", "urllib.parse"}, {"whichdb", "dbm"},
    {"xmlrpclib", "xmlrpc.client"},
};

constexpr name_rename name_mapping[] = {
    {"UserDict", "IterableUserDict", "collections", "UserDict"},
    {"UserDict", "UserDict", "collections", "UserDict"},
    {"UserList", "UserList", "collections", "UserList"},
    {"UserString", "UserString", "collections", "UserString"},
    {"__builtin__", "basestring", "builtins", "str"}, {"__builtin__", "intern", "sys", "intern"},
    {"__builtin__", "long", "builtins", "int"}, {"__builtin__", "reduce", "functools", "reduce"},
    {"__builtin__", "unichr", "builtins", "chr"}, {"__builtin__", "unicode", "builtins", "str"},
    {"__builtin__", "xrange", "builtins", "range"},
    {"_multiprocessing", "Connection", "multiprocessing.connection", "Connection"},
    {"_socket", "fromfd", "socket", "fromfd"}, {"itertools", "ifilter", "builtins", "filter"},
    {"itertools", "ifilterfalse", "itertools", "filterfalse"},
    {"itertools", "imap", "builtins", "map"}, {"itertools", "izip", "builtins", "zip"},
    {"itertools", "izip_longest", "itertools", "zip_longest"},
    {"multiprocessing", "AuthenticationError", "multiprocessing.context", "AuthenticationError"},
    {"multiprocessing", "BufferTooShort", "multiprocessing.context", "BufferTooShort"},
    {"multiprocessing", "ProcessError", "multiprocessing.context", "ProcessError"},
    {"multiprocessing", "TimeoutError", "multiprocessing.context", "TimeoutError"},
    {"multiprocessing.forking", "Popen", "multiprocessing.popen_fork", "Popen"},
    {"multiprocessing.process", "Process", "multiprocessing.context", "Process"},
    {"socket", "_socketobject", "socket", "SocketType"},
    {"urllib", "ContentTooShortError", "urllib.error", "ContentTooShortError"},
    {"urllib", "getproxies", "urllib.request", "getproxies"},
    {"urllib", "pathname2url", "urllib.request", "pathname2url"},
    {"urllib", "quote", "urllib.parse", "quote"},
    {"urllib", "quote_plus", "urllib.parse", "quote_plus"},
    {"urllib", "unquote", "urllib.parse", "unquote"},
    {"urllib", "unquote_plus", "urllib.parse", "unquote_plus"},
    {"urllib", "url2pathname", "urllib.request", "url2pathname"},
    {"urllib", "urlcleanup", "urllib.request", "urlcleanup"},
    {"urllib", "urlencode", "urllib.parse", "urlencode"},
    {"urllib", "urlopen", "urllib.request", "urlopen"},
    {"urllib", "urlretrieve", "urllib.request", "urlretrieve"},
    {"urllib2", "HTTPError", "urllib.error", "HTTPError"},
    {"urllib2", "URLError", "urllib.error", "URLError"},
    {"whichdb", "whichdb", "dbm", "whichdb"},
    {"exceptions", "StandardError", "builtins", "Exception"},
};

global_ref python3_name(std::string module, std::string name) {
  for (const auto& m : name_mapping)
    if (m.module == module && m.name == name) return {std::string(m.to_module), std::string(m.to_name)};
  if (module == "exceptions") return {"builtins", std::move(name)};  // every Python 2 exception
  for (const auto& m : import_mapping)
    if (m.from == module) return {std::string(m.to), std::move(name)};
  return {std::move(module), std::move(name)};
}

// ---------------------------------------------------------------------------------------------
// Text helpers.

// Python's strict UTF-8 decoder: no overlong forms, nothing past U+10FFFF, no truncated
// sequences; surrogates (U+D800-U+DFFF) only under "surrogatepass", which pickle uses for
// BINUNICODE and friends.
bool valid_utf8(std::string_view s, bool allow_surrogates) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  // ASCII (every key and record name torch writes) eight bytes at a time.
  while (end - p >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    if (w & 0x8080808080808080u) break;
    p += 8;
  }
  while (p < end) {
    unsigned c = *p;
    if (c < 0x80) { ++p; continue; }
    int n;
    std::uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) { n = 1; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { n = 2; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 3; cp = c & 0x07; }
    else return false;
    if (end - p <= n) return false;
    for (int i = 1; i <= n; ++i) {
      if ((p[i] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff))) return false;
    if (!allow_surrogates && cp >= 0xd800 && cp <= 0xdfff) return false;
    p += n + 1;
  }
  return true;
}

// The next code point of a string already known to be valid (surrogates allowed).
std::uint32_t next_code_point(std::string_view s, std::size_t& i) {
  auto c = static_cast<unsigned char>(s[i++]);
  if (c < 0x80) return c;
  int n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
  std::uint32_t cp = c & (0x3f >> n);
  for (int k = 0; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i++]) & 0x3f);
  return cp;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string_view trim_ascii_space(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// codecs.escape_decode, which Python 3 applies to the quoted argument of STRING.
// nullopt (with a reason) on a malformed escape.
std::optional<std::string> escape_decode(std::string_view s, std::string& why) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    char c = s[i++];
    if (c != '\\') { out.push_back(c); continue; }
    if (i == s.size()) { why = "trailing \\ in string"; return std::nullopt; }
    char e = s[i++];
    switch (e) {
      case '\n': break;
      case '\\': out.push_back('\\'); break;
      case '\'': out.push_back('\''); break;
      case '"': out.push_back('"'); break;
      case 'a': out.push_back('\a'); break;
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'n': out.push_back('\n'); break;
      case 'r': out.push_back('\r'); break;
      case 't': out.push_back('\t'); break;
      case 'v': out.push_back('\v'); break;
      case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': {
        unsigned v = static_cast<unsigned>(e - '0');
        for (int k = 0; k < 2 && i < s.size() && s[i] >= '0' && s[i] <= '7'; ++k)
          v = v * 8 + static_cast<unsigned>(s[i++] - '0');
        out.push_back(static_cast<char>(v & 0xff));
        break;
      }
      case 'x': {
        int hi = i < s.size() ? hex_digit(s[i]) : -1;
        int lo = i + 1 < s.size() ? hex_digit(s[i + 1]) : -1;
        if (hi < 0 || lo < 0) { why = "invalid \\x escape"; return std::nullopt; }
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        break;
      }
      default: out.push_back('\\'); out.push_back(e); break;
    }
  }
  return out;
}

// The raw-unicode-escape codec (UNICODE's argument): bytes are Latin-1 code points, except
// \uXXXX and \UXXXXXXXX; a backslash before anything else stays literal (CPython 3.11
// _PyUnicode_DecodeRawUnicodeEscapeStateful).
std::optional<std::string> raw_unicode_escape_decode(std::string_view s, std::string& why) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i++]);
    if (c != '\\' || i == s.size()) { append_utf8(out, c); continue; }
    auto e = static_cast<unsigned char>(s[i++]);
    int count = e == 'u' ? 4 : e == 'U' ? 8 : 0;
    if (count == 0) { out.push_back('\\'); append_utf8(out, e); continue; }
    std::uint32_t cp = 0;
    for (int k = 0; k < count; ++k, ++i) {
      int d = i < s.size() ? hex_digit(s[i]) : -1;
      if (d < 0) { why = count == 4 ? "truncated \\uXXXX escape" : "truncated \\UXXXXXXXX escape"; return std::nullopt; }
      cp = (cp << 4) | static_cast<std::uint32_t>(d);
    }
    if (cp > 0x10ffff) { why = "\\Uxxxxxxxx out of range"; return std::nullopt; }
    append_utf8(out, cp);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Integers.

// Drops sign-extension bytes from little-endian two's complement, as pickle's encode_long
// writes them (the minimal form).
void trim_twos_complement(std::vector<std::uint8_t>& b) {
  while (b.size() > 1) {
    std::uint8_t last = b.back(), prev = b[b.size() - 2];
    if ((last == 0x00 && !(prev & 0x80)) || (last == 0xff && (prev & 0x80))) b.pop_back();
    else break;
  }
  if (b.size() == 1 && b[0] == 0) b.clear();
}

// pickle's decode_long: little-endian two's complement of any length -> int or big_int.
value long_from_le(std::span<const std::byte> bytes) {
  std::vector<std::uint8_t> b(bytes.size());
  for (std::size_t i = 0; i < bytes.size(); ++i) b[i] = static_cast<std::uint8_t>(bytes[i]);
  trim_twos_complement(b);
  if (b.size() <= 8) {
    std::uint64_t u = 0;
    for (std::size_t i = b.size(); i-- > 0;) u = (u << 8) | b[i];
    if (!b.empty() && b.size() < 8 && (b.back() & 0x80)) u |= ~std::uint64_t{0} << (8 * b.size());
    return value(static_cast<std::int64_t>(u));
  }
  return value(big_int{std::move(b)});
}

// A magnitude (little-endian, unsigned) and a sign -> int or big_int.
value int_from_magnitude(std::vector<std::uint8_t> mag, bool negative) {
  while (!mag.empty() && mag.back() == 0) mag.pop_back();
  if (mag.size() <= 8) {
    std::uint64_t u = 0;
    for (std::size_t i = mag.size(); i-- > 0;) u = (u << 8) | mag[i];
    if (!negative && u <= static_cast<std::uint64_t>(INT64_MAX)) return value(static_cast<std::int64_t>(u));
    if (negative && u <= static_cast<std::uint64_t>(INT64_MAX) + 1)
      return value(static_cast<std::int64_t>(0 - u));
  }
  mag.push_back(0);  // room for the sign bit
  if (negative) {
    unsigned carry = 1;
    for (auto& byte : mag) {
      unsigned v = static_cast<unsigned>(static_cast<std::uint8_t>(~byte)) + carry;
      byte = static_cast<std::uint8_t>(v);
      carry = v >> 8;
    }
  }
  trim_twos_complement(mag);
  return value(big_int{std::move(mag)});
}

// Python 3.11 refuses int() on more than 4300 decimal digits (sys.int_info.str_digits_check_threshold).
constexpr std::size_t max_int_digits = 4300;

// int(text) (base 10) or int(text, 0) (base0: 0x/0o/0b prefixes, no leading zeros) for the text
// forms of INT, LONG, GET and PUT: surrounding whitespace, a sign, digits, single underscores
// between digits. nullopt when malformed.
std::optional<value> parse_int_text(std::string_view s, bool base0, bool& too_long) {
  too_long = false;
  s = trim_ascii_space(s);
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) { negative = s[0] == '-'; s.remove_prefix(1); }
  unsigned base = 10;
  if (base0 && s.size() >= 2 && s[0] == '0') {
    char p = static_cast<char>(s[1] | 0x20);
    if (p == 'x') base = 16;
    else if (p == 'o') base = 8;
    else if (p == 'b') base = 2;
    if (base != 10) {
      s.remove_prefix(2);
      if (!s.empty() && s[0] == '_') s.remove_prefix(1);
    }
  }
  if (s.empty() || s.front() == '_' || s.back() == '_') return std::nullopt;
  std::vector<std::uint8_t> mag;
  std::size_t digits = 0;
  bool nonzero = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      if (s[i - 1] == '_') return std::nullopt;
      continue;
    }
    int d = hex_digit(s[i]);
    if (d < 0 || static_cast<unsigned>(d) >= base) return std::nullopt;
    if (++digits > max_int_digits) { too_long = true; return std::nullopt; }
    if (d) nonzero = true;
    unsigned carry = static_cast<unsigned>(d);
    for (auto& byte : mag) {
      unsigned v = byte * base + carry;
      byte = static_cast<std::uint8_t>(v);
      carry = v >> 8;
    }
    while (carry) { mag.push_back(static_cast<std::uint8_t>(carry)); carry >>= 8; }
  }
  // int('010', 0) is an error in Python 3: base 0 takes no leading zeros before a nonzero digit.
  if (base0 && base == 10 && s.size() > 1 && s[0] == '0' && nonzero) return std::nullopt;
  return int_from_magnitude(std::move(mag), negative);
}

// float(text): whitespace, sign, decimal or exponent forms, inf/infinity/nan in any case.
// The memo index of a text GET or PUT line (the line's integer; may be negative), or nullopt
// when the line is not an int.
std::optional<std::int64_t> memo_index_text(std::string_view line) {
  bool too_long = false;
  auto v = parse_int_text(line, false, too_long);
  if (!v || !v->is_int()) return std::nullopt;
  return v->as_int();
}

std::optional<double> parse_float_text(std::string_view s) {
  s = trim_ascii_space(s);
  bool plus = !s.empty() && s[0] == '+';
  if (plus) s.remove_prefix(1);
  if (s.empty() || s[0] == '+' || (plus && s[0] == '-')) return std::nullopt;
  double d = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
  if (p != s.data() + s.size()) return std::nullopt;
  if (ec == std::errc::result_out_of_range) {
    // Python rounds: overflow to inf, underflow to 0; strtod does the same.
    std::string copy(s);
    return std::strtod(copy.c_str(), nullptr);
  }
  if (ec != std::errc()) return std::nullopt;
  return d;
}

// Bytes of a str under a codec _codecs.encode / bytes() accept; nullopt for an unknown codec,
// and `bad` set to the first code point the codec cannot represent.
std::optional<std::string> encode_str(const std::string& s, std::string_view encoding,
                                      std::uint32_t& bad, bool& unencodable) {
  std::string enc;
  for (char c : encoding) enc.push_back(c == '_' ? '-' : static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
  unencodable = false;
  if (enc == "utf-8" || enc == "utf8") {
    if (!valid_utf8(s, false)) { unencodable = true; bad = 0xd800; }
    return s;
  }
  std::uint32_t limit;
  if (enc == "latin1" || enc == "latin-1" || enc == "iso-8859-1" || enc == "iso8859-1" || enc == "l1")
    limit = 0x100;
  else if (enc == "ascii" || enc == "us-ascii")
    limit = 0x80;
  else
    return std::nullopt;
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    std::uint32_t cp = next_code_point(s, i);
    if (cp >= limit) { unencodable = true; bad = cp; return out; }
    out.push_back(static_cast<char>(cp));
  }
  return out;
}

// What a str or bytes value holds beyond the text itself (charged when the text was read): its
// shared box (control block and std::string, from the value pool) and, past the SSO size, the
// malloc chunk's rounding. Copies of the value share all of it.
std::uint64_t text_box_bytes(const value& v) {
  std::size_t n;
  if (v.is_str()) n = v.as_str().size();
  else if (v.type() == value::kind::bytes) n = v.as_bytes().size();
  else return 0;
  return 64 + (n > 15 ? 24 : 0);
}

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
  void clear() { slots_.clear(); size_ = 0; }

 private:
  std::vector<std::pair<const void*, std::uint32_t>> slots_;
  std::size_t size_ = 0;
  std::size_t index(const void* id) const {
    auto h = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(id)) * 0x9e3779b97f4a7c15ull;
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

// ---------------------------------------------------------------------------------------------
// The machine.

// Which memo indices a pickle ever reads (GET, BINGET, LONG_BINGET), found by one pass over its
// opcodes before it runs. torch memoizes every object it writes but reads back only a few (the
// globals, 'storage', the location), so the machine stores only what will be read: the rest
// would be copied into the memo, kept to the end and torn down for nothing. The pass only
// measures opcode arguments; when it cannot follow the stream to a STOP (bad or unknown
// input, which the machine reports where it meets it), or the stream numbers its memo entries
// by count (MEMOIZE, protocol 4), every entry is stored as before.
class memo_reads {
 public:
  // Indices at or past max_memo are never stored (BINPUT refuses them), so they need no bit.
  memo_reads(std::span<const std::byte> data, std::uint64_t max_memo) {
    if (!scan(data, max_memo)) all_ = true;
  }
  bool will_read(std::uint64_t index) const noexcept {
    if (all_) return true;
    if (index < bits_.size() * 64) return bits_[static_cast<std::size_t>(index / 64)] >> (index % 64) & 1;
    return tail_;
  }
  std::uint64_t bytes() const noexcept { return bits_.capacity() * sizeof(std::uint64_t); }

 private:
  // How the scan steps over each opcode's argument.
  enum class arg : std::uint8_t {
    bad,                          // not an opcode, or MEMOIZE (the scan gives up)
    stop,                         // STOP
    fixed,                        // `size` bytes (0 for most)
    counted,                      // a little-endian byte count of `size` bytes, then that many
    lines,                        // `size` newline-terminated lines
    get,                          // a memo read: a `size`-byte index, or (size 0) a decimal line
  };
  struct step { arg how = arg::bad; std::uint8_t size = 0; };
  static constexpr std::array<step, 256> steps() {
    std::array<step, 256> t{};
    auto set = [&t](opcode o, arg how, std::uint8_t size) { t[static_cast<std::uint8_t>(o)] = {how, size}; };
    for (opcode o : {opcode::MARK, opcode::POP, opcode::POP_MARK, opcode::DUP, opcode::NONE, opcode::NEWTRUE,
                     opcode::NEWFALSE, opcode::EMPTY_LIST, opcode::EMPTY_DICT, opcode::EMPTY_TUPLE,
                     opcode::EMPTY_SET, opcode::LIST, opcode::TUPLE, opcode::TUPLE1, opcode::TUPLE2,
                     opcode::TUPLE3, opcode::DICT, opcode::FROZENSET, opcode::APPEND, opcode::APPENDS,
                     opcode::ADDITEMS, opcode::SETITEM, opcode::SETITEMS, opcode::REDUCE, opcode::NEWOBJ,
                     opcode::NEWOBJ_EX, opcode::OBJ, opcode::BUILD, opcode::BINPERSID, opcode::STACK_GLOBAL,
                     opcode::NEXT_BUFFER, opcode::READONLY_BUFFER})
      set(o, arg::fixed, 0);
    for (opcode o : {opcode::PROTO, opcode::BININT1, opcode::BINPUT, opcode::EXT1}) set(o, arg::fixed, 1);
    for (opcode o : {opcode::BININT2, opcode::EXT2}) set(o, arg::fixed, 2);
    for (opcode o : {opcode::BININT, opcode::LONG_BINPUT, opcode::EXT4}) set(o, arg::fixed, 4);
    for (opcode o : {opcode::FRAME, opcode::BINFLOAT}) set(o, arg::fixed, 8);
    for (opcode o : {opcode::LONG1, opcode::SHORT_BINSTRING, opcode::SHORT_BINUNICODE, opcode::SHORT_BINBYTES})
      set(o, arg::counted, 1);
    // LONG4 and BINSTRING count with a signed int: the machine refuses a negative one where it
    // meets it, so what the scan makes of it (past the end, or a skip) does not matter.
    for (opcode o : {opcode::LONG4, opcode::BINSTRING, opcode::BINUNICODE, opcode::BINBYTES}) set(o, arg::counted, 4);
    for (opcode o : {opcode::BINUNICODE8, opcode::BINBYTES8, opcode::BYTEARRAY8}) set(o, arg::counted, 8);
    for (opcode o : {opcode::INT, opcode::LONG, opcode::FLOAT, opcode::STRING, opcode::UNICODE, opcode::PUT,
                     opcode::PERSID})
      set(o, arg::lines, 1);
    for (opcode o : {opcode::GLOBAL, opcode::INST}) set(o, arg::lines, 2);
    set(opcode::BINGET, arg::get, 1);
    set(opcode::LONG_BINGET, arg::get, 4);
    set(opcode::GET, arg::get, 0);
    set(opcode::STOP, arg::stop, 0);
    return t;
  }

  bool scan(std::span<const std::byte> data, std::uint64_t max_memo) {
    static constexpr std::array<step, 256> table = steps();
    // The bits cover indices below a bound tied to the input's size and max_memo; a read past it
    // makes every index past it count as read.
    const std::uint64_t cover = std::min<std::uint64_t>(8 * static_cast<std::uint64_t>(data.size()) + 1024, max_memo);
    const auto* p = reinterpret_cast<const unsigned char*>(data.data());
    const std::size_t n = data.size();
    std::size_t i = 0;
    auto read = [&](std::uint64_t index) {
      if (index >= cover) {
        tail_ = true;
        return;
      }
      if (index >= bits_.size() * 64) bits_.resize(static_cast<std::size_t>(index / 64) + 1);
      bits_[static_cast<std::size_t>(index / 64)] |= std::uint64_t{1} << (index % 64);
    };
    while (i < n) {
      const step st = table[p[i++]];
      const std::size_t left = n - i;
      switch (st.how) {
        case arg::fixed:
          if (st.size > left) return false;
          i += st.size;
          break;
        case arg::counted: {
          if (st.size > left) return false;
          const std::uint64_t count = detail::load_le(data.data() + i, st.size);
          if (count > left - st.size) return false;
          i += st.size + static_cast<std::size_t>(count);
          break;
        }
        case arg::lines:
          for (int k = 0; k < st.size; ++k) {
            const void* nl = std::memchr(p + i, '\n', n - i);
            if (!nl) return false;
            i = static_cast<std::size_t>(static_cast<const unsigned char*>(nl) - p) + 1;
          }
          break;
        case arg::get: {
          if (st.size > 0) {
            if (st.size > left) return false;
            read(detail::load_le(data.data() + i, st.size));
            i += st.size;
            break;
          }
          const void* nl = std::memchr(p + i, '\n', left);
          if (!nl) return false;
          const std::size_t end = static_cast<std::size_t>(static_cast<const unsigned char*>(nl) - p);
          const auto index = memo_index_text(std::string_view(reinterpret_cast<const char*>(p + i), end - i));
          if (!index || *index < 0) return false;
          read(static_cast<std::uint64_t>(*index));
          i = end + 1;
          break;
        }
        case arg::stop: return true;
        case arg::bad: return false;
      }
    }
    return false;  // no STOP
  }
  std::vector<std::uint64_t> bits_;
  bool tail_ = false;
  bool all_ = false;
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
    if (size_ % chunk_slots == 0 || size_ % 64 == 0) [[unlikely]] resize(size_ + 1);
    else ++size_;
    assign(size_ - 1, v);
  }
  // Adds unset slots up to n.
  void resize(std::size_t n) {
    while (chunks_.size() * chunk_slots < n) chunks_.push_back(std::make_unique<value[]>(chunk_slots));
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

class machine {
 public:
  machine(std::span<const std::byte> data, const unpickle_options& options)
      : in_(data, errc::corrupt_pickle, options.context), opt_(options), lim_(options.limits),
        reads_(data, options.limits.max_memo) {
    empty_tuple_ = value::make_tuple();
  }
  machine(const machine&) = delete;
  machine& operator=(const machine&) = delete;
  ~machine() { release(); }

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
  struct recent_call { value callable; const reduce_fn* handler = nullptr; };
  recent_call recent_calls_[2];

  // Every container built here, with its identity, for release(); tuples only when they hold a
  // container (one of scalars, strings, tensors and storages neither recurses nor cycles when it
  // is destroyed). tuple_count_ counts them all.
  template <class T>
  struct owned { std::shared_ptr<T> p; const void* id; };
  std::deque<owned<list_object>> lists_;
  struct owned_tuple { value v; const void* id; };
  std::deque<owned_tuple> tuples_;
  std::size_t tuple_count_ = 0;
  std::deque<owned<dict_object>> dicts_;
  std::deque<owned<object_object>> objects_;
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
    if (!detail::checked_add(memory_, bytes, total) || total > lim_.max_memory) [[unlikely]] over_budget();
    memory_ = total;
  }
  // A block that lives only for a moment beside everything charged (the old block of a vector
  // while it grows) must fit too: memory in use stays under max_memory at every instant.
  void room_for(std::uint64_t bytes) const {
    std::uint64_t total;
    if (!detail::checked_add(memory_, bytes, total) || total > lim_.max_memory) [[unlikely]] over_budget();
  }
  [[noreturn, gnu::cold, gnu::noinline]] void over_budget() const {
    fail(errc::limit_exceeded, op_name() + ": the objects built need more than max_memory (" +
                                   std::to_string(lim_.max_memory) + " bytes)");
  }
  // Room for `extra` more elements, growing geometrically as push_back does; what is charged is
  // the capacity, not the size, and the new block must fit while the old one is still alive.
  template <class T>
  void grow(std::vector<T>& v, std::size_t extra) {
    if (v.capacity() - v.size() >= extra) [[likely]] return;
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
    if (n > in_.remaining()) [[unlikely]] short_read(n);
  }
  [[noreturn, gnu::cold, gnu::noinline]] void short_read(std::uint64_t n) const {
    fail(op_name() + ": unexpected end of data: needs " + std::to_string(n) + " bytes, " +
         std::to_string(in_.remaining()) + " remain");
  }
  std::uint8_t arg_u8() { need(1); return in_.u8(); }
  std::uint16_t arg_le16() { need(2); return in_.le16(); }
  std::uint32_t arg_le32() { need(4); return in_.le32(); }
  std::int32_t arg_le_i32() { need(4); return in_.le_i32(); }
  std::uint64_t arg_le64() { need(8); return in_.le64(); }
  std::uint64_t arg_be64() { need(8); return in_.be64(); }
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
    if (stack_.size() - floor() < n) [[unlikely]] too_few(n);
  }
  [[noreturn, gnu::cold, gnu::noinline]] void too_few(std::size_t n) const {
    const std::size_t have = stack_.size() - floor();
    if (marks_.empty())
      fail(op_name() + " needs " + std::to_string(n) + " value(s) on the stack, it holds " +
           std::to_string(have));
    fail(op_name() + " needs " + std::to_string(n) + " value(s) above the last MARK, there are " +
         std::to_string(have));
  }
  static bool is_container(const value& v) noexcept {
    const auto k = v.type();
    return k == value::kind::list || k == value::kind::tuple || k == value::kind::dict || k == value::kind::object;
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
    if (stack_.size() >= lim_.max_stack) [[unlikely]] stack_full();
    grow(stack_, 1);
    grow(heights_, 1);
    // A big int owns a shared block and a byte vector of its own.
    if (v.type() == value::kind::big_integer) [[unlikely]] charge(64 + v.as_big_int().le_bytes.size());
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
    std::vector<value> items(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(k)),
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
    for (std::size_t i = 0; i < n; ++i) holds_container |= is_container(items[i]);
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
  void charge_global(const global_ref& g) { charge(sizeof(global_ref) + 32 + g.module.size() + g.name.size()); }

  value new_object(global_ref type, value args) {
    // The object, its shared_ptr control block and its entry in objects_; names beyond SSO.
    charge(sizeof(object_object) + 64 + type.module.size() + type.name.size());
    auto p = detail::make_pooled<object_object>();
    p->type = std::move(type);
    p->args = std::move(args);
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
    if (key.type() == value::kind::big_integer && key.as_big_int().le_bytes.size() > max_key_int_bytes)
      fail(errc::limit_exceeded, op_name() + ": a dict key integer has more than " +
                                     std::to_string(max_key_int_bytes) + " bytes");
    if (!key.is_tuple()) return;
    struct frame { std::span<const value> items; std::size_t next; };
    std::vector<frame> path{{key.as_tuple(), 0}};
    std::size_t seen = 0;
    while (!path.empty()) {
      frame& f = path.back();
      if (f.next == f.items.size()) { path.pop_back(); continue; }
      const value& c = f.items[f.next++];
      if (++seen > max_key_values)
        fail(errc::limit_exceeded, op_name() + ": a dict key tuple holds more than " +
                                       std::to_string(max_key_values) + " values");
      if (c.is_list() || c.is_dict())
        fail(op_name() + ": unhashable dict key (a tuple holding a " + std::string(c.type_name()) + ")");
      if (c.type() == value::kind::big_integer && c.as_big_int().le_bytes.size() > max_key_int_bytes)
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
      for (std::size_t i = 0; i < kv.size(); i += 2) set_item(d, std::move(kv[i]), std::move(kv[i + 1]));
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
    if (target.is_list()) dst = &target.as_list().items;
    else if (target.is_object()) dst = &target.as_object().list_items;
    else fail(op_name() + " on a " + std::string(target.type_name()) + ", not a list");
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
                                     " exceeds the limit max_memo (" + std::to_string(lim_.max_memo) + ")");
    const value& v = top();
    if (!reads_.will_read(index)) return;  // never read: nothing to keep
    charge(slot_bytes);  // the value itself is shared
    // An index lives in one place: a sparse entry moves into the dense part once that reaches it.
    if (!memo_sparse_.empty() && index < memo_dense_.size() + memo_dense_gap && memo_sparse_.erase(index))
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
    if (memo_dense_.has(index)) v = &memo_dense_[static_cast<std::size_t>(index)];
    else if (auto it = memo_sparse_.find(index); it != memo_sparse_.end())
      v = &it->second;
    if (!v) fail(op_name() + " memo index " + std::to_string(index) + " is not defined");
    if (is_container(*v)) needs_walk_ = true;
    push(*v);
  }

  std::uint64_t text_index(std::string_view line) {
    const auto i = memo_index_text(line);
    if (!i) fail(op_name() + ": memo index '" + std::string(line) + "' is not a number");
    if (*i < 0) fail(op_name() + ": negative memo index " + std::to_string(*i));
    return static_cast<std::uint64_t>(*i);
  }

  // ---- globals and calls

  global_ref read_global_lines() {
    std::string module(arg_line());
    std::string name(arg_line());
    if (!valid_utf8(module, false) || !valid_utf8(name, false))
      fail(op_name() + ": module or name is not valid UTF-8");
    return python3_name(std::move(module), std::move(name));
  }

  // Reports a global the stream names and, in weights-only mode, refuses one not allowed.
  void named_global(const global_ref& g) {
    if (opt_.on_global) opt_.on_global(g, op_pos_);
    if (opt_.strict && !(opt_.globals && opt_.globals->contains(g.module, g.name)) &&
        !is_builtin_safe_global(g.module, g.name))
      fail(errc::unsafe_global, "global " + g.qualified() + " is not allowed in weights-only mode");
  }

  // callable(*args) for REDUCE / NEWOBJ / INST / OBJ: a handler from the table, a built-in,
  // else an inert object. `args` is a tuple value.
  value call(const value& callable, const value& args) {
    if (!callable.is_global()) {
      if (callable.is_object() && !opt_.strict) {  // e.g. getattr(obj, 'method') then a call
        // Kept as an object of the callee's class with args (callee, args): unambiguous, and
        // written back as such, unless the class has a handler here, which would read those args
        // as its own. Instances of those (sets, bytes, OrderedDicts) are not callable in Python.
        const global_ref& type = callable.as_object().type;
        if (has_handler(type)) fail(op_name() + ": a " + type.qualified() + " object is not callable");
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
        if (is_container(r)) needs_walk_ = true;  // its shape is the handler's business
        return text(std::move(r));
      }
    if (++call_depth_ > max_call_depth)
      fail(op_name() + ": copyreg calls nest deeper than " + std::to_string(max_call_depth));
    std::optional<value> r = call_builtin(g, args.as_tuple());
    --call_depth_;
    if (r) return text(std::move(*r));
    return new_object(g, args);
  }

  // The table's entry for a callable global. A stream calls the same few globals over and over
  // (one per tensor), each a memoized value: the last two are remembered by the address of their
  // name pair, kept alive here so that the address cannot be reused by another global.
  const reduce_fn* handler_of(const value& callable) {
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
  bool has_handler(const global_ref& g) const {
    if (opt_.globals)
      if (const reduce_fn* h = opt_.globals->find(g.module, g.name); h && *h) return true;
    const std::string& m = g.module;
    const std::string& n = g.name;
    return (m == "collections" && n == "OrderedDict") || (m == "_codecs" && n == "encode") ||
           (m == "builtins" && (n == "bytes" || n == "bytearray" || n == "set" || n == "frozenset")) ||
           (m == "copyreg" && (n == "_reconstructor" || n == "__newobj__" || n == "__newobj_ex__"));
  }

  std::optional<value> call_builtin(const global_ref& g, std::span<const value> args) {
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
      if (plain || args[2].is_none()) return call(args[0], empty_tuple_);
      return call(args[0], new_tuple({args[2]}));
    }
    if (m == "copyreg" && n == "__newobj__") {
      if (args.empty() || !args[0].is_global()) fail(op_name() + ": copyreg.__newobj__ takes (class, *args)");
      return call(args[0], new_tuple(std::vector<value>(args.begin() + 1, args.end())));
    }
    if (m == "copyreg" && n == "__newobj_ex__") {
      if (args.size() != 3) fail(op_name() + ": copyreg.__newobj_ex__ takes (class, args, kwargs)");
      return newobj_ex(args[0], args[1], args[2]);
    }
    return std::nullopt;
  }

  value ordered_dict(std::span<const value> args) {
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

  std::string encoded(const std::string& s, const value& encoding_value, const char* who) {
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
      fail(errc::unsupported, op_name() + ": " + who + " with encoding '" + std::string(encoding) + "'");
    if (unencodable)
      fail(op_name() + ": " + who + ": code point " + std::to_string(bad) + " cannot be encoded as " +
           std::string(encoding));
    return std::move(*out);
  }

  // _codecs.encode(str, 'latin1'): how protocol 2 writes bytes.
  value codecs_encode(std::span<const value> args) {
    if (args.empty() || args.size() > 3 || !args[0].is_str())
      fail(op_name() + ": _codecs.encode takes (str, encoding)");
    return value::make_bytes(encoded(args[0].as_str(), args.size() > 1 ? args[1] : value(), "_codecs.encode"));
  }

  // bytes() / bytearray() from nothing, bytes, a str and an encoding, a count, or a list of ints.
  value make_bytes_from(const global_ref& g, std::span<const value> args) {
    const std::string who = g.qualified();
    if (args.empty()) return value::make_bytes({});
    const value& a = args[0];
    if (a.is_str()) {
      if (args.size() < 2) fail(op_name() + ": " + who + "(str) needs an encoding");
      return value::make_bytes(encoded(a.as_str(), args[1], who.c_str()));
    }
    if (args.size() != 1) fail(op_name() + ": " + who + " takes one argument here");
    if (a.type() == value::kind::bytes) return a;  // immutable: the copy can share its text
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
  std::optional<value> make_set(const global_ref& g, std::span<const value> args) {
    if (args.size() > 1) fail(op_name() + ": " + g.qualified() + " takes at most one argument");
    value s = new_object(g, empty_tuple_);
    if (args.empty()) return s;
    const value& src = args[0];
    std::vector<value> items;
    if (src.is_list() || src.is_tuple()) items.assign(src.items().begin(), src.items().end());
    else if (src.is_dict()) for (const auto& kv : src.as_dict().entries()) items.push_back(kv.first);
    else if (src.is_object() && (src.as_object().type == global_ref{"builtins", "set"} ||
                                 src.as_object().type == global_ref{"builtins", "frozenset"}))
      items = src.as_object().list_items;
    else
      return std::nullopt;  // kept as an inert call
    charge(items.size() * slot_bytes);
    s.as_object().list_items = std::move(items);
    return s;
  }

  value newobj_ex(const value& cls, const value& args, const value& kwargs) {
    if (!cls.is_global()) fail(op_name() + ": the class is a " + std::string(cls.type_name()) + ", not a global");
    if (!args.is_tuple()) fail(op_name() + ": the arguments are a " + std::string(args.type_name()) + ", not a tuple");
    if (!kwargs.is_dict()) fail(op_name() + ": the keyword arguments are a " + std::string(kwargs.type_name()) + ", not a dict");
    if (kwargs.as_dict().size() != 0)
      fail(errc::unsupported, op_name() + ": keyword arguments to " + cls.as_global().qualified() + " are not supported");
    return call(cls, args);
  }

  // BUILD: state on an object, attributes on a dict (a state_dict's _metadata), nothing on a
  // tensor (torch's legacy _rebuild_tensor path sets no state pthio needs).
  void build(value& inst, value state) {
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
        if (!part->is_dict()) fail("BUILD state for a dict is a " + std::string(part->type_name()) + ", not a dict");
        for (const auto& [k, v] : part->as_dict().entries()) {
          if (!k.is_str()) fail("BUILD attribute name is a " + std::string(k.type_name()) + ", not a str");
          charge(2 * slot_bytes + k.as_str().size());
          const std::string& name = k.as_str();  // clang 14 cannot capture a structured binding
          auto it = std::find_if(d.attrs.begin(), d.attrs.end(), [&](const auto& a) { return a.first == name; });
          if (it != d.attrs.end()) it->second = v;
          else d.attrs.emplace_back(k.as_str(), v);
        }
      }
      return;
    }
    if (inst.is_tensor() && (state.is_none() || state.is_dict() || state.is_tuple())) return;
    fail("BUILD on a " + std::string(inst.type_name()));
  }

  // ---- STOP: the result must be acyclic and nested at most max_depth deep.

  static const value* child(const value& v, std::size_t i) { return detail::child_at(v, i); }


  // Iterative depth-first walk; reachable_ maps each container to its height (0 while on the path).
  void verify(const value& root) {
    reachable_.clear();
    if (!root.identity()) return;
    const std::size_t containers = lists_.size() + tuple_count_ + dicts_.size() + objects_.size() + 1;
    charge(64 * static_cast<std::uint64_t>(containers));  // the map: 16-byte slots, at most 4 per container
    reachable_.reserve(containers);
    struct frame { const value* v; std::size_t next; std::uint32_t height; };
    std::vector<frame> path;
    path.push_back({&root, 0, 0});
    bool inserted = false;
    reachable_.find_or_insert(root.identity(), inserted);
    auto too_deep = [&] {
      fail(errc::limit_exceeded, "containers nest deeper than max_depth (" + std::to_string(lim_.max_depth) + ")");
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
      const auto k = c->type();
      if (k != value::kind::list && k != value::kind::tuple && k != value::kind::dict && k != value::kind::object)
        continue;  // no children (storages have an identity but hold no values)
      const void* id = c->identity();
      const std::uint32_t seen = reachable_.find_or_insert(id, inserted);
      if (!inserted) {
        if (seen == 0)
          fail(errc::unsupported, "cyclic container: a " + std::string(c->type_name()) + " contains itself");
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
  void release() noexcept {
    // Without sharing every container is at most max_depth deep and acyclic: plain destruction.
    if (succeeded_ && !needs_walk_) return;
    auto dead = [&](const void* id) { return !succeeded_ || !reachable_.contains(id); };
    for (auto& l : lists_) if (dead(l.id)) l.p->items.clear();
    for (auto& t : tuples_)
      if (dead(t.id))
        for (auto& e : detail::value_access::mutable_items(t.v)) e = value();
    for (auto& d : dicts_) if (dead(d.id)) { d.p->clear(); d.p->attrs.clear(); }
    for (auto& o : objects_)
      if (dead(o.id)) {
        o.p->args = value();
        o.p->state = value();
        o.p->list_items.clear();
        o.p->dict_items.clear();
      }
  }

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

  unpickle_result loop() {
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
          if (p > 5) fail(errc::unsupported, "pickle protocol " + std::to_string(p) + " is not supported");
          break;
        }
        case opcode::FRAME: {
          // Protocol 4 framing only helps buffered readers; the frame must fit in what remains.
          std::uint64_t n = arg_le64();
          if (n > in_.remaining())
            fail("FRAME length " + std::to_string(n) + " exceeds the " + std::to_string(in_.remaining()) +
                 " bytes remaining");
          break;
        }
        case opcode::STOP: {
          value root = pop();
          if (needs_walk_) verify(root);
          succeeded_ = true;
          return {std::move(root), in_.pos()};
        }
        case opcode::MARK:
          if (marks_.size() >= lim_.max_depth)
            fail(errc::limit_exceeded, "MARK nesting exceeds max_depth (" + std::to_string(lim_.max_depth) + ")");
          marks_.push_back(stack_.size());
          break;
        case opcode::POP:
          // pickle.load_pop: with nothing above the last MARK, POP discards the MARK.
          if (!marks_.empty() && stack_.size() == marks_.back()) marks_.pop_back();
          else pop();
          break;
        case opcode::POP_MARK: pop_mark(); break;
        case opcode::DUP: {
          value v = top();
          if (is_container(v)) needs_walk_ = true;
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
          if (t == "00") { push(value(false)); break; }
          if (t == "01") { push(value(true)); break; }
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
          if (!v) fail(too_long ? "LONG has more than 4300 digits" : "LONG argument is not an integer");
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
        case opcode::SHORT_BINSTRING:
          push(py2_string(std::string(arg_payload(arg_u8()))));
          break;
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
        case opcode::BINBYTES: push(text(value::make_bytes(std::string(arg_payload(arg_le32()))))); break;
        case opcode::SHORT_BINBYTES: push(text(value::make_bytes(std::string(arg_payload(arg_u8()))))); break;
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
          value t = tuple_from_stack(op_ == static_cast<std::uint8_t>(opcode::TUPLE) ? std::size_t(-1)
                                                                                      : op_ - 0x85u + 1);
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
          if (!args.is_tuple()) fail("REDUCE arguments are a " + std::string(args.type_name()) + ", not a tuple");
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
          if (!args.is_tuple()) fail("NEWOBJ arguments are a " + std::string(args.type_name()) + ", not a tuple");
          if (!cls.is_global()) fail("NEWOBJ class is a " + std::string(cls.type_name()) + ", not a global");
          push(call(cls, args), up(h, 2));
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
          if (!cls.is_global()) fail("OBJ class is a " + std::string(cls.type_name()) + ", not a global");
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
            if (!std::all_of(t.begin(), t.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }))
              fail("PERSID argument is not ASCII");
            charge(t.size());
            pid = text(value(std::string(t)));
          } else {
            pid = pop();
          }
          if (!opt_.persistent_load)
            fail(op_name() + ": a persistent id, but no persistent_load was given");
          value r = opt_.persistent_load(pid);
          if (is_container(r)) needs_walk_ = true;
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
        default:
          fail("unknown opcode " + hex_byte(op_));
      }
    }
  }
};

}  // namespace

unpickle_result unpickle(std::span<const std::byte> data, const unpickle_options& options) {
  detail::value_pool_scope pool;  // the objects built here (and by handlers) come from one pool
  machine m(data, options);
  return m.run();
}

}  // namespace pthio
