// SGD, Adam and gradient-norm clipping over a facade layer's parameters(). Arithmetic in
// double, stored in T (as PyTorch's float32 optimizers store float32 state).
#include "pyrnn/nn/optim.h"

#include <cmath>

#include "pyrnn/error.h"

namespace pyrnn {

namespace {
void check_lr(const char* who, double lr) {
  PYRNN_CHECK(lr > 0 && std::isfinite(lr), who, ": learning rate must be > 0, got ", lr);
}
void check_unit(const char* who, const char* what, double v) {
  PYRNN_CHECK(v >= 0 && v < 1, who, ": ", what, " must be in [0, 1), got ", v);
}
}  // namespace

// ---------------------------------------------------------------------------------------------
// SGD

template <typename T>
BasicSGD<T>::BasicSGD(double lr, double momentum) : lr_(lr), momentum_(momentum) {
  check_lr("SGD", lr);
  check_unit("SGD", "momentum", momentum);
}

template <typename T>
void BasicSGD<T>::setLearningRate(double lr) {
  check_lr("SGD", lr);
  lr_ = lr;
}

template <typename T>
void BasicSGD<T>::step(BasicRecurrentLayer<T>& layer) {
  for (ParamView<T>& p : layer.parameters()) {
    const std::size_t n = p.size();
    if (momentum_ == 0) {
      for (std::size_t i = 0; i < n; ++i)
        p.data[i] = static_cast<T>(p.data[i] - lr_ * static_cast<double>(p.grad[i]));
      continue;
    }
    std::vector<T>& v = velocity_[p.data];  // [size]
    const bool first = v.size() != n;      // a new parameter: v starts as g (PyTorch)
    if (first) v.assign(n, T(0));
    for (std::size_t i = 0; i < n; ++i) {
      const double g = p.grad[i];
      const double vi = first ? g : momentum_ * v[i] + g;
      v[i] = static_cast<T>(vi);
      p.data[i] = static_cast<T>(p.data[i] - lr_ * vi);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Adam

template <typename T>
BasicAdam<T>::BasicAdam(double lr, double beta1, double beta2, double eps)
    : lr_(lr), beta1_(beta1), beta2_(beta2), eps_(eps) {
  check_lr("Adam", lr);
  check_unit("Adam", "beta1", beta1);
  check_unit("Adam", "beta2", beta2);
  PYRNN_CHECK(eps > 0, "Adam: eps must be > 0, got ", eps);
}

template <typename T>
void BasicAdam<T>::setLearningRate(double lr) {
  check_lr("Adam", lr);
  lr_ = lr;
}

template <typename T>
void BasicAdam<T>::step(BasicRecurrentLayer<T>& layer) {
  for (ParamView<T>& p : layer.parameters()) {
    const std::size_t n = p.size();
    State& s = state_[p.data];
    if (s.m.size() != n) {  // a new parameter: zero moments, step 0
      s.m.assign(n, T(0));
      s.v.assign(n, T(0));
      s.t = 0;
    }
    ++s.t;
    const double bc1 = 1.0 - std::pow(beta1_, static_cast<double>(s.t));
    const double bc2 = 1.0 - std::pow(beta2_, static_cast<double>(s.t));
    for (std::size_t i = 0; i < n; ++i) {
      const double g = p.grad[i];
      const double m = beta1_ * s.m[i] + (1.0 - beta1_) * g;
      const double v = beta2_ * s.v[i] + (1.0 - beta2_) * g * g;
      s.m[i] = static_cast<T>(m);
      s.v[i] = static_cast<T>(v);
      p.data[i] = static_cast<T>(p.data[i] - lr_ * (m / bc1) / (std::sqrt(v / bc2) + eps_));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Clipping

template <typename T>
double clipGradNorm(BasicRecurrentLayer<T>& layer, double max_norm) {
  PYRNN_CHECK(max_norm > 0, "clipGradNorm: max_norm must be > 0, got ", max_norm);
  std::vector<ParamView<T>> ps = layer.parameters();
  double sq = 0;
  for (const ParamView<T>& p : ps)
    for (std::size_t i = 0; i < p.size(); ++i) sq += static_cast<double>(p.grad[i]) * p.grad[i];
  const double norm = std::sqrt(sq);
  if (norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (ParamView<T>& p : ps)
      for (std::size_t i = 0; i < p.size(); ++i) p.grad[i] = static_cast<T>(p.grad[i] * scale);
  }
  return norm;
}

template class BasicSGD<float>;
template class BasicSGD<double>;
template class BasicAdam<float>;
template class BasicAdam<double>;
template double clipGradNorm<float>(BasicRecurrentLayer<float>&, double);
template double clipGradNorm<double>(BasicRecurrentLayer<double>&, double);

}  // namespace pyrnn
