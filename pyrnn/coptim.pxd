# Mirrors cpp/include/pyrnn/optim.h
from libc.stddef cimport size_t
from libc.stdint cimport int64_t
from libcpp cimport bool

cdef extern from "pyrnn/optim.h" namespace "pyrnn::optim" nogil:
    # what a step overwrites, kept as it runs: each null or [n]
    cdef cppclass StepKeep[T]:
        T* param
        T* state[3]
    # every buffer [n]; state buffers may be null where the header says so. Each step returns
    # what it made non-finite: bit 1 the parameter, bit 2 a state buffer.
    unsigned sgd_step[T](T* param, const T* grad, T* buf, size_t n, double lr, double momentum,
                         double dampening, double weight_decay, bool nesterov, bool first_step,
                         const StepKeep[T]* keep) except +
    unsigned adam_step[T](T* param, const T* grad, T* exp_avg, T* exp_avg_sq,
                          T* max_exp_avg_sq, size_t n, double lr, double beta1, double beta2,
                          double eps, double weight_decay, bool decoupled, bool amsgrad,
                          int64_t step, const StepKeep[T]* keep) except +
    unsigned rmsprop_step[T](T* param, const T* grad, T* square_avg, T* grad_avg, T* buf,
                             size_t n, double lr, double alpha, double eps, double weight_decay,
                             double momentum, bool centered, const StepKeep[T]* keep) except +
    double sum_squares[T](const T* x, size_t n) except +
    double max_abs[T](const T* x, size_t n) except +
    bint all_finite[T](const T* x, size_t n) except +
    void scale_inplace[T](T* x, size_t n, double scale) except +
