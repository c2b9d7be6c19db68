// memory.cu and fill.cu for the host emulation (see host_runtime.cpp): the same functions, with
// the permute01 and fill kernels as loops over every element. The runtime calls (copies,
// synchronisation, cudaPointerGetAttributes) go through host_runtime.cpp as in memory.cu.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstring>
#include <functional>

#include "device_scope.cuh"
#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/fill.h"
#include "pyrnn/cuda/memory.h"
#include "pyrnn/error.h"

namespace pyrnn {
namespace cuda {

using detail::DeviceScope;
namespace emu {
void run_or_record(std::function<void()> op);  // host_runtime.cpp: now, or into an open capture
}

namespace {
template <typename E>
void permute01_loop(E* out, const E* in, std::size_t A, std::size_t B, std::size_t C) {
  for (std::size_t i = 0; i < A * B * C; ++i) {
    // i indexes out [B, A, C], as in memory.cu's kernel
    const std::size_t c = i % C, a = (i / C) % A, b = i / (C * A);
    out[i] = in[(a * B + b) * C + c];
  }
}
}  // namespace

void copy_bytes(void* dst, const void* src, std::size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  PYRNN_CHECK(dst && src, "copy_bytes: null pointer");
  PYRNN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
  PYRNN_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void permute01(void* out, const void* in, std::size_t A, std::size_t B, std::size_t C,
               std::size_t elem_size, int device) {
  const std::size_t n = A * B * C;
  if (n == 0) return;
  DeviceScope scope(device);
  PYRNN_CHECK(elem_size == 4 || elem_size == 8, "permute01: element size ", elem_size,
              " is not 4 or 8");
  emu::run_or_record([=] {
    if (elem_size == 4)
      permute01_loop(static_cast<std::uint32_t*>(out), static_cast<const std::uint32_t*>(in), A,
                     B, C);
    else
      permute01_loop(static_cast<std::uint64_t*>(out), static_cast<const std::uint64_t*>(in), A,
                     B, C);
  });
  PYRNN_CUDA_CHECK(cudaStreamSynchronize(nullptr));
}

DeviceBuffer<unsigned char>* new_device_bytes(std::size_t bytes, int device) {
  DeviceScope scope(device);
  return new DeviceBuffer<unsigned char>(bytes);
}

void synchronize_stream(cudaStream_t stream) { PYRNN_CUDA_CHECK(cudaStreamSynchronize(stream)); }

void synchronize_stream(cudaStream_t stream, int device) {
  if (device < 0) return synchronize_stream(stream);
  DeviceScope scope(device);
  PYRNN_CUDA_CHECK(cudaStreamSynchronize(stream));
}

int pointer_device(const void* p) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    (void)cudaGetLastError();
    return -1;
  }
  return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged ? attr.device : -1;
}

template <typename T>
void fill(T* p, std::size_t n, T value, cudaStream_t) {
  if (n == 0) return;
  emu::run_or_record([=] {
    for (std::size_t i = 0; i < n; ++i) p[i] = value;
  });
}

template void fill<float>(float*, std::size_t, float, cudaStream_t);
template void fill<double>(double*, std::size_t, double, cudaStream_t);

}  // namespace cuda
}  // namespace pyrnn
