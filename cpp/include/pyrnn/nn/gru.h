// GRULayer in the seeds' form (Cho et al.; reset_after = false, ONNX linear_before_reset = 0),
// gates r, z, n in PyTorch order:
//   n = tanh(W_in x_t + W_hn (r*h_{t-1}) + b_n),  h_t = (1-z)*n + z*h_{t-1},
//   y_T = W_hy h_T + b_y.
// Shapes, training and errors: see pyrnn/nn/layer.h. getCellStates() throws (no cell state).
//
//   pyrnn::GRULayer gru(input_size, hidden_size, output_size);
//   pyrnn::Matrix y = gru.forward(sequence);   // sequence: T x [N, input_size]
#pragma once
#include <cstdint>

#include "pyrnn/nn/layer.h"
#include "pyrnn/nn/loss.h"
#include "pyrnn/nn/optim.h"

namespace pyrnn {

template <typename T>
class BasicGRULayer : public BasicRecurrentLayer<T> {
 public:
  BasicGRULayer(int input_size, int hidden_size, int output_size, std::uint64_t seed = 0);
};

extern template class BasicGRULayer<float>;
extern template class BasicGRULayer<double>;
using GRULayer = BasicGRULayer<float>;

}  // namespace pyrnn
