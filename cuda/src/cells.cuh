// Fused pointwise kernels of cuda::Recurrent (internal header). Each launcher runs one kernel,
// asynchronous on `stream`, launch checked. Every per-step kernel is the element-wise
// transcription of the row functions in cpp/include/pyrnn/kernels/cells.h (same formulas, same
// operand order), one thread per (n, j) of an [N, H] step, gate order LSTM i,f,g,o; GRU r,z,n.
// lengths [N] (device, int64) or null: rows with t >= lengths[n] are inactive, exactly as on the
// CPU (forward: state carries, output 0; backward: d pre-activations 0, d h passes through).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "pyrnn/cuda/recurrent.h"
#include "pyrnn/recurrent.h"
#include "step_body.cuh"

namespace pyrnn {
namespace cuda {
namespace detail {

// ---- forward, one step ------------------------------------------------------------------------
// g [N, G*H] in: input projection + bias, out: activations; r [N, G*H] (ld G*H): h_prev W_hh^T
// (GRU reset_after=false: only its r, z columns are read); b_hn [H] or null (GRU reset_after);
// hp / hc [N, H] previous / current state; cp / cc [N, H] LSTM cell states (else null);
// aux [N, H] GRU: r*h_prev (reset_after=false) or W_hn h + b_hn (true), else null;
// y [N, ldy] this step's output slice (GRU reset_after=false: written by gru_before_state).
template <typename T>
void cell_forward(CellType cell, bool reset_after, int N, int H, int t, const std::int64_t* lengths,
                  T* g, const T* r, const T* b_hn, const T* hp, T* hc, const T* cp, T* cc, T* aux,
                  T* y, int ldy, cudaStream_t stream);
// GRU reset_after=false, stage 2: rn [N, ld G*H]: (r*h_prev) W_hn^T; g's n column -> n; hc, y.
template <typename T>
void gru_before_state(int N, int H, int t, const std::int64_t* lengths, T* g, const T* rn,
                      const T* hp, T* hc, T* y, int ldy, cudaStream_t stream);

// ---- backward, one step -----------------------------------------------------------------------
// dg [N, G*H] out (inactive rows: 0); dghn [N, H] out (GRU reset_after, else null; inactive 0);
// dh [N, H] running d h (in); dy [N, ldy] this step's output gradient slice;
// dc [N, H] LSTM running d c (in: d c_t, out: d c_{t-1}); pw [N, H] out: pointwise part of
// d h_prev (GRU); a [N, G*H] activations; aux [N, H] (GRU reset_after: W_hn h + b_hn);
// hp [N, H] previous state; c / cp [N, H] LSTM cell states (current / previous).
template <typename T>
void cell_backward(CellType cell, bool reset_after, int N, int H, int t,
                   const std::int64_t* lengths, T* dg, T* dghn, const T* dh, const T* dy, int ldy,
                   T* dc, T* pw, const T* a, const T* aux, const T* hp, const T* c, const T* cp,
                   cudaStream_t stream);
// GRU reset_after=false, stage 2: drh [N, H] = dg_n W_hn; dg's r column out; pw += drh * r.
template <typename T>
void gru_before_backward_r(int N, int H, int t, const std::int64_t* lengths, T* dg, const T* drh,
                           T* pw, const T* a, const T* hp, cudaStream_t stream);
// dh [N, H] = rec + pw (pw may be null) on active rows; inactive rows keep dh (pass through).
template <typename T>
void update_dh(int N, int H, int t, const std::int64_t* lengths, T* dh, const T* rec, const T* pw,
               cudaStream_t stream);

// ---- custom step kernels (step_body.cuh) ----------------------------------------------------
// StepPlan (the launch plan of a direction's step kernel): pyrnn/cuda/recurrent.h.
// persistent: one launch runs all steps (all blocks resident, cooperative launch when > 1
// block); else one launch per (step, phase). requested_blocks: 0 = chosen (step_blocks).
template <typename T>
StepPlan plan_step_kernel(int device, CellType cell, bool reset_after, int N, int H, bool backward,
                          bool persistent, int requested_blocks);
// Launches the step kernel for a.s_begin..s_end x a.ph_begin..ph_end with `plan` (its units, kc,
// nc and grid_sync are written into a copy of a). Launch checked.
template <typename T>
void launch_step_kernel(const StepArgs<T>& a, const StepPlan& plan, bool backward,
                        cudaStream_t stream);

// ---- whole-buffer helpers ---------------------------------------------------------------------
// a [rows, ld] += b [cols] broadcast over rows (columns < cols).
template <typename T>
void add_bias_rows(T* a, const T* b, std::size_t rows, int cols, int ld, cudaStream_t stream);
// out [cols] += column sums of a [rows, ld]; fixed reduction order (deterministic, no atomics).
template <typename T>
void column_sum_add(T* out, const T* a, std::size_t rows, int cols, int ld, cudaStream_t stream);
// Dropout as the CPU draws it: mask[i] = uniform01(seed, layer, i) >= p ? scale : 0;
// next[i] = in[i] * mask[i], i < n.
template <typename T>
void dropout_forward(T* next, T* mask, const T* in, std::size_t n, std::uint64_t seed,
                     std::uint64_t layer, double p, T scale, cudaStream_t stream);
// a[i] *= m[i], i < n.
template <typename T>
void multiply_inplace(T* a, const T* m, std::size_t n, cudaStream_t stream);
// x [steps, N, C]: the rows of steps past their sequence's end (t >= lengths[n]) set to 0.
template <typename T>
void zero_past_lengths(T* x, const std::int64_t* lengths, std::size_t steps, int N, int C,
                       cudaStream_t stream);

// The explicit instantiations, for the CUDA sources and the host emulation alike (one list).
#define PYRNN_CELLS_INSTANTIATE(T)                                                                 \
  template void cell_forward<T>(CellType, bool, int, int, int, const std::int64_t*, T*, const T*,  \
                                const T*, const T*, T*, const T*, T*, T*, T*, int, cudaStream_t);  \
  template void gru_before_state<T>(int, int, int, const std::int64_t*, T*, const T*, const T*,    \
                                    T*, T*, int, cudaStream_t);                                    \
  template void cell_backward<T>(CellType, bool, int, int, int, const std::int64_t*, T*, T*,       \
                                 const T*, const T*, int, T*, T*, const T*, const T*, const T*,    \
                                 const T*, const T*, cudaStream_t);                                \
  template void gru_before_backward_r<T>(int, int, int, const std::int64_t*, T*, const T*, T*,     \
                                         const T*, const T*, cudaStream_t);                        \
  template void update_dh<T>(int, int, int, const std::int64_t*, T*, const T*, const T*,           \
                             cudaStream_t);                                                        \
  template void add_bias_rows<T>(T*, const T*, std::size_t, int, int, cudaStream_t);               \
  template void column_sum_add<T>(T*, const T*, std::size_t, int, int, cudaStream_t);              \
  template void dropout_forward<T>(T*, T*, const T*, std::size_t, std::uint64_t, std::uint64_t,    \
                                   double, T, cudaStream_t);                                       \
  template void multiply_inplace<T>(T*, const T*, std::size_t, cudaStream_t);                      \
  template void zero_past_lengths<T>(T*, const std::int64_t*, std::size_t, int, int, cudaStream_t); \
  template StepPlan plan_step_kernel<T>(int, CellType, bool, int, int, bool, bool, int);           \
  template void launch_step_kernel<T>(const StepArgs<T>&, const StepPlan&, bool, cudaStream_t);

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn
