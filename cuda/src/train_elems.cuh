// Per-element bodies of the training stack's kernels (internal header), host and device: the
// kernels in train_kernels.cu run them one thread per element (or per owned column / table row);
// cuda/tests/test_train_elems.cpp runs them in host loops against cpp/src/layers.cpp. Each is the
// CPU loop body of pyrnn/layers.h written per element, same formula and operand order (except
// Dense's tanh / sigmoid, which the CPU takes from its vectorised kernels: float32 on every ISA,
// float64 on AVX2 / AVX-512).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "elem_math.cuh"
#include "pyrnn/layers.h"  // Activation, dropout_multiplier (PYRNN_HD)
#include "pyrnn/random.h"  // PYRNN_HD

namespace pyrnn {
namespace cuda {
namespace detail {

// ---- Dense ------------------------------------------------------------------------------------
// act as int (Activation's value) so kernels take a plain argument.
template <typename T>
PYRNN_HD inline T act_forward_elem(int act, T v) {
  switch (static_cast<Activation>(act)) {
    case Activation::ReLU: return v < T(0) ? T(0) : v;  // NaN stays NaN, as on the CPU
    case Activation::Tanh: return elem_tanh(v);
    case Activation::Sigmoid: return T(1) / (T(1) + elem_exp(-v));
    case Activation::None: break;
  }
  return v;
}

// Derivative from the activation's output y (no pre-activation is stored).
template <typename T>
PYRNN_HD inline T act_grad_elem(int act, T y) {
  switch (static_cast<Activation>(act)) {
    case Activation::ReLU: return y <= T(0) ? T(0) : T(1);  // (NaN: 1, as torch)
    case Activation::Tanh: return T(1) - y * y;
    case Activation::Sigmoid: return y * (T(1) - y);
    case Activation::None: break;
  }
  return T(1);
}

// y [M, out] (x w^T in, act(. + b) out), element i = m * out + j; b [out] or null.
template <typename T>
PYRNN_HD inline void dense_epilogue_elem(std::size_t i, T* y, const T* b, int out, int act) {
  const std::size_t j = i % static_cast<std::size_t>(out);
  y[i] = act_forward_elem<T>(act, y[i] + (b ? b[j] : T(0)));
}

// dz [n] = dy * act'(y): the d pre-activation.
template <typename T>
PYRNN_HD inline void dense_dz_elem(std::size_t i, T* dz, const T* dy, const T* y, int act) {
  // ReLU selects, as PyTorch's threshold_backward: 0 where y <= 0 even for an Inf / NaN dy,
  // dy where y is NaN.
  dz[i] = act == static_cast<int>(Activation::ReLU) ? (y[i] <= T(0) ? T(0) : dy[i])
                                                   : dy[i] * act_grad_elem<T>(act, y[i]);
}

// Owner of column j: out[j] += sum over rows of a [rows, cols], rows in order, in double (the
// CPU's dense_backward db loop).
template <typename T>
PYRNN_HD inline void column_sum_add_elem(int j, T* out, const T* a, std::size_t rows, int cols) {
  double acc = 0.0;
  for (std::size_t m = 0; m < rows; ++m) acc += a[m * cols + j];
  out[j] += static_cast<T>(acc);
}

// ---- LayerNorm --------------------------------------------------------------------------------
// y from the row's double statistics mu, rs (the mean / rstd kept for backward, in double).
template <typename T>
PYRNN_HD inline T layernorm_y_elem(T x, double mu, double rs, T w, T b) {
  return static_cast<T>((x - mu) * rs) * w + b;
}

// dx from g = dy * w, xhat = (x - mu) * rs and the row means sg = mean(g), sgx = mean(g * xhat).
template <typename T>
PYRNN_HD inline T layernorm_dx_elem(T x, T dy, T w, double mu, double rs, double sg, double sgx) {
  const double xhat = (x - mu) * rs;
  const double g = static_cast<double>(dy) * w;
  return static_cast<T>(rs * (g - sg - xhat * sgx));
}

// Owner of column j: dw[j] += sum_m dy * xhat, db[j] += sum_m dy, rows in order, in double.
template <typename T>
PYRNN_HD inline void layernorm_params_elem(int j, T* dw, T* db, const T* dy, const T* x,
                                           const double* mean, const double* rstd,
                                           std::size_t rows, int D) {
  double aw = 0.0, ab = 0.0;
  for (std::size_t m = 0; m < rows; ++m) {
    const double mu = mean[m], rs = rstd[m];
    const double xhat = (x[m * D + j] - mu) * rs;
    aw += static_cast<double>(dy[m * D + j]) * xhat;
    ab += dy[m * D + j];
  }
  dw[j] += static_cast<T>(aw);
  db[j] += static_cast<T>(ab);
}

// ---- Embedding --------------------------------------------------------------------------------
// y [M, dim], element i = m * dim + j: table row idx[m] (idx already validated).
template <typename T>
PYRNN_HD inline void embedding_gather_elem(std::size_t i, T* y, const std::int64_t* idx,
                                           const T* table, int dim) {
  const std::size_t m = i / dim, j = i % dim;
  y[i] = table[static_cast<std::size_t>(idx[m]) * dim + j];
}

// Owner of (u, j), i = u * dim + j: table row rows[u] gets the dy rows order[starts[u]],
// ..., order[starts[u+1] - 1] (ascending positions), added one by one in that order as the CPU.
template <typename T>
PYRNN_HD inline void embedding_owned_elem(std::size_t i, T* dtable, const T* dy,
                                          const std::int64_t* rows, const std::int64_t* starts,
                                          const std::int64_t* order, int dim) {
  const std::size_t u = i / dim, j = i % dim;
  T* cell = dtable + static_cast<std::size_t>(rows[u]) * dim + j;
  T acc = *cell;
  for (std::int64_t k = starts[u]; k < starts[u + 1]; ++k)
    acc += dy[static_cast<std::size_t>(order[k]) * dim + j];
  *cell = acc;
}

// ---- Dropout ----------------------------------------------------------------------------------
template <typename T>
PYRNN_HD inline void dropout_elem(std::size_t i, T* y, const T* x, std::uint64_t seed, double p,
                                  T scale) {
  y[i] = x[i] * dropout_multiplier<T>(seed, i, p, scale);
}

// ---- LastStep ---------------------------------------------------------------------------------
// The step LastStep reads for column c of sequence n: the forward direction's last valid step
// (c < H) or step 0 (the reverse direction, c >= H). lengths null: all T.
PYRNN_HD inline int last_step_of(const std::int64_t* lengths, int n, int T_, int H, int c) {
  return c < H ? (lengths ? static_cast<int>(lengths[n]) - 1 : T_ - 1) : 0;
}

// y [N, W], i = n * W + c, from x [N, T, W].
template <typename T>
PYRNN_HD inline void last_step_gather_elem(std::size_t i, T* y, const T* x,
                                           const std::int64_t* lengths, int T_, int W, int H) {
  const int n = static_cast<int>(i / W), c = static_cast<int>(i % W);
  const int t = last_step_of(lengths, n, T_, H, c);
  y[i] = x[(static_cast<std::size_t>(n) * T_ + t) * W + c];
}

// dx [N, T, W], i = (n * T + t) * W + c: dy [N, W] where forward read, else 0.
template <typename T>
PYRNN_HD inline void last_step_scatter_elem(std::size_t i, T* dx, const T* dy,
                                            const std::int64_t* lengths, int T_, int W, int H) {
  const int c = static_cast<int>(i % W);
  const std::size_t nt = i / W;
  const int t = static_cast<int>(nt % T_), n = static_cast<int>(nt / T_);
  dx[i] = t == last_step_of(lengths, n, T_, H, c) ? dy[static_cast<std::size_t>(n) * W + c] : T(0);
}

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn
