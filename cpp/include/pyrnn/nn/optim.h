// Optimizers for the facade layers, PyTorch's update rules, applied in place through
// layer.parameters():
//
//   pyrnn::Adam opt(1e-2);                         // or pyrnn::SGD opt(0.1, 0.9);
//   layer.zeroGrad();
//   layer.backward(d_y);
//   double norm = pyrnn::clipGradNorm(layer, 5.0);  // optional
//   opt.step(layer);
//
// step() tells the layer its weights changed (layer.parametersChanged()): a backward() after it
// needs a new forward() first.
//
// State (momentum, Adam moments and step count) is kept per parameter, keyed by the
// parameter's memory, its layer object and the layer's core (their instanceId()s) and, for the
// projection, its matrix's storageId(), so one optimizer may step several layers, and a layer
// replaced by a new one (`layer = LSTMLayer(...)`, a copy, a new `layer.core()`, or a new
// `outputWeight()`) starts afresh even where its memory reuses the old one's addresses. The
// state of a layer (or core) that no longer exists, or of a parameter the layer no longer has,
// is dropped at the next step, so an optimizer outliving many layers holds only the live
// ones' state.
#pragma once
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <unordered_map>
#include <vector>

#include "pyrnn/nn/layer.h"

namespace pyrnn {

namespace detail {
// Whose parameter an optimizer state is: the layer's and its core's instanceId(), and handles
// that expire with them.
struct Owner {
  std::uint64_t layer = 0, core = 0;
  std::weak_ptr<const void> layer_alive, core_alive;
  template <typename T>
  static Owner of(const BasicRecurrentLayer<T>& l) {
    return {l.instanceId(), l.core().instanceId(), l.instanceAlive(), l.core().instanceAlive()};
  }
  bool operator!=(const Owner& o) const { return layer != o.layer || core != o.core; }
  bool gone() const { return layer_alive.expired() || core_alive.expired(); }
};

// Drops the entries of owners that no longer exist, and `owner`'s entries at addresses none
// of its parameters `current` has now (a reassigned outputWeight()): state that could never
// be used again.
template <typename Map, typename Params>
void drop_gone(Map& states, const Owner& owner, const Params& current) {
  for (auto it = states.begin(); it != states.end();) {
    bool stale = it->second.owner.gone();
    if (!stale && !(it->second.owner != owner)) {
      stale = true;
      for (const auto& p : current) stale = stale && p.data != it->first;
    }
    it = stale ? states.erase(it) : std::next(it);
  }
}
}  // namespace detail

// SGD with optional momentum: v = momentum*v + g (v = g on the first step); p -= lr*v.
template <typename T>
class BasicSGD {
 public:
  // lr > 0, momentum in [0, 1); otherwise pyrnn::Error.
  explicit BasicSGD(double lr, double momentum = 0.0);
  void step(BasicRecurrentLayer<T>& layer);
  double learningRate() const { return lr_; }
  void setLearningRate(double lr);
  // Parameter tensors with state (momentum / moments) held. The state of a layer that no
  // longer exists (or a replaced parameter) is dropped at the next step(), not before.
  std::size_t numStates() const;

 private:
  using Owner = detail::Owner;
  struct State {
    Owner owner;                // the layer and core it belongs to
    std::uint64_t storage = 0;  // ParamView::storage
    std::vector<T> v;           // [size of the parameter]
  };
  double lr_, momentum_;
  std::unordered_map<const T*, State> velocity_;  // per parameter address
};

// Adam (Kingma & Ba, as torch.optim.Adam without weight decay), per parameter:
//   t += 1; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
//   p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
template <typename T>
class BasicAdam {
 public:
  // lr > 0, beta1 and beta2 in [0, 1), eps > 0; otherwise pyrnn::Error.
  explicit BasicAdam(double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
                     double eps = 1e-8);
  void step(BasicRecurrentLayer<T>& layer);
  double learningRate() const { return lr_; }
  void setLearningRate(double lr);
  // Parameter tensors with state (momentum / moments) held. The state of a layer that no
  // longer exists (or a replaced parameter) is dropped at the next step(), not before.
  std::size_t numStates() const;

 private:
  using Owner = detail::Owner;
  struct State {
    Owner owner;                // the layer and core it belongs to
    std::uint64_t storage = 0;  // ParamView::storage
    std::vector<T> m, v;        // [size of the parameter]
    std::int64_t t = 0;
  };
  double lr_, beta1_, beta2_, eps_;
  std::unordered_map<const T*, State> state_;
};

// Scales every gradient of the layer by max_norm / (norm + 1e-6), the global L2 norm over all
// of them, wherever that factor is below 1 (torch.nn.utils.clip_grad_norm_). Returns the norm before
// clipping. max_norm > 0, otherwise pyrnn::Error.
template <typename T>
double clipGradNorm(BasicRecurrentLayer<T>& layer, double max_norm);

extern template class BasicSGD<float>;
extern template class BasicSGD<double>;
extern template class BasicAdam<float>;
extern template class BasicAdam<double>;
extern template double clipGradNorm<float>(BasicRecurrentLayer<float>&, double);
extern template double clipGradNorm<double>(BasicRecurrentLayer<double>&, double);
using SGD = BasicSGD<float>;
using Adam = BasicAdam<float>;

}  // namespace pyrnn
