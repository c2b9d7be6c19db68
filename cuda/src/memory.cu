// copy_bytes / pointer_device, permute01 and the rest of pyrnn/cuda/memory.h: runtime calls
// only, no kernels (permute01's is permute.cu's detail::permute01_on), so the host emulation
// compiles this file as it is.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <optional>

#include "device_scope.cuh"
#include "permute.cuh"
#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/memory.h"
#include "pyrnn/error.h"

namespace pyrnn {
namespace cuda {

using detail::DeviceScope;

void copy_bytes(void* dst, const void* src, std::size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  PYRNN_CHECK(dst && src, "copy_bytes: null pointer");
  PYRNN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
  PYRNN_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void copy_bytes(void* dst, const void* src, std::size_t bytes, cudaStream_t stream, int device) {
  if (device < 0 || bytes == 0) return copy_bytes(dst, src, bytes, stream);
  DeviceScope scope(device);
  copy_bytes(dst, src, bytes, stream);
}

void permute01(void* out, const void* in, std::size_t A, std::size_t B, std::size_t C,
               std::size_t elem_size, int device) {
  if (A * B * C == 0) return;
  DeviceScope scope(device);
  detail::permute01_on(out, in, A, B, C, elem_size, nullptr);
  PYRNN_CUDA_CHECK(cudaStreamSynchronize(nullptr));
}

namespace detail {
void device_free(void* p, int device) noexcept {
  // Errors ignored (the slot cleared): at process exit the runtime may already be gone.
  std::optional<DeviceScope> scope;
  if (device >= 0 && !scope.emplace(device, std::nothrow).ok()) return;
  if (cudaFree(p) != cudaSuccess) (void)cudaGetLastError();
}
}  // namespace detail

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

}  // namespace cuda
}  // namespace pyrnn
