"""The CUDA backend, loaded lazily: `import pyrnn` never needs a GPU or CUDA libraries.

The extension pyrnn._cuda links cuBLAS dynamically. When cuBLAS comes from the nvidia-cublas
wheel it is not on the loader path, so it is preloaded from there first.
"""
from __future__ import annotations

import ctypes
import glob
import importlib
import importlib.util
import os
import threading
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

if TYPE_CHECKING:  # what __getattr__ below loads at run time, for type checkers
    from types import ModuleType

    import numpy.typing as npt

    from ._cuda import DeviceArray, NativeRecurrentCUDA  # noqa: F401
    from ._typing import DeviceArrayLike, SupportsCudaArrayInterface, SupportsDLPackDevice
    from .recurrent import GRU, LSTM, RNN

    _Default = Literal["default"]

_module = None
_error = None
_loaded = False
_load_lock = threading.Lock()


def _new_lock_in_child():
    # A fork while another thread held the lock (during the first load) would leave it held
    # in the child for good.
    global _load_lock
    _load_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def is_compiled() -> bool:
    """True if this build of pyrnn includes the CUDA backend."""
    return importlib.util.find_spec("pyrnn._cuda") is not None


def _preload_cublas():
    """Load libcublas(Lt) globally before pyrnn._cuda, from PYRNN_CUBLAS_ROOT (the folder a
    build used: lib/libcublas.so.N) when set, and from the nvidia-cublas wheels."""
    roots = []
    given = os.environ.get("PYRNN_CUBLAS_ROOT")
    if given:
        for lib in ("libcublasLt.so.*", "libcublas.so.*"):
            roots += sorted(glob.glob(os.path.join(given, "lib*", lib)))
    for lib in roots:
        try:
            ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            pass
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
    global _loaded
    if _loaded:
        return _module
    with _load_lock:  # the first call from several threads: one loads, the rest wait for it
        if not _loaded:
            try:
                _load_module()
            finally:
                _loaded = True  # after _module / _error are set: never half a load seen
    return _module


def _load_module():
    global _module, _error
    if not is_compiled():
        _error = "pyrnn was built without the CUDA backend (PYRNN_WITH_CUDA=OFF or nvcc/cuBLAS not found)"
        return
    _preload_cublas()
    try:
        module = importlib.import_module("pyrnn._cuda")
    except ImportError as e:
        given = os.environ.get("PYRNN_CUBLAS_ROOT")
        hint = ("" if "cublas" not in str(e) else
                f" (PYRNN_CUBLAS_ROOT={given} has no loadable lib/ copy of it)" if given else
                " (install nvidia-cublas beside pyrnn, or set PYRNN_CUBLAS_ROOT to the folder "
                "holding lib/libcublas.so.N)")
        _error = f"the CUDA backend could not be loaded: {e}{hint}"
        return
    from . import _core
    module._use_runtime_state(_core._runtime_state())  # one ISA / thread count (pyrnn/__init__)
    _error = module.unavailable_reason() or None
    _module = module


def unavailable_reason() -> Optional[str]:
    """None if a CUDA device is usable, else why not (a readable sentence)."""
    _load()
    return _error


def device_count() -> int:
    mod = _load()
    return 0 if mod is None else mod.device_count()


def is_available() -> bool:
    return device_count() > 0


def device_names() -> list[str]:
    mod = _load()
    return [] if mod is None else [mod.device_name(i) for i in range(mod.device_count())]


def synchronize() -> None:
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


def as_device_array(obj: DeviceArrayLike) -> DeviceArray:
    """Zero-copy pyrnn.cuda.DeviceArray view of a device array: a DeviceArray, a CUDA
    ``__dlpack__`` (preferred when offered: stream-ordered) or ``__cuda_array_interface__``
    (CuPy, Numba, PyTorch CUDA tensors). The view keeps the producer alive. TypeError for
    host data; ValueError for non-contiguous arrays."""
    return _need().as_device_array(obj)


def _usable_view(name: str, obj: DeviceArrayLike) -> DeviceArray:
    """as_device_array(obj) for a caller that reads a device array given where host data is
    usual (a loss's pred, pyrnn.init's tensor): without a usable device, a RuntimeError naming
    `name` and why, not a CUDA runtime error from deep inside."""
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(f"{name} is a CUDA device array ({type(obj).__name__}), but no "
                           f"CUDA device is usable: {reason}")
    return as_device_array(obj)


def from_dlpack(obj: SupportsDLPackDevice) -> DeviceArray:
    """Zero-copy DeviceArray over an object exporting a CUDA DLPack tensor."""
    return _need().from_dlpack(obj)


def from_cuda_array_interface(obj: SupportsCudaArrayInterface) -> DeviceArray:
    """Zero-copy DeviceArray over an object exposing ``__cuda_array_interface__``. A v3 stream
    is synchronized; older versions (no stream information) synchronize the device."""
    return _need().from_cuda_array_interface(obj)


def to_device(array: npt.ArrayLike, dtype: Optional[npt.DTypeLike] = None,
              device: int = 0) -> DeviceArray:
    """Owning DeviceArray copy of a host array (NumPy or anything array-like) on `device`."""
    return _need().DeviceArray.from_numpy(array, dtype, device)


def kernels() -> ModuleType:
    """The native device kernels of the training stack (the pyrnn._cuda module: Dense,
    LayerNorm, Embedding, Dropout, LastStep, optimizer steps, norms; the twins of pyrnn._train's
    functions over DeviceArrays). pyrnn.layers / optim / model call it for device arrays."""
    return _need()


class _Unavailable(type):
    def __getattr__(cls, name: str) -> Any:
        _need()  # raises, saying why the backend is unavailable
        raise AttributeError(name)


class _DeviceArrayUnavailable(metaclass=_Unavailable):
    """pyrnn.cuda.DeviceArray where the CUDA backend is not built or cannot load: no device
    array can exist, so isinstance(x, pyrnn.cuda.DeviceArray) is simply False (it raised
    RuntimeError, breaking user code that tells host from device arrays on a CPU-only
    install); making one (DeviceArray.empty, from_numpy, ...) raises why."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return _need().DeviceArray(*args, **kwargs)


_DeviceArrayUnavailable.__name__ = _DeviceArrayUnavailable.__qualname__ = "DeviceArray"


def __getattr__(name: str) -> Any:
    # pyrnn.cuda.DeviceArray / NativeRecurrentCUDA load the extension on first use.
    if name == "DeviceArray" and _load() is None:
        return _DeviceArrayUnavailable
    if name in ("DeviceArray", "NativeRecurrentCUDA"):
        return getattr(_need(), name)
    raise AttributeError(f"module 'pyrnn.cuda' has no attribute {name!r}")


# ---- execution options (docs/cuda_performance.md) --------------------------------------------
# Process-wide defaults start from the environment (PYRNN_CUDA_PRECISION, PYRNN_CUDA_RECURRENT,
# PYRNN_CUDA_GRAPHS, PYRNN_CUDA_STREAMS, PYRNN_CUDA_PERSIST_BLOCKS); each CUDA layer can override
# them (configure). None of them changes what is computed; precision="tf32" changes how exactly.
_LAYER_KEYS = ("precision", "algo", "graphs", "streams", "persist_blocks")


def options() -> dict[str, Any]:
    """The process-wide CUDA defaults: {'precision', 'algo', 'graphs', 'streams',
    'persist_blocks'} (resolved: never 'default')."""
    return _need().default_options()


def set_precision(precision: Union[Literal["float32", "tf32"], _Default, None]) -> None:
    """Float32 GEMM precision for CUDA layers: "float32" (default: true fp32) or "tf32"
    (tensor cores, operands rounded to 10 mantissa bits, fp32 accumulation: relative error near
    3e-4; see docs/cuda_performance.md), or "default" for the environment's
    PYRNN_CUDA_PRECISION (None too, as for set_graphs). float64 layers are always exact."""
    _need().set_default_options(precision="default" if precision is None else precision)


def get_precision() -> str:
    return options()["precision"]


def set_recurrent_algo(
        algo: Union[Literal["auto", "cublas", "fused", "persistent"], _Default, None]) -> None:
    """How the per-step recurrence runs: "auto" (default; cuBLAS for now), "cublas" (a cuBLAS
    GEMM + a fused pointwise kernel per step), "fused" (one custom kernel per step), "persistent"
    (one kernel for all steps, falls back to cuBLAS where it does not fit), or "default" /
    None for PYRNN_CUDA_RECURRENT."""
    _need().set_default_options(algo="default" if algo is None else algo)


def set_graphs(enabled: Union[bool, _Default, None]) -> None:
    """Capture each direction's step loop into a CUDA graph and replay it (True), launch every
    kernel (False, the built-in default until measured on a GPU), or None / "default" for
    PYRNN_CUDA_GRAPHS."""
    _need().set_default_options(graphs="default" if enabled is None else enabled)


def set_streams(enabled: Union[bool, _Default, None]) -> None:
    """Bidirectional layers: run the reverse direction on a second stream (True), or not (False,
    the built-in default until measured on a GPU); None / "default" for PYRNN_CUDA_STREAMS."""
    _need().set_default_options(streams="default" if enabled is None else enabled)


def set_persist_blocks(blocks: Union[int, _Default, None]) -> None:
    """Blocks of the fused / persistent step kernels of every CUDA layer: 0 (the built-in
    default: chosen from the device), n in [1, 65535], or None / "default" for
    PYRNN_CUDA_PERSIST_BLOCKS. configure(layer, persist_blocks=) sets one layer's."""
    _need().set_default_options(persist_blocks="default" if blocks is None else blocks)


def _cuda_native(layer):
    native = getattr(layer, "_native", None)
    if getattr(layer, "device", None) != "cuda" or native is None:
        raise ValueError(f"{type(layer).__name__} is not a CUDA recurrent layer "
                         f"(device={getattr(layer, 'device', None)!r})")
    return native


def configure(layer: Union[RNN, LSTM, GRU], *,
              precision: Union[Literal["float32", "tf32"], _Default, None] = None,
              algo: Union[Literal["auto", "cublas", "fused", "persistent"], _Default, None] = None,
              graphs: Union[bool, _Default, None] = None,
              streams: Union[bool, _Default, None] = None,
              persist_blocks: Union[int, _Default, None] = None) -> dict[str, Any]:
    """Per-layer CUDA options of an RNN / LSTM / GRU on device="cuda"; a keyword left None keeps
    the layer's setting, "default" makes it follow the process default. Kept across
    layer.to("cpu").to("cuda"). Returns layer_options(layer)."""
    _need()
    native = _cuda_native(layer)
    given = {"precision": precision, "algo": algo, "graphs": graphs, "streams": streams,
             "persist_blocks": persist_blocks}
    native.set_options(**given)
    kept = dict(getattr(layer, "_cuda_options", None) or {})
    kept.update({k: v for k, v in given.items() if v is not None})
    layer._cuda_options = kept  # type: ignore[union-attr]
    return layer_options(layer)


def layer_options(layer: Union[RNN, LSTM, GRU]) -> dict[str, Any]:
    """{'options': the layer's own settings ('default' = follows the process), 'effective':
    resolved against options(), and what its last passes ran: 'last_forward_algo' /
    'last_backward_algo' ('cublas' | 'fused' | 'persistent', after fallbacks; 'default' before
    any), 'last_forward_graphs' / 'last_backward_graphs', 'graphs_disabled_reason'}."""
    _need()
    own, resolved, ran = _cuda_native(layer).options_and_last_run()
    effective = {k: resolved[k] for k in _LAYER_KEYS}
    return {"options": own, "effective": effective, **ran}
