// Slices: the parser and Python's semantics, shard_range, checkpoint::load_slice on every fixture
// format (views, TorchScript, legacy, big-endian, safetensors, sharded indexes) in every load mode
// against an element-by-element reference over the whole tensor (itself checked against PyTorch
// by test_fixtures.cpp), and what a lazy slice reads. tests/slice_torch.py compares with torch
// and the safetensors package directly.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/json.h"
#include "pthio/pthio.hpp"
#include "support.h"

namespace {

using pthio::slice;

// Python's len(range(n)[start:stop:step]) etc. were computed in Python for the cases below.
std::vector<std::int64_t> positions(const pthio::resolved_dim& r) {
  std::vector<std::int64_t> p;
  for (std::int64_t i = 0; i < r.count; ++i) p.push_back(r.start + i * r.step);
  return p;
}

// The slice's elements by the definition: for each result index, the source index (start + i *
// step per dimension, indices fixed), its bytes from the whole tensor's row-major bytes.
std::vector<std::byte> reference(const pthio::tensor& whole, const slice& s) {
  const auto dims = s.resolve(whole.shape());
  const auto all = whole.contiguous().bytes();
  const std::size_t es = whole.element_size();
  const auto strides = pthio::contiguous_strides(whole.shape());
  std::vector<std::byte> out;
  std::int64_t numel = 1;
  for (const auto& d : dims) numel *= d.count;
  if (numel == 0) return out;
  std::vector<std::int64_t> idx(dims.size(), 0);
  while (true) {
    std::int64_t off = 0;
    for (std::size_t d = 0; d < dims.size(); ++d)
      off += (dims[d].start + idx[d] * dims[d].step) * strides[d];
    out.insert(out.end(), all.begin() + off * static_cast<std::int64_t>(es),
               all.begin() + (off + 1) * static_cast<std::int64_t>(es));
    std::size_t d = dims.size();
    while (d-- > 0) {
      if (++idx[d] < dims[d].count) break;
      idx[d] = 0;
    }
    if (d == static_cast<std::size_t>(-1)) break;
  }
  return out;
}

const std::vector<std::string> specs = {
    "",      "0",        "-1",           "1:",       ":-1",   "::2",         "1::3", "-3:",
    ":1",    "5:2",      ":,1:",         ":,::2",    "0,1:3", "1:100:7,::2", ":,-2", "-1,-1",
    ":,:,1", "1:,::3,:", "::2,1::2,::2", ":, 0 , :", "1:2,",  "-100:100"};

// Every tensor of `file`, sliced by every spec that fits it, in every mode, equals the
// reference. Returns the number of comparisons.
int check_file(const std::filesystem::path& file) {
  INFO(file.string());
  const auto whole_ck = pthio::load_checkpoint(file, pthio_test::cpu_options());
  std::vector<std::pair<std::string, pthio::tensor>> tensors;
  pthio::visit_tensors(whole_ck.root, [&](const std::string& k, const pthio::value& v) {
    tensors.emplace_back(k, v.as_tensor());
  });
  int n = 0;
  for (auto mode : {pthio::load_mode::lazy, pthio::load_mode::eager, pthio::load_mode::mmap}) {
    const auto ck = pthio::load_checkpoint(file, pthio_test::cpu_options(mode));
    for (const auto& [key, whole] : tensors) {
      for (const auto& text : specs) {
        const slice s = slice::parse(text);
        std::vector<std::int64_t> shape;
        try {
          shape = s.result_shape(whole.shape(), key);
        } catch (const pthio::error& e) {
          CHECK(e.kind() == pthio::errc::invalid_argument);
          CHECK_THROWS_AS(ck.load_slice(key, s), pthio::error);
          continue;
        }
        INFO(key << "[" << text << "] mode " << static_cast<int>(mode));
        const pthio::tensor got = ck.load_slice(key, s);
        CHECK(got.shape() == shape);
        CHECK(got.dtype() == whole.dtype());
        CHECK(got.is_contiguous());
        CHECK(got.dev().is_cpu());
        CHECK(got.bytes() == reference(whole, s));
        ++n;
      }
    }
  }
  return n;
}

// Bytes this process has read with read()/pread() so far (Linux: /proc/self/io's rchar).
std::optional<std::uint64_t> bytes_read_so_far() {
  std::ifstream in("/proc/self/io");
  std::string name;
  std::uint64_t v = 0;
  while (in >> name >> v)
    if (name == "rchar:") return v;
  return std::nullopt;
}

}  // namespace

TEST_SUITE("slice") {
  TEST_CASE("slice: parsing Python's spelling") {
    CHECK(slice::parse("").empty());
    CHECK(slice::parse("  ").empty());
    CHECK(slice::parse("5").items() == std::vector{pthio::slice_item::at(5)});
    CHECK(slice::parse("-3:").items() == std::vector{pthio::slice_item::range(-3, std::nullopt)});
    CHECK(slice::parse("0:512,:").items() ==
          std::vector{pthio::slice_item::range(0, 512), pthio::slice_item::all()});
    CHECK(slice::parse("1:100:7,::2").items() ==
          std::vector{pthio::slice_item::range(1, 100, 7),
                      pthio::slice_item::range(std::nullopt, std::nullopt, 2)});
    CHECK(slice::parse(" : , 128 : 256 ").str() == ":,128:256");
    CHECK(slice::parse("1::").str() == "1:");
    CHECK(slice::parse("5,").str() == "5");  // t[5,] is t[5]
    CHECK(slice::parse("+2:-9223372036854775808").items()[0].stop == INT64_MIN);
    for (const char* bad :
         {",", "5,,", ",5", "a", "1:2:3:4", "::0", "::-1", "1 2", "--1", "-", "9223372036854775808",
          "1.5", "...", "None", "[1]", "1;2", "5,,6", ":,,"}) {
      INFO(bad);
      try {
        (void)slice::parse(bad);
        FAIL("parsed");
      } catch (const pthio::error& e) {
        CHECK(e.kind() == pthio::errc::invalid_argument);
        CHECK(e.message().find(bad) != std::string::npos);
      }
    }
  }

  TEST_CASE("slice: Python's clipping, negative bounds and steps") {
    const std::vector<std::int64_t> ten = {10};
    // Each expected list is Python's list(range(10)[spec]).
    auto pos = [&](const char* t) { return positions(slice::parse(t).resolve(ten)[0]); };
    CHECK(pos("1:100:7") == std::vector<std::int64_t>{1, 8});
    CHECK(pos("-3:") == std::vector<std::int64_t>{7, 8, 9});
    CHECK(pos("-100:3") == std::vector<std::int64_t>{0, 1, 2});
    CHECK(pos("5:2").empty());
    CHECK(pos("::3") == std::vector<std::int64_t>{0, 3, 6, 9});
    CHECK(pos("20:30").empty());
    CHECK(pos(":-1:4") == std::vector<std::int64_t>{0, 4, 8});
    CHECK(pos("-1") == std::vector<std::int64_t>{9});
    CHECK_FALSE(slice::parse("-1").resolve(ten)[0].keep);
    const std::vector<std::int64_t> shape = {4, 6, 8};
    CHECK(slice::parse("1,::2").result_shape(shape) == std::vector<std::int64_t>{3, 8});
    CHECK(slice::parse("").result_shape(shape) == shape);
    CHECK(slice::parse("1,2,3").result_shape(shape).empty());
  }

  TEST_CASE("slice: out of range names the key, the dimension and the bound") {
    const std::vector<std::int64_t> shape = {4, 6};
    try {
      (void)slice::parse(":,6").resolve(shape, "fc.weight");
      FAIL("resolved");
    } catch (const pthio::error& e) {
      CHECK(e.kind() == pthio::errc::invalid_argument);
      const std::string m = e.message();
      CHECK(m.find("fc.weight") != std::string::npos);
      CHECK(m.find("dimension 1") != std::string::npos);
      CHECK(m.find("size 6") != std::string::npos);
      CHECK(m.find("index 6") != std::string::npos);
    }
    CHECK_THROWS_AS((void)slice::parse("-5").resolve(shape), pthio::error);
    CHECK_NOTHROW((void)slice::parse("-4").resolve(shape));
    try {
      (void)slice::parse("0,0,0").resolve(shape, "b");
      FAIL("resolved");
    } catch (const pthio::error& e) {
      CHECK(std::string(e.message()).find("3 indices for a tensor of 2 dimensions") !=
            std::string::npos);
    }
    // An index of an empty dimension has no valid position.
    CHECK_THROWS_AS((void)slice::parse("0").resolve(std::vector<std::int64_t>{0}), pthio::error);
    CHECK(slice::parse("0:").result_shape(std::vector<std::int64_t>{0}) ==
          std::vector<std::int64_t>{0});
  }

  TEST_CASE("slice: shard_range splits as text-generation-inference does") {
    // TGI: block = ceil(n / world); rank r takes [r * block, (r + 1) * block) clipped to n.
    auto parts = [](std::int64_t n, std::int64_t world) {
      std::vector<std::int64_t> sizes;
      std::int64_t expect_first = 0;
      for (std::int64_t r = 0; r < world; ++r) {
        auto [a, b] = pthio::shard_range(n, r, world);
        CHECK(a == std::min(expect_first, n));
        sizes.push_back(b - a);
        expect_first = a + (b - a);
      }
      return sizes;
    };
    CHECK(parts(10, 4) == std::vector<std::int64_t>{3, 3, 3, 1});
    CHECK(parts(2, 4) == std::vector<std::int64_t>{1, 1, 0, 0});
    CHECK(parts(4096, 4) == std::vector<std::int64_t>{1024, 1024, 1024, 1024});
    CHECK(parts(0, 3) == std::vector<std::int64_t>{0, 0, 0});
    CHECK(pthio::shard_range(INT64_MAX, 1, 2).second == INT64_MAX);
    CHECK_THROWS_AS(pthio::shard_range(10, 4, 4), pthio::error);
    CHECK_THROWS_AS(pthio::shard_range(10, 0, 0), pthio::error);
    CHECK_THROWS_AS(pthio::shard_range(-1, 0, 1), pthio::error);
    const std::vector<std::int64_t> shape = {10, 6};
    CHECK(pthio::shard_slice(shape, 1, 1, 4).str() == ":,2:4");
    CHECK(pthio::shard_slice(shape, 0, 3, 4).str() == "9:10");
  }

  TEST_CASE("slice: every tensor of the zip, TorchScript, legacy and big-endian fixtures") {
    int n = 0;
    for (const char* f :
         {"t2/views.pth", "t2/dtypes.pth", "t2/dtypes_new.pth", "t2/dtypes_exotic.pth",
          "t2/byte_views.pth", "t2/scripted.pt", "t2/legacy_views.pth", "t2/quantized.pth",
          "t2/conv2d.pth", "t1/views.pth", "t1/legacy_views.pth", "t1/scripted.pt",
          "bigendian/big.pth"})
      n += check_file(pthio_test::fixture(f));
    CHECK(n > 1000);
  }

  TEST_CASE("slice: safetensors files and sharded indexes") {
    int n = 0;
    for (const char* f :
         {"st/dtypes.safetensors", "st/shapes.safetensors", "st/unaligned.safetensors",
          "st/sharded/model.safetensors.index.json", "st/sharded/pytorch_model.bin.index.json"})
      n += check_file(pthio_test::fixture(f));
    CHECK(n > 100);
  }

  TEST_CASE("slice: a lazy slice reads only the bytes it needs") {
    // Byte counts are compared up to 4 bytes, the play in /proc/self/io's own length.
    auto about = [](std::uint64_t got, std::uint64_t want) {
      return got + 4 >= want && got <= want + 4;
    };
    const auto before_all = bytes_read_so_far();
    if (!before_all) {
      pthio_test::skip("no /proc/self/io");
      return;
    }
    // 256 x 1024 float32 (1 MiB) and 64 x 8 x 128 int16, written by pthio (the layout is torch's).
    std::vector<float> w(256 * 1024);
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i) * 0.5f;
    std::vector<std::int16_t> x(64 * 8 * 128);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<std::int16_t>(i * 7);
    pthio::value sd = pthio::value::make_ordered_dict();
    sd.as_dict().set(pthio::value("w"),
                     pthio::value(pthio::tensor::from_values<float>(w, {256, 1024})));
    sd.as_dict().set(pthio::value("x"),
                     pthio::value(pthio::tensor::from_values<std::int16_t>(x, {64, 8, 128})));
    const auto path = pthio_test::scratch_dir() / "slice_reads.pth";
    pthio::save(path, sd);
    pthio::save_safetensors(pthio_test::scratch_dir() / "slice_reads.safetensors", sd);

    for (const char* name : {"slice_reads.pth", "slice_reads.safetensors"}) {
      INFO(name);
      const auto ck = pthio::load_checkpoint(pthio_test::scratch_dir() / name,
                                             pthio_test::cpu_options(pthio::load_mode::lazy));
      auto read_by = [&](const char* key, const char* spec) {
        const auto before = *bytes_read_so_far();
        const pthio::tensor t = ck.load_slice(key, slice::parse(spec));
        const auto after = *bytes_read_so_far();
        // Reading /proc/self/io is a read too: taken off, as measured by one more reading.
        const auto overhead = *bytes_read_so_far() - after;
        const pthio::tensor whole =
            pthio::load_checkpoint(pthio_test::scratch_dir() / name, pthio_test::cpu_options())
                .load_tensor(key);
        CHECK(t.bytes() == reference(whole, slice::parse(spec)));
        const auto n = after - before;
        // The overhead's length varies by a digit or two between readings.
        return n > overhead ? n - overhead : 0;
      };
      // Rows: one read of exactly the rows.
      CHECK(about(read_by("w", "64:128"), 64u * 4096u));
      CHECK(about(read_by("w", "5"), 4096u));
      // Columns: 512 bytes of each of 256 rows, one read each: exactly the columns.
      CHECK(about(read_by("w", ":,128:256"), 256u * 512u));
      CHECK(about(read_by("x", ":,::4,:"), 64u * 2u * 256u));
      // A strided inner selection reads spans, not elements, and nothing outside them.
      CHECK(about(read_by("x", "3,1,::2"), 254u));
      CHECK(about(read_by("x", "0:0"), 0u));
    }
  }

  TEST_CASE("slice: concurrent lazy slices") {
    const auto file = pthio_test::fixture("t2/views.pth");
    const auto whole = pthio::load_checkpoint(file, pthio_test::cpu_options());
    const auto ck = pthio::load_checkpoint(file, pthio_test::cpu_options(pthio::load_mode::lazy));
    std::vector<std::string> keys;
    pthio::visit_tensors(ck.root,
                         [&](const std::string& k, const pthio::value&) { keys.push_back(k); });
    std::vector<std::vector<std::byte>> got(8);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < got.size(); ++i)
      threads.emplace_back(
          [&, i] { got[i] = ck.load_slice(keys[i % keys.size()], slice()).bytes(); });
    for (auto& t : threads) t.join();
    for (std::size_t i = 0; i < got.size(); ++i)
      CHECK(got[i] == whole.load_tensor(keys[i % keys.size()]).contiguous().bytes());
  }

  TEST_CASE("slice: errors name the key; meta map_location reads nothing") {
    const auto file = pthio_test::fixture("t2/views.pth");
    const auto ck = pthio::load_checkpoint(file, pthio_test::cpu_options(pthio::load_mode::lazy));
    CHECK_THROWS_AS(ck.load_slice("no.such.key", slice()), pthio::error);
    std::string key;
    pthio::tensor t;
    pthio::visit_tensors(ck.root, [&](const std::string& k, const pthio::value& v) {
      if (key.empty() && v.as_tensor().dim() >= 1) {
        key = k;
        t = v.as_tensor();
      }
    });
    REQUIRE(!key.empty());
    try {
      (void)ck.load_slice(key, slice::parse(std::to_string(t.shape()[0])));
      FAIL("sliced");
    } catch (const pthio::error& e) {
      CHECK(e.kind() == pthio::errc::invalid_argument);
      CHECK(std::string(e.what()).find("'" + key + "'") != std::string::npos);
    }
    pthio::load_options meta = pthio_test::cpu_options(pthio::load_mode::lazy);
    meta.map_location = pthio::map_location("meta");
    const auto mck = pthio::load_checkpoint(file, meta);
    const pthio::tensor m = mck.load_slice(key, slice::parse("0:1"));
    CHECK(m.dev().type() == pthio::device_type::meta);
    CHECK(m.shape()[0] == 1);
  }

  TEST_CASE("slice: load_elements reads a small view's own bytes, a large one's record") {
    // One 4 MiB storage seen through 64 views of 16 floats and one view of all of it: ls --json
    // of the lazy file must equal the eager one (strides and offsets are the views', not the
    // contiguous copies'), and the small views must not read the storage 64 times.
    const auto path = pthio_test::scratch_dir() / "views_of_one_storage.pth";
    const std::int64_t n = std::int64_t{1} << 20;
    std::vector<float> v(static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) * 0.5f;
    const pthio::tensor base = pthio::tensor::from_values<float>(v, {n});
    pthio::value sd = pthio::value::make_ordered_dict();
    for (std::int64_t k = 0; k < 64; ++k)
      sd.as_dict().set(pthio::value("v" + std::to_string(k)),
                       pthio::value(base.as_strided({4, 4}, {8, 2}, k * 16001)));
    sd.as_dict().set(pthio::value("all"), pthio::value(base));
    pthio::save(path, sd);
    pthio::load_options o;
    o.map_location = "cpu";
    const pthio::checkpoint eager = pthio::load_checkpoint(path, o);
    o.mode = pthio::load_mode::lazy;
    const pthio::checkpoint lazy = pthio::load_checkpoint(path, o);
    CHECK(pthio::cli::ls_json(lazy, "f") == pthio::cli::ls_json(eager, "f"));
    const auto before = bytes_read_so_far();
    for (std::int64_t k = 0; k < 64; ++k) {
      const std::string key = "v" + std::to_string(k);
      CHECK(lazy.load_elements(lazy.root.find(key)->as_tensor()).bytes() ==
            eager.root.find(key)->as_tensor().bytes());
    }
    const auto after = bytes_read_so_far();
    if (before && after) CHECK(*after - *before < (std::uint64_t{1} << 20));  // not 64 x 4 MiB
    const pthio::tensor all = lazy.load_elements(lazy.root.find("all")->as_tensor());
    CHECK(all.get_storage().nbytes() == static_cast<std::size_t>(n) * 4);  // the whole record
  }
}
