// Device queries, plus the out-of-line error helpers behind PYRNN_CUDA_CHECK / PYRNN_CUBLAS_CHECK.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "device_lock.cuh"
#include "device_scope.cuh"
#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/device.h"

namespace pyrnn {
namespace cuda {
namespace detail {

void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  (void)cudaGetLastError();
  throw_error(call, " failed at ", file, ":", line, ": ", cudaGetErrorName(err), ": ",
              cudaGetErrorString(err));
}

static const char* cublas_status_name(int status) {
  switch (static_cast<cublasStatus_t>(status)) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "unknown cuBLAS status";
}

void throw_cublas_error(int status, const char* call, const char* file, int line) {
  (void)cudaGetLastError();
  throw_error(call, " failed at ", file, ":", line, ": ", cublas_status_name(status), " (",
              status, ")");
}

}  // namespace detail

namespace {
// cudaGetDeviceCount's status; no-driver / no-device errors are expected here, not exceptional.
cudaError_t probe(int* count) {
  *count = 0;
  const cudaError_t err = cudaGetDeviceCount(count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    *count = 0;
  }
  return err;
}
}  // namespace

int device_count() {
  int n = 0;
  probe(&n);
  return n;
}

std::string unavailable_reason() {
  int n = 0;
  const cudaError_t err = probe(&n);
  if (err == cudaSuccess) return n > 0 ? std::string() : std::string("no CUDA device found");
  const char* what = "CUDA is unusable";
  switch (err) {
    // Also what the runtime reports when libcuda.so is missing altogether.
    case cudaErrorInsufficientDriver: what = "no CUDA driver found, or it is older than the runtime"; break;
    case cudaErrorNoDevice: what = "no CUDA device found"; break;
    case cudaErrorSystemDriverMismatch: what = "CUDA driver and kernel module versions differ"; break;
    case cudaErrorCompatNotSupportedOnDevice: what = "CUDA forward compatibility not supported on this device"; break;
    case cudaErrorDevicesUnavailable: what = "all CUDA devices are busy or unavailable"; break;
    default: break;
  }
  return std::string(what) + " (" + cudaGetErrorName(err) + ": " + cudaGetErrorString(err) + ")";
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  PYRNN_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

// A device-wide wait also waits on a stream another thread may be capturing into a CUDA graph
// (a recurrent pass with graphs on), which can invalidate that capture: both take the device's
// lock, which every call queueing work on the Context stream holds (device_lock.cuh).
void synchronize() {
  int device = 0;
  PYRNN_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(detail::device_mutex(device));
  PYRNN_CUDA_CHECK(cudaDeviceSynchronize());
}

void synchronize_device(int device) {
  if (device < 0) return synchronize();
  std::lock_guard<std::mutex> lock(detail::device_mutex(device));
  detail::DeviceScope scope(device);
  PYRNN_CUDA_CHECK(cudaDeviceSynchronize());
}

int runtime_version() {
  int v = 0;
  PYRNN_CUDA_CHECK(cudaRuntimeGetVersion(&v));
  return v;
}

int driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return v;
}

}  // namespace cuda
}  // namespace pyrnn
