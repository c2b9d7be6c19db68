// GRULayer: a single-layer, unidirectional GRU core in the seeds' form under the shared facade.
#include "pyrnn/nn/gru.h"

namespace pyrnn {

namespace {
RecurrentConfig gru_config(int input_size, int hidden_size) {
  RecurrentConfig c;
  c.cell = CellType::GRU;
  c.reset_after = false;  // the seeds' (Cho et al.) form: r gates h_{t-1} before W_hn
  c.input_size = input_size;
  c.hidden_size = hidden_size;
  return c;
}
}  // namespace

template <typename T>
BasicGRULayer<T>::BasicGRULayer(int input_size, int hidden_size, int output_size,
                                std::uint64_t seed)
    : BasicRecurrentLayer<T>("GRULayer", gru_config(input_size, hidden_size), output_size, seed) {}

template class BasicGRULayer<float>;
template class BasicGRULayer<double>;

}  // namespace pyrnn
