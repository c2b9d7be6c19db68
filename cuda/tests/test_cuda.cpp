// CUDA backend tests, checked against the CPU reference. Without a usable GPU: "SKIP: <reason>", exit 0.
#include <cmath>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "pyrnn/cuda.h"
#include "pyrnn/kernels/gemm.h"
#include "pyrnn/nn/gru_cuda.h"
#include "pyrnn/nn/lstm_cuda.h"
#include "pyrnn/nn/rnn_cuda.h"
#include "pyrnn/recurrent.h"

#include "check.h"
#include "compare.h"
#include "device_io.h"

namespace {

// The C++ tests' harness (cpp/tests/check.h): CHECK / CHECK_THROWS count into its counter.
int& failures = check::failures();

using pyrnn::cuda::Context;
using pyrnn::cuda::DeviceBuffer;
using pyrnn::cuda::Options;
using pyrnn::cuda::Precision;
using pyrnn::cuda::RecurrentAlgo;
using pyrnn::cuda::Switch;
using pyrnn::kernels::Trans;

// Deterministic values in [-1, 1).
template <typename T>
std::vector<T> pattern(std::size_t n, unsigned seed) {
  std::vector<T> v(n);
  unsigned s = seed * 2654435761u + 1;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<T>((s >> 8) * (1.0 / (1u << 24)) * 2.0 - 1.0);
  }
  return v;
}

// One GPU GEMM vs gemm_reference. Leading dims are padded; beta = 0 starts C as NaN (must not
// be read). The float tolerance is far below TF32's ~1e-3 relative error: it checks true fp32.
template <typename T>
void check_gemm(Context& ctx, Trans ta, Trans tb, int M, int N, int K, T alpha, T beta,
                pyrnn::cuda::GemmMath math = pyrnn::cuda::GemmMath::Exact) {
  const int lda = (ta == Trans::N ? K : M) + 3, ldb = (tb == Trans::N ? N : K) + 2, ldc = N + 1;
  const std::size_t na = static_cast<std::size_t>(ta == Trans::N ? M : K) * lda;
  const std::size_t nb = static_cast<std::size_t>(tb == Trans::N ? K : N) * ldb;
  const std::size_t nc = static_cast<std::size_t>(M) * ldc;
  const auto a = pattern<T>(na, 1), b = pattern<T>(nb, 2);  // [rows x ld]
  auto c = pattern<T>(nc, 3);                               // [M x ldc]
  if (beta == T(0)) c.assign(nc, std::numeric_limits<T>::quiet_NaN());
  DeviceBuffer<T> da(na), db(nb), dc(nc);
  da.copy_from_host(a.data(), na, ctx.stream());
  db.copy_from_host(b.data(), nb, ctx.stream());
  dc.copy_from_host(c.data(), nc, ctx.stream());
  pyrnn::cuda::gemm<T>(ctx.cublas(), ta, tb, M, N, K, alpha, da.data(), lda, db.data(), ldb, beta,
                       dc.data(), ldc, math);
  std::vector<T> got(nc);
  dc.copy_to_host(got.data(), nc, ctx.stream());
  auto want = c;
  pyrnn::kernels::gemm_reference<T>(ta, tb, M, N, K, alpha, a.data(), lda, b.data(), ldb, beta,
                                    want.data(), ldc);
  // TF32 (float only): operands rounded to 10 mantissa bits, about 1e-3 relative per product.
  const bool tf32 = math == pyrnn::cuda::GemmMath::TF32 && sizeof(T) == 4;
  const double tol = tf32 ? 2e-3 : sizeof(T) == 4 ? 2e-6 : 1e-14;
  int bad = 0;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < ldc; ++j) {
      const double g = got[i * ldc + j], w = want[i * ldc + j];
      // Padding columns must be untouched (NaN == NaN there counts as untouched).
      const bool ok = j >= N ? (g == w || (std::isnan(g) && std::isnan(w)))
                             : std::fabs(g - w) <= tol * (1.0 + std::fabs(w)) * (K > 0 ? K : 1);
      bad += !ok;
    }
  if (bad) {
    std::fprintf(stderr, "  gemm<%s> ta=%c tb=%c M=%d N=%d K=%d alpha=%g beta=%g: %d mismatches\n",
                 sizeof(T) == 4 ? "float" : "double", ta == Trans::N ? 'N' : 'T',
                 tb == Trans::N ? 'N' : 'T', M, N, K, double(alpha), double(beta), bad);
    ++failures;
  }
}

template <typename T>
void test_gemm(Context& ctx) {
  for (Trans ta : {Trans::N, Trans::T})
    for (Trans tb : {Trans::N, Trans::T}) {
      check_gemm<T>(ctx, ta, tb, 37, 29, 53, T(0.7), T(0));
      check_gemm<T>(ctx, ta, tb, 37, 29, 53, T(-1.3), T(0.5));
      check_gemm<T>(ctx, ta, tb, 1, 64, 300, T(1), T(1));
      check_gemm<T>(ctx, ta, tb, 16, 8, 0, T(1), T(0));     // K = 0: C = 0
      check_gemm<T>(ctx, ta, tb, 16, 8, 0, T(1), T(2.5));   // K = 0: C *= beta
      check_gemm<T>(ctx, ta, tb, 16, 8, 12, T(0), T(0.5));  // alpha = 0: C *= beta
      // TF32 (per call; double ignores it), then exact again on the same handle.
      check_gemm<T>(ctx, ta, tb, 37, 29, 53, T(-1.3), T(0.5), pyrnn::cuda::GemmMath::TF32);
      check_gemm<T>(ctx, ta, tb, 37, 29, 53, T(0.7), T(0));
    }
}

template <typename T>
void test_fill_and_buffer(Context& ctx) {
  const std::size_t n = 100003;  // not a multiple of the block size
  DeviceBuffer<T> buf(n);
  CHECK(buf.size() == n && buf.data() != nullptr);
  pyrnn::cuda::fill<T>(buf.data(), n, T(1.25), ctx.stream());
  std::vector<T> host(n, T(0));
  buf.copy_to_host(host.data(), n, ctx.stream());
  bool all = true;
  for (T x : host) all = all && x == T(1.25);
  CHECK(all);

  const auto src = pattern<T>(n, 7);
  buf.copy_from_host(src.data(), n, ctx.stream());
  DeviceBuffer<T> moved(std::move(buf));
  CHECK(buf.size() == 0 && buf.data() == nullptr);
  moved.copy_to_host(host.data(), n, ctx.stream());
  CHECK(host == src);
  moved.zero(ctx.stream());
  moved.copy_to_host(host.data(), n, ctx.stream());
  all = true;
  for (T x : host) all = all && x == T(0);
  CHECK(all);
  DeviceBuffer<T> empty;
  empty = std::move(moved);
  CHECK(empty.size() == n && moved.size() == 0);
}

void test_errors(Context& ctx) {
  DeviceBuffer<float> small(4);
  std::vector<float> host(8);
  CHECK_THROWS(small.copy_from_host(host.data(), 8));
  CHECK_THROWS(pyrnn::cuda::device_name(pyrnn::cuda::device_count()));
  CHECK_THROWS(Context::get(-1));
  // lda < K for op(A) = A.
  DeviceBuffer<float> d(64);
  CHECK_THROWS(pyrnn::cuda::gemm<float>(ctx.cublas(), Trans::N, Trans::N, 4, 4, 4, 1.f, d.data(),
                                        2, d.data(), 4, 0.f, d.data(), 4));
  // A runtime error surfaces with the call text, and is not left behind for the next check.
  try {
    PYRNN_CUDA_CHECK(cudaSetDevice(-1));
    CHECK(false);
  } catch (const pyrnn::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("cudaSetDevice(-1)") != std::string::npos);
    CHECK(msg.find("test_cuda.cpp:") != std::string::npos);
    CHECK(msg.find("cudaErrorInvalidDevice") != std::string::npos);
  }
  pyrnn::cuda::fill<float>(d.data(), d.size(), 2.f, ctx.stream());
  pyrnn::cuda::synchronize();
}

// ---- cuda::Recurrent vs pyrnn::Recurrent -------------------------------------------------------

template <typename T>
bool close(const std::vector<T>& got, const std::vector<T>& want, double tol, const char* what,
           const std::string& label) {
  return close_to(got, want, tol, label + " " + what);
}


struct Case {
  pyrnn::CellType cell;
  bool reset_after;
  int layers;
  bool bidir;
  bool lengths;
  bool hx;
  double dropout;
  bool bias = true;
  bool batch_first = false;  // x, y, dx, dy as [N, T, .] on both (the CPU reads them in place)
};

// The execution options a test pass runs the layers with, and its tolerance factor (TF32).
struct Mode {
  const char* name;
  Options options;
  double tol_factor = 1.0;
};

std::string options_label(const Options& o) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "precision=%s algo=%s graphs=%s streams=%s blocks=%d",
                pyrnn::cuda::to_string(o.precision), pyrnn::cuda::to_string(o.algo),
                pyrnn::cuda::to_string(o.graphs), pyrnn::cuda::to_string(o.streams),
                o.persist_blocks);
  return buf;
}

template <typename T>
void check_recurrent(const Case& cs, const Mode& mode) {
  pyrnn::RecurrentConfig cfg;
  cfg.cell = cs.cell;
  cfg.reset_after = cs.reset_after;
  cfg.input_size = 5;
  cfg.hidden_size = 7;
  cfg.num_layers = cs.layers;
  cfg.bidirectional = cs.bidir;
  cfg.dropout = cs.dropout;
  cfg.bias = cs.bias;
  cfg.batch_first = cs.batch_first;
  const int T_ = 6, N = 3, L = cfg.num_layers, D = cfg.directions(), H = cfg.hidden_size;
  const bool lstm = cs.cell == pyrnn::CellType::LSTM;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "Recurrent<%s> cell=%d reset_after=%d L=%d bidir=%d lengths=%d hx=%d p=%g bias=%d "
                "batch_first=%d",
                sizeof(T) == 4 ? "float" : "double", int(cs.cell), int(cs.reset_after), L,
                int(cs.bidir), int(cs.lengths), int(cs.hx), cs.dropout, int(cs.bias),
                int(cs.batch_first));
  const std::string label = std::string(buf) + " [" + mode.name + ": " +
                            options_label(mode.options) + "]";
  const double tol = (sizeof(T) == 4 ? 1e-5 : 1e-10) * (sizeof(T) == 4 ? mode.tol_factor : 1.0);

  pyrnn::Recurrent<T> cpu(cfg);
  pyrnn::cuda::Recurrent<T> gpu(cfg);
  gpu.set_options(mode.options);
  cpu.reset_parameters(42);
  gpu.reset_parameters(42);
  CHECK(gpu.num_parameters() == cpu.num_parameters());
  CHECK(gpu.param_info().size() == cpu.param_info().size());
  for (std::size_t i = 0; i < std::min(gpu.param_info().size(), cpu.param_info().size()); ++i)
    CHECK(gpu.param_info()[i].name == cpu.param_info()[i].name &&
          gpu.param_info()[i].offset == cpu.param_info()[i].offset);
  std::vector<T> p(gpu.num_parameters());
  gpu.copy_params_to_host(p.data());
  CHECK(std::equal(p.begin(), p.end(), cpu.params()));  // bitwise: same host code path

  const std::size_t nx = std::size_t(T_) * N * cfg.input_size, ny = std::size_t(T_) * N * D * H;
  const std::size_t ns = std::size_t(L) * D * N * H;
  auto x = pattern<T>(nx, 11);
  const auto h0 = pattern<T>(ns, 12), c0 = pattern<T>(ns, 13);
  const std::vector<std::int64_t> lens = {6, 2, 4};
  const std::int64_t* lp = cs.lengths ? lens.data() : nullptr;
  // Padding is never read, so it may be anything: NaN there must not reach any gradient.
  for (int t = 0; t < T_ && cs.lengths; ++t)
    for (int n = 0; n < N; ++n)
      if (t >= lens[n])
        for (int c = 0; c < cfg.input_size; ++c)
          x[(cs.batch_first ? std::size_t(n) * T_ + t : std::size_t(t) * N + n) * cfg.input_size +
            c] = std::numeric_limits<T>::quiet_NaN();
  std::vector<T> y(ny), hn(ns), cn(ns);
  cpu.forward(y.data(), hn.data(), lstm ? cn.data() : nullptr, x.data(), cs.hx ? h0.data() : nullptr,
              cs.hx && lstm ? c0.data() : nullptr, lp, T_, N, true, 99);
  auto dx_ = upload(x), dh0_ = upload(h0), dc0_ = upload(c0);
  DeviceBuffer<T> gy(ny), ghn(ns), gcn(ns);
  gpu.forward(gy.data(), ghn.data(), lstm ? gcn.data() : nullptr, dx_.data(),
              cs.hx ? dh0_.data() : nullptr, cs.hx && lstm ? dc0_.data() : nullptr, lp, T_, N, true,
              99);
  bool ok = close(download(gy), y, tol, "y", label) && close(download(ghn), hn, tol, "hn", label);
  if (lstm) ok = close(download(gcn), cn, tol, "cn", label) && ok;

  const auto dy = pattern<T>(ny, 21), dhn = pattern<T>(ns, 22), dcn = pattern<T>(ns, 23);
  std::vector<T> dx(nx), dh0(ns), dc0(ns);
  for (int rep = 0; rep < 2; ++rep)  // twice: parameter gradients accumulate
    cpu.backward(dx.data(), dh0.data(), lstm ? dc0.data() : nullptr, dy.data(), dhn.data(),
                 lstm ? dcn.data() : nullptr);
  auto gdy = upload(dy), gdhn = upload(dhn), gdcn = upload(dcn);
  DeviceBuffer<T> gdx(nx), gdh0(ns), gdc0(ns);
  for (int rep = 0; rep < 2; ++rep)
    gpu.backward(gdx.data(), gdh0.data(), lstm ? gdc0.data() : nullptr, gdy.data(), gdhn.data(),
                 lstm ? gdcn.data() : nullptr);
  ok = close(download(gdx), dx, tol, "dx", label) && ok;
  ok = close(download(gdh0), dh0, tol, "dh0", label) && ok;
  if (lstm) ok = close(download(gdc0), dc0, tol, "dc0", label) && ok;
  std::vector<T> g(gpu.num_parameters());
  gpu.copy_grads_to_host(g.data());
  for (std::size_t i = 0; i < g.size(); ++i)
    if (!std::isfinite(g[i]) || !std::isfinite(cpu.grads()[i])) {
      std::printf("FAIL %s: parameter gradient %zu not finite (cpu %g, cuda %g)\n", label.c_str(),
                  i, double(cpu.grads()[i]), double(g[i]));
      ok = false;
      break;
    }
  for (const pyrnn::ParamInfo& pi : cpu.param_info()) {
    std::vector<T> got(g.begin() + pi.offset, g.begin() + pi.offset + pi.size());
    std::vector<T> want(cpu.grads() + pi.offset, cpu.grads() + pi.offset + pi.size());
    ok = close(got, want, tol, pi.name.c_str(), label) && ok;
  }
  if (!ok) ++failures;

  // Eval forward: same outputs, no cache.
  cpu.forward(y.data(), hn.data(), lstm ? cn.data() : nullptr, x.data(), nullptr, nullptr, lp, T_,
              N, false, 0);
  gpu.forward(gy.data(), ghn.data(), lstm ? gcn.data() : nullptr, dx_.data(), nullptr, nullptr, lp,
              T_, N, false, 0);
  CHECK(!gpu.has_cache());
  if (!close(download(gy), y, tol, "eval y", label)) ++failures;
  CHECK_THROWS(gpu.backward(gdx.data(), gdh0.data(), gdc0.data(), gdy.data(), nullptr, nullptr));
}

const std::pair<pyrnn::CellType, bool> kCells[] = {
    {pyrnn::CellType::RNN_TANH, false}, {pyrnn::CellType::RNN_RELU, false},
    {pyrnn::CellType::LSTM, false}, {pyrnn::CellType::GRU, false}, {pyrnn::CellType::GRU, true}};

template <typename T>
void test_recurrent(const Mode& mode) {
  // The custom step kernels do not touch layers, directions or h0: half the grid there.
  const bool custom = mode.options.algo == RecurrentAlgo::Fused ||
                      mode.options.algo == RecurrentAlgo::Persistent;
  for (const auto& c : kCells)
    for (int layers : {1, 2})
      for (bool bidir : {false, true})
        for (bool lengths : {false, true})
          for (bool hx : {false, true})
            if (!custom || lengths == hx)
              check_recurrent<T>({c.first, c.second, layers, bidir, lengths, hx, 0.0}, mode);
  for (const auto& c : kCells) check_recurrent<T>({c.first, c.second, 3, true, true, true, 0.3}, mode);
  for (const auto& c : kCells)
    check_recurrent<T>({c.first, c.second, 2, true, true, true, 0.0, /*bias=*/false}, mode);
  for (const auto& c : kCells)
    check_recurrent<T>({c.first, c.second, 2, true, true, true, 0.3, true, /*batch_first=*/true},
                       mode);
  // and the plain case (one layer, one direction, full lengths, zero states) batch_first
  for (const auto& c : kCells)
    check_recurrent<T>({c.first, c.second, 1, false, false, false, 0.0, true, /*batch_first=*/true},
                       mode);
}

Options make_options(RecurrentAlgo algo, Switch graphs, Switch streams, int blocks = 0,
                     Precision precision = Precision::Float32) {
  Options o;
  o.precision = precision;
  o.algo = algo;
  o.graphs = graphs;
  o.streams = streams;
  o.persist_blocks = blocks;
  return o;
}

// Every execution path: the cuBLAS step with and without graphs and the side stream; the fused
// step kernel (one block, and 3 blocks of 3, 3, 1 units); the persistent kernel (one block: block
// barriers; 3 blocks: grid barriers; 2 and 7 in the determinism test); TF32 (float tolerance
// 1e-2: operands rounded to 10 mantissa bits; the emulation's worst case is about 1.5e-3, and
// hardware that truncates instead of rounding doubles it; see docs/cuda_performance.md).
std::vector<Mode> all_modes() {
  using A = RecurrentAlgo;
  return {
      {"defaults", Options{}},
      {"cublas+graphs+streams", make_options(A::Cublas, Switch::On, Switch::On)},
      {"cublas, no graphs, one stream", make_options(A::Cublas, Switch::Off, Switch::Off)},
      {"fused, 1 block", make_options(A::Fused, Switch::On, Switch::On, 1)},
      {"fused, 3 blocks, no graphs", make_options(A::Fused, Switch::Off, Switch::Off, 3)},
      {"persistent, 1 block", make_options(A::Persistent, Switch::On, Switch::On, 1)},
      {"persistent, 3 blocks", make_options(A::Persistent, Switch::On, Switch::On, 3)},
      {"tf32", make_options(A::Cublas, Switch::On, Switch::On, 0, Precision::TF32), 1000.0},
  };
}

template <typename T>
std::vector<T> run_forward(pyrnn::cuda::Recurrent<T>& gpu, const DeviceBuffer<T>& x, int T_, int N,
                           const std::int64_t* lengths, bool training) {
  const auto& cfg = gpu.config();
  const std::size_t ny = std::size_t(T_) * N * cfg.directions() * cfg.hidden_size;
  const std::size_t ns = std::size_t(cfg.num_layers) * cfg.directions() * N * cfg.hidden_size;
  DeviceBuffer<T> y(ny), hn(ns), cn(ns);
  gpu.forward(y.data(), hn.data(), cfg.cell == pyrnn::CellType::LSTM ? cn.data() : nullptr,
              x.data(), nullptr, nullptr, lengths, T_, N, training, 5);
  return download(y);
}

// Graphs are replayed while nothing changes and re-captured when anything does (shapes, lengths,
// training / eval, options); results stay the CPU's every time, and graphs on / off and the
// custom kernels' block counts give bitwise identical results.
template <typename T>
void test_graph_reuse_and_determinism() {
  using A = RecurrentAlgo;
  for (const auto& c : kCells) {
    pyrnn::RecurrentConfig cfg;
    cfg.cell = c.first;
    cfg.reset_after = c.second;
    cfg.input_size = 4;
    cfg.hidden_size = 6;
    cfg.num_layers = 2;
    cfg.bidirectional = true;
    const double tol = sizeof(T) == 4 ? 1e-5 : 1e-10;
    const bool lstm = c.first == pyrnn::CellType::LSTM;
    const std::string label = std::string("graph reuse cell=") + std::to_string(int(c.first)) +
                              " reset_after=" + std::to_string(int(c.second));
    pyrnn::Recurrent<T> cpu(cfg);
    pyrnn::cuda::Recurrent<T> on(cfg), off(cfg);
    cpu.reset_parameters(3);
    on.reset_parameters(3);
    off.reset_parameters(3);
    on.set_options(make_options(A::Cublas, Switch::On, Switch::On));
    off.set_options(make_options(A::Cublas, Switch::Off, Switch::Off));
    const std::vector<std::int64_t> lens = {5, 2, 4}, lens2 = {1, 5, 3};
    struct Call { int T_, N; const std::int64_t* lengths; bool training; };
    const Call calls[] = {{5, 3, nullptr, true}, {5, 3, nullptr, true}, {5, 3, lens.data(), true},
                          {5, 3, lens2.data(), true}, {5, 3, nullptr, false}, {4, 2, nullptr, true},
                          {5, 3, nullptr, true}};
    for (const Call& call : calls) {
      const auto x = pattern<T>(std::size_t(call.T_) * call.N * cfg.input_size, 40 + call.T_);
      auto dx_ = upload(x);
      const std::size_t ny = std::size_t(call.T_) * call.N * 2 * cfg.hidden_size;
      const std::size_t ns = std::size_t(2) * 2 * call.N * cfg.hidden_size;
      std::vector<T> y(ny), hn(ns), cn(ns);
      cpu.forward(y.data(), hn.data(), lstm ? cn.data() : nullptr, x.data(), nullptr, nullptr,
                  call.lengths, call.T_, call.N, call.training, 5);
      const auto got_on = run_forward(on, dx_, call.T_, call.N, call.lengths, call.training);
      const auto got_off = run_forward(off, dx_, call.T_, call.N, call.lengths, call.training);
      if (!close(got_on, y, tol, "y (graphs)", label)) ++failures;
      CHECK(got_on == got_off);  // bitwise: the same kernels, replayed or launched
      CHECK(on.last_forward_graphs() == on.graphs_disabled_reason().empty());
      CHECK(!off.last_forward_graphs());
      if (!call.training) continue;
      const auto dy = pattern<T>(ny, 60 + call.T_);
      std::vector<T> dxc(x.size()), dh0(ns), dc0(ns);
      cpu.backward(dxc.data(), dh0.data(), lstm ? dc0.data() : nullptr, dy.data(), nullptr, nullptr);
      auto gdy = upload(dy);
      DeviceBuffer<T> dx_on(x.size()), dx_off(x.size()), g0(ns), g1(ns), c0(ns), c1(ns);
      on.backward(dx_on.data(), g0.data(), lstm ? c0.data() : nullptr, gdy.data(), nullptr, nullptr);
      off.backward(dx_off.data(), g1.data(), lstm ? c1.data() : nullptr, gdy.data(), nullptr,
                   nullptr);
      if (!close(download(dx_on), dxc, tol, "dx (graphs)", label)) ++failures;
      CHECK(download(dx_on) == download(dx_off));
      CHECK(download(g0) == download(g1));
    }
    std::vector<T> ga(on.num_parameters()), gb(off.num_parameters());
    on.copy_grads_to_host(ga.data());
    off.copy_grads_to_host(gb.data());
    CHECK(ga == gb);
    std::vector<T> want(cpu.grads(), cpu.grads() + cpu.num_parameters());
    if (!close(ga, want, tol, "grads (graphs)", label)) ++failures;
  }
  // The custom step kernels: every block count and both launch forms give the same bits.
  for (const auto& c : kCells) {
    pyrnn::RecurrentConfig cfg;
    cfg.cell = c.first;
    cfg.reset_after = c.second;
    cfg.input_size = 3;
    cfg.hidden_size = 7;
    const bool lstm = c.first == pyrnn::CellType::LSTM;
    const int T_ = 5, N = 3;
    const auto x = pattern<T>(std::size_t(T_) * N * cfg.input_size, 77);
    const auto dy = pattern<T>(std::size_t(T_) * N * cfg.hidden_size, 78);
    auto gx = upload(x);
    auto gdy = upload(dy);
    std::vector<std::vector<T>> ys, dxs, grads;
    const Options variants[] = {make_options(A::Fused, Switch::Off, Switch::Off, 1),
                                make_options(A::Fused, Switch::On, Switch::Off, 3),
                                make_options(A::Persistent, Switch::Off, Switch::Off, 1),
                                make_options(A::Persistent, Switch::Off, Switch::Off, 2),
                                make_options(A::Persistent, Switch::Off, Switch::Off, 7)};
    for (const Options& o : variants) {
      pyrnn::cuda::Recurrent<T> gpu(cfg);
      gpu.reset_parameters(9);
      gpu.set_options(o);
      ys.push_back(run_forward(gpu, gx, T_, N, nullptr, true));
      CHECK(gpu.last_forward_algo() == o.algo);
      DeviceBuffer<T> gdx(x.size()), dh0(std::size_t(N) * cfg.hidden_size), dc0(dh0.size());
      gpu.backward(gdx.data(), dh0.data(), lstm ? dc0.data() : nullptr, gdy.data(), nullptr,
                   nullptr);
      CHECK(gpu.last_backward_algo() == o.algo);
      dxs.push_back(download(gdx));
      std::vector<T> g(gpu.num_parameters());
      gpu.copy_grads_to_host(g.data());
      grads.push_back(g);
    }
    for (std::size_t i = 1; i < ys.size(); ++i) {
      CHECK(ys[i] == ys[0]);
      CHECK(dxs[i] == dxs[0]);
      CHECK(grads[i] == grads[0]);
    }
  }
}

// GPU only: the step kernels' max dynamic shared memory is a per-kernel attribute shared by all
// layers, while plans are memoized per layer. A big plan, then another layer's smaller (> 48 KiB)
// plan, then the big layer again must still launch (the attribute must never be lowered).
void test_shared_memory_attribute() {
  pyrnn::RecurrentConfig big, small;
  big.cell = small.cell = pyrnn::CellType::LSTM;
  big.input_size = small.input_size = 4;
  big.hidden_size = 1024;  // fused plan, N = 64: ~160 KiB of shared memory per block
  small.hidden_size = 512;  // ~64 KiB
  const int T_ = 2, N = 64;
  const auto x = pattern<float>(std::size_t(T_) * N * 4, 91);
  auto gx = upload(x);
  pyrnn::cuda::Recurrent<float> a(big), b(small);
  a.set_options(make_options(RecurrentAlgo::Fused, Switch::Off, Switch::Off));
  b.set_options(make_options(RecurrentAlgo::Fused, Switch::Off, Switch::Off));
  const auto y1 = run_forward(a, gx, T_, N, nullptr, false);
  const bool fused = a.last_forward_algo() == RecurrentAlgo::Fused;
  run_forward(b, gx, T_, N, nullptr, false);
  std::vector<float> y2;
  try {
    y2 = run_forward(a, gx, T_, N, nullptr, false);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "  shared memory attribute lowered by another layer's plan: %s\n", e.what());
    ++failures;
    return;
  }
  CHECK(!fused || a.last_forward_algo() == RecurrentAlgo::Fused);
  CHECK(y2 == y1);
}

#ifdef PYRNN_CUDA_HOST_EMULATION
}  // namespace
#include "device_scope.cuh"  // internal (cuda/src): the emulation's include path has it
namespace pyrnn {
namespace cuda {
namespace emu {  // tests/emu/host_runtime.cpp
void set_capture_failure(bool fail);
long captures();
long graph_launches();
void reset_devices(int count);
bool primary_context_active(int device);
long set_device_calls(int device);
void set_device_failure(bool fail);
void set_memory_limit(std::size_t bytes);
}  // namespace emu
}  // namespace cuda
}  // namespace pyrnn
extern "C" void pyrnn_emu_live_allocations(std::size_t* count, std::size_t* bytes);
extern "C" unsigned long long pyrnn_emu_pending();
namespace {

// Runs f on a new thread: the runtime's current device is per thread, 0 until set.
template <class F>
void on_new_thread(F f) {
  std::thread th(f);
  th.join();
}

// DeviceScope restores the caller's device only where its primary context is active: since
// CUDA 12 cudaSetDevice creates one, so restoring an unused device 0 would put a context
// (hundreds of MiB) on a GPU the process never used. Two emulated devices, none used yet.
void test_device_scope_emulated() {
  namespace emu = pyrnn::cuda::emu;
  using pyrnn::cuda::detail::DeviceScope;
  emu::reset_devices(2);
  on_new_thread([] {
    int dev = -1;
    { DeviceScope same(0); }  // already current: no switch, no context made
    CHECK(emu::set_device_calls(0) == 0 && !emu::primary_context_active(0));
    {
      DeviceScope other(1);
      CHECK(cudaGetDevice(&dev) == cudaSuccess && dev == 1);
    }
    // Device 0 was never used: not made current again (no context), device 1 stays current.
    CHECK(emu::set_device_calls(0) == 0 && !emu::primary_context_active(0));
    CHECK(!pyrnn::cuda::detail::primary_context_active(0));
    CHECK(cudaGetDevice(&dev) == cudaSuccess && dev == 1);
    // Once the caller has used device 0, it is restored.
    CHECK(cudaSetDevice(0) == cudaSuccess && pyrnn::cuda::detail::primary_context_active(0));
    {
      DeviceScope other(1);
      CHECK(cudaGetDevice(&dev) == cudaSuccess && dev == 1);
    }
    CHECK(cudaGetDevice(&dev) == cudaSuccess && dev == 0 && emu::set_device_calls(0) == 2);
    // A failed restore leaves no error for the next call's check.
    {
      DeviceScope other(1);
      emu::set_device_failure(true);
    }
    emu::set_device_failure(false);
    CHECK(cudaGetLastError() == cudaSuccess);
  });
  emu::reset_devices(1);
}

// A DeviceBuffer is freed on its own device, and copy_bytes(..., device) copies on the array's
// device (DeviceArray's numpy / copy / copy_from): a thread that never used device 0 (its
// current device) gets no context there from memory on device 1.
void test_buffer_device_emulated() {
  namespace emu = pyrnn::cuda::emu;
  emu::reset_devices(2);
  std::size_t n0 = 0, b0 = 0, n1 = 0, b1 = 0;
  pyrnn_emu_live_allocations(&n0, &b0);
  DeviceBuffer<float> buf, copy;
  on_new_thread([&] {
    CHECK(cudaSetDevice(1) == cudaSuccess);
    buf = DeviceBuffer<float>(16);
    copy = DeviceBuffer<float>(16);
  });
  CHECK(!emu::primary_context_active(0) && emu::primary_context_active(1));
  on_new_thread([&] {
    const auto v = pattern<float>(16, 3);
    std::vector<float> back(16, 0.f);
    pyrnn::cuda::copy_bytes(buf.data(), v.data(), 16 * sizeof(float), nullptr, 1);
    pyrnn::cuda::copy_bytes(copy.data(), buf.data(), 16 * sizeof(float), nullptr, 1);
    pyrnn::cuda::copy_bytes(back.data(), copy.data(), 16 * sizeof(float), nullptr, 1);
    CHECK(back == v);
  });
  CHECK(!emu::primary_context_active(0));
  on_new_thread([&] {  // (copy_bytes left device 1 current: a new thread has 0)
    buf = DeviceBuffer<float>();  // freed from a thread whose current device is 0
    DeviceBuffer<float> moved(std::move(copy));  // the device moves with the memory
  });
  pyrnn_emu_live_allocations(&n1, &b1);
  CHECK(n1 == n0 && b1 == b0);
  CHECK(!emu::primary_context_active(0));
  emu::reset_devices(1);
}

// The facade refuses an oversize pass with the core's size error before its workspaces grow:
// x_ [T, N, C] and y_ [T, N, H] would take 2 GiB here, more than the emulated device has.
void test_facade_size_check_emulated() {
  namespace emu = pyrnn::cuda::emu;
  pyrnn::LSTMLayerCUDA layer(1, 1024, 1);  // width 4 * 1024: 2^19 rows reach 2^31
  std::vector<pyrnn::MatrixCUDA> seq;
  seq.emplace_back(pyrnn::Matrix(1 << 19, 1));
  std::size_t n0 = 0, b0 = 0, n1 = 0, b1 = 0;
  emu::set_memory_limit(std::size_t(1) << 30);
  pyrnn_emu_live_allocations(&n0, &b0);
  std::string msg;
  try {
    layer.forward(seq);
    msg = "<no error>";
  } catch (const pyrnn::Error& e) {
    msg = e.what();
  } catch (const std::exception& e) {  // OutOfMemory (a std::bad_alloc)
    msg = std::string("not a pyrnn::Error: ") + e.what();
  }
  pyrnn_emu_live_allocations(&n1, &b1);
  emu::set_memory_limit(0);
  CHECK(contains(msg, "steps * batch * width = 1 * 524288 * 4096 overflows the CUDA layers' "
                      "32-bit sizes"));
  CHECK(n1 == n0 && b1 == b0);
}

// The graph bookkeeping as the emulation sees it: one capture per direction and pass, replays
// after that, and a failed capture falling back to launches for good.
void test_graphs_emulated() {
  namespace emu = pyrnn::cuda::emu;
  pyrnn::RecurrentConfig cfg;
  cfg.cell = pyrnn::CellType::LSTM;
  cfg.input_size = 3;
  cfg.hidden_size = 5;
  const int T_ = 4, N = 2;
  const auto x = pattern<float>(std::size_t(T_) * N * 3, 5);
  auto gx = upload(x);
  pyrnn::Recurrent<float> cpu(cfg);
  std::vector<float> y(std::size_t(T_) * N * 5), hn(N * 5), cn(N * 5);
  cpu.forward(y.data(), hn.data(), cn.data(), x.data(), nullptr, nullptr, nullptr, T_, N, true, 0);

  pyrnn::cuda::Recurrent<float> gpu(cfg);
  gpu.set_options(make_options(RecurrentAlgo::Cublas, Switch::On, Switch::On));
  const long c0 = emu::captures(), l0 = emu::graph_launches();
  CHECK(close(run_forward(gpu, gx, T_, N, nullptr, true), y, 1e-5, "y", "graphs emulated"));
  CHECK(emu::captures() == c0 + 1 && emu::graph_launches() == l0 + 1);
  CHECK(gpu.last_forward_graphs());
  CHECK(close(run_forward(gpu, gx, T_, N, nullptr, true), y, 1e-5, "y", "graph replay"));
  CHECK(emu::captures() == c0 + 1 && emu::graph_launches() == l0 + 2);  // replayed, no capture
  DeviceBuffer<float> dy(y.size()), dx(x.size()), dh0(N * 5), dc0(N * 5);
  dy.copy_from_host(y.data(), y.size());
  gpu.backward(dx.data(), dh0.data(), dc0.data(), dy.data(), nullptr, nullptr);
  gpu.backward(dx.data(), dh0.data(), dc0.data(), dy.data(), nullptr, nullptr);
  CHECK(emu::captures() == c0 + 2 && emu::graph_launches() == l0 + 4);
  CHECK(gpu.last_backward_graphs());

  // A stack in eval mode shares its caches between layers: still one graph per layer and
  // direction, replayed by the next call.
  pyrnn::RecurrentConfig cfg2 = cfg;
  cfg2.num_layers = 2;
  cfg2.bidirectional = true;
  pyrnn::cuda::Recurrent<float> stack(cfg2);
  stack.set_options(make_options(RecurrentAlgo::Cublas, Switch::On, Switch::On));
  run_forward(stack, gx, T_, N, nullptr, false);
  const long c1 = emu::captures();
  run_forward(stack, gx, T_, N, nullptr, false);
  CHECK(emu::captures() == c1);
  run_forward(stack, gx, T_, N, nullptr, true);
  const long c2 = emu::captures();
  CHECK(c2 == c1 + 4);  // training: its own graphs
  run_forward(stack, gx, T_, N, nullptr, true);
  CHECK(emu::captures() == c2);

  emu::set_capture_failure(true);
  pyrnn::cuda::Recurrent<float> fallback(cfg);
  fallback.set_options(make_options(RecurrentAlgo::Cublas, Switch::On, Switch::On));
  CHECK(close(run_forward(fallback, gx, T_, N, nullptr, true), y, 1e-5, "y", "capture failed"));
  CHECK(!fallback.last_forward_graphs() && !fallback.graphs_disabled_reason().empty());
  emu::set_capture_failure(false);
  CHECK(close(run_forward(fallback, gx, T_, N, nullptr, true), y, 1e-5, "y", "after failure"));
  CHECK(!fallback.last_forward_graphs());  // off for the rest of the layer's life
}

// A pass that runs out of device memory part-way has queued work by then (layers done, weight
// gradients accumulating, the side lane running): it waits for it before it throws, so the
// caller never reads buffers a kernel is still writing. Every failure point is taken: the
// device's memory grows a little per try, for forward and for backward, with both lanes.
void test_failed_pass_leaves_nothing_running_emulated() {
  namespace emu = pyrnn::cuda::emu;
  pyrnn::RecurrentConfig cfg;
  cfg.cell = pyrnn::CellType::LSTM;
  cfg.input_size = 4;
  cfg.hidden_size = 8;
  cfg.num_layers = 3;
  cfg.bidirectional = true;
  const int T_ = 5, N = 3;
  const std::size_t ny = std::size_t(T_) * N * 16, ns = std::size_t(6) * N * 8;
  auto gx = upload(pattern<float>(std::size_t(T_) * N * 4, 11));
  auto gdy = upload(pattern<float>(ny, 12));
  DeviceBuffer<float> y(ny), hn(ns), cn(ns), dx(std::size_t(T_) * N * 4), dh0(ns), dc0(ns);
  // The gradients of one backward with memory to spare: a refused one must have added none
  // (every workspace is allocated before the first kernel, as on the CPU), so that a retry
  // gives exactly these.
  std::vector<float> want;
  {
    pyrnn::cuda::Recurrent<float> ref(cfg);
    ref.set_options(make_options(RecurrentAlgo::Cublas, Switch::Off, Switch::On));
    ref.forward(y.data(), hn.data(), cn.data(), gx.data(), nullptr, nullptr, nullptr, T_, N, true,
                0);
    ref.backward(dx.data(), dh0.data(), dc0.data(), gdy.data(), nullptr, nullptr);
    want.resize(ref.num_parameters());
    ref.copy_grads_to_host(want.data());
  }
  for (const bool backward : {false, true}) {
    int failed = 0;
    for (std::size_t extra = 0;; extra += 512) {
      pyrnn::cuda::Recurrent<float> gpu(cfg);  // no workspaces yet: every ensure allocates
      gpu.set_options(make_options(RecurrentAlgo::Cublas, Switch::Off, Switch::On));
      if (backward)
        gpu.forward(y.data(), hn.data(), cn.data(), gx.data(), nullptr, nullptr, nullptr, T_, N,
                    true, 0);
      std::size_t count = 0, live = 0;
      pyrnn_emu_live_allocations(&count, &live);
      emu::set_memory_limit(live + extra);
      bool threw = false;
      try {
        if (backward)
          gpu.backward(dx.data(), dh0.data(), dc0.data(), gdy.data(), nullptr, nullptr);
        else
          gpu.forward(y.data(), hn.data(), cn.data(), gx.data(), nullptr, nullptr, nullptr, T_,
                      N, true, 0);
      } catch (const std::bad_alloc&) {  // pyrnn::OutOfMemory
        threw = true;
      }
      emu::set_memory_limit(0);
      CHECK(pyrnn_emu_pending() == 0);
      if (!threw) break;
      ++failed;
      if (backward) {
        std::vector<float> g(gpu.num_parameters());
        gpu.copy_grads_to_host(g.data());
        CHECK(std::all_of(g.begin(), g.end(), [](float v) { return v == 0.0f; }));
        gpu.backward(dx.data(), dh0.data(), dc0.data(), gdy.data(), nullptr, nullptr);  // retry
        gpu.copy_grads_to_host(g.data());
        CHECK(g == want);
      }
    }
    CHECK(failed > 3);  // failure points past the first allocation were taken
  }
  // The facade: a forward refused for memory leaves lastHiddenState() as it was.
  pyrnn::LSTMLayerCUDA layer(4, 8, 2, 3);
  std::vector<pyrnn::MatrixCUDA> two, five;
  for (int t = 0; t < 5; ++t) {  // 2 steps of 2 rows, 5 steps of 5 rows
    pyrnn::Matrix step(5, 4), small(2, 4);
    for (std::size_t i = 0; i < 5; ++i)
      for (std::size_t j = 0; j < 4; ++j) step(i, j) = 0.1f * float(t + 1) * float(i + j + 1);
    for (std::size_t i = 0; i < 2; ++i)
      for (std::size_t j = 0; j < 4; ++j) small(i, j) = step(i, j);
    if (t < 2) two.emplace_back(small);
    five.emplace_back(step);
  }
  layer.forward(two);
  const pyrnn::Matrix before = layer.lastHiddenState().toCPU();
  const pyrnn::Matrix cell_before = layer.lastCellState().toCPU();
  int refused = 0;
  for (std::size_t extra = 0;; extra += 64) {
    std::size_t count = 0, live = 0;
    pyrnn_emu_live_allocations(&count, &live);
    emu::set_memory_limit(live + extra);
    bool threw = false;
    try {
      layer.forward(five);
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    emu::set_memory_limit(0);
    if (!threw) break;
    ++refused;
    const pyrnn::Matrix now = layer.lastHiddenState().toCPU();
    const pyrnn::Matrix cell = layer.lastCellState().toCPU();
    CHECK(now.rows() == before.rows() && now.cols() == before.cols());
    CHECK(cell.rows() == cell_before.rows() && cell.cols() == cell_before.cols());
    bool same = true;
    for (std::size_t i = 0; i < now.rows(); ++i)
      for (std::size_t j = 0; j < now.cols(); ++j)
        same = same && now(i, j) == before(i, j) && cell(i, j) == cell_before(i, j);
    CHECK(same);
  }
  CHECK(refused > 0);
}
#endif

// ||a - b|| / ||b|| (Frobenius).
template <typename A, typename B>
double rel_error(const std::vector<A>& a, const std::vector<B>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

// TF32 against float32, both against a float64 twin: the error the precision option costs, at
// a moderate size (T=20, N=16, C=H=128). Printed (docs/cuda_performance.md quotes the emulated
// figures; a GPU session prints the device's), bounded loosely.
void report_tf32_error() {
  for (const auto& c : kCells) {
    pyrnn::RecurrentConfig cfg;
    cfg.cell = c.first;
    cfg.reset_after = c.second;
    cfg.input_size = 128;
    cfg.hidden_size = 128;
    const int T_ = 20, N = 16;
    const bool lstm = c.first == pyrnn::CellType::LSTM;
    pyrnn::Recurrent<double> ref(cfg);
    ref.reset_parameters(11);
    std::vector<double> p64(ref.params(), ref.params() + ref.num_parameters());
    std::vector<float> p32(p64.begin(), p64.end());
    const auto x32 = pattern<float>(std::size_t(T_) * N * 128, 90);
    const auto dy32 = pattern<float>(std::size_t(T_) * N * 128, 91);
    const std::vector<double> x64(x32.begin(), x32.end()), dy64(dy32.begin(), dy32.end());
    std::vector<double> y(std::size_t(T_) * N * 128), hn(N * 128), cn(N * 128), dx(x64.size()),
        dh0(N * 128), dc0(N * 128);
    ref.forward(y.data(), hn.data(), lstm ? cn.data() : nullptr, x64.data(), nullptr, nullptr,
                nullptr, T_, N, true, 0);
    ref.backward(dx.data(), dh0.data(), lstm ? dc0.data() : nullptr, dy64.data(), nullptr, nullptr);
    std::vector<double> g64(ref.grads(), ref.grads() + ref.num_parameters());
    double err[2][3] = {};
    for (int prec = 0; prec < 2; ++prec) {
      pyrnn::cuda::Recurrent<float> gpu(cfg);
      gpu.copy_params_from_host(p32.data());
      gpu.set_options(make_options(RecurrentAlgo::Cublas, Switch::On, Switch::On, 0,
                                   prec ? Precision::TF32 : Precision::Float32));
      auto gx = upload(x32);
      auto gdy = upload(dy32);
      const auto got = run_forward(gpu, gx, T_, N, nullptr, true);
      DeviceBuffer<float> gdx(x32.size()), a(N * 128), b(N * 128);
      gpu.backward(gdx.data(), a.data(), lstm ? b.data() : nullptr, gdy.data(), nullptr, nullptr);
      std::vector<float> g(gpu.num_parameters());
      gpu.copy_grads_to_host(g.data());
      err[prec][0] = rel_error(got, y);
      err[prec][1] = rel_error(download(gdx), dx);
      err[prec][2] = rel_error(g, g64);
    }
    std::printf("  rel. error vs float64, cell=%d reset_after=%d (T=20 N=16 C=H=128): "
                "float32 y %.1e dx %.1e grads %.1e | tf32 y %.1e dx %.1e grads %.1e\n",
                int(c.first), int(c.second), err[0][0], err[0][1], err[0][2], err[1][0],
                err[1][1], err[1][2]);
    for (int i = 0; i < 3; ++i) {
      CHECK(err[0][i] < 1e-5);
      CHECK(err[1][i] < 1e-2);
    }
  }
}

void test_options() {
  using pyrnn::cuda::parse_algo;
  CHECK(parse_algo("persistent") == RecurrentAlgo::Persistent);
  CHECK(parse_algo("CUBLAS") == RecurrentAlgo::Cublas);
  CHECK(pyrnn::cuda::parse_precision("tf32") == Precision::TF32);
  CHECK(pyrnn::cuda::parse_switch("0") == Switch::Off);
  CHECK_THROWS(parse_algo("warp"));
  CHECK_THROWS(pyrnn::cuda::parse_precision("bf16"));
  CHECK_THROWS(pyrnn::cuda::parse_switch("maybe"));
  const Options before = pyrnn::cuda::default_options();
  CHECK(before.precision != Precision::Default && before.algo != RecurrentAlgo::Default);
  Options o;
  o.algo = RecurrentAlgo::Fused;
  pyrnn::cuda::set_default_options(o);
  CHECK(pyrnn::cuda::default_options().algo == RecurrentAlgo::Fused);
  CHECK(pyrnn::cuda::default_options().precision == before.precision);
  Options layer;
  layer.graphs = Switch::Off;
  const Options r = pyrnn::cuda::resolve(layer);
  CHECK(r.graphs == Switch::Off && r.algo == RecurrentAlgo::Fused);
  pyrnn::cuda::set_default_options(Options{});  // back to the environment's defaults
  CHECK(pyrnn::cuda::default_options().algo == before.algo);
  o = Options{};
  o.persist_blocks = 70000;
  CHECK_THROWS(pyrnn::cuda::set_default_options(o));
}

// An LSTM (C = 2, H = 3) and buffers for T = N = 2: x [2, 2, 2], y [2, 2, 3], hn / cn [2, 3].
struct TinyLstm {
  pyrnn::RecurrentConfig cfg = [] {
    pyrnn::RecurrentConfig c;
    c.input_size = 2;
    c.hidden_size = 3;
    return c;
  }();
  pyrnn::cuda::Recurrent<float> gpu{cfg};
  DeviceBuffer<float> x{2 * 2 * 2}, y{2 * 2 * 3}, hn{2 * 3}, cn{2 * 3};
  TinyLstm() { x.zero(); }
};

void test_recurrent_errors() {
  TinyLstm tiny;
  pyrnn::RecurrentConfig& cfg = tiny.cfg;
  pyrnn::cuda::Recurrent<float>& gpu = tiny.gpu;
  DeviceBuffer<float> &x = tiny.x, &y = tiny.y, &hn = tiny.hn, &cn = tiny.cn;
  const std::int64_t bad[] = {1, 3};  // 3 > T = 2
  CHECK_THROWS(gpu.forward(y.data(), hn.data(), cn.data(), x.data(), nullptr, nullptr, bad, 2, 2,
                           true, 0));
  CHECK(!gpu.has_cache());
  CHECK_THROWS(gpu.backward(x.data(), hn.data(), cn.data(), y.data(), nullptr, nullptr));
  CHECK_THROWS(gpu.forward(y.data(), hn.data(), nullptr, x.data(), nullptr, nullptr, nullptr, 2, 2,
                           true, 0));  // LSTM without c_n
  {  // The 32-bit GEMM size check counts a bidirectional layer's 2H width (RNN: G*H = H):
     // T*N*H = 2^30 but T*N*2H = 2^31 must throw before any buffer is touched (all tiny).
    pyrnn::RecurrentConfig wide;
    wide.cell = pyrnn::CellType::RNN_TANH;
    wide.input_size = 1;
    wide.hidden_size = 64;
    wide.num_layers = 2;
    wide.bidirectional = true;
    pyrnn::cuda::Recurrent<float> net(wide);
    CHECK_THROWS(net.forward(y.data(), hn.data(), nullptr, x.data(), nullptr, nullptr, nullptr,
                             1 << 12, 1 << 12, false, 0));
    // T = N = 2^30 at width 64 * 2: the product wrapped around to 0 in size_t and passed.
    CHECK_THROWS(net.forward(y.data(), hn.data(), nullptr, x.data(), nullptr, nullptr, nullptr,
                             1 << 30, 1 << 30, false, 0));
    // The sizes print as integers (a width of 2^20 used to print as 1.04858e+06).
    wide.hidden_size = 1;  // parameters 4 MiB
    wide.num_layers = 1;
    wide.bidirectional = false;
    wide.input_size = 1 << 20;  // the width
    CHECK(contains(error_of([&] { pyrnn::cuda::Recurrent<float>(wide).check_forward(2048, 1); }),
                   "steps * batch * width = 2048 * 1 * 1048576 overflows"));
  }
  {  // A moved-from core kept its config and cache flag but lost its parameter table.
    pyrnn::cuda::Recurrent<float> a(cfg);
    a.forward(y.data(), hn.data(), cn.data(), x.data(), nullptr, nullptr, nullptr, 2, 2, true, 0);
    pyrnn::cuda::Recurrent<float> b(std::move(a));
    CHECK(a.moved_from() && !a.has_cache() && b.has_cache());
    CHECK_THROWS(a.forward(y.data(), hn.data(), cn.data(), x.data(), nullptr, nullptr, nullptr, 2,
                           2, true, 0));
    CHECK_THROWS(a.backward(x.data(), hn.data(), cn.data(), y.data(), nullptr, nullptr));
    pyrnn::cuda::Recurrent<float>& alias = b;
    b = std::move(alias);
    CHECK_THROWS(b.forward(y.data(), hn.data(), cn.data(), x.data(), nullptr, nullptr, nullptr, 2,
                           2, true, 0));
  }
  cfg.hidden_size = 0;
  CHECK_THROWS(pyrnn::cuda::Recurrent<float> bad_layer(cfg));
}

// ---- the seeds' GPU facade ---------------------------------------------------------------------

void test_matrix_cuda() {
  pyrnn::Matrix host(3, 5);
  for (std::size_t i = 0; i < host.size(); ++i) host.data()[i] = 0.25f * float(i) - 1.f;
  pyrnn::MatrixCUDA m(host);
  CHECK(m.rows() == 3 && m.cols() == 5 && m.data() != nullptr);
  m.toGPU();
  pyrnn::Matrix back = static_cast<pyrnn::Matrix>(m);
  CHECK(std::equal(back.data(), back.data() + back.size(), host.data()));
  pyrnn::MatrixCUDA copy(m);
  CHECK(copy.data() != m.data());
  std::vector<pyrnn::MatrixCUDA> pushed;  // the seeds' "GPU Optimization": an implicit upload
  pushed.push_back(host);
  CHECK(pushed[0].rows() == 3 && pyrnn::Matrix(pushed[0].toCPU()).get(2, 4) == host.get(2, 4));
  pyrnn::Matrix back2 = copy.toCPU();
  CHECK(std::equal(back2.data(), back2.data() + back2.size(), host.data()));
  pyrnn::MatrixCUDA zeros(2, 4);
  pyrnn::Matrix z = zeros.toCPU();
  bool all0 = true;
  for (std::size_t i = 0; i < z.size(); ++i) all0 = all0 && z.data()[i] == 0.f;
  CHECK(all0);
  CHECK_THROWS(zeros.toGPU(host));  // shape mismatch
  // A moved-from matrix is 0 x 0 (it kept its shape with no storage: copies read through null).
  pyrnn::MatrixCUDA moved(std::move(copy));
  CHECK(copy.rows() == 0 && copy.cols() == 0 && copy.data() == nullptr && moved.rows() == 3);
  CHECK(pyrnn::MatrixCUDA(copy).size() == 0 && copy.toCPU().size() == 0);
  zeros = std::move(moved);
  CHECK(zeros.rows() == 3 && moved.rows() == 0 && moved.cols() == 0);
  pyrnn::MatrixCUDA& alias = zeros;
  zeros = std::move(alias);  // self-move keeps the matrix
  pyrnn::Matrix back3 = zeros.toCPU();
  CHECK(std::equal(back3.data(), back3.data() + back3.size(), host.data()));
  pyrnn::Matrix moved_host(std::move(back3));
  CHECK(pyrnn::MatrixCUDA(back3).rows() == 0);
  // Out of device memory: pyrnn::OutOfMemory (MemoryError in Python) naming the size.
  bool named = false;
  try {
    pyrnn::MatrixCUDA huge(std::size_t(1) << 30, std::size_t(1) << 28);  // 1 EiB
  } catch (const pyrnn::OutOfMemory& e) {
    named = std::string(e.what()).find("out of device memory") != std::string::npos &&
            std::string(e.what()).find("1152921504606846976 bytes") != std::string::npos;
  }
  CHECK(named);
  named = false;
  try {
    pyrnn::cuda::DeviceBuffer<double> overflow(std::numeric_limits<std::size_t>::max() / 4);
  } catch (const pyrnn::OutOfMemory& e) {
    named = std::string(e.what()).find("the size overflows") != std::string::npos;
  }
  CHECK(named);
}

template <typename CpuLayer, typename GpuLayer>
void check_facade(const char* what, CpuLayer cpu, GpuLayer gpu) {
  const int T = 7, N = 3, C = cpu.inputSize();
  std::vector<pyrnn::Matrix> seq;
  std::vector<pyrnn::MatrixCUDA> seq_gpu;
  for (int t = 0; t < T; ++t) {
    pyrnn::Matrix step(N, C);
    const auto v = pattern<float>(step.size(), 100 + t);
    std::copy(v.begin(), v.end(), step.data());
    seq.push_back(step);
    seq_gpu.emplace_back(step);
  }
  cpu.eval();
  const pyrnn::Matrix want = cpu.forward(seq);
  const pyrnn::Matrix got = gpu.forward(seq_gpu).toCPU();
  std::vector<float> g(got.data(), got.data() + got.size()), w(want.data(), want.data() + want.size());
  if (!close(g, w, 1e-5, "y_T", what)) ++failures;
  const pyrnn::Matrix h = gpu.lastHiddenState().toCPU();
  const pyrnn::Matrix& hw = cpu.getHiddenStates().back();
  std::vector<float> hg(h.data(), h.data() + h.size()), hh(hw.data(), hw.data() + hw.size());
  if (!close(hg, hh, 1e-5, "h_T", what)) ++failures;
  if (gpu.core().config().cell == pyrnn::CellType::LSTM) {  // c_T, as getCellStates().back()
    const pyrnn::Matrix c = gpu.lastCellState().toCPU();
    const pyrnn::Matrix& cw = cpu.getCellStates().back();
    std::vector<float> cg(c.data(), c.data() + c.size()), cc(cw.data(), cw.data() + cw.size());
    if (!close(cg, cc, 1e-5, "c_T", what)) ++failures;
  } else {
    CHECK(contains(error_of([&] { gpu.lastCellState(); }), "only an LSTM has a cell state"));
  }
  std::vector<pyrnn::MatrixCUDA> bad;
  bad.emplace_back(pyrnn::Matrix(N, C + 1));
  CHECK_THROWS(gpu.forward(bad));
  CHECK_THROWS(gpu.forward(std::vector<pyrnn::MatrixCUDA>()));
}

void test_facade() {
  check_facade("LSTMLayerCUDA", pyrnn::LSTMLayer(6, 9, 4, 5), pyrnn::LSTMLayerCUDA(6, 9, 4, 5));
  check_facade("GRULayerCUDA", pyrnn::GRULayer(6, 9, 4, 5), pyrnn::GRULayerCUDA(6, 9, 4, 5));
  check_facade("RNNLayerCUDA", pyrnn::RNNLayer(6, 9, 4, 5), pyrnn::RNNLayerCUDA(6, 9, 4, 5));
  check_facade("RNNLayerCUDA relu", pyrnn::RNNLayer(6, 9, 4, 5, "relu"),
               pyrnn::RNNLayerCUDA(6, 9, 4, 5, "relu"));
  pyrnn::LSTMLayer trained(6, 9, 4, 77);
  trained.outputBias().set(0, 1, 3.f);  // a changed weight travels with the layer
  check_facade("LSTMLayerCUDA(host)", trained, pyrnn::LSTMLayerCUDA(trained));

  // A moved-from layer, and a projection reassigned to another shape (forward read past its
  // end), are refused by name; so is a moved-from core.
  std::vector<pyrnn::MatrixCUDA> seq;
  seq.emplace_back(pyrnn::Matrix(2, 3));
  pyrnn::LSTMLayerCUDA from(3, 4, 2);
  pyrnn::LSTMLayerCUDA to(std::move(from));
  CHECK(contains(error_of([&] { from.forward(seq); }), "was moved from"));
  CHECK(from.core().moved_from() && !from.core().has_cache());
  CHECK(to.forward(seq).cols() == 2 && to.outputSize() == 2 && from.outputSize() == 0);
  to.outputWeight() = pyrnn::MatrixCUDA(7, 9);
  CHECK(contains(error_of([&] { to.forward(seq); }), "outputWeight() is (7, 9), expected (2, 4)"));
  to.outputWeight() = pyrnn::MatrixCUDA(2, 4);
  to.outputBias() = pyrnn::MatrixCUDA(1, 1);
  CHECK_THROWS(to.forward(seq));
  to.outputBias() = pyrnn::MatrixCUDA(1, 2);
  CHECK(to.forward(seq).cols() == 2);
  pyrnn::RecurrentConfig deep = to.core().config();  // a deeper core wrote past [1, N, H]
  deep.num_layers = 2;
  to.core() = pyrnn::cuda::Recurrent<float>(deep);
  CHECK(contains(error_of([&] { to.forward(seq); }), "core() has num_layers=2"));
  deep.num_layers = 1;
  to.core() = pyrnn::cuda::Recurrent<float>(deep);
  CHECK(to.forward(seq).cols() == 2);
  pyrnn::LSTMLayerCUDA& alias = to;
  to = std::move(alias);  // self-move: the core's parameter table was emptied
  CHECK_THROWS(to.forward(seq));
  // Built from a moved-from CPU layer: named, not a cudaMemcpy failure from a null source.
  pyrnn::LSTMLayer cpu_from(3, 4, 2), cpu_to(std::move(cpu_from));
  CHECK(contains(error_of([&] { pyrnn::LSTMLayerCUDA gpu(cpu_from); }),
                 "LSTMLayerCUDA: the CPU layer it is built from was moved from"));
}

// Context::mutex() is the lock pyrnn's own calls take: a pass waits while a caller holds it.
void test_context_mutex() {
  TinyLstm tiny;
  pyrnn::cuda::Recurrent<float>& gpu = tiny.gpu;
  DeviceBuffer<float> &x = tiny.x, &y = tiny.y, &hn = tiny.hn, &cn = tiny.cn;
  std::atomic<bool> done{false};
  std::thread pass;
  {
    std::lock_guard<std::mutex> held(Context::get(0).mutex());
    pass = std::thread([&] {
      gpu.forward(y.data(), hn.data(), cn.data(), x.data(), nullptr, nullptr, nullptr, 2, 2, false,
                  0);
      done = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CHECK(!done);  // a forward that did not take the lock would be done by now
  }
  pass.join();
  CHECK(done);
  // A device-wide wait takes the lock too (it would also wait on a stream that another thread
  // is capturing into a graph).
  for (int device : {-1, 0}) {  // -1: synchronize(), the current device
    std::atomic<bool> synced{false};
    std::thread sync;
    {
      std::lock_guard<std::mutex> held(Context::get(0).mutex());
      sync = std::thread([&] {
        pyrnn::cuda::synchronize_device(device);
        synced = true;
      });
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      CHECK(!synced);
    }
    sync.join();
    CHECK(synced);
  }
}

// Without a device: every entry point that needs one throws pyrnn::Error (checked in the SKIP run).
void test_no_device_errors() {
  // Each says why there is no device (MatrixCUDA's constructors gave cudaGetDevice's raw error
  // with a source path).
  auto no_device = [](auto&& make) {
    try {
      make();
    } catch (const pyrnn::Error& e) {
      return std::string(e.what()).rfind("no usable CUDA device: ", 0) == 0;
    }
    return false;
  };
  pyrnn::RecurrentConfig cfg;
  CHECK(no_device([&] { pyrnn::cuda::Recurrent<float> layer(cfg); }));
  CHECK(no_device([] { pyrnn::MatrixCUDA m(2, 2); }));
  CHECK(no_device([] { pyrnn::MatrixCUDA m(pyrnn::Matrix(2, 2)); }));
  CHECK(no_device([] { pyrnn::LSTMLayerCUDA layer(2, 3, 1); }));
  CHECK(no_device([] { Context::get(0); }));
}

}  // namespace

int main() {
#ifdef PYRNN_CUDA_HOST_EMULATION
  // tests/emu: the orchestration code on the host; the device-only tests are left out.
  try {
    std::printf("host emulation of the CUDA backend (tests/emu)\n");
    test_options();
    for (const Mode& mode : all_modes()) {
      test_recurrent<float>(mode);
      test_recurrent<double>(mode);
    }
    test_graph_reuse_and_determinism<float>();
    test_graph_reuse_and_determinism<double>();
    test_graphs_emulated();
    report_tf32_error();
    test_recurrent_errors();
    test_matrix_cuda();
    test_facade();
    test_context_mutex();
    test_device_scope_emulated();
    test_buffer_device_emulated();
    test_facade_size_check_emulated();
    test_failed_pass_leaves_nothing_running_emulated();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "  unexpected exception: %s\n", e.what());
    ++failures;
  }
  std::printf("%s (%d failures)\n", failures ? "FAIL" : "OK", failures);
  return failures ? 1 : 0;
#endif
  if (pyrnn::cuda::device_count() == 0) {
    test_no_device_errors();
    if (failures) {
      std::printf("FAIL (%d failures without a device)\n", failures);
      return 1;
    }
    std::printf("SKIP: %s\n", pyrnn::cuda::unavailable_reason().c_str());
    return 0;
  }
  try {
    std::printf("device 0: %s (runtime %d, driver %d)\n", pyrnn::cuda::device_name(0).c_str(),
                pyrnn::cuda::runtime_version(), pyrnn::cuda::driver_version());
    CHECK(pyrnn::cuda::unavailable_reason().empty());
    Context& ctx = Context::get(0);
    CHECK(&ctx == &Context::get(0) && ctx.device() == 0);
    CHECK(ctx.stream() != nullptr && ctx.cublas() != nullptr);
    test_gemm<float>(ctx);
    test_gemm<double>(ctx);
    test_fill_and_buffer<float>(ctx);
    test_fill_and_buffer<double>(ctx);
    test_errors(ctx);
    test_options();
    for (const Mode& mode : all_modes()) {
      std::printf("mode %s: %s\n", mode.name, options_label(mode.options).c_str());
      test_recurrent<float>(mode);
      test_recurrent<double>(mode);
    }
    test_graph_reuse_and_determinism<float>();
    test_graph_reuse_and_determinism<double>();
    report_tf32_error();
    test_recurrent_errors();
    test_matrix_cuda();
    test_facade();
    test_context_mutex();
    test_shared_memory_attribute();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "  unexpected exception: %s\n", e.what());
    ++failures;
  }
  std::printf("%s (%d failures)\n", failures ? "FAIL" : "OK", failures);
  return failures ? 1 : 0;
}
