// Fused pointwise kernels of cuda::Recurrent: see cells.cuh. The formulas are cells.h's, written
// per element; the launch layout is one thread per (n, j), grid-stride.
#include <cuda_runtime.h>

#include <algorithm>

#include "cells.cuh"
#include "pyrnn/cuda/check.h"
#include "pyrnn/random.h"

namespace pyrnn {
namespace cuda {
namespace detail {

namespace {

constexpr unsigned kThreads = 256;

unsigned blocks_for(std::size_t n) {
  return static_cast<unsigned>(std::max<std::size_t>(1, std::min<std::size_t>((n + kThreads - 1) / kThreads, 65535)));
}

__device__ __forceinline__ float dexp(float x) { return expf(x); }
__device__ __forceinline__ double dexp(double x) { return exp(x); }
__device__ __forceinline__ float dtanh(float x) { return tanhf(x); }
__device__ __forceinline__ double dtanh(double x) { return tanh(x); }
template <typename T>
__device__ __forceinline__ T dsigmoid(T x) {
  return T(1) / (T(1) + dexp(-x));
}

__device__ __forceinline__ bool active(const std::int64_t* lengths, int n, int t) {
  return lengths == nullptr || t < lengths[n];
}

#define PYRNN_GRID_LOOP(i, count)                                                          \
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; \
       i < (count); i += static_cast<std::size_t>(blockDim.x) * gridDim.x)

// ---- forward ------------------------------------------------------------------------------------

template <typename T>
__global__ void cell_forward_kernel(int cell, bool reset_after, int N, int H, int t,
                                    const std::int64_t* __restrict__ lengths, T* __restrict__ g,
                                    const T* __restrict__ r, const T* __restrict__ b_hn,
                                    const T* __restrict__ hp, T* __restrict__ hc,
                                    const T* __restrict__ cp, T* __restrict__ cc,
                                    T* __restrict__ aux, T* __restrict__ y, int ldy, int G) {
  const std::size_t NH = static_cast<std::size_t>(N) * H;
  const std::size_t GH = static_cast<std::size_t>(G) * H;
  PYRNN_GRID_LOOP(i, NH) {
    const int n = static_cast<int>(i / H), j = static_cast<int>(i % H);
    T* gr = g + n * GH;
    const T* rr = r + n * GH;
    T* yr = y + static_cast<std::size_t>(n) * ldy;
    if (!active(lengths, n, t)) {
      // Past this sequence's end: the state carries through, the output is zero.
      hc[i] = hp[i];
      if (cell == static_cast<int>(CellType::LSTM)) cc[i] = cp[i];
      if (cell == static_cast<int>(CellType::GRU)) aux[i] = T(0);
      yr[j] = T(0);
      continue;
    }
    switch (static_cast<CellType>(cell)) {
      case CellType::RNN_TANH:
      case CellType::RNN_RELU: {  // rnn_forward_row
        const T pre = gr[j] + rr[j];
        const T h = cell == static_cast<int>(CellType::RNN_RELU) ? (pre > T(0) ? pre : T(0))
                                                                  : dtanh(pre);
        gr[j] = h;
        hc[i] = h;
        yr[j] = h;
        break;
      }
      case CellType::LSTM: {  // lstm_forward_row
        const T ig = dsigmoid(gr[j] + rr[j]);
        const T f = dsigmoid(gr[H + j] + rr[H + j]);
        const T nn = dtanh(gr[2 * H + j] + rr[2 * H + j]);
        const T o = dsigmoid(gr[3 * H + j] + rr[3 * H + j]);
        const T cn = f * cp[i] + ig * nn;
        gr[j] = ig;
        gr[H + j] = f;
        gr[2 * H + j] = nn;
        gr[3 * H + j] = o;
        cc[i] = cn;
        const T h = o * dtanh(cn);
        hc[i] = h;
        yr[j] = h;
        break;
      }
      case CellType::GRU:
        if (reset_after) {  // gru_after_forward_row
          const T rg = dsigmoid(gr[j] + rr[j]);
          const T z = dsigmoid(gr[H + j] + rr[H + j]);
          const T hnj = rr[2 * H + j] + (b_hn ? b_hn[j] : T(0));
          const T nn = dtanh(gr[2 * H + j] + rg * hnj);
          gr[j] = rg;
          gr[H + j] = z;
          gr[2 * H + j] = nn;
          aux[i] = hnj;
          const T h = (T(1) - z) * nn + z * hp[i];
          hc[i] = h;
          yr[j] = h;
        } else {  // gru_before_gates_row
          const T rg = dsigmoid(gr[j] + rr[j]);
          gr[j] = rg;
          gr[H + j] = dsigmoid(gr[H + j] + rr[H + j]);
          aux[i] = rg * hp[i];
        }
        break;
    }
  }
}

template <typename T>
__global__ void gru_before_state_kernel(int N, int H, int t, const std::int64_t* __restrict__ lengths,
                                        T* __restrict__ g, const T* __restrict__ rn,
                                        const T* __restrict__ hp, T* __restrict__ hc,
                                        T* __restrict__ y, int ldy) {
  const std::size_t NH = static_cast<std::size_t>(N) * H, GH = 3 * static_cast<std::size_t>(H);
  PYRNN_GRID_LOOP(i, NH) {
    const int n = static_cast<int>(i / H), j = static_cast<int>(i % H);
    if (!active(lengths, n, t)) continue;  // cell_forward already carried the state
    T* gr = g + n * GH;
    const T z = gr[H + j];
    const T nn = dtanh(gr[2 * H + j] + rn[n * GH + j]);
    gr[2 * H + j] = nn;
    const T h = (T(1) - z) * nn + z * hp[i];
    hc[i] = h;
    y[static_cast<std::size_t>(n) * ldy + j] = h;
  }
}

// ---- backward -----------------------------------------------------------------------------------

template <typename T>
__global__ void cell_backward_kernel(int cell, bool reset_after, int N, int H, int t,
                                     const std::int64_t* __restrict__ lengths, T* __restrict__ dg,
                                     T* __restrict__ dghn, const T* __restrict__ dh,
                                     const T* __restrict__ dy, int ldy, T* __restrict__ dc,
                                     T* __restrict__ pw, const T* __restrict__ a,
                                     const T* __restrict__ aux, const T* __restrict__ hp,
                                     const T* __restrict__ c, const T* __restrict__ cp, int G) {
  const std::size_t NH = static_cast<std::size_t>(N) * H;
  const std::size_t GH = static_cast<std::size_t>(G) * H;
  PYRNN_GRID_LOOP(i, NH) {
    const int n = static_cast<int>(i / H), j = static_cast<int>(i % H);
    T* dgr = dg + n * GH;
    if (!active(lengths, n, t)) {  // no gradient past the end
      for (int k = 0; k < G; ++k) dgr[k * H + j] = T(0);
      if (dghn) dghn[i] = T(0);
      continue;
    }
    const T d = dh[i] + dy[static_cast<std::size_t>(n) * ldy + j];
    const T* ar = a + n * GH;
    switch (static_cast<CellType>(cell)) {
      case CellType::RNN_TANH:
      case CellType::RNN_RELU:  // rnn_backward_row
        dgr[j] = d * (cell == static_cast<int>(CellType::RNN_RELU) ? (ar[j] > T(0) ? T(1) : T(0))
                                                                   : T(1) - ar[j] * ar[j]);
        break;
      case CellType::LSTM: {  // lstm_backward_row
        const T ig = ar[j], f = ar[H + j], nn = ar[2 * H + j], o = ar[3 * H + j];
        const T tc = dtanh(c[i]);
        const T dct = dc[i] + d * o * (T(1) - tc * tc);
        dgr[j] = dct * nn * ig * (T(1) - ig);
        dgr[H + j] = dct * cp[i] * f * (T(1) - f);
        dgr[2 * H + j] = dct * ig * (T(1) - nn * nn);
        dgr[3 * H + j] = d * tc * o * (T(1) - o);
        dc[i] = dct * f;
        break;
      }
      case CellType::GRU:
        if (reset_after) {  // gru_after_backward_row
          const T rg = ar[j], z = ar[H + j], nn = ar[2 * H + j];
          const T dn = d * (T(1) - z) * (T(1) - nn * nn);
          dgr[j] = dn * aux[i] * rg * (T(1) - rg);
          dgr[H + j] = d * (hp[i] - nn) * z * (T(1) - z);
          dgr[2 * H + j] = dn;
          dghn[i] = dn * rg;
          pw[i] = d * z;
        } else {  // gru_before_backward_zn_row
          const T z = ar[H + j], nn = ar[2 * H + j];
          dgr[H + j] = d * (hp[i] - nn) * z * (T(1) - z);
          dgr[2 * H + j] = d * (T(1) - z) * (T(1) - nn * nn);
          pw[i] = d * z;
        }
        break;
    }
  }
}

template <typename T>
__global__ void gru_before_backward_r_kernel(int N, int H, int t,
                                             const std::int64_t* __restrict__ lengths,
                                             T* __restrict__ dg, const T* __restrict__ drh,
                                             T* __restrict__ pw, const T* __restrict__ a,
                                             const T* __restrict__ hp) {
  const std::size_t NH = static_cast<std::size_t>(N) * H, GH = 3 * static_cast<std::size_t>(H);
  PYRNN_GRID_LOOP(i, NH) {
    const int n = static_cast<int>(i / H), j = static_cast<int>(i % H);
    if (!active(lengths, n, t)) continue;
    const T rg = a[n * GH + j];
    dg[n * GH + j] = drh[i] * hp[i] * rg * (T(1) - rg);
    pw[i] += drh[i] * rg;
  }
}

template <typename T>
__global__ void update_dh_kernel(int N, int H, int t, const std::int64_t* __restrict__ lengths,
                                 T* __restrict__ dh, const T* __restrict__ rec,
                                 const T* __restrict__ pw) {
  const std::size_t NH = static_cast<std::size_t>(N) * H;
  PYRNN_GRID_LOOP(i, NH) {
    const int n = static_cast<int>(i / H);
    if (!active(lengths, n, t)) continue;  // d h passes through
    dh[i] = rec[i] + (pw ? pw[i] : T(0));
  }
}

// ---- whole-buffer helpers -----------------------------------------------------------------------

template <typename T>
__global__ void add_bias_rows_kernel(T* __restrict__ a, const T* __restrict__ b, std::size_t rows,
                                     int cols, int ld) {
  PYRNN_GRID_LOOP(i, rows * cols) {
    const std::size_t row = i / cols, col = i % cols;
    a[row * ld + col] += b[col];
  }
}

// Block (32, 8): column blockIdx.x*32 + tx; thread (tx, ty) sums rows ty, ty+8, ... in order,
// then row 0 of the block adds the 8 partial sums in order. Fixed order for a given shape.
constexpr int kSumX = 32, kSumY = 8;
template <typename T>
__global__ void column_sum_add_kernel(T* __restrict__ out, const T* __restrict__ a,
                                      std::size_t rows, int cols, int ld) {
  __shared__ T part[kSumY][kSumX + 1];
  const int col = blockIdx.x * kSumX + threadIdx.x;
  T s = T(0);
  if (col < cols)
    for (std::size_t r = threadIdx.y; r < rows; r += kSumY) s += a[r * ld + col];
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    T total = part[0][threadIdx.x];
    for (int k = 1; k < kSumY; ++k) total += part[k][threadIdx.x];
    out[col] += total;
  }
}

template <typename T>
__global__ void dropout_forward_kernel(T* __restrict__ next, T* __restrict__ mask,
                                       const T* __restrict__ in, std::size_t n,
                                       std::uint64_t seed, std::uint64_t layer, double p,
                                       T scale) {
  PYRNN_GRID_LOOP(i, n) {
    const bool keep = uniform01(seed, layer, i) >= p;
    const T m = keep ? scale : T(0);
    mask[i] = m;
    next[i] = in[i] * m;
  }
}

template <typename T>
__global__ void multiply_inplace_kernel(T* __restrict__ a, const T* __restrict__ m, std::size_t n) {
  PYRNN_GRID_LOOP(i, n) a[i] *= m[i];
}

}  // namespace

template <typename T>
void cell_forward(CellType cell, bool reset_after, int N, int H, int t, const std::int64_t* lengths,
                  T* g, const T* r, const T* b_hn, const T* hp, T* hc, const T* cp, T* cc, T* aux,
                  T* y, int ldy, cudaStream_t stream) {
  const std::size_t NH = static_cast<std::size_t>(N) * H;
  const int G = cell == CellType::LSTM ? 4 : cell == CellType::GRU ? 3 : 1;
  cell_forward_kernel<T><<<blocks_for(NH), kThreads, 0, stream>>>(
      static_cast<int>(cell), reset_after, N, H, t, lengths, g, r, b_hn, hp, hc, cp, cc, aux, y,
      ldy, G);
  PYRNN_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void gru_before_state(int N, int H, int t, const std::int64_t* lengths, T* g, const T* rn,
                      const T* hp, T* hc, T* y, int ldy, cudaStream_t stream) {
  const std::size_t NH = static_cast<std::size_t>(N) * H;
  gru_before_state_kernel<T><<<blocks_for(NH), kThreads, 0, stream>>>(N, H, t, lengths, g, rn, hp,
                                                                       hc, y, ldy);
  PYRNN_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void cell_backward(CellType cell, bool reset_after, int N, int H, int t,
                   const std::int64_t* lengths, T* dg, T* dghn, const T* dh, const T* dy, int ldy,
                   T* dc, T* pw, const T* a, const T* aux, const T* hp, const T* c, const T* cp,
                   cudaStream_t stream) {
  const std::size_t NH = static_cast<std::size_t>(N) * H;
  const int G = cell == CellType::LSTM ? 4 : cell == CellType::GRU ? 3 : 1;
  cell_backward_kernel<T><<<blocks_for(NH), kThreads, 0, stream>>>(
      static_cast<int>(cell), reset_after, N, H, t, lengths, dg, dghn, dh, dy, ldy, dc, pw, a, aux,
      hp, c, cp, G);
  PYRNN_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void gru_before_backward_r(int N, int H, int t, const std::int64_t* lengths, T* dg, const T* drh,
                           T* pw, const T* a, const T* hp, cudaStream_t stream) {
  const std::size_t NH = static_cast<std::size_t>(N) * H;
  gru_before_backward_r_kernel<T><<<blocks_for(NH), kThreads, 0, stream>>>(N, H, t, lengths, dg,
                                                                            drh, pw, a, hp);
  PYRNN_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void update_dh(int N, int H, int t, const std::int64_t* lengths, T* dh, const T* rec, const T* pw,
               cudaStream_t stream) {
  const std::size_t NH = static_cast<std::size_t>(N) * H;
  update_dh_kernel<T><<<blocks_for(NH), kThreads, 0, stream>>>(N, H, t, lengths, dh, rec, pw);
  PYRNN_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void add_bias_rows(T* a, const T* b, std::size_t rows, int cols, int ld, cudaStream_t stream) {
  const std::size_t n = rows * static_cast<std::size_t>(cols);
  if (n == 0) return;
  add_bias_rows_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(a, b, rows, cols, ld);
  PYRNN_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void column_sum_add(T* out, const T* a, std::size_t rows, int cols, int ld, cudaStream_t stream) {
  if (cols <= 0) return;
  const dim3 block(kSumX, kSumY);
  const unsigned grid = static_cast<unsigned>((cols + kSumX - 1) / kSumX);
  column_sum_add_kernel<T><<<grid, block, 0, stream>>>(out, a, rows, cols, ld);
  PYRNN_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void dropout_forward(T* next, T* mask, const T* in, std::size_t n, std::uint64_t seed,
                     std::uint64_t layer, double p, T scale, cudaStream_t stream) {
  if (n == 0) return;
  dropout_forward_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(next, mask, in, n, seed, layer,
                                                                     p, scale);
  PYRNN_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void multiply_inplace(T* a, const T* m, std::size_t n, cudaStream_t stream) {
  if (n == 0) return;
  multiply_inplace_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(a, m, n);
  PYRNN_CUDA_CHECK(cudaGetLastError());
}

#define PYRNN_INSTANTIATE(T)                                                                       \
  template void cell_forward<T>(CellType, bool, int, int, int, const std::int64_t*, T*, const T*, \
                                const T*, const T*, T*, const T*, T*, T*, T*, int, cudaStream_t); \
  template void gru_before_state<T>(int, int, int, const std::int64_t*, T*, const T*, const T*,   \
                                    T*, T*, int, cudaStream_t);                                    \
  template void cell_backward<T>(CellType, bool, int, int, int, const std::int64_t*, T*, T*,      \
                                 const T*, const T*, int, T*, T*, const T*, const T*, const T*,   \
                                 const T*, const T*, cudaStream_t);                                \
  template void gru_before_backward_r<T>(int, int, int, const std::int64_t*, T*, const T*, T*,    \
                                         const T*, const T*, cudaStream_t);                        \
  template void update_dh<T>(int, int, int, const std::int64_t*, T*, const T*, const T*,          \
                             cudaStream_t);                                                        \
  template void add_bias_rows<T>(T*, const T*, std::size_t, int, int, cudaStream_t);              \
  template void column_sum_add<T>(T*, const T*, std::size_t, int, int, cudaStream_t);             \
  template void dropout_forward<T>(T*, T*, const T*, std::size_t, std::uint64_t, std::uint64_t,   \
                                   double, T, cudaStream_t);                                       \
  template void multiply_inplace<T>(T*, const T*, std::size_t, cudaStream_t);

PYRNN_INSTANTIATE(float)
PYRNN_INSTANTIATE(double)
#undef PYRNN_INSTANTIATE

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn
