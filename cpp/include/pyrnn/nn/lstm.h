// LSTMLayer (the seeds' LSTM; gates i, f, g, o in PyTorch order):
//   c_t = f*c_{t-1} + i*g,  h_t = o*tanh(c_t),  y_T = W_hy h_T + b_y.
// Shapes, training and errors: see pyrnn/nn/layer.h.
//
//   pyrnn::LSTMLayer lstm(input_size, hidden_size, output_size);
//   pyrnn::Matrix y = lstm.forward(sequence);                  // sequence: T x [N, input_size]
//   pyrnn::Matrix c_T = lstm.getCellStates().back();           // [N, hidden_size]
#pragma once
#include <cstdint>

#include "pyrnn/nn/layer.h"
#include "pyrnn/nn/loss.h"
#include "pyrnn/nn/optim.h"

namespace pyrnn {

template <typename T>
class BasicLSTMLayer : public BasicRecurrentLayer<T> {
 public:
  BasicLSTMLayer(int input_size, int hidden_size, int output_size, std::uint64_t seed = 0);
};

extern template class BasicLSTMLayer<float>;
extern template class BasicLSTMLayer<double>;
using LSTMLayer = BasicLSTMLayer<float>;

}  // namespace pyrnn
