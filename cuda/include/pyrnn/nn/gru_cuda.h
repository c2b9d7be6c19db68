// GRULayerCUDA: the seeds' GPU GRU layer. Same cell and the same initial weights for a seed
// as pyrnn::GRULayer (<pyrnn/nn/gru.h>); see <pyrnn/nn/layer_cuda.h> for shapes and behaviour.
//
//   pyrnn::GRULayerCUDA layer(input_size, hidden_size, output_size);
//   pyrnn::MatrixCUDA y = layer.forward(sequence);   // sequence: T x MatrixCUDA [N, input_size]
#pragma once
#include <cstdint>
#include <string>

#include "pyrnn/nn/layer_cuda.h"
#include "pyrnn/nn/gru.h"

namespace pyrnn {

class GRULayerCUDA : public RecurrentLayerCUDA {
 public:
  GRULayerCUDA(int input_size, int hidden_size, int output_size, std::uint64_t seed = 0)
      : RecurrentLayerCUDA(GRULayer(input_size, hidden_size, output_size, seed)) {}
  // The CPU layer's weights, on the GPU.
  explicit GRULayerCUDA(const GRULayer& host, int device = 0) : RecurrentLayerCUDA(host, device) {}
};

}  // namespace pyrnn
