// The seeds' "GPU Version": the LSTM layer on the GPU, checked against the CPU layer.
//
//   #include "nn/lstm_cuda.h"
//   LSTMLayerCUDA lstm(input_size, hidden_size, output_size);
//   std::vector<MatrixCUDA> sequence_gpu; ... MatrixCUDA(input) / toGPU() ...
//   MatrixCUDA output = lstm.forward(sequence_gpu);
//   Matrix host = static_cast<Matrix>(output);
//   std::vector<MatrixCUDA> batch; batch.push_back(sequences[i]);  // "GPU Optimization"
//
// Exits 0 after printing the output (and the largest difference to pyrnn::LSTMLayer with the
// same seed); without a usable GPU it prints why and exits 0 too.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include <pyrnn/cuda/device.h>
#include <pyrnn/nn/lstm.h>
#include <pyrnn/nn/lstm_cuda.h>

using namespace pyrnn;

int main() {
  if (cuda::device_count() == 0) {
    std::printf("no CUDA device: %s\n", cuda::unavailable_reason().c_str());
    return 0;
  }
  const int input_size = 10, hidden_size = 50, output_size = 5;
  const int steps = 20, batch = 4;
  try {
    LSTMLayerCUDA lstm(input_size, hidden_size, output_size, /*seed=*/42);
    LSTMLayer reference(input_size, hidden_size, output_size, /*seed=*/42);

    std::vector<Matrix> sequence;
    std::vector<MatrixCUDA> sequence_gpu;
    for (int t = 0; t < steps; ++t) {
      Matrix input(batch, input_size);
      for (int n = 0; n < batch; ++n)
        for (int c = 0; c < input_size; ++c)
          input.set(n, c, static_cast<float>(std::sin(0.1 * t + 0.5 * c + n)));
      sequence.push_back(input);
      MatrixCUDA step(input);  // uploads
      step.toGPU();            // the seeds' call: a no-op, the data is already on the device
      sequence_gpu.push_back(std::move(step));
    }

    MatrixCUDA output = lstm.forward(sequence_gpu);  // batch x output_size, on the device
    Matrix host = static_cast<Matrix>(output);       // or output.toCPU()

    // The seeds' "5. GPU Optimization": host matrices pushed into a std::vector<MatrixCUDA>
    // (each push_back uploads one), then the whole batch at once. The same output.
    std::vector<MatrixCUDA> batch_gpu;
    for (int t = 0; t < steps; ++t) batch_gpu.push_back(sequence[t]);
    Matrix again = lstm.forward(batch_gpu).toCPU();
    if (!std::equal(again.data(), again.data() + again.size(), host.data())) {
      std::fprintf(stderr, "error: the pushed-back batch gave another output\n");
      return 1;
    }
    reference.eval();
    Matrix want = reference.forward(sequence);

    std::printf("%s on %s: output %zu x %zu\n", lstm.name().c_str(), cuda::device_name(0).c_str(),
                host.rows(), host.cols());
    double worst = 0.0;
    for (std::size_t n = 0; n < host.rows(); ++n) {
      std::printf("  [");
      for (std::size_t o = 0; o < host.cols(); ++o) {
        std::printf(" %+.5f", host.get(n, o));
        worst = std::max(worst, std::fabs(double(host.get(n, o)) - double(want.get(n, o))));
      }
      std::printf(" ]\n");
    }
    std::printf("max |GPU - CPU| = %.3g\n", worst);
    return worst < 1e-4 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
