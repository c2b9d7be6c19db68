// Small helpers shared by layers.cu and optim.cu (internal header).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <exception>
#include <mutex>

#include "device_lock.cuh"
#include "device_scope.cuh"
#include "pyrnn/cuda/buffer.h"
#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/context.h"

namespace pyrnn {
namespace cuda {
namespace detail {

// Makes the Context's device current for a scope (restoring the caller's), and finishes the
// scope's work: synchronize() waits for the stream, so results are complete when a call returns.
// Holds the device lock (device_lock.cuh) throughout: the Context's stream and cuBLAS handle are
// the recurrent layers' too, and one of them may be capturing the stream in another thread.
class TrainScope {
 public:
  explicit TrainScope(Context& ctx)
      : ctx_(ctx), lock_(device_mutex(ctx.device())), device_(ctx.device()) {
    ctx.after_legacy_stream();  // an array another library still writes or reads there
  }
  // A call that throws after queueing work waits for it: the caller must not find its outputs
  // still being written (or read) once it has the error.
  ~TrainScope() {
    if (std::uncaught_exceptions() > uncaught_ &&
        cudaStreamSynchronize(ctx_.stream()) != cudaSuccess)
      (void)cudaGetLastError();
  }
  TrainScope(const TrainScope&) = delete;
  TrainScope& operator=(const TrainScope&) = delete;

  cudaStream_t stream() const { return ctx_.stream(); }
  void synchronize() const { PYRNN_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream())); }

 private:
  Context& ctx_;
  std::lock_guard<std::mutex> lock_;  // taken first, released last
  DeviceScope device_;
  int uncaught_ = std::uncaught_exceptions();
};

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
