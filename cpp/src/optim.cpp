// The optimizer steps and clipping reductions: argument checks, the step's coefficients, and the
// element loops of the selected ISA (src/kernels/optim_loops_isa.inc) over the threads.
#include "pyrnn/optim.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <vector>

#include "pyrnn/error.h"
#include "pyrnn/kernels/optim_loops.h"
#include "pyrnn/runtime.h"
#include "pyrnn/train_checks.h"
#include "team.h"

namespace pyrnn {
namespace optim {

namespace {

using kernels::optim_loops;

// Threads for an element-wise pass over n elements: one below ~64k (tens of us on one core),
// where a fork/join costs more than it saves. The split never changes the bits (team.h).
inline int element_threads(std::size_t n) {
  return n < (std::size_t(1) << 16) ? 1 : get_num_threads();
}
constexpr std::size_t kGrain = 16;  // elements: shares start on whole cache lines of floats

// sum_squares adds fixed blocks of this many elements (each in the ISA loop's fixed partial
// sums), then the block sums in block order: a shape set by n alone, so any thread count gives
// the same bits.
constexpr std::size_t kSquareBlock = std::size_t(1) << 15;

template <typename T>
detail::KeepPtrs erased(const StepKeep<T>* keep) {
  detail::KeepPtrs k;
  if (keep) k = {keep->param, {keep->state[0], keep->state[1], keep->state[2]}};
  return k;
}

}  // namespace

template <typename T>
unsigned sgd_step(T* param, const T* grad, T* buf, std::size_t n, double lr, double momentum,
                  double dampening, double weight_decay, bool nesterov, bool first_step,
                  const StepKeep<T>* keep) {
  detail::check_sgd(n, param, grad, buf, momentum, sizeof(T), erased(keep));
  const StepKeep<T> k = keep ? *keep : StepKeep<T>{};
  if (n == 0) return 0;
  const auto c = kernels::sgd_coef<T>(lr, momentum, dampening, weight_decay, nesterov, first_step);
  const auto& L = optim_loops<T>();
  std::atomic<unsigned> bad{0};
  detail::for_shares(n, element_threads(n), kGrain, [&](std::size_t i0, std::size_t i1) {
    bad.fetch_or(L.sgd(i0, i1, param, grad, buf, c, k));
  });
  return bad.load();
}

template <typename T>
unsigned adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq,
                   std::size_t n, double lr, double beta1, double beta2, double eps,
                   double weight_decay, bool decoupled, bool amsgrad, std::int64_t step,
                   const StepKeep<T>* keep) {
  detail::check_adam(n, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, amsgrad, step,
                     sizeof(T), erased(keep));
  const StepKeep<T> k = keep ? *keep : StepKeep<T>{};
  if (n == 0) return 0;
  const auto c = kernels::adam_coef<T>(lr, beta1, beta2, eps, weight_decay, decoupled, amsgrad,
                                       step);
  const auto& L = optim_loops<T>();
  std::atomic<unsigned> bad{0};
  detail::for_shares(n, element_threads(n), kGrain, [&](std::size_t i0, std::size_t i1) {
    bad.fetch_or(L.adam(i0, i1, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, c, k));
  });
  return bad.load();
}

template <typename T>
unsigned rmsprop_step(T* param, const T* grad, T* square_avg, T* grad_avg, T* buf,
                      std::size_t n, double lr, double alpha, double eps, double weight_decay,
                      double momentum, bool centered, const StepKeep<T>* keep) {
  detail::check_rmsprop(n, param, grad, square_avg, grad_avg, buf, centered, momentum,
                        sizeof(T), erased(keep));
  const StepKeep<T> k = keep ? *keep : StepKeep<T>{};
  if (n == 0) return 0;
  const auto c = kernels::rmsprop_coef<T>(lr, alpha, eps, weight_decay, momentum, centered);
  const auto& L = optim_loops<T>();
  std::atomic<unsigned> bad{0};
  detail::for_shares(n, element_threads(n), kGrain, [&](std::size_t i0, std::size_t i1) {
    bad.fetch_or(L.rmsprop(i0, i1, param, grad, square_avg, grad_avg, buf, c, k));
  });
  return bad.load();
}

template <typename T>
double sum_squares(const T* x, std::size_t n) {
  detail::check_vector("sum_squares", x, n);
  const auto& L = optim_loops<T>();
  const std::size_t blocks = (n + kSquareBlock - 1) / kSquareBlock;
  if (blocks <= 1) return n ? L.sum_squares(x, n) : 0.0;
  std::vector<double> part(blocks);  // [blocks]
  detail::for_shares(blocks, element_threads(n), 1, [&](std::size_t b0, std::size_t b1) {
    for (std::size_t b = b0; b < b1; ++b)
      part[b] = L.sum_squares(x + b * kSquareBlock, std::min(kSquareBlock, n - b * kSquareBlock));
  });
  double s = 0.0;
  for (double p : part) s += p;
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
  const auto& L = optim_loops<T>();
  // Pieces of 64k elements: a share stops at the next piece once another share found one.
  constexpr std::size_t kPiece = std::size_t(1) << 16;
  std::atomic<bool> bad{false};
  detail::for_shares(n, element_threads(n), kGrain, [&](std::size_t i0, std::size_t i1) {
    for (std::size_t i = i0; i < i1 && !bad.load(std::memory_order_relaxed); i += kPiece)
      if (!L.all_finite(x + i, std::min(kPiece, i1 - i)))
        bad.store(true, std::memory_order_relaxed);
  });
  return !bad.load();
}

template <typename T>
void scale_inplace(T* x, std::size_t n, double scale) {
  detail::check_vector("scale_inplace", x, n);
  const T s = static_cast<T>(scale);
  const auto& L = optim_loops<T>();
  detail::for_shares(n, element_threads(n), kGrain,
                     [&](std::size_t i0, std::size_t i1) { L.scale(i0, i1, x, s); });
}

#define PYRNN_INSTANTIATE_OPTIM(T)                                                           \
  template unsigned sgd_step<T>(T*, const T*, T*, std::size_t, double, double, double, double, \
                                bool, bool, const StepKeep<T>*);                               \
  template unsigned adam_step<T>(T*, const T*, T*, T*, T*, std::size_t, double, double,        \
                                 double, double, double, bool, bool, std::int64_t,             \
                                 const StepKeep<T>*);                                          \
  template unsigned rmsprop_step<T>(T*, const T*, T*, T*, T*, std::size_t, double, double,     \
                                    double, double, double, bool, const StepKeep<T>*);         \
  template double sum_squares<T>(const T*, std::size_t);                                       \
  template double max_abs<T>(const T*, std::size_t);                                           \
  template void scale_inplace<T>(T*, std::size_t, double);                                     \
  template bool all_finite<T>(const T*, std::size_t);

PYRNN_INSTANTIATE_OPTIM(float)
PYRNN_INSTANTIATE_OPTIM(double)
#undef PYRNN_INSTANTIATE_OPTIM

}  // namespace optim
}  // namespace pyrnn
