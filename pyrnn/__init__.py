"""pyrnn: recurrent networks (RNN, LSTM, GRU) with full backpropagation through time.

C++ core with CPU SIMD kernels, an optional CUDA backend, NumPy in and out.
"""
from __future__ import annotations

import os as _os
from typing import Any as _Any

from . import _core, _train
# One set of runtime settings (ISA, threads, the fork rule) for every extension module: each
# links its own copy of the C++ library, and set_num_threads / set_cpu_isa reached only _core's.
_train._use_runtime_state(_core._runtime_state())
from ._core import Matrix
from .recurrent import GRU, LSTM, RNN

__version__ = _core.version()

# The training stack (DESIGN.md section 4).
from . import callbacks, data, init, losses, optim  # noqa: E402
# pyrnn.cuda.is_available() after a plain `import pyrnn`: the module loads nothing CUDA itself.
from . import cuda  # noqa: E402
from .layers import Dense, Dropout, Embedding, LastStep, LayerNorm  # noqa: E402
from .model import Sequential  # noqa: E402
from .parameter import Parameter  # noqa: E402
from .serialize import load, save  # noqa: E402
# Interop (torch and onnx are optional: imported inside these functions only).
from .interop import from_torch  # noqa: E402
from .onnx_export import export_onnx  # noqa: E402

__all__ = ["RNN", "LSTM", "GRU", "Matrix", "info", "set_num_threads", "get_num_threads",
           "set_cpu_isa", "get_cpu_isa", "get_include", "get_cmake_dir", "__version__",
           "Dense", "Embedding", "Dropout", "LayerNorm", "LastStep", "Sequential", "Parameter",
           "load", "save", "losses", "optim", "init", "callbacks", "cuda", "from_torch",
           "export_onnx"]

_HERE = _os.path.dirname(_os.path.abspath(__file__))


def set_num_threads(n: int) -> None:
    """Threads used by pyrnn's CPU kernels (>= 1)."""
    _core.set_num_threads(n)


def get_num_threads() -> int:
    return _core.get_num_threads()


def set_cpu_isa(name: str) -> None:
    """Select the CPU kernel family: 'scalar', 'avx2' or 'avx512' (ValueError if unsupported).
    The environment variable PYRNN_CPU_ISA sets the initial choice."""
    _core.set_cpu_isa(name)


def get_cpu_isa() -> str:
    return _core.get_cpu_isa()


def get_include() -> str:
    """Folder holding the C++ headers (<pyrnn/pyrnn.h>) of the installed package."""
    return _os.path.join(_HERE, "include")


def get_cmake_dir() -> str:
    """Folder holding pyrnnConfig.cmake: pass as pyrnn_DIR to find_package(pyrnn CONFIG)."""
    return _os.path.join(_HERE, "lib", "cmake", "pyrnn")


def info() -> dict[str, _Any]:
    """Build and runtime facts as a dict. cpu_isa is None, and cpu_isa_error says why, while
    PYRNN_CPU_ISA names no usable ISA (every CPU kernel call then raises that: the passes of
    RNN, LSTM, GRU, Dense and LayerNorm, optimizer steps; until set_cpu_isa). memory_limit is the bytes one request may take (memory_limit_error: why
    PYRNN_MEMORY_LIMIT is refused, every allocating call then failing, or None)."""
    from . import cuda
    try:
        isa, isa_error = _core.get_cpu_isa(), None
    except RuntimeError as e:  # the diagnostic must still run, and say it
        isa, isa_error = None, str(e)
    try:  # (a PYRNN_MEMORY_LIMIT that is no size: every allocating call refuses, says why)
        _core.check_allocation(0, "")
        limit_error = None
    except MemoryError as e:
        limit_error = str(e).split("; refused:")[0]
    return {
        "version": __version__,
        "cpu_isa": isa,
        "cpu_isa_error": isa_error,
        "available_isas": _core.available_isas(),
        "num_threads": _core.get_num_threads(),
        "cpu_wait_policy": _core.cpu_wait_policy(),
        "memory_limit": _core.memory_limit(),
        "memory_limit_error": limit_error,
        "cuda_compiled": cuda.is_compiled(),
        "cuda_available": cuda.is_available(),
        "cuda_devices": cuda.device_names(),
        "cuda_unavailable_reason": cuda.unavailable_reason(),
        "include_dir": get_include(),
        "cmake_dir": get_cmake_dir(),
    }
