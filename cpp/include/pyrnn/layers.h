// Feed-forward layers of the training stack: Dense, LayerNorm, Embedding. Free functions over
// row-major buffers, forward beside backward (llm.c style), templated on float / double with
// explicit instantiations in src/layers.cpp.
//
// Shapes: M rows (every leading axis of the caller's array flattened: batch, time, ...),
//   Dense      x [M, in]   w [out, in]   b [out]   y [M, out]
//   LayerNorm  x [M, D]    w [D]         b [D]     y [M, D]    mean, rstd [M] (cache)
//   Embedding  idx [M]     table [num, dim]        y [M, dim]
// Outputs (y, dx, caches) are overwritten; parameter gradients (dw, db, dtable) ACCUMULATE
// (+=), like the recurrent core, until the caller zeroes them.
#pragma once
#include <cstdint>

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
// rstd = 1 / sqrt(var + eps), var the biased variance (PyTorch). mean and rstd are kept for
// backward. Statistics accumulate in double for both precisions.
template <typename T>
void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b,
                       std::int64_t M, int D, double eps);
// dx [M, D] overwritten; dw, db [D] accumulate.
template <typename T>
void layernorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* mean,
                        const T* rstd, const T* w, std::int64_t M, int D);

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

}  // namespace pyrnn
