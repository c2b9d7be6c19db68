#include "pyrnn/layers.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <vector>

#include "pyrnn/aligned.h"
#include "pyrnn/error.h"
#include "pyrnn/kernels/gemm.h"
#include "pyrnn/kernels/norm_rows.h"
#include "pyrnn/kernels/ops.h"
#include "pyrnn/runtime.h"
#include "pyrnn/train_checks.h"
#include "team.h"

namespace pyrnn {

using kernels::gemm;
using kernels::Trans;
using namespace detail;  // the argument checks (pyrnn/train_checks.h)

namespace {

// GEMM sizes are int: very tall inputs (M rows) are processed in row blocks of this many.
constexpr std::int64_t kRowBlock = std::int64_t(1) << 30;

// The bias and activation of one row of n outputs, in place. The activation's switch is outside
// the loops (inside, it kept even ReLU scalar), and tanh / sigmoid are the cells' vectorised
// ones through the same table (their error: README, CPU kernels; float64 on the scalar ISA: libm).
template <typename T>
inline void bias_act_row(const kernels::Ops<T>& K, Activation a, T* yr, const T* b, int n) {
  if (b)
    for (int j = 0; j < n; ++j) yr[j] += b[j];
  switch (a) {
    case Activation::ReLU:
      for (int j = 0; j < n; ++j) yr[j] = yr[j] < T(0) ? T(0) : yr[j];  // NaN stays NaN
      break;
    case Activation::Tanh: K.tanh(n, yr, yr); break;
    case Activation::Sigmoid: K.sigmoid(n, yr, yr); break;
    case Activation::None: break;
  }
}

// Threads for a row-wise layer over M rows of D: one below ~64k elements (tens of us on one
// core), where a fork/join costs more than it saves; at most one per row.
inline int row_threads(std::size_t M, int D) {
  if (M * static_cast<std::size_t>(D) < (std::size_t(1) << 16)) return 1;
  return static_cast<int>(std::min<std::size_t>(M, static_cast<std::size_t>(get_num_threads())));
}

// LayerNorm's rows take several passes each (statistics, normalise; backward two sums, then
// dx): threads pay off from half the element count of the one-pass loops (64 x 1000 on 2 threads:
// 110 -> 80 us forward + backward).
inline int norm_threads(std::size_t M, int D) {
  if (M * static_cast<std::size_t>(D) < (std::size_t(1) << 15)) return 1;
  return static_cast<int>(std::min<std::size_t>(M, static_cast<std::size_t>(get_num_threads())));
}

// Derivative written in terms of the activation's output y (no pre-activation is stored).
template <typename T>
inline T act_grad_from_output(Activation a, T y) {
  switch (a) {
    case Activation::ReLU: return y <= T(0) ? T(0) : T(1);  // (NaN: 1, as torch)
    case Activation::Tanh: return T(1) - y * y;
    case Activation::Sigmoid: return y * (T(1) - y);
    case Activation::None: break;
  }
  return T(1);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Dense

template <typename T>
void dense_forward(T* y, const T* x, const T* w, const T* b, std::int64_t M, int in, int out,
                   Activation act) {
  check_dense_forward(M, in, out, act, y, x, w);
  for (std::int64_t m0 = 0; m0 < M; m0 += kRowBlock) {
    const int rows = static_cast<int>(std::min(kRowBlock, M - m0));
    const T* xb = x + static_cast<std::size_t>(m0) * in;  // [rows, in]
    T* yb = y + static_cast<std::size_t>(m0) * out;       // [rows, out]
    // y = x w^T: one GEMM over all rows.
    gemm(Trans::N, Trans::T, rows, out, in, T(1), xb, in, w, in, T(0), yb, out);
  }
  const std::size_t n_rows = static_cast<std::size_t>(M), O = static_cast<std::size_t>(out);
  if (!b && act == Activation::None) return;
  const kernels::Ops<T>& K = kernels::ops<T>();
  for_shares(n_rows, row_threads(n_rows, out), 1, [&](std::size_t m0, std::size_t m1) {
    for (std::size_t m = m0; m < m1; ++m) bias_act_row(K, act, y + m * O, b, out);
  });
}

template <typename T>
void dense_backward(T* dx, T* dw, T* db, const T* dy, const T* y, const T* x, const T* w,
                    std::int64_t M, int in, int out, Activation act) {
  check_dense_backward(M, in, out, act, dx, dw, dy, y, x, w);
  const std::size_t n_rows = static_cast<std::size_t>(M), O = static_cast<std::size_t>(out);
  // dz [M, out]: d pre-activation. With no activation it is dy itself (no copy).
  AlignedBuffer<T> dz_buf(act == Activation::None ? 0 : n_rows * O);
  const T* dz = dy;
  if (act != Activation::None) {
    // ReLU selects, as PyTorch's threshold_backward: 0 where y <= 0 even for an Inf / NaN dy,
    // dy where y is NaN.
    // One loop per activation: with the activation tested inside, ReLU's select compiled to a
    // branch, mispredicted on half the elements (its backward ran 0.9 ms behind tanh's at
    // 256 x 1000).
    const std::size_t n = n_rows * O;
    T* d = dz_buf.data();
    for_shares(n, row_threads(n, 1), 16, [&](std::size_t i0, std::size_t i1) {
      switch (act) {
        case Activation::ReLU:
          for (std::size_t i = i0; i < i1; ++i) {
            const T g = dy[i];  // read unconditionally, so the select needs no branch
            d[i] = y[i] <= T(0) ? T(0) : g;
          }
          break;
        case Activation::Tanh:
          for (std::size_t i = i0; i < i1; ++i)
            d[i] = dy[i] * act_grad_from_output(Activation::Tanh, y[i]);
          break;
        case Activation::Sigmoid:
          for (std::size_t i = i0; i < i1; ++i)
            d[i] = dy[i] * act_grad_from_output(Activation::Sigmoid, y[i]);
          break;
        case Activation::None: break;
      }
    });
    dz = d;
  }
  for (std::int64_t m0 = 0; m0 < M; m0 += kRowBlock) {
    const int rows = static_cast<int>(std::min(kRowBlock, M - m0));
    const T* dzb = dz + static_cast<std::size_t>(m0) * out;  // [rows, out]
    const T* xb = x + static_cast<std::size_t>(m0) * in;     // [rows, in]
    // dw += dz^T x. x is B here: packed for this call only, or the thread would keep a copy of
    // the largest input it ever saw. Over many rows in groups: each group's product into a
    // partial, added to dw once (one float32 C taking every K block's sum lost digits as M
    // grew: 16x PyTorch's error at M = 200k); the extra pass costs < 1% of a group's product.
    constexpr int kGroupRows = 16384;
    if (rows <= kGroupRows) {
      kernels::gemm_b_once(Trans::T, Trans::N, out, in, rows, T(1), dzb, out, xb, in, T(1), dw,
                           in);
    } else {
      AlignedBuffer<T> part(O * static_cast<std::size_t>(in));  // [out, in]
      for (int g0 = 0; g0 < rows; g0 += kGroupRows) {
        const int gr = std::min(kGroupRows, rows - g0);
        kernels::gemm_b_once(Trans::T, Trans::N, out, in, gr, T(1),
                             dzb + static_cast<std::size_t>(g0) * out, out,
                             xb + static_cast<std::size_t>(g0) * in, in, T(0), part.data(), in);
        kernels::add_into(dw, part.data(), part.size());
      }
    }
    // dx = dz w (overwrite).
    if (dx) gemm(Trans::N, Trans::N, rows, in, out, T(1), dzb, out, w, in, T(0),
                 dx + static_cast<std::size_t>(m0) * in, in);
  }
  if (db) {
    // Column sums in double: thousands of rows of float32 would otherwise lose digits. Split by
    // columns (8 doubles, a cache line, at a time), each over the rows in order.
    AlignedBuffer<double> acc(O);  // [out], zeroed
    for_shares(O, row_threads(n_rows, out), 8, [&](std::size_t j0, std::size_t j1) {
      for (std::size_t m = 0; m < n_rows; ++m)
        for (std::size_t j = j0; j < j1; ++j) acc[j] += dz[m * O + j];
    });
    for (std::size_t j = 0; j < O; ++j) db[j] += static_cast<T>(acc[j]);
  }
}

// ---------------------------------------------------------------------------------------------
// LayerNorm

template <typename T>
void layernorm_forward(T* y, double* mean, double* rstd, const T* x, const T* w, const T* b,
                       std::int64_t M, int D, double eps, T* x_keep) {
  check_layernorm_forward(M, D, eps, y, mean, rstd, x, w, b, x_keep, sizeof(T));
  const kernels::NormRows<T>& R = kernels::norm_rows<T>();
  const std::size_t n_rows = static_cast<std::size_t>(M);
  for_shares(n_rows, norm_threads(n_rows, D), 1, [&](std::size_t m0, std::size_t m1) {
    R.forward(m0, m1, D, eps, x, w, b, y, mean, rstd, x_keep);
  });
}

template <typename T>
void layernorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const double* mean,
                        const double* rstd, const T* w, std::int64_t M, int D) {
  check_layer_sizes("layernorm_backward", M, D, 1);
  check_given("layernorm_backward", {{"dw", dw}, {"db", db}});
  if (M > 0)
    check_given("layernorm_backward", {{"dx", dx}, {"dy", dy}, {"x", x}, {"mean", mean},
                                       {"rstd", rstd}, {"w", w}});
  const kernels::NormRows<T>& R = kernels::norm_rows<T>();
  const std::size_t n_rows = static_cast<std::size_t>(M), Dz = static_cast<std::size_t>(D);
  // [D] each, rows in order per column; cache-line aligned, so a team's column split (8
  // doubles a line) shares no line.
  AlignedBuffer<double> dw_acc(Dz), db_acc(Dz);
  const int nth = norm_threads(n_rows, D);
  if (nth == 1) {
    R.backward(0, n_rows, D, dy, x, mean, rstd, w, dx, dw_acc.data(), db_acc.data());
  } else {
    // The parameter sums by columns, each still over the rows in order (the same bits as one
    // thread's single pass); then dx by rows. In this order dx may alias dy or x, as it may on
    // one thread: every read of a row comes before that row's dx is written.
    const int size = detail::start_team(nth);
#pragma omp parallel num_threads(size)
    {
      const int me = team_member(), parts = sharers(nth);
      TeamWork work;
      const Span c = share(Dz, me, parts, 8);
      R.params(static_cast<int>(c.begin), static_cast<int>(c.end), n_rows, D, dy, x, mean, rstd,
               dw_acc.data(), db_acc.data());
#pragma omp barrier
      const Span r = share(n_rows, me, parts);
      R.backward(r.begin, r.end, D, dy, x, mean, rstd, w, dx, nullptr, nullptr);
    }
  }
  for (std::size_t j = 0; j < Dz; ++j) {
    dw[j] += static_cast<T>(dw_acc[j]);
    db[j] += static_cast<T>(db_acc[j]);
  }
}

// ---------------------------------------------------------------------------------------------
// Embedding

template <typename T>
void embedding_forward(T* y, const std::int64_t* idx, const T* table, std::int64_t M,
                       std::int64_t num, int dim) {
  check_layer_sizes("embedding_forward", M, num, dim);
  check_indices("embedding_forward", idx, M, num);
  if (M > 0) check_given("embedding_forward", {{"y", y}, {"table", table}});
  const std::size_t E = static_cast<std::size_t>(dim), n_rows = static_cast<std::size_t>(M);
  // An index found out of range here (the caller's array may change under us: each is read
  // once, checked again) stops its share and is reported after the team (no exception may
  // leave an OpenMP region): the lowest such position of any share.
  std::atomic<std::size_t> first_bad{n_rows};
  for_shares(n_rows, row_threads(n_rows, dim), 1, [&](std::size_t m0, std::size_t m1) {
    for (std::size_t m = m0; m < m1; ++m) {
      const std::int64_t k = idx[m];
      if (k < 0 || k >= num) {
        std::size_t seen = first_bad.load();
        while (m < seen && !first_bad.compare_exchange_weak(seen, m)) {
        }
        return;
      }
      std::memcpy(y + m * E, table + static_cast<std::size_t>(k) * E, E * sizeof(T));
    }
  });
  const std::size_t bad = first_bad.load();
  if (bad < n_rows) check_index(idx[bad], static_cast<std::int64_t>(bad), num);  // as it is now
  PYRNN_CHECK(bad == n_rows, "embedding_forward: the index at position ", bad,
              " was out of range while it was read (the index array changed during the call)");
}

template <typename T>
void embedding_backward(T* dtable, const T* dy, const std::int64_t* idx, std::int64_t M,
                        std::int64_t num, int dim, std::int64_t padding_idx) {
  check_layer_sizes("embedding_backward", M, num, dim);
  check_indices("embedding_backward", idx, M, num);
  if (M > 0) check_given("embedding_backward", {{"dtable", dtable}, {"dy", dy}});
  const std::size_t E = static_cast<std::size_t>(dim);
  for (std::int64_t m = 0; m < M; ++m) {
    const std::int64_t k = idx[m];  // read once, checked again: the caller's may change
    check_index(k, m, num);
    if (k == padding_idx) continue;
    T* row = dtable + static_cast<std::size_t>(k) * E;
    const T* d = dy + static_cast<std::size_t>(m) * E;
    for (std::size_t j = 0; j < E; ++j) row[j] += d[j];
  }
}

// ---------------------------------------------------------------------------------------------
// Dropout

template <typename T>
void dropout_forward(T* y, const T* x, std::size_t n, std::uint64_t seed, double p) {
  PYRNN_CHECK(p >= 0.0 && p <= 1.0, "dropout_forward: p must be in [0, 1], got ", p);
  if (n > 0) check_given("dropout_forward", {{"y", y}, {"x", x}});
  const T scale = dropout_scale<T>(p);
  // Each element's mask depends on (seed, i) only: any split gives the same bits.
  for_shares(n, row_threads(n, 1), 16, [&](std::size_t i0, std::size_t i1) {
    for (std::size_t i = i0; i < i1; ++i) y[i] = x[i] * dropout_multiplier<T>(seed, i, p, scale);
  });
}

template <typename T>
void dropout_backward(T* dx, const T* dy, std::size_t n, std::uint64_t seed, double p) {
  PYRNN_CHECK(p >= 0.0 && p <= 1.0, "dropout_backward: p must be in [0, 1], got ", p);
  if (n > 0) check_given("dropout_backward", {{"dx", dx}, {"dy", dy}});
  const T scale = dropout_scale<T>(p);
  for_shares(n, row_threads(n, 1), 16, [&](std::size_t i0, std::size_t i1) {
    for (std::size_t i = i0; i < i1; ++i) dx[i] = dy[i] * dropout_multiplier<T>(seed, i, p, scale);
  });
}

// ---------------------------------------------------------------------------------------------
// LastStep

namespace {
}  // namespace

template <typename T>
void last_step_forward(T* y, const T* x, const std::int64_t* lengths, int N, int T_, int H, int D) {
  check_last_step("last_step_forward", lengths, N, T_, H, D);
  check_given("last_step_forward", {{"y", y}, {"x", x}});
  const std::size_t W = static_cast<std::size_t>(D) * H, Ts = T_;
  for (std::size_t n = 0; n < static_cast<std::size_t>(N); ++n) {
    const std::int64_t len = lengths ? lengths[n] : T_;  // read once, checked again
    PYRNN_CHECK(len >= 1 && len <= T_, "last_step_forward: lengths[", n, "] = ", len,
                " is outside [1, ", T_, "] (changed during the call)");
    const std::size_t last = static_cast<std::size_t>(len - 1);
    const T* fwd = x + (n * Ts + last) * W;  // [W] step len-1
    const T* rev = x + n * Ts * W;           // [W] step 0
    T* yr = y + n * W;                       // [W]
    for (std::size_t c = 0; c < W; ++c) yr[c] = c < static_cast<std::size_t>(H) ? fwd[c] : rev[c];
  }
}

template <typename T>
void last_step_backward(T* dx, const T* dy, const std::int64_t* lengths, int N, int T_, int H,
                        int D) {
  check_last_step("last_step_backward", lengths, N, T_, H, D);
  check_given("last_step_backward", {{"dx", dx}, {"dy", dy}});
  const std::size_t W = static_cast<std::size_t>(D) * H, Ts = T_;
  std::memset(dx, 0, static_cast<std::size_t>(N) * Ts * W * sizeof(T));
  for (std::size_t n = 0; n < static_cast<std::size_t>(N); ++n) {
    const std::int64_t len = lengths ? lengths[n] : T_;  // read once, checked again
    PYRNN_CHECK(len >= 1 && len <= T_, "last_step_backward: lengths[", n, "] = ", len,
                " is outside [1, ", T_, "] (changed during the call)");
    const std::size_t last = static_cast<std::size_t>(len - 1);
    const T* dyr = dy + n * W;
    for (std::size_t c = 0; c < W; ++c) {
      const std::size_t t = c < static_cast<std::size_t>(H) ? last : 0;
      dx[(n * Ts + t) * W + c] = dyr[c];
    }
  }
}

#define PYRNN_INSTANTIATE_LAYERS(T)                                                            \
  template void dense_forward<T>(T*, const T*, const T*, const T*, std::int64_t, int, int,     \
                                 Activation);                                                  \
  template void dense_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,          \
                                  std::int64_t, int, int, Activation);                         \
  template void layernorm_forward<T>(T*, double*, double*, const T*, const T*, const T*,       \
                                     std::int64_t, int, double, T*);                           \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const double*,           \
                                      const double*, const T*, std::int64_t, int);             \
  template void embedding_forward<T>(T*, const std::int64_t*, const T*, std::int64_t,          \
                                     std::int64_t, int);                                       \
  template void embedding_backward<T>(T*, const T*, const std::int64_t*, std::int64_t,         \
                                      std::int64_t, int, std::int64_t);                         \
  template void dropout_forward<T>(T*, const T*, std::size_t, std::uint64_t, double);          \
  template void dropout_backward<T>(T*, const T*, std::size_t, std::uint64_t, double);         \
  template void last_step_forward<T>(T*, const T*, const std::int64_t*, int, int, int, int);   \
  template void last_step_backward<T>(T*, const T*, const std::int64_t*, int, int, int, int);

PYRNN_INSTANTIATE_LAYERS(float)
PYRNN_INSTANTIATE_LAYERS(double)
#undef PYRNN_INSTANTIATE_LAYERS

}  // namespace pyrnn
