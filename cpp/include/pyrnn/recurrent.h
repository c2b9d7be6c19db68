// Recurrent<T>: a stack of RNN / LSTM / GRU layers over time-major buffers (or batch-major with
// batch_first), forward and BPTT.
//
// Shapes (T steps, N batch, C input, H hidden, L layers, D = 2 if bidirectional else 1,
// G gates: RNN 1, LSTM 4, GRU 3):
//   x  [T, N, C]         y  [T, N, D*H]      lengths [N] in [1, T] (or null: all T)
//   h0 [L*D, N, H]       hn [L*D, N, H]      c0 / cn likewise (LSTM only)
// With config.batch_first, x, y, dx and dy are batch-major instead: [N, T, C] and [N, T, D*H]
// (PyTorch's batch_first; the states stay [L*D, N, H]).
// Layer k > 0 reads the previous layer's y (width D*H), after dropout in training mode.
// Parameters per layer k and direction (suffix "_reverse"), in this order in params():
//   weight_ih_l{k} [G*H, C_k], weight_hh_l{k} [G*H, H], bias_l{k} [G*H] (if bias),
//   bias_hn_l{k} [H] (GRU reset_after with bias).
// Gradients live in grads() with the same layout and ACCUMULATE across backward calls.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "pyrnn/aligned.h"
#include "pyrnn/kernels/ops.h"
#include "pyrnn/instance_id.h"
#include "pyrnn/moved_from.h"

namespace pyrnn {

enum class CellType { RNN_TANH = 0, RNN_RELU = 1, LSTM = 2, GRU = 3 };

struct RecurrentConfig {
  CellType cell = CellType::LSTM;
  int input_size = 1;
  int hidden_size = 1;
  int num_layers = 1;
  bool bias = true;
  bool bidirectional = false;
  bool reset_after = false;  // GRU only: true is the PyTorch/cuDNN form
  double dropout = 0.0;      // between layers, training mode only
  bool batch_first = false;  // x, y, dx, dy as [N, T, .] (read and written in place, no copy)

  int gates() const;
  int directions() const { return bidirectional ? 2 : 1; }
  int layer_input_size(int layer) const;
  // Elements of parameters that Recurrent allocates for this config (with a few of slack per
  // direction), in double so that no size overflows; its gradients take as many again.
  double parameter_elements() const;
  // Throws pyrnn::Error naming the bad field.
  void validate() const;
};

struct ParamInfo {
  std::string name;
  std::size_t offset;  // into params() / grads()
  std::size_t rows;
  std::size_t cols;    // 0 for a vector of `rows` elements
  std::size_t size() const { return cols ? rows * cols : rows; }
};

template <typename T>
class Recurrent {
 public:
  explicit Recurrent(const RecurrentConfig& config);
  Recurrent(const Recurrent&) = default;
  Recurrent(Recurrent&&) noexcept = default;
  // Whole or not at all: a copy made first, then moved in. Member by member, an allocation
  // refused part-way left the source's configuration over the target's smaller buffers (the
  // next call overflowed them).
  Recurrent& operator=(const Recurrent& o) {
    if (this != &o) *this = Recurrent(o);
    return *this;
  }
  Recurrent& operator=(Recurrent&&) noexcept = default;

  const RecurrentConfig& config() const { return cfg_; }
  const std::vector<ParamInfo>& param_info() const { return info_; }
  std::size_t num_parameters() const { return params_.size(); }
  T* params() { return params_.data(); }
  const T* params() const { return params_.data(); }
  T* grads() { return grads_.data(); }
  const T* grads() const { return grads_.data(); }
  void zero_grad() { grads_.zero(); }
  // PyTorch-style init, reproducible from seed: weights U(-1/sqrt(H), 1/sqrt(H)); each bias the
  // sum of two such draws (PyTorch's b_ih + b_hh, merged), except a reset-after GRU's n-gate
  // bias and b_hn, one draw each (they stay apart).
  void reset_parameters(std::uint64_t seed);

  // y, hn, cn: outputs (overwritten). x, h0, c0, lengths: inputs (h0/c0/lengths may be null).
  // training: keep the cache for backward and apply dropout (mask drawn from seed).
  void forward(T* y, T* hn, T* cn, const T* x, const T* h0, const T* c0,
               const std::int64_t* lengths, int steps, int batch, bool training,
               std::uint64_t seed);
  // What forward checks of its sizes before touching anything: steps * batch rows fit the int
  // row count of the input projection's GEMM, and the buffers this forward would allocate
  // (eval: no cache), plus `caller_bytes` the caller allocates for the pass (its outputs,
  // converted inputs), fit the memory limit (pyrnn::Error / OutOfMemory naming the need).
  void check_forward(int steps, int batch, bool training, double caller_bytes = 0) const;
  // dx [T, N, C] ([N, T, C] batch_first), dh0 / dc0 [L*D, N, H]: outputs (overwritten; dc0
  // required for an LSTM, unused (may be null) otherwise). dy [T, N, D*H] ([N, T, D*H] batch_first); dhn, dcn [L*D, N, H]
  // (null: zero). Parameter gradients accumulate.
  // Throws if the last forward was not in training mode.
  void backward(T* dx, T* dh0, T* dc0, const T* dy, const T* dhn, const T* dcn);

  bool has_cache() const { return cached_ && !moved_; }
  // True once moved from: forward and backward then throw pyrnn::Error.
  bool moved_from() const { return static_cast<bool>(moved_); }
  // Unique to this object: a copy gets its own, a move hands it over (detail::InstanceId).
  std::uint64_t instanceId() const { return id_.value(); }
  std::weak_ptr<const void> instanceAlive() const { return id_.alive(); }  // expires with it
  int cached_steps() const { return steps_; }
  int cached_batch() const { return batch_; }
  // A number no other forward (of this object or any other) has: what a caller keeping a
  // forward's outputs checks before backward, to know the cache is still that forward's (a
  // copy carries its original's, with the same cache).
  std::uint64_t forward_serial() const { return serial_; }
  // Whether an eval forward keeps every step's state (for last_layer_states) or only the two a
  // step reads and writes (the default: [2, N, H] per direction instead of [T+1, N, H], a third
  // of an LSTM's eval memory at large T). Training keeps every state either way.
  void keep_state_sequence(bool on) { keep_states_ = on; }
  bool keeps_state_sequence() const { return keep_states_; }
  // The last layer's state sequence from the last forward, read-only: [T+1, N, H], slot 0 the
  // initial state for dir 0, slot T for dir 1 (the reverse direction). cell = true gives the
  // LSTM cell states. Null before any forward, and after an eval forward that kept only two
  // states (keep_state_sequence). Valid until the next forward.
  // (Training keeps every (layer, dir) cache; eval reuses D of them, so the last layer's are
  // the last D entries either way.)
  const T* last_layer_states(int dir, bool cell = false) const {
    const std::size_t D = static_cast<std::size_t>(cfg_.directions());
    if (ring_ || dirs_.size() < D || dir < 0 || static_cast<std::size_t>(dir) >= D)
      return nullptr;
    const DirCache& dc = dirs_[dirs_.size() - D + static_cast<std::size_t>(dir)];
    const AlignedBuffer<T>& b = cell ? dc.c : dc.h;
    // (A forward that threw may have left a smaller buffer: never hand that out.)
    const std::size_t need = (static_cast<std::size_t>(steps_) + 1) * batch_ * cfg_.hidden_size;
    return b.size() && b.size() >= need ? b.data() : nullptr;
  }

 private:
  struct DirCache {
    AlignedBuffer<T> g;    // [T, N, G*H] gate activations (pre-activations during the step)
    AlignedBuffer<T> h;    // [T+1, N, H] states; forward: slot 0 initial; reverse: slot T
                           // (eval without keep_states_: [2, N, H], slot i at i % 2)
    AlignedBuffer<T> c;    // [T+1, N, H] LSTM cell states, same slots as h
    AlignedBuffer<T> aux;  // [T, N, H] GRU: r*h_prev (reset_after=false) or W_hn h + b_hn
  };
  struct LayerCache {
    AlignedBuffer<T> x;     // [T, N, C_k] the layer's input: layer 0's, or k > 0 after dropout
                            // (without dropout, empty: layer k - 1's y is the input)
    AlignedBuffer<T> y;     // [T, N, D*H] the layer's output (before dropout)
    AlignedBuffer<T> mask;  // [T, N, D*H] dropout scale (0 or 1/(1-p)), k < L-1 in training
  };
  struct Weights {
    const T *w_ih, *w_hh, *b, *b_hn;
    T *dw_ih, *dw_hh, *db, *db_hn;
  };

  Weights weights(int layer, int dir);
  // x_bm / y_bm (dx_bm / dy_bm): that buffer is the caller's batch-major one, else time-major.
  void forward_direction(DirCache& dc, T* y, const T* x, const T* h0, const T* c0, int layer,
                         int dir, bool x_bm, bool y_bm);
  void backward_direction(DirCache& dc, T* dx, T* dh0, T* dc0, const T* dy, const T* dhn,
                          const T* dcn, const T* x, int layer, int dir, bool accumulate_dx,
                          bool dx_bm, bool dy_bm);
  bool active(int n, int t) const { return lengths_.empty() || t < lengths_[n]; }
  // The training forward's input of layer k, [T, N, C_k]: its own copy (layer 0; after dropout)
  // or the layer below's output.
  const T* layer_input(int k) const {
    return k == 0 || layers_[k].x.size() ? layers_[k].x.data() : layers_[k - 1].y.data();
  }
  // Where state slot i (0..T) of the last forward lives in DirCache::h / c.
  std::size_t state_slot(std::size_t i) const { return ring_ ? i % 2 : i; }

  RecurrentConfig cfg_;
  std::vector<ParamInfo> info_;
  AlignedBuffer<T> params_, grads_;
  // Forward state. Training keeps one LayerCache per layer and one DirCache per (layer, dir);
  // eval reuses a single set.
  std::vector<LayerCache> layers_;
  std::vector<DirCache> dirs_;
  std::vector<std::int64_t> lengths_;  // empty: every sequence has all T steps
  AlignedBuffer<T> scratch_;           // per-step workspace
  AlignedBuffer<T> step_g_, step_aux_;  // [N, G*H], [N, H] one step's gates and GRU aux (hot)
  // Recurrent weights packed once per direction pass, reused by every step.
  kernels::PackedB<T> pack_hh_;  // W_hh^T (forward) or W_hh (backward); GRU: its r,z rows
  kernels::PackedB<T> pack_hn_;  // GRU: the n rows of W_hh on their own
  kernels::PackedB<T> pack_ih_;  // W_ih^T for the input projection (backward: W_ih, for d x)
  AlignedBuffer<T> dg_, dghn_;   // backward: two rings of P steps, P up to 64 (backward_direction)
  AlignedBuffer<T> dwp_ih_, dwp_hh_;  // [G*H, C], [G*H, H] partial weight gradients (ditto)
  int steps_ = 0, batch_ = 0;
  bool cached_ = false;
  bool training_ = false;  // the forward in progress keeps a cache
  bool keep_states_ = false;  // see keep_state_sequence
  bool ring_ = false;         // the last forward kept two state slots (eval, !keep_states_)
  std::uint64_t serial_ = 0;  // forward_serial()
  MovedFrom moved_;
  detail::InstanceId id_;
};

namespace detail {
// Test hook: the largest row stride, in elements, at which batch_first buffers are read and
// written in place (default 2^31 - 1, the GEMMs' int lda); beyond it forward and backward go
// through time-major copies. 0 restores the default. Process-wide, read by each call: change it
// only between a forward and the next (never between a forward and its backward).
void set_batch_major_stride_limit(long long elements);
// Test hook: whether forward and backward passes read W_hh and W_ih in place instead of packing
// them: -1 by their size, the steps and the rows (the default), 0 never, 1 always (but not the
// forward's W_ih where its steps are shared by batch rows). Process-wide, read by each pass;
// every choice gives the same bits.
void set_weights_in_place(int mode);
}  // namespace detail

extern template class Recurrent<float>;
extern template class Recurrent<double>;

}  // namespace pyrnn
