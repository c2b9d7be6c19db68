// Optimizer update loops (PyTorch's exact formulas), one parameter tensor of n elements at a
// time, in place. Every buffer is [n] and C-contiguous; the Python optimizers own the state
// buffers and call these on the parameter / gradient views. Scalar coefficients arrive as
// double and are rounded to T once, as PyTorch does with its Python-float hyperparameters. A null
// buffer a step reads, step < 1, a missing momentum / amsgrad / centered buffer and buffers that
// overlap throw pyrnn::Error before anything is written (<pyrnn/train_checks.h>).
// The loops are vectorised for the selected ISA and split over the threads above 64k elements;
// every element's update is the same IEEE operations either way, so neither the ISA nor the
// thread count changes a bit (nor does the GPU: pyrnn/cuda/optim.h).
// Templated on float / double; explicit instantiations in src/optim.cpp.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pyrnn {
namespace optim {

// What a step overwrites, kept as it runs (fit's guard against non-finite steps,
// pyrnn/_fit_guard.py: one pass over the state instead of a copy of it before every step).
// Given to a step, each non-null buffer here ([n], apart from every other buffer) receives the
// values the step is about to replace: param the parameter, state[k] the step's k-th state
// buffer in its argument order (SGD: buf; Adam: exp_avg, exp_avg_sq, max_exp_avg_sq; RMSprop:
// square_avg, grad_avg, buf). One for a state buffer the step does not write is refused.
template <typename T>
struct StepKeep {
  T* param = nullptr;
  T* state[3] = {nullptr, nullptr, nullptr};
};

// Each step returns what it made non-finite (NaN or +-Inf) among the values it wrote, as bits:
// kParamNonFinite the parameter, kStateNonFinite a state buffer; 0 when all are finite. (fit's
// guard reads it instead of a pass of its own over them; counted in the step's own pass.)
enum NonFinite : unsigned { kParamNonFinite = 1u, kStateNonFinite = 2u };

// SGD (torch.optim.SGD):
//   g = grad + weight_decay * p
//   momentum != 0:  buf = g on the first step, else buf = momentum * buf + (1 - dampening) * g
//                   g = g + momentum * buf (nesterov) or g = buf
//   p -= lr * g
// buf may be null when momentum == 0.
template <typename T>
unsigned sgd_step(T* param, const T* grad, T* buf, std::size_t n, double lr, double momentum,
                  double dampening, double weight_decay, bool nesterov, bool first_step,
                  const StepKeep<T>* keep = nullptr);

// Adam / AdamW (torch.optim.Adam, torch.optim.AdamW), step = 1, 2, ... (after increment):
//   decoupled (AdamW): p *= 1 - lr * weight_decay      else: g = grad + weight_decay * p
//   m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
//   amsgrad: vmax = max(vmax, v) (NaN if either is, as torch.maximum), used in place of v
//   below (vmax may be null otherwise)
//   p -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
template <typename T>
unsigned adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq,
                   std::size_t n, double lr, double beta1, double beta2, double eps,
                   double weight_decay, bool decoupled, bool amsgrad, std::int64_t step,
                   const StepKeep<T>* keep = nullptr);

// RMSprop (torch.optim.RMSprop):
//   g = grad + weight_decay * p;  s = alpha * s + (1 - alpha) * g * g
//   centered: a = lerp(a, g, 1 - alpha); avg = sqrt(s - a * a) + eps   else avg = sqrt(s) + eps
//   (s - a * a is +Inf where s is +Inf and a finite, as torch's fused addcmul: a * a may overflow)
//   momentum > 0: buf = momentum * buf + g / avg; p -= lr * buf     else p -= lr * g / avg
// grad_avg may be null unless centered, buf null unless momentum > 0.
template <typename T>
unsigned rmsprop_step(T* param, const T* grad, T* square_avg, T* grad_avg, T* buf,
                      std::size_t n, double lr, double alpha, double eps, double weight_decay,
                      double momentum, bool centered, const StepKeep<T>* keep = nullptr);

// Gradient clipping helpers: sum of squares (in double, in a shape fixed by n: blocks of 2^15
// elements, each in 16 partial sums added pairwise, then the blocks in order), max |x|,
// x *= scale.
template <typename T>
double sum_squares(const T* x, std::size_t n);
template <typename T>
double max_abs(const T* x, std::size_t n);
template <typename T>
void scale_inplace(T* x, std::size_t n, double scale);
// No NaN or Inf among x[0..n): fit's check of the weights and the optimizer state after every
// step (one read, vectorised).
template <typename T>
bool all_finite(const T* x, std::size_t n);

}  // namespace optim
}  // namespace pyrnn
