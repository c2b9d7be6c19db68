// A host emulation of the little of the CUDA runtime, cuBLAS and the pyrnn::cuda foundation that
// cuda::Recurrent and the GPU facade use, so their REAL orchestration code (recurrent.cu,
// matrix_cuda.cu, nn_cuda.cu, compiled as C++) runs on the CPU against pyrnn::Recurrent without
// a GPU: "device" memory is host memory, copies are memcpy, the GEMM is gemm_reference, and the
// kernels run their cell_elems.cuh bodies (and mirrored helper loops) over every element.
// What this cannot check: launch configurations, cuBLAS's argument mapping (gemm.cu), and real
// asynchrony; the GPU session checks those (cuda/tests/test_cuda.cpp on a device).
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cell_elems.cuh"
#include "cells.cuh"
#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/context.h"
#include "pyrnn/cuda/device.h"
#include "pyrnn/cuda/gemm.h"
#include "pyrnn/error.h"
#include "pyrnn/random.h"

// ---- CUDA runtime (host memory, synchronous) ------------------------------------------------
extern "C" {
cudaError_t CUDARTAPI cudaGetLastError(void) { return cudaSuccess; }
const char* CUDARTAPI cudaGetErrorName(cudaError_t) { return "cudaErrorEmulated"; }
const char* CUDARTAPI cudaGetErrorString(cudaError_t) { return "host emulation error"; }
cudaError_t CUDARTAPI cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : cudaErrorInvalidDevice;
}
cudaError_t CUDARTAPI cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t CUDARTAPI cudaMalloc(void** p, size_t size) {
  // Garbage-filled like cudaMalloc, so code that reads before writing is caught by the tests.
  *p = std::malloc(size ? size : 1);
  if (!*p) return cudaErrorMemoryAllocation;
  std::memset(*p, 0xA5, size);
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaMemcpyAsync(void* dst, const void* src, size_t count, enum cudaMemcpyKind,
                                      cudaStream_t) {
  if (count) std::memmove(dst, src, count);
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaMemsetAsync(void* p, int value, size_t count, cudaStream_t) {
  if (count) std::memset(p, value, count);
  return cudaSuccess;
}
}  // extern "C"

namespace pyrnn {
namespace cuda {

// ---- foundation ---------------------------------------------------------------------------
namespace detail {
void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  throw_error(call, " failed at ", file, ":", line, ": emulated CUDA error ", int(err));
}
void throw_cublas_error(int status, const char* call, const char* file, int line) {
  throw_error(call, " failed at ", file, ":", line, ": emulated cuBLAS error ", status);
}
}  // namespace detail

int device_count() { return 1; }
std::string unavailable_reason() { return std::string(); }
std::string device_name(int) { return "host emulation"; }
void synchronize() {}
int runtime_version() { return 0; }
int driver_version() { return 0; }

Context::Context(int device) : device_(device) {}
Context::~Context() {}
void Context::release() noexcept {}
Context& Context::get(int device) {
  static Context ctx(0);
  PYRNN_CHECK(device == 0, "CUDA device ", device, " out of range (1 device, emulated)");
  return ctx;
}

template <typename T>
void gemm(cublasHandle_t, kernels::Trans ta, kernels::Trans tb, int M, int N, int K, T alpha,
          const T* A, int lda, const T* B, int ldb, T beta, T* C, int ldc) {
  using kernels::Trans;
  if (M <= 0 || N <= 0) return;
  PYRNN_CHECK(ldc >= N, "cuda::gemm: ldc = ", ldc, " < N = ", N);
  if (K > 0 && alpha != T(0)) {
    PYRNN_CHECK(lda >= (ta == Trans::N ? K : M), "cuda::gemm: lda too small");
    PYRNN_CHECK(ldb >= (tb == Trans::N ? N : K), "cuda::gemm: ldb too small");
  }
  kernels::gemm_reference<T>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
template void gemm<float>(cublasHandle_t, kernels::Trans, kernels::Trans, int, int, int, float,
                          const float*, int, const float*, int, float, float*, int);
template void gemm<double>(cublasHandle_t, kernels::Trans, kernels::Trans, int, int, int, double,
                           const double*, int, const double*, int, double, double*, int);

// ---- the launchers of cells.cuh, over every element -----------------------------------------
namespace detail {

namespace {
int gates_of(CellType cell) { return cell == CellType::LSTM ? 4 : cell == CellType::GRU ? 3 : 1; }
}  // namespace

template <typename T>
void cell_forward(CellType cell, bool reset_after, int N, int H, int t, const std::int64_t* lengths,
                  T* g, const T* r, const T* b_hn, const T* hp, T* hc, const T* cp, T* cc, T* aux,
                  T* y, int ldy, cudaStream_t) {
  for (std::size_t i = 0; i < std::size_t(N) * H; ++i)
    cell_forward_elem<T>(i, int(cell), reset_after, H, gates_of(cell), t, lengths, g, r, b_hn, hp,
                         hc, cp, cc, aux, y, ldy);
}
template <typename T>
void gru_before_state(int N, int H, int t, const std::int64_t* lengths, T* g, const T* rn,
                      const T* hp, T* hc, T* y, int ldy, cudaStream_t) {
  for (std::size_t i = 0; i < std::size_t(N) * H; ++i)
    gru_before_state_elem<T>(i, H, t, lengths, g, rn, hp, hc, y, ldy);
}
template <typename T>
void cell_backward(CellType cell, bool reset_after, int N, int H, int t,
                   const std::int64_t* lengths, T* dg, T* dghn, const T* dh, const T* dy, int ldy,
                   T* dc, T* pw, const T* a, const T* aux, const T* hp, const T* c, const T* cp,
                   cudaStream_t) {
  for (std::size_t i = 0; i < std::size_t(N) * H; ++i)
    cell_backward_elem<T>(i, int(cell), reset_after, H, gates_of(cell), t, lengths, dg, dghn, dh,
                          dy, ldy, dc, pw, a, aux, hp, c, cp);
}
template <typename T>
void gru_before_backward_r(int N, int H, int t, const std::int64_t* lengths, T* dg, const T* drh,
                           T* pw, const T* a, const T* hp, cudaStream_t) {
  for (std::size_t i = 0; i < std::size_t(N) * H; ++i)
    gru_before_backward_r_elem<T>(i, H, t, lengths, dg, drh, pw, a, hp);
}
template <typename T>
void update_dh(int N, int H, int t, const std::int64_t* lengths, T* dh, const T* rec, const T* pw,
               cudaStream_t) {
  for (std::size_t i = 0; i < std::size_t(N) * H; ++i) update_dh_elem<T>(i, H, t, lengths, dh, rec, pw);
}
// Mirrors of the helper kernels in cells.cu (same arithmetic order).
template <typename T>
void add_bias_rows(T* a, const T* b, std::size_t rows, int cols, int ld, cudaStream_t) {
  for (std::size_t r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) a[r * ld + c] += b[c];
}
template <typename T>
void column_sum_add(T* out, const T* a, std::size_t rows, int cols, int ld, cudaStream_t) {
  constexpr int kSumY = 8;  // as column_sum_add_kernel: 8 strided partial sums, then in order
  for (int c = 0; c < cols; ++c) {
    T part[kSumY];
    for (int y = 0; y < kSumY; ++y) {
      part[y] = T(0);
      for (std::size_t r = y; r < rows; r += kSumY) part[y] += a[r * ld + c];
    }
    T total = part[0];
    for (int y = 1; y < kSumY; ++y) total += part[y];
    out[c] += total;
  }
}
template <typename T>
void dropout_forward(T* next, T* mask, const T* in, std::size_t n, std::uint64_t seed,
                     std::uint64_t layer, double p, T scale, cudaStream_t) {
  for (std::size_t i = 0; i < n; ++i) {
    const T m = uniform01(seed, layer, i) >= p ? scale : T(0);
    mask[i] = m;
    next[i] = in[i] * m;
  }
}
template <typename T>
void multiply_inplace(T* a, const T* m, std::size_t n, cudaStream_t) {
  for (std::size_t i = 0; i < n; ++i) a[i] *= m[i];
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
