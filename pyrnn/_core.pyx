# cython: language_level=3
"""Native core of pyrnn: runtime settings, Matrix, and the recurrent stack (C++ via Cython).

Arrays cross as typed memoryviews without copies; compute runs with the GIL released.
"""
from cpython.buffer cimport PyBUF_FORMAT, PyBUF_ND, PyBUF_STRIDES
from libc.stddef cimport size_t
from libc.stdint cimport int64_t, uint64_t
from libcpp.string cimport string
from libcpp.vector cimport vector

from pyrnn.caligned cimport memory_limit_bytes, check_allocation as c_check_allocation
from pyrnn.cmatrix cimport BasicMatrix
from pyrnn.crecurrent cimport CellType, ParamInfo, Recurrent, RecurrentConfig
from pyrnn cimport cruntime
from pyrnn.cversion cimport version as c_version

import operator

import numpy as np

ctypedef fused real:
    float
    double


# ---- runtime ----------------------------------------------------------------------------------

def version():
    return c_version().decode()

def available_isas():
    return [cruntime.isa_name(i).decode() for i in cruntime.available_isas()]

def get_cpu_isa():
    return cruntime.isa_name(cruntime.get_cpu_isa()).decode()

def set_cpu_isa(name):
    if not isinstance(name, str):
        raise TypeError(f"ISA name must be a str, got {type(name).__name__}")
    cdef cruntime.CpuIsa isa
    try:
        isa = cruntime.parse_isa(name.encode())
    except RuntimeError as e:
        raise ValueError(str(e)) from None
    if not cruntime.isa_supported(isa):
        raise ValueError(f"CPU ISA {name!r} is not supported by this CPU "
                         f"(available: {', '.join(available_isas())})")
    cruntime.set_cpu_isa(isa)

def get_num_threads():
    return cruntime.get_num_threads()

def cpu_wait_policy():
    """How the CPU step loops' barrier waits: "spin" or "passive" (OMP_WAIT_POLICY=passive,
    read when the library loaded)."""
    return cruntime.wait_policy_name(cruntime.cpu_wait_policy()).decode()

def memory_limit():
    """Bytes pyrnn will ever allocate for one request (or one layer's parameters, or one
    forward's activations): the machine's physical memory, or a smaller cgroup limit, or a
    smaller PYRNN_MEMORY_LIMIT (read once, at import). Larger requests are a MemoryError
    before anything is allocated."""
    return memory_limit_bytes()

def check_allocation(nbytes, what):
    """MemoryError naming `what` if nbytes (any size, a Python int) exceeds memory_limit()."""
    # The C++ check: one message, and one reading of PYRNN_MEMORY_LIMIT (an invalid value is
    # refused there). float(nbytes): any Python int; the check treats >= 1.8e19 as too big.
    c_check_allocation(float(min(nbytes, 1 << 64)), str(what).encode())

def set_num_threads(n):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"num_threads must be an int, got {type(n).__name__}")
    if not 1 <= n <= 4096:
        raise ValueError(f"num_threads must be in [1, 4096], got {n}")
    cruntime.set_num_threads(<int>n)


# ---- zero-copy views of native memory ---------------------------------------------------------

cdef class _NativeView:
    """Buffer-protocol window on memory owned by `owner` (kept alive by this object)."""
    cdef object owner
    cdef char* ptr
    cdef Py_ssize_t shape[2]
    cdef Py_ssize_t strides[2]
    cdef int ndim
    cdef Py_ssize_t itemsize
    cdef bytes fmt

    def __getbuffer__(self, Py_buffer* buf, int flags):
        buf.buf = self.ptr
        buf.obj = self
        buf.len = self.itemsize
        for i in range(self.ndim):
            buf.len *= self.shape[i]
        buf.readonly = 0
        buf.itemsize = self.itemsize
        buf.format = NULL
        if flags & PyBUF_FORMAT:
            buf.format = <char*>self.fmt
        buf.ndim = self.ndim
        buf.shape = NULL
        buf.strides = NULL
        if flags & PyBUF_ND:
            buf.shape = self.shape
        if flags & PyBUF_STRIDES:
            buf.strides = self.strides
        buf.suboffsets = NULL
        buf.internal = NULL

    def __releasebuffer__(self, Py_buffer* buf):
        pass


cdef object _view(object owner, void* ptr, size_t rows, size_t cols, bint double_prec):
    """ndarray (rows,) if cols == 0 else (rows, cols) over ptr; writable, no copy."""
    cdef _NativeView v = _NativeView.__new__(_NativeView)
    v.owner = owner
    v.ptr = <char*>ptr
    v.itemsize = 8 if double_prec else 4
    v.fmt = b"d" if double_prec else b"f"
    v.ndim = 1 if cols == 0 else 2
    v.shape[0] = rows
    v.shape[1] = cols
    v.strides[0] = v.itemsize * (cols if cols else 1)
    v.strides[1] = v.itemsize
    return np.asarray(v)


# ---- Matrix -----------------------------------------------------------------------------------

cdef class Matrix:
    """pyrnn::BasicMatrix<T>: row-major, 64-byte aligned. `numpy()` is a view, not a copy."""
    cdef BasicMatrix[float]* f32
    cdef BasicMatrix[double]* f64

    def __cinit__(self, rows, cols, dtype="float32"):
        for name, v in (("rows", rows), ("cols", cols)):
            if isinstance(v, bool):
                raise TypeError(f"Matrix {name} must be an int, got bool")
            try:
                operator.index(v)
            except TypeError:
                raise TypeError(f"Matrix {name} must be an int, got {type(v).__name__}") from None
        rows, cols = operator.index(rows), operator.index(cols)
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"Matrix dtype must be float32 or float64, got {dtype!r}") from None
        if dt != np.float32 and dt != np.float64:
            raise TypeError(f"Matrix dtype must be float32 or float64, got {dt}")
        if rows < 0 or cols < 0:
            raise ValueError(f"Matrix shape must be non-negative, got ({rows}, {cols})")
        check_allocation(rows * cols * dt.itemsize, f"Matrix({rows}, {cols}, {dt})")
        if dt == np.float32:
            self.f32 = new BasicMatrix[float](<size_t>rows, <size_t>cols)
        else:
            self.f64 = new BasicMatrix[double](<size_t>rows, <size_t>cols)

    def __dealloc__(self):
        del self.f32
        del self.f64

    @staticmethod
    def from_numpy(a):
        """Copy a 2-D array into a new (aligned) Matrix of the same float dtype."""
        arr = np.asarray(a)
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"Matrix.from_numpy needs a real numeric array, got dtype {arr.dtype}")
        if arr.ndim != 2:
            raise ValueError(f"Matrix.from_numpy needs a 2-D array, got shape {arr.shape}")
        dt = np.float64 if arr.dtype == np.float64 else np.float32
        m = Matrix(arr.shape[0], arr.shape[1], dt)
        m.numpy()[...] = arr
        return m

    @property
    def rows(self):
        return self.f32.rows() if self.f32 else self.f64.rows()

    @property
    def cols(self):
        return self.f32.cols() if self.f32 else self.f64.cols()

    @property
    def shape(self):
        return (self.rows, self.cols)

    @property
    def dtype(self):
        return np.dtype(np.float32 if self.f32 else np.float64)

    cdef _index(self, r, c):
        try:
            r, c = operator.index(r), operator.index(c)
        except TypeError:
            raise TypeError(f"Matrix indices must be ints, got ({type(r).__name__}, "
                            f"{type(c).__name__})") from None
        if not (0 <= r < self.rows and 0 <= c < self.cols):
            raise IndexError(f"Matrix index ({r}, {c}) out of range for shape "
                             f"({self.rows}, {self.cols})")
        return r, c

    def get(self, r, c):
        r, c = self._index(r, c)
        return self.f32.get(r, c) if self.f32 else self.f64.get(r, c)

    def set(self, r, c, double v):
        r, c = self._index(r, c)
        if self.f32:
            self.f32.set(r, c, <float>v)
        else:
            self.f64.set(r, c, v)

    def numpy(self):
        if self.f32:
            return _view(self, self.f32.data(), self.f32.rows(), self.f32.cols(), False)
        return _view(self, self.f64.data(), self.f64.rows(), self.f64.cols(), True)

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        if dtype is not None and np.dtype(dtype) != a.dtype:
            return a.astype(dtype)
        return a.copy() if copy else a

    def __repr__(self):
        return f"Matrix({self.rows}, {self.cols}, dtype={self.dtype.name})"


# ---- recurrent stack --------------------------------------------------------------------------

_CELLS = {"rnn_tanh": <int>CellType.RNN_TANH, "rnn_relu": <int>CellType.RNN_RELU,
          "lstm": <int>CellType.LSTM, "gru": <int>CellType.GRU}

cdef inline real* _ptr(real[:, :, ::1] a):
    if a is None:
        return NULL
    return &a[0, 0, 0]

cdef inline const real* _cptr(const real[:, :, ::1] a):
    # Inputs are const views so read-only arrays (np.load mmap, frombuffer) are accepted.
    if a is None:
        return NULL
    return &a[0, 0, 0]

cdef _forward(Recurrent[real]* net, real[:, :, ::1] y, real[:, :, ::1] hn, real[:, :, ::1] cn,
              const real[:, :, ::1] x, const real[:, :, ::1] h0, const real[:, :, ::1] c0,
              const int64_t* lengths, bint training, uint64_t seed):
    cdef real* cn_p = _ptr(cn)
    cdef const real* h0_p = _cptr(h0)
    cdef const real* c0_p = _cptr(c0)
    cdef int steps = x.shape[0], batch = x.shape[1]
    with nogil:
        net.forward(&y[0, 0, 0], &hn[0, 0, 0], cn_p, &x[0, 0, 0], h0_p, c0_p, lengths,
                    steps, batch, training, seed)

cdef _backward(Recurrent[real]* net, real[:, :, ::1] dx, real[:, :, ::1] dh0, real[:, :, ::1] dc0,
               const real[:, :, ::1] dy, const real[:, :, ::1] dhn, const real[:, :, ::1] dcn):
    cdef real* dc0_p = _ptr(dc0)
    cdef const real* dhn_p = _cptr(dhn)
    cdef const real* dcn_p = _cptr(dcn)
    with nogil:
        net.backward(&dx[0, 0, 0], &dh0[0, 0, 0], dc0_p, &dy[0, 0, 0], dhn_p, dcn_p)


cdef class NativeRecurrent:
    """Owns a pyrnn::Recurrent<float|double>. Arguments arrive validated, C-contiguous and of
    the layer dtype (pyrnn.recurrent does that); this layer only moves pointers."""
    cdef Recurrent[float]* f32
    cdef Recurrent[double]* f64
    cdef RecurrentConfig cfg
    cdef bint busy
    cdef readonly object dtype

    def __cinit__(self, str cell, int input_size, int hidden_size, int num_layers, bint bias,
                  bint bidirectional, bint reset_after, double dropout, dtype):
        if cell not in _CELLS:
            raise ValueError(f"unknown cell {cell!r}")
        self.cfg.cell = <CellType><int>_CELLS[cell]
        self.cfg.input_size = input_size
        self.cfg.hidden_size = hidden_size
        self.cfg.num_layers = num_layers
        self.cfg.bias = bias
        self.cfg.bidirectional = bidirectional
        self.cfg.reset_after = reset_after
        self.cfg.dropout = dropout
        try:
            self.cfg.validate()
        except RuntimeError as e:
            raise ValueError(str(e)) from None
        self.dtype = np.dtype(dtype)
        if self.dtype == np.float32:
            self.f32 = new Recurrent[float](self.cfg)
        elif self.dtype == np.float64:
            self.f64 = new Recurrent[double](self.cfg)
        else:
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")

    def __dealloc__(self):
        del self.f32
        del self.f64

    def num_parameters(self):
        return self.f32.num_parameters() if self.f32 else self.f64.num_parameters()

    def reset_parameters(self, uint64_t seed):
        self._enter()
        try:
            if self.f32:
                self.f32.reset_parameters(seed)
            else:
                self.f64.reset_parameters(seed)
        finally:
            self.busy = False

    def zero_grad(self):
        # Refused while another thread runs backward (it accumulates into the same memory).
        self._enter()
        try:
            if self.f32:
                self.f32.zero_grad()
            else:
                self.f64.zero_grad()
        finally:
            self.busy = False

    def has_cache(self):
        return self.f32.has_cache() if self.f32 else self.f64.has_cache()

    def cached_shape(self):
        if self.f32:
            return (self.f32.cached_steps(), self.f32.cached_batch())
        return (self.f64.cached_steps(), self.f64.cached_batch())

    def views(self, bint grads):
        """{name: ndarray view} of the parameters (or their gradients), in native order."""
        cdef const vector[ParamInfo]* info = &(self.f32.param_info() if self.f32
                                               else self.f64.param_info())
        out = {}
        cdef void* base
        cdef size_t i
        cdef const ParamInfo* p
        for i in range(info.size()):
            p = &info[0][i]
            if self.f32:
                base = <void*>((self.f32.grads() if grads else self.f32.params()) + p.offset)
            else:
                base = <void*>((self.f64.grads() if grads else self.f64.params()) + p.offset)
            out[p.name.decode()] = _view(self, base, p.rows, p.cols, self.f64 != NULL)
        return out

    cdef _enter(self):
        # One layer holds one forward cache: concurrent use from two threads is refused.
        if self.busy:
            raise RuntimeError("this layer is already running forward/backward in another "
                               "thread; use one layer per thread")
        self.busy = True

    def forward(self, x, h0, c0, lengths, bint training, uint64_t seed):
        """x [T, N, C]; h0/c0 [L*D, N, H] or None; lengths int64 [N] or None."""
        T, N = x.shape[0], x.shape[1]
        D = self.cfg.directions()
        H = self.cfg.hidden_size
        L = self.cfg.num_layers
        y = np.empty((T, N, D * H), self.dtype)
        hn = np.empty((L * D, N, H), self.dtype)
        lstm = self.cfg.cell == CellType.LSTM
        cn = np.empty((L * D, N, H), self.dtype) if lstm else None
        cdef const int64_t[::1] lens
        cdef const int64_t* lens_p = NULL
        if lengths is not None:
            lens = lengths
            lens_p = &lens[0]
        self._enter()
        try:
            if self.f32:
                _forward[float](self.f32, y, hn, cn, x, h0, c0, lens_p, training, seed)
            else:
                _forward[double](self.f64, y, hn, cn, x, h0, c0, lens_p, training, seed)
        finally:
            self.busy = False
        return y, hn, cn

    def backward(self, dy, dhn, dcn):
        """dy [T, N, D*H]; dhn/dcn [L*D, N, H] or None -> (dx, dh0, dc0 or None)."""
        T, N = dy.shape[0], dy.shape[1]
        L, D, H = self.cfg.num_layers, self.cfg.directions(), self.cfg.hidden_size
        dx = np.empty((T, N, self.cfg.input_size), self.dtype)
        dh0 = np.empty((L * D, N, H), self.dtype)
        dc0 = np.empty((L * D, N, H), self.dtype) if self.cfg.cell == CellType.LSTM else None
        self._enter()
        try:
            if self.f32:
                _backward[float](self.f32, dx, dh0, dc0, dy, dhn, dcn)
            else:
                _backward[double](self.f64, dx, dh0, dc0, dy, dhn, dcn)
        finally:
            self.busy = False
        return dx, dh0, dc0
