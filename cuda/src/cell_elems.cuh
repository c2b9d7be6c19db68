// Per-element bodies of the fused step kernels (internal header), host and device: the kernels
// in cells.cu run them one thread per element i = n*H + j of an [N, H] step; the host test
// cuda/tests/test_cell_elems.cpp runs them in a loop against cpp/include/pyrnn/kernels/cells.h.
// Argument meanings: see cells.cuh. G = gates, GH = G*H.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "elem_math.cuh"
#include "pyrnn/random.h"  // PYRNN_HD
#include "pyrnn/recurrent.h"

namespace pyrnn {
namespace cuda {
namespace detail {

template <typename T>
PYRNN_HD inline T elem_sigmoid(T x) {
  return T(1) / (T(1) + elem_exp(-x));
}

PYRNN_HD inline bool elem_active(const std::int64_t* lengths, int n, int t) {
  return lengths == nullptr || t < lengths[n];
}

// Forward step: see cells.cuh cell_forward.
template <typename T>
PYRNN_HD inline void cell_forward_elem(std::size_t i, int cell, bool reset_after, int H, int G,
                                       int t, const std::int64_t* lengths, T* g, const T* r,
                                       const T* b_hn, const T* hp, T* hc, const T* cp, T* cc,
                                       T* aux, T* y, int ldy) {
  const std::size_t GH = static_cast<std::size_t>(G) * H;
  const int n = static_cast<int>(i / H), j = static_cast<int>(i % H);
  T* gr = g + n * GH;
  const T* rr = r + n * GH;
  T* yr = y + static_cast<std::size_t>(n) * ldy;
  if (!elem_active(lengths, n, t)) {
    // Past this sequence's end: the state carries through, the output is zero.
    hc[i] = hp[i];
    if (cell == static_cast<int>(CellType::LSTM)) cc[i] = cp[i];
    if (cell == static_cast<int>(CellType::GRU)) aux[i] = T(0);
    yr[j] = T(0);
    return;
  }
  switch (static_cast<CellType>(cell)) {
    case CellType::RNN_TANH:
    case CellType::RNN_RELU: {  // rnn_forward_row
      const T pre = gr[j] + rr[j];
      const T h = cell == static_cast<int>(CellType::RNN_RELU) ? (pre < T(0) ? T(0) : pre)
                                                                : elem_tanh(pre);
      gr[j] = h;
      hc[i] = h;
      yr[j] = h;
      break;
    }
    case CellType::LSTM: {  // lstm_forward_row
      const T ig = elem_sigmoid(gr[j] + rr[j]);
      const T f = elem_sigmoid(gr[H + j] + rr[H + j]);
      const T nn = elem_tanh(gr[2 * H + j] + rr[2 * H + j]);
      const T o = elem_sigmoid(gr[3 * H + j] + rr[3 * H + j]);
      const T cn = f * cp[i] + ig * nn;
      gr[j] = ig;
      gr[H + j] = f;
      gr[2 * H + j] = nn;
      gr[3 * H + j] = o;
      cc[i] = cn;
      const T h = o * elem_tanh(cn);
      hc[i] = h;
      yr[j] = h;
      break;
    }
    case CellType::GRU:
      if (reset_after) {  // gru_after_forward_row
        const T rg = elem_sigmoid(gr[j] + rr[j]);
        const T z = elem_sigmoid(gr[H + j] + rr[H + j]);
        const T hnj = rr[2 * H + j] + (b_hn ? b_hn[j] : T(0));
        const T nn = elem_tanh(gr[2 * H + j] + rg * hnj);
        gr[j] = rg;
        gr[H + j] = z;
        gr[2 * H + j] = nn;
        aux[i] = hnj;
        const T h = (T(1) - z) * nn + z * hp[i];
        hc[i] = h;
        yr[j] = h;
      } else {  // gru_before_gates_row
        const T rg = elem_sigmoid(gr[j] + rr[j]);
        gr[j] = rg;
        gr[H + j] = elem_sigmoid(gr[H + j] + rr[H + j]);
        aux[i] = rg * hp[i];
      }
      break;
  }
}

// GRU reset_after=false, stage 2 (gru_before_state_row): see cells.cuh gru_before_state.
template <typename T>
PYRNN_HD inline void gru_before_state_elem(std::size_t i, int H, int t,
                                           const std::int64_t* lengths, T* g, const T* rn,
                                           const T* hp, T* hc, T* y, int ldy) {
  const std::size_t GH = 3 * static_cast<std::size_t>(H);
  const int n = static_cast<int>(i / H), j = static_cast<int>(i % H);
  if (!elem_active(lengths, n, t)) return;  // cell_forward already carried the state
  T* gr = g + n * GH;
  const T z = gr[H + j];
  const T nn = elem_tanh(gr[2 * H + j] + rn[n * GH + j]);
  gr[2 * H + j] = nn;
  const T h = (T(1) - z) * nn + z * hp[i];
  hc[i] = h;
  y[static_cast<std::size_t>(n) * ldy + j] = h;
}

// Backward step: see cells.cuh cell_backward.
template <typename T>
PYRNN_HD inline void cell_backward_elem(std::size_t i, int cell, bool reset_after, int H, int G,
                                        int t, const std::int64_t* lengths, T* dg, T* dghn,
                                        const T* dh, const T* dy, int ldy, T* dc, T* pw,
                                        const T* a, const T* aux, const T* hp, const T* c,
                                        const T* cp) {
  const std::size_t GH = static_cast<std::size_t>(G) * H;
  const int n = static_cast<int>(i / H), j = static_cast<int>(i % H);
  T* dgr = dg + n * GH;
  if (!elem_active(lengths, n, t)) {  // no gradient past the end
    for (int k = 0; k < G; ++k) dgr[k * H + j] = T(0);
    if (dghn) dghn[i] = T(0);
    return;
  }
  const T d = dh[i] + dy[static_cast<std::size_t>(n) * ldy + j];
  const T* ar = a + n * GH;
  switch (static_cast<CellType>(cell)) {
    case CellType::RNN_TANH:
    case CellType::RNN_RELU:  // rnn_backward_row
      // ReLU selects, as cells.h: an Inf / NaN d of an inactive unit gives 0, a NaN h passes d.
      dgr[j] = cell == static_cast<int>(CellType::RNN_RELU) ? (ar[j] <= T(0) ? T(0) : d)
                                                            : d * (T(1) - ar[j] * ar[j]);
      break;
    case CellType::LSTM: {  // lstm_backward_row
      const T ig = ar[j], f = ar[H + j], nn = ar[2 * H + j], o = ar[3 * H + j];
      const T tc = elem_tanh(c[i]);
      const T dct = dc[i] + d * o * (T(1) - tc * tc);
      dgr[j] = dct * nn * ig * (T(1) - ig);
      dgr[H + j] = dct * cp[i] * f * (T(1) - f);
      dgr[2 * H + j] = dct * ig * (T(1) - nn * nn);
      dgr[3 * H + j] = d * tc * o * (T(1) - o);
      dc[i] = dct * f;
      break;
    }
    case CellType::GRU:
      if (reset_after) {  // gru_after_backward_row
        const T rg = ar[j], z = ar[H + j], nn = ar[2 * H + j];
        const T dn = d * (T(1) - z) * (T(1) - nn * nn);
        dgr[j] = dn * aux[i] * rg * (T(1) - rg);
        dgr[H + j] = d * (hp[i] - nn) * z * (T(1) - z);
        dgr[2 * H + j] = dn;
        dghn[i] = dn * rg;
        pw[i] = d * z;
      } else {  // gru_before_backward_zn_row
        const T z = ar[H + j], nn = ar[2 * H + j];
        dgr[H + j] = d * (hp[i] - nn) * z * (T(1) - z);
        dgr[2 * H + j] = d * (T(1) - z) * (T(1) - nn * nn);
        pw[i] = d * z;
      }
      break;
  }
}

// GRU reset_after=false, backward stage 2 (gru_before_backward_r_row).
template <typename T>
PYRNN_HD inline void gru_before_backward_r_elem(std::size_t i, int H, int t,
                                                const std::int64_t* lengths, T* dg, const T* drh,
                                                T* pw, const T* a, const T* hp) {
  const std::size_t GH = 3 * static_cast<std::size_t>(H);
  const int n = static_cast<int>(i / H), j = static_cast<int>(i % H);
  if (!elem_active(lengths, n, t)) return;
  const T rg = a[n * GH + j];
  dg[n * GH + j] = drh[i] * hp[i] * rg * (T(1) - rg);
  pw[i] += drh[i] * rg;
}

// dh = rec + pw on active rows; inactive rows pass d h through.
template <typename T>
PYRNN_HD inline void update_dh_elem(std::size_t i, int H, int t, const std::int64_t* lengths,
                                    T* dh, const T* rec, const T* pw) {
  const int n = static_cast<int>(i / H);
  if (!elem_active(lengths, n, t)) return;
  dh[i] = rec[i] + (pw ? pw[i] : T(0));
}

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn
