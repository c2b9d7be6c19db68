// The seeds' LSTM example: process a sequence, then read the final cell state.
//
//   LSTMLayer lstm(input_size=1, hidden_size=64, output_size=1);
//   Matrix output = lstm.forward(sequence);
//   Matrix cell_state = lstm.getCellStates().back();
//
// Also shows what the two state sequences hold: h_t = o_t * tanh(c_t), so every |h_t| stays
// below tanh(|c_t|) < 1, while the cell state c_t (the additive memory path) is unbounded.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include <pyrnn/nn/lstm.h>

using namespace pyrnn;

int main() {
  const int input_size = 1, hidden_size = 64, output_size = 1;
  LSTMLayer lstm(input_size, hidden_size, output_size, /*seed=*/7);

  std::vector<Matrix> sequence;  // 10 steps, each 1 x 1
  for (int t = 0; t < 10; ++t) {
    Matrix input(1, 1);
    input.set(0, 0, static_cast<float>(std::sin(t * 0.1)));
    sequence.push_back(input);
  }

  Matrix output = lstm.forward(sequence);
  Matrix cell_state = lstm.getCellStates().back();  // c_T: 1 x hidden_size

  std::printf("output y_T = %+.6f\n", output.get(0, 0));
  std::printf("final cell state c_T: %zu x %zu, first values:", cell_state.rows(),
              cell_state.cols());
  for (int j = 0; j < 5; ++j) std::printf(" %+.5f", cell_state.get(0, j));
  std::printf("\n\n step   max|h_t|   max|c_t|\n");

  const std::vector<Matrix>& h = lstm.getHiddenStates();
  const std::vector<Matrix>& c = lstm.getCellStates();
  bool consistent = h.size() == sequence.size() && c.size() == sequence.size();
  for (std::size_t t = 0; t < h.size(); ++t) {
    float max_h = 0, max_c = 0;
    for (int j = 0; j < hidden_size; ++j) {
      const float hv = std::fabs(h[t].get(0, j)), cv = std::fabs(c[t].get(0, j));
      max_h = std::max(max_h, hv);
      max_c = std::max(max_c, cv);
      consistent = consistent && hv <= std::tanh(cv) + 1e-6f;  // o_t is in (0, 1)
    }
    std::printf(" %4zu   %8.5f   %8.5f\n", t + 1, max_h, max_c);
  }
  std::printf("\n|h_t| <= tanh(|c_t|) at every step and unit: %s\n", consistent ? "yes" : "NO");
  return consistent ? 0 : 1;
}
