// Resource limits and hostile inputs not covered elsewhere: the memory a load uses (counted by a
// replacement global operator new in this test binary) stays within the input's size plus
// limits.max_memory however a pickle abuses containers, the memo, strings or the stack; zip bombs
// are refused before they allocate; code-running globals are refused in weights-only mode through
// every opcode that can call them (and reported by `pthio scan` in any mode), pickles hidden inside
// pickles included; record names climbing out with "..", absolute or holding NUL stay names inside
// the archive; shapes, strides, offsets and storage sizes that overflow are errors.
#include <doctest/doctest.h>
#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "cli/json.h"
#include "cli_support.h"
#include "pthio/pthio.hpp"
#include "support.h"
#include "value_pool.h"

using namespace std::string_literals;

// ---- counting allocator -----------------------------------------------------------------------
// Every operator new of this binary goes through malloc / posix_memalign and is counted at its
// usable size (under ASan too, whose malloc_usable_size reports the requested size). Host tensor
// data comes from storage::allocate's 64-byte-aligned operator new and is counted apart.

using pthio_test::cpu_options;

namespace {

std::atomic<long long> live_bytes{0}, peak_bytes{0}, live_aligned{0};

void counted(void* p, bool aligned) {
  const auto n = static_cast<long long>(malloc_usable_size(p));
  if (aligned) live_aligned += n;
  const long long now = live_bytes += n;
  long long peak = peak_bytes.load();
  while (now > peak && !peak_bytes.compare_exchange_weak(peak, now)) {}
}

void* counted_new(std::size_t n) {
  void* p = std::malloc(n ? n : 1);
  if (!p) throw std::bad_alloc();
  counted(p, false);
  return p;
}

void* counted_new_aligned(std::size_t n, std::align_val_t a) {
  void* p = nullptr;
  if (::posix_memalign(&p, std::max(static_cast<std::size_t>(a), sizeof(void*)), n ? n : 1) != 0)
    throw std::bad_alloc();
  counted(p, true);
  return p;
}

// The value pool's mapped blocks (src/value_pool.h) bypass operator new: their resident pages
// are counted through its hook.
void pool_resident(std::ptrdiff_t delta) noexcept {
  const long long now = live_bytes += delta;
  long long peak = peak_bytes.load();
  while (now > peak && !peak_bytes.compare_exchange_weak(peak, now)) {}
}
[[maybe_unused]] const bool pool_hooked =
    (pthio::detail::set_resident_observer(&pool_resident), true);

void counted_delete(void* p, bool aligned) noexcept {
  if (!p) return;
  const auto n = static_cast<long long>(malloc_usable_size(p));
  live_bytes -= n;
  if (aligned) live_aligned -= n;
  std::free(p);
}

}  // namespace

void* operator new(std::size_t n) { return counted_new(n); }
void* operator new[](std::size_t n) { return counted_new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void* operator new(std::size_t n, std::align_val_t a) { return counted_new_aligned(n, a); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_new_aligned(n, a); }
void operator delete(void* p) noexcept { counted_delete(p, false); }
void operator delete[](void* p) noexcept { counted_delete(p, false); }
void operator delete(void* p, std::size_t) noexcept { counted_delete(p, false); }
void operator delete[](void* p, std::size_t) noexcept { counted_delete(p, false); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_delete(p, false); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_delete(p, false); }
void operator delete(void* p, std::align_val_t) noexcept { counted_delete(p, true); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_delete(p, true); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counted_delete(p, true); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counted_delete(p, true); }

namespace {

using bytes = std::vector<std::byte>;

// The most memory `fn` had allocated at once, beyond what was live when it started.
template <class F>
long long peak_during(F&& fn) {
  const long long base = live_bytes.load();
  peak_bytes = base;
  fn();
  return peak_bytes.load() - base;
}

bytes to_bytes(std::string_view s) {
  bytes b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}

// ---- pickle building blocks (protocol 2) ----

std::string le(std::uint64_t v, int n) {
  std::string s(static_cast<std::size_t>(n), '\0');
  for (int i = 0; i < n; ++i)
    s[static_cast<std::size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}
std::string le32(std::uint64_t v) { return le(v, 4); }
std::string unicode(const std::string& s) { return "X" + le32(s.size()) + s; }
// An int of any size in 64 bits (LONG1 with 8 bytes).
std::string long8(std::int64_t v) { return "\x8a\x08"s + le(static_cast<std::uint64_t>(v), 8); }
std::string global(const std::string& module, const std::string& name) {
  return "c" + module + "\n" + name + "\n";
}

// {'w': _rebuild_tensor_v2(storage `key` of `numel` elements of `storage_class`, offset, shape,
// stride, False, OrderedDict())}
std::string tensor_pickle(const std::string& key, std::int64_t numel,
                          const std::vector<std::int64_t>& shape,
                          const std::vector<std::int64_t>& stride, std::int64_t offset,
                          const std::string& storage_class = "FloatStorage") {
  std::string pid = "(" + unicode("storage") + global("torch", storage_class) + unicode(key) +
                    unicode("cpu") + long8(numel) + "t";
  auto tuple = [](const std::vector<std::int64_t>& v) {
    std::string s = "(";
    for (auto x : v) s += long8(x);
    return s + "t";
  };
  return "\x80\x02}" + unicode("w") + global("torch._utils", "_rebuild_tensor_v2") + "(" + pid +
         "Q" + long8(offset) + tuple(shape) + tuple(stride) + "\x89" +
         global("collections", "OrderedDict") + ")Rt" + "Rs.";
}

// A zip checkpoint (as torch lays it out) holding data.pkl and the given records under data/.
bytes zip_checkpoint(std::string_view pkl,
                     const std::vector<std::pair<std::string, std::string>>& records = {},
                     const std::string& archive = "archive") {
  pthio::memory_sink out;
  pthio::zip_writer zip(out);
  zip.add(archive + "/data.pkl", to_bytes(pkl));
  for (const auto& [name, data] : records) zip.add(archive + "/data/" + name, to_bytes(data));
  zip.add(archive + "/version", to_bytes("3\n"));
  zip.finish();
  return out.buffer();
}

// A legacy (pre-1.6) stream whose object pickle is `object`, with no storages.
bytes legacy_checkpoint(std::string_view object) {
  std::string s = "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."s;  // the magic number
  s += "\x80\x02M\xe9\x03.";                                                     // protocol 1001
  s += "\x80\x02}" + unicode("little_endian") + "\x88s.";                        // sys_info
  s += object;
  s += "\x80\x02].";  // no storage keys
  return to_bytes(s);
}

pthio::checkpoint load_bytes(const bytes& b, const pthio::load_options& o = cpu_options()) {
  return pthio::load_checkpoint(pthio::byte_source::borrow(b, "hostile.pth"), o);
}

// The error a load gives; FAILs when it loads.
pthio::error load_error(const bytes& b, const pthio::load_options& o = cpu_options()) {
  try {
    load_bytes(b, o);
  } catch (const pthio::error& e) {
    return e;
  }
  FAIL("loaded without an error");
  return pthio::error(pthio::errc::io, "unreachable");
}

// ---- deflate, by hand: a fixed-Huffman stream of `n` zero bytes (RFC 1951 3.2.6) ----

bytes deflate_zeros(std::uint64_t n) {
  bytes out;
  std::uint32_t acc = 0;
  int bits = 0;
  auto put = [&](std::uint32_t v, int count) {  // LSB first
    acc |= v << bits;
    bits += count;
    while (bits >= 8) {
      out.push_back(static_cast<std::byte>(acc & 0xff));
      acc >>= 8;
      bits -= 8;
    }
  };
  auto huff = [&](std::uint32_t code, int len) {  // Huffman codes go most significant bit first
    for (int i = len - 1; i >= 0; --i) put((code >> i) & 1, 1);
  };
  put(1, 1);  // BFINAL
  put(1, 2);  // BTYPE 01: fixed codes
  std::uint64_t left = n;
  if (left) {
    huff(0x30, 8);  // literal 0
    --left;
  }
  for (; left >= 258; left -= 258) {
    huff(0xC5, 8);  // length code 285: 258 bytes
    huff(0, 5);     // distance code 0: 1 byte back
  }
  for (; left; --left) huff(0x30, 8);
  huff(0, 7);  // end of block (256)
  if (bits) out.push_back(static_cast<std::byte>(acc & 0xff));
  return out;
}

// A zip of one entry whose data is `data` as method `method`, declaring `declared` bytes
// uncompressed (written by hand: zip_writer only stores).
bytes one_entry_zip(const std::string& name, const bytes& data, std::uint16_t method,
                    std::uint64_t declared, std::uint32_t crc = 0) {
  std::string s;
  s += "PK\3\4"s + le(20, 2) + le(0, 2) + le(method, 2) + le(0, 4) + le(crc, 4) +
       le32(data.size()) + le32(declared) + le(name.size(), 2) + le(0, 2) + name;
  bytes b = to_bytes(s);
  b.insert(b.end(), data.begin(), data.end());
  const std::uint64_t cd = b.size();
  std::string c = "PK\1\2"s + le(20, 2) + le(20, 2) + le(0, 2) + le(method, 2) + le(0, 4) +
                  le(crc, 4) + le32(data.size()) + le32(declared) + le(name.size(), 2) + le(0, 2) +
                  le(0, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le32(0) + name;
  c += "PK\5\6"s + le(0, 2) + le(0, 2) + le(1, 2) + le(1, 2) + le32(c.size()) + le32(cd) + le(0, 2);
  bytes cb = to_bytes(c);
  b.insert(b.end(), cb.begin(), cb.end());
  return b;
}

// ---- the hostile pickles of the memory tests ----

struct hostile {
  const char* what;
  std::string pickle;
  bool at_default_cap = false;  // one of the patterns also run into the default 64 MiB cap
};

// Each pattern sized by `n` (the number of values, entries or strings it makes, about).
std::vector<hostile> memory_hostile_pickles(std::size_t n) {
  std::vector<hostile> h;
  auto repeat = [](const std::string& unit, std::size_t count) {
    std::string s;
    s.reserve(unit.size() * count);
    for (std::size_t i = 0; i < count; ++i) s += unit;
    return s;
  };
  const std::string p2 = "\x80\x02";
  h.push_back({"n Nones on the stack", p2 + std::string(n, 'N') + ".", true});
  h.push_back({"n/2 empty lists", p2 + std::string(n / 2, ']') + "."});
  h.push_back({"n/2 empty dicts", p2 + std::string(n / 2, '}') + "."});
  h.push_back({"n/2 empty sets", p2 + std::string(n / 2, '\x8f') + "."});
  h.push_back({"a LIST of n values", p2 + "(" + std::string(n, 'N') + "l."});
  h.push_back({"a TUPLE of n values", p2 + "(" + std::string(n, 'N') + "t."});
  h.push_back({"a FROZENSET of n values", p2 + "(" + std::string(n, '\x88') + "\x91."});
  h.push_back({"a list grown by single APPENDs", p2 + "]" + repeat("Na", n) + ".", true});
  h.push_back({"an object grown by APPENDs", p2 + "cm\nc\n)R" + repeat("Na", n) + "."});
  {
    std::string s = p2 + "}(";
    for (std::uint32_t i = 0; i < n / 2; ++i) s += "J" + le32(i) + "N";
    h.push_back({"a dict of n/2 SETITEMS", s + "u."});
  }
  {
    std::string s = p2 + "}";
    for (std::uint32_t i = 0; i < n / 2; ++i) s += "J" + le32(i) + "Ns";
    h.push_back({"a dict grown by single SETITEMs", s + ".", true});
  }
  {
    std::string s = p2 + "cm\nc\n)R(";
    for (std::uint32_t i = 0; i < n / 2; ++i) s += "J" + le32(i) + "N";
    h.push_back({"an object's dict items", s + "u."});
  }
  {
    std::string s = p2 + "N";
    for (std::uint32_t i = 0; i < n; ++i) s += "r" + le32(i);
    h.push_back({"n dense memo entries", s + "."});
  }
  {
    std::string s = p2 + "N";
    for (std::uint32_t i = 0; i < n; ++i) s += "r" + le32(4096 + 15 * i);
    h.push_back({"n sparse memo entries", s + ".", true});
  }
  h.push_back(
      {"an n-byte string memoized and fetched 200 times",
       p2 + "X" + le32(n) + std::string(n, 'a') + "q\x00("s + repeat("h\x00"s, 200) + "l."});
  h.push_back({"n 16-byte strings", p2 + repeat("\x8c\x10" + std::string(16, 's'), n) + ".", true});
  h.push_back({"n/2 20-digit INTs", p2 + repeat("I12345678901234567890\n", n / 2) + "."});
  h.push_back(
      {"n/2 9-byte LONG1s", p2 + repeat("\x8a\x09"s + std::string(9, '\x7f'), n / 2) + "."});
  h.push_back({"a global DUPed n times", p2 + "cm\nf\n" + std::string(n, '2') + "."});
  // Copies of a memoized text share it, but what is built from one is new: bytes(), bytearray()
  // and _codecs.encode (all allowed in weights-only mode) of an n-byte text, 200 times over.
  const std::string le_n = {static_cast<char>(n), static_cast<char>(n >> 8),
                            static_cast<char>(n >> 16), static_cast<char>(n >> 24)};
  h.push_back({"_codecs.encode of a memoized n-byte str, 200 times",
               p2 + "X" + le_n + std::string(n, 'e') + "q\x00"s + "0c_codecs\nencode\nq\x01" +
                   "0(" + repeat("h\x01h\x00X\x06\x00\x00\x00latin1\x86R"s, 200) + "l.",
               true});
  h.push_back({"bytearray of a memoized n-byte bytes, 200 times",
               p2 + "B" + le_n + std::string(n, 'b') + "q\x00"s + "0cbuiltins\nbytearray\nq\x01" +
                   "0(" + repeat("h\x01h\x00\x85R"s, 200) + "l.",
               true});
  h.push_back({"bytes of a list of n/4 small ints, 50 times",
               p2 + "(" + repeat("K\x07", n / 4) + "lq\x00"s + "0cbuiltins\nbytes\nq\x01" + "0(" +
                   repeat("h\x01h\x00\x85R"s, 50) + "l."});
  h.push_back({"n/2 inert REDUCEs", p2 + repeat("cm\nf\n)R", n / 2) + "."});
  // Shared containers send the unpickler's STOP walk over everything it built.
  h.push_back({"a shared list holding n/2 lists",
               p2 + "]q\x00("s + std::string(n / 2, ']') + "eh\x00\x85."s, true});
  return h;
}

}  // namespace

TEST_SUITE("limits") {
  TEST_CASE("limits: unpickling a hostile pickle uses at most its size plus max_memory") {
    // The unpickler's own accounting, with torch's globals, at the default cap (64 MiB, with n a
    // million) and a configured 4 MiB one (n = 2^17): most of these hit the cap and are refused.
    for (std::uint64_t cap : {std::uint64_t{64} << 20, std::uint64_t{4} << 20}) {
      for (const auto& h : memory_hostile_pickles(cap >> 6)) {
        if (cap == std::uint64_t{64} << 20 && !h.at_default_cap)
          continue;  // the others at 4 MiB only
        INFO("pickle: ", std::string(h.what));
        CAPTURE(cap);
        const bytes input = to_bytes(h.pickle);
        pthio::unpickle_options o;
        o.globals = &pthio::torch_globals();
        o.limits.max_memory = cap;
        std::string outcome;
        const long long peak = peak_during([&] {
          try {
            pthio::unpickle(input, o);
            outcome = "loaded";
          } catch (const pthio::error& e) {
            outcome = e.what();
            CHECK_MESSAGE(e.kind() == pthio::errc::limit_exceeded, e.what());
          }
        });
        INFO(outcome);
        CHECK(peak <= static_cast<long long>(input.size() + cap));
        if (h.pickle.size() > cap) CHECK(outcome != "loaded");  // what it would build cannot fit
      }
    }
  }

  TEST_CASE("limits: loading a hostile pickle stays within the budget load_options documents") {
    // load() gives a pickle of p bytes max_memory + 64 p (real pickles expand ~30x); with the
    // input's own n bytes, a load holds at most n + max_memory + 64 p before tensor data. Each
    // pickle bare under a 1 MiB cap, and as a zip checkpoint's data.pkl under a 4 MiB one.
    for (const auto& h : memory_hostile_pickles(std::size_t{1} << 15)) {
      for (const auto& [cap, zip] :
           {std::pair{std::uint64_t{1} << 20, false}, std::pair{std::uint64_t{4} << 20, true}}) {
        INFO("pickle: ", std::string(h.what));
        CAPTURE(cap);
        CAPTURE(zip);
        const bytes input = zip ? zip_checkpoint(h.pickle) : to_bytes(h.pickle);
        pthio::load_options o = cpu_options();
        o.limits.max_memory = cap;
        std::string outcome;
        const long long peak = peak_during([&] {
          try {
            auto ck = load_bytes(input, o);
            outcome = "loaded";
          } catch (const pthio::error& e) {
            outcome = e.what();
            CHECK_MESSAGE(e.kind() == pthio::errc::limit_exceeded, e.what());
          }
        });
        INFO(outcome);
        CHECK(peak <= static_cast<long long>(input.size() + cap + 64 * h.pickle.size()));
      }
    }
  }

  TEST_CASE("limits: a configured max_memory is honoured and reported as limit_exceeded") {
    const bytes input = to_bytes("\x80\x02(" + std::string(1 << 17, 'N') + "l.");
    pthio::unpickle_options u;
    u.limits.max_memory = 1 << 20;
    u.context = "data.pkl";
    const long long peak = peak_during([&] {
      try {
        pthio::unpickle(input, u);
        FAIL("loaded past max_memory");
      } catch (const pthio::error& e) {
        CHECK(e.kind() == pthio::errc::limit_exceeded);
        CHECK(std::string(e.what()).find("data.pkl: offset ") != std::string::npos);
        CHECK(std::string(e.what()).find("max_memory (1048576 bytes)") != std::string::npos);
      }
    });
    CHECK(peak <= static_cast<long long>(input.size() + (1 << 20)));
    // load() adds 64 bytes per pickle byte to the cap it is given, and names the file: a one-byte
    // None costs less than that (a 24-byte slot), a one-byte empty list more.
    pthio::load_options o = cpu_options();
    o.limits.max_memory = 1 << 20;
    auto e = load_error(to_bytes("\x80\x02(" + std::string(1 << 19, ']') + "l."), o);
    CHECK(e.kind() == pthio::errc::limit_exceeded);
    CHECK(std::string(e.what()).find("hostile.pth") != std::string::npos);
    // The same pickle loads with the default cap.
    CHECK(load_bytes(input).root.as_list().items.size() == std::size_t{1} << 17);
    CHECK(pthio::unpickle(input, {}).root.as_list().items.size() == std::size_t{1} << 17);
  }

  TEST_CASE("limits: real checkpoints load within their size plus max_memory, tensor data apart") {
    for (const char* rel :
         {"t2/many_tensors.pth", "t2/ckpt_adamw.pth", "t1/legacy_ckpt.pth", "t2/scripted.pt"}) {
      CAPTURE(rel);
      const bytes input = pthio_test::read_bytes(pthio_test::fixture(rel));
      long long tensor_data = 0;
      const long long peak = peak_during([&] {
        auto ck = load_bytes(input);
        tensor_data = live_aligned.load();
        std::size_t n = 0;
        pthio::visit_tensors(ck.root, [&](const std::string&, const pthio::value&) { ++n; });
        CHECK(n > 0);
      });
      CHECK(peak <= static_cast<long long>(input.size()) + (64 << 20) + tensor_data);
    }
  }

  TEST_CASE("limits: zip bombs are refused before they allocate" * pthio_test::needs_cli) {
    // 64 MiB of zeros deflated to a few hundred KiB, as a storage record and as data.pkl.
    const std::uint64_t big = std::uint64_t{64} << 20;
    const bytes zeros = deflate_zeros(big);
    REQUIRE(zeros.size() < big / 100);
    {
      // The reader inflates it correctly when allowed to (the hand-made stream is valid) ...
      const bytes b = one_entry_zip("bomb", zeros, 8, big);
      pthio::zip_reader zip(pthio::byte_source::borrow(b, "bomb.zip"));
      CHECK(zip.read(zip.entries()[0]).size() == big);
    }
    {
      // ... and refuses it, allocating nothing of its size, under max_inflated_size.
      const bytes b = one_entry_zip("bomb", zeros, 8, big);
      pthio::zip_read_options zo;
      zo.max_inflated_size = 1 << 20;
      const long long peak = peak_during([&] {
        pthio::zip_reader zip(pthio::byte_source::borrow(b, "bomb.zip"), zo);
        try {
          zip.read(zip.entries()[0]);
          FAIL("inflated past max_inflated_size");
        } catch (const pthio::error& e) {
          CHECK(e.kind() == pthio::errc::limit_exceeded);
        }
      });
      CHECK(peak < (1 << 20));
    }
    {
      // A pickle record that inflates past max_memory is refused by load before it is inflated.
      const bytes b = one_entry_zip("archive/data.pkl", zeros, 8, big);
      pthio::load_options o = cpu_options();
      o.limits.max_memory = 4 << 20;
      const long long peak = peak_during([&] {
        auto e = load_error(b, o);
        CHECK(e.kind() == pthio::errc::limit_exceeded);
      });
      CHECK(peak < (4 << 20));
    }
    {
      // Declaring more than deflate's 1032:1 ratio allows: refused from the sizes alone.
      const bytes b = one_entry_zip("archive/data.pkl", deflate_zeros(1000), 8, 0xFFFFFFF0);
      const long long peak = peak_during([&] { CHECK_THROWS_AS(load_bytes(b), pthio::error); });
      CHECK(peak < (1 << 20));
    }
    {
      // The command: a bomb is a corrupt or unreadable file, never a crash.
      auto path = pthio_test::scratch_dir() / "bomb.pth";
      pthio_test::write_bytes(
          path, one_entry_zip("archive/data.pkl", deflate_zeros(1000), 8, 0xFFFFFFF0));
      for (const char* cmd : {"ls", "dump", "scan", "verify"}) {
        CAPTURE(cmd);
        auto r =
            pthio_test::run_cli(std::string(cmd) + " " + pthio_test::shell_quote(path.string()));
        CHECK((r.status == 1 || r.status == 3));
      }
    }
  }

  // ---- code-running globals --------------------------------------------------------------------

  namespace {

  struct call_form {
    const char* opcode;
    std::string pickle;  // calls module.name with one str argument, whatever the opcode
  };

  std::vector<call_form> call_forms(const std::string& module, const std::string& name) {
    const std::string arg = "X" + le32(2) + "id";
    const std::string sm = "\x8c" + std::string(1, static_cast<char>(module.size())) + module;
    const std::string sn = "\x8c" + std::string(1, static_cast<char>(name.size())) + name;
    return {
        {"GLOBAL + REDUCE", "\x80\x02" + global(module, name) + arg + "\x85R."},
        {"STACK_GLOBAL + REDUCE", "\x80\x04" + sm + sn + "\x93" + arg + "\x85R."},
        {"INST", "(" + arg + "i" + module + "\n" + name + "\n."},
        {"OBJ", "(" + global(module, name) + arg + "o."},
        {"NEWOBJ", "\x80\x02" + global(module, name) + arg + "\x85\x81."},
        {"NEWOBJ_EX", "\x80\x04" + sm + sn + "\x93" + arg + "\x85}\x92."},
    };
  }

  const std::vector<std::pair<std::string, std::string>> code_running = {
      {"os", "system"},           {"posix", "system"},     {"subprocess", "Popen"},
      {"builtins", "eval"},       {"builtins", "exec"},    {"builtins", "getattr"},
      {"runpy", "_run_code"},     {"__builtin__", "eval"}, {"nt", "system"},
      {"builtins", "__import__"},
  };

  std::string python3_module(const std::string& m) { return m == "__builtin__" ? "builtins" : m; }

  }  // namespace

  TEST_CASE("limits: weights-only loads refuse code-running globals through every calling opcode") {
    for (const auto& [module, name] : code_running) {
      for (const auto& form : call_forms(module, name)) {
        const std::string q = python3_module(module) + "." + name;
        CAPTURE(q);
        CAPTURE(form.opcode);
        pthio::load_options strict = cpu_options();
        strict.strict = true;
        for (const auto& [format, input] :
             std::vector<std::pair<const char*, bytes>>{{"zip", zip_checkpoint(form.pickle)},
                                                        {"legacy", legacy_checkpoint(form.pickle)},
                                                        {"pickle", to_bytes(form.pickle)}}) {
          CAPTURE(format);
          auto e = load_error(input, strict);
          CHECK(e.kind() == pthio::errc::unsafe_global);
          CHECK_MESSAGE(
              std::string(e.what()).find("global " + q + " is not allowed in weights-only mode") !=
                  std::string::npos,
              e.what());
          CHECK(std::string(e.what()).find("hostile.pth") != std::string::npos);
          if (std::string(format) == "zip")
            CHECK(std::string(e.what()).find("archive/data.pkl") != std::string::npos);
          // Without strict the call is an inert object (or a refusal): nothing runs either way.
          try {
            load_bytes(input);
          } catch (const pthio::error& err) {
            CHECK(err.kind() != pthio::errc::unsafe_global);
          }
        }
      }
    }
  }

  TEST_CASE(
      "limits: pthio scan reports code-running globals through every calling opcode, in any mode" *
      pthio_test::needs_cli) {
    auto dir = pthio_test::scratch_dir();
    int n = 0;
    const char* flag_sets[] = {"--json", "--json --strict", "--json --mmap", ""};
    for (const auto& [module, name] :
         std::vector<std::pair<std::string, std::string>>{{"os", "system"},
                                                          {"__builtin__", "eval"},
                                                          {"subprocess", "Popen"},
                                                          {"runpy", "_run_code"}}) {
      const std::string q = python3_module(module) + "." + name;
      for (const auto& form : call_forms(module, name)) {
        CAPTURE(q);
        CAPTURE(form.opcode);
        for (const auto& [format, input] :
             std::vector<std::pair<const char*, bytes>>{{"zip", zip_checkpoint(form.pickle)},
                                                        {"legacy", legacy_checkpoint(form.pickle)},
                                                        {"pickle", to_bytes(form.pickle)}}) {
          CAPTURE(format);
          auto path = dir / ("evil" + std::to_string(++n) + ".pth");
          pthio_test::write_bytes(path, input);
          {
            const char* flags = flag_sets[n % 4];  // each file under one of the modes, in turn
            CAPTURE(flags);
            auto r = pthio_test::run_cli("scan " + std::string(flags) + " " +
                                         pthio_test::shell_quote(path.string()));
            CHECK(r.status == 1);
            if (std::string(flags).find("--json") != std::string::npos) {
              CHECK(r.out.find("\"verdict\": \"unsafe\"") != std::string::npos);
              CHECK(r.out.find("\"dangerous\": [\"" + q + "\"]") != std::string::npos);
            } else {
              CHECK(r.out.find(q + "  DANGEROUS") != std::string::npos);
            }
          }
        }
      }
    }
  }

  TEST_CASE("limits: a pickle hidden in a pickle is neither unpickled nor allowed" *
            pthio_test::needs_cli) {
    // torch.serialization.load / torch.storage._load_from_bytes would unpickle their bytes
    // argument; here that argument is a pickle calling os.system.
    const std::string inner = "\x80\x02" + global("os", "system") + unicode("id") + "\x85R.";
    const std::string inner_bytes = "C" + std::string(1, static_cast<char>(inner.size())) + inner;
    for (const auto& [module, name] :
         std::vector<std::pair<std::string, std::string>>{{"torch.storage", "_load_from_bytes"},
                                                          {"torch.serialization", "load"},
                                                          {"torch", "load"},
                                                          {"pickle", "loads"},
                                                          {"_pickle", "loads"},
                                                          {"dill", "loads"}}) {
      const std::string q = module + "." + name;
      CAPTURE(q);
      const std::string outer =
          "\x80\x03}" + unicode("w") + global(module, name) + inner_bytes + "\x85Rs.";
      const bytes input = zip_checkpoint(outer);
      pthio::load_options strict = cpu_options();
      strict.strict = true;
      auto e = load_error(input, strict);
      CHECK(e.kind() == pthio::errc::unsafe_global);
      CHECK(std::string(e.what()).find(q) != std::string::npos);
      // Not strict: an inert object holding the inner pickle as bytes, never unpickled.
      auto ck = load_bytes(input);
      const pthio::value* w = ck.root.find("w");
      REQUIRE(w);
      REQUIRE(w->is_object());
      CHECK(w->as_object().type.qualified() == q);
      CHECK(w->as_object().args.at(0).as_bytes() == inner);
      // scan flags the outer call (it knows what would run); the inner pickle stays unread.
      auto path = pthio_test::scratch_dir() / ("nested-" + module + "-" + name + ".pth");
      pthio_test::write_bytes(path, input);
      auto r = pthio_test::run_cli("scan --json " + pthio_test::shell_quote(path.string()));
      CHECK(r.status == 1);
      CHECK(r.out.find("\"dangerous\": [\"" + q + "\"]") != std::string::npos);
      CHECK(r.out.find("os.system") == std::string::npos);
    }
  }

  // ---- names -----------------------------------------------------------------------------------

  TEST_CASE("limits: storage keys are record names inside the archive, never paths") {
    // A file outside the archive that a path-joining loader would find.
    const std::string outside = pthio_test::fixture("t2/linear.pth").string();
    const std::string record(16, '\1');
    for (const std::string& key : {"../0"s, "../../../../../../etc/passwd"s, "/etc/passwd"s,
                                   outside, "0/../0"s, "./0"s, "0\0"s, "\0"s, "0\n"s, ".."s}) {
      CAPTURE(key);
      // The archive holds a record "0" (and "version" beside data/), which none of these names.
      auto e = load_error(zip_checkpoint(tensor_pickle(key, 4, {4}, {1}, 0), {{"0", record}}));
      CHECK(e.kind() == pthio::errc::corrupt_checkpoint);
      // Missing; or, for a key with a control byte (a NUL would cut the message short), refused.
      const std::string what = e.what();
      CHECK_MESSAGE((what.find("is missing") != std::string::npos ||
                     what.find("key holds a control character") != std::string::npos),
                    what);
    }
    // A key naming a record that does exist under those very bytes loads it, from the archive.
    for (const std::string& key : {"../0"s, "/etc/passwd"s, outside}) {
      CAPTURE(key);
      auto ck = load_bytes(zip_checkpoint(tensor_pickle(key, 4, {4}, {1}, 0), {{key, record}}));
      CHECK(ck.root.find("w")->as_tensor().numel() == 4);
    }
  }

  TEST_CASE(
      "limits: archive folder names are names: odd ones load from the archive, paths are refused") {
    for (const std::string& archive : {".."s, "."s, "~"s, "\\.."s}) {
      CAPTURE(archive);
      auto ck = load_bytes(zip_checkpoint(tensor_pickle("0", 4, {4}, {1}, 0),
                                          {{"0", std::string(16, '\2')}}, archive));
      CHECK(ck.archive_name == archive);
      CHECK(ck.root.find("w")->as_tensor().numel() == 4);
    }
    // torch's layout has one folder: a name with more (climbing or absolute) has no
    // <archive>/data.pkl.
    for (const std::string& archive : {"../../tmp/evil"s, "/abs"s, "a/b"s}) {
      CAPTURE(archive);
      auto e = load_error(zip_checkpoint(tensor_pickle("0", 4, {4}, {1}, 0),
                                         {{"0", std::string(16, '\2')}}, archive));
      CHECK(e.kind() == pthio::errc::corrupt_checkpoint);
    }
    // A record name with NUL in it (zip_writer refuses to write one): refused by the zip reader.
    auto e = load_error(one_entry_zip("archive/data\0.pkl"s, to_bytes("\x80\x02N."), 0, 4));
    CHECK(e.kind() == pthio::errc::corrupt_zip);
    CHECK(std::string(e.what()).find("NUL") != std::string::npos);
  }

  // ---- sizes that overflow ---------------------------------------------------------------------

  TEST_CASE("limits: shapes, strides, offsets and storage sizes that overflow are errors") {
    const std::int64_t max = INT64_MAX;
    const std::string rec(64, '\3');  // 16 floats
    struct bad {
      const char* what;
      std::int64_t numel;
      std::vector<std::int64_t> shape, stride;
      std::int64_t offset;
      std::string storage_class = "FloatStorage";
    };
    const std::vector<bad> cases = {
        {"numel * element size overflows", std::int64_t{1} << 62, {4}, {1}, 0},
        {"numel of INT64_MAX doubles", max, {1}, {1}, 0, "DoubleStorage"},
        {"shape product overflows", 16, {std::int64_t{1} << 32, std::int64_t{1} << 32}, {0, 0}, 0},
        {"shape product past INT64_MAX", 16, {max, 2}, {0, 0}, 0},
        {"(size - 1) * stride overflows", 16, {3}, {std::int64_t{1} << 62}, 0},
        {"offset + span overflows", 16, {2}, {max}, 1},
        {"offset of INT64_MAX", 16, {1}, {1}, max},
        {"offset past the storage", 16, {1}, {1}, 16},
        {"last element one past the storage", 16, {2, 8}, {8, 1}, 1},
        {"negative stride", 16, {2}, {-1}, 4},
        {"negative offset", 16, {2}, {1}, -1},
        {"negative extent", 16, {-2}, {1}, 0},
        {"INT64_MIN extent", 16, {INT64_MIN}, {1}, 0},
        {"shape and stride of different lengths", 16, {2, 2}, {1}, 0},
        {"numel larger than the record", 17, {1}, {1}, 0},
    };
    for (const auto& c : cases) {
      CAPTURE(c.what);
      const bytes input = zip_checkpoint(
          tensor_pickle("0", c.numel, c.shape, c.stride, c.offset, c.storage_class), {{"0", rec}});
      const long long peak = peak_during([&] {
        for (auto mode : {pthio::load_mode::eager, pthio::load_mode::mmap}) {
          pthio::load_options o = cpu_options();
          o.mode = mode;
          auto e = load_error(input, o);
          CHECK_MESSAGE((e.kind() == pthio::errc::corrupt_checkpoint ||
                         e.kind() == pthio::errc::limit_exceeded),
                        e.what());
        }
      });
      CHECK(peak < (1 << 20));  // refused from the numbers, before allocating anything of that size
    }
    // A stride-0 view may claim 2^40 elements of a one-element storage, as torch's expand() does:
    // it loads without allocating them.
    const long long peak = peak_during([&] {
      auto ck = load_bytes(
          zip_checkpoint(tensor_pickle("0", 16, {std::int64_t{1} << 40}, {0}, 15), {{"0", rec}}));
      CHECK(ck.root.find("w")->as_tensor().numel() == std::int64_t{1} << 40);
    });
    CHECK(peak < (1 << 20));
  }

  TEST_CASE("limits: dims that are not machine ints, and numpy and legacy sizes that overflow") {
    const std::string rec(64, '\3');
    // A shape holding a 2^70 big int, a float, a None.
    for (const std::string& dim :
         {"\x8a\x09"s + std::string(8, '\0') + "\x40"s, "G@\x10\0\0\0\0\0\0"s, "N"s}) {
      std::string p = tensor_pickle("0", 16, {4}, {1}, 0);
      const std::string four = long8(4);
      p.replace(p.find(four), four.size(), dim);  // the first 4 is the shape's
      auto e = load_error(zip_checkpoint(p, {{"0", rec}}));
      CHECK(e.kind() == pthio::errc::corrupt_checkpoint);
    }
    // A numpy array whose shape overflows, or whose data does not match it.
    for (const std::vector<std::int64_t>& shape : std::vector<std::vector<std::int64_t>>{
             {std::int64_t{1} << 40, std::int64_t{1} << 40}, {std::int64_t{1} << 62}, {3}}) {
      std::string dims = "(";
      for (auto d : shape) dims += long8(d);
      dims += "t";
      const std::string arr = global("numpy.core.multiarray", "_reconstruct") +
                              global("numpy", "ndarray") + "K\x00\x85"s +
                              "C\x01"
                              "b"
                              "\x87R" +
                              "(K\x01" + dims + global("numpy", "dtype") + unicode("f4") +
                              "\x89\x88\x87R" + "(K\x03" + unicode("<") +
                              "NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"s + "b" + "\x89" +
                              "C\x08" + std::string(8, '\0') + "tb";
      const std::string p = "\x80\x02}" + unicode("a") + arr + "s.";
      CAPTURE(shape.size());
      const long long peak = peak_during([&] {
        auto e = load_error(zip_checkpoint(p));
        CHECK((e.kind() == pthio::errc::corrupt_checkpoint ||
               e.kind() == pthio::errc::limit_exceeded));
      });
      CHECK(peak < (1 << 20));
    }
    // Legacy: storages declaring more than the file holds are refused before they are allocated.
    {
      std::string pid = "(" + unicode("storage") + global("torch", "FloatStorage") + unicode("0") +
                        unicode("cpu") + long8(std::int64_t{1} << 40) + "Nt";
      const std::string obj = "\x80\x02}" + unicode("s") + pid + "Qs.";
      const long long peak = peak_during([&] {
        auto e = load_error(legacy_checkpoint(obj));
        CHECK(std::string(e.what()).find("more bytes than the file holds") != std::string::npos);
      });
      CHECK(peak < (1 << 20));
    }
    // Legacy: a view (key, offset, numel) whose end overflows.
    {
      std::string view =
          "(" + unicode("v") + long8(std::int64_t{1} << 62) + long8(std::int64_t{1} << 62) + "t";
      std::string pid = "(" + unicode("storage") + global("torch", "FloatStorage") + unicode("0") +
                        unicode("cpu") + long8(4) + view + "t";
      const std::string obj = "\x80\x02}" + unicode("s") + pid + "Qs.";
      auto e = load_error(legacy_checkpoint(obj));
      CHECK(std::string(e.what()).find("outside its root storage") != std::string::npos);
    }
  }

}  // TEST_SUITE

TEST_SUITE("limits") {
  TEST_CASE("limits: a value that doubles through shared tuples is refused by dump and key paths" *
            pthio_test::needs_cli) {
    // (x, x) nested 60 times: 2^60 values once shared containers are written out in full.
    // (Found by the safetensors fuzzer as a 10 s timeout:
    // regress-dump-json-exponential-shared-tuples.)
    std::string doubling;
    for (int i = 0; i < 60; ++i) doubling += "2\x86";  // DUP, TUPLE2
    const auto v = pthio::unpickle(to_bytes("\x80\x02N" + doubling + "."), {}).root;
    try {
      (void)pthio::cli::dump_json(v);
      FAIL("rendered");
    } catch (const pthio::error& e) {
      CHECK(e.kind() == pthio::errc::limit_exceeded);
      CHECK(std::string(e.what()).find("dump: shared containers written out in full make ") !=
            std::string::npos);
    }
    CHECK_THROWS_AS(pthio::visit_tensors(v, [](const std::string&, const pthio::value&) {}),
                    pthio::error);
    // A few doublings are rendered as usual.
    std::string few;
    for (int i = 0; i < 10; ++i) few += "2\x86";
    CHECK(
        pthio::cli::dump_json(pthio::unpickle(to_bytes("\x80\x02N" + few + "."), {}).root).size() >
        1024 * 4);
    // The command refuses both, quickly, with exit status 3; over a tensor, ls too.
    std::string over_tensor = tensor_pickle("0", 4, {4}, {1}, 0);
    over_tensor.pop_back();  // STOP
    const auto path = pthio_test::scratch_dir() / "doubling.pth";
    pthio_test::write_bytes(
        path, zip_checkpoint(over_tensor + doubling + ".", {{"0", std::string(16, '\1')}}));
    for (const char* cmd : {"dump --json", "ls", "ls --json"}) {
      CAPTURE(cmd);
      auto r = pthio_test::run_cli(std::string(cmd) + " " + pthio_test::shell_quote(path.string()));
      CHECK(r.status == 3);
      CHECK(r.err.find("shared containers written out in full") != std::string::npos);
    }
  }

  TEST_CASE("limits: dict keys holding cyclic objects compare without recursing round the cycle") {
    // Two sets, each added to itself, as one-element key tuples: tuples of objects hash alike,
    // and comparing the keys by their contents recursed round the cycles until the stack
    // overflowed. Objects key by identity, as in Python; the cycles are then refused at STOP.
    // (Found by the safetensors fuzzer's bare-pickle path:
    // tests/corpus/safetensors/regress-cyclic-sets-in-dict-keys.)
    const std::string set_in_itself = "\x8fq\x00(h\x00\x90\x85K\x01\x8fq\x01(h\x01\x90\x85K\x02"s;
    try {
      pthio::unpickle(to_bytes("\x80\x02}(" + set_in_itself + "u."), {});
      FAIL("a cyclic set loaded");
    } catch (const pthio::error& e) {
      CHECK(e.kind() == pthio::errc::unsupported);
      CHECK_MESSAGE(std::string(e.what()).find("cyclic") != std::string::npos, e.what());
    }
    // Two distinct objects with equal contents stay two keys; one object twice is one key.
    auto d =
        pthio::unpickle(
            to_bytes("\x80\x02}(" + global("m", "C") + "q\x00)R\x85K\x01h\x00)R\x85K\x02u."s), {})
            .root;
    CHECK(d.as_dict().size() == 2);
    d = pthio::unpickle(
            to_bytes("\x80\x02}(" + global("m", "C") + ")Rq\x00\x85K\x01h\x00\x85K\x02u."s), {})
            .root;
    CHECK(d.as_dict().size() == 1);
  }

  TEST_CASE("limits: calling a set instance is refused, as in Python") {
    // Non-strict mode keeps a call on an object as an object of its class with args (callee, args);
    // for a class pthio handles itself (a set), writing that back would read as a different call.
    // (Found by the roundtrip fuzzer: tests/corpus/roundtrip/regress-call-on-a-set-object.)
    for (const auto& [make, type] : std::vector<std::pair<std::string, std::string>>{
             {"\x8f", "builtins.set"},
             {global("builtins", "set") + ")R", "builtins.set"},
             {"(K\x01\x91", "builtins.frozenset"},
             {global("__builtin__", "frozenset") + "]\x85R", "builtins.frozenset"}}) {
      const std::string p = "\x80\x02" + make + "(K\x01t" + "R.";
      CAPTURE(p);
      try {
        pthio::unpickle(to_bytes(p), {});
        FAIL("called");
      } catch (const pthio::error& e) {
        CHECK(e.kind() == pthio::errc::corrupt_pickle);
        CHECK_MESSAGE(std::string(e.what()).find("REDUCE: a " + type + " object is not callable") !=
                          std::string::npos,
                      e.what());
      }
    }
    // An instance of a class pthio does not model may be called (it may define __call__).
    auto v = pthio::unpickle(to_bytes("\x80\x02" + global("m", "C") + ")R(K\x01tR."), {}).root;
    CHECK(v.as_object().type.qualified() == "m.C");
    CHECK(v.as_object().args.items().size() == 2);
  }

}  // TEST_SUITE
