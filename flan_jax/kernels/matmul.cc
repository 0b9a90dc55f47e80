// float32 matrix products for XLA:CPU through MKL, as XLA FFI custom calls.
//
// XLA:CPU's own float32 GEMM runs at about 75% of MKL's rate at flan-t5-small sizes, and
// its batched attention products at about a third. These handlers call MKL's sequential
// cblas_sgemm on XLA's own intra-op thread pool, so no second thread pool competes for
// the cores. Built and loaded by flan_jax/models/cpu_matmul.py.
#include <algorithm>
#include <cstdint>

#include "parallel_for.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using Matrix = ffi::Buffer<ffi::F32, 2>;
using MatrixResult = ffi::ResultBuffer<ffi::F32, 2>;

extern "C" int mkl_disable_fast_mm(void);
extern "C" void cblas_sgemm(int layout, int trans_a, int trans_b, int m, int n, int k,
                            float alpha, const float* a, int lda, const float* b, int ldb,
                            float beta, float* c, int ldc);

namespace {

using flan_jax::ParallelFor;

// MKL's own allocator caches its packing buffers per thread and size and never returns
// them: 0.5 GB more peak memory in a flan-t5-small step at 64/64, 1.3 GB at 256/64. Plain
// malloc costs no measurable time here. It must be switched off before the first MKL call.
const int kFastMmDisabled = mkl_disable_fast_mm();

constexpr int kRowMajor = 101;
int Trans(bool t) { return t ? 112 : 111; }

// c[m, n] = op(a) @ op(b) for 2-D row-major a, b; op transposes when asked. The output is
// split into row blocks (or column blocks when it is wide and short) across the pool.
ffi::Error Matmul(ffi::ThreadPool pool, Matrix a, Matrix b, MatrixResult c, bool trans_a,
                  bool trans_b) {
  const int64_t lda = a.dimensions()[1], ldb = b.dimensions()[1];
  const int64_t m = trans_a ? a.dimensions()[1] : a.dimensions()[0];
  const int64_t k = trans_a ? a.dimensions()[0] : a.dimensions()[1];
  const int64_t n = trans_b ? b.dimensions()[0] : b.dimensions()[1];
  if ((trans_b ? b.dimensions()[1] : b.dimensions()[0]) != k) {
    return ffi::Error::InvalidArgument("cpu_matmul: contracting dimensions differ");
  }
  const bool by_rows = m >= n;
  const int64_t extent = by_rows ? m : n;
  const int64_t chunks = std::clamp<int64_t>(extent / 64, 1, pool.num_threads());
  const int64_t block = (extent + chunks - 1) / chunks;
  const float* ap = a.typed_data();
  const float* bp = b.typed_data();
  float* cp = c->typed_data();
  ParallelFor(pool, chunks, [&](int64_t i) {
    const int64_t lo = i * block, size = std::min(extent, lo + block) - lo;
    if (size <= 0) return;
    if (by_rows) {
      cblas_sgemm(kRowMajor, Trans(trans_a), Trans(trans_b), size, n, k, 1.0f,
                  trans_a ? ap + lo : ap + lo * lda, lda, bp, ldb, 0.0f, cp + lo * n, n);
    } else {
      cblas_sgemm(kRowMajor, Trans(trans_a), Trans(trans_b), m, size, k, 1.0f, ap, lda,
                  trans_b ? bp + lo * ldb : bp + lo, ldb, 0.0f, cp + lo, n);
    }
  });
  return ffi::Error::Success();
}

// Whether the last element of the last [rows, cols] slice lies inside a buffer of `size`.
bool InBounds(int64_t size, int64_t batch, int64_t heads, int64_t batch_stride,
              int64_t head_stride, int64_t ld, int64_t rows, int64_t cols) {
  return cols <= ld &&
         (batch - 1) * batch_stride + (heads - 1) * head_stride + (rows - 1) * ld + cols <= size;
}

// For every (batch, head) pair, c_bh[m, n] = op(a_bh) @ op(b_bh), where operand x_bh starts
// at x + batch * x_batch_stride + head * x_head_stride with leading dimension x_ld. This
// reads per-head slices of [batch, length, heads * d] activations in place: no transposes.
ffi::Error BatchedMatmul(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b,
                         ffi::ResultBuffer<ffi::F32> c, int64_t batch, int64_t heads, int64_t m,
                         int64_t n, int64_t k, bool trans_a, bool trans_b, int64_t a_ld,
                         int64_t a_batch_stride, int64_t a_head_stride, int64_t b_ld,
                         int64_t b_batch_stride, int64_t b_head_stride, int64_t c_ld,
                         int64_t c_batch_stride, int64_t c_head_stride) {
  if (!InBounds(a.element_count(), batch, heads, a_batch_stride, a_head_stride, a_ld,
                trans_a ? k : m, trans_a ? m : k) ||
      !InBounds(b.element_count(), batch, heads, b_batch_stride, b_head_stride, b_ld,
                trans_b ? n : k, trans_b ? k : n) ||
      !InBounds(c->element_count(), batch, heads, c_batch_stride, c_head_stride, c_ld, m, n)) {
    return ffi::Error::InvalidArgument("cpu_matmul: batched strides reach past a buffer");
  }
  const float* ap = a.typed_data();
  const float* bp = b.typed_data();
  float* cp = c->typed_data();
  ParallelFor(pool, batch * heads, [&](int64_t e) {
    const int64_t i = e / heads, j = e % heads;
    cblas_sgemm(kRowMajor, Trans(trans_a), Trans(trans_b), m, n, k, 1.0f,
                ap + i * a_batch_stride + j * a_head_stride, a_ld,
                bp + i * b_batch_stride + j * b_head_stride, b_ld, 0.0f,
                cp + i * c_batch_stride + j * c_head_stride, c_ld);
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(FlanJaxMatmul, Matmul,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<Matrix>()
                                  .Arg<Matrix>()
                                  .Ret<Matrix>()
                                  .Attr<bool>("trans_a")
                                  .Attr<bool>("trans_b"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(FlanJaxBatchedMatmul, BatchedMatmul,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("batch")
                                  .Attr<int64_t>("heads")
                                  .Attr<int64_t>("m")
                                  .Attr<int64_t>("n")
                                  .Attr<int64_t>("k")
                                  .Attr<bool>("trans_a")
                                  .Attr<bool>("trans_b")
                                  .Attr<int64_t>("a_ld")
                                  .Attr<int64_t>("a_batch_stride")
                                  .Attr<int64_t>("a_head_stride")
                                  .Attr<int64_t>("b_ld")
                                  .Attr<int64_t>("b_batch_stride")
                                  .Attr<int64_t>("b_head_stride")
                                  .Attr<int64_t>("c_ld")
                                  .Attr<int64_t>("c_batch_stride")
                                  .Attr<int64_t>("c_head_stride"));
