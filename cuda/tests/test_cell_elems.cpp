// Host test of the CUDA step kernels' per-element bodies (cuda/src/cell_elems.cuh), run on the
// CPU: for every cell form, one step over all elements i = n*H + j must reproduce the CPU row
// functions of cpp/include/pyrnn/kernels/cells.h on active rows, and the lengths semantics on
// inactive ones (forward: state carries, output 0; backward: d pre-activations 0, d c and d h
// pass through). Needs no GPU: it checks the kernels' math and indexing, not the launches.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "cell_elems.cuh"
#include "pyrnn/kernels/cells.h"

#include "check.h"

namespace {

// The C++ tests' harness (cpp/tests/check.h): CHECK / CHECK_THROWS count into its counter.
int& failures = check::failures();

namespace K = pyrnn::kernels;
namespace E = pyrnn::cuda::detail;
using pyrnn::CellType;

template <typename T>
std::vector<T> pattern(std::size_t n, unsigned seed, double lo = -1.5, double hi = 1.5) {
  std::vector<T> v(n);
  unsigned s = seed * 2654435761u + 7;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<T>(lo + (hi - lo) * ((s >> 8) * (1.0 / (1u << 24))));
  }
  return v;
}

template <typename T>
bool same(T got, T want) {
  const double tol = sizeof(T) == 4 ? 2e-6 : 1e-14;
  return std::fabs(double(got) - double(want)) <= tol * (1.0 + std::fabs(double(want)));
}

template <typename T>
void check_cell(CellType cell, bool reset_after) {
  const int N = 4, H = 5, t = 2;
  const int G = cell == CellType::LSTM ? 4 : cell == CellType::GRU ? 3 : 1;
  const int GH = G * H, ldy = 2 * H + 1;  // y: a direction slice inside a wider row
  const bool lstm = cell == CellType::LSTM, gru = cell == CellType::GRU;
  const bool split = gru && !reset_after, relu = cell == CellType::RNN_RELU;
  const std::int64_t lengths[N] = {3, 1, 2, 4};  // t = 2: rows 1 and 2 inactive
  const auto active = [&](int n) { return t < lengths[n]; };
  const std::size_t NH = std::size_t(N) * H;

  // ---- forward ----
  const auto g0 = pattern<T>(N * GH, 1), r = pattern<T>(N * GH, 2), b_hn = pattern<T>(H, 3);
  const auto hp = pattern<T>(NH, 4), cp = pattern<T>(NH, 5), rn_src = pattern<T>(N * GH, 6);
  std::vector<T> g = g0, hc(NH, T(9)), cc(NH, T(9)), aux(NH, T(9)), y(N * ldy, T(9));
  const T* bh = reset_after ? b_hn.data() : nullptr;
  for (std::size_t i = 0; i < NH; ++i)
    E::cell_forward_elem<T>(i, int(cell), reset_after, H, G, t, lengths, g.data(), r.data(), bh,
                            hp.data(), hc.data(), lstm ? cp.data() : nullptr,
                            lstm ? cc.data() : nullptr, gru ? aux.data() : nullptr, y.data(), ldy);
  if (split)
    for (std::size_t i = 0; i < NH; ++i)
      E::gru_before_state_elem<T>(i, H, t, lengths, g.data(), rn_src.data() + 2 * H, hp.data(),
                                  hc.data(), y.data(), ldy);
  for (int n = 0; n < N; ++n) {
    if (!active(n)) {
      for (int j = 0; j < H; ++j) {
        CHECK(hc[n * H + j] == hp[n * H + j]);
        if (lstm) CHECK(cc[n * H + j] == cp[n * H + j]);
        if (gru) CHECK(aux[n * H + j] == T(0));
        CHECK(y[n * ldy + j] == T(0));
      }
      continue;
    }
    std::vector<T> g2(g0.begin() + n * GH, g0.begin() + (n + 1) * GH), h2(H), c2(H), a2(H);
    const T* rr = r.data() + n * GH;
    const T* hpr = hp.data() + n * H;
    switch (cell) {
      case CellType::RNN_TANH:
      case CellType::RNN_RELU:
        K::rnn_forward_row(H, 0, H, relu, g2.data(), rr);
        h2.assign(g2.begin(), g2.end());
        break;
      case CellType::LSTM:
        K::lstm_forward_row(H, 0, H, g2.data(), rr, cp.data() + n * H, c2.data(), h2.data());
        break;
      case CellType::GRU:
        if (reset_after) {
          K::gru_after_forward_row(H, 0, H, g2.data(), rr, bh, a2.data(), hpr, h2.data());
        } else {
          K::gru_before_gates_row(H, 0, H, g2.data(), rr, hpr, a2.data());
          K::gru_before_state_row(H, 0, H, g2.data(), rn_src.data() + n * GH + 2 * H, hpr, h2.data());
        }
        break;
    }
    for (int k = 0; k < GH; ++k) CHECK(same(g[n * GH + k], g2[k]));
    for (int j = 0; j < H; ++j) {
      CHECK(same(hc[n * H + j], h2[j]));
      CHECK(same(y[n * ldy + j], h2[j]));
      if (lstm) CHECK(same(cc[n * H + j], c2[j]));
      if (gru) CHECK(same(aux[n * H + j], a2[j]));
    }
  }

  // ---- backward (activations from the forward above) ----
  const std::vector<T>& a = g;
  const auto dh = pattern<T>(NH, 11), dy = pattern<T>(N * ldy, 12), dc0 = pattern<T>(NH, 13);
  const auto drh = pattern<T>(NH, 14), c = pattern<T>(NH, 15), rec = pattern<T>(NH, 16);
  const auto auxb = pattern<T>(NH, 17);
  std::vector<T> dg(N * GH, T(9)), dghn(NH, T(9)), dc = dc0, pw(NH, T(9));
  for (std::size_t i = 0; i < NH; ++i)
    E::cell_backward_elem<T>(i, int(cell), reset_after, H, G, t, lengths, dg.data(),
                             reset_after ? dghn.data() : nullptr, dh.data(), dy.data(), ldy,
                             lstm ? dc.data() : nullptr, gru ? pw.data() : nullptr, a.data(),
                             gru ? auxb.data() : nullptr, hp.data(), lstm ? c.data() : nullptr,
                             lstm ? cp.data() : nullptr);
  if (split)
    for (std::size_t i = 0; i < NH; ++i)
      E::gru_before_backward_r_elem<T>(i, H, t, lengths, dg.data(), drh.data(), pw.data(),
                                       a.data(), hp.data());
  std::vector<T> dhu = dh;
  for (std::size_t i = 0; i < NH; ++i)
    E::update_dh_elem<T>(i, H, t, lengths, dhu.data(), rec.data(), gru ? pw.data() : nullptr);
  for (int n = 0; n < N; ++n) {
    if (!active(n)) {
      for (int k = 0; k < GH; ++k) CHECK(dg[n * GH + k] == T(0));
      for (int j = 0; j < H; ++j) {
        if (reset_after) CHECK(dghn[n * H + j] == T(0));
        if (lstm) CHECK(dc[n * H + j] == dc0[n * H + j]);
        CHECK(dhu[n * H + j] == dh[n * H + j]);
      }
      continue;
    }
    std::vector<T> d(H), dg2(GH), dghn2(H), dc2(dc0.begin() + n * H, dc0.begin() + (n + 1) * H),
        pw2(H);
    for (int j = 0; j < H; ++j) d[j] = dh[n * H + j] + dy[n * ldy + j];
    const T* ar = a.data() + n * GH;
    const T* hpr = hp.data() + n * H;
    switch (cell) {
      case CellType::RNN_TANH:
      case CellType::RNN_RELU: K::rnn_backward_row(H, 0, H, relu, dg2.data(), d.data(), ar); break;
      case CellType::LSTM:
        K::lstm_backward_row(H, 0, H, dg2.data(), d.data(), dc2.data(), ar, c.data() + n * H,
                             cp.data() + n * H);
        break;
      case CellType::GRU:
        if (reset_after) {
          K::gru_after_backward_row(H, 0, H, dg2.data(), dghn2.data(), d.data(), pw2.data(), ar,
                                    auxb.data() + n * H, hpr);
        } else {
          K::gru_before_backward_zn_row(H, 0, H, dg2.data(), d.data(), pw2.data(), ar, hpr);
          K::gru_before_backward_r_row(H, 0, H, dg2.data(), drh.data() + n * H, pw2.data(), ar, hpr);
        }
        break;
    }
    for (int k = 0; k < GH; ++k) CHECK(same(dg[n * GH + k], dg2[k]));
    for (int j = 0; j < H; ++j) {
      if (reset_after) CHECK(same(dghn[n * H + j], dghn2[j]));
      if (lstm) CHECK(same(dc[n * H + j], dc2[j]));
      if (gru) CHECK(same(pw[n * H + j], pw2[j]));
      CHECK(same(dhu[n * H + j], rec[n * H + j] + (gru ? pw2[j] : T(0))));
    }
  }
}

template <typename T>
void check_all() {
  check_cell<T>(CellType::RNN_TANH, false);
  check_cell<T>(CellType::RNN_RELU, false);
  check_cell<T>(CellType::LSTM, false);
  check_cell<T>(CellType::GRU, false);
  check_cell<T>(CellType::GRU, true);
}

}  // namespace

int main() {
  check_all<float>();
  check_all<double>();
  std::printf("%s (%d failures)\n", failures ? "FAIL" : "OK", failures);
  return failures ? 1 : 0;
}
