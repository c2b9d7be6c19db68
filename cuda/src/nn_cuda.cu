// RecurrentLayerCUDA (pyrnn/nn/layer_cuda.h): sequence -> time-major device buffer ->
// cuda::Recurrent<float> (eval) -> y_T = h_T W_hy^T + b_y with cuBLAS and a bias kernel.
#include <cuda_runtime.h>

#include <climits>
#include <mutex>
#include <string>
#include <utility>

#include "cells.cuh"
#include "device_lock.cuh"
#include "device_scope.cuh"
#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/gemm.h"
#include "pyrnn/error.h"
#include "pyrnn/nn/layer_cuda.h"

namespace pyrnn {

namespace {
// "LSTMLayerCUDA" etc.; from the cell when the CPU layer was moved from (its name went along).
std::string facade_name(const RecurrentLayer& host) {
  if (!host.name().empty()) return host.name() + "CUDA";
  switch (host.core().config().cell) {
    case CellType::LSTM: return "LSTMLayerCUDA";
    case CellType::GRU: return "GRULayerCUDA";
    default: return "RNNLayerCUDA";
  }
}
}  // namespace

RecurrentLayerCUDA::RecurrentLayerCUDA(RecurrentLayer host, int device)
    : name_(facade_name(host)),
      output_size_(host.outputSize()),
      core_(host.core().config(), device),
      w_hy_(host.outputWeight()),
      b_y_(host.outputBias()) {
  PYRNN_CHECK(device == 0, name_, ": MatrixCUDA lives on device 0; got device ", device);
  PYRNN_CHECK(!host.core().moved_from(), name_, ": the CPU layer it is built from was moved from ",
              "(its storage went with the move)");
  core_.copy_params_from_host(host.core().params());
}

void RecurrentLayerCUDA::check_usable(const char* call) const {
  detail::check_facade(name_, call, core_.moved_from(), core_.config(), w_hy_.rows(),
                       w_hy_.cols(), b_y_.rows(), b_y_.cols(), static_cast<std::size_t>(outputSize()));
}

MatrixCUDA RecurrentLayerCUDA::forward(const std::vector<MatrixCUDA>& sequence) {
  check_usable("forward");
  PYRNN_CHECK(!sequence.empty(), name_, "::forward: empty sequence (need at least one step)");
  const std::size_t T = sequence.size(), N = sequence[0].rows();
  const std::size_t C = static_cast<std::size_t>(inputSize());
  const std::size_t H = static_cast<std::size_t>(hiddenSize());
  const std::size_t O = static_cast<std::size_t>(outputSize());
  PYRNN_CHECK(N >= 1, name_, "::forward: step 0 has no rows (batch must be >= 1)");
  for (std::size_t t = 0; t < T; ++t)
    PYRNN_CHECK(sequence[t].rows() == N && sequence[t].cols() == C, name_, "::forward: step ", t,
                " is ", sequence[t].rows(), " x ", sequence[t].cols(), ", expected ", N, " x ", C,
                " (batch x input_size, the same batch every step)");
  // As the CPU facade: the core takes T and N as int (a cast would wrap 2^32 + 1 rows to 1).
  PYRNN_CHECK(T <= INT_MAX && N <= INT_MAX, name_, "::forward: ", T, " steps of batch ", N,
              " exceed the int sizes of the core");
  // The core's size check before the workspaces grow: an oversize pass is its size error, not an
  // out-of-memory (or gigabytes of workspace kept) from the ensures below.
  core_.check_forward(static_cast<int>(T), static_cast<int>(N));
  // The workspaces, copies, GEMM and bias kernel belong to the core's device whatever device the
  // caller has made current (as MatrixCUDA and the core itself do).
  cuda::detail::DeviceScope scope(core_.device());
  cudaStream_t stream = core_.stream();
  if (x_.size() < T * N * C) x_ = cuda::DeviceBuffer<float>(T * N * C);
  if (y_.size() < T * N * H) y_ = cuda::DeviceBuffer<float>(T * N * H);
  // The pass writes a spare, swapped in at the end: a call refused (out of memory, say)
  // leaves lastHiddenState() as it was, as on the CPU.
  if (h_next_.rows() != N || h_next_.cols() != H) h_next_ = MatrixCUDA(N, H);
  if (c_next_.rows() != N || c_next_.cols() != H) c_next_ = MatrixCUDA(N, H);
  MatrixCUDA out(N, O);
  // Work queued here on the Context stream holds the device lock (device_lock.cuh); the
  // recurrent pass and MatrixCUDA's constructor take it themselves.
  std::mutex& device_mutex = cuda::detail::device_mutex(core_.device());
  {
    std::lock_guard<std::mutex> lock(device_mutex);
    for (std::size_t t = 0; t < T; ++t)  // [N, C] steps -> x_ [T, N, C]
      PYRNN_CUDA_CHECK(cudaMemcpyAsync(x_.data() + t * N * C, sequence[t].data(),
                                       N * C * sizeof(float), cudaMemcpyDeviceToDevice, stream));
  }
  core_.forward(y_.data(), h_next_.data(), c_next_.data(), x_.data(), nullptr, nullptr, nullptr,
                static_cast<int>(T), static_cast<int>(N), /*training=*/false, 0);
  std::lock_guard<std::mutex> lock(device_mutex);
  cuda::gemm<float>(cuda::Context::get(core_.device()).cublas(), kernels::Trans::N,
                    kernels::Trans::T, static_cast<int>(N), static_cast<int>(O),
                    static_cast<int>(H), 1.f, h_next_.data(), static_cast<int>(H), w_hy_.data(),
                    static_cast<int>(H), 0.f, out.data(), static_cast<int>(O));
  cuda::detail::add_bias_rows<float>(out.data(), b_y_.data(), N, static_cast<int>(O),
                                     static_cast<int>(O), stream);
  PYRNN_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::swap(h_last_, h_next_);
  std::swap(c_last_, c_next_);
  return out;
}

const MatrixCUDA& RecurrentLayerCUDA::lastCellState() const {
  PYRNN_CHECK(core_.moved_from() || core_.config().cell == CellType::LSTM, name_,
              "::lastCellState: only an LSTM has a cell state");
  return c_last_;
}

}  // namespace pyrnn
