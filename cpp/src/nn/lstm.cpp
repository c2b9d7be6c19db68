// LSTMLayer: a single-layer, unidirectional LSTM core under the shared facade.
#include "pyrnn/nn/lstm.h"

namespace pyrnn {

namespace {
RecurrentConfig lstm_config(int input_size, int hidden_size) {
  RecurrentConfig c;
  c.cell = CellType::LSTM;
  c.input_size = input_size;
  c.hidden_size = hidden_size;
  return c;
}
}  // namespace

template <typename T>
BasicLSTMLayer<T>::BasicLSTMLayer(int input_size, int hidden_size, int output_size,
                                  std::uint64_t seed)
    : BasicRecurrentLayer<T>("LSTMLayer", lstm_config(input_size, hidden_size), output_size,
                             seed) {}

template class BasicLSTMLayer<float>;
template class BasicLSTMLayer<double>;

}  // namespace pyrnn
