// cuda::Recurrent<T>: the GPU twin of pyrnn::Recurrent<T> (cpp/include/pyrnn/recurrent.h).
// Same RecurrentConfig, parameter layout, ParamInfo names and offsets, method names and argument
// order; every T* argument is DEVICE memory, on this layer's device.
//
// Shapes (T steps, N batch, C input, H hidden, L layers, D = 2 if bidirectional else 1,
// G gates: RNN 1, LSTM 4, GRU 3):
//   x  [T, N, C]         y  [T, N, D*H]      lengths [N] HOST int64 in [1, T] (or null: all T)
//   h0 [L*D, N, H]       hn [L*D, N, H]      c0 / cn likewise (LSTM only)
// With config.batch_first, x, y, dx and dy are [N, T, .] (as on the CPU); here they are swapped
// to and from time-major copies on the stream (the step kernels index time-major rows).
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
// Execution: all work is queued on the device Context's stream (the reverse direction of a
// bidirectional layer on the Context's side stream, joined back with events); forward() and
// backward() return when their results are complete (they end with a stream synchronize), like
// the CPU methods. Inputs must be complete when they are called (a producer on another stream
// synchronizes first). One layer is not safe to use from two threads at once; forward/backward
// passes of different layers on one device are serialized (they share the Context's handles).
//
// Speed (pyrnn/cuda/options.h, docs/cuda_performance.md; none of it changes the results beyond
// rounding, and each setting is deterministic): the step loop of each direction is captured
// once into a CUDA graph and replayed while the shapes and buffers stay the same (a failed
// capture falls back to launching, for the rest of the layer's life); the step itself runs as
// cuBLAS GEMM + pointwise kernel, as a fused custom kernel, or inside one persistent kernel;
// float32 GEMMs can use TF32 tensor cores (opt-in).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "pyrnn/cuda/buffer.h"
#include "pyrnn/cuda/context.h"
#include "pyrnn/cuda/options.h"
#include "pyrnn/recurrent.h"

namespace pyrnn {
namespace cuda {

namespace detail {
// The launch plan of a direction's custom step kernel (cuda/src/cells.cuh). blocks == 0: it does
// not fit this device (shared memory, or co-residency for a persistent launch): use cuBLAS.
struct StepPlan {
  int blocks = 0;
  int threads = 0;
  int units = 0, kc = 0, nc = 0;
  int grid_sync = 0;  // as StepArgs::grid_sync
  std::size_t smem_bytes = 0;
};
}  // namespace detail

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
  const T* grads() const { return grads_.data(); }
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
  // What forward checks of its sizes before touching anything (as pyrnn::Recurrent's): steps,
  // batch >= 1 and steps * batch * width < 2^31 (pyrnn::Error naming them), so a caller can
  // refuse a pass before it allocates for it.
  void check_forward(int steps, int batch) const;
  // dx [T, N, C], dh0 / dc0 [L*D, N, H]: outputs (overwritten; dc0
  // required for an LSTM, unused (may be null) otherwise).
  // dy [T, N, D*H]; dhn, dcn [L*D, N, H] (null: zero). Parameter gradients accumulate.
  // Throws if the last forward was not in training mode.
  void backward(T* dx, T* dh0, T* dc0, const T* dy, const T* dhn, const T* dcn);

  // Execution options (Default fields follow pyrnn::cuda::default_options() at each call).
  void set_options(const Options& options);
  const Options& options() const { return opts_; }
  // What the last forward / backward ran: the step algorithm after fallbacks (Cublas, Fused or
  // Persistent; Default before the first call) and whether its step loops were CUDA graphs.
  RecurrentAlgo last_forward_algo() const { return last_fwd_algo_; }
  RecurrentAlgo last_backward_algo() const { return last_bwd_algo_; }
  bool last_forward_graphs() const { return last_fwd_graphs_; }
  bool last_backward_graphs() const { return last_bwd_graphs_; }
  // Why CUDA graphs were switched off for this layer (a capture failed), or "".
  const std::string& graphs_disabled_reason() const { return graphs_error_; }

  bool has_cache() const { return cached_ && !moved_; }
  // True once moved from: forward and backward then throw pyrnn::Error.
  bool moved_from() const { return static_cast<bool>(moved_); }
  int cached_steps() const { return steps_; }
  int cached_batch() const { return batch_; }
  // Device [T+1, N, H] states of the last layer from the last forward (see the CPU class).
  const T* last_layer_states(int dir, bool cell = false) const;

 private:
  // Owning, move-only handles (destroyed best effort, never throwing).
  class GraphExec {
   public:
    GraphExec() = default;
    GraphExec(GraphExec&& o) noexcept : exec_(o.exec_) { o.exec_ = nullptr; }
    GraphExec& operator=(GraphExec&& o) noexcept;
    ~GraphExec() { reset(); }
    void reset() noexcept;
    cudaGraphExec_t get() const { return exec_; }
    void set(cudaGraphExec_t e) noexcept { reset(); exec_ = e; }

   private:
    cudaGraphExec_t exec_ = nullptr;
  };
  class Event {
   public:
    Event() = default;
    Event(Event&& o) noexcept : ev_(o.ev_) { o.ev_ = nullptr; }
    Event& operator=(Event&& o) noexcept;
    ~Event();
    cudaEvent_t get();  // created on first use (timing off)

   private:
    cudaEvent_t ev_ = nullptr;
  };
  // One captured step loop and what it was captured with (shapes, pointers, plan).
  struct Graph {
    GraphExec exec;
    std::vector<std::uintptr_t> key;
  };
  struct DirCache {
    DeviceBuffer<T> g;    // [T, N, G*H] gate activations
    DeviceBuffer<T> h;    // [T+1, N, H] states; forward: slot 0 initial; reverse: slot T
    DeviceBuffer<T> c;    // [T+1, N, H] LSTM cell states
    DeviceBuffer<T> aux;  // [T, N, H] GRU: r*h_prev (reset_after=false) or W_hn h + b_hn
  };
  // Per-direction workspaces (direction 1 has its own when it runs on the side stream).
  struct Work {
    DeviceBuffer<T> scratch;  // [N, G*H] per-step recurrent product
    // Backward: dg [T, N, G*H], dghn [T, N, H]; dh, dc, pw, rec, drh [N, H].
    DeviceBuffer<T> dg, dghn, dh, dc, pw, rec, drh;
  };
  // Where a direction runs: stream, cuBLAS handle, workspaces.
  struct Lane {
    cudaStream_t stream;
    cublasHandle_t blas;
    Work* work;
  };
  // The step algorithm chosen for a pass (after fallbacks) and its kernel plan.
  struct StepChoice {
    RecurrentAlgo algo = RecurrentAlgo::Cublas;
    detail::StepPlan plan;  // Fused / Persistent only
  };
  // A pass's lanes (two when the reverse direction gets the side stream), step algorithm and
  // whether its step loops go through graphs: the same decision for forward and backward.
  struct PassPlan {
    bool two;
    Lane lanes[2];
    StepChoice step;
    bool use_graph;
  };
  struct LayerCache {
    DeviceBuffer<T> x;     // [T, N, C_k] the layer's input: layer 0's, or k > 0 after dropout
                           // (without dropout, empty: layer k - 1's y is the input)
    DeviceBuffer<T> y;     // [T, N, D*H] the layer's output (before dropout)
    DeviceBuffer<T> mask;  // [T, N, D*H] dropout scale, k < L-1 in training with dropout
  };
  struct Weights {
    const T *w_ih, *w_hh, *b, *b_hn;
    T *dw_ih, *dw_hh, *db, *db_hn;
  };

  Weights weights(int layer, int dir);
  // The training forward's input of layer k, [T, N, C_k]: its own copy (layer 0; after dropout)
  // or the layer below's output (the CPU core's layer_input).
  const T* layer_input(int k) const {
    return k == 0 || layers_[k].x.size() ? layers_[k].x.data() : layers_[k - 1].y.data();
  }
  // The captured step loop of (pass, layer, direction); eval passes share their DirCaches
  // between layers, so every layer keeps its own graphs.
  Graph& graph(bool backward, bool training, int layer, int dir);
  StepChoice choose_step(const Options& opt, bool backward);
  PassPlan plan_pass(const Options& opt, bool backward);
  // Runs record() (a step loop's launches, all on `stream`): replays graph when use_graph and
  // its key matches, else captures it anew; launches eagerly without graphs or when the capture
  // fails. Returns whether a graph ran.
  bool run_loop(Graph& graph, std::vector<std::uintptr_t> key, cudaStream_t stream, bool use_graph,
                const std::function<void()>& record);
  void forward_direction(DirCache& dc, T* y, const T* x, const T* h0, const T* c0, int layer,
                         int dir, const Lane& lane, const StepChoice& step, bool use_graph,
                         bool training);
  void forward_steps(DirCache& dc, T* y, int layer, int dir, const Lane& lane,
                     const StepChoice& step);
  // The step loop, d h0 / d c0, the weight and bias gradients of one direction.
  void reserve_backward_work(Work& wk);
  void backward_direction(DirCache& dc, T* dh0, T* dc0, const T* dy, const T* dhn, const T* dcn,
                          const T* x, int layer, int dir, const Lane& lane, const StepChoice& step,
                          bool use_graph);
  void backward_steps(DirCache& dc, const T* dy, int layer, int dir, const Lane& lane,
                      const StepChoice& step);
  // dx (+)= this direction's d gates W_ih (accumulate: direction 1 adds to direction 0's share).
  void backward_dx(T* dx, int layer, int dir, const Lane& lane, bool accumulate);
  const std::int64_t* lengths_device() const { return has_lengths_ ? lengths_.data() : nullptr; }

  RecurrentConfig cfg_;
  Context* ctx_;
  std::vector<ParamInfo> info_;
  DeviceBuffer<T> params_, grads_;
  std::vector<LayerCache> layers_;
  std::vector<DirCache> dirs_;
  DeviceBuffer<std::int64_t> lengths_;  // [N] device copy when some sequence is shorter than T
  std::vector<std::int64_t> host_lengths_;  // [N] the caller's, read once, checked, uploaded
  bool has_lengths_ = false;
  Work work_[2];
  // Graph mode: the last layer's y [T, N, D*H] and the top dy [T, N, D*H] go through these
  // (graphs capture pointers; the caller's y / dy change from call to call).
  DeviceBuffer<T> y_stage_, dy_stage_;
  // batch_first: time-major copies of the caller's [N, T, .] x or dy (bm_in_) and y or dx
  // (bm_out_).
  DeviceBuffer<T> bm_in_, bm_out_;
  DeviceBuffer<T> dbuf_[2];  // [T, N, D*H] d outputs between layers (index: layer parity)
  Event ev_fork_, ev_join_;
  std::vector<Graph> graphs_;  // [3 (forward eval / forward training / backward) * L * D]
  // The last custom-kernel plan per pass (forward, backward) and what it was made for.
  struct PlanMemo {
    bool valid = false;
    int batch = 0, blocks_requested = 0;
    RecurrentAlgo algo = RecurrentAlgo::Default;
    StepChoice choice;
  } plans_[2];
  Options opts_;
  Options pass_;  // opts_ resolved at the start of the current forward / backward
  std::string graphs_error_;
  RecurrentAlgo last_fwd_algo_ = RecurrentAlgo::Default, last_bwd_algo_ = RecurrentAlgo::Default;
  bool last_fwd_graphs_ = false, last_bwd_graphs_ = false;
  int steps_ = 0, batch_ = 0;
  bool cached_ = false;
  MovedFrom moved_;
};

extern template class Recurrent<float>;
extern template class Recurrent<double>;

}  // namespace cuda
}  // namespace pyrnn
