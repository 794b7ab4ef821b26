// Eigen: strided and dense views in both storage orders, copies to and from Eigen types, and the
// dtype / shape checks, including a fixture PyTorch wrote (nn.Linear(4, 3)).
#include <doctest/doctest.h>

#include <complex>
#include <cstdint>

#include "pthio/eigen.hpp"
#include "pthio/pthio.hpp"
#include "support.h"

using pthio::dtype;
using pthio::tensor;

namespace {

// [[0, 1, 2], [3, 4, 5]] as float32.
tensor two_by_three() { return tensor::from_values<float>({0, 1, 2, 3, 4, 5}, {2, 3}); }

}  // namespace

TEST_SUITE("eigen") {
  TEST_CASE("eigen: map_matrix views a tensor in either storage order and writes through") {
    tensor t = two_by_three();
    auto rm = pthio::map_matrix<float>(t);
    auto cm = pthio::map_matrix<float, Eigen::ColMajor>(t);
    REQUIRE(rm.rows() == 2);
    REQUIRE(rm.cols() == 3);
    REQUIRE(cm.rows() == 2);
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j) {
        CHECK(rm(i, j) == static_cast<float>(3 * i + j));
        CHECK(cm(i, j) == rm(i, j));
      }
    rm(1, 2) = 50.0f;
    CHECK(t.at<float>({1, 2}) == 50.0f);
    // A copy into an existing tensor is an assignment to its view.
    Eigen::Matrix<float, 2, 3> m;
    m << 9, 8, 7, 6, 5, 4;
    pthio::map_matrix<float>(t) = m;
    CHECK(t.at<float>({0, 1}) == 8.0f);
    CHECK(t.at<float>({1, 0}) == 6.0f);
  }

  TEST_CASE("eigen: a transposed row-major tensor is a dense column-major matrix") {
    tensor w = two_by_three();
    tensor wt = w.transpose(0, 1);  // shape [3, 2], strides [1, 3]
    auto cm = pthio::map_matrix_dense<float, Eigen::ColMajor>(wt);
    CHECK(cm.rows() == 3);
    CHECK(cm.cols() == 2);
    CHECK(cm.outerStride() == 3);
    CHECK(cm(2, 1) == 5.0f);
    CHECK(cm(0, 1) == 3.0f);
    Eigen::MatrixXf product = cm.transpose() * cm;  // vectorisable: inner stride 1
    CHECK(product(1, 1) == doctest::Approx(9 + 16 + 25));
    CHECK(pthio::map_matrix_dense<float>(w)(1, 1) == 4.0f);
    CHECK_THROWS_WITH_AS(pthio::map_matrix_dense<float>(wt), doctest::Contains("stride 1"),
                         pthio::error);
    CHECK_THROWS_WITH_AS((pthio::map_matrix_dense<float, Eigen::ColMajor>(w)),
                         doctest::Contains("stride 1"), pthio::error);
    // A single row is dense in either order.
    CHECK(pthio::map_matrix_dense<float, Eigen::ColMajor>(w.narrow(0, 1, 1))(0, 2) == 5.0f);
  }

  TEST_CASE("eigen: map_vector honours strides (a column of a matrix)") {
    tensor t = two_by_three();
    tensor col = t.narrow(1, 1, 1).reshape({2});  // contiguous copy
    CHECK(pthio::map_vector<float>(col)(1) == 4.0f);
    tensor strided = t.as_strided({2}, {3}, 2);  // column 2, stride 3, no copy
    auto v = pthio::map_vector<float>(strided);
    CHECK(v.size() == 2);
    CHECK(v(0) == 2.0f);
    CHECK(v(1) == 5.0f);
    v(1) = -1.0f;
    CHECK(t.at<float>({1, 2}) == -1.0f);
  }

  TEST_CASE(
      "eigen: to_eigen copies into row- and column-major, fixed and dynamic, matrix and array "
      "types") {
    tensor t = two_by_three();
    auto r = pthio::to_eigen<float>(t);
    static_assert(decltype(r)::IsRowMajor);
    auto c = pthio::to_eigen<float, Eigen::ColMajor>(t);
    static_assert(!decltype(c)::IsRowMajor);
    auto f = pthio::to_eigen<Eigen::Matrix<float, 2, 3>>(t);
    auto a = pthio::to_eigen<Eigen::ArrayXXf>(t);
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j) {
        CHECK(r(i, j) == static_cast<float>(3 * i + j));
        CHECK(c(i, j) == r(i, j));
        CHECK(f(i, j) == r(i, j));
        CHECK(a(i, j) == r(i, j));
      }
    t.at<float>({0, 0}) = 100.0f;
    CHECK(r(0, 0) == 0.0f);  // a copy
    // A transposed view copies as its logical [3, 2] matrix.
    auto tt = pthio::to_eigen<float, Eigen::ColMajor>(t.transpose(0, 1));
    CHECK(tt.rows() == 3);
    CHECK(tt(2, 1) == 5.0f);

    tensor v = tensor::from_values<double>({1.5, 2.5, 3.5}, {3});
    auto cv = pthio::to_eigen<Eigen::VectorXd>(v);
    auto rv = pthio::to_eigen<Eigen::RowVector3d>(v);
    auto av = pthio::to_eigen<Eigen::ArrayXd>(v);
    CHECK(cv.size() == 3);
    CHECK(cv(2) == 3.5);
    CHECK(rv(1) == 2.5);
    CHECK(av(0) == 1.5);
    // A [3, 1] matrix fills a column vector too.
    CHECK(pthio::to_eigen<Eigen::Vector3d>(v.reshape({3, 1}))(2) == 3.5);
  }

  TEST_CASE("eigen: dtype, rank, size and device mismatches throw naming what differs") {
    tensor t = two_by_three();
    CHECK_THROWS_WITH_AS(pthio::to_eigen<double>(t),
                         doctest::Contains("the tensor is float32, the Eigen scalar is float64"),
                         pthio::error);
    CHECK_THROWS_WITH_AS(pthio::map_matrix<std::int32_t>(t), doctest::Contains("float32"),
                         pthio::error);
    CHECK_THROWS_WITH_AS(pthio::map_vector<float>(t), doctest::Contains("1-D"), pthio::error);
    CHECK_THROWS_WITH_AS((pthio::to_eigen<Eigen::Matrix<float, 3, 2>>(t)),
                         doctest::Contains("does not fit"), pthio::error);
    CHECK_THROWS_WITH_AS(pthio::to_eigen<Eigen::Vector4f>(tensor::zeros(dtype::float32, {3})),
                         doctest::Contains("does not fit"), pthio::error);
    CHECK_THROWS_AS(pthio::to_eigen<float>(tensor::zeros(dtype::float32, {2, 2, 2})), pthio::error);
    CHECK_THROWS_WITH_AS(pthio::to_eigen<float>(tensor()), doctest::Contains("undefined"),
                         pthio::error);
    auto* fake = reinterpret_cast<void*>(std::uintptr_t{0x7f0000002000});
    tensor gpu(pthio::storage::borrow(fake, 64, pthio::device::parse("cuda:0")), dtype::float32,
               {4, 4}, {4, 1});
    CHECK_THROWS_WITH_AS(pthio::map_matrix<float>(gpu), doctest::Contains("CPU"), pthio::error);
  }

  TEST_CASE(
      "eigen: from_eigen copies matrices (row- or column-major strides), vectors and expressions") {
    Eigen::MatrixXf m(2, 3);
    m << 1, 2, 3, 4, 5, 6;
    tensor r = pthio::from_eigen(m);
    CHECK(r.dtype() == dtype::float32);
    CHECK(r.shape() == pthio::shape_t{2, 3});
    CHECK(r.strides() == pthio::shape_t{3, 1});
    CHECK(r.at<float>({1, 0}) == 4.0f);
    tensor c = pthio::from_eigen<Eigen::ColMajor>(m);
    CHECK(c.shape() == pthio::shape_t{2, 3});
    CHECK(c.strides() == pthio::shape_t{1, 2});
    CHECK(c.at<float>({1, 0}) == 4.0f);
    CHECK(c.at<float>({0, 2}) == 3.0f);
    tensor e = pthio::from_eigen(m.transpose() * 2.0f);
    CHECK(e.shape() == pthio::shape_t{3, 2});
    CHECK(e.at<float>({2, 1}) == 12.0f);

    Eigen::VectorXd v(4);
    v << 1, 2, 3, 4;
    tensor tv = pthio::from_eigen(v);
    CHECK(tv.shape() == pthio::shape_t{4});
    CHECK(tv.at<double>({3}) == 4.0);
    Eigen::RowVector3i rv(7, 8, 9);
    tensor trv = pthio::from_eigen(rv);
    CHECK(trv.dtype() == dtype::int32);
    CHECK(trv.shape() == pthio::shape_t{3});
    CHECK(trv.at<std::int32_t>({2}) == 9);
    Eigen::ArrayXXi arr = Eigen::ArrayXXi::Constant(2, 2, 5);
    CHECK(pthio::from_eigen(arr).at<std::int32_t>({1, 1}) == 5);
    // A runtime n x 1 matrix stays 2-D.
    CHECK(pthio::from_eigen(Eigen::MatrixXd::Ones(3, 1)).shape() == pthio::shape_t{3, 1});
    CHECK(pthio::from_eigen(Eigen::MatrixXf(0, 4)).shape() == pthio::shape_t{0, 4});
  }

  TEST_CASE("eigen: complex, half, bfloat16 and bool scalars map to their dtypes") {
    Eigen::Matrix2cd z;
    z << std::complex<double>(1, 2), 0, 0, std::complex<double>(3, -4);
    tensor tz = pthio::from_eigen(z);
    CHECK(tz.dtype() == dtype::complex128);
    CHECK(pthio::to_eigen<std::complex<double>>(tz)(1, 1) == std::complex<double>(3, -4));
    Eigen::Matrix<Eigen::half, 1, 2> h(Eigen::half(1.5f), Eigen::half(-2.0f));
    tensor th = pthio::from_eigen(h);
    CHECK(th.dtype() == dtype::float16);
    CHECK(th.to(dtype::float32).at<float>({1}) == -2.0f);
    tensor bf = tensor::from_values<float>({0.5f, 4.0f}, {2}).to(dtype::bfloat16);
    CHECK(static_cast<float>(pthio::map_vector<Eigen::bfloat16>(bf)(1)) == 4.0f);
    Eigen::Matrix<bool, 2, 2> b;
    b << true, false, false, true;
    tensor tb = pthio::from_eigen(b);
    CHECK(tb.dtype() == dtype::bool_);
    CHECK(tb.at<bool>({1, 1}));
    CHECK_FALSE(tb.at<bool>({0, 1}));
    static_assert(pthio::eigen_dtype_of<std::complex<float>> == dtype::complex64);
  }

  TEST_CASE("eigen: a fixture PyTorch wrote round-trips through Eigen and a saved file") {
    pthio::value root = pthio::load(pthio_test::fixture("t1/linear.pth"));
    const tensor& w = root.find("weight")->as_tensor();
    Eigen::Matrix<float, 3, 4> m = pthio::to_eigen<Eigen::Matrix<float, 3, 4>>(w);
    CHECK(m(0, 0) == doctest::Approx(0.2576316f));
    CHECK(m(1, 2) == doctest::Approx(-0.102862656f));
    Eigen::Vector3f b = pthio::to_eigen<Eigen::Vector3f>(root.find("bias")->as_tensor());
    CHECK(b(2) == doctest::Approx(-0.03645438f));
    // y = W x + b, then the product saved and loaded back.
    Eigen::Vector4f x(1, 2, 3, 4);
    Eigen::Vector3f y = pthio::map_matrix<float>(w) * x + b;
    pthio::value out = pthio::value::make_ordered_dict();
    out.as_dict().set("y", pthio::value(pthio::from_eigen(y)));
    out.as_dict().set("wt", pthio::value(pthio::from_eigen<Eigen::ColMajor>(m.transpose())));
    auto path = pthio_test::scratch_dir() / "eigen_roundtrip.pth";
    pthio::save(path, out);
    pthio::value back = pthio::load(path);
    CHECK(pthio::to_eigen<Eigen::VectorXf>(back.find("y")->as_tensor()).isApprox(y));
    CHECK(pthio::to_eigen<float>(back.find("wt")->as_tensor()).isApprox(m.transpose()));
  }

}  // TEST_SUITE
