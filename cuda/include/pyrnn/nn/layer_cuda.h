// RecurrentLayerCUDA: the seeds' GPU layer facade (LSTMLayerCUDA, GRULayerCUDA, RNNLayerCUDA),
// inference on the GPU: one cuda::Recurrent<float> layer (unidirectional) plus the output
// projection, computed with cuBLAS:
//
//   sequence  T MatrixCUDA, each [N, C]    (every step the same N)
//   y_T       [N, O] = h_T W_hy^T + b_y    (what forward() returns, on the device)
//
// Built from the CPU facade (pyrnn/nn/*.h) layer of the same kind, so a given seed gives the
// same weights as on the CPU, and a CPU-trained layer can be moved to the GPU:
//
//   pyrnn::LSTMLayer cpu(10, 50, 5, 42);        // ... train on the CPU ...
//   pyrnn::LSTMLayerCUDA gpu(cpu);              // same weights on the device
//
// Training stays with the CPU facade or the Python API; this class has no backward.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "pyrnn/cuda/buffer.h"
#include "pyrnn/cuda/matrix_cuda.h"
#include "pyrnn/cuda/recurrent.h"
#include "pyrnn/nn/layer.h"

namespace pyrnn {

class RecurrentLayerCUDA {
 public:
  // Copies `host`'s configuration and every parameter to `device` (`host` is taken by value:
  // any CPU facade layer, sliced to its shared base).
  explicit RecurrentLayerCUDA(RecurrentLayer host, int device = 0);
  virtual ~RecurrentLayerCUDA() = default;
  RecurrentLayerCUDA(RecurrentLayerCUDA&&) noexcept = default;
  RecurrentLayerCUDA& operator=(RecurrentLayerCUDA&&) noexcept = default;

  int inputSize() const { return core_.config().input_size; }
  int hiddenSize() const { return core_.config().hidden_size; }
  // True once moved from (its core went with the move): forward / backward then throw.
  bool moved_from() const { return core_.moved_from(); }
  // Fixed at construction; 0 once moved from, as the CPU facade's.
  int outputSize() const { return moved_from() ? 0 : output_size_; }
  const std::string& name() const { return name_; }

  // sequence: T >= 1 steps, each [N, C] (N >= 1, the same for every step). Returns y_T [N, O].
  MatrixCUDA forward(const std::vector<MatrixCUDA>& sequence);
  // h_T [N, H] of the last forward (device; empty before the first). Each forward swaps in
  // new storage (a refused one keeps the old): read data() again after a forward.
  const MatrixCUDA& lastHiddenState() const { return h_last_; }
  // c_T [N, H] of the last forward, LSTM only (the CPU facade's getCellStates().back(); the
  // GPU facade keeps the final states alone). Throws pyrnn::Error for GRU / RNN layers.
  const MatrixCUDA& lastCellState() const;

  cuda::Recurrent<float>& core() { return core_; }
  const cuda::Recurrent<float>& core() const { return core_; }
  // Assign matrices of the same shape: forward refuses others.
  MatrixCUDA& outputWeight() { return w_hy_; }  // [O, H]
  MatrixCUDA& outputBias() { return b_y_; }     // [1, O]
  const MatrixCUDA& outputWeight() const { return w_hy_; }
  const MatrixCUDA& outputBias() const { return b_y_; }

 private:
  // As the CPU facade's: not moved from, and the projection [O, H], [1, O] as built.
  void check_usable(const char* call) const;

  std::string name_;
  int output_size_;
  cuda::Recurrent<float> core_;
  MatrixCUDA w_hy_, b_y_;                    // [O, H], [1, O]
  cuda::DeviceBuffer<float> x_, y_;          // [T, N, C], [T, N, H] workspaces
  MatrixCUDA h_last_, c_last_;               // [N, H] each
  // [N, H] each: the pass writes here, swapped in when the call succeeds
  MatrixCUDA h_next_, c_next_;
};

}  // namespace pyrnn
