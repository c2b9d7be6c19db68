// SGD, Adam and gradient-norm clipping over a facade layer's parameters(): the per-tensor update
// loops are the library's (pyrnn/optim.h, PyTorch's formulas); this file keeps the state.
#include "pyrnn/nn/optim.h"

#include <atomic>
#include <cmath>
#include <cstdint>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "pyrnn/aligned.h"
#include "pyrnn/error.h"
#include "pyrnn/optim.h"

namespace pyrnn {

namespace {

// n zeros, the size checked first: OutOfMemory naming `what` and the size (not a bare
// std::bad_alloc), before anything is allocated where it cannot fit.
template <typename T>
std::vector<T> zeroed_buffer(std::size_t n, const char* what) {
  const double bytes = static_cast<double>(n) * sizeof(T);
  check_allocation(bytes, what);
  const std::uint64_t injected =
      detail::injected_allocation_failure().load(std::memory_order_relaxed);
  if (injected && n && bytes >= static_cast<double>(injected))  // (as AlignedBuffer's)
    throw OutOfMemory(std::string(what) + " of " + detail::size_text(bytes) +
                      ": refused by a test (detail::injected_allocation_failure)");
  try {
    return std::vector<T>(n, T(0));
  } catch (const std::bad_alloc&) {
    throw OutOfMemory(std::string(what) + " of " + detail::size_text(bytes) +
                      " could not be allocated: the system refused it");
  }
}
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
  // Every state first, then every update: a refused allocation (OutOfMemory) leaves the
  // weights and the states as they were (updated one by one, the parameters before it were
  // stepped and a backward through the last forward was still accepted).
  std::vector<State*> states(params.size(), nullptr);
  std::vector<std::vector<T>> fresh(params.size());  // the buffers of new states
  std::vector<bool> first(params.size(), false);
  if (momentum_ != 0) {
    for (std::size_t i = 0; i < params.size(); ++i) {
      const ParamView<T>& p = params[i];
      State& s = velocity_[p.data];  // (a default entry is a new one's: harmless if left)
      // A new parameter (or another layer's, or matrix's, at a reused address): v starts as
      // g (PyTorch).
      first[i] = s.owner != owner || s.storage != p.storage || s.v.size() != p.size();
      if (first[i]) fresh[i] = zeroed_buffer<T>(p.size(), "SGD's momentum buffer");
      states[i] = &s;
    }
  }
  for (std::size_t i = 0; i < params.size(); ++i) {  // (nothing below allocates)
    if (first[i]) {
      states[i]->owner = owner;
      states[i]->storage = params[i].storage;
      states[i]->v.swap(fresh[i]);
    }
  }
  try {
    for (std::size_t i = 0; i < params.size(); ++i) {
      ParamView<T>& p = params[i];
      optim::sgd_step(p.data, p.grad, states[i] ? states[i]->v.data() : nullptr, p.size(), lr_,
                      momentum_, 0.0, 0.0, false, first[i]);
    }
  } catch (...) {
    layer.parametersChanged();  // (some may have been stepped)
    throw;
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
  // Every state first, then every update (as SGD's step: whole or not at all).
  std::vector<State*> states(params.size(), nullptr);
  std::vector<std::pair<std::vector<T>, std::vector<T>>> fresh(params.size());
  std::vector<bool> is_new(params.size(), false);
  for (std::size_t i = 0; i < params.size(); ++i) {
    const ParamView<T>& p = params[i];
    State& s = state_[p.data];  // (a default entry is a new one's: harmless if left)
    if (s.owner != owner || s.storage != p.storage || s.m.size() != p.size()) {
      fresh[i].first = zeroed_buffer<T>(p.size(), "Adam's first moment");
      fresh[i].second = zeroed_buffer<T>(p.size(), "Adam's second moment");
      is_new[i] = true;
    }
    states[i] = &s;
  }
  for (std::size_t i = 0; i < params.size(); ++i) {  // (nothing below allocates)
    if (is_new[i]) {  // new: step 0
      State& s = *states[i];
      s.owner = owner;
      s.storage = params[i].storage;
      s.m.swap(fresh[i].first);
      s.v.swap(fresh[i].second);
      s.t = 0;
    }
  }
  try {
    for (std::size_t i = 0; i < params.size(); ++i) {
      ParamView<T>& p = params[i];
      State& s = *states[i];
      ++s.t;
      optim::adam_step(p.data, p.grad, s.m.data(), s.v.data(), static_cast<T*>(nullptr),
                       p.size(), lr_, beta1_, beta2_, eps_, 0.0, false, false, s.t);
    }
  } catch (...) {
    layer.parametersChanged();  // (some may have been stepped)
    throw;
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
