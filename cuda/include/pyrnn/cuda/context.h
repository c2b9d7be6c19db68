// Per-device execution context: one non-blocking stream and a cuBLAS handle bound to it.
#pragma once
#include <cuda_runtime_api.h>

// Same declaration as cublas_api.h, so this header does not need cuBLAS's include dir.
struct cublasContext;
typedef struct cublasContext* cublasHandle_t;

namespace pyrnn {
namespace cuda {

class Context {
 public:
  // Creates the stream and handle on `device` (restoring the caller's current device), with
  // cuBLAS in default (true fp32, no TF32) math and host pointer mode.
  explicit Context(int device);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // The shared per-device instance, created on first use; throws pyrnn::Error for a bad index.
  // Never destroyed: at static destruction the CUDA runtime may already be unloaded.
  static Context& get(int device);

  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  int device() const { return device_; }

 private:
  void release() noexcept;

  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
};

}  // namespace cuda
}  // namespace pyrnn
