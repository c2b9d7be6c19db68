// fill: the template for pointwise kernels (grid-stride loop, launch checked immediately).
#include <cuda_runtime.h>

#include "grid.cuh"
#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/fill.h"

namespace pyrnn {
namespace cuda {

namespace {
template <typename T>
__global__ void fill_kernel(T* __restrict__ p, std::size_t n, T value) {
  PYRNN_GRID_LOOP(i, n) p[i] = value;
}
}  // namespace

template <typename T>
void fill(T* p, std::size_t n, T value, cudaStream_t stream) {
  if (n == 0) return;
  // A smaller cap than the default: a fill is memory-bound, 4096 blocks saturate any device.
  fill_kernel<T><<<detail::blocks_for(n, 4096), detail::kThreads, 0, stream>>>(p, n, value);
  PYRNN_CUDA_CHECK(cudaGetLastError());
}

template void fill<float>(float*, std::size_t, float, cudaStream_t);
template void fill<double>(double*, std::size_t, double, cudaStream_t);

}  // namespace cuda
}  // namespace pyrnn
