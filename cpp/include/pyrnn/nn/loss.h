// Mean squared error for the facade's outputs, with its gradient (for C++-only training).
#pragma once
#include <cstddef>

#include "pyrnn/error.h"
#include "pyrnn/matrix.h"

namespace pyrnn {

// mean((pred - target)^2) over every element; pred, target [N, O]. d_pred (optional, resized to
// [N, O] and overwritten): d loss / d pred = 2 (pred - target) / (N*O), what backward() takes.
template <typename T>
double mseLoss(const BasicMatrix<T>& pred, const BasicMatrix<T>& target,
               BasicMatrix<T>* d_pred = nullptr) {
  PYRNN_CHECK(pred.rows() == target.rows() && pred.cols() == target.cols(),
              "mseLoss: pred has shape (", pred.rows(), ", ", pred.cols(), ") but target (",
              target.rows(), ", ", target.cols(), ")");
  PYRNN_CHECK(pred.size() > 0, "mseLoss: empty (", pred.rows(), ", ", pred.cols(), ") input");
  const std::size_t n = pred.size();
  if (d_pred && (d_pred->rows() != pred.rows() || d_pred->cols() != pred.cols()))
    *d_pred = BasicMatrix<T>(pred.rows(), pred.cols());
  double sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double diff = static_cast<double>(pred.data()[i]) - target.data()[i];
    sum += diff * diff;
    if (d_pred) d_pred->data()[i] = static_cast<T>(2.0 * diff / static_cast<double>(n));
  }
  return sum / static_cast<double>(n);
}

}  // namespace pyrnn
