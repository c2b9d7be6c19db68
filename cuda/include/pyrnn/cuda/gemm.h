// Row-major GEMM on the GPU with exactly the semantics of pyrnn::kernels::gemm (see its header):
// C[M x N] = alpha * op(A)[M x K] * op(B)[K x N] + beta * C, all pointers in device memory.
// beta = 0 never reads C; alpha = 0 or K <= 0 never reads A or B; M <= 0 or N <= 0 is a no-op.
// Runs on the handle's stream (asynchronous). Leading dimensions cuBLAS rejects (e.g. lda < K
// for op(A) = A) throw pyrnn::Error. float is computed in true fp32 unless math = TF32 (then
// cublasGemmEx with CUBLAS_COMPUTE_32F_FAST_TF32: tensor cores on operands rounded to 10 mantissa
// bits, fp32 accumulation; float only, double ignores it). The handle is put in
// CUBLAS_DEFAULT_MATH and host pointer mode on every call, whatever `math` is, so threads sharing
// a handle never see each other's precision.
#pragma once
#include "pyrnn/cuda/context.h"
#include "pyrnn/kernels/gemm.h"

namespace pyrnn {
namespace cuda {

enum class GemmMath { Exact, TF32 };

// Instantiated for float and double.
template <typename T>
void gemm(cublasHandle_t handle, kernels::Trans ta, kernels::Trans tb, int M, int N, int K, T alpha,
          const T* A, int lda, const T* B, int ldb, T beta, T* C, int ldc,
          GemmMath math = GemmMath::Exact);

}  // namespace cuda
}  // namespace pyrnn
