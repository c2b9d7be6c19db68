// MatrixCUDA: the seeds' device matrix. float, row-major, rows x cols, in CUDA device memory
// (device 0's pyrnn Context). The data lives on the device from construction on:
//
//   pyrnn::Matrix host(4, 10);
//   pyrnn::MatrixCUDA m(host);           // uploads
//   m.toGPU();                           // no-op kept for the seeds' code: already there
//   pyrnn::Matrix back = m.toCPU();      // downloads (a copy)
//   pyrnn::Matrix same = static_cast<pyrnn::Matrix>(m);
//
// Copies are deep (device to device); moves are cheap. Errors throw pyrnn::Error (no device:
// "no usable CUDA device: <reason>").
#pragma once
#include <cstddef>
#include <utility>

#include "pyrnn/cuda/buffer.h"
#include "pyrnn/matrix.h"

namespace pyrnn {

class MatrixCUDA {
 public:
  MatrixCUDA() = default;
  // rows x cols of zeros on the device.
  MatrixCUDA(std::size_t rows, std::size_t cols);
  // A device copy of `host`. Implicit, as the seeds use it: their "GPU Optimization" snippet
  // fills a std::vector<MatrixCUDA> with push_back(host_matrix).
  MatrixCUDA(const Matrix& host);  // NOLINT(google-explicit-constructor)
  MatrixCUDA(const MatrixCUDA& other);
  MatrixCUDA& operator=(const MatrixCUDA& other);
  // A moved-from matrix is 0 x 0 (as pyrnn::Matrix): its storage went with the move.
  MatrixCUDA(MatrixCUDA&& o) noexcept
      : rows_(std::exchange(o.rows_, 0)), cols_(std::exchange(o.cols_, 0)), buf_(std::move(o.buf_)) {}
  MatrixCUDA& operator=(MatrixCUDA&& o) noexcept {
    if (this != &o) {
      rows_ = std::exchange(o.rows_, 0);
      cols_ = std::exchange(o.cols_, 0);
      buf_ = std::move(o.buf_);
    }
    return *this;
  }

  std::size_t rows() const { return rows_; }
  std::size_t cols() const { return cols_; }
  std::size_t size() const { return rows_ * cols_; }
  float* data() { return buf_.data(); }  // device pointer [rows * cols]
  const float* data() const { return buf_.data(); }

  // The data is on the device already; returns *this (for the seeds' `m.toGPU()` calls).
  MatrixCUDA& toGPU() { return *this; }
  // Uploads `host` (same shape) into this matrix.
  MatrixCUDA& toGPU(const Matrix& host);
  // A host copy.
  Matrix toCPU() const;
  explicit operator Matrix() const { return toCPU(); }

 private:
  std::size_t rows_ = 0, cols_ = 0;
  cuda::DeviceBuffer<float> buf_;  // [rows_ * cols_]
};

}  // namespace pyrnn
