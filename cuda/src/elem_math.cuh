// The libm functions the per-element bodies use (internal header), one spelling for device and
// host: the device's expf/tanhf/... under nvcc, std:: on the host (the emulation and the host
// tests), so cell_elems.cuh and train_elems.cuh run the same calls on both sides.
#pragma once
#include <cmath>

namespace pyrnn {
namespace cuda {
namespace detail {

#ifdef __CUDA_ARCH__
__device__ __forceinline__ float elem_exp(float x) { return expf(x); }
__device__ __forceinline__ double elem_exp(double x) { return exp(x); }
__device__ __forceinline__ float elem_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double elem_tanh(double x) { return tanh(x); }
__device__ __forceinline__ double elem_sqrt(double x) { return sqrt(x); }
#else
template <typename T>
inline T elem_exp(T x) { return std::exp(x); }
template <typename T>
inline T elem_tanh(T x) { return std::tanh(x); }
inline double elem_sqrt(double x) { return std::sqrt(x); }
#endif

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn
