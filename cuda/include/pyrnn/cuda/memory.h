// Untyped copies and layout helpers on device memory, for the Python wrappers and the facade.
// All calls return when the work is complete (they synchronize `stream`).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

#include "pyrnn/cuda/buffer.h"

namespace pyrnn {
namespace cuda {

// bytes from src to dst, either side host or device (cudaMemcpyDefault: unified addressing).
void copy_bytes(void* dst, const void* src, std::size_t bytes, cudaStream_t stream = nullptr);
// The same with `device` current for the call (the caller's restored): the device of the
// device-side pointer(s), so a null `stream` is that device's default stream and no context is
// made on the caller's current device. device < 0: as above.
void copy_bytes(void* dst, const void* src, std::size_t bytes, cudaStream_t stream, int device);
// out [B, A, C] = in [A, B, C] transposed in its first two axes (batch_first <-> time-major);
// elem_size 4 or 8 bytes. Device pointers on `device`; in and out must not overlap. Runs on
// that device's legacy default stream (the caller's current device is restored).
void permute01(void* out, const void* in, std::size_t A, std::size_t B, std::size_t C,
               std::size_t elem_size, int device);
// A new (heap) buffer of `bytes` bytes on `device` (the caller's current device is restored);
// the caller deletes it. For owners that cannot hold a DeviceBuffer by value (Cython).
DeviceBuffer<unsigned char>* new_device_bytes(std::size_t bytes, int device);
// Waits for `stream` (a handle, or cudaStreamLegacy / cudaStreamPerThread).
void synchronize_stream(cudaStream_t stream);
// The same with `device` made current for the call (the caller's restored), for the two handles
// that name the CURRENT device's default stream: the device a producer's array lives on,
// whatever the caller's current one is. device < 0: as above.
void synchronize_stream(cudaStream_t stream, int device);
// The device a pointer belongs to, or -1 for host / unknown memory (never throws).
int pointer_device(const void* p);

}  // namespace cuda
}  // namespace pyrnn
