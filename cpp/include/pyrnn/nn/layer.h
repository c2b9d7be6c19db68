// BasicRecurrentLayer<T>: the seeds' layer facade (RNNLayer, LSTMLayer, GRULayer share it).
//
// One recurrent layer (pyrnn::Recurrent<T>, single layer, unidirectional) plus a dense output
// projection of the last state, over a sequence given as one matrix per step:
//
//   sequence  T matrices, each [N, C]      (N batch, C input_size; every step the same N)
//   h_t       [N, H]  t = 1..T             (H hidden_size; getHiddenStates())
//   c_t       [N, H]  t = 1..T             (LSTM only; getCellStates())
//   y_T       [N, O] = h_T W_hy^T + b_y    (O output_size; what forward() returns)
//   W_hy      [O, H]    b_y [1, O]
//
// Training: forward() (in training mode, the default) keeps what backward() needs;
// backward(d_y) runs BPTT and ACCUMULATES every parameter gradient until zeroGrad(). An
// optimizer (<pyrnn/nn/optim.h>) then updates the parameters in place. Errors throw
// pyrnn::Error with the shapes involved.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "pyrnn/aligned.h"
#include "pyrnn/instance_id.h"
#include "pyrnn/matrix.h"
#include "pyrnn/recurrent.h"

namespace pyrnn {

// One parameter and its gradient, views into the layer's own memory (an optimizer writes
// through `data`). rows x cols row-major; cols = 0 for a vector of `rows` elements.
template <typename T>
struct ParamView {
  std::string name;
  T* data;
  T* grad;
  std::size_t rows;
  std::size_t cols;
  // The storage it views: a Matrix's storageId() for the projection, 0 for the core's (whose
  // instanceId() names them). Optimizers keep state per (address, owner, storage).
  std::uint64_t storage = 0;
  std::size_t size() const { return cols ? rows * cols : rows; }
};

namespace detail {
// What both layer facades (this one and the CUDA one) check before a call uses their core and
// projection: `who.call` names the call ("LSTMLayer.forward"); the core not moved from and one
// unidirectional layer; W_hy [O, H] and b_y [1, O] as built (O = output_size).
void check_facade(const std::string& who, const char* call, bool moved_from,
                  const RecurrentConfig& cfg, std::size_t w_rows, std::size_t w_cols,
                  std::size_t b_rows, std::size_t b_cols, std::size_t output_size);
}  // namespace detail

template <typename T>
class BasicRecurrentLayer {
 public:
  using MatrixT = BasicMatrix<T>;

  // Virtual so a layer held as its base (unique_ptr<RecurrentLayer>) is destroyed fully;
  // layers copy (an independent deep copy) and move.
  virtual ~BasicRecurrentLayer() = default;
  BasicRecurrentLayer(const BasicRecurrentLayer&) = default;
  BasicRecurrentLayer(BasicRecurrentLayer&&) noexcept = default;
  // Whole or not at all, as Recurrent's (a copy made first, then moved in).
  BasicRecurrentLayer& operator=(const BasicRecurrentLayer& o) {
    if (this != &o) *this = BasicRecurrentLayer(o);
    return *this;
  }
  BasicRecurrentLayer& operator=(BasicRecurrentLayer&&) noexcept = default;

  int inputSize() const { return core_.config().input_size; }
  int hiddenSize() const { return core_.config().hidden_size; }
  // True once moved from (its core went with the move): forward / backward then throw.
  bool moved_from() const { return core_.moved_from(); }
  // Fixed at construction (the gradient's rows): outputWeight() / outputBias() keep that shape.
  int outputSize() const { return static_cast<int>(dw_hy_.rows()); }
  // "RNNLayer", "LSTMLayer" or "GRULayer": used in error messages.
  const std::string& name() const { return name_; }

  // sequence: T >= 1 steps, each [N, C] with N >= 1. Returns y_T [N, O].
  // Training mode keeps the cache for backward(); eval mode keeps only the states.
  MatrixT forward(const std::vector<MatrixT>& sequence);
  // d_output [N, O]: d loss / d y_T of the last training-mode forward. Accumulates the
  // gradient of every parameter; returns d loss / d x_t, T matrices [N, C]. Each call
  // backpropagates through the same cached forward (so two calls add twice). Throws if the
  // weights changed since that forward (resetParameters(), an optimizer's step(),
  // parametersChanged()): its activations are the old weights', and the gradient would be
  // neither's (PyTorch's autograd and pyrnn's Python layers refuse it too). A refusal, an
  // out-of-memory included, leaves every gradient as it was.
  std::vector<MatrixT> backward(const MatrixT& d_output);

  // h_1..h_T of the last forward, each [N, H] (h_0 = 0 is not included); empty before the
  // first forward and on a moved-from layer.
  const std::vector<MatrixT>& getHiddenStates() const { return hidden_; }
  // c_1..c_T of the last forward, each [N, H] (empty as getHiddenStates()). LSTM only: RNNLayer
  // and GRULayer have no cell state and throw pyrnn::Error (rather than hand back an empty
  // vector whose back() is UB).
  const std::vector<MatrixT>& getCellStates() const;

  // Training mode (the default) keeps the BPTT cache; eval mode skips it (cheaper inference)
  // and makes backward() throw.
  void train(bool on = true) { training_ = on; }
  void eval() { training_ = false; }
  bool isTraining() const { return training_; }

  void zeroGrad();
  // Tells the layer its weights changed (the optimizers in <pyrnn/nn/optim.h> and
  // resetParameters() call it): backward() then refuses until the next forward(). Call it after
  // writing weights yourself through parameters(), core() or outputWeight() / outputBias(),
  // which the layer cannot see.
  void parametersChanged() { ++weights_version_; }
  // Recurrent weights as pyrnn::Recurrent initialises them (PyTorch's U(-1/sqrt(H), 1/sqrt(H));
  // a bias, PyTorch's b_ih + b_hh merged, the sum of two such draws)
  // and the projection like torch.nn.Linear (U(-1/sqrt(H), 1/sqrt(H))), reproducible from seed.
  void resetParameters(std::uint64_t seed);

  // Every parameter, in this order: the recurrent ones (weight_ih_l0 [G*H, C],
  // weight_hh_l0 [G*H, H], bias_l0 [G*H]; gate order as in PyTorch) then weight_hy [O, H] and
  // bias_y [O]. G = 1 (RNN), 4 (LSTM, i f g o), 3 (GRU, r z n).
  std::vector<ParamView<T>> parameters();
  std::size_t numParameters() const { return core_.num_parameters() + w_hy_.size() + b_y_.size(); }

  // Unique to this layer object (copies get their own; see detail::InstanceId). The core has
  // its own (core().instanceId()), so a replaced core is told apart too.
  std::uint64_t instanceId() const { return id_.value(); }
  std::weak_ptr<const void> instanceAlive() const { return id_.alive(); }  // expires with it

  // Direct access, e.g. to load trained weights.
  Recurrent<T>& core() { return core_; }
  const Recurrent<T>& core() const { return core_; }
  // Assign matrices of the same shape: forward, backward and parameters() refuse others. After
  // assigning a core() of another hidden_size H2, assign an outputWeight() of (O, H2): its
  // gradient is then reset to zeros of that shape by the next forward, backward or
  // parameters().
  MatrixT& outputWeight() { return w_hy_; }        // [O, H]
  MatrixT& outputBias() { return b_y_; }           // [1, O]
  const MatrixT& outputWeight() const { return w_hy_; }
  const MatrixT& outputBias() const { return b_y_; }
  const MatrixT& outputWeightGrad() const { return dw_hy_; }  // [O, H]
  const MatrixT& outputBiasGrad() const { return db_y_; }     // [1, O]

 protected:
  BasicRecurrentLayer(std::string name, const RecurrentConfig& config, int output_size,
                      std::uint64_t seed);

 private:
  static RecurrentConfig checked(const std::string& name, const RecurrentConfig& config,
                                 int output_size);
  // Throws unless the layer is usable by `call`: not moved from, and the projection [O, H],
  // [1, O] as built (a reassigned outputWeight() of another shape would overflow).
  void check_usable(const char* call) const;
  // check_usable, then the projection's gradient fitted to a new core's hidden_size.
  void prepare(const char* call);

  std::string name_;
  detail::InstanceId id_;
  Recurrent<T> core_;
  MatrixT w_hy_, b_y_;    // [O, H], [1, O]
  MatrixT dw_hy_, db_y_;  // [O, H], [1, O]; accumulate like the core's grads
  bool training_ = true;

  // The last forward. Buffers are reused across calls of the same size.
  int steps_ = 0, batch_ = 0;
  bool cached_ = false;        // a training-mode forward completed; backward may run
  std::uint64_t weights_version_ = 0;  // parametersChanged() calls so far
  std::uint64_t forward_version_ = 0;  // weights_version_ at the cached forward
  std::uint64_t core_serial_ = 0;  // core_.forward_serial() of that forward (backward: its own)
  AlignedBuffer<T> x_;         // [T, N, C] the sequence, time-major, as the core takes it
  AlignedBuffer<T> y_;         // [T, N, H] the core's output: y_[t] = h_{t+1}
  AlignedBuffer<T> hn_, cn_;   // [N, H] final states (cn_ LSTM only)
  std::vector<MatrixT> hidden_, cells_;  // T x [N, H]
};

extern template class BasicRecurrentLayer<float>;
extern template class BasicRecurrentLayer<double>;
using RecurrentLayer = BasicRecurrentLayer<float>;

}  // namespace pyrnn
