// Runs a small LSTM forward + backward through the installed C++ library.
#include <cmath>
#include <cstdio>
#include <vector>

#include <pyrnn/pyrnn.h>

int main() {
  pyrnn::Matrix m(2, 3);
  m.set(1, 2, 4.5f);
  pyrnn::RecurrentConfig cfg;
  cfg.cell = pyrnn::CellType::LSTM;
  cfg.input_size = 3;
  cfg.hidden_size = 4;
  pyrnn::Recurrent<float> lstm(cfg);
  lstm.reset_parameters(42);
  const int T = 5, N = 2;
  std::vector<float> x(T * N * 3, 0.5f), y(T * N * 4), hn(N * 4), cn(N * 4);
  lstm.forward(y.data(), hn.data(), cn.data(), x.data(), nullptr, nullptr, nullptr, T, N, true, 0);
  std::vector<float> dx(x.size()), dh0(hn.size()), dc0(cn.size());
  lstm.backward(dx.data(), dh0.data(), dc0.data(), y.data(), nullptr, nullptr);
  double s = 0;
  for (float v : y) s += v;
  try {
    m.get(5, 5);
    return 1;
  } catch (const pyrnn::Error&) {
  }
  std::printf("pyrnn %s: %zu parameters, sum(y) = %.6f, m(1,2) = %.1f\n", pyrnn::version(),
              lstm.num_parameters(), s, m.get(1, 2));
  return std::isfinite(s) ? 0 : 1;
}
