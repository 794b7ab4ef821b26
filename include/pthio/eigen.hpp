// pthio — Eigen: view tensors as Eigen matrices and vectors, and copy between the two.
//
// Views (map_matrix, map_matrix_dense, map_vector) alias the tensor's bytes: no copy, writes go
// to the tensor, and they stay valid while any handle keeps the tensor's storage alive. Element
// (i, j) of a matrix view is tensor element [i, j] = data[i * strides[0] + j * strides[1]] whatever
// the storage order asked for; the order only tells Eigen which stride is the inner (fast) one.
// So a transposed row-major tensor (shape [c, r], strides [1, c]) is a dense column-major matrix:
// map_matrix_dense<float, Eigen::ColMajor>(w.transpose(0, 1)).
//
// Copies (to_eigen, from_eigen) own their memory. from_eigen gives a new tensor: a compile-time
// vector type (VectorXf, RowVector3d, ArrayXi ...) becomes 1-D [n]; anything else 2-D [rows, cols],
// row-major strides [cols, 1] by default or column-major [1, rows] with Order = Eigen::ColMajor.
// To copy into an existing tensor, assign to a view: pthio::map_matrix<float>(t) = m.
//
// Element types are checked exactly: the tensor's dtype must be eigen_dtype_of<Scalar>
// (double float64, float float32, Eigen::half float16, Eigen::bfloat16 bfloat16 (Eigen >= 3.4),
// std::complex<float> complex64, std::complex<double> complex128, int8..int64, uint8..uint64,
// bool). A mismatched dtype, a wrong number of dimensions, a non-CPU or undefined tensor, or a
// fixed Eigen size that disagrees with the shape throws pthio::error(invalid_argument).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <complex>
#include <cstdint>
#include <string>
#include <type_traits>

#include "pthio/dtype.hpp"
#include "pthio/error.hpp"
#include "pthio/tensor.hpp"

namespace pthio {

namespace detail {
template <class T>
struct eigen_dtype_impl {};
template <>
struct eigen_dtype_impl<double> : dtype_of_impl<double> {};
template <>
struct eigen_dtype_impl<float> : dtype_of_impl<float> {};
template <>
struct eigen_dtype_impl<std::int64_t> : dtype_of_impl<std::int64_t> {};
template <>
struct eigen_dtype_impl<std::int32_t> : dtype_of_impl<std::int32_t> {};
template <>
struct eigen_dtype_impl<std::int16_t> : dtype_of_impl<std::int16_t> {};
template <>
struct eigen_dtype_impl<std::int8_t> : dtype_of_impl<std::int8_t> {};
template <>
struct eigen_dtype_impl<std::uint8_t> : dtype_of_impl<std::uint8_t> {};
template <>
struct eigen_dtype_impl<std::uint16_t> : dtype_of_impl<std::uint16_t> {};
template <>
struct eigen_dtype_impl<std::uint32_t> : dtype_of_impl<std::uint32_t> {};
template <>
struct eigen_dtype_impl<std::uint64_t> : dtype_of_impl<std::uint64_t> {};
template <>
struct eigen_dtype_impl<bool> : dtype_of_impl<bool> {};
template <>
struct eigen_dtype_impl<std::complex<float>> {
  static constexpr dtype value = dtype::complex64;
};
template <>
struct eigen_dtype_impl<std::complex<double>> {
  static constexpr dtype value = dtype::complex128;
};
template <>
struct eigen_dtype_impl<Eigen::half> {
  static constexpr dtype value = dtype::float16;
};
#if EIGEN_VERSION_AT_LEAST(3, 4, 0)
template <>
struct eigen_dtype_impl<Eigen::bfloat16> {
  static constexpr dtype value = dtype::bfloat16;
};
#endif

template <class T>
concept eigen_element = requires {
  eigen_dtype_impl<T>::value;
};
template <class M>
concept eigen_plain = std::is_base_of_v<Eigen::PlainObjectBase<M>, M>;

// Throws unless `t` is a defined CPU tensor of `want` with `dims` dimensions.
inline void check_eigen_access(const tensor& t, dtype want, std::int64_t dims, const char* what) {
  auto fail = [&](const std::string& why) {
    return error(errc::invalid_argument, std::string(what) + ": " + why);
  };
  if (!t.defined()) throw fail("tensor is undefined");
  if (t.dtype() != want)
    throw fail("the tensor is " + std::string(dtype_name(t.dtype())) + ", the Eigen scalar is " +
               std::string(dtype_name(want)));
  if (!t.dev().is_cpu()) throw fail("needs a CPU tensor; this one is on " + t.dev().str());
  if (t.dim() != dims)
    throw fail("needs a " + std::to_string(dims) + "-D tensor, got shape " +
               shape_string(t.shape()));
}

template <class T>
T* eigen_data(const tensor& t) {
  return reinterpret_cast<T*>(t.raw_data());
}
}  // namespace detail

// The dtype of an Eigen scalar type: eigen_dtype_of<std::complex<float>> == dtype::complex64.
template <class T>
requires detail::eigen_element<T>
inline constexpr dtype eigen_dtype_of = detail::eigen_dtype_impl<T>::value;

template <class T, int Order = Eigen::RowMajor>
using eigen_matrix_map =
    Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Order>, Eigen::Unaligned,
               Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;
template <class T, int Order = Eigen::RowMajor>
using eigen_dense_map = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Order>,
                                   Eigen::Unaligned, Eigen::OuterStride<Eigen::Dynamic>>;
template <class T>
using eigen_vector_map = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>, Eigen::Unaligned,
                                    Eigen::InnerStride<Eigen::Dynamic>>;

// A 2-D tensor as an Eigen matrix view with any strides (rows = shape[0]); Order picks which
// stride Eigen treats as inner.
template <class T, int Order = Eigen::RowMajor>
requires detail::eigen_element<T> eigen_matrix_map<T, Order> map_matrix(const tensor& t) {
  detail::check_eigen_access(t, eigen_dtype_of<T>, 2, "map_matrix");
  const auto& s = t.strides();
  using stride = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
  return eigen_matrix_map<T, Order>(
      detail::eigen_data<T>(t), t.shape()[0], t.shape()[1],
      Order == Eigen::RowMajor ? stride(s[0], s[1]) : stride(s[1], s[0]));
}

// A 2-D tensor whose inner dimension is contiguous (row-major: strides[1] == 1; column-major:
// strides[0] == 1; a dimension of extent 1 counts as contiguous) as a view Eigen can vectorize.
template <class T, int Order = Eigen::RowMajor>
requires detail::eigen_element<T> eigen_dense_map<T, Order> map_matrix_dense(const tensor& t) {
  detail::check_eigen_access(t, eigen_dtype_of<T>, 2, "map_matrix_dense");
  const auto& sh = t.shape();
  const auto& s = t.strides();
  const int inner = Order == Eigen::RowMajor ? 1 : 0;
  if (s[inner] != 1 && sh[inner] > 1)
    throw error(errc::invalid_argument,
                std::string("map_matrix_dense: a ") + (inner ? "row" : "column") +
                    "-major view needs stride 1 in dimension " + std::to_string(inner) +
                    ", got strides " + shape_string(s));
  // An outer stride smaller than the inner extent would make Eigen misjudge aliasing: use the
  // extent when the outer dimension has a single element.
  std::int64_t outer = s[1 - inner];
  if (sh[1 - inner] <= 1) outer = std::max<std::int64_t>(sh[inner], 1);
  return eigen_dense_map<T, Order>(detail::eigen_data<T>(t), sh[0], sh[1],
                                   Eigen::OuterStride<>(outer));
}

// A 1-D tensor as an Eigen column-vector view (any stride).
template <class T>
requires detail::eigen_element<T> eigen_vector_map<T> map_vector(const tensor& t) {
  detail::check_eigen_access(t, eigen_dtype_of<T>, 1, "map_vector");
  return eigen_vector_map<T>(detail::eigen_data<T>(t), t.shape()[0],
                             Eigen::InnerStride<Eigen::Dynamic>(t.strides()[0]));
}

// A copy of a 1-D tensor into a vector type or of a 2-D tensor into a matrix type M (Matrix or
// Array, fixed or dynamic, either storage order): to_eigen<Eigen::Matrix3f>(t).
template <class M>
requires detail::eigen_plain<M> M to_eigen(const tensor& t) {
  using T = typename M::Scalar;
  static_assert(detail::eigen_element<T>, "pthio::to_eigen: no pthio dtype for this Eigen scalar");
  auto bad_size = [&] {
    return error(errc::invalid_argument,
                 "to_eigen: shape " + shape_string(t.shape()) + " does not fit a " +
                     std::to_string(M::RowsAtCompileTime) + "x" +
                     std::to_string(M::ColsAtCompileTime) + " Eigen type (-1: dynamic)");
  };
  M r;
  if constexpr (M::IsVectorAtCompileTime) {
    if (t.dim() == 1) {
      auto v = map_vector<T>(t);
      if (M::SizeAtCompileTime != Eigen::Dynamic && M::SizeAtCompileTime != v.size())
        throw bad_size();
      r.resize(v.size());
      if constexpr (M::ColsAtCompileTime == 1)
        r.matrix() = v;
      else
        r.matrix() = v.transpose();
      return r;
    }
  }
  auto m = map_matrix<T>(t);
  if ((M::RowsAtCompileTime != Eigen::Dynamic && M::RowsAtCompileTime != m.rows()) ||
      (M::ColsAtCompileTime != Eigen::Dynamic && M::ColsAtCompileTime != m.cols()))
    throw bad_size();
  r.resize(m.rows(), m.cols());
  r.matrix() = m;
  return r;
}

// A copy of a 2-D tensor as a dynamic-size matrix of T in storage order Order:
// to_eigen<float, Eigen::ColMajor>(t).
template <class T, int Order = Eigen::RowMajor>
requires detail::eigen_element<T> Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Order> to_eigen(
    const tensor& t) {
  return to_eigen<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Order>>(t);
}

// A new CPU tensor holding a copy of any Eigen expression (see the header comment for shapes
// and strides): from_eigen(m), from_eigen<Eigen::ColMajor>(m).
template <int Order = Eigen::RowMajor, class Derived>
tensor from_eigen(const Eigen::DenseBase<Derived>& m) {
  using T = typename Derived::Scalar;
  static_assert(detail::eigen_element<T>,
                "pthio::from_eigen: no pthio dtype for this Eigen scalar");
  const auto& e = m.derived();
  auto as_matrix = [](const auto& x) -> decltype(auto) {
    if constexpr (std::is_base_of_v<Eigen::ArrayBase<std::decay_t<decltype(x)>>,
                                    std::decay_t<decltype(x)>>)
      return x.matrix();
    else
      return (x);
  };
  if constexpr (Derived::IsVectorAtCompileTime) {
    tensor r = tensor::zeros(eigen_dtype_of<T>, {static_cast<std::int64_t>(e.size())});
    auto v = map_vector<T>(r);
    if constexpr (Derived::ColsAtCompileTime == 1)
      v = as_matrix(e);
    else
      v = as_matrix(e).transpose();
    return r;
  } else {
    const std::int64_t rows = e.rows(), cols = e.cols();
    tensor r = tensor::zeros(eigen_dtype_of<T>, {rows, cols});
    if constexpr (Order == Eigen::ColMajor)
      r = r.as_strided({rows, cols}, {1, std::max<std::int64_t>(rows, 1)}, 0);
    map_matrix<T, Order>(r) = as_matrix(e);
    return r;
  }
}

}  // namespace pthio
