// cuda::Recurrent: mirrors cpp/src/recurrent.cpp step for step (see the header). Buffer shapes are
// in the comments; `slot` = layer * D + dir indexes h0/hn/c0/cn.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "cells.cuh"
#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/gemm.h"
#include "pyrnn/cuda/recurrent.h"
#include "pyrnn/error.h"

namespace pyrnn {
namespace cuda {

using kernels::Trans;

namespace {

// Makes `device` current for a scope and restores the caller's device afterwards.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    PYRNN_CUDA_CHECK(cudaGetDevice(&prev_));
    if (prev_ != device) PYRNN_CUDA_CHECK(cudaSetDevice(device));
    switched_ = prev_ != device;
  }
  ~DeviceScope() {
    if (switched_) (void)cudaSetDevice(prev_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int prev_ = 0;
  bool switched_ = false;
};

// A device's Context (its stream and cuBLAS handle) is shared by every layer on it; a cuBLAS
// handle must not be used from two threads at once, so passes on one device are serialized.
std::mutex& device_mutex(int device) {
  static std::mutex mutexes[64];
  return mutexes[static_cast<unsigned>(device) % 64];
}

// Grows (never shrinks) a workspace; contents are not preserved.
template <typename U>
void ensure(DeviceBuffer<U>& b, std::size_t n) {
  if (b.size() < n) {
    b = DeviceBuffer<U>();  // free first: peak memory stays at one copy
    b = DeviceBuffer<U>(n);
  }
}

template <typename T>
void copy_d2d(T* dst, const T* src, std::size_t n, cudaStream_t stream) {
  if (n) PYRNN_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyDeviceToDevice, stream));
}

template <typename T>
void set_zero(T* dst, std::size_t n, cudaStream_t stream) {
  if (n) PYRNN_CUDA_CHECK(cudaMemsetAsync(dst, 0, n * sizeof(T), stream));
}

}  // namespace

template <typename T>
Recurrent<T>::Recurrent(const RecurrentConfig& config, int device)
    : cfg_(config), ctx_(&Context::get(device)) {
  cfg_.validate();
  DeviceScope scope(ctx_->device());
  pyrnn::Recurrent<T> host(cfg_);  // layout and initial values: the CPU class's own
  info_ = host.param_info();
  params_ = DeviceBuffer<T>(host.num_parameters());
  grads_ = DeviceBuffer<T>(host.num_parameters());
  params_.copy_from_host(host.params(), host.num_parameters(), ctx_->stream());
  grads_.zero(ctx_->stream());
  PYRNN_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream()));
}

template <typename T>
void Recurrent<T>::zero_grad() {
  DeviceScope scope(ctx_->device());
  grads_.zero(ctx_->stream());
  PYRNN_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream()));
}

template <typename T>
void Recurrent<T>::reset_parameters(std::uint64_t seed) {
  pyrnn::Recurrent<T> host(cfg_);
  host.reset_parameters(seed);
  copy_params_from_host(host.params());
}

template <typename T>
void Recurrent<T>::copy_params_from_host(const T* src) {
  DeviceScope scope(ctx_->device());
  params_.copy_from_host(src, params_.size(), ctx_->stream());
}
template <typename T>
void Recurrent<T>::copy_params_to_host(T* dst) const {
  DeviceScope scope(ctx_->device());
  params_.copy_to_host(dst, params_.size(), ctx_->stream());
}
template <typename T>
void Recurrent<T>::copy_grads_from_host(const T* src) {
  DeviceScope scope(ctx_->device());
  grads_.copy_from_host(src, grads_.size(), ctx_->stream());
}
template <typename T>
void Recurrent<T>::copy_grads_to_host(T* dst) const {
  DeviceScope scope(ctx_->device());
  grads_.copy_to_host(dst, grads_.size(), ctx_->stream());
}

template <typename T>
const T* Recurrent<T>::last_layer_states(int dir, bool cell) const {
  const std::size_t D = static_cast<std::size_t>(cfg_.directions());
  if (dirs_.size() < D || dir < 0 || static_cast<std::size_t>(dir) >= D) return nullptr;
  const DirCache& dc = dirs_[dirs_.size() - D + static_cast<std::size_t>(dir)];
  const DeviceBuffer<T>& b = cell ? dc.c : dc.h;
  return b.size() ? b.data() : nullptr;
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
  PYRNN_CHECK(T_ * N * std::max(cfg_.gates() * H, cfg_.input_size) < (std::size_t(1) << 31),
              "steps*batch*width overflows 32-bit GEMM sizes (T=", steps, ", N=", batch, ")");
  std::lock_guard<std::mutex> lock(device_mutex(ctx_->device()));
  DeviceScope scope(ctx_->device());
  cudaStream_t stream = ctx_->stream();

  cached_ = false;  // a failed or eval forward leaves nothing to backpropagate through
  has_lengths_ = false;
  if (lengths) {
    bool all_full = true;
    for (std::size_t n = 0; n < N; ++n) {
      PYRNN_CHECK(lengths[n] >= 1 && lengths[n] <= steps, "lengths[", n, "] = ", lengths[n],
                  " is outside [1, ", steps, "]");
      all_full = all_full && lengths[n] == steps;
    }
    if (!all_full) {
      ensure(lengths_, N);
      lengths_.copy_from_host(lengths, N, stream);
      has_lengths_ = true;
    }
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
    ensure(layers_[0].x, T_ * N * cfg_.input_size);
    copy_d2d(layers_[0].x.data(), x, T_ * N * cfg_.input_size, stream);
    in = layers_[0].x.data();
  }
  for (int k = 0; k < L; ++k) {
    LayerCache& lc = layers_[training ? k : k % 2];
    T* out = y;
    if (k < L - 1) {
      ensure(lc.y, T_ * N * DH);
      out = lc.y.data();
    }
    for (int d = 0; d < D; ++d) {
      DirCache& dc = dirs_[training ? static_cast<std::size_t>(k) * D + d : d];
      const std::size_t slot = static_cast<std::size_t>(k) * D + d;
      forward_direction(dc, out, in, h0 ? h0 + slot * N * H : nullptr,
                        c0 ? c0 + slot * N * H : nullptr, k, d);
      const std::size_t last = d == 0 ? T_ : 0;
      copy_d2d(hn + slot * N * H, dc.h.data() + last * N * H, N * H, stream);
      if (lstm) copy_d2d(cn + slot * N * H, dc.c.data() + last * N * H, N * H, stream);
    }
    if (k == L - 1) break;
    if (!training) {
      in = out;
      continue;
    }
    // The next layer's input, kept for its weight gradient; dropout applied here.
    LayerCache& next = layers_[k + 1];
    ensure(next.x, T_ * N * DH);
    if (drop) {
      ensure(lc.mask, T_ * N * DH);
      detail::dropout_forward<T>(next.x.data(), lc.mask.data(), out, T_ * N * DH, seed,
                                 static_cast<std::uint64_t>(k), cfg_.dropout, scale, stream);
    } else {
      lc.mask = DeviceBuffer<T>();
      copy_d2d(next.x.data(), out, T_ * N * DH, stream);
    }
    in = next.x.data();
  }
  PYRNN_CUDA_CHECK(cudaStreamSynchronize(stream));
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
  const bool split = gru && !cfg_.reset_after;  // the seeds' GRU: W_hn applies to r*h
  const Weights w = weights(layer, dir);
  cudaStream_t stream = ctx_->stream();
  cublasHandle_t blas = ctx_->cublas();
  const std::int64_t* lens = lengths_device();

  ensure(dc.g, T_ * N * GH);
  ensure(dc.h, (T_ + 1) * N * H);
  if (lstm) ensure(dc.c, (T_ + 1) * N * H);
  if (gru) ensure(dc.aux, T_ * N * H);
  ensure(scratch_, N * GH);
  T* g = dc.g.data();      // [T, N, GH]
  T* hs = dc.h.data();     // [T+1, N, H]
  T* cs = lstm ? dc.c.data() : nullptr;  // [T+1, N, H]
  T* r = scratch_.data();  // [N, GH] recurrent products of one step

  // Input projection of every step at once: g = x W_ih^T, then + b.
  gemm<T>(blas, Trans::N, Trans::T, static_cast<int>(T_ * N), G * Hi, C, T(1), x, C, w.w_ih, C,
          T(0), g, G * Hi);
  if (w.b) detail::add_bias_rows<T>(g, w.b, T_ * N, G * Hi, G * Hi, stream);

  const std::size_t first = dir == 0 ? 0 : T_;
  if (h0) copy_d2d(hs + first * N * H, h0, N * H, stream);
  else set_zero(hs + first * N * H, N * H, stream);
  if (lstm) {
    if (c0) copy_d2d(cs + first * N * H, c0, N * H, stream);
    else set_zero(cs + first * N * H, N * H, stream);
  }

  for (std::size_t s = 0; s < T_; ++s) {
    const std::size_t t = dir == 0 ? s : T_ - 1 - s;
    const std::size_t prev = dir == 0 ? t : t + 1, cur = dir == 0 ? t + 1 : t;
    const T* hp = hs + prev * N * H;  // [N, H]
    T* hc = hs + cur * N * H;         // [N, H]
    T* gt = g + t * N * GH;           // [N, GH]
    T* at = gru ? dc.aux.data() + t * N * H : nullptr;  // [N, H]
    T* yt = y + t * N * DH + dir * H;                   // [N, ld DH] this direction's slice
    // r = h_prev W_hh^T (GRU reset_after=false: only the r, z rows of W_hh).
    gemm<T>(blas, Trans::N, Trans::T, Ni, split ? 2 * Hi : G * Hi, Hi, T(1), hp, Hi, w.w_hh, Hi,
            T(0), r, G * Hi);
    detail::cell_forward<T>(cfg_.cell, cfg_.reset_after, Ni, Hi, static_cast<int>(t), lens, gt, r,
                            w.b_hn, hp, hc, lstm ? cs + prev * N * H : nullptr,
                            lstm ? cs + cur * N * H : nullptr, at, yt, static_cast<int>(DH),
                            stream);
    if (split) {
      T* rn = r + 2 * H;  // [N, H] in the n columns of the step scratch (ld GH)
      gemm<T>(blas, Trans::N, Trans::T, Ni, Hi, Hi, T(1), at, Hi, w.w_hh + 2 * H * H, Hi, T(0),
              rn, G * Hi);
      detail::gru_before_state<T>(Ni, Hi, static_cast<int>(t), lens, gt, rn, hp, hc, yt,
                                  static_cast<int>(DH), stream);
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
  std::lock_guard<std::mutex> lock(device_mutex(ctx_->device()));
  DeviceScope scope(ctx_->device());
  cudaStream_t stream = ctx_->stream();

  const T* dyk = dy;
  for (int k = L - 1; k >= 0; --k) {
    T* dxk = dx;
    if (k > 0) {
      ensure(dx_buf_, T_ * N * DH);
      dxk = dx_buf_.data();
    }
    for (int d = 0; d < D; ++d)
      backward_direction(dirs_[static_cast<std::size_t>(k) * D + d], dxk, dh0, dc0, dyk, dhn, dcn,
                         layers_[k].x.data(), k, d, d > 0);
    if (k == 0) break;
    // d of the previous layer's output: through its dropout mask.
    const LayerCache& below = layers_[k - 1];
    if (below.mask.size()) detail::multiply_inplace<T>(dxk, below.mask.data(), T_ * N * DH, stream);
    dy_buf_.swap(dx_buf_);
    dyk = dy_buf_.data();
  }
  PYRNN_CUDA_CHECK(cudaStreamSynchronize(stream));
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
  const bool after = gru && cfg_.reset_after;
  const Weights w = weights(layer, dir);
  const std::size_t slot = static_cast<std::size_t>(layer) * cfg_.directions() + dir;
  cudaStream_t stream = ctx_->stream();
  cublasHandle_t blas = ctx_->cublas();
  const std::int64_t* lens = lengths_device();

  // Every row of dg / dghn is written each step (inactive ones with 0): no clearing needed.
  ensure(dg_, T_ * N * GH);              // [T, N, GH] d pre-activations (input side)
  if (after) ensure(dghn_, T_ * N * H);  // [T, N, H] d (W_hn h + b_hn)
  ensure(dh_, N * H);                    // [N, H] running d h
  if (lstm) ensure(dc_, N * H);          // [N, H] running d c
  ensure(pw_, N * H);                    // [N, H] pointwise part of d h_prev (GRU)
  ensure(rec_, N * H);                   // [N, H] dg W_hh
  if (gru && !after) ensure(drh_, N * H);  // [N, H] d (r*h_prev)
  T* dg = dg_.data();
  T* dghn = after ? dghn_.data() : nullptr;
  T* dh = dh_.data();
  T* dcs = lstm ? dc_.data() : nullptr;
  if (dhn) copy_d2d(dh, dhn + slot * N * H, N * H, stream);
  else set_zero(dh, N * H, stream);
  if (lstm) {
    if (dcn) copy_d2d(dcs, dcn + slot * N * H, N * H, stream);
    else set_zero(dcs, N * H, stream);
  }

  const T* hs = dc.h.data();
  const T* cs = lstm ? dc.c.data() : nullptr;
  for (std::size_t s = 0; s < T_; ++s) {
    const std::size_t t = dir == 0 ? T_ - 1 - s : s;
    const std::size_t prev = dir == 0 ? t : t + 1, cur = dir == 0 ? t + 1 : t;
    const int ti = static_cast<int>(t);
    const T* hp = hs + prev * N * H;
    const T* at = dc.g.data() + t * N * GH;
    T* dgt = dg + t * N * GH;
    T* dghnt = after ? dghn + t * N * H : nullptr;
    detail::cell_backward<T>(cfg_.cell, cfg_.reset_after, Ni, Hi, ti, lens, dgt, dghnt, dh,
                             dy + t * N * DH + dir * H, static_cast<int>(DH), dcs, pw_.data(), at,
                             gru ? dc.aux.data() + t * N * H : nullptr, hp,
                             lstm ? cs + cur * N * H : nullptr, lstm ? cs + prev * N * H : nullptr,
                             stream);
    // d h_prev through the recurrent weights: rec = dg_h W_hh.
    if (gru && !after) {
      gemm<T>(blas, Trans::N, Trans::N, Ni, Hi, Hi, T(1), dgt + 2 * H, G * Hi, w.w_hh + 2 * H * H,
              Hi, T(0), drh_.data(), Hi);
      detail::gru_before_backward_r<T>(Ni, Hi, ti, lens, dgt, drh_.data(), pw_.data(), at, hp,
                                       stream);
      gemm<T>(blas, Trans::N, Trans::N, Ni, Hi, 2 * Hi, T(1), dgt, G * Hi, w.w_hh, Hi, T(0),
              rec_.data(), Hi);
    } else if (after) {
      gemm<T>(blas, Trans::N, Trans::N, Ni, Hi, 2 * Hi, T(1), dgt, G * Hi, w.w_hh, Hi, T(0),
              rec_.data(), Hi);
      gemm<T>(blas, Trans::N, Trans::N, Ni, Hi, Hi, T(1), dghnt, Hi, w.w_hh + 2 * H * H, Hi, T(1),
              rec_.data(), Hi);
    } else {
      gemm<T>(blas, Trans::N, Trans::N, Ni, Hi, G * Hi, T(1), dgt, G * Hi, w.w_hh, Hi, T(0),
              rec_.data(), Hi);
    }
    detail::update_dh<T>(Ni, Hi, ti, lens, dh, rec_.data(), gru ? pw_.data() : nullptr, stream);
  }
  copy_d2d(dh0 + slot * N * H, dh, N * H, stream);
  if (lstm) copy_d2d(dc0 + slot * N * H, dcs, N * H, stream);

  // Weight gradients over all steps at once (accumulate). h_prev of step t is slot t (forward)
  // or t+1 (reverse): either way one contiguous [T*N, H] block.
  const T* hprev = hs + (dir == 0 ? 0 : N * H);
  gemm<T>(blas, Trans::T, Trans::N, static_cast<int>(GH), C, M, T(1), dg, G * Hi, x, C, T(1),
          w.dw_ih, C);
  if (!gru) {
    gemm<T>(blas, Trans::T, Trans::N, G * Hi, Hi, M, T(1), dg, G * Hi, hprev, Hi, T(1), w.dw_hh,
            Hi);
  } else {
    gemm<T>(blas, Trans::T, Trans::N, 2 * Hi, Hi, M, T(1), dg, G * Hi, hprev, Hi, T(1), w.dw_hh,
            Hi);
    if (after)
      gemm<T>(blas, Trans::T, Trans::N, Hi, Hi, M, T(1), dghn, Hi, hprev, Hi, T(1),
              w.dw_hh + 2 * H * H, Hi);
    else
      gemm<T>(blas, Trans::T, Trans::N, Hi, Hi, M, T(1), dg + 2 * H, G * Hi, dc.aux.data(), Hi,
              T(1), w.dw_hh + 2 * H * H, Hi);
  }
  if (w.db) {
    detail::column_sum_add<T>(w.db, dg, T_ * N, G * Hi, G * Hi, stream);
    if (after) detail::column_sum_add<T>(w.db_hn, dghn, T_ * N, Hi, Hi, stream);
  }
  // d x (this direction's share): dg W_ih.
  gemm<T>(blas, Trans::N, Trans::N, M, C, G * Hi, T(1), dg, G * Hi, w.w_ih, C,
          accumulate_dx ? T(1) : T(0), dx, C);
}

template class Recurrent<float>;
template class Recurrent<double>;

}  // namespace cuda
}  // namespace pyrnn
