# Mirrors cuda/include/pyrnn/cuda/layers.h and cuda/include/pyrnn/cuda/optim.h (device pointers;
# Embedding's idx and LastStep's lengths on the host).
from libc.stddef cimport size_t
from libc.stdint cimport int64_t, uint64_t
from libcpp cimport bool
from pyrnn.ccuda cimport Context
from pyrnn.clayers cimport Activation
from pyrnn.coptim cimport StepKeep

cdef extern from "pyrnn/cuda/layers.h" namespace "pyrnn::cuda" nogil:
    # x [M, in]  w [out, in]  b [out] (nullable)  y [M, out]
    void dense_forward[T](Context& ctx, T* y, const T* x, const T* w, const T* b, int64_t M,
                          int in_, int out, Activation act) except +
    # dx [M, in] (nullable) overwritten; dw [out, in], db [out] (nullable) accumulate
    void dense_backward[T](Context& ctx, T* dx, T* dw, T* db, const T* dy, const T* y,
                           const T* x, const T* w, int64_t M, int in_, int out,
                           Activation act) except +
    # x, y [M, D]  w, b [D]  mean, rstd [M] (double for both precisions)  x_keep [M, D] nullable
    void layernorm_forward[T](Context& ctx, T* y, double* mean, double* rstd, const T* x, const T* w,
                              const T* b, int64_t M, int D, double eps, T* x_keep) except +
    void layernorm_backward[T](Context& ctx, T* dx, T* dw, T* db, const T* dy, const T* x,
                               const double* mean, const double* rstd, const T* w, int64_t M,
                               int D) except +
    # idx HOST [M]  table [num, dim]  y [M, dim]
    void embedding_forward[T](Context& ctx, T* y, const int64_t* idx, const T* table, int64_t M,
                              int64_t num, int dim) except +
    void embedding_backward[T](Context& ctx, T* dtable, const T* dy, const int64_t* idx,
                               int64_t M, int64_t num, int dim, int64_t padding_idx) except +
    # x, y [n]
    void dropout_forward[T](Context& ctx, T* y, const T* x, size_t n, uint64_t seed,
                            double p) except +
    void dropout_backward[T](Context& ctx, T* dx, const T* dy, size_t n, uint64_t seed,
                             double p) except +
    # x [N, T, D*H]  y [N, D*H]  lengths HOST [N] (nullable)
    void last_step_forward[T](Context& ctx, T* y, const T* x, const int64_t* lengths, int N,
                              int T_, int H, int D) except +
    void last_step_backward[T](Context& ctx, T* dx, const T* dy, const int64_t* lengths, int N,
                               int T_, int H, int D) except +

cdef extern from "pyrnn/cuda/optim.h" namespace "pyrnn::cuda::optim" nogil:
    # every buffer [n]; state buffers may be null where the header says so
    # keep: pyrnn/optim.h's StepKeep, of device pointers
    unsigned sgd_step[T](Context& ctx, T* param, const T* grad, T* buf, size_t n, double lr,
                         double momentum, double dampening, double weight_decay, bool nesterov,
                         bool first_step, const StepKeep[T]* keep) except +
    unsigned adam_step[T](Context& ctx, T* param, const T* grad, T* exp_avg, T* exp_avg_sq,
                          T* max_exp_avg_sq, size_t n, double lr, double beta1, double beta2,
                          double eps, double weight_decay, bool decoupled, bool amsgrad,
                          int64_t step, const StepKeep[T]* keep) except +
    unsigned rmsprop_step[T](Context& ctx, T* param, const T* grad, T* square_avg,
                             T* grad_avg, T* buf, size_t n, double lr, double alpha, double eps,
                             double weight_decay, double momentum, bool centered,
                             const StepKeep[T]* keep) except +
    double sum_squares[T](Context& ctx, const T* x, size_t n) except +
    double max_abs[T](Context& ctx, const T* x, size_t n) except +
    void scale_inplace[T](Context& ctx, T* x, size_t n, double scale) except +
    void zero[T](Context& ctx, T* x, size_t n) except +
