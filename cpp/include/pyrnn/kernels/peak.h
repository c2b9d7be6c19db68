// The machine's limit for the CPU kernels: their widest multiply-add, timed with nothing else
// in the loop. Benchmarks divide a GFLOP/s figure by it to say how close to the limit a run came.
#pragma once

namespace pyrnn {
namespace kernels {

// Best float32 rate (GFLOP/s, 2 flops per multiply-add) of the current ISA's multiply-add on
// `threads` OpenMP threads at once, over 5 trials taking about `seconds` in all. No GEMM can
// beat it; the micro-kernel, with its loads, reaches about 90% of it on L1-resident operands.
// Throws pyrnn::Error unless 1 <= threads <= 4096 and 0 < seconds <= 60.
double fma_peak_gflops(int threads, double seconds);

}  // namespace kernels
}  // namespace pyrnn
