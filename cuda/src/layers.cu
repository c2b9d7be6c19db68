// cuda layers: mirrors cpp/src/layers.cpp call for call (see pyrnn/cuda/layers.h). Host-side
// validation first (the CPU's checks and messages), then cuBLAS GEMMs and the kernels of
// train_kernels.cuh on the Context's stream, then one synchronize.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/gemm.h"
#include "pyrnn/cuda/layers.h"
#include "pyrnn/error.h"
#include "pyrnn/train_checks.h"
#include "train_common.cuh"
#include "train_kernels.cuh"

namespace pyrnn {
namespace cuda {

using kernels::Trans;
using namespace pyrnn::detail;  // the argument checks (pyrnn/train_checks.h)

namespace {

// GEMM sizes are int: very tall inputs (M rows) are processed in row blocks of this many.
constexpr std::int64_t kRowBlock = std::int64_t(1) << 30;

}  // namespace

// ---------------------------------------------------------------------------------------------
// Dense

template <typename T>
void dense_forward(Context& ctx, T* y, const T* x, const T* w, const T* b, std::int64_t M, int in,
                   int out, Activation act) {
  check_dense_forward(M, in, out, act, y, x, w);
  detail::CallScope scope(ctx);
  for (std::int64_t m0 = 0; m0 < M; m0 += kRowBlock) {
    const int rows = static_cast<int>(std::min(kRowBlock, M - m0));
    const T* xb = x + static_cast<std::size_t>(m0) * in;  // [rows, in]
    T* yb = y + static_cast<std::size_t>(m0) * out;       // [rows, out]
    // y = x w^T: one GEMM over all rows.
    gemm<T>(ctx.cublas(), Trans::N, Trans::T, rows, out, in, T(1), xb, in, w, in, T(0), yb, out);
  }
  // Fused epilogue: y = act(y + b).
  if (b || act != Activation::None)
    detail::dense_epilogue<T>(y, b, static_cast<std::size_t>(M), out, static_cast<int>(act),
                              scope.stream());
  scope.synchronize();
}

template <typename T>
void dense_backward(Context& ctx, T* dx, T* dw, T* db, const T* dy, const T* y, const T* x,
                    const T* w, std::int64_t M, int in, int out, Activation act) {
  check_dense_backward(M, in, out, act, dx, dw, dy, y, x, w);
  detail::CallScope scope(ctx);
  const std::size_t n_rows = static_cast<std::size_t>(M), O = static_cast<std::size_t>(out);
  // dz [M, out]: d pre-activation. With no activation it is dy itself (no copy).
  DeviceBuffer<T> dz_buf(act == Activation::None ? 0 : n_rows * O);
  const T* dz = dy;
  if (act != Activation::None) {
    detail::dense_dz<T>(dz_buf.data(), dy, y, n_rows * O, static_cast<int>(act), scope.stream());
    dz = dz_buf.data();
  }
  for (std::int64_t m0 = 0; m0 < M; m0 += kRowBlock) {
    const int rows = static_cast<int>(std::min(kRowBlock, M - m0));
    const T* dzb = dz + static_cast<std::size_t>(m0) * out;  // [rows, out]
    const T* xb = x + static_cast<std::size_t>(m0) * in;     // [rows, in]
    // dw += dz^T x (accumulate: beta = 1).
    gemm<T>(ctx.cublas(), Trans::T, Trans::N, out, in, rows, T(1), dzb, out, xb, in, T(1), dw, in);
    // dx = dz w (overwrite).
    if (dx)
      gemm<T>(ctx.cublas(), Trans::N, Trans::N, rows, in, out, T(1), dzb, out, w, in, T(0),
              dx + static_cast<std::size_t>(m0) * in, in);
  }
  // db += column sums of dz: one owner per column, rows in order, in double (the CPU's order).
  if (db) detail::column_sums_add<T>(db, dz, n_rows, out, scope.stream());
  scope.synchronize();  // also keeps dz_buf alive until the kernels are done
}

// ---------------------------------------------------------------------------------------------
// LayerNorm

template <typename T>
void layernorm_forward(Context& ctx, T* y, double* mean, double* rstd, const T* x, const T* w,
                       const T* b, std::int64_t M, int D, double eps, T* x_keep) {
  check_layernorm_forward(M, D, eps, y, mean, rstd, x, w, b, x_keep, sizeof(T));
  detail::CallScope scope(ctx);
  detail::layernorm_rows_forward<T>(y, mean, rstd, x, w, b, static_cast<std::size_t>(M), D, eps,
                                    x_keep, scope.stream());
  scope.synchronize();
}

template <typename T>
void layernorm_backward(Context& ctx, T* dx, T* dw, T* db, const T* dy, const T* x,
                        const double* mean, const double* rstd, const T* w, std::int64_t M, int D) {
  check_layer_sizes("layernorm_backward", M, D, 1);
  check_given("layernorm_backward", {{"dw", dw}, {"db", db}});
  if (M > 0)
    check_given("layernorm_backward", {{"dx", dx}, {"dy", dy}, {"x", x}, {"mean", mean},
                                       {"rstd", rstd}, {"w", w}});
  detail::CallScope scope(ctx);
  const std::size_t rows = static_cast<std::size_t>(M);
  // The parameter sums first: dx may alias dy or x (as on the CPU), which the rows' pass
  // overwrites. (One stream: the launches run in this order.)
  detail::layernorm_params_backward<T>(dw, db, dy, x, mean, rstd, rows, D, scope.stream());
  detail::layernorm_rows_backward<T>(dx, dy, x, mean, rstd, w, rows, D, scope.stream());
  scope.synchronize();
}

// ---------------------------------------------------------------------------------------------
// Embedding

namespace {
// The caller's host integers (indices, lengths), read once: another thread may change them
// meanwhile, and what is checked must be what the kernels get. Empty for a null pointer.
std::vector<std::int64_t> read_once(const std::int64_t* p, std::int64_t n) {
  return p && n > 0 ? std::vector<std::int64_t>(p, p + n) : std::vector<std::int64_t>();
}
const std::int64_t* data_or_null(const std::vector<std::int64_t>& v, const std::int64_t* given) {
  return given ? v.data() : nullptr;
}
}  // namespace

template <typename T>
void embedding_forward(Context& ctx, T* y, const std::int64_t* given_idx, const T* table,
                       std::int64_t M, std::int64_t num, int dim) {
  check_layer_sizes("embedding_forward", M, num, dim);
  const std::vector<std::int64_t> ids = read_once(given_idx, M);  // [M]
  const std::int64_t* idx = data_or_null(ids, given_idx);
  check_indices("embedding_forward", idx, M, num);
  if (M > 0) check_given("embedding_forward", {{"y", y}, {"table", table}});
  if (M == 0) return;
  detail::CallScope scope(ctx);
  const std::size_t Ms = static_cast<std::size_t>(M);
  DeviceBuffer<std::int64_t> d_idx = detail::upload(idx, Ms, scope.stream());  // [M]
  detail::embedding_gather<T>(y, d_idx.data(), table, Ms, dim, scope.stream());
  scope.synchronize();
}

// Deterministic without atomics: the host groups the positions by table row (a stable sort of the
// positions by index, padding rows left out), giving for each touched row u its positions in
// ascending order. One GPU thread then owns each (touched row, column) and adds that row's dy
// entries in exactly that order, starting from the accumulated value: the CPU's sequence of
// additions for that element, so the result is bitwise the CPU's. Work is O(M log M) on the host
// for the grouping (the indices are on the host anyway) and O(M * dim) on the GPU.
template <typename T>
void embedding_backward(Context& ctx, T* dtable, const T* dy, const std::int64_t* given_idx,
                        std::int64_t M, std::int64_t num, int dim, std::int64_t padding_idx) {
  check_layer_sizes("embedding_backward", M, num, dim);
  const std::vector<std::int64_t> ids = read_once(given_idx, M);  // [M]
  const std::int64_t* idx = data_or_null(ids, given_idx);
  check_indices("embedding_backward", idx, M, num);
  if (M > 0) check_given("embedding_backward", {{"dtable", dtable}, {"dy", dy}});
  std::vector<std::int64_t> order;  // [<= M] positions grouped by index, ascending within a group
  order.reserve(static_cast<std::size_t>(M));
  for (std::int64_t m = 0; m < M; ++m)
    if (idx[m] != padding_idx) order.push_back(m);
  if (order.empty()) return;
  std::stable_sort(order.begin(), order.end(),
                   [idx](std::int64_t a, std::int64_t b) { return idx[a] < idx[b]; });
  std::vector<std::int64_t> rows, starts;  // [U] touched table rows; [U+1] group offsets
  for (std::size_t k = 0; k < order.size(); ++k)
    if (k == 0 || idx[order[k]] != idx[order[k - 1]]) {
      rows.push_back(idx[order[k]]);
      starts.push_back(static_cast<std::int64_t>(k));
    }
  starts.push_back(static_cast<std::int64_t>(order.size()));
  detail::CallScope scope(ctx);
  DeviceBuffer<std::int64_t> d_order = detail::upload(order.data(), order.size(), scope.stream());
  DeviceBuffer<std::int64_t> d_rows = detail::upload(rows.data(), rows.size(), scope.stream());
  DeviceBuffer<std::int64_t> d_starts = detail::upload(starts.data(), starts.size(), scope.stream());
  detail::embedding_owned_add<T>(dtable, dy, d_rows.data(), d_starts.data(), d_order.data(),
                                 rows.size(), dim, scope.stream());
  scope.synchronize();
}

// ---------------------------------------------------------------------------------------------
// Dropout

template <typename T>
void dropout_forward(Context& ctx, T* y, const T* x, std::size_t n, std::uint64_t seed, double p) {
  PYRNN_CHECK(p >= 0.0 && p <= 1.0, "dropout_forward: p must be in [0, 1], got ", p);
  if (n > 0) check_given("dropout_forward", {{"y", y}, {"x", x}});
  detail::CallScope scope(ctx);
  detail::dropout_apply<T>(y, x, n, seed, p, dropout_scale<T>(p), scope.stream());
  scope.synchronize();
}

template <typename T>
void dropout_backward(Context& ctx, T* dx, const T* dy, std::size_t n, std::uint64_t seed,
                      double p) {
  PYRNN_CHECK(p >= 0.0 && p <= 1.0, "dropout_backward: p must be in [0, 1], got ", p);
  if (n > 0) check_given("dropout_backward", {{"dx", dx}, {"dy", dy}});
  detail::CallScope scope(ctx);
  detail::dropout_apply<T>(dx, dy, n, seed, p, dropout_scale<T>(p), scope.stream());
  scope.synchronize();
}

// ---------------------------------------------------------------------------------------------
// LastStep

template <typename T>
void last_step_forward(Context& ctx, T* y, const T* x, const std::int64_t* given_lengths, int N,
                       int T_, int H, int D) {
  const std::vector<std::int64_t> lens = read_once(given_lengths, N);  // [N]
  const std::int64_t* lengths = data_or_null(lens, given_lengths);
  check_last_step("last_step_forward", lengths, N, T_, H, D);
  check_given("last_step_forward", {{"y", y}, {"x", x}});
  detail::CallScope scope(ctx);
  DeviceBuffer<std::int64_t> d_len;  // [N]
  if (lengths) d_len = detail::upload(lengths, static_cast<std::size_t>(N), scope.stream());
  detail::last_step_gather<T>(y, x, lengths ? d_len.data() : nullptr, N, T_, D * H, H,
                              scope.stream());
  scope.synchronize();
}

template <typename T>
void last_step_backward(Context& ctx, T* dx, const T* dy, const std::int64_t* given_lengths,
                        int N, int T_, int H, int D) {
  const std::vector<std::int64_t> lens = read_once(given_lengths, N);  // [N]
  const std::int64_t* lengths = data_or_null(lens, given_lengths);
  check_last_step("last_step_backward", lengths, N, T_, H, D);
  check_given("last_step_backward", {{"dx", dx}, {"dy", dy}});
  detail::CallScope scope(ctx);
  DeviceBuffer<std::int64_t> d_len;  // [N]
  if (lengths) d_len = detail::upload(lengths, static_cast<std::size_t>(N), scope.stream());
  detail::last_step_scatter<T>(dx, dy, lengths ? d_len.data() : nullptr, N, T_, D * H, H,
                               scope.stream());
  scope.synchronize();
}

#define PYRNN_INSTANTIATE_LAYERS(T)                                                               \
  template void dense_forward<T>(Context&, T*, const T*, const T*, const T*, std::int64_t, int,   \
                                 int, Activation);                                                \
  template void dense_backward<T>(Context&, T*, T*, T*, const T*, const T*, const T*, const T*,   \
                                  std::int64_t, int, int, Activation);                            \
  template void layernorm_forward<T>(Context&, T*, double*, double*, const T*, const T*,          \
                                     const T*, std::int64_t, int, double, T*);                    \
  template void layernorm_backward<T>(Context&, T*, T*, T*, const T*, const T*, const double*,    \
                                      const double*, const T*, std::int64_t, int);                \
  template void embedding_forward<T>(Context&, T*, const std::int64_t*, const T*, std::int64_t,   \
                                     std::int64_t, int);                                          \
  template void embedding_backward<T>(Context&, T*, const T*, const std::int64_t*, std::int64_t,  \
                                      std::int64_t, int, std::int64_t);                           \
  template void dropout_forward<T>(Context&, T*, const T*, std::size_t, std::uint64_t, double);   \
  template void dropout_backward<T>(Context&, T*, const T*, std::size_t, std::uint64_t, double);  \
  template void last_step_forward<T>(Context&, T*, const T*, const std::int64_t*, int, int, int,  \
                                     int);                                                        \
  template void last_step_backward<T>(Context&, T*, const T*, const std::int64_t*, int, int, int, \
                                      int);

PYRNN_INSTANTIATE_LAYERS(float)
PYRNN_INSTANTIATE_LAYERS(double)
#undef PYRNN_INSTANTIATE_LAYERS

}  // namespace cuda
}  // namespace pyrnn
