// Host <-> device copies for the CUDA tests (complete on return).
#pragma once
#include <cstddef>
#include <vector>

#include "pyrnn/cuda/buffer.h"

template <typename T>
pyrnn::cuda::DeviceBuffer<T> upload(const std::vector<T>& v) {
  pyrnn::cuda::DeviceBuffer<T> b(v.size());
  b.copy_from_host(v.data(), v.size());
  return b;
}
// The first n elements of b (all of them by default).
template <typename T>
std::vector<T> download(const pyrnn::cuda::DeviceBuffer<T>& b, std::size_t n) {
  std::vector<T> v(n);
  b.copy_to_host(v.data(), n);
  return v;
}
template <typename T>
std::vector<T> download(const pyrnn::cuda::DeviceBuffer<T>& b) {
  return download(b, b.size());
}
