// Lazy mode: listing without reading storage records, reading one tensor's record alone, and
// materializing the rest. (Every fixture is also checked lazily against PyTorch's answers in
// test_fixtures.cpp.)
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "cli/json.h"
#include "pthio/pthio.hpp"
#include "support.h"

namespace {

pthio::load_options lazy_cpu() { return pthio_test::cpu_options(pthio::load_mode::lazy); }
pthio::load_options eager_cpu() { return pthio_test::cpu_options(); }

// The offset of the only occurrence of `needle` in `hay`.
std::size_t find_once(const std::vector<std::byte>& hay, const std::vector<std::byte>& needle) {
  auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end());
  REQUIRE(it != hay.end());
  REQUIRE(std::search(it + 1, hay.end(), needle.begin(), needle.end()) == hay.end());
  return static_cast<std::size_t>(it - hay.begin());
}

template <class T>
std::vector<std::byte> bytes_of(const std::vector<T>& v) {
  std::vector<std::byte> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<float> values_of(const pthio::tensor& t) {
  auto c = t.contiguous();
  return std::vector<float>(c.data<float>(), c.data<float>() + c.numel());
}

}  // namespace

TEST_SUITE("lazy") {
  TEST_CASE("lazy: a damaged record is not read until its tensor is asked for") {
    // Two tensors in their own records; then one byte of b's record is changed, so its CRC-32 no
    // longer matches. An eager load refuses the file; a lazy one lists both, reads a, and refuses b
    // only when b is read: b's record was not read before.
    std::vector<float> a(300), b(500);
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = 0.25f * static_cast<float>(i) + 1000.0f;
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = -0.5f * static_cast<float>(i) - 7777.0f;
    pthio::value sd = pthio::value::make_ordered_dict();
    sd.as_dict().set(pthio::value("a"),
                     pthio::value(pthio::tensor::from_values<float>(a, {30, 10})));
    sd.as_dict().set(pthio::value("b"), pthio::value(pthio::tensor::from_values<float>(b, {500})));
    const auto path = pthio_test::scratch_dir() / "lazy_damaged.pth";
    pthio::save(path, sd);
    auto file = pthio_test::read_bytes(path);
    file[find_once(file, bytes_of(b)) + 1000] ^= std::byte{0x40};
    pthio_test::write_bytes(path, file);

    CHECK_THROWS_AS(pthio::load_checkpoint(path, eager_cpu()), pthio::error);

    pthio::checkpoint ck = pthio::load_checkpoint(path, lazy_cpu());
    REQUIRE(ck.is_lazy());
    std::vector<std::string> keys;
    pthio::visit_tensors(ck.root, [&](const std::string& k, const pthio::value& v) {
      keys.push_back(k);
      CHECK(v.as_tensor().dev().type() == pthio::device_type::meta);
    });
    CHECK(keys == std::vector<std::string>{"a", "b"});
    CHECK(ck.root.find("b")->as_tensor().shape() == pthio::shape_t{500});

    const pthio::tensor ta = ck.load_tensor("a");
    CHECK(ta.dev() == pthio::cpu_device);
    CHECK(ta.shape() == pthio::shape_t{30, 10});
    CHECK(values_of(ta) == a);
    try {
      (void)ck.load_tensor("b");
      FAIL("read a damaged record");
    } catch (const pthio::error& e) {
      CHECK(e.kind() == pthio::errc::corrupt_zip);
      CHECK(std::string(e.what()).find("CRC") != std::string::npos);
    }
    // Without CRC verification the damaged bytes are read as they are.
    pthio::load_options no_crc = lazy_cpu();
    no_crc.verify_crc = false;
    auto unchecked = pthio::load_checkpoint(path, no_crc);
    CHECK(values_of(unchecked.load_tensor("b")) != b);
    CHECK_THROWS_AS(ck.materialize(), pthio::error);
  }

  TEST_CASE(
      "lazy: load_tensor by key and by placeholder, unknown keys, materialize keeps sharing") {
    // fixtures/t2/views.pth: views of one storage, as torch saved them.
    const auto path = pthio_test::fixture("t2/views.pth");
    auto eager = pthio::load_checkpoint(path, eager_cpu());
    auto ck = pthio::load_checkpoint(path, lazy_cpu());
    REQUIRE(ck.is_lazy());
    std::vector<std::string> keys;
    pthio::visit_tensors(eager.root,
                         [&](const std::string& k, const pthio::value&) { keys.push_back(k); });
    REQUIRE(keys.size() >= 2);
    for (const auto& k : keys) {
      INFO(k);
      auto want = eager.load_tensor(k);  // an eager checkpoint returns its tensor as loaded
      auto got = ck.load_tensor(k);
      CHECK(got.shape() == want.shape());
      CHECK(got.strides() == want.strides());
      CHECK(got.storage_offset() == want.storage_offset());
      CHECK(got.contiguous().bytes() == want.contiguous().bytes());
    }
    try {
      (void)ck.load_tensor("no.such.key");
      FAIL("found a missing key");
    } catch (const pthio::error& e) {
      CHECK(e.kind() == pthio::errc::invalid_argument);
      CHECK(std::string(e.what()).find("no.such.key") != std::string::npos);
    }
    // Tensors sharing a storage in the file share one after materialize(), as after an eager load.
    ck.materialize();
    CHECK_FALSE(ck.is_lazy());
    std::map<const void*, int> lazy_groups, eager_groups;
    std::vector<const void*> lazy_ids, eager_ids;
    pthio::visit_tensors(ck.root, [&](const std::string&, const pthio::value& v) {
      lazy_ids.push_back(v.as_tensor().get_storage().id());
    });
    pthio::visit_tensors(eager.root, [&](const std::string&, const pthio::value& v) {
      eager_ids.push_back(v.as_tensor().get_storage().id());
    });
    REQUIRE(lazy_ids.size() == eager_ids.size());
    for (std::size_t i = 0; i < lazy_ids.size(); ++i)
      for (std::size_t j = 0; j < lazy_ids.size(); ++j)
        CHECK((lazy_ids[i] == lazy_ids[j]) == (eager_ids[i] == eager_ids[j]));
    CHECK(pthio::cli::dump_json(ck.root) == pthio::cli::dump_json(eager.root));
  }

  TEST_CASE("lazy: big-endian files are swapped on read, safetensors files are lazy too") {
    for (const char* rel : {"bigendian/big.pth", "st/dtypes.safetensors"}) {
      INFO(rel);
      const auto path = pthio_test::fixture(rel);
      auto eager = pthio::load_checkpoint(path, eager_cpu());
      auto ck = pthio::load_checkpoint(path, lazy_cpu());
      CHECK(ck.is_lazy());
      pthio::visit_tensors(eager.root, [&](const std::string& k, const pthio::value& v) {
        INFO(k);
        CHECK(ck.load_tensor(k).contiguous().bytes() == v.as_tensor().contiguous().bytes());
      });
      ck.materialize();
      CHECK(pthio::cli::dump_json(ck.root) == pthio::cli::dump_json(eager.root));
    }
  }

  TEST_CASE("lazy: concurrent load_tensor calls") {
    const auto path = pthio_test::fixture("t2/many_tensors.pth");
    auto eager = pthio::load_checkpoint(path, eager_cpu());
    auto ck = pthio::load_checkpoint(path, lazy_cpu());
    std::vector<std::string> keys;
    std::vector<pthio::tensor> want;  // looked up once: eager load_tensor(key) walks the root
    pthio::visit_tensors(eager.root, [&](const std::string& k, const pthio::value& v) {
      keys.push_back(k);
      want.push_back(v.as_tensor());
    });
    REQUIRE(keys.size() > 100);
    std::vector<int> bad(4, 0);
    std::vector<std::thread> threads;
    for (int w = 0; w < 4; ++w)
      threads.emplace_back([&, w] {
        for (std::size_t i = static_cast<std::size_t>(w); i < keys.size(); i += 4)
          if (ck.load_tensor(keys[i]).bytes() != want[i].bytes())
            ++bad[static_cast<std::size_t>(w)];
      });
    for (auto& t : threads) t.join();
    CHECK(bad == std::vector<int>(4, 0));
  }

}  // TEST_SUITE
