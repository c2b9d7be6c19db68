// cuda::Recurrent: mirrors cpp/src/recurrent.cpp step for step (see the header). Buffer shapes are
// in the comments; `slot` = layer * D + dir indexes h0/hn/c0/cn.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <mutex>
#include <utility>

#include "call_scope.cuh"
#include "cells.cuh"
#include "device_lock.cuh"
#include "device_scope.cuh"
#include "permute.cuh"
#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/gemm.h"
#include "pyrnn/cuda/recurrent.h"
#include "pyrnn/error.h"

namespace pyrnn {
namespace cuda {

using kernels::Trans;

namespace {

using detail::DeviceScope;

// A device's Context (its stream and cuBLAS handle) is shared by every layer on it, and a pass may
// capture its stream into a graph: host calls that queue work on it are serialized per device.
using detail::device_mutex;

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

// dst[r * ld + c] = src[r * ld + c] for c < cols, r < rows (one direction's columns).
template <typename T>
void copy_cols(T* dst, const T* src, std::size_t rows, std::size_t cols, std::size_t ld,
               cudaStream_t stream) {
  if (rows && cols)
    PYRNN_CUDA_CHECK(cudaMemcpy2DAsync(dst, ld * sizeof(T), src, ld * sizeof(T), cols * sizeof(T),
                                       rows, cudaMemcpyDeviceToDevice, stream));
}

std::uintptr_t key_of(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

GemmMath math_of(const Options& o) {
  return o.precision == Precision::TF32 ? GemmMath::TF32 : GemmMath::Exact;
}

// The custom step kernels' arguments that forward and backward share (W: the layer's Weights,
// DC: its DirCache for this layer and direction).
template <typename T, typename W, typename DC>
detail::StepArgs<T> step_args(const RecurrentConfig& cfg, int N, int steps, int dir,
                              const std::int64_t* lens, const W& w, DC& dc) {
  const bool lstm = cfg.cell == CellType::LSTM, gru = cfg.cell == CellType::GRU;
  detail::StepArgs<T> a;
  a.cell = static_cast<int>(cfg.cell);
  a.reset_after = cfg.reset_after ? 1 : 0;
  a.N = N;
  a.H = cfg.hidden_size;
  a.G = cfg.gates();
  a.steps = steps;
  a.dir = dir;
  a.lengths = lens;
  a.w_hh = w.w_hh;
  a.b_hn = w.b_hn;
  a.g = dc.g.data();
  a.hs = dc.h.data();
  a.cs = lstm ? dc.c.data() : nullptr;
  a.aux = gru ? dc.aux.data() : nullptr;
  return a;
}

// Runs the custom step kernels over every step: one launch (persistent), or one per step and
// phase (fused). S: the layer's StepChoice.
template <typename T, typename S>
void launch_steps(detail::StepArgs<T>& a, const S& step, bool backward, cudaStream_t stream) {
  const detail::StepPlan& plan = step.plan;
  const int phases = detail::step_phases(a.cell, a.reset_after, backward);
  if (step.algo == RecurrentAlgo::Persistent) {  // every step and phase in one launch
    a.s_begin = 0;
    a.s_end = a.steps;
    a.ph_begin = 0;
    a.ph_end = phases;
    detail::launch_step_kernel<T>(a, plan, backward, stream);
    return;
  }
  for (int s = 0; s < a.steps; ++s)
    for (int ph = 0; ph < phases; ++ph) {
      a.s_begin = s;
      a.s_end = s + 1;
      a.ph_begin = ph;
      a.ph_end = ph + 1;
      detail::launch_step_kernel<T>(a, plan, backward, stream);
    }
}

}  // namespace

// ---- owning handles ---------------------------------------------------------------------------

template <typename T>
typename Recurrent<T>::GraphExec& Recurrent<T>::GraphExec::operator=(GraphExec&& o) noexcept {
  if (this != &o) {
    reset();
    exec_ = o.exec_;
    o.exec_ = nullptr;
  }
  return *this;
}

template <typename T>
void Recurrent<T>::GraphExec::reset() noexcept {
  if (exec_) (void)cudaGraphExecDestroy(exec_);
  exec_ = nullptr;
}

template <typename T>
typename Recurrent<T>::Event& Recurrent<T>::Event::operator=(Event&& o) noexcept {
  if (this != &o) {
    if (ev_) (void)cudaEventDestroy(ev_);
    ev_ = o.ev_;
    o.ev_ = nullptr;
  }
  return *this;
}

template <typename T>
Recurrent<T>::Event::~Event() {
  if (ev_) (void)cudaEventDestroy(ev_);
}

template <typename T>
cudaEvent_t Recurrent<T>::Event::get() {
  if (!ev_) PYRNN_CUDA_CHECK(cudaEventCreateWithFlags(&ev_, cudaEventDisableTiming));
  return ev_;
}

template <typename T>
Recurrent<T>::Recurrent(const RecurrentConfig& config, int device)
    : cfg_(config), ctx_(&Context::get(device)) {
  cfg_.validate();
  pyrnn::Recurrent<T> host(cfg_);  // layout and initial values: the CPU class's own
  std::lock_guard<std::mutex> lock(device_mutex(ctx_->device()));
  DeviceScope scope(ctx_->device());
  info_ = host.param_info();
  params_ = DeviceBuffer<T>(host.num_parameters());
  grads_ = DeviceBuffer<T>(host.num_parameters());
  params_.copy_from_host(host.params(), host.num_parameters(), ctx_->stream());
  grads_.zero(ctx_->stream());
  PYRNN_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream()));
}

template <typename T>
void Recurrent<T>::zero_grad() {
  detail::CallScope call(*ctx_);
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
  detail::CallScope call(*ctx_);
  params_.copy_from_host(src, params_.size(), ctx_->stream());
}
template <typename T>
void Recurrent<T>::copy_params_to_host(T* dst) const {
  detail::CallScope call(*ctx_);
  params_.copy_to_host(dst, params_.size(), ctx_->stream());
}
template <typename T>
void Recurrent<T>::copy_grads_from_host(const T* src) {
  detail::CallScope call(*ctx_);
  grads_.copy_from_host(src, grads_.size(), ctx_->stream());
}
template <typename T>
void Recurrent<T>::copy_grads_to_host(T* dst) const {
  detail::CallScope call(*ctx_);
  grads_.copy_to_host(dst, grads_.size(), ctx_->stream());
}

template <typename T>
void Recurrent<T>::set_options(const Options& options) {
  PYRNN_CHECK(options.persist_blocks <= 65535, "persist_blocks must be <= 65535, got ",
              options.persist_blocks);
  opts_ = options;
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
// Step algorithm, graphs

template <typename T>
typename Recurrent<T>::PassPlan Recurrent<T>::plan_pass(const Options& opt, bool backward) {
  const cudaStream_t stream = ctx_->stream();
  PassPlan p{};
  p.step = choose_step(opt, backward);
  // Persistent kernels: one lane. Each cooperative grid is sized to be resident on the whole
  // device by itself; two at once on two streams could each get part of it and wait at their
  // grid barriers for blocks that never start (and one fills the device anyway).
  p.two = cfg_.directions() == 2 && opt.streams == Switch::On &&
          p.step.algo != RecurrentAlgo::Persistent;
  p.lanes[0] = p.lanes[1] = Lane{stream, ctx_->cublas(), &work_[0]};
  if (p.two) p.lanes[1] = Lane{ctx_->side_stream(), ctx_->side_cublas(), &work_[1]};
  // Persistent kernels synchronize the grid themselves and are never captured.
  p.use_graph = opt.graphs == Switch::On && graphs_error_.empty() &&
                p.step.algo != RecurrentAlgo::Persistent;
  return p;
}

template <typename T>
typename Recurrent<T>::StepChoice Recurrent<T>::choose_step(const Options& opt, bool backward) {
  StepChoice c;
  // Auto: cuBLAS until GPU measurements pick per shape (docs/cuda_performance.md).
  const RecurrentAlgo want = opt.algo == RecurrentAlgo::Auto ? RecurrentAlgo::Cublas : opt.algo;
  if (want != RecurrentAlgo::Fused && want != RecurrentAlgo::Persistent) return c;
  PlanMemo& memo = plans_[backward ? 1 : 0];  // planning queries the device: once per shape
  if (memo.valid && memo.batch == batch_ && memo.algo == want &&
      memo.blocks_requested == opt.persist_blocks)
    return memo.choice;
  const detail::StepPlan plan = detail::plan_step_kernel<T>(
      ctx_->device(), cfg_.cell, cfg_.reset_after, batch_, cfg_.hidden_size, backward,
      want == RecurrentAlgo::Persistent, opt.persist_blocks);
  if (plan.blocks == 0) {  // does not fit: cuBLAS
    memo.valid = true;
    memo.batch = batch_;
    memo.algo = want;
    memo.blocks_requested = opt.persist_blocks;
    memo.choice = c;
    return c;
  }
  c.algo = want;
  c.plan = plan;
  memo.valid = true;
  memo.batch = batch_;
  memo.algo = want;
  memo.blocks_requested = opt.persist_blocks;
  memo.choice = c;
  return c;
}

template <typename T>
typename Recurrent<T>::Graph& Recurrent<T>::graph(bool backward, bool training, int layer,
                                                  int dir) {
  const std::size_t LD = static_cast<std::size_t>(cfg_.num_layers) * cfg_.directions();
  if (graphs_.size() != 3 * LD) graphs_.resize(3 * LD);
  const std::size_t pass = backward ? 2 : (training ? 1 : 0);
  return graphs_[pass * LD + static_cast<std::size_t>(layer) * cfg_.directions() + dir];
}

template <typename T>
bool Recurrent<T>::run_loop(Graph& graph, std::vector<std::uintptr_t> key, cudaStream_t stream,
                            bool use_graph, const std::function<void()>& record) {
  if (!use_graph || !graphs_error_.empty()) {
    record();
    return false;
  }
  if (graph.exec.get() && graph.key == key) {
    PYRNN_CUDA_CHECK(cudaGraphLaunch(graph.exec.get(), stream));
    return true;
  }
  graph.exec.reset();
  graph.key.clear();
  // Capture; on any failure switch graphs off for this layer and launch eagerly instead (an
  // error that is not about capturing then surfaces from the eager launches).
  std::string why;
  cudaError_t err = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
  if (err != cudaSuccess) {
    why = std::string("cudaStreamBeginCapture: ") + cudaGetErrorName(err);
  } else {
    try {
      record();
    } catch (const std::exception& e) {
      why = std::string("capturing the step loop: ") + e.what();
    }
    cudaGraph_t g = nullptr;
    err = cudaStreamEndCapture(stream, &g);
    if (why.empty() && (err != cudaSuccess || !g))
      why = std::string("cudaStreamEndCapture: ") + cudaGetErrorName(err);
    if (why.empty()) {
      cudaGraphExec_t exec = nullptr;
      err = cudaGraphInstantiate(&exec, g, 0);
      if (err == cudaSuccess) graph.exec.set(exec);
      else why = std::string("cudaGraphInstantiate: ") + cudaGetErrorName(err);
    }
    if (g) (void)cudaGraphDestroy(g);
  }
  if (!why.empty()) {
    (void)cudaGetLastError();  // the failed capture's error is handled here
    graphs_error_ = why;
    graph.exec.reset();
    record();
    return false;
  }
  graph.key = std::move(key);
  PYRNN_CUDA_CHECK(cudaGraphLaunch(graph.exec.get(), stream));
  return true;
}

// ---------------------------------------------------------------------------------------------
// Forward

template <typename T>
void Recurrent<T>::check_forward(int steps, int batch) const {
  PYRNN_CHECK(steps >= 1, "sequence length must be >= 1, got ", steps);
  PYRNN_CHECK(batch >= 1, "batch size must be >= 1, got ", batch);
  const int D = cfg_.directions(), H = cfg_.hidden_size;
  // Stricter than the CPU's T*N bound: some step kernels index [N, G*H] in int (fused and
  // persistent: e < N*U), and no size past this has run on a GPU. The width: the gates, the
  // output (D*H: a deeper layer's input) or the input. The width is an exact integer (and
  // printed as one); the product is taken in double: in 64 bits, three ints' product wraps
  // around (T = N = 2^30, width 16).
  const long long width = std::max({static_cast<long long>(cfg_.gates()) * H,
                                    static_cast<long long>(D) * H,
                                    static_cast<long long>(cfg_.input_size)});
  PYRNN_CHECK(static_cast<double>(steps) * static_cast<double>(batch) *
                      static_cast<double>(width) < 2147483648.0,
              "steps * batch * width = ", steps, " * ", batch, " * ", width,
              " overflows the CUDA layers' 32-bit sizes (must be < 2^31; the CPU layers "
              "only need steps * batch < 2^31)");
}

template <typename T>
void Recurrent<T>::forward(T* y, T* hn, T* cn, const T* x, const T* h0, const T* c0,
                           const std::int64_t* lengths, int steps, int batch, bool training,
                           std::uint64_t seed) {
  moved_.check("Recurrent::forward");
  check_forward(steps, batch);
  PYRNN_CHECK(x && y && hn, "forward: null buffer: ", x ? "" : "x ", y ? "" : "y ",
              hn ? "" : "hn ", "(x [T, N, C], y [T, N, D*H] and hn [L*D, N, H] are required)");
  const bool lstm = cfg_.cell == CellType::LSTM;
  PYRNN_CHECK(!lstm || cn, "forward: LSTM needs a c_n buffer");
  const int L = cfg_.num_layers, D = cfg_.directions(), H = cfg_.hidden_size;
  const std::size_t T_ = steps, N = batch;
  const Options opt = resolve(opts_);
  detail::CallScope call(*ctx_);
  cudaStream_t stream = ctx_->stream();
  pass_ = opt;

  // From here a failed or eval forward leaves nothing to backpropagate through (a call refused
  // by the argument checks above leaves the last forward's cache, as PyTorch leaves its graph).
  cached_ = false;
  has_lengths_ = false;
  if (lengths) {
    // Read once, then checked and uploaded: the caller's array may change meanwhile (another
    // thread), and a value checked is then the value used.
    host_lengths_.assign(lengths, lengths + N);
    bool all_full = true;
    for (std::size_t n = 0; n < N; ++n) {
      const std::int64_t len = host_lengths_[n];
      PYRNN_CHECK(len >= 1 && len <= steps, "lengths[", n, "] = ", len, " is outside [1, ",
                  steps, "]");
      all_full = all_full && len == steps;
    }
    if (!all_full) {
      ensure(lengths_, N);
      lengths_.copy_from_host(host_lengths_.data(), N, stream);
      has_lengths_ = true;
    }
  }
  steps_ = steps;
  batch_ = batch;

  const PassPlan pass = plan_pass(opt, /*backward=*/false);
  const bool two = pass.two, use_graph = pass.use_graph;
  const Lane* lanes = pass.lanes;
  if (two) call.also(lanes[1].stream);
  const StepChoice& step = pass.step;
  last_fwd_algo_ = step.algo;
  last_fwd_graphs_ = false;

  const bool drop = training && cfg_.dropout > 0.0 && L > 1;
  layers_.resize(training ? L : 2);
  dirs_.resize(training ? static_cast<std::size_t>(L) * D : D);
  const std::size_t DH = static_cast<std::size_t>(D) * H;
  const T scale = static_cast<T>(1.0 / (1.0 - cfg_.dropout));

  // batch_first: x [N, T, C] swapped into a time-major copy (training: its cache), y written
  // time-major into bm_out_ (with graphs: y_stage_, which the loop writes anyway) and swapped
  // into the caller's at the end.
  const std::size_t C = cfg_.input_size;
  T* const y_user = y;
  if (cfg_.batch_first) {
    if (!training) {
      ensure(bm_in_, T_ * N * C);
      detail::swap01<T>(bm_in_.data(), x, N, T_, C, stream);
      x = bm_in_.data();
    }
    DeviceBuffer<T>& y_tm = use_graph ? y_stage_ : bm_out_;
    ensure(y_tm, T_ * N * DH);
    y = y_tm.data();
  }
  const T* in = x;
  if (training) {
    ensure(layers_[0].x, T_ * N * C);
    if (cfg_.batch_first) detail::swap01<T>(layers_[0].x.data(), x, N, T_, C, stream);
    else copy_d2d(layers_[0].x.data(), x, T_ * N * C, stream);
    // As on the CPU: padding (NaN, inf, garbage) must not reach d W_ih through 0 * NaN.
    if (has_lengths_)
      detail::zero_past_lengths<T>(layers_[0].x.data(), lengths_.data(), T_, batch, cfg_.input_size,
                                   stream);
    in = layers_[0].x.data();
  }
  for (int k = 0; k < L; ++k) {
    LayerCache& lc = layers_[training ? k : k % 2];
    T* out = y;
    if (k < L - 1) {
      ensure(lc.y, T_ * N * DH);
      out = lc.y.data();
    }
    // Graphs capture pointers: the caller's y (new every call) is reached through a stage.
    T* loop_out = out;
    if (k == L - 1 && use_graph) {
      ensure(y_stage_, T_ * N * DH);
      loop_out = y_stage_.data();
    }
    if (two) {  // the side lane starts after everything queued so far (input, layer below)
      PYRNN_CUDA_CHECK(cudaEventRecord(ev_fork_.get(), stream));
      PYRNN_CUDA_CHECK(cudaStreamWaitEvent(lanes[1].stream, ev_fork_.get(), 0));
    }
    for (int d = 0; d < D; ++d) {
      const Lane& lane = lanes[d];
      DirCache& dc = dirs_[training ? static_cast<std::size_t>(k) * D + d : d];
      const std::size_t slot = static_cast<std::size_t>(k) * D + d;
      forward_direction(dc, loop_out, in, h0 ? h0 + slot * N * H : nullptr,
                        c0 ? c0 + slot * N * H : nullptr, k, d, lane, step, use_graph, training);
      if (loop_out != out)
        copy_cols(out + d * H, loop_out + d * H, T_ * N, static_cast<std::size_t>(H), DH,
                  lane.stream);
      const std::size_t last = d == 0 ? T_ : 0;
      copy_d2d(hn + slot * N * H, dc.h.data() + last * N * H, N * H, lane.stream);
      if (lstm) copy_d2d(cn + slot * N * H, dc.c.data() + last * N * H, N * H, lane.stream);
    }
    if (two) {  // join: the main stream continues after the side lane's work
      PYRNN_CUDA_CHECK(cudaEventRecord(ev_join_.get(), lanes[1].stream));
      PYRNN_CUDA_CHECK(cudaStreamWaitEvent(stream, ev_join_.get(), 0));
    }
    if (k == L - 1) break;
    if (!training) {
      in = out;
      continue;
    }
    // The next layer's input, kept for its weight gradient: with dropout, this output times its
    // mask; without, this output itself (layer_input), kept in lc.y.
    LayerCache& next = layers_[k + 1];
    if (drop) {
      ensure(next.x, T_ * N * DH);
      ensure(lc.mask, T_ * N * DH);
      detail::dropout_forward<T>(next.x.data(), lc.mask.data(), out, T_ * N * DH, seed,
                                 static_cast<std::uint64_t>(k), cfg_.dropout, scale, stream);
    } else {
      lc.mask = DeviceBuffer<T>();
      next.x = DeviceBuffer<T>();
    }
    in = layer_input(k + 1);
  }
  if (y != y_user) detail::swap01<T>(y_user, y, T_, N, DH, stream);
  PYRNN_CUDA_CHECK(cudaStreamSynchronize(stream));
  cached_ = training;
}

template <typename T>
void Recurrent<T>::forward_direction(DirCache& dc, T* y, const T* x, const T* h0, const T* c0,
                                     int layer, int dir, const Lane& lane, const StepChoice& step,
                                     bool use_graph, bool training) {
  const std::size_t T_ = steps_, N = batch_, H = cfg_.hidden_size;
  const int G = cfg_.gates(), Hi = cfg_.hidden_size;
  const std::size_t GH = G * H;
  const int C = cfg_.layer_input_size(layer);
  const bool lstm = cfg_.cell == CellType::LSTM, gru = cfg_.cell == CellType::GRU;
  const Weights w = weights(layer, dir);
  const GemmMath math = math_of(pass_);

  ensure(dc.g, T_ * N * GH);
  ensure(dc.h, (T_ + 1) * N * H);
  if (lstm) ensure(dc.c, (T_ + 1) * N * H);
  if (gru) ensure(dc.aux, T_ * N * H);
  ensure(lane.work->scratch, N * GH);
  T* g = dc.g.data();   // [T, N, GH]
  T* hs = dc.h.data();  // [T+1, N, H]
  T* cs = lstm ? dc.c.data() : nullptr;  // [T+1, N, H]

  // Input projection of every step at once: g = x W_ih^T, then + b.
  gemm<T>(lane.blas, Trans::N, Trans::T, static_cast<int>(T_ * N), G * Hi, C, T(1), x, C, w.w_ih,
          C, T(0), g, G * Hi, math);
  if (w.b) detail::add_bias_rows<T>(g, w.b, T_ * N, G * Hi, G * Hi, lane.stream);

  const std::size_t first = dir == 0 ? 0 : T_;
  if (h0) copy_d2d(hs + first * N * H, h0, N * H, lane.stream);
  else set_zero(hs + first * N * H, N * H, lane.stream);
  if (lstm) {
    if (c0) copy_d2d(cs + first * N * H, c0, N * H, lane.stream);
    else set_zero(cs + first * N * H, N * H, lane.stream);
  }

  // Everything the step loop reads or writes, so a captured graph is replayed only when all of
  // it is unchanged.
  std::vector<std::uintptr_t> key = {
      std::uintptr_t(step.algo), std::uintptr_t(math), T_, N, std::uintptr_t(dir),
      key_of(g), key_of(hs), key_of(cs), key_of(gru ? dc.aux.data() : nullptr), key_of(y),
      key_of(lane.work->scratch.data()), key_of(w.w_hh), key_of(w.b_hn),
      key_of(lengths_device()), std::uintptr_t(step.plan.blocks), std::uintptr_t(step.plan.units),
      key_of(lane.blas), key_of(lane.stream)};
  const bool graphed = run_loop(graph(false, training, layer, dir), std::move(key), lane.stream,
                                use_graph,
                                [&] { forward_steps(dc, y, layer, dir, lane, step); });
  last_fwd_graphs_ = last_fwd_graphs_ || graphed;
}

// The step loop alone (what a graph captures): launches on lane.stream only.
template <typename T>
void Recurrent<T>::forward_steps(DirCache& dc, T* y, int layer, int dir, const Lane& lane,
                                 const StepChoice& step) {
  const std::size_t T_ = steps_, N = batch_, H = cfg_.hidden_size;
  const int G = cfg_.gates(), Hi = cfg_.hidden_size, Ni = batch_;
  const std::size_t GH = G * H, DH = cfg_.directions() * H;
  const bool lstm = cfg_.cell == CellType::LSTM, gru = cfg_.cell == CellType::GRU;
  const bool split = gru && !cfg_.reset_after;  // the seeds' GRU: W_hn applies to r*h
  const Weights w = weights(layer, dir);
  const std::int64_t* lens = lengths_device();
  T* g = dc.g.data();
  T* hs = dc.h.data();
  T* cs = lstm ? dc.c.data() : nullptr;
  T* r = lane.work->scratch.data();  // [N, GH] recurrent products of one step

  if (step.algo != RecurrentAlgo::Cublas) {
    detail::StepArgs<T> a = step_args<T>(cfg_, Ni, static_cast<int>(T_), dir, lens, w, dc);
    a.y = y + dir * H;
    a.ldy = static_cast<int>(DH);
    a.r = r;
    launch_steps<T>(a, step, /*backward=*/false, lane.stream);
    return;
  }

  const GemmMath math = math_of(pass_);
  for (std::size_t s = 0; s < T_; ++s) {
    const std::size_t t = dir == 0 ? s : T_ - 1 - s;
    const std::size_t prev = dir == 0 ? t : t + 1, cur = dir == 0 ? t + 1 : t;
    const T* hp = hs + prev * N * H;  // [N, H]
    T* hc = hs + cur * N * H;         // [N, H]
    T* gt = g + t * N * GH;           // [N, GH]
    T* at = gru ? dc.aux.data() + t * N * H : nullptr;  // [N, H]
    T* yt = y + t * N * DH + dir * H;                   // [N, ld DH] this direction's slice
    // r = h_prev W_hh^T (GRU reset_after=false: only the r, z rows of W_hh).
    gemm<T>(lane.blas, Trans::N, Trans::T, Ni, split ? 2 * Hi : G * Hi, Hi, T(1), hp, Hi, w.w_hh,
            Hi, T(0), r, G * Hi, math);
    detail::cell_forward<T>(cfg_.cell, cfg_.reset_after, Ni, Hi, static_cast<int>(t), lens, gt, r,
                            w.b_hn, hp, hc, lstm ? cs + prev * N * H : nullptr,
                            lstm ? cs + cur * N * H : nullptr, at, yt, static_cast<int>(DH),
                            lane.stream);
    if (split) {
      T* rn = r + 2 * H;  // [N, H] in the n columns of the step scratch (ld GH)
      gemm<T>(lane.blas, Trans::N, Trans::T, Ni, Hi, Hi, T(1), at, Hi, w.w_hh + 2 * H * H, Hi,
              T(0), rn, G * Hi, math);
      detail::gru_before_state<T>(Ni, Hi, static_cast<int>(t), lens, gt, rn, hp, hc, yt,
                                  static_cast<int>(DH), lane.stream);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward

template <typename T>
void Recurrent<T>::backward(T* dx, T* dh0, T* dc0, const T* dy, const T* dhn, const T* dcn) {
  moved_.check("Recurrent::backward");
  PYRNN_CHECK(cached_, "backward needs a preceding forward in training mode (train()); "
                       "none is cached");
  PYRNN_CHECK(dx && dh0 && dy, "backward: null buffer: ", dx ? "" : "dx ", dh0 ? "" : "dh0 ",
              dy ? "" : "dy ", "(dx [T, N, C], dh0 [L*D, N, H] and dy [T, N, D*H] are required, ",
              "dh0 even without an h0)");
  const bool lstm = cfg_.cell == CellType::LSTM;
  PYRNN_CHECK(!lstm || dc0, "backward: LSTM needs a dc0 buffer");
  const int L = cfg_.num_layers, D = cfg_.directions();
  const std::size_t T_ = steps_, N = batch_, DH = static_cast<std::size_t>(D) * cfg_.hidden_size;
  const Options opt = resolve(opts_);
  detail::CallScope call(*ctx_);
  cudaStream_t stream = ctx_->stream();
  pass_ = opt;

  const PassPlan pass = plan_pass(opt, /*backward=*/true);
  const bool two = pass.two, use_graph = pass.use_graph;
  const Lane* lanes = pass.lanes;
  if (two) call.also(lanes[1].stream);
  const StepChoice& step = pass.step;
  last_bwd_algo_ = step.algo;
  last_bwd_graphs_ = false;

  // batch_first: dy [N, T, D*H] swapped into a time-major copy (with graphs: the stage they
  // read), d x computed time-major into bm_out_ and swapped into the caller's at the end.
  const std::size_t C = cfg_.input_size;
  T* const dx_user = dx;
  if (cfg_.batch_first) {
    DeviceBuffer<T>& dy_tm = use_graph ? dy_stage_ : bm_in_;
    ensure(dy_tm, T_ * N * DH);
    detail::swap01<T>(dy_tm.data(), dy, N, T_, DH, stream);
    dy = dy_tm.data();
    ensure(bm_out_, T_ * N * C);
    dx = bm_out_.data();
  }
  // Every workspace before the first kernel: an allocation refused (out of memory) finds no
  // gradient accumulated yet, as on the CPU, so a retry adds each layer's once.
  for (int k = 1; k < L && k < 3; ++k) ensure(dbuf_[k % 2], T_ * N * DH);  // (both parities)
  reserve_backward_work(*lanes[0].work);
  if (two) reserve_backward_work(*lanes[1].work);
  const T* dyk = dy;
  if (use_graph && dy != dy_stage_.data()) {  // graphs capture pointers: the caller's dy goes
                                              // through a stage
    ensure(dy_stage_, T_ * N * DH);
    copy_d2d(dy_stage_.data(), dy, T_ * N * DH, stream);
    dyk = dy_stage_.data();
  }
  for (int k = L - 1; k >= 0; --k) {
    T* dxk = dx;
    if (k > 0) {
      ensure(dbuf_[k % 2], T_ * N * DH);  // by parity: the same buffer for a layer every call
      dxk = dbuf_[k % 2].data();
    }
    if (two) {
      PYRNN_CUDA_CHECK(cudaEventRecord(ev_fork_.get(), stream));
      PYRNN_CUDA_CHECK(cudaStreamWaitEvent(lanes[1].stream, ev_fork_.get(), 0));
    }
    for (int d = 0; d < D; ++d) {
      backward_direction(dirs_[static_cast<std::size_t>(k) * D + d], dh0, dc0, dyk, dhn, dcn,
                         layer_input(k), k, d, lanes[d], step, use_graph);
      // One shared workspace: direction d's dx share before direction d+1 overwrites it.
      if (!two) backward_dx(dxk, k, d, lanes[d], d > 0);
    }
    if (two) {
      PYRNN_CUDA_CHECK(cudaEventRecord(ev_join_.get(), lanes[1].stream));
      PYRNN_CUDA_CHECK(cudaStreamWaitEvent(stream, ev_join_.get(), 0));
      // dx = share 0, then += share 1, in this order on the main stream (deterministic).
      for (int d = 0; d < D; ++d) backward_dx(dxk, k, d, lanes[d], d > 0);
    }
    if (k == 0) break;
    // d of the previous layer's output: through its dropout mask.
    const LayerCache& below = layers_[k - 1];
    if (below.mask.size()) detail::multiply_inplace<T>(dxk, below.mask.data(), T_ * N * DH, stream);
    dyk = dxk;
  }
  if (dx != dx_user) detail::swap01<T>(dx_user, dx, T_, N, C, stream);
  PYRNN_CUDA_CHECK(cudaStreamSynchronize(stream));
}

// A lane's backward workspaces, the same for every layer (each layer's input width differs,
// not its hidden size). Every row of dg / dghn is written each step (inactive ones with 0):
// no clearing needed.
template <typename T>
void Recurrent<T>::reserve_backward_work(Work& wk) {
  const std::size_t T_ = steps_, N = batch_, H = cfg_.hidden_size;
  const std::size_t GH = static_cast<std::size_t>(cfg_.gates()) * H;
  const bool lstm = cfg_.cell == CellType::LSTM, gru = cfg_.cell == CellType::GRU;
  const bool after = gru && cfg_.reset_after;
  ensure(wk.dg, T_ * N * GH);              // [T, N, GH] d pre-activations (input side)
  if (after) ensure(wk.dghn, T_ * N * H);  // [T, N, H] d (W_hn h + b_hn)
  ensure(wk.dh, N * H);                    // [N, H] running d h
  if (lstm) ensure(wk.dc, N * H);          // [N, H] running d c
  ensure(wk.pw, N * H);                    // [N, H] pointwise part of d h_prev (GRU)
  ensure(wk.rec, N * H);                   // [N, H] dg W_hh
  if (gru && !after) ensure(wk.drh, N * H);  // [N, H] d (r*h_prev)
}

template <typename T>
void Recurrent<T>::backward_direction(DirCache& dc, T* dh0, T* dc0, const T* dy, const T* dhn,
                                      const T* dcn, const T* x, int layer, int dir,
                                      const Lane& lane, const StepChoice& step, bool use_graph) {
  const std::size_t T_ = steps_, N = batch_, H = cfg_.hidden_size;
  const int G = cfg_.gates(), Hi = cfg_.hidden_size;
  const std::size_t GH = G * H;
  const int C = cfg_.layer_input_size(layer);
  const int M = static_cast<int>(T_ * N);
  const bool lstm = cfg_.cell == CellType::LSTM, gru = cfg_.cell == CellType::GRU;
  const bool after = gru && cfg_.reset_after;
  const Weights w = weights(layer, dir);
  const std::size_t slot = static_cast<std::size_t>(layer) * cfg_.directions() + dir;
  const GemmMath math = math_of(pass_);
  Work& wk = *lane.work;

  reserve_backward_work(wk);  // (backward reserved it already: nothing allocated here)
  T* dg = wk.dg.data();
  T* dghn = after ? wk.dghn.data() : nullptr;
  T* dh = wk.dh.data();
  T* dcs = lstm ? wk.dc.data() : nullptr;
  if (dhn) copy_d2d(dh, dhn + slot * N * H, N * H, lane.stream);
  else set_zero(dh, N * H, lane.stream);
  if (lstm) {
    if (dcn) copy_d2d(dcs, dcn + slot * N * H, N * H, lane.stream);
    else set_zero(dcs, N * H, lane.stream);
  }

  std::vector<std::uintptr_t> key = {
      std::uintptr_t(step.algo), std::uintptr_t(math), T_, N, std::uintptr_t(dir),
      key_of(dc.g.data()), key_of(dc.h.data()), key_of(lstm ? dc.c.data() : nullptr),
      key_of(gru ? dc.aux.data() : nullptr), key_of(dy), key_of(dg), key_of(dghn), key_of(dh),
      key_of(dcs), key_of(wk.pw.data()), key_of(wk.rec.data()), key_of(wk.drh.data()),
      key_of(w.w_hh), key_of(lengths_device()), std::uintptr_t(step.plan.blocks),
      std::uintptr_t(step.plan.units), key_of(lane.blas), key_of(lane.stream)};
  const bool graphed = run_loop(graph(true, true, layer, dir), std::move(key), lane.stream,
                                use_graph,
                                [&] { backward_steps(dc, dy, layer, dir, lane, step); });
  last_bwd_graphs_ = last_bwd_graphs_ || graphed;

  copy_d2d(dh0 + slot * N * H, dh, N * H, lane.stream);
  if (lstm) copy_d2d(dc0 + slot * N * H, dcs, N * H, lane.stream);

  // Weight gradients over all steps at once (accumulate). h_prev of step t is slot t (forward)
  // or t+1 (reverse): either way one contiguous [T*N, H] block.
  const T* hs = dc.h.data();
  const T* hprev = hs + (dir == 0 ? 0 : N * H);
  gemm<T>(lane.blas, Trans::T, Trans::N, static_cast<int>(GH), C, M, T(1), dg, G * Hi, x, C, T(1),
          w.dw_ih, C, math);
  if (!gru) {
    gemm<T>(lane.blas, Trans::T, Trans::N, G * Hi, Hi, M, T(1), dg, G * Hi, hprev, Hi, T(1),
            w.dw_hh, Hi, math);
  } else {
    gemm<T>(lane.blas, Trans::T, Trans::N, 2 * Hi, Hi, M, T(1), dg, G * Hi, hprev, Hi, T(1),
            w.dw_hh, Hi, math);
    if (after)
      gemm<T>(lane.blas, Trans::T, Trans::N, Hi, Hi, M, T(1), dghn, Hi, hprev, Hi, T(1),
              w.dw_hh + 2 * H * H, Hi, math);
    else
      gemm<T>(lane.blas, Trans::T, Trans::N, Hi, Hi, M, T(1), dg + 2 * H, G * Hi, dc.aux.data(),
              Hi, T(1), w.dw_hh + 2 * H * H, Hi, math);
  }
  if (w.db) {
    detail::column_sum_add<T>(w.db, dg, T_ * N, G * Hi, G * Hi, lane.stream);
    if (after) detail::column_sum_add<T>(w.db_hn, dghn, T_ * N, Hi, Hi, lane.stream);
  }
}

template <typename T>
void Recurrent<T>::backward_steps(DirCache& dc, const T* dy, int layer, int dir, const Lane& lane,
                                  const StepChoice& step) {
  const std::size_t T_ = steps_, N = batch_, H = cfg_.hidden_size;
  const int G = cfg_.gates(), Hi = cfg_.hidden_size, Ni = batch_;
  const std::size_t GH = G * H, DH = cfg_.directions() * H;
  const bool lstm = cfg_.cell == CellType::LSTM, gru = cfg_.cell == CellType::GRU;
  const bool after = gru && cfg_.reset_after;
  const Weights w = weights(layer, dir);
  const std::int64_t* lens = lengths_device();
  Work& wk = *lane.work;
  T* dg = wk.dg.data();
  T* dghn = after ? wk.dghn.data() : nullptr;
  T* dh = wk.dh.data();
  T* dcs = lstm ? wk.dc.data() : nullptr;
  const T* hs = dc.h.data();
  const T* cs = lstm ? dc.c.data() : nullptr;

  if (step.algo != RecurrentAlgo::Cublas) {
    detail::StepArgs<T> a = step_args<T>(cfg_, Ni, static_cast<int>(T_), dir, lens, w, dc);
    a.dg = dg;
    a.dghn = dghn;
    a.dh = dh;
    a.dy = dy + dir * H;
    a.ldy = static_cast<int>(DH);
    a.dc = dcs;
    a.pw = wk.pw.data();
    a.rec = wk.rec.data();
    a.drh = gru && !after ? wk.drh.data() : nullptr;
    launch_steps<T>(a, step, /*backward=*/true, lane.stream);
    return;
  }

  const GemmMath math = math_of(pass_);
  for (std::size_t s = 0; s < T_; ++s) {
    const std::size_t t = dir == 0 ? T_ - 1 - s : s;
    const std::size_t prev = dir == 0 ? t : t + 1, cur = dir == 0 ? t + 1 : t;
    const int ti = static_cast<int>(t);
    const T* hp = hs + prev * N * H;
    const T* at = dc.g.data() + t * N * GH;
    T* dgt = dg + t * N * GH;
    T* dghnt = after ? dghn + t * N * H : nullptr;
    detail::cell_backward<T>(cfg_.cell, cfg_.reset_after, Ni, Hi, ti, lens, dgt, dghnt, dh,
                             dy + t * N * DH + dir * H, static_cast<int>(DH), dcs, wk.pw.data(),
                             at, gru ? dc.aux.data() + t * N * H : nullptr, hp,
                             lstm ? cs + cur * N * H : nullptr, lstm ? cs + prev * N * H : nullptr,
                             lane.stream);
    // d h_prev through the recurrent weights: rec = dg_h W_hh.
    if (gru && !after) {
      gemm<T>(lane.blas, Trans::N, Trans::N, Ni, Hi, Hi, T(1), dgt + 2 * H, G * Hi,
              w.w_hh + 2 * H * H, Hi, T(0), wk.drh.data(), Hi, math);
      detail::gru_before_backward_r<T>(Ni, Hi, ti, lens, dgt, wk.drh.data(), wk.pw.data(), at, hp,
                                       lane.stream);
      gemm<T>(lane.blas, Trans::N, Trans::N, Ni, Hi, 2 * Hi, T(1), dgt, G * Hi, w.w_hh, Hi, T(0),
              wk.rec.data(), Hi, math);
    } else if (after) {
      gemm<T>(lane.blas, Trans::N, Trans::N, Ni, Hi, 2 * Hi, T(1), dgt, G * Hi, w.w_hh, Hi, T(0),
              wk.rec.data(), Hi, math);
      gemm<T>(lane.blas, Trans::N, Trans::N, Ni, Hi, Hi, T(1), dghnt, Hi, w.w_hh + 2 * H * H, Hi,
              T(1), wk.rec.data(), Hi, math);
    } else {
      gemm<T>(lane.blas, Trans::N, Trans::N, Ni, Hi, G * Hi, T(1), dgt, G * Hi, w.w_hh, Hi, T(0),
              wk.rec.data(), Hi, math);
    }
    detail::update_dh<T>(Ni, Hi, ti, lens, dh, wk.rec.data(), gru ? wk.pw.data() : nullptr,
                         lane.stream);
  }
}

template <typename T>
void Recurrent<T>::backward_dx(T* dx, int layer, int dir, const Lane& lane, bool accumulate) {
  // Runs on the main stream (Context handle): the two shares are added in a fixed order.
  const int G = cfg_.gates(), Hi = cfg_.hidden_size;
  const int C = cfg_.layer_input_size(layer);
  const int M = steps_ * batch_;
  const Weights w = weights(layer, dir);
  const GemmMath math = math_of(pass_);
  gemm<T>(ctx_->cublas(), Trans::N, Trans::N, M, C, G * Hi, T(1), lane.work->dg.data(), G * Hi,
          w.w_ih, C, accumulate ? T(1) : T(0), dx, C, math);
}

template class Recurrent<float>;
template class Recurrent<double>;

}  // namespace cuda
}  // namespace pyrnn
