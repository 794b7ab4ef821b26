// Tests of the pickle layer: golden pickles written by CPython (tests/data/pickle/make.py) read
// at every protocol, the protocol-2 writer against CPython byte for byte, round trips, and
// hostile streams (truncations, bad opcodes, stack and memo abuse, limits, unsafe globals).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "pthio/error.hpp"
#include "pthio/pickle.hpp"
#include "pthio/value.hpp"
#include "support.h"

using namespace std::string_literals;
using pthio::value;

namespace {

// ---- building expected values ------------------------------------------------------------------

value L(std::vector<value> items = {}) { return value::make_list(std::move(items)); }
value T(std::vector<value> items = {}) { return value::make_tuple(std::move(items)); }
value B(std::string s) { return value::make_bytes(std::move(s)); }
value G(std::string m, std::string n) { return value::make_global(std::move(m), std::move(n)); }
value big(std::string_view decimal) { return value(pthio::big_int::from_decimal(decimal)); }
value D(std::vector<std::pair<value, value>> kv = {}) {
  value d = value::make_dict();
  for (auto& [k, v] : kv) d.as_dict().set(k, v);
  return d;
}
value OD(std::vector<std::pair<value, value>> kv = {}) {
  value d = value::make_ordered_dict();
  for (auto& [k, v] : kv) d.as_dict().set(k, v);
  return d;
}
value OBJ(std::string m, std::string n, value args, std::vector<value> list_items = {}) {
  value o = value::make_object({std::move(m), std::move(n)}, std::move(args));
  o.as_object().list_items = std::move(list_items);
  return o;
}
value with_state(value o, value state) {
  o.as_object().state = std::move(state);
  o.as_object().has_state = true;
  return o;
}

// ---- strict structural comparison (no Python-style 1 == True == 1.0) --------------------------

// "" when equal, else where and how they differ.
std::string diff(const value& a, const value& b, const std::string& at = "root") {
  if (a.type() != b.type())
    return at + ": " + std::string(a.type_name()) + " vs " + std::string(b.type_name());
  using k = value::kind;
  auto seq = [&](std::span<const value> x, std::span<const value> y,
                 const std::string& w) -> std::string {
    if (x.size() != y.size())
      return w + ": " + std::to_string(x.size()) + " vs " + std::to_string(y.size()) + " items";
    for (std::size_t i = 0; i < x.size(); ++i)
      if (auto d = diff(x[i], y[i], w + "[" + std::to_string(i) + "]"); !d.empty()) return d;
    return "";
  };
  switch (a.type()) {
    case k::none: return "";
    case k::boolean: return a.as_bool() == b.as_bool() ? "" : at + ": bool differs";
    case k::integer:
      return a.as_int() == b.as_int()
                 ? ""
                 : at + ": " + std::to_string(a.as_int()) + " vs " + std::to_string(b.as_int());
    case k::big_integer:
      return a.as_big_int() == b.as_big_int()
                 ? ""
                 : at + ": " + a.as_big_int().to_string() + " vs " + b.as_big_int().to_string();
    case k::floating: {
      double x = a.as_float(), y = b.as_float();
      if (std::isnan(x) && std::isnan(y)) return "";
      return std::memcmp(&x, &y, sizeof x) == 0
                 ? ""
                 : at + ": " + std::to_string(x) + " vs " + std::to_string(y);
    }
    case k::string:
      return a.as_str() == b.as_str() ? "" : at + ": '" + a.as_str() + "' vs '" + b.as_str() + "'";
    case k::bytes: return a.as_bytes() == b.as_bytes() ? "" : at + ": bytes differ";
    case k::list: return seq(a.as_list().items, b.as_list().items, at);
    case k::tuple: return seq(a.as_tuple(), b.as_tuple(), at);
    case k::dict: {
      const auto& x = a.as_dict();
      const auto& y = b.as_dict();
      if (x.class_name != y.class_name)
        return at + ": class '" + x.class_name + "' vs '" + y.class_name + "'";
      if (x.size() != y.size())
        return at + ": " + std::to_string(x.size()) + " vs " + std::to_string(y.size()) +
               " entries";
      for (std::size_t i = 0; i < x.size(); ++i) {
        if (auto d =
                diff(x.entries()[i].first, y.entries()[i].first, at + ".key" + std::to_string(i));
            !d.empty())
          return d;
        if (auto d = diff(x.entries()[i].second, y.entries()[i].second,
                          at + "[" + std::to_string(i) + "]");
            !d.empty())
          return d;
      }
      if (x.attrs.size() != y.attrs.size()) return at + ": attribute counts differ";
      for (std::size_t i = 0; i < x.attrs.size(); ++i) {
        if (x.attrs[i].first != y.attrs[i].first)
          return at + ": attribute " + x.attrs[i].first + " vs " + y.attrs[i].first;
        if (auto d = diff(x.attrs[i].second, y.attrs[i].second, at + "." + x.attrs[i].first);
            !d.empty())
          return d;
      }
      return "";
    }
    case k::global:
      return a.as_global() == b.as_global()
                 ? ""
                 : at + ": " + a.as_global().qualified() + " vs " + b.as_global().qualified();
    case k::object: {
      const auto& x = a.as_object();
      const auto& y = b.as_object();
      if (!(x.type == y.type))
        return at + ": object " + x.type.qualified() + " vs " + y.type.qualified();
      if (auto d = diff(x.args, y.args, at + ".args"); !d.empty()) return d;
      if (x.has_state != y.has_state) return at + ": has_state differs";
      if (auto d = diff(x.state, y.state, at + ".state"); !d.empty()) return d;
      if (auto d = seq(x.list_items, y.list_items, at + ".list_items"); !d.empty()) return d;
      if (x.dict_items.size() != y.dict_items.size()) return at + ": dict_items counts differ";
      for (std::size_t i = 0; i < x.dict_items.size(); ++i) {
        if (auto d = diff(x.dict_items[i].first, y.dict_items[i].first, at + ".dict_items.key");
            !d.empty())
          return d;
        if (auto d = diff(x.dict_items[i].second, y.dict_items[i].second, at + ".dict_items");
            !d.empty())
          return d;
      }
      return "";
    }
    default: return at + ": unexpected kind " + std::string(a.type_name());
  }
}

// ---- I/O helpers -------------------------------------------------------------------------------

std::filesystem::path data_dir() {
  return pthio_test::fixtures_dir().parent_path() / "tests" / "data" / "pickle";
}
std::vector<std::byte> data_file(const std::string& name) {
  auto b = pthio_test::read_bytes(data_dir() / name);
  REQUIRE_MESSAGE(!b.empty(), "missing " << (data_dir() / name).string() << " (run make.py)");
  return b;
}
std::vector<std::byte> raw(std::string_view s) {
  std::vector<std::byte> b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}
std::string as_string(const std::vector<std::byte>& b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

value load(const std::vector<std::byte>& b, const pthio::unpickle_options& o = {}) {
  return pthio::unpickle(b, o).root;
}
value load(std::string_view s, const pthio::unpickle_options& o = {}) { return load(raw(s), o); }

std::string le32(std::uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}
std::string le64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}

// Where the first byte of `a` and `b` differ, for byte-identity failures.
std::string first_difference(const std::vector<std::byte>& a, const std::vector<std::byte>& b) {
  std::size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  if (i == a.size() && i == b.size()) return "identical";
  auto show = [&](const std::vector<std::byte>& x) {
    std::string s;
    for (std::size_t k = i; k < std::min(x.size(), i + 24); ++k) {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned>(x[k]));
      s += buf;
    }
    return s;
  };
  return "sizes " + std::to_string(a.size()) + "/" + std::to_string(b.size()) +
         ", first difference at byte " + std::to_string(i) + ": pthio " + show(a) + " vs python " +
         show(b);
}

// ---- the Python objects of make.py, as pthio values ---------------------------------------------

value varied_expected() {
  std::string all256(256, '\0');
  for (int i = 0; i < 256; ++i) all256[i] = static_cast<char>(i);
  std::vector<value> long_list;
  for (int i = 0; i <= 1000; ++i) long_list.emplace_back(i);
  value shared = L({1, 2});
  const double inf = std::numeric_limits<double>::infinity();
  return D({
      {"ints", L({0,
                  1,
                  -1,
                  127,
                  128,
                  255,
                  256,
                  65535,
                  65536,
                  -32768,
                  2147483647,
                  -2147483648LL,
                  2147483648LL,
                  -2147483649LL,
                  INT64_MAX,
                  INT64_MIN,
                  big("9223372036854775808"),
                  big("-9223372036854775809"),
                  big("18446744073709551616"),
                  big("1267650600228229401496703205376"),
                  big("-1267650600228229401496703205376")})},
      {"floats", L({0.0, -0.0, 1.5, -2.25, 0.1, 1e300, 5e-324, inf, -inf, std::nan("")})},
      {"atoms", L({true, false, value()})},
      {"strs", L({"", "ascii", "h\xc3\xa9llo w\xc3\xb6rld", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
                  "\xf0\x9f\x98\x80", value("quote'\"\\\n\r\0\x1a end"s)})},
      {"bytes", L({B(""), B("abc"), B(all256)})},
      {"tuples",
       T({T(), T({1}), T({1, 2}), T({1, 2, 3}), T({1, 2, 3, 4}), T({T({1, T({2, T({3})})})})})},
      {"lists", L({L(), L({L()}), L({L({L({1})})})})},
      {"dict", D({{1, "one"}, {T({1, 2}), "pair"}, {value(), "none"}, {"k", D()}, {-5, L({1.5})}})},
      {"od", OD({{"b", 1}, {"a", 2}})},
      {"set", OBJ("builtins", "set", T(), {1, 2, 3})},
      {"frozenset", OBJ("builtins", "frozenset", T(), {4, 5})},
      {"bytearray", B("xy\0\xff"s)},
      {"complex", OBJ("builtins", "complex", T({1.5, -2.0}))},
      {"point", with_state(OBJ("pthio_test", "Point", T()), D({{"x", 1}, {"y", "two"}}))},
      {"shared", L({shared, shared})},
      {"long_list", L(long_list)},
  });
}

value fake_tensor(value storage, int offset, std::vector<value> size, std::vector<value> stride) {
  return OBJ(
      "torch._utils", "_rebuild_tensor_v2",
      T({std::move(storage), offset, T(std::move(size)), T(std::move(stride)), false, OD()}));
}
value fake_storage(std::string key, int numel) {
  return OBJ("test", "storage", T({value(std::move(key)), numel}));
}

// writer_objects() of make.py, by name.
value writer_expected(const std::string& name) {
  const double inf = std::numeric_limits<double>::infinity();
  if (name == "scalars")
    return L({value(),
              true,
              false,
              0,
              1,
              255,
              256,
              65535,
              65536,
              -1,
              -256,
              -2147483648LL,
              2147483647,
              2147483648LL,
              -2147483649LL,
              INT64_MAX,
              INT64_MIN,
              big("18446744073709551616"),
              big("1267650600228229401496703205376"),
              big("-1267650600228229401496703205376"),
              1.5,
              -0.0,
              inf,
              -inf,
              1e-300,
              "str",
              "",
              "h\xc3\xa9llo \xf0\x9f\x98\x80",
              "str",
              B(""),
              B(""),
              B("a"),
              B("a"),
              B("abc\xff\0"s),
              B("\x80\x81")});
  if (name == "containers") {
    value t = T({1, 2});
    value lst = L({"x"});
    return D({{"t", t},
              {"again", t},
              {"long", T({1, 2, 3, 4, 5})},
              {"nested", T({T(), T({T()})})},
              {"list", lst},
              {"list_again", lst},
              {7, value()},
              {value(), L()},
              {T({1, "a"}), D({{"k", "v"}})},
              {"f", L({0.5, L(), D()})}});
  }
  if (name == "state_dict") {
    value sd = OD({{"layer.weight", 1.0}, {"layer.bias", -2}});
    sd.as_dict().attrs.emplace_back(
        "_metadata", OD({{"", D({{"version", 1}})}, {"layer", D({{"version", 2}})}}));
    return sd;
  }
  if (name == "optimizer")
    return D(
        {{"state", D({{0, D({{"step", 10}, {"exp_avg", L({0.0, 0.1})}})}, {1, D({{"step", 10}})}})},
         {"param_groups", L({D({{"lr", 0.001},
                                {"betas", T({0.9, 0.999})},
                                {"eps", 1e-08},
                                {"weight_decay", 0},
                                {"amsgrad", false},
                                {"params", L({0, 1})}})})}});
  if (name == "batches") {
    auto range = [](int n) {
      std::vector<value> v;
      for (int i = 0; i < n; ++i) v.emplace_back(i);
      return L(std::move(v));
    };
    value d1000 = D(), d2000 = D(), od1000 = OD(), od1001 = OD();
    for (int i = 0; i < 1000; ++i) d1000.as_dict().set(i, i);
    for (int i = 0; i < 2000; ++i) d2000.as_dict().set(i, -i);
    for (int i = 0; i < 1000; ++i) od1000.as_dict().set(i, i);
    for (int i = 0; i < 1001; ++i) od1001.as_dict().set(i, i);
    std::vector<value> strs;
    for (int i = 0; i < 300; ++i) strs.emplace_back(std::string(1, 's').append(std::to_string(i)));
    return D({{"l1", L({0})},
              {"l2", L({0, 1})},
              {"l1000", range(1000)},
              {"l1001", range(1001)},
              {"d1", D({{0, 0}})},
              {"d1000", d1000},
              {"d2000", d2000},
              {"od1000", od1000},
              {"od1001", od1001},
              {"strs", L(strs)}});
  }
  if (name == "objects")
    return L({OBJ("builtins", "set", T(), {1, 2, 3}), OBJ("builtins", "frozenset", T()),
              OBJ("builtins", "set", T()), OBJ("builtins", "complex", T({1.0, 2.0})),
              OBJ("collections", "Counter", T({D({{"a", 2}, {"b", 1}})}))});
  if (name == "torch_like") {
    value s0 = fake_storage("0", 6);
    value w = fake_tensor(s0, 0, {2, 3}, {3, 1});
    value sd = OD({{"fc.weight", w},
                   {"fc.bias", fake_tensor(fake_storage("1", 2), 0, {2}, {1})},
                   {"fc.weight_view", fake_tensor(s0, 3, {3}, {1})},
                   {"tied", w}});
    sd.as_dict().attrs.emplace_back("_metadata",
                                    OD({{"", D({{"version", 1}})}, {"fc", D({{"version", 1}})}}));
    return sd;
  }
  FAIL("no writer object " << name);
  return {};
}

const char* const writer_names[] = {"scalars", "containers", "state_dict", "optimizer",
                                    "batches", "objects",    "torch_like"};

// torch.serialization's persistent_id, as a save_hook: a storage becomes
// ('storage', torch.FloatStorage, key, 'cpu', numel) + BINPERSID.
pthio::pickle_options torch_like_writer() {
  pthio::pickle_options o;
  o.save_hook = [](pthio::pickler& p, const value& v) {
    if (!v.is_object() || !(v.as_object().type == pthio::global_ref{"test", "storage"}))
      return false;
    const auto& a = v.as_object().args.as_tuple();
    p.save_persistent_id(T({"storage", G("torch", "FloatStorage"), a[0], "cpu", a[1]}));
    return true;
  };
  return o;
}

// Reads torch_like back: storages come from persistent_load, tensors from a handler.
pthio::unpickle_options torch_like_reader(const pthio::global_table& table) {
  pthio::unpickle_options o;
  o.globals = &table;
  o.persistent_load = [](const value& pid) {
    const auto& t = pid.as_tuple();
    REQUIRE(t.size() == 5);
    CHECK(t[0].as_str() == "storage");
    CHECK(t[1].as_global() == pthio::global_ref{"torch", "FloatStorage"});
    CHECK(t[3].as_str() == "cpu");
    return fake_storage(t[2].as_str(), static_cast<int>(t[4].as_int()));
  };
  return o;
}

pthio::global_table torch_like_table() {
  pthio::global_table table;
  table.add("torch", "FloatStorage");
  table.add("torch._utils", "_rebuild_tensor_v2", [](std::span<const value> args) {
    return value::make_object({"torch._utils", "_rebuild_tensor_v2"}, value::make_tuple(args));
  });
  return table;
}

}  // namespace

TEST_SUITE("pickle") {
  // ---- golden files from CPython
  // ------------------------------------------------------------------

  TEST_CASE("pickle: reads CPython's pickle of a varied object at every protocol from 0 to 5") {
    const value expected = varied_expected();
    for (int proto = 0; proto <= 5; ++proto) {
      CAPTURE(proto);
      const auto bytes = data_file("varied_p" + std::to_string(proto) + ".pkl");
      std::vector<std::string> globals;
      pthio::unpickle_options o;
      o.on_global = [&](const pthio::global_ref& g, std::size_t offset) {
        CHECK(offset < bytes.size());
        globals.push_back(g.qualified());
      };
      auto r = pthio::unpickle(bytes, o);
      CHECK(r.consumed == bytes.size());
      CHECK(diff(r.root, expected) == "");
      // Memo sharing survives: both entries of "shared" are one list.
      const auto& shared = r.root.find("shared")->as_list().items;
      CHECK(shared[0].identity() == shared[1].identity());
      // Python 2 module names (protocols 0-2 write __builtin__, copy_reg) come back as Python 3
      // ones.
      CHECK(std::find(globals.begin(), globals.end(), "pthio_test.Point") != globals.end());
      CHECK(std::find(globals.begin(), globals.end(), "builtins.complex") != globals.end());
      for (const auto& g : globals) {
        CHECK(g.find("__builtin__") == std::string::npos);
        CHECK(g.find("copy_reg") == std::string::npos);
      }
    }
  }

  TEST_CASE("pickle: reads every writer fixture CPython made at protocol 2") {
    for (const char* name : writer_names) {
      CAPTURE(name);
      auto table = torch_like_table();
      value v = load(data_file("writer_"s + name + ".pkl"), torch_like_reader(table));
      CHECK(diff(v, writer_expected(name)) == "");
    }
  }

  TEST_CASE("pickle: the manifest lists every golden file with its size") {
    std::ifstream in(data_dir() / "manifest.json");
    REQUIRE(in.good());
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (int proto = 0; proto <= 5; ++proto) {
      const std::string name = "varied_p" + std::to_string(proto) + ".pkl";
      CHECK(text.find("\"" + name + "\"") != std::string::npos);
    }
    for (const char* name : writer_names) {
      const std::string file = "writer_"s + name + ".pkl";
      CHECK(text.find("\"" + file + "\": {\n   \"bytes\": " +
                      std::to_string(data_file(file).size())) != std::string::npos);
    }
  }

  // ---- the writer against CPython, byte for byte
  // --------------------------------------------------

  TEST_CASE("pickle: the writer matches pickle.dumps(obj, protocol=2) byte for byte") {
    for (const char* name : writer_names) {
      CAPTURE(name);
      pthio::pickler p(std::string(name) == "torch_like" ? torch_like_writer()
                                                         : pthio::pickle_options{});
      const auto ours = p.dump(writer_expected(name));
      const auto python = data_file("writer_"s + name + ".pkl");
      CHECK_MESSAGE(ours == python, first_difference(ours, python));
    }
  }

  TEST_CASE("pickle: the writer's building blocks write what torch.save writes") {
    // save_empty_ordered_dict, save_global and reduce, as a checkpoint layer's hook uses them.
    pthio::pickle_options o;
    o.save_hook = [](pthio::pickler& p, const value& v) {
      if (!v.is_str() || v.as_str() != "hooks") return false;
      p.save_empty_ordered_dict();
      return true;
    };
    pthio::pickler p(o);
    auto out = p.dump(L({"hooks", "hooks", G("builtins", "set"), G("builtins", "set")}));
    CHECK(as_string(out) ==
          "\x80\x02]q\x00(ccollections\nOrderedDict\nq\x01)Rq\x02h\x01)Rq\x03"
          "c__builtin__\nset\nq\x04h\x04"
          "e."s);
    // Every dump starts afresh.
    CHECK(p.dump(value()) == raw("\x80\x02N."));
  }

  TEST_CASE("pickle: the writer numbers memo entries past 255 with LONG_BINPUT and LONG_BINGET") {
    std::vector<value> items;
    for (int i = 0; i < 300; ++i) items.push_back(L());
    items.push_back(items[299]);
    auto out = pthio::pickler().dump(L(items));
    // 301 lists + the outer one: index 256 is the first LONG_BINPUT, and the repeat is a
    // LONG_BINGET of 300.
    CHECK(as_string(out).find("r\x00\x01\x00\x00"s) != std::string::npos);
    CHECK(as_string(out).find("j\x2c\x01\x00\x00"s) != std::string::npos);
    CHECK(diff(load(out), L(items)) == "");
  }

  TEST_CASE("pickle: the writer refuses tensors without a hook and newlines in global names") {
    CHECK_THROWS_AS(pthio::pickler().dump(G("a\nb", "c")), pthio::error);
    auto t = pthio::tensor::zeros(pthio::dtype::float32, {2});
    CHECK_THROWS_WITH_AS(pthio::pickler().dump(value(t)), doctest::Contains("save_hook"),
                         pthio::error);
  }

  // ---- round trips
  // ----------------------------------------------------------------------------------

  TEST_CASE(
      "pickle: values share their text, tuples and tensors, and a moved-from one is still usable") {
    value s("a text longer than the short-string buffer");
    value copy = s;
    CHECK(&copy.as_str() == &s.as_str());  // shared, not copied
    value t = value::make_tuple({1, s});
    value moved_s = std::move(s);
    value moved_t = std::move(t);
    CHECK(moved_s.as_str() == "a text longer than the short-string buffer");
    CHECK(moved_t.as_tuple().size() == 2);
    // What is left behind reads as an empty text and an empty tuple rather than crashing.
    CHECK(s.as_str().empty());    // NOLINT(bugprone-use-after-move)
    CHECK(t.as_tuple().empty());  // NOLINT(bugprone-use-after-move)
    value b = value::make_bytes("xyz");
    value moved_b = std::move(b);
    CHECK(b.as_bytes().empty());  // NOLINT(bugprone-use-after-move)
    value p(pthio::tensor(pthio::storage::allocate(4), pthio::dtype::float32, {1}, {1}), true);
    value moved_p = std::move(p);
    CHECK(moved_p.is_parameter());
    CHECK_FALSE(p.is_parameter());  // NOLINT(bugprone-use-after-move)
    CHECK_THROWS_AS(p.as_tensor(), pthio::error);
  }

  TEST_CASE("pickle: flatten_destroy takes apart only the containers no other value holds") {
    value inner = value::make_list({value(2), value("two")});
    value tuple = value::make_tuple({value(1), inner});
    value list = value::make_list({value(3), tuple});
    value dict = value::make_dict();
    dict.as_dict().set(value("k"), tuple);
    value root = value::make_list(
        {tuple, list, dict, value::make_tuple({value(4), value::make_list({value(5)})})});
    pthio::flatten_destroy(root);
    CHECK(root.is_none());
    // Each was also held outside root: whole, with what it holds.
    REQUIRE(tuple.as_tuple().size() == 2);
    CHECK(tuple.as_tuple()[0].as_int() == 1);
    CHECK(tuple.as_tuple()[1].items().size() == 2);
    CHECK(inner.items().size() == 2);
    REQUIRE(list.items().size() == 2);
    CHECK(list.items()[1].as_tuple().size() == 2);
    REQUIRE(dict.as_dict().size() == 1);
    CHECK(dict.as_dict().get("k")->as_tuple().size() == 2);
    // A tree deeper than the call stack could destroy recursively is still taken apart.
    value deep = value::make_list();
    for (int i = 0; i < 300000; ++i)
      deep = value::make_list({value::make_tuple({std::move(deep)})});
    pthio::flatten_destroy(deep);
    CHECK(deep.is_none());
  }

  TEST_CASE("pickle: values survive a round trip through the writer and the reader") {
    std::string surrogate =
        "a\xed\xa0\x80z";  // a lone surrogate, as pickle's surrogatepass writes it
    value deep = L();
    for (int i = 0; i < 900; ++i) deep = L({deep});
    std::string big_bytes(100000, 'x');
    big_bytes[5] = '\0';
    std::string huge_int(300, '\x12');
    huge_int.back() = '\x01';  // 300 bytes: written with LONG4
    const std::vector<value> cases = {
        value(),
        true,
        false,
        0,
        -1,
        INT64_MAX,
        INT64_MIN,
        big("-340282366920938463463374607431768211457"),
        value(pthio::big_int{std::vector<std::uint8_t>(huge_int.begin(), huge_int.end())}),
        3.25,
        std::numeric_limits<double>::denorm_min(),
        "",
        value(surrogate),
        B(big_bytes),
        B("\xff"),
        varied_expected(),
        deep,
        T({L(), L(), T({T(), T()})}),
        OBJ("mod", "Cls", T(), {1, 2}),
        with_state(OBJ("mod", "Cls", T({1})), T({value(), D({{"a", 1}})})),
        [] {
          value o = OBJ("collections", "defaultdict", T({G("builtins", "list")}));
          o.as_object().dict_items.emplace_back("k", L({1}));
          return o;
        }(),
        [] {
          value d = OD({{"x", 1}});
          d.as_dict().attrs.emplace_back("_metadata", OD());
          d.as_dict().attrs.emplace_back("other", 5);
          return d;
        }(),
    };
    for (std::size_t i = 0; i < cases.size(); ++i) {
      CAPTURE(i);
      auto bytes = pthio::pickler().dump(cases[i]);
      pthio::unpickle_options o;
      o.limits.max_memory = 1u << 30;
      CHECK(diff(load(bytes, o), cases[i]) == "");
    }
  }

  TEST_CASE("pickle: a tuple that contains itself through a list is written as CPython writes it") {
    // x = []; t = (x,); x.append(t); pickle.dumps(t, 2)
    value x = L();
    value t = T({x});
    x.as_list().items.push_back(t);
    CHECK(as_string(pthio::pickler().dump(t)) ==
          "\x80\x02]q\x00h\x00\x85q\x01"
          "a0h\x01."s);
    x.as_list().items.clear();  // break the cycle so the test does not leak
  }

  // ---- protocol 0-1 text forms, Python 2 streams
  // ------------------------------------------------------

  TEST_CASE("pickle: reads the text opcodes of protocol 0 and Python 2's string opcodes") {
    CHECK(diff(load("I01\n."), true) == "");
    CHECK(diff(load("I00\n."), false) == "");
    CHECK(diff(load("I-42\n."), -42) == "");
    CHECK(diff(load("I 7 \n."), 7) == "");
    CHECK(diff(load("I0x1f\n."), 31) == "");
    CHECK(diff(load("I9223372036854775808\n."), big("9223372036854775808")) == "");
    CHECK(diff(load("L123L\n."), 123) == "");
    CHECK(diff(load("L-99999999999999999999999L\n."), big("-99999999999999999999999")) == "");
    CHECK(diff(load("F1.5\n."), 1.5) == "");
    CHECK(diff(load("F-inf\n."), -std::numeric_limits<double>::infinity()) == "");
    CHECK(diff(load("F1e999\n."), std::numeric_limits<double>::infinity()) == "");
    CHECK(std::isnan(load("Fnan\n.").as_float()));
    CHECK(diff(load("S'abc'\n."), "abc") == "");
    CHECK(diff(load("S\"a\\x41\\n\\'\\101\"\n."), "aA\n'A") == "");
    CHECK(diff(load("S'\\xff'\n."), B("\xff")) == "");  // not UTF-8: stays bytes
    CHECK(diff(load("U\x02\xc3\xa9."), "\xc3\xa9") == "");
    CHECK(diff(load("T\x01\x00\x00\x00\xff."s), B("\xff")) == "");
    CHECK(diff(load("Vx\\u20ac\\U0001F600\xe9\\n\n."),
               "x\xe2\x82\xac\xf0\x9f\x98\x80\xc3\xa9\\n") == "");
    CHECK_THROWS_AS(load("(lp0\nI1\nag0\na."), pthio::error);  // g0 is the list itself: a cycle
    CHECK(diff(load("(I1\np5\nI2\ng5\nl."), L({1, 2, 1})) == "");
    CHECK(diff(load("(dp0\nS'k'\nI1\ns."), D({{"k", 1}})) == "");
    CHECK(diff(load("(S'a'\nI1\nd."), D({{"a", 1}})) == "");
    CHECK(diff(load("(I1\nI2\nt."), T({1, 2})) == "");
  }

  TEST_CASE("pickle: a Python 2 OrderedDict of pairs and a BUILD of _metadata make a state dict") {
    // Python 2.7: OrderedDict.__reduce__ -> (OrderedDict, ([[k, v], ...],), inst_dict).
    const std::string s =
        "\x80\x02"
        "ccollections\nOrderedDict\nq\x00]q\x01(]q\x02(U\x01wK\x01"
        "e]q\x03(U\x01"
        "bK\x02"
        "ee"
        "\x85Rq\x04}q\x05U\x09_metadatah\x00)Rq\x06U\x00}U\x07versionK\x01sssb."s;
    value expected = OD({{"w", 1}, {"b", 2}});
    expected.as_dict().attrs.emplace_back("_metadata", OD({{"", D({{"version", 1}})}}));
    value v = load(s);
    CHECK(diff(v, expected) == "");
    CHECK(v.as_dict().attr("_metadata") != nullptr);
  }

  TEST_CASE("pickle: BUILD takes (state, slotstate) on a dict and keeps an object's state") {
    const std::string slot =
        "\x80\x02"
        "ccollections\nOrderedDict\n)R"
        "N}X\x01\x00\x00\x00"
        "aK\x01s\x86"
        "b."s;
    value v = load(slot);
    REQUIRE(v.as_dict().attrs.size() == 1);
    CHECK(diff(v.as_dict().attrs[0].second, 1) == "");
    value o = load(
        "\x80\x02"
        "cm\nC\n)\x81"
        "K\x05"
        "b."s);
    CHECK(o.as_object().has_state);
    CHECK(diff(o.as_object().state, 5) == "");
    CHECK_THROWS_WITH_AS(load("\x80\x02]Nb."s),
                         doctest::Contains("offset 4: pickle: BUILD on a list"), pthio::error);
    CHECK_THROWS_AS(load("\x80\x02"
                         "ccollections\nOrderedDict\n)RK\x01"
                         "b."s),
                    pthio::error);
  }

  TEST_CASE("pickle: BUILD on a tensor from a handler is ignored, as torch's legacy path does") {
    pthio::global_table table;
    table.add("torch._utils", "_rebuild_tensor", [](std::span<const value>) {
      return value(pthio::tensor::zeros(pthio::dtype::float32, {1}));
    });
    pthio::unpickle_options o;
    o.globals = &table;
    value v = load(
        "\x80\x02"
        "ctorch._utils\n_rebuild_tensor\n)R}b."s,
        o);
    CHECK(v.is_tensor());
  }

  TEST_CASE("pickle: built-in handlers make bytes, sets, OrderedDicts and copyreg objects") {
    CHECK(diff(load("\x80\x02"
                    "c_codecs\nencode\nX\x02\x00\x00\x00\xc3\xbfX\x07\x00\x00\x00latin-1\x86R."s),
               B("\xff")) == "");
    CHECK(diff(load("\x80\x02"
                    "c__builtin__\nbytes\n)R."s),
               B("")) == "");
    CHECK(diff(load("\x80\x02"
                    "c__builtin__\nbytes\n](K\x01K\xff"
                    "e\x85R."s),
               B("\x01\xff")) == "");
    CHECK(diff(load("\x80\x02"
                    "c__builtin__\nbytearray\nX\x01\x00\x00\x00"
                    "aX\x05\x00\x00\x00"
                    "ascii\x86R."s),
               B("a")) == "");
    CHECK_THROWS_WITH_AS(
        load("\x80\x02"
             "c_codecs\nencode\nX\x03\x00\x00\x00\xe2\x82\xacX\x06\x00\x00\x00latin1\x86R."s),
        doctest::Contains("cannot be encoded"), pthio::error);
    CHECK_THROWS_WITH_AS(load("\x80\x02"
                              "c_codecs\nencode\nX\x01\x00\x00\x00"
                              "aX\x04\x00\x00\x00rot3\x86R."s),
                         doctest::Contains("encoding 'rot3'"), pthio::error);
    CHECK(diff(load("\x80\x04\x8f(K\x01K\x02\x90."s), OBJ("builtins", "set", T(), {1, 2})) == "");
    CHECK(diff(load("\x80\x04(K\x03\x91."s), OBJ("builtins", "frozenset", T(), {3})) == "");
    CHECK(diff(load("\x80\x02"
                    "c__builtin__\nset\n}K\x07Ns\x85R."s),
               OBJ("builtins", "set", T(), {7})) == "");
    CHECK(diff(load("\x80\x02"
                    "ccopy_reg\n__newobj__\ncm\nC\nK\x01\x86R."s),
               OBJ("m", "C", T({1}))) == "");
    CHECK(diff(load("\x80\x02"
                    "ccopy_reg\n_reconstructor\ncm\nC\nc__builtin__\nobject\nN\x87R."s),
               OBJ("m", "C", T())) == "");
    CHECK(diff(load("\x80\x02"
                    "ccopy_reg\n_reconstructor\ncm\nC\nc__builtin__\ntuple\nK\x01\x85\x87R."s),
               OBJ("m", "C", T({T({1})}))) == "");
    CHECK(diff(load("\x80\x04\x8c\x01m\x8c\x01"
                    "C\x93)}\x92."s),
               OBJ("m", "C", T())) == "");
    CHECK_THROWS_AS(load("\x80\x04\x8c\x01m\x8c\x01"
                         "C\x93)}K\x01K\x02s\x92."s),
                    pthio::error);
    // A handler in the table wins over the built-in one.
    pthio::global_table table;
    table.add("collections", "OrderedDict", [](std::span<const value>) { return value("mine"); });
    pthio::unpickle_options o;
    o.globals = &table;
    CHECK(diff(load("\x80\x02"
                    "ccollections\nOrderedDict\n)R."s,
                    o),
               "mine") == "");
  }

  TEST_CASE("pickle: INST, OBJ, NEWOBJ and STACK_GLOBAL on unknown classes build inert objects") {
    CHECK(diff(load("(I1\nimod\nCls\n."), OBJ("mod", "Cls", T({1}))) == "");
    CHECK(diff(load("(cmod\nCls\nI1\nI2\no."), OBJ("mod", "Cls", T({1, 2}))) == "");
    CHECK(diff(load("\x80\x02"
                    "cmod\nCls\nK\x01\x85\x81."s),
               OBJ("mod", "Cls", T({1}))) == "");
    CHECK(diff(load("\x80\x04\x8c\x03mod\x94\x8c\x03"
                    "Cls\x94\x93)R."s),
               OBJ("mod", "Cls", T())) == "");
    CHECK(diff(load("\x80\x02"
                    "cmod\nf\n."s),
               G("mod", "f")) == "");
    // Calling an inert object (getattr(obj, 'm')(1)) keeps both.
    value v = load(
        "\x80\x02"
        "cmod\nC\n)RK\x01\x85R."s);
    CHECK(v.as_object().type == pthio::global_ref{"mod", "C"});
    CHECK(v.as_object().args.as_tuple().size() == 2);
  }

  TEST_CASE(
      "pickle: an object made by cls.__new__ is written back with NEWOBJ, a call with REDUCE") {
    // Protocol 2 saves instances (an nn.Module among them) as cls.__new__(cls): writing that back
    // as a call would run cls() on load, which needs arguments most classes' __init__ require.
    struct made {
      std::string bytes;
      bool by_new;
    };
    const made cases[] = {
        {"\x80\x02"
         "cmod\nCls\n)\x81."s,
         true},
        {"\x80\x02"
         "ccopyreg\n__newobj__\ncmod\nCls\n\x85R."s,
         true},
        {"ccopyreg\n_reconstructor\n(cmod\nCls\ncbuiltins\nobject\nNtR."s, true},
        {"\x80\x04\x8c\x03mod\x94\x8c\x03"
         "Cls\x94\x93)}\x92."s,
         true},
        {"\x80\x02"
         "cmod\nCls\n)R."s,
         false},
        {"(cmod\nCls\no."s, false},
    };
    for (const auto& c : cases) {
      CAPTURE(c.bytes);
      value v = load(c.bytes);
      REQUIRE(v.is_object());
      CHECK(v.as_object().created_by_new == c.by_new);
      auto bytes = pthio::pickler().dump(v);
      std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      // The object's opcode, then its memo entry (BINPUT) and STOP.
      REQUIRE(text.size() > 4);
      CHECK(text[text.size() - 4] == (c.by_new ? '\x81' : 'R'));
      CHECK(text[text.size() - 3] == 'q');
      value back = load(text);
      CHECK(back.as_object().created_by_new == c.by_new);
      CHECK(back == v);
    }
  }

  TEST_CASE("pickle: persistent ids go through persistent_load, and are an error without it") {
    pthio::unpickle_options o;
    std::vector<std::string> seen;
    o.persistent_load = [&](const value& pid) {
      seen.push_back(pid.is_str() ? pid.as_str() : "tuple");
      return value(42);
    };
    CHECK(diff(load("(Pabc\nX\x01\x00\x00\x00"
                    "aK\x01\x86Ql."s,
                    o),
               L({42, 42})) == "");
    CHECK(seen == std::vector<std::string>{"abc", "tuple"});
    CHECK_THROWS_WITH_AS(load("\x80\x02K\x01Q."s), doctest::Contains("offset 4: pickle: BINPERSID"),
                         pthio::error);
  }

  TEST_CASE("pickle: memo opcodes follow pickle.py, including MEMOIZE's count and sparse indices") {
    // MEMOIZE stores at len(memo): after BINPUT 5 the next MEMOIZE is index 1.
    CHECK(diff(load("\x80\x04K\x07q\x05K\x08\x94"
                    "0h\x01h\x05\x86."s),
               T({8, 7})) == "");
    pthio::unpickle_options big_memo;
    big_memo.limits.max_memo = std::size_t{1} << 33;
    CHECK(diff(load("\x80\x02K\x09r\x00\x00\x00\x80"
                    "0j\x00\x00\x00\x80."s,
                    big_memo),
               9) == "");
  }

  TEST_CASE(
      "pickle: entries a pickle never reads back are not kept, whatever opcodes come between") {
    // Every kind of opcode argument, each value memoized; then 2,000 memo entries nothing reads
    // (LONG_BINPUT 1000..2999 of None), which would take about 100 KB kept; then the first values
    // read back through BINGET, LONG_BINGET and GET. With max_memory at 64 KiB this loads only if
    // the pass that finds the reads stepped over every argument correctly, and the reads then
    // find their values.
    std::string p = "\x80\x02"s;
    std::vector<value> want;
    std::uint32_t idx = 0;
    auto put = [&](const std::string& op, value v) {
      p += op + "r" + le32(idx++) + "0";
      want.push_back(std::move(v));
    };
    put("K\x07", 7);
    put("M\x34\x12", 0x1234);
    put("J" + le32(0xfffffffe), -2);
    put("\x8a\x02\x00\x80"s, -32768);
    put("\x8b" + le32(1) + "\x05", 5);
    put("G\x3f\xf8\x00\x00\x00\x00\x00\x00"s, 1.5);
    put("I42\n", 42);
    put("L-9L\n", -9);
    put("F0.25\n", 0.25);
    put("S'q\\nr'\n", "q\nr");
    put("T" + le32(3) + "abc", "abc");
    put("U\x02hi", "hi");
    put("V\\u00e9\n", "\xc3\xa9");
    put("X" + le32(4) + "\xe2\x82\xac!", "\xe2\x82\xac!");
    put("\x8c\x03"
        "abc",
        "abc");
    put("\x8d" + le64(2) + "ok", "ok");
    put("B" + le32(2) + "\x00\x01"s, value::make_bytes("\x00\x01"s));
    put("C\x01\xff"s, value::make_bytes("\xff"s));
    put("\x8e" + le64(1) + "z", value::make_bytes("z"));
    put("\x96" + le64(1) + "y", value::make_bytes("y"));
    put("N", value());
    put("\x88", true);
    put(")", value::make_tuple());
    put("cbuiltins\nprint\n", value::make_global("builtins", "print"));
    p += "\x95" + le64(0);  // FRAME
    for (std::uint32_t i = 0; i < 2000; ++i) p += "Nr" + le32(1000 + i) + "0";
    p += "(";
    for (std::uint32_t i = 0; i < idx; ++i) {
      if (i % 3 == 0)
        p += "h" + std::string(1, static_cast<char>(i));
      else if (i % 3 == 1)
        p += "j" + le32(i);
      else
        p += "g" + std::to_string(i) + "\n";
    }
    p += "t.";
    pthio::unpickle_options tight;
    tight.limits.max_memory = 64 << 10;
    CHECK(diff(load(p, tight), value::make_tuple(want)) == "");
    // The control: with a MEMOIZE in the stream (entries numbered by count) every entry is kept,
    // and the same pickle does not fit.
    const std::string memoizes =
        "\x80\x02N\x94"
        "0"s +
        p.substr(2);
    CHECK_THROWS_WITH_AS(load(memoizes, tight), doctest::Contains("max_memory"), pthio::error);
    CHECK(diff(load(memoizes), value::make_tuple(want)) == "");
  }

  TEST_CASE("pickle: data after STOP is left alone and consumed says where the pickle ended") {
    auto r = pthio::unpickle(raw("\x80\x02K\x01.\x80\x02K\x02."), {});
    CHECK(r.consumed == 5);
    CHECK(diff(r.root, 1) == "");
  }

  TEST_CASE("pickle: is_builtin_safe_global lists torch's allowlisted builtins only") {
    CHECK(pthio::is_builtin_safe_global("collections", "OrderedDict"));
    CHECK(pthio::is_builtin_safe_global("collections", "Counter"));
    CHECK(pthio::is_builtin_safe_global("_codecs", "encode"));
    CHECK(pthio::is_builtin_safe_global("builtins", "set"));
    CHECK(pthio::is_builtin_safe_global("builtins", "bytearray"));
    CHECK_FALSE(pthio::is_builtin_safe_global("builtins", "eval"));
    CHECK_FALSE(pthio::is_builtin_safe_global("os", "system"));
    CHECK_FALSE(pthio::is_builtin_safe_global("copyreg", "_reconstructor"));
    CHECK_FALSE(
        pthio::is_builtin_safe_global("__builtin__", "set"));  // callers pass Python 3 names
  }

  // ---- unsafe globals
  // --------------------------------------------------------------------------------

  TEST_CASE("pickle: strict mode refuses os.system however the stream names it") {
    pthio::unpickle_options strict;
    strict.strict = true;
    struct stream {
      std::string what, bytes;
      std::size_t offset;
    };
    const std::vector<stream> streams = {
        {"GLOBAL + REDUCE",
         "\x80\x02"
         "cos\nsystem\nX\x02\x00\x00\x00ls\x85R."s,
         2},
        {"STACK_GLOBAL", "\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02ls\x85R."s, 14},
        {"INST", "(S'ls'\nios\nsystem\n."s, 7},
        {"OBJ", "(cos\nsystem\nS'ls'\no."s, 1},
        {"NEWOBJ",
         "\x80\x02"
         "cos\nsystem\n)\x81."s,
         2},
        {"NEWOBJ_EX", "\x80\x04\x8c\x02os\x8c\x06system\x93)}\x92."s, 14},
    };
    for (const auto& [what, s, offset] : streams) {
      CAPTURE(what);
      std::vector<std::string> seen;
      pthio::unpickle_options o = strict;
      o.on_global = [&](const pthio::global_ref& g, std::size_t at) {
        seen.push_back(g.qualified());
        CHECK(at == offset);
      };
      try {
        load(s, o);
        FAIL("no error");
      } catch (const pthio::error& e) {
        CHECK(e.kind() == pthio::errc::unsafe_global);
        CHECK(std::string(e.what()).find(
                  "offset " + std::to_string(offset) +
                  ": pickle: global os.system is not allowed in weights-only mode") !=
              std::string::npos);
      }
      CHECK(seen == std::vector<std::string>{"os.system"});
    }
  }

  TEST_CASE("pickle: outside strict mode an unsafe call is an inert object and on_global sees it") {
    std::vector<std::pair<std::string, std::size_t>> seen;
    pthio::unpickle_options o;
    o.on_global = [&](const pthio::global_ref& g, std::size_t at) {
      seen.emplace_back(g.qualified(), at);
    };
    value v = load(
        "\x80\x02"
        "cos\nsystem\nX\x02\x00\x00\x00ls\x85R."s,
        o);
    CHECK(diff(v, OBJ("os", "system", T({"ls"}))) == "");
    REQUIRE(seen.size() == 1);
    CHECK(seen[0] == std::pair<std::string, std::size_t>{"os.system", 2});
    // Python 2 names are mapped before anyone sees them.
    seen.clear();
    load("c__builtin__\neval\n.", o);
    load("cexceptions\nValueError\n.", o);
    load("cUserDict\nUserDict\n.", o);
    CHECK(seen[0].first == "builtins.eval");
    CHECK(seen[1].first == "builtins.ValueError");
    CHECK(seen[2].first == "collections.UserDict");
  }

  TEST_CASE("pickle: strict mode accepts the built-in allowlist and the table's globals") {
    pthio::unpickle_options strict;
    strict.strict = true;
    CHECK(diff(load(data_file("writer_state_dict.pkl"), strict), writer_expected("state_dict")) ==
          "");
    CHECK(diff(load(data_file("writer_objects.pkl"), strict), writer_expected("objects")) == "");
    auto table = torch_like_table();
    auto o = torch_like_reader(table);
    o.strict = true;
    CHECK(diff(load(data_file("writer_torch_like.pkl"), o), writer_expected("torch_like")) == "");
    pthio::global_table partial;
    partial.add("torch._utils", "_rebuild_tensor_v2");
    o.globals = &partial;
    CHECK_THROWS_WITH_AS(load(data_file("writer_torch_like.pkl"), o),
                         doctest::Contains("global torch.FloatStorage is not allowed"),
                         pthio::error);
    // copyreg's helpers are handled but not allowlisted, as in torch.
    CHECK_THROWS_AS(load(data_file("varied_p0.pkl"), strict), pthio::error);
  }

  // ---- hostile streams
  // ------------------------------------------------------------------------------

  TEST_CASE("pickle: every truncated prefix of a valid pickle is an error, never a crash") {
    std::vector<std::string> files;
    for (int proto = 0; proto <= 5; ++proto)
      files.push_back("varied_p" + std::to_string(proto) + ".pkl");
    for (const char* name : writer_names) files.push_back("writer_"s + name + ".pkl");
    auto table = torch_like_table();
    const auto o = torch_like_reader(table);
    for (const auto& f : files) {
      CAPTURE(f);
      const auto bytes = data_file(f);
      // Every prefix of the small files; about 250 spread over the big ones, plus their last 64.
      const std::size_t step = std::max<std::size_t>(1, bytes.size() / 250);
      std::size_t failures = 0, tried = 0;
      for (std::size_t n = 0; n < bytes.size(); n += (n + 64 >= bytes.size() ? 1 : step)) {
        ++tried;
        try {
          pthio::unpickle(std::span(bytes.data(), n), o);
        } catch (const pthio::error& e) {
          ++failures;
          if (e.kind() != pthio::errc::corrupt_pickle)
            FAIL_CHECK("prefix " << n << ": " << e.what());
        }
      }
      CHECK(failures == tried);
    }
  }

  TEST_CASE("pickle: rejects malformed streams with the opcode's offset in the message") {
    struct bad {
      std::string name, bytes, message;
      pthio::errc kind = pthio::errc::corrupt_pickle;
    };
    const std::vector<bad> cases = {
        {"empty input", "", "offset 0: pickle: the data ends without a STOP opcode"},
        {"no STOP", "\x80\x02N", "offset 3: pickle: the data ends without a STOP opcode"},
        {"unknown opcode", "\x80\x02\xff.", "offset 2: pickle: unknown opcode 0xff"},
        {"STOP on an empty stack", "\x80\x02.",
         "offset 2: pickle: STOP needs 1 value(s) on the stack, it holds 0"},
        {"APPEND past a MARK", "\x80\x02](Na.",
         "offset 5: pickle: APPEND needs 1 value(s) above the last MARK"},
        {"TUPLE2 past a MARK", "\x80\x02N(N\x86.",
         "offset 5: pickle: TUPLE2 needs 2 value(s) above the last MARK"},
        {"SETITEM past a MARK", "\x80\x02}(K\x01K\x02s.",
         "offset 8: pickle: SETITEM needs 3 value(s) above the last MARK"},
        {"APPENDS without a MARK", "\x80\x02]e.",
         "offset 3: pickle: APPENDS needs a MARK on the stack, there is none"},
        {"POP on an empty stack",
         "\x80\x02"
         "0.",
         "offset 2: pickle: POP needs 1 value(s) on the stack"},
        {"BINGET of an undefined index", "\x80\x02h\x11.",
         "offset 2: pickle: BINGET memo index 17 is not defined"},
        {"LONG_BINGET of an undefined index", "\x80\x02K\x01q\x00j\x01\x00\x00\x00."s,
         "offset 6: pickle: LONG_BINGET memo index 1 is not defined"},
        {"BINPUT on an empty stack", "\x80\x02q\x00."s,
         "offset 2: pickle: BINPUT needs 1 value(s) on the stack"},
        {"GET text", "g1x\n.", "offset 0: pickle: GET: memo index '1x' is not a number"},
        {"PUT negative", "Np-1\n.", "offset 1: pickle: PUT: negative memo index -1"},
        {"BINUNICODE8 of 2**63", "\x80\x04\x8d" + le64(std::uint64_t{1} << 63) + "ab.",
         "offset 2: pickle: BINUNICODE8 length 9223372036854775808 exceeds the 3 bytes remaining"},
        {"BINBYTES past the end",
         "\x80\x03"
         "B" +
             le32(100) + "x.",
         "offset 2: pickle: BINBYTES length 100 exceeds"},
        {"LONG4 negative", "\x80\x02\x8b\xff\xff\xff\xff.",
         "offset 2: pickle: LONG4 has a negative byte count"},
        {"BINSTRING negative", "T\xff\xff\xff\xff.",
         "offset 0: pickle: BINSTRING has a negative byte count"},
        {"BINUNICODE not UTF-8", "\x80\x02X\x01\x00\x00\x00\xff."s,
         "offset 2: pickle: BINUNICODE is not valid UTF-8"},
        {"BINUNICODE overlong", "\x80\x02X\x02\x00\x00\x00\xc0\x80."s,
         "offset 2: pickle: BINUNICODE is not valid UTF-8"},
        {"truncated BININT", "\x80\x02J\x01\x02",
         "offset 2: pickle: BININT: unexpected end of data: needs 4 bytes, 2 remain"},
        {"FRAME past the end", "\x80\x04\x95" + le64(1000) + "N.",
         "offset 2: pickle: FRAME length 1000 exceeds"},
        {"STRING unquoted", "Sabc\n.",
         "offset 0: pickle: the STRING opcode argument must be quoted"},
        {"STRING bad escape", "S'\\x4'\n.", "offset 0: pickle: STRING: invalid \\x escape"},
        {"UNICODE bad escape", "V\\u12\n.", "offset 0: pickle: UNICODE: truncated \\uXXXX escape"},
        {"INT not a number", "I12a\n.", "offset 0: pickle: INT argument is not an integer"},
        {"INT with leading zeros", "I012\n.", "offset 0: pickle: INT argument is not an integer"},
        {"INT with 5000 digits", "I" + std::string(5000, '7') + "\n.",
         "offset 0: pickle: INT has more than 4300 digits"},
        {"FLOAT not a number", "F1.5x\n.",
         "offset 0: pickle: FLOAT argument '1.5x' is not a number"},
        {"text without newline", "I12",
         "offset 0: pickle: INT: text argument has no terminating newline"},
        {"GLOBAL not UTF-8", "c\xff\nx\n.",
         "offset 0: pickle: GLOBAL: module or name is not valid UTF-8"},
        {"STACK_GLOBAL of ints", "\x80\x04K\x01K\x02\x93.",
         "offset 6: pickle: STACK_GLOBAL requires str module and name"},
        {"REDUCE on an int", "\x80\x02K\x01)R.", "offset 5: pickle: REDUCE cannot call a int"},
        {"REDUCE with a list",
         "\x80\x02"
         "cm\nf\n]R.",
         "offset 8: pickle: REDUCE arguments are a list, not a tuple"},
        {"NEWOBJ on a str", "\x80\x02X\x00\x00\x00\x00)\x81."s,
         "offset 8: pickle: NEWOBJ class is a str, not a global"},
        {"OBJ without a class", "(o.", "offset 1: pickle: OBJ needs a class above the MARK"},
        {"DICT odd",
         "(K\x01"
         "d.",
         "offset 3: pickle: DICT has an odd number of values (1)"},
        {"SETITEM on a list", "\x80\x02]K\x01K\x02s.",
         "offset 7: pickle: SETITEM on a list, not a dict"},
        {"APPEND on a dict",
         "\x80\x02}K\x01"
         "a.",
         "offset 5: pickle: APPEND on a dict, not a list"},
        {"list as a dict key", "\x80\x02}]K\x01s.",
         "offset 6: pickle: SETITEM: unhashable dict key of type list"},
        {"tuple holding a dict as a key", "\x80\x02}}\x85K\x01s.",
         "unhashable dict key (a tuple holding a dict)"},
        {"cyclic list",
         "\x80\x02]q\x00h\x00"
         "a."s,
         "offset 8: pickle: cyclic container: a list contains itself", pthio::errc::unsupported},
        {"cyclic list through DUP", "\x80\x02]2a.",
         "offset 5: pickle: cyclic container: a list contains itself", pthio::errc::unsupported},
        {"cyclic dict",
         "\x80\x02}q\x00K\x01]h\x00"s
         "as.",
         "cyclic container", pthio::errc::unsupported},
        {"protocol 6", "\x80\x06N.", "offset 0: pickle: pickle protocol 6 is not supported",
         pthio::errc::unsupported},
        {"EXT1", "\x80\x02\x82\x05.",
         "offset 2: pickle: EXT1 (extension registry code 5) is not supported",
         pthio::errc::unsupported},
        {"EXT4", "\x80\x02\x84\x05\x00\x00\x00."s,
         "EXT4 (extension registry code 5) is not supported", pthio::errc::unsupported},
        {"NEXT_BUFFER", "\x80\x05\x97.", "offset 2: pickle: NEXT_BUFFER: out-of-band buffers",
         pthio::errc::unsupported},
        {"READONLY_BUFFER", "\x80\x05N\x98.",
         "offset 3: pickle: READONLY_BUFFER: out-of-band buffers", pthio::errc::unsupported},
        {"LONG_BINPUT 2**31", "\x80\x02Nr\x00\x00\x00\x80."s,
         "offset 3: pickle: LONG_BINPUT memo index 2147483648 exceeds the limit max_memo "
         "(16777216)",
         pthio::errc::limit_exceeded},
    };
    for (const auto& c : cases) {
      CAPTURE(c.name);
      try {
        load(c.bytes);
        FAIL_CHECK("no error");
      } catch (const pthio::error& e) {
        CHECK(e.kind() == c.kind);
        CHECK_MESSAGE(std::string(e.what()).find(c.message) != std::string::npos, e.what());
      }
    }
  }

  TEST_CASE("pickle: errors carry the context name and the opcode offset") {
    pthio::unpickle_options o;
    o.context = "archive/data.pkl";
    CHECK_THROWS_WITH_AS(load("\x80\x02h\x11."s, o),
                         "archive/data.pkl: offset 2: pickle: BINGET memo index 17 is not defined",
                         pthio::error);
    try {
      load("\x80\x02h\x11."s, o);
    } catch (const pthio::error& e) {
      CHECK(e.offset() == 2u);
      CHECK(e.context() == "archive/data.pkl");
    }
    // A handler that refuses without an offset gets the offset of the REDUCE that called it.
    pthio::global_table table;
    table.add("m", "f", [](std::span<const value>) -> value {
      throw pthio::error(pthio::errc::unsupported, "no");
    });
    o.globals = &table;
    CHECK_THROWS_WITH_AS(load("\x80\x02"
                              "cm\nf\n)R."s,
                              o),
                         "archive/data.pkl: offset 8: no", pthio::error);
  }

  TEST_CASE("pickle: a million nested MARKs stop at the depth limit") {
    std::string s = "\x80\x02" + std::string(1000000, '(') + ".";
    CHECK_THROWS_WITH_AS(
        load(s), doctest::Contains("offset 1002: pickle: MARK nesting exceeds max_depth (1000)"),
        pthio::error);
  }

  TEST_CASE(
      "pickle: a million nested lists (or 200,000 tuples) fail cleanly without deep recursion") {
    const int n = 1000000;
    pthio::unpickle_options roomy;
    roomy.limits.max_memory = std::uint64_t{4} << 30;
    const std::string lists = "\x80\x02" + std::string(n, ']') + std::string(n - 1, 'a') + ".";
    const std::string tuples = "\x80\x02N" + std::string(n / 5, '\x85') + ".";
    for (const auto* s : {&lists, &tuples}) {
      // With the default memory limit the stream runs out of budget; with room, the depth check at
      // STOP refuses it. Either way everything built is taken apart without recursion.
      CHECK_THROWS_AS(load(*s), pthio::error);
      CHECK_THROWS_WITH_AS(load(*s, roomy),
                           doctest::Contains("containers nest deeper than max_depth (1000)"),
                           pthio::error);
    }
    // A deep structure left unreachable (root None) is released on success without recursion.
    CHECK(
        load("\x80\x02" + std::string(n, ']') + std::string(n - 1, 'a') + "0N.", roomy).is_none());
    // Deep garbage with a cycle in it too.
    CHECK(load("\x80\x02]q\x00h\x00"
               "a"s +
                   std::string(n / 5, '\x85') + "0N."s,
               roomy)
              .is_none());
  }

  TEST_CASE("pickle: containers may nest exactly max_depth deep") {
    auto nested = [](int depth) {
      return "\x80\x02" + std::string(depth, ']') + std::string(depth - 1, 'a') + ".";
    };
    CHECK(load(nested(1000)).is_list());
    CHECK_THROWS_WITH_AS(
        load(nested(1001)),
        doctest::Contains("offset 2003: pickle: containers nest deeper than max_depth (1000)"),
        pthio::error);
    pthio::unpickle_options shallow;
    shallow.limits.max_depth = 3;
    CHECK(load("\x80\x02]]]aa."s, shallow).is_list());
    CHECK_THROWS_AS(load("\x80\x02]]]]aaa."s, shallow), pthio::error);
    // The same nesting reached through the memo, which the reader checks by walking the result.
    CHECK(load("\x80\x02]q\x00]h\x00"
               "aq\x01]h\x01"
               "a."s,
               shallow)
              .is_list());
    CHECK_THROWS_AS(load("\x80\x02]q\x00]h\x00"
                         "aq\x01]h\x01"
                         "aq\x02]h\x02"
                         "a."s,
                         shallow),
                    pthio::error);
    // An object's args, state and items count as nesting too.
    CHECK_THROWS_AS(load("\x80\x02"
                         "cm\nC\n]]\x85\x85R."s,
                         shallow),
                    pthio::error);
    CHECK(load("\x80\x02"
               "cm\nC\n)R]]ab."s,
               shallow)
              .is_object());
    CHECK_THROWS_AS(load("\x80\x02"
                         "cm\nC\n)R]]]aab."s,
                         shallow),
                    pthio::error);
  }

  TEST_CASE("pickle: depth counts shared containers along every path") {
    // (L, chain) where L is a list nested 600 deep and chain holds L 600 lists deeper: the walk
    // meets L first near the top, then again at depth 601, where 601 + 600 > 1000.
    std::string s = "\x80\x02" + std::string(600, ']') + std::string(599, 'a') + "q\x00"s;
    s += std::string(600, ']') + "h\x00"s + std::string(600, 'a') + "\x86.";
    CHECK_THROWS_WITH_AS(load(s), doctest::Contains("containers nest deeper than max_depth"),
                         pthio::error);
    std::string ok = "\x80\x02" + std::string(400, ']') + std::string(399, 'a') + "q\x00"s;
    ok += std::string(400, ']') + "h\x00"s + std::string(400, 'a') + "\x86.";
    CHECK(load(ok).is_tuple());
  }

  TEST_CASE("pickle: memory, stack and memo limits are enforced") {
    pthio::unpickle_options small;
    small.limits.max_memory = 1000;
    CHECK_THROWS_WITH_AS(load("\x80\x02X" + le32(2000) + std::string(2000, 'a') + ".", small),
                         doctest::Contains("offset 2: pickle: BINUNICODE: the objects built need "
                                           "more than max_memory (1000 bytes)"),
                         pthio::error);
    // Copies of a memoized string share its text: each costs a value slot, not the text again.
    auto copies = [](int n) {
      std::string p = "\x80\x02X" + le32(200) + std::string(200, 'a') + "q\x00("s;
      for (int i = 0; i < n; ++i) p += "h\x00"s;
      return p + "l.";
    };
    small.limits.max_memory = 2000;
    const pthio::value shared = load(copies(20), small);
    REQUIRE(shared.as_list().items.size() == 20);
    CHECK(&shared.as_list().items[0].as_str() == &shared.as_list().items[19].as_str());
    CHECK_THROWS_WITH_AS(load(copies(200), small), doctest::Contains("max_memory"), pthio::error);
    pthio::unpickle_options few;
    few.limits.max_stack = 10;
    CHECK_THROWS_WITH_AS(
        load("\x80\x02" + std::string(11, 'N') + "."s, few),
        doctest::Contains(
            "offset 12: pickle: NONE: the stack holds more than max_stack (10) values"),
        pthio::error);
    few.limits.max_memo = 4;
    CHECK_THROWS_WITH_AS(load("\x80\x02Nq\x04."s, few),
                         doctest::Contains("BINPUT memo index 4 exceeds the limit max_memo (4)"),
                         pthio::error);
    // A dict key tuple that would be expensive to hash.
    std::string key = "\x80\x02}K\x01";
    for (int i = 0; i < 1100; ++i) key += "\x85";
    key += "K\x01s.";
    CHECK_THROWS_WITH_AS(load(key), doctest::Contains("a dict key nests deeper than max_depth"),
                         pthio::error);
  }

  TEST_CASE("pickle: truncating or corrupting single bytes of golden files never crashes") {
    // Every byte of a protocol-2 and a protocol-0 file replaced by a few values: an error or a
    // value, never undefined behaviour (run under the sanitizers).
    for (const char* f : {"writer_torch_like.pkl", "varied_p0.pkl", "varied_p4.pkl"}) {
      CAPTURE(f);
      const auto good = data_file(f);
      auto table = torch_like_table();
      auto o = torch_like_reader(table);
      o.persistent_load = [](const value&) { return value(); };
      const std::size_t step = std::max<std::size_t>(1, good.size() / 150);
      for (std::size_t i = 0; i < good.size(); i += step) {
        for (int b : {0x00, 0x28, 0x71, 0x80, 0xff}) {
          auto bad = good;
          bad[i] = static_cast<std::byte>(b);
          try {
            pthio::unpickle(bad, o);
          } catch (const pthio::error&) {}
        }
      }
    }
  }

}  // TEST_SUITE
