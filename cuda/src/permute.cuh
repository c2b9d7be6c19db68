// The one launcher of permute01_elem (internal header): permute.cu runs it as a kernel, the host
// emulation (cuda/tests/emu/emu_memory.cpp) as a loop. Behind pyrnn::cuda::permute01
// (DeviceArray.permute01) and the recurrent layers' batch_first swaps alike.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

namespace pyrnn {
namespace cuda {
namespace detail {

// out [B, A, C] = in [A, B, C] (the first two axes swapped), elements of elem_size bytes (4 or
// 8), enqueued on `stream` of the current device; no synchronisation.
void permute01_on(void* out, const void* in, std::size_t A, std::size_t B, std::size_t C,
                  std::size_t elem_size, cudaStream_t stream);

// Typed, for the layers: batch_first [N, T, W] <-> time-major [T, N, W].
template <typename T>
inline void swap01(T* out, const T* in, std::size_t A, std::size_t B, std::size_t W,
                   cudaStream_t stream) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "swap01 moves 4- or 8-byte elements");
  permute01_on(out, in, A, B, W, sizeof(T), stream);
}

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn
