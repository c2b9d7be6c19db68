// Launchers of the training stack's kernels (internal header): layers.cu and optim.cu orchestrate
// with these; train_kernels.cu implements them on the GPU, and the host emulation
// (cuda/tests/emu/emu_train_kernels.cpp) runs the same per-element bodies in loops. Each launcher
// queues one kernel on `stream` (asynchronous) and checks the launch. Sizes of 0 launch nothing.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "optim_elems.cuh"

namespace pyrnn {
namespace cuda {
namespace detail {

// ---- layers (bodies in train_elems.cuh) -----------------------------------------------------
// y [M, out] = act(y + b) (b [out] or null); one thread per element.
template <typename T>
void dense_epilogue(T* y, const T* b, std::size_t M, int out, int act, cudaStream_t stream);
// dz [n] = dy * act'(y).
template <typename T>
void dense_dz(T* dz, const T* dy, const T* y, std::size_t n, int act, cudaStream_t stream);
// out [cols] += column sums of a [rows, cols]: one owner thread per column, rows in order, double.
template <typename T>
void column_sums_add(T* out, const T* a, std::size_t rows, int cols, cudaStream_t stream);
// One warp per row of x [M, D]: mean / rstd [M] (two passes in double, fixed shuffle tree,
// kept in double), y; x_keep (nullable) a copy of x made in the first pass.
template <typename T>
void layernorm_rows_forward(T* y, double* mean, double* rstd, const T* x, const T* w,
                            const T* b, std::size_t M, int D, double eps, T* x_keep,
                            cudaStream_t stream);
// One warp per row: dx [M, D] from dy, x, mean, rstd, w.
template <typename T>
void layernorm_rows_backward(T* dx, const T* dy, const T* x, const double* mean,
                             const double* rstd, const T* w, std::size_t M, int D,
                             cudaStream_t stream);
// dw, db [D] += per-column sums (one owner per column, rows in order, double).
template <typename T>
void layernorm_params_backward(T* dw, T* db, const T* dy, const T* x, const double* mean,
                               const double* rstd, std::size_t M, int D, cudaStream_t stream);
// y [M, dim] = table rows at idx [M] (device, validated).
template <typename T>
void embedding_gather(T* y, const std::int64_t* idx, const T* table, std::size_t M, int dim,
                      cudaStream_t stream);
// dtable rows[u] += dy rows order[starts[u] .. starts[u+1]) for u < U: one owner per (u, column).
template <typename T>
void embedding_owned_add(T* dtable, const T* dy, const std::int64_t* rows,
                         const std::int64_t* starts, const std::int64_t* order, std::size_t U,
                         int dim, cudaStream_t stream);
// y [n] = x [n] * dropout_multiplier(seed, i, p, scale).
template <typename T>
void dropout_apply(T* y, const T* x, std::size_t n, std::uint64_t seed, double p, T scale,
                   cudaStream_t stream);
// y [N, W] gathered from x [N, T, W] / dx [N, T, W] scattered from dy [N, W]; lengths device [N]
// or null.
template <typename T>
void last_step_gather(T* y, const T* x, const std::int64_t* lengths, int N, int T_, int W, int H,
                      cudaStream_t stream);
template <typename T>
void last_step_scatter(T* dx, const T* dy, const std::int64_t* lengths, int N, int T_, int W,
                       int H, cudaStream_t stream);

// ---- optimizers (bodies in optim_elems.cuh) -------------------------------------------------
// bad: one device word, zero before the launch; the NonFinite bits of what was written are ORed
// into it (pyrnn/optim.h).
template <typename T>
void sgd_update(T* param, const T* grad, T* buf, std::size_t n, SgdCoef<T> c, StepKeep<T> k,
                unsigned* bad, cudaStream_t stream);
template <typename T>
void adam_update(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq,
                 std::size_t n, AdamCoef<T> c, StepKeep<T> k, unsigned* bad, cudaStream_t stream);
template <typename T>
void rmsprop_update(T* param, const T* grad, T* square_avg, T* grad_avg, T* buf, std::size_t n,
                    RmspropCoef<T> c, StepKeep<T> k, unsigned* bad, cudaStream_t stream);
// Fixed-shape reductions: `blocks` blocks of kReduceThreads threads; thread g (= block *
// kReduceThreads + lane) reduces x[g], x[g + stride], ... (stride = blocks * kReduceThreads) in
// order, then each block folds its threads by the tree s = 128, 64, ..., 1 (lane += lane + s),
// and partials[block] gets the result. The caller folds the partials in block order.
constexpr unsigned kReduceThreads = 256;
constexpr unsigned kReduceMaxBlocks = 256;
inline unsigned reduce_blocks(std::size_t n) {
  const std::size_t b = (n + kReduceThreads - 1) / kReduceThreads;
  return static_cast<unsigned>(b < 1 ? 1 : b > kReduceMaxBlocks ? kReduceMaxBlocks : b);
}
template <typename T>
void sum_squares_partials(double* partials, const T* x, std::size_t n, unsigned blocks,
                          cudaStream_t stream);
template <typename T>
void max_abs_partials(double* partials, const T* x, std::size_t n, unsigned blocks,
                      cudaStream_t stream);
// x [n] *= s.
template <typename T>
void scale_elems(T* x, std::size_t n, T s, cudaStream_t stream);

// The explicit instantiations, for the CUDA sources and the host emulation alike (one list).
#define PYRNN_TRAIN_KERNELS_INSTANTIATE(T)                                                         \
  template void dense_epilogue<T>(T*, const T*, std::size_t, int, int, cudaStream_t);              \
  template void dense_dz<T>(T*, const T*, const T*, std::size_t, int, cudaStream_t);               \
  template void column_sums_add<T>(T*, const T*, std::size_t, int, cudaStream_t);                  \
  template void layernorm_rows_forward<T>(T*, double*, double*, const T*, const T*, const T*,      \
                                          std::size_t, int, double, T*, cudaStream_t);             \
  template void layernorm_rows_backward<T>(T*, const T*, const T*, const double*, const double*,   \
                                           const T*, std::size_t, int, cudaStream_t);              \
  template void layernorm_params_backward<T>(T*, T*, const T*, const T*, const double*,            \
                                             const double*, std::size_t, int, cudaStream_t);       \
  template void embedding_gather<T>(T*, const std::int64_t*, const T*, std::size_t, int,           \
                                    cudaStream_t);                                                 \
  template void embedding_owned_add<T>(T*, const T*, const std::int64_t*, const std::int64_t*,     \
                                       const std::int64_t*, std::size_t, int, cudaStream_t);       \
  template void dropout_apply<T>(T*, const T*, std::size_t, std::uint64_t, double, T,              \
                                 cudaStream_t);                                                    \
  template void last_step_gather<T>(T*, const T*, const std::int64_t*, int, int, int, int,         \
                                    cudaStream_t);                                                 \
  template void last_step_scatter<T>(T*, const T*, const std::int64_t*, int, int, int, int,        \
                                     cudaStream_t);                                                \
  template void sgd_update<T>(T*, const T*, T*, std::size_t, SgdCoef<T>, StepKeep<T>, unsigned*,   \
                              cudaStream_t);                                                       \
  template void adam_update<T>(T*, const T*, T*, T*, T*, std::size_t, AdamCoef<T>, StepKeep<T>,    \
                               unsigned*, cudaStream_t);                                           \
  template void rmsprop_update<T>(T*, const T*, T*, T*, T*, std::size_t, RmspropCoef<T>,           \
                                  StepKeep<T>, unsigned*, cudaStream_t);                           \
  template void sum_squares_partials<T>(double*, const T*, std::size_t, unsigned, cudaStream_t);   \
  template void max_abs_partials<T>(double*, const T*, std::size_t, unsigned, cudaStream_t);       \
  template void scale_elems<T>(T*, std::size_t, T, cudaStream_t);

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn
