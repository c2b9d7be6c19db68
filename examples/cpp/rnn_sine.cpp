// The seeds' RNN example grown into a training run: an RNNLayer(1, 32, 1) learns to predict
// the next sample of a sine wave from the previous 10, with Adam (default) or SGD + momentum,
// gradient clipping by global norm, and a held-out set (a smaller wave) it never trains on.
//
//   rnn_sine [adam|sgd] [epochs]
//
// Prints the loss every 50 epochs; exits 1 if the loss did not fall well below its start.
//
// The seeds write the layer as `RNNLayer rnn(input_size=1, hidden_size=32, output_size=1);`
// (keyword style); in C++ that is the three sizes in that order, as below.
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <pyrnn/nn/rnn.h>

using namespace pyrnn;

namespace {

constexpr int kSteps = 10;        // input window
constexpr double kDt = 0.3;       // phase advance per step (radians)
constexpr double kPi = 3.14159265358979323846;

// Windows of the sine wave, one per phase: sequence T x [N, 1] and next-sample targets [N, 1].
struct Data {
  std::vector<Matrix> sequence;
  Matrix target;
};

Data make_data(int count, double phase_offset, double amplitude) {
  Data d{std::vector<Matrix>(kSteps, Matrix(count, 1)), Matrix(count, 1)};
  for (int n = 0; n < count; ++n) {
    const double phase = 2 * kPi * (n + phase_offset) / count;
    for (int t = 0; t < kSteps; ++t)
      d.sequence[t].set(n, 0, static_cast<float>(amplitude * std::sin(phase + kDt * t)));
    d.target.set(n, 0, static_cast<float>(amplitude * std::sin(phase + kDt * kSteps)));
  }
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string optimizer = argc > 1 ? argv[1] : "adam";
  // strtol, not atoi: "abc" or an out-of-range count is a usage error, not 0 or overflow.
  long epochs = 300;
  if (argc > 2) {
    char* end = nullptr;
    errno = 0;
    epochs = std::strtol(argv[2], &end, 10);
    if (end == argv[2] || *end != '\0' || errno == ERANGE) epochs = 0;
  }
  if ((optimizer != "adam" && optimizer != "sgd") || epochs < 1 || epochs > 1000000) {
    std::fprintf(stderr, "usage: rnn_sine [adam|sgd] [epochs in 1..1000000]\n");
    return 2;
  }
  const int input_size = 1, hidden_size = 32, output_size = 1;
  const double clip = 1.0;

  RNNLayer rnn(input_size, hidden_size, output_size, /*seed=*/1);
  Adam adam(0.01);
  SGD sgd(0.05, 0.9);

  const Data train = make_data(64, 0.0, 1.0);
  // Windows it never trains on, of a smaller wave: new phases alone told nothing (the loss
  // averaged over evenly spaced phases of the whole period hardly depends on where they start:
  // both losses printed the same digits), a new amplitude asks whether the step was learned.
  const Data held_out = make_data(32, 0.25, 0.6);
  auto held_out_loss = [&]() {
    rnn.eval();  // no BPTT cache needed
    const double l = mseLoss(rnn.forward(held_out.sequence), held_out.target);
    rnn.train();
    return l;
  };

  const double first_held_out = held_out_loss();
  double first = 0, loss = 0;
  Matrix d_output;  // [N, 1] d loss / d prediction
  for (int epoch = 0; epoch < epochs; ++epoch) {
    // One full-batch step: forward, loss, BPTT, clip, update.
    rnn.zeroGrad();
    const Matrix prediction = rnn.forward(train.sequence);
    loss = mseLoss(prediction, train.target, &d_output);
    if (epoch == 0) first = loss;
    rnn.backward(d_output);
    const double norm = clipGradNorm(rnn, clip);
    if (optimizer == "adam") adam.step(rnn);
    else sgd.step(rnn);
    if (epoch % 50 == 0)
      std::printf("epoch %4d  loss %.6f  grad norm %.4f\n", epoch, loss, norm);
  }
  rnn.zeroGrad();
  loss = mseLoss(rnn.forward(train.sequence), train.target);
  const double last_held_out = held_out_loss();

  // "Well below the start": both losses under 5% of where they began.
  const bool learned = loss < 0.05 * first && last_held_out < 0.05 * first_held_out;
  std::printf("%s, %ld epochs: train loss %.6f -> %.6f, held-out loss %.6f -> %.6f: %s\n",
              optimizer.c_str(), epochs, first, loss, first_held_out, last_held_out,
              learned ? "learned" : "DID NOT LEARN");
  return learned ? 0 : 1;
}
