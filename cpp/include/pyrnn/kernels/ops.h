// Runtime-dispatched kernel families: one table per (ISA, precision), filled by the per-ISA
// compilations of src/kernels/kernels_isa.inc. Weight operands are packed once (PackedB) and
// reused by every time step.
#pragma once
#include <cstddef>

#include "pyrnn/aligned.h"
#include "pyrnn/kernels/gemm.h"
#include "pyrnn/runtime.h"

namespace pyrnn {
namespace kernels {

// op(B) [K x N] in panels: for each block of kc rows, ceil(N/nr) panels of kc x nr (zero padded).
template <typename T>
struct PackedB {
  AlignedBuffer<T> data;
  int K = 0, N = 0, nr = 0, kc = 0;
  CpuIsa isa = CpuIsa::Scalar;  // panel shape belongs to one ISA's micro-kernel
};

// Grows a pack buffer to hold op(B) [K x N] in panels of nr (what pack_b then writes without
// allocating; see Ops::reserve_a).
template <typename T>
void reserve_b(PackedB<T>& out, int K, int N, int nr) {
  const std::size_t need = static_cast<std::size_t>(K > 1 ? K : 1) *
                           static_cast<std::size_t>((N + nr - 1) / nr * nr);
  if (out.data.size() < need) out.data.resize(need);
}

template <typename T>
struct Ops {
  CpuIsa isa;
  int nr;  // the micro-kernel's panel width: PackedB::nr of what pack_b packs
  int kc;  // its k block: PackedB::kc; a product split in k at multiples of it keeps its bits
  void (*pack_b)(PackedB<T>& out, Trans tb, int K, int N, const T* B, int ldb);
  // C [M x N] = alpha * op(A) [M x K] * B + beta * C (+ bias [N] per column, beta = 0 only),
  // using up to `threads` threads.
  void (*gemm_packed)(Trans ta, int M, const T* A, int lda, T alpha, const PackedB<T>& B, T beta,
                      const T* bias, T* C, int ldc, int threads);
  // The same product computed by the calling OpenMP team (every thread calls it; ends with a
  // barrier), so a time-step loop can run inside one parallel region.
  void (*gemm_team)(Trans ta, int M, const T* A, int lda, T alpha, const PackedB<T>& B, T beta,
                    const T* bias, T* C, int ldc);
  // The same product restricted to column panels [ranges[2i], ranges[2i+1]) (panel = B.nr
  // columns), by the calling thread alone: no barrier. A is packed once for all ranges.
  void (*gemm_panels)(Trans ta, int M, const T* A, int lda, T alpha, const PackedB<T>& B, T beta,
                      const T* bias, T* C, int ldc, const int* ranges, int nranges);
  // Grows the calling thread's scratch for gemm_panels(ta, M, ..., alpha, B with K rows), so
  // that the product then allocates nothing: a thread team reserves first, meets, and only then
  // writes (an exception thrown inside an OpenMP region aborts; see src/team_errors.h).
  void (*reserve_a)(Trans ta, int M, int K, T alpha);
  // C [M x N] = alpha * A [M x K] * op(B) + beta * C, A and B row-major and read in place (no
  // packing), bitwise what pack_b + gemm_packed give; up to `threads` threads. Only for few rows
  // (op(B) = B^T: M <= 8; op(B) = B: M < the micro-kernel's rows) and beta 0 or 1: returns
  // false, doing nothing, otherwise.
  bool (*gemm_b_in_place)(Trans tb, int M, int N, int K, T alpha, const T* A, int lda,
                          const T* B, int ldb, T beta, T* C, int ldc, int threads);
  // gemm_panels' product (ta = N) with op(B) from B where it lies, as pack_b(tb, K, N, B, ldb)
  // would take it, instead of packed: bitwise the same, by the calling thread alone over the
  // same column panels (of nr). Few rows read B straight (op(B) = B^T: up to 8, transposed in
  // registers; op(B) = B: up to the skinny rows, 6 on AVX-512); otherwise op(B) is packed a
  // piece at a time right before all M rows use it (B^T: a panel of all K; B: 256 rows of k by
  // up to 8 panels). One pass over B either way: for a weight used once per call or by a small
  // batch's steps, where packing all of it costs two passes over it before the products read it
  // again. reserve_b_panels first in a thread team (as reserve_a).
  void (*gemm_b_panels)(Trans tb, int M, const T* A, int lda, T alpha, const T* B, int ldb, int N,
                        int K, T beta, const T* bias, T* C, int ldc, const int* ranges,
                        int nranges);
  void (*reserve_b_panels)(Trans tb, int M, int K, T alpha);
  // Cell rows over units [j0, j1) (see cells.h for the meaning of each argument).
  void (*rnn_forward_row)(int H, int j0, int j1, bool relu, T* g, const T* r);
  void (*rnn_backward_row)(int H, int j0, int j1, bool relu, T* dg, const T* dh, const T* a);
  void (*lstm_forward_row)(int H, int j0, int j1, T* g, const T* r, const T* c_prev, T* c, T* h);
  void (*lstm_backward_row)(int H, int j0, int j1, T* dg, const T* dh, T* dc, const T* a, const T* c,
                            const T* c_prev);
  void (*gru_after_forward_row)(int H, int j0, int j1, T* g, const T* r, const T* b_hn, T* hn, const T* h_prev,
                                T* h);
  void (*gru_after_backward_row)(int H, int j0, int j1, T* dg, T* dgh_n, const T* dh, T* dh_prev, const T* a,
                                 const T* hn, const T* h_prev);
  void (*gru_before_gates_row)(int H, int j0, int j1, T* g, const T* r, const T* h_prev, T* rh);
  void (*gru_before_state_row)(int H, int j0, int j1, T* g, const T* rn, const T* h_prev, T* h);
  void (*gru_before_backward_zn_row)(int H, int j0, int j1, T* dg, const T* dh, T* dh_prev, const T* a,
                                     const T* h_prev);
  void (*gru_before_backward_r_row)(int H, int j0, int j1, T* dg, const T* drh, T* dh_prev, const T* a,
                                    const T* h_prev);
  // Vector math used by the cells, exposed for accuracy tests: out[i] = f(in[i]).
  void (*exp)(int n, const T* in, T* out);
  void (*tanh)(int n, const T* in, T* out);
  void (*sigmoid)(int n, const T* in, T* out);
  // dst[r*ldd + c] = src[r*lds + c] (r < rows, c < cols), stored around the caches where the
  // ISA can (for data read much later), ending with a store fence.
  void (*stream_copy)(int rows, int cols, const T* src, int lds, T* dst, int ldd);
  // `rounds` rounds of independent full-width multiply-adds and nothing else: the ceiling of
  // any product on one core (fma_peak_gflops). Returns the flops done; *sink defeats dead-code
  // elimination.
  double (*fma_loop)(long long rounds, T* sink);
};

// The table for an ISA (must be supported), or for the current pyrnn::get_cpu_isa().
template <typename T>
const Ops<T>& ops_for(CpuIsa isa);
template <typename T>
const Ops<T>& ops();

// Threads worth using for a GEMM of this size: small products stay on one thread.
int gemm_threads(long long M, long long N, long long K);

}  // namespace kernels
}  // namespace pyrnn
