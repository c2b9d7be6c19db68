// Feed-forward layers of the training stack: Dense, LayerNorm, Embedding, Dropout, LastStep. Free
// functions over
// row-major buffers, forward beside backward (llm.c style), templated on float / double with
// explicit instantiations in src/layers.cpp. The CUDA backend mirrors every function in
// <pyrnn/cuda/layers.h> (same names, arguments and semantics, over device memory).
//
// Shapes: M rows (every leading axis of the caller's array flattened: batch, time, ...),
//   Dense      x [M, in]   w [out, in]   b [out]   y [M, out]
//   LayerNorm  x [M, D]    w [D]         b [D]     y [M, D]    mean, rstd [M] (cache)
//   Embedding  idx [M]     table [num, dim]        y [M, dim]
//   Dropout    x [n]       y [n]                   (any shape, flattened)
//   LastStep   x [N, T, D*H] (samples-first)       y [N, D*H]   lengths [N]
// Outputs (y, dx, caches) are overwritten; parameter gradients (dw, db, dtable) ACCUMULATE
// (+=), like the recurrent core, until the caller zeroes them. Bad sizes, an unknown
// Activation and a null buffer the call needs (other than those marked "may be null") throw
// pyrnn::Error before anything is read or written (<pyrnn/train_checks.h>).
#pragma once
#include <cstddef>
#include <cstdint>

#include "pyrnn/random.h"

namespace pyrnn {

enum class Activation { None = 0, ReLU = 1, Tanh = 2, Sigmoid = 3 };

// ---- Dense: y = act(x w^T + b) ------------------------------------------------------------
// b may be null (no bias).
template <typename T>
void dense_forward(T* y, const T* x, const T* w, const T* b, std::int64_t M, int in, int out,
                   Activation act);
// dy [M, out]; y [M, out] the forward output (activation derivatives come from it);
// x [M, in]; w [out, in]. dx [M, in] may be null (not needed); dw [out, in] and db [out]
// (null when there is no bias) accumulate.
template <typename T>
void dense_backward(T* dx, T* dw, T* db, const T* dy, const T* y, const T* x, const T* w,
                    std::int64_t M, int in, int out, Activation act);

// ---- LayerNorm over the last axis: y = (x - mean) * rstd * w + b ---------------------------
// rstd = 1 / sqrt(var + eps), var the biased variance (PyTorch). Statistics accumulate in
// double for both precisions, and mean, rstd [M] are kept for backward in double: a rounded
// float mean made backward differentiate another function than forward computed (for rows
// whose mean dwarfs their spread). y may alias x (a row's statistics come before its y).
// x_keep [M, D], when not null, receives a copy of x made in the same pass over each row: the
// training cache backward reads, one read of x cheaper than a separate copy. It must share no
// byte with any other buffer of the call (pyrnn::Error).
template <typename T>
void layernorm_forward(T* y, double* mean, double* rstd, const T* x, const T* w, const T* b,
                       std::int64_t M, int D, double eps, T* x_keep = nullptr);
// dx [M, D] overwritten; it may alias dy or x (each row is read before its dx is written).
// dw, db [D] accumulate.
template <typename T>
void layernorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const double* mean,
                        const double* rstd, const T* w, std::int64_t M, int D);

// ---- Embedding: y[m] = table[idx[m]] -------------------------------------------------------
// Throws pyrnn::Error if an index is outside [0, num).
template <typename T>
void embedding_forward(T* y, const std::int64_t* idx, const T* table, std::int64_t M,
                       std::int64_t num, int dim);
// dtable [num, dim] accumulates dy rows (repeated indices add up, in row order, so the result
// is deterministic). Rows whose index equals padding_idx get nothing (padding_idx < 0: none).
template <typename T>
void embedding_backward(T* dtable, const T* dy, const std::int64_t* idx, std::int64_t M,
                        std::int64_t num, int dim, std::int64_t padding_idx);

// ---- Dropout (inverted): y = x * m, m[i] = 1/(1-p) if uniform01(seed, 0, i) >= p, else 0 ----
// The mask is a pure function of (seed, i) (counter-based hash, pyrnn/random.h), so it is never
// stored: backward recomputes it, and the CUDA backend draws exactly the same mask.
// p in [0, 1]; p = 1 drops everything.
template <typename T>
PYRNN_HD inline T dropout_multiplier(std::uint64_t seed, std::uint64_t i, double p, T scale) {
  return uniform01(seed, 0, i) >= p ? scale : T(0);
}
template <typename T>
PYRNN_HD inline T dropout_scale(double p) {
  return p < 1.0 ? static_cast<T>(1.0 / (1.0 - p)) : T(0);
}
// y [n] = x [n] * mask; y may alias x.
template <typename T>
void dropout_forward(T* y, const T* x, std::size_t n, std::uint64_t seed, double p);
// dx [n] = dy [n] * mask (the forward's mask: same seed and p); dx may alias dy.
template <typename T>
void dropout_backward(T* dx, const T* dy, std::size_t n, std::uint64_t seed, double p);

// ---- LastStep: each sequence's final state from a samples-first recurrent output --------------
// x [N, T, W], W = D*H (D = 1 or 2 directions): y[n, :H] = x[n, lengths[n]-1, :H] (forward
// direction's last valid step) and, for D = 2, y[n, H:] = x[n, 0, H:] (where the reverse pass
// ends). lengths [N] in [1, T], or null (all T); throws pyrnn::Error for an entry outside.
template <typename T>
void last_step_forward(T* y, const T* x, const std::int64_t* lengths, int N, int T_, int H, int D);
// dx [N, T, W] overwritten: dy [N, W] at the positions forward read, 0 elsewhere.
template <typename T>
void last_step_backward(T* dx, const T* dy, const std::int64_t* lengths, int N, int T_, int H,
                        int D);

}  // namespace pyrnn
