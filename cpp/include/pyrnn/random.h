// Counter-based random numbers: the value at index i depends only on (seed, stream, i), so
// results never depend on thread count or call order.
#pragma once
#include <cstdint>

// Host and device: the CUDA backend draws the same dropout masks in its kernels.
#ifndef PYRNN_HD
#ifdef __CUDACC__
#define PYRNN_HD __host__ __device__
#else
#define PYRNN_HD
#endif
#endif

namespace pyrnn {

PYRNN_HD inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in [0, 1) with 53 random bits.
PYRNN_HD inline double uniform01(std::uint64_t seed, std::uint64_t stream, std::uint64_t i) {
  const std::uint64_t h = splitmix64(splitmix64(seed ^ splitmix64(stream)) + i);
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace pyrnn
