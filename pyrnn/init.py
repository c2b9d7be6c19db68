"""Weight initialisers acting IN PLACE on ndarrays (or a Parameter's data), with
torch.nn.init's distributions. Each takes ``rng=`` (a numpy.random.Generator) or ``seed=``
(an int) for reproducibility (neither: fresh OS entropy) and returns the array. A CUDA layer's
parameters (pyrnn.cuda.DeviceArray) are initialised on the host and copied over: the same
values a CPU layer gets from the same rng.

    w = layer.params["weight"]
    pyrnn.init.xavier_uniform_(w, seed=0)
    pyrnn.init.orthogonal_(lstm.params["weight_hh_l0"], rng=np.random.default_rng(1))

Fans follow PyTorch: for a (out, in, *k) array fan_in = in * prod(k), fan_out = out * prod(k).
The arguments are torch's, names included (`tensor`; uniform_'s `a`, `b`; constant_'s `val`;
kaiming's slope `a`), so torch code such as ``kaiming_uniform_(w, a=math.sqrt(5))`` runs as is.
"""
from __future__ import annotations

import functools
import math
import numbers
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional, ParamSpec, TypeVar, Union

import numpy as np

from ._validate import as_float, cast_finite, host_asarray, seed_arg
from .parameter import Parameter, owners_held

if TYPE_CHECKING:
    import numpy.typing as npt

    from ._cuda import DeviceArray
    from ._typing import Array, Real, Seed

    # What the initialisers fill in place: a float ndarray, a DeviceArray (filled on the host
    # and copied over) or a Parameter (its data). They return the array filled (a Parameter's
    # data), whose kind the Parameter's device decides: hence Array, not the argument's type.
    _Target = Union[npt.NDArray[Any], DeviceArray, Parameter]
    _Rng = Optional[np.random.Generator]
    Nonlinearity = Literal["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                           "conv_transpose2d", "conv_transpose3d", "sigmoid", "tanh", "relu",
                           "leaky_relu", "selu"]

__all__ = ["calculate_gain", "uniform_", "normal_", "constant_", "zeros_", "ones_",
           "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
           "he_uniform_", "he_normal_", "orthogonal_"]


def _target(a: Any, repeats_ok: bool = False) -> npt.NDArray[Any]:
    if isinstance(a, Parameter):
        a = a.data
    if not isinstance(a, np.ndarray):
        raise TypeError(f"init functions act in place on an ndarray or Parameter, got "
                        f"{type(a).__name__}")
    if a.dtype.kind != "f":
        raise TypeError(f"init needs a floating-point array, got dtype {a.dtype}")
    if not a.flags.writeable:
        raise ValueError("init needs a writable array")
    if not repeats_ok and a.size and any(st == 0 and n > 1 for st, n in zip(a.strides, a.shape)):
        # (a broadcast view: its elements share memory, so no random draw holds what it
        # promises; torch's random initialisers refuse it too, its constant_ fills it)
        raise ValueError(f"init needs an array whose elements have memory of their own; this "
                         f"one repeats memory along an axis (strides {a.strides}, shape "
                         f"{a.shape}): give a copy")
    return a


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _device_aware(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Runs `fn` on a host copy of a device array, then writes the values back. A Parameter
    tells its layer of the write (parameter.ParamWrites)."""
    def run(tensor, *args, **kwargs):
        target = tensor.data if isinstance(tensor, Parameter) else tensor
        if isinstance(target, np.ndarray):
            return fn(tensor, *args, **kwargs)
        from ._arrays import on_device
        if not on_device(target):
            return fn(tensor, *args, **kwargs)  # _target raises its TypeError
        # A foreign device array (CuPy, a torch CUDA tensor) through a zero-copy DeviceArray
        # view, so it is filled in place as torch.nn.init fills any tensor (it has no
        # .numpy() / .copy_from(): an AttributeError before).
        from . import cuda
        view = cuda._usable_view("tensor", target)
        host = view.numpy()
        fn(host, *args, **kwargs)
        view.copy_from(host)
        return target

    # (The array is `tensor`, torch's name, so torch's keywords, `a=` among them, reach fn.)
    @functools.wraps(fn)
    def wrapper(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(tensor, Parameter):
            return run(tensor, *args, **kwargs)
        tensor._check_attached(f"pyrnn.init.{fn.__name__}")
        with owners_held([tensor]):  # (not while its layer runs in another thread)
            result = run(tensor, *args, **kwargs)
        tensor._changed()
        return result
    return wrapper  # type: ignore[return-value]


def _rng(rng, seed):
    if rng is not None and seed is not None:
        raise TypeError("pass rng= or seed=, not both")
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return rng
    return np.random.default_rng(seed_arg("seed", seed))


def _number(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite number, got {type(value).__name__}")
    v = as_float(name, value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return v


def _gain(gain):
    """A scale factor of a distribution's width: >= 0 (NumPy's "high - low < 0" named nothing;
    torch refuses it too)."""
    gain = _number("gain", gain)
    if gain < 0:
        raise ValueError(f"gain must be >= 0, got {gain}")
    return gain


def _fans(a):
    if a.ndim < 2:
        raise ValueError(f"fan in and fan out need an array of at least 2 dimensions, got "
                         f"shape {a.shape}")
    receptive = int(np.prod(a.shape[2:])) if a.ndim > 2 else 1
    return a.shape[1] * receptive, a.shape[0] * receptive


def calculate_gain(nonlinearity: Nonlinearity, param: Optional[Real] = None) -> float:
    """torch.nn.init.calculate_gain: linear/conv/sigmoid 1, tanh 5/3, relu sqrt(2),
    leaky_relu sqrt(2 / (1 + slope^2)) (slope default 0.01), selu 3/4."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                        "conv_transpose2d", "conv_transpose3d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, bool) or not isinstance(param, numbers.Real):
            raise ValueError(f"negative_slope {param} is not a valid number")
        elif not math.isfinite(as_float("negative_slope", param)):
            raise ValueError(f"negative_slope must be a finite number, got {param}")
        else:
            slope = float(param)
        try:
            return math.sqrt(2.0 / (1 + slope ** 2))  # (torch's expression: the same bits)
        except OverflowError:  # |slope| > 1e154: the value without squaring the slope
            return math.sqrt(2.0) / math.hypot(1.0, slope)  # (within an ulp of it)
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def _fill(a, values):
    # Values a float32 parameter cannot hold (a gain of 1e39) are a ValueError, as every
    # parameter write; numpy's cast would store Inf with only a warning.
    a[...] = cast_finite("the initial values", values, a.dtype)
    return a


@_device_aware
def uniform_(tensor: _Target, a: Real = 0.0, b: Real = 1.0, *, rng: _Rng = None,
             seed: Seed = None) -> Array:
    """U(a, b) (torch.nn.init.uniform_'s arguments)."""
    t = _target(tensor)
    low, high = _number("a", a), _number("b", b)
    if high < low:
        raise ValueError(f"uniform_ needs a <= b, got a={low}, b={high}")
    if not math.isfinite(high - low):  # NumPy's OverflowError would name neither
        raise ValueError(f"uniform_ needs a finite b - a, got a={low}, b={high}")
    return _fill(t, _rng(rng, seed).uniform(low, high, size=t.shape))


@_device_aware
def normal_(tensor: _Target, mean: Real = 0.0, std: Real = 1.0, *, rng: _Rng = None,
            seed: Seed = None) -> Array:
    a = _target(tensor)
    mean, std = _number("mean", mean), _number("std", std)
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    return _fill(a, _rng(rng, seed).normal(mean, std, size=a.shape))


@_device_aware
def constant_(tensor: _Target, val: npt.ArrayLike) -> Array:
    value = host_asarray("val", val)
    # (one value fills a view repeating memory, as torch's; varying ones cannot)
    a = _target(tensor, repeats_ok=value.size == 1)
    if value.dtype.kind not in "biuf":  # (complex would lose its imaginary part)
        raise TypeError(f"constant_ needs a real value, got {value.dtype} {value!r}")
    return _fill(a, np.broadcast_to(value, a.shape))


@_device_aware
def zeros_(tensor: _Target) -> Array:
    return constant_(tensor, 0.0)


@_device_aware
def ones_(tensor: _Target) -> Array:
    return constant_(tensor, 1.0)


@_device_aware
def xavier_uniform_(tensor: _Target, gain: Real = 1.0, *, rng: _Rng = None,
                    seed: Seed = None) -> Array:
    """U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    a = _target(tensor)
    gain = _gain(gain)
    fan_in, fan_out = _fans(a)
    if a.size == 0:
        return a  # nothing to fill (and no fan to divide by), as torch's kaiming_*
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return _fill(a, _rng(rng, seed).uniform(-bound, bound, size=a.shape))


@_device_aware
def xavier_normal_(tensor: _Target, gain: Real = 1.0, *, rng: _Rng = None,
                   seed: Seed = None) -> Array:
    """N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    a = _target(tensor)
    gain = _gain(gain)
    fan_in, fan_out = _fans(a)
    if a.size == 0:
        return a
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return _fill(a, _rng(rng, seed).normal(0.0, std, size=a.shape))


def _kaiming_std(t, slope, mode, nonlinearity):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(t)
    fan = fan_in if mode == "fan_in" else fan_out
    gain = calculate_gain(nonlinearity, _number("a (the leaky_relu negative slope)", slope))
    return gain / math.sqrt(fan) if fan else 0.0


@_device_aware
def kaiming_uniform_(tensor: _Target, a: Real = 0.0,
                     mode: Literal["fan_in", "fan_out"] = "fan_in",
                     nonlinearity: Nonlinearity = "leaky_relu", *, rng: _Rng = None,
                     seed: Seed = None) -> Array:
    """U(-b, b), b = gain * sqrt(3 / fan) (He et al. 2015); `a` is the leaky_relu slope, as
    in torch (default 0 -> gain sqrt(2); torch's nn.Linear uses a = sqrt(5))."""
    t = _target(tensor)
    bound = math.sqrt(3.0) * _kaiming_std(t, a, mode, nonlinearity)
    if t.size == 0:
        return t
    return _fill(t, _rng(rng, seed).uniform(-bound, bound, size=t.shape))


@_device_aware
def kaiming_normal_(tensor: _Target, a: Real = 0.0,
                    mode: Literal["fan_in", "fan_out"] = "fan_in",
                    nonlinearity: Nonlinearity = "leaky_relu", *, rng: _Rng = None,
                    seed: Seed = None) -> Array:
    """N(0, std^2), std = gain / sqrt(fan); `a` as in kaiming_uniform_."""
    t = _target(tensor)
    std = _kaiming_std(t, a, mode, nonlinearity)
    if t.size == 0:
        return t
    return _fill(t, _rng(rng, seed).normal(0.0, std, size=t.shape))


he_uniform_ = kaiming_uniform_
he_normal_ = kaiming_normal_




@_device_aware
def orthogonal_(tensor: _Target, gain: Real = 1.0, *, rng: _Rng = None,
                seed: Seed = None) -> Array:
    """(Semi-)orthogonal matrix times gain (Saxe et al. 2013), torch.nn.init.orthogonal_: the
    array viewed as (rows, numel / rows) gets orthonormal rows (rows <= cols) or columns,
    from the QR decomposition of a Gaussian matrix with the signs of R's diagonal fixed
    (so the result is Haar-distributed)."""
    a = _target(tensor)
    gain = _number("gain", gain)
    if a.ndim < 2:
        raise ValueError(f"orthogonal_ needs an array of at least 2 dimensions, got shape {a.shape}")
    if a.size == 0:
        return a
    rows = a.shape[0]
    cols = a.size // rows
    flat = _rng(rng, seed).standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    d = np.sign(np.diag(r))
    d[d == 0] = 1.0
    q = q * d
    if rows < cols:
        q = q.T
    return _fill(a, (gain * q).reshape(a.shape))  # (a gain of 1e39: refused, as elsewhere)

