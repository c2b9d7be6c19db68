# cython: language_level=3
"""CUDA backend of pyrnn (loaded lazily by pyrnn.cuda): device queries, DeviceArray (with
__cuda_array_interface__ v3 and DLPack), and NativeRecurrentCUDA, the twin of
pyrnn._core.NativeRecurrent over device memory."""
from cpython.pycapsule cimport (PyCapsule_GetPointer, PyCapsule_IsValid, PyCapsule_New,
                                PyCapsule_SetName)
from cpython.pythread cimport PyThread_get_thread_ident
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.stddef cimport size_t
from libcpp.vector cimport vector

import math
import numbers
import operator

import weakref

import numpy as np

from pyrnn cimport ccuda, cruntime
from pyrnn.ccuda cimport Context, DeviceBuffer, Recurrent as CudaRecurrent, cudaStream_t
from pyrnn.crecurrent cimport CellType, ParamInfo, RecurrentConfig

from pyrnn._validate import cast_finite as _cast_finite, check_allocation as _check_allocation
from pyrnn._device import (SUPPORTED_DTYPES, is_device_array, kDLCPU, kDLCUDA, kDLCUDAManaged,
                           parse_cuda_array_interface)

cdef extern from "Python.h":
    int Py_IsInitialized() nogil


def _use_runtime_state(capsule):
    """Adopt pyrnn._core's runtime settings (its _runtime_state()), before any call."""
    cruntime.use_runtime_state(PyCapsule_GetPointer(capsule, b"pyrnn.runtime_state"))


def device_count():
    return ccuda.device_count()

def unavailable_reason():
    r = ccuda.unavailable_reason().decode()
    return r or None

def device_name(int device):
    return ccuda.device_name(device).decode()

def synchronize():
    with nogil:
        ccuda.synchronize()

def runtime_version():
    return ccuda.runtime_version()

def driver_version():
    return ccuda.driver_version()


def _require_device():
    if ccuda.device_count() == 0:
        raise RuntimeError(f"no usable CUDA device: {unavailable_reason()}")


def context_stream(int device=0):
    """The pyrnn Context's stream handle on `device`, as an int (what pyrnn's kernels run on)."""
    _require_device()
    return <uintptr_t>Context.get(device).stream()


def stream_synchronize(stream, int device=-1):
    """Wait for a CUDA stream given as an int handle (1: legacy default, 2: per-thread). Handles
    1 and 2 name the current device's default stream: `device` >= 0 is made current for the
    wait (the caller's current device is restored)."""
    cdef uintptr_t s = stream
    with nogil:
        ccuda.synchronize_stream(<cudaStream_t>s, device)


# ---- DLPack (dlpack.h): ABI 0 "dltensor" and ABI 1 "dltensor_versioned" capsules ---------------

cdef struct DLDevice:
    int32_t device_type
    int32_t device_id

cdef struct DLDataType:
    uint8_t code
    uint8_t bits
    uint16_t lanes

cdef struct DLTensor:
    void* data
    DLDevice device
    int32_t ndim
    DLDataType dtype
    int64_t* shape
    int64_t* strides
    uint64_t byte_offset

cdef struct DLManagedTensor:
    DLTensor dl_tensor
    void* manager_ctx
    void (*deleter)(DLManagedTensor*) noexcept

cdef struct DLPackVersion:
    uint32_t major
    uint32_t minor

# ABI 1: a version first (what a consumer may read before anything else), and flags.
cdef struct DLManagedTensorVersioned:
    DLPackVersion version
    void* manager_ctx
    void (*deleter)(DLManagedTensorVersioned*) noexcept
    uint64_t flags
    DLTensor dl_tensor

cdef enum:
    kDLInt = 0
    kDLFloat = 2
    DLPACK_FLAG_BITMASK_READ_ONLY = 1
    DLPACK_FLAG_BITMASK_IS_COPIED = 2


# Exported tensors: manager_ctx holds a reference to the exported DeviceArray (keeps its memory
# alive); shape and strides share one allocation. One release for both ABIs' structs.
cdef void _release_owner(void* manager_ctx) noexcept with gil:
    Py_DECREF(<object>manager_ctx)


cdef void _release_export(void* tensor, void* manager_ctx, int64_t* dims) noexcept nogil:
    # A consumer may release the tensor after Python has shut down (one kept in a C++ static):
    # the DLPack spec's deleter then leaks the array, as NumPy's does; taking the GIL would crash.
    if manager_ctx != NULL and Py_IsInitialized():
        _release_owner(manager_ctx)
    free(dims)
    free(tensor)


cdef void _export_deleter(DLManagedTensor* t) noexcept:
    if t != NULL:
        _release_export(t, t.manager_ctx, t.dl_tensor.shape)


cdef void _export_deleter_versioned(DLManagedTensorVersioned* t) noexcept:
    if t != NULL:
        _release_export(t, t.manager_ctx, t.dl_tensor.shape)


cdef void _capsule_destructor(object capsule) noexcept:
    # An exported capsule nobody consumed (its name unchanged): we still own the tensor.
    cdef DLManagedTensor* t
    cdef DLManagedTensorVersioned* tv
    if PyCapsule_IsValid(capsule, b"dltensor"):
        t = <DLManagedTensor*>PyCapsule_GetPointer(capsule, b"dltensor")
        if t != NULL and t.deleter != NULL:
            t.deleter(t)
    elif PyCapsule_IsValid(capsule, b"dltensor_versioned"):
        tv = <DLManagedTensorVersioned*>PyCapsule_GetPointer(capsule, b"dltensor_versioned")
        if tv != NULL and tv.deleter != NULL:
            tv.deleter(tv)


cdef class _DLPackOwner:
    """Keeps an imported DLPack tensor (ABI 0 or 1) alive; calls its deleter when collected."""
    cdef DLManagedTensor* tensor
    cdef DLManagedTensorVersioned* tensor_versioned
    cdef object producer

    def __dealloc__(self):
        if self.tensor != NULL and self.tensor.deleter != NULL:
            self.tensor.deleter(self.tensor)
        if self.tensor_versioned != NULL and self.tensor_versioned.deleter != NULL:
            self.tensor_versioned.deleter(self.tensor_versioned)
        self.tensor = NULL
        self.tensor_versioned = NULL


# Live _Allocation objects (count, bytes): what DeviceArrays pyrnn allocated still hold. Read
# by _live_allocations() so tests and the sanitizer workload can tell a leaked array from memory
# that is only freed at exit. Changed under the GIL only.
cdef size_t _n_live = 0
cdef size_t _bytes_live = 0


def _live_allocations():
    """(count, bytes) of device allocations owned by live DeviceArrays (not layers' buffers)."""
    return _n_live, _bytes_live


cdef class _Allocation:
    """Owns one DeviceBuffer of bytes."""
    cdef DeviceBuffer[unsigned char]* buf
    cdef size_t nbytes
    cdef readonly int device

    def __cinit__(self, size_t nbytes, int device):
        global _n_live, _bytes_live
        _require_device()
        self.device = device
        Context.get(device)  # validates the index
        self.nbytes = nbytes if nbytes else 1
        self.buf = ccuda.new_device_bytes(self.nbytes, device)
        _n_live += 1
        _bytes_live += self.nbytes

    def __dealloc__(self):
        global _n_live, _bytes_live
        if self.buf != NULL:
            _n_live -= 1
            _bytes_live -= self.nbytes
        del self.buf

    cdef uintptr_t ptr(self):
        return <uintptr_t>self.buf.data()


def _dtype_of(dtype):
    # None is the default float32, as for the layers and torch (np.dtype(None) is float64).
    dt = np.dtype(np.float32 if dtype is None else dtype)
    if dt not in SUPPORTED_DTYPES:
        raise TypeError(f"DeviceArray dtype must be float32, float64 or int64, got {dt}")
    return dt


def _host_c(array, dtype):
    """A C-contiguous host ndarray of `array` (converted to dtype if given): 0-d stays 0-d,
    where np.ascontiguousarray makes it (1,). Narrowing that would turn a finite value into Inf
    is a ValueError, as on the CPU (pyrnn._validate.cast_finite)."""
    a = np.asarray(array)
    if dtype is None and not a.dtype.isnative:
        dtype = a.dtype.newbyteorder("=")  # big-endian data is still float64 data
    if dtype is not None:
        if np.dtype(dtype).kind in "iu" and a.dtype.kind in "fc" and a.size and \
                not np.isfinite(a).all():
            # numpy casts NaN / Inf to INT64_MIN with only a warning
            raise ValueError(f"the host data has NaN or Inf values, which {np.dtype(dtype)} "
                             "cannot hold")
        if np.dtype(dtype).kind in "iu" and a.dtype.kind in "fciu" and a.size and \
                a.dtype != np.dtype(dtype):
            # Finite floats past its range became INT64_MIN (a warning only), uint64 past
            # 2**63 wrapped around (none): refused, as float32 overflow is.
            info = np.iinfo(np.dtype(dtype))
            lo, hi = (a.real.min(), a.real.max()) if a.dtype.kind == "c" else (a.min(), a.max())
            if a.dtype.kind in "fc":
                # float(info.max) rounds up to 2**63, itself out of range
                bad = lo < float(info.min) or hi >= float(info.max)
            else:
                bad = int(lo) < info.min or int(hi) > info.max
            if bad:
                raise ValueError(f"the host data has values beyond the {np.dtype(dtype)} range "
                                 f"(from {lo!r} to {hi!r}); it holds {info.min} to {info.max}")
        a = _cast_finite("the host data", a, dtype)
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def _extents(shape):
    """Integer extents, as NumPy takes them: a float (2.5) is a TypeError, never truncated."""
    try:
        return [operator.index(s) for s in shape]
    except TypeError:
        raise TypeError(f"DeviceArray extents must be integers, got {shape!r}") from None


def _shape_of(shape):
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    shape = tuple(_extents(shape))
    if any(s < 0 for s in shape):
        raise ValueError(f"negative extent in shape {shape}")
    # Python ints (np.prod wraps: (2**62, 4) gave 0, a 1-byte allocation the kernels would then
    # overrun); 8 bytes is the widest element.
    if math.prod(shape) * 8 > 2**63 - 1:
        raise ValueError(f"DeviceArray shape {shape} is larger than any address space")
    return shape


cdef class DeviceArray:
    """A C-contiguous array in CUDA device memory: owning (allocated by pyrnn) or borrowed (a
    view of another object's memory, which it keeps alive). Exposes
    ``__cuda_array_interface__`` (v3) and ``__dlpack__`` / ``__dlpack_device__``, so CuPy,
    PyTorch, Numba and JAX read it zero-copy. ``numpy()`` copies to the host."""
    cdef readonly uintptr_t ptr
    cdef readonly tuple shape
    cdef readonly object dtype
    cdef readonly int device
    cdef readonly bint readonly
    cdef object _owner

    def __init__(self, *args, **kwargs):
        raise TypeError("use DeviceArray.empty / zeros / from_numpy, or pyrnn.cuda.as_device_array")

    @staticmethod
    cdef DeviceArray _make(uintptr_t ptr, tuple shape, object dtype, int device, bint readonly,
                           object owner):
        cdef DeviceArray a = DeviceArray.__new__(DeviceArray)
        a.ptr = ptr
        a.shape = shape
        a.dtype = dtype
        a.device = device
        a.readonly = readonly
        a._owner = owner
        return a

    @staticmethod
    def empty(shape, dtype="float32", int device=0):
        """Uninitialised device memory (owning)."""
        shape = _shape_of(shape)
        dt = _dtype_of(dtype)
        nbytes = math.prod(shape) * dt.itemsize  # math.prod(()) == 1: a scalar
        cdef _Allocation alloc = _Allocation(nbytes, device)
        return DeviceArray._make(alloc.ptr(), shape, dt, device, False, alloc)

    @staticmethod
    def zeros(shape, dtype="float32", int device=0):
        a = DeviceArray.empty(shape, dtype, device)
        a.copy_from(np.zeros(a.shape, a.dtype))
        return a

    @staticmethod
    def from_numpy(array, dtype=None, int device=0):
        """An owning device copy of a host array (converted to dtype if given)."""
        host = _host_c(array, dtype)
        a = DeviceArray.empty(host.shape, host.dtype, device)
        a.copy_from(host)
        return a

    @staticmethod
    def borrow(ptr, shape, dtype, owner, bint readonly=False, int device=-1):
        """A view of existing device memory at ptr; `owner` is kept alive while the view lives."""
        if isinstance(ptr, (bool, np.bool_)) or not isinstance(ptr, numbers.Integral):
            raise TypeError(f"DeviceArray.borrow: the pointer must be an int, got {ptr!r}")
        if not 0 <= ptr < 2**64:  # (a negative one was a bare OverflowError)
            raise ValueError(f"DeviceArray.borrow: pointer {int(ptr)} is not an address "
                             "(0 to 2**64 - 1)")
        cdef uintptr_t addr = ptr
        shape = _shape_of(shape)
        dt = _dtype_of(dtype)
        if addr == 0 and math.prod(shape):
            # (the recurrent layers took a null h0 for "no h0": zeros, silently; a kernel
            # would fault on it) As the CUDA array interface and DLPack imports refuse it.
            raise ValueError(f"DeviceArray.borrow: a null pointer for {math.prod(shape)} "
                             f"elements (shape {shape}); only an empty array may have none")
        _check_aligned(addr, dt, "DeviceArray.borrow")
        # (no device at all: the host-side tests borrow fake pointers, never dereferenced)
        if device >= 0 and 0 < ccuda.device_count() <= device:
            raise ValueError(f"DeviceArray.borrow: CUDA device {device} out of range "
                             f"({ccuda.device_count()} devices)")
        if device < 0:
            device = ccuda.pointer_device(<void*>addr) if addr else 0
            if device < 0:
                if addr and ccuda.device_count() > 0:
                    # Host or unknown memory: on a GPU with HMM the kernels would silently read
                    # and write the host heap through it, elsewhere fault (a sticky error).
                    raise TypeError(f"DeviceArray.borrow: pointer {addr:#x} is not CUDA device "
                                    f"or managed memory (shape {shape}); pass device= only for "
                                    "memory known to be on that device")
                device = 0
        return DeviceArray._make(addr, shape, dt, device, readonly, owner)

    # ---- basic properties ------------------------------------------------------------------
    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return math.prod(self.shape)

    @property
    def nbytes(self):
        return self.size * self.dtype.itemsize

    @property
    def owner(self):
        """What keeps the memory alive (a pyrnn allocation, a layer, or the producer)."""
        return self._owner

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d DeviceArray")
        return self.shape[0]

    def __reduce__(self):
        # Memory pyrnn allocated (a copy, optimizer state, EarlyStopping's weights) pickles as
        # its values, uploaded again on unpickle to the same device index, as CuPy's arrays do
        # (Cython's generated pickling would carry the raw pointer). A view of memory pyrnn
        # does not own (a layer's parameter, an imported tensor) is refused: unpickled, it
        # would silently stop being a view.
        if not self._owns_memory():
            raise TypeError("a DeviceArray viewing memory pyrnn does not own (a layer's "
                            "parameter, an imported tensor) cannot be pickled; use .numpy() for "
                            "a host copy, or copy.copy / copy.deepcopy / .copy() for a device "
                            "copy")
        return (_unpickle_device_array, (self.numpy(), self.device, self.readonly))

    cdef bint _owns_memory(self):
        """Whether the memory is pyrnn's own allocation (directly or through views of it)."""
        o = self._owner
        while isinstance(o, DeviceArray):
            o = (<DeviceArray>o)._owner
        return isinstance(o, _Allocation)

    def __copy__(self):
        # As ndarray's: a new owning (writable) array with the same contents, so optimizers,
        # callbacks and Parameters holding device state copy as their host versions do.
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def __repr__(self):
        return (f"DeviceArray(shape={self.shape}, dtype={self.dtype.name}, device=cuda:{self.device}"
                f"{', readonly' if self.readonly else ''})")

    def reshape(self, *shape):
        """A view with another shape of the same number of elements (always possible: C order)."""
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = shape[0]
        shape = _extents(shape)
        if shape.count(-1) == 1:
            known = math.prod(s for s in shape if s != -1)
            if not known:
                # As NumPy: -1 beside a 0 extent could be any value.
                raise ValueError(f"cannot reshape DeviceArray of shape {self.shape} into "
                                 f"{tuple(shape)}: the -1 is ambiguous beside a 0 extent")
            shape[shape.index(-1)] = self.size // known
        shape = _shape_of(shape)
        if math.prod(shape) != self.size:
            raise ValueError(f"cannot reshape DeviceArray of shape {self.shape} into {shape}")
        # The owner: this array, or the array this one views (as NumPy's base), so that
        # x = x.reshape(...) in a loop makes no chain of views (a million of them crashed on
        # release, recursively).
        base = self._owner if isinstance(self._owner, DeviceArray) else self
        return DeviceArray._make(self.ptr, shape, self.dtype, self.device, self.readonly, base)

    def permute01(self):
        """A new owning array with the first two axes swapped ((A, B, ...) -> (B, A, ...))."""
        if self.ndim < 2:
            raise ValueError(f"permute01 needs at least 2 dimensions, got shape {self.shape}")
        A, B = self.shape[0], self.shape[1]
        C = self.size // (A * B) if A * B else 0
        # Typed, so that out.ptr is the address it holds (untyped, <void*>out.ptr would be the
        # address of the Python int object: a host pointer the kernel would write through).
        cdef DeviceArray out = DeviceArray.empty((B, A) + self.shape[2:], self.dtype, self.device)
        cdef size_t a = A, b = B, c = C, es = self.dtype.itemsize
        cdef void* dst = <void*>out.ptr
        cdef const void* src = <const void*>self.ptr
        cdef int dev = self.device
        if a * b * c:
            with nogil:
                ccuda.permute01(dst, src, a, b, c, es, dev)
        return out

    def copy(self):
        cdef DeviceArray out = DeviceArray.empty(self.shape, self.dtype, self.device)
        cdef size_t n = self.nbytes
        cdef void* dst = <void*>out.ptr
        cdef const void* src = <const void*>self.ptr
        cdef int dev = self.device
        if n:
            with nogil:  # on the array's device, whatever the caller's current one is
                ccuda.copy_bytes(dst, src, n, NULL, dev)
        return out

    # ---- host transfers --------------------------------------------------------------------
    def numpy(self):
        """A host copy as an ndarray (its size checked first, as every host allocation of
        pyrnn's: PYRNN_MEMORY_LIMIT)."""
        cdef size_t n = self.nbytes
        if n:
            _check_allocation(n, f"a host copy of a DeviceArray of shape {self.shape}, "
                                 f"{self.dtype}")
        host = np.empty(self.shape, self.dtype)
        cdef uintptr_t dst = host.ctypes.data
        cdef const void* src = <const void*>self.ptr
        cdef int dev = self.device
        if n:
            with nogil:
                ccuda.copy_bytes(<void*>dst, src, n, NULL, dev)
        return host

    def __array__(self, dtype=None, copy=None):
        if copy is False:  # NumPy 2's contract: no view of device memory exists
            raise ValueError("a DeviceArray is in device memory: NumPy needs a copy "
                             "(np.asarray(a) or a.numpy(), not copy=False)")
        a = self.numpy()
        return a if dtype is None else a.astype(dtype, copy=False)

    def copy_from(self, host):
        """Overwrite the contents from a host array of the same shape (converted to dtype)."""
        if self.readonly:
            raise ValueError("DeviceArray is read-only")
        src_arr = _host_c(host, self.dtype)
        if src_arr.ndim == 0 and self.size == 1:
            src_arr = src_arr.reshape(self.shape)  # a scalar into one element, as before 0-d
        if src_arr.shape != self.shape:
            raise ValueError(f"copy_from: shape {src_arr.shape} does not match {self.shape}")
        cdef size_t n = self.nbytes
        cdef void* dst = <void*>self.ptr
        cdef uintptr_t src = src_arr.ctypes.data
        cdef int dev = self.device
        if n:
            with nogil:
                ccuda.copy_bytes(dst, <const void*>src, n, NULL, dev)

    # ---- interop ---------------------------------------------------------------------------
    @property
    def __cuda_array_interface__(self):
        # CAI v3: "For zero-size arrays, use 0 here."
        return {"shape": self.shape, "typestr": self.dtype.str,
                "data": (self.ptr if self.size else 0, self.readonly),
                "version": 3, "strides": None, "stream": None}

    def __dlpack_device__(self):
        return (kDLCUDA, self.device)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """A DLPack capsule: "dltensor_versioned" (ABI 1, with the read-only flag of a read-only
        array) when the consumer accepts version 1 (max_version >= (1, 0)), else "dltensor"
        (ABI 0, which has no flags: refused for a read-only array, as NumPy refuses it, unless
        copy=True). pyrnn's work is complete when its calls return, so no
        stream ordering is needed: any valid consumer stream is accepted (None, -1, 1, 2 or a
        handle; 0 is ambiguous and refused, as the array API says). dl_device=(kDLCPU, 0), what
        np.from_dlpack asks for, exports a host copy (refused with copy=False)."""
        cdef bint versioned = _dlpack_major(max_version) >= 1
        _check_consumer_stream(stream)
        if dl_device is not None:
            target = _dl_device(dl_device)
            if target == (kDLCPU, 0):
                if copy is False:
                    raise BufferError(f"DeviceArray lives on cuda:{self.device}; exporting it to "
                                      "the host needs a copy, and copy=False was given")
                return _host_capsule(self.numpy(), max_version, versioned)
            if target != (kDLCUDA, self.device):
                raise BufferError(f"DeviceArray lives on cuda:{self.device}; cannot export to "
                                  f"{target}")
        if self.readonly and not versioned and not copy:
            # ABI 0 cannot say read-only: the consumer would get memory it may write (NumPy
            # refuses the same export)
            raise BufferError("a read-only DeviceArray cannot be exported as DLPack 0.x, which "
                              "has no read-only flag: the consumer must accept version 1 "
                              "(max_version=(1, 0)), or ask for copy=True")
        if copy:
            c = self.copy()
            cap = c.__dlpack__(stream=stream, max_version=max_version)
            if versioned:
                (<DLManagedTensorVersioned*>PyCapsule_GetPointer(
                    cap, b"dltensor_versioned")).flags |= DLPACK_FLAG_BITMASK_IS_COPIED
            return cap
        cdef int nd = len(self.shape)
        cdef int64_t* dims = <int64_t*>malloc(sizeof(int64_t) * (2 * nd + 1))
        if dims == NULL:
            raise MemoryError()
        cdef int i
        cdef int64_t stride = 1
        for i in range(nd):
            dims[i] = self.shape[i]
        for i in range(nd - 1, -1, -1):
            dims[nd + i] = stride
            stride *= dims[i]
        cdef DLTensor dl
        # The DLPack spec: "If the array is of size zero, the data pointer ... NULL or 0".
        dl.data = <void*>self.ptr if self.size else NULL
        dl.device.device_type = kDLCUDA
        dl.device.device_id = self.device
        dl.ndim = nd
        dl.dtype.code = kDLInt if self.dtype.kind == "i" else kDLFloat
        dl.dtype.bits = self.dtype.itemsize * 8
        dl.dtype.lanes = 1
        dl.shape = dims
        dl.strides = dims + nd
        dl.byte_offset = 0
        # The ABI's struct; from here on only `tensor`, its manager_ctx slot and its name differ.
        cdef DLManagedTensor* t
        cdef DLManagedTensorVersioned* tv
        cdef void* tensor
        cdef void** ctx
        cdef const char* name
        if versioned:
            tv = <DLManagedTensorVersioned*>malloc(sizeof(DLManagedTensorVersioned))
            if tv == NULL:
                free(dims)
                raise MemoryError()
            tv.version.major = 1
            tv.version.minor = 0
            tv.flags = DLPACK_FLAG_BITMASK_READ_ONLY if self.readonly else 0
            tv.dl_tensor = dl
            tv.deleter = _export_deleter_versioned
            tensor, ctx, name = <void*>tv, &tv.manager_ctx, b"dltensor_versioned"
        else:
            t = <DLManagedTensor*>malloc(sizeof(DLManagedTensor))
            if t == NULL:
                free(dims)
                raise MemoryError()
            t.dl_tensor = dl
            t.deleter = _export_deleter
            tensor, ctx, name = <void*>t, &t.manager_ctx, b"dltensor"
        ctx[0] = NULL
        try:
            cap = PyCapsule_New(tensor, name, _capsule_destructor)
        except BaseException:
            _release_export(tensor, NULL, dims)
            raise
        # Only once the capsule exists: the reference is the capsule's (its deleter's) from here.
        Py_INCREF(self)
        ctx[0] = <void*>self
        return cap


def _check_consumer_stream(stream):
    """A __dlpack__ consumer stream for CUDA: None, -1 (no synchronization), 1 (legacy
    default), 2 (per-thread default) or a stream handle; 0 is ambiguous."""
    if stream is None:
        return
    if isinstance(stream, (bool, np.bool_)) or not isinstance(stream, numbers.Integral):
        raise TypeError(f"__dlpack__ stream must be None or an int, got {stream!r}")
    stream = int(stream)  # NumPy integers too (a handle kept in an int64 array was refused)
    if stream == 0 or stream < -1:
        raise ValueError(f"__dlpack__ stream {stream} is not a CUDA consumer stream (None, -1, "
                         "1, 2 or a stream handle; 0 is disallowed as ambiguous)")


def _dl_device(dl_device):
    """A __dlpack__ dl_device as a (device type, index) tuple of ints."""
    try:
        kind, index = dl_device
        return (operator.index(kind), operator.index(index))
    except (TypeError, ValueError):
        raise TypeError(f"dl_device must be None or a (device type, index) tuple of ints, got "
                        f"{dl_device!r}") from None


def _host_capsule(host, max_version, bint versioned):
    """A capsule of the host copy `host` (its NumPy export), flagged as a copy in ABI 1.
    NumPy before 2.1 takes no max_version: ABI 0 then, which a consumer must accept too."""
    if versioned:
        try:
            cap = host.__dlpack__(max_version=max_version)
        except TypeError:
            cap = host.__dlpack__()
        if PyCapsule_IsValid(cap, b"dltensor_versioned"):
            (<DLManagedTensorVersioned*>PyCapsule_GetPointer(
                cap, b"dltensor_versioned")).flags |= DLPACK_FLAG_BITMASK_IS_COPIED
        return cap
    return host.__dlpack__()


def _unpickle_device_array(host, int device, bint readonly):
    a = DeviceArray.from_numpy(host, device=device)
    return DeviceArray._make(a.ptr, a.shape, a.dtype, a.device, True, a) if readonly else a


def _dlpack_major(max_version):
    """The major of a __dlpack__ max_version (None: 0, the consumer predates ABI 1)."""
    if max_version is None:
        return 0
    try:
        major, minor = max_version
        operator.index(minor)
        return operator.index(major)
    except (TypeError, ValueError):
        raise TypeError(f"max_version must be None or a (major, minor) tuple of ints, got "
                        f"{max_version!r}") from None


def _from_capsule(capsule, producer):
    """DeviceArray over an unconsumed "dltensor" (ABI 0) or "dltensor_versioned" (ABI 1)
    capsule; takes ownership of the tensor. ABI 1's read-only flag makes a read-only array."""
    cdef DLManagedTensor* t
    cdef DLManagedTensorVersioned* tv
    cdef DLTensor* dl
    cdef bint readonly = False
    owner = _DLPackOwner()
    owner.producer = producer
    if PyCapsule_IsValid(capsule, b"dltensor_versioned"):
        tv = <DLManagedTensorVersioned*>PyCapsule_GetPointer(capsule, b"dltensor_versioned")
        # We own it now: its deleter runs in _DLPackOwner, whatever happens below.
        PyCapsule_SetName(capsule, b"used_dltensor_versioned")
        owner.tensor_versioned = tv
        if tv.version.major != 1:  # then only the version and the deleter may be read
            raise BufferError(f"DLPack tensor of ABI version {tv.version.major}."
                              f"{tv.version.minor}; pyrnn reads versions 0 and 1")
        dl = &tv.dl_tensor
        readonly = (tv.flags & DLPACK_FLAG_BITMASK_READ_ONLY) != 0
    elif PyCapsule_IsValid(capsule, b"dltensor"):
        t = <DLManagedTensor*>PyCapsule_GetPointer(capsule, b"dltensor")
        PyCapsule_SetName(capsule, b"used_dltensor")
        owner.tensor = t
        dl = &t.dl_tensor
    else:
        raise TypeError("__dlpack__ did not return an unconsumed 'dltensor' or "
                        "'dltensor_versioned' capsule")
    if dl.device.device_type not in (kDLCUDA, kDLCUDAManaged):
        raise TypeError(f"DLPack tensor is on device type {dl.device.device_type}, not CUDA "
                        f"({kDLCUDA}); pass host arrays as NumPy")
    if dl.dtype.lanes != 1:
        raise TypeError("vector (lanes > 1) DLPack dtypes are not supported")
    if dl.dtype.code == kDLFloat and dl.dtype.bits in (32, 64):
        dt = np.dtype(np.float32 if dl.dtype.bits == 32 else np.float64)
    elif dl.dtype.code == kDLInt and dl.dtype.bits == 64:
        dt = np.dtype(np.int64)
    else:
        raise TypeError(f"device arrays must be float32, float64 or int64, got DLPack dtype "
                        f"(code {dl.dtype.code}, bits {dl.dtype.bits})")
    if dl.ndim < 0 or (dl.ndim > 0 and dl.shape == NULL):
        raise ValueError(f"DLPack tensor has no valid shape (ndim {dl.ndim})")
    shape = tuple(dl.shape[i] for i in range(dl.ndim))
    if any(e < 0 for e in shape):
        raise ValueError(f"DLPack tensor shape {shape} has a negative extent")
    size = math.prod(shape)  # Python ints: no wrap-around
    if size * dt.itemsize > 2**63 - 1:
        raise ValueError(f"DLPack tensor shape {shape} of {dt} is larger than any address space")
    if dl.data == NULL and size > 0:
        raise ValueError(f"DLPack tensor data pointer is NULL for a non-empty array (shape "
                         f"{shape})")
    cdef int64_t expect = 1
    cdef int i
    if dl.strides != NULL and size > 0:  # an empty array has no layout: any strides are valid
        for i in range(dl.ndim - 1, -1, -1):
            if dl.shape[i] != 1 and dl.strides[i] != expect:
                raise ValueError(f"device arrays must be C-contiguous; got strides "
                                 f"{tuple(dl.strides[k] for k in range(dl.ndim))} (elements) for "
                                 f"shape {shape} (make a contiguous copy first)")
            expect *= dl.shape[i]
    cdef uintptr_t ptr = <uintptr_t>dl.data + dl.byte_offset
    _check_aligned(ptr, dt, "DLPack tensor")
    return DeviceArray._make(ptr, shape, dt, dl.device.device_id, readonly, owner)


def from_dlpack(obj, device=None):
    """Zero-copy DeviceArray over a CUDA array exporting __dlpack__ (kept alive while used).
    The producer's pending work on the array is complete when this returns (as for
    from_cuda_array_interface): pyrnn reads its inputs on more than one stream (its Context
    stream, and the legacy default stream for DeviceArray copies and permute01)."""
    if isinstance(obj, DeviceArray):
        return obj
    if not hasattr(obj, "__dlpack__"):
        raise TypeError(f"{type(obj).__name__} does not implement __dlpack__")
    kind = None
    dev = getattr(obj, "__dlpack_device__", None)
    if dev is not None:
        try:
            kind, index = (int(v) for v in dev())
        except Exception:
            kind = None
    if kind is not None and kind not in (kDLCUDA, kDLCUDAManaged):
        # Said before asking for a capsule: a host producer refuses a CUDA stream (NumPy:
        # "only supports stream=None") before it could tell us where its data lives.
        raise TypeError(f"DLPack tensor is on device type {kind}, not CUDA ({kDLCUDA}); pass "
                        f"host arrays as NumPy")
    if device is None:  # the array's own device, when it says
        device = index if kind is not None else 0
    cdef uintptr_t s = 0
    stream = None
    if ccuda.device_count() > 0:
        # The consumer stream: the producer orders its pending work before it (an event wait,
        # asynchronous). Only that stream is ordered, so it is synchronized below. It is the
        # Context's import stream, not its compute stream: another thread may be capturing
        # the compute stream into a CUDA graph (device_lock.cuh), and a wait queued or a
        # synchronize issued on it meanwhile would break that capture.
        s = <uintptr_t>Context.get(device).import_stream()
        stream = s
    capsule, ordered = _call_dlpack(obj, stream)
    arr = _from_capsule(capsule, obj)
    cdef int s_device
    if s and ordered:
        s_device = device  # the import stream's
        with nogil:
            ccuda.synchronize_stream(<cudaStream_t>s, s_device)
    elif s:
        # A producer that takes no stream ordered nothing: wait for all work on the device.
        _synchronize_device(arr.device)
    return arr


def _keyword_refused(TypeError e):
    # "__dlpack__() got an unexpected keyword argument 'max_version'" (or 'stream', whichever
    # Python meets first) and the like.
    msg = str(e)
    return "keyword" in msg and ("max_version" in msg or "stream" in msg)


def _call_dlpack(obj, stream):
    """obj.__dlpack__ asking for ABI 1 first (it carries the read-only flag); producers that
    predate max_version, or stream, are asked with fewer arguments. Any other TypeError is the
    producer's own and propagates. Returns (capsule, whether `stream` was passed)."""
    try:
        return obj.__dlpack__(stream=stream, max_version=(1, 0)), True
    except TypeError as e:
        if not _keyword_refused(e):
            raise
    try:
        return obj.__dlpack__(stream=stream), True
    except TypeError as e:
        if not _keyword_refused(e):
            raise
    return obj.__dlpack__(), False


def _check_aligned(uintptr_t ptr, dt, what):
    # Kernels and cuBLAS would fault on it (cudaErrorMisalignedAddress, which is sticky: the
    # process's CUDA context, torch's and CuPy's included, would be lost).
    if ptr % dt.itemsize:
        raise ValueError(f"{what} data pointer {ptr:#x} is not aligned to the {dt.itemsize}-byte "
                         f"elements of {dt} (copy the array first)")


def _synchronize_device(int device):
    with nogil:
        ccuda.synchronize_device(device)


def from_cuda_array_interface(obj):
    """Zero-copy DeviceArray over an object exposing __cuda_array_interface__ (kept alive).
    The producer's pending work on the array is complete when this returns: v3, the work on the
    stream it names (None: on the legacy default stream, where Numba's default work runs); v0-v2 (e.g. PyTorch's), which say nothing about streams, all work on the
    array's device. Either wait is on the ARRAY's device, whatever device is current."""
    if isinstance(obj, DeviceArray):
        return obj
    try:
        d = obj.__cuda_array_interface__
    except AttributeError:
        raise TypeError(f"{type(obj).__name__} has no __cuda_array_interface__: "
                        "pyrnn.cuda.as_device_array or from_dlpack take DLPack producers, "
                        "pyrnn.cuda.to_device copies host data") from None
    cai = parse_cuda_array_interface(d)
    cdef int device = -1
    cdef uintptr_t ptr = cai.ptr
    cdef bint gpu = ccuda.device_count() > 0
    if ptr and gpu:
        device = ccuda.pointer_device(<const void*>ptr)
        if device < 0:
            # Host or unknown memory: on a GPU with HMM the kernels would silently read and
            # write the host heap through it, elsewhere fault (a sticky error).
            raise TypeError(f"__cuda_array_interface__ data pointer {ptr:#x} is not CUDA device "
                            f"or managed memory (shape {cai.shape})")
    if gpu:
        if cai.stream == 2 or d.get("version", 0) < 3:
            # 2: the per-thread default stream of the PRODUCER's thread, which may not be this
            # one: all work on the device. v0-v2: likewise (pyrnn's stream does not synchronize
            # with the legacy default stream). Unknown device (-1): the current one.
            _synchronize_device(device)
        elif cai.stream is None:
            # v3's "no synchronization needed" assumes a consumer on the legacy default stream,
            # which waits for the producer's work there (Numba says None for its default
            # stream); pyrnn's stream is non-blocking, so it waits for that stream itself.
            stream_synchronize(1, device)
        else:
            # A handle, or 1: the legacy default stream of the array's device.
            stream_synchronize(cai.stream, device)
    return DeviceArray.borrow(cai.ptr, cai.shape, cai.dtype, obj, cai.readonly, device)


def as_device_array(obj):
    """DeviceArray view of a device array (DeviceArray, __cuda_array_interface__ or CUDA DLPack)."""
    if isinstance(obj, DeviceArray):
        return obj
    if not is_device_array(obj):
        raise TypeError(f"{type(obj).__name__} is not a CUDA device array (expected an object "
                        f"with __cuda_array_interface__ or a CUDA __dlpack__)")
    # DLPack first when offered: it orders the producer's pending work before pyrnn's stream.
    dev = getattr(obj, "__dlpack_device__", None)
    if hasattr(obj, "__dlpack__") and dev is not None:
        try:
            kind = int(dev()[0])
        except Exception:
            kind = None
        if kind in (kDLCUDA, kDLCUDAManaged):
            return from_dlpack(obj)
    return from_cuda_array_interface(obj)


# ---- execution options (cuda/include/pyrnn/cuda/options.h) ------------------------------------
# Python passes names: precision "float32" | "tf32"; algo "auto" | "cublas" | "fused" |
# "persistent"; graphs / streams True | False; persist_blocks int >= 0; "default" (or None in the
# setters' sense of "reset") follows the environment / built-in default.

cdef str _name(const char* s):
    return s.decode()


cdef object _switch_value(ccuda.Switch s):
    return {"on": True, "off": False}.get(_name(ccuda.switch_name(s)), "default")


cdef dict _options_dict(const ccuda.Options& o):
    return {"precision": _name(ccuda.precision_name(o.precision)),
            "algo": _name(ccuda.algo_name(o.algo)),
            "graphs": _switch_value(o.graphs), "streams": _switch_value(o.streams),
            "persist_blocks": o.persist_blocks if o.persist_blocks >= 0 else "default"}


cdef ccuda.Switch _switch_of(value, const char* what) except *:
    if isinstance(value, (bool, np.bool_)):
        return ccuda.Switch.On if value else ccuda.Switch.Off
    if isinstance(value, str):
        return ccuda.parse_switch(value.encode(), what)
    raise TypeError(f"{what.decode()} must be True, False or 'default', got {value!r}")


cdef int _blocks_of(value) except -2:
    if isinstance(value, str) and value.lower() == "default":  # any case, as the other options
        return -1
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"persist_blocks must be an int in [0, 65535] or 'default', got "
                        f"{value!r}")
    if not 0 <= value <= 65535:
        raise ValueError(f"persist_blocks must be an int in [0, 65535] or 'default', got {value!r}")
    return int(value)


cdef void _apply(ccuda.Options* o, precision, algo, graphs, streams, persist_blocks) except *:
    # None: leave the field; a value (or "default") sets it.
    if precision is not None:
        o.precision = ccuda.parse_precision(str(precision).encode(), b"precision")
    if algo is not None:
        o.algo = ccuda.parse_algo(str(algo).encode(), b"algo")
    if graphs is not None:
        o.graphs = _switch_of(graphs, b"graphs")
    if streams is not None:
        o.streams = _switch_of(streams, b"streams")
    if persist_blocks is not None:
        o.persist_blocks = _blocks_of(persist_blocks)


def default_options():
    """The process-wide defaults, resolved (environment, then set_default_options)."""
    cdef ccuda.Options o = ccuda.default_options()
    return _options_dict(o)


def set_default_options(precision=None, algo=None, graphs=None, streams=None,
                        persist_blocks=None):
    """Change process-wide defaults: None leaves a field as it is, "default" returns it to the
    environment's / built-in value. Takes effect at each layer's next call. (Starts from what
    was set before, not the resolved values, so that a bad environment variable can be
    replaced.)"""
    cdef ccuda.Options o = ccuda.default_overrides()
    try:
        _apply(&o, precision, algo, graphs, streams, persist_blocks)
        ccuda.set_default_options(o)
    except RuntimeError as e:
        raise ValueError(str(e)) from None


# ---- recurrent stack ---------------------------------------------------------------------------

_CELLS = {"rnn_tanh": <int>CellType.RNN_TANH, "rnn_relu": <int>CellType.RNN_RELU,
          "lstm": <int>CellType.LSTM, "gru": <int>CellType.GRU}


cdef class NativeRecurrentCUDA:
    """Owns a pyrnn::cuda::Recurrent<float|double>: the device twin of
    pyrnn._core.NativeRecurrent. Tensor arguments are DeviceArrays of the layer dtype on the
    layer's device, C-contiguous, already shape-checked by pyrnn.recurrent (re-checked here);
    lengths is a host int64 array. Outputs are new owning DeviceArrays. With batch_first, x, y,
    dy and dx are [N, T, .] (the core swaps them on its own stream)."""
    cdef CudaRecurrent[float]* f32
    cdef CudaRecurrent[double]* f64
    cdef RecurrentConfig cfg
    # The busy flag, pyrnn._core's twin (see _claim there; no fork case: CUDA is not usable in
    # a fork()ed child)
    cdef bint computing  # a forward / backward / zero_grad / reset_parameters runs
    cdef list holds  # hold()s not released: weakrefs to their tokens (None: a bare hold)
    cdef unsigned long busy_tid  # the thread they are of
    cdef readonly object dtype
    cdef readonly int device

    def __cinit__(self, str cell, int input_size, int hidden_size, int num_layers, bint bias,
                  bint bidirectional, bint reset_after, double dropout, dtype, int device=0,
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
        if self.dtype != np.float32 and self.dtype != np.float64:
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        _require_device()
        self.device = device
        # Device work below (and in the methods that follow) waits for the device lock, which a
        # pass in another thread may hold for its whole length: without the GIL.
        cdef bint single = self.dtype == np.float32
        with nogil:
            if single:
                self.f32 = new CudaRecurrent[float](self.cfg, device)
            else:
                self.f64 = new CudaRecurrent[double](self.cfg, device)

    def __dealloc__(self):
        del self.f32
        del self.f64

    def __reduce__(self):
        raise TypeError("NativeRecurrentCUDA cannot be pickled or copied by itself; copy or "
                        "pickle the layer that owns it (pyrnn.RNN / LSTM / GRU), which carries "
                        "host copies of its parameters and gradients")

    @property
    def batch_first(self):
        """Whether x, y, dx and dy are [N, T, .] instead of [T, N, .]."""
        return self.cfg.batch_first

    cdef tuple _seq(self, int T, int N, int W):
        # a sequence buffer's shape in this layer's layout
        return (N, T, W) if self.cfg.batch_first else (T, N, W)

    def num_parameters(self):
        return self.f32.num_parameters() if self.f32 else self.f64.num_parameters()

    def reset_parameters(self, uint64_t seed):
        cdef bint was = self._claim(True)  # as the CPU core: refused while another thread runs it
        try:
            with nogil:
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
            with nogil:
                if self.f32:
                    self.f32.zero_grad()
                else:
                    self.f64.zero_grad()
        finally:
            self.computing = was  # (False, unless a pass of this thread's own ran)

    def has_cache(self):
        return self.f32.has_cache() if self.f32 else self.f64.has_cache()

    def cached_shape(self):
        if self.f32:
            return (self.f32.cached_steps(), self.f32.cached_batch())
        return (self.f64.cached_steps(), self.f64.cached_batch())

    # ---- execution options (pyrnn.cuda.configure / layer_options) ----------------------------
    cdef ccuda.Options _own_options(self):
        if self.f32:
            return self.f32.options()
        return self.f64.options()

    def set_options(self, precision=None, algo=None, graphs=None, streams=None,
                    persist_blocks=None):
        """Per-layer options: None leaves a field, "default" follows the process default."""
        cdef ccuda.Options o = self._own_options()
        try:
            _apply(&o, precision, algo, graphs, streams, persist_blocks)
        except RuntimeError as e:
            raise ValueError(str(e)) from None
        if self.f32:
            self.f32.set_options(o)
        else:
            self.f64.set_options(o)

    def options_and_last_run(self):
        """(the layer's own options, them resolved against the process defaults, what its last
        passes ran)."""
        cdef ccuda.Options o = self._own_options()
        effective = _options_dict(ccuda.resolve(o))
        if self.f32:
            ran = {"last_forward_algo": _name(ccuda.algo_name(self.f32.last_forward_algo())),
                   "last_backward_algo": _name(ccuda.algo_name(self.f32.last_backward_algo())),
                   "last_forward_graphs": self.f32.last_forward_graphs(),
                   "last_backward_graphs": self.f32.last_backward_graphs(),
                   "graphs_disabled_reason": self.f32.graphs_disabled_reason().decode() or None}
        else:
            ran = {"last_forward_algo": _name(ccuda.algo_name(self.f64.last_forward_algo())),
                   "last_backward_algo": _name(ccuda.algo_name(self.f64.last_backward_algo())),
                   "last_forward_graphs": self.f64.last_forward_graphs(),
                   "last_backward_graphs": self.f64.last_backward_graphs(),
                   "graphs_disabled_reason": self.f64.graphs_disabled_reason().decode() or None}
        return _options_dict(o), effective, ran

    def param_info(self):
        """[(name, offset, shape)] in native order."""
        cdef const vector[ParamInfo]* info = &(self.f32.param_info() if self.f32
                                               else self.f64.param_info())
        out = []
        cdef size_t i
        cdef const ParamInfo* p
        for i in range(info.size()):
            p = &info[0][i]
            rows, cols = int(p.rows), int(p.cols)
            shape = (rows, cols) if cols else (rows,)
            out.append((p.name.decode(), p.offset, shape))
        return out

    def views(self, bint grads):
        """{name: DeviceArray view} of the parameters (or their gradients), in native order."""
        cdef uintptr_t base
        if self.f32:
            base = <uintptr_t>(self.f32.grads() if grads else self.f32.params())
        else:
            base = <uintptr_t>(self.f64.grads() if grads else self.f64.params())
        item = self.dtype.itemsize
        return {name: DeviceArray._make(base + off * item, shape, self.dtype, self.device, False,
                                        self)
                for name, off, shape in self.param_info()}

    def get_flat(self, bint grads):
        """Host copy (1-D ndarray) of all parameters or gradients."""
        out = np.empty(self.num_parameters(), self.dtype)
        cdef uintptr_t p = out.ctypes.data
        with nogil:
            if self.f32:
                if grads:
                    self.f32.copy_grads_to_host(<float*>p)
                else:
                    self.f32.copy_params_to_host(<float*>p)
            else:
                if grads:
                    self.f64.copy_grads_to_host(<double*>p)
                else:
                    self.f64.copy_params_to_host(<double*>p)
        return out

    def set_flat(self, bint grads, values):
        """Overwrite all parameters or gradients from a host array of num_parameters()."""
        src = np.ascontiguousarray(values, dtype=self.dtype).reshape(-1)
        if src.size != self.num_parameters():
            raise ValueError(f"expected {self.num_parameters()} values, got {src.size}")
        cdef uintptr_t p = src.ctypes.data
        with nogil:
            if self.f32:
                if grads:
                    self.f32.copy_grads_from_host(<const float*>p)
                else:
                    self.f32.copy_params_from_host(<const float*>p)
            else:
                if grads:
                    self.f64.copy_grads_from_host(<const double*>p)
                else:
                    self.f64.copy_params_from_host(<const double*>p)

    def hold(self, token=None):
        """Marks the layer busy, as its passes do, until release(token) (pyrnn._core's twin)."""
        ref = None if token is None else weakref.ref(token)  # (first: a refusal sets nothing)
        self._claim(False)
        self.holds.append(ref)

    def release(self, token=None):
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

    cdef int _claim(self, bint compute, bint take=True) except -1:
        # pyrnn._core's twin: a pass takes the flag for its duration, a hold adds its token,
        # and a hold whose token is gone is free.
        cdef unsigned long tid = PyThread_get_thread_ident()
        if self.holds:
            self.holds = [r for r in self.holds if r is None or r() is not None]
        if (self.computing or self.holds) and self.busy_tid != tid:
            raise RuntimeError("this layer is already running forward/backward in another "
                               "thread; use one layer per thread")
        cdef int nested = self.computing  # (of this thread: another's was refused above)
        if take:
            self.busy_tid = tid
            if compute:
                self.computing = True
        return nested

    # pyrnn::cuda::Recurrent<T>::forward/backward take raw device pointers and no sizes (as the
    # CPU core does): _arg checks every buffer against the config and (backward) the cached T, N,
    # so no slip on the Python side can hand the C++ a wrong-sized buffer.
    cdef uintptr_t _arg(self, str name, a, tuple shape) except? 0:
        if a is None:
            return 0
        if not isinstance(a, DeviceArray):
            raise TypeError(f"{name} must be a DeviceArray, got {type(a).__name__}")
        da = <DeviceArray>a
        if da.dtype != self.dtype:
            raise TypeError(f"{name} has dtype {da.dtype}, the layer is {self.dtype}")
        if da.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {da.shape}")
        if da.device != self.device:
            raise ValueError(f"{name} is on cuda:{da.device}, the layer on cuda:{self.device}")
        return da.ptr

    def forward(self, x, h0, c0, lengths, bint training, uint64_t seed):
        """x DeviceArray [T, N, C] ([N, T, C] batch_first); h0/c0 [L*D, N, H] or None; lengths
        host int64 [N] or None."""
        bf = self.cfg.batch_first
        if not isinstance(x, DeviceArray) or (<DeviceArray>x).ndim != 3:
            raise TypeError("x must be a 3-d DeviceArray " + ("[N, T, C]" if bf else "[T, N, C]"))
        if not (1 <= x.shape[0] < 2**31 and 1 <= x.shape[1] < 2**31):  # the C++ takes ints
            raise ValueError(f"x must have 1 <= T, N < 2**31, got shape {x.shape}")
        cdef int T = x.shape[1] if bf else x.shape[0]
        cdef int N = x.shape[0] if bf else x.shape[1]
        D = self.cfg.directions()
        H = self.cfg.hidden_size
        L = self.cfg.num_layers
        lstm = self.cfg.cell == CellType.LSTM
        if not lstm and c0 is not None:
            raise ValueError("c0 is for an LSTM; this layer has no cell state")
        cdef uintptr_t xp = self._arg("x", x, self._seq(T, N, self.cfg.input_size))
        cdef uintptr_t h0p = self._arg("h0", h0, (L * D, N, H))
        cdef uintptr_t c0p = self._arg("c0", c0, (L * D, N, H)) if lstm else 0
        y = DeviceArray.empty(self._seq(T, N, D * H), self.dtype, self.device)
        hn = DeviceArray.empty((L * D, N, H), self.dtype, self.device)
        cn = DeviceArray.empty((L * D, N, H), self.dtype, self.device) if lstm else None
        cdef uintptr_t yp = (<DeviceArray>y).ptr, hnp = (<DeviceArray>hn).ptr
        cdef uintptr_t cnp = (<DeviceArray>cn).ptr if lstm else 0
        cdef const int64_t[::1] lens
        cdef const int64_t* lens_p = NULL
        if lengths is not None:
            lens = np.ascontiguousarray(lengths, dtype=np.int64)
            if lens.shape[0] != N:
                raise ValueError(f"lengths must have shape ({N},), got ({lens.shape[0]},)")
            lens_p = &lens[0]
        cdef bint was = self._claim(True)
        try:
            if self.f32:
                with nogil:
                    self.f32.forward(<float*>yp, <float*>hnp, <float*>cnp, <const float*>xp,
                                     <const float*>h0p, <const float*>c0p, lens_p, T, N,
                                     training, seed)
            else:
                with nogil:
                    self.f64.forward(<double*>yp, <double*>hnp, <double*>cnp, <const double*>xp,
                                     <const double*>h0p, <const double*>c0p, lens_p, T, N,
                                     training, seed)
        finally:
            self.computing = was  # (False, unless a pass of this thread's own ran)
        return y, hn, cn

    def backward(self, dy, dhn, dcn):
        """dy DeviceArray [T, N, D*H] ([N, T, D*H] batch_first); dhn/dcn [L*D, N, H] or None ->
        (dx in x's layout, dh0, dc0 or None)."""
        L, D, H = self.cfg.num_layers, self.cfg.directions(), self.cfg.hidden_size
        lstm = self.cfg.cell == CellType.LSTM
        if not lstm and dcn is not None:
            raise ValueError("dcn is for an LSTM; this layer has no cell state")
        cdef uintptr_t dyp, dhnp, dcnp, dxp, dh0p, dc0p
        cdef bint was = self._claim(True)
        try:
            # Checked against the cache inside the busy window: no forward can change it
            # between the check and the call.
            if not self.has_cache():
                raise RuntimeError("backward needs a preceding forward in training mode")
            T, N = self.cached_shape()
            dyp = self._arg("dy", dy, self._seq(T, N, D * H))
            if dyp == 0:
                raise TypeError("dy must be a DeviceArray")
            dhnp = self._arg("dhn", dhn, (L * D, N, H))
            dcnp = self._arg("dcn", dcn, (L * D, N, H)) if lstm else 0
            dx = DeviceArray.empty(self._seq(T, N, self.cfg.input_size), self.dtype, self.device)
            dh0 = DeviceArray.empty((L * D, N, H), self.dtype, self.device)
            dc0 = DeviceArray.empty((L * D, N, H), self.dtype, self.device) if lstm else None
            dxp, dh0p = (<DeviceArray>dx).ptr, (<DeviceArray>dh0).ptr
            dc0p = (<DeviceArray>dc0).ptr if lstm else 0
            if self.f32:
                with nogil:
                    self.f32.backward(<float*>dxp, <float*>dh0p, <float*>dc0p, <const float*>dyp,
                                      <const float*>dhnp, <const float*>dcnp)
            else:
                with nogil:
                    self.f64.backward(<double*>dxp, <double*>dh0p, <double*>dc0p,
                                      <const double*>dyp, <const double*>dhnp,
                                      <const double*>dcnp)
        finally:
            self.computing = was  # (False, unless a pass of this thread's own ran)
        return dx, dh0, dc0


# ---- training stack (Dense, LayerNorm, Embedding, Dropout, LastStep, optimizers) ---------------
include "_cuda_train.pxi"
