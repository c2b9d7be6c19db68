// Host test of the training stack's per-element kernel bodies (cuda/src/train_elems.cuh,
// cuda/src/optim_elems.cuh), run on the CPU in plain loops against the CPU functions of
// pyrnn/layers.h and pyrnn/optim.h: every body must reproduce the CPU BITWISE (same formulas, same
// operand order), except Dense's tanh / sigmoid (the CPU's are its vectorised kernels: within
// their bound). Needs no GPU: it checks the kernels' math and indexing, not the launches.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <vector>

#include "optim_elems.cuh"
#include "pyrnn/layers.h"
#include "pyrnn/optim.h"
#include "pyrnn/random.h"
#include "pyrnn/runtime.h"
#include "train_elems.cuh"

#include "check.h"
#include "row_sum_oracle.h"

namespace {

// The C++ tests' harness (cpp/tests/check.h): CHECK / CHECK_THROWS count into its counter.
int& failures = check::failures();

namespace E = pyrnn::cuda::detail;
using pyrnn::Activation;

template <typename T>
std::vector<T> rand_vec(std::size_t n, std::uint64_t seed, double lo = -2.0, double hi = 2.0) {
  std::vector<T> v(n);
  for (std::size_t i = 0; i < n; ++i)
    v[i] = static_cast<T>(lo + (hi - lo) * pyrnn::uniform01(seed, 3, i));
  return v;
}

template <typename T>
bool bitwise(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == b[i])) return false;
  return true;
}

// Within the SIMD activations' documented bound (README, CPU kernels: float32 4e-7 relative;
// float64 2.5 ulps, under 6e-16 relative).
template <typename T>
bool close_rel(const std::vector<T>& a, const std::vector<T>& b, double rel) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(std::fabs(double(a[i]) - double(b[i])) <= rel * std::fabs(double(b[i])) + 1e-30))
      return false;
  return true;
}

// Dense with w = I (in = out): the GEMM is exact, so the CPU's y / dx are its epilogue / dz alone.
// The CPU's tanh / sigmoid are its vectorised ones (float32 on every ISA, float64 on AVX2 /
// AVX-512; the element bodies use the device's or libm's): equal within their bound there;
// bitwise everywhere else.
template <typename T>
void check_dense() {
  const int M = 6, D = 5;
  std::vector<T> eye(D * D, T(0));
  for (int j = 0; j < D; ++j) eye[j * D + j] = T(1);
  const auto x = rand_vec<T>(M * D, 1), b = rand_vec<T>(D, 2), dy = rand_vec<T>(M * D, 3);
  for (int a = 0; a < 4; ++a)
    for (bool bias : {false, true}) {
      const Activation act = static_cast<Activation>(a);
      std::vector<T> want(M * D);
      pyrnn::dense_forward(want.data(), x.data(), eye.data(), bias ? b.data() : nullptr, M, D, D,
                           act);
      std::vector<T> got = x;
      for (std::size_t i = 0; i < got.size(); ++i)
        E::dense_epilogue_elem<T>(i, got.data(), bias ? b.data() : nullptr, D, a);
      const bool simd = (sizeof(T) == 4 || pyrnn::get_cpu_isa() != pyrnn::CpuIsa::Scalar) &&
                        (act == Activation::Tanh || act == Activation::Sigmoid);
      CHECK(simd ? close_rel(got, want, sizeof(T) == 4 ? 4e-7 : 6e-16) : bitwise(got, want));
      // dz = dy * act'(y): the CPU's dx with w = I; db = column sums of dz.
      std::vector<T> dx(M * D), dw(D * D, T(0)), db(D, T(0)), dz(M * D), db2(D, T(0));
      pyrnn::dense_backward(dx.data(), dw.data(), db.data(), dy.data(), want.data(), x.data(),
                            eye.data(), M, D, D, act);
      for (std::size_t i = 0; i < dz.size(); ++i)
        E::dense_dz_elem<T>(i, dz.data(), dy.data(), want.data(), a);
      CHECK(bitwise(dz, dx));
      for (int j = 0; j < D; ++j) E::column_sum_add_elem<T>(j, db2.data(), dz.data(), M, D);
      CHECK(bitwise(db2, db));
    }
}

// LayerNorm bodies, given the CPU's own row statistics.
template <typename T>
void check_layernorm() {
  const int M = 4, D = 9;
  const auto x = rand_vec<T>(M * D, 11, 1.0, 4.0), w = rand_vec<T>(D, 12), b = rand_vec<T>(D, 13);
  const auto dy = rand_vec<T>(M * D, 14);
  std::vector<T> y(M * D), y2(M * D);
  std::vector<double> mean(M), rstd(M);  // kept in double for both precisions
  pyrnn::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), M, D,
                           1e-5);
  for (int m = 0; m < M; ++m) {
    const double mu = lanes8_sum(D, [&](int j) { return static_cast<double>(x[m * D + j]); }) / D;
    const double v = lanes8_sum(D, [&](int j) {
      const double c = x[m * D + j] - mu;
      return c * c;
    });
    const double rs = 1.0 / std::sqrt(v / D + 1e-5);
    CHECK(mu == mean[m] && rs == rstd[m]);
    for (int j = 0; j < D; ++j)
      y2[m * D + j] = E::layernorm_y_elem<T>(x[m * D + j], mu, rs, w[j], b[j]);
  }
  CHECK(bitwise(y2, y));
  std::vector<T> dx(M * D), dw(D, T(0.5)), db(D, T(-0.5)), dx2(M * D), dw2 = dw, db2 = db;
  pyrnn::layernorm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), mean.data(),
                            rstd.data(), w.data(), M, D);
  for (int m = 0; m < M; ++m) {
    const double mu = mean[m], rs = rstd[m];
    const double sg =
        lanes8_sum(D, [&](int j) { return static_cast<double>(dy[m * D + j]) * w[j]; });
    const double sgx = lanes8_sum(D, [&](int j) {
      return static_cast<double>(dy[m * D + j]) * w[j] * ((x[m * D + j] - mu) * rs);
    });
    for (int j = 0; j < D; ++j)
      dx2[m * D + j] = E::layernorm_dx_elem<T>(x[m * D + j], dy[m * D + j], w[j], mu, rs, sg / D,
                                               sgx / D);
  }
  CHECK(bitwise(dx2, dx));
  for (int j = 0; j < D; ++j)
    E::layernorm_params_elem<T>(j, dw2.data(), db2.data(), dy.data(), x.data(), mean.data(),
                                rstd.data(), M, D);
  CHECK(bitwise(dw2, dw));
  CHECK(bitwise(db2, db));
}

template <typename T>
void check_embedding() {
  const int num = 5, dim = 4, M = 9;
  const std::int64_t idx[M] = {3, 1, 3, 0, 3, 1, 4, 2, 3};
  const auto table = rand_vec<T>(num * dim, 21), dy = rand_vec<T>(M * dim, 22);
  std::vector<T> y(M * dim), y2(M * dim);
  pyrnn::embedding_forward(y.data(), idx, table.data(), M, num, dim);
  for (std::size_t i = 0; i < y2.size(); ++i)
    E::embedding_gather_elem<T>(i, y2.data(), idx, table.data(), dim);
  CHECK(bitwise(y2, y));
  // Grouped by hand (padding_idx = 4 left out): rows 0, 1, 2, 3 with ascending positions.
  const std::int64_t rows[4] = {0, 1, 2, 3}, starts[5] = {0, 1, 3, 4, 8};
  const std::int64_t order[8] = {3, 1, 5, 7, 0, 2, 4, 8};
  std::vector<T> dt = rand_vec<T>(num * dim, 23), dt2 = dt;
  pyrnn::embedding_backward(dt.data(), dy.data(), idx, M, num, dim, 4);
  for (std::size_t i = 0; i < 4 * std::size_t(dim); ++i)
    E::embedding_owned_elem<T>(i, dt2.data(), dy.data(), rows, starts, order, dim);
  CHECK(bitwise(dt2, dt));
}

template <typename T>
void check_dropout_last_step() {
  const std::size_t n = 500;
  const auto x = rand_vec<T>(n, 31);
  for (double p : {0.0, 0.4, 1.0}) {
    std::vector<T> y(n), y2(n);
    pyrnn::dropout_forward(y.data(), x.data(), n, 42, p);
    for (std::size_t i = 0; i < n; ++i)
      E::dropout_elem<T>(i, y2.data(), x.data(), 42, p, pyrnn::dropout_scale<T>(p));
    CHECK(bitwise(y2, y));
  }
  const int N = 3, T_ = 4, H = 2;
  const std::int64_t lengths[N] = {2, 4, 1};
  for (int D : {1, 2})
    for (const std::int64_t* lp : {static_cast<const std::int64_t*>(nullptr), lengths}) {
      const int W = D * H;
      const auto xs = rand_vec<T>(std::size_t(N) * T_ * W, 32), dy = rand_vec<T>(N * W, 33);
      std::vector<T> y(N * W), y2(N * W), dx(xs.size()), dx2(xs.size());
      pyrnn::last_step_forward(y.data(), xs.data(), lp, N, T_, H, D);
      pyrnn::last_step_backward(dx.data(), dy.data(), lp, N, T_, H, D);
      for (std::size_t i = 0; i < y2.size(); ++i)
        E::last_step_gather_elem<T>(i, y2.data(), xs.data(), lp, T_, W, H);
      for (std::size_t i = 0; i < dx2.size(); ++i)
        E::last_step_scatter_elem<T>(i, dx2.data(), dy.data(), lp, T_, W, H);
      CHECK(bitwise(y2, y));
      CHECK(bitwise(dx2, dx));
    }
}

template <typename T>
void check_optim() {
  const std::size_t n = 300;
  using Keep = pyrnn::optim::StepKeep<T>;
  // Every step keeps what it overwrites (the second step of each run): the CPU's kept copies
  // and the element bodies' are bitwise equal, and equal to the values before that step.
  for (int variant = 0; variant < 3; ++variant) {
    const double mom = variant ? 0.9 : 0.0, wd = variant == 1 ? 0.01 : 0.0;
    const bool nesterov = variant == 2;
    auto p = rand_vec<T>(n, 41), p2 = p;
    std::vector<T> buf(n, T(0)), buf2 = buf, kp(n), kb(n), kp2(n), kb2(n), was_p, was_b;
    for (int step = 0; step < 3; ++step) {
      const auto g = rand_vec<T>(n, 42 + step);
      Keep k, k2;
      if (step == 1) {
        k.param = kp.data(), k2.param = kp2.data();
        if (mom != 0.0) k.state[0] = kb.data(), k2.state[0] = kb2.data();
        was_p = p, was_b = buf;
      }
      pyrnn::optim::sgd_step(p.data(), g.data(), buf.data(), n, 0.1, mom, 0.0, wd, nesterov,
                             step == 0, &k);
      const auto c = E::sgd_coef<T>(0.1, mom, 0.0, wd, nesterov, step == 0);
      for (std::size_t i = 0; i < n; ++i)
        E::sgd_elem<T>(i, p2.data(), g.data(), buf2.data(), c, k2);
    }
    CHECK(bitwise(p2, p) && bitwise(buf2, buf));
    CHECK(bitwise(kp, was_p) && bitwise(kp2, was_p));
    if (mom != 0.0) CHECK(bitwise(kb, was_b) && bitwise(kb2, was_b));
  }
  for (int variant = 0; variant < 4; ++variant) {
    const bool decoupled = variant & 1, amsgrad = variant & 2;
    const double wd = variant ? 0.05 : 0.0;
    auto p = rand_vec<T>(n, 51), p2 = p;
    std::vector<T> m(n, T(0)), v(n, T(0)), vm(n, T(0)), m2 = m, v2 = v, vm2 = vm;
    std::vector<std::vector<T>> kept(4, std::vector<T>(n)), kept2 = kept, was;
    for (int step = 1; step <= 3; ++step) {
      const auto g = rand_vec<T>(n, 52 + step);
      Keep k, k2;
      if (step == 2) {
        k = {kept[0].data(), {kept[1].data(), kept[2].data(), amsgrad ? kept[3].data() : nullptr}};
        k2 = {kept2[0].data(),
              {kept2[1].data(), kept2[2].data(), amsgrad ? kept2[3].data() : nullptr}};
        was = {p, m, v, vm};
      }
      pyrnn::optim::adam_step(p.data(), g.data(), m.data(), v.data(), vm.data(), n, 1e-2, 0.9,
                              0.999, 1e-8, wd, decoupled, amsgrad, step, &k);
      const auto c = E::adam_coef<T>(1e-2, 0.9, 0.999, 1e-8, wd, decoupled, amsgrad, step);
      for (std::size_t i = 0; i < n; ++i)
        E::adam_elem<T>(i, p2.data(), g.data(), m2.data(), v2.data(), vm2.data(), c, k2);
    }
    CHECK(bitwise(p2, p) && bitwise(m2, m) && bitwise(v2, v) && bitwise(vm2, vm));
    for (int b = 0; b < (amsgrad ? 4 : 3); ++b)
      CHECK(bitwise(kept[b], was[b]) && bitwise(kept2[b], was[b]));
  }
  for (int variant = 0; variant < 3; ++variant) {
    const bool centered = variant == 1;
    const double mom = variant ? 0.8 : 0.0, wd = variant == 2 ? 0.02 : 0.0;
    auto p = rand_vec<T>(n, 61), p2 = p;
    std::vector<T> s(n, T(0)), a(n, T(0)), b(n, T(0)), s2 = s, a2 = a, b2 = b;
    std::vector<std::vector<T>> kept(4, std::vector<T>(n)), kept2 = kept, was;
    for (int step = 0; step < 3; ++step) {
      auto g = rand_vec<T>(n, 62 + step);
      // Last step: gradients whose running mean's square overflows (centred: an Inf variance,
      // a step of 0, as torch; was Inf - Inf = NaN).
      if (step == 2)
        for (std::size_t i = 3; i < n; i += 5) g[i] = T(sizeof(T) == 4 ? 2e21 : 2e156);
      Keep k, k2;
      if (step == 1) {
        k = {kept[0].data(), {kept[1].data(), centered ? kept[2].data() : nullptr,
                              mom > 0 ? kept[3].data() : nullptr}};
        k2 = {kept2[0].data(), {kept2[1].data(), centered ? kept2[2].data() : nullptr,
                                mom > 0 ? kept2[3].data() : nullptr}};
        was = {p, s, a, b};
      }
      pyrnn::optim::rmsprop_step(p.data(), g.data(), s.data(), a.data(), b.data(), n, 1e-2, 0.99,
                                 1e-8, wd, mom, centered, &k);
      const auto c = E::rmsprop_coef<T>(1e-2, 0.99, 1e-8, wd, mom, centered);
      for (std::size_t i = 0; i < n; ++i)
        E::rmsprop_elem<T>(i, p2.data(), g.data(), s2.data(), a2.data(), b2.data(), c, k2);
    }
    CHECK(bitwise(p2, p) && bitwise(s2, s) && bitwise(a2, a) && bitwise(b2, b));
    for (std::size_t i = 3; i < n; i += 5) CHECK(std::isfinite(p[i]));
    for (int j = 0; j < 4; ++j)
      if (j < 2 || (j == 2 && centered) || (j == 3 && mom > 0))
        CHECK(bitwise(kept[j], was[j]) && bitwise(kept2[j], was[j]));
  }
  // Clipping helpers folded as the CPU folds them: exactly its sum_squares (one block of
  // kSquareLanes partial sums, added in a pairwise tree) and max_abs (in order).
  auto x = rand_vec<T>(n, 71);
  double lanes[pyrnn::kernels::kSquareLanes] = {}, m = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    lanes[i % pyrnn::kernels::kSquareLanes] += E::square_elem<T>(x[i]);
    m = E::max_abs_step(m, std::fabs(static_cast<double>(x[i])));
  }
  for (int w = 1; w < pyrnn::kernels::kSquareLanes; w *= 2)
    for (int k = 0; k < pyrnn::kernels::kSquareLanes; k += 2 * w) lanes[k] += lanes[k + w];
  CHECK(lanes[0] == pyrnn::optim::sum_squares(x.data(), n));
  CHECK(m == pyrnn::optim::max_abs(x.data(), n));
  x[7] = std::numeric_limits<T>::quiet_NaN();
  m = 0.0;
  for (T v : x) m = E::max_abs_step(m, std::fabs(static_cast<double>(v)));
  CHECK(std::isnan(m) && std::isnan(pyrnn::optim::max_abs(x.data(), n)));
}

// The NonFinite bits: the CPU step's (vector lanes, tail) equal the OR of the element bodies',
// for a value gone Inf / NaN at the start, inside and at the end; 0 when all stay finite.
template <typename T>
void check_non_finite_bits() {
  const std::size_t n = 37;  // vectors and a tail on every ISA
  const T huge = std::numeric_limits<T>::max() / T(4);
  for (std::size_t at : {std::size_t(0), std::size_t(17), n - 1}) {
    for (int which = 0; which < 3; ++which) {
      auto p = rand_vec<T>(n, 81), g = rand_vec<T>(n, 82);
      std::vector<T> m(n, T(0)), v(n, T(0)), vm(n, T(0));
      // 0: all finite; 1: g^2 overflows Adam's second moment (state); 2: a NaN gradient (both).
      if (which == 1) g[at] = huge;
      if (which == 2) g[at] = std::numeric_limits<T>::quiet_NaN();
      auto p2 = p, m2 = m, v2 = v, vm2 = vm;
      const unsigned bits = pyrnn::optim::adam_step(p.data(), g.data(), m.data(), v.data(),
                                                    vm.data(), n, 1e-2, 0.9, 0.999, 1e-8, 0.0,
                                                    false, true, 1);
      const auto c = E::adam_coef<T>(1e-2, 0.9, 0.999, 1e-8, 0.0, false, true, 1);
      unsigned elem_bits = 0;
      for (std::size_t i = 0; i < n; ++i)
        elem_bits |= E::adam_elem<T>(i, p2.data(), g.data(), m2.data(), v2.data(), vm2.data(), c,
                                     pyrnn::optim::StepKeep<T>{});
      const unsigned want[] = {0u, pyrnn::optim::kStateNonFinite,
                               pyrnn::optim::kParamNonFinite | pyrnn::optim::kStateNonFinite};
      CHECK(bits == want[which] && elem_bits == want[which]);
    }
    // SGD: a step past the largest float makes the parameter Inf; no state without momentum.
    auto p = rand_vec<T>(n, 83), g = rand_vec<T>(n, 84), p2 = p;
    g[at] = huge;
    const unsigned bits = pyrnn::optim::sgd_step(p.data(), g.data(), static_cast<T*>(nullptr), n,
                                                 1e3, 0.0, 0.0, 0.0, false, true);
    const auto c = E::sgd_coef<T>(1e3, 0.0, 0.0, 0.0, false, true);
    unsigned elem_bits = 0;
    for (std::size_t i = 0; i < n; ++i)
      elem_bits |= E::sgd_elem<T>(i, p2.data(), g.data(), static_cast<T*>(nullptr), c,
                                  pyrnn::optim::StepKeep<T>{});
    CHECK(bits == pyrnn::optim::kParamNonFinite && elem_bits == bits);
    // RMSprop centered with momentum: a NaN gradient reaches every buffer.
    auto q = rand_vec<T>(n, 85), gq = rand_vec<T>(n, 86), q2 = q;
    gq[at] = std::numeric_limits<T>::quiet_NaN();
    std::vector<T> s(n, T(0)), a(n, T(0)), b(n, T(0)), s2 = s, a2 = a, b2 = b;
    const unsigned rbits = pyrnn::optim::rmsprop_step(q.data(), gq.data(), s.data(), a.data(),
                                                      b.data(), n, 1e-2, 0.99, 1e-8, 0.0, 0.5,
                                                      true);
    const auto rc = E::rmsprop_coef<T>(1e-2, 0.99, 1e-8, 0.0, 0.5, true);
    unsigned relem = 0;
    for (std::size_t i = 0; i < n; ++i)
      relem |= E::rmsprop_elem<T>(i, q2.data(), gq.data(), s2.data(), a2.data(), b2.data(), rc,
                                  pyrnn::optim::StepKeep<T>{});
    CHECK(rbits == 3u && relem == 3u);
  }
}

template <typename T>
void check_all() {
  // Dense's activations on every ISA: the scalar one's float64 tanh / sigmoid are libm's (bitwise
  // the element bodies'), the others' vectorised.
  const pyrnn::CpuIsa isa = pyrnn::get_cpu_isa();
  for (pyrnn::CpuIsa each : pyrnn::available_isas()) {
    pyrnn::set_cpu_isa(each);
    check_dense<T>();
  }
  pyrnn::set_cpu_isa(isa);
  check_layernorm<T>();
  check_embedding<T>();
  check_dropout_last_step<T>();
  check_optim<T>();
  check_non_finite_bits<T>();
}

}  // namespace

int main() {
  check_all<float>();
  check_all<double>();
  std::printf("%s (%d failures)\n", failures ? "FAIL" : "OK", failures);
  return failures ? 1 : 0;
}
