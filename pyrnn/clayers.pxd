# Mirrors cpp/include/pyrnn/layers.h
from libc.stddef cimport size_t
from libc.stdint cimport int64_t, uint64_t

cdef extern from "pyrnn/layers.h" namespace "pyrnn" nogil:
    cdef enum class Activation(int):
        ACT_NONE "pyrnn::Activation::None"
        ACT_RELU "pyrnn::Activation::ReLU"
        ACT_TANH "pyrnn::Activation::Tanh"
        ACT_SIGMOID "pyrnn::Activation::Sigmoid"

    # x [M, in]  w [out, in]  b [out] (nullable)  y [M, out]
    void dense_forward[T](T* y, const T* x, const T* w, const T* b, int64_t M, int in_,
                          int out, Activation act) except +
    # dx [M, in] (nullable) overwritten; dw [out, in], db [out] (nullable) accumulate
    void dense_backward[T](T* dx, T* dw, T* db, const T* dy, const T* y, const T* x,
                           const T* w, int64_t M, int in_, int out, Activation act) except +

    # x, y [M, D]  w, b [D]  mean, rstd [M] (double for both precisions)  x_keep [M, D] nullable
    void layernorm_forward[T](T* y, double* mean, double* rstd, const T* x, const T* w, const T* b,
                              int64_t M, int D, double eps, T* x_keep) except +
    void layernorm_backward[T](T* dx, T* dw, T* db, const T* dy, const T* x, const double* mean,
                               const double* rstd, const T* w, int64_t M, int D) except +

    # idx [M]  table [num, dim]  y [M, dim]
    void embedding_forward[T](T* y, const int64_t* idx, const T* table, int64_t M, int64_t num,
                              int dim) except +
    void embedding_backward[T](T* dtable, const T* dy, const int64_t* idx, int64_t M,
                               int64_t num, int dim, int64_t padding_idx) except +

    # x, y [n]; the mask is a function of (seed, i)
    void dropout_forward[T](T* y, const T* x, size_t n, uint64_t seed, double p) except +
    void dropout_backward[T](T* dx, const T* dy, size_t n, uint64_t seed, double p) except +

    # x [N, T, D*H]  y [N, D*H]  lengths [N] (nullable)
    void last_step_forward[T](T* y, const T* x, const int64_t* lengths, int N, int T_, int H,
                              int D) except +
    void last_step_backward[T](T* dx, const T* dy, const int64_t* lengths, int N, int T_, int H,
                               int D) except +
