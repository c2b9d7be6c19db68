// The training stack on the GPU (pyrnn/cuda/layers.h, pyrnn/cuda/optim.h) against the CPU
// (pyrnn/layers.h, pyrnn/optim.h) on random inputs, float and double: every output and gradient,
// accumulation (+=) over two backward calls, lengths, padding, error paths. Compiled twice: against
// the real CUDA runtime (without a GPU: "SKIP: <reason>", exit 0) and, with
// PYRNN_CUDA_HOST_EMULATION, against the host emulation (tests/emu), where layers.cu and optim.cu
// run as C++ on the CPU.
//
// Exactness claims checked here (both builds): Dense db, LayerNorm dw/db, Embedding (both ways),
// Dropout, LastStep and every optimizer step are BITWISE the CPU's when given the same inputs;
// GEMM products and the warp-reduced LayerNorm statistics are within rounding (float 1e-5,
// double 1e-12 relative to the tensor's scale).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "pyrnn/cuda/buffer.h"
#include "pyrnn/cuda/context.h"
#include "pyrnn/cuda/device.h"
#include "pyrnn/cuda/layers.h"
#include "pyrnn/cuda/optim.h"
#include "pyrnn/error.h"
#include "pyrnn/layers.h"
#include "pyrnn/optim.h"
#include "pyrnn/random.h"

#include "check.h"
#include "compare.h"
#include "device_io.h"

#ifdef PYRNN_CUDA_HOST_EMULATION
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "device_lock.cuh"  // cuda/src: on the emulated build's include path only
#endif

namespace {

// The C++ tests' harness (cpp/tests/check.h): CHECK / CHECK_THROWS count into its counter.
int& failures = check::failures();

using pyrnn::Activation;
using pyrnn::cuda::Context;
using pyrnn::cuda::DeviceBuffer;

// Random values in [lo, hi) from the counter hash (distinct per seed).
template <typename T>
std::vector<T> rand_vec(std::size_t n, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::vector<T> v(n);
  for (std::size_t i = 0; i < n; ++i)
    v[i] = static_cast<T>(lo + (hi - lo) * pyrnn::uniform01(seed, 77, i));
  return v;
}


template <typename T>
const char* tname() {
  return sizeof(T) == 4 ? "float" : "double";
}

// Within 1e-5 (float) / 1e-12 (double) of want, relative to max(1, max |want|); counted.
template <typename T>
bool close(const std::vector<T>& got, const std::vector<T>& want, const std::string& what) {
  const bool ok = close_to(got, want, sizeof(T) == 4 ? 1e-5 : 1e-12, what);
  if (!ok) ++failures;
  return ok;
}

// Bitwise (NaN == NaN).
template <typename T>
bool same(const std::vector<T>& got, const std::vector<T>& want, const std::string& what) {
  bool ok = got.size() == want.size();
  std::size_t bad = 0;
  for (std::size_t i = 0; ok && i < got.size(); ++i)
    if (!(got[i] == want[i] || (std::isnan(got[i]) && std::isnan(want[i])))) ++bad;
  if (!ok || bad) {
    std::fprintf(stderr, "  %s: %zu of %zu elements differ from the CPU (bitwise)\n", what.c_str(),
                 bad, got.size());
    ++failures;
    return false;
  }
  return true;
}

// ---- Dense --------------------------------------------------------------------------------------

template <typename T>
void check_dense(Context& ctx, Activation act, bool bias, bool want_dx, std::int64_t M) {
  const int in = 5, out = 4;
  const std::string label = std::string("dense<") + tname<T>() + "> act=" +
                            std::to_string(int(act)) + " bias=" + std::to_string(bias) +
                            " dx=" + std::to_string(want_dx) + " M=" + std::to_string(M);
  const std::size_t Ms = static_cast<std::size_t>(M);
  const auto x = rand_vec<T>(Ms * in, 1), w = rand_vec<T>(out * in, 2), b = rand_vec<T>(out, 3);
  const auto dy = rand_vec<T>(Ms * out, 4), dw0 = rand_vec<T>(out * in, 5), db0 = rand_vec<T>(out, 6);
  std::vector<T> y(Ms * out);
  pyrnn::dense_forward(y.data(), x.data(), w.data(), bias ? b.data() : nullptr, M, in, out, act);
  auto gx = upload(x), gw = upload(w), gb = upload(b);
  DeviceBuffer<T> gy(Ms * out);
  pyrnn::cuda::dense_forward<T>(ctx, gy.data(), gx.data(), gw.data(), bias ? gb.data() : nullptr, M,
                                in, out, act);
  close(download(gy), y, label + " y");

  // Backward from the CPU's y on both sides, twice (gradients accumulate onto dw0 / db0).
  std::vector<T> dx(Ms * in), dw = dw0, db = db0;
  auto gy_cpu = upload(y), gdy = upload(dy), gdw = upload(dw0), gdb = upload(db0);
  DeviceBuffer<T> gdx(Ms * in);
  for (int rep = 0; rep < 2; ++rep) {
    pyrnn::dense_backward(want_dx ? dx.data() : nullptr, dw.data(), bias ? db.data() : nullptr,
                          dy.data(), y.data(), x.data(), w.data(), M, in, out, act);
    pyrnn::cuda::dense_backward<T>(ctx, want_dx ? gdx.data() : nullptr, gdw.data(),
                                   bias ? gdb.data() : nullptr, gdy.data(), gy_cpu.data(),
                                   gx.data(), gw.data(), M, in, out, act);
  }
  if (want_dx) close(download(gdx), dx, label + " dx");
  close(download(gdw), dw, label + " dw");
  same(download(gdb), db, label + " db");  // db0 untouched without bias, on both sides
}

// ---- LayerNorm ----------------------------------------------------------------------------------

template <typename T>
void check_layernorm(Context& ctx, std::int64_t M, int D) {
  const std::string label = std::string("layernorm<") + tname<T>() + "> M=" + std::to_string(M) +
                            " D=" + std::to_string(D);
  const std::size_t n = static_cast<std::size_t>(M) * D, Ms = static_cast<std::size_t>(M);
  // Offset rows: a large mean must not cost digits (two-pass statistics).
  const auto x = rand_vec<T>(n, 11, 2.0, 5.0), w = rand_vec<T>(D, 12), b = rand_vec<T>(D, 13);
  const auto dy = rand_vec<T>(n, 14), dw0 = rand_vec<T>(D, 15), db0 = rand_vec<T>(D, 16);
  std::vector<T> y(n);
  std::vector<double> mean(Ms), rstd(Ms);  // double for both precisions
  pyrnn::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), M, D,
                           1e-5);
  auto gx = upload(x), gw = upload(w), gb = upload(b);
  DeviceBuffer<T> gy(n);
  DeviceBuffer<double> gmean(Ms), grstd(Ms);
  pyrnn::cuda::layernorm_forward<T>(ctx, gy.data(), gmean.data(), grstd.data(), gx.data(),
                                    gw.data(), gb.data(), M, D, 1e-5);
  close(download(gy), y, label + " y");
  close(download(gmean), mean, label + " mean");
  close(download(grstd), rstd, label + " rstd");
  // With the training cache: x copied bit for bit, the rest as without it.
  DeviceBuffer<T> gy2(n), gkeep(n);
  pyrnn::cuda::layernorm_forward<T>(ctx, gy2.data(), gmean.data(), grstd.data(), gx.data(),
                                    gw.data(), gb.data(), M, D, 1e-5, gkeep.data());
  same(download(gkeep), x, label + " x_keep");
  same(download(gy2), download(gy), label + " y with x_keep");

  std::vector<T> dx(n), dw = dw0, db = db0;
  auto gdy = upload(dy), gm = upload(mean), gr = upload(rstd), gdw = upload(dw0), gdb = upload(db0);
  DeviceBuffer<T> gdx(n);
  for (int rep = 0; rep < 2; ++rep) {
    pyrnn::layernorm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), mean.data(),
                              rstd.data(), w.data(), M, D);
    pyrnn::cuda::layernorm_backward<T>(ctx, gdx.data(), gdw.data(), gdb.data(), gdy.data(),
                                       gx.data(), gm.data(), gr.data(), gw.data(), M, D);
  }
  close(download(gdx), dx, label + " dx");
  same(download(gdw), dw, label + " dw");
  same(download(gdb), db, label + " db");
  // dx may alias dy or x, as on the CPU: the parameter sums read them before dx is written.
  for (const bool on_dy : {true, false}) {
    const std::string what = label + (on_dy ? " dx aliasing dy" : " dx aliasing x");
    std::vector<T> buf = on_dy ? dy : x, dw2 = dw0, db2 = db0;
    const std::vector<T>& other = on_dy ? x : dy;
    pyrnn::layernorm_backward(buf.data(), dw2.data(), db2.data(),
                              on_dy ? buf.data() : other.data(), on_dy ? other.data() : buf.data(),
                              mean.data(), rstd.data(), w.data(), M, D);
    auto gbuf = upload(on_dy ? dy : x), gother = upload(other), gdw2 = upload(dw0),
         gdb2 = upload(db0);
    pyrnn::cuda::layernorm_backward<T>(ctx, gbuf.data(), gdw2.data(), gdb2.data(),
                                       on_dy ? gbuf.data() : gother.data(),
                                       on_dy ? gother.data() : gbuf.data(), gm.data(), gr.data(),
                                       gw.data(), M, D);
    close(download(gbuf), buf, what + " dx");
    same(download(gdw2), dw2, what + " dw");
    same(download(gdb2), db2, what + " db");
  }
}

// ---- Embedding ----------------------------------------------------------------------------------

template <typename T>
void check_embedding(Context& ctx, std::int64_t padding_idx) {
  const std::string label = std::string("embedding<") + tname<T>() + "> padding_idx=" +
                            std::to_string(padding_idx);
  const std::int64_t num = 7, M = 41;
  const int dim = 3;
  std::vector<std::int64_t> idx(M);
  for (std::int64_t m = 0; m < M; ++m)  // skewed, repeated, some rows never used
    idx[m] = static_cast<std::int64_t>(pyrnn::uniform01(5, 1, m) * pyrnn::uniform01(5, 2, m) * 6);
  idx[3] = 2;
  idx[9] = 2;
  const auto table = rand_vec<T>(num * dim, 21), dy = rand_vec<T>(M * dim, 22);
  const auto dt0 = rand_vec<T>(num * dim, 23);
  std::vector<T> y(M * dim), dt = dt0;
  pyrnn::embedding_forward(y.data(), idx.data(), table.data(), M, num, dim);
  auto gt = upload(table), gdy = upload(dy), gdt = upload(dt0);
  DeviceBuffer<T> gy(M * dim);
  pyrnn::cuda::embedding_forward<T>(ctx, gy.data(), idx.data(), gt.data(), M, num, dim);
  same(download(gy), y, label + " y");
  for (int rep = 0; rep < 2; ++rep) {
    pyrnn::embedding_backward(dt.data(), dy.data(), idx.data(), M, num, dim, padding_idx);
    pyrnn::cuda::embedding_backward<T>(ctx, gdt.data(), gdy.data(), idx.data(), M, num, dim,
                                       padding_idx);
  }
  same(download(gdt), dt, label + " dtable");
  std::vector<std::int64_t> bad = idx;
  bad[17] = num;
  CHECK_THROWS(pyrnn::cuda::embedding_forward<T>(ctx, gy.data(), bad.data(), gt.data(), M, num, dim));
  CHECK_THROWS(pyrnn::cuda::embedding_backward<T>(ctx, gdt.data(), gdy.data(), bad.data(), M, num,
                                                  dim, -1));
  same(download(gdt), dt, label + " dtable after a refused call");
  pyrnn::cuda::embedding_forward<T>(ctx, gy.data(), idx.data(), gt.data(), 0, num, dim);  // M = 0
}

// ---- Dropout and LastStep -----------------------------------------------------------------------

template <typename T>
void check_dropout(Context& ctx, double p) {
  const std::string label = std::string("dropout<") + tname<T>() + "> p=" + std::to_string(p);
  const std::size_t n = 3001;
  const auto x = rand_vec<T>(n, 31);
  std::vector<T> y(n), dx(n);
  pyrnn::dropout_forward(y.data(), x.data(), n, 987654321, p);
  pyrnn::dropout_backward(dx.data(), x.data(), n, 987654321, p);
  auto gx = upload(x);
  DeviceBuffer<T> gy(n), gdx(n);
  pyrnn::cuda::dropout_forward<T>(ctx, gy.data(), gx.data(), n, 987654321, p);
  pyrnn::cuda::dropout_backward<T>(ctx, gdx.data(), gx.data(), n, 987654321, p);
  same(download(gy), y, label + " y");
  same(download(gdx), dx, label + " dx");
  CHECK_THROWS(pyrnn::cuda::dropout_forward<T>(ctx, gy.data(), gx.data(), n, 1, -0.1));
}

template <typename T>
void check_last_step(Context& ctx, int D, bool use_lengths) {
  const std::string label = std::string("last_step<") + tname<T>() + "> D=" + std::to_string(D) +
                            " lengths=" + std::to_string(use_lengths);
  const int N = 4, T_ = 5, H = 3, W = D * H;
  const std::int64_t lengths[N] = {5, 1, 3, 2};
  const std::int64_t* lp = use_lengths ? lengths : nullptr;
  const auto x = rand_vec<T>(std::size_t(N) * T_ * W, 41), dy = rand_vec<T>(std::size_t(N) * W, 42);
  std::vector<T> y(N * W), dx(std::size_t(N) * T_ * W);
  pyrnn::last_step_forward(y.data(), x.data(), lp, N, T_, H, D);
  pyrnn::last_step_backward(dx.data(), dy.data(), lp, N, T_, H, D);
  auto gx = upload(x), gdy = upload(dy);
  DeviceBuffer<T> gy(N * W), gdx(dx.size());
  pyrnn::cuda::last_step_forward<T>(ctx, gy.data(), gx.data(), lp, N, T_, H, D);
  pyrnn::cuda::last_step_backward<T>(ctx, gdx.data(), gdy.data(), lp, N, T_, H, D);
  same(download(gy), y, label + " y");
  same(download(gdx), dx, label + " dx");
  const std::int64_t bad[N] = {5, 6, 3, 2};
  CHECK_THROWS(pyrnn::cuda::last_step_forward<T>(ctx, gy.data(), gx.data(), bad, N, T_, H, D));
}

// ---- optimizers ---------------------------------------------------------------------------------

// Three steps of each update rule on both sides, from the same state: bitwise equal.
template <typename T>
void check_optimizers(Context& ctx) {
  const std::size_t n = 1037;
  const std::string pre = std::string("optim<") + tname<T>() + "> ";
  struct Sgd { double mom, damp, wd; bool nesterov; };
  for (const Sgd& s : {Sgd{0.0, 0.0, 0.0, false}, Sgd{0.9, 0.1, 0.01, false},
                       Sgd{0.9, 0.0, 0.0, true}}) {
    auto p = rand_vec<T>(n, 51), buf = std::vector<T>(n, T(0));
    auto gp = upload(p), gbuf = upload(buf);
    for (int step = 0; step < 3; ++step) {
      const auto g = rand_vec<T>(n, 52 + step);
      auto gg = upload(g);
      pyrnn::optim::sgd_step(p.data(), g.data(), buf.data(), n, 0.05, s.mom, s.damp, s.wd,
                             s.nesterov, step == 0);
      pyrnn::cuda::optim::sgd_step<T>(ctx, gp.data(), gg.data(), gbuf.data(), n, 0.05, s.mom,
                                      s.damp, s.wd, s.nesterov, step == 0);
    }
    same(download(gp), p, pre + "sgd param");
    same(download(gbuf), buf, pre + "sgd momentum");
  }
  struct AdamCase { double wd; bool decoupled, amsgrad; };
  for (const AdamCase& a : {AdamCase{0.0, false, false}, AdamCase{0.01, false, true},
                            AdamCase{0.01, true, false}, AdamCase{0.1, true, true}}) {
    auto p = rand_vec<T>(n, 61);
    std::vector<T> m(n, T(0)), v(n, T(0)), vmax(n, T(0));
    auto gp = upload(p), gm = upload(m), gv = upload(v), gvmax = upload(vmax);
    for (int step = 1; step <= 3; ++step) {
      const auto g = rand_vec<T>(n, 62 + step);
      auto gg = upload(g);
      pyrnn::optim::adam_step(p.data(), g.data(), m.data(), v.data(), vmax.data(), n, 1e-2, 0.9,
                              0.999, 1e-8, a.wd, a.decoupled, a.amsgrad, step);
      pyrnn::cuda::optim::adam_step<T>(ctx, gp.data(), gg.data(), gm.data(), gv.data(),
                                       gvmax.data(), n, 1e-2, 0.9, 0.999, 1e-8, a.wd, a.decoupled,
                                       a.amsgrad, step);
    }
    same(download(gp), p, pre + "adam param");
    same(download(gm), m, pre + "adam exp_avg");
    same(download(gv), v, pre + "adam exp_avg_sq");
    same(download(gvmax), vmax, pre + "adam max_exp_avg_sq");
  }
  struct Rms { double wd, mom; bool centered; };
  for (const Rms& r : {Rms{0.0, 0.0, false}, Rms{0.01, 0.9, true}, Rms{0.0, 0.5, false}}) {
    auto p = rand_vec<T>(n, 71);
    std::vector<T> s(n, T(0)), ga(n, T(0)), buf(n, T(0));
    auto gp = upload(p), gs = upload(s), gga = upload(ga), gbuf = upload(buf);
    for (int step = 0; step < 3; ++step) {
      const auto g = rand_vec<T>(n, 72 + step);
      auto gg = upload(g);
      pyrnn::optim::rmsprop_step(p.data(), g.data(), s.data(), ga.data(), buf.data(), n, 1e-2,
                                 0.99, 1e-8, r.wd, r.mom, r.centered);
      pyrnn::cuda::optim::rmsprop_step<T>(ctx, gp.data(), gg.data(), gs.data(), gga.data(),
                                          gbuf.data(), n, 1e-2, 0.99, 1e-8, r.wd, r.mom,
                                          r.centered);
    }
    same(download(gp), p, pre + "rmsprop param");
    same(download(gs), s, pre + "rmsprop square_avg");
    same(download(gga), ga, pre + "rmsprop grad_avg");
    same(download(gbuf), buf, pre + "rmsprop momentum");
  }
}

template <typename T>
void check_norms(Context& ctx) {
  const std::string pre = std::string("norms<") + tname<T>() + "> ";
  for (std::size_t n : {std::size_t(1), std::size_t(255), std::size_t(1000), std::size_t(300007)}) {
    auto x = rand_vec<T>(n, 81 + n, -3.0, 3.0);
    auto gx = upload(x);
    const double s_cpu = pyrnn::optim::sum_squares(x.data(), n);
    const double s_gpu = pyrnn::cuda::optim::sum_squares<T>(ctx, gx.data(), n);
    CHECK(std::fabs(s_gpu - s_cpu) <= 1e-11 * s_cpu);  // summation order: ~n eps
    CHECK(s_gpu == pyrnn::cuda::optim::sum_squares<T>(ctx, gx.data(), n));  // reproducible
    CHECK(pyrnn::cuda::optim::max_abs<T>(ctx, gx.data(), n) == pyrnn::optim::max_abs(x.data(), n));
    pyrnn::optim::scale_inplace(x.data(), n, 0.37);
    pyrnn::cuda::optim::scale_inplace<T>(ctx, gx.data(), n, 0.37);
    same(download(gx), x, pre + "scale_inplace");
    pyrnn::cuda::optim::zero<T>(ctx, gx.data(), n);
    same(download(gx), std::vector<T>(n, T(0)), pre + "zero");
  }
  CHECK(pyrnn::cuda::optim::sum_squares<T>(ctx, static_cast<const T*>(nullptr), 0) == 0.0);
  auto x = rand_vec<T>(5000, 90);
  x[4321] = std::numeric_limits<T>::quiet_NaN();
  auto gx = upload(x);
  CHECK(std::isnan(pyrnn::cuda::optim::max_abs<T>(ctx, gx.data(), x.size())));
  x[4321] = -std::numeric_limits<T>::infinity();
  gx = upload(x);
  CHECK(std::isinf(pyrnn::cuda::optim::max_abs<T>(ctx, gx.data(), x.size())));
}

template <typename T>
void run_all(Context& ctx) {
  for (Activation act : {Activation::None, Activation::ReLU, Activation::Tanh, Activation::Sigmoid})
    for (bool bias : {false, true}) check_dense<T>(ctx, act, bias, true, 13);
  check_dense<T>(ctx, Activation::Tanh, true, false, 9);
  check_dense<T>(ctx, Activation::Sigmoid, true, true, 0);
  for (int D : {1, 5, 32, 70}) check_layernorm<T>(ctx, 9, D);
  check_layernorm<T>(ctx, 0, 4);
  for (std::int64_t pad : {std::int64_t(-1), std::int64_t(0), std::int64_t(2)})
    check_embedding<T>(ctx, pad);
  for (double p : {0.0, 0.3, 0.75, 1.0}) check_dropout<T>(ctx, p);
  for (int D : {1, 2})
    for (bool lens : {false, true}) check_last_step<T>(ctx, D, lens);
  check_optimizers<T>(ctx);
  check_norms<T>(ctx);
}

void check_errors(Context& ctx) {
  DeviceBuffer<float> a(16);
  CHECK_THROWS(pyrnn::cuda::dense_forward<float>(ctx, a.data(), a.data(), a.data(), nullptr, 2, 0,
                                                 2, Activation::None));
  DeviceBuffer<double> stats(16);
  CHECK_THROWS(pyrnn::cuda::layernorm_forward<float>(ctx, a.data(), stats.data(), stats.data(),
                                                     a.data(), a.data(), a.data(), 2, 2, -1.0));
  CHECK(contains(error_of([&] {
          pyrnn::cuda::layernorm_forward<float>(ctx, a.data() + 4, stats.data(), stats.data() + 2,
                                                a.data(), a.data(), a.data(), 2, 2, 1e-5,
                                                a.data() + 6);
        }),
        "layernorm_forward: x_keep overlaps y"));
  CHECK_THROWS(pyrnn::cuda::optim::adam_step<float>(ctx, a.data(), a.data(), a.data(), a.data(),
                                                    nullptr, 4, 1e-3, 0.9, 0.999, 1e-8, 0.0, false,
                                                    false, 0));
  // The CPU twin's argument checks (pyrnn/train_checks.h): null buffers, unknown activations.
  const std::int64_t idx[2] = {0, 1};
  CHECK(contains(error_of([&] {
          pyrnn::cuda::dense_forward<float>(ctx, a.data(), nullptr, a.data(), nullptr, 2, 2, 2,
                                            Activation::None);
        }), "dense_forward: null x buffer"));
  CHECK(contains(error_of([&] {
          pyrnn::cuda::dense_backward<float>(ctx, nullptr, a.data(), nullptr, a.data(), a.data(),
                                             a.data(), a.data(), 2, 2, 2, static_cast<Activation>(7));
        }), "dense_backward: unknown activation 7"));
  CHECK(contains(error_of([&] {
          pyrnn::cuda::layernorm_backward<float>(ctx, a.data(), nullptr, a.data(), a.data(),
                                                 a.data(), stats.data(), stats.data(), a.data(), 2, 2);
        }), "layernorm_backward: null dw buffer"));
  CHECK(contains(error_of([&] {
          pyrnn::cuda::embedding_forward<float>(ctx, a.data(), idx, nullptr, 2, 2, 2);
        }), "embedding_forward: null table buffer"));
  CHECK(contains(error_of([&] {
          pyrnn::cuda::dropout_backward<float>(ctx, nullptr, a.data(), 4, 1, 0.5);
        }), "dropout_backward: null dx buffer"));
  CHECK(contains(error_of([&] {
          pyrnn::cuda::last_step_forward<float>(ctx, nullptr, a.data(), nullptr, 1, 2, 2, 1);
        }), "last_step_forward: null y buffer"));
  namespace optim = pyrnn::cuda::optim;
  CHECK(contains(error_of([&] {
          optim::sgd_step<float>(ctx, nullptr, a.data(), nullptr, 4, 0.1, 0, 0, 0, false, true);
        }), "sgd_step: null param buffer"));
  CHECK(contains(error_of([&] {
          optim::adam_step<float>(ctx, a.data(), a.data(), a.data(), nullptr, nullptr, 4, 1e-3, 0.9,
                                  0.999, 1e-8, 0.0, false, false, 1);
        }), "adam_step: null exp_avg_sq buffer"));
  CHECK(contains(error_of([&] {
          optim::rmsprop_step<float>(ctx, a.data(), a.data(), nullptr, nullptr, nullptr, 4, 0.1,
                                     0.99, 1e-8, 0, 0, false);
        }), "rmsprop_step: null square_avg buffer"));
  CHECK(contains(error_of([&] { optim::sum_squares<float>(ctx, nullptr, 3); }),
                 "sum_squares: null x buffer"));
  CHECK(contains(error_of([&] { optim::max_abs<float>(ctx, nullptr, 3); }), "max_abs: null x buffer"));
  CHECK(contains(error_of([&] { optim::scale_inplace<float>(ctx, nullptr, 3, 2.0); }),
                 "scale_inplace: null x buffer"));
  CHECK(contains(error_of([&] { optim::zero<float>(ctx, nullptr, 3); }), "zero: null x buffer"));
}

#ifdef PYRNN_CUDA_HOST_EMULATION
// Training-stack calls hold the per-device lock that the recurrent layers' passes hold: while
// another thread holds it (e.g. a pass capturing the Context stream into a CUDA graph, which
// would otherwise capture this call's work too), a call waits for it.
void check_device_lock(Context& ctx) {
  DeviceBuffer<float> x(6), w(6), y(4);  // x [2, 3], w [2, 3], y [2, 2]
  x.zero();
  w.zero();
  std::atomic<bool> done{false};
  std::unique_lock<std::mutex> held(pyrnn::cuda::detail::device_mutex(ctx.device()));
  std::thread t([&] {
    pyrnn::cuda::dense_forward<float>(ctx, y.data(), x.data(), w.data(), nullptr, 2, 3, 2,
                                      Activation::None);
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(!done);  // waiting for the lock (a late thread start can only make this pass)
  held.unlock();
  t.join();
  CHECK(done);
}
#endif

}  // namespace

int main() {
#ifndef PYRNN_CUDA_HOST_EMULATION
  if (pyrnn::cuda::device_count() == 0) {
    // Without a device every entry point throws pyrnn::Error (no crash, no exit()).
    try {
      Context::get(0);
      std::printf("FAIL: Context::get(0) did not throw without a device\n");
      return 1;
    } catch (const pyrnn::Error&) {
    }
    std::printf("SKIP: %s\n", pyrnn::cuda::unavailable_reason().c_str());
    return 0;
  }
  std::printf("device 0: %s\n", pyrnn::cuda::device_name(0).c_str());
#else
  std::printf("host emulation of the CUDA training stack (tests/emu)\n");
#endif
  try {
    Context& ctx = Context::get(0);
    run_all<float>(ctx);
    run_all<double>(ctx);
    check_errors(ctx);
#ifdef PYRNN_CUDA_HOST_EMULATION
    check_device_lock(ctx);
#endif
  } catch (const std::exception& e) {
    std::fprintf(stderr, "  unexpected exception: %s\n", e.what());
    ++failures;
  }
  std::printf("%s (%d failures)\n", failures ? "FAIL" : "OK", failures);
  return failures ? 1 : 0;
}
