// RNNLayerCUDA: the seeds' GPU RNN layer. Same cell and the same initial weights for a seed
// as pyrnn::RNNLayer (<pyrnn/nn/rnn.h>); see <pyrnn/nn/layer_cuda.h> for shapes and behaviour.
//
//   pyrnn::RNNLayerCUDA layer(input_size, hidden_size, output_size);
//   pyrnn::MatrixCUDA y = layer.forward(sequence);   // sequence: T x MatrixCUDA [N, input_size]
#pragma once
#include <cstdint>
#include <string>

#include "pyrnn/nn/layer_cuda.h"
#include "pyrnn/nn/rnn.h"

namespace pyrnn {

class RNNLayerCUDA : public RecurrentLayerCUDA {
 public:
  // nonlinearity: "tanh" (the seeds') or "relu", as RNNLayer.
  RNNLayerCUDA(int input_size, int hidden_size, int output_size, std::uint64_t seed = 0,
               const std::string& nonlinearity = "tanh")
      : RecurrentLayerCUDA(RNNLayer(input_size, hidden_size, output_size, seed, nonlinearity)) {}
  // The CPU layer's weights, on the GPU.
  explicit RNNLayerCUDA(const RNNLayer& host, int device = 0) : RecurrentLayerCUDA(host, device) {}
};

}  // namespace pyrnn
