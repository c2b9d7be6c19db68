// Per-element bodies of the optimizer update kernels (internal header), host and device: the loop
// bodies of cpp/src/kernels/optim_loops_isa.inc written per element, same expressions and operand
// order, with the scalar coefficients computed once on the host by the CPU's own functions
// (pyrnn/kernels/optim_loops.h's *Coef structs).
// cuda/tests/test_train_elems.cpp checks them bitwise against pyrnn::optim on the host; the kernels
// in train_kernels.cu are compiled with --fmad=false so the GPU performs the same IEEE operations.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "pyrnn/kernels/optim_loops.h"  // the *Coef structs and their host functions
#include "pyrnn/random.h"                // PYRNN_HD

namespace pyrnn {
namespace cuda {
namespace detail {

#ifdef __CUDA_ARCH__
__device__ __forceinline__ float opt_sqrt(float x) { return sqrtf(x); }  // IEEE (prec-sqrt)
__device__ __forceinline__ double opt_sqrt(double x) { return sqrt(x); }
#else
template <typename T>
inline T opt_sqrt(T x) { return std::sqrt(x); }
#endif

// x - x is 0 for a finite x, NaN for NaN or +-Inf: the same test on the host and the device.
template <typename T>
PYRNN_HD inline bool opt_finite(T x) {
  return x - x == T(0);
}
// The NonFinite bits (pyrnn/optim.h) of a written parameter value and a written state value.
template <typename T>
PYRNN_HD inline unsigned opt_bits(T param, bool state_finite) {
  return (opt_finite(param) ? 0u : 1u) | (state_finite ? 0u : 2u);
}

// torch.lerp's two-sided form, as optim_loops_isa.inc's lerp.
template <typename T>
PYRNN_HD inline T opt_lerp(T a, T b, T w) {
  return w < T(0.5) ? a + w * (b - a) : b - (b - a) * (T(1) - w);
}

// The centred variance s - a*a, as optim_loops_isa.inc's centered_var: +Inf (torch's fused
// addcmul) once a*a overflows, where s is +Inf too, not Inf - Inf = NaN.
template <typename T>
PYRNN_HD inline T opt_centered_var(T s, T a) {
  return s == T(INFINITY) && opt_finite(a) ? s : s - a * a;
}

// ---- SGD ----------------------------------------------------------------------------------------
using ::pyrnn::optim::StepKeep;
using ::pyrnn::kernels::SgdCoef;
using ::pyrnn::kernels::sgd_coef;
// `k` gets each value the step replaces, as it is read (pyrnn/optim.h's StepKeep: device
// pointers here, each null or [n]). Each returns the NonFinite bits of the values it wrote.
template <typename T>
PYRNN_HD inline unsigned sgd_elem(std::size_t i, T* param, const T* grad, T* buf,
                                  const SgdCoef<T>& c, const StepKeep<T>& k) {
  T g = grad[i];
  if (k.param) k.param[i] = param[i];
  if (c.use_wd) g += c.wd * param[i];
  bool state_ok = true;
  if (c.use_mom) {
    if (k.state[0]) k.state[0][i] = buf[i];
    buf[i] = c.first ? g : c.mom * buf[i] + c.damp * g;
    state_ok = opt_finite(buf[i]);
    g = c.nesterov ? g + c.mom * buf[i] : buf[i];
  }
  param[i] -= c.lr * g;
  return opt_bits(param[i], state_ok);
}

// ---- Adam / AdamW -------------------------------------------------------------------------------
using ::pyrnn::kernels::AdamCoef;
using ::pyrnn::kernels::adam_coef;
template <typename T>
PYRNN_HD inline unsigned adam_elem(std::size_t i, T* param, const T* grad, T* exp_avg,
                                   T* exp_avg_sq, T* max_exp_avg_sq, const AdamCoef<T>& c,
                                   const StepKeep<T>& k) {
  T g = grad[i];
  if (k.param) k.param[i] = param[i];
  if (c.use_wd) {
    if (c.decoupled) param[i] *= c.shrink;
    else g += c.wd * param[i];
  }
  if (k.state[0]) k.state[0][i] = exp_avg[i];
  exp_avg[i] = opt_lerp(exp_avg[i], g, c.w1);
  if (k.state[1]) k.state[1][i] = exp_avg_sq[i];
  exp_avg_sq[i] = exp_avg_sq[i] * c.b2 + c.w2 * g * g;
  T v = exp_avg_sq[i];
  bool state_ok = opt_finite(exp_avg[i]) && opt_finite(v);
  if (c.amsgrad) {
    const T m = max_exp_avg_sq[i];
    if (k.state[2]) k.state[2][i] = m;
    max_exp_avg_sq[i] = (m < v || v != v) ? v : m;  // torch.maximum(m, v): NaN if either is
    v = max_exp_avg_sq[i];
    state_ok = state_ok && opt_finite(v);
  }
  const T denom = opt_sqrt(v) / c.bc2_sqrt + c.eps;
  param[i] -= (c.step_size * exp_avg[i]) / denom;  // (torch's addcdiv order, as the CPU loop)
  return opt_bits(param[i], state_ok);
}

// ---- RMSprop ------------------------------------------------------------------------------------
using ::pyrnn::kernels::RmspropCoef;
using ::pyrnn::kernels::rmsprop_coef;
template <typename T>
PYRNN_HD inline unsigned rmsprop_elem(std::size_t i, T* param, const T* grad, T* square_avg,
                                      T* grad_avg, T* buf, const RmspropCoef<T>& c,
                                      const StepKeep<T>& k) {
  T g = grad[i];
  if (k.param) k.param[i] = param[i];
  if (c.use_wd) g += c.wd * param[i];
  if (k.state[0]) k.state[0][i] = square_avg[i];
  square_avg[i] = square_avg[i] * c.a + c.w * g * g;
  bool state_ok = opt_finite(square_avg[i]);
  T avg;
  if (c.centered) {
    if (k.state[1]) k.state[1][i] = grad_avg[i];
    grad_avg[i] = opt_lerp(grad_avg[i], g, c.w);
    state_ok = state_ok && opt_finite(grad_avg[i]);
    avg = opt_sqrt(opt_centered_var(square_avg[i], grad_avg[i])) + c.eps;
  } else {
    avg = opt_sqrt(square_avg[i]) + c.eps;
  }
  if (c.use_mom) {
    if (k.state[2]) k.state[2][i] = buf[i];
    buf[i] = buf[i] * c.mom + g / avg;
    state_ok = state_ok && opt_finite(buf[i]);
    param[i] -= c.lr * buf[i];
  } else {
    param[i] -= (c.lr * g) / avg;  // (torch's addcdiv order)
  }
  return opt_bits(param[i], state_ok);
}

// ---- gradient clipping ----------------------------------------------------------------------------
template <typename T>
PYRNN_HD inline double square_elem(T x) {
  return static_cast<double>(x) * x;
}
// max |x| with NaN sticky, as optim.cpp's max_abs (m starts at 0).
PYRNN_HD inline double max_abs_step(double m, double v) {
  return (v > m || v != v) && m == m ? v : m;
}

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn
