// cuda::optim: mirrors cpp/src/optim.cpp (see pyrnn/cuda/optim.h). Coefficients are computed on
// the host by pyrnn/kernels/optim_loops.h's *_coef (the CPU's own functions), then one kernel per
// call.
#include <cuda_runtime.h>

#include <cmath>
#include <vector>

#include "optim_elems.cuh"
#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/optim.h"
#include "pyrnn/error.h"
#include "pyrnn/train_checks.h"
#include "train_common.cuh"
#include "train_kernels.cuh"

namespace pyrnn {
namespace cuda {
namespace optim {

namespace {
template <typename T>
pyrnn::optim::StepKeep<T> given(const pyrnn::optim::StepKeep<T>* keep) {
  return keep ? *keep : pyrnn::optim::StepKeep<T>{};
}
template <typename T>
pyrnn::detail::KeepPtrs erased(const pyrnn::optim::StepKeep<T>* keep) {
  const pyrnn::optim::StepKeep<T> k = given(keep);
  return {k.param, {k.state[0], k.state[1], k.state[2]}};
}

// Runs launch(bad) on the scope's stream with the context's flag word zeroed; returns its bits
// once the step is complete.
template <typename Launch>
unsigned flagged(Context& ctx, detail::CallScope& scope, Launch launch) {
  unsigned* bad = ctx.step_flags();
  PYRNN_CUDA_CHECK(cudaMemsetAsync(bad, 0, sizeof(unsigned), scope.stream()));
  launch(bad);
  unsigned bits = 0;
  PYRNN_CUDA_CHECK(
      cudaMemcpyAsync(&bits, bad, sizeof(unsigned), cudaMemcpyDeviceToHost, scope.stream()));
  scope.synchronize();
  return bits;
}
}  // namespace

template <typename T>
unsigned sgd_step(Context& ctx, T* param, const T* grad, T* buf, std::size_t n, double lr,
                  double momentum, double dampening, double weight_decay, bool nesterov,
                  bool first_step, const pyrnn::optim::StepKeep<T>* keep) {
  pyrnn::detail::check_sgd(n, param, grad, buf, momentum, sizeof(T), erased(keep));
  detail::CallScope scope(ctx);
  const auto c = detail::sgd_coef<T>(lr, momentum, dampening, weight_decay, nesterov, first_step);
  return flagged(ctx, scope, [&](unsigned* bad) {
    detail::sgd_update<T>(param, grad, buf, n, c, given(keep), bad, scope.stream());
  });
}

template <typename T>
unsigned adam_step(Context& ctx, T* param, const T* grad, T* exp_avg, T* exp_avg_sq,
                   T* max_exp_avg_sq, std::size_t n, double lr, double beta1, double beta2,
                   double eps, double weight_decay, bool decoupled, bool amsgrad,
                   std::int64_t step, const pyrnn::optim::StepKeep<T>* keep) {
  pyrnn::detail::check_adam(n, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, amsgrad, step,
                            sizeof(T), erased(keep));
  detail::CallScope scope(ctx);
  const auto c = detail::adam_coef<T>(lr, beta1, beta2, eps, weight_decay, decoupled, amsgrad,
                                      step);
  return flagged(ctx, scope, [&](unsigned* bad) {
    detail::adam_update<T>(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, n, c, given(keep),
                           bad, scope.stream());
  });
}

template <typename T>
unsigned rmsprop_step(Context& ctx, T* param, const T* grad, T* square_avg, T* grad_avg,
                      T* buf, std::size_t n, double lr, double alpha, double eps,
                      double weight_decay, double momentum, bool centered,
                      const pyrnn::optim::StepKeep<T>* keep) {
  pyrnn::detail::check_rmsprop(n, param, grad, square_avg, grad_avg, buf, centered, momentum,
                               sizeof(T), erased(keep));
  detail::CallScope scope(ctx);
  const auto c = detail::rmsprop_coef<T>(lr, alpha, eps, weight_decay, momentum, centered);
  return flagged(ctx, scope, [&](unsigned* bad) {
    detail::rmsprop_update<T>(param, grad, square_avg, grad_avg, buf, n, c, given(keep), bad,
                              scope.stream());
  });
}

namespace {
// Per-block partials of a fixed-shape reduction, copied back (block order preserved).
template <typename T, typename Launch>
std::vector<double> partials_of(Context& ctx, const T* x, std::size_t n, Launch launch) {
  const unsigned blocks = detail::reduce_blocks(n);
  detail::CallScope scope(ctx);
  DeviceBuffer<double> d_part(blocks);  // [blocks]
  launch(d_part.data(), x, n, blocks, scope.stream());
  std::vector<double> part(blocks);
  d_part.copy_to_host(part.data(), blocks, scope.stream());  // ordered after the kernel; waits
  return part;
}
}  // namespace

template <typename T>
double sum_squares(Context& ctx, const T* x, std::size_t n) {
  pyrnn::detail::check_vector("sum_squares", x, n);
  if (n == 0) return 0.0;
  double s = 0.0;
  for (double p : partials_of<T>(ctx, x, n, detail::sum_squares_partials<T>)) s += p;
  return s;
}

template <typename T>
double max_abs(Context& ctx, const T* x, std::size_t n) {
  pyrnn::detail::check_vector("max_abs", x, n);
  if (n == 0) return 0.0;
  double m = 0.0;
  for (double p : partials_of<T>(ctx, x, n, detail::max_abs_partials<T>))
    m = detail::max_abs_step(m, p);
  return m;
}

template <typename T>
void scale_inplace(Context& ctx, T* x, std::size_t n, double scale) {
  pyrnn::detail::check_vector("scale_inplace", x, n);
  detail::CallScope scope(ctx);
  detail::scale_elems<T>(x, n, static_cast<T>(scale), scope.stream());
  scope.synchronize();
}

template <typename T>
void zero(Context& ctx, T* x, std::size_t n) {
  pyrnn::detail::check_vector("zero", x, n);
  if (n == 0) return;
  detail::CallScope scope(ctx);
  PYRNN_CUDA_CHECK(cudaMemsetAsync(x, 0, n * sizeof(T), scope.stream()));
  scope.synchronize();
}

#define PYRNN_INSTANTIATE_OPTIM(T)                                                          \
  template unsigned sgd_step<T>(Context&, T*, const T*, T*, std::size_t, double, double,      \
                                double, double, bool, bool,                                   \
                                const pyrnn::optim::StepKeep<T>*);                            \
  template unsigned adam_step<T>(Context&, T*, const T*, T*, T*, T*, std::size_t, double,     \
                                 double, double, double, double, bool, bool, std::int64_t,    \
                                 const pyrnn::optim::StepKeep<T>*);                           \
  template unsigned rmsprop_step<T>(Context&, T*, const T*, T*, T*, T*, std::size_t, double,  \
                                    double, double, double, double, bool,                     \
                                    const pyrnn::optim::StepKeep<T>*);                        \
  template double sum_squares<T>(Context&, const T*, std::size_t);                           \
  template double max_abs<T>(Context&, const T*, std::size_t);                               \
  template void scale_inplace<T>(Context&, T*, std::size_t, double);                         \
  template void zero<T>(Context&, T*, std::size_t);

PYRNN_INSTANTIATE_OPTIM(float)
PYRNN_INSTANTIATE_OPTIM(double)
#undef PYRNN_INSTANTIATE_OPTIM

}  // namespace optim
}  // namespace cuda
}  // namespace pyrnn
