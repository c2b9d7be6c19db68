// BasicMatrix<T>: dense, row-major, 64-byte aligned, owning. Matrix = BasicMatrix<float>.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <utility>
#include <vector>

#include "pyrnn/aligned.h"
#include "pyrnn/error.h"

namespace pyrnn {

namespace detail {
inline std::uint64_t next_matrix_storage_id() {
  static std::atomic<std::uint64_t> count{0};
  return ++count;
}
}  // namespace detail

template <typename T>
class BasicMatrix {
 public:
  using value_type = T;

  BasicMatrix() = default;
  BasicMatrix(std::size_t rows, std::size_t cols) : rows_(rows), cols_(cols) {
    // A negative int wraps to a huge size_t: with the other dimension 0 it was an empty
    // matrix of 2^64 - 1 rows. Shown signed, as the caller wrote it.
    constexpr std::size_t kMaxDim = static_cast<std::size_t>(PTRDIFF_MAX);
    PYRNN_CHECK(rows <= kMaxDim && cols <= kMaxDim, "Matrix(", static_cast<std::ptrdiff_t>(rows),
                ", ", static_cast<std::ptrdiff_t>(cols), "): dimensions must be >= 0 (and at most "
                "PTRDIFF_MAX, which a negative int wraps past)");
    PYRNN_CHECK(cols == 0 || rows <= static_cast<std::size_t>(-1) / 2 / cols,
                "Matrix(", rows, ", ", cols, "): size overflows");
    buf_.resize(rows * cols);
  }
  // rows x cols filled row by row from values (size must match).
  BasicMatrix(std::size_t rows, std::size_t cols, std::initializer_list<T> values)
      : BasicMatrix(rows, cols) {
    PYRNN_CHECK(values.size() == rows * cols, "Matrix(", rows, ", ", cols, "): got ",
                values.size(), " values, expected ", rows * cols);
    std::size_t i = 0;
    for (T v : values) buf_[i++] = v;
  }

  // A copy is new storage (its own storageId()).
  BasicMatrix(const BasicMatrix& o) : rows_(o.rows_), cols_(o.cols_), buf_(o.buf_) {}
  BasicMatrix& operator=(const BasicMatrix& o) {
    if (this != &o) {
      buf_ = o.buf_;
      rows_ = o.rows_;
      cols_ = o.cols_;
      storage_ = detail::next_matrix_storage_id();
    }
    return *this;
  }
  // A moved-from matrix is 0 x 0: its storage (and storageId()) went with the move.
  BasicMatrix(BasicMatrix&& o) noexcept
      : rows_(std::exchange(o.rows_, 0)), cols_(std::exchange(o.cols_, 0)), buf_(std::move(o.buf_)),
        storage_(std::exchange(o.storage_, detail::next_matrix_storage_id())) {}
  BasicMatrix& operator=(BasicMatrix&& o) noexcept {
    if (this != &o) {
      rows_ = std::exchange(o.rows_, 0);
      cols_ = std::exchange(o.cols_, 0);
      buf_ = std::move(o.buf_);
      storage_ = std::exchange(o.storage_, detail::next_matrix_storage_id());
    }
    return *this;
  }

  // Names the storage: new at construction and at each assignment (a copy's own, a move's
  // the source's), unchanged by element writes. Optimizers keep state per storage, so a
  // reassigned outputWeight() starts afresh even where its memory reuses the old address.
  std::uint64_t storageId() const { return storage_; }

  std::size_t rows() const { return rows_; }
  std::size_t cols() const { return cols_; }
  std::size_t size() const { return rows_ * cols_; }
  T* data() { return buf_.data(); }
  const T* data() const { return buf_.data(); }

  T get(std::size_t r, std::size_t c) const {
    check_index(r, c);
    return buf_[r * cols_ + c];
  }
  void set(std::size_t r, std::size_t c, T v) {
    check_index(r, c);
    buf_[r * cols_ + c] = v;
  }
  // Unchecked element access for inner loops.
  T& operator()(std::size_t r, std::size_t c) { return buf_[r * cols_ + c]; }
  const T& operator()(std::size_t r, std::size_t c) const { return buf_[r * cols_ + c]; }

  void fill(T v) {
    for (std::size_t i = 0; i < size(); ++i) buf_[i] = v;
  }

 private:
  void check_index(std::size_t r, std::size_t c) const {
    PYRNN_CHECK(r < rows_ && c < cols_, "Matrix index (", r, ", ", c, ") out of range for shape (",
                rows_, ", ", cols_, ")");
  }
  std::size_t rows_ = 0, cols_ = 0;
  AlignedBuffer<T> buf_;
  std::uint64_t storage_ = detail::next_matrix_storage_id();
};

using Matrix = BasicMatrix<float>;
using MatrixD = BasicMatrix<double>;

}  // namespace pyrnn
