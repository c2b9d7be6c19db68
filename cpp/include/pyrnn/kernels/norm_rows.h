// LayerNorm's row and column loops, one table per (ISA, precision), filled by the per-ISA
// compilations of src/kernels/norm_rows_isa.inc. Those are built without contraction into fused
// multiply-adds, and vectorise only over independent elements or over sum8's fixed partial
// sums: every ISA gives the same bits (those of the CUDA training kernels' elements,
// cuda/src/train_elems.cuh), only the vector width changes.
#pragma once
#include <cstddef>

#include "pyrnn/runtime.h"

namespace pyrnn {
namespace kernels {

template <typename T>
struct NormRows {
  CpuIsa isa;
  // Rows [m0, m1) of x [M, D]: y [M, D], and the row statistics kept for backward (double).
  // Where x_keep [M, D] is not null, each row of x is also copied there as it is first read.
  void (*forward)(std::size_t m0, std::size_t m1, int D, double eps, const T* x, const T* w,
                  const T* b, T* y, double* mean, double* rstd, T* x_keep);
  // Rows [m0, m1): dx [M, D]. Where dw_acc is not null, also dw_acc[j] += dy * xhat and
  // db_acc[j] += dy ([D] each, double), rows in order: params' sums, in the same pass.
  void (*backward)(std::size_t m0, std::size_t m1, int D, const T* dy, const T* x,
                   const double* mean, const double* rstd, const T* w, T* dx, double* dw_acc,
                   double* db_acc);
  // Columns [j0, j1) over all M rows, in row order: the parameter sums of backward, for a team
  // split by columns (the same bits whatever the split).
  void (*params)(int j0, int j1, std::size_t M, int D, const T* dy, const T* x,
                 const double* mean, const double* rstd, double* dw_acc, double* db_acc);
};

// The table for an ISA (must be supported), or for the current pyrnn::get_cpu_isa().
template <typename T>
const NormRows<T>& norm_rows_for(CpuIsa isa);
template <typename T>
const NormRows<T>& norm_rows();

// The per-ISA tables (src/kernels/norm_rows_*.cpp).
template <typename T>
const NormRows<T>& norm_rows_scalar();
template <typename T>
const NormRows<T>& norm_rows_avx2();
template <typename T>
const NormRows<T>& norm_rows_avx512();

}  // namespace kernels
}  // namespace pyrnn
