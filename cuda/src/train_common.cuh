// Small helpers shared by layers.cu and optim.cu (internal header).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

#include "call_scope.cuh"
#include "pyrnn/cuda/buffer.h"
#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/context.h"

namespace pyrnn {
namespace cuda {
namespace detail {

// A device copy of a host array (ordered on `stream`, complete on return).
template <typename U>
DeviceBuffer<U> upload(const U* host, std::size_t n, cudaStream_t stream) {
  DeviceBuffer<U> b(n);
  b.copy_from_host(host, n, stream);
  return b;
}

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn
