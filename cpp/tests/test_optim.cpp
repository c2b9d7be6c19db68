// The optimizer steps and clipping reductions on every ISA and thread count: bitwise the plain
// scalar loops of their formulas (pyrnn/optim.h), and sum_squares bitwise its documented shape
// (blocks of 2^15 elements, 16 partial sums each, a pairwise tree), whatever the split. Also
// the overlap checks. (cuda/tests/test_train_elems.cpp checks the same loops against the CUDA
// element bodies; the Python suite checks them against torch.optim.)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "check.h"
#include "pyrnn/error.h"
#include "pyrnn/kernels/optim_loops.h"
#include "pyrnn/optim.h"
#include "pyrnn/random.h"
#include "pyrnn/runtime.h"

namespace {

using pyrnn::CpuIsa;

template <typename T>
std::vector<T> rand_vec(std::size_t n, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::vector<T> v(n);
  for (std::size_t i = 0; i < n; ++i)
    v[i] = static_cast<T>(lo + (hi - lo) * pyrnn::uniform01(seed, 3, i));
  return v;
}

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// ---- the oracles: the formulas of pyrnn/optim.h as plain scalar loops ------------------------
template <typename T>
T lerp(T a, T b, T w) {
  return w < T(0.5) ? a + w * (b - a) : b - (b - a) * (T(1) - w);
}

template <typename T>
void sgd_oracle(std::vector<T>& p, const std::vector<T>& grad, std::vector<T>& buf, double lr,
                double momentum, double weight_decay, bool nesterov, bool first) {
  const T lr_t = static_cast<T>(lr), mom = static_cast<T>(momentum);
  const T wd = static_cast<T>(weight_decay), damp = T(1);
  for (std::size_t i = 0; i < p.size(); ++i) {
    T g = grad[i];
    if (weight_decay != 0.0) g += wd * p[i];
    if (momentum != 0.0) {
      buf[i] = first ? g : mom * buf[i] + damp * g;
      g = nesterov ? g + mom * buf[i] : buf[i];
    }
    p[i] -= lr_t * g;
  }
}

template <typename T>
void adam_oracle(std::vector<T>& p, const std::vector<T>& grad, std::vector<T>& m,
                 std::vector<T>& v, std::vector<T>& vmax, double lr, double wd, bool decoupled,
                 bool amsgrad, int step) {
  const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  const T step_size = static_cast<T>(lr / (1.0 - std::pow(beta1, step)));
  const T bc2_sqrt = static_cast<T>(std::sqrt(1.0 - std::pow(beta2, step)));
  const T w1 = static_cast<T>(1.0 - beta1), b2 = static_cast<T>(beta2);
  const T w2 = static_cast<T>(1.0 - beta2), eps_t = static_cast<T>(eps);
  const T wd_t = static_cast<T>(wd), shrink = static_cast<T>(1.0 - lr * wd);
  for (std::size_t i = 0; i < p.size(); ++i) {
    T g = grad[i];
    if (wd != 0.0) {
      if (decoupled) p[i] *= shrink;
      else g += wd_t * p[i];
    }
    m[i] = lerp(m[i], g, w1);
    v[i] = v[i] * b2 + w2 * g * g;
    T s = v[i];
    if (amsgrad) {
      vmax[i] = vmax[i] < s ? s : vmax[i];
      s = vmax[i];
    }
    const T denom = std::sqrt(s) / bc2_sqrt + eps_t;
    p[i] -= (step_size * m[i]) / denom;
  }
}

template <typename T>
void rmsprop_oracle(std::vector<T>& p, const std::vector<T>& grad, std::vector<T>& sq,
                    std::vector<T>& ga, std::vector<T>& buf, double wd, double momentum,
                    bool centered) {
  const T lr = static_cast<T>(1e-2), a = static_cast<T>(0.99), w = static_cast<T>(1.0 - 0.99);
  const T eps = static_cast<T>(1e-8), wd_t = static_cast<T>(wd), mom = static_cast<T>(momentum);
  for (std::size_t i = 0; i < p.size(); ++i) {
    T g = grad[i];
    if (wd != 0.0) g += wd_t * p[i];
    sq[i] = sq[i] * a + w * g * g;
    T avg;
    if (centered) {
      ga[i] = lerp(ga[i], g, w);
      avg = std::sqrt(sq[i] - ga[i] * ga[i]) + eps;
    } else {
      avg = std::sqrt(sq[i]) + eps;
    }
    if (momentum > 0.0) {
      buf[i] = buf[i] * mom + g / avg;
      p[i] -= lr * buf[i];
    } else {
      p[i] -= (lr * g) / avg;
    }
  }
}

template <typename T>
double sum_squares_oracle(const std::vector<T>& x) {
  constexpr std::size_t kBlock = std::size_t(1) << 15;
  constexpr int L = pyrnn::kernels::kSquareLanes;
  double total = 0.0;
  for (std::size_t b0 = 0; b0 < x.size(); b0 += kBlock) {
    double lanes[L] = {};
    for (std::size_t i = b0; i < std::min(x.size(), b0 + kBlock); ++i)
      lanes[(i - b0) % L] += static_cast<double>(x[i]) * x[i];
    for (int w = 1; w < L; w *= 2)
      for (int k = 0; k < L; k += 2 * w) lanes[k] += lanes[k + w];
    total += lanes[0];
  }
  return total;
}

struct Restore {
  CpuIsa isa = pyrnn::get_cpu_isa();
  int threads = pyrnn::get_num_threads();
  ~Restore() {
    pyrnn::set_cpu_isa(isa);
    pyrnn::set_num_threads(threads);
  }
};

// f() on every ISA and 1, 2, 3 threads, with a label for a failure's message.
template <typename F>
void everywhere(F&& f) {
  Restore restore;
  for (CpuIsa isa : pyrnn::available_isas())
    for (int threads : {1, 2, 3}) {
      pyrnn::set_cpu_isa(isa);
      pyrnn::set_num_threads(threads);
      if (!f()) std::fprintf(stderr, "  on %s, %d threads\n", pyrnn::isa_name(isa), threads);
    }
}

// Sizes around the vector widths, and past the 64k-element thread threshold with a ragged tail.
const std::size_t kSizes[] = {1, 3, 16, 17, 100, 70001};

template <typename T>
void steps_bits() {
  for (std::size_t n : kSizes) {
    const auto p0 = rand_vec<T>(n, 1), g1 = rand_vec<T>(n, 2), g2 = rand_vec<T>(n, 3);
    // SGD: plain, weight decay + momentum, Nesterov; two steps (the first sets the buffer).
    for (int variant = 0; variant < 3; ++variant) {
      const double mom = variant ? 0.9 : 0.0, wd = variant == 1 ? 0.01 : 0.0;
      const bool nesterov = variant == 2;
      std::vector<T> want = p0, wbuf(n, T(0));
      sgd_oracle(want, g1, wbuf, 0.1, mom, wd, nesterov, true);
      sgd_oracle(want, g2, wbuf, 0.1, mom, wd, nesterov, false);
      everywhere([&] {
        std::vector<T> p = p0, buf(n, T(0)), kp(n), kb(n);
        pyrnn::optim::sgd_step(p.data(), g1.data(), buf.data(), n, 0.1, mom, 0.0, wd, nesterov,
                               true);
        const std::vector<T> was_p = p, was_b = buf;  // the second step keeps these
        pyrnn::optim::StepKeep<T> keep;
        keep.param = kp.data();
        if (mom != 0.0) keep.state[0] = kb.data();
        pyrnn::optim::sgd_step(p.data(), g2.data(), buf.data(), n, 0.1, mom, 0.0, wd, nesterov,
                               false, &keep);
        const bool ok = same_bits(p, want) && same_bits(buf, wbuf) && same_bits(kp, was_p) &&
                        (mom == 0.0 || same_bits(kb, was_b));
        CHECK(ok);
        return ok;
      });
    }
    // Adam / AdamW, with and without amsgrad and weight decay.
    for (int variant = 0; variant < 6; ++variant) {
      const bool decoupled = variant & 1, amsgrad = variant & 2;
      const double wd = variant >= 4 ? 0.0 : 0.05;
      std::vector<T> want = p0, wm(n, T(0)), wv(n, T(0)), wx(n, T(0));
      adam_oracle(want, g1, wm, wv, wx, 1e-2, wd, decoupled, amsgrad, 1);
      adam_oracle(want, g2, wm, wv, wx, 1e-2, wd, decoupled, amsgrad, 2);
      everywhere([&] {
        std::vector<T> p = p0, m(n, T(0)), v(n, T(0)), x(n, T(0));
        std::vector<std::vector<T>> kept(4, std::vector<T>(n)), was;
        for (int step = 1; step <= 2; ++step) {
          pyrnn::optim::StepKeep<T> keep;
          if (step == 2) {
            keep = {kept[0].data(), {kept[1].data(), kept[2].data(),
                                     amsgrad ? kept[3].data() : nullptr}};
            was = {p, m, v, x};
          }
          pyrnn::optim::adam_step(p.data(), (step == 1 ? g1 : g2).data(), m.data(), v.data(),
                                  amsgrad ? x.data() : nullptr, n, 1e-2, 0.9, 0.999, 1e-8, wd,
                                  decoupled, amsgrad, step, &keep);
        }
        bool ok = same_bits(p, want) && same_bits(m, wm) && same_bits(v, wv) &&
                  same_bits(x, wx);
        for (int b = 0; b < (amsgrad ? 4 : 3); ++b) ok = ok && same_bits(kept[b], was[b]);
        CHECK(ok);
        return ok;
      });
    }
    // RMSprop: plain, centered + momentum, weight decay + momentum.
    for (int variant = 0; variant < 3; ++variant) {
      const bool centered = variant == 1;
      const double mom = variant ? 0.8 : 0.0, wd = variant == 2 ? 0.02 : 0.0;
      std::vector<T> want = p0, ws(n, T(0)), wa(n, T(0)), wb(n, T(0));
      rmsprop_oracle(want, g1, ws, wa, wb, wd, mom, centered);
      rmsprop_oracle(want, g2, ws, wa, wb, wd, mom, centered);
      everywhere([&] {
        std::vector<T> p = p0, s(n, T(0)), a(n, T(0)), b(n, T(0));
        std::vector<std::vector<T>> kept(4, std::vector<T>(n)), was;
        for (const auto* g : {&g1, &g2}) {
          pyrnn::optim::StepKeep<T> keep;
          if (g == &g2) {
            keep = {kept[0].data(), {kept[1].data(), centered ? kept[2].data() : nullptr,
                                     mom > 0.0 ? kept[3].data() : nullptr}};
            was = {p, s, a, b};
          }
          pyrnn::optim::rmsprop_step(p.data(), g->data(), s.data(), a.data(), b.data(), n, 1e-2,
                                     0.99, 1e-8, wd, mom, centered, &keep);
        }
        bool ok = same_bits(p, want) && same_bits(s, ws) && same_bits(a, wa) &&
                  same_bits(b, wb);
        for (int j = 0; j < 4; ++j)
          if (j < 2 || (j == 2 && centered) || (j == 3 && mom > 0.0))
            ok = ok && same_bits(kept[j], was[j]);
        CHECK(ok);
        return ok;
      });
    }
    // scale_inplace: x * s, element by element.
    std::vector<T> want = p0;
    for (T& v : want) v *= static_cast<T>(0.3);
    everywhere([&] {
      std::vector<T> x = p0;
      pyrnn::optim::scale_inplace(x.data(), n, 0.3);
      const bool ok = same_bits(x, want);
      CHECK(ok);
      return ok;
    });
  }
}

template <typename T>
void reductions_bits() {
  for (std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(15), std::size_t(16),
                        std::size_t(33), std::size_t(1) << 15, (std::size_t(1) << 15) + 1,
                        std::size_t(200003)}) {
    // Values of both signs and of many magnitudes: the order of the additions shows.
    auto x = rand_vec<T>(n, 9);
    for (std::size_t i = 0; i < n; i += 7) x[i] *= static_cast<T>(1e3);
    const double want = sum_squares_oracle(x);
    long double exact = 0;
    for (T v : x) exact += static_cast<long double>(v) * v;
    CHECK(std::fabs(static_cast<long double>(want) - exact) <= 1e-13L * exact);
    everywhere([&] {
      const double got = pyrnn::optim::sum_squares(x.data(), n);
      const bool ok = std::memcmp(&got, &want, sizeof got) == 0;
      CHECK(ok);
      return ok;
    });
  }
  // all_finite: one NaN or Inf anywhere, in any thread's share, is found.
  const std::size_t n = 300007;
  std::vector<T> x(n, std::numeric_limits<T>::max());
  everywhere([&] {
    bool ok = pyrnn::optim::all_finite(x.data(), n);
    for (T bad : {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                  -std::numeric_limits<T>::infinity()})
      for (std::size_t at : {std::size_t(0), std::size_t(65535), std::size_t(65536), n / 2,
                             n - 17, n - 1}) {
        const T keep = x[at];
        x[at] = bad;
        ok = ok && !pyrnn::optim::all_finite(x.data(), n);
        x[at] = keep;
      }
    CHECK(ok);
    return ok;
  });
}

// The NonFinite bits a step returns: one Inf / NaN written anywhere (any thread's share, a
// vector's lane or the tail) is reported, for the buffer it went to; none gives 0.
template <typename T>
void non_finite_bits() {
  const std::size_t n = 70001;
  const T huge = std::numeric_limits<T>::max() / T(4), nan = std::numeric_limits<T>::quiet_NaN();
  const auto p0 = rand_vec<T>(n, 21), g0 = rand_vec<T>(n, 22);
  using pyrnn::optim::kParamNonFinite;
  using pyrnn::optim::kStateNonFinite;
  everywhere([&] {
    bool ok = true;
    for (std::size_t at : {std::size_t(0), std::size_t(35001), n - 1})
      for (int which = 0; which < 3; ++which) {
        std::vector<T> p = p0, g = g0, m(n, T(0)), v(n, T(0));
        if (which == 1) g[at] = huge;  // g^2 overflows the second moment: state only
        if (which == 2) g[at] = nan;   // reaches the moments and the parameter
        const unsigned want[] = {0u, kStateNonFinite, kParamNonFinite | kStateNonFinite};
        ok = ok && pyrnn::optim::adam_step(p.data(), g.data(), m.data(), v.data(),
                                           static_cast<T*>(nullptr), n, 1e-2, 0.9, 0.999, 1e-8,
                                           0.0, false, false, 1) == want[which];
        std::vector<T> q = p0, h = g0;
        h[at] = huge;  // a step past the largest value: the parameter only
        ok = ok && pyrnn::optim::sgd_step(q.data(), h.data(), static_cast<T*>(nullptr), n, 1e3,
                                          0.0, 0.0, 0.0, false, true) == kParamNonFinite;
        std::vector<T> r = p0, k = g0, s(n, T(0)), a(n, T(0)), b(n, T(0));
        k[at] = nan;
        ok = ok && pyrnn::optim::rmsprop_step(r.data(), k.data(), s.data(), a.data(), b.data(),
                                              n, 1e-2, 0.99, 1e-8, 0.0, 0.5, true) ==
                       (kParamNonFinite | kStateNonFinite);
      }
    CHECK(ok);
    return ok;
  });
}

}  // namespace

TEST(steps_report_what_they_made_non_finite) {
  non_finite_bits<float>();
  non_finite_bits<double>();
}

TEST(optimizer_steps_are_their_formulas_on_every_isa_and_thread_count) {
  steps_bits<float>();
  steps_bits<double>();
}

TEST(clipping_reductions_have_one_shape_on_every_isa_and_thread_count) {
  reductions_bits<float>();
  reductions_bits<double>();
}

TEST(optimizer_steps_refuse_overlapping_buffers) {
  std::vector<float> a(64, 0.5f);
  float* p = a.data();
  const auto error_of = [](auto&& f) {
    try {
      f();
    } catch (const pyrnn::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const auto has = [](const std::string& s, const char* part) {
    return s.find(part) != std::string::npos;
  };
  // The same buffer twice, and two that share some elements.
  CHECK(has(error_of([&] { pyrnn::optim::adam_step(p, p + 16, p + 32, p + 32, static_cast<float*>(nullptr), 16, 0.1, 0.9, 0.999, 1e-8, 0.0, false, false, 1); }),
            "adam_step: exp_avg and exp_avg_sq overlap"));
  CHECK(has(error_of([&] { pyrnn::optim::adam_step(p, p + 15, p + 32, p + 48, static_cast<float*>(nullptr), 16, 0.1, 0.9, 0.999, 1e-8, 0.0, false, false, 1); }),
            "adam_step: param and grad overlap"));
  CHECK(has(error_of([&] { pyrnn::optim::adam_step(p, p + 16, p + 32, p + 48, p + 52, 8, 0.1, 0.9, 0.999, 1e-8, 0.0, false, true, 1); }),
            "adam_step: exp_avg_sq and max_exp_avg_sq overlap"));
  CHECK(has(error_of([&] { pyrnn::optim::sgd_step(p, p + 8, p + 4, 8, 0.1, 0.9, 0.0, 0.0, false, true); }),
            "sgd_step: param and momentum buffer overlap"));
  CHECK(has(error_of([&] { pyrnn::optim::rmsprop_step(p, p + 16, p + 32, p + 40, static_cast<float*>(nullptr), 16, 0.1, 0.99, 1e-8, 0.0, 0.0, true); }),
            "rmsprop_step: square_avg and grad_avg overlap"));
  // A keep buffer overlapping another, or given for state the step does not write.
  CHECK(has(error_of([&] { pyrnn::optim::StepKeep<float> k; k.param = p + 20; pyrnn::optim::sgd_step(p, p + 16, static_cast<float*>(nullptr), 8, 0.1, 0.0, 0.0, 0.0, false, true, &k); }),
            "sgd_step: grad and keep.param overlap"));
  CHECK(has(error_of([&] { pyrnn::optim::StepKeep<float> k; k.state[0] = p + 32; pyrnn::optim::sgd_step(p, p + 16, static_cast<float*>(nullptr), 8, 0.1, 0.0, 0.0, 0.0, false, true, &k); }),
            "sgd_step: keep.state[0] is given, but the step writes no momentum buffer (momentum is 0)"));
  CHECK(has(error_of([&] { pyrnn::optim::StepKeep<float> k; k.state[1] = p + 32; pyrnn::optim::sgd_step(p, p + 16, p + 24, 8, 0.1, 0.9, 0.0, 0.0, false, true, &k); }),
            "sgd_step: keep.state[1] is given, but the step has only 1 state buffer"));
  CHECK(has(error_of([&] { pyrnn::optim::StepKeep<float> k; k.state[1] = p + 40; pyrnn::optim::rmsprop_step(p, p + 8, p + 16, static_cast<float*>(nullptr), static_cast<float*>(nullptr), 8, 0.1, 0.99, 1e-8, 0.0, 0.0, false, &k); }),
            "rmsprop_step: keep.state[1] is given, but the step writes no grad_avg (centered is off)"));
  // Buffers a step does not use may be anything (here: the parameter itself), and nothing is
  // written by a refused step.
  const std::vector<float> before = a;
  CHECK(error_of([&] { pyrnn::optim::adam_step(p, p + 16, p + 32, p + 48, p, 16, 0.1, 0.9, 0.999, 1e-8, 0.0, false, false, 1); }).empty());
  CHECK(error_of([&] { pyrnn::optim::sgd_step(p, p + 16, p, 16, 0.1, 0.0, 0.0, 0.0, false, true); }).empty());
  a = before;
  error_of([&] { pyrnn::optim::adam_step(p, p, p + 32, p + 48, static_cast<float*>(nullptr), 16, 0.1, 0.9, 0.999, 1e-8, 0.0, false, false, 1); });
  CHECK(a == before);
}
