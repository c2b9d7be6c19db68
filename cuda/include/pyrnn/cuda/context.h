// Per-device execution context: one non-blocking stream and a cuBLAS handle bound to it, and on
// demand a second (side) stream with its own handle, for work that runs beside the main stream.
#pragma once
#include <cuda_runtime_api.h>

#include <mutex>

// Same declaration as cublas_api.h, so this header does not need cuBLAS's include dir.
struct cublasContext;
typedef struct cublasContext* cublasHandle_t;

namespace pyrnn {
namespace cuda {

class Context {
 public:
  // Creates the stream and handle on `device` (restoring the caller's current device), with
  // cuBLAS in default (true fp32, no TF32) math, host pointer mode and a workspace of its own
  // (so GEMMs captured into CUDA graphs pick the same kernels as eager ones).
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
  // The lock pyrnn holds while it queues work on stream() / cublas(): a recurrent pass may be
  // capturing stream() into a CUDA graph, which would take in another thread's work. Hold it
  // while queueing your own work there (cuda::gemm, fill, copies) when other threads use pyrnn
  // on this device; not across a pyrnn call, which takes it itself (it is not recursive).
  std::mutex& mutex() const;
  // The side stream (non-blocking) and its handle, created on first use (on this context's
  // device, whatever the caller's current one is). Independent of stream(): order with events.
  cudaStream_t side_stream();
  cublasHandle_t side_cublas();
  // A non-blocking stream no pass or training call uses, so never under graph capture and
  // needing no device lock: DLPack producers order their pending work before it, and the
  // importer synchronizes it. Created on first use.
  cudaStream_t import_stream();
  // Makes stream() wait for the work queued so far on this device's legacy default stream, where
  // PyTorch, CuPy and Numba queue theirs unless told otherwise: a DeviceArray another library
  // is still writing or reading there is then ordered before pyrnn's work on it (work on a
  // blocking stream too, which the legacy stream waits for). The recurrent layers and the
  // training calls call it first (under mutex(), on this device, outside any capture); the
  // seeds' MatrixCUDA facade, on memory only pyrnn holds, does not. Work on another library's
  // non-blocking stream stays the caller's to order (synchronize it).
  void after_legacy_stream();
  // One device word the optimizer steps OR their NonFinite bits into (pyrnn/cuda/optim.h): made
  // on first use, freed with the context, used under mutex() on stream().
  unsigned* step_flags();

 private:
  void release() noexcept;
  void make_side();

  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* workspace_ = nullptr;  // cuBLAS workspace of cublas_
  std::mutex side_mutex_;  // guards the lazy creation of the side and import streams
  cudaStream_t side_stream_ = nullptr;
  cublasHandle_t side_cublas_ = nullptr;
  void* side_workspace_ = nullptr;
  cudaStream_t import_stream_ = nullptr;
  cudaEvent_t legacy_event_ = nullptr;  // after_legacy_stream's; made with the stream
  unsigned* step_flags_ = nullptr;
};

}  // namespace cuda
}  // namespace pyrnn
