// Status checks for CUDA runtime and cuBLAS calls: a failure becomes pyrnn::Error naming the call,
// file:line and the error. cuBLAS's header stays out of here (the status is passed as int) so the
// public headers need only the CUDA runtime's include dir.
#pragma once
#include <cuda_runtime_api.h>

#include "pyrnn/error.h"

namespace pyrnn {
namespace cuda {
namespace detail {

// Both reset the runtime's last-error slot first, so a caught failure does not resurface in the
// next launch check (sticky errors stay: the context is dead then anyway).
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(int status, const char* call, const char* file, int line);

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn

#define PYRNN_CUDA_CHECK(call)                                                       \
  do {                                                                               \
    const cudaError_t pyrnn_err_ = (call);                                           \
    if (pyrnn_err_ != cudaSuccess)                                                   \
      ::pyrnn::cuda::detail::throw_cuda_error(pyrnn_err_, #call, __FILE__, __LINE__); \
  } while (0)

#define PYRNN_CUBLAS_CHECK(call)                                                     \
  do {                                                                               \
    const int pyrnn_st_ = static_cast<int>(call);                                    \
    if (pyrnn_st_ != 0 /* CUBLAS_STATUS_SUCCESS */)                                  \
      ::pyrnn::cuda::detail::throw_cublas_error(pyrnn_st_, #call, __FILE__, __LINE__); \
  } while (0)
