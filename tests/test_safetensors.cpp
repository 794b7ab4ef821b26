// safetensors: files the safetensors package wrote (fixtures/st, what it saw in manifest.json)
// load as it saw them; pthio rewrites them byte for byte; round trips through every source; the
// corrupt-header kinds one by one; the command's convert, ls and diff across formats.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/json.h"
#include "cli_support.h"
#include "manifest.h"
#include "pthio/pthio.hpp"

using nlohmann::json;
using pthio::dtype;
using pthio::tensor;
using pthio::value;
using pthio_test::error_of;
using pthio_test::fixture;
using pthio_test::run_cli;
using pthio_test::shell_quote;

using pthio_test::cpu_options;
using pthio_test::manifest;

namespace {

std::vector<std::byte> bytes_of(std::string_view s) {
  std::vector<std::byte> b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}

// A safetensors file: the size, the header (padded with spaces to 8 when asked), the data.
std::vector<std::byte> st_file(std::string header, std::string_view data = {}, bool pad = true) {
  if (pad) header.resize((header.size() + 7) / 8 * 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<char>((static_cast<std::uint64_t>(header.size()) >> (8 * i)) & 0xff);
  out += header;
  out += data;
  return bytes_of(out);
}

std::vector<std::byte> save_to_memory(const value& root,
                                      const pthio::safetensors_save_options& o = {}) {
  pthio::memory_sink sink;
  pthio::save_safetensors(sink, root, o);
  return sink.buffer();
}

pthio::checkpoint load_memory(const std::vector<std::byte>& b,
                              pthio::load_mode mode = pthio::load_mode::eager) {
  return pthio::load_safetensors(pthio::byte_source::from_vector(b, "test.safetensors"),
                                 cpu_options(mode));
}

std::vector<std::string> keys_of(const value& root) {
  std::vector<std::string> out;
  for (const auto& [k, v] : root.as_dict().entries()) out.push_back(k.as_str());
  return out;
}

bool inside(const tensor& t, const pthio::byte_source& src) {
  auto p = t.raw_data();
  return p >= src.bytes().data() && p < src.bytes().data() + src.size();
}

// The error `fn` throws (fails the test when it throws none or another type).
}  // namespace

TEST_SUITE("safetensors") {
  TEST_CASE(
      "safetensors: every file the package wrote loads as it saw it, eager (one thread and 3) and "
      "mmap") {
    for (const auto& f : manifest("st/manifest.json")["files"]) {
      std::string rel = f["file"];
      if (rel.ends_with(".json")) continue;
      for (auto [mode, threads] : {std::pair{pthio::load_mode::eager, 0u},
                                   {pthio::load_mode::eager, 3u},
                                   {pthio::load_mode::mmap, 0u}}) {
        INFO(rel << (mode == pthio::load_mode::mmap ? " (mmap)" : " (eager)") << ", threads "
                 << threads);
        pthio::load_options opts = cpu_options(mode);
        opts.threads = threads;
        pthio::checkpoint ck = pthio::load_checkpoint(fixture(rel), opts);
        CHECK(ck.format == pthio::checkpoint_format::safetensors);
        REQUIRE(ck.root.is_dict());
        CHECK(ck.root.as_dict().class_name == "collections.OrderedDict");
        const auto& want = f["tensors"];
        REQUIRE(ck.root.as_dict().size() == want.size());
        std::size_t i = 0;
        for (const auto& [k, v] : ck.root.as_dict().entries()) {
          const auto& w = want[i++];
          INFO(w["key"].get<std::string>());
          CHECK(k.as_str() == w["key"].get<std::string>());
          REQUIRE(v.is_tensor());
          const tensor& t = v.as_tensor();
          CHECK(pthio::dtype_name(t.dtype()) == w["dtype"].get<std::string>());
          CHECK(t.shape() == w["shape"].get<pthio::shape_t>());
          CHECK(t.is_contiguous());
          CHECK(pthio::cli::tensor_sha256(t) == w["sha256"].get<std::string>());
        }
        const value* meta = ck.root.as_dict().attr("__metadata__");
        if (f["metadata"].is_null()) {
          CHECK(meta == nullptr);
        } else {
          REQUIRE(meta != nullptr);
          REQUIRE(meta->as_dict().size() == f["metadata"].size());
          for (const auto& [k, v] : f["metadata"].items())
            CHECK(meta->find(k)->as_str() == v.get<std::string>());
        }
      }
    }
  }

  TEST_CASE("safetensors: mmap gives views into the file when aligned and copies when not") {
    auto aligned = pthio::byte_source::map_file(fixture("st/dtypes.safetensors"));
    auto ck = pthio::load_safetensors(aligned, cpu_options(pthio::load_mode::mmap));
    for (const auto& [k, v] : ck.root.as_dict().entries()) {
      INFO(k.as_str());
      const tensor& t = v.as_tensor();
      CHECK(inside(t, aligned));
      CHECK(reinterpret_cast<std::uintptr_t>(t.raw_data()) % t.element_size() == 0);
    }
    auto eager = pthio::load_safetensors(aligned, cpu_options());
    for (const auto& [k, v] : eager.root.as_dict().entries())
      CHECK_FALSE(inside(v.as_tensor(), aligned));

    // A 13-byte header puts the float64 at file offset 21: it is copied, and reads the same.
    auto odd = pthio::byte_source::map_file(fixture("st/unaligned.safetensors"));
    auto m = pthio::load_safetensors(odd, cpu_options(pthio::load_mode::mmap));
    const tensor& d = m.root.find("d")->as_tensor();
    CHECK_FALSE(inside(d, odd));
    CHECK(reinterpret_cast<std::uintptr_t>(d.raw_data()) % 8 == 0);
    CHECK(d.at<double>({0}) == 1.5);
    CHECK(d.at<double>({1}) == -2.25);
    CHECK(m.root.find("f")->as_tensor().at<float>({2}) == -8.0f);
  }

  TEST_CASE("safetensors: pthio rewrites every file the package wrote byte for byte") {
    for (const auto& f : manifest("st/manifest.json")["files"]) {
      std::string rel = f["file"];
      if (rel.ends_with(".json") || rel == "st/unaligned.safetensors") continue;
      INFO(std::string(rel));
      auto original = pthio_test::read_bytes(fixture(rel));
      auto root = pthio::load(fixture(rel), cpu_options());
      CHECK(save_to_memory(root) == original);
    }
  }

  TEST_CASE("safetensors: a state dict torch.save wrote saves as the bytes the package writes") {
    for (const char* stem : {"simple", "dtypes"}) {
      INFO(std::string(stem));
      auto root = pthio::load(fixture(std::string("st/") + stem + ".pth"), cpu_options());
      pthio::memory_sink sink;
      pthio::save_options so;
      so.format = pthio::checkpoint_format::safetensors;
      pthio::save(sink, root, so);
      CHECK(sink.buffer() ==
            pthio_test::read_bytes(fixture(std::string("st/") + stem + ".safetensors")));
    }
  }

  TEST_CASE("safetensors: dtype x shape round trips through memory, file and mmap") {
    const dtype types[] = {dtype::float64,        dtype::float32,         dtype::float16,
                           dtype::bfloat16,       dtype::complex64,       dtype::int64,
                           dtype::int32,          dtype::int16,           dtype::int8,
                           dtype::uint8,          dtype::uint16,          dtype::uint32,
                           dtype::uint64,         dtype::bool_,           dtype::float8_e4m3fn,
                           dtype::float8_e5m2,    dtype::float8_e4m3fnuz, dtype::float8_e5m2fnuz,
                           dtype::float8_e8m0fnu, dtype::float4_e2m1fn_x2};
    const pthio::shape_t shapes[] = {{}, {0}, {5}, {2, 3}, {2, 1, 4}, {3, 0, 2}};
    for (dtype t : types) {
      SUBCASE(std::string(pthio::dtype_name(t)).c_str()) {
        value root = value::make_ordered_dict();
        int n = 0;
        for (const auto& shape : shapes) {
          if (t == dtype::float4_e2m1fn_x2 && shape.empty())
            continue;  // no F4 shape for a 0-d tensor
          tensor x = tensor::zeros(t, shape);
          for (std::size_t i = 0; i < x.nbytes(); ++i)
            x.raw_data()[i] =
                static_cast<std::byte>(t == dtype::bool_ ? (i % 3 == 0) : (i * 37 + n) & 0xff);
          root.as_dict().set(value("t" + std::to_string(n++)), value(x));
        }
        auto bytes = save_to_memory(root);
        auto path = pthio_test::scratch_dir() /
                    ("rt_" + std::string(pthio::dtype_name(t)) + ".safetensors");
        pthio::save_safetensors(path, root);
        CHECK(pthio_test::read_bytes(path) == bytes);
        for (int source = 0; source < 3; ++source) {
          INFO("source " << source);
          pthio::checkpoint ck =
              source == 0   ? load_memory(bytes)
              : source == 1 ? pthio::load_checkpoint(path, cpu_options())
                            : pthio::load_checkpoint(path, cpu_options(pthio::load_mode::mmap));
          REQUIRE(ck.root.as_dict().size() == root.as_dict().size());
          for (const auto& [k, v] : root.as_dict().entries()) {
            const value* got = ck.root.find(k.as_str());
            REQUIRE(got);
            CHECK(got->as_tensor().dtype() == t);
            CHECK(got->as_tensor().shape() == v.as_tensor().shape());
            CHECK(got->as_tensor().bytes() == v.as_tensor().bytes());
          }
        }
      }
    }
  }

  TEST_CASE("safetensors: views, transposes and shared storages are written as contiguous copies") {
    tensor base = tensor::zeros(dtype::float32, {4, 6});
    for (int i = 0; i < 24; ++i) base.data<float>()[i] = static_cast<float>(i);
    value root = value::make_ordered_dict();
    root.as_dict().set(value("base"), value(base));
    root.as_dict().set(value("tied"), value(base));
    root.as_dict().set(value("t"), value(base.transpose(0, 1)));
    root.as_dict().set(value("row"), value(base.narrow(0, 2, 1)));
    root.as_dict().set(value("col"), value(base.narrow(1, 3, 2)));
    root.as_dict().set(value("alone"), value(tensor::from_values<float>({1, 2}, {2})));

    auto plan = pthio::plan_safetensors(root);
    REQUIRE(plan.shared.size() == 1);
    CHECK(plan.shared[0] == std::vector<std::string>{"base", "tied", "t", "row", "col"});
    CHECK(plan.dropped.empty());

    auto ck = load_memory(save_to_memory(root));
    for (const auto& [k, v] : root.as_dict().entries()) {
      INFO(k.as_str());
      const tensor& got = ck.root.find(k.as_str())->as_tensor();
      CHECK(got.shape() == v.as_tensor().shape());
      CHECK(got.bytes() == v.as_tensor().bytes());
      CHECK(got.is_contiguous());
    }
    CHECK_FALSE(ck.root.find("base")->as_tensor().get_storage().same(
        ck.root.find("tied")->as_tensor().get_storage()));
    CHECK(ck.root.find("t")->as_tensor().at<float>({5, 1}) == 11.0f);
    CHECK(ck.root.find("col")->as_tensor().at<float>({3, 1}) == 22.0f);
  }

  TEST_CASE(
      "safetensors: values that are not tensors are refused by save() and left out on request") {
    value opt = value::make_dict();
    opt.as_dict().set(value("state"), value::make_dict());
    opt.as_dict().set(value("lr"), value(0.1));
    value ck = value::make_dict();
    ck.as_dict().set(value("epoch"), value(3));
    ck.as_dict().set(value("w"), value(tensor::from_values<float>({1, 2, 3}, {3})));
    ck.as_dict().set(value("optimizer"), opt);
    ck.as_dict().set(value("names"), value::make_list({value("a"), value()}));
    ck.as_dict().set(value("layers"),
                     value::make_list({value(tensor::from_values<std::int64_t>({7}, {1}))}));

    auto plan = pthio::plan_safetensors(ck);
    using row = std::pair<std::string, std::string>;
    CHECK(plan.dropped == std::vector<row>{{"epoch", "int"},
                                           {"optimizer.state", "dict"},
                                           {"optimizer.lr", "float"},
                                           {"names.0", "str"},
                                           {"names.1", "None"}});
    REQUIRE(plan.tensors.size() == 2);
    CHECK(plan.tensors[1].first == "layers.0");

    pthio::memory_sink sink;
    pthio::save_options so;
    so.format = pthio::checkpoint_format::safetensors;
    CHECK_THROWS_WITH_AS(
        pthio::save(sink, ck, so),
        doctest::Contains(
            "safetensors stores only tensors, and 5 values are not: epoch (int), "
            "optimizer.state (dict), optimizer.lr (float), names.0 (str), names.1 (None)"),
        pthio::error);
    CHECK(error_of([&] { pthio::save(sink, ck, so); }).kind() == pthio::errc::invalid_argument);

    pthio::safetensors_save_options drop;
    drop.drop_non_tensors = true;
    auto loaded = load_memory(save_to_memory(ck, drop));
    CHECK(keys_of(loaded.root) == std::vector<std::string>{"layers.0", "w"});
  }

  TEST_CASE("safetensors: dtypes safetensors lacks, meta tensors and clashing names are refused") {
    for (dtype t :
         {dtype::complex128, dtype::complex32, dtype::qint8, dtype::quint8, dtype::bits8}) {
      INFO(pthio::dtype_name(t));
      value root = value::make_dict();
      root.as_dict().set(value("x"), value(tensor::zeros(t, {2})));
      auto e = error_of([&] { save_to_memory(root); });
      CHECK(e.kind() == pthio::errc::unsupported);
      CHECK(e.message() == "tensor \"x\" has dtype " + std::string(pthio::dtype_name(t)) +
                               ", which safetensors cannot store");
    }
    value meta = value::make_dict();
    meta.as_dict().set(
        value("m"),
        value(tensor(pthio::storage::borrow(nullptr, 8, pthio::device(pthio::device_type::meta)),
                     dtype::float32, {2}, {1})));
    CHECK_THROWS_WITH_AS(save_to_memory(meta), doctest::Contains("meta device"), pthio::error);

    value clash = value::make_dict();
    value inner = value::make_dict();
    inner.as_dict().set(value("b"), value(tensor::zeros(dtype::float32, {1})));
    clash.as_dict().set(value("a.b"), value(tensor::zeros(dtype::float32, {1})));
    clash.as_dict().set(value("a"), inner);
    CHECK_THROWS_WITH_AS(save_to_memory(clash),
                         "two tensors have the key path \"a.b\"; safetensors names must be unique",
                         pthio::error);

    value bad_name = value::make_dict();
    bad_name.as_dict().set(value(std::string("\xff\xfe")),
                           value(tensor::zeros(dtype::float32, {1})));
    CHECK_THROWS_WITH_AS(save_to_memory(bad_name), doctest::Contains("must be UTF-8"),
                         pthio::error);
  }

  TEST_CASE("safetensors: __metadata__ comes from the root's attribute or the save options") {
    auto root = pthio::load(fixture("st/meta.safetensors"), cpu_options());
    auto again = load_memory(save_to_memory(root));
    CHECK(again.root.as_dict().attr("__metadata__")->find("format")->as_str() == "pt");

    pthio::safetensors_save_options o;
    o.metadata = std::vector<std::pair<std::string, std::string>>{{"format", "pt"},
                                                                  {"note", "a \"quoted\"\nline"}};
    auto bytes = save_to_memory(pthio::load(fixture("st/simple.safetensors"), cpu_options()), o);
    auto h = pthio::read_safetensors_header(bytes);
    REQUIRE(h.metadata);
    CHECK(*h.metadata == *o.metadata);
    std::string text(reinterpret_cast<const char*>(bytes.data()) + 8, 80);
    CHECK(
        text.starts_with(R"({"__metadata__":{"format":"pt","note":"a \"quoted\"\nline"},"bias":)"));

    // An attribute that is not str -> str is not metadata.
    value r = value::make_ordered_dict();
    r.as_dict().set(value("x"), value(tensor::zeros(dtype::float32, {1})));
    value m = value::make_dict();
    m.as_dict().set(value("n"), value(1));
    r.as_dict().attrs.emplace_back("__metadata__", m);
    CHECK_FALSE(pthio::read_safetensors_header(save_to_memory(r)).metadata);
  }

  TEST_CASE("safetensors: headers the reference accepts load") {
    const std::string f4 = std::string(4, '\0');
    const std::string a = R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
    struct ok_case {
      const char* what;
      std::vector<std::byte> file;
    };
    const ok_case cases[] = {
        {"metadata null", st_file(R"({"__metadata__":null,)" + a + "}", f4)},
        {"unknown fields",
         st_file(
             R"({"a":{"x":[1,{"y":null}],"dtype":"F32","shape":[1],"data_offsets":[0,4],"z":"q"}})",
             f4)},
        {"whitespace around", st_file(" \n{ " + a + " }\t\r\n", f4, false)},
        {"header not padded", st_file("{" + a + "}", f4, false)},
        {"metadata after the tensors", st_file("{" + a + R"(,"__metadata__":{"k":"v"}})", f4)},
        {"escaped names",
         st_file(R"({"a\/\u00e9\ud83d\ude00":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                 f4)},
        {"no tensors", st_file("{}")},
        {"zero-size tensors at one offset",
         st_file(
             R"({"b":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"c":{"dtype":"I8","shape":[2,0],"data_offsets":[0,0]}})")},
        {"empty name", st_file(R"({"":{"dtype":"U8","shape":[],"data_offsets":[0,1]}})", "x")},
    };
    for (const auto& c : cases) {
      INFO(std::string(c.what));
      CHECK_NOTHROW(load_memory(c.file));
    }
    auto esc = load_memory(cases[5].file);
    CHECK(keys_of(esc.root) == std::vector<std::string>{"a/\xc3\xa9\xf0\x9f\x98\x80"});
    CHECK(keys_of(load_memory(cases[7].file).root) == std::vector<std::string>{"b", "c"});
  }

  TEST_CASE("safetensors: each kind of corrupt file is refused with its rule and offset") {
    const std::string f4 = std::string(4, '\0');
    auto one = [](const std::string& dtype, const std::string& shape, const std::string& offsets) {
      return R"({"a":{"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" +
             offsets + "}}";
    };
    std::vector<std::byte> huge = st_file("{}");
    huge[3] = std::byte{0x10};  // 2^24 * 16 > 100 MB
    std::string many_dims = "[1";
    for (int i = 0; i < 1024; ++i) many_dims += ",1";
    many_dims += "]";
    std::vector<std::byte> past_end = st_file("{}");
    past_end[0] = std::byte{9};
    struct bad_case {
      const char* what;
      std::vector<std::byte> file;
      std::string message;
      std::uint64_t offset;
    };
    const bad_case cases[] = {
        {"fewer than 8 bytes", bytes_of(std::string_view("\x08\0\0", 3)),
         "the file holds 3 bytes, fewer than the 8 of the header size", 0},
        {"header over the cap", huge, "header size 268435464 exceeds the limit of 100000000 bytes",
         0},
        {"header past the end", past_end,
         "header size 9 runs past the end of the file (8 bytes follow the size)", 0},
        {"invalid UTF-8", st_file("{\"a\xc3\x28\":1}"), "the header is not valid UTF-8", 11},
        {"overlong UTF-8", st_file("{\"\xc0\xaf\":1}"), "the header is not valid UTF-8", 10},
        {"an array", st_file("[]"), "the header must be a JSON object, not an array", 8},
        {"a number", st_file("12"), "the header must be a JSON object", 8},
        {"bytes after the object", st_file(std::string("{}") + '\0'),
         "unexpected bytes after the JSON value", 10},
        {"unterminated", st_file("{\"a\":{"), "expected a string key in tensor \"a\"", 16},
        {"duplicate name",
         st_file(
             R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
             f4),
         "tensor \"a\" is given twice (first at offset 9)", 62},
        {"duplicate field",
         st_file(R"({"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})", f4),
         "tensor \"a\" has two \"dtype\" fields", 28},
        {"missing shape", st_file(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", f4),
         "tensor \"a\" has no \"shape\"", 9},
        {"missing dtype", st_file(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", f4),
         "tensor \"a\" has no \"dtype\"", 9},
        {"missing offsets", st_file(R"({"a":{"dtype":"F32","shape":[1]}})", f4),
         "tensor \"a\" has no \"data_offsets\"", 9},
        {"unknown dtype", st_file(one("f32", "[1]", "[0,4]"), f4),
         "tensor \"a\": unknown dtype \"f32\"", 22},
        {"float dimension", st_file(one("F32", "[1.0]", "[0,4]"), f4),
         "a shape dimension must be a non-negative integer, got 1.0", 37},
        {"negative offset", st_file(one("F32", "[1]", "[-0,4]"), f4),
         "a data offset must be a non-negative integer, got -0", 56},
        {"exponent", st_file(one("F32", "[1]", "[0,4e0]"), f4),
         "a data offset must be a non-negative integer, got 4e0", 58},
        {"leading zero", st_file(one("F32", "[01]", "[0,4]"), f4),
         "invalid JSON number (leading zero)", 37},
        {"offset past 2^64", st_file(one("F32", "[1]", "[0,18446744073709551616]"), f4),
         "a data offset 18446744073709551616 does not fit in 64 bits", 58},
        {"three offsets", st_file(one("F32", "[1]", "[0,4,4]"), f4),
         "tensor \"a\": data_offsets must hold two integers, [begin, end]", 60},
        {"one offset", st_file(one("F32", "[1]", "[0]"), f4),
         "tensor \"a\": data_offsets must hold two integers, [begin, end]", 55},
        {"shape null", st_file(one("F32", "null", "[0,4]"), f4),
         "tensor \"a\" shape must be a JSON array", 36},
        {"array entry", st_file(R"({"a":["F32",[1],[0,4]]})", f4),
         "the array form of a tensor entry is not supported", 13},
        {"gap", st_file(one("F32", "[1]", "[4,8]"), std::string(8, '\0')),
         "tensor \"a\": data_offsets [4, 8] leave a gap after the bytes before them, which end at "
         "0",
         9},
        {"overlap",
         st_file(
             R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
             std::string(6, '\0')),
         "tensor \"b\": data_offsets [2, 6] overlap the bytes before them, which end at 4", 62},
        {"end before begin",
         st_file(
             R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
             f4),
         "tensor \"a\": data_offsets [4, 0] end before they begin", 9},
        {"size mismatch", st_file(one("F32", "[2]", "[0,4]"), f4),
         "tensor \"a\": data_offsets [0, 4] hold 4 bytes but shape [2] of F32 needs 8", 9},
        {"shape overflow", st_file(one("F32", "[4294967296,4294967296]", "[0,4]"), f4),
         "tensor \"a\": shape [4294967296, 4294967296] overflows", 9},
        {"bits overflow", st_file(one("F64", "[4611686018427387904]", "[0,4]"), f4),
         "of F64 overflows", 9},
        {"F4 half byte", st_file(one("F4", "[3]", "[0,1]"), "x"),
         "tensor \"a\": 3 elements of F4 do not fill whole bytes", 9},
        {"data left over", st_file(one("F32", "[1]", "[0,4]"), std::string(6, '\0')),
         "the tensors cover 4 bytes but the data section holds 6", 68},
        {"data missing", st_file(one("F32", "[2]", "[0,8]"), f4),
         "the tensors cover 8 bytes but the data section holds 4", 68},
        {"metadata value not a string", st_file(R"({"__metadata__":{"k":1}})"),
         "__metadata__ value of \"k\" must be a string", 29},
        {"metadata twice", st_file(R"({"__metadata__":{},"__metadata__":{}})"),
         "__metadata__ is given twice", 27},
        {"metadata key twice", st_file(R"({"__metadata__":{"k":"a","k":"b"}})"),
         "__metadata__ key \"k\" is given twice", 33},
        {"lone surrogate", st_file(R"({"\ud800":1})"), "lone leading surrogate in a \\u escape",
         10},
        {"lone trailing surrogate", st_file(R"({"\udc00":1})"),
         "lone trailing surrogate in a \\u escape", 10},
        {"control character", st_file("{\"a\x01\":1}"),
         "control character in a JSON string (it must be escaped)", 11},
        {"bad escape", st_file(R"({"a\x":1})"), "invalid escape in a JSON string", 11},
        {"deep nesting",
         st_file(R"({"a":{"x":)" + std::string(200, '[') + std::string(200, ']') + "}}"),
         "JSON nesting deeper than 128 levels", 144},
        {"too many dimensions", st_file(one("F32", many_dims, "[0,4]"), f4),
         "tensor \"a\": shape has more than 1024 dimensions", 37 + 2 * 1024},
    };
    for (const auto& c : cases) {
      INFO(std::string(c.what));
      auto e = error_of([&] { load_memory(c.file); });
      CHECK(e.kind() == pthio::errc::corrupt_safetensors);
      if (!c.message.empty()) {
        CHECK_MESSAGE(e.message().find(c.message) != std::string::npos, std::string(e.what()));
        CHECK_MESSAGE(e.offset() == c.offset, std::string(e.what()));
      }
      CHECK(e.context() == "test.safetensors: safetensors header");
      // The header parser alone says the same.
      auto again = error_of([&] { (void)pthio::read_safetensors_header(c.file); });
      CHECK(again.message() == e.message());
    }
  }

  TEST_CASE("safetensors: a dtype pthio has no type for is unsupported, not corrupt") {
    auto file = st_file(R"({"a":{"dtype":"F6_E2M3","shape":[4],"data_offsets":[0,3]}})",
                        std::string(3, '\0'));
    CHECK_NOTHROW((void)pthio::read_safetensors_header(file));
    auto e = error_of([&] { load_memory(file); });
    CHECK(e.kind() == pthio::errc::unsupported);
    CHECK(e.message() == "tensor \"a\" has dtype F6_E2M3, which pthio has no type for");
    CHECK(e.offset() == 9);
    auto odd_f4 =
        st_file(R"({"a":{"dtype":"F4","shape":[2,3],"data_offsets":[0,3]}})", std::string(3, '\0'));
    CHECK(error_of([&] { load_memory(odd_f4); }).kind() == pthio::errc::unsupported);
  }

  TEST_CASE(
      "safetensors: every truncated prefix and every flipped header byte gives an error or a valid "
      "file") {
    for (const char* rel :
         {"st/shapes.safetensors", "st/dtypes.safetensors", "st/meta.safetensors"}) {
      INFO(std::string(rel));
      auto full = pthio_test::read_bytes(fixture(rel));
      for (std::size_t n = 0; n < full.size(); ++n) {
        std::vector<std::byte> prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
        auto e = error_of([&] { load_memory(prefix); });
        CHECK(e.kind() == pthio::errc::corrupt_safetensors);
      }
      const std::size_t header_end =
          std::min<std::size_t>(full.size(), 8 + pthio::read_safetensors_header(full).header_size);
      for (std::size_t i = 0; i < header_end; ++i) {
        for (std::byte mask : {std::byte{0x01}, std::byte{0x20}, std::byte{0x80}}) {
          auto b = full;
          b[i] ^= mask;
          try {
            auto ck = load_memory(b, pthio::load_mode::mmap);
            pthio::visit_tensors(
                ck.root, [](const std::string&, const value& v) { (void)v.as_tensor().bytes(); });
          } catch (const pthio::error&) {}
        }
      }
    }
  }

  TEST_CASE(
      "safetensors: load_checkpoint reads a .safetensors file whose first bytes it does not "
      "recognise") {
    auto path = pthio_test::scratch_dir() / "short.safetensors";
    pthio_test::write_bytes(path, bytes_of(std::string_view("\x05\0\0", 3)));
    auto e = error_of([&] { pthio::load_checkpoint(path, cpu_options()); });
    CHECK(e.kind() == pthio::errc::corrupt_safetensors);
    CHECK(std::string(e.what()) ==
          path.string() +
              ": safetensors header: offset 0: the file holds 3 bytes, fewer "
              "than the 8 of the header size");
    auto ws = pthio_test::scratch_dir() / "ws.safetensors";
    pthio_test::write_bytes(
        ws, st_file(R"(  {"a":{"dtype":"I8","shape":[1],"data_offsets":[0,1]}})", "x"));
    CHECK(pthio::load(ws, cpu_options()).find("a")->as_tensor().at<std::int8_t>({0}) == 'x');
  }

  TEST_CASE("safetensors: map_location meta gives tensors without data") {
    pthio::load_options o;
    o.map_location = pthio::map_location("meta");
    auto ck = pthio::load_checkpoint(fixture("st/simple.safetensors"), o);
    const tensor& w = ck.root.find("weight")->as_tensor();
    CHECK(w.dev().type() == pthio::device_type::meta);
    CHECK(w.shape() == pthio::shape_t{3, 4});
  }

  TEST_CASE("cli: convert to safetensors names the values it drops and the storages it copies" *
            pthio_test::needs_cli) {
    auto out = pthio_test::scratch_dir() / "adam.safetensors";
    auto r = run_cli("convert " + shell_quote(fixture("t2/ckpt_adam.pth").string()) + " " +
                     shell_quote(out.string()));
    CHECK(r.status == 0);
    CHECK(r.out.starts_with(
        "wrote " + out.string() +
        " (safetensors, 24 tensors)\n"
        "dropped 29 values that are not tensors (safetensors stores only tensors):\n"
        "  epoch (int)\n"
        "  optimizer_state_dict.param_groups.0.lr (float)\n"));
    CHECK(r.out.find("  config.name (str)\n") != std::string::npos);
    CHECK(r.out.find("copied") == std::string::npos);

    auto tied = pthio_test::scratch_dir() / "tied.safetensors";
    r = run_cli("convert " + shell_quote(fixture("t2/tied.pth").string()) + " " +
                shell_quote(tied.string()));
    CHECK(r.status == 0);
    CHECK(r.out == "wrote " + tied.string() +
                       " (safetensors, 4 tensors)\n"
                       "copied 1 group of tensors that shared a storage (safetensors stores each "
                       "tensor separately):\n"
                       "  embed.weight, decoder.weight\n");
    auto sd = pthio::load(tied, cpu_options());
    CHECK_FALSE(sd.find("embed.weight")
                    ->as_tensor()
                    .get_storage()
                    .same(sd.find("decoder.weight")->as_tensor().get_storage()));
  }

  TEST_CASE("cli: convert safetensors -> pth -> safetensors gives back the package's bytes" *
            pthio_test::needs_cli) {
    for (const char* stem : {"dtypes", "meta", "shapes", "mx"}) {
      INFO(std::string(stem));
      auto src = fixture(std::string("st/") + stem + ".safetensors");
      auto pth = pthio_test::scratch_dir() / (std::string(stem) + "_back.pth");
      auto st = pthio_test::scratch_dir() / (std::string(stem) + "_again.safetensors");
      auto r = run_cli("convert " + shell_quote(src.string()) + " " + shell_quote(pth.string()));
      CHECK(r.status == 0);
      CHECK(r.out.starts_with("wrote " + pth.string() + " (pth, "));
      auto ck = pthio::load_checkpoint(pth, cpu_options());
      CHECK(ck.format == pthio::checkpoint_format::zip);
      r = run_cli("convert " + shell_quote(pth.string()) + " " + shell_quote(st.string()));
      CHECK(r.status == 0);
      CHECK(pthio_test::read_bytes(st) == pthio_test::read_bytes(src));
      r = run_cli("diff " + shell_quote(src.string()) + " " + shell_quote(pth.string()));
      CHECK(r.status == 0);
    }
    // --to overrides the extension.
    auto odd = pthio_test::scratch_dir() / "named.bin";
    CHECK(run_cli("convert --to safetensors " + shell_quote(fixture("st/simple.pth").string()) +
                  " " + shell_quote(odd.string()))
              .status == 0);
    CHECK(pthio_test::read_bytes(odd) == pthio_test::read_bytes(fixture("st/simple.safetensors")));
  }

  TEST_CASE("cli: diff finds no difference between a checkpoint and its safetensors conversion" *
            pthio_test::needs_cli) {
    for (const char* rel : {"t2/linear.pth", "t2/cnn_bn.pth", "t2/tied.pth", "t2/views.pth",
                            "t2/ckpt_adam.pth", "t1/lstm.pth", "t2/mlp.bin", "st/simple.pth"}) {
      INFO(std::string(rel));
      auto out = pthio_test::scratch_dir() / (std::string(rel).replace(2, 1, "_") + ".safetensors");
      REQUIRE(
          run_cli("convert " + shell_quote(fixture(rel).string()) + " " + shell_quote(out.string()))
              .status == 0);
      auto r =
          run_cli("diff " + shell_quote(fixture(rel).string()) + " " + shell_quote(out.string()));
      CHECK(r.status == 0);
      CHECK(r.out.find(" equal, 0 differ, 0 only in A, 0 only in B\n") != std::string::npos);
      r = run_cli("diff " + shell_quote(out.string()) + " " + shell_quote(fixture(rel).string()) +
                  " --mmap");
      CHECK(r.status == 0);
    }
  }

  TEST_CASE("cli: diff --atol and --rtol judge a perturbed safetensors copy" *
            pthio_test::needs_cli) {
    auto root = pthio::load(fixture("st/simple.safetensors"), cpu_options());
    tensor w = root.find("weight")->as_tensor();
    const float before = w.at<float>({1, 2});
    w.at<float>({1, 2}) = before + 1e-3f;
    auto perturbed = pthio_test::scratch_dir() / "perturbed.safetensors";
    pthio::save_safetensors(perturbed, root);
    const std::string a = shell_quote(fixture("st/simple.pth").string()),
                      b = shell_quote(perturbed.string());

    auto r = run_cli("diff " + a + " " + b);
    CHECK(r.status == 1);
    CHECK(r.out.starts_with("differs: weight: 1 of 12 elements differ; largest |a-b| = "));
    CHECK(r.out.find("at flat index 6\n1 equal, 1 differ, 0 only in A, 0 only in B\n") !=
          std::string::npos);
    CHECK(run_cli("diff " + a + " " + b + " --atol 1e-4").status == 1);
    CHECK(run_cli("diff " + a + " " + b + " --atol 2e-3").status == 0);
    const double rel = 1.5e-3 / std::abs(static_cast<double>(before));
    CHECK(run_cli("diff " + a + " " + b + " --rtol " + std::to_string(rel)).status == 0);
    CHECK(run_cli("diff " + a + " " + b + " --rtol " + std::to_string(rel / 10)).status == 1);
    // A tensor missing from one side is reported whatever the tolerance.
    root.as_dict().erase(value("bias"));
    pthio::save_safetensors(perturbed, root);
    r = run_cli("diff " + a + " " + b + " --atol 1");
    CHECK(r.status == 1);
    CHECK(r.out == "only in A: bias\n1 equal, 0 differ, 1 only in A, 0 only in B\n");
  }

  TEST_CASE("cli: ls of a safetensors file lists the package's order and hashes" *
            pthio_test::needs_cli) {
    const auto& files = manifest("st/manifest.json")["files"];
    for (const auto& f : files) {
      std::string rel = f["file"];
      INFO(std::string(rel));
      auto r = run_cli("ls --json " + shell_quote(fixture(rel).string()));
      REQUIRE(r.status == 0);
      json got = json::parse(r.out);
      CHECK(got["format"] == (rel.ends_with("bin.index.json") ? "zip" : "safetensors"));
      REQUIRE(got["tensors"].size() == f["tensors"].size());
      for (std::size_t i = 0; i < got["tensors"].size(); ++i) {
        CHECK(got["tensors"][i]["key"] == f["tensors"][i]["key"]);
        CHECK(got["tensors"][i]["sha256"] == f["tensors"][i]["sha256"]);
        CHECK(got["tensors"][i]["dtype"] == f["tensors"][i]["dtype"]);
      }
    }
    auto r = run_cli("ls " + shell_quote(fixture("st/meta.safetensors").string()));
    CHECK(r.out ==
          "key     dtype    shape   device  bytes\n"
          "bias    float32  [3]     cpu        12\n"
          "weight  float32  [3, 4]  cpu        48\n"
          "2 tensors, 60 bytes (safetensors format)\n");
    r = run_cli("verify " + shell_quote(fixture("st/meta.safetensors").string()));
    CHECK(r.status == 0);
    CHECK(r.out.find("structure ok: safetensors format, 2 tensors") != std::string::npos);
  }

}  // TEST_SUITE
