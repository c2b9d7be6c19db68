// Row-major GEMM via column-major cuBLAS. A row-major R x C matrix with leading dim ld is, read
// column-major, its C x R transpose with the same ld; so C^T[N x M] = op(B)^T[N x K] op(A)^T[K x M]
// is one column-major GEMM with the operands swapped and the same op flags.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/gemm.h"

namespace pyrnn {
namespace cuda {

namespace {
cublasStatus_t xgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                     int k, const float* alpha, const float* A, int lda, const float* B, int ldb,
                     const float* beta, float* C, int ldc) {
  return cublasSgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
cublasStatus_t xgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                     int k, const double* alpha, const double* A, int lda, const double* B, int ldb,
                     const double* beta, double* C, int ldc) {
  return cublasDgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
cublasStatus_t xgeam(cublasHandle_t h, int m, int n, const float* alpha, const float* A, int lda,
                     const float* beta, const float* B, int ldb, float* C, int ldc) {
  return cublasSgeam(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, alpha, A, lda, beta, B, ldb, C, ldc);
}
cublasStatus_t xgeam(cublasHandle_t h, int m, int n, const double* alpha, const double* A, int lda,
                     const double* beta, const double* B, int ldb, double* C, int ldc) {
  return cublasDgeam(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, alpha, A, lda, beta, B, ldb, C, ldc);
}
// TF32 through the call's compute type, never through the handle's math mode: the handle is
// shared by everything on the device (one Context), and pyrnn::cuda::gemm is public API whose
// callers need not hold the device lock, so a mode set for one TF32 pass could leak into
// another thread's float GEMM between its mode set and its call.
cublasStatus_t xgemm_tf32(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                          int n, int k, const float* alpha, const float* A, int lda,
                          const float* B, int ldb, const float* beta, float* C, int ldc) {
  return cublasGemmEx(h, ta, tb, m, n, k, alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, beta, C,
                      CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT);
}
cublasStatus_t xgemm_tf32(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                          int n, int k, const double* alpha, const double* A, int lda,
                          const double* B, int ldb, const double* beta, double* C, int ldc) {
  return cublasDgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);  // never TF32
}
cublasOperation_t op(kernels::Trans t) { return t == kernels::Trans::N ? CUBLAS_OP_N : CUBLAS_OP_T; }
}  // namespace

template <typename T>
void gemm(cublasHandle_t handle, kernels::Trans ta, kernels::Trans tb, int M, int N, int K, T alpha,
          const T* A, int lda, const T* B, int ldb, T beta, T* C, int ldc, GemmMath math) {
  using kernels::Trans;
  if (M <= 0 || N <= 0) return;
  PYRNN_CHECK(ldc >= N, "cuda::gemm: ldc = ", ldc, " < N = ", N);
  // Cheap host-side settings; re-asserted because the handle may not come from a Context. Always
  // the same values (TF32 is chosen per call below), so threads sharing a handle agree on them.
  const bool tf32 = math == GemmMath::TF32 && sizeof(T) == sizeof(float);
  PYRNN_CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH));
  PYRNN_CUBLAS_CHECK(cublasSetPointerMode(handle, CUBLAS_POINTER_MODE_HOST));

  if (K <= 0 || alpha == T(0)) {
    // C = beta * C without touching A or B (as the CPU version); beta = 0 must not read C.
    if (beta == T(1)) return;
    if (beta == T(0)) {
      cudaStream_t stream = nullptr;
      PYRNN_CUBLAS_CHECK(cublasGetStream(handle, &stream));
      PYRNN_CUDA_CHECK(cudaMemset2DAsync(C, sizeof(T) * ldc, 0, sizeof(T) * N, M, stream));
      return;
    }
    const T zero = T(0);  // in place: C = beta * C + 0 * C
    PYRNN_CUBLAS_CHECK(xgeam(handle, N, M, &beta, C, ldc, &zero, C, ldc, C, ldc));
    return;
  }
  PYRNN_CHECK(lda >= (ta == Trans::N ? K : M), "cuda::gemm: lda = ", lda, " too small for op(A) [",
              M, " x ", K, "]", ta == Trans::N ? "" : " (transposed)");
  PYRNN_CHECK(ldb >= (tb == Trans::N ? N : K), "cuda::gemm: ldb = ", ldb, " too small for op(B) [",
              K, " x ", N, "]", tb == Trans::N ? "" : " (transposed)");
  if (tf32)
    PYRNN_CUBLAS_CHECK(
        xgemm_tf32(handle, op(tb), op(ta), N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc));
  else
    PYRNN_CUBLAS_CHECK(
        xgemm(handle, op(tb), op(ta), N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc));
}

template void gemm<float>(cublasHandle_t, kernels::Trans, kernels::Trans, int, int, int, float,
                          const float*, int, const float*, int, float, float*, int, GemmMath);
template void gemm<double>(cublasHandle_t, kernels::Trans, kernels::Trans, int, int, int, double,
                           const double*, int, const double*, int, double, double*, int, GemmMath);

}  // namespace cuda
}  // namespace pyrnn
