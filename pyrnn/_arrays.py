"""Host / device dispatch for the training stack: the few array operations that layers,
optimizers and Sequential need on either a NumPy array or a CUDA device array.

Device arrays are pyrnn.cuda.DeviceArray (anything with ``__cuda_array_interface__`` is
recognised); their kernels come from ``pyrnn.cuda.kernels()`` (the native pyrnn._cuda module,
whose functions mirror pyrnn._train's). Nothing here imports CUDA for host arrays.
"""
import math

import numpy as np

from . import _train
from ._validate import shape_str


def on_device(a):
    """True for a CUDA device array (not for ndarrays or host array-likes)."""
    if a is None or isinstance(a, np.ndarray):
        return False
    from . import cuda
    return cuda.is_device_array(a)


def device_of(a):
    return "cuda" if on_device(a) else "cpu"


def kernels_for(a):
    """The native kernels for `a`: pyrnn._train (host) or pyrnn.cuda.kernels() (device)."""
    if isinstance(a, np.ndarray):
        return _train
    from . import cuda
    return cuda.kernels()


def data_ptr(a):
    """Address of the first element (host or device), to tell arrays apart."""
    if isinstance(a, np.ndarray):
        return a.__array_interface__["data"][0]
    return a.__cuda_array_interface__["data"][0]


def writable(a):
    if isinstance(a, np.ndarray):
        return bool(a.flags.writeable)
    return not a.__cuda_array_interface__["data"][1]


def host(a):
    """A host ndarray copy of a device array; ndarrays are returned as they are."""
    if a is None or isinstance(a, np.ndarray):
        return a
    return a.numpy()


def host_copy(a):
    """A host ndarray copy of a host or device array (always a copy)."""
    return a.copy() if isinstance(a, np.ndarray) else a.numpy()


def to_device(a, dtype=None, device=0):
    from . import cuda
    return cuda.to_device(a, dtype, device)


def zeros_like(a):
    """Zeros of a's shape and dtype on a's device."""
    if isinstance(a, np.ndarray):
        return np.zeros_like(a)
    return to_device(np.zeros(tuple(a.shape), a.dtype), device=a.device)


def copy(a):
    """A new array equal to `a`, on a's device."""
    return a.copy()


def copy_into(dst, src):
    """dst[...] = src, both on one device."""
    if isinstance(dst, np.ndarray):
        np.copyto(dst, src)
    else:
        kernels_for(dst).copy_(dst, src)


def zero_(a):
    if isinstance(a, np.ndarray):
        a[...] = 0
    else:
        kernels_for(a).zero_(a)


def all_finite(a):
    """No NaN or Inf in `a` (on a device: one reduction, a float comes back)."""
    if isinstance(a, np.ndarray):
        return bool(np.isfinite(a).all())
    return math.isfinite(kernels_for(a).max_abs(a.reshape(-1)))


def assign(view, value):
    """Write host data into an ndarray or device view of the same shape."""
    if isinstance(view, np.ndarray):
        view[...] = value
    else:
        view.copy_from(np.asarray(value, dtype=view.dtype).reshape(tuple(view.shape)))


def load_into(views, values):
    """Overwrite the named views from {name: host array} (missing names keep their value): a
    layer's load_params. Unknown names and wrong shapes raise before that entry is written."""
    for name, value in values.items():
        if name not in views:
            raise KeyError(f"unknown parameter {name!r}; expected one of {list(views)}")
        want = tuple(views[name].shape)
        arr = np.asarray(value)
        if tuple(arr.shape) != want:
            raise ValueError(f"{name} must have shape {shape_str(want)}, "
                             f"got {shape_str(arr.shape)}")
        assign(views[name], arr)
