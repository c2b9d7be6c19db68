// Fused pointwise cell kernels, one batch row at a time (H wide), forward beside backward.
// Forward: pre-activations come in (input projection + bias in `g`, recurrent product in `r`),
// activations go out in `g` (overwrite). Backward works from stored activations only.
// Gate order follows PyTorch: LSTM i, f, g, o; GRU r, z, n.
// Each kernel handles hidden units [j0, j1) of one row (gate blocks H apart), so a thread can own
// a slice of units across all gates: the GEMM that produced them and the cell that consumes them.
#pragma once
#include <cmath>

namespace pyrnn {
namespace kernels {

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// ---- RNN: h = act(x W_ih^T + b + h_prev W_hh^T) -------------------------------------------
// g [H] in: input part; r [H]: recurrent part (null: already in g). out: g = h [H].
template <typename T>
inline void rnn_forward_row(int /*H*/, int j0, int j1, bool relu, T* g, const T* r) {
  for (int j = j0; j < j1; ++j) {
    const T pre = r ? g[j] + r[j] : g[j];
    g[j] = relu ? (pre < T(0) ? T(0) : pre) : std::tanh(pre);  // relu(NaN) = NaN
  }
}
// dg [H] out: d pre-activation; dh [H]: d h; a [H]: stored activation h.
// ReLU selects rather than multiplies by 0/1, as PyTorch's threshold_backward (h <= 0 ? 0 : dh):
// an inactive unit passes 0 back even for an Inf or NaN dh (0 * Inf would be NaN), and a NaN h
// passes dh, as there (0 < h ? dh : 0 gave 0).
// One loop per activation, dh read unconditionally: the select then needs no branch (tested
// inside one loop it was a branch, mispredicted on half the units).
template <typename T>
inline void rnn_backward_row(int /*H*/, int j0, int j1, bool relu, T* dg, const T* dh, const T* a) {
  if (relu) {
    for (int j = j0; j < j1; ++j) {
      const T d = dh[j];
      dg[j] = a[j] <= T(0) ? T(0) : d;
    }
  } else {
    for (int j = j0; j < j1; ++j) dg[j] = dh[j] * (T(1) - a[j] * a[j]);
  }
}

// ---- LSTM ----------------------------------------------------------------------------------
// g [4H] in: input part + bias, out: activations (i, f, g, o); r [4H]: recurrent part (null:
// already in g); c_prev [H]; c [H] out; h [H] out.
template <typename T>
inline void lstm_forward_row(int H, int j0, int j1, T* g, const T* r, const T* c_prev, T* c, T* h) {
  for (int j = j0; j < j1; ++j) {
    auto pre = [&](int q) { return r ? g[q * H + j] + r[q * H + j] : g[q * H + j]; };
    const T i = sigmoid(pre(0));
    const T f = sigmoid(pre(1));
    const T n = std::tanh(pre(2));
    const T o = sigmoid(pre(3));
    const T cn = f * c_prev[j] + i * n;
    g[j] = i;
    g[H + j] = f;
    g[2 * H + j] = n;
    g[3 * H + j] = o;
    c[j] = cn;
    h[j] = o * std::tanh(cn);
  }
}
// dg [4H] out; dh [H] in; dc [H] in: d c_t from step t+1, out: d c_{t-1}; a [4H] activations;
// c [H], c_prev [H] stored states.
template <typename T>
inline void lstm_backward_row(int H, int j0, int j1, T* dg, const T* dh, T* dc, const T* a, const T* c,
                              const T* c_prev) {
  for (int j = j0; j < j1; ++j) {
    const T i = a[j], f = a[H + j], n = a[2 * H + j], o = a[3 * H + j];
    const T tc = std::tanh(c[j]);
    const T dct = dc[j] + dh[j] * o * (T(1) - tc * tc);
    dg[j] = dct * n * i * (T(1) - i);
    dg[H + j] = dct * c_prev[j] * f * (T(1) - f);
    dg[2 * H + j] = dct * i * (T(1) - n * n);
    dg[3 * H + j] = dh[j] * tc * o * (T(1) - o);
    dc[j] = dct * f;
  }
}

// ---- GRU, reset_after = true (PyTorch/cuDNN): n = tanh(x_n + r * (W_hn h + b_hn)) ----------
// g [3H] in: input part + bias, out: (r, z, n); r [3H]: h_prev W_hh^T (n part without b_hn);
// b_hn [H] or null; hn [H] out: W_hn h + b_hn (kept for backward); h_prev [H]; h [H] out.
template <typename T>
inline void gru_after_forward_row(int H, int j0, int j1, T* g, const T* r, const T* b_hn, T* hn, const T* h_prev,
                                  T* h) {
  for (int j = j0; j < j1; ++j) {
    const T rg = sigmoid(g[j] + r[j]);
    const T z = sigmoid(g[H + j] + r[H + j]);
    const T hnj = r[2 * H + j] + (b_hn ? b_hn[j] : T(0));
    const T n = std::tanh(g[2 * H + j] + rg * hnj);
    g[j] = rg;
    g[H + j] = z;
    g[2 * H + j] = n;
    hn[j] = hnj;
    h[j] = (T(1) - z) * n + z * h_prev[j];
  }
}
// dg [3H] out: d pre-activations on the input side; dgh_n [H] out: d (W_hn h + b_hn);
// dh [H] in; dh_prev [H] out: the pointwise part of d h_prev (the GEMM part is added later).
template <typename T>
inline void gru_after_backward_row(int H, int j0, int j1, T* dg, T* dgh_n, const T* dh, T* dh_prev, const T* a,
                                   const T* hn, const T* h_prev) {
  for (int j = j0; j < j1; ++j) {
    const T rg = a[j], z = a[H + j], n = a[2 * H + j];
    const T dn = dh[j] * (T(1) - z) * (T(1) - n * n);
    dg[j] = dn * hn[j] * rg * (T(1) - rg);
    dg[H + j] = dh[j] * (h_prev[j] - n) * z * (T(1) - z);
    dg[2 * H + j] = dn;
    dgh_n[j] = dn * rg;
    dh_prev[j] = dh[j] * z;
  }
}

// ---- GRU, reset_after = false (seeds, Cho et al., ONNX default): n = tanh(x_n + W_hn (r*h)) --
// Stage 1: g [0:2H] in pre, out (r, z); r [2H]: h_prev W_hr,hz^T; rh [H] out: r * h_prev.
template <typename T>
inline void gru_before_gates_row(int H, int j0, int j1, T* g, const T* r, const T* h_prev, T* rh) {
  for (int j = j0; j < j1; ++j) {
    const T rg = sigmoid(g[j] + r[j]);
    g[j] = rg;
    g[H + j] = sigmoid(g[H + j] + r[H + j]);
    rh[j] = rg * h_prev[j];
  }
}
// Stage 2: g [2H:3H] in pre, out n; rn [H]: (r*h_prev) W_hn^T; h [H] out.
template <typename T>
inline void gru_before_state_row(int H, int j0, int j1, T* g, const T* rn, const T* h_prev, T* h) {
  for (int j = j0; j < j1; ++j) {
    const T z = g[H + j];
    const T n = std::tanh(g[2 * H + j] + rn[j]);
    g[2 * H + j] = n;
    h[j] = (T(1) - z) * n + z * h_prev[j];
  }
}
// Backward stage 1: dg [z, n] parts out, dh_prev [H] out (pointwise part). dg r part later.
template <typename T>
inline void gru_before_backward_zn_row(int H, int j0, int j1, T* dg, const T* dh, T* dh_prev, const T* a,
                                       const T* h_prev) {
  for (int j = j0; j < j1; ++j) {
    const T z = a[H + j], n = a[2 * H + j];
    dg[H + j] = dh[j] * (h_prev[j] - n) * z * (T(1) - z);
    dg[2 * H + j] = dh[j] * (T(1) - z) * (T(1) - n * n);
    dh_prev[j] = dh[j] * z;
  }
}
// Backward stage 2: drh [H] = d (r*h_prev) (from dg_n W_hn); dg r part out; dh_prev += drh*r.
template <typename T>
inline void gru_before_backward_r_row(int /*H*/, int j0, int j1, T* dg, const T* drh, T* dh_prev, const T* a,
                                      const T* h_prev) {
  for (int j = j0; j < j1; ++j) {
    const T rg = a[j];
    dg[j] = drh[j] * h_prev[j] * rg * (T(1) - rg);
    dh_prev[j] += drh[j] * rg;
  }
}

}  // namespace kernels
}  // namespace pyrnn
