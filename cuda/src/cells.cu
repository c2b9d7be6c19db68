// Fused pointwise kernels of cuda::Recurrent: see cells.cuh. The formulas are cells.h's, written
// per element (cell_elems.cuh); the launch layout is one thread per (n, j), grid-stride.
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "cell_elems.cuh"
#include "cells.cuh"
#include "grid.cuh"
#include "pyrnn/cuda/check.h"
#include "pyrnn/random.h"

namespace pyrnn {
namespace cuda {
namespace detail {

namespace {

// ---- per-step kernels: the bodies are in cell_elems.cuh --------------------------------------

template <typename T>
__global__ void cell_forward_kernel(int cell, bool reset_after, int N, int H, int t,
                                    const std::int64_t* __restrict__ lengths, T* __restrict__ g,
                                    const T* __restrict__ r, const T* __restrict__ b_hn,
                                    const T* __restrict__ hp, T* __restrict__ hc,
                                    const T* __restrict__ cp, T* __restrict__ cc,
                                    T* __restrict__ aux, T* __restrict__ y, int ldy, int G) {
  PYRNN_GRID_LOOP(i, static_cast<std::size_t>(N) * H)
  cell_forward_elem<T>(i, cell, reset_after, H, G, t, lengths, g, r, b_hn, hp, hc, cp, cc, aux, y,
                       ldy);
}

template <typename T>
__global__ void gru_before_state_kernel(int N, int H, int t,
                                        const std::int64_t* __restrict__ lengths,
                                        T* __restrict__ g, const T* __restrict__ rn,
                                        const T* __restrict__ hp, T* __restrict__ hc,
                                        T* __restrict__ y, int ldy) {
  PYRNN_GRID_LOOP(i, static_cast<std::size_t>(N) * H)
  gru_before_state_elem<T>(i, H, t, lengths, g, rn, hp, hc, y, ldy);
}

template <typename T>
__global__ void cell_backward_kernel(int cell, bool reset_after, int N, int H, int t,
                                     const std::int64_t* __restrict__ lengths, T* __restrict__ dg,
                                     T* __restrict__ dghn, const T* __restrict__ dh,
                                     const T* __restrict__ dy, int ldy, T* __restrict__ dc,
                                     T* __restrict__ pw, const T* __restrict__ a,
                                     const T* __restrict__ aux, const T* __restrict__ hp,
                                     const T* __restrict__ c, const T* __restrict__ cp, int G) {
  PYRNN_GRID_LOOP(i, static_cast<std::size_t>(N) * H)
  cell_backward_elem<T>(i, cell, reset_after, H, G, t, lengths, dg, dghn, dh, dy, ldy, dc, pw, a,
                        aux, hp, c, cp);
}

template <typename T>
__global__ void gru_before_backward_r_kernel(int N, int H, int t,
                                             const std::int64_t* __restrict__ lengths,
                                             T* __restrict__ dg, const T* __restrict__ drh,
                                             T* __restrict__ pw, const T* __restrict__ a,
                                             const T* __restrict__ hp) {
  PYRNN_GRID_LOOP(i, static_cast<std::size_t>(N) * H)
  gru_before_backward_r_elem<T>(i, H, t, lengths, dg, drh, pw, a, hp);
}

template <typename T>
__global__ void update_dh_kernel(int N, int H, int t, const std::int64_t* __restrict__ lengths,
                                 T* __restrict__ dh, const T* __restrict__ rec,
                                 const T* __restrict__ pw) {
  PYRNN_GRID_LOOP(i, static_cast<std::size_t>(N) * H)
  update_dh_elem<T>(i, H, t, lengths, dh, rec, pw);
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
// then row 0 of the block adds the 8 partial sums in order. Fixed order for a given shape. In
// double, as the CPU's bias gradients: T*N rows summed in float32 lost digits as they grew.
constexpr int kSumX = 32, kSumY = 8;
template <typename T>
__global__ void column_sum_add_kernel(T* __restrict__ out, const T* __restrict__ a,
                                      std::size_t rows, int cols, int ld) {
  __shared__ double part[kSumY][kSumX + 1];
  const int col = blockIdx.x * kSumX + threadIdx.x;
  double s = 0.0;
  if (col < cols)
    for (std::size_t r = threadIdx.y; r < rows; r += kSumY) s += a[r * ld + col];
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    double total = part[0][threadIdx.x];
    for (int k = 1; k < kSumY; ++k) total += part[k][threadIdx.x];
    out[col] += static_cast<T>(total);
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

template <typename T>
__global__ void zero_past_lengths_kernel(T* __restrict__ x,
                                         const std::int64_t* __restrict__ lengths, std::size_t n,
                                         int N, int C) {
  PYRNN_GRID_LOOP(i, n) {
    const std::size_t row = i / C;  // t * N + b
    if (static_cast<std::int64_t>(row / N) >= lengths[row % N]) x[i] = T(0);
  }
}

// ---- custom step kernels: the bodies are in step_body.cuh -------------------------------------

// The execution context step_body.cuh is written against, on the GPU.
struct DeviceCtx {
  __device__ int block_index() const { return static_cast<int>(blockIdx.x); }
  __device__ int thread_index() const { return static_cast<int>(threadIdx.x); }
  __device__ int thread_count() const { return static_cast<int>(blockDim.x); }
  __device__ void sync_block() const { __syncthreads(); }
  // Only in cooperative launches (StepArgs::grid_sync == 2); includes the memory ordering.
  __device__ void sync_grid() const { cooperative_groups::this_grid().sync(); }
};

constexpr int kStepThreads = 256;

template <typename T, bool Backward>
__global__ void __launch_bounds__(kStepThreads, 1) step_kernel(StepArgs<T> a) {
  extern __shared__ __align__(16) unsigned char step_smem[];
  DeviceCtx ctx;
  T* smem = reinterpret_cast<T*>(step_smem);
  if (Backward)
    step_backward_body<T>(ctx, a, smem);
  else
    step_forward_body<T>(ctx, a, smem);
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

template <typename T>
void zero_past_lengths(T* x, const std::int64_t* lengths, std::size_t steps, int N, int C,
                       cudaStream_t stream) {
  const std::size_t n = steps * N * C;
  if (n == 0) return;
  zero_past_lengths_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(x, lengths, n, N, C);
  PYRNN_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
StepPlan plan_step_kernel(int device, CellType cell, bool reset_after, int N, int H, bool backward,
                          bool persistent, int requested_blocks) {
  StepPlan plan;
  const int G = cell == CellType::LSTM ? 4 : cell == CellType::GRU ? 3 : 1;
  int sms = 0, smem_optin = 0, coop = 0;
  PYRNN_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  PYRNN_CUDA_CHECK(
      cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  PYRNN_CUDA_CHECK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, device));
  int blocks = 0, units = 0;
  step_blocks(N, G, H, backward, kStepThreads, sms, requested_blocks, &blocks, &units);
  const int K = backward ? G * H : H;  // the longest sum of block_dot
  const int kc = std::min(K, 128), nc = std::min(N, 64);
  auto smem_of = [&](int u) {
    return step_smem_elems(G, H, u, kc, nc, backward) * sizeof(T);
  };
  // Fewer units per block (more blocks) until the slice fits in shared memory.
  while (smem_of(units) > static_cast<std::size_t>(smem_optin) && units > 1) {
    units = (units + 1) / 2;
    blocks = (H + units - 1) / units;
  }
  if (smem_of(units) > static_cast<std::size_t>(smem_optin)) return StepPlan{};
  const std::size_t smem = smem_of(units);
  const void* kernel = backward ? reinterpret_cast<const void*>(&step_kernel<T, true>)
                                : reinterpret_cast<const void*>(&step_kernel<T, false>);
  // The attribute belongs to the kernel (per device), not to this plan: every layer of this dtype
  // shares it, and a plan is memoized per layer. Setting it to this plan's size would let a later
  // plan of another layer with a smaller (> 48 KiB) slice lower it below what the first layer
  // still launches with (cudaErrorInvalidValue at its next launch). So raise it to the device's
  // opt-in limit, which every plan fits (checked above), and never lower it.
  if (smem > 48 * 1024)
    PYRNN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          smem_optin));
  int threads = kStepThreads;
  if (persistent && blocks > 1) {
    if (!coop) return StepPlan{};
    int per_sm = 0;
    PYRNN_CUDA_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
    if (static_cast<long long>(per_sm) * sms < blocks) return StepPlan{};  // not all resident
  }
  plan.blocks = blocks;
  plan.threads = threads;
  plan.units = units;
  plan.kc = kc;
  plan.nc = nc;
  plan.grid_sync = persistent ? (blocks > 1 ? 2 : 1) : 0;
  plan.smem_bytes = smem;
  return plan;
}

template <typename T>
void launch_step_kernel(const StepArgs<T>& a, const StepPlan& plan, bool backward,
                        cudaStream_t stream) {
  StepArgs<T> args = a;
  args.units = plan.units;
  args.kc = plan.kc;
  args.nc = plan.nc;
  args.grid_sync = plan.grid_sync;
  const dim3 grid(static_cast<unsigned>(plan.blocks)), block(static_cast<unsigned>(plan.threads));
  if (plan.grid_sync == 2) {
    void* params[] = {&args};
    const void* kernel = backward ? reinterpret_cast<const void*>(&step_kernel<T, true>)
                                  : reinterpret_cast<const void*>(&step_kernel<T, false>);
    PYRNN_CUDA_CHECK(
        cudaLaunchCooperativeKernel(kernel, grid, block, params, plan.smem_bytes, stream));
  } else if (backward) {
    step_kernel<T, true><<<grid, block, plan.smem_bytes, stream>>>(args);
    PYRNN_CUDA_CHECK(cudaGetLastError());
  } else {
    step_kernel<T, false><<<grid, block, plan.smem_bytes, stream>>>(args);
    PYRNN_CUDA_CHECK(cudaGetLastError());
  }
}

PYRNN_CELLS_INSTANTIATE(float)
PYRNN_CELLS_INSTANTIATE(double)

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn
