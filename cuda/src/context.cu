// Context: stream + cuBLAS handle per device, and the lazily built per-device registry.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <mutex>

#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/context.h"
#include "pyrnn/cuda/device.h"

namespace pyrnn {
namespace cuda {

namespace {
// Makes `device` current for a scope and restores the caller's device afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    PYRNN_CUDA_CHECK(cudaGetDevice(&prev_));
    PYRNN_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { (void)cudaSetDevice(prev_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0;
};
}  // namespace

Context::Context(int device) : device_(device) {
  DeviceGuard guard(device);
  try {
    PYRNN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    PYRNN_CUBLAS_CHECK(cublasCreate(&cublas_));
    PYRNN_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    // Explicit, so float GEMMs never silently drop to TF32 / BF16x9 emulation.
    PYRNN_CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
    PYRNN_CUBLAS_CHECK(cublasSetPointerMode(cublas_, CUBLAS_POINTER_MODE_HOST));
  } catch (...) {
    release();
    throw;
  }
}

// Best effort, never throws: switch to our device (handles belong to it), then back.
Context::~Context() {
  int prev = 0;
  const bool switched = cudaGetDevice(&prev) == cudaSuccess && cudaSetDevice(device_) == cudaSuccess;
  release();
  if (switched) (void)cudaSetDevice(prev);
}

void Context::release() noexcept {
  if (cublas_) (void)cublasDestroy(cublas_);
  if (stream_) (void)cudaStreamDestroy(stream_);
  cublas_ = nullptr;
  stream_ = nullptr;
}

Context& Context::get(int device) {
  static std::mutex mutex;
  // Leaked on purpose (see the header); the map never erases, so references stay valid.
  static auto* contexts = new std::map<int, std::unique_ptr<Context>>();
  const int n = device_count();
  if (n == 0) throw_error("no usable CUDA device: ", unavailable_reason());
  PYRNN_CHECK(device >= 0 && device < n, "CUDA device ", device, " out of range (", n, " devices)");
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = (*contexts)[device];
  if (!slot) slot = std::make_unique<Context>(device);
  return *slot;
}

}  // namespace cuda
}  // namespace pyrnn
