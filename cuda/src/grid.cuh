// The launch shape of the pointwise kernels (internal header): blocks of kThreads threads, a grid
// capped so gridDim.x never overflows, and a grid-stride loop that covers what the cap leaves.
#pragma once
#include <cstddef>

namespace pyrnn {
namespace cuda {
namespace detail {

constexpr unsigned kThreads = 256;

// Blocks for n elements: one thread each, at least 1, at most `cap` (the stride loop does the rest).
inline unsigned blocks_for(std::size_t n, std::size_t cap = 65535) {
  const std::size_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks > cap ? cap : blocks);
}

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn

// for (i = this thread's first element; i < count; i += the grid's thread count)
#define PYRNN_GRID_LOOP(i, count)                                                          \
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; \
       i < (count); i += static_cast<std::size_t>(blockDim.x) * gridDim.x)
