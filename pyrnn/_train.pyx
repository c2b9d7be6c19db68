# cython: language_level=3
"""Native kernels of the training stack (C++ via Cython): Dense, LayerNorm, Embedding, Dropout
and LastStep forward/backward (pyrnn/layers.h) and the optimizer update loops (pyrnn/optim.h).
pyrnn._cuda has the device twins of every function here (same names and arguments).

Arrays arrive from pyrnn.layers / pyrnn.optim already C-contiguous and of one float dtype;
this module checks the shapes that the C++ side cannot see (so a misuse is a ValueError,
never a write out of bounds), then releases the GIL and moves pointers.
"""
from libc.stddef cimport size_t
from libc.stdint cimport int64_t, uint64_t

from pyrnn.clayers cimport (Activation, dense_forward as c_dense_forward,
                            dense_backward as c_dense_backward,
                            layernorm_forward as c_layernorm_forward,
                            layernorm_backward as c_layernorm_backward,
                            embedding_forward as c_embedding_forward,
                            embedding_backward as c_embedding_backward,
                            dropout_forward as c_dropout_forward,
                            dropout_backward as c_dropout_backward,
                            last_step_forward as c_last_step_forward,
                            last_step_backward as c_last_step_backward)
from pyrnn cimport coptim, cruntime
from cpython.pycapsule cimport PyCapsule_GetPointer

ctypedef fused real:
    float
    double

ACTIVATIONS = {None: 0, "relu": 1, "tanh": 2, "sigmoid": 3}


cdef inline void _same(tuple got, tuple want, str name) except *:
    if got != want:
        raise ValueError(f"{name} has shape {got}, expected {want}")

cdef inline tuple _shape2(real[:, ::1] a):
    return (a.shape[0], a.shape[1])


def _use_runtime_state(capsule):
    """Adopt pyrnn._core's runtime settings (its _runtime_state()), before any call: one ISA,
    thread count and fork rule for every module."""
    cruntime.use_runtime_state(PyCapsule_GetPointer(capsule, b"pyrnn.runtime_state"))


# ---- Dense ------------------------------------------------------------------------------------

def dense_forward(real[:, ::1] y, const real[:, ::1] x, const real[:, ::1] w, const real[::1] b,
                  int act):
    """y [M, out] = act(x [M, in] w[out, in]^T + b [out]); b may be None."""
    cdef int64_t M = x.shape[0]
    cdef int n_in = x.shape[1], n_out = w.shape[0]
    _same((w.shape[0], w.shape[1]), (n_out, n_in), "weight")
    _same((y.shape[0], y.shape[1]), (M, n_out), "y")
    if b is not None:
        _same((b.shape[0],), (n_out,), "bias")
    cdef const real* bp = NULL
    if b is not None:
        bp = &b[0]
    with nogil:
        c_dense_forward(&y[0, 0], &x[0, 0], &w[0, 0], bp, M, n_in, n_out, <Activation>act)


def dense_backward(real[:, ::1] dw, real[::1] db, real[:, ::1] dx, const real[:, ::1] dy,
                   const real[:, ::1] y, const real[:, ::1] x, const real[:, ::1] w, int act):
    """dw [out, in] += dz^T x, db [out] += sum dz (db may be None); dx [M, in] = dz w (dx may be
    None), dz = dy * act'(y)."""
    cdef int64_t M = x.shape[0]
    cdef int n_in = x.shape[1], n_out = w.shape[0]
    _same((dw.shape[0], dw.shape[1]), (n_out, n_in), "dweight")
    _same((w.shape[0], w.shape[1]), (n_out, n_in), "weight")
    _same((dy.shape[0], dy.shape[1]), (M, n_out), "dy")
    _same((y.shape[0], y.shape[1]), (M, n_out), "y")
    if db is not None:
        _same((db.shape[0],), (n_out,), "dbias")
    if dx is not None:
        _same((dx.shape[0], dx.shape[1]), (M, n_in), "dx")
    cdef real* dbp = NULL
    if db is not None:
        dbp = &db[0]
    cdef real* dxp = NULL
    if dx is not None:
        dxp = &dx[0, 0]
    with nogil:
        c_dense_backward(dxp, &dw[0, 0], dbp, &dy[0, 0], &y[0, 0], &x[0, 0], &w[0, 0], M, n_in,
                         n_out, <Activation>act)


# ---- LayerNorm --------------------------------------------------------------------------------

def layernorm_forward(real[:, ::1] y, double[::1] mean, double[::1] rstd, const real[:, ::1] x,
                      const real[::1] w, const real[::1] b, double eps,
                      real[:, ::1] x_keep=None):
    """y [M, D] = (x - mean) * rstd * w + b over the last axis; mean, rstd [M] (float64 for
    both precisions) cached; x_keep [M, D], if given, a copy of x (the training cache)."""
    cdef int64_t M = x.shape[0]
    cdef int D = x.shape[1]
    _same((y.shape[0], y.shape[1]), (M, D), "y")
    _same((mean.shape[0], rstd.shape[0]), (M, M), "mean/rstd")
    _same((w.shape[0], b.shape[0]), (D, D), "weight/bias")
    cdef real* kp = NULL
    if x_keep is not None:
        _same((x_keep.shape[0], x_keep.shape[1]), (M, D), "x_keep")
        kp = &x_keep[0, 0]
    with nogil:
        c_layernorm_forward(&y[0, 0], &mean[0], &rstd[0], &x[0, 0], &w[0], &b[0], M, D, eps, kp)


def layernorm_backward(real[:, ::1] dx, real[::1] dw, real[::1] db, const real[:, ::1] dy,
                       const real[:, ::1] x, const double[::1] mean, const double[::1] rstd,
                       const real[::1] w):
    """dx [M, D] overwritten; dw, db [D] accumulate."""
    cdef int64_t M = x.shape[0]
    cdef int D = x.shape[1]
    _same((dx.shape[0], dx.shape[1]), (M, D), "dx")
    _same((dy.shape[0], dy.shape[1]), (M, D), "dy")
    _same((mean.shape[0], rstd.shape[0]), (M, M), "mean/rstd")
    _same((w.shape[0], dw.shape[0], db.shape[0]), (D, D, D), "weight/dweight/dbias")
    with nogil:
        c_layernorm_backward(&dx[0, 0], &dw[0], &db[0], &dy[0, 0], &x[0, 0], &mean[0], &rstd[0],
                             &w[0], M, D)


# ---- Embedding --------------------------------------------------------------------------------

def embedding_forward(real[:, ::1] y, const int64_t[::1] idx, const real[:, ::1] table):
    """y [M, dim] = table [num, dim] rows at idx [M]."""
    cdef int64_t M = idx.shape[0], num = table.shape[0]
    cdef int dim = table.shape[1]
    _same((y.shape[0], y.shape[1]), (M, dim), "y")
    with nogil:
        c_embedding_forward(&y[0, 0], &idx[0], &table[0, 0], M, num, dim)


def embedding_backward(real[:, ::1] dtable, const real[:, ::1] dy, const int64_t[::1] idx,
                       int64_t padding_idx):
    """dtable [num, dim] += dy [M, dim] rows scattered to idx [M] (padding_idx skipped)."""
    cdef int64_t M = idx.shape[0], num = dtable.shape[0]
    cdef int dim = dtable.shape[1]
    _same((dy.shape[0], dy.shape[1]), (M, dim), "dy")
    with nogil:
        c_embedding_backward(&dtable[0, 0], &dy[0, 0], &idx[0], M, num, dim, padding_idx)


# ---- Dropout ----------------------------------------------------------------------------------
# Flat [n] views (the layer reshapes); the mask is recomputed from (seed, i), never stored.

def dropout_forward(real[::1] y, const real[::1] x, uint64_t seed, double p):
    """y [n] = x [n] * mask, mask[i] = 1/(1-p) if uniform01(seed, 0, i) >= p else 0."""
    cdef size_t n = x.shape[0]
    _same((y.shape[0],), (x.shape[0],), "y")
    if n == 0:
        return
    with nogil:
        c_dropout_forward(&y[0], &x[0], n, seed, p)


def dropout_backward(real[::1] dx, const real[::1] dy, uint64_t seed, double p):
    """dx [n] = dy [n] * mask (the forward's mask: same seed and p)."""
    cdef size_t n = dy.shape[0]
    _same((dx.shape[0],), (dy.shape[0],), "dx")
    if n == 0:
        return
    with nogil:
        c_dropout_backward(&dx[0], &dy[0], n, seed, p)


# ---- LastStep ---------------------------------------------------------------------------------

def last_step_forward(real[:, ::1] y, const real[:, :, ::1] x, const int64_t[::1] lengths,
                      int D):
    """y [N, W] from x [N, T, W] (W = D*H); lengths [N] or None (all T)."""
    cdef int N = x.shape[0], T = x.shape[1], W = x.shape[2]
    if D not in (1, 2) or W % D:
        raise ValueError(f"width {W} does not split into {D} directions")
    _same((y.shape[0], y.shape[1]), (N, W), "y")
    cdef const int64_t* lp = NULL
    if lengths is not None:
        _same((lengths.shape[0],), (N,), "lengths")
        lp = &lengths[0]
    with nogil:
        c_last_step_forward(&y[0, 0], &x[0, 0, 0], lp, N, T, W // D, D)


def last_step_backward(real[:, :, ::1] dx, const real[:, ::1] dy, const int64_t[::1] lengths,
                       int D):
    """dx [N, T, W] = dy [N, W] where forward read, 0 elsewhere."""
    cdef int N = dx.shape[0], T = dx.shape[1], W = dx.shape[2]
    if D not in (1, 2) or W % D:
        raise ValueError(f"width {W} does not split into {D} directions")
    _same((dy.shape[0], dy.shape[1]), (N, W), "dy")
    cdef const int64_t* lp = NULL
    if lengths is not None:
        _same((lengths.shape[0],), (N,), "lengths")
        lp = &lengths[0]
    with nogil:
        c_last_step_backward(&dx[0, 0, 0], &dy[0, 0], lp, N, T, W // D, D)


# ---- optimizers -------------------------------------------------------------------------------
# All buffers are flat [n] views (ndarray.reshape(-1) of contiguous parameters). Each step returns
# what it made non-finite (bit 1 the parameter, bit 2 a state buffer; pyrnn/optim.h).

cdef inline void _check_n(size_t n, object a, str name) except *:
    if a is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} elements, expected {n}")


_KEEP_NAMES = ("keep param", "keep state[0]", "keep state[1]", "keep state[2]")


def _keep_tuple(keep):
    """keep: None, or (param, state0, state1, state2), each None or a writable [n] array of the
    step's dtype that receives what the step overwrites (pyrnn/optim.h's StepKeep)."""
    if keep is None:
        return (None, None, None, None)
    if len(keep) != 4:
        raise ValueError(f"keep must be (param, state0, state1, state2), got {len(keep)} entries")
    return tuple(keep)


cdef int _keep_into(coptim.StepKeep[real]* k, real[::1] kp, real[::1] k0, real[::1] k1,
                    real[::1] k2, size_t n) except -1:
    """k's pointers into the keep views, which the caller holds until its step returns."""
    cdef real[::1] v
    cdef int j
    for j, v in enumerate((kp, k0, k1, k2)):
        if v is None:
            continue
        _check_n(n, v, _KEEP_NAMES[j])
        if j == 0:
            k.param = &v[0]
        else:
            k.state[j - 1] = &v[0]
    return 0


def sgd_step(real[::1] param, const real[::1] grad, real[::1] buf, double lr, double momentum,
             double dampening, double weight_decay, bint nesterov, bint first_step, keep=None):
    cdef size_t n = param.shape[0]
    _check_n(n, grad, "grad")
    if momentum != 0:
        if buf is None:
            raise ValueError("sgd_step with momentum needs a momentum buffer")
        _check_n(n, buf, "momentum buffer")
    cdef real* bp = NULL
    if buf is not None:
        bp = &buf[0]
    if n == 0:
        return 0
    cdef real[::1] kp, k0, k1, k2  # held until the step returns: k points into them
    kp, k0, k1, k2 = _keep_tuple(keep)
    cdef coptim.StepKeep[real] k
    _keep_into(&k, kp, k0, k1, k2, n)
    cdef unsigned bad
    with nogil:
        bad = coptim.sgd_step(&param[0], &grad[0], bp, n, lr, momentum, dampening, weight_decay,
                              nesterov, first_step, &k)
    return bad


def adam_step(real[::1] param, const real[::1] grad, real[::1] exp_avg, real[::1] exp_avg_sq,
              real[::1] max_exp_avg_sq, double lr, double beta1, double beta2, double eps,
              double weight_decay, bint decoupled, bint amsgrad, int64_t step, keep=None):
    cdef size_t n = param.shape[0]
    _check_n(n, grad, "grad")
    _check_n(n, exp_avg, "exp_avg")
    _check_n(n, exp_avg_sq, "exp_avg_sq")
    if amsgrad:
        if max_exp_avg_sq is None:
            raise ValueError("adam_step with amsgrad needs max_exp_avg_sq")
        _check_n(n, max_exp_avg_sq, "max_exp_avg_sq")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    cdef real* mp = NULL
    if max_exp_avg_sq is not None:
        mp = &max_exp_avg_sq[0]
    if n == 0:
        return 0
    cdef real[::1] kp, k0, k1, k2  # held until the step returns: k points into them
    kp, k0, k1, k2 = _keep_tuple(keep)
    cdef coptim.StepKeep[real] k
    _keep_into(&k, kp, k0, k1, k2, n)
    cdef unsigned bad
    with nogil:
        bad = coptim.adam_step(&param[0], &grad[0], &exp_avg[0], &exp_avg_sq[0], mp, n, lr,
                               beta1, beta2, eps, weight_decay, decoupled, amsgrad, step, &k)
    return bad


def rmsprop_step(real[::1] param, const real[::1] grad, real[::1] square_avg,
                 real[::1] grad_avg, real[::1] buf, double lr, double alpha, double eps,
                 double weight_decay, double momentum, bint centered, keep=None):
    cdef size_t n = param.shape[0]
    _check_n(n, grad, "grad")
    _check_n(n, square_avg, "square_avg")
    if centered:
        if grad_avg is None:
            raise ValueError("rmsprop_step centered needs grad_avg")
        _check_n(n, grad_avg, "grad_avg")
    if momentum > 0:
        if buf is None:
            raise ValueError("rmsprop_step with momentum needs a momentum buffer")
        _check_n(n, buf, "momentum buffer")
    cdef real* ap = NULL
    if grad_avg is not None:
        ap = &grad_avg[0]
    cdef real* bp = NULL
    if buf is not None:
        bp = &buf[0]
    if n == 0:
        return 0
    cdef real[::1] kp, k0, k1, k2  # held until the step returns: k points into them
    kp, k0, k1, k2 = _keep_tuple(keep)
    cdef coptim.StepKeep[real] k
    _keep_into(&k, kp, k0, k1, k2, n)
    cdef unsigned bad
    with nogil:
        bad = coptim.rmsprop_step(&param[0], &grad[0], &square_avg[0], ap, bp, n, lr, alpha, eps,
                                  weight_decay, momentum, centered, &k)
    return bad


def sum_squares(const real[::1] x):
    cdef size_t n = x.shape[0]
    cdef double s = 0
    if n == 0:
        return 0.0
    with nogil:
        s = coptim.sum_squares(&x[0], n)
    return s


def max_abs(const real[::1] x):
    cdef size_t n = x.shape[0]
    cdef double s = 0
    if n == 0:
        return 0.0
    with nogil:
        s = coptim.max_abs(&x[0], n)
    return s


def all_finite(const real[::1] x):
    """No NaN or Inf in x."""
    cdef size_t n = x.shape[0]
    cdef bint ok = True
    if n == 0:
        return True
    with nogil:
        ok = coptim.all_finite(&x[0], n)
    return ok


def all_finite_arrays(arrays):
    """Index of the first of `arrays` (C-contiguous float32 / float64 ndarrays) holding a NaN
    or Inf, or -1: fit's check after every step, one call for all of them."""
    cdef const float[::1] f
    cdef const double[::1] d
    cdef Py_ssize_t i
    cdef bint ok
    for i, a in enumerate(arrays):
        if a.dtype.itemsize == 4:
            f = a.reshape(-1)
            ok = f.shape[0] == 0 or coptim.all_finite(&f[0], <size_t>f.shape[0])
        else:
            d = a.reshape(-1)
            ok = d.shape[0] == 0 or coptim.all_finite(&d[0], <size_t>d.shape[0])
        if not ok:
            return i
    return -1


def scale_inplace(real[::1] x, double scale):
    cdef size_t n = x.shape[0]
    if n == 0:
        return
    with nogil:
        coptim.scale_inplace(&x[0], n, scale)
