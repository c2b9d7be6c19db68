// The seeds' "CPU Version": an LSTM layer over a batch of sequences, one forward pass.
//
//   #include "nn/lstm.h"
//   LSTMLayer lstm(input_size, hidden_size, output_size);
//   Matrix output = lstm.forward(sequence);
#include <cmath>
#include <cstdio>
#include <vector>

#include <pyrnn/nn/lstm.h>

using namespace pyrnn;

int main() {
  // The seeds' parameter-count configuration: input 10, hidden 50 (12,200 LSTM parameters).
  const int input_size = 10, hidden_size = 50, output_size = 5;
  const int steps = 20, batch = 4;

  LSTMLayer lstm(input_size, hidden_size, output_size, /*seed=*/42);

  // One Matrix per time step, each batch x input_size.
  std::vector<Matrix> sequence;
  for (int t = 0; t < steps; ++t) {
    Matrix input(batch, input_size);
    for (int n = 0; n < batch; ++n)
      for (int c = 0; c < input_size; ++c)
        input.set(n, c, static_cast<float>(std::sin(0.1 * t + 0.5 * c + n)));
    sequence.push_back(input);
  }

  Matrix output = lstm.forward(sequence);  // batch x output_size: W_hy h_T + b_y

  std::printf("LSTMLayer(%d, %d, %d): %zu recurrent parameters, %zu in all\n", input_size,
              hidden_size, output_size, lstm.core().num_parameters(), lstm.numParameters());
  std::printf("%zu steps in, output %zu x %zu:\n", sequence.size(), output.rows(), output.cols());
  bool finite = true;
  for (std::size_t n = 0; n < output.rows(); ++n) {
    std::printf("  [");
    for (std::size_t o = 0; o < output.cols(); ++o) {
      std::printf(" %+.5f", output.get(n, o));
      finite = finite && std::isfinite(output.get(n, o));
    }
    std::printf(" ]\n");
  }
  return finite && lstm.core().num_parameters() == 12200 ? 0 : 1;
}
