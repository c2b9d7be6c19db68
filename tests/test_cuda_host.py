"""Host-side parts of the CUDA backend that run without a GPU: the __cuda_array_interface__
parser, device-array detection, DLPack capsule export/import bookkeeping, clear errors without
a device, and the shape/dtype validation of device inputs (on borrowed DeviceArrays over fake
pointers, which are never dereferenced)."""
import ctypes
import sys

import numpy as np
import pytest

import pyrnn
import pyrnn.cuda
from pyrnn._device import CAI, is_device_array, parse_cuda_array_interface

needs_ext = pytest.mark.skipif(not pyrnn.cuda.is_compiled(), reason="built without the CUDA backend")
no_device = pytest.mark.skipif(pyrnn.cuda.is_available(), reason="a CUDA device is present")


def cai(**kw):
    d = {"shape": (2, 3), "typestr": "<f4", "data": (0x10000, False), "version": 3}
    d.update(kw)
    return d


# ---- __cuda_array_interface__ parsing ----------------------------------------------------------

def test_parse_minimal_and_full():
    r = parse_cuda_array_interface(cai())
    assert r == CAI(0x10000, (2, 3), np.dtype(np.float32), False, None)
    r = parse_cuda_array_interface(cai(typestr="<f8", data=(4096, True), strides=(24, 8),
                                       stream=1, mask=None))
    assert r.dtype == np.float64 and r.readonly and r.stream == 1 and r.shape == (2, 3)
    assert parse_cuda_array_interface(cai(typestr="<i8", shape=[4])).dtype == np.int64
    # version < 3 has no stream key semantics: ignored
    assert parse_cuda_array_interface(cai(version=2, stream=5)).stream is None
    # size-1 dimensions may carry any stride; empty arrays may have a NULL pointer
    assert parse_cuda_array_interface(cai(shape=(2, 1, 3), strides=(12, 999, 4))).shape == (2, 1, 3)
    assert parse_cuda_array_interface(cai(shape=(0, 3), data=(0, False))).ptr == 0
    # An empty array has no layout: any strides (NumPy exports (0, 0) for shape (0, 3)).
    assert parse_cuda_array_interface(cai(shape=(2, 0), data=(0, False), strides=(4, 4))).ptr == 0


@pytest.mark.parametrize("d, exc, match", [
    ("not a dict", TypeError, "must be a dict"),
    ({"shape": (1,), "typestr": "<f4", "data": (1, False)}, ValueError, "'version'"),
    (cai(version=4), ValueError, "version"),
    (cai(version=True), ValueError, "version"),
    (cai(shape=(2, -1)), ValueError, "negative"),
    (cai(shape=(2.0, 3)), ValueError, "tuple of ints"),
    (cai(typestr="<f2"), TypeError, "float32, float64 or int64"),
    (cai(typestr="<i4"), TypeError, "float32, float64 or int64"),
    (cai(typestr=">f4"), TypeError, "byte order"),
    (cai(typestr="zz"), ValueError, "not a valid type"),
    (cai(data=(0, False)), ValueError, "NULL"),
    # The size is a Python int: NumPy's int64 product wrapped to 0 and let a NULL pointer in.
    (cai(shape=(2**32, 2**32), data=(0, False)), ValueError, "larger than any address space"),
    (cai(shape=(2**31, 2**31), data=(4096, False)), ValueError, "larger than any address space"),
    (cai(data=(-8, False)), ValueError, "non-negative"),
    (cai(data=(8,)), ValueError, r"\(ptr, readonly\)"),
    (cai(strides=(4, 8)), ValueError, "C-contiguous"),
    (cai(strides=(12,)), ValueError, "do not match"),
    (cai(strides=(12.0, 4.0)), ValueError, "strides must be ints"),
    (cai(strides=(True, 4)), ValueError, "strides must be ints"),
    (cai(mask=(1, False)), ValueError, "mask"),
    (cai(stream=0), ValueError, "disallowed"),
    (cai(stream="s"), ValueError, "int or None"),
    (cai(stream=-1), ValueError, "stream handle"),  # was an OverflowError further in
    # Misaligned (a CuPy view at an odd byte offset): kernels would fault, a sticky error.
    (cai(data=(0x10002, False)), ValueError, "0x10002 is not aligned to the 4-byte elements"),
    (cai(typestr="<f8", data=(0x10004, False)), ValueError, "not aligned to the 8-byte"),
])
def test_parse_rejects(d, exc, match):
    with pytest.raises(exc, match=match):
        parse_cuda_array_interface(d)


class FakeCAI:
    def __init__(self, d):
        self.__cuda_array_interface__ = d


class FakeDL:
    def __init__(self, kind):
        self.kind = kind

    def __dlpack__(self, stream=None):
        raise AssertionError("not called by is_device_array")

    def __dlpack_device__(self):
        return (self.kind, 0)


def test_is_device_array():
    assert not is_device_array(np.zeros(3))
    assert not is_device_array([1.0, 2.0])
    assert is_device_array(FakeCAI(cai()))
    assert is_device_array(FakeDL(2))       # kDLCUDA
    assert is_device_array(FakeDL(13))      # kDLCUDAManaged
    assert not is_device_array(FakeDL(1))   # kDLCPU
    torch = pytest.importorskip("torch")
    assert not is_device_array(torch.zeros(3))  # CPU tensor: CAI raises, DLPack says CPU


# ---- without a device: clear RuntimeErrors ---------------------------------------------------

@no_device
def test_layers_without_device():
    for make in (lambda: pyrnn.LSTM(3, 4, device="cuda"), lambda: pyrnn.GRU(3, 4, device="cuda"),
                 lambda: pyrnn.RNN(3, 4, device="cuda")):
        with pytest.raises(RuntimeError, match="device='cuda' is not available"):
            make()
    layer = pyrnn.LSTM(3, 4)
    with pytest.raises(RuntimeError, match="device='cuda' is not available"):
        layer.to("cuda")
    assert layer.device == "cpu"
    with pytest.raises(ValueError, match="device must be"):
        layer.to("tpu")
    assert layer.to("cpu") is layer


@needs_ext
@no_device
def test_native_and_allocation_without_device():
    reason = pyrnn.cuda.unavailable_reason()
    assert reason
    with pytest.raises(RuntimeError, match="no usable CUDA device") as e:
        pyrnn.cuda.NativeRecurrentCUDA("lstm", 3, 4, 1, True, False, False, 0.0, "float32")
    assert reason in str(e.value)
    with pytest.raises(RuntimeError, match="no usable CUDA device"):
        pyrnn.cuda.DeviceArray.empty((2, 3))
    with pytest.raises(RuntimeError, match="no usable CUDA device"):
        pyrnn.cuda.to_device(np.zeros(3))
    # config errors come first, and are ValueErrors as on the CPU
    with pytest.raises(ValueError, match="hidden_size"):
        pyrnn.cuda.NativeRecurrentCUDA("lstm", 3, 0, 1, True, False, False, 0.0, "float32")
    with pytest.raises(TypeError, match="dtype"):
        pyrnn.cuda.NativeRecurrentCUDA("lstm", 3, 4, 1, True, False, False, 0.0, "int32")


@needs_ext
@no_device
@pytest.mark.parametrize("version,stream", [(0, None), (2, None), (3, None), (3, 1), (3, 2),
                                            (3, 0x1234)])
def test_cuda_array_interface_import_without_device(version, stream):
    # Without a device there is no producer work to wait for: every version and stream gives a
    # view (fake pointer, never dereferenced), with no CUDA call that would fail for want of a
    # driver. (A v3 stream once reached cudaStreamSynchronize here: a RuntimeError.)
    d = cai(shape=(2, 3), data=(0x30000, True), version=version)
    if version >= 3:
        d["stream"] = stream
    owner = FakeCAI(d)
    a = pyrnn.cuda.from_cuda_array_interface(owner)
    assert (a.ptr, a.shape, a.device, a.readonly) == (0x30000, (2, 3), 0, True)
    assert a.owner is owner


# ---- DeviceArray bookkeeping (fake pointers, never dereferenced) -----------------------------

@needs_ext
def test_borrow_refuses_a_null_pointer_for_data():
    # A null h0 borrowed for (1, 2, 4) reached the recurrent layer as "no h0" (zeros, silently).
    DA = pyrnn.cuda.DeviceArray
    with pytest.raises(ValueError, match=r"null pointer for 8 elements \(shape \(1, 2, 4\)\)"):
        DA.borrow(0, (1, 2, 4), "float32", None, device=0)
    assert DA.borrow(0, (0, 4), "float32", None, device=0).size == 0  # empty: none needed
    # Not an address: ValueError / TypeError naming it (a negative one was a bare OverflowError).
    for ptr, exc, match in [(-4096, ValueError, "-4096 is not an address"),
                            (2**64, ValueError, "is not an address"),
                            (4096.0, TypeError, "must be an int"),
                            (True, TypeError, "must be an int")]:
        with pytest.raises(exc, match=match):
            DA.borrow(ptr, (1,), "float32", None, device=0)
    assert DA.borrow(np.uint64(2**63), (2,), "float32", None, device=0).ptr == 2**63


@needs_ext
def test_reshape_views_make_no_chain():
    # Each reshape's owner was the array it came from: x = x.reshape(...) in a loop kept every
    # view alive, and releasing a million of them crashed (recursion in the deallocations).
    DA = pyrnn.cuda.DeviceArray
    owner = object()
    a = DA.borrow(0x20000, (4, 6), "float32", owner, device=0)
    x = a
    for _ in range(1000):
        x = x.reshape(24).reshape(6, 4)
    assert x.owner is a and a.owner is owner and x.ptr == a.ptr
    del a
    assert x.owner.owner is owner  # the base stays alive with its views


@needs_ext
def test_reshape_minus_one_beside_a_zero_extent_is_refused():
    # As NumPy: (0, 4) into (-1, 0) could be any number of rows; it gave (0, 0) silently.
    e = pyrnn.cuda.DeviceArray.borrow(0, (0, 4), "float32", None, device=0)
    for shape in [(-1, 0), (2, 0, -1), (0, -1)]:
        with pytest.raises(ValueError, match=r"-1 is ambiguous beside a 0 extent"):
            e.reshape(*shape)
    assert e.reshape(-1, 2).shape == (0, 2) and e.reshape(3, 0).shape == (3, 0)


@needs_ext
def test_device_array_views_and_interface():
    DA = pyrnn.cuda.DeviceArray
    with pytest.raises(TypeError):
        DA()
    owner = object()
    a = DA.borrow(0x20000, (4, 6), "float64", owner, device=0)
    assert a.shape == (4, 6) and a.dtype == np.float64 and a.size == 24 and a.nbytes == 192
    assert a.owner is owner and len(a) == 4 and a.ndim == 2
    d = a.__cuda_array_interface__
    assert d["version"] == 3 and d["data"] == (0x20000, False) and d["typestr"] == "<f8"
    assert parse_cuda_array_interface(d).shape == (4, 6)
    assert a.__dlpack_device__() == (2, 0)
    b = a.reshape(2, -1, 3)
    assert b.shape == (2, 4, 3) and b.ptr == a.ptr and b.owner is a
    with pytest.raises(ValueError, match="cannot reshape"):
        a.reshape(5, 5)
    with pytest.raises(TypeError, match="float32, float64 or int64"):
        DA.borrow(0x20000, (2,), "int32", owner, device=0)
    with pytest.raises(ValueError, match="borrow data pointer 0x20004 is not aligned to the 8"):
        DA.borrow(0x20004, (2,), "float64", owner, device=0)
    r = DA.borrow(0x20000, (2,), "float32", owner, readonly=True, device=0)
    with pytest.raises(ValueError, match="read-only"):
        r.copy_from(np.zeros(2))
    # Wrapping a foreign CAI object keeps it alive, zero-copy; with a device, a pointer that is
    # not device memory (this fake one) is refused instead.
    f = FakeCAI(cai(data=(0x30000, True)))
    if pyrnn.cuda.is_available():
        with pytest.raises(TypeError, match="0x30000 is not CUDA device or managed memory"):
            pyrnn.cuda.as_device_array(f)
    else:
        v = pyrnn.cuda.as_device_array(f)
        assert v.ptr == 0x30000 and v.readonly and v.owner is f and v.shape == (2, 3)
    with pytest.raises(ValueError, match="C-contiguous"):
        pyrnn.cuda.as_device_array(FakeCAI(cai(strides=(4, 8))))
    with pytest.raises(TypeError, match="not a CUDA device array"):
        pyrnn.cuda.as_device_array(np.zeros(3))
    # Sizes in Python ints: np.prod wrapped (2**62, 4) to 0 elements (a 1-byte allocation).
    for shape in ((2**62, 4), (2**32, 2**32), (2**61,)):
        with pytest.raises(ValueError, match="larger than any address space"):
            DA.borrow(0x20000, shape, "float32", owner, device=0)
    big = DA.borrow(0x20000, (2**30, 2**29), "float64", owner, device=0)  # 2**62 bytes: fits
    assert big.size == 2**59 and big.nbytes == 2**62
    assert big.reshape(-1, 2**30).shape == (2**29, 2**30)
    # NumPy 2's copy=False asks for a view, which device memory cannot give (no copy is made).
    with pytest.raises(ValueError, match="needs a copy"):
        a.__array__(copy=False)


@needs_ext
def test_device_array_refuses_pickle():
    # Cython's generated pickling carried the raw pointer (with a picklable owner it succeeded).
    # (copy.copy / deepcopy make device copies: tests/test_cuda_edges.py.)
    import pickle
    a = pyrnn.cuda.DeviceArray.borrow(0x21000, (2, 3), "float32", ["picklable owner"], device=0)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match=r"cannot be pickled; use \.numpy\(\) for a host copy, "
                           r"or copy\.copy / copy\.deepcopy / \.copy\(\) for a device copy"):
            pickle.dumps(a, protocol)


@needs_ext
def test_a_host_copy_beyond_the_memory_limit_is_refused_before_any_allocation():
    # DeviceArray.numpy() allocated its host copy unchecked, where every other host
    # allocation of pyrnn's is checked (PYRNN_MEMORY_LIMIT; helper-144). Refused before any
    # copy: this pointer is no device memory.
    a = pyrnn.cuda.DeviceArray.borrow(0x61000, (2 ** 40,), "float32", None, device=0)
    with pytest.raises(MemoryError, match=r"a host copy of a DeviceArray of shape "
                                          r"\(1099511627776,\), float32"):
        a.numpy()


@needs_ext
def test_dlpack_export_releases_reference():
    a = pyrnn.cuda.DeviceArray.borrow(0x40000, (3, 5), "float32", None, device=0)
    before = sys.getrefcount(a)
    cap = a.__dlpack__()
    assert sys.getrefcount(a) == before + 1  # the capsule holds the array
    del cap                                  # never consumed: the capsule destructor frees it
    assert sys.getrefcount(a) == before


@needs_ext
def test_dlpack_round_trip_through_capsule():
    """A producer whose __dlpack__ hands out our own capsule: imported zero-copy, the tensor's
    deleter runs exactly once when the import dies."""
    a = pyrnn.cuda.DeviceArray.borrow(0x50000, (2, 3, 4), "float64", None, device=0)

    class Producer:
        def __dlpack__(self, stream=None):
            return a.__dlpack__(stream=stream)

        def __dlpack_device__(self):
            return (2, 0)

    before = sys.getrefcount(a)
    p = Producer()
    b = pyrnn.cuda.from_dlpack(p)
    assert b.ptr == a.ptr and b.shape == (2, 3, 4) and b.dtype == np.float64
    assert sys.getrefcount(a) == before + 1
    del b
    assert sys.getrefcount(a) == before
    c = pyrnn.cuda.as_device_array(p)  # DLPack path (no CAI on the producer)
    assert c.shape == (2, 3, 4)


# A foreign DLPack producer built with ctypes, to test the import checks.
class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    pass


DELETER = ctypes.CFUNCTYPE(None, ctypes.POINTER(DLManagedTensor))
DLManagedTensor._fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p),
                            ("deleter", DELETER)]


class CtypesProducer:
    def __init__(self, device_type=2, code=2, bits=32, shape=(2, 3), strides=None, offset=0,
                 data=0x60000):
        self.deleted = 0
        self.shape = (ctypes.c_int64 * len(shape))(*shape)
        self.strides = None if strides is None else (ctypes.c_int64 * len(strides))(*strides)
        self.deleter = DELETER(self._delete)
        t = DLManagedTensor()
        t.dl_tensor.data = data
        t.dl_tensor.device = DLDevice(device_type, 0)
        t.dl_tensor.ndim = len(shape)
        t.dl_tensor.dtype = DLDataType(code, bits, 1)
        t.dl_tensor.shape = ctypes.cast(self.shape, ctypes.POINTER(ctypes.c_int64))
        if self.strides is not None:
            t.dl_tensor.strides = ctypes.cast(self.strides, ctypes.POINTER(ctypes.c_int64))
        t.dl_tensor.byte_offset = offset
        t.deleter = self.deleter
        self.tensor = t

    def _delete(self, ptr):
        self.deleted += 1

    def __dlpack__(self, stream=None):
        new = ctypes.pythonapi.PyCapsule_New
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        return new(ctypes.addressof(self.tensor), b"dltensor", None)

    def __dlpack_device__(self):
        return (int(self.tensor.dl_tensor.device.device_type), 0)


@needs_ext
def test_dlpack_import_checks():
    p = CtypesProducer(bits=64, shape=(2, 1, 3), strides=(3, 77, 1), offset=16)
    a = pyrnn.cuda.from_dlpack(p)
    assert a.ptr == 0x60000 + 16 and a.shape == (2, 1, 3) and a.dtype == np.float64
    assert p.deleted == 0
    del a
    assert p.deleted == 1

    class ClaimsCuda(CtypesProducer):  # says CUDA, but its tensor says CPU: caught in the capsule
        def __dlpack_device__(self):
            return (2, 0)

    for make, exc, match in [(lambda: ClaimsCuda(device_type=1), TypeError, "not CUDA"),
                             (lambda: CtypesProducer(code=0, bits=32), TypeError,
                              "float32, float64 or int64"),
                             (lambda: CtypesProducer(strides=(1, 2)), ValueError, "C-contiguous")]:
        q = make()
        with pytest.raises(exc, match=match):
            pyrnn.cuda.from_dlpack(q)
        assert q.deleted == 1  # a rejected import still releases the producer's tensor


@needs_ext
def test_dlpack_import_of_empty_arrays_takes_any_strides():
    # What PyTorch (torch.empty(2, 0, 3): (3, 3, 1)) and NumPy ((0, 3): (0, 0)) export for
    # arrays they call contiguous; refused as "not C-contiguous" before.
    for shape, strides in [((2, 0, 3), (3, 3, 1)), ((0, 3), (0, 0)), ((2, 0), (1, 1))]:
        p = CtypesProducer(shape=shape, strides=strides, data=0)
        a = pyrnn.cuda.from_dlpack(p)
        assert a.shape == shape and a.size == 0
        del a
        assert p.deleted == 1


@needs_ext
@pytest.mark.parametrize("kw, match", [
    (dict(shape=(-1, 3)), "negative extent"),
    (dict(shape=(4,), data=0), "NULL"),
    (dict(shape=(2**31, 2**31), bits=64), "larger than any address space"),
])
def test_dlpack_import_refuses_malformed_tensors(kw, match):
    # As the __cuda_array_interface__ route does: a NULL array was used by kernels, and a
    # negative extent gave a negative size.
    q = CtypesProducer(**kw)
    with pytest.raises(ValueError, match=match):
        pyrnn.cuda.from_dlpack(q)
    assert q.deleted == 1


@needs_ext
def test_empty_arrays_export_a_null_pointer():
    # CAI v3: "For zero-size arrays, use 0"; DLPack: "the data pointer ... NULL or 0".
    a = pyrnn.cuda.DeviceArray.borrow(0x71000, (2, 0, 3), "float32", None, device=0)
    assert a.__cuda_array_interface__["data"] == (0, False)
    for cap, name in [(a.__dlpack__(), b"dltensor"),
                      (a.__dlpack__(max_version=(1, 0)), b"dltensor_versioned")]:
        t = capsule_tensor(cap, name)  # cap keeps t alive
        assert t.dl_tensor.data is None and [t.dl_tensor.shape[i] for i in range(3)] == [2, 0, 3]


@needs_ext
def test_dlpack_export_checks_the_consumer_stream():
    a = pyrnn.cuda.DeviceArray.borrow(0x72000, (3,), "float32", None, device=0)
    for stream in (None, -1, 1, 2, 0x7F0000, np.int64(0x7F0000), np.uint64(2)):
        capsule_tensor(a.__dlpack__(stream=stream), b"dltensor")  # NumPy ints too
    for stream, exc in [(0, ValueError), (-2, ValueError), (1.5, TypeError), ("1", TypeError),
                        (True, TypeError), (np.int64(0), ValueError), (np.bool_(True), TypeError)]:
        with pytest.raises(exc, match="stream"):
            a.__dlpack__(stream=stream)
    for dev in [(2,), "cuda", (2.0, 0)]:
        with pytest.raises(TypeError, match="dl_device must be"):
            a.__dlpack__(dl_device=dev)
    with pytest.raises(BufferError, match="cannot export to"):
        a.__dlpack__(dl_device=(2, 3))
    with pytest.raises(BufferError, match="copy=False"):
        a.__dlpack__(dl_device=(1, 0), copy=False)


LATE_CONSUMER = r"""
#include <stdlib.h>
/* The head of DLManagedTensorVersioned: version, manager_ctx, deleter. */
typedef struct { unsigned major, minor; void* ctx; void (*deleter)(void*); } Head;
static Head* kept;
static void release_late(void) { kept->deleter(kept); }
/* A C++ consumer keeping the tensor in a static: released by an atexit handler, which runs
   after Python has shut down. */
void keep_until_exit(void* tensor) { kept = (Head*)tensor; atexit(release_late); }
"""

LATE_SCRIPT = """
import ctypes, sys
import pyrnn.cuda
lib = ctypes.CDLL(sys.argv[1])
lib.keep_until_exit.argtypes = [ctypes.c_void_p]
api = ctypes.pythonapi
api.PyCapsule_GetPointer.restype = ctypes.c_void_p
api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
api.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]
a = pyrnn.cuda.DeviceArray.borrow(0x73000, (4,), "float32", None, device=0)
cap = a.__dlpack__(max_version=(1, 0))
lib.keep_until_exit(api.PyCapsule_GetPointer(cap, b"dltensor_versioned"))
api.PyCapsule_SetName(cap, b"used_dltensor_versioned")  # consumed: the consumer owns it
del cap, a
print("exiting")
"""


@needs_ext
def test_dlpack_deleter_called_after_python_exits(tmp_path):
    # The DLPack spec's deleter must work "beyond Python boundaries": after finalization it
    # leaks the array (as NumPy's does). It took the GIL and crashed (SIGSEGV) before.
    import shutil
    import subprocess
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    src, lib = tmp_path / "late.c", tmp_path / "late.so"
    src.write_text(LATE_CONSUMER)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    # cwd: not the repository root, whose pyrnn/ source tree has no compiled modules.
    r = subprocess.run([sys.executable, "-c", LATE_SCRIPT, str(lib)], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "exiting", (r.returncode, r.stderr[-2000:])


# DLPack ABI 1 ("dltensor_versioned"): a version, then flags (read-only, copied).
class DLPackVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class DLManagedTensorVersioned(ctypes.Structure):
    pass


DELETER_V1 = ctypes.CFUNCTYPE(None, ctypes.POINTER(DLManagedTensorVersioned))
DLManagedTensorVersioned._fields_ = [("version", DLPackVersion), ("manager_ctx", ctypes.c_void_p),
                                     ("deleter", DELETER_V1), ("flags", ctypes.c_uint64),
                                     ("dl_tensor", DLTensor)]


def capsule_tensor(capsule, name):
    """The struct inside a capsule of that name (without consuming it)."""
    valid = ctypes.pythonapi.PyCapsule_IsValid
    valid.restype, valid.argtypes = ctypes.c_int, [ctypes.py_object, ctypes.c_char_p]
    assert valid(capsule, name), name
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    kind = DLManagedTensorVersioned if name == b"dltensor_versioned" else DLManagedTensor
    return ctypes.cast(get(capsule, name), ctypes.POINTER(kind)).contents


class CtypesProducerV1:
    """A foreign ABI 1 producer that also takes max_version (and checks it was asked for)."""

    def __init__(self, flags=0, major=1, shape=(2, 3), device_type=2, code=2, offset=0):
        self.deleted = 0
        self.asked = None
        self.shape = (ctypes.c_int64 * len(shape))(*shape)
        self.deleter = DELETER_V1(self._delete)
        t = DLManagedTensorVersioned()
        t.version = DLPackVersion(major, 0)
        t.flags = flags
        t.dl_tensor.data = 0x61000
        t.dl_tensor.byte_offset = offset
        t.dl_tensor.device = DLDevice(device_type, 0)
        t.dl_tensor.ndim = len(shape)
        t.dl_tensor.dtype = DLDataType(code, 32, 1)
        t.dl_tensor.shape = ctypes.cast(self.shape, ctypes.POINTER(ctypes.c_int64))
        t.deleter = self.deleter
        self.tensor = t

    def _delete(self, ptr):
        self.deleted += 1

    def __dlpack__(self, stream=None, max_version=None):
        self.asked = max_version
        new = ctypes.pythonapi.PyCapsule_New
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        return new(ctypes.addressof(self.tensor), b"dltensor_versioned", None)

    def __dlpack_device__(self):
        return (2, 0)


@needs_ext
@pytest.mark.parametrize("readonly", [False, True])
def test_dlpack_abi1_export(readonly):
    a = pyrnn.cuda.DeviceArray.borrow(0x52000, (4, 5), "float32", None, readonly=readonly,
                                      device=0)
    before = sys.getrefcount(a)
    cap = a.__dlpack__(max_version=(1, 0))
    t = capsule_tensor(cap, b"dltensor_versioned")
    assert (t.version.major, t.version.minor) == (1, 0)
    assert t.flags == (1 if readonly else 0)  # DLPACK_FLAG_BITMASK_READ_ONLY
    assert t.dl_tensor.data == 0x52000 and t.dl_tensor.ndim == 2
    assert [t.dl_tensor.shape[i] for i in range(2)] == [4, 5]
    assert [t.dl_tensor.strides[i] for i in range(2)] == [5, 1]
    assert sys.getrefcount(a) == before + 1
    del t, cap  # never consumed: the capsule destructor runs the versioned deleter
    assert sys.getrefcount(a) == before
    # Consumers that do not ask for ABI 1 get ABI 0, which has no flags: a read-only array is
    # refused there, as NumPy refuses it (the consumer could write it; helper-144).
    for kw in ({}, {"max_version": None}, {"max_version": (0, 8)}):
        if readonly:
            with pytest.raises(BufferError, match="read-only DeviceArray cannot be exported "
                                                  "as DLPack 0.x"):
                a.__dlpack__(**kw)
        else:
            capsule_tensor(a.__dlpack__(**kw), b"dltensor")
    assert sys.getrefcount(a) == before


@needs_ext
@pytest.mark.parametrize("readonly", [False, True])
def test_dlpack_abi1_round_trip_keeps_read_only(readonly):
    a = pyrnn.cuda.DeviceArray.borrow(0x53000, (3,), "float64", None, readonly=readonly,
                                      device=0)

    class Producer:
        def __dlpack__(self, stream=None, max_version=None):
            return a.__dlpack__(stream=stream, max_version=max_version)

        def __dlpack_device__(self):
            return (2, 0)

    before = sys.getrefcount(a)
    b = pyrnn.cuda.from_dlpack(Producer())
    assert (b.ptr, b.shape, b.readonly) == (a.ptr, (3,), readonly)
    if readonly:
        with pytest.raises(ValueError, match="read-only"):
            b.copy_from(np.zeros(3))
    del b
    assert sys.getrefcount(a) == before


@needs_ext
def test_dlpack_abi1_import_checks():
    p = CtypesProducerV1(flags=1)
    a = pyrnn.cuda.from_dlpack(p)
    assert p.asked == (1, 0)
    assert (a.ptr, a.shape, a.readonly) == (0x61000, (2, 3), True)
    del a
    assert p.deleted == 1
    assert not pyrnn.cuda.from_dlpack(CtypesProducerV1(flags=2)).readonly  # IS_COPIED only
    for kw, exc, match in [(dict(major=2), BufferError, "ABI version 2.0"),
                           (dict(device_type=1), TypeError, "not CUDA"),
                           (dict(code=0), TypeError, "float32, float64 or int64"),
                           (dict(offset=6), ValueError, "0x61006 is not aligned to the 4-byte")]:
        q = CtypesProducerV1(**kw)
        with pytest.raises(exc, match=match):
            pyrnn.cuda.from_dlpack(q)
        assert q.deleted == 1  # a rejected import still releases the producer's tensor


@needs_ext
def test_dlpack_export_max_version_forms():
    a = pyrnn.cuda.DeviceArray.borrow(0x54000, (2,), "float32", None, device=0)
    # A later ABI accepted by the consumer: version 1.0 is still ours (<= what it accepts).
    cap = a.__dlpack__(max_version=(2, 0))
    t = capsule_tensor(cap, b"dltensor_versioned")
    assert (t.version.major, t.version.minor) == (1, 0)
    del t, cap
    for bad in [(), (1,), 1, "10", (1.0, 0), (1, 0, 0)]:
        with pytest.raises(TypeError, match="max_version must be"):
            a.__dlpack__(max_version=bad)


@needs_ext
def test_dlpack_import_asks_with_fewer_arguments_only_when_refused():
    a = pyrnn.cuda.DeviceArray.borrow(0x55000, (3,), "float32", None, device=0)
    calls = []

    class Old:  # predates stream and max_version
        def __dlpack__(self):
            calls.append("old")
            return a.__dlpack__()

        def __dlpack_device__(self):
            return (2, 0)

    assert pyrnn.cuda.from_dlpack(Old()).ptr == a.ptr and calls == ["old"]

    class Broken:  # accepts every argument, then fails for a reason of its own
        def __dlpack__(self, stream=None, max_version=None):
            calls.append("broken")
            raise TypeError("cannot export a tensor that requires grad")

        def __dlpack_device__(self):
            return (2, 0)

    calls.clear()
    with pytest.raises(TypeError, match="requires grad"):
        pyrnn.cuda.from_dlpack(Broken())
    assert calls == ["broken"]  # not retried as if the keywords were refused


@needs_ext
def test_dlpack_import_refuses_a_host_producer_before_asking_for_its_capsule():
    """A host producer is refused from its __dlpack_device__ alone: asked for a capsule with a
    CUDA stream (as on a machine with a GPU) NumPy raises its own RuntimeError instead."""
    calls = []

    class HostOnly:  # like NumPy: a CPU tensor, and no stream but None
        def __dlpack__(self, stream=None, max_version=None):
            calls.append(stream)
            if stream is not None:
                raise RuntimeError("only supports stream=None")
            return np.zeros(3).__dlpack__()

        def __dlpack_device__(self):
            return (1, 0)

    with pytest.raises(TypeError, match="device type 1, not CUDA"):
        pyrnn.cuda.from_dlpack(HostOnly())
    assert calls == []
    with pytest.raises(TypeError, match="device type 1, not CUDA"):
        pyrnn.cuda.from_dlpack(np.zeros(3))


# ---- validation of device inputs (the CUDA layer path, checks only) --------------------------

@needs_ext
def test_device_input_validation():
    DA = pyrnn.cuda.DeviceArray
    layer = pyrnn.LSTM(3, 4, num_layers=2)  # the validation helpers do not touch the device
    x = DA.borrow(0x70000, (5, 2, 3), "float32", None, device=0)
    got, unbatched, dev = layer._input_cuda(x)
    assert got is x and not unbatched and dev
    u, unbatched, _ = layer._input_cuda(DA.borrow(0x70000, (5, 3), "float32", None, device=0))
    assert unbatched and u.shape == (5, 1, 3)
    with pytest.raises(TypeError, match="dtype float64"):
        layer._input_cuda(DA.borrow(0x70000, (5, 2, 3), "float64", None, device=0))
    with pytest.raises(ValueError, match=r"expected input of shape \(T, N, 3\)"):
        layer._input_cuda(DA.borrow(0x70000, (5, 2, 4), "float32", None, device=0))
    with pytest.raises(ValueError, match="at least one step"):
        layer._input_cuda(DA.borrow(0, (0, 2, 3), "float32", None, device=0))
    h = DA.borrow(0x80000, (2, 2, 4), "float32", None, device=0)  # (L*D, N, H)
    assert layer._state_cuda("h0", h, 2, False).shape == (2, 2, 4)
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 2, 4\)"):
        layer._state_cuda("h0", DA.borrow(0x80000, (4, 2, 4), "float32", None, device=0), 2, False)
    with pytest.raises(TypeError, match="h0 is a device array of dtype float64"):
        layer._state_cuda("h0", DA.borrow(0x80000, (2, 2, 4), "float64", None, device=0), 2, False)
    assert layer._state_cuda("h0", DA.borrow(0x80000, (2, 4), "float32", None, device=0),
                             1, True).shape == (2, 1, 4)


# ---- host copies of parameters (any device) ------------------------------------------------------

def test_numpy_params_and_load():
    layer = pyrnn.GRU(3, 4, reset_after=True, seed=1)
    p = layer.numpy_params()
    assert set(p) == set(layer.params)
    for k, v in p.items():
        np.testing.assert_array_equal(v, layer.params[k])
        v += 1  # a copy
    assert not np.array_equal(p["weight_ih_l0"], layer.params["weight_ih_l0"])
    layer.load_params({"weight_ih_l0": p["weight_ih_l0"]})
    np.testing.assert_array_equal(layer.params["weight_ih_l0"], p["weight_ih_l0"])
    with pytest.raises(KeyError, match="unknown parameter"):
        layer.load_params({"nope": 1})
    with pytest.raises(ValueError, match="must have shape"):
        layer.load_params({"bias_l0": np.zeros(3)})
    g = layer.numpy_grads()
    assert all(not v.any() for v in g.values())


# ---- a source check of the Cython pointer casts -------------------------------------------------

def _untyped_pointer_casts(text):
    """(line, name) of each `<T*>name.attr` whose `name` is not typed as a cdef class (or C struct)
    in its function: Cython then casts the *Python object* holding the attribute, so the pointer
    is the address of that object (a host pointer), not the address the attribute holds."""
    import re
    cast = re.compile(r"<[^<>]*\*>[ (]*([A-Za-z_]\w*)\.[A-Za-z_]")
    found = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        for m in cast.finditer(line.split("#")[0]):
            name = m.group(1)
            if name == "self":
                continue
            declared = re.compile(r"(^|,)\s*" + name + r"\s*(=|,|$)")
            for j in range(i, -1, -1):
                d = re.match(r"\s*cdef\s+(?!object\b)[A-Za-z_][\w\[\]]*\**\s+(.*)", lines[j])
                if d and declared.search(d.group(1)):
                    break  # typed (a cdef class or a C type) in this function
                if re.match(r"\s*(async\s+)?c?p?def\s+[^=]*\(", lines[j]):
                    found.append((i + 1, name))  # reached the function's start
                    break
    return found


def test_cython_pointer_casts_are_of_typed_objects():
    # DeviceArray.permute01 / copy once wrote `cdef void* dst = <void*>out.ptr` with `out`
    # untyped: the kernel got the address of a Python int. On an H200 with HMM that write landed
    # in the host heap (crashes far from the cause); elsewhere it is an illegal address. This
    # check runs without a GPU.
    import pathlib
    root = pathlib.Path(__file__).resolve().parent.parent / "pyrnn"
    bad = {}
    for f in sorted(root.glob("*.pyx")) + sorted(root.glob("*.pxi")):
        hits = _untyped_pointer_casts(f.read_text())
        if hits:
            bad[f.name] = hits
    assert not bad, f"pointer casts of untyped Python objects (type the variable): {bad}"
    # The check itself finds the pattern it is for, and passes the typed forms.
    assert _untyped_pointer_casts("def f(self):\n    out = g()\n    cdef void* p = <void*>out.ptr\n")
    assert not _untyped_pointer_casts(
        "def f(self):\n    cdef DeviceArray out = g()\n    cdef void* p = <void*>out.ptr\n")
    assert not _untyped_pointer_casts(
        "def f(self, x):\n    cdef DeviceArray d = x, s = x\n    cdef void* p = <void*>s.ptr\n")


@needs_ext
def test_device_array_extents_must_be_integers():
    # int() used to truncate them silently (2.5 -> 2); NumPy raises TypeError.
    DA = pyrnn.cuda.DeviceArray
    a = DA.borrow(0x23000, (2, 3), "float32", None, device=0)
    for bad in [(2.5,), (2, 1.0), ("3",)]:
        with pytest.raises(TypeError, match="extents must be integers"):
            DA.borrow(0x23000, bad, "float32", None, device=0)
    for args in [(2.7, 3), ((6.0,),), (3.5,)]:
        with pytest.raises(TypeError, match="extents must be integers"):
            a.reshape(*args)
    assert a.reshape(np.int64(3), 2).shape == (3, 2) and a.reshape((6,)).shape == (6,)


def test_model_data_on_a_device_says_fit_takes_host_data():
    # The message told a CUDA model's user to "use a device='cuda' layer".
    class Dev:
        __cuda_array_interface__ = cai()
    model = pyrnn.Sequential([pyrnn.Dense(3, 2, seed=0)])
    class DevLengths:
        __cuda_array_interface__ = cai(shape=(2,), typestr="<i8")
    opt = pyrnn.optim.SGD(model.parameters(), lr=0.1)
    for call in (lambda: model.predict(Dev()),
                 lambda: model.predict(np.zeros((2, 3)), lengths=DevLengths()),
                 lambda: model.fit(np.zeros((2, 3)), np.zeros((2, 2)), loss="mse", optimizer=opt,
                                   epochs=1, verbose=0, lengths=DevLengths()),
                 lambda: model.evaluate(Dev(), np.zeros((2, 2)), loss="mse"),
                 lambda: model.fit(np.zeros((2, 3)), Dev(), loss="mse", optimizer=opt, epochs=1,
                                   verbose=0)):
        with pytest.raises(TypeError, match="fit, evaluate and predict take host data on any "
                                            "device") as e:
            call()
        assert "device='cuda' layer" not in str(e.value)
