// Optimizer update loops on the GPU: the twins of cpp/include/pyrnn/optim.h (same names, argument
// order and PyTorch formulas; a Context& first). Every T* is DEVICE memory on ctx's device, [n].
//
// The update kernels run the same per-element bodies as the CPU loops (cuda/src/optim_elems.cuh,
// checked against pyrnn::optim on the host), with the scalar coefficients computed on the host by
// the same code, and are compiled without FMA contraction (--fmad=false): each element's update is
// the CPU's sequence of IEEE operations, so a step is bitwise the CPU's.
//
// Reductions are deterministic (no atomics): sum_squares gives every thread of a fixed grid (a
// function of n only) a strided partial sum in double, adds them by a fixed shared-memory tree per
// block, and the host adds the per-block partials in block order. max_abs is exact in any order
// (and propagates NaN like the CPU's). Results equal the CPU's up to the order of the double sum.
//
// A StepKeep (pyrnn/optim.h) holds DEVICE pointers here, on ctx's device, with the CPU's rules,
// and the steps return the CPU's NonFinite bits (a device word ORed by the threads that wrote a
// NaN or Inf, read back with the step's completion).
//
// Every call returns when its work is complete (stream synchronize), like the layers.
#pragma once
#include <cstddef>
#include <cstdint>

#include "pyrnn/cuda/context.h"
#include "pyrnn/optim.h"  // StepKeep (its pointers: device memory here)

namespace pyrnn {
namespace cuda {
namespace optim {

template <typename T>
unsigned sgd_step(Context& ctx, T* param, const T* grad, T* buf, std::size_t n, double lr,
                  double momentum, double dampening, double weight_decay, bool nesterov,
                  bool first_step, const pyrnn::optim::StepKeep<T>* keep = nullptr);

template <typename T>
unsigned adam_step(Context& ctx, T* param, const T* grad, T* exp_avg, T* exp_avg_sq,
                   T* max_exp_avg_sq, std::size_t n, double lr, double beta1, double beta2,
                   double eps, double weight_decay, bool decoupled, bool amsgrad,
                   std::int64_t step, const pyrnn::optim::StepKeep<T>* keep = nullptr);

template <typename T>
unsigned rmsprop_step(Context& ctx, T* param, const T* grad, T* square_avg, T* grad_avg,
                      T* buf, std::size_t n, double lr, double alpha, double eps,
                      double weight_decay, double momentum, bool centered,
                      const pyrnn::optim::StepKeep<T>* keep = nullptr);

template <typename T>
double sum_squares(Context& ctx, const T* x, std::size_t n);
template <typename T>
double max_abs(Context& ctx, const T* x, std::size_t n);
template <typename T>
void scale_inplace(Context& ctx, T* x, std::size_t n, double scale);
// x [n] = 0 (gradients before a backward).
template <typename T>
void zero(Context& ctx, T* x, std::size_t n);

}  // namespace optim
}  // namespace cuda
}  // namespace pyrnn
