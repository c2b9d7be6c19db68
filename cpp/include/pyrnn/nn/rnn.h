// RNNLayer (the seeds' vanilla RNN): h_t = tanh(W_ih x_t + W_hh h_{t-1} + b) (or relu),
// y_T = W_hy h_T + b_y. Shapes, training and errors: see pyrnn/nn/layer.h.
//
//   pyrnn::RNNLayer rnn(input_size, hidden_size, output_size);
//   pyrnn::Matrix y = rnn.forward(sequence);   // sequence: T x [N, input_size]
#pragma once
#include <cstdint>
#include <string>

#include "pyrnn/nn/layer.h"
#include "pyrnn/nn/loss.h"
#include "pyrnn/nn/optim.h"

namespace pyrnn {

template <typename T>
class BasicRNNLayer : public BasicRecurrentLayer<T> {
 public:
  // nonlinearity: "tanh" (the seeds') or "relu"; anything else throws pyrnn::Error.
  BasicRNNLayer(int input_size, int hidden_size, int output_size, std::uint64_t seed = 0,
                const std::string& nonlinearity = "tanh");
};

extern template class BasicRNNLayer<float>;
extern template class BasicRNNLayer<double>;
using RNNLayer = BasicRNNLayer<float>;

}  // namespace pyrnn
