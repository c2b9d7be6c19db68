// MatrixCUDA (pyrnn/cuda/matrix_cuda.h): copies go through device 0's Context stream.
#include <cuda_runtime.h>

#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/context.h"
#include "pyrnn/cuda/matrix_cuda.h"
#include "pyrnn/error.h"

namespace pyrnn {

namespace {
cudaStream_t stream() { return cuda::Context::get(0).stream(); }  // throws without a device
}  // namespace

MatrixCUDA::MatrixCUDA(std::size_t rows, std::size_t cols) : rows_(rows), cols_(cols) {
  PYRNN_CHECK(cols == 0 || rows <= static_cast<std::size_t>(-1) / 2 / cols, "MatrixCUDA(", rows,
              ", ", cols, "): size overflows");
  cudaStream_t s = stream();
  buf_ = cuda::DeviceBuffer<float>(rows * cols);
  buf_.zero(s);
  PYRNN_CUDA_CHECK(cudaStreamSynchronize(s));
}

MatrixCUDA::MatrixCUDA(const Matrix& host) : rows_(host.rows()), cols_(host.cols()) {
  cudaStream_t s = stream();
  buf_ = cuda::DeviceBuffer<float>(host.size());
  buf_.copy_from_host(host.data(), host.size(), s);
}

MatrixCUDA::MatrixCUDA(const MatrixCUDA& other) : rows_(other.rows_), cols_(other.cols_) {
  if (other.size() == 0) return;
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
  buf_.copy_from_host(host.data(), host.size(), stream());
  return *this;
}

Matrix MatrixCUDA::toCPU() const {
  Matrix out(rows_, cols_);
  if (size()) buf_.copy_to_host(out.data(), size(), stream());
  return out;
}

}  // namespace pyrnn
