// The optimizers' element loops and the gradient-clipping reductions, one table per (ISA,
// precision), filled by the per-ISA compilations of src/kernels/optim_loops_isa.inc; and the
// scalar coefficients of each step, computed once per call on the host (by pyrnn::optim here, and
// by the CUDA optimizers from the same functions, cuda/src/optim_elems.cuh).
//
// The loops are built without contraction into fused multiply-adds and run each element's
// PyTorch expression as its sequence of IEEE operations (+, *, /, sqrt: correctly rounded), a
// vector of elements at a time: every ISA, every thread count and the CUDA kernels give the same
// bits. sum_squares adds in a fixed number of partial sums, the same on every ISA.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "pyrnn/optim.h"
#include "pyrnn/runtime.h"

namespace pyrnn {
namespace kernels {

// ---- the coefficients of one step (T-rounded once, as PyTorch's Python floats are) -----------
template <typename T>
struct SgdCoef {
  T lr, mom, wd, damp;
  bool use_wd, use_mom, nesterov, first;
};
template <typename T>
inline SgdCoef<T> sgd_coef(double lr, double momentum, double dampening, double weight_decay,
                           bool nesterov, bool first_step) {
  return {static_cast<T>(lr), static_cast<T>(momentum), static_cast<T>(weight_decay),
          static_cast<T>(1.0 - dampening), weight_decay != 0.0, momentum != 0.0, nesterov,
          first_step};
}

template <typename T>
struct AdamCoef {
  T step_size, bc2_sqrt, w1, b2, w2, eps, wd, shrink;
  bool use_wd, decoupled, amsgrad;
};
template <typename T>
inline AdamCoef<T> adam_coef(double lr, double beta1, double beta2, double eps,
                             double weight_decay, bool decoupled, bool amsgrad, std::int64_t step) {
  // Bias corrections in double, as PyTorch computes them in Python.
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  return {static_cast<T>(lr / bc1),          static_cast<T>(std::sqrt(bc2)),
          static_cast<T>(1.0 - beta1),       static_cast<T>(beta2),
          static_cast<T>(1.0 - beta2),       static_cast<T>(eps),
          static_cast<T>(weight_decay),      static_cast<T>(1.0 - lr * weight_decay),
          weight_decay != 0.0,               decoupled,
          amsgrad};
}

template <typename T>
struct RmspropCoef {
  T lr, a, w, eps, wd, mom;
  bool use_wd, centered, use_mom;
};
template <typename T>
inline RmspropCoef<T> rmsprop_coef(double lr, double alpha, double eps, double weight_decay,
                                   double momentum, bool centered) {
  return {static_cast<T>(lr),  static_cast<T>(alpha),        static_cast<T>(1.0 - alpha),
          static_cast<T>(eps), static_cast<T>(weight_decay), static_cast<T>(momentum),
          weight_decay != 0.0, centered,                     momentum > 0.0};
}

// Partial sums of OptimLoops::sum_squares: lane k adds the elements i = k (mod kSquareLanes).
constexpr int kSquareLanes = 16;

template <typename T>
struct OptimLoops {
  CpuIsa isa;
  // Elements [i0, i1) of one step, in place (the formulas: pyrnn/optim.h), copying what they
  // overwrite into keep's non-null buffers; they return what they made non-finite
  // (optim::NonFinite bits).
  unsigned (*sgd)(std::size_t i0, std::size_t i1, T* param, const T* grad, T* buf,
                  const SgdCoef<T>& c, const optim::StepKeep<T>& keep);
  unsigned (*adam)(std::size_t i0, std::size_t i1, T* param, const T* grad, T* exp_avg,
                   T* exp_avg_sq, T* max_exp_avg_sq, const AdamCoef<T>& c,
                   const optim::StepKeep<T>& keep);
  unsigned (*rmsprop)(std::size_t i0, std::size_t i1, T* param, const T* grad, T* square_avg,
                      T* grad_avg, T* buf, const RmspropCoef<T>& c,
                      const optim::StepKeep<T>& keep);
  // sum of x[i]^2 over [0, n) in double: kSquareLanes partial sums, each over its elements in
  // order, then added pairwise in a fixed tree.
  double (*sum_squares)(const T* x, std::size_t n);
  // No NaN or Inf among x[0, n).
  bool (*all_finite)(const T* x, std::size_t n);
  // x[i] *= s over [i0, i1).
  void (*scale)(std::size_t i0, std::size_t i1, T* x, T s);
};

// The table for an ISA (must be supported), or for the current pyrnn::get_cpu_isa().
template <typename T>
const OptimLoops<T>& optim_loops_for(CpuIsa isa);
template <typename T>
const OptimLoops<T>& optim_loops();

// The per-ISA tables (src/kernels/optim_loops_*.cpp).
template <typename T>
const OptimLoops<T>& optim_loops_scalar();
template <typename T>
const OptimLoops<T>& optim_loops_avx2();
template <typename T>
const OptimLoops<T>& optim_loops_avx512();

}  // namespace kernels
}  // namespace pyrnn
