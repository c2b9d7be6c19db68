// What every call that queues work on a Context's stream takes first (internal header): the
// recurrent layers' entry points (recurrent.cu) and the training stack's (layers.cu, optim.cu).
#pragma once
#include <cuda_runtime_api.h>

#include <exception>
#include <mutex>

#include "device_lock.cuh"
#include "device_scope.cuh"
#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/context.h"

namespace pyrnn {
namespace cuda {
namespace detail {

// For a call's whole scope: the device lock (device_lock.cuh: the Context's stream and cuBLAS
// handles are shared by every layer on the device, and one may be capturing the stream in
// another thread), the Context's device made current (the caller's restored), and the stream
// ordered after work another library queued on the legacy default stream (an array it still
// writes or reads there). A call that throws after queueing work waits for it, on the main
// stream and on a side stream named with also(), before the lock is released: the caller, who
// now has the error, never finds its outputs, gradients or caches still being written (or read).
class CallScope {
 public:
  explicit CallScope(Context& ctx)
      : ctx_(ctx), lock_(device_mutex(ctx.device())), device_(ctx.device()) {
    ctx.after_legacy_stream();
  }
  ~CallScope() {
    if (std::uncaught_exceptions() <= uncaught_) return;
    for (cudaStream_t s : {side_, ctx_.stream()})
      if (s && cudaStreamSynchronize(s) != cudaSuccess) (void)cudaGetLastError();
  }
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

  // A second stream the call queues work on (a bidirectional pass's side lane).
  void also(cudaStream_t side) { side_ = side; }
  cudaStream_t stream() const { return ctx_.stream(); }
  void synchronize() const { PYRNN_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream())); }

 private:
  Context& ctx_;
  std::lock_guard<std::mutex> lock_;  // taken first, released last
  DeviceScope device_;
  cudaStream_t side_ = nullptr;
  int uncaught_ = std::uncaught_exceptions();
};

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn
