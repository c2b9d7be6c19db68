// Declarations of the per-ISA kernel tables (defined in src/kernels/kernels_*.cpp).
#pragma once
#include "pyrnn/kernels/ops.h"

namespace pyrnn {
namespace kernels {
template <typename T>
const Ops<T>& ops_scalar();
template <typename T>
const Ops<T>& ops_avx2();
template <typename T>
const Ops<T>& ops_avx512();
}  // namespace kernels
}  // namespace pyrnn
