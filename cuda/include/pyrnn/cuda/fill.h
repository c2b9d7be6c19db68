// Pointwise fill of device memory, asynchronous on `stream`.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

namespace pyrnn {
namespace cuda {

// Grid-stride kernel; instantiated for float and double.
template <typename T>
void fill(T* p, std::size_t n, T value, cudaStream_t stream = nullptr);

}  // namespace cuda
}  // namespace pyrnn
