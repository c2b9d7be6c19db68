// Makes a device current for a C++ scope and restores the caller's on exit (internal header):
// pyrnn's calls run on their object's device whatever the caller has made current.
#pragma once
#include <cuda.h>  // CUresult, CUdevice: types only, libcuda is not linked
#include <cuda_runtime_api.h>

#include <new>  // std::nothrow_t

#include "pyrnn/cuda/check.h"

namespace pyrnn {
namespace cuda {
namespace detail {

// Whether `device`'s primary context is active (cuDevicePrimaryCtxGetState, reached through the
// runtime's driver entry points so libcuda is not linked; runtime ordinal = driver ordinal, as
// PyTorch's c10::cuda::hasPrimaryContext assumes). True when it cannot be told: restoring is
// then what it always was.
inline bool primary_context_active(int device) {
  using GetState = CUresult(CUDAAPI*)(CUdevice, unsigned int*, int*);
  static const GetState get_state = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 12050
    const cudaError_t err = cudaGetDriverEntryPointByVersion("cuDevicePrimaryCtxGetState", &fn,
                                                             12000, cudaEnableDefault, &found);
#else
    const cudaError_t err =
        cudaGetDriverEntryPoint("cuDevicePrimaryCtxGetState", &fn, cudaEnableDefault, &found);
#endif
    if (err != cudaSuccess) (void)cudaGetLastError();
    return err == cudaSuccess && found == cudaDriverEntryPointSuccess
               ? reinterpret_cast<GetState>(fn)
               : nullptr;
  }();
  if (!get_state) return true;
  unsigned int flags = 0;
  int active = 0;
  return get_state(static_cast<CUdevice>(device), &flags, &active) != CUDA_SUCCESS || active != 0;
}

class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    PYRNN_CUDA_CHECK(cudaGetDevice(&prev_));
    switched_ = prev_ != device;
    if (switched_) PYRNN_CUDA_CHECK(cudaSetDevice(device));
  }
  // Best effort, for destructors: never throws. A failed query or switch leaves ok() false, the
  // device unchanged and no error behind.
  DeviceScope(int device, std::nothrow_t) noexcept {
    if (cudaGetDevice(&prev_) != cudaSuccess) {
      (void)cudaGetLastError();
      ok_ = false;
      return;
    }
    switched_ = prev_ != device;
    if (switched_ && cudaSetDevice(device) != cudaSuccess) {
      (void)cudaGetLastError();
      switched_ = ok_ = false;
    }
  }
  bool ok() const { return ok_; }
  // Since CUDA 12 cudaSetDevice creates the device's primary context (hundreds of MiB): a caller
  // who never used its current device (device 0 by default) does not get one made for it, as
  // PyTorch's MaybeSetDevice. A failed restore is cleared: it must not surface as a later call's
  // error.
  ~DeviceScope() {
    if (switched_ && primary_context_active(prev_) && cudaSetDevice(prev_) != cudaSuccess)
      (void)cudaGetLastError();
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int prev_ = 0;
  bool switched_ = false;
  bool ok_ = true;
};

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn
