# cython: language_level=3
"""Native core of pyrnn: runtime settings, Matrix, and the recurrent stack (C++ via Cython).

Arrays cross as typed memoryviews without copies; compute runs with the GIL released.
"""
from cpython.buffer cimport PyBUF_FORMAT, PyBUF_ND, PyBUF_STRIDES
from libc.math cimport fabs, isfinite
from libc.stddef cimport size_t
from libc.stdint cimport int64_t, uint64_t
from libcpp.string cimport string
from libcpp.vector cimport vector
from posix.unistd cimport getpid
from cpython.pythread cimport PyThread_get_thread_ident

from pyrnn.caligned cimport memory_limit_bytes, check_allocation as c_check_allocation
from pyrnn.caligned cimport inject_allocation_failure
from pyrnn.cmatrix cimport BasicMatrix
from pyrnn.crecurrent cimport CellType, ParamInfo, Recurrent, RecurrentConfig
from pyrnn cimport cruntime
from cpython.pycapsule cimport PyCapsule_New
from pyrnn.cversion cimport version as c_version

import operator

import weakref

import numpy as np

from pyrnn._validate import cast_finite as _cast_finite, host_asarray as _host_asarray

ctypedef fused real:
    float
    double


# ---- runtime ----------------------------------------------------------------------------------

def version():
    return c_version().decode()

def _runtime_state():
    """This module's C++ runtime settings (ISA, threads, the fork rule), as a capsule: the other
    extension modules, each with its own copy of the library, adopt it (pyrnn/__init__.py)."""
    return PyCapsule_New(cruntime.runtime_state(), b"pyrnn.runtime_state", NULL)


def available_isas():
    return [cruntime.isa_name(i).decode() for i in cruntime.available_isas()]

def get_cpu_isa():
    return cruntime.isa_name(cruntime.get_cpu_isa()).decode()

def _cap_cpu_isa_for_tests(name):
    """Tests only (pyrnn::detail::cap_isa_for_tests): ISAs above `name` count as unsupported,
    as on a CPU without them, and the ISA is chosen again as at import; 'avx512' lifts it."""
    cruntime.cap_isa_for_tests(cruntime.parse_isa(name.encode()))


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

def fma_peak_gflops(threads=None, seconds=0.5):
    """The machine's limit for pyrnn's CPU kernels: the best float32 rate (GFLOP/s, 2 flops per
    multiply-add) of the current ISA's widest multiply-add on `threads` threads at once
    (default get_num_threads()), with nothing else in the loop, over 5 trials taking about
    `seconds` in all. No product can beat it; benchmarks divide by it."""
    if threads is None:
        threads = cruntime.get_num_threads()
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(f"threads must be an int, got {type(threads).__name__}")
    if not 1 <= threads <= 4096:
        raise ValueError(f"threads must be in [1, 4096], got {threads}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float, np.integer, np.floating)):
        raise TypeError(f"seconds must be a number, got {type(seconds).__name__}")
    if not 0 < seconds <= 60:  # NaN fails too
        raise ValueError(f"seconds must be in (0, 60], got {seconds}")
    cdef int c_threads = threads
    cdef double c_seconds = seconds
    cdef double out
    with nogil:
        out = cruntime.fma_peak_gflops(c_threads, c_seconds)
    return out

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

def _fail_allocations_from(nbytes):
    """Tests only: every later buffer allocation of at least nbytes by this module (the
    recurrent layers; pyrnn._train and pyrnn._cuda link their own copy of the flag) fails
    (MemoryError), as one the system refuses would; 0 ends it. (The up-front size checks are
    not affected.)"""
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or not 0 <= nbytes < 1 << 64:
        raise ValueError(f"nbytes must be an int in [0, 2**64), got {nbytes!r}")
    inject_allocation_failure(nbytes)

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


cdef object _view(object owner, void* ptr, size_t rows, size_t cols, bint double_prec,
                  bint vector=False):
    """ndarray (rows,) if vector else (rows, cols) over ptr; writable, no copy. (An empty
    (rows, 0) Matrix is 2-D: once cols == 0 meant a vector, and its view was (rows,) over
    no memory.)"""
    cdef _NativeView v = _NativeView.__new__(_NativeView)
    v.owner = owner
    v.ptr = <char*>ptr
    v.itemsize = 8 if double_prec else 4
    v.fmt = b"d" if double_prec else b"f"
    v.ndim = 1 if vector else 2
    v.shape[0] = rows
    v.shape[1] = 1 if vector else cols
    v.strides[0] = v.itemsize * (1 if vector else cols)
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
        try:  # None is the default, as torch's dtype=None (np.dtype(None) is float64)
            dt = np.dtype(np.float32 if dtype is None else dtype)
        except TypeError:
            raise TypeError(f"Matrix dtype must be float32 or float64, got {dtype!r}") from None
        if dt != np.float32 and dt != np.float64:
            raise TypeError(f"Matrix dtype must be float32 or float64, got {dt}")
        if rows < 0 or cols < 0:
            raise ValueError(f"Matrix shape must be non-negative, got ({rows}, {cols})")
        if max(rows, cols) > np.iinfo(np.intp).max // dt.itemsize:
            # (an empty one passed the byte check, and its numpy() view failed: NumPy takes no
            # dimension past intp's bytes)
            raise ValueError(f"Matrix shape ({rows}, {cols}) exceeds the largest {dt} array "
                             f"dimension, {np.iinfo(np.intp).max // dt.itemsize}")
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
        arr = _host_asarray("Matrix.from_numpy: the array", a)
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"Matrix.from_numpy needs a real numeric array, got dtype {arr.dtype}")
        if arr.ndim != 2:
            raise ValueError(f"Matrix.from_numpy needs a 2-D array, got shape {arr.shape}")
        # float64 by kind and size ('>f8' too); values float32 cannot hold are a ValueError
        dt = np.float64 if arr.dtype.kind == "f" and arr.dtype.itemsize == 8 else np.float32
        arr = _cast_finite("Matrix.from_numpy: the array", arr, dt)
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
            # Values float32 cannot hold would become Inf (and a C cast beyond its range is
            # undefined). The bound is where rounding reaches Inf: FLT_MAX + half an ulp.
            if isfinite(v) and fabs(v) >= 3.4028235677973366e38:
                raise ValueError(f"Matrix.set: {v!r} is beyond the float32 range of this Matrix "
                                 "(use a float64 Matrix)")
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
            if copy is False:  # (NumPy 2's protocol: a conversion cannot be a view)
                raise ValueError(f"Matrix.__array__: a {a.dtype} Matrix as {np.dtype(dtype)} "
                                 f"needs a copy, and copy=False was given")
            return a.astype(dtype)
        return a.copy() if copy else a

    def __reduce__(self):
        # Owned, aligned native memory cannot be shared by a copy: copy.copy, copy.deepcopy and
        # pickle all carry the values and rebuild a new Matrix of the same shape and dtype.
        return (_matrix_from_numpy, (self.numpy().copy(),))

    def __repr__(self):
        return f"Matrix({self.rows}, {self.cols}, dtype={self.dtype.name})"


def _matrix_from_numpy(a):
    """Matrix.from_numpy for unpickling (a module-level name pickle can find)."""
    return Matrix.from_numpy(a)


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

_NO_CACHE = "backward needs a preceding forward in training mode (train()); none is cached"

# pyrnn::Recurrent<T>::forward/backward take raw pointers and no sizes: they trust the buffers
# to match the layer's config and (backward) the cached forward's T and N. These checks are the
# guard: every buffer is checked, on the memoryview whose pointer is passed, against the native
# object's own config, so no slip on the Python side can hand the C++ a wrong-sized buffer.

cdef int _expect(str name, str dims, const real[:, :, ::1] a, Py_ssize_t d0, Py_ssize_t d1,
                 Py_ssize_t d2) except -1:
    if a is None:
        return 0
    if a.shape[0] != d0 or a.shape[1] != d1 or a.shape[2] != d2:
        raise ValueError(f"{name} must have shape {dims} = ({d0}, {d1}, {d2}) for this layer, "
                         f"got ({a.shape[0]}, {a.shape[1]}, {a.shape[2]})")
    return 0

cdef int _expect_seq(str name, str width, const real[:, :, ::1] a, bint batch_first, Py_ssize_t T,
                     Py_ssize_t N, Py_ssize_t W, str of="") except -1:
    """A sequence buffer: (T, N, W), or (N, T, W) for a batch_first layer."""
    if batch_first:
        return _expect(name, f"(N, T, {width}){of} (batch_first)", a, N, T, W)
    return _expect(name, f"(T, N, {width}){of}", a, T, N, W)

cdef int _cell_state(bint lstm, str call, str out_name, const real[:, :, ::1] out, str in_name,
                     const real[:, :, ::1] inp, Py_ssize_t LD, Py_ssize_t N,
                     Py_ssize_t H) except -1:
    """The LSTM's cell-state pair of a pass (forward: c_n out, c0 in; backward: dc0 out, dcn
    in): the output required and both sized [L*D, N, H]; neither for the other cells."""
    if lstm:
        if out is None:
            raise ValueError(f"an LSTM's {call} needs a {out_name} buffer")
        _expect(out_name, "(L*D, N, H)", out, LD, N, H)
        _expect(in_name, "(L*D, N, H)", inp, LD, N, H)
    elif out is not None or inp is not None:
        raise ValueError(f"{' / '.join(sorted((in_name, out_name)))} are for an LSTM; this "
                         "layer has no cell state")
    return 0

cdef _check_extents(Py_ssize_t T, Py_ssize_t N, Py_ssize_t C, bint batch_first=False):
    # (the shape in the layer's own order: (N, T, C) with batch_first)
    shape = f"({N}, {T}, {C})" if batch_first else f"({T}, {N}, {C})"
    if T < 1 or N < 1 or T > 2**31 - 1 or N > 2**31 - 1:  # the C++ takes them as int
        raise ValueError(f"x must have 1 <= T, N < 2**31, got shape {shape}")
    if T * N > 2**31 - 1:  # the rows of the input projection's GEMM
        raise ValueError(f"x of shape {shape} has T * N = {T * N} rows; at most "
                         f"2**31 - 1 (the input projection's 32-bit GEMM row count)")


cdef _forward(Recurrent[real]* net, real[:, :, ::1] y, real[:, :, ::1] hn, real[:, :, ::1] cn,
              const real[:, :, ::1] x, const real[:, :, ::1] h0, const real[:, :, ::1] c0,
              const int64_t[::1] lengths, bint training, uint64_t seed):
    cdef RecurrentConfig cfg = net.config()
    cdef bint lstm = cfg.cell == CellType.LSTM, bf = cfg.batch_first
    cdef Py_ssize_t T = x.shape[1] if bf else x.shape[0], N = x.shape[0] if bf else x.shape[1]
    cdef Py_ssize_t LD = cfg.num_layers * cfg.directions(), H = cfg.hidden_size
    _check_extents(T, N, x.shape[2], bf)
    _expect_seq("x", "C", x, bf, T, N, cfg.input_size)
    _expect_seq("y", "D*H", y, bf, T, N, cfg.directions() * H)
    _expect("hn", "(L*D, N, H)", hn, LD, N, H)
    _expect("h0", "(L*D, N, H)", h0, LD, N, H)
    _cell_state(lstm, "forward", "cn", cn, "c0", c0, LD, N, H)
    cdef const int64_t* lens_p = NULL
    if lengths is not None:
        if lengths.shape[0] != N:
            raise ValueError(f"lengths must have shape (N,) = ({N},), got ({lengths.shape[0]},)")
        lens_p = &lengths[0]
    cdef real* cn_p = _ptr(cn)
    cdef const real* h0_p = _cptr(h0)
    cdef const real* c0_p = _cptr(c0)
    cdef int steps = <int>T, batch = <int>N
    with nogil:
        net.forward(&y[0, 0, 0], &hn[0, 0, 0], cn_p, &x[0, 0, 0], h0_p, c0_p, lens_p,
                    steps, batch, training, seed)

cdef _backward(Recurrent[real]* net, real[:, :, ::1] dx, real[:, :, ::1] dh0, real[:, :, ::1] dc0,
               const real[:, :, ::1] dy, const real[:, :, ::1] dhn, const real[:, :, ::1] dcn):
    # The C++ reads T and N from its cache: the buffers are checked against those.
    if not net.has_cache():
        raise RuntimeError(_NO_CACHE)
    cdef RecurrentConfig cfg = net.config()
    cdef bint lstm = cfg.cell == CellType.LSTM
    cdef Py_ssize_t T = net.cached_steps(), N = net.cached_batch()
    cdef Py_ssize_t LD = cfg.num_layers * cfg.directions(), H = cfg.hidden_size
    cdef str of = " of the cached forward"
    _expect_seq("dy", "D*H", dy, cfg.batch_first, T, N, cfg.directions() * H, of)
    _expect_seq("dx", "C", dx, cfg.batch_first, T, N, cfg.input_size, of)
    _expect("dh0", "(L*D, N, H)", dh0, LD, N, H)
    _expect("dhn", "(L*D, N, H)", dhn, LD, N, H)
    _cell_state(lstm, "backward", "dc0", dc0, "dcn", dcn, LD, N, H)
    cdef real* dc0_p = _ptr(dc0)
    cdef const real* dhn_p = _cptr(dhn)
    cdef const real* dcn_p = _cptr(dcn)
    with nogil:
        net.backward(&dx[0, 0, 0], &dh0[0, 0, 0], dc0_p, &dy[0, 0, 0], dhn_p, dcn_p)


cdef _buffer(str name, a, dtype, int ndim, bint output=False, bint optional=False):
    """a, if it is what the checks above can size: an ndarray of dtype, ndim dimensions,
    C-contiguous, writable if an output (clear messages here, where a typed memoryview would
    name none of it). None only if optional."""
    if a is None:
        if optional:
            return None
        raise TypeError(f"{name} must be a numpy.ndarray, got None")
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if output and not a.flags.writeable:
        raise ValueError(f"{name} is an output and must be writable")
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    return a


cdef _disjoint(outputs, inputs):
    """ValueError if an output shares memory with another output or an input (pairs (name,
    array or None)): the C++ reads inputs while it writes outputs, in no promised order.
    The arrays are C-contiguous, so overlapping bounds are overlapping memory."""
    for i, (name, out) in enumerate(outputs):
        if out is None:
            continue
        for other, a in outputs[i + 1:] + inputs:
            if a is not None and np.may_share_memory(out, a):
                raise ValueError(f"{name} shares memory with {other}: outputs must not overlap "
                                 "the inputs or each other")


cdef class NativeRecurrent:
    """Owns a pyrnn::Recurrent<float|double>. pyrnn.recurrent validates and converts the
    arguments (messages in the user's terms); this layer checks again that each buffer is an
    ndarray of the layer dtype, C-contiguous and sized for the native config, because the C++
    takes raw pointers (see _forward). Not picklable itself: the layers pickle host copies."""
    cdef Recurrent[float]* f32
    cdef Recurrent[double]* f64
    cdef RecurrentConfig cfg
    # The busy flag (see _claim): a pass running, and the holds not released, of one thread
    cdef bint computing  # a forward / backward / zero_grad / reset_parameters runs
    cdef list holds  # hold()s not released: weakrefs to their tokens (None: a bare hold)
    cdef long busy_pid  # the process and thread they are of
    cdef unsigned long busy_tid
    cdef readonly object dtype

    def __cinit__(self, str cell, int input_size, int hidden_size, int num_layers, bint bias,
                  bint bidirectional, bint reset_after, double dropout, dtype,
                  bint batch_first=False):
        if cell not in _CELLS:
            raise ValueError(f"unknown cell {cell!r}")
        self.holds = []
        self.cfg.cell = <CellType><int>_CELLS[cell]
        self.cfg.input_size = input_size
        self.cfg.hidden_size = hidden_size
        self.cfg.num_layers = num_layers
        self.cfg.bias = bias
        self.cfg.bidirectional = bidirectional
        self.cfg.reset_after = reset_after
        self.cfg.dropout = dropout
        self.cfg.batch_first = batch_first
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

    def __reduce__(self):
        raise TypeError("NativeRecurrent cannot be pickled or copied by itself; copy or pickle "
                        "the layer that owns it (pyrnn.RNN / LSTM / GRU), which carries host "
                        "copies of its parameters and gradients")

    @property
    def batch_first(self):
        """Whether x, y, dx and dy are [N, T, .] (read in place) instead of [T, N, .]."""
        return self.cfg.batch_first

    def num_parameters(self):
        return self.f32.num_parameters() if self.f32 else self.f64.num_parameters()

    def reset_parameters(self, uint64_t seed):
        cdef bint was = self._claim(True)
        try:
            if self.f32:
                self.f32.reset_parameters(seed)
            else:
                self.f64.reset_parameters(seed)
        finally:
            self.computing = was  # (False, unless a pass of this thread's own ran)

    def zero_grad(self):
        # Refused while another thread runs backward (it accumulates into the same memory).
        cdef bint was = self._claim(True)
        try:
            if self.f32:
                self.f32.zero_grad()
            else:
                self.f64.zero_grad()
        finally:
            self.computing = was  # (False, unless a pass of this thread's own ran)

    def hold(self, token=None):
        """Marks the layer busy, as its passes do, until release(token): an optimizer writing
        its parameters or gradients. RuntimeError while another thread runs or holds it; this
        thread may hold it again (nested blocks) and run it meanwhile (an optimizer step
        calling the layer, as SAM does). token: an object (weakly referable) living as long as
        the holding block: the hold ends with it (an exception from a signal handler that
        skipped the release left the layer held for good)."""
        ref = None if token is None else weakref.ref(token)  # (first: a refusal sets nothing)
        self._claim(False)
        self.holds.append(ref)

    def release(self, token=None):
        """Ends this thread's hold of `token` (None: a bare hold)."""
        cdef Py_ssize_t i
        holds = self.holds
        for i in range(len(holds) - 1, -1, -1):
            ref = holds[i]
            if (ref is None) if token is None else (ref is not None and ref() is token):
                del holds[i]
                return

    def check_free(self):
        """RuntimeError when another thread runs or holds the layer; nothing changes."""
        self._claim(False, False)

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
            out[p.name.decode()] = _view(self, base, p.rows, p.cols, self.f64 != NULL,
                                         p.cols == 0)  # cols 0: a vector (ParamInfo)
        return out

    cdef int _claim(self, bint compute, bint take=True) except -1:
        """One layer holds one forward cache: its use from two threads at once is refused. A
        pass (compute) takes the flag for its own duration, whatever holds this thread has; a
        hold adds its token (hold()). Free: a fork()ed child's layer (the busy thread was the
        parent's), and a hold whose token is gone. No Python runs between the check and the
        set (the GIL: atomic)."""
        cdef long pid = getpid()
        cdef unsigned long tid = PyThread_get_thread_ident()
        if self.busy_pid != pid:
            self.computing = False
            self.holds = []
        elif self.holds:
            self.holds = [r for r in self.holds if r is None or r() is not None]
        if (self.computing or self.holds) and self.busy_tid != tid:
            raise RuntimeError("this layer is already running forward/backward in another "
                               "thread; use one layer per thread")
        cdef int nested = self.computing  # (of this thread: another's was refused above)
        if take:
            self.busy_pid = pid
            self.busy_tid = tid
            if compute:
                self.computing = True
        return nested

    def forward(self, x, h0, c0, lengths, bint training, uint64_t seed):
        """x [T, N, C] ([N, T, C] batch_first); h0/c0 [L*D, N, H] or None; lengths int64 [N] or
        None -> (y [T, N, D*H] or [N, T, D*H], hn, cn or None). Every size is checked against
        the native config (ValueError): see _forward."""
        x = _buffer("x", x, self.dtype, 3)
        bf = self.cfg.batch_first
        T, N = (x.shape[1], x.shape[0]) if bf else (x.shape[0], x.shape[1])
        self.check_forward(T, N, training)  # before the outputs are allocated
        L, D, H = self.cfg.num_layers, self.cfg.directions(), self.cfg.hidden_size
        y = np.empty((N, T, D * H) if bf else (T, N, D * H), self.dtype)
        hn = np.empty((L * D, N, H), self.dtype)
        cn = np.empty((L * D, N, H), self.dtype) if self.cfg.cell == CellType.LSTM else None
        self.forward_into(y, hn, cn, x, h0, c0, lengths, training, seed)
        return y, hn, cn

    def check_forward(self, Py_ssize_t T, Py_ssize_t N, bint training, extra_elements=None):
        """What forward checks of the sizes of a (T, N, C) input, before anything is converted
        or allocated: ValueError beyond the int extents, MemoryError when the buffers that
        forward would allocate (eval: no cache), with its outputs y, hn (and cn) and
        `extra_elements` more of the layer's dtype (the caller's copies), exceed pyrnn's
        memory limit."""
        _check_extents(T, N, self.cfg.input_size, self.cfg.batch_first)
        cdef double L = self.cfg.num_layers, D = self.cfg.directions(), H = self.cfg.hidden_size
        cdef double outputs = T * N * D * H + L * D * N * H * (
            2 if self.cfg.cell == CellType.LSTM else 1)
        cdef double extra = (outputs + float(extra_elements or 0)) * self.dtype.itemsize
        if self.f32:
            self.f32.check_forward(<int>T, <int>N, training, extra)
        else:
            self.f64.check_forward(<int>T, <int>N, training, extra)

    def forward_into(self, y, hn, cn, x, h0, c0, lengths, bint training, uint64_t seed):
        """forward() into given outputs: y [T, N, D*H] ([N, T, D*H] batch_first), hn/cn
        [L*D, N, H] (cn: LSTM only)."""
        y = _buffer("y", y, self.dtype, 3, True)
        hn = _buffer("hn", hn, self.dtype, 3, True)
        cn = _buffer("cn", cn, self.dtype, 3, True, True)
        x = _buffer("x", x, self.dtype, 3)
        h0 = _buffer("h0", h0, self.dtype, 3, False, True)
        c0 = _buffer("c0", c0, self.dtype, 3, False, True)
        lengths = _buffer("lengths", lengths, np.dtype(np.int64), 1, False, True)
        _disjoint([("y", y), ("hn", hn), ("cn", cn)],
                  [("x", x), ("h0", h0), ("c0", c0), ("lengths", lengths)])
        cdef bint was = self._claim(True)
        try:
            if self.f32:
                _forward[float](self.f32, y, hn, cn, x, h0, c0, lengths, training, seed)
            else:
                _forward[double](self.f64, y, hn, cn, x, h0, c0, lengths, training, seed)
        finally:
            self.computing = was  # (False, unless a pass of this thread's own ran)

    def backward(self, dy, dhn, dcn):
        """dy [T, N, D*H] ([N, T, D*H] batch_first); dhn/dcn [L*D, N, H] or None -> (dx, dh0,
        dc0 or None). T and N are the cached forward's; every size is checked against them and
        the config (ValueError)."""
        if not self.has_cache():  # before sizing outputs by a stale (eval) forward's T, N
            raise RuntimeError(_NO_CACHE)
        T, N = self.cached_shape()
        L, D, H = self.cfg.num_layers, self.cfg.directions(), self.cfg.hidden_size
        C = self.cfg.input_size
        dx = np.empty((N, T, C) if self.cfg.batch_first else (T, N, C), self.dtype)
        dh0 = np.empty((L * D, N, H), self.dtype)
        dc0 = np.empty((L * D, N, H), self.dtype) if self.cfg.cell == CellType.LSTM else None
        self.backward_into(dx, dh0, dc0, dy, dhn, dcn)
        return dx, dh0, dc0

    def backward_into(self, dx, dh0, dc0, dy, dhn, dcn):
        """backward() into given outputs: dx [T, N, C] ([N, T, C] batch_first), dh0/dc0
        [L*D, N, H] (dc0: LSTM only).
        The sizes are checked against the cache inside the busy window, where no forward in
        another thread can change it (one that ran since backward() sized its outputs makes
        this a ValueError, never a wrong-sized write)."""
        dx = _buffer("dx", dx, self.dtype, 3, True)
        dh0 = _buffer("dh0", dh0, self.dtype, 3, True)
        dc0 = _buffer("dc0", dc0, self.dtype, 3, True, True)
        dy = _buffer("dy", dy, self.dtype, 3)
        dhn = _buffer("dhn", dhn, self.dtype, 3, False, True)
        dcn = _buffer("dcn", dcn, self.dtype, 3, False, True)
        _disjoint([("dx", dx), ("dh0", dh0), ("dc0", dc0)], [("dy", dy), ("dhn", dhn), ("dcn", dcn)])
        cdef bint was = self._claim(True)
        try:
            if self.f32:
                _backward[float](self.f32, dx, dh0, dc0, dy, dhn, dcn)
            else:
                _backward[double](self.f64, dx, dh0, dc0, dy, dhn, dcn)
        finally:
            self.computing = was  # (False, unless a pass of this thread's own ran)
