#include "pyrnn/recurrent.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <iomanip>
#include <vector>

#include "pyrnn/error.h"
#include "pyrnn/kernels/cells.h"
#include "pyrnn/kernels/gemm.h"
#include "pyrnn/random.h"
#include "step_sync.h"
#include "team.h"
#include "team_errors.h"

namespace pyrnn {

namespace {
// Process-wide, so no two forwards (of any objects) share one: see forward_serial().
std::uint64_t next_forward_serial() {
  static std::atomic<std::uint64_t> count{0};
  return ++count;
}

// Asks for n elements at p to be brought towards the cache (a hint: never faults).
template <typename T>
inline void prefetch(const T* p, std::size_t n) {
  const char* b = reinterpret_cast<const char*>(p);
  for (std::size_t i = 0; i < n * sizeof(T); i += 64) __builtin_prefetch(b + i, 0, 2);
}
// One weight pack of a pass: out = pack of op(B) [K x N] (out null: nothing to pack).
template <typename T>
struct PackJob {
  kernels::PackedB<T>* out;
  kernels::Trans tb;
  int K, N;
  const T* B;
  int ldb;
};
// A pass's weight packs are independent: over 1 MiB in all (megabytes each at the large sizes)
// they run on up to one thread each; smaller ones stay on the calling thread, as a parallel
// region costs microseconds. An exception (out of memory in a pack) is carried out of the
// parallel region and rethrown: thrown inside, it would abort.
template <typename T>
void pack_weights(const kernels::Ops<T>& K, std::initializer_list<PackJob<T>> jobs) {
  std::vector<PackJob<T>> todo;
  std::size_t bytes = 0;
  for (const PackJob<T>& job : jobs)
    if (job.out) {
      todo.push_back(job);
      bytes += static_cast<std::size_t>(job.K) * job.N * sizeof(T);
    }
  const int n = static_cast<int>(todo.size());
  const int threads = bytes >= (std::size_t(1) << 20) ? std::min(n, get_num_threads()) : 1;
  auto pack = [&](const PackJob<T>& j) { K.pack_b(*j.out, j.tb, j.K, j.N, j.B, j.ldb); };
  if (threads <= 1) {
    for (const PackJob<T>& job : todo) pack(job);
    return;
  }
  detail::TeamErrors errors(n);  // one per job
  // (A team of the pool's size when that is larger: members past the jobs idle.)
  const int size = detail::start_team(threads);
#pragma omp parallel for num_threads(size) schedule(static, 1)
  for (int i = 0; i < n; ++i) errors.run(i, [&] { pack(todo[static_cast<std::size_t>(i)]); });
  errors.rethrow();
}
// A training forward's gate cache (one layer and direction) above this size is streamed into
// from a hot per-step slot instead of written in place (see forward_direction).
constexpr std::size_t kStreamedCache = std::size_t(8) << 20;

// How a pass's steps are shared among threads (see forward_direction): by batch rows when one
// layer and direction's weights fit in L2 with room (no step needs another thread's rows), else
// by hidden units (whole panels of nr columns; one thread when H is not a multiple of nr and
// the batch is too small to share by rows).
// Rows also where units cannot be split (H not a multiple of nr) and there are rows to share:
// each thread then reads all the weights from L3, still far quicker than one thread alone
// (LSTM (50, 64, 300, 300) on 2 threads ran at 1 thread's speed, 1.5x PyTorch's time).
// unit_k: the K of the per-step product that decides whether splitting units pays: by its
// multiply-adds (gemm_threads), or by the weights it reads: past 256 KiB a few rows' product is
// bound by reading them (from L2 or beyond), not by its arithmetic, and halves on 2 threads,
// once the pass's steps read enough (8 MiB in all) to repay waking the team (one step of RNN
// (1, 1, 256, 256) on 2 threads: 0.051 -> 0.065-0.075 ms). LSTM (100, 1, 256, 256) on 2
// threads, eval: 1.68 -> 1.01 ms (1.2x PyTorch's time -> 0.64x); (100, 8, 128, 128) 2.0 ->
// 1.3 ms.
struct StepSplit {
  bool by_rows;
  int threads;
};
inline StepSplit step_split(int T, int N, int G, int H, int C, std::size_t elem_bytes, int nr,
                            int unit_k) {
  const int want = kernels::gemm_threads(N, G * H, C + H);
  const std::size_t weight_bytes =
      static_cast<std::size_t>(G) * H * (static_cast<std::size_t>(C) + H) * elem_bytes;
  if (want > 1 && N >= 16 && (weight_bytes <= (std::size_t(768) << 10) || H % nr != 0))
    return {true, std::min(want, N / 8)};
  const double step_weight_bytes = static_cast<double>(G) * H * unit_k * elem_bytes;
  const bool read_bound = step_weight_bytes >= 256.0 * 1024 &&
                          T * step_weight_bytes >= 8.0 * 1024 * 1024;
  const int units = read_bound ? get_num_threads() : kernels::gemm_threads(N, G * H, unit_k);
  return {false, H % nr == 0 ? std::min(units, H / nr) : 1};
}

// A forward pass's plan for one layer and direction (forward_direction runs it; check_forward
// sizes its buffers by it): the step split, whether the input projection g_t = x_t W_ih^T + b
// runs per step (step_proj) or as one GEMM over all steps (on big_threads threads, or with W_ih
// read in place on the step team), and which weights the steps read in place (unpacked).
// A batch of fewer than 8 rows (an AVX-512 micro-tile) makes the per-step projection a
// matrix-vector product that reads all of W_ih at every step: past L2 (here 256 KiB) that is
// what a step costs (LSTM (50, 1, 1024, 1024): 1.0-2.2x PyTorch's time over several runs; torch
// reads W_ih once). Such a batch takes the one GEMM over all steps instead, whose [T, N, G*H]
// gates are then small; in eval only while they (and GRU's [T, N, H] aux) stay within
// kStreamedCache, as eval keeps its buffers: a long sequence or a very wide W_ih keeps the
// per-step slot.
std::atomic<int> g_weights_in_place{-1};  // detail::set_weights_in_place
// Whether a product of M rows by K reads them where they lie (kernels' a_in_place, alpha 1):
// then B read a panel at a time (gemm_b_panels) costs no repacking of A per panel.
inline bool a_direct(long long M, int K, std::size_t elem_bytes) {
  return M <= 8 || static_cast<double>(M) * K * elem_bytes <= 512.0 * 1024;
}
struct ForwardPlan {
  StepSplit split;
  int big_threads;
  bool step_proj;
  bool hh_in_place, ih_in_place;  // W_hh, W_ih read in place by the steps (see below)
};
inline ForwardPlan forward_plan(int T, int N, int G, int H, int C, std::size_t elem_bytes,
                                int nr, bool training) {
  const StepSplit split = step_split(T, N, G, H, C, elem_bytes, nr, H);
  const int big = kernels::gemm_threads(static_cast<long long>(T) * N, G * H, C);
  const double w_ih = static_cast<double>(G) * H * C * elem_bytes;
  const double gates = static_cast<double>(T) * N * (G + (G == 3 ? 1 : 0)) * H * elem_bytes;
  const bool vector_steps = N < 8 && w_ih > 256.0 * 1024 &&
                            (training || gates <= static_cast<double>(kStreamedCache));
  // Weights read in place (gemm_b_panels): packing one costs about two passes over it, then
  // each step's product reads it once. Read in place, up to 8 rows a step costs up to twice a
  // packed one from cache (B transposed in registers, to keep the packed path's bits) and the
  // same from memory; more rows take one panel at a time, packed right before all rows use it
  // (one pass over the weight per product: for a weight one product uses, never slower).
  // So past 256 KiB:
  //  - W_ih (one product over all T*N rows) is read in place when those are at most 8, or when
  //    they are few enough that the product reads them where they lie (a_direct) and the step
  //    team has the threads that product would use: a per-step projection read all of W_ih at
  //    every step (LSTM (16, 8, 1024, 1024): as slow as PyTorch, which reads it once);
  //  - W_hh for one step (a_direct rows), or for up to 8 rows of steps once it is past what
  //    caches hold beside its pack (8 MiB), up to 4 steps unless the steps are shared by
  //    several threads.
  // Measured on Zen 4 (1 MiB L2), eval: GRU (1, 1, 1024, 1024) on 1 thread 5.1-6.2 -> 1.4-1.5
  // ms; (8, 1, 1024, 1024) on 2 threads 5.1 -> 2.9 ms (3.5-3.9 with W_ih alone in place); but
  // with W_hh in place too, (4, 1, 512, 512) 0.52 -> 0.62 ms (1 thread), and (8, 1, 1000, 1000),
  // whose steps run on one thread, 4.7 -> 5.2 ms. Past 8 rows, 1 thread: RNN (1, 32, 1024,
  // 1024) 2.7-3.2 -> 2.2-2.4 ms, GRU 8.9-11 -> 6.5-6.7 (PyTorch 2.3-2.5 and 7.0-7.6); LSTM
  // (16, 8, 1024, 1024) 34.6-35.4 -> 28.4-29.8 (PyTorch 34-37).
  const double w_hh = static_cast<double>(G) * H * H * elem_bytes;
  const long long rows = static_cast<long long>(T) * N;
  const int mode = g_weights_in_place.load(std::memory_order_relaxed);
  const bool hh_in_place =
      mode > 0 || (mode < 0 && w_hh > 256.0 * 1024 &&
                   ((T == 1 && a_direct(N, H, elem_bytes)) ||
                    (rows <= 8 && w_hh > 8.0 * 1024 * 1024 && (T <= 4 || split.threads > 1))));
  // (Not by rows: each thread would project every row, its steps' and the others'. Past 8 rows,
  // eval keeps the [T, N, G*H] gates of one product only within kStreamedCache, as above.)
  const bool ih_in_place =
      !split.by_rows &&
      (mode > 0 ||
       (mode < 0 && w_ih > 256.0 * 1024 &&
        (rows <= 8 || (a_direct(rows, C, elem_bytes) && split.threads >= big &&
                       (training || gates <= static_cast<double>(kStreamedCache))))));
  return {split, big, split.threads >= big && !vector_steps && !ih_in_place, hh_in_place,
          ih_in_place};
}

// batch_first: the caller's [N, T, W] buffers are read and written in place, row (t, n) at
// n*T*W + t*W, so a step's N rows are T*W apart. The GEMMs take that stride as an int lda / ldc
// (x and d x: T*C; the eval projection's gates, one GEMM over a batch-major x: T*G*H); beyond
// it, forward and backward go through time-major copies (stage_in, stage_out).
std::atomic<long long> g_batch_major_limit{2147483647LL};
inline bool batch_major_in_place(double T, double C, double GH) {
  return T * std::max(C, GH) <=
         static_cast<double>(g_batch_major_limit.load(std::memory_order_relaxed));
}
// dst [B, A, W] = src [A, B, W]: the first two axes swapped (time-major <-> batch-major).
template <typename T>
void swap01(T* dst, const T* src, std::size_t A, std::size_t B, std::size_t W) {
  for (std::size_t a = 0; a < A; ++a)
    for (std::size_t b = 0; b < B; ++b)
      std::memcpy(dst + (b * A + a) * W, src + (a * B + b) * W, W * sizeof(T));
}
// Where row (t, n) of a [T, N, W] (time-major) or [N, T, W] (batch-major) buffer starts.
struct Rows {
  std::size_t t, n;  // elements between steps, between sequences
  std::size_t at(std::size_t ti, std::size_t ni) const { return ti * t + ni * n; }
};
inline Rows rows_of(bool batch_major, std::size_t T, std::size_t N, std::size_t W) {
  return batch_major ? Rows{W, T * W} : Rows{N * W, W};
}
}  // namespace

namespace detail {
void set_batch_major_stride_limit(long long elements) {
  g_batch_major_limit.store(elements > 0 ? elements : 2147483647LL, std::memory_order_relaxed);
}
void set_weights_in_place(int mode) {
  g_weights_in_place.store(mode < 0 ? -1 : mode > 0 ? 1 : 0, std::memory_order_relaxed);
}
}  // namespace detail

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
  // 2*hidden_size in double: in int it overflows for hidden_size >= 2^30.
  PYRNN_CHECK(gh * std::max(static_cast<double>(input_size), 2.0 * hidden_size) < 2147483647.0,
              "layer too large: gates*hidden_size*max(input_size, 2*hidden_size) = ", std::fixed,
              std::setprecision(0), gh * std::max(static_cast<double>(input_size), 2.0 * hidden_size),
              " is 2^31 or more, the GEMMs' int sizes (hidden_size=", hidden_size,
              ", input_size=", input_size, ")");
}

double RecurrentConfig::parameter_elements() const {
  const double GH = static_cast<double>(gates()) * hidden_size, H = hidden_size,
               D = directions();
  const double per_dir = GH * H + (bias ? GH + H : 0) + 8.0;  // W_hh, biases (+ slack)
  return D * (GH * input_size + (num_layers - 1.0) * GH * D * H) + D * num_layers * per_dir;
}

template <typename T>
Recurrent<T>::Recurrent(const RecurrentConfig& config) : cfg_(config) {
  cfg_.validate();
  const int G = cfg_.gates(), H = cfg_.hidden_size, D = cfg_.directions();
  const std::size_t GH = static_cast<std::size_t>(G) * H;
  // Parameters + gradients, refused before anything is allocated.
  check_allocation(cfg_.parameter_elements() * 2 * sizeof(T),
                   "the layer's parameters and gradients");
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
void Recurrent<T>::check_forward(int steps, int batch, bool training,
                                 double caller_bytes) const {
  PYRNN_CHECK(steps >= 1, "sequence length must be >= 1, got ", steps);
  PYRNN_CHECK(batch >= 1, "batch size must be >= 1, got ", batch);
  const int L = cfg_.num_layers, D = cfg_.directions(), H = cfg_.hidden_size, G = cfg_.gates();
  const bool lstm = cfg_.cell == CellType::LSTM, gru = cfg_.cell == CellType::GRU;
  const double T_ = steps, N = batch, tn = T_ * N, dh = static_cast<double>(D) * H;
  // Every buffer offset is a size_t; the int sizes are the GEMMs' (rows T*N of the input
  // projection, at most 4N rows per weight-gradient block, widths bounded by validate()).
  PYRNN_CHECK(tn < 2147483648.0, "steps * batch = ", steps, " * ", batch,
              " rows overflow the 32-bit GEMM row count (must be < 2^31)");
  // The buffers this forward allocates (DirCache / LayerCache / the hot slot), refused up
  // front. Training keeps every layer and direction's cache. Eval reuses D direction buffers
  // and two layer outputs, and keeps a [T, N, G*H] gate buffer only where the input projection
  // runs as one GEMM over all steps (forward_direction's step_proj, mirrored here); per-step
  // projections use one [N, (G+1)*H] slot.
  const double slots = training || keep_states_ ? T_ + 1.0 : 2.0;  // see keep_state_sequence
  const double states = (lstm ? 2.0 : 1.0) * slots * N * H;         // dc.h, dc.c
  const double gate_cache = tn * G * H + (gru ? tn * H : 0.0);     // dc.g, dc.aux
  const double scratch = N * G * H;                                 // scratch_
  double need;
  if (training) {
    // Layer caches: layer 0's x, each lower layer's y, and with dropout the next x and a mask.
    const bool drop = cfg_.dropout > 0.0 && L > 1;
    const double layer_caches =
        tn * (cfg_.input_size + (L - 1.0) * dh * (drop ? 3.0 : 1.0));
    const double hot_slot = N * (G + 1.0) * H;  // step_g_, step_aux_ (large caches stream)
    need = static_cast<double>(L) * D * (states + gate_cache + scratch) + layer_caches + hot_slot;
  } else {
    const int nr = kernels::ops<T>().nr;
    bool any_cold = false, any_hot = false;
    for (int k = 0; k < L; ++k) {
      const ForwardPlan plan =
          forward_plan(steps, batch, G, H, cfg_.layer_input_size(k), sizeof(T), nr, false);
      (plan.step_proj ? any_hot : any_cold) = true;
    }
    need = D * (states + scratch + (any_cold ? gate_cache : 0.0)) +
           std::min(L - 1, 2) * tn * dh + (any_hot ? N * (G + 1.0) * H : 0.0);
  }
  // batch_first past the in-place strides: y, and in eval x, through time-major copies.
  if (cfg_.batch_first && !batch_major_in_place(T_, cfg_.input_size, static_cast<double>(G) * H))
    need += tn * dh + (training ? 0.0 : tn * cfg_.input_size);
  check_allocation(need * sizeof(T) + caller_bytes, "this forward's activations");
}

template <typename T>
void Recurrent<T>::forward(T* y, T* hn, T* cn, const T* x, const T* h0, const T* c0,
                           const std::int64_t* lengths, int steps, int batch, bool training,
                           std::uint64_t seed) {
  moved_.check("Recurrent::forward");
  PYRNN_CHECK(steps >= 1, "sequence length must be >= 1, got ", steps);
  PYRNN_CHECK(batch >= 1, "batch size must be >= 1, got ", batch);
  PYRNN_CHECK(x && y && hn, "forward: null buffer: ", x ? "" : "x ", y ? "" : "y ",
              hn ? "" : "hn ", "(x [T, N, C], y [T, N, D*H] and hn [L*D, N, H] are required)");
  const bool lstm = cfg_.cell == CellType::LSTM;
  PYRNN_CHECK(!lstm || cn, "forward: LSTM needs a c_n buffer");
  const int L = cfg_.num_layers, D = cfg_.directions(), H = cfg_.hidden_size;
  const std::size_t T_ = steps, N = batch;
  check_forward(steps, batch, training);

  // From here a failed or eval forward leaves nothing to backpropagate through (a call refused
  // by the argument checks above leaves the last forward's cache, as PyTorch leaves its graph).
  cached_ = false;
  serial_ = next_forward_serial();
  lengths_.clear();
  if (lengths) {
    // Read once, then checked: the caller's array may change meanwhile (another thread), and
    // a value checked is then the value used.
    lengths_.assign(lengths, lengths + N);
    bool all_full = true;
    for (std::size_t n = 0; n < N; ++n) {
      const std::int64_t len = lengths_[n];
      PYRNN_CHECK(len >= 1 && len <= steps, "lengths[", n, "] = ", len, " is outside [1, ",
                  steps, "]");
      all_full = all_full && len == steps;
    }
    if (all_full) lengths_.clear();
  }
  steps_ = steps;
  training_ = training;
  ring_ = !training && !keep_states_;
  batch_ = batch;

  const bool drop = training && cfg_.dropout > 0.0 && L > 1;
  layers_.resize(training ? L : 2);
  dirs_.resize(training ? static_cast<std::size_t>(L) * D : D);
  const std::size_t DH = static_cast<std::size_t>(D) * H, C = cfg_.input_size;
  const T scale = static_cast<T>(1.0 / (1.0 - cfg_.dropout));

  // batch_first: layer 0 reads x (eval) and the last layer writes y in place, unless their
  // strides overflow the GEMMs' int (then through time-major copies). Training reads x from
  // its time-major cache, whose copy swaps the axes on the way.
  const bool bf = cfg_.batch_first;
  const bool bm = bf && batch_major_in_place(T_, C, static_cast<double>(cfg_.gates()) * H);
  T* const y_user = y;
  // Locals (gigabytes when used): freed at the end of the call, a failed one included.
  AlignedBuffer<T> stage_in, stage_out;  // [T, N, C], [T, N, D*H]
  if (bf && !bm) {
    if (!training) {
      stage_in.resize(T_ * N * C);
      swap01(stage_in.data(), x, N, T_, C);
      x = stage_in.data();
    }
    stage_out.resize(T_ * N * DH);
    y = stage_out.data();
  }
  const T* in = x;
  if (training) {
    layers_[0].x.resize(T_ * N * C);
    if (bf) swap01(layers_[0].x.data(), x, N, T_, C);
    else std::memcpy(layers_[0].x.data(), x, T_ * N * C * sizeof(T));
    // Steps past a sequence's end are never used (PyTorch never reads them), but the weight
    // gradient multiplies their rows by d pre-activations of 0: 0 * NaN (padding that is NaN,
    // inf or uninitialised) would turn d W_ih into NaN. Zeros there change nothing else.
    for (std::size_t n = 0; n < N && !lengths_.empty(); ++n)
      for (std::size_t t = static_cast<std::size_t>(lengths_[n]); t < T_; ++t)
        std::fill_n(layers_[0].x.data() + (t * N + n) * C, C, T(0));
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
                        c0 ? c0 + slot * N * H : nullptr, k, d, bm && k == 0 && !training,
                        bm && k == L - 1);
      const std::size_t last = state_slot(d == 0 ? T_ : 0);
      std::memcpy(hn + slot * N * H, dc.h.data() + last * N * H, N * H * sizeof(T));
      if (lstm) std::memcpy(cn + slot * N * H, dc.c.data() + last * N * H, N * H * sizeof(T));
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
      next.x.resize(T_ * N * DH);
      lc.mask.resize(T_ * N * DH);
      for (std::size_t i = 0; i < T_ * N * DH; ++i) {
        const bool keep = uniform01(seed, static_cast<std::uint64_t>(k), i) >= cfg_.dropout;
        lc.mask[i] = keep ? scale : T(0);
        next.x[i] = out[i] * lc.mask[i];
      }
    } else {
      lc.mask.resize(0);
      next.x.resize(0);
    }
    in = layer_input(k + 1);
  }
  if (y != y_user) swap01(y_user, y, T_, N, DH);
  cached_ = training;
}

template <typename T>
void Recurrent<T>::forward_direction(DirCache& dc, T* y, const T* x, const T* h0, const T* c0,
                                     int layer, int dir, bool x_bm, bool y_bm) {
  const std::size_t T_ = steps_, N = batch_, H = cfg_.hidden_size;
  const int G = cfg_.gates(), Hi = cfg_.hidden_size, Ni = batch_;
  const std::size_t GH = G * H, DH = cfg_.directions() * H;
  const int C = cfg_.layer_input_size(layer);
  const bool lstm = cfg_.cell == CellType::LSTM, gru = cfg_.cell == CellType::GRU;
  const bool relu = cfg_.cell == CellType::RNN_RELU;
  const bool split = gru && !cfg_.reset_after;  // the seeds' GRU: W_hn applies to r*h
  const Weights w = weights(layer, dir);
  const kernels::Ops<T>& K = kernels::ops<T>();

  const ForwardPlan plan = forward_plan(steps_, Ni, G, Hi, C, sizeof(T), K.nr, training_);
  // The weights, packed once for all steps, unless read in place.
  const bool hh_packed = !plan.hh_in_place, ih_packed = !plan.ih_in_place;
  pack_weights<T>(K, {{ih_packed ? &pack_ih_ : nullptr, Trans::T, C, G * Hi, w.w_ih, C},
                      {hh_packed ? &pack_hh_ : nullptr, Trans::T, Hi, split ? 2 * Hi : G * Hi,
                       w.w_hh, Hi},
                      {split && hh_packed ? &pack_hn_ : nullptr, Trans::T, Hi, Hi,
                       w.w_hh + 2 * H * H, Hi}});
  // A step's recurrent products over column panels: h W_hh^T (GRU: its r,z rows; the seeds' GRU
  // then (r*h) W_hn^T), from the packed weights or read in place: the same bits.
  auto hh_product = [&](int M, const T* a, T beta, T* c, int ldc, const int* rg, int nrg) {
    if (hh_packed)
      K.gemm_panels(Trans::N, M, a, Hi, T(1), pack_hh_, beta, nullptr, c, ldc, rg, nrg);
    else
      K.gemm_b_panels(Trans::T, M, a, Hi, T(1), w.w_hh, Hi, split ? 2 * Hi : G * Hi, Hi, beta,
                      nullptr, c, ldc, rg, nrg);
  };
  auto hn_product = [&](int M, const T* a, T* c, int ldc, const int* rg, int nrg) {
    if (hh_packed)
      K.gemm_panels(Trans::N, M, a, Hi, T(1), pack_hn_, T(0), nullptr, c, ldc, rg, nrg);
    else
      K.gemm_b_panels(Trans::T, M, a, Hi, T(1), w.w_hh + 2 * H * H, Hi, Hi, Hi, T(0), nullptr,
                      c, ldc, rg, nrg);
  };
  // Two ways to share the steps among threads; either way every element has one writer and one
  // summation order, so the bits do not depend on the thread count.
  //  - Rows: each thread runs the whole recurrence for its own batch rows (all units). No step
  //    needs another thread's results: no barrier at all, so one thread's hiccup never stalls
  //    the others. Each thread reads all the weights, so this is for weights that fit in L2,
  //    or for hidden sizes that units cannot split (see step_split).
  //  - Units: threads own slices of hidden units, in whole GEMM panels, across every gate, and
  //    meet at one barrier per step (h_t complete); each streams only its share of the weights.
  //    The barrier is split (step_sync.h): the next step's input projection fills its wait.
  //    Hidden sizes that are not a multiple of the panel width run it on one thread.
  const int nr = K.nr;
  // The input projection g_t = x_t W_ih^T + b runs per step, by each thread for its own units
  // right before its cell reads them (g_t is then hot in L1/L2 instead of fetched from a
  // [T, N, GH] buffer written long before), unless one GEMM over all steps is better (it would
  // use more threads than the step loop has; a few rows with a large W_ih; W_ih read in place:
  // forward_plan). Same k order and epilogue either way: same bits.
  const bool by_rows = plan.split.by_rows;
  const int nth = plan.split.threads;
  const int ngates = split ? 2 : G;
  const int big_threads = plan.big_threads;
  const bool step_proj = plan.step_proj;
  // With the per-step projection, eval computes a step's gates (and GRU aux) in one slot, hot
  // in L1/L2. Training does too when its cache is larger than caches hold (kStreamedCache), then
  // streams each finished step into it for backward (cache_step below): written in place, its
  // cold lines stalled every projection epilogue (~7% of a large LSTM's training forward). A
  // smaller cache is written in place: streaming sends it to DRAM and fences every step (+15%
  // on a (50, 1, 32, 8) LSTM's training pass). Without the per-step projection, the one big
  // projection fills the cache directly.
  const std::size_t cache_bytes = T_ * N * (GH + (gru ? H : 0)) * sizeof(T);
  const bool hot = step_proj && (!training_ || cache_bytes > kStreamedCache);
  // dc.g and dc.aux hold every step (eval with the hot slot leaves them alone). Eval buffers
  // only grow: inference on varying shapes does not reallocate (and zero) them every call.
  const bool keep = training_ || !hot;
  auto fit = [&](AlignedBuffer<T>& buf, std::size_t n) {
    if (training_ ? buf.size() != n : buf.size() < n) buf.resize(n);
  };
  if (keep) fit(dc.g, T_ * N * GH);
  if (gru && keep) fit(dc.aux, T_ * N * H);
  if (hot) fit(step_g_, N * GH);
  if (hot && gru) fit(step_aux_, N * H);
  // Every step's state (training, keep_states_), or the two a step reads and writes (eval): its
  // threads meet at a barrier each step after reading h_{t-1}, so slot t-1 is free to be h_{t+1}.
  const std::size_t state_slots = ring_ ? 2 : T_ + 1;
  fit(dc.h, state_slots * N * H);  // (eval: grow only, so a validation pass between training
  if (lstm) fit(dc.c, state_slots * N * H);  // passes frees and re-zeroes nothing)
  scratch_.resize(N * GH);
  T* g = hot ? step_g_.data() : dc.g.data();  // [N, GH] (hot), [T, N, GH] or [N, T, GH]
  T* aux = !gru ? nullptr : hot ? step_aux_.data() : dc.aux.data();  // [N, H] or [T, N, H]
  T* hs = dc.h.data();     // [T+1, N, H] or [2, N, H] (state_slot)
  T* cs = dc.c.data();     // [T+1, N, H] or [2, N, H]
  T* r = scratch_.data();  // [N, GH] recurrent products of one step
  // Rows (t, n) of x [T, N, C] or [N, T, C], y [T, N, D*H] or [N, T, D*H] (batch_first's,
  // in place), and g: the one big projection below writes it in x's row order.
  const Rows xrows = rows_of(x_bm, T_, N, C), yrows = rows_of(y_bm, T_, N, DH);
  const Rows grows = hot ? Rows{0, GH} : rows_of(x_bm, T_, N, GH);
  const int ldg = static_cast<int>(grows.n), ldx = static_cast<int>(xrows.n);
  // Input projection of every step at once, bias fused: g = x W_ih^T + b (read in place: by
  // the step team below, each thread for the units it then reads).
  if (!step_proj && ih_packed)
    K.gemm_packed(Trans::N, static_cast<int>(T_ * N), x, C, T(1), pack_ih_, T(0), w.b, g,
                  G * Hi, big_threads);

  const std::size_t first = state_slot(dir == 0 ? 0 : T_);
  if (h0) std::memcpy(hs + first * N * H, h0, N * H * sizeof(T));
  else std::fill(hs + first * N * H, hs + (first + 1) * N * H, T(0));
  if (lstm) {
    if (c0) std::memcpy(cs + first * N * H, c0, N * H * sizeof(T));
    else std::fill(cs + first * N * H, cs + (first + 1) * N * H, T(0));
  }
  // Steps before which every sequence is still running (all of them without lengths).
  const std::size_t all_active_until =
      lengths_.empty() ? T_ : static_cast<std::size_t>(*std::min_element(lengths_.begin(), lengths_.end()));
  StepSync sync(nth);  // by units: the step barrier, split around the next step's projection
  const int size = detail::start_team(nth);  // (the pool's size if larger: members past nth idle)
  detail::TeamErrors errors(size);
#pragma omp parallel num_threads(size) if (size > 1)
  {
    const int tid = detail::team_member(), team = detail::sharers(nth);
    // start_team's extra members (tid >= team) skip the steps; their shares come out empty.
    const bool works = tid < team;
    // This thread's batch rows [n0, n1) (whole micro-tiles) and hidden units [u0, u1).
    const int uteam = by_rows ? 1 : team;
    const detail::Span rows = by_rows ? detail::share(N, tid, team, 8) : detail::Span{0, N};
    const detail::Span units = detail::share(Hi, by_rows ? 0 : tid, uteam, nr);
    const std::size_t n0 = rows.begin, n1 = rows.end;
    const int Mr = static_cast<int>(n1 - n0);
    const int u0 = static_cast<int>(units.begin), u1 = static_cast<int>(units.end);
    int ranges[8], ranges_n[2] = {u0 / nr, (u1 + nr - 1) / nr};
    for (int q = 0; q < ngates; ++q) {
      ranges[2 * q] = (q * Hi + u0) / nr;
      ranges[2 * q + 1] = (q * Hi + u1 + nr - 1) / nr;
    }
    // The input projection's panels: this thread's units in every gate (one run when alone).
    int ranges_ih[8] = {0, (G * Hi + nr - 1) / nr}, nranges_ih = 1;
    if (uteam > 1) {
      for (int q = 0; q < G; ++q) {
        ranges_ih[2 * q] = (q * Hi + u0) / nr;
        ranges_ih[2 * q + 1] = (q * Hi + u1 + nr - 1) / nr;
      }
      nranges_ih = G;
    }
    const std::size_t U0 = u0, U = Mr > 0 ? u1 - u0 : 0;
    // g_t = x_t W_ih^T + b for this thread's rows and units (step s), and a prefetch of the
    // next step's input rows (a new block each step; backwards for the reverse direction).
    auto project = [&](std::size_t s) {
      const std::size_t t = dir == 0 ? s : T_ - 1 - s;
      if (s + 1 < T_) {
        const T* next = x + xrows.at(dir == 0 ? t + 1 : t - 1, n0);
        if (x_bm) {
          for (std::size_t n = n0; n < n1; ++n) prefetch(next + (n - n0) * xrows.n, C);
        } else {
          prefetch(next, (n1 - n0) * C);
        }
      }
      if (U)
        K.gemm_panels(Trans::N, Mr, x + xrows.at(t, n0), ldx, T(1), pack_ih_, T(0), w.b,
                      g + grows.at(t, n0), ldg, ranges_ih, nranges_ih);
    };
    // Training with the hot slot: step s's gates (activations now) and GRU aux, this thread's
    // rows or units, into the cache.
    auto cache_step = [&](std::size_t s) {
      if (!(training_ && hot) || !U) return;
      const std::size_t t = dir == 0 ? s : T_ - 1 - s;
      T* gc = dc.g.data() + t * N * GH;  // [N, GH]
      T* ac = gru ? dc.aux.data() + t * N * H : nullptr;  // [N, H]
      if (uteam == 1) {
        K.stream_copy(Mr, G * Hi, g + n0 * GH, G * Hi, gc + n0 * GH, G * Hi);
        if (gru) K.stream_copy(Mr, Hi, aux + n0 * H, Hi, ac + n0 * H, Hi);
        return;
      }
      for (int q = 0; q < G; ++q)
        K.stream_copy(Ni, static_cast<int>(U), g + q * H + U0, G * Hi, gc + q * H + U0, G * Hi);
      if (gru) K.stream_copy(Ni, static_cast<int>(U), aux + U0, Hi, ac + U0, Hi);
    };
    // This thread's scratch for its products, before anything is written (TeamErrors): the
    // steps run only if every thread has its own.
    errors.run(tid, [&] {
      if (!U) return;
      if (step_proj) K.reserve_a(Trans::N, Mr, pack_ih_.K, T(1));
      if (hh_packed) K.reserve_a(Trans::N, Mr, pack_hh_.K, T(1));
      if (split && hh_packed) K.reserve_a(Trans::N, Mr, pack_hn_.K, T(1));
      if (!hh_packed) K.reserve_b_panels(Trans::T, Mr, Hi, T(1));
      if (!ih_packed) K.reserve_b_panels(Trans::T, static_cast<int>(T_ * N), C, T(1));
    });
#pragma omp barrier
    detail::TeamWork work;
    // g = x W_ih^T + b over all T*N rows, W_ih read in place, for this thread's units (the
    // only ones its steps read; never by rows: forward_plan).
    if (!ih_packed && works && U && !errors.failed())
      K.gemm_b_panels(Trans::T, static_cast<int>(T_ * N), x, C, T(1), w.w_ih, C, G * Hi, C, T(0),
                      w.b, g, G * Hi, ranges_ih, nranges_ih);
    for (std::size_t s = 0; works && s < T_ && !errors.failed(); ++s) {
      const std::size_t t = dir == 0 ? s : T_ - 1 - s;
      const std::size_t prev = state_slot(dir == 0 ? t : t + 1);
      const std::size_t cur = state_slot(dir == 0 ? t + 1 : t);
      const std::size_t gs = hot ? 0 : t;  // slot of step t in aux
      const T* hp = hs + prev * N * H;  // [N, H]
      T* hc = hs + cur * N * H;         // [N, H]
      T* gt = g + grows.at(t, 0);       // [N, GH], rows ldg apart
      T* at = gru ? aux + gs * N * H : nullptr;  // [N, H]
      // By units the projection of this step ran while waiting at the last one's barrier (it
      // needs no h); h_{t-1} was just completed, half of it by the other threads: ask for it.
      if (uteam > 1) prefetch(hp, N * H);
      if (step_proj && (uteam == 1 || s == 0)) project(s);
      // RNN, LSTM: the recurrent product accumulates onto g_t (the cell then reads one array;
      // the bits equal one sum over [x_t, h_{t-1}]); GRU keeps it apart (r scales its n part).
      if (U && !gru)
        hh_product(Mr, hp + n0 * H, T(1), gt + n0 * grows.n, ldg, ranges_ih, nranges_ih);
      else if (U)
        hh_product(Mr, hp + n0 * H, T(0), r + n0 * GH, G * Hi, ranges, ngates);
      // RNN over whole rows of units narrower than a 64-byte vector, every row active: the
      // rows' pre-activations are one run (one gate: ldg = H), so one cell call covers them all.
      // Per row, such an H filled a lane or a few per call (H = 1: 27% of the layer's time,
      // plus two memcpy calls a row); from one vector a row up, row by row was 2-3% faster
      // (each row's cell output still in L1 for its copies). The cell's bits do not depend on
      // a value's lane.
      const bool one_run = U == H && H * sizeof(T) < 64 && Mr > 0 && !gru && !lstm &&
                           ldg == Hi && t < all_active_until;
      if (one_run) {
        T* run = gt + n0 * H;  // [Mr, H]
        const int len = Mr * Hi;
        K.rnn_forward_row(len, 0, len, relu, run, nullptr);
        std::memcpy(hc + n0 * H, run, static_cast<std::size_t>(len) * sizeof(T));
        if (yrows.n == H) {
          std::memcpy(y + yrows.at(t, n0) + dir * H, run, static_cast<std::size_t>(len) * sizeof(T));
        } else {
          for (std::size_t n = n0; n < n1; ++n)
            std::memcpy(y + yrows.at(t, n) + dir * H, run + (n - n0) * H, H * sizeof(T));
        }
      }
      for (std::size_t n = n0; n < n1 && U && !one_run; ++n) {
        T* gr = gt + n * grows.n;
        const T* rr = gru ? r + n * GH : nullptr;
        const T* hpr = hp + n * H;
        T* hcr = hc + n * H;
        T* yr = y + yrows.at(t, n) + dir * H;  // this direction's slice of y[t, n]
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
        if (uteam > 1) sync.sync(tid, team);
        // The seeds' GRU: W_hn needs r*h_prev of every unit.
        T* rn = r + 2 * H;  // [N, H] in the n columns of the step scratch
        if (U) hn_product(Mr, at + n0 * H, rn + n0 * GH, G * Hi, ranges_n, 1);
        for (std::size_t n = n0; n < n1 && U; ++n)
          if (active(static_cast<int>(n), static_cast<int>(t))) {
            K.gru_before_state_row(Hi, u0, u1, gt + n * grows.n, rn + n * GH, hp + n * H,
                                   hc + n * H);
            std::memcpy(y + yrows.at(t, n) + dir * H + U0, hc + n * H + U0, U * sizeof(T));
          }
      }
      if (uteam > 1) {
        // h_t complete for this thread's units; caching this step and the next projection fill
        // the wait for the others' (its own units' g slot is read by nobody else, its aux units
        // only read by the others' W_hn products until the barrier: no hazard with one slot).
        sync.arrive(tid);
        cache_step(s);
        if (step_proj && s + 1 < T_) project(s + 1);
        sync.wait(tid, team);
      } else {
        cache_step(s);
      }
    }
  }
  errors.rethrow();
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
  const std::size_t C = cfg_.input_size;

  // batch_first: dy and dx in place, or through time-major copies (as forward's x and y).
  const bool bf = cfg_.batch_first;
  const bool bm = bf && batch_major_in_place(T_, C, static_cast<double>(cfg_.gates()) *
                                                        cfg_.hidden_size);
  T* const dx_user = dx;
  AlignedBuffer<T> stage_in, stage_out;  // [T, N, D*H], [T, N, C]; freed as forward's
  if (bf && !bm) {
    stage_in.resize(T_ * N * DH);
    swap01(stage_in.data(), dy, N, T_, DH);
    dy = stage_in.data();
    stage_out.resize(T_ * N * C);
    dx = stage_out.data();
  }
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
                         layer_input(k), k, d, d > 0, bm && k == 0, bm && k == L - 1);
    if (k == 0) break;
    // d of the previous layer's output: through its dropout mask.
    const LayerCache& below = layers_[k - 1];
    if (below.mask.size())
      for (std::size_t i = 0; i < T_ * N * DH; ++i) dxk[i] *= below.mask[i];
    dy_buf.swap(dx_buf);
    dyk = dy_buf.data();
  }
  if (dx != dx_user) swap01(dx_user, dx, T_, N, C);
}

template <typename T>
void Recurrent<T>::backward_direction(DirCache& dc, T* dx, T* dh0, T* dc0, const T* dy,
                                      const T* dhn, const T* dcn, const T* x, int layer, int dir,
                                      bool accumulate_dx, bool dx_bm, bool dy_bm) {
  const std::size_t T_ = steps_, N = batch_, H = cfg_.hidden_size;
  const int G = cfg_.gates(), Hi = cfg_.hidden_size, Ni = batch_;
  const std::size_t GH = G * H, DH = cfg_.directions() * H;
  const int C = cfg_.layer_input_size(layer);
  const bool lstm = cfg_.cell == CellType::LSTM, gru = cfg_.cell == CellType::GRU;
  const bool relu = cfg_.cell == CellType::RNN_RELU;
  const bool after = gru && cfg_.reset_after;
  const bool split_r = gru && !after;  // the seeds' GRU: d of its r gate comes after W_hn
  const Weights w = weights(layer, dir);
  const std::size_t slot = static_cast<std::size_t>(layer) * cfg_.directions() + dir;
  const kernels::Ops<T>& K = kernels::ops<T>();

  // d h_prev = dg_h W_hh: W_hh (GRU: its r,z rows, then its n rows) packed once for all steps;
  // d x_t = dg_t W_ih: W_ih packed once. One step past 256 KiB reads them where they lie
  // instead (gemm_b_panels: few rows straight from them, more through pieces packed one at a
  // time; the same bits), when its rows read dG in place: packed, each cost two passes more
  // than the step's one product (GRU (1, 1, 1024, 1024) forward + backward on 1 thread:
  // 7.3-9.5 -> 5.9-6.1 ms, PyTorch 4.3-5.2).
  const int mode = g_weights_in_place.load(std::memory_order_relaxed);
  auto read_in_place = [&](double rows, double cols) {
    return mode > 0 || (mode < 0 && T_ == 1 && rows * cols * sizeof(T) > 256.0 * 1024 &&
                        a_direct(Ni, G * Hi, sizeof(T)));
  };
  const bool hh_packed = !read_in_place(G * Hi, Hi), ih_packed = !read_in_place(G * Hi, C);
  const int hh_k = gru ? 2 * Hi : G * Hi;  // W_hh's rows in d h_prev = dg_h W_hh (then W_hn's)
  pack_weights<T>(K, {{hh_packed ? &pack_hh_ : nullptr, Trans::N, hh_k, Hi, w.w_hh, Hi},
                      {ih_packed ? &pack_ih_ : nullptr, Trans::N, G * Hi, C, w.w_ih, C},
                      {gru && hh_packed ? &pack_hn_ : nullptr, Trans::N, Hi, Hi,
                       w.w_hh + 2 * H * H, Hi}});
  // d h_prev's products (W_hh, then GRU's W_hn) and d x's (W_ih), over column panels.
  auto hh_product = [&](int M, const T* a, int lda, T* c, const int* rg) {
    if (hh_packed) K.gemm_panels(Trans::N, M, a, lda, T(1), pack_hh_, T(0), nullptr, c, Hi, rg, 1);
    else
      K.gemm_b_panels(Trans::N, M, a, lda, T(1), w.w_hh, Hi, Hi, hh_k, T(0), nullptr, c, Hi, rg,
                      1);
  };
  auto hn_product = [&](int M, const T* a, int lda, T beta, T* c, const int* rg) {
    if (hh_packed) K.gemm_panels(Trans::N, M, a, lda, T(1), pack_hn_, beta, nullptr, c, Hi, rg, 1);
    else
      K.gemm_b_panels(Trans::N, M, a, lda, T(1), w.w_hh + 2 * H * H, Hi, Hi, Hi, beta, nullptr,
                      c, Hi, rg, 1);
  };
  auto ih_product = [&](int M, const T* a, int lda, T beta, T* c, int ldc, const int* rg) {
    if (ih_packed) K.gemm_panels(Trans::N, M, a, lda, T(1), pack_ih_, beta, nullptr, c, ldc, rg, 1);
    else
      K.gemm_b_panels(Trans::N, M, a, lda, T(1), w.w_ih, C, C, G * Hi, beta, nullptr, c, ldc, rg,
                      1);
  };
  // The steps are shared among threads as in forward, by batch rows (weights that fit in L2:
  // the cell, d h_prev and d x of a row need no other row, so steps need no barrier) or by
  // hidden units (one split barrier per step, step_sync.h: a step's d x, split by its columns,
  // and weight gradients run in the next step's wait). Either way the weight and bias
  // gradients are owned by units: every element has one writer and one summation order (steps in
  // processing order, rows ascending), the same in both modes and for any thread count.
  const int nr = K.nr;
  const StepSplit split_plan =
      step_split(static_cast<int>(T_), Ni, G, Hi, C, sizeof(T), nr, Hi + C);
  const bool by_rows = split_plan.by_rows;
  const int nth = split_plan.threads;

  // The gradients of the pre-activations live in two rings of P steps (cache-sized), not a
  // [T, N, GH] buffer: d h_prev and d x use them within their step, and the weight gradients
  // take them P steps at a time (blocks of steps [P*b, P*b + P), the same whatever the direction
  // or thread count), so each weight-gradient element is read and written once per P steps, with
  // a K = P*N product in between. Two rings alternate by block: a block's weight gradients
  // read every thread's part of it while the next block is being written (by rows: after the
  // block's barrier; by units: one step later, in the wait at the next step's barrier, when
  // this thread has already written its columns of the next step: with one ring, that step
  // would overwrite the block's first).
  // P = 4 for 32 rows and more (K = 4N >= 128); fewer rows take longer blocks, K = P*N about
  // 128, at most 64 steps: with a few rows, a block of 4 steps read and wrote all of dW for a
  // product of K = 4N, so a large layer's backward streamed its weight gradients from memory
  // every 4 steps (LSTM (100, 1, 512, 512): 2x PyTorch's time on 1 thread).
  const std::size_t P = N >= 32 ? 4 : std::min<std::size_t>(64, (128 + N - 1) / N);
  // The ring's rows are LG apart: GH plus a cache line when GH's bytes are a multiple of 1 KB.
  // Rows 8 KB apart (G*H = 2048 floats) share L1/L2 sets, so the rows a micro-tile reads in
  // place, and the columns the weight gradients pack, evict each other: padded, the weight
  // gradients of that shape ran 8-10% faster in isolation (their GEMMs over a ring; measured).
  const std::size_t LG = GH * sizeof(T) % 1024 == 0 ? GH + 64 / sizeof(T) : GH;
  // d x = dG W_ih, by units, also a block at a time below 32 rows: per step, a few rows read all
  // of W_ih at every step (as the forward's per-step projection did). Same kernel and k order
  // per row: same bits. GRU (50, 1, 1024, 1024) forward + backward, 1 thread: 63-65 -> 46 ms.
  // A batch-major d x takes a product per sequence (its rows are T*C apart between sequences),
  // each reading W_ih: N passes per P steps, fewer than P only while N*N < 128 (P ~ 128 / N).
  const bool dx_blocks = !by_rows && N < 32 && (!dx_bm || N * N < 128);
  const int ldg = static_cast<int>(LG);
  auto ring = [&](std::size_t t) { return (t / P) % 2 * P + t % P; };
  dg_.resize(2 * P * N * LG);                  // [2*P, N, GH] d pre-activations, rows LG apart
  dghn_.resize(after ? 2 * P * N * H : 0);     // [2*P, N, H] d (W_hn h + b_hn)
  AlignedBuffer<T> dh(N * H), dcs(lstm ? N * H : 0);  // [N, H] running d h, d c
  AlignedBuffer<T> dht(N * H), pw(N * H), rec(N * H), drh(N * H);  // [N, H] per-step
  if (dhn) std::memcpy(dh.data(), dhn + slot * N * H, N * H * sizeof(T));
  if (lstm && dcn) std::memcpy(dcs.data(), dcn + slot * N * H, N * H * sizeof(T));

  const T* hs = dc.h.data();
  const T* cs = dc.c.data();
  // Rows (t, n) of d x [T, N, C] or [N, T, C] and d y [T, N, D*H] or [N, T, D*H] (batch_first's,
  // in place).
  const Rows dxrows = rows_of(dx_bm, T_, N, C), dyrows = rows_of(dy_bm, T_, N, DH);
  const int lddx = static_cast<int>(dxrows.n);
  // The bias gradients are summed in double (each element by its one owner, in the order
  // above) and added once at the end: a float32 running sum of T*N rows lost digits as it
  // grew (10-50x PyTorch's error at T*N = 64k).
  std::vector<double> db_acc(w.db ? GH : 0), dbhn_acc(w.db_hn ? H : 0);  // [G*H], [H]
  // The weight gradients in two levels, for the same reason. A block's product is computed in
  // pieces of at most kPiece rows (one float32 chain each, in the micro-kernel's registers),
  // summed into a partial, which is added to dW once per group of S pieces (or at the end):
  // dW then takes about sqrt(pieces) additions instead of one per block (float32: 7-27x
  // PyTorch's error at T = 2000, N = 64, and 10-40x for N in the thousands). A group holds
  // at least 256 rows, so the extra pass over dW costs a few % of its products at most; with
  // no more pieces than one group, straight into dW.
  constexpr std::size_t kPiece = 2048;
  const std::size_t n_blocks = (T_ + P - 1) / P;
  const std::size_t block_pieces = (P * N + kPiece - 1) / kPiece;
  const std::size_t piece_rows = std::min(P * N, kPiece);
  const std::size_t S = std::max(static_cast<std::size_t>(std::ceil(std::sqrt(
                                     static_cast<double>(n_blocks * block_pieces)))),
                                 (256 + piece_rows - 1) / piece_rows);
  const bool two_level = n_blocks * block_pieces > S;
  if (two_level) {  // grown only (layer k > 0 has another C): written before read (beta = 0)
    if (dwp_ih_.size() < GH * static_cast<std::size_t>(C)) dwp_ih_.resize(GH * C);
    if (dwp_hh_.size() < GH * H) dwp_hh_.resize(GH * H);
  }
  T* const dst_ih = two_level ? dwp_ih_.data() : w.dw_ih;  // [G*H, C] where blocks add
  T* const dst_hh = two_level ? dwp_hh_.data() : w.dw_hh;  // [G*H, H]
  // By units: the step barrier, split around the last step's d x and dW; by rows: the barrier
  // before each block's weight gradients.
  StepSync sync(nth);
  const int size = detail::start_team(nth);  // (the pool's size if larger: members past nth idle)
  detail::TeamErrors errors(size);
#pragma omp parallel num_threads(size) if (size > 1)
  {
    const int tid = detail::team_member(), team = detail::sharers(nth);
    // start_team's extra members (tid >= team) skip the steps; their shares come out empty.
    const bool works = tid < team;
    const int upanels = (Hi + nr - 1) / nr, cpanels = (C + nr - 1) / nr;
    // Units owned for the weight and bias gradients (whole micro-tiles of dW rows).
    const detail::Span wunits = detail::share(Hi, tid, team, by_rows ? 8 : nr);
    const int wu0 = static_cast<int>(wunits.begin), wu1 = static_cast<int>(wunits.end);
    // The step part: batch rows [n0, n1) and units [u0, u1) of this thread.
    const detail::Span rows = by_rows ? detail::share(N, tid, team, 8) : detail::Span{0, N};
    const std::size_t n0 = rows.begin, n1 = rows.end;
    const int Mr = static_cast<int>(n1 - n0);
    const int u0 = by_rows ? 0 : wu0, u1 = by_rows ? Hi : wu1;
    const int range[2] = {u0 / nr, (u1 + nr - 1) / nr};
    // d x_t: by rows, all its columns for this thread's rows; by units, this thread's columns.
    const detail::Span xpanels = by_rows ? detail::Span{0, std::size_t(cpanels)}
                                         : detail::share(cpanels, tid, team);
    const int xrange[2] = {static_cast<int>(xpanels.begin), static_cast<int>(xpanels.end)};
    const int all_c[2] = {0, cpanels}, all_h[2] = {0, upanels};
    const std::size_t U0 = u0, U = Mr > 0 ? u1 - u0 : 0;
    const std::size_t WU0 = wu0, WU = wu1 - wu0;
    // Bias gradients of units [j0, j0 + nj) from row n of step t (dg_r / dghn_r its rows).
    auto add_bias = [&](const T* dgr, const T* dghnr, std::size_t j0, std::size_t nj, int q0) {
      if (!w.db) return;
      for (int q = q0; q < G; ++q) {
        double* db = db_acc.data() + q * H;
        const T* dq = dgr + q * H;
        for (std::size_t j = j0; j < j0 + nj; ++j) db[j] += dq[j];
      }
      if (dghnr)
        for (std::size_t j = j0; j < j0 + nj; ++j) dbhn_acc[j] += dghnr[j];
    };
    // The weight gradients of this thread's units for the block of steps [t0, t0 + nb) once its
    // last step (step s, time t) is done (accumulate; the block's rows are contiguous in the ring
    // and in x, the states and the GRU cache):
    //   dW_ih[q*H + j, :] += dG[:, q*H + j]^T X,  dW_hh[q*H + j, :] += dG[:, q*H + j]^T H_prev
    // (GRU n rows of W_hh: d(W_hn h + b_hn) and H_prev, or dG_n and r*h_prev). By rows, after a
    // barrier (every row of the block written), the bias gradients too.
    std::size_t in_group = 0;  // blocks summed into this thread's rows of dst_* since a flush
    // The block's right operands, packed by each thread for itself (one pass; then read
    // contiguously by every micro-tile): X [Kb, C], H_prev [Kb, H], GRU r*h_prev [Kb, H],
    // a piece [kr rows] at a time. The left operand dG^T is packed by the GEMM (read in
    // place, its columns, one element per ring row, would thrash L1).
    thread_local kernels::PackedB<T> pk_x, pk_h, pk_a;
    // Whether step s (time t) completes its block of P steps.
    auto block_end = [&](std::size_t s, std::size_t t) {
      return s + 1 == T_ || (dir == 0 ? t % P == 0 : t % P == P - 1);
    };
    auto weight_grads = [&](std::size_t s, std::size_t t) {
      const bool last = s + 1 == T_;
      if (!block_end(s, t)) return;
      if (by_rows) sync.sync(tid, team);  // (the working members only)
      if (!WU) return;
      const std::size_t t0 = t - t % P, nb = std::min(P, T_ - t0);
      const int Kb = static_cast<int>(nb * N);
      const T* dgb = dg_.data() + ring(t0) * N * LG;                   // [nb*N, GH] (LG)
      const T* dghnb = after ? dghn_.data() + ring(t0) * N * H : nullptr;  // [nb*N, H]
      if (by_rows) {
        for (std::size_t i = 0; i < nb; ++i) {  // steps in processing order
          const std::size_t tt = dir == 0 ? t0 + nb - 1 - i : t0 + i;
          for (std::size_t n = 0; n < N; ++n)
            if (active(static_cast<int>(n), static_cast<int>(tt)))
              add_bias(dgb + ((tt - t0) * N + n) * LG,
                       after ? dghnb + ((tt - t0) * N + n) * H : nullptr, WU0, WU, 0);
        }
      }
      const T* hb = hs + (dir == 0 ? t0 : t0 + 1) * N * H;  // [Kb, H] h_prev of the block
      for (int k0 = 0; k0 < Kb; k0 += static_cast<int>(kPiece)) {
        const int kr = std::min(static_cast<int>(kPiece), Kb - k0);
        const std::size_t k = static_cast<std::size_t>(k0);
        K.pack_b(pk_x, Trans::N, kr, C, x + (t0 * N + k) * C, C);
        K.pack_b(pk_h, Trans::N, kr, Hi, hb + k * H, Hi);
        if (split_r) K.pack_b(pk_a, Trans::N, kr, Hi, dc.aux.data() + (t0 * N + k) * H, Hi);
        const T beta = two_level && in_group == 0 ? T(0) : T(1);  // a group starts afresh
        const T* dgk = dgb + k * LG;                                // [kr, GH] (LG)
        for (int q = 0; q < G; ++q) {
          const std::size_t row = q * H + WU0;
          K.gemm_panels(Trans::T, static_cast<int>(WU), dgk + row, ldg, T(1), pk_x, beta,
                        nullptr, dst_ih + row * C, C, all_c, 1);
          const T* da = dgk + row;
          int lda = ldg;
          const kernels::PackedB<T>* sb = &pk_h;
          if (gru && q == 2) {
            if (after) {
              da = dghnb + k * H + WU0;
              lda = Hi;
            } else {
              sb = &pk_a;  // r * h_prev
            }
          }
          K.gemm_panels(Trans::T, static_cast<int>(WU), da, lda, T(1), *sb, beta, nullptr,
                        dst_hh + row * H, Hi, all_h, 1);
        }
        // The group into dW (this thread's rows), when full or after the last piece.
        if (two_level && (++in_group == S || (last && k0 + kr == Kb))) {
          in_group = 0;
          for (int q = 0; q < G; ++q) {
            const std::size_t r0 = q * H + WU0;
            kernels::add_into(w.dw_ih + r0 * C, dwp_ih_.data() + r0 * C, WU * C);
            kernels::add_into(w.dw_hh + r0 * H, dwp_hh_.data() + r0 * H, WU * H);
          }
        }
      }
    };
    // d x_t (this direction's share) = dg_t W_ih, for this thread's rows and columns of d x.
    // By units it reads every unit's dg_t: all were written before the step's barrier; with
    // dx_blocks, a block's steps at once when its last is done (as its weight gradients).
    const T beta_dx = accumulate_dx ? T(1) : T(0);
    auto d_x = [&](std::size_t s, std::size_t t) {
      if (!(xrange[0] < xrange[1] && Mr > 0)) return;
      if (!dx_blocks) {
        ih_product(Mr, dg_.data() + ring(t) * N * LG + n0 * LG, ldg, beta_dx,
                   dx + dxrows.at(t, n0), lddx, xrange);
        return;
      }
      if (!block_end(s, t)) return;
      const std::size_t t0 = t - t % P, nb = std::min(P, T_ - t0);
      const T* dgb = dg_.data() + ring(t0) * N * LG;  // [nb*N, GH] (LG), all rows (by units)
      if (!dx_bm) {  // the block's rows of d x are contiguous too: [nb*N, C]
        ih_product(static_cast<int>(nb * N), dgb, ldg, beta_dx, dx + dxrows.at(t0, 0), lddx,
                   xrange);
        return;
      }
      for (std::size_t n = 0; n < N; ++n)  // batch-major d x: [nb, C] per sequence
        ih_product(static_cast<int>(nb), dgb + n * LG, static_cast<int>(N * LG), beta_dx,
                   dx + dxrows.at(t0, n), static_cast<int>(dxrows.t), xrange);
    };
    // By units, the work of step s that is off the recurrence's path (d x_t, the block's weight
    // gradients) runs one step late, between arriving at the next step's barrier and waiting
    // for the others there.
    auto off_path = [&](std::size_t s) {
      const std::size_t t = dir == 0 ? T_ - 1 - s : s;
      d_x(s, t);
      weight_grads(s, t);
    };
    // This thread's scratch for its products and packs, before anything is written
    // (TeamErrors): the steps run only if every thread has its own.
    errors.run(tid, [&] {
      if (!works) return;
      if (WU) {
        const int kr = static_cast<int>(piece_rows);  // a piece's rows, at most
        kernels::reserve_b(pk_x, kr, C, nr);
        kernels::reserve_b(pk_h, kr, Hi, nr);
        if (split_r) kernels::reserve_b(pk_a, kr, Hi, nr);
        K.reserve_a(Trans::T, static_cast<int>(WU), kr, T(1));
      }
      if (Mr > 0) {
        const int dx_rows = dx_blocks ? static_cast<int>(P * N) : Mr;
        if (ih_packed) K.reserve_a(Trans::N, dx_rows, G * Hi, T(1));
        else K.reserve_b_panels(Trans::N, dx_rows, G * Hi, T(1));
        if (hh_packed) K.reserve_a(Trans::N, Mr, hh_k, T(1));
        else K.reserve_b_panels(Trans::N, Mr, hh_k, T(1));
        if (gru && hh_packed) K.reserve_a(Trans::N, Mr, Hi, T(1));
        else if (gru) K.reserve_b_panels(Trans::N, Mr, Hi, T(1));
      }
    });
#pragma omp barrier
    detail::TeamWork work;
    for (std::size_t s = 0; works && s < T_ && !errors.failed(); ++s) {
      const std::size_t t = dir == 0 ? T_ - 1 - s : s;
      const std::size_t prev = dir == 0 ? t : t + 1, cur = dir == 0 ? t + 1 : t;
      const T* hp = hs + prev * N * H;                       // [N, H] h_{t-1}
      const T* at = dc.g.data() + t * N * GH;                // [N, GH] activations
      T* dgt = dg_.data() + ring(t) * N * LG;                // [N, GH] (LG)
      T* dghnt = after ? dghn_.data() + ring(t) * N * H : nullptr;  // [N, H]
      // This step's barrier by units: dg_t (all units) complete; the last step's off-path work
      // fills the wait.
      auto step_barrier = [&]() {
        sync.arrive(tid);
        if (s > 0) off_path(s - 1);
        sync.wait(tid, team);
      };
      for (std::size_t n = n0; n < n1 && U; ++n) {
        T* dgr = dgt + n * LG;
        if (!active(static_cast<int>(n), static_cast<int>(t))) {  // no gradient past the end
          for (int q = 0; q < G; ++q) std::fill(dgr + q * H + U0, dgr + q * H + U0 + U, T(0));
          if (after) std::fill(dghnt + n * H + U0, dghnt + n * H + U0 + U, T(0));
          continue;
        }
        const T* dyr = dy + dyrows.at(t, n) + dir * H;
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
        // By units: the bias gradients of this thread's units while the row is hot (the seeds'
        // GRU: its r gate is complete only after the W_hn product below).
        if (!by_rows) add_bias(dgr, after ? dghnt + n * H : nullptr, U0, U, split_r ? 1 : 0);
      }
      // The next step reads the forward's caches at another time slot, a jump no hardware
      // prefetcher follows: ask for them now, so they arrive while this step's products run.
      if (s + 1 < T_) {
        const std::size_t tn = dir == 0 ? t - 1 : t + 1;
        const std::size_t pn = dir == 0 ? tn : tn + 1, cn = dir == 0 ? tn + 1 : tn;
        const T* an = dc.g.data() + tn * N * GH;
        for (std::size_t n = n0; n < n1 && U; ++n) {
          for (int q = 0; q < G; ++q) prefetch(an + n * GH + q * H + U0, U);
          prefetch(dy + dyrows.at(tn, n) + dir * H + U0, U);
          if (lstm) {
            prefetch(cs + cn * N * H + n * H + U0, U);
            prefetch(cs + pn * N * H + n * H + U0, U);
          }
          if (gru) prefetch(dc.aux.data() + (tn * N + n) * H + U0, U);
        }
        if (!by_rows) {
          prefetch(x + tn * N * C, N * C);
          prefetch(hs + pn * N * H, N * H);
        }
      }
      if (!by_rows) {
        // The seeds' GRU: its W_hn product needs dg_n of every unit; its barrier with the
        // off-path work comes when dg_r is complete too.
        if (split_r) sync.sync(tid, team);
        else step_barrier();
        // Other threads' columns of dg_t are read next: ask for all of them at once.
        if (team > 1) prefetch(dgt, N * LG);
      }
      // d h_prev through the recurrent weights, for this thread's rows and units:
      // rec = dg_h W_hh.
      T* dg0 = dgt + n0 * LG;
      if (split_r) {
        if (U) hn_product(Mr, dg0 + 2 * H, ldg, T(0), drh.data() + n0 * H, range);
        for (std::size_t n = n0; n < n1 && U; ++n)
          if (active(static_cast<int>(n), static_cast<int>(t))) {
            K.gru_before_backward_r_row(Hi, u0, u1, dgt + n * LG, drh.data() + n * H,
                                        pw.data() + n * H, at + n * GH, hp + n * H);
            if (!by_rows && w.db)
              for (std::size_t j = U0; j < U0 + U; ++j) db_acc[j] += dgt[n * LG + j];
          }
        if (!by_rows) step_barrier();
        if (U) hh_product(Mr, dg0, ldg, rec.data() + n0 * H, range);
      } else if (after) {
        if (U) {
          hh_product(Mr, dg0, ldg, rec.data() + n0 * H, range);
          hn_product(Mr, dghnt + n0 * H, Hi, T(1), rec.data() + n0 * H, range);
        }
      } else if (U) {
        hh_product(Mr, dg0, ldg, rec.data() + n0 * H, range);
      }
      for (std::size_t n = n0; n < n1 && U; ++n) {
        if (!active(static_cast<int>(n), static_cast<int>(t))) continue;  // d h passes through
        for (std::size_t j = U0; j < U0 + U; ++j)
          dh[n * H + j] = rec[n * H + j] + (gru ? pw[n * H + j] : T(0));
      }
      if (by_rows) {
        d_x(s, t);
        weight_grads(s, t);
      }
    }
    // Every dg is complete: no barrier needed.
    if (works && !by_rows && T_ > 0 && !errors.failed()) off_path(T_ - 1);
  }
  errors.rethrow();
  for (std::size_t i = 0; i < db_acc.size(); ++i) w.db[i] += static_cast<T>(db_acc[i]);
  for (std::size_t j = 0; j < dbhn_acc.size(); ++j) w.db_hn[j] += static_cast<T>(dbhn_acc[j]);
  std::memcpy(dh0 + slot * N * H, dh.data(), N * H * sizeof(T));
  if (lstm) std::memcpy(dc0 + slot * N * H, dcs.data(), N * H * sizeof(T));
}

template class Recurrent<float>;
template class Recurrent<double>;

}  // namespace pyrnn
