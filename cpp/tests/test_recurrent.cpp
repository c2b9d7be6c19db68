// C++-level checks of the recurrent core: float64 central differences for every cell, plus
// error paths. (The Python suite adds PyTorch and ONNX parity over the full option grid.)
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "check.h"
#include "pyrnn/error.h"
#include "pyrnn/random.h"
#include "pyrnn/recurrent.h"
#include "pyrnn/runtime.h"

namespace {

using pyrnn::CellType;
using pyrnn::Recurrent;
using pyrnn::RecurrentConfig;

std::vector<double> random_vec(std::size_t n, std::uint64_t seed) {
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = 2.0 * pyrnn::uniform01(seed, 99, i) - 1.0;
  return v;
}

// loss = sum(y * wy) + sum(hn * wh) [+ sum(cn * wc)]; compares backward with central differences
// for the input, the initial state and every parameter.
void gradcheck(RecurrentConfig cfg, bool with_lengths) {
  const int T = 4, N = 3, L = cfg.num_layers, D = cfg.directions(), H = cfg.hidden_size;
  const bool lstm = cfg.cell == CellType::LSTM;
  Recurrent<double> net(cfg);
  net.reset_parameters(7);
  const std::size_t nx = std::size_t(T) * N * cfg.input_size, ny = std::size_t(T) * N * D * H,
                    ns = std::size_t(L) * D * N * H;
  std::vector<double> x = random_vec(nx, 1), h0 = random_vec(ns, 2), c0 = random_vec(ns, 3);
  std::vector<double> wy = random_vec(ny, 4), wh = random_vec(ns, 5), wc = random_vec(ns, 6);
  std::vector<std::int64_t> len = {4, 2, 3};
  const std::int64_t* lp = with_lengths ? len.data() : nullptr;
  std::vector<double> y(ny), hn(ns), cn(ns);
  auto loss = [&]() {
    net.forward(y.data(), hn.data(), cn.data(), x.data(), h0.data(), c0.data(), lp, T, N, false, 0);
    double s = 0;
    for (std::size_t i = 0; i < ny; ++i) s += y[i] * wy[i];
    for (std::size_t i = 0; i < ns; ++i) s += hn[i] * wh[i] + (lstm ? cn[i] * wc[i] : 0.0);
    return s;
  };
  net.forward(y.data(), hn.data(), cn.data(), x.data(), h0.data(), c0.data(), lp, T, N, true, 0);
  std::vector<double> dx(nx), dh0(ns), dc0(ns);
  net.zero_grad();
  net.backward(dx.data(), dh0.data(), dc0.data(), wy.data(), wh.data(), lstm ? wc.data() : nullptr);
  const double eps = 1e-6;
  auto numeric = [&](double* v) {
    const double old = *v;
    *v = old + eps;
    const double lp_ = loss();
    *v = old - eps;
    const double lm = loss();
    *v = old;
    return (lp_ - lm) / (2 * eps);
  };
  for (std::size_t i = 0; i < nx; ++i) CHECK_NEAR(dx[i], numeric(&x[i]), 1e-7);
  for (std::size_t i = 0; i < ns; ++i) CHECK_NEAR(dh0[i], numeric(&h0[i]), 1e-7);
  if (lstm)
    for (std::size_t i = 0; i < ns; ++i) CHECK_NEAR(dc0[i], numeric(&c0[i]), 1e-7);
  for (std::size_t i = 0; i < net.num_parameters(); ++i)
    CHECK_NEAR(net.grads()[i], numeric(&net.params()[i]), 1e-7);
}

RecurrentConfig make(CellType cell, bool bidir, int layers, bool reset_after = false) {
  RecurrentConfig c;
  c.cell = cell;
  c.input_size = 3;
  c.hidden_size = 4;
  c.num_layers = layers;
  c.bidirectional = bidir;
  c.reset_after = reset_after;
  return c;
}

}  // namespace

TEST(gradcheck_rnn_tanh) { gradcheck(make(CellType::RNN_TANH, true, 2), true); }
TEST(gradcheck_rnn_relu) { gradcheck(make(CellType::RNN_RELU, false, 1), false); }
TEST(gradcheck_lstm) { gradcheck(make(CellType::LSTM, true, 2), true); }
TEST(gradcheck_gru_seeds_form) { gradcheck(make(CellType::GRU, true, 2, false), true); }
TEST(gradcheck_gru_reset_after) { gradcheck(make(CellType::GRU, true, 1, true), true); }

TEST(parameter_counts_match_seeds_table) {
  auto count = [](CellType c) {
    RecurrentConfig cfg;
    cfg.cell = c;
    cfg.input_size = 10;
    cfg.hidden_size = 50;
    return Recurrent<float>(cfg).num_parameters();
  };
  CHECK(count(CellType::RNN_TANH) == 3050);
  CHECK(count(CellType::GRU) == 9150);
  CHECK(count(CellType::LSTM) == 12200);
}

TEST(recurrent_errors) {
  RecurrentConfig bad = make(CellType::LSTM, false, 1);
  bad.hidden_size = 0;
  CHECK_THROWS(Recurrent<float>{bad});
  bad = make(CellType::LSTM, false, 1);
  bad.dropout = 1.0;
  CHECK_THROWS(Recurrent<float>{bad});
  bad = make(CellType::LSTM, false, 1, true);
  CHECK_THROWS(Recurrent<float>{bad});

  Recurrent<float> net(make(CellType::GRU, false, 1));
  std::vector<float> x(2 * 1 * 3), y(2 * 4), hn(4), dx(6), dh0(4);
  CHECK_THROWS(net.backward(dx.data(), dh0.data(), nullptr, y.data(), nullptr, nullptr));
  std::int64_t bad_len = 3;
  CHECK_THROWS(net.forward(y.data(), hn.data(), nullptr, x.data(), nullptr, nullptr, &bad_len, 2,
                           1, true, 0));
  CHECK_THROWS(net.forward(y.data(), hn.data(), nullptr, x.data(), nullptr, nullptr, nullptr, 0,
                           1, true, 0));
  net.forward(y.data(), hn.data(), nullptr, x.data(), nullptr, nullptr, nullptr, 2, 1, false, 0);
  CHECK(!net.has_cache());  // eval mode keeps nothing
  CHECK_THROWS(net.backward(dx.data(), dh0.data(), nullptr, y.data(), nullptr, nullptr));
  // A null buffer is named (it was "null buffer" alone).
  CHECK(error_of([&] {
          net.forward(nullptr, hn.data(), nullptr, x.data(), nullptr, nullptr, nullptr, 2, 1,
                      true, 0);
        }).find("null buffer: y (") != std::string::npos);
  net.forward(y.data(), hn.data(), nullptr, x.data(), nullptr, nullptr, nullptr, 2, 1, true, 0);
  CHECK(error_of([&] {
          net.backward(dx.data(), nullptr, nullptr, y.data(), nullptr, nullptr);
        }).find("null buffer: dh0 (") != std::string::npos);
}

// Eval keeps two state slots per direction (a ring) unless asked for the sequence: the outputs
// are the training forward's bits either way, on every cell, both directions, with lengths and
// given initial states, at 1-3 threads. Slot i of the ring is i % 2: odd and even step counts
// put the final state of each direction in either slot. Shapes per cell, as small as the splits
// allow (valgrind runs this): the steps shared by batch rows (N = 16 rows, weights under
// 768 KB, N * G*H * (C + H) >= 2^20 for a second thread), by hidden units (N = 8 < 16 rows,
// N * G*H * H >= 2^20, H a multiple of every panel width), and one thread.
TEST(eval_state_ring_gives_training_bits) {
  const int saved = pyrnn::get_num_threads();
  struct Shape { int T, N, C, H; };
  for (CellType cell : {CellType::RNN_TANH, CellType::RNN_RELU, CellType::LSTM, CellType::GRU})
    for (bool reset_after : {false, true}) {
      if (reset_after && cell != CellType::GRU) continue;
      const bool one_gate = cell == CellType::RNN_TANH || cell == CellType::RNN_RELU;
      const Shape rows = one_gate ? Shape{3, 16, 384, 128} : Shape{3, 16, 192, 64};
      const Shape units = one_gate ? Shape{4, 8, 16, 384} : Shape{4, 8, 16, 192};
      for (const Shape sh : {rows, units, Shape{3, 2, 3, 4}}) {
        RecurrentConfig cfg = make(cell, true, 2, reset_after);
        cfg.input_size = sh.C;
        cfg.hidden_size = sh.H;
        const int T = sh.T, N = sh.N, L = 2, D = 2, H = sh.H;
        const bool lstm = cell == CellType::LSTM;
        Recurrent<float> net(cfg);
        net.reset_parameters(5);
        const std::size_t nx = std::size_t(T) * N * sh.C, ny = std::size_t(T) * N * D * H,
                          ns = std::size_t(L) * D * N * H;
        auto floats = [](std::size_t n, std::uint64_t seed) {
          const std::vector<double> v = random_vec(n, seed);
          return std::vector<float>(v.begin(), v.end());
        };
        const std::vector<float> x = floats(nx, 1), h0 = floats(ns, 2), c0 = floats(ns, 3);
        std::vector<std::int64_t> len(N);
        for (int n = 0; n < N; ++n) len[n] = 1 + (n * 7) % T;
        len[0] = T;
        struct Out { std::vector<float> y, hn, cn, states, cells; };
        // mode 0: training; 1: eval keeping the sequence; 2: eval ring.
        auto run = [&](int threads, int mode) {
          pyrnn::set_num_threads(threads);
          net.keep_state_sequence(mode == 1);
          Out o{std::vector<float>(ny), std::vector<float>(ns), std::vector<float>(ns), {}, {}};
          net.forward(o.y.data(), o.hn.data(), o.cn.data(), x.data(), h0.data(), c0.data(),
                      len.data(), T, N, mode == 0, 0);
          for (int d = 0; d < D; ++d) {
            const float* hs = net.last_layer_states(d);
            const float* cs = net.last_layer_states(d, true);
            CHECK((hs != nullptr) == (mode != 2));
            CHECK((cs != nullptr) == (mode != 2 && lstm));
            if (hs) o.states.insert(o.states.end(), hs, hs + std::size_t(T + 1) * N * H);
            if (cs) o.cells.insert(o.cells.end(), cs, cs + std::size_t(T + 1) * N * H);
          }
          return o;
        };
        const Out want = run(1, 0);
        for (const auto& [threads, mode] : {std::pair{1, 1}, {1, 2}, {2, 2}, {3, 2}, {2, 1}}) {
          const Out got = run(threads, mode);
          CHECK(got.y == want.y);
          CHECK(got.hn == want.hn);
          CHECK(!lstm || got.cn == want.cn);
          if (mode != 2) CHECK(got.states == want.states && got.cells == want.cells);
        }
      }
    }
  pyrnn::set_num_threads(saved);
}

// Weights read in place (W_hh, W_ih; in registers up to 8 rows, else a panel packed at a time)
// give the bits of the packed weights, for every cell, float32 and float64, one and two layers,
// bidirectional, batch_first, with lengths, in training (y, hn, cn, dx, dh0, dc0, every
// gradient) and eval, on one thread and with the steps split over two (by units, or by rows
// for float32's 20 rows: W_ih then packed). The hook forces each way (auto, -1, chooses by
// size: in place for the one-step shapes' W_hh, else mostly packed). The in-place run comes
// first, on a layer that has never packed anything: a read of a stale pack would show.
template <typename F>
void in_place_weights_match_packed() {
  struct Shape { int steps, N, C, H; };
  for (CellType cell : {CellType::RNN_TANH, CellType::RNN_RELU, CellType::LSTM, CellType::GRU})
    for (bool reset_after : {false, true}) {
      if (reset_after && cell != CellType::GRU) continue;
      const bool lstm = cell == CellType::LSTM;
      const bool one_gate = cell == CellType::RNN_TANH || cell == CellType::RNN_RELU;
      // by units on 2 threads: N * G*H * (C + H) >= 2^20 and H a multiple of the panel width
      const int Hu = one_gate ? 384 : lstm ? 192 : 256;
      // 12 and 20 rows: past the 8 read in registers, panels packed one at a time (20 rows of
      // float32 share the steps by rows: W_hh only; by units in float64).
      for (const Shape sh : {Shape{1, 8, 16, Hu}, Shape{2, 8, 16, Hu}, Shape{3, 3, 16, Hu},
                             Shape{1, 12, 16, Hu}, Shape{2, 20, 16, Hu}, Shape{3, 2, 3, 4},
                             Shape{4, 1, 5, 7}})
        for (int layers : {1, 2})
          for (bool batch_first : {false, true}) {
            const bool tiny = sh.H < 16;
            if (!tiny && (layers == 2 || batch_first)) continue;
            RecurrentConfig cfg = make(cell, true, layers, reset_after);
            cfg.batch_first = batch_first;  // x, y, dy, dx as [N, T, .], read in place
            cfg.input_size = sh.C;
            cfg.hidden_size = sh.H;
            const int Ts = sh.steps, N = sh.N, C = sh.C, H = sh.H, D = 2, L = layers;
            Recurrent<F> net(cfg);
            net.reset_parameters(5);
            const std::size_t ns = std::size_t(L) * D * N * H, ny = std::size_t(Ts) * N * D * H,
                              nx = std::size_t(Ts) * N * C;
            auto cast = [](const std::vector<double>& v) {
              return std::vector<F>(v.begin(), v.end());
            };
            const std::vector<F> x = cast(random_vec(nx, 1)), dy = cast(random_vec(ny, 2)),
                                 h0 = cast(random_vec(ns, 3)), c0 = cast(random_vec(ns, 4)),
                                 dhn = cast(random_vec(ns, 6));
            std::vector<std::int64_t> len(N, Ts);
            if (N > 1) len[N - 1] = 1;
            struct Out { std::vector<F> y, hn, cn, dx, dh0, dc0, grads; };
            auto run = [&](int mode, bool training) {
              pyrnn::detail::set_weights_in_place(mode);
              Out o{std::vector<F>(ny), std::vector<F>(ns), std::vector<F>(ns), std::vector<F>(nx),
                    std::vector<F>(ns), std::vector<F>(ns), {}};
              net.zero_grad();
              net.forward(o.y.data(), o.hn.data(), o.cn.data(), x.data(), h0.data(), c0.data(),
                          len.data(), Ts, N, training, 0);
              if (training) {
                net.backward(o.dx.data(), o.dh0.data(), o.dc0.data(), dy.data(), dhn.data(),
                             lstm ? dhn.data() : nullptr);
                o.grads.assign(net.grads(), net.grads() + net.num_parameters());
              }
              return o;
            };
            for (int threads : {1, 2})
              for (bool training : {true, false}) {
                if (threads == 2 && tiny) continue;
                pyrnn::set_num_threads(threads);
                // In place first (the very first run: on a layer that never packed anything).
                const Out in_place = run(1, training);
                const Out want = run(0, training);
                const Out by_size = run(-1, training);
                for (const Out* o : {&in_place, &by_size}) {
                  const Out& got = *o;
                  CHECK(got.y == want.y);
                  CHECK(got.hn == want.hn);
                  CHECK(!lstm || got.cn == want.cn);
                  CHECK(got.dx == want.dx && got.dh0 == want.dh0);
                  CHECK(!lstm || got.dc0 == want.dc0);
                  CHECK(got.grads == want.grads);
                }
              }
          }
    }
}

TEST(weights_in_place_give_packed_bits) {
  const int saved = pyrnn::get_num_threads();
  in_place_weights_match_packed<double>();
  in_place_weights_match_packed<float>();
  pyrnn::detail::set_weights_in_place(-1);
  pyrnn::set_num_threads(saved);
}

// batch_first reads x and dy and writes y and dx as [N, T, .] in place: the bits must be the
// time-major layer's on the same data with its first two axes swapped, for every cell, in
// training (y, hn, cn, dx, dh0, dc0, every gradient) and eval, with the steps split by rows and
// by units, the eval projection as one GEMM over all steps (H off the panel width, 2 threads:
// its g rows then follow x's batch-major order), and through the time-major copies that strides
// past the GEMMs' int take (the limit lowered to 1). The shapes are the smallest that take each
// split (valgrind runs this).
TEST(batch_first_gives_time_major_bits) {
  const int saved = pyrnn::get_num_threads();
  struct Shape { int T, N, C, H; };
  // dst [B, A, W] = src [A, B, W]
  auto swap01 = [](const std::vector<double>& src, int A, int B, std::size_t W) {
    std::vector<double> dst(src.size());
    for (int a = 0; a < A; ++a)
      for (int b = 0; b < B; ++b)
        for (std::size_t w = 0; w < W; ++w)
          dst[(std::size_t(b) * A + a) * W + w] = src[(std::size_t(a) * B + b) * W + w];
    return dst;
  };
  for (CellType cell : {CellType::RNN_TANH, CellType::RNN_RELU, CellType::LSTM, CellType::GRU})
    for (bool reset_after : {false, true}) {
      if (reset_after && cell != CellType::GRU) continue;
      const bool one_gate = cell == CellType::RNN_TANH || cell == CellType::RNN_RELU;
      const bool lstm = cell == CellType::LSTM;
      const Shape rows = one_gate ? Shape{2, 16, 384, 128} : Shape{2, 16, 192, 64};
      const Shape units = one_gate ? Shape{2, 8, 16, 384} : Shape{2, 8, 16, 192};
      const int G = one_gate ? 1 : lstm ? 4 : 3;
      const Shape one_gemm{64, 8, 520 / G, 5}, tiny{3, 2, 3, 4};
      // Two layers (an inner output is time-major) and the copies on the small shapes only:
      // neither depends on the split. One thread on the tiny one.
      for (const Shape sh : {rows, units, one_gemm, tiny})
        for (int layers : {1, 2})
          for (long long limit : {0LL, 1LL}) {
            const bool small = sh.H == one_gemm.H || sh.H == tiny.H;
            if (!small && (layers == 2 || limit == 1)) continue;
            pyrnn::detail::set_batch_major_stride_limit(limit);
            RecurrentConfig cfg = make(cell, true, layers, reset_after);
            cfg.input_size = sh.C;
            cfg.hidden_size = sh.H;
            RecurrentConfig cfg_bf = cfg;
            cfg_bf.batch_first = true;
            const int T = sh.T, N = sh.N, C = sh.C, H = sh.H, D = 2, L = layers;
            Recurrent<double> tm(cfg), bf(cfg_bf);
            tm.reset_parameters(5);
            bf.reset_parameters(5);
            const std::size_t ns = std::size_t(L) * D * N * H, DH = std::size_t(D) * H;
            const std::vector<double> x = random_vec(std::size_t(T) * N * C, 1),
                                      dy = random_vec(std::size_t(T) * N * DH, 2),
                                      h0 = random_vec(ns, 3), c0 = random_vec(ns, 4),
                                      dhn = random_vec(ns, 6);
            const std::vector<double> x_bm = swap01(x, T, N, C), dy_bm = swap01(dy, T, N, DH);
            std::vector<std::int64_t> len(N);
            for (int n = 0; n < N; ++n) len[n] = 1 + (n * 7) % T;
            len[0] = T;
            struct Out { std::vector<double> y, hn, cn, dx, dh0, dc0; };
            auto run = [&](Recurrent<double>& net, const std::vector<double>& xin,
                           const std::vector<double>& dyin, bool training) {
              Out o{std::vector<double>(dy.size()), std::vector<double>(ns),
                    std::vector<double>(ns), std::vector<double>(x.size()),
                    std::vector<double>(ns), std::vector<double>(ns)};
              net.forward(o.y.data(), o.hn.data(), o.cn.data(), xin.data(), h0.data(), c0.data(),
                          len.data(), T, N, training, 0);
              if (training)
                net.backward(o.dx.data(), o.dh0.data(), o.dc0.data(), dyin.data(), dhn.data(),
                             lstm ? dhn.data() : nullptr);
              return o;
            };
            for (int threads : {1, 2})
              for (bool training : {true, false}) {
                if (threads == 1 && sh.H != tiny.H) continue;
                pyrnn::set_num_threads(threads);
                tm.zero_grad();
                bf.zero_grad();
                const Out want = run(tm, x, dy, training), got = run(bf, x_bm, dy_bm, training);
                CHECK(got.y == swap01(want.y, T, N, DH));
                CHECK(got.hn == want.hn);
                CHECK(!lstm || got.cn == want.cn);
                if (!training) continue;
                CHECK(got.dx == swap01(want.dx, T, N, C));
                CHECK(got.dh0 == want.dh0);
                CHECK(!lstm || got.dc0 == want.dc0);
                CHECK(std::equal(tm.grads(), tm.grads() + tm.num_parameters(), bf.grads()));
              }
          }
    }
  pyrnn::detail::set_batch_major_stride_limit(0);
  pyrnn::set_num_threads(saved);
}
