#include "pyrnn/recurrent.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "pyrnn/error.h"
#include "pyrnn/kernels/cells.h"
#include "pyrnn/kernels/gemm.h"
#include "pyrnn/random.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pyrnn {

using kernels::gemm;
using kernels::Trans;

int RecurrentConfig::gates() const {
  switch (cell) {
    case CellType::RNN_TANH:
    case CellType::RNN_RELU: return 1;
    case CellType::LSTM: return 4;
    case CellType::GRU: return 3;
  }
  return 0;
}

int RecurrentConfig::layer_input_size(int layer) const {
  return layer == 0 ? input_size : directions() * hidden_size;
}

void RecurrentConfig::validate() const {
  const int c = static_cast<int>(cell);
  PYRNN_CHECK(c >= 0 && c <= 3, "unknown cell type ", c);
  PYRNN_CHECK(input_size >= 1, "input_size must be >= 1, got ", input_size);
  PYRNN_CHECK(hidden_size >= 1, "hidden_size must be >= 1, got ", hidden_size);
  PYRNN_CHECK(num_layers >= 1, "num_layers must be >= 1, got ", num_layers);
  PYRNN_CHECK(dropout >= 0.0 && dropout < 1.0, "dropout must be in [0, 1), got ", dropout);
  PYRNN_CHECK(!reset_after || cell == CellType::GRU, "reset_after applies to GRU only");
  // Every buffer index below is computed in std::size_t, but GEMM sizes are int.
  const double gh = static_cast<double>(gates()) * hidden_size;
  PYRNN_CHECK(gh * std::max(input_size, 2 * hidden_size) < 2147483647.0,
              "layer too large: gates*hidden_size*input_size overflows (hidden_size=",
              hidden_size, ", input_size=", input_size, ")");
}

template <typename T>
Recurrent<T>::Recurrent(const RecurrentConfig& config) : cfg_(config) {
  cfg_.validate();
  const int G = cfg_.gates(), H = cfg_.hidden_size, D = cfg_.directions();
  const std::size_t GH = static_cast<std::size_t>(G) * H;
  {  // Parameters + gradients (+ the name table), refused before anything is allocated.
    const double per_dir = static_cast<double>(GH) * H + (cfg_.bias ? GH + H : 0) + 8.0;
    const double total = static_cast<double>(D) * (static_cast<double>(GH) * cfg_.input_size +
                         (cfg_.num_layers - 1.0) * static_cast<double>(GH) * D * H) +
                         static_cast<double>(D) * cfg_.num_layers * per_dir;
    check_allocation(total * 2 * sizeof(T), "the layer's parameters and gradients");
  }
  std::size_t off = 0;
  for (int k = 0; k < cfg_.num_layers; ++k) {
    for (int d = 0; d < D; ++d) {
      const std::string sfx = "_l" + std::to_string(k) + (d ? "_reverse" : "");
      const std::size_t C = static_cast<std::size_t>(cfg_.layer_input_size(k));
      info_.push_back({"weight_ih" + sfx, off, GH, C});
      off += GH * C;
      info_.push_back({"weight_hh" + sfx, off, GH, static_cast<std::size_t>(H)});
      off += GH * H;
      if (cfg_.bias) {
        info_.push_back({"bias" + sfx, off, GH, 0});
        off += GH;
        if (cfg_.reset_after) {
          info_.push_back({"bias_hn" + sfx, off, static_cast<std::size_t>(H), 0});
          off += H;
        }
      }
    }
  }
  params_.resize(off);
  grads_.resize(off);
  reset_parameters(0);
}

template <typename T>
void Recurrent<T>::reset_parameters(std::uint64_t seed) {
  // PyTorch's default: every weight U(-k, k), k = 1/sqrt(H). Its two biases b_ih + b_hh become
  // one bias here, so each bias entry is the sum of two such draws (same distribution), except
  // the GRU reset_after n gate, whose b_in and b_hn stay separate.
  const T k = T(1) / std::sqrt(static_cast<T>(cfg_.hidden_size));
  const int H = cfg_.hidden_size;
  std::uint64_t stream = 0;
  for (const ParamInfo& p : info_) {
    T* w = params_.data() + p.offset;
    const bool is_bias = p.cols == 0 && p.name.rfind("bias_hn", 0) != 0;
    for (std::size_t i = 0; i < p.size(); ++i) {
      T v = static_cast<T>(2.0 * uniform01(seed, stream, 2 * i) - 1.0) * k;
      const bool single = cfg_.reset_after && i >= static_cast<std::size_t>(2 * H);
      if (is_bias && !single) v += static_cast<T>(2.0 * uniform01(seed, stream, 2 * i + 1) - 1.0) * k;
      w[i] = v;
    }
    ++stream;
  }
}

template <typename T>
typename Recurrent<T>::Weights Recurrent<T>::weights(int layer, int dir) {
  const int per = cfg_.bias ? (cfg_.reset_after ? 4 : 3) : 2;
  const std::size_t base = static_cast<std::size_t>(layer * cfg_.directions() + dir) * per;
  Weights w{};
  w.w_ih = params_.data() + info_[base].offset;
  w.dw_ih = grads_.data() + info_[base].offset;
  w.w_hh = params_.data() + info_[base + 1].offset;
  w.dw_hh = grads_.data() + info_[base + 1].offset;
  if (cfg_.bias) {
    w.b = params_.data() + info_[base + 2].offset;
    w.db = grads_.data() + info_[base + 2].offset;
    if (cfg_.reset_after) {
      w.b_hn = params_.data() + info_[base + 3].offset;
      w.db_hn = grads_.data() + info_[base + 3].offset;
    }
  }
  return w;
}

// ---------------------------------------------------------------------------------------------
// Forward

template <typename T>
void Recurrent<T>::forward(T* y, T* hn, T* cn, const T* x, const T* h0, const T* c0,
                           const std::int64_t* lengths, int steps, int batch, bool training,
                           std::uint64_t seed) {
  PYRNN_CHECK(steps >= 1, "sequence length must be >= 1, got ", steps);
  PYRNN_CHECK(batch >= 1, "batch size must be >= 1, got ", batch);
  PYRNN_CHECK(x && y && hn, "forward: null buffer");
  const bool lstm = cfg_.cell == CellType::LSTM;
  PYRNN_CHECK(!lstm || cn, "forward: LSTM needs a c_n buffer");
  const int L = cfg_.num_layers, D = cfg_.directions(), H = cfg_.hidden_size;
  const std::size_t T_ = steps, N = batch;
  PYRNN_CHECK(T_ * N * std::max({cfg_.gates() * H, D * H, cfg_.input_size}) <
                  (std::size_t(1) << 31),
              "steps*batch*width overflows 32-bit GEMM sizes (T=", steps, ", N=", batch, ")");
  {  // The caches this forward allocates (see DirCache / LayerCache), refused up front.
    const double tn = static_cast<double>(T_) * N, dh = static_cast<double>(D) * H;
    const double per_dir = tn * cfg_.gates() * H + (lstm ? 2.0 : 1.0) * (T_ + 1.0) * N * H +
                           (cfg_.cell == CellType::GRU ? tn * H : 0.0) +
                           static_cast<double>(N) * cfg_.gates() * H;
    const double per_layer = tn * (std::max<double>(cfg_.input_size, dh) + 2.0 * dh);
    const double n_dirs = training ? static_cast<double>(L) * D : D;
    const double n_layers = training ? L : 2.0;
    check_allocation((n_dirs * per_dir + n_layers * per_layer) * sizeof(T),
                     "this forward's activations");
  }

  cached_ = false;  // a failed or eval forward leaves nothing to backpropagate through
  lengths_.clear();
  if (lengths) {
    bool all_full = true;
    for (std::size_t n = 0; n < N; ++n) {
      PYRNN_CHECK(lengths[n] >= 1 && lengths[n] <= steps, "lengths[", n, "] = ", lengths[n],
                  " is outside [1, ", steps, "]");
      all_full = all_full && lengths[n] == steps;
    }
    if (!all_full) lengths_.assign(lengths, lengths + N);
  }
  steps_ = steps;
  batch_ = batch;

  const bool drop = training && cfg_.dropout > 0.0 && L > 1;
  layers_.resize(training ? L : 2);
  dirs_.resize(training ? static_cast<std::size_t>(L) * D : D);
  const std::size_t DH = static_cast<std::size_t>(D) * H;
  const T scale = static_cast<T>(1.0 / (1.0 - cfg_.dropout));

  const T* in = x;
  if (training) {
    layers_[0].x.resize(T_ * N * cfg_.input_size);
    std::memcpy(layers_[0].x.data(), x, T_ * N * cfg_.input_size * sizeof(T));
    in = layers_[0].x.data();
  }
  for (int k = 0; k < L; ++k) {
    LayerCache& lc = layers_[training ? k : k % 2];
    T* out = y;
    if (k < L - 1) {
      lc.y.resize(T_ * N * DH);
      out = lc.y.data();
    }
    for (int d = 0; d < D; ++d) {
      DirCache& dc = dirs_[training ? static_cast<std::size_t>(k) * D + d : d];
      const std::size_t slot = static_cast<std::size_t>(k) * D + d;
      forward_direction(dc, out, in, h0 ? h0 + slot * N * H : nullptr,
                        c0 ? c0 + slot * N * H : nullptr, k, d);
      const std::size_t last = d == 0 ? T_ : 0;
      std::memcpy(hn + slot * N * H, dc.h.data() + last * N * H, N * H * sizeof(T));
      if (lstm) std::memcpy(cn + slot * N * H, dc.c.data() + last * N * H, N * H * sizeof(T));
    }
    if (k == L - 1) break;
    if (!training) {
      in = out;
      continue;
    }
    // The next layer's input, kept for its weight gradient; dropout applied here.
    LayerCache& next = layers_[k + 1];
    next.x.resize(T_ * N * DH);
    if (drop) {
      lc.mask.resize(T_ * N * DH);
      for (std::size_t i = 0; i < T_ * N * DH; ++i) {
        const bool keep = uniform01(seed, static_cast<std::uint64_t>(k), i) >= cfg_.dropout;
        lc.mask[i] = keep ? scale : T(0);
        next.x[i] = out[i] * lc.mask[i];
      }
    } else {
      lc.mask.resize(0);
      std::memcpy(next.x.data(), out, T_ * N * DH * sizeof(T));
    }
    in = next.x.data();
  }
  cached_ = training;
}

template <typename T>
void Recurrent<T>::forward_direction(DirCache& dc, T* y, const T* x, const T* h0, const T* c0,
                                     int layer, int dir) {
  const std::size_t T_ = steps_, N = batch_, H = cfg_.hidden_size;
  const int G = cfg_.gates(), Hi = cfg_.hidden_size, Ni = batch_;
  const std::size_t GH = G * H, DH = cfg_.directions() * H;
  const int C = cfg_.layer_input_size(layer);
  const bool lstm = cfg_.cell == CellType::LSTM, gru = cfg_.cell == CellType::GRU;
  const bool relu = cfg_.cell == CellType::RNN_RELU;
  const bool split = gru && !cfg_.reset_after;  // the seeds' GRU: W_hn applies to r*h
  const Weights w = weights(layer, dir);
  const kernels::Ops<T>& K = kernels::ops<T>();

  dc.g.resize(T_ * N * GH);
  dc.h.resize((T_ + 1) * N * H);
  if (lstm) dc.c.resize((T_ + 1) * N * H);
  if (gru) dc.aux.resize(T_ * N * H);
  scratch_.resize(N * GH);
  T* g = dc.g.data();      // [T, N, GH]
  T* hs = dc.h.data();     // [T+1, N, H]
  T* cs = dc.c.data();     // [T+1, N, H]
  T* r = scratch_.data();  // [N, GH] recurrent products of one step

  // Input projection of every step at once, bias fused: g = x W_ih^T + b.
  K.pack_b(pack_ih_, Trans::T, C, G * Hi, w.w_ih, C);
  K.gemm_packed(Trans::N, static_cast<int>(T_ * N), x, C, T(1), pack_ih_, T(0), w.b, g,
                G * Hi, kernels::gemm_threads(static_cast<long long>(T_ * N), G * Hi, C));

  const std::size_t first = dir == 0 ? 0 : T_;
  if (h0) std::memcpy(hs + first * N * H, h0, N * H * sizeof(T));
  else std::fill(hs + first * N * H, hs + (first + 1) * N * H, T(0));
  if (lstm) {
    if (c0) std::memcpy(cs + first * N * H, c0, N * H * sizeof(T));
    else std::fill(cs + first * N * H, cs + (first + 1) * N * H, T(0));
  }

  K.pack_b(pack_hh_, Trans::T, Hi, split ? 2 * Hi : G * Hi, w.w_hh, Hi);
  if (split) K.pack_b(pack_hn_, Trans::T, Hi, Hi, w.w_hh + 2 * H * H, Hi);
  // Threads own slices of hidden units, in whole GEMM panels, across every gate: each computes
  // the recurrent products for its units and applies the cell to them right away, so a step
  // needs one barrier (h_t complete). Hidden sizes that are not a multiple of the panel width
  // run the step loop on one thread.
  const int nr = pack_hh_.nr;
  const int nth = Hi % nr == 0 ? std::min(kernels::gemm_threads(Ni, G * Hi, Hi), Hi / nr) : 1;
  const int ngates = split ? 2 : G;

#pragma omp parallel num_threads(nth) if (nth > 1)
  {
#ifdef _OPENMP
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
#else
    const int tid = 0, team = 1;
#endif
    const int upanels = (Hi + nr - 1) / nr;
    const int u0 = std::min(Hi, upanels * tid / team * nr);
    const int u1 = std::min(Hi, upanels * (tid + 1) / team * nr);
    int ranges[8], ranges_n[2] = {u0 / nr, (u1 + nr - 1) / nr};
    for (int q = 0; q < ngates; ++q) {
      ranges[2 * q] = (q * Hi + u0) / nr;
      ranges[2 * q + 1] = (q * Hi + u1 + nr - 1) / nr;
    }
    const std::size_t U0 = u0, U = u1 - u0;
    for (std::size_t s = 0; s < T_; ++s) {
      const std::size_t t = dir == 0 ? s : T_ - 1 - s;
      const std::size_t prev = dir == 0 ? t : t + 1, cur = dir == 0 ? t + 1 : t;
      const T* hp = hs + prev * N * H;  // [N, H]
      T* hc = hs + cur * N * H;         // [N, H]
      T* gt = g + t * N * GH;           // [N, GH]
      T* at = gru ? dc.aux.data() + t * N * H : nullptr;  // [N, H]
      if (U) K.gemm_panels(Trans::N, Ni, hp, Hi, T(1), pack_hh_, T(0), nullptr, r, G * Hi, ranges,
                           ngates);
      for (std::size_t n = 0; n < N && U; ++n) {
        T* gr = gt + n * GH;
        const T* rr = r + n * GH;
        const T* hpr = hp + n * H;
        T* hcr = hc + n * H;
        T* yr = y + (t * N + n) * DH + dir * H;  // this direction's slice of y[t, n]
        if (!active(static_cast<int>(n), static_cast<int>(t))) {
          // Past this sequence's end: the state carries through, the output is zero.
          std::memcpy(hcr + U0, hpr + U0, U * sizeof(T));
          if (lstm)
            std::memcpy(cs + cur * N * H + n * H + U0, cs + prev * N * H + n * H + U0,
                        U * sizeof(T));
          if (gru) std::fill(at + n * H + U0, at + n * H + U0 + U, T(0));
          std::fill(yr + U0, yr + U0 + U, T(0));
          continue;
        }
        switch (cfg_.cell) {
          case CellType::RNN_TANH:
          case CellType::RNN_RELU:
            K.rnn_forward_row(Hi, u0, u1, relu, gr, rr);
            std::memcpy(hcr + U0, gr + U0, U * sizeof(T));
            break;
          case CellType::LSTM:
            K.lstm_forward_row(Hi, u0, u1, gr, rr, cs + prev * N * H + n * H,
                               cs + cur * N * H + n * H, hcr);
            break;
          case CellType::GRU:
            if (cfg_.reset_after)
              K.gru_after_forward_row(Hi, u0, u1, gr, rr, w.b_hn, at + n * H, hpr, hcr);
            else
              K.gru_before_gates_row(Hi, u0, u1, gr, rr, hpr, at + n * H);
            break;
        }
        if (!split) std::memcpy(yr + U0, hcr + U0, U * sizeof(T));
      }
      if (split) {
#pragma omp barrier
        // The seeds' GRU: W_hn needs r*h_prev of every unit.
        T* rn = r + 2 * H;  // [N, H] in the n columns of the step scratch
        if (U) K.gemm_panels(Trans::N, Ni, at, Hi, T(1), pack_hn_, T(0), nullptr, rn, G * Hi,
                             ranges_n, 1);
        for (std::size_t n = 0; n < N && U; ++n)
          if (active(static_cast<int>(n), static_cast<int>(t))) {
            K.gru_before_state_row(Hi, u0, u1, gt + n * GH, rn + n * GH, hp + n * H, hc + n * H);
            std::memcpy(y + (t * N + n) * DH + dir * H + U0, hc + n * H + U0, U * sizeof(T));
          }
      }
#pragma omp barrier
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward

template <typename T>
void Recurrent<T>::backward(T* dx, T* dh0, T* dc0, const T* dy, const T* dhn, const T* dcn) {
  PYRNN_CHECK(cached_, "backward needs a preceding forward in training mode (train()); "
                       "none is cached");
  PYRNN_CHECK(dx && dh0 && dy, "backward: null buffer");
  const bool lstm = cfg_.cell == CellType::LSTM;
  PYRNN_CHECK(!lstm || dc0, "backward: LSTM needs a dc0 buffer");
  const int L = cfg_.num_layers, D = cfg_.directions();
  const std::size_t T_ = steps_, N = batch_, DH = static_cast<std::size_t>(D) * cfg_.hidden_size;

  AlignedBuffer<T> dy_buf, dx_buf;  // [T, N, D*H] between layers
  const T* dyk = dy;
  for (int k = L - 1; k >= 0; --k) {
    T* dxk = dx;
    if (k > 0) {
      dx_buf.resize(T_ * N * DH);
      dxk = dx_buf.data();
    }
    for (int d = 0; d < D; ++d)
      backward_direction(dirs_[static_cast<std::size_t>(k) * D + d], dxk, dh0, dc0, dyk, dhn, dcn,
                         layers_[k].x.data(), k, d, d > 0);
    if (k == 0) break;
    // d of the previous layer's output: through its dropout mask.
    const LayerCache& below = layers_[k - 1];
    if (below.mask.size())
      for (std::size_t i = 0; i < T_ * N * DH; ++i) dxk[i] *= below.mask[i];
    dy_buf.swap(dx_buf);
    dyk = dy_buf.data();
  }
}

template <typename T>
void Recurrent<T>::backward_direction(DirCache& dc, T* dx, T* dh0, T* dc0, const T* dy,
                                      const T* dhn, const T* dcn, const T* x, int layer, int dir,
                                      bool accumulate_dx) {
  const std::size_t T_ = steps_, N = batch_, H = cfg_.hidden_size;
  const int G = cfg_.gates(), Hi = cfg_.hidden_size, Ni = batch_;
  const std::size_t GH = G * H, DH = cfg_.directions() * H;
  const int C = cfg_.layer_input_size(layer);
  const int M = static_cast<int>(T_ * N);
  const bool lstm = cfg_.cell == CellType::LSTM, gru = cfg_.cell == CellType::GRU;
  const bool relu = cfg_.cell == CellType::RNN_RELU;
  const bool after = gru && cfg_.reset_after;
  const Weights w = weights(layer, dir);
  const std::size_t slot = static_cast<std::size_t>(layer) * cfg_.directions() + dir;
  const kernels::Ops<T>& K = kernels::ops<T>();

  // Reused across calls (not re-zeroed): every row is written each step, inactive ones with 0.
  dg_.resize(T_ * N * GH);                            // [T, N, GH] d pre-activations (input side)
  dghn_.resize(after ? T_ * N * H : 0);               // [T, N, H] d (W_hn h + b_hn)
  AlignedBuffer<T>& dg = dg_;
  AlignedBuffer<T>& dghn = dghn_;
  AlignedBuffer<T> dh(N * H), dcs(lstm ? N * H : 0);  // [N, H] running d h, d c
  AlignedBuffer<T> dht(N * H), pw(N * H), rec(N * H), drh(N * H);  // [N, H] per-step
  if (dhn) std::memcpy(dh.data(), dhn + slot * N * H, N * H * sizeof(T));
  if (lstm && dcn) std::memcpy(dcs.data(), dcn + slot * N * H, N * H * sizeof(T));

  // d h_prev = dg_h W_hh: W_hh (GRU: its r,z rows, then its n rows) packed once for all steps.
  K.pack_b(pack_hh_, Trans::N, gru ? 2 * Hi : G * Hi, Hi, w.w_hh, Hi);
  if (gru) K.pack_b(pack_hn_, Trans::N, Hi, Hi, w.w_hh + 2 * H * H, Hi);
  // As in forward: threads own slices of hidden units (whole panels of d h_prev's columns). The
  // cell backward of a unit needs only that unit's running d h / d c, so one barrier per step
  // (all of dg written before the GEMM reads it) suffices.
  const int nr = pack_hh_.nr;
  const int nth = Hi % nr == 0 ? std::min(kernels::gemm_threads(Ni, G * Hi, Hi), Hi / nr) : 1;

  const T* hs = dc.h.data();
  const T* cs = dc.c.data();
#pragma omp parallel num_threads(nth) if (nth > 1)
  {
#ifdef _OPENMP
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
#else
    const int tid = 0, team = 1;
#endif
    const int upanels = (Hi + nr - 1) / nr;
    const int u0 = std::min(Hi, upanels * tid / team * nr);
    const int u1 = std::min(Hi, upanels * (tid + 1) / team * nr);
    const int range[2] = {u0 / nr, (u1 + nr - 1) / nr};
    const std::size_t U0 = u0, U = u1 - u0;
    for (std::size_t s = 0; s < T_; ++s) {
      const std::size_t t = dir == 0 ? T_ - 1 - s : s;
      const std::size_t prev = dir == 0 ? t : t + 1, cur = dir == 0 ? t + 1 : t;
      const T* hp = hs + prev * N * H;
      const T* at = dc.g.data() + t * N * GH;
      T* dgt = dg.data() + t * N * GH;
      T* dghnt = after ? dghn.data() + t * N * H : nullptr;
      for (std::size_t n = 0; n < N && U; ++n) {
        T* dgr = dgt + n * GH;
        if (!active(static_cast<int>(n), static_cast<int>(t))) {  // no gradient past the end
          for (int q = 0; q < G; ++q) std::fill(dgr + q * H + U0, dgr + q * H + U0 + U, T(0));
          if (after) std::fill(dghnt + n * H + U0, dghnt + n * H + U0 + U, T(0));
          continue;
        }
        const T* dyr = dy + (t * N + n) * DH + dir * H;
        T* d = dht.data() + n * H;
        for (std::size_t j = U0; j < U0 + U; ++j) d[j] = dh[n * H + j] + dyr[j];
        const T* ar = at + n * GH;
        switch (cfg_.cell) {
          case CellType::RNN_TANH:
          case CellType::RNN_RELU: K.rnn_backward_row(Hi, u0, u1, relu, dgr, d, ar); break;
          case CellType::LSTM:
            K.lstm_backward_row(Hi, u0, u1, dgr, d, dcs.data() + n * H, ar,
                                cs + cur * N * H + n * H, cs + prev * N * H + n * H);
            break;
          case CellType::GRU:
            if (after)
              K.gru_after_backward_row(Hi, u0, u1, dgr, dghnt + n * H, d, pw.data() + n * H, ar,
                                       dc.aux.data() + (t * N + n) * H, hp + n * H);
            else
              K.gru_before_backward_zn_row(Hi, u0, u1, dgr, d, pw.data() + n * H, ar, hp + n * H);
            break;
        }
      }
#pragma omp barrier
      // d h_prev through the recurrent weights, for this thread's units: rec = dg_h W_hh.
      if (gru && !after) {
        if (U) K.gemm_panels(Trans::N, Ni, dgt + 2 * H, G * Hi, T(1), pack_hn_, T(0), nullptr,
                             drh.data(), Hi, range, 1);
        for (std::size_t n = 0; n < N && U; ++n)
          if (active(static_cast<int>(n), static_cast<int>(t)))
            K.gru_before_backward_r_row(Hi, u0, u1, dgt + n * GH, drh.data() + n * H,
                                        pw.data() + n * H, at + n * GH, hp + n * H);
#pragma omp barrier
        if (U) K.gemm_panels(Trans::N, Ni, dgt, G * Hi, T(1), pack_hh_, T(0), nullptr, rec.data(),
                             Hi, range, 1);
      } else if (after) {
        if (U) {
          K.gemm_panels(Trans::N, Ni, dgt, G * Hi, T(1), pack_hh_, T(0), nullptr, rec.data(), Hi,
                        range, 1);
          K.gemm_panels(Trans::N, Ni, dghnt, Hi, T(1), pack_hn_, T(1), nullptr, rec.data(), Hi,
                        range, 1);
        }
      } else if (U) {
        K.gemm_panels(Trans::N, Ni, dgt, G * Hi, T(1), pack_hh_, T(0), nullptr, rec.data(), Hi,
                      range, 1);
      }
      for (std::size_t n = 0; n < N && U; ++n) {
        if (!active(static_cast<int>(n), static_cast<int>(t))) continue;  // d h passes through
        for (std::size_t j = U0; j < U0 + U; ++j)
          dh[n * H + j] = rec[n * H + j] + (gru ? pw[n * H + j] : T(0));
      }
    }
  }
  std::memcpy(dh0 + slot * N * H, dh.data(), N * H * sizeof(T));
  if (lstm) std::memcpy(dc0 + slot * N * H, dcs.data(), N * H * sizeof(T));

  // Weight gradients over all steps at once (accumulate). h_prev of step t is slot t (forward)
  // or t+1 (reverse): either way one contiguous [T*N, H] block.
  const T* hprev = hs + (dir == 0 ? 0 : N * H);
  add_weight_grad(w.dw_ih, G * Hi, C, dg.data(), G * Hi, x, C, M);
  if (!gru) {
    add_weight_grad(w.dw_hh, G * Hi, Hi, dg.data(), G * Hi, hprev, Hi, M);
  } else {
    add_weight_grad(w.dw_hh, 2 * Hi, Hi, dg.data(), G * Hi, hprev, Hi, M);
    if (after)
      add_weight_grad(w.dw_hh + 2 * H * H, Hi, Hi, dghn.data(), Hi, hprev, Hi, M);
    else
      add_weight_grad(w.dw_hh + 2 * H * H, Hi, Hi, dg.data() + 2 * H, G * Hi, dc.aux.data(), Hi, M);
  }
  if (w.db) {
    for (std::size_t i = 0; i < T_ * N; ++i)
      for (std::size_t j = 0; j < GH; ++j) w.db[j] += dg[i * GH + j];
    if (after)
      for (std::size_t i = 0; i < T_ * N; ++i)
        for (std::size_t j = 0; j < H; ++j) w.db_hn[j] += dghn[i * H + j];
  }
  // d x (this direction's share): dg W_ih.
  gemm(Trans::N, Trans::N, M, C, G * Hi, T(1), dg.data(), G * Hi, w.w_ih, C,
       accumulate_dx ? T(1) : T(0), dx, C);
}

// dw [R x Cc] += dg^T [R x K] * x [K x Cc]. dg is tall (K = T*N rows) and wide, so the product
// is formed transposed, s = x^T dg [Cc x R]: then dg is read along its rows (as the packed right
// operand) instead of down its columns, and only the narrow x is read across rows.
template <typename T>
void Recurrent<T>::add_weight_grad(T* dw, int R, int Cc, const T* dg, int ldg, const T* x, int ldx,
                                   int K) {
  wgrad_.resize(static_cast<std::size_t>(Cc) * R);
  T* s = wgrad_.data();  // [Cc, R]
  gemm(Trans::T, Trans::N, Cc, R, K, T(1), x, ldx, dg, ldg, T(0), s, R);
  constexpr int B = 32;  // transpose-add in tiles that stay in L1
  for (int r0 = 0; r0 < R; r0 += B)
    for (int c0 = 0; c0 < Cc; c0 += B)
      for (int r = r0; r < std::min(R, r0 + B); ++r)
        for (int c = c0; c < std::min(Cc, c0 + B); ++c)
          dw[static_cast<std::size_t>(r) * Cc + c] += s[static_cast<std::size_t>(c) * R + r];
}

template class Recurrent<float>;
template class Recurrent<double>;

}  // namespace pyrnn
