// MatrixCUDA (pyrnn/cuda/matrix_cuda.h): memory on device 0 and copies through its Context stream,
// whichever device the caller has made current (the seeds' layers that read it run on device 0).
// Each call holds device 0's lock (device_lock.cuh) while it queues work on that stream and
// waits for it: another thread may be capturing the stream into a CUDA graph.
#include <cuda_runtime.h>

#include <mutex>

#include "device_lock.cuh"
#include "device_scope.cuh"
#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/context.h"
#include "pyrnn/cuda/matrix_cuda.h"
#include "pyrnn/error.h"

namespace pyrnn {

namespace {
cudaStream_t stream() { return cuda::Context::get(0).stream(); }  // throws without a device
// Device 0 current for the scope, once Context::get(0) has found one: without a device that
// throws "no usable CUDA device: <reason>", not cudaGetDevice's raw error and source path.
struct Device0 {
  Device0() : scope((static_cast<void>(cuda::Context::get(0)), 0)) {}
  cuda::detail::DeviceScope scope;
};
using Lock0 = std::lock_guard<std::mutex>;    // Lock0 lock(device0_mutex())
std::mutex& device0_mutex() { return cuda::detail::device_mutex(0); }
}  // namespace

MatrixCUDA::MatrixCUDA(std::size_t rows, std::size_t cols) : rows_(rows), cols_(cols) {
  PYRNN_CHECK(cols == 0 || rows <= static_cast<std::size_t>(-1) / 2 / cols, "MatrixCUDA(", rows,
              ", ", cols, "): size overflows");
  Device0 on;
  Lock0 lock(device0_mutex());
  cudaStream_t s = stream();
  buf_ = cuda::DeviceBuffer<float>(rows * cols);
  buf_.zero(s);
  PYRNN_CUDA_CHECK(cudaStreamSynchronize(s));
}

MatrixCUDA::MatrixCUDA(const Matrix& host) : rows_(host.rows()), cols_(host.cols()) {
  Device0 on;
  Lock0 lock(device0_mutex());
  cudaStream_t s = stream();
  buf_ = cuda::DeviceBuffer<float>(host.size());
  buf_.copy_from_host(host.data(), host.size(), s);
}

MatrixCUDA::MatrixCUDA(const MatrixCUDA& other) : rows_(other.rows_), cols_(other.cols_) {
  if (other.size() == 0) return;
  Device0 on;
  Lock0 lock(device0_mutex());
  cudaStream_t s = stream();
  buf_ = cuda::DeviceBuffer<float>(other.size());
  PYRNN_CUDA_CHECK(cudaMemcpyAsync(buf_.data(), other.buf_.data(), other.size() * sizeof(float),
                                   cudaMemcpyDeviceToDevice, s));
  PYRNN_CUDA_CHECK(cudaStreamSynchronize(s));
}

MatrixCUDA& MatrixCUDA::operator=(const MatrixCUDA& other) {
  if (this != &other) *this = MatrixCUDA(other);
  return *this;
}

MatrixCUDA& MatrixCUDA::toGPU(const Matrix& host) {
  PYRNN_CHECK(host.rows() == rows_ && host.cols() == cols_, "MatrixCUDA::toGPU: host matrix is ",
              host.rows(), " x ", host.cols(), ", this one ", rows_, " x ", cols_);
  Device0 on;
  Lock0 lock(device0_mutex());
  buf_.copy_from_host(host.data(), host.size(), stream());
  return *this;
}

Matrix MatrixCUDA::toCPU() const {
  Matrix out(rows_, cols_);
  if (size()) {
    Device0 on;
    Lock0 lock(device0_mutex());
    buf_.copy_to_host(out.data(), size(), stream());
  }
  return out;
}

}  // namespace pyrnn
