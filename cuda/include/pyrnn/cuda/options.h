// Execution options of the CUDA recurrent layers: float32 math precision, the per-step algorithm,
// CUDA graphs for the step loops, and a second stream for the reverse direction. None of them
// changes what is computed; precision changes how exactly (TF32: see docs/cuda_performance.md).
//
// Each layer holds an Options whose Default fields follow the process-wide defaults, which start
// from the environment on first use and can be changed with set_default_options():
//   PYRNN_CUDA_PRECISION      float32 (default) | tf32
//   PYRNN_CUDA_RECURRENT      auto (default: cublas until GPU measurements say otherwise) |
//                             cublas | fused | persistent
//   PYRNN_CUDA_GRAPHS         0 (default until measured on a GPU) | 1
//   PYRNN_CUDA_STREAMS        0 (default until measured on a GPU) | 1
//   PYRNN_CUDA_PERSIST_BLOCKS 0 (default: chosen from the device) | n blocks for fused/persistent
// A bad value in the environment throws pyrnn::Error naming the variable wherever its field is
// used (default_options(), resolve()) until set_default_options or the layer sets that field.
#pragma once
#include <string>

namespace pyrnn {
namespace cuda {

// Float32 GEMM math (double is always exact). TF32: cuBLAS tensor-op math, operands rounded to
// 10 mantissa bits, fp32 accumulation. The custom step kernels (fused / persistent) are exact
// fp32 in either setting.
enum class Precision : int { Default = -1, Float32 = 0, TF32 = 1 };

// How the per-step recurrence runs (the input projection and weight gradients are always cuBLAS
// GEMMs over all steps):
//   Cublas:     per step one cuBLAS GEMM (h_prev W_hh^T) and one fused pointwise kernel.
//   Fused:      per step one custom kernel (recurrent product + pointwise, blocks own hidden
//               units, W_hh slices staged in shared memory); backward two.
//   Persistent: one cooperative kernel per direction runs every step (a grid barrier between
//               steps; one block: a block barrier); W_hh slices stay in shared memory for the
//               whole sequence (Diamos et al. 2016). Falls back to Cublas where its blocks
//               cannot all be resident or the weights do not fit.
//   Auto:       Cublas for now (until measured on a GPU; see docs/cuda_performance.md).
enum class RecurrentAlgo : int { Default = -1, Auto = 0, Cublas = 1, Fused = 2, Persistent = 3 };

enum class Switch : int { Default = -1, Off = 0, On = 1 };

struct Options {
  Precision precision = Precision::Default;
  RecurrentAlgo algo = RecurrentAlgo::Default;
  Switch graphs = Switch::Default;   // capture each direction's step loop once, replay it
  Switch streams = Switch::Default;  // bidirectional: the reverse direction on a second stream
  int persist_blocks = -1;           // -1 Default; 0 chosen from the device; n > 0: n blocks
};

// The process-wide defaults, fully resolved (no Default fields).
Options default_options();
// Sets the process-wide defaults; a Default field goes back to its environment / built-in value.
void set_default_options(const Options& options);
// What the last set_default_options set (Default fields follow the environment); never throws
// for a bad environment value.
Options default_overrides();
// `layer` with every Default field replaced by the process-wide default.
Options resolve(const Options& layer);

const char* to_string(Precision p);
const char* to_string(RecurrentAlgo a);
const char* to_string(Switch s);
// Parse the names above ("default" gives Default); throw pyrnn::Error naming `what` otherwise.
Precision parse_precision(const std::string& s, const char* what = "precision");
RecurrentAlgo parse_algo(const std::string& s, const char* what = "recurrent algorithm");
Switch parse_switch(const std::string& s, const char* what = "switch");

}  // namespace cuda
}  // namespace pyrnn
