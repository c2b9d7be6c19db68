// RNNLayer: a single-layer, unidirectional RNN_TANH / RNN_RELU core under the shared facade.
#include "pyrnn/nn/rnn.h"

#include "pyrnn/error.h"

namespace pyrnn {

namespace {
RecurrentConfig rnn_config(int input_size, int hidden_size, const std::string& nonlinearity) {
  PYRNN_CHECK(nonlinearity == "tanh" || nonlinearity == "relu",
              "RNNLayer: nonlinearity must be \"tanh\" or \"relu\", got \"", nonlinearity, "\"");
  RecurrentConfig c;
  c.cell = nonlinearity == "relu" ? CellType::RNN_RELU : CellType::RNN_TANH;
  c.input_size = input_size;
  c.hidden_size = hidden_size;
  return c;
}
}  // namespace

template <typename T>
BasicRNNLayer<T>::BasicRNNLayer(int input_size, int hidden_size, int output_size,
                                std::uint64_t seed, const std::string& nonlinearity)
    : BasicRecurrentLayer<T>("RNNLayer", rnn_config(input_size, hidden_size, nonlinearity),
                             output_size, seed) {}

template class BasicRNNLayer<float>;
template class BasicRNNLayer<double>;

}  // namespace pyrnn
