// The real memory.cu (runtime calls only), compiled as C++ against host_runtime.cpp, and the
// two kernels behind the memory helpers, permute.cu's permute01_on and fill.cu's fill, as loops
// over every element (run, or recorded into an open capture, as a launch would be).
#include "../../src/memory.cu"

#include <functional>

#include "permute.cuh"
#include "permute_elem.cuh"
#include "pyrnn/cuda/fill.h"

namespace pyrnn {
namespace cuda {
namespace emu {
void run_or_record(cudaStream_t stream, std::function<void()> op);  // host_runtime.cpp: queued
}

namespace {
template <typename E>
void permute01_loop(E* out, const E* in, std::size_t A, std::size_t B, std::size_t C) {
  for (std::size_t i = 0; i < A * B * C; ++i) detail::permute01_elem(i, out, in, A, B, C);
}
}  // namespace

namespace detail {
void permute01_on(void* out, const void* in, std::size_t A, std::size_t B, std::size_t C,
                  std::size_t elem_size, cudaStream_t stream) {
  if (A * B * C == 0) return;
  PYRNN_CHECK(elem_size == 4 || elem_size == 8, "permute01: element size ", elem_size,
              " is not 4 or 8");
  emu::run_or_record(stream, [=] {
    if (elem_size == 4)
      permute01_loop(static_cast<std::uint32_t*>(out), static_cast<const std::uint32_t*>(in), A,
                     B, C);
    else
      permute01_loop(static_cast<std::uint64_t*>(out), static_cast<const std::uint64_t*>(in), A,
                     B, C);
  });
}
}  // namespace detail

template <typename T>
void fill(T* p, std::size_t n, T value, cudaStream_t stream) {
  if (n == 0) return;
  emu::run_or_record(stream, [=] {
    for (std::size_t i = 0; i < n; ++i) p[i] = value;
  });
}

template void fill<float>(float*, std::size_t, float, cudaStream_t);
template void fill<double>(double*, std::size_t, double, cudaStream_t);

}  // namespace cuda
}  // namespace pyrnn
