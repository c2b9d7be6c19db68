# The training stack's device kernels (included into pyrnn/_cuda.pyx so they share its DeviceArray
# and its per-device Context): thin wrappers over pyrnn/cuda/layers.h and pyrnn/cuda/optim.h, the
# twins of pyrnn._train. Tensor arguments are DeviceArrays (C-contiguous by construction) of one
# float dtype on one device; shapes, dtypes, devices and writability are checked here, so a misuse
# is a TypeError / ValueError, never a write out of bounds. Outputs are new owning DeviceArrays.
# Embedding's indices and LastStep's lengths are host int64 arrays (as the recurrent lengths).
# pyrnn.cuda.kernels() returns this module; pyrnn.layers / optim / model dispatch to it for
# device arrays.
from pyrnn cimport ccuda_train as ct
from pyrnn.clayers cimport Activation
from pyrnn.coptim cimport StepKeep


cdef Context* _train_ctx(int device) except NULL:
    _require_device()
    return &Context.get(device)


cdef uintptr_t _dev(str name, object a, object dtype, tuple shape, int device,
                    bint writable=False, bint optional=False) except? 0:
    """The device pointer of `a` after checking it (None allowed when optional: 0)."""
    if a is None:
        if optional:
            return 0
        raise TypeError(f"{name} must be a DeviceArray, got None")
    if not isinstance(a, DeviceArray):
        raise TypeError(f"{name} must be a pyrnn.cuda.DeviceArray, got {type(a).__name__}")
    cdef DeviceArray d = <DeviceArray>a
    if d.dtype != dtype:
        raise TypeError(f"{name} has dtype {d.dtype}, expected {dtype}")
    if shape is not None and d.shape != shape:
        raise ValueError(f"{name} has shape {d.shape}, expected {shape}")
    if d.device != device:
        raise ValueError(f"{name} is on cuda:{d.device}, expected cuda:{device}")
    if writable and d.readonly:
        raise ValueError(f"{name} is read-only")
    return d.ptr


cdef tuple _main(str name, object a, int ndim):
    """(dtype, device, shape) of the array that fixes them for a call."""
    if not isinstance(a, DeviceArray):
        raise TypeError(f"{name} must be a pyrnn.cuda.DeviceArray, got {type(a).__name__}")
    cdef DeviceArray d = <DeviceArray>a
    if d.dtype != np.float32 and d.dtype != np.float64:
        raise TypeError(f"{name} must be float32 or float64, got {d.dtype}")
    if ndim >= 0 and d.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-d, got shape {d.shape}")
    return d.dtype, d.device, d.shape


cdef int _extent(str name, tuple shape, int axis) except -1:
    """shape[axis] for a C++ int argument: a ValueError from 2**31 on, where Cython's conversion
    would raise OverflowError (a view imported through __cuda_array_interface__ can claim any
    shape without the memory behind it)."""
    cdef object v = shape[axis]
    if v >= 2**31:
        raise ValueError(f"{name} has shape {shape}: axis {axis} must be below 2**31 here")
    return v


def _host_i64(str name, values, int64_t n):
    arr = np.ascontiguousarray(values, dtype=np.int64).reshape(-1)
    if arr.shape[0] != n:
        raise ValueError(f"{name} must have {n} entries, got {arr.shape[0]}")
    return arr


# ---- Dense ------------------------------------------------------------------------------------

def dense_forward(x, w, b, int act):
    """y [M, out] = act(x [M, in] w [out, in]^T + b [out]); b may be None."""
    dt, dev, xs = _main("x", x, 2)
    cdef int64_t M = xs[0]
    cdef int n_in = _extent("x", xs, 1)
    if not isinstance(w, DeviceArray) or (<DeviceArray>w).ndim != 2:
        raise TypeError("weight must be a 2-d DeviceArray")
    cdef int n_out = _extent("weight", w.shape, 0)
    cdef uintptr_t xp = _dev("x", x, dt, None, dev)
    cdef uintptr_t wp = _dev("weight", w, dt, (n_out, n_in), dev)
    cdef uintptr_t bp = _dev("bias", b, dt, (n_out,), dev, False, True)
    y = DeviceArray.empty((M, n_out), dt, dev)
    cdef uintptr_t yp = (<DeviceArray>y).ptr
    cdef Context* c = _train_ctx(dev)
    if dt == np.float32:
        with nogil:
            ct.dense_forward[float](c[0], <float*>yp, <const float*>xp, <const float*>wp,
                                    <const float*>bp, M, n_in, n_out, <Activation>act)
    else:
        with nogil:
            ct.dense_forward[double](c[0], <double*>yp, <const double*>xp, <const double*>wp,
                                     <const double*>bp, M, n_in, n_out, <Activation>act)
    return y


def dense_backward(dw, db, dy, y, x, w, int act, bint need_dx=True):
    """dw [out, in] += dz^T x, db [out] += sum dz (db may be None), dz = dy * act'(y);
    returns dx [M, in] = dz w (None unless need_dx)."""
    dt, dev, xs = _main("x", x, 2)
    cdef int64_t M = xs[0]
    cdef int n_in = _extent("x", xs, 1)
    if not isinstance(w, DeviceArray) or (<DeviceArray>w).ndim != 2:
        raise TypeError("weight must be a 2-d DeviceArray")
    cdef int n_out = _extent("weight", w.shape, 0)
    cdef uintptr_t xp = _dev("x", x, dt, None, dev)
    cdef uintptr_t wp = _dev("weight", w, dt, (n_out, n_in), dev)
    cdef uintptr_t dwp = _dev("dweight", dw, dt, (n_out, n_in), dev, True)
    cdef uintptr_t dbp = _dev("dbias", db, dt, (n_out,), dev, True, True)
    cdef uintptr_t dyp = _dev("dy", dy, dt, (M, n_out), dev)
    cdef uintptr_t yp = _dev("y", y, dt, (M, n_out), dev)
    dx = DeviceArray.empty((M, n_in), dt, dev) if need_dx else None
    cdef uintptr_t dxp = (<DeviceArray>dx).ptr if need_dx else 0
    cdef Context* c = _train_ctx(dev)
    if dt == np.float32:
        with nogil:
            ct.dense_backward[float](c[0], <float*>dxp, <float*>dwp, <float*>dbp,
                                     <const float*>dyp, <const float*>yp, <const float*>xp,
                                     <const float*>wp, M, n_in, n_out, <Activation>act)
    else:
        with nogil:
            ct.dense_backward[double](c[0], <double*>dxp, <double*>dwp, <double*>dbp,
                                      <const double*>dyp, <const double*>yp, <const double*>xp,
                                      <const double*>wp, M, n_in, n_out, <Activation>act)
    return dx


# ---- LayerNorm --------------------------------------------------------------------------------

def layernorm_forward(x, w, b, double eps, bint keep=False):
    """(y [M, D], mean [M], rstd [M], x_keep) of x [M, D] normalised over its last axis; mean and
    rstd float64 for both precisions; x_keep a copy of x made in the same pass when keep (the
    training cache), else None."""
    dt, dev, xs = _main("x", x, 2)
    cdef int64_t M = xs[0]
    cdef int D = _extent("x", xs, 1)
    cdef uintptr_t xp = _dev("x", x, dt, None, dev)
    cdef uintptr_t wp = _dev("weight", w, dt, (D,), dev)
    cdef uintptr_t bp = _dev("bias", b, dt, (D,), dev)
    y = DeviceArray.empty((M, D), dt, dev)
    mean = DeviceArray.empty((M,), np.float64, dev)
    rstd = DeviceArray.empty((M,), np.float64, dev)
    cdef uintptr_t yp = (<DeviceArray>y).ptr, mp = (<DeviceArray>mean).ptr
    cdef uintptr_t rp = (<DeviceArray>rstd).ptr
    kept = DeviceArray.empty((M, D), dt, dev) if keep else None
    cdef uintptr_t kp = (<DeviceArray>kept).ptr if keep else 0
    cdef Context* c = _train_ctx(dev)
    if dt == np.float32:
        with nogil:
            ct.layernorm_forward[float](c[0], <float*>yp, <double*>mp, <double*>rp,
                                        <const float*>xp, <const float*>wp, <const float*>bp,
                                        M, D, eps, <float*>kp)
    else:
        with nogil:
            ct.layernorm_forward[double](c[0], <double*>yp, <double*>mp, <double*>rp,
                                         <const double*>xp, <const double*>wp,
                                         <const double*>bp, M, D, eps, <double*>kp)
    return y, mean, rstd, kept


def layernorm_backward(dw, db, dy, x, mean, rstd, w):
    """Returns dx [M, D]; dw, db [D] accumulate."""
    dt, dev, xs = _main("x", x, 2)
    cdef int64_t M = xs[0]
    cdef int D = _extent("x", xs, 1)
    cdef uintptr_t xp = _dev("x", x, dt, None, dev)
    cdef uintptr_t dyp = _dev("dy", dy, dt, (M, D), dev)
    cdef uintptr_t mp = _dev("mean", mean, np.dtype(np.float64), (M,), dev)
    cdef uintptr_t rp = _dev("rstd", rstd, np.dtype(np.float64), (M,), dev)
    cdef uintptr_t wp = _dev("weight", w, dt, (D,), dev)
    cdef uintptr_t dwp = _dev("dweight", dw, dt, (D,), dev, True)
    cdef uintptr_t dbp = _dev("dbias", db, dt, (D,), dev, True)
    dx = DeviceArray.empty((M, D), dt, dev)
    cdef uintptr_t dxp = (<DeviceArray>dx).ptr
    cdef Context* c = _train_ctx(dev)
    if dt == np.float32:
        with nogil:
            ct.layernorm_backward[float](c[0], <float*>dxp, <float*>dwp, <float*>dbp,
                                         <const float*>dyp, <const float*>xp, <const double*>mp,
                                         <const double*>rp, <const float*>wp, M, D)
    else:
        with nogil:
            ct.layernorm_backward[double](c[0], <double*>dxp, <double*>dwp, <double*>dbp,
                                          <const double*>dyp, <const double*>xp,
                                          <const double*>mp, <const double*>rp,
                                          <const double*>wp, M, D)
    return dx


# ---- Embedding --------------------------------------------------------------------------------

def embedding_forward(idx, table):
    """y [M, dim] = table [num, dim] rows at idx (HOST int64 [M], validated in C++)."""
    dt, dev, ts = _main("table", table, 2)
    cdef int64_t num = ts[0]
    cdef int dim = _extent("table", ts, 1)
    cdef const int64_t[::1] ids = np.ascontiguousarray(idx, dtype=np.int64).reshape(-1)
    cdef int64_t M = ids.shape[0]
    cdef uintptr_t tp = _dev("table", table, dt, None, dev)
    y = DeviceArray.empty((M, dim), dt, dev)
    cdef uintptr_t yp = (<DeviceArray>y).ptr
    cdef const int64_t* ip = &ids[0] if M else NULL
    cdef Context* c = _train_ctx(dev)
    if dt == np.float32:
        with nogil:
            ct.embedding_forward[float](c[0], <float*>yp, ip, <const float*>tp, M, num, dim)
    else:
        with nogil:
            ct.embedding_forward[double](c[0], <double*>yp, ip, <const double*>tp, M, num, dim)
    return y


def embedding_backward(dtable, dy, idx, int64_t padding_idx):
    """dtable [num, dim] += dy [M, dim] rows at idx (HOST int64 [M]); padding_idx skipped."""
    dt, dev, ts = _main("dtable", dtable, 2)
    cdef int64_t num = ts[0]
    cdef int dim = _extent("dtable", ts, 1)
    cdef const int64_t[::1] ids = np.ascontiguousarray(idx, dtype=np.int64).reshape(-1)
    cdef int64_t M = ids.shape[0]
    cdef uintptr_t tp = _dev("dtable", dtable, dt, None, dev, True)
    cdef uintptr_t dyp = _dev("dy", dy, dt, (M, dim), dev)
    cdef const int64_t* ip = &ids[0] if M else NULL
    cdef Context* c = _train_ctx(dev)
    if dt == np.float32:
        with nogil:
            ct.embedding_backward[float](c[0], <float*>tp, <const float*>dyp, ip, M, num, dim,
                                         padding_idx)
    else:
        with nogil:
            ct.embedding_backward[double](c[0], <double*>tp, <const double*>dyp, ip, M, num, dim,
                                          padding_idx)


# ---- Dropout ----------------------------------------------------------------------------------

def _dropout(x, uint64_t seed, double p, bint backward):
    dt, dev, xs = _main("dy" if backward else "x", x, -1)
    cdef uintptr_t xp = _dev("x", x, dt, None, dev)
    y = DeviceArray.empty(xs, dt, dev)
    cdef uintptr_t yp = (<DeviceArray>y).ptr
    cdef size_t n = (<DeviceArray>x).size
    cdef Context* c = _train_ctx(dev)
    if dt == np.float32:
        with nogil:
            if backward:
                ct.dropout_backward[float](c[0], <float*>yp, <const float*>xp, n, seed, p)
            else:
                ct.dropout_forward[float](c[0], <float*>yp, <const float*>xp, n, seed, p)
    else:
        with nogil:
            if backward:
                ct.dropout_backward[double](c[0], <double*>yp, <const double*>xp, n, seed, p)
            else:
                ct.dropout_forward[double](c[0], <double*>yp, <const double*>xp, n, seed, p)
    return y


def dropout_forward(x, uint64_t seed, double p):
    """y = x * mask (any shape); mask[i] = 1/(1-p) if uniform01(seed, 0, i) >= p else 0."""
    return _dropout(x, seed, p, False)


def dropout_backward(dy, uint64_t seed, double p):
    """dx = dy * mask, the mask of the forward with the same seed and p."""
    return _dropout(dy, seed, p, True)


# ---- LastStep ---------------------------------------------------------------------------------

def last_step_forward(x, lengths, int D):
    """y [N, W] from x [N, T, W] (W = D*H); lengths HOST int64 [N] or None (all T)."""
    dt, dev, xs = _main("x", x, 3)
    cdef int N = _extent("x", xs, 0), T = _extent("x", xs, 1), W = _extent("x", xs, 2)
    if D not in (1, 2) or W % D:
        raise ValueError(f"last_step_forward: width {W} does not split into {D} directions")
    cdef uintptr_t xp = _dev("x", x, dt, None, dev)
    cdef const int64_t[::1] lens
    cdef const int64_t* lp = NULL
    if lengths is not None:
        lens = _host_i64("lengths", lengths, N)
        lp = &lens[0]
    y = DeviceArray.empty((N, W), dt, dev)
    cdef uintptr_t yp = (<DeviceArray>y).ptr
    cdef int H = W // D
    cdef Context* c = _train_ctx(dev)
    if dt == np.float32:
        with nogil:
            ct.last_step_forward[float](c[0], <float*>yp, <const float*>xp, lp, N, T, H, D)
    else:
        with nogil:
            ct.last_step_forward[double](c[0], <double*>yp, <const double*>xp, lp, N, T, H, D)
    return y


def last_step_backward(dy, lengths, int T, int D):
    """dx [N, T, W]: dy [N, W] where forward read, 0 elsewhere."""
    dt, dev, ds = _main("dy", dy, 2)
    cdef int N = _extent("dy", ds, 0), W = _extent("dy", ds, 1)
    if D not in (1, 2) or W % D:
        raise ValueError(f"last_step_backward: width {W} does not split into {D} directions")
    cdef uintptr_t dyp = _dev("dy", dy, dt, None, dev)
    cdef const int64_t[::1] lens
    cdef const int64_t* lp = NULL
    if lengths is not None:
        lens = _host_i64("lengths", lengths, N)
        lp = &lens[0]
    dx = DeviceArray.empty((N, T, W), dt, dev)
    cdef uintptr_t dxp = (<DeviceArray>dx).ptr
    cdef int H = W // D
    cdef Context* c = _train_ctx(dev)
    if dt == np.float32:
        with nogil:
            ct.last_step_backward[float](c[0], <float*>dxp, <const float*>dyp, lp, N, T, H, D)
    else:
        with nogil:
            ct.last_step_backward[double](c[0], <double*>dxp, <const double*>dyp, lp, N, T, H, D)
    return dx


# ---- optimizers: flat [n] DeviceArrays, the signatures of pyrnn._train's ----------------------

cdef tuple _flat(object param):
    dt, dev, ps = _main("param", param, 1)
    return dt, dev, (<DeviceArray>param).size


_KEEP_NAMES = ("keep param", "keep state[0]", "keep state[1]", "keep state[2]")


cdef tuple _keep_ptrs(object keep, object dtype, size_t n, int device):
    """keep: None, or (param, state0, state1, state2), each None or a writable [n] DeviceArray
    of the step's dtype on its device (pyrnn/optim.h's StepKeep): their pointers (0: none)."""
    if keep is None:
        return (0, 0, 0, 0)
    if len(keep) != 4:
        raise ValueError(f"keep must be (param, state0, state1, state2), got {len(keep)} entries")
    return tuple(_dev(name, a, dtype, (n,), device, True, True)
                 for name, a in zip(_KEEP_NAMES, keep))


cdef StepKeep[float] _keep_f(tuple p):
    cdef StepKeep[float] k
    k.param = <float*><uintptr_t>p[0]
    k.state[0] = <float*><uintptr_t>p[1]
    k.state[1] = <float*><uintptr_t>p[2]
    k.state[2] = <float*><uintptr_t>p[3]
    return k


cdef StepKeep[double] _keep_d(tuple p):
    cdef StepKeep[double] k
    k.param = <double*><uintptr_t>p[0]
    k.state[0] = <double*><uintptr_t>p[1]
    k.state[1] = <double*><uintptr_t>p[2]
    k.state[2] = <double*><uintptr_t>p[3]
    return k


def sgd_step(param, grad, buf, double lr, double momentum, double dampening,
             double weight_decay, bint nesterov, bint first_step, keep=None):
    dt, dev, n = _flat(param)
    cdef size_t nn = n
    cdef uintptr_t pp = _dev("param", param, dt, (n,), dev, True)
    cdef uintptr_t gp = _dev("grad", grad, dt, (n,), dev)
    cdef uintptr_t bp = _dev("momentum buffer", buf, dt, (n,), dev, True,
                             momentum == 0)
    cdef tuple kp = _keep_ptrs(keep, dt, nn, dev)
    cdef StepKeep[float] kf = _keep_f(kp)
    cdef StepKeep[double] kd = _keep_d(kp)
    cdef Context* c = _train_ctx(dev)
    cdef unsigned bad
    if dt == np.float32:
        with nogil:
            bad = ct.sgd_step[float](c[0], <float*>pp, <const float*>gp, <float*>bp, nn, lr,
                                     momentum, dampening, weight_decay, nesterov, first_step,
                                     &kf)
    else:
        with nogil:
            bad = ct.sgd_step[double](c[0], <double*>pp, <const double*>gp, <double*>bp, nn, lr,
                                      momentum, dampening, weight_decay, nesterov, first_step,
                                      &kd)
    return bad


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, double lr, double beta1,
              double beta2, double eps, double weight_decay, bint decoupled, bint amsgrad,
              int64_t step, keep=None):
    dt, dev, n = _flat(param)
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    cdef size_t nn = n
    cdef uintptr_t pp = _dev("param", param, dt, (n,), dev, True)
    cdef uintptr_t gp = _dev("grad", grad, dt, (n,), dev)
    cdef uintptr_t mp = _dev("exp_avg", exp_avg, dt, (n,), dev, True)
    cdef uintptr_t vp = _dev("exp_avg_sq", exp_avg_sq, dt, (n,), dev, True)
    cdef uintptr_t xp = _dev("max_exp_avg_sq", max_exp_avg_sq, dt, (n,), dev, True,
                             not amsgrad)
    cdef tuple kp = _keep_ptrs(keep, dt, nn, dev)
    cdef StepKeep[float] kf = _keep_f(kp)
    cdef StepKeep[double] kd = _keep_d(kp)
    cdef Context* c = _train_ctx(dev)
    cdef unsigned bad
    if dt == np.float32:
        with nogil:
            bad = ct.adam_step[float](c[0], <float*>pp, <const float*>gp, <float*>mp, <float*>vp,
                                      <float*>xp, nn, lr, beta1, beta2, eps, weight_decay,
                                      decoupled, amsgrad, step, &kf)
    else:
        with nogil:
            bad = ct.adam_step[double](c[0], <double*>pp, <const double*>gp, <double*>mp,
                                       <double*>vp, <double*>xp, nn, lr, beta1, beta2, eps,
                                       weight_decay, decoupled, amsgrad, step, &kd)
    return bad


def rmsprop_step(param, grad, square_avg, grad_avg, buf, double lr, double alpha, double eps,
                 double weight_decay, double momentum, bint centered, keep=None):
    dt, dev, n = _flat(param)
    cdef size_t nn = n
    cdef uintptr_t pp = _dev("param", param, dt, (n,), dev, True)
    cdef uintptr_t gp = _dev("grad", grad, dt, (n,), dev)
    cdef uintptr_t sp = _dev("square_avg", square_avg, dt, (n,), dev, True)
    cdef uintptr_t ap = _dev("grad_avg", grad_avg, dt, (n,), dev, True,
                             not centered)
    cdef uintptr_t bp = _dev("momentum buffer", buf, dt, (n,), dev, True,
                             not momentum > 0)
    cdef tuple kp = _keep_ptrs(keep, dt, nn, dev)
    cdef StepKeep[float] kf = _keep_f(kp)
    cdef StepKeep[double] kd = _keep_d(kp)
    cdef Context* c = _train_ctx(dev)
    cdef unsigned bad
    if dt == np.float32:
        with nogil:
            bad = ct.rmsprop_step[float](c[0], <float*>pp, <const float*>gp, <float*>sp,
                                         <float*>ap, <float*>bp, nn, lr, alpha, eps,
                                         weight_decay, momentum, centered, &kf)
    else:
        with nogil:
            bad = ct.rmsprop_step[double](c[0], <double*>pp, <const double*>gp, <double*>sp,
                                          <double*>ap, <double*>bp, nn, lr, alpha, eps,
                                          weight_decay, momentum, centered, &kd)
    return bad


def sum_squares(x):
    """Sum of squares (in double) of a device array, by a fixed-order reduction."""
    dt, dev, xs = _main("x", x, -1)
    cdef uintptr_t xp = _dev("x", x, dt, None, dev)
    cdef size_t n = (<DeviceArray>x).size
    cdef double s = 0
    cdef Context* c = _train_ctx(dev)
    if dt == np.float32:
        with nogil:
            s = ct.sum_squares[float](c[0], <const float*>xp, n)
    else:
        with nogil:
            s = ct.sum_squares[double](c[0], <const double*>xp, n)
    return s


def max_abs(x):
    """max |x| of a device array (NaN if any element is NaN)."""
    dt, dev, xs = _main("x", x, -1)
    cdef uintptr_t xp = _dev("x", x, dt, None, dev)
    cdef size_t n = (<DeviceArray>x).size
    cdef double s = 0
    cdef Context* c = _train_ctx(dev)
    if dt == np.float32:
        with nogil:
            s = ct.max_abs[float](c[0], <const float*>xp, n)
    else:
        with nogil:
            s = ct.max_abs[double](c[0], <const double*>xp, n)
    return s


def scale_inplace(x, double scale):
    dt, dev, xs = _main("x", x, -1)
    cdef uintptr_t xp = _dev("x", x, dt, None, dev, True)
    cdef size_t n = (<DeviceArray>x).size
    cdef Context* c = _train_ctx(dev)
    if dt == np.float32:
        with nogil:
            ct.scale_inplace[float](c[0], <float*>xp, n, scale)
    else:
        with nogil:
            ct.scale_inplace[double](c[0], <double*>xp, n, scale)


def zero_(x):
    """x[...] = 0 on the device."""
    dt, dev, xs = _main("x", x, -1)
    cdef uintptr_t xp = _dev("x", x, dt, None, dev, True)
    cdef size_t n = (<DeviceArray>x).size
    cdef Context* c = _train_ctx(dev)
    if dt == np.float32:
        with nogil:
            ct.zero[float](c[0], <float*>xp, n)
    else:
        with nogil:
            ct.zero[double](c[0], <double*>xp, n)


def copy_(dst, src):
    """dst[...] = src (device to device, same shape and dtype)."""
    if not isinstance(dst, DeviceArray) or not isinstance(src, DeviceArray):
        raise TypeError("copy_ takes two DeviceArrays")
    cdef DeviceArray d = <DeviceArray>dst, s = <DeviceArray>src
    if d.readonly:
        raise ValueError("copy_: destination is read-only")
    if d.shape != s.shape or d.dtype != s.dtype:
        raise ValueError(f"copy_: {s.shape} {s.dtype} into {d.shape} {d.dtype}")
    cdef size_t nbytes = d.nbytes
    cdef void* dp = <void*>d.ptr
    cdef const void* sp = <const void*>s.ptr
    cdef int dev = d.device
    if nbytes and dp != sp:
        with nogil:  # on the destination's device, as DeviceArray.copy: whatever is current
            ccuda.copy_bytes(dp, sp, nbytes, NULL, dev)
