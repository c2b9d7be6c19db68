// Picks the kernel family for the selected ISA, and the general GEMM entry point on top of it.
#include <algorithm>
#include <cstddef>
#include <vector>

#include "pyrnn/error.h"
#include "pyrnn/kernels/gemm.h"
#include "pyrnn/kernels/norm_rows.h"
#include "pyrnn/kernels/ops_tables.h"
#include "pyrnn/kernels/optim_loops.h"
#include "pyrnn/runtime.h"
#include "../team.h"
#include "../team_errors.h"

namespace pyrnn {
namespace kernels {

// One ISA's table of a family (Ops, NormRows, OptimLoops), given each ISA's table getter.
template <typename Table>
const Table& table_for(CpuIsa isa, const Table& (*scalar)(), const Table& (*avx2)(),
                       const Table& (*avx512)()) {
  PYRNN_CHECK(isa_supported(isa), "CPU ISA '", isa_name(isa), "' is not supported by this CPU");
  switch (isa) {
    case CpuIsa::AVX512: return avx512();
    case CpuIsa::AVX2: return avx2();
    case CpuIsa::Scalar: break;
  }
  return scalar();
}

template <typename T>
const Ops<T>& ops_for(CpuIsa isa) {
  return table_for<Ops<T>>(isa, ops_scalar<T>, ops_avx2<T>, ops_avx512<T>);
}

template <typename T>
const Ops<T>& ops() {
  return ops_for<T>(get_cpu_isa());
}

template <typename T>
const NormRows<T>& norm_rows_for(CpuIsa isa) {
  return table_for<NormRows<T>>(isa, norm_rows_scalar<T>, norm_rows_avx2<T>, norm_rows_avx512<T>);
}

template <typename T>
const NormRows<T>& norm_rows() {
  return norm_rows_for<T>(get_cpu_isa());
}

template <typename T>
const OptimLoops<T>& optim_loops_for(CpuIsa isa) {
  return table_for<OptimLoops<T>>(isa, optim_loops_scalar<T>, optim_loops_avx2<T>,
                                  optim_loops_avx512<T>);
}

template <typename T>
const OptimLoops<T>& optim_loops() {
  return optim_loops_for<T>(get_cpu_isa());
}

int gemm_threads(long long M, long long N, long long K) {
  // Below ~1M multiply-adds (~10 us on one core) a fork/join and its barrier cost more than
  // they save, and far more when the machine is oversubscribed (a descheduled team member
  // stalls the barrier for a whole time slice).
  const long long work = M * N * K;
  return work < (1LL << 20) ? 1 : get_num_threads();
}

namespace {
// The product by threads that each own a run of column panels (or, with fewer panels than
// threads, a run of rows over all of them) and pack their own blocks of op(B)
// (at most kPackBlockBytes: all of K and whole panels, or for a long K whole kc blocks of it,
// the later ones accumulating with beta 1), multiplying each before packing the next. Packing
// was serial, on the calling thread, and of all of op(B) (98 MB kept per thread for a
// Dense(512, 50000)); now it is split like the product, a block is still in cache when every
// row block of A goes through it, and the buffers stay small. No split changes a bit: a column's
// sum runs over the same kc blocks, in k order, whoever packs and wherever a block ends.
// keep: pack into per-thread buffers kept for the next call (gemm: a weight, every call) or
// into ones freed on return (gemm_b_once).
// 2 MiB per thread: 1 to 8 MiB were within a few percent of each other, with 1 slower
// on a long K (Dense(512, 32000)'s d x, 2 threads, Zen 5 with 1 MB L2).
constexpr std::size_t kPackBlockBytes = std::size_t(2) << 20;

template <typename T>
void gemm_blocks(std::size_t block_bytes, bool keep, Trans ta, Trans tb, int M, int N, int K,
                 T alpha, const T* A, int lda, const T* B, int ldb, T beta, T* C, int ldc) {
  const Ops<T>& o = ops<T>();
  const int nr = o.nr, npanels = (N + nr - 1) / nr;
  const int want = gemm_threads(M, N, K);
  // Fewer column panels than threads (a Dense with few outputs over many rows ran on one
  // thread, 8x torch's time): the members split the rows instead, each over all panels, in
  // runs of kRowGrain rows, a multiple of every micro-kernel's tile height, so every row is
  // in the tile it was in (the tail in the last run): the same bits.
  constexpr int kRowGrain = 24;
  const bool by_rows = want > npanels && M >= 2 * kRowGrain * want;
  const int threads = by_rows ? want : std::max(1, std::min(want, npanels));
  const std::size_t budget = std::max<std::size_t>(1, block_bytes / sizeof(T));  // one block
  const std::size_t Kz = static_cast<std::size_t>(std::max(K, 1));
  const int size = ::pyrnn::detail::start_team(threads);
  ::pyrnn::detail::TeamErrors errors(size);
#pragma omp parallel num_threads(size) if (size > 1)
  {
    const int tid = ::pyrnn::detail::team_member();
    const int sharers = ::pyrnn::detail::sharers(threads);
    // This member's run of panels [p0, p1) and of rows [r0, r0 + m): none past `threads`
    // (start_team's extra members).
    const ::pyrnn::detail::Span mine = by_rows ? ::pyrnn::detail::Span{0, std::size_t(npanels)}
                                               : ::pyrnn::detail::share(npanels, tid, sharers);
    const ::pyrnn::detail::Span rows =
        by_rows ? ::pyrnn::detail::share(static_cast<std::size_t>(M), tid, sharers, kRowGrain)
                : ::pyrnn::detail::Span{0, std::size_t(M)};
    const int r0 = static_cast<int>(rows.begin), m = static_cast<int>(rows.end - rows.begin);
    const int p0 = m > 0 ? static_cast<int>(mine.begin) : 0,
              p1 = m > 0 ? static_cast<int>(mine.end) : 0;
    // op(A)'s and C's rows from r0 (an idle member's r0 is M: not formed, past the arrays)
    const T* Ar = m == 0 ? A : ta == Trans::N ? A + static_cast<std::size_t>(r0) * lda : A + r0;
    T* Cr = m == 0 ? C : C + static_cast<std::size_t>(r0) * ldc;
    // Block: kb x (pb panels) of op(B). Wide first: each block's product packs (or reads) all
    // of A's rows for its k range again, so this thread's whole run of panels if it fits with
    // all of K, or with whole kc blocks of K; narrower only when one kc block of the run does
    // not fit.
    const std::size_t width = static_cast<std::size_t>(p1 - p0) * nr;
    int kb = std::max(K, 1), pb = std::max(1, p1 - p0);
    if (Kz * width > budget) {
      const std::size_t kcs = budget / (width * o.kc);
      if (kcs >= 1) {
        kb = static_cast<int>(kcs * o.kc);
      } else {
        kb = std::min(kb, o.kc);
        pb = static_cast<int>(
            std::max<std::size_t>(1, budget / (static_cast<std::size_t>(kb) * nr)));
      }
    }
    thread_local PackedB<T> kept;
    PackedB<T> own;
    PackedB<T>& packed = keep ? kept : own;
    // The largest block's buffers first (op(B)'s pack and the kernel's A block), and a
    // barrier: one that cannot be allocated then leaves C as it was, on every thread.
    errors.run(tid, [&] {
      const std::size_t need = static_cast<std::size_t>(std::max(std::min(kb, K), 1)) *
                               static_cast<std::size_t>(std::min(pb, p1 - p0)) * nr;
      if (packed.data.size() < need) packed.data.resize(need);
      if (p0 < p1) o.reserve_a(ta, m, std::min(kb, K), alpha);
    });
#ifdef _OPENMP
#pragma omp barrier
#endif
    ::pyrnn::detail::TeamWork work;
    errors.run(tid, [&] {
      for (int q = p0; q < p1 && !errors.failed(); q += pb) {
        const int j0 = q * nr, n = std::min(std::min(q + pb, p1) * nr, N) - j0;
        const int range[2] = {0, (n + nr - 1) / nr};
        // (k0 in long long: K near 2^31 would overflow k0 + kb.) Once for K = 0: C = beta * C.
        for (long long k0 = 0; k0 == 0 || k0 < K; k0 += kb) {
          const int k = static_cast<int>(std::max(0LL, std::min<long long>(kb, K - k0)));
          // Block (k0, j0) of op(B): B + k0 * ldb + j0, or of B^T: B + j0 * ldb + k0; the k0
          // columns of op(A): A + k0, or A^T's k0 rows: A + k0 * lda.
          const std::size_t bk = static_cast<std::size_t>(k0), bj = static_cast<std::size_t>(j0);
          o.pack_b(packed, tb, k, n, tb == Trans::N ? B + bk * ldb + bj : B + bj * ldb + bk, ldb);
          o.gemm_panels(ta, m, ta == Trans::N ? Ar + bk : Ar + bk * lda, lda, alpha, packed,
                        k0 == 0 ? beta : T(1), nullptr, Cr + j0, ldc, range, 1);
        }
      }
    });
  }
  errors.rethrow();
}
}  // namespace

template <typename T>
void gemm(Trans ta, Trans tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
          int ldb, T beta, T* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  const Ops<T>& o = ops<T>();
  if (ta == Trans::N &&
      o.gemm_b_in_place(tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, gemm_threads(M, N, K)))
    return;  // few rows: B read in place (packing it cost as much as the product)
  gemm_blocks(kPackBlockBytes, /*keep=*/true, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C,
              ldc);
}

template <typename T>
void gemm_b_once(Trans ta, Trans tb, int M, int N, int K, T alpha, const T* A, int lda,
                 const T* B, int ldb, T beta, T* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  const Ops<T>& o = ops<T>();
  if (ta == Trans::N &&
      o.gemm_b_in_place(tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, gemm_threads(M, N, K)))
    return;
  gemm_blocks(kPackBlockBytes, /*keep=*/false, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C,
              ldc);
}

namespace detail {
template <typename T>
void gemm_in_blocks(std::size_t block_bytes, Trans ta, Trans tb, int M, int N, int K, T alpha,
                    const T* A, int lda, const T* B, int ldb, T beta, T* C, int ldc) {
  if (M > 0 && N > 0)
    gemm_blocks(block_bytes, /*keep=*/false, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}
template void gemm_in_blocks<float>(std::size_t, Trans, Trans, int, int, int, float, const float*,
                                    int, const float*, int, float, float*, int);
template void gemm_in_blocks<double>(std::size_t, Trans, Trans, int, int, int, double,
                                     const double*, int, const double*, int, double, double*, int);
}  // namespace detail

template const Ops<float>& ops_for<float>(CpuIsa);
template const Ops<double>& ops_for<double>(CpuIsa);
template const Ops<float>& ops<float>();
template const NormRows<float>& norm_rows_for<float>(CpuIsa);
template const NormRows<double>& norm_rows_for<double>(CpuIsa);
template const NormRows<float>& norm_rows<float>();
template const NormRows<double>& norm_rows<double>();
template const OptimLoops<float>& optim_loops_for<float>(CpuIsa);
template const OptimLoops<double>& optim_loops_for<double>(CpuIsa);
template const OptimLoops<float>& optim_loops<float>();
template const OptimLoops<double>& optim_loops<double>();
template const Ops<double>& ops<double>();
template void gemm<float>(Trans, Trans, int, int, int, float, const float*, int, const float*, int,
                          float, float*, int);
template void gemm<double>(Trans, Trans, int, int, int, double, const double*, int, const double*,
                           int, double, double*, int);
template void gemm_b_once<float>(Trans, Trans, int, int, int, float, const float*, int,
                                 const float*, int, float, float*, int);
template void gemm_b_once<double>(Trans, Trans, int, int, int, double, const double*, int,
                                  const double*, int, double, double*, int);

}  // namespace kernels
}  // namespace pyrnn
