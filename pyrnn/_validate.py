"""Argument checks shared by the Python API: clear exceptions naming shapes and values."""
from __future__ import annotations

import collections.abc
import math
import numbers
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    if value > 2**31 - 1:
        raise ValueError(f"{name} = {value} is too large (max {2**31 - 1})")
    return int(value)


def seed_arg(name: str, seed: Any) -> Optional[int]:
    """None or a non-negative int, what numpy.random.default_rng takes (it would otherwise
    fail with SeedSequence's own words, naming no argument)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an int or None, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"{name} must be >= 0 (or None), got {seed}")
    return int(seed)


def number_text(value: Any) -> str:
    """value for an error message: an int too long to print whole is named by its size."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        bits = int(value).bit_length()
        if bits > 80:
            sign = "-" if value < 0 else ""
            if bits > 13000:  # (str() refuses ints of more than 4300 digits)
                return f"{sign}an integer of about {int(bits * 0.30103) + 1} digits"
            return f"{sign}an integer of {len(str(abs(int(value))))} digits"
    return str(value)


def as_float(name: str, value: Any, why: str = "a finite number") -> float:
    """float(value) of a real number; ValueError (not float()'s OverflowError) for an int
    beyond the float range."""
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{name} must be {why}, got {number_text(value)}") from None


def real_number(name: str, value: Any, low: Optional[float] = 0.0, low_open: bool = False,
                high: Optional[float] = None, high_open: bool = True) -> float:
    """A finite real number in the range given (low None: no lower bound): TypeError for
    another type (bool included), ValueError for a value out of range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    lo = "(-inf" if low is None else f"{'(' if low_open else '['}{low}"
    hi = f"{high}{')' if high_open else ']'}" if high is not None else "inf)"
    v = as_float(name, value, f"in {lo}, {hi}")
    bad = not math.isfinite(v)
    if low is not None:
        bad = bad or (v <= low if low_open else v < low)
    if high is not None:
        bad = bad or (v >= high if high_open else v > high)
    if bad:
        raise ValueError(f"{name} must be in {lo}, {hi}, got {value}")
    return v


def flag(name: str, value: object) -> bool:
    """A constructor switch (bias, batch_first, ...): a bool, or the ints 0 and 1. Anything else
    is a TypeError: bool("no") is True, and bias="no" built a bias without a word."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, numbers.Integral)
                                                and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def train_mode(mode: object) -> bool:
    """The mode train(mode) takes: a bool, as torch.nn.Module.train insists ("False" or
    None would otherwise be coerced, silently)."""
    if not isinstance(mode, (bool, np.bool_)):
        raise TypeError(f"train(mode): mode must be a bool, got {type(mode).__name__}")
    return bool(mode)


def float_dtype(dtype: Any) -> np.dtype[Any]:
    if dtype is None:  # the default, as torch's dtype=None (np.dtype(None) is float64)
        return np.dtype(np.float32)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dt}")
    return dt


def host_only(name, value, takes=None):
    """TypeError for device memory (CUDA array interface / DLPack) handed to a CPU path, or to
    a path that takes host data whatever the device (`takes` says which)."""
    from ._device import is_device_array
    if is_device_array(value):
        why = takes or "this runs on the CPU"
        raise TypeError(f"{name} is a CUDA device array ({type(value).__name__}), but {why}: "
                        "copy it to the host first (e.g. .cpu() / .numpy() / "
                        "pyrnn.cuda.DeviceArray.numpy())"
                        + ("" if takes else ", or use a device='cuda' layer"))


def host_asarray(name: str, value: Any, kind: str = "a real numeric array") -> npt.NDArray[Any]:
    """np.asarray(value), with what NumPy cannot read (a ragged list, a torch tensor that
    requires grad) a TypeError naming `name` (NumPy's ValueError / torch's RuntimeError
    named nothing)."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError, RuntimeError) as e:
        raise TypeError(f"{name} must be {kind}: {e}") from None


def real_array(name: str, value: Any, dtype: npt.DTypeLike) -> npt.NDArray[Any]:
    """value as an ndarray of dtype; TypeError for anything non-numeric (str, object, complex)
    and for device arrays (a CPU layer never reads device memory)."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a real numeric array, got {type(value).__name__}")
    host_only(name, value)
    arr = host_asarray(name, value)  # (ragged lists and the like: a TypeError)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    # order="C", not ascontiguousarray: that one turns a 0-d array into shape (1,), and the
    # shape errors would then name a shape the caller never passed.
    return cast_finite(name, arr, dtype)


def beyond_range(arr, dtype):
    """The largest magnitude of a FINITE value of float array `arr` that narrowing it to `dtype`
    turns into Inf, or None (no narrowing, or nothing overflows). Inf and NaN in arr are not
    counted: they are values of their own, which propagate as in PyTorch."""
    dt = np.dtype(dtype)
    if arr.dtype.kind in "iu" and dt.kind == "f" and arr.size:
        # Integers beyond float16's range (65504) cast to Inf too.
        big = max(abs(int(arr.max())), abs(int(arr.min())))
        with np.errstate(over="ignore"):
            return float(big) if np.isinf(np.float64(big).astype(dt)) else None
    if arr.dtype.kind != "f" or arr.dtype.itemsize <= dt.itemsize or not arr.size:
        return None
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        hi, lo = arr.max(), arr.min()  # two passes, no temporary: the common case ends here
        if all(np.isfinite(v) and np.isfinite(dt.type(v)) for v in (hi, lo)):
            return None
        # An extreme that is Inf, NaN or overflows: look at the elements themselves.
        beyond = np.isfinite(arr) & np.isinf(arr.astype(dt))
    return float(np.abs(arr[beyond]).max()) if beyond.any() else None


def cast_finite(name: str, arr: Any, dtype: npt.DTypeLike) -> npt.NDArray[Any]:
    """ndarray arr as a C-ordered array of dtype; ValueError when narrowing it (float64 to
    float32) would turn a finite value into Inf, which every result would then carry. Free in
    the common case: numpy's cast itself raises the overflow (Inf and NaN cast without one)."""
    try:
        with np.errstate(over="raise"):
            return np.asarray(arr, dtype=dtype, order="C")
    except FloatingPointError:
        big = beyond_range(arr, dtype)
        if big is None:
            raise  # not an overflow: an underflow or invalid the caller's errstate asked about
        raise ValueError(f"{name} has values beyond the {np.dtype(dtype)} range (the largest "
                         f"is {big:.3g}); scale the data or use float64") from None


def shape_str(shape):
    shape = tuple(shape)
    if len(shape) == 1:
        return f"({shape[0]},)"
    return "(" + ", ".join(str(s) for s in shape) + ")"


def check_allocation(nbytes, what):
    """MemoryError, before allocating, when nbytes exceed the machine's memory (the limit the
    C++ core applies too): with overcommit such a request is otherwise granted, and the process
    killed when it touches the pages."""
    from . import _core
    _core.check_allocation(int(nbytes), what)


def lengths_array(lengths: Any, batch: int, steps: int, name: str = "lengths",
                  takes: Optional[str] = None) -> npt.NDArray[np.int64]:
    """lengths as int64 (N,), each in [1, T]; `name` says which in the errors (fit's
    "validation lengths"), `takes` why device arrays are refused (see host_only)."""
    if isinstance(lengths, (str, bytes)):
        raise TypeError(f"{name} must be integers, got {type(lengths).__name__}")
    host_only(name, lengths, takes)
    if (isinstance(lengths, collections.abc.Sequence)
            and not isinstance(lengths, (np.ndarray, memoryview))
            and any(isinstance(v, (bool, np.bool_)) or getattr(v, "dtype", None) == np.bool_
                    or str(getattr(v, "dtype", "")) == "torch.bool" for v in lengths)):
        # (NumPy makes [True, 3] ints: a mask's entries given as lengths, silently 1s)
        raise TypeError(f"{name} must be integers, got a bool in the {type(lengths).__name__}")
    arr = np.asarray(lengths)
    if arr.dtype.kind == "f":
        # Whole numbers in a float array (a float mask's sum(1)) are lengths, as torch's
        # pack_padded_sequence takes them; a fraction, NaN or Inf is refused, not truncated.
        frac = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))
        if frac.size:
            i = int(frac[0])
            value = float(arr.reshape(-1)[i])
            raise ValueError(f"{name} must be whole numbers, got {value!r} at index {i}")
    elif arr.dtype == object and arr.size and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in arr.flat):
        # Python ints beyond int64 (NumPy keeps them as objects): out of range, not "not
        # integers"
        for i, v in enumerate(arr.flat):
            if not 1 <= v <= steps:
                raise ValueError(f"{name}[{i}] = {number_text(v)} is outside [1, {steps}] "
                                 f"(sequence length T = {steps})")
        arr = arr.astype(np.int64)  # (an object array of small ints)
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got dtype {arr.dtype}")
    given = arr.shape
    if arr.ndim == 0:  # one number is accepted for a batch of one
        arr = arr.reshape(1)
    if arr.shape != (batch,):
        # The caller's shape, not the reshaped one: a scalar was never "(1,)".
        got = "a single number, shape ()" if not given else f"shape {shape_str(given)}"
        raise ValueError(f"{name} must have shape ({batch},) (one per sequence), got {got}")
    bad = np.nonzero((arr < 1) | (arr > steps))[0]
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] = {int(arr[i])} is outside [1, {steps}] "
                         f"(sequence length T = {steps})")
    return np.ascontiguousarray(arr, dtype=np.int64)
