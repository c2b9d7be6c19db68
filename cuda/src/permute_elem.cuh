// permute01's per-element body (internal header), host and device: permute.cu's kernel runs it
// one thread per element, the host emulation (cuda/tests/emu/emu_memory.cpp) in a loop.
#pragma once
#include <cstddef>

#include "pyrnn/random.h"  // PYRNN_HD

namespace pyrnn {
namespace cuda {
namespace detail {

// Element i of out [B, A, C] from in [A, B, C]: the first two axes swapped.
template <typename E>
PYRNN_HD inline void permute01_elem(std::size_t i, E* out, const E* in, std::size_t A,
                                    std::size_t B, std::size_t C) {
  const std::size_t c = i % C, a = (i / C) % A, b = i / (C * A);
  out[i] = in[(a * B + b) * C + c];
}

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn
