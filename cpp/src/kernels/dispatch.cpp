// Picks the kernel family for the selected ISA, and the general GEMM entry point on top of it.
#include <algorithm>

#include "pyrnn/error.h"
#include "pyrnn/kernels/gemm.h"
#include "pyrnn/kernels/norm_rows.h"
#include "pyrnn/kernels/ops_tables.h"
#include "pyrnn/kernels/optim_loops.h"

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

template <typename T>
void gemm(Trans ta, Trans tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
          int ldb, T beta, T* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  const Ops<T>& o = ops<T>();
  if (ta == Trans::N &&
      o.gemm_b_in_place(tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, gemm_threads(M, N, K)))
    return;  // few rows: B read in place (packing it cost as much as the product)
  thread_local PackedB<T> packed;
  o.pack_b(packed, tb, K, N, B, ldb);
  o.gemm_packed(ta, M, A, lda, alpha, packed, beta, nullptr, C, ldc, gemm_threads(M, N, K));
}

template <typename T>
void gemm_b_once(Trans ta, Trans tb, int M, int N, int K, T alpha, const T* A, int lda,
                 const T* B, int ldb, T beta, T* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  const Ops<T>& o = ops<T>();
  if (ta == Trans::N &&
      o.gemm_b_in_place(tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, gemm_threads(M, N, K)))
    return;
  PackedB<T> packed;
  o.pack_b(packed, tb, K, N, B, ldb);
  o.gemm_packed(ta, M, A, lda, alpha, packed, beta, nullptr, C, ldc, gemm_threads(M, N, K));
}

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
