"""The CUDA backend, loaded lazily: `import pyrnn` never needs a GPU or CUDA libraries.

The extension pyrnn._cuda links cuBLAS dynamically. When cuBLAS comes from the nvidia-cublas
wheel it is not on the loader path, so it is preloaded from there first.
"""
import ctypes
import glob
import importlib
import importlib.util
import os

_module = None
_error = None
_loaded = False


def is_compiled():
    """True if this build of pyrnn includes the CUDA backend."""
    return importlib.util.find_spec("pyrnn._cuda") is not None


def _preload_cublas():
    try:
        import nvidia  # namespace package of the nvidia-* wheels
    except ImportError:
        return
    for root in list(getattr(nvidia, "__path__", [])):
        for pattern in ("cu*/lib/libcublasLt.so.*", "cu*/lib/libcublas.so.*",
                        "cublas/lib/libcublasLt.so.*", "cublas/lib/libcublas.so.*"):
            for lib in sorted(glob.glob(os.path.join(root, pattern))):
                try:
                    ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
                except OSError:
                    pass


def _load():
    global _module, _error, _loaded
    if _loaded:
        return _module
    _loaded = True
    if not is_compiled():
        _error = "pyrnn was built without the CUDA backend (PYRNN_WITH_CUDA=OFF or nvcc/cuBLAS not found)"
        return None
    _preload_cublas()
    try:
        _module = importlib.import_module("pyrnn._cuda")
    except ImportError as e:
        _error = f"the CUDA backend could not be loaded: {e}"
        return None
    reason = _module.unavailable_reason()
    if reason:
        _error = reason
    return _module


def unavailable_reason():
    """None if a CUDA device is usable, else why not (a readable sentence)."""
    _load()
    return _error


def device_count():
    mod = _load()
    return 0 if mod is None else mod.device_count()


def is_available():
    return device_count() > 0


def device_names():
    mod = _load()
    return [] if mod is None else [mod.device_name(i) for i in range(mod.device_count())]


def synchronize():
    """Wait for all work on the current device (no-op without one)."""
    mod = _load()
    if mod is not None and mod.device_count() > 0:
        mod.synchronize()


# ---- device arrays ---------------------------------------------------------------------------
from ._device import is_device_array, parse_cuda_array_interface  # noqa: E402,F401


def _need():
    mod = _load()
    if mod is None:
        raise RuntimeError(f"the CUDA backend is unavailable: {_error}")
    return mod


def as_device_array(obj):
    """Zero-copy pyrnn.cuda.DeviceArray view of a device array: a DeviceArray, a CUDA
    ``__dlpack__`` (preferred when offered: stream-ordered) or ``__cuda_array_interface__``
    (CuPy, Numba, PyTorch CUDA tensors). The view keeps the producer alive. TypeError for
    host data; ValueError for non-contiguous arrays."""
    return _need().as_device_array(obj)


def from_dlpack(obj):
    """Zero-copy DeviceArray over an object exporting a CUDA DLPack tensor."""
    return _need().from_dlpack(obj)


def from_cuda_array_interface(obj):
    """Zero-copy DeviceArray over an object exposing ``__cuda_array_interface__``. A v3 stream
    is synchronized; older versions (no stream information) synchronize the device."""
    return _need().from_cuda_array_interface(obj)


def to_device(array, dtype=None):
    """Owning DeviceArray copy of a host array (NumPy or anything array-like)."""
    return _need().DeviceArray.from_numpy(array, dtype)


def kernels():
    """The native device kernels of the training stack (the pyrnn._cuda module: Dense,
    LayerNorm, Embedding, Dropout, LastStep, optimizer steps, norms; the twins of pyrnn._train's
    functions over DeviceArrays). pyrnn.layers / optim / model call it for device arrays."""
    return _need()


def __getattr__(name):
    # pyrnn.cuda.DeviceArray / NativeRecurrentCUDA load the extension on first use.
    if name in ("DeviceArray", "NativeRecurrentCUDA"):
        return getattr(_need(), name)
    raise AttributeError(f"module 'pyrnn.cuda' has no attribute {name!r}")
