// detail::permute01_on (permute.cuh): the one permute kernel, behind permute01 (memory.cu) and
// the layers' batch_first swaps; apart from memory.cu so that file stays kernel-free (the host
// emulation compiles it as C++, with emu_memory.cpp's loop for this).
#include <cuda_runtime.h>

#include <cstdint>

#include "grid.cuh"
#include "permute.cuh"
#include "permute_elem.cuh"
#include "pyrnn/cuda/check.h"
#include "pyrnn/error.h"

namespace pyrnn {
namespace cuda {

namespace {
template <typename E>
__global__ void permute01_kernel(E* __restrict__ out, const E* __restrict__ in, std::size_t A,
                                 std::size_t B, std::size_t C) {
  PYRNN_GRID_LOOP(i, A * B * C) detail::permute01_elem(i, out, in, A, B, C);
}
}  // namespace

namespace detail {
void permute01_on(void* out, const void* in, std::size_t A, std::size_t B, std::size_t C,
                  std::size_t elem_size, cudaStream_t stream) {
  const std::size_t n = A * B * C;
  if (n == 0) return;
  PYRNN_CHECK(elem_size == 4 || elem_size == 8, "permute01: element size ", elem_size,
              " is not 4 or 8");
  const unsigned blocks = blocks_for(n);
  if (elem_size == 4)
    permute01_kernel<std::uint32_t><<<blocks, kThreads, 0, stream>>>(
        static_cast<std::uint32_t*>(out), static_cast<const std::uint32_t*>(in), A, B, C);
  else
    permute01_kernel<std::uint64_t><<<blocks, kThreads, 0, stream>>>(
        static_cast<std::uint64_t*>(out), static_cast<const std::uint64_t*>(in), A, B, C);
  PYRNN_CUDA_CHECK(cudaGetLastError());
}
}  // namespace detail

}  // namespace cuda
}  // namespace pyrnn
