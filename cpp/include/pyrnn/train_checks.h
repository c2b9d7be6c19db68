// Argument checks of the training stack's free functions (<pyrnn/layers.h>, <pyrnn/optim.h>),
// shared by the CPU (src/layers.cpp, src/optim.cpp) and CUDA (cuda/src/layers.cu, optim.cu)
// twins so that both refuse the same calls with the same messages, before anything is read or
// written.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <utility>

#include "pyrnn/error.h"
#include "pyrnn/layers.h"

namespace pyrnn::detail {

inline void check_layer_sizes(const char* what, std::int64_t M, std::int64_t a, std::int64_t b) {
  PYRNN_CHECK(M >= 0, what, ": row count must be >= 0, got ", M);
  PYRNN_CHECK(a >= 1 && b >= 1, what, ": sizes must be >= 1, got ", a, " and ", b);
  PYRNN_CHECK(a <= 2147483647 && b <= 2147483647, what, ": size too large (", a, ", ", b, ")");
}

// Each named buffer must be given (non-null). Callers list the ones a call touches: data
// buffers only when there are rows (M = 0 reads none), weights and accumulated gradients always.
inline void check_given(const char* what,
                        std::initializer_list<std::pair<const char*, const void*>> buffers) {
  for (const auto& [name, ptr] : buffers) PYRNN_CHECK(ptr, what, ": null ", name, " buffer");
}

// An out-of-range enum value would otherwise fall through to the identity.
inline void check_activation(const char* what, Activation act) {
  const int a = static_cast<int>(act);
  PYRNN_CHECK(a >= 0 && a <= 3, what, ": unknown activation ", a,
              " (None = 0, ReLU = 1, Tanh = 2, Sigmoid = 3)");
}

// Dense: what each pass reads (b and, in backward, db and dx may be null; M = 0 reads no rows).
inline void check_dense_forward(std::int64_t M, std::int64_t in, std::int64_t out, Activation act,
                                const void* y, const void* x, const void* w) {
  check_layer_sizes("dense_forward", M, in, out);
  check_activation("dense_forward", act);
  check_given("dense_forward", {{"w", w}});
  if (M > 0) check_given("dense_forward", {{"y", y}, {"x", x}});
}

inline void check_dense_backward(std::int64_t M, std::int64_t in, std::int64_t out, Activation act,
                                 const void* dx, const void* dw, const void* dy, const void* y,
                                 const void* x, const void* w) {
  check_layer_sizes("dense_backward", M, in, out);
  check_activation("dense_backward", act);
  check_given("dense_backward", {{"dw", dw}});
  if (M > 0) check_given("dense_backward", {{"dy", dy}, {"x", x}});
  if (M > 0 && act != Activation::None) check_given("dense_backward", {{"y", y}});
  if (M > 0 && dx) check_given("dense_backward", {{"w", w}});  // w only makes dx
}

// Whether [a, a + a_bytes) and [b, b + b_bytes) share no byte (no address arithmetic that could
// wrap: the sizes are of buffers the caller says exist).
inline bool disjoint(const void* a, std::uint64_t a_bytes, const void* b, std::uint64_t b_bytes) {
  const std::uintptr_t p = reinterpret_cast<std::uintptr_t>(a);
  const std::uintptr_t q = reinterpret_cast<std::uintptr_t>(b);
  return p < q ? q - p >= a_bytes : p - q >= b_bytes;
}

// LayerNorm forward: what it reads and writes. x_keep, when given, is one more [M, D] buffer,
// written before w and b are read: it must share no byte with any other (y may alias x).
inline void check_layernorm_forward(std::int64_t M, int D, double eps, const void* y,
                                    const void* mean, const void* rstd, const void* x,
                                    const void* w, const void* b, const void* x_keep,
                                    std::size_t elem_size) {
  check_layer_sizes("layernorm_forward", M, D, 1);
  if (M > 0)
    check_given("layernorm_forward", {{"y", y}, {"mean", mean}, {"rstd", rstd}, {"x", x},
                                      {"w", w}, {"b", b}});
  PYRNN_CHECK(eps >= 0.0, "layernorm_forward: eps must be >= 0, got ", eps);
  if (M > 0 && x_keep) {
    const std::uint64_t rows = static_cast<std::uint64_t>(M);
    PYRNN_CHECK(rows <= UINT64_MAX / static_cast<std::uint64_t>(D) / elem_size,
                "layernorm_forward: M * D = ", M, " * ", D, " elements is beyond any buffer");
    const std::uint64_t n = rows * static_cast<std::uint64_t>(D) * elem_size;  // [M, D]
    const std::uint64_t d = static_cast<std::uint64_t>(D) * elem_size;         // [D]
    const std::uint64_t m = rows * sizeof(double);                              // [M]
    const std::pair<const char*, bool> others[] = {
        {"x", disjoint(x_keep, n, x, n)},       {"y", disjoint(x_keep, n, y, n)},
        {"w", disjoint(x_keep, n, w, d)},       {"b", disjoint(x_keep, n, b, d)},
        {"mean", disjoint(x_keep, n, mean, m)}, {"rstd", disjoint(x_keep, n, rstd, m)}};
    for (const auto& [name, apart] : others)
      PYRNN_CHECK(apart, "layernorm_forward: x_keep overlaps ", name);
  }
}

// Every index checked before anything is written, so a refused call leaves y / dtable as they
// were. idx is host memory on both backends.
inline void check_index(std::int64_t k, std::int64_t m, std::int64_t num) {
  PYRNN_CHECK(k >= 0 && k < num, "embedding index ", k, " at position ", m, " is outside [0, ",
              num, ")");
}

inline void check_indices(const char* what, const std::int64_t* idx, std::int64_t M,
                          std::int64_t num) {
  PYRNN_CHECK(M == 0 || idx, what, ": null index array");
  for (std::int64_t m = 0; m < M; ++m) check_index(idx[m], m, num);
}

inline void check_last_step(const char* what, const std::int64_t* lengths, int N, int T_, int H,
                            int D) {
  PYRNN_CHECK(N >= 1 && T_ >= 1 && H >= 1 && (D == 1 || D == 2), what, ": bad sizes N=", N,
              " T=", T_, " H=", H, " D=", D);
  if (lengths)
    for (int n = 0; n < N; ++n)
      PYRNN_CHECK(lengths[n] >= 1 && lengths[n] <= T_, what, ": lengths[", n, "] = ", lengths[n],
                  " is outside [1, ", T_, "]");
}

// Optimizer steps over n elements (n = 0 touches nothing): the buffers each one reads, and
// that the buffers a step uses, [n] elements of elem_size bytes each, do not overlap (threads and
// vectors would see each other's writes in an order of their own). Null entries are buffers the
// step does not use.
inline void check_apart(const char* what, std::size_t n, std::size_t elem_size,
                        std::initializer_list<std::pair<const char*, const void*>> buffers) {
  PYRNN_CHECK(n <= SIZE_MAX / elem_size, what, ": ", n, " elements are beyond any buffer");
  const std::uint64_t bytes = static_cast<std::uint64_t>(n) * elem_size;
  for (auto a = buffers.begin(); a != buffers.end(); ++a)
    for (auto b = a + 1; b != buffers.end(); ++b)
      PYRNN_CHECK(!a->second || !b->second || disjoint(a->second, bytes, b->second, bytes), what,
                  ": ", a->first, " and ", b->first, " overlap; each must be a buffer of its own");
}

// A step's keep buffers (pyrnn::optim::StepKeep), type-erased: param, then state[0..2].
struct KeepPtrs {
  const void* param = nullptr;
  const void* state[3] = {nullptr, nullptr, nullptr};
};

// A keep buffer given for a state buffer the step does not write would keep nothing: refused.
inline void check_keep_used(const char* what, const KeepPtrs& keep,
                            std::initializer_list<std::pair<const char*, bool>> state_used) {
  int k = 0;
  for (const auto& [name, used] : state_used) {
    PYRNN_CHECK(!keep.state[k] || used, what, ": keep.state[", k, "] is given, but the step ",
                "writes no ", name);
    ++k;
  }
  for (; k < 3; ++k)
    PYRNN_CHECK(!keep.state[k], what, ": keep.state[", k, "] is given, but the step has only ",
                state_used.size(), " state buffer", state_used.size() == 1 ? "" : "s");
}

inline void check_sgd(std::size_t n, const void* param, const void* grad, const void* buf,
                      double momentum, std::size_t elem_size, const KeepPtrs& keep = {}) {
  if (n == 0) return;
  check_given("sgd_step", {{"param", param}, {"grad", grad}});
  PYRNN_CHECK(momentum == 0.0 || buf, "sgd_step: momentum needs a buffer");
  check_keep_used("sgd_step", keep, {{"momentum buffer (momentum is 0)", momentum != 0.0}});
  check_apart("sgd_step", n, elem_size,
              {{"param", param},
               {"grad", grad},
               {"momentum buffer", momentum != 0.0 ? buf : nullptr},
               {"keep.param", keep.param},
               {"keep.state[0]", keep.state[0]}});
}

inline void check_adam(std::size_t n, const void* param, const void* grad, const void* exp_avg,
                       const void* exp_avg_sq, const void* max_exp_avg_sq, bool amsgrad,
                       std::int64_t step, std::size_t elem_size, const KeepPtrs& keep = {}) {
  PYRNN_CHECK(step >= 1, "adam_step: step must be >= 1, got ", step);
  if (n == 0) return;
  check_given("adam_step", {{"param", param}, {"grad", grad}, {"exp_avg", exp_avg},
                            {"exp_avg_sq", exp_avg_sq}});
  PYRNN_CHECK(!amsgrad || max_exp_avg_sq, "adam_step: amsgrad needs max_exp_avg_sq");
  check_keep_used("adam_step", keep, {{"exp_avg", true}, {"exp_avg_sq", true},
                                      {"max_exp_avg_sq (amsgrad is off)", amsgrad}});
  check_apart("adam_step", n, elem_size,
              {{"param", param}, {"grad", grad}, {"exp_avg", exp_avg}, {"exp_avg_sq", exp_avg_sq},
               {"max_exp_avg_sq", amsgrad ? max_exp_avg_sq : nullptr},
               {"keep.param", keep.param}, {"keep.state[0]", keep.state[0]},
               {"keep.state[1]", keep.state[1]}, {"keep.state[2]", keep.state[2]}});
}

inline void check_rmsprop(std::size_t n, const void* param, const void* grad,
                          const void* square_avg, const void* grad_avg, const void* buf,
                          bool centered, double momentum, std::size_t elem_size,
                          const KeepPtrs& keep = {}) {
  if (n == 0) return;
  check_given("rmsprop_step", {{"param", param}, {"grad", grad}, {"square_avg", square_avg}});
  PYRNN_CHECK(!centered || grad_avg, "rmsprop_step: centered needs grad_avg");
  PYRNN_CHECK(!(momentum > 0.0) || buf, "rmsprop_step: momentum needs a buffer");
  check_keep_used("rmsprop_step", keep, {{"square_avg", true},
                                         {"grad_avg (centered is off)", centered},
                                         {"momentum buffer (momentum is 0)", momentum > 0.0}});
  check_apart("rmsprop_step", n, elem_size,
              {{"param", param}, {"grad", grad}, {"square_avg", square_avg},
               {"grad_avg", centered ? grad_avg : nullptr},
               {"momentum buffer", momentum > 0.0 ? buf : nullptr},
               {"keep.param", keep.param}, {"keep.state[0]", keep.state[0]},
               {"keep.state[1]", keep.state[1]}, {"keep.state[2]", keep.state[2]}});
}

// sum_squares, max_abs, scale_inplace, zero: x [n].
inline void check_vector(const char* what, const void* x, std::size_t n) {
  if (n > 0) check_given(what, {{"x", x}});
}

}  // namespace pyrnn::detail
