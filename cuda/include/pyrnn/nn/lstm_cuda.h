// LSTMLayerCUDA: the seeds' GPU LSTM layer. Same cell and the same initial weights for a seed
// as pyrnn::LSTMLayer (<pyrnn/nn/lstm.h>); see <pyrnn/nn/layer_cuda.h> for shapes and behaviour.
//
//   pyrnn::LSTMLayerCUDA layer(input_size, hidden_size, output_size);
//   pyrnn::MatrixCUDA y = layer.forward(sequence);   // sequence: T x MatrixCUDA [N, input_size]
#pragma once
#include <cstdint>
#include <string>

#include "pyrnn/nn/layer_cuda.h"
#include "pyrnn/nn/lstm.h"

namespace pyrnn {

class LSTMLayerCUDA : public RecurrentLayerCUDA {
 public:
  LSTMLayerCUDA(int input_size, int hidden_size, int output_size, std::uint64_t seed = 0)
      : RecurrentLayerCUDA(LSTMLayer(input_size, hidden_size, output_size, seed)) {}
  // The CPU layer's weights, on the GPU.
  explicit LSTMLayerCUDA(const LSTMLayer& host, int device = 0) : RecurrentLayerCUDA(host, device) {}
};

}  // namespace pyrnn
