// The seeds' GRU example (their form: reset gate applied before W_hn, reset_after = false):
//
//   GRULayer gru(input_size=1, hidden_size=48, output_size=1);
//   Matrix output = gru.forward(sequence);
//
// plus a comparison of parameter counts with the seeds' table (GRU = 3x RNN, LSTM = 4x RNN).
#include <cmath>
#include <cstdio>
#include <vector>

#include <pyrnn/nn/gru.h>
#include <pyrnn/nn/lstm.h>
#include <pyrnn/nn/rnn.h>

using namespace pyrnn;

int main() {
  const int input_size = 1, hidden_size = 48, output_size = 1;
  GRULayer gru(input_size, hidden_size, output_size, /*seed=*/3);

  std::vector<Matrix> sequence;  // 10 steps, each 1 x 1
  for (int t = 0; t < 10; ++t) {
    Matrix input(1, 1);
    input.set(0, 0, static_cast<float>(std::sin(t * 0.1)));
    sequence.push_back(input);
  }

  Matrix output = gru.forward(sequence);
  std::printf("GRULayer(%d, %d, %d): output %zu x %zu = %+.6f, %zu hidden states of %zu x %zu\n",
              input_size, hidden_size, output_size, output.rows(), output.cols(),
              output.get(0, 0), gru.getHiddenStates().size(), gru.getHiddenStates().back().rows(),
              gru.getHiddenStates().back().cols());

  // The seeds' parameter table: input 10, hidden 50.
  const std::size_t rnn = RNNLayer(10, 50, 1).core().num_parameters();
  const std::size_t g = GRULayer(10, 50, 1).core().num_parameters();
  const std::size_t lstm = LSTMLayer(10, 50, 1).core().num_parameters();
  std::printf("input 10, hidden 50: RNN %zu, GRU %zu, LSTM %zu parameters "
              "(GRU has %.0f%% fewer than LSTM)\n",
              rnn, g, lstm, 100.0 * (1.0 - double(g) / double(lstm)));
  const bool ok = std::isfinite(output.get(0, 0)) && rnn == 3050 && g == 9150 && lstm == 12200;
  return ok ? 0 : 1;
}
