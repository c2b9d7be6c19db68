// The shared facade: sequence of [N, C] matrices -> time-major buffer -> Recurrent<T>, plus the
// output projection y_T = h_T W_hy^T + b_y. Forward and backward sit side by side.
#include "pyrnn/nn/layer.h"

#include <climits>
#include <cmath>
#include <cstring>
#include <utility>

#include "pyrnn/error.h"
#include "pyrnn/kernels/gemm.h"
#include "pyrnn/random.h"

namespace pyrnn {

using kernels::gemm;
using kernels::Trans;

namespace {
// Streams for the projection's random init; the core uses streams 0.. (one per ParamInfo).
constexpr std::uint64_t kStreamWeightHy = std::uint64_t(1) << 32;
constexpr std::uint64_t kStreamBiasY = kStreamWeightHy + 1;
}  // namespace

template <typename T>
RecurrentConfig BasicRecurrentLayer<T>::checked(const std::string& name,
                                                const RecurrentConfig& config, int output_size) {
  // Named here so a bad size says which layer; the core then validates the rest.
  PYRNN_CHECK(config.input_size >= 1, name, ": input_size must be >= 1, got ", config.input_size);
  PYRNN_CHECK(config.hidden_size >= 1, name, ": hidden_size must be >= 1, got ",
              config.hidden_size);
  PYRNN_CHECK(output_size >= 1, name, ": output_size must be >= 1, got ", output_size);
  config.validate();
  // Everything the layer holds for good, together, before any of it is allocated: the core's
  // parameters and the projection's four buffers (W_hy, b_y and their gradients) could each
  // fit the memory limit alone and not all together (the process was then killed instead of
  // throwing pyrnn::OutOfMemory).
  const double o = output_size, h = config.hidden_size;
  check_allocation((2.0 * config.parameter_elements() + 2.0 * o * h + 2.0 * o) * sizeof(T),
                   (name + " parameters and gradients (core and output projection)").c_str());
  return config;
}

template <typename T>
BasicRecurrentLayer<T>::BasicRecurrentLayer(std::string name, const RecurrentConfig& config,
                                            int output_size, std::uint64_t seed)
    : name_(std::move(name)),
      core_(checked(name_, config, output_size)),
      w_hy_(output_size, config.hidden_size),
      b_y_(1, output_size),
      dw_hy_(output_size, config.hidden_size),
      db_y_(1, output_size) {
  resetParameters(seed);
}

void detail::check_facade(const std::string& who, const char* call, bool moved_from,
                          const RecurrentConfig& cfg, std::size_t w_rows, std::size_t w_cols,
                          std::size_t b_rows, std::size_t b_cols, std::size_t O) {
  // A moved-from layer's name went with the move too. (Its core() alone may have been moved
  // out: the layer's name is then still there.)
  PYRNN_CHECK(!moved_from, who.empty() ? "layer" : who, ".", call, ": this layer",
              who.empty() ? "" : "'s core()", " was moved from (its storage went with the move)");
  PYRNN_CHECK(cfg.num_layers == 1 && !cfg.bidirectional && !cfg.batch_first, who, ".", call,
              ": core() has num_layers=", cfg.num_layers,
              ", bidirectional=", cfg.bidirectional ? "true" : "false",
              ", batch_first=", cfg.batch_first ? "true" : "false",
              "; the layer runs one unidirectional time-major layer (assign such a Recurrent)");
  const std::size_t H = static_cast<std::size_t>(cfg.hidden_size);
  PYRNN_CHECK(w_rows == O && w_cols == H, who, ".", call, ": outputWeight() is (", w_rows, ", ",
              w_cols, "), expected (", O, ", ", H,
              ") = (output_size, hidden_size); assign a matrix of that shape");
  PYRNN_CHECK(b_rows == 1 && b_cols == O, who, ".", call, ": outputBias() is (", b_rows, ", ",
              b_cols, "), expected (1, ", O, ") = (1, output_size); assign a matrix of that shape");
}

template <typename T>
void BasicRecurrentLayer<T>::check_usable(const char* call) const {
  detail::check_facade(name_, call, core_.moved_from(), core_.config(), w_hy_.rows(),
                       w_hy_.cols(), b_y_.rows(), b_y_.cols(), outputSize());
}

template <typename T>
void BasicRecurrentLayer<T>::prepare(const char* call) {
  check_usable(call);
  // A core of another hidden_size, with outputWeight() reassigned to (O, H) to match: the
  // projection's gradient starts afresh at that shape (the old one was another weight's, and
  // backward would write past it).
  if (dw_hy_.cols() != w_hy_.cols()) dw_hy_ = MatrixT(w_hy_.rows(), w_hy_.cols());
}

template <typename T>
void BasicRecurrentLayer<T>::resetParameters(std::uint64_t seed) {
  parametersChanged();
  core_.reset_parameters(seed);
  const T k = T(1) / std::sqrt(static_cast<T>(hiddenSize()));
  for (std::size_t i = 0; i < w_hy_.size(); ++i)
    w_hy_.data()[i] = static_cast<T>(2.0 * uniform01(seed, kStreamWeightHy, i) - 1.0) * k;
  for (std::size_t i = 0; i < b_y_.size(); ++i)
    b_y_.data()[i] = static_cast<T>(2.0 * uniform01(seed, kStreamBiasY, i) - 1.0) * k;
}

template <typename T>
void BasicRecurrentLayer<T>::zeroGrad() {
  core_.zero_grad();
  dw_hy_.fill(T(0));
  db_y_.fill(T(0));
}

template <typename T>
std::vector<ParamView<T>> BasicRecurrentLayer<T>::parameters() {
  prepare("parameters");
  std::vector<ParamView<T>> out;
  for (const ParamInfo& p : core_.param_info())
    out.push_back({p.name, core_.params() + p.offset, core_.grads() + p.offset, p.rows, p.cols});
  out.push_back({"weight_hy", w_hy_.data(), dw_hy_.data(), w_hy_.rows(), w_hy_.cols(),
                 w_hy_.storageId()});
  out.push_back({"bias_y", b_y_.data(), db_y_.data(), b_y_.cols(), 0, b_y_.storageId()});
  return out;
}

template <typename T>
const std::vector<BasicMatrix<T>>& BasicRecurrentLayer<T>::getCellStates() const {
  PYRNN_CHECK(core_.config().cell == CellType::LSTM, name_.empty() ? "a moved-from layer" : name_,
              " has no cell state: getCellStates() is for LSTMLayer only (use getHiddenStates())");
  return cells_;
}

// ---------------------------------------------------------------------------------------------
// Forward

template <typename T>
BasicMatrix<T> BasicRecurrentLayer<T>::forward(const std::vector<MatrixT>& sequence) {
  // A forward that throws leaves nothing to backpropagate through: cleared before any check
  // (prepare's too: a refused outputWeight() shape let backward run on the forward before).
  cached_ = false;
  prepare("forward");
  const std::size_t C = inputSize(), H = hiddenSize(), O = outputSize();
  const bool lstm = core_.config().cell == CellType::LSTM;
  PYRNN_CHECK(!sequence.empty(), name_, ".forward: empty sequence; need at least one step, each ",
              "a (batch, input_size) = (N, ", C, ") matrix");
  const std::size_t T_ = sequence.size(), N = sequence[0].rows();
  PYRNN_CHECK(N >= 1, name_, ".forward: step 0 has no rows (shape (0, ", sequence[0].cols(),
              ")): the batch must be >= 1");
  for (std::size_t t = 0; t < T_; ++t) {
    const MatrixT& s = sequence[t];
    PYRNN_CHECK(s.rows() == N && s.cols() == C, name_, ".forward: step ", t, " has shape (",
                s.rows(), ", ", s.cols(), "), expected (", N, ", ", C, ") = (batch, input_size)");
  }
  PYRNN_CHECK(T_ <= INT_MAX && N <= INT_MAX, name_, ".forward: ", T_, " steps of batch ", N,
              " exceed the int sizes of the core");
  // The core's size and memory check before anything here is allocated, this facade's buffers
  // for the pass counted in (x_, y_, hn_ / cn_, the per-step states handed out, the output):
  // a refused pass allocates nothing (as the Python wrapper and the CUDA facade check first).
  // getCellStates() hands out every c_t, in eval too (set per call: core() may be replaced;
  // before the check, which counts those states).
  core_.keep_state_sequence(lstm);
  const double tn = static_cast<double>(T_) * static_cast<double>(N);
  // hidden_ / cells_ and hn_ / cn_
  const double states = (lstm ? 2.0 : 1.0) * (tn + static_cast<double>(N)) * H;
  core_.check_forward(static_cast<int>(T_), static_cast<int>(N), training_,
                      (tn * C + tn * H + states + static_cast<double>(N) * O) * sizeof(T));

  // x_ [T, N, C]: step t is rows t*N .. t*N+N-1 of the time-major buffer.
  x_.resize(T_ * N * C);
  for (std::size_t t = 0; t < T_; ++t)
    std::memcpy(x_.data() + t * N * C, sequence[t].data(), N * C * sizeof(T));
  y_.resize(T_ * N * H);  // [T, N, H]
  hn_.resize(N * H);      // [N, H]
  cn_.resize(lstm ? N * H : 0);
  core_.forward(y_.data(), hn_.data(), lstm ? cn_.data() : nullptr, x_.data(), nullptr, nullptr,
                nullptr, static_cast<int>(T_), static_cast<int>(N), training_, 0);
  steps_ = static_cast<int>(T_);
  batch_ = static_cast<int>(N);
  core_serial_ = core_.forward_serial();
  forward_version_ = weights_version_;

  // The per-step views the seeds' API hands out: h_t = y_[t-1]; c_t from the core's
  // [T+1, N, H] cell states (slot 0 is c_0 = 0, so c_t is slot t).
  hidden_.assign(T_, MatrixT(N, H));
  for (std::size_t t = 0; t < T_; ++t)
    std::memcpy(hidden_[t].data(), y_.data() + t * N * H, N * H * sizeof(T));
  cells_.clear();
  if (lstm) {
    const T* cs = core_.last_layer_states(0, true);  // [T+1, N, H]
    PYRNN_CHECK(cs != nullptr, name_, ".forward: the core kept no cell states");
    cells_.assign(T_, MatrixT(N, H));
    for (std::size_t t = 0; t < T_; ++t)
      std::memcpy(cells_[t].data(), cs + (t + 1) * N * H, N * H * sizeof(T));
  }

  // y_T [N, O] = h_T [N, H] W_hy^T [H, O] + b_y.
  MatrixT out(N, O);
  const T* h_last = y_.data() + (T_ - 1) * N * H;  // [N, H]
  gemm(Trans::N, Trans::T, static_cast<int>(N), static_cast<int>(O), static_cast<int>(H), T(1),
       h_last, static_cast<int>(H), w_hy_.data(), static_cast<int>(H), T(0), out.data(),
       static_cast<int>(O));
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t o = 0; o < O; ++o) out(n, o) += b_y_.data()[o];
  cached_ = training_;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Backward

template <typename T>
std::vector<BasicMatrix<T>> BasicRecurrentLayer<T>::backward(const MatrixT& d_output) {
  prepare("backward");
  // The core's cache must be this layer's last forward's: not a replaced core()'s, nor one a
  // direct core().forward() made since (y_ and the core's cache would then belong to different
  // forwards, or sizes).
  PYRNN_CHECK(cached_ && core_.has_cache() && core_.forward_serial() == core_serial_ &&
                  core_.cached_steps() == steps_ && core_.cached_batch() == batch_,
              name_, ".backward: no training-mode forward to backpropagate through; call "
              "forward() first (in train() mode, the default; core() replaced or run on its "
              "own since counts as none)");
  PYRNN_CHECK(forward_version_ == weights_version_, name_, ".backward: the weights changed "
              "since the last forward (resetParameters(), an optimizer step or "
              "parametersChanged()): its activations are the old weights', so the gradient would "
              "be neither's; run forward() again first");
  const std::size_t T_ = steps_, N = batch_;
  const std::size_t C = inputSize(), H = hiddenSize(), O = outputSize();
  const bool lstm = core_.config().cell == CellType::LSTM;
  PYRNN_CHECK(d_output.rows() == N && d_output.cols() == O, name_, ".backward: d_output has shape (",
              d_output.rows(), ", ", d_output.cols(), "), expected (", N, ", ", O,
              ") = (batch, output_size), the shape forward() returned");
  const T* dy = d_output.data();                   // [N, O]
  const T* h_last = y_.data() + (T_ - 1) * N * H;  // [N, H]

  // Every buffer first, and the core's backward (all or nothing: it checks and allocates before
  // its first write) before the projection's gradients: an out-of-memory anywhere leaves every
  // gradient as it was, and a retry counts nothing twice.
  AlignedBuffer<T> d_seq(T_ * N * H);                  // [T, N, H] zero-filled
  AlignedBuffer<T> dx(T_ * N * C);                     // [T, N, C]
  AlignedBuffer<T> dh0(N * H);                         // [N, H] (h_0 is the fixed zero state)
  AlignedBuffer<T> dc0(lstm ? N * H : 0);              // [N, H]
  std::vector<MatrixT> d_sequence(T_, MatrixT(N, C));  // T x [N, C]

  // d of the core's output sequence: only h_T feeds the projection, so every step but the last
  // is zero; d h_T [N, H] = d_y [N, O] W_hy [O, H].
  gemm(Trans::N, Trans::N, static_cast<int>(N), static_cast<int>(H), static_cast<int>(O), T(1), dy,
       static_cast<int>(O), w_hy_.data(), static_cast<int>(H), T(0),
       d_seq.data() + (T_ - 1) * N * H, static_cast<int>(H));
  core_.backward(dx.data(), dh0.data(), lstm ? dc0.data() : nullptr, d_seq.data(), nullptr,
                 nullptr);

  // Projection. dW_hy [O, H] += d_y^T [O, N] h_T [N, H]; db_y [O] += sum over the batch.
  gemm(Trans::T, Trans::N, static_cast<int>(O), static_cast<int>(H), static_cast<int>(N), T(1),
       dy, static_cast<int>(O), h_last, static_cast<int>(H), T(1), dw_hy_.data(),
       static_cast<int>(H));
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t o = 0; o < O; ++o) db_y_.data()[o] += dy[n * O + o];

  for (std::size_t t = 0; t < T_; ++t)
    std::memcpy(d_sequence[t].data(), dx.data() + t * N * C, N * C * sizeof(T));
  return d_sequence;
}

template class BasicRecurrentLayer<float>;
template class BasicRecurrentLayer<double>;

}  // namespace pyrnn
