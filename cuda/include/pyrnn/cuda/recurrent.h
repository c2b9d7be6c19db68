// cuda::Recurrent<T>: the GPU twin of pyrnn::Recurrent<T> (cpp/include/pyrnn/recurrent.h).
// Same RecurrentConfig, parameter layout, ParamInfo names and offsets, method names and argument
// order; every T* argument is DEVICE memory, on this layer's device.
//
// Shapes (T steps, N batch, C input, H hidden, L layers, D = 2 if bidirectional else 1,
// G gates: RNN 1, LSTM 4, GRU 3):
//   x  [T, N, C]         y  [T, N, D*H]      lengths [N] HOST int64 in [1, T] (or null: all T)
//   h0 [L*D, N, H]       hn [L*D, N, H]      c0 / cn likewise (LSTM only)
// lengths is a host array on purpose: it is validated on the host exactly as on the CPU (a bad
// entry throws before any kernel runs) and copied to the device once per forward.
//
// Per (layer, direction) pass: one cuBLAS GEMM for the input projection of all steps, a bias
// broadcast, then per step one recurrent GEMM and one fused pointwise kernel (GRU
// reset_after=false: gates kernel, W_hn GEMM on r*h, state kernel, as on the CPU). Backward:
// per step one pointwise kernel and the d h_prev GEMM(s); weight gradients as big GEMMs after the
// loop and bias gradients by a fixed-order column sum: deterministic, no atomics. Dropout masks
// use the CPU's counter-based hash, so CPU and GPU masks are identical.
//
// Execution: all work is queued on the device Context's stream; forward() and backward() return
// when their results are complete (they end with a stream synchronize), like the CPU methods.
// Inputs must be complete when they are called (a producer on another stream synchronizes first).
// One layer is not safe to use from two threads at once; forward/backward passes of different
// layers on one device are serialized (they share the device Context's cuBLAS handle).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pyrnn/cuda/buffer.h"
#include "pyrnn/cuda/context.h"
#include "pyrnn/recurrent.h"

namespace pyrnn {
namespace cuda {

template <typename T>
class Recurrent {
 public:
  // Parameters on `device` (via Context::get: throws pyrnn::Error without a usable device),
  // initialised as pyrnn::Recurrent<T>(config) does (reset_parameters(0)).
  explicit Recurrent(const RecurrentConfig& config, int device = 0);

  const RecurrentConfig& config() const { return cfg_; }
  const std::vector<ParamInfo>& param_info() const { return info_; }
  std::size_t num_parameters() const { return params_.size(); }
  int device() const { return ctx_->device(); }
  cudaStream_t stream() const { return ctx_->stream(); }
  T* params() { return params_.data(); }  // device [num_parameters()]
  const T* params() const { return params_.data(); }
  T* grads() { return grads_.data(); }  // device [num_parameters()]
  void zero_grad();
  // Exactly the values pyrnn::Recurrent<T>::reset_parameters(seed) produces (drawn on the host by
  // the same code, then uploaded).
  void reset_parameters(std::uint64_t seed);
  // Host <-> device copies of all parameters / gradients (host arrays of num_parameters()).
  void copy_params_from_host(const T* src);
  void copy_params_to_host(T* dst) const;
  void copy_grads_from_host(const T* src);
  void copy_grads_to_host(T* dst) const;

  // y, hn, cn: outputs (overwritten). x, h0, c0: device inputs (h0/c0 may be null).
  // lengths: HOST int64 [N] or null. training: keep the cache for backward, apply dropout.
  void forward(T* y, T* hn, T* cn, const T* x, const T* h0, const T* c0,
               const std::int64_t* lengths, int steps, int batch, bool training,
               std::uint64_t seed);
  // dx [T, N, C], dh0 / dc0 [L*D, N, H]: outputs (overwritten; dc0 LSTM only).
  // dy [T, N, D*H]; dhn, dcn [L*D, N, H] (null: zero). Parameter gradients accumulate.
  // Throws if the last forward was not in training mode.
  void backward(T* dx, T* dh0, T* dc0, const T* dy, const T* dhn, const T* dcn);

  bool has_cache() const { return cached_; }
  int cached_steps() const { return steps_; }
  int cached_batch() const { return batch_; }
  // Device [T+1, N, H] states of the last layer from the last forward (see the CPU class).
  const T* last_layer_states(int dir, bool cell = false) const;

 private:
  struct DirCache {
    DeviceBuffer<T> g;    // [T, N, G*H] gate activations
    DeviceBuffer<T> h;    // [T+1, N, H] states; forward: slot 0 initial; reverse: slot T
    DeviceBuffer<T> c;    // [T+1, N, H] LSTM cell states
    DeviceBuffer<T> aux;  // [T, N, H] GRU: r*h_prev (reset_after=false) or W_hn h + b_hn
  };
  struct LayerCache {
    DeviceBuffer<T> x;     // [T, N, C_k] the layer's input (after dropout for k > 0)
    DeviceBuffer<T> y;     // [T, N, D*H] the layer's output (before dropout)
    DeviceBuffer<T> mask;  // [T, N, D*H] dropout scale, k < L-1 in training with dropout
  };
  struct Weights {
    const T *w_ih, *w_hh, *b, *b_hn;
    T *dw_ih, *dw_hh, *db, *db_hn;
  };

  Weights weights(int layer, int dir);
  void forward_direction(DirCache& dc, T* y, const T* x, const T* h0, const T* c0, int layer,
                         int dir);
  void backward_direction(DirCache& dc, T* dx, T* dh0, T* dc0, const T* dy, const T* dhn,
                          const T* dcn, const T* x, int layer, int dir, bool accumulate_dx);
  const std::int64_t* lengths_device() const { return has_lengths_ ? lengths_.data() : nullptr; }

  RecurrentConfig cfg_;
  Context* ctx_;
  std::vector<ParamInfo> info_;
  DeviceBuffer<T> params_, grads_;
  std::vector<LayerCache> layers_;
  std::vector<DirCache> dirs_;
  DeviceBuffer<std::int64_t> lengths_;  // [N] device copy when some sequence is shorter than T
  bool has_lengths_ = false;
  DeviceBuffer<T> scratch_;             // [N, G*H] per-step recurrent product
  // Backward workspaces: dg_ [T, N, G*H], dghn_ [T, N, H]; dh_, dc_, pw_, rec_, drh_ [N, H].
  DeviceBuffer<T> dg_, dghn_, dh_, dc_, pw_, rec_, drh_, dy_buf_, dx_buf_;
  int steps_ = 0, batch_ = 0;
  bool cached_ = false;
};

extern template class Recurrent<float>;
extern template class Recurrent<double>;

}  // namespace cuda
}  // namespace pyrnn
