#include "pyrnn/optim.h"

#include <algorithm>
#include <cmath>

#include "pyrnn/train_checks.h"

namespace pyrnn {
namespace optim {

namespace {
// torch.lerp's two-sided form (exact at both ends): a + w * (b - a) for w < 0.5.
template <typename T>
inline T lerp(T a, T b, T w) {
  return w < T(0.5) ? a + w * (b - a) : b - (b - a) * (T(1) - w);
}
}  // namespace

template <typename T>
void sgd_step(T* param, const T* grad, T* buf, std::size_t n, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool first_step) {
  detail::check_sgd(n, param, grad, buf, momentum);
  const T lr_t = static_cast<T>(lr), mom = static_cast<T>(momentum);
  const T wd = static_cast<T>(weight_decay), damp = static_cast<T>(1.0 - dampening);
  for (std::size_t i = 0; i < n; ++i) {
    T g = grad[i];
    if (weight_decay != 0.0) g += wd * param[i];
    if (momentum != 0.0) {
      buf[i] = first_step ? g : mom * buf[i] + damp * g;
      g = nesterov ? g + mom * buf[i] : buf[i];
    }
    param[i] -= lr_t * g;
  }
}

template <typename T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq,
               std::size_t n, double lr, double beta1, double beta2, double eps,
               double weight_decay, bool decoupled, bool amsgrad, std::int64_t step) {
  detail::check_adam(n, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, amsgrad, step);
  // Bias corrections in double, as PyTorch computes them in Python.
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  const T step_size = static_cast<T>(lr / bc1);
  const T bc2_sqrt = static_cast<T>(std::sqrt(bc2));
  const T w1 = static_cast<T>(1.0 - beta1), b2 = static_cast<T>(beta2);
  const T w2 = static_cast<T>(1.0 - beta2), eps_t = static_cast<T>(eps);
  const T wd = static_cast<T>(weight_decay);
  const T shrink = static_cast<T>(1.0 - lr * weight_decay);
  for (std::size_t i = 0; i < n; ++i) {
    T g = grad[i];
    if (weight_decay != 0.0) {
      if (decoupled) param[i] *= shrink;
      else g += wd * param[i];
    }
    exp_avg[i] = lerp(exp_avg[i], g, w1);
    exp_avg_sq[i] = exp_avg_sq[i] * b2 + w2 * g * g;
    T v = exp_avg_sq[i];
    if (amsgrad) {
      max_exp_avg_sq[i] = std::max(max_exp_avg_sq[i], v);
      v = max_exp_avg_sq[i];
    }
    const T denom = std::sqrt(v) / bc2_sqrt + eps_t;
    param[i] -= step_size * (exp_avg[i] / denom);
  }
}

template <typename T>
void rmsprop_step(T* param, const T* grad, T* square_avg, T* grad_avg, T* buf, std::size_t n,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  bool centered) {
  detail::check_rmsprop(n, param, grad, square_avg, grad_avg, buf, centered, momentum);
  const T lr_t = static_cast<T>(lr), a = static_cast<T>(alpha), w = static_cast<T>(1.0 - alpha);
  const T eps_t = static_cast<T>(eps), wd = static_cast<T>(weight_decay);
  const T mom = static_cast<T>(momentum);
  for (std::size_t i = 0; i < n; ++i) {
    T g = grad[i];
    if (weight_decay != 0.0) g += wd * param[i];
    square_avg[i] = square_avg[i] * a + w * g * g;
    T avg;
    if (centered) {
      grad_avg[i] = lerp(grad_avg[i], g, w);
      avg = std::sqrt(square_avg[i] - grad_avg[i] * grad_avg[i]) + eps_t;
    } else {
      avg = std::sqrt(square_avg[i]) + eps_t;
    }
    if (momentum > 0.0) {
      buf[i] = buf[i] * mom + g / avg;
      param[i] -= lr_t * buf[i];
    } else {
      param[i] -= lr_t * (g / avg);
    }
  }
}

template <typename T>
double sum_squares(const T* x, std::size_t n) {
  detail::check_vector("sum_squares", x, n);
  double s = 0.0;
  for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

template <typename T>
double max_abs(const T* x, std::size_t n) {
  detail::check_vector("max_abs", x, n);
  double m = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double v = std::fabs(static_cast<double>(x[i]));
    if (v > m || std::isnan(v)) m = v;  // NaN propagates, as torch.norm(inf) does
    if (std::isnan(m)) break;
  }
  return m;
}

template <typename T>
bool all_finite(const T* x, std::size_t n) {
  detail::check_vector("all_finite", x, n);
  // x * 0 is 0 for a finite x and NaN for NaN or +-Inf, and a sum of them, in any order, is
  // NaN exactly when one is: no branch per element, so it vectorises. Chunks end it early.
  constexpr std::size_t kChunk = 4096;
  for (std::size_t i0 = 0; i0 < n; i0 += kChunk) {
    const std::size_t i1 = std::min(n, i0 + kChunk);
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (std::size_t i = i0; i < i1; ++i) s += x[i] * T(0);
    if (s != s) return false;
  }
  return true;
}

template <typename T>
void scale_inplace(T* x, std::size_t n, double scale) {
  detail::check_vector("scale_inplace", x, n);
  const T s = static_cast<T>(scale);
  for (std::size_t i = 0; i < n; ++i) x[i] *= s;
}

#define PYRNN_INSTANTIATE_OPTIM(T)                                                              \
  template void sgd_step<T>(T*, const T*, T*, std::size_t, double, double, double, double, bool, \
                            bool);                                                              \
  template void adam_step<T>(T*, const T*, T*, T*, T*, std::size_t, double, double, double,     \
                             double, double, bool, bool, std::int64_t);                         \
  template void rmsprop_step<T>(T*, const T*, T*, T*, T*, std::size_t, double, double, double,  \
                                double, double, bool);                                          \
  template double sum_squares<T>(const T*, std::size_t);                                        \
  template double max_abs<T>(const T*, std::size_t);                                           \
  template void scale_inplace<T>(T*, std::size_t, double);                                    \
  template bool all_finite<T>(const T*, std::size_t);

PYRNN_INSTANTIATE_OPTIM(float)
PYRNN_INSTANTIATE_OPTIM(double)
#undef PYRNN_INSTANTIATE_OPTIM

}  // namespace optim
}  // namespace pyrnn
