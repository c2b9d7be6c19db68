// The training stack's kernels (see train_kernels.cuh). Pointwise kernels are grid-stride loops
// over train_elems.cuh / optim_elems.cuh bodies; reductions have shapes fixed by the sizes alone
// and no atomics, so every result is reproducible run to run. Compiled with --fmad=false
// (cuda/CMakeLists.txt) so no multiply-add is fused: each element performs the CPU's operations.
#include <cuda_runtime.h>

#include <algorithm>

#include "optim_elems.cuh"
#include "pyrnn/cuda/check.h"
#include "train_elems.cuh"
#include "grid.cuh"
#include "train_kernels.cuh"

namespace pyrnn {
namespace cuda {
namespace detail {

namespace {

constexpr unsigned kWarpsPerBlock = kThreads / 32;

// Sum over the 32 lanes of a warp by a fixed xor butterfly: every lane ends with the same value
// (a + b == b + a exactly), and the order depends on nothing but the lane layout.
__device__ __forceinline__ double warp_sum(double v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// ---- layers -----------------------------------------------------------------------------------

template <typename T>
__global__ void dense_epilogue_kernel(T* __restrict__ y, const T* __restrict__ b, std::size_t n,
                                      int out, int act) {
  PYRNN_GRID_LOOP(i, n) dense_epilogue_elem<T>(i, y, b, out, act);
}

template <typename T>
__global__ void dense_dz_kernel(T* __restrict__ dz, const T* __restrict__ dy,
                                const T* __restrict__ y, std::size_t n, int act) {
  PYRNN_GRID_LOOP(i, n) dense_dz_elem<T>(i, dz, dy, y, act);
}

template <typename T>
__global__ void column_sums_add_kernel(T* __restrict__ out, const T* __restrict__ a,
                                       std::size_t rows, int cols) {
  PYRNN_GRID_LOOP(j, static_cast<std::size_t>(cols))
  column_sum_add_elem<T>(static_cast<int>(j), out, a, rows, cols);
}

// One warp per row (rows grid-strided, warp-uniform loop: the shuffles see all 32 lanes).
// (No __restrict__ on y and x, nor on dx, dy and x below, nor dropout's y and x: the API
// lets them alias, and restrict would let the compiler read them through the read-only cache.)
template <typename T>
__global__ void layernorm_forward_kernel(T* y, double* __restrict__ mean,
                                         double* __restrict__ rstd, const T* x,
                                         const T* __restrict__ w, const T* __restrict__ b,
                                         std::size_t M, int D, double eps,
                                         T* __restrict__ x_keep) {
  const int lane = threadIdx.x & 31;
  const std::size_t warp = threadIdx.x >> 5;
  for (std::size_t m = blockIdx.x * std::size_t(kWarpsPerBlock) + warp; m < M;
       m += std::size_t(gridDim.x) * kWarpsPerBlock) {
    const T* xr = x + m * D;  // [D]
    // Two passes (mean, then centred squares), as the CPU: no cancellation for large means.
    double s = 0.0;
    if (x_keep) {  // the training cache, in the pass that reads x first (warp-uniform branch)
      T* kr = x_keep + m * D;  // [D]
      for (int j = lane; j < D; j += 32) {
        const T xv = xr[j];
        kr[j] = xv;
        s += xv;
      }
    } else {
      for (int j = lane; j < D; j += 32) s += xr[j];
    }
    const double mu = warp_sum(s) / D;
    double v = 0.0;
    for (int j = lane; j < D; j += 32) {
      const double c = xr[j] - mu;
      v += c * c;
    }
    const double rs = 1.0 / elem_sqrt(warp_sum(v) / D + eps);
    if (lane == 0) {
      mean[m] = mu;
      rstd[m] = rs;
    }
    T* yr = y + m * D;  // [D]
    for (int j = lane; j < D; j += 32) yr[j] = layernorm_y_elem<T>(xr[j], mu, rs, w[j], b[j]);
  }
}

template <typename T>
__global__ void layernorm_backward_kernel(T* dx, const T* dy,
                                          const T* x, const double* __restrict__ mean,
                                          const double* __restrict__ rstd, const T* __restrict__ w,
                                          std::size_t M, int D) {
  const int lane = threadIdx.x & 31;
  const std::size_t warp = threadIdx.x >> 5;
  for (std::size_t m = blockIdx.x * std::size_t(kWarpsPerBlock) + warp; m < M;
       m += std::size_t(gridDim.x) * kWarpsPerBlock) {
    const T* xr = x + m * D;
    const T* dyr = dy + m * D;
    const double mu = mean[m], rs = rstd[m];
    double sg = 0.0, sgx = 0.0;
    for (int j = lane; j < D; j += 32) {
      const double xhat = (xr[j] - mu) * rs;
      const double g = static_cast<double>(dyr[j]) * w[j];
      sg += g;
      sgx += g * xhat;
    }
    sg = warp_sum(sg) / D;
    sgx = warp_sum(sgx) / D;
    T* dxr = dx + m * D;
    for (int j = lane; j < D; j += 32)
      dxr[j] = layernorm_dx_elem<T>(xr[j], dyr[j], w[j], mu, rs, sg, sgx);
  }
}

template <typename T>
__global__ void layernorm_params_kernel(T* __restrict__ dw, T* __restrict__ db,
                                        const T* __restrict__ dy, const T* __restrict__ x,
                                        const double* __restrict__ mean,
                                        const double* __restrict__ rstd, std::size_t M, int D) {
  PYRNN_GRID_LOOP(j, static_cast<std::size_t>(D))
  layernorm_params_elem<T>(static_cast<int>(j), dw, db, dy, x, mean, rstd, M, D);
}

template <typename T>
__global__ void embedding_gather_kernel(T* __restrict__ y, const std::int64_t* __restrict__ idx,
                                        const T* __restrict__ table, std::size_t n, int dim) {
  PYRNN_GRID_LOOP(i, n) embedding_gather_elem<T>(i, y, idx, table, dim);
}

template <typename T>
__global__ void embedding_owned_kernel(T* __restrict__ dtable, const T* __restrict__ dy,
                                       const std::int64_t* __restrict__ rows,
                                       const std::int64_t* __restrict__ starts,
                                       const std::int64_t* __restrict__ order, std::size_t n,
                                       int dim) {
  PYRNN_GRID_LOOP(i, n) embedding_owned_elem<T>(i, dtable, dy, rows, starts, order, dim);
}

template <typename T>
__global__ void dropout_kernel(T* y, const T* x, std::size_t n,
                               std::uint64_t seed, double p, T scale) {
  PYRNN_GRID_LOOP(i, n) dropout_elem<T>(i, y, x, seed, p, scale);
}

template <typename T>
__global__ void last_step_gather_kernel(T* __restrict__ y, const T* __restrict__ x,
                                        const std::int64_t* __restrict__ lengths, std::size_t n,
                                        int T_, int W, int H) {
  PYRNN_GRID_LOOP(i, n) last_step_gather_elem<T>(i, y, x, lengths, T_, W, H);
}

template <typename T>
__global__ void last_step_scatter_kernel(T* __restrict__ dx, const T* __restrict__ dy,
                                         const std::int64_t* __restrict__ lengths, std::size_t n,
                                         int T_, int W, int H) {
  PYRNN_GRID_LOOP(i, n) last_step_scatter_elem<T>(i, dx, dy, lengths, T_, W, H);
}

// ---- optimizers -------------------------------------------------------------------------------

template <typename T>
__global__ void sgd_kernel(T* __restrict__ param, const T* __restrict__ grad, T* __restrict__ buf,
                           std::size_t n, SgdCoef<T> c, StepKeep<T> k, unsigned* bad) {
  unsigned b = 0;
  PYRNN_GRID_LOOP(i, n) b |= sgd_elem<T>(i, param, grad, buf, c, k);
  if (b) atomicOr(bad, b);  // a flag, not a value: the order of the ORs changes nothing
}

template <typename T>
__global__ void adam_kernel(T* __restrict__ param, const T* __restrict__ grad,
                            T* __restrict__ exp_avg, T* __restrict__ exp_avg_sq,
                            T* __restrict__ max_exp_avg_sq, std::size_t n, AdamCoef<T> c,
                            StepKeep<T> k, unsigned* bad) {
  unsigned b = 0;
  PYRNN_GRID_LOOP(i, n) {
    b |= adam_elem<T>(i, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, c, k);
  }
  if (b) atomicOr(bad, b);
}

template <typename T>
__global__ void rmsprop_kernel(T* __restrict__ param, const T* __restrict__ grad,
                               T* __restrict__ square_avg, T* __restrict__ grad_avg,
                               T* __restrict__ buf, std::size_t n, RmspropCoef<T> c,
                               StepKeep<T> k, unsigned* bad) {
  unsigned b = 0;
  PYRNN_GRID_LOOP(i, n) b |= rmsprop_elem<T>(i, param, grad, square_avg, grad_avg, buf, c, k);
  if (b) atomicOr(bad, b);
}

// Fixed-shape block reduction (see train_kernels.cuh): strided per-thread partials, then the tree.
template <typename T, bool kMax>
__global__ void reduce_kernel(double* __restrict__ partials, const T* __restrict__ x,
                              std::size_t n) {
  __shared__ double part[kReduceThreads];
  double acc = 0.0;
  PYRNN_GRID_LOOP(i, n) {
    if (kMax) acc = max_abs_step(acc, fabs(static_cast<double>(x[i])));
    else acc += square_elem<T>(x[i]);
  }
  part[threadIdx.x] = acc;
  __syncthreads();
  for (unsigned s = kReduceThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s)
      part[threadIdx.x] = kMax ? max_abs_step(part[threadIdx.x], part[threadIdx.x + s])
                               : part[threadIdx.x] + part[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[blockIdx.x] = part[0];
}

template <typename T>
__global__ void scale_kernel(T* __restrict__ x, std::size_t n, T s) {
  PYRNN_GRID_LOOP(i, n) x[i] *= s;
}

}  // namespace

#define PYRNN_LAUNCH(kernel, n, ...)                                          \
  do {                                                                        \
    if ((n) == 0) return;                                                     \
    kernel<<<blocks_for(n), kThreads, 0, stream>>>(__VA_ARGS__);                \
    PYRNN_CUDA_CHECK(cudaGetLastError());                                     \
  } while (0)

template <typename T>
void dense_epilogue(T* y, const T* b, std::size_t M, int out, int act, cudaStream_t stream) {
  const std::size_t n = M * static_cast<std::size_t>(out);
  PYRNN_LAUNCH(dense_epilogue_kernel<T>, n, y, b, n, out, act);
}
template <typename T>
void dense_dz(T* dz, const T* dy, const T* y, std::size_t n, int act, cudaStream_t stream) {
  PYRNN_LAUNCH(dense_dz_kernel<T>, n, dz, dy, y, n, act);
}
template <typename T>
void column_sums_add(T* out, const T* a, std::size_t rows, int cols, cudaStream_t stream) {
  const std::size_t n = static_cast<std::size_t>(cols);
  PYRNN_LAUNCH(column_sums_add_kernel<T>, n, out, a, rows, cols);
}
template <typename T>
void layernorm_rows_forward(T* y, double* mean, double* rstd, const T* x, const T* w,
                            const T* b, std::size_t M, int D, double eps, T* x_keep,
                            cudaStream_t stream) {
  if (M == 0) return;
  const unsigned grid =
      static_cast<unsigned>(std::min<std::size_t>((M + kWarpsPerBlock - 1) / kWarpsPerBlock, 65535));
  layernorm_forward_kernel<T><<<grid, kThreads, 0, stream>>>(y, mean, rstd, x, w, b, M, D, eps,
                                                             x_keep);
  PYRNN_CUDA_CHECK(cudaGetLastError());
}
template <typename T>
void layernorm_rows_backward(T* dx, const T* dy, const T* x, const double* mean,
                             const double* rstd, const T* w, std::size_t M, int D,
                             cudaStream_t stream) {
  if (M == 0) return;
  const unsigned grid =
      static_cast<unsigned>(std::min<std::size_t>((M + kWarpsPerBlock - 1) / kWarpsPerBlock, 65535));
  layernorm_backward_kernel<T><<<grid, kThreads, 0, stream>>>(dx, dy, x, mean, rstd, w, M, D);
  PYRNN_CUDA_CHECK(cudaGetLastError());
}
template <typename T>
void layernorm_params_backward(T* dw, T* db, const T* dy, const T* x, const double* mean,
                               const double* rstd, std::size_t M, int D, cudaStream_t stream) {
  const std::size_t n = static_cast<std::size_t>(D);
  PYRNN_LAUNCH(layernorm_params_kernel<T>, n, dw, db, dy, x, mean, rstd, M, D);
}
template <typename T>
void embedding_gather(T* y, const std::int64_t* idx, const T* table, std::size_t M, int dim,
                      cudaStream_t stream) {
  const std::size_t n = M * static_cast<std::size_t>(dim);
  PYRNN_LAUNCH(embedding_gather_kernel<T>, n, y, idx, table, n, dim);
}
template <typename T>
void embedding_owned_add(T* dtable, const T* dy, const std::int64_t* rows,
                         const std::int64_t* starts, const std::int64_t* order, std::size_t U,
                         int dim, cudaStream_t stream) {
  const std::size_t n = U * static_cast<std::size_t>(dim);
  PYRNN_LAUNCH(embedding_owned_kernel<T>, n, dtable, dy, rows, starts, order, n, dim);
}
template <typename T>
void dropout_apply(T* y, const T* x, std::size_t n, std::uint64_t seed, double p, T scale,
                   cudaStream_t stream) {
  PYRNN_LAUNCH(dropout_kernel<T>, n, y, x, n, seed, p, scale);
}
template <typename T>
void last_step_gather(T* y, const T* x, const std::int64_t* lengths, int N, int T_, int W, int H,
                      cudaStream_t stream) {
  const std::size_t n = static_cast<std::size_t>(N) * W;
  PYRNN_LAUNCH(last_step_gather_kernel<T>, n, y, x, lengths, n, T_, W, H);
}
template <typename T>
void last_step_scatter(T* dx, const T* dy, const std::int64_t* lengths, int N, int T_, int W,
                       int H, cudaStream_t stream) {
  const std::size_t n = static_cast<std::size_t>(N) * T_ * W;
  PYRNN_LAUNCH(last_step_scatter_kernel<T>, n, dx, dy, lengths, n, T_, W, H);
}

template <typename T>
void sgd_update(T* param, const T* grad, T* buf, std::size_t n, SgdCoef<T> c, StepKeep<T> k,
                unsigned* bad, cudaStream_t stream) {
  PYRNN_LAUNCH(sgd_kernel<T>, n, param, grad, buf, n, c, k, bad);
}
template <typename T>
void adam_update(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq,
                 std::size_t n, AdamCoef<T> c, StepKeep<T> k, unsigned* bad,
                 cudaStream_t stream) {
  PYRNN_LAUNCH(adam_kernel<T>, n, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, n, c, k, bad);
}
template <typename T>
void rmsprop_update(T* param, const T* grad, T* square_avg, T* grad_avg, T* buf, std::size_t n,
                    RmspropCoef<T> c, StepKeep<T> k, unsigned* bad, cudaStream_t stream) {
  PYRNN_LAUNCH(rmsprop_kernel<T>, n, param, grad, square_avg, grad_avg, buf, n, c, k, bad);
}
template <typename T>
void sum_squares_partials(double* partials, const T* x, std::size_t n, unsigned blocks,
                          cudaStream_t stream) {
  reduce_kernel<T, false><<<blocks, kReduceThreads, 0, stream>>>(partials, x, n);
  PYRNN_CUDA_CHECK(cudaGetLastError());
}
template <typename T>
void max_abs_partials(double* partials, const T* x, std::size_t n, unsigned blocks,
                      cudaStream_t stream) {
  reduce_kernel<T, true><<<blocks, kReduceThreads, 0, stream>>>(partials, x, n);
  PYRNN_CUDA_CHECK(cudaGetLastError());
}
template <typename T>
void scale_elems(T* x, std::size_t n, T s, cudaStream_t stream) {
  PYRNN_LAUNCH(scale_kernel<T>, n, x, n, s);
}

PYRNN_TRAIN_KERNELS_INSTANTIATE(float)
PYRNN_TRAIN_KERNELS_INSTANTIATE(double)

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn
