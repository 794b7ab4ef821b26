// The tensor type: dtype table, bounds checks, views, contiguous(), conversions and Eigen maps,
// checked against tensors PyTorch wrote (views.pth is base = arange(48).reshape(6, 8) and views
// of it; see fixtures/generate.py views_dict).
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <tuple>
#include <vector>

#include "pthio/eigen.hpp"
#include "pthio/pthio.hpp"
#include "support.h"

using pthio::dtype;
using pthio::tensor;

namespace {

pthio::value views(const char* rel) {
  pthio::load_options o;
  o.map_location = pthio::map_location("cpu");
  return pthio::load(pthio_test::fixture(rel), o);
}

const tensor& get(const pthio::value& root, const char* key) { return root.find(key)->as_tensor(); }

}  // namespace

TEST_SUITE("tensor") {
  TEST_CASE("tensor: dtype names and sizes follow torch") {
    CHECK(pthio::dtype_name(dtype::float32) == "float32");
    CHECK(pthio::dtype_name(dtype::bool_) == "bool");
    CHECK(pthio::element_size(dtype::complex128) == 16);
    CHECK(pthio::element_size(dtype::bfloat16) == 2);
    CHECK(pthio::element_size(dtype::float8_e5m2) == 1);
    CHECK(pthio::dtype_from_name("torch.half") == dtype::float16);
    CHECK(pthio::dtype_from_name("cdouble") == dtype::complex128);
    CHECK(!pthio::dtype_from_name("float128"));
    CHECK(pthio::dtype_from_storage_class("BFloat16Storage") == dtype::bfloat16);
    CHECK(pthio::storage_class_name(dtype::uint16).empty());
    for (std::size_t i = 0; i < pthio::dtype_count; ++i) {
      auto t = static_cast<dtype>(i);
      CHECK(pthio::dtype_from_name(pthio::dtype_name(t)) == t);
    }
  }

  TEST_CASE("tensor: half and bfloat16 conversions round to nearest even") {
    CHECK(pthio::half_to_float(0x3c00) == 1.0f);
    CHECK(pthio::half_to_float(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
    CHECK(pthio::half_to_float(0x7bff) == 65504.0f);
    CHECK(std::isinf(pthio::half_to_float(0x7c00)));
    CHECK(pthio::float_to_half(65504.0f) == 0x7bff);
    CHECK(pthio::float_to_half(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);  // tie -> even
    CHECK(pthio::float_to_half(std::ldexp(1.0f, -24)) == 0x0001);
    CHECK(pthio::float_to_bfloat16(1.0f) == 0x3f80);
    CHECK(pthio::bfloat16_to_float(0x3f80) == 1.0f);
    for (std::uint32_t h = 0; h < 0x7c00; h += 7)
      CHECK(pthio::float_to_half(pthio::half_to_float(static_cast<std::uint16_t>(h))) == h);
  }

  TEST_CASE("tensor: views PyTorch saved read through their strides") {
    for (const char* rel : {"t1/views.pth", "t2/views.pth", "t1/legacy_views.pth"}) {
      INFO(rel);
      auto root = views(rel);
      const tensor& base = get(root, "base");
      for (int i = 0; i < 6; ++i)
        for (int j = 0; j < 8; ++j) CHECK(base.at<float>({i, j}) == float(i * 8 + j));
      CHECK(get(root, "row2").at<float>({5}) == 21.0f);
      CHECK(get(root, "block").at<float>({2, 3}) == float(3 * 8 + 5));
      CHECK(get(root, "transposed").at<float>({7, 1}) == float(1 * 8 + 7));
      CHECK(get(root, "strided").at<float>({2, 2}) == float(4 * 8 + 6));
      CHECK(get(root, "element").item<float>() == 47.0f);
      CHECK(get(root, "expanded").strides() == pthio::shape_t{0, 1});
      // contiguous() of a non-contiguous view copies the visible elements in row-major order.
      tensor t = get(root, "transposed").contiguous();
      CHECK(t.is_contiguous());
      CHECK(t.strides() == pthio::shape_t{6, 1});
      CHECK(t.at<float>({3, 2}) == float(2 * 8 + 3));
      CHECK_FALSE(t.get_storage().same(base.get_storage()));
    }
  }

  TEST_CASE("tensor: Eigen maps honour strides without copying") {
    auto root = views("t2/views.pth");
    auto block = pthio::map_matrix<float>(get(root, "block"));
    CHECK(block.rows() == 3);
    CHECK(block.cols() == 4);
    CHECK(block(0, 0) == 10.0f);
    CHECK(block(2, 3) == 29.0f);
    auto tr = pthio::map_matrix<float>(get(root, "transposed"));
    CHECK(tr(7, 1) == 15.0f);
    Eigen::MatrixXf prod = pthio::map_matrix<float>(get(root, "base")) * tr;  // (6x8)(8x6)
    float expected = 0;
    for (int k = 0; k < 8; ++k) expected += float(2 * 8 + k) * float(3 * 8 + k);
    CHECK(prod(2, 3) == expected);
    auto row = pthio::map_vector<float>(get(root, "row2"));
    CHECK(row.sum() == float(16 + 17 + 18 + 19 + 20 + 21 + 22 + 23));
    // A write through the map lands in the shared storage.
    auto b = get(root, "base");
    pthio::map_matrix<float>(b)(0, 0) = -1.0f;
    CHECK(get(root, "transposed").at<float>({0, 0}) == -1.0f);
    CHECK_THROWS_AS(pthio::map_matrix<double>(get(root, "base")), pthio::error);
    CHECK_THROWS_AS(pthio::map_matrix<float>(get(root, "row2")), pthio::error);
  }

  TEST_CASE("tensor: construction refuses views outside their storage") {
    auto s = pthio::storage::allocate(4 * 10);
    CHECK_NOTHROW(tensor(s, dtype::float32, {2, 5}, {5, 1}, 0));
    CHECK_THROWS_AS(tensor(s, dtype::float32, {2, 5}, {5, 1}, 1), pthio::error);
    CHECK_THROWS_AS(tensor(s, dtype::float32, {11}, {1}, 0), pthio::error);
    CHECK_THROWS_AS(tensor(s, dtype::float32, {2}, {1, 1}, 0), pthio::error);
    CHECK_THROWS_AS(tensor(s, dtype::float32, {2}, {-1}, 0), pthio::error);
    CHECK_THROWS_AS(tensor(s, dtype::float32, {2}, {1}, -1), pthio::error);
    CHECK_THROWS_AS(tensor(s, dtype::float32, {1ll << 62, 4}, {4, 1}, 0), pthio::error);
    CHECK_THROWS_AS(tensor(s, dtype::float32, {3, 3}, {1ll << 62, 1}, 0), pthio::error);
    CHECK_NOTHROW(
        tensor(s, dtype::float32, {0, 1ll << 40}, {1, 1}, 1000));  // empty reaches nothing
    CHECK_NOTHROW(tensor(s, dtype::float32, {1000000}, {0}, 9));   // stride 0
  }

  TEST_CASE("tensor: dtype conversion and element access") {
    auto t = tensor::from_values<float>({1.5f, -2.0f, 3.25f, 0.0f}, {2, 2});
    CHECK(t.to(dtype::float64).at<double>({0, 1}) == -2.0);
    CHECK(t.to(dtype::int32).at<std::int32_t>({1, 0}) == 3);
    auto bf = t.to(dtype::bfloat16);
    CHECK(bf.to(dtype::float32).at<float>({0, 0}) == 1.5f);
    CHECK(t.to(dtype::bool_).at<bool>({1, 1}) == false);
    CHECK_THROWS_AS(t.at<double>({0, 0}), pthio::error);
    CHECK_THROWS_AS(t.at<float>({2, 0}), pthio::error);
    CHECK_THROWS_AS(t.at<float>({0}), pthio::error);
    CHECK(t.transpose(0, 1).at<float>({0, 1}) == 3.25f);
    CHECK(t.narrow(1, 1, 1).at<float>({1, 0}) == 0.0f);
    CHECK(t.reshape({4}).at<float>({2}) == 3.25f);
    CHECK(t.reshape({-1, 1}).shape() == pthio::shape_t{4, 1});
  }

}  // TEST_SUITE

TEST_CASE("tensor: dtype conversions agree with torch, including the edges") {
  // Expected values printed by torch 1.13 (x86-64):
  //   a = torch.tensor([2**53 + 1, -(2**53 + 1), 300, -129, 2**62 + 1])
  //   a.to(torch.int8), a.to(torch.uint8), a.to(torch.int32), a.to(torch.float64)
  //   f = torch.tensor([3.9, -3.9, 300.0, -0.5, nan, 1e30, -1e30, 70000.0, -70000.0, 5e9])
  //   f.to(torch.int64), f.to(torch.int32), f.to(torch.int8), f.to(torch.uint8), f.to(torch.int16)
  auto a = pthio::tensor::from_values<std::int64_t>(
      {9007199254740993LL, -9007199254740993LL, 300, -129, 4611686018427387905LL}, {5});
  auto as = [](const pthio::tensor& t, pthio::dtype d) {
    auto c = t.to(d);
    std::vector<double> out;
    for (std::int64_t i = 0; i < c.numel(); ++i) {
      switch (d) {
        case pthio::dtype::int8: out.push_back(c.data<std::int8_t>()[i]); break;
        case pthio::dtype::uint8: out.push_back(c.data<std::uint8_t>()[i]); break;
        case pthio::dtype::int16: out.push_back(c.data<std::int16_t>()[i]); break;
        case pthio::dtype::int32: out.push_back(c.data<std::int32_t>()[i]); break;
        case pthio::dtype::int64:
          out.push_back(static_cast<double>(c.data<std::int64_t>()[i]));
          break;
        case pthio::dtype::float64: out.push_back(c.data<double>()[i]); break;
        case pthio::dtype::bool_: out.push_back(c.data<bool>()[i]); break;
        default: FAIL("dtype");
      }
    }
    return out;
  };
  CHECK(as(a, pthio::dtype::int8) == std::vector<double>{1, -1, 44, 127, 1});
  CHECK(as(a, pthio::dtype::uint8) == std::vector<double>{1, 255, 44, 127, 1});
  CHECK(as(a, pthio::dtype::int32) == std::vector<double>{1, -1, 300, -129, 1});
  CHECK(as(a, pthio::dtype::float64) == std::vector<double>{9007199254740992.0, -9007199254740992.0,
                                                            300.0, -129.0, 4.611686018427388e+18});
  // int64 -> int64 through another integer type stays exact beyond 2^53.
  CHECK(a.to(pthio::dtype::uint64).to(pthio::dtype::int64).data<std::int64_t>()[0] ==
        9007199254740993LL);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto f = pthio::tensor::from_values<float>(
      {3.9f, -3.9f, 300.0f, -0.5f, nan, 1e30f, -1e30f, 70000.0f, -70000.0f, 5e9f}, {10});
  const double i64min = -9223372036854775808.0;
  CHECK(as(f, pthio::dtype::int64) ==
        std::vector<double>{3, -3, 300, 0, i64min, i64min, i64min, 70000, -70000, 5000000000.0});
  CHECK(as(f, pthio::dtype::int32) == std::vector<double>{3, -3, 300, 0, -2147483648.0,
                                                          -2147483648.0, -2147483648.0, 70000,
                                                          -70000, -2147483648.0});
  CHECK(as(f, pthio::dtype::int8) == std::vector<double>{3, -3, 44, 0, 0, 0, 0, 112, -112, 0});
  CHECK(as(f, pthio::dtype::uint8) == std::vector<double>{3, 253, 44, 0, 0, 0, 0, 112, 144, 0});
  CHECK(as(f, pthio::dtype::int16) == std::vector<double>{3, -3, 300, 0, 0, 0, 0, 4464, -4464, 0});
  CHECK(as(f, pthio::dtype::bool_) == std::vector<double>{1, 1, 1, 1, 1, 1, 1, 1, 1, 1});
}

TEST_CASE("tensor: to(float32) converts every float8 code as torch does") {
  // tests/data/float8/make.py: torch 2.x's .to(torch.float32) of the bytes 0x00..0xff viewed as
  // each float8 dtype, as float32 bit patterns. NaN payloads are not compared (a NaN is a NaN).
  const auto data = pthio_test::fixtures_dir().parent_path() / "tests/data/float8";
  std::ifstream in(data / "float8_to_float32.json");
  REQUIRE(in);
  const auto want = nlohmann::json::parse(in);
  REQUIRE(want["dtypes"].size() == 5);
  for (const auto& [name, codes] : want["dtypes"].items()) {
    CAPTURE(name);
    const auto dt = pthio::dtype_from_name(name);
    REQUIRE(dt);
    REQUIRE(codes.size() == 256);
    auto bytes = pthio::tensor::zeros(dtype::uint8, {256});
    for (int b = 0; b < 256; ++b) bytes.data<std::uint8_t>()[b] = static_cast<std::uint8_t>(b);
    const auto f8 = tensor(bytes.get_storage(), *dt, {256}, {1}, 0);
    const auto f32 = f8.to(dtype::float32);
    REQUIRE(f32.dtype() == dtype::float32);
    for (int b = 0; b < 256; ++b) {
      CAPTURE(b);
      const std::string hex = codes[b];
      const auto bits = static_cast<std::uint32_t>(std::stoul(hex, nullptr, 16));
      const float expected = std::bit_cast<float>(bits);
      // The tensor conversion and the element function (what `pthio cat` prints) alike.
      const float direct = pthio::float8_to_float(*dt, static_cast<std::uint8_t>(b));
      for (float got : {f32.data<float>()[b], direct}) {
        if (std::isnan(expected))
          CHECK(std::isnan(got));
        else
          CHECK(std::bit_cast<std::uint32_t>(got) == bits);
      }
    }
  }
}

TEST_CASE("tensor: as_strided outside the storage is the caller's invalid_argument") {
  auto t = pthio::tensor::from_values<float>({1, 2, 3, 4, 5, 6}, {6});
  CHECK(t.as_strided({2, 2}, {2, 1}, 2).contiguous().bytes().size() == 16);
  for (const auto& [shape, strides, offset] :
       std::vector<std::tuple<pthio::shape_t, pthio::shape_t, std::int64_t>>{
           {{3, 3}, {3, 1}, 0}, {{6}, {1}, 1}, {{2}, {-1}, 1}, {{-1}, {1}, 0}}) {
    try {
      (void)t.as_strided(shape, strides, offset);
      FAIL("accepted a view outside the storage");
    } catch (const pthio::error& e) {
      CHECK(e.kind() == pthio::errc::invalid_argument);
      CHECK(std::string(e.what()).starts_with("as_strided: "));
    }
  }
}
