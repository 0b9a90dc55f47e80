// Adafactor's update of factored float32 matrices, applied to the parameters in place, as
// one XLA FFI custom call for all of them. Built and loaded by flan_jax/cpu_adafactor.py.
//
// Per [rows, cols] matrix g (gradient), p (parameter), with second-moment statistics a
// (one per row) and b (one per column), decay d, learning rate r (optax.adafactor without
// momentum; flan_jax/optimizers.py has the same arithmetic in JAX):
//   a_i = d a_i + (1 - d) (mean_j g_ij^2 + eps)     b_j = d b_j + (1 - d) (mean_i g_ij^2 + eps)
//   u_ij = g_ij sqrt(m / (a_i b_j)), m = the mean of whichever of a, b is the smaller axis's
//   step = r / max(1, rms(u) / clipping_threshold) * max(rms(p), 1e-3)
//   p_ij -= step u_ij
// Pass one reads g and p once: row sums give a_i at the end of each row, so the column sums
// of g^2 and of g^2 / a_i (from which rms(u) follows once b is known) build up alongside.
// Pass two writes p, skipping the rows whose gradient is zero when p is updated in place
// (most of the embedding's: its gradient has rows only for the batch's tokens). Both passes
// over a matrix run before the next matrix's, split into row chunks across XLA's threads.
// The sum of g^2 of each matrix comes back too, for the gradient norm.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "parallel_for.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using flan_jax::ParallelFor;
using Scalar = ffi::Buffer<ffi::F32, 0>;
using Matrix = ffi::Buffer<ffi::F32, 2>;
using Vector = ffi::Buffer<ffi::F32, 1>;

constexpr float kEpsilon = 1e-30f;      // optax.adafactor's, added to g^2
constexpr double kMinParamRms = 1e-3;   // optax.scale_by_param_block_rms's min_scale
constexpr int kLanes = 16;              // independent sums, so that the loops vectorise
constexpr int64_t kMinChunkRows = 16;

#if defined(__x86_64__)
#define FLAN_JAX_VECTORISED __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FLAN_JAX_VECTORISED
#endif

FLAN_JAX_VECTORISED float SumOfSquares(const float* x, int64_t n) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += x[i + l] * x[i + l];
  for (; i < n; ++i) lanes[0] += x[i] * x[i];
  float sum = 0;
  for (float lane : lanes) sum += lane;
  return sum;
}

bool AllZero(const float* x, int64_t n) {
  return std::all_of(x, x + n, [](float v) { return v == 0; });
}

// squares[j] += g[j]^2; weighted[j] += g[j]^2 * row_weight.
FLAN_JAX_VECTORISED void AddSquares(const float* __restrict g, float row_weight,
                                    float* __restrict squares, float* __restrict weighted,
                                    int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float sq = g[j] * g[j];
    squares[j] += sq;
    weighted[j] += sq * row_weight;
  }
}

// out[j] = p[j] + row_scale * col_scale[j] * g[j]; out may be p.
FLAN_JAX_VECTORISED void Step(const float* g, const float* p, float row_scale,
                              const float* col_scale, float* out, int64_t n) {
  for (int64_t j = 0; j < n; ++j) out[j] = p[j] + row_scale * col_scale[j] * g[j];
}

struct Settings {
  float decay, rate, clipping_threshold;  // clipping_threshold <= 0: no clipping
  bool scale_by_param;
};

// A row chunk's sums of p^2, of its rows' a_i and of g^2.
struct ChunkSums {
  double param_squares = 0, row_stats = 0, grad_squares = 0;
};

// Per-chunk partial sums and per-row flags, reused from matrix to matrix.
struct Scratch {
  std::vector<float> squares, weighted, col_scale;
  std::vector<char> zero_rows;
  std::vector<ChunkSums> sums;
};

// Updates one matrix; returns the sum of its g^2.
double UpdateMatrix(ffi::ThreadPool& pool, const Settings& s, Scratch& scratch, int64_t rows,
                    int64_t cols, const float* g, const float* p, const float* a_old,
                    const float* b_old, bool normalize_rows, float* p_new, float* a, float* b) {
  const int64_t chunks =
      std::clamp<int64_t>(rows / kMinChunkRows, 1, 4 * std::max<int64_t>(pool.num_threads(), 1));
  const int64_t block = (rows + chunks - 1) / chunks;
  scratch.squares.assign(chunks * cols, 0.0f);
  scratch.weighted.assign(chunks * cols, 0.0f);
  scratch.col_scale.resize(cols);
  scratch.zero_rows.resize(rows);
  scratch.sums.assign(chunks, ChunkSums{});
  const float keep = s.decay, take = 1.0f - s.decay;
  ParallelFor(pool, chunks, [&](int64_t c) {
    float* squares = scratch.squares.data() + c * cols;
    float* weighted = scratch.weighted.data() + c * cols;
    ChunkSums& sums = scratch.sums[c];
    for (int64_t i = c * block, end = std::min(rows, i + block); i < end; ++i) {
      const float* gi = g + i * cols;
      const float row_squares = SumOfSquares(gi, cols);
      const bool zero_row = row_squares == 0 && AllZero(gi, cols);
      scratch.zero_rows[i] = zero_row;
      sums.grad_squares += row_squares;
      a[i] = keep * a_old[i] + take * (row_squares / cols + kEpsilon);
      sums.row_stats += a[i];
      if (!zero_row) AddSquares(gi, 1.0f / a[i], squares, weighted, cols);
      if (s.scale_by_param) sums.param_squares += SumOfSquares(p + i * cols, cols);
    }
  });
  double a_sum = 0, b_sum = 0, p_squares = 0, weighted_sum = 0, g_squares = 0;
  for (const ChunkSums& sums : scratch.sums) {
    a_sum += sums.row_stats;
    p_squares += sums.param_squares;
    g_squares += sums.grad_squares;
  }
  for (int64_t j = 0; j < cols; ++j) {
    float squares = 0, weighted = 0;
    for (int64_t c = 0; c < chunks; ++c) {
      squares += scratch.squares[c * cols + j];
      weighted += scratch.weighted[c * cols + j];
    }
    b[j] = keep * b_old[j] + take * (squares / rows + kEpsilon);
    b_sum += b[j];
    weighted_sum += weighted / b[j];
    scratch.col_scale[j] = 1.0f / std::sqrt(b[j]);
  }
  const double size = static_cast<double>(rows) * cols;
  const double mean = normalize_rows ? a_sum / rows : b_sum / cols;
  double step = s.rate;
  if (s.clipping_threshold > 0) {
    step /= std::max(1.0, std::sqrt(mean * weighted_sum / size) / s.clipping_threshold);
  }
  if (s.scale_by_param) step *= std::max(std::sqrt(p_squares / size), kMinParamRms);
  const float scale = static_cast<float>(-step * std::sqrt(mean));
  const bool in_place = p_new == p;
  ParallelFor(pool, chunks, [&](int64_t c) {
    for (int64_t i = c * block, end = std::min(rows, i + block); i < end; ++i) {
      if (in_place && scratch.zero_rows[i]) continue;  // p + 0 is p
      Step(g + i * cols, p + i * cols, scale / std::sqrt(a[i]), scratch.col_scale.data(),
           p_new + i * cols, cols);
    }
  });
  return g_squares;
}

ffi::Error Error(size_t matrix, const std::string& what) {
  return ffi::Error::InvalidArgument("adafactor: matrix " + std::to_string(matrix) + ": " + what);
}

// Operands: decay, rate, then per matrix (grad, param, a, b). Results: the sum of g^2 of
// each matrix, then per matrix (param, a, b), which the caller aliases to the operands.
ffi::Error Adafactor(ffi::ThreadPool pool, Scalar decay, Scalar rate, ffi::RemainingArgs args,
                     ffi::ResultBuffer<ffi::F32, 1> grad_squares, ffi::RemainingRets rets,
                     ffi::Span<const int64_t> normalize_rows, float clipping_threshold,
                     bool scale_by_param) {
  const size_t matrices = normalize_rows.size();
  if (args.size() != 4 * matrices || rets.size() != 3 * matrices ||
      grad_squares->element_count() != static_cast<int64_t>(matrices)) {
    return ffi::Error::InvalidArgument("adafactor: expected 4 operands and 3 results per matrix");
  }
  const Settings settings{decay.typed_data()[0], rate.typed_data()[0], clipping_threshold,
                          scale_by_param};
  Scratch scratch;
  for (size_t k = 0; k < matrices; ++k) {
    auto g = args.get<Matrix>(4 * k);
    auto p = args.get<Matrix>(4 * k + 1);
    auto a_old = args.get<Vector>(4 * k + 2);
    auto b_old = args.get<Vector>(4 * k + 3);
    auto p_new = rets.get<Matrix>(3 * k);
    auto a = rets.get<Vector>(3 * k + 1);
    auto b = rets.get<Vector>(3 * k + 2);
    if (!g || !p || !a_old || !b_old || !p_new || !a || !b) {
      return Error(k, "operands must be float32 (grad, param) matrices and (row, column) vectors");
    }
    const int64_t rows = g->dimensions()[0], cols = g->dimensions()[1];
    if (p->dimensions()[0] != rows || p->dimensions()[1] != cols ||
        a_old->element_count() != rows || b_old->element_count() != cols) {
      return Error(k, "shapes of the gradient, parameter and statistics disagree");
    }
    grad_squares->typed_data()[k] = static_cast<float>(UpdateMatrix(
        pool, settings, scratch, rows, cols, g->typed_data(), p->typed_data(),
        a_old->typed_data(), b_old->typed_data(), normalize_rows[k] != 0,
        (*p_new)->typed_data(), (*a)->typed_data(), (*b)->typed_data()));
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(FlanJaxAdafactor, Adafactor,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<Scalar>()
                                  .Arg<Scalar>()
                                  .RemainingArgs()
                                  .Ret<Vector>()
                                  .RemainingRets()
                                  .Attr<ffi::Span<const int64_t>>("normalize_rows")
                                  .Attr<float>("clipping_threshold")
                                  .Attr<bool>("scale_by_param"));
