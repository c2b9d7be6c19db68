// Context: stream + cuBLAS handle per device, and the lazily built per-device registry.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>

#include "device_lock.cuh"
#include "device_scope.cuh"
#include "pyrnn/cuda/buffer.h"
#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/context.h"
#include "pyrnn/cuda/device.h"

namespace pyrnn {
namespace cuda {

namespace {
using detail::DeviceScope;
// cuBLAS's recommended workspace: 32 MiB on Hopper and newer, 4 MiB before.
std::size_t workspace_bytes(int device) {
  int major = 0;
  PYRNN_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  return major >= 9 ? (std::size_t(32) << 20) : (std::size_t(4) << 20);
}

// A stream, a handle bound to it and the handle's own workspace (set after cublasSetStream,
// which resets the workspace to cuBLAS's pool).
void make_stream_and_handle(int device, cudaStream_t* stream, cublasHandle_t* handle,
                            void** workspace) {
  PYRNN_CUDA_CHECK(cudaStreamCreateWithFlags(stream, cudaStreamNonBlocking));
  PYRNN_CUBLAS_CHECK(cublasCreate(handle));
  PYRNN_CUBLAS_CHECK(cublasSetStream(*handle, *stream));
  // Explicit, so float GEMMs never silently drop to TF32 / BF16x9 emulation.
  PYRNN_CUBLAS_CHECK(cublasSetMathMode(*handle, CUBLAS_DEFAULT_MATH));
  PYRNN_CUBLAS_CHECK(cublasSetPointerMode(*handle, CUBLAS_POINTER_MODE_HOST));
  const std::size_t bytes = workspace_bytes(device);
  *workspace = detail::device_malloc(bytes);
  PYRNN_CUBLAS_CHECK(cublasSetWorkspace(*handle, *workspace, bytes));
}
}  // namespace

Context::Context(int device) : device_(device) {
  DeviceScope guard(device);
  try {
    make_stream_and_handle(device, &stream_, &cublas_, &workspace_);
    PYRNN_CUDA_CHECK(cudaEventCreateWithFlags(&legacy_event_, cudaEventDisableTiming));
  } catch (...) {
    release();
    throw;
  }
}

void Context::make_side() {
  std::lock_guard<std::mutex> lock(side_mutex_);
  if (side_cublas_) return;
  cudaStream_t s = nullptr;
  cublasHandle_t h = nullptr;
  void* w = nullptr;
  DeviceScope guard(device_);  // the stream and handle belong to our device, as import_stream's
  try {
    make_stream_and_handle(device_, &s, &h, &w);
  } catch (...) {
    if (h) (void)cublasDestroy(h);
    if (s) (void)cudaStreamDestroy(s);
    if (w) (void)cudaFree(w);
    throw;
  }
  side_stream_ = s;
  side_workspace_ = w;
  side_cublas_ = h;
}

cudaStream_t Context::side_stream() {
  make_side();
  return side_stream_;
}

cublasHandle_t Context::side_cublas() {
  make_side();
  return side_cublas_;
}

cudaStream_t Context::import_stream() {
  std::lock_guard<std::mutex> lock(side_mutex_);
  if (!import_stream_) {
    DeviceScope guard(device_);
    PYRNN_CUDA_CHECK(cudaStreamCreateWithFlags(&import_stream_, cudaStreamNonBlocking));
  }
  return import_stream_;
}

void Context::after_legacy_stream() {
  // cudaStreamLegacy is the current device's: the caller has made ours current.
  PYRNN_CUDA_CHECK(cudaEventRecord(legacy_event_, cudaStreamLegacy));
  PYRNN_CUDA_CHECK(cudaStreamWaitEvent(stream_, legacy_event_, 0));
}

unsigned* Context::step_flags() {
  std::lock_guard<std::mutex> lock(side_mutex_);
  if (!step_flags_) {
    DeviceScope guard(device_);
    step_flags_ = static_cast<unsigned*>(detail::device_malloc(sizeof(unsigned)));
  }
  return step_flags_;
}

// Best effort, never throws: on our device (handles belong to it) where it can switch, and
// failures leave no error behind.
Context::~Context() {
  DeviceScope scope(device_, std::nothrow);
  release();
}

void Context::release() noexcept {
  if (side_cublas_) (void)cublasDestroy(side_cublas_);
  if (side_stream_) (void)cudaStreamDestroy(side_stream_);
  if (side_workspace_) (void)cudaFree(side_workspace_);
  if (import_stream_) (void)cudaStreamDestroy(import_stream_);
  if (cublas_) (void)cublasDestroy(cublas_);
  if (stream_) (void)cudaStreamDestroy(stream_);
  if (workspace_) (void)cudaFree(workspace_);
  if (step_flags_) (void)cudaFree(step_flags_);
  if (legacy_event_) (void)cudaEventDestroy(legacy_event_);
  legacy_event_ = nullptr;
  side_cublas_ = nullptr;
  side_stream_ = nullptr;
  side_workspace_ = nullptr;
  import_stream_ = nullptr;
  cublas_ = nullptr;
  stream_ = nullptr;
  workspace_ = nullptr;
  step_flags_ = nullptr;
}

std::mutex& Context::mutex() const { return detail::device_mutex(device_); }

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
