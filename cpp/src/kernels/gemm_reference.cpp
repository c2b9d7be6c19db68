// The reference GEMM: plain loops, the oracle the packed kernels are tested against.
// Loop orders keep the innermost loop on contiguous memory for each case.
#include <vector>

#include "pyrnn/kernels/gemm.h"

namespace pyrnn {
namespace kernels {

template <typename T>
void gemm_reference(Trans ta, Trans tb, int M, int N, int K, T alpha, const T* A, int lda,
                    const T* B, int ldb, T beta, T* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  for (int i = 0; i < M; ++i) {
    T* c = C + static_cast<std::ptrdiff_t>(i) * ldc;
    if (beta == T(0))
      for (int j = 0; j < N; ++j) c[j] = T(0);
    else if (beta != T(1))
      for (int j = 0; j < N; ++j) c[j] *= beta;
  }
  if (K <= 0 || alpha == T(0)) return;
  const auto a_at = [&](int i, int k) {
    return ta == Trans::N ? A[static_cast<std::ptrdiff_t>(i) * lda + k]
                          : A[static_cast<std::ptrdiff_t>(k) * lda + i];
  };
  if (tb == Trans::N) {
    // C[i, :] += a(i, k) * B[k, :]: rows of B are contiguous.
    for (int i = 0; i < M; ++i) {
      T* c = C + static_cast<std::ptrdiff_t>(i) * ldc;
      for (int k = 0; k < K; ++k) {
        const T a = alpha * a_at(i, k);
        const T* b = B + static_cast<std::ptrdiff_t>(k) * ldb;
        for (int j = 0; j < N; ++j) c[j] += a * b[j];
      }
    }
  } else if (ta == Trans::N) {
    // C[i, j] += dot(A[i, :], B[j, :]): both rows contiguous.
    for (int i = 0; i < M; ++i) {
      const T* a = A + static_cast<std::ptrdiff_t>(i) * lda;
      T* c = C + static_cast<std::ptrdiff_t>(i) * ldc;
      for (int j = 0; j < N; ++j) {
        const T* b = B + static_cast<std::ptrdiff_t>(j) * ldb;
        T s = T(0);
        for (int k = 0; k < K; ++k) s += a[k] * b[k];
        c[j] += alpha * s;
      }
    }
  } else {
    // A^T B^T: rare; transpose A into a contiguous copy first.
    std::vector<T> at(static_cast<std::size_t>(M) * K);
    for (int k = 0; k < K; ++k)
      for (int i = 0; i < M; ++i) at[static_cast<std::size_t>(i) * K + k] = a_at(i, k);
    gemm_reference(Trans::N, tb, M, N, K, alpha, at.data(), K, B, ldb, T(1), C, ldc);
  }
}

template void gemm_reference<float>(Trans, Trans, int, int, int, float, const float*, int,
                                    const float*, int, float, float*, int);
template void gemm_reference<double>(Trans, Trans, int, int, int, double, const double*, int,
                                     const double*, int, double, double*, int);

}  // namespace kernels
}  // namespace pyrnn
