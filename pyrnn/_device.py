"""Pure-Python parts of the device-array interop (no CUDA needed, so they are testable anywhere).

- parse_cuda_array_interface(d): validates a ``__cuda_array_interface__`` dict (versions 0-3)
  and returns a CAI record; pyrnn accepts C-contiguous float32 / float64 / int64 data only.
- is_device_array(obj): whether obj is device memory (CUDA array interface, or DLPack on a
  CUDA device), as opposed to host data that NumPy can read.
"""
from collections import namedtuple
import math
import numbers

import numpy as np

# DLPack device types (dlpack.h, DLDeviceType).
kDLCPU = 1
kDLCUDA = 2
kDLCUDAHost = 3
kDLCUDAManaged = 13

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64))

CAI = namedtuple("CAI", "ptr shape dtype readonly stream")
CAI.__doc__ = """A validated __cuda_array_interface__: ptr (int), shape (tuple of ints), dtype
(numpy dtype, native byte order), readonly (bool), stream (int or None: the producer's stream
to synchronize before reading)."""


def _shape_str(shape):
    return "(" + ", ".join(str(s) for s in shape) + ")"


def parse_cuda_array_interface(d):
    """Validate a __cuda_array_interface__ dict; return a CAI or raise TypeError/ValueError.

    Accepted: version 0..3; shape a tuple of non-negative ints; typestr one of float32,
    float64, int64 in native (little-endian) order; data (ptr, readonly) with an int ptr
    (0 only for an empty array); strides None or the C-contiguous strides (dimensions of
    size 1 may carry any stride); no mask; stream None or an int other than 0 (v3: 0 is
    ambiguous and disallowed).
    """
    if not isinstance(d, dict):
        raise TypeError(f"__cuda_array_interface__ must be a dict, got {type(d).__name__}")
    for key in ("shape", "typestr", "data", "version"):
        if key not in d:
            raise ValueError(f"__cuda_array_interface__ lacks the required key {key!r}")
    version = d["version"]
    if isinstance(version, bool) or not isinstance(version, numbers.Integral) or not 0 <= version <= 3:
        raise ValueError(f"unsupported __cuda_array_interface__ version {version!r} (0 to 3)")
    shape = d["shape"]
    if not isinstance(shape, (tuple, list)) or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in shape):
        raise ValueError(f"__cuda_array_interface__ shape must be a tuple of ints, got {shape!r}")
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"__cuda_array_interface__ shape has a negative extent: {_shape_str(shape)}")
    typestr = d["typestr"]
    if not isinstance(typestr, str):
        raise ValueError(f"__cuda_array_interface__ typestr must be a str, got {typestr!r}")
    try:
        dtype = np.dtype(typestr)
    except TypeError:
        raise ValueError(f"__cuda_array_interface__ typestr {typestr!r} is not a valid type") from None
    if not dtype.isnative:
        raise TypeError(f"device arrays must be in native byte order, got typestr {typestr!r}")
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"device arrays must be float32, float64 or int64, got {dtype} "
                        f"(typestr {typestr!r})")
    data = d["data"]
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"__cuda_array_interface__ data must be (ptr, readonly), got {data!r}")
    ptr, readonly = data
    if isinstance(ptr, bool) or not isinstance(ptr, numbers.Integral) or ptr < 0:
        raise ValueError(f"__cuda_array_interface__ data pointer must be a non-negative int, "
                         f"got {ptr!r}")
    size = math.prod(shape)  # Python ints: np.prod wraps, (2**32, 2**32) gave 0
    if size * dtype.itemsize > 2**63 - 1:
        raise ValueError(f"__cuda_array_interface__ shape {_shape_str(shape)} of {dtype} is "
                         "larger than any address space")
    if ptr == 0 and size > 0:
        raise ValueError("__cuda_array_interface__ data pointer is NULL for a non-empty array")
    if ptr % dtype.itemsize:
        # Kernels and cuBLAS would fault on it (cudaErrorMisalignedAddress, which is sticky:
        # the whole process's CUDA context, torch's and CuPy's included, would be lost).
        raise ValueError(f"__cuda_array_interface__ data pointer {ptr:#x} is not aligned to "
                         f"the {dtype.itemsize}-byte elements of {dtype} (copy the array first)")
    strides = d.get("strides")
    if strides is not None:
        if not isinstance(strides, (tuple, list)) or len(strides) != len(shape):
            raise ValueError(f"__cuda_array_interface__ strides {strides!r} do not match shape "
                             f"{_shape_str(shape)}")
        if not all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in strides):
            # (4.0 passed as 4: the producer is not speaking the interface)
            raise ValueError(f"__cuda_array_interface__ strides must be ints, got {strides!r}")
        expect = dtype.itemsize
        for extent, stride in zip(reversed(shape), reversed(tuple(strides))):
            # An empty array has no layout: any strides are valid.
            if extent != 1 and stride != expect and size > 0:
                raise ValueError(f"device arrays must be C-contiguous; got strides "
                                 f"{tuple(strides)} for shape {_shape_str(shape)} and "
                                 f"itemsize {dtype.itemsize} (make a contiguous copy first)")
            expect *= extent
    if d.get("mask") is not None:
        raise ValueError("masked device arrays (__cuda_array_interface__ mask) are not supported")
    stream = d.get("stream") if version >= 3 else None
    if stream is not None:
        if isinstance(stream, bool) or not isinstance(stream, numbers.Integral):
            raise ValueError(f"__cuda_array_interface__ stream must be an int or None, got {stream!r}")
        if stream == 0:
            raise ValueError("__cuda_array_interface__ stream 0 is disallowed (ambiguous); use 1 "
                             "for the legacy default stream or 2 for the per-thread one")
        if stream < 0:
            raise ValueError(f"__cuda_array_interface__ stream must be a stream handle (1, 2 or "
                             f"a pointer), got {stream}")
        stream = int(stream)
    return CAI(int(ptr), shape, dtype, bool(readonly), stream)


def is_device_array(obj):
    """True for device memory: __cuda_array_interface__, or __dlpack__ with a CUDA device.

    NumPy arrays (and anything NumPy-readable) are host data. Objects whose DLPack device
    is the CPU are host data too.
    """
    if isinstance(obj, np.ndarray):
        return False
    if hasattr(type(obj), "__cuda_array_interface__") or hasattr(obj, "__cuda_array_interface__"):
        try:
            obj.__cuda_array_interface__
            return True
        except (AttributeError, TypeError):  # e.g. a CPU torch tensor raises here
            pass
    dev = getattr(obj, "__dlpack_device__", None)
    if dev is not None:
        try:
            kind = int(dev()[0])
        except Exception:
            return False
        return kind in (kDLCUDA, kDLCUDAManaged)
    return False
