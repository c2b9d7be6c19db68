// SGD, Adam and gradient-norm clipping over a facade layer's parameters(): the per-tensor update
// loops are the library's (pyrnn/optim.h, PyTorch's formulas); this file keeps the state.
#include "pyrnn/nn/optim.h"

#include <cmath>

#include "pyrnn/error.h"
#include "pyrnn/optim.h"

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
std::size_t BasicSGD<T>::numStates() const {
  return velocity_.size();
}

template <typename T>
void BasicSGD<T>::setLearningRate(double lr) {
  check_lr("SGD", lr);
  lr_ = lr;
}

template <typename T>
void BasicSGD<T>::step(BasicRecurrentLayer<T>& layer) {
  const detail::Owner owner = detail::Owner::of(layer);
  std::vector<ParamView<T>> params = layer.parameters();
  detail::drop_gone(velocity_, owner, params);
  for (ParamView<T>& p : params) {
    const std::size_t n = p.size();
    T* buf = nullptr;
    bool first = false;
    if (momentum_ != 0) {
      State& s = velocity_[p.data];
      // A new parameter (or another layer's, or matrix's, at a reused address): v starts as g
      // (PyTorch).
      first = s.owner != owner || s.storage != p.storage || s.v.size() != n;
      if (first) {
        s.owner = owner;
        s.storage = p.storage;
        s.v.assign(n, T(0));
      }
      buf = s.v.data();
    }
    optim::sgd_step(p.data, p.grad, buf, n, lr_, momentum_, 0.0, 0.0, false, first);
  }
  layer.parametersChanged();  // a backward through the last forward would mix old and new
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
std::size_t BasicAdam<T>::numStates() const {
  return state_.size();
}

template <typename T>
void BasicAdam<T>::setLearningRate(double lr) {
  check_lr("Adam", lr);
  lr_ = lr;
}

template <typename T>
void BasicAdam<T>::step(BasicRecurrentLayer<T>& layer) {
  const detail::Owner owner = detail::Owner::of(layer);
  std::vector<ParamView<T>> params = layer.parameters();
  detail::drop_gone(state_, owner, params);
  for (ParamView<T>& p : params) {
    const std::size_t n = p.size();
    State& s = state_[p.data];
    if (s.owner != owner || s.storage != p.storage || s.m.size() != n) {  // new: step 0
      s.owner = owner;
      s.storage = p.storage;
      s.m.assign(n, T(0));
      s.v.assign(n, T(0));
      s.t = 0;
    }
    ++s.t;
    optim::adam_step(p.data, p.grad, s.m.data(), s.v.data(), static_cast<T*>(nullptr), n, lr_,
                     beta1_, beta2_, eps_, 0.0, false, false, s.t);
  }
  layer.parametersChanged();  // a backward through the last forward would mix old and new
}

// ---------------------------------------------------------------------------------------------
// Clipping

template <typename T>
double clipGradNorm(BasicRecurrentLayer<T>& layer, double max_norm) {
  PYRNN_CHECK(max_norm > 0, "clipGradNorm: max_norm must be > 0, got ", max_norm);
  std::vector<ParamView<T>> ps = layer.parameters();
  double sq = 0;
  for (const ParamView<T>& p : ps) sq += optim::sum_squares(p.grad, p.size());
  const double norm = std::sqrt(sq);
  // PyTorch's clip_grad_norm_: scale by max_norm / (norm + 1e-6) wherever that is below 1 (a
  // norm within 1e-6 under max_norm too: `norm > max_norm` left those unscaled); a NaN norm
  // makes every gradient NaN, as there (and as pyrnn.clip_grad_norm), rather than unclipped.
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0 || std::isnan(coef))
    for (ParamView<T>& p : ps) optim::scale_inplace(p.grad, p.size(), coef);
  return norm;
}

template class BasicSGD<float>;
template class BasicSGD<double>;
template class BasicAdam<float>;
template class BasicAdam<double>;
template double clipGradNorm<float>(BasicRecurrentLayer<float>&, double);
template double clipGradNorm<double>(BasicRecurrentLayer<double>&, double);

}  // namespace pyrnn
