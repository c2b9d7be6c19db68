// Row-major GEMM: C[M x N] = alpha * op(A)[M x K] * op(B)[K x N] + beta * C.
// op(A) = A (lda >= K) or A^T (A stored K x M, lda >= M); likewise for B.
// beta = 0 overwrites C (never reads it, so C may hold garbage); beta = 1 accumulates.
#pragma once
#include <cstddef>

namespace pyrnn {
namespace kernels {

enum class Trans { N, T };

// Threads split C's columns (its rows when there are fewer column panels than threads: the same
// bits); each packs its own blocks of op(B) (2 MiB at most) into a buffer
// kept for the next call (a weight packed again and again costs no allocation), multiplying
// each block before packing the next.
template <typename T>
void gemm(Trans ta, Trans tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
          int ldb, T beta, T* C, int ldc);

// The same product with B packed into a buffer freed on return: for a B used once (an
// activation), so the thread keeps no copy of it.
template <typename T>
void gemm_b_once(Trans ta, Trans tb, int M, int N, int K, T alpha, const T* A, int lda,
                 const T* B, int ldb, T beta, T* C, int ldc);

namespace detail {
// gemm's blocked product (never B read in place) with blocks of at most block_bytes: for the
// tests, which check that no blocking changes a bit.
template <typename T>
void gemm_in_blocks(std::size_t block_bytes, Trans ta, Trans tb, int M, int N, int K, T alpha,
                    const T* A, int lda, const T* B, int ldb, T beta, T* C, int ldc);
}  // namespace detail

// C[i] += P[i] for i < n: a partial product (a group of K rows computed with beta = 0) added
// to its accumulator. Summing a long K in groups bounds the float32 additions C takes.
template <typename T>
inline void add_into(T* C, const T* P, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) C[i] += P[i];
}

// The reference loops: the oracle every optimised variant is tested against.
template <typename T>
void gemm_reference(Trans ta, Trans tb, int M, int N, int K, T alpha, const T* A, int lda,
                    const T* B, int ldb, T beta, T* C, int ldc);

}  // namespace kernels
}  // namespace pyrnn
