// DeviceBuffer<T>: owning, move-only array in device memory on the device current at construction
// (and freed there, whatever device is current then).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <iomanip>
#include <limits>
#include <sstream>
#include <string>
#include <utility>

#include "pyrnn/aligned.h"
#include "pyrnn/cuda/check.h"

namespace pyrnn {
namespace cuda {

namespace detail {
// cudaMalloc of `bytes` (> 0) on the current device. Out of memory is pyrnn::OutOfMemory (a
// std::bad_alloc, MemoryError in Python) naming the size, as the host allocations do.
inline void* device_malloc(std::size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // not sticky: clear it so later launch checks stay clean
    int device = -1;
    (void)cudaGetDevice(&device);
    std::ostringstream msg;
    msg << "cudaMalloc of " << bytes << " bytes (" << std::setprecision(3)
        << static_cast<double>(bytes) / 1073741824.0 << " GiB) on device " << device
        << ": out of device memory";
    throw OutOfMemory(msg.str());
  }
  PYRNN_CUDA_CHECK(err);
  return p;
}
// cudaFree of `p` with `device` (where it was allocated) current, the caller's device restored;
// errors ignored. Freed under another current device, cudaFree would create that device's
// primary context if it had none (memory.cu).
void device_free(void* p, int device) noexcept;
}  // namespace detail

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  // Uninitialised (cudaMalloc does not clear); call zero() if it must start at 0.
  explicit DeviceBuffer(std::size_t n) {
    if (n == 0) return;
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T))
      throw OutOfMemory("device buffer of " + std::to_string(n) + " elements of " +
                        std::to_string(sizeof(T)) + " bytes: the size overflows");
    ptr_ = static_cast<T*>(detail::device_malloc(n * sizeof(T)));
    size_ = n;
    (void)cudaGetDevice(&device_);  // cannot fail once cudaMalloc has succeeded
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept { swap(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    DeviceBuffer(std::move(o)).swap(*this);
    return *this;
  }
  // Errors ignored: at process exit the runtime may already be gone.
  ~DeviceBuffer() {
    if (ptr_) detail::device_free(ptr_, device_);
  }

  void swap(DeviceBuffer& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(size_, o.size_);
    std::swap(device_, o.device_);
  }
  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Copies of the first n elements, ordered after prior work on `stream` (which matters for
  // non-blocking streams: a plain cudaMemcpy would not wait for them); they return when done.
  void copy_from_host(const T* src, std::size_t n, cudaStream_t stream = nullptr) {
    PYRNN_CHECK(n <= size_, "DeviceBuffer::copy_from_host: ", n, " elements into a buffer of ", size_);
    if (n == 0) return;
    PYRNN_CUDA_CHECK(cudaMemcpyAsync(ptr_, src, n * sizeof(T), cudaMemcpyHostToDevice, stream));
    PYRNN_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  void copy_to_host(T* dst, std::size_t n, cudaStream_t stream = nullptr) const {
    PYRNN_CHECK(n <= size_, "DeviceBuffer::copy_to_host: ", n, " elements from a buffer of ", size_);
    if (n == 0) return;
    PYRNN_CUDA_CHECK(cudaMemcpyAsync(dst, ptr_, n * sizeof(T), cudaMemcpyDeviceToHost, stream));
    PYRNN_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  // Asynchronous on `stream`; all-zero bytes are 0 for the float and integer types used here.
  void zero(cudaStream_t stream = nullptr) {
    if (size_) PYRNN_CUDA_CHECK(cudaMemsetAsync(ptr_, 0, size_ * sizeof(T), stream));
  }

 private:
  T* ptr_ = nullptr;  // [size_] in device memory
  std::size_t size_ = 0;
  int device_ = -1;  // where ptr_ was allocated
};

}  // namespace cuda
}  // namespace pyrnn
