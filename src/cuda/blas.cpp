// cuBLAS: gemm and gemv over 2-D device tensors (float32, or float16/bfloat16 with float
// accumulation).
//
// cuBLAS is column-major. A row-major [r, c] view with leading stride ld is, to cuBLAS, the
// column-major [c, r] matrix with the same ld: its transpose. So each operand is described by its
// column-major layout (rows, cols, ld, transposed-or-not), and a row-major result C is computed as
// C^T = B^T A^T.
#include <cublas_v2.h>

#include <mutex>
#include <vector>

#include "cuda_internal.h"
#include "pthio/cuda.hpp"

namespace pthio::cuda {

namespace {

using detail::cuda::device_guard;

[[noreturn]] void bad(const char* fn, const std::string& why) {
  throw error(errc::invalid_argument, std::string(fn) + ": " + why);
}

void check_blas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    (void)cudaGetLastError();
    throw error(errc::cuda, std::string(what) + ": " + cublasGetStatusString(s) + " (" +
                                cublasGetStatusName(s) + ")");
  }
}

// One handle per device, shared by all threads (cuBLAS allows this while its settings are left
// alone); created on first use and never destroyed: destroying it after the runtime's teardown at
// exit is undefined.
cublasHandle_t handle_for(int index) {
  static std::mutex m;
  static std::vector<cublasHandle_t>* handles = new std::vector<cublasHandle_t>;
  std::lock_guard<std::mutex> lk(m);
  if (handles->size() <= static_cast<std::size_t>(index))
    handles->resize(static_cast<std::size_t>(index) + 1, nullptr);
  auto& h = (*handles)[static_cast<std::size_t>(index)];
  if (!h) {
    device_guard guard(index);
    check_blas(cublasCreate(&h), "cublasCreate");
    check_blas(cublasSetStream(h, cudaStreamLegacy), "cublasSetStream");
  }
  return h;
}

// A 2-D operand as cuBLAS sees it: the column-major matrix at `data` with leading dimension ld,
// which is the operand itself (transposed == false) or its transpose.
struct operand {
  const std::byte* data = nullptr;
  std::int64_t rows = 0, cols = 0;  // of the operand as given (row-major shape)
  std::int64_t ld = 1;
  bool transposed =
      false;  // true: memory holds the operand row-major, i.e. its transpose column-major
};

operand describe(const tensor& t, const char* fn, const char* name) {
  if (t.dim() != 2)
    bad(fn, std::string(name) + " must be 2-D, got shape " + shape_string(t.shape()));
  operand o;
  o.data = t.raw_data();
  o.rows = t.shape()[0];
  o.cols = t.shape()[1];
  // A stride along an extent of 0 or 1 is never followed, so any value fits there.
  const bool one_row = o.rows <= 1, one_col = o.cols <= 1;
  const std::int64_t s0 = t.strides()[0], s1 = t.strides()[1];
  if ((one_col || s1 == 1) && (one_row || s0 >= std::max<std::int64_t>(o.cols, 1))) {
    o.transposed = true;  // row-major
    o.ld = one_row ? std::max<std::int64_t>(o.cols, 1) : s0;
  } else if ((one_row || s0 == 1) && (one_col || s1 >= std::max<std::int64_t>(o.rows, 1))) {
    o.transposed = false;  // column-major
    o.ld = one_col ? std::max<std::int64_t>(o.rows, 1) : s1;
  } else {
    bad(fn, std::string(name) +
                " needs a unit stride in one dimension and a leading stride covering the other "
                "(shape " +
                shape_string(t.shape()) + ", stride " + shape_string(t.strides()) + "); pass " +
                name + ".contiguous()");
  }
  return o;
}

cudaDataType_t data_type(dtype t) {
  switch (t) {
    case dtype::float32: return CUDA_R_32F;
    case dtype::float16: return CUDA_R_16F;
    case dtype::bfloat16: return CUDA_R_16BF;
    default: return CUDA_R_32F;
  }
}

bool overlaps(const tensor& a, const tensor& b) {
  if (a.numel() == 0 || b.numel() == 0 || !a.get_storage().same(b.get_storage())) return false;
  auto span = [](const tensor& t) {
    std::int64_t last = t.storage_offset();
    for (std::size_t d = 0; d < t.shape().size(); ++d) last += (t.shape()[d] - 1) * t.strides()[d];
    return std::pair<std::int64_t, std::int64_t>(
        t.storage_offset() * static_cast<std::int64_t>(t.element_size()),
        (last + 1) * static_cast<std::int64_t>(t.element_size()));
  };
  auto [a0, a1] = span(a);
  auto [b0, b1] = span(b);
  return a0 < b1 && b0 < a1;
}

int int_arg(std::int64_t v, const char* fn, const char* what) {
  if (v > INT32_MAX)
    bad(fn, std::string(what) + " " + std::to_string(v) + " exceeds cuBLAS's 32-bit limit");
  return static_cast<int>(v);
}

// c = alpha * a * b + beta * c on validated operands.
void run_gemm(const char* fn, const tensor& ta, const tensor& tb, tensor& tc, float alpha,
              float beta) {
  for (const tensor* t : {&ta, &tb, static_cast<const tensor*>(&tc)})
    if (!t->defined()) bad(fn, "undefined tensor");
  const device& dev = ta.dev();
  if (!dev.is_cuda() || !(tb.dev() == dev) || !(tc.dev() == dev))
    bad(fn, "all operands must be on one CUDA device (got " + ta.dev().str() + ", " +
                tb.dev().str() + ", " + tc.dev().str() + ")");
  const dtype in = ta.dtype();
  if (in != dtype::float32 && in != dtype::float16 && in != dtype::bfloat16)
    bad(fn, "inputs must be float32, float16 or bfloat16, not " + std::string(dtype_name(in)));
  if (tb.dtype() != in)
    bad(fn, "inputs have different dtypes (" + std::string(dtype_name(in)) + " and " +
                std::string(dtype_name(tb.dtype())) + ")");
  if (tc.dtype() != in && tc.dtype() != dtype::float32)
    bad(fn, "the result must be " + std::string(dtype_name(in)) + " or float32, not " +
                std::string(dtype_name(tc.dtype())));
  operand a = describe(ta, fn, "a"), b = describe(tb, fn, "b"), c = describe(tc, fn, "c");
  if (a.cols != b.rows || c.rows != a.rows || c.cols != b.cols)
    throw error(errc::mismatch, std::string(fn) + ": shapes " + shape_string(ta.shape()) + " x " +
                                    shape_string(tb.shape()) + " -> " + shape_string(tc.shape()) +
                                    " do not agree");
  if (overlaps(tc, ta) || overlaps(tc, tb)) bad(fn, "the result overlaps an input");
  const std::int64_t m = a.rows, n = b.cols, k = a.cols;
  if (m == 0 || n == 0) return;
  const int index = detail::cuda::device_index(dev);
  cublasHandle_t h = handle_for(index);
  device_guard guard(index);
  // Column-major C: C = op(A) op(B). Row-major C (its memory is C^T column-major): C^T = op(B)^T
  // op(A)^T.
  const operand *x = &a, *y = &b;
  std::int64_t rows = m, cols = n;
  bool flip = c.transposed;
  if (flip) {
    std::swap(x, y);
    std::swap(rows, cols);
  }
  // Operand x must act as a [rows, k] matrix, y as [k, cols]. With flip, x = B, wanted as B^T: its
  // memory already is B^T column-major when B is row-major (transposed), so no op is needed then.
  const cublasOperation_t opx = (x->transposed != flip) ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t opy = (y->transposed != flip) ? CUBLAS_OP_T : CUBLAS_OP_N;
  check_blas(
      cublasGemmEx(h, opx, opy, int_arg(rows, fn, "m"), int_arg(cols, fn, "n"), int_arg(k, fn, "k"),
                   &alpha, x->data, data_type(in), int_arg(x->ld, fn, "lda"), y->data,
                   data_type(in), int_arg(y->ld, fn, "ldb"), &beta, const_cast<std::byte*>(c.data),
                   data_type(tc.dtype()), int_arg(c.ld, fn, "ldc"), CUBLAS_COMPUTE_32F,
                   CUBLAS_GEMM_DEFAULT),
      fn);
}

}  // namespace

void gemm(const tensor& a, const tensor& b, tensor& c, float alpha, float beta) {
  run_gemm("cuda::gemm", a, b, c, alpha, beta);
}

void gemv(const tensor& a, const tensor& x, tensor& y, float alpha, float beta) {
  const char* fn = "cuda::gemv";
  if (x.dim() != 1 || y.dim() != 1)
    bad(fn, "x and y must be 1-D (got " + shape_string(x.shape()) + " and " +
                shape_string(y.shape()) + ")");
  // y^T [1, m] = x^T [1, n] · a^T: the vectors as one-row matrices whose column stride is theirs.
  tensor xr = x.as_strided({1, x.shape()[0]}, {1, x.strides()[0]}, x.storage_offset());
  tensor yr = y.as_strided({1, y.shape()[0]}, {1, y.strides()[0]}, y.storage_offset());
  if (a.dim() != 2) bad(fn, "a must be 2-D, got shape " + shape_string(a.shape()));
  tensor at = a.transpose(0, 1);
  run_gemm(fn, xr, at, yr, alpha, beta);
}

}  // namespace pthio::cuda
