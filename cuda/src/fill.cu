// fill: the template for pointwise kernels (grid-stride loop, launch checked immediately).
#include <cuda_runtime.h>

#include <algorithm>

#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/fill.h"

namespace pyrnn {
namespace cuda {

namespace {
template <typename T>
__global__ void fill_kernel(T* __restrict__ p, std::size_t n, T value) {
  const std::size_t stride = static_cast<std::size_t>(blockDim.x) * gridDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride)
    p[i] = value;
}
}  // namespace

template <typename T>
void fill(T* p, std::size_t n, T value, cudaStream_t stream) {
  if (n == 0) return;
  constexpr unsigned kThreads = 256;
  // Capped grid: the stride loop covers the rest, and huge n cannot overflow gridDim.x.
  const std::size_t blocks = std::min<std::size_t>((n + kThreads - 1) / kThreads, 4096);
  fill_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, n, value);
  PYRNN_CUDA_CHECK(cudaGetLastError());
}

template void fill<float>(float*, std::size_t, float, cudaStream_t);
template void fill<double>(double*, std::size_t, double, cudaStream_t);

}  // namespace cuda
}  // namespace pyrnn
