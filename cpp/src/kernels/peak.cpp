// fma_peak_gflops: the current ISA's multiply-add loop, timed on every thread at once.
#include "pyrnn/kernels/peak.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "pyrnn/error.h"
#include "pyrnn/kernels/ops.h"
#include "pyrnn/runtime.h"

namespace pyrnn {
namespace kernels {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

double fma_peak_gflops(int threads, double seconds) {
  PYRNN_CHECK(threads >= 1 && threads <= 4096,
              "fma_peak_gflops: threads must be in [1, 4096], got ", threads);
  PYRNN_CHECK(seconds > 0 && seconds <= 60, "fma_peak_gflops: seconds must be in (0, 60], got ",
              seconds);
  PYRNN_CHECK(threads == 1 || !::pyrnn::detail::forked_child(), "fma_peak_gflops(threads=",
              threads, "): this process was fork()ed from one with threads, and OpenMP's thread ",
              "pool does not survive fork; only 1 thread can run here");
  const Ops<float>& o = ops<float>();
  constexpr int kTrials = 5;
  std::vector<float> sinks(static_cast<std::size_t>(threads), 0.0f);
  // Rounds for one trial: grow a one-thread run until it is long enough to time, then scale.
  long long rounds = 1 << 10;
  double t = 0;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    o.fma_loop(rounds, sinks.data());
    t = seconds_since(t0);
    if (t >= 2e-3 || rounds >= (1LL << 40)) break;
    rounds *= 4;
  }
  const double scaled = static_cast<double>(rounds) * (seconds / kTrials) / std::max(t, 1e-9);
  rounds = static_cast<long long>(std::min(std::max(scaled, 1.0), 1e15));
  double best = 0;
  for (int trial = 0; trial < kTrials; ++trial) {
    double flops = 0;
    const auto t0 = std::chrono::steady_clock::now();
    ::pyrnn::detail::note_team(threads);
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : flops)
    flops += o.fma_loop(rounds, &sinks[static_cast<std::size_t>(omp_get_thread_num())]);
#else
    flops = o.fma_loop(rounds, sinks.data());
#endif
    const double dt = seconds_since(t0);
    if (dt > 0) best = std::max(best, flops / dt * 1e-9);
  }
  // The sums are finite by construction; reading them keeps every thread's loop alive.
  float sum = 0;
  for (float s : sinks) sum += s;
  PYRNN_CHECK(std::isfinite(sum), "fma_peak_gflops: the multiply-add loop produced ", sum);
  return best;
}

}  // namespace kernels
}  // namespace pyrnn
