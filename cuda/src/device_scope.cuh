// Makes a device current for a C++ scope and restores the caller's on exit (internal header):
// pyrnn's calls run on their object's device whatever the caller has made current.
#pragma once
#include <cuda_runtime_api.h>

#include "pyrnn/cuda/check.h"

namespace pyrnn {
namespace cuda {
namespace detail {

class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    PYRNN_CUDA_CHECK(cudaGetDevice(&prev_));
    switched_ = prev_ != device;
    if (switched_) PYRNN_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceScope() {
    if (switched_) (void)cudaSetDevice(prev_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int prev_ = 0;
  bool switched_ = false;
};

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn
