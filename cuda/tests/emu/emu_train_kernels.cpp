// Host emulation of the training stack's launchers (cuda/src/train_kernels.cuh), so the REAL
// orchestration in layers.cu and optim.cu (compiled as C++, with host_runtime.cpp standing in for
// the CUDA runtime and cuBLAS) runs on the CPU and is checked against pyrnn's CPU layers without
// a GPU. Pointwise launchers queue, on their stream, their train_elems.cuh / optim_elems.cuh
// bodies over every element; the warp and block reductions are mirrored in the same order
// (lane / thread partials, then the same butterfly or tree). What this cannot check: launch
// configurations, shuffles and shared memory themselves; the GPU session runs the same tests on
// a device (test_cuda_train.cpp).
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "optim_elems.cuh"
#include "train_elems.cuh"
#include "train_kernels.cuh"

namespace pyrnn {
namespace cuda {
namespace emu {
// Queues `op` on `stream` as a launch would (host_runtime.cpp).
void run_or_record(cudaStream_t stream, std::function<void()> op);
}  // namespace emu
namespace detail {

namespace {
// warp_sum of train_kernels.cu: lane partials, then the xor butterfly (lane 0's value).
double warp_sum_emulated(std::vector<double> lanes) {
  for (int off = 16; off > 0; off >>= 1) {
    std::vector<double> next(32);
    for (int l = 0; l < 32; ++l) next[l] = lanes[l] + lanes[l ^ off];
    lanes = next;
  }
  return lanes[0];
}
}  // namespace

template <typename T>
void dense_epilogue(T* y, const T* b, std::size_t M, int out, int act, cudaStream_t stream) {
  emu::run_or_record(stream, [=] {
    for (std::size_t i = 0; i < M * out; ++i) dense_epilogue_elem<T>(i, y, b, out, act);
  });
}
template <typename T>
void dense_dz(T* dz, const T* dy, const T* y, std::size_t n, int act, cudaStream_t stream) {
  emu::run_or_record(stream, [=] {
    for (std::size_t i = 0; i < n; ++i) dense_dz_elem<T>(i, dz, dy, y, act);
  });
}
template <typename T>
void column_sums_add(T* out, const T* a, std::size_t rows, int cols, cudaStream_t stream) {
  emu::run_or_record(stream, [=] {
    for (int j = 0; j < cols; ++j) column_sum_add_elem<T>(j, out, a, rows, cols);
  });
}
template <typename T>
void layernorm_rows_forward(T* y, double* mean, double* rstd, const T* x, const T* w, const T* b,
                            std::size_t M, int D, double eps, T* x_keep, cudaStream_t stream) {
  emu::run_or_record(stream, [=] {
    for (std::size_t m = 0; m < M; ++m) {
      const T* xr = x + m * D;
      if (x_keep)
        for (int j = 0; j < D; ++j) x_keep[m * D + j] = xr[j];
      std::vector<double> s(32, 0.0), v(32, 0.0);
      for (int l = 0; l < 32; ++l)
        for (int j = l; j < D; j += 32) s[l] += xr[j];
      const double mu = warp_sum_emulated(s) / D;
      for (int l = 0; l < 32; ++l)
        for (int j = l; j < D; j += 32) {
          const double c = xr[j] - mu;
          v[l] += c * c;
        }
      const double rs = 1.0 / elem_sqrt(warp_sum_emulated(v) / D + eps);
      mean[m] = mu;
      rstd[m] = rs;
      for (int j = 0; j < D; ++j) y[m * D + j] = layernorm_y_elem<T>(xr[j], mu, rs, w[j], b[j]);
    }
  });
}
template <typename T>
void layernorm_rows_backward(T* dx, const T* dy, const T* x, const double* mean, const double* rstd,
                             const T* w, std::size_t M, int D, cudaStream_t stream) {
  emu::run_or_record(stream, [=] {
    for (std::size_t m = 0; m < M; ++m) {
      const T* xr = x + m * D;
      const T* dyr = dy + m * D;
      const double mu = mean[m], rs = rstd[m];
      std::vector<double> sg(32, 0.0), sgx(32, 0.0);
      for (int l = 0; l < 32; ++l)
        for (int j = l; j < D; j += 32) {
          const double xhat = (xr[j] - mu) * rs;
          const double g = static_cast<double>(dyr[j]) * w[j];
          sg[l] += g;
          sgx[l] += g * xhat;
        }
      const double msg = warp_sum_emulated(sg) / D, msgx = warp_sum_emulated(sgx) / D;
      for (int j = 0; j < D; ++j)
        dx[m * D + j] = layernorm_dx_elem<T>(xr[j], dyr[j], w[j], mu, rs, msg, msgx);
    }
  });
}
template <typename T>
void layernorm_params_backward(T* dw, T* db, const T* dy, const T* x, const double* mean,
                               const double* rstd, std::size_t M, int D, cudaStream_t stream) {
  emu::run_or_record(stream, [=] {
    for (int j = 0; j < D; ++j) layernorm_params_elem<T>(j, dw, db, dy, x, mean, rstd, M, D);
  });
}
template <typename T>
void embedding_gather(T* y, const std::int64_t* idx, const T* table, std::size_t M, int dim,
                      cudaStream_t stream) {
  emu::run_or_record(stream, [=] {
    for (std::size_t i = 0; i < M * dim; ++i) embedding_gather_elem<T>(i, y, idx, table, dim);
  });
}
template <typename T>
void embedding_owned_add(T* dtable, const T* dy, const std::int64_t* rows,
                         const std::int64_t* starts, const std::int64_t* order, std::size_t U,
                         int dim, cudaStream_t stream) {
  emu::run_or_record(stream, [=] {
    for (std::size_t i = 0; i < U * dim; ++i)
      embedding_owned_elem<T>(i, dtable, dy, rows, starts, order, dim);
  });
}
template <typename T>
void dropout_apply(T* y, const T* x, std::size_t n, std::uint64_t seed, double p, T scale,
                   cudaStream_t stream) {
  emu::run_or_record(stream, [=] {
    for (std::size_t i = 0; i < n; ++i) dropout_elem<T>(i, y, x, seed, p, scale);
  });
}
template <typename T>
void last_step_gather(T* y, const T* x, const std::int64_t* lengths, int N, int T_, int W, int H,
                      cudaStream_t stream) {
  emu::run_or_record(stream, [=] {
    for (std::size_t i = 0; i < std::size_t(N) * W; ++i)
      last_step_gather_elem<T>(i, y, x, lengths, T_, W, H);
  });
}
template <typename T>
void last_step_scatter(T* dx, const T* dy, const std::int64_t* lengths, int N, int T_, int W,
                       int H, cudaStream_t stream) {
  emu::run_or_record(stream, [=] {
    for (std::size_t i = 0; i < std::size_t(N) * T_ * W; ++i)
      last_step_scatter_elem<T>(i, dx, dy, lengths, T_, W, H);
  });
}

template <typename T>
void sgd_update(T* param, const T* grad, T* buf, std::size_t n, SgdCoef<T> c, StepKeep<T> k,
                unsigned* bad, cudaStream_t stream) {
  emu::run_or_record(stream, [=] {
    for (std::size_t i = 0; i < n; ++i) *bad |= sgd_elem<T>(i, param, grad, buf, c, k);
  });
}
template <typename T>
void adam_update(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq,
                 std::size_t n, AdamCoef<T> c, StepKeep<T> k, unsigned* bad, cudaStream_t stream) {
  emu::run_or_record(stream, [=] {
    for (std::size_t i = 0; i < n; ++i)
      *bad |= adam_elem<T>(i, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, c, k);
  });
}
template <typename T>
void rmsprop_update(T* param, const T* grad, T* square_avg, T* grad_avg, T* buf, std::size_t n,
                    RmspropCoef<T> c, StepKeep<T> k, unsigned* bad, cudaStream_t stream) {
  emu::run_or_record(stream, [=] {
    for (std::size_t i = 0; i < n; ++i)
      *bad |= rmsprop_elem<T>(i, param, grad, square_avg, grad_avg, buf, c, k);
  });
}

namespace {
// reduce_kernel of train_kernels.cu: strided thread partials, then the shared-memory tree.
template <typename T, bool kMax>
void reduce_emulated(double* partials, const T* x, std::size_t n, unsigned blocks) {
  const std::size_t stride = std::size_t(blocks) * kReduceThreads;
  for (unsigned b = 0; b < blocks; ++b) {
    std::vector<double> part(kReduceThreads, 0.0);
    for (unsigned t = 0; t < kReduceThreads; ++t)
      for (std::size_t i = std::size_t(b) * kReduceThreads + t; i < n; i += stride)
        part[t] = kMax ? max_abs_step(part[t], std::fabs(static_cast<double>(x[i])))
                       : part[t] + square_elem<T>(x[i]);
    for (unsigned s = kReduceThreads / 2; s > 0; s >>= 1)
      for (unsigned t = 0; t < s; ++t)
        part[t] = kMax ? max_abs_step(part[t], part[t + s]) : part[t] + part[t + s];
    partials[b] = part[0];
  }
}
}  // namespace

template <typename T>
void sum_squares_partials(double* partials, const T* x, std::size_t n, unsigned blocks,
                          cudaStream_t stream) {
  emu::run_or_record(stream, [=] {
    reduce_emulated<T, false>(partials, x, n, blocks);
  });
}
template <typename T>
void max_abs_partials(double* partials, const T* x, std::size_t n, unsigned blocks,
                      cudaStream_t stream) {
  emu::run_or_record(stream, [=] {
    reduce_emulated<T, true>(partials, x, n, blocks);
  });
}
template <typename T>
void scale_elems(T* x, std::size_t n, T s, cudaStream_t stream) {
  emu::run_or_record(stream, [=] {
    for (std::size_t i = 0; i < n; ++i) x[i] *= s;
  });
}

PYRNN_TRAIN_KERNELS_INSTANTIATE(float)
PYRNN_TRAIN_KERNELS_INSTANTIATE(double)

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn
