// The training stack's feed-forward layers on the GPU: the twins of cpp/include/pyrnn/layers.h
// (same names, argument order and semantics; a Context& first), forward beside backward.
//
// Every T* is DEVICE memory on ctx's device. `idx` (Embedding) and `lengths` (LastStep) are HOST
// int64 arrays on purpose, as cuda::Recurrent's lengths: they are validated on the host exactly
// as on the CPU (a bad entry throws pyrnn::Error before any kernel runs), then copied over.
//
// Shapes (M rows = every leading axis of the caller's array flattened):
//   Dense      x [M, in]   w [out, in]   b [out]   y [M, out]
//   LayerNorm  x [M, D]    w [D]         b [D]     y [M, D]    mean, rstd [M] (cache)
//   Embedding  idx [M]     table [num, dim]        y [M, dim]
//   Dropout    x [n]       y [n]
//   LastStep   x [N, T, D*H] (samples-first)       y [N, D*H]   lengths [N]
// Outputs (y, dx, caches) are overwritten; parameter gradients (dw, db, dtable) ACCUMULATE (+=).
//
// Kernels (cuda/src/train_kernels.cu; per-element bodies in train_elems.cuh, shared with the host
// tests): Dense = one cuBLAS GEMM + a fused bias/activation epilogue; backward = d activation
// (from the output), cuBLAS GEMMs for dw (+=) and dx, and db by a per-column sum. LayerNorm = one
// warp per row (statistics in double, a fixed shuffle tree). Embedding = a row gather; backward
// with one owner per (table row, column) that adds that row's dy rows in position order.
// DETERMINISM: no atomics anywhere. Every gradient element has exactly one writer and one
// summation order, fixed by the shapes alone: db / LayerNorm dw, db sum their rows in row order in
// double (the CPU's order), and Embedding's owners add in the CPU's order, so on equal inputs those
// are bitwise the CPU's; the GEMMs are cuBLAS's, reproducible run to run on one GPU (cuBLAS's
// guarantee with its atomics mode off, the default, and one stream per handle, as Context has).
// Dropout masks are the CPU's (the same counter-based hash, pyrnn::dropout_multiplier).
//
// Execution: every call queues its work on ctx.stream() and returns when its results are complete
// (it ends with a stream synchronize), like cuda::Recurrent; inputs must be complete when called.
// Temporaries are per call, so calls from different threads do not share workspace.
#pragma once
#include <cstddef>
#include <cstdint>

#include "pyrnn/cuda/context.h"
#include "pyrnn/layers.h"

namespace pyrnn {
namespace cuda {

// ---- Dense: y = act(x w^T + b) ------------------------------------------------------------
// b may be null (no bias).
template <typename T>
void dense_forward(Context& ctx, T* y, const T* x, const T* w, const T* b, std::int64_t M, int in,
                   int out, Activation act);
// dy [M, out]; y [M, out] the forward output; x [M, in]; w [out, in]. dx [M, in] may be null;
// dw [out, in] and db [out] (null: no bias) accumulate.
template <typename T>
void dense_backward(Context& ctx, T* dx, T* dw, T* db, const T* dy, const T* y, const T* x,
                    const T* w, std::int64_t M, int in, int out, Activation act);

// ---- LayerNorm over the last axis: y = (x - mean) * rstd * w + b ---------------------------
// mean, rstd [M] in double for both precisions, as on the CPU; x_keep [M, D] (nullable) gets a
// copy of x in the same pass, as on the CPU.
template <typename T>
void layernorm_forward(Context& ctx, T* y, double* mean, double* rstd, const T* x, const T* w,
                       const T* b, std::int64_t M, int D, double eps, T* x_keep = nullptr);
// dx [M, D] overwritten; dw, db [D] accumulate.
template <typename T>
void layernorm_backward(Context& ctx, T* dx, T* dw, T* db, const T* dy, const T* x,
                        const double* mean, const double* rstd, const T* w, std::int64_t M, int D);

// ---- Embedding: y[m] = table[idx[m]]; idx HOST [M] ------------------------------------------
template <typename T>
void embedding_forward(Context& ctx, T* y, const std::int64_t* idx, const T* table, std::int64_t M,
                       std::int64_t num, int dim);
// dtable [num, dim] += dy rows at idx (HOST [M]); rows whose index is padding_idx get nothing
// (padding_idx < 0: none). Repeated indices add up in position order (bitwise the CPU's).
template <typename T>
void embedding_backward(Context& ctx, T* dtable, const T* dy, const std::int64_t* idx,
                        std::int64_t M, std::int64_t num, int dim, std::int64_t padding_idx);

// ---- Dropout (inverted), mask from (seed, i): see pyrnn::dropout_forward --------------------
template <typename T>
void dropout_forward(Context& ctx, T* y, const T* x, std::size_t n, std::uint64_t seed, double p);
template <typename T>
void dropout_backward(Context& ctx, T* dx, const T* dy, std::size_t n, std::uint64_t seed,
                      double p);

// ---- LastStep; lengths HOST [N] or null ------------------------------------------------------
template <typename T>
void last_step_forward(Context& ctx, T* y, const T* x, const std::int64_t* lengths, int N, int T_,
                       int H, int D);
template <typename T>
void last_step_backward(Context& ctx, T* dx, const T* dy, const std::int64_t* lengths, int N,
                        int T_, int H, int D);

}  // namespace cuda
}  // namespace pyrnn
