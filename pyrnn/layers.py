"""Feed-forward layers of the training stack: Dense, Embedding, Dropout, LayerNorm, LastStep.

Every layer has ``forward`` (also ``__call__``) beside ``backward``, ``params`` / ``grads``
(dicts name -> ndarray whose item assignment copies into the layer's array; gradients
ACCUMULATE until ``zero_grad()``), ``parameters()``
(pyrnn.Parameter views), ``train()`` / ``eval()`` and ``config()`` (the JSON-able
constructor arguments that pyrnn.save / pyrnn.load use). A forward in training mode keeps
what backward needs; eval mode keeps nothing.

Dense, LayerNorm, Embedding and Dropout run their forward and backward in C++ (pyrnn/layers.h
via pyrnn._train). Arrays returned by forward are also the layer's cache: modify a copy. Inputs
stay the caller's: what a training forward keeps of them (x, indices, lengths) is copied when
it could share memory with the caller's array, so changing that array in place before
backward does not change the gradients.

device="cuda" (or ``layer.to("cuda")``): parameters and gradients live on the GPU
(pyrnn.cuda.DeviceArray views in ``params`` / ``grads``; host copies from ``numpy_params()`` /
``numpy_grads()``) and forward / backward run there (pyrnn/cuda/layers.h via pyrnn._cuda). As
for the recurrent layers, NumPy in gives NumPy out (copied), a device array in (DeviceArray,
``__cuda_array_interface__``, CUDA ``__dlpack__``) gives a DeviceArray out, zero-copy.
Embedding's indices and LastStep's lengths are host integers (device ones are copied back).
"""
from __future__ import annotations

import contextlib
import copy
import functools
import math
import numbers
import os
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional, ParamSpec, TypeVar, Union, overload

import numpy as np

from . import _arrays, _attrs, _core, _train
from ._validate import (as_float, check_allocation, flag, float_dtype, host_asarray, host_only,
                        lengths_array, positive_int, real_array, seed_arg, shape_str,
                        train_mode)
from .parameter import (Parameter, ParamWrites, bind_pending, owned, owners_held,
                        refuse_move_in_fit)

if TYPE_CHECKING:
    import numpy.typing as npt
    from typing_extensions import Self

    from ._cuda import DeviceArray
    from ._typing import (Activation, Array, ArrayInput, Device, DeviceArrayLike, FloatDType,
                          HostArray, Int, PathOrBytes, Real, Seed, SupportsWriteBytes)

_busy_lock = threading.Lock()


def _new_busy_lock():
    # A fork() while another thread held the lock would leave it locked in the child forever.
    global _busy_lock
    _busy_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_busy_lock)


@contextlib.contextmanager
def _exclusive(layer):
    """One call at a time per layer (or model): native kernels run without the GIL and write
    the layer's cache and gradients, so a second thread entering the same layer is a
    RuntimeError (use one layer per thread) rather than a silent race. Re-entrant in one thread
    (a model's fit calls its forward). The owner is (process, thread): a fork()ed child, whose
    only thread is not the one that was busy in the parent, has the layer free."""
    me = (os.getpid(), threading.get_ident())
    with _busy_lock:
        owner = layer.__dict__.get("_busy_owner")
        if not isinstance(owner, tuple):  # (a pickle from before kept a bare thread id)
            owner = None
        if owner is not None and owner != me and owner[0] == me[0]:
            what = "model" if hasattr(layer, "layers") else "layer"
            raise RuntimeError(f"this {type(layer).__name__} is already running forward/backward "
                               f"in another thread; use one {what} per thread")
        outer = owner != me
        if outer:
            layer._busy_owner = me
    # An exception (Ctrl-C) landing between here and the finally can leave the owner set; it
    # only ever blocks OTHER threads, so the interrupted thread keeps a usable layer.
    try:
        yield
    finally:
        if outer:
            layer._busy_owner = None


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _one_thread_held(obj):
    """_exclusive over obj and, for a model, every model nested in it: inner.predict() in one
    thread during outer.fit() in another switched the fit's layers to eval mode."""
    models, todo, seen = [], [obj], set()
    while todo:
        m = todo.pop()
        if id(m) in seen:  # (a cycle: the model's own checks report it)
            continue
        seen.add(id(m))
        models.append(m)
        layers = getattr(m, "layers", None)
        if isinstance(layers, list):
            todo.extend(layer for layer in layers if isinstance(layer, Layer)
                        and isinstance(getattr(layer, "layers", None), list))
    return _exclusive(obj) if len(models) == 1 else _all_exclusive(models)


@contextlib.contextmanager
def _all_exclusive(objs):
    with contextlib.ExitStack() as stack:
        for m in objs:
            stack.enter_context(_exclusive(m))
        yield


def _one_thread(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """A method run under _one_thread_held(self): a model's fit / predict / forward / backward,
    train / eval / zero_grad / load_params. (Typed: type checkers see the method's own
    signature through it.)"""
    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _one_thread_held(self):
            return method(self, *args, **kwargs)
    return run  # type: ignore[return-value]


def _check_device(device):
    from .recurrent import _check_device as check
    check(device)
    return device


def _kernels():
    from . import cuda
    return cuda.kernels()


def _device_input(name, value, dtype):
    """(device array, given_on_device) for a CUDA layer. Device arrays are used as they are
    (zero-copy; their dtype must be `dtype`, or float32 / float64 when dtype is None); host data
    is validated as on the CPU (real_array) and uploaded."""
    from . import cuda
    if cuda.is_device_array(value):
        arr = cuda.as_device_array(value)
        if dtype is not None and arr.dtype != dtype:
            raise TypeError(f"{name} is a device array of dtype {arr.dtype}, but the layer is "
                            f"{np.dtype(dtype)}; convert it on the device first")
        if dtype is None and arr.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} is a device array of dtype {arr.dtype}; float32 or float64 "
                            "expected")
        return arr, True
    return cuda.to_device(real_array(name, value, dtype) if dtype is not None else
                          _host_real(value, name)), False


def _host_float(value, name="x"):
    """The dtype a parameter-less layer computes in for host data: the input's float32 /
    float64, anything else (ints, float16) as float32."""
    host_only(name, value)  # (before reading it: a device array's own message, as Dense's)
    dt = host_asarray(name, value).dtype
    # (by kind and size: a big-endian '>f8' is float64 data too, not "anything else")
    return dt.newbyteorder("=") if dt.kind == "f" and dt.itemsize in (4, 8) else \
        np.dtype(np.float32)


def _host_real(value, name="x"):
    """value as a host array of the dtype _host_float picks, a list converted once (not once
    for its dtype and again for the data)."""
    if not isinstance(value, (str, bytes)):  # (real_array names those by their type)
        host_only(name, value)
        value = host_asarray(name, value)
    return real_array(name, value, _host_float(value, name))


def _out(y, device_out):
    return y if device_out else y.numpy()


def _shares_caller_memory(arr, given):
    """Whether arr may be the memory of the caller's `given` (not where np.asarray built it)."""
    if isinstance(given, (list, tuple, numbers.Number)):
        return False
    return not isinstance(given, np.ndarray) or np.may_share_memory(arr, given)


def _private(arr, given):
    """arr, or a copy when it may share memory with the caller's `given`: what a training
    forward keeps for backward must not change if the caller modifies its input in place
    before backward (the recurrent layers copy x too). The copy costs far less than a
    Dense's product; LayerNorm has its kernel make it."""
    return arr.copy() if _shares_caller_memory(arr, given) else arr


def _private_device(arr, given_on_device):
    """The device twin of _private: a device input is the caller's memory (zero-copy)."""
    return arr.copy() if given_on_device else arr


def _check_result(layer, what, shape, dtype):
    """MemoryError before allocating a host result beyond the memory limit, as the recurrent
    layers do: with overcommit a huge np.empty succeeds and the process is killed when the
    kernel touches it. (The message is built only on failure: this runs every call.)"""
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    if nbytes > _core.memory_limit():
        check_allocation(nbytes, f"{layer!r} {what} of shape {shape_str(shape)}")


# Values per float64 block of a table's initial draws (512 KiB: a freed block stays in the
# heap).
_DRAW_BLOCK = 1 << 16


def _draw_block_bytes(shape):
    """Bytes of _drawn's float64 block for a (rows, cols) table."""
    return min(shape[0], max(1, _DRAW_BLOCK // max(1, shape[1]))) * shape[1] * 8


def _drawn(dtype, shape, draw):
    """A (rows, cols) table of `dtype` filled with draw(block_shape) (float64 values), a block
    of rows at a time: the same values as one draw of the whole table (numpy's generators
    fill element by element, in order), without a float64 copy of it (Dense(512, 50000)'s
    build peaked at 293 MiB for a 98 MiB weight)."""
    out = np.empty(shape, dtype)
    rows = max(1, _DRAW_BLOCK // max(1, shape[1]))
    for r0 in range(0, shape[0], rows):
        out[r0:r0 + rows] = draw((min(rows, shape[0] - r0), shape[1]))
    return out


def _seed_arg(seed):
    return seed_arg("seed", seed)


class Layer(ParamWrites):
    """Base of the pure-Python-API layers (the recurrent layers follow the same protocol)."""
    # Layers that take the sequence lengths in forward (Sequential passes them on).
    _takes_lengths = False

    def __init__(self) -> None:
        self.training = True
        self._device = "cpu"
        self._params: dict[str, Any] = {}  # name -> ndarray (DeviceArray on "cuda"), owned by the layer
        self._grads: dict[str, Any] = {}   # name -> same shapes and device; accumulate until zero_grad()
        self._cache: Any = None

    device = _attrs.Device()
    params = _arrays.NamedArrays(
        lambda self: self._params, "parameter",
        """{name: array} of the parameters (writable, the layer's own arrays): ndarrays on the
        CPU, pyrnn.cuda.DeviceArrays on "cuda". Host copies on either: numpy_params().
        ``params[name] = value`` copies value INTO the layer's array (checked: known name, same
        shape, a castable dtype); names cannot be added or removed (pyrnn._arrays.ArrayDict).
        ``layer.params = {...}`` and ``|=`` copy in too.""")
    grads = _arrays.NamedArrays(
        lambda self: self._grads, "gradient",
        """{name: array} of the accumulated gradients; cleared by zero_grad(). Assignment
        copies into the layer's arrays, as for params.""")

    def numpy_params(self) -> dict[str, HostArray]:
        """{name: ndarray} host COPIES of the parameters, on any device."""
        return {k: _arrays.host_copy(v) for k, v in self._params.items()}

    def numpy_grads(self) -> dict[str, HostArray]:
        """{name: ndarray} host COPIES of the accumulated gradients, on any device."""
        return {k: _arrays.host_copy(v) for k, v in self._grads.items()}

    def load_params(self, values: Mapping[str, ArrayInput], *, strict: bool = False) -> None:
        """Overwrite parameters from {name: array} (missing names keep their value; strict=True:
        a KeyError naming them, as torch's load_state_dict). All or nothing: every name, shape
        and dtype is checked before anything is written."""
        strict = flag("strict", strict)
        with owners_held(list(self.parameters())):  # (not while it runs in another thread)
            _arrays.load_into(self._params, values, strict=strict)
        self._params_changed()

    def to(self, device: Device) -> Self:
        """Move parameters and accumulated gradients to "cpu" or "cuda" (in place; returns
        self). The cached forward is dropped, and Parameter views taken before (optimizers)
        keep pointing at the old storage: build optimizers after moving."""
        _check_device(device)
        if device == self.device:
            return self
        refuse_move_in_fit(self)
        move = _arrays.to_device if device == "cuda" else _arrays.host
        # Both moved before either is replaced: a failure leaves the layer whole where it was.
        params = {k: move(v) for k, v in self._params.items()}
        grads = {k: move(v) for k, v in self._grads.items()}
        self._params, self._grads = params, grads
        self._cache = None
        self._device = device
        return self

    def cuda(self) -> Self:
        return self.to("cuda")

    def cpu(self) -> Self:
        return self.to("cpu")

    # ---- copy / pickle ----------------------------------------------------------------------
    # Device arrays cannot be pickled (they are raw pointers): a layer on "cuda" carries host
    # copies of its parameters and gradients and uploads them again, as to() does; its forward
    # cache is not kept (a copy needs its own training forward before backward()). On the CPU
    # this is Python's default.
    def __getstate__(self):
        state = dict(self.__dict__)
        # Neither the forward cache (the last batch's activations, often the input data itself:
        # a pickle 600x the weights) nor the busy mark of a thread inside forward (the copy
        # would refuse every call) belongs to the copy, as for the recurrent layers.
        state["_cache"] = None
        state.pop("_busy_owner", None)
        if self.device != "cpu":
            state["_params"], state["_grads"] = self.numpy_params(), self.numpy_grads()
        return state

    def __setstate__(self, state):
        self.__dict__.update(_attrs.upgrade(type(self), state))
        if self.device != "cpu":  # no GPU here: to()'s clear error
            device, self._device = self.device, "cpu"
            self.to(device)
        bind_pending(self)

    def __copy__(self) -> Self:
        # As the recurrent layers (whose native storage cannot be shared): a copy is
        # independent, on either device.
        return copy.deepcopy(self)

    def parameters(self) -> Iterator[Parameter]:
        """Yields a pyrnn.Parameter (name, data, grad views) per parameter."""
        for name, data in self._params.items():
            yield owned(name, data, self._grads[name], self, name)

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self._params.values()))

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the gradients (set_to_none, torch's keyword, zeroes too: pyrnn's gradients are
        the layer's own arrays, never None)."""
        flag("set_to_none", set_to_none)
        with _exclusive(self):  # refused while another thread's backward accumulates into them
            for g in self._grads.values():
                _arrays.zero_(g)

    def train(self, mode: bool = True) -> Self:
        # The cache of a training forward is kept (as by the recurrent layers and PyTorch's
        # graph): backward() after eval() still differentiates it. An eval forward drops it.
        self.training = train_mode(mode)
        return self

    def eval(self) -> Self:
        return self.train(False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)  # type: ignore[attr-defined]

    def _keep(self, cache):
        """The forward's cache for backward() (None in eval mode), and the parameters' write
        count it belongs to."""
        self._cache = cache
        self._forward_made()

    def _check_backward_ready(self):
        """RuntimeError unless backward() can run (Sequential asks every layer before any runs)."""
        self._need_cache()

    def _need_cache(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward() needs a preceding forward() in "
                               "training mode: it differentiates the layer's LAST forward, and "
                               "there is none, or it ran in eval mode, which keeps no cache "
                               "(call layer.train() before forward)")
        self._check_params_unchanged()
        return self._cache

    # ---- serialization -------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Constructor arguments as a JSON-able dict: type(self)(**config()) rebuilds it."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        return cls(**config)

    @classmethod
    def param_shapes(cls, config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        """{name: shape} the layer built from `config` has, computed without allocating
        (pyrnn.load checks a file's tensors against it before building anything)."""
        return {}

    def save(self, path: Union[PathOrBytes, SupportsWriteBytes]) -> None:
        """Write this layer (config + weights) to one file (as pyrnn.save: a str, bytes or
        path-like path, or a binary file object); pyrnn.load(path) reads it back."""
        from .serialize import save
        save(self, path)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args}{self._device_repr()})"

    def _device_repr(self):
        return "" if self.device == "cpu" else f", device='{self.device}'"


# ---- Dense ----------------------------------------------------------------------------------

class Dense(Layer):
    """y = activation(x W^T + b) over the last axis of an input of any rank (..., in).

    weight (out_features, in_features), bias (out_features,); both initialised as PyTorch's
    nn.Linear, U(-1/sqrt(in), 1/sqrt(in)). activation: None (or "linear", Keras' name for it),
    "relu", "tanh" or "sigmoid".
    device="cuda": cuBLAS GEMMs with a fused bias/activation kernel (values drawn on the host,
    so a CUDA layer starts bitwise equal to a CPU layer with the same seed).
    """

    # Read-only (see _attrs.Fixed): the parameters are sized by them and save() writes them.
    in_features: _attrs.Fixed[int] = _attrs.Fixed()
    out_features: _attrs.Fixed[int] = _attrs.Fixed()
    activation: _attrs.Fixed[Activation] = _attrs.Fixed()
    bias: _attrs.Fixed[bool] = _attrs.Fixed()
    dtype: _attrs.Fixed[np.dtype[Any]] = _attrs.Fixed()
    seed: _attrs.Fixed[Optional[int]] = _attrs.Fixed()

    def __init__(self, in_features: Int, out_features: Int, activation: Activation = None, *,
                 bias: bool = True, dtype: FloatDType = "float32", seed: Seed = None,
                 device: Device = "cpu") -> None:
        super().__init__()
        self._in_features = positive_int("in_features", in_features)
        self._out_features = positive_int("out_features", out_features)
        if isinstance(activation, str) and activation == "linear":  # (Keras' name for none)
            activation = None
        if not (activation is None or isinstance(activation, str)) or \
                activation not in _train.ACTIVATIONS:
            raise ValueError(f"activation must be None ('linear'), 'relu', 'tanh' or 'sigmoid', "
                             f"got {activation!r}")
        self._activation = activation
        self._bias = flag("bias", bias)
        self._dtype = float_dtype(dtype)
        self._seed = _seed_arg(seed)
        # the weights and their gradients, and a block of float64 draws
        shape = (self.out_features, self.in_features)
        check_allocation(self.out_features * self.in_features * 2 * self.dtype.itemsize +
                         _draw_block_bytes(shape), f"Dense({self.in_features}, {self.out_features})")
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(self.in_features)
        self._params["weight"] = _drawn(self.dtype, shape,
                                        lambda block: rng.uniform(-k, k, size=block))
        self._grads["weight"] = np.zeros(shape, self.dtype)
        if self.bias:
            self._params["bias"] = rng.uniform(-k, k, size=self.out_features).astype(self.dtype)
            self._grads["bias"] = np.zeros(self.out_features, self.dtype)
        self.to(_check_device(device))

    def config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "activation": self.activation, "bias": self.bias, "dtype": self.dtype.name}

    @classmethod
    def param_shapes(cls, config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {
            "weight": (config["out_features"], config["in_features"])}
        if config.get("bias", True):
            shapes["bias"] = (config["out_features"],)
        return shapes

    def _check_input(self, shape):
        if len(shape) < 1 or shape[-1] != self.in_features:
            raise ValueError(f"Dense expects input of shape (..., {self.in_features}), "
                             f"got {shape_str(shape)}")

    if TYPE_CHECKING:  # calling the layer is forward
        @overload
        def __call__(self, x: DeviceArray) -> DeviceArray: ...
        @overload
        def __call__(self, x: npt.ArrayLike) -> HostArray: ...
        @overload
        def __call__(self, x: DeviceArrayLike) -> DeviceArray: ...
        @overload
        def __call__(self, x: ArrayInput) -> Array: ...
        def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

    @overload
    def forward(self, x: DeviceArray) -> DeviceArray: ...
    @overload
    def forward(self, x: npt.ArrayLike) -> HostArray: ...
    @overload
    def forward(self, x: DeviceArrayLike) -> DeviceArray: ...
    @overload
    def forward(self, x: ArrayInput) -> Array: ...
    def forward(self, x: Any) -> Any:
        if self.device == "cuda":
            with _exclusive(self):  # the device kernels write the cache and grads too
                return self._forward_cuda(x)
        given, x = x, real_array("x", x, self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Dense expects input of shape (..., {self.in_features}), "
                             f"got {shape_str(x.shape)}")
        x2 = x.reshape(-1, self.in_features)                     # [M, in]
        _check_result(self, "output", x.shape[:-1] + (self.out_features,), self.dtype)
        if self.training:
            x2 = _private(x2, given)  # backward reads x
        y2 = np.empty((x2.shape[0], self.out_features), self.dtype)  # [M, out]
        with _exclusive(self):
            _train.dense_forward(y2, x2, self._params["weight"], self._params.get("bias"),
                                 _train.ACTIVATIONS[self.activation])
            self._keep((x2, y2, x.shape) if self.training else None)
        if self.training and self.activation is not None:
            y2 = y2.copy()  # backward reads act'() from the cached y2: the caller's is its own
        return y2.reshape(x.shape[:-1] + (self.out_features,))

    @overload
    def backward(self, dy: DeviceArray) -> DeviceArray: ...
    @overload
    def backward(self, dy: npt.ArrayLike) -> HostArray: ...
    @overload
    def backward(self, dy: DeviceArrayLike) -> DeviceArray: ...
    @overload
    def backward(self, dy: ArrayInput) -> Array: ...
    def backward(self, dy: Any) -> Any:
        """dy shaped like the forward output -> dx shaped like its input; grads accumulate."""
        if self.device == "cuda":
            with _exclusive(self):  # the device kernels write the cache and grads too
                return self._backward_cuda(dy)
        x2, y2, x_shape = self._need_cache()
        want = x_shape[:-1] + (self.out_features,)
        dy = _arrays.apart_from(real_array("dy", dy, self.dtype), self._grads.values())
        if dy.shape != want:
            raise ValueError(f"Dense.backward: dy must have the output's shape {shape_str(want)}, "
                             f"got {shape_str(dy.shape)}")
        _check_result(self, "d x", x_shape, self.dtype)
        dx2 = np.empty_like(x2)                                  # [M, in]
        with _exclusive(self):
            _train.dense_backward(self._grads["weight"], self._grads.get("bias"), dx2,
                                  dy.reshape(-1, self.out_features), y2, x2,
                                  self._params["weight"], _train.ACTIVATIONS[self.activation])
        return dx2.reshape(x_shape)

    def _forward_cuda(self, x):
        x, device_out = _device_input("x", x, self.dtype)
        shape = tuple(x.shape)
        self._check_input(shape)
        x2 = x.reshape(-1, self.in_features)                     # [M, in]
        if self.training:
            x2 = _private_device(x2, device_out)  # backward reads x
        y2 = _kernels().dense_forward(x2, self._params["weight"], self._params.get("bias"),
                                      _train.ACTIVATIONS[self.activation])  # [M, out]
        self._keep((x2, y2, shape) if self.training else None)
        if self.training and self.activation is not None and device_out:
            y2 = y2.copy()  # backward reads act'() from the cached y2: the caller's is its own
        return _out(y2.reshape(shape[:-1] + (self.out_features,)), device_out)

    def _backward_cuda(self, dy):
        x2, y2, x_shape = self._need_cache()
        want = x_shape[:-1] + (self.out_features,)
        dy, device_out = _device_input("dy", dy, self.dtype)
        if tuple(dy.shape) != want:
            raise ValueError(f"Dense.backward: dy must have the output's shape {shape_str(want)}, "
                             f"got {shape_str(dy.shape)}")
        dy = _arrays.apart_from(dy, list(self._grads.values()))  # (as on the CPU)
        dx2 = _kernels().dense_backward(self._grads["weight"], self._grads.get("bias"),
                                        dy.reshape(-1, self.out_features), y2, x2,
                                        self._params["weight"],
                                        _train.ACTIVATIONS[self.activation], True)  # [M, in]
        return _out(dx2.reshape(x_shape), device_out)

    def __repr__(self) -> str:
        extra = "" if self.activation is None else f", activation={self.activation!r}"
        extra += "" if self.bias else ", bias=False"
        extra += "" if self.dtype == np.float32 else f", dtype={self.dtype.name!r}"
        return f"Dense({self.in_features}, {self.out_features}{extra}{self._device_repr()})"


# ---- Embedding ------------------------------------------------------------------------------

class Embedding(Layer):
    """Lookup table: integer indices of any shape S in [0, num) -> vectors of shape S + (dim,).

    weight (num, dim) ~ N(0, 1) as PyTorch's nn.Embedding. With padding_idx, that row starts
    at zero and never receives gradient. Gradients of repeated indices add up (in position
    order, on either device: the CUDA backward has one owner per table element, no atomics).
    device="cuda": the indices stay host integers (device index arrays are copied back); the
    output is a DeviceArray when the indices came as one.
    """

    # Read-only (see _attrs.Fixed): the parameters are sized by them and save() writes them.
    num: _attrs.Fixed[int] = _attrs.Fixed()
    dim: _attrs.Fixed[int] = _attrs.Fixed()
    padding_idx: _attrs.Fixed[Optional[int]] = _attrs.Fixed()
    dtype: _attrs.Fixed[np.dtype[Any]] = _attrs.Fixed()
    seed: _attrs.Fixed[Optional[int]] = _attrs.Fixed()

    def __init__(self, num: Int, dim: Int, padding_idx: Optional[Int] = None, *,
                 dtype: FloatDType = "float32", seed: Seed = None,
                 device: Device = "cpu") -> None:
        super().__init__()
        self._num = positive_int("num", num)
        self._dim = positive_int("dim", dim)
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, numbers.Integral):
                raise TypeError(f"padding_idx must be an int or None, got "
                                f"{type(padding_idx).__name__}")
            if not -self.num <= padding_idx < self.num:
                raise ValueError(f"padding_idx must be in [-{self.num}, {self.num}), "
                                 f"got {padding_idx}")
            padding_idx = int(padding_idx) % self.num
        self._padding_idx = padding_idx
        self._dtype = float_dtype(dtype)
        self._seed = _seed_arg(seed)
        check_allocation(self.num * self.dim * 2 * self.dtype.itemsize +
                         _draw_block_bytes((self.num, self.dim)),
                         f"Embedding({self.num}, {self.dim})")
        rng = np.random.default_rng(seed)
        self._params["weight"] = _drawn(self.dtype, (self.num, self.dim), rng.standard_normal)
        if padding_idx is not None:
            self._params["weight"][padding_idx] = 0
        self._grads["weight"] = np.zeros((self.num, self.dim), self.dtype)
        self.to(_check_device(device))

    @property
    def num_embeddings(self) -> int:
        return self.num

    @property
    def embedding_dim(self) -> int:
        return self.dim

    def config(self) -> dict[str, Any]:
        return {"num": self.num, "dim": self.dim, "padding_idx": self.padding_idx,
                "dtype": self.dtype.name}

    @classmethod
    def param_shapes(cls, config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        return {"weight": (config["num"], config["dim"])}

    def _indices(self, idx):
        if isinstance(idx, (str, bytes)):
            raise TypeError(f"Embedding input must be integer indices, got {type(idx).__name__}")
        if _arrays.on_device(idx) and self.device == "cuda":
            idx = _arrays.host(idx)  # indices are host integers (see above): copied back
        host_only("Embedding input", idx)
        arr = host_asarray("Embedding input", idx, "integer indices")
        if arr.dtype.kind not in "iu":
            raise TypeError(f"Embedding input must be integer indices, got dtype {arr.dtype}")
        if arr.size:
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi >= self.num:
                bad = lo if lo < 0 else hi
                raise ValueError(f"Embedding index {bad} is outside [0, {self.num}) "
                                 f"(input shape {shape_str(arr.shape)})")
        return arr

    if TYPE_CHECKING:  # calling the layer is forward
        @overload
        def __call__(self, idx: DeviceArray) -> DeviceArray: ...
        @overload
        def __call__(self, idx: npt.ArrayLike) -> HostArray: ...
        @overload
        def __call__(self, idx: DeviceArrayLike) -> DeviceArray: ...
        @overload
        def __call__(self, idx: ArrayInput) -> Array: ...
        def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

    @overload
    def forward(self, idx: DeviceArray) -> DeviceArray: ...
    @overload
    def forward(self, idx: npt.ArrayLike) -> HostArray: ...
    @overload
    def forward(self, idx: DeviceArrayLike) -> DeviceArray: ...
    @overload
    def forward(self, idx: ArrayInput) -> Array: ...
    def forward(self, idx: Any) -> Any:
        if self.device == "cuda":
            with _exclusive(self):  # the device kernels write the cache and grads too
                return self._forward_cuda(idx)
        arr = self._indices(idx)
        flat = np.ascontiguousarray(arr, dtype=np.int64).reshape(-1)  # [M]
        _check_result(self, "output", arr.shape + (self.dim,), self.dtype)
        if self.training:
            flat = _private(flat, idx)  # backward scatters by these indices
        y = np.empty((flat.size, self.dim), self.dtype)                # [M, dim]
        with _exclusive(self):
            _train.embedding_forward(y, flat, self._params["weight"])
            self._keep((flat, arr.shape) if self.training else None)
        return y.reshape(arr.shape + (self.dim,))

    def backward(self, dy: ArrayInput) -> None:
        """Accumulates dy (input shape + (dim,)) into grads['weight']; returns None (indices
        have no gradient)."""
        if self.device == "cuda":
            with _exclusive(self):  # the device kernels write the cache and grads too
                return self._backward_cuda(dy)
        flat, shape = self._need_cache()
        want = shape + (self.dim,)
        d = _arrays.apart_from(real_array("dy", dy, self.dtype), [self._grads["weight"]])
        if d.shape != want:
            raise ValueError(f"Embedding.backward: dy must have shape {shape_str(want)}, "
                             f"got {shape_str(d.shape)}")
        pad = -1 if self.padding_idx is None else self.padding_idx
        with _exclusive(self):
            _train.embedding_backward(self._grads["weight"], d.reshape(-1, self.dim), flat, pad)
        return None

    def _forward_cuda(self, idx):
        from . import cuda
        device_in = cuda.is_device_array(idx)
        if device_in:  # indices are validated and grouped on the host
            idx = cuda.as_device_array(idx).numpy()
        arr = self._indices(idx)
        flat = np.ascontiguousarray(arr, dtype=np.int64).reshape(-1)  # [M]
        if self.training and not device_in:  # a device input was copied just above
            flat = _private(flat, idx)
        y = _kernels().embedding_forward(flat, self._params["weight"])  # [M, dim]
        self._keep((flat, arr.shape) if self.training else None)
        return _out(y.reshape(arr.shape + (self.dim,)), device_in)

    def _backward_cuda(self, dy):
        flat, shape = self._need_cache()
        want = shape + (self.dim,)
        dy, _ = _device_input("dy", dy, self.dtype)
        if tuple(dy.shape) != want:
            raise ValueError(f"Embedding.backward: dy must have shape {shape_str(want)}, "
                             f"got {shape_str(dy.shape)}")
        dy = _arrays.apart_from(dy, [self._grads["weight"]])  # (as on the CPU)
        pad = -1 if self.padding_idx is None else self.padding_idx
        _kernels().embedding_backward(self._grads["weight"], dy.reshape(-1, self.dim), flat, pad)
        return None

    def __repr__(self) -> str:
        extra = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        extra += "" if self.dtype == np.float32 else f", dtype={self.dtype.name!r}"
        return f"Embedding({self.num}, {self.dim}{extra}{self._device_repr()})"


# ---- Dropout --------------------------------------------------------------------------------

class Dropout(Layer):
    """Training mode: zero each element with probability p, scale the rest by 1/(1-p)
    (inverted dropout, as PyTorch). Eval mode: identity. Each training forward draws a seed from
    a NumPy Generator seeded by `seed` (reproducible runs); the mask is the counter-based hash
    of (that seed, element index) (pyrnn::dropout_forward), so it is never stored, and CPU and
    CUDA layers with the same seed draw identical masks. float32 / float64 (other inputs are
    computed as float32)."""

    # Read-only: the mask generator is seeded from it at construction (assigning it did
    # nothing). save() keeps it, as Keras' get_config does: a loaded layer's masks restart from it.
    seed: _attrs.Fixed[Optional[int]] = _attrs.Fixed()
    _config_keeps_seed = True
    _p: float

    def __init__(self, p: Real = 0.5, *, seed: Seed = None, device: Device = "cpu") -> None:
        super().__init__()
        self.p = p  # type: ignore[assignment]  # (the setter checks any real number)
        self._seed = _seed_arg(seed)
        self._rng = np.random.default_rng(seed)
        self.to(_check_device(device))

    @property
    def p(self) -> float:
        return self._p

    @p.setter
    def p(self, p: float) -> None:  # checked on every write, as in the constructor
        if isinstance(p, bool) or not isinstance(p, numbers.Real):
            raise TypeError(f"p must be a float, got {type(p).__name__}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability p must be in [0, 1], got {p}")
        self._p = float(p)

    def config(self) -> dict[str, Any]:
        return {"p": self.p} if self.seed is None else {"p": self.p, "seed": self.seed}

    if TYPE_CHECKING:  # calling the layer is forward
        @overload
        def __call__(self, x: DeviceArray) -> DeviceArray: ...
        @overload
        def __call__(self, x: npt.ArrayLike) -> HostArray: ...
        @overload
        def __call__(self, x: DeviceArrayLike) -> DeviceArray: ...
        @overload
        def __call__(self, x: ArrayInput) -> Array: ...
        def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

    @overload
    def forward(self, x: DeviceArray) -> DeviceArray: ...
    @overload
    def forward(self, x: npt.ArrayLike) -> HostArray: ...
    @overload
    def forward(self, x: DeviceArrayLike) -> DeviceArray: ...
    @overload
    def forward(self, x: ArrayInput) -> Array: ...
    def forward(self, x: Any) -> Any:
        from . import cuda
        active = self.training and self.p > 0.0
        device_out = None  # None: computed on the host
        if self.device == "cuda" and (active or cuda.is_device_array(x)):
            x, device_out = _device_input("x", x, None)
        else:
            x = _host_real(x)
        if not active:  # identity
            self._keep((None, tuple(x.shape), 0.0) if self.training else None)
            return x
        seed = int(self._rng.integers(0, 2**63))
        # With the p of this forward: backward after `d.p = ...` (a schedule) used the new p,
        # another mask and scale than the forward's.
        self._keep((seed, tuple(x.shape), self.p))
        if device_out is not None:
            return _out(_kernels().dropout_forward(x, seed, self.p), device_out)
        _check_result(self, "output", x.shape, x.dtype)
        y = np.empty_like(x)
        _train.dropout_forward(y.reshape(-1), x.reshape(-1), seed, self.p)
        return y

    @overload
    def backward(self, dy: DeviceArray) -> DeviceArray: ...
    @overload
    def backward(self, dy: npt.ArrayLike) -> HostArray: ...
    @overload
    def backward(self, dy: DeviceArrayLike) -> DeviceArray: ...
    @overload
    def backward(self, dy: ArrayInput) -> Array: ...
    def backward(self, dy: Any) -> Any:
        seed, shape, p = self._need_cache()
        from . import cuda
        device_out = None
        if self.device == "cuda" and (seed is not None or cuda.is_device_array(dy)):
            dy, device_out = _device_input("dy", dy, None)
        else:
            host_only("dy", dy)
            try:
                arr = None if isinstance(dy, (str, bytes)) else np.asarray(dy)
            except Exception:  # (ragged lists)
                arr = None
            if arr is None or arr.dtype.kind not in "iuf":
                # None or a str: real_array's TypeError, as other layers give (it was a
                # ValueError naming the shape () first)
                real_array("dy", dy, np.float32)
            dy = arr
        if tuple(dy.shape) != shape:
            raise ValueError(f"Dropout.backward: dy must have shape {shape_str(shape)}, "
                             f"got {shape_str(dy.shape)}")
        if device_out is None:  # checked and converted as the active path does
            dy = _host_real(dy, "dy")
        if seed is None:  # identity (p = 0)
            return dy
        if device_out is not None:
            return _out(_kernels().dropout_backward(dy, seed, p), device_out)
        _check_result(self, "d x", dy.shape, dy.dtype)
        dx = np.empty_like(dy)
        _train.dropout_backward(dx.reshape(-1), dy.reshape(-1), seed, p)
        return dx

    def __repr__(self) -> str:
        return f"Dropout(p={self.p}{self._device_repr()})"


# ---- LayerNorm ------------------------------------------------------------------------------

class LayerNorm(Layer):
    """Normalises the last axis (size dim): y = (x - mean) / sqrt(var + eps) * weight + bias,
    var the biased variance (PyTorch's nn.LayerNorm(dim)). weight starts at 1, bias at 0.
    device="cuda": one warp per row (statistics in double, a fixed reduction order)."""

    # Read-only (see _attrs.Fixed): the parameters are sized by them and save() writes them.
    dim: _attrs.Fixed[int] = _attrs.Fixed()
    eps: _attrs.Fixed[float] = _attrs.Fixed()
    dtype: _attrs.Fixed[np.dtype[Any]] = _attrs.Fixed()

    def __init__(self, dim: Int, eps: Real = 1e-5, *, dtype: FloatDType = "float32",
                 device: Device = "cpu") -> None:
        super().__init__()
        self._dim = positive_int("dim", dim)
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
            raise TypeError(f"eps must be a finite number >= 0, got {type(eps).__name__}")
        if not eps >= 0 or eps == float("inf"):
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
        self._eps = as_float("eps", eps, "a finite number >= 0")
        self._dtype = float_dtype(dtype)
        # weight, bias and their gradients, as Dense and Embedding check theirs
        check_allocation(self.dim * 4 * self.dtype.itemsize, f"LayerNorm({self.dim})")
        self._params["weight"] = np.ones(self.dim, self.dtype)
        self._params["bias"] = np.zeros(self.dim, self.dtype)
        self._grads["weight"] = np.zeros(self.dim, self.dtype)
        self._grads["bias"] = np.zeros(self.dim, self.dtype)
        self.to(_check_device(device))

    def config(self) -> dict[str, Any]:
        return {"dim": self.dim, "eps": self.eps, "dtype": self.dtype.name}

    @classmethod
    def param_shapes(cls, config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        return {"weight": (config["dim"],), "bias": (config["dim"],)}

    if TYPE_CHECKING:  # calling the layer is forward
        @overload
        def __call__(self, x: DeviceArray) -> DeviceArray: ...
        @overload
        def __call__(self, x: npt.ArrayLike) -> HostArray: ...
        @overload
        def __call__(self, x: DeviceArrayLike) -> DeviceArray: ...
        @overload
        def __call__(self, x: ArrayInput) -> Array: ...
        def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

    @overload
    def forward(self, x: DeviceArray) -> DeviceArray: ...
    @overload
    def forward(self, x: npt.ArrayLike) -> HostArray: ...
    @overload
    def forward(self, x: DeviceArrayLike) -> DeviceArray: ...
    @overload
    def forward(self, x: ArrayInput) -> Array: ...
    def forward(self, x: Any) -> Any:
        if self.device == "cuda":
            with _exclusive(self):  # the device kernels write the cache and grads too
                return self._forward_cuda(x)
        given, x = x, real_array("x", x, self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.dim:
            raise ValueError(f"LayerNorm expects input of shape (..., {self.dim}), "
                             f"got {shape_str(x.shape)}")
        x2 = x.reshape(-1, self.dim)                 # [M, D]
        _check_result(self, "output", x.shape, self.dtype)
        # Backward reads x: a private copy where the caller's array is x2 (see _private), made
        # by the kernel in its first pass over each row (a separate copy was 30% of the training
        # forward at 4096 x 512).
        keep = (np.empty_like(x2) if self.training and _shares_caller_memory(x2, given)
                else None)                           # [M, D]
        y2 = np.empty_like(x2)                       # [M, D]
        mean = np.empty(x2.shape[0], np.float64)     # [M] double for both precisions
        rstd = np.empty(x2.shape[0], np.float64)     # [M]
        with _exclusive(self):
            _train.layernorm_forward(y2, mean, rstd, x2, self._params["weight"],
                                     self._params["bias"], self.eps, keep)
            self._keep((x2 if keep is None else keep, mean, rstd, x.shape) if self.training
                       else None)
        return y2.reshape(x.shape)

    @overload
    def backward(self, dy: DeviceArray) -> DeviceArray: ...
    @overload
    def backward(self, dy: npt.ArrayLike) -> HostArray: ...
    @overload
    def backward(self, dy: DeviceArrayLike) -> DeviceArray: ...
    @overload
    def backward(self, dy: ArrayInput) -> Array: ...
    def backward(self, dy: Any) -> Any:
        if self.device == "cuda":
            with _exclusive(self):  # the device kernels write the cache and grads too
                return self._backward_cuda(dy)
        x2, mean, rstd, shape = self._need_cache()
        dy = real_array("dy", dy, self.dtype)
        if dy.shape != shape:
            raise ValueError(f"LayerNorm.backward: dy must have shape {shape_str(shape)}, "
                             f"got {shape_str(dy.shape)}")
        _check_result(self, "d x", shape, self.dtype)
        dx2 = np.empty_like(x2)                      # [M, D]
        with _exclusive(self):
            _train.layernorm_backward(dx2, self._grads["weight"], self._grads["bias"],
                                      dy.reshape(-1, self.dim), x2, mean, rstd,
                                      self._params["weight"])
        return dx2.reshape(shape)

    def _forward_cuda(self, x):
        x, device_out = _device_input("x", x, self.dtype)
        shape = tuple(x.shape)
        if len(shape) < 1 or shape[-1] != self.dim:
            raise ValueError(f"LayerNorm expects input of shape (..., {self.dim}), "
                             f"got {shape_str(shape)}")
        x2 = x.reshape(-1, self.dim)                 # [M, D]
        # Backward reads x: the kernel copies a caller's device array as it reads it (as on
        # the CPU; _private_device's rule).
        keep = self.training and device_out
        y2, mean, rstd, kept = _kernels().layernorm_forward(x2, self._params["weight"],
                                                            self._params["bias"], self.eps,
                                                            keep)
        self._keep((x2 if kept is None else kept, mean, rstd, shape) if self.training
                   else None)
        return _out(y2.reshape(shape), device_out)

    def _backward_cuda(self, dy):
        x2, mean, rstd, shape = self._need_cache()
        dy, device_out = _device_input("dy", dy, self.dtype)
        if tuple(dy.shape) != shape:
            raise ValueError(f"LayerNorm.backward: dy must have shape {shape_str(shape)}, "
                             f"got {shape_str(dy.shape)}")
        dx2 = _kernels().layernorm_backward(self._grads["weight"], self._grads["bias"],
                                            dy.reshape(-1, self.dim), x2, mean, rstd,
                                            self._params["weight"])  # [M, D]
        return _out(dx2.reshape(shape), device_out)

    def __repr__(self) -> str:
        extra = "" if self.eps == 1e-5 else f", eps={self.eps}"
        extra += "" if self.dtype == np.float32 else f", dtype={self.dtype.name!r}"
        return f"LayerNorm({self.dim}{extra}{self._device_repr()})"


# ---- LastStep -------------------------------------------------------------------------------

class LastStep(Layer):
    """Each sequence's final state from a recurrent layer's samples-first output.

    x (N, T, D*H) -> (N, D*H): the forward direction's h at step len-1 (lengths, default T)
    concatenated with the reverse direction's h at step 0, which is where the reverse pass
    ends. D comes from `bidirectional`; left at None, a Sequential's passes (forward, fit,
    export) take it from the nearest preceding recurrent layer (none after a Dense or
    Embedding in between: their features are no direction halves), and a call outside them
    (standalone, or the same object after it left the model) means unidirectional.
    device="cuda": a gather (and a scatter back) on the GPU; lengths stay host integers.
    """
    _takes_lengths = True
    _bidirectional: Optional[bool]

    def __init__(self, bidirectional: Optional[bool] = None, *, device: Device = "cpu") -> None:
        super().__init__()
        self.bidirectional = bidirectional
        self._auto_bidirectional = False  # set by Sequential when bidirectional is None
        self.to(_check_device(device))

    @property
    def bidirectional(self) -> Optional[bool]:
        return self._bidirectional

    @bidirectional.setter
    def bidirectional(self, bidirectional: Optional[bool]) -> None:
        # Checked on every write, as in the constructor: save() wrote "yes" or 2 unchecked,
        # into a file load() refused.
        if bidirectional is not None and not isinstance(bidirectional, (bool, np.bool_)):
            raise TypeError(f"bidirectional must be True, False or None, got {bidirectional!r}")
        self._bidirectional = None if bidirectional is None else bool(bidirectional)

    @property
    def num_directions(self) -> int:
        bi = self.bidirectional if self.bidirectional is not None else self._auto_bidirectional
        return 2 if bi else 1

    def config(self) -> dict[str, Any]:
        return {"bidirectional": self.bidirectional}

    def _check_input(self, shape):
        D = self.num_directions
        if len(shape) != 3 or shape[0] < 1 or shape[1] < 1 or shape[2] % D:
            want = "(N, T, 2*H) (bidirectional)" if D == 2 else "(N, T, H)"
            raise ValueError(f"LastStep expects a samples-first recurrent output {want}, "
                             f"got {shape_str(shape)}")

    if TYPE_CHECKING:  # calling the layer is forward
        @overload
        def __call__(self, x: DeviceArray, lengths: Optional[npt.ArrayLike] = None) -> DeviceArray: ...
        @overload
        def __call__(self, x: npt.ArrayLike, lengths: Optional[npt.ArrayLike] = None) -> HostArray: ...
        @overload
        def __call__(self, x: DeviceArrayLike, lengths: Optional[npt.ArrayLike] = None) -> DeviceArray: ...
        @overload
        def __call__(self, x: ArrayInput, lengths: Optional[npt.ArrayLike] = None) -> Array: ...
        def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

    @overload
    def forward(self, x: DeviceArray, lengths: Optional[npt.ArrayLike] = None) -> DeviceArray: ...
    @overload
    def forward(self, x: npt.ArrayLike, lengths: Optional[npt.ArrayLike] = None) -> HostArray: ...
    @overload
    def forward(self, x: DeviceArrayLike, lengths: Optional[npt.ArrayLike] = None) -> DeviceArray: ...
    @overload
    def forward(self, x: ArrayInput, lengths: Optional[npt.ArrayLike] = None) -> Array: ...
    def forward(self, x: Any, lengths: Any = None) -> Any:
        if self.device == "cuda":
            return self._forward_cuda(x, lengths)
        # As Dropout, and as on a device: float32 / float64 kept, anything else (ints, float16)
        # computed in float32.
        x = _host_real(x)
        D = self.num_directions
        self._check_input(x.shape)
        N, T, W = x.shape
        lens = np.full(N, T, np.int64) if lengths is None else lengths_array(lengths, N, T)
        if self.training and lengths is not None:
            lens = _private(lens, lengths)  # backward scatters by these steps
        H = W // D
        rows = np.arange(N)
        y = np.empty((N, W), x.dtype)                  # [N, D*H]
        y[:, :H] = x[rows, lens - 1, :H]
        if D == 2:
            y[:, H:] = x[:, 0, H:]
        # D with the cache: backward scatters as this forward gathered, whatever a later
        # Sequential link sets (a shared head put after a unidirectional layer meanwhile).
        self._keep((lens, x.shape, x.dtype, D) if self.training else None)
        return y

    @overload
    def backward(self, dy: DeviceArray) -> DeviceArray: ...
    @overload
    def backward(self, dy: npt.ArrayLike) -> HostArray: ...
    @overload
    def backward(self, dy: DeviceArrayLike) -> DeviceArray: ...
    @overload
    def backward(self, dy: ArrayInput) -> Array: ...
    def backward(self, dy: Any) -> Any:
        if self.device == "cuda":
            return self._backward_cuda(dy)
        cache = self._need_cache()
        lens, shape, dtype = cache[:3]
        D = cache[3] if len(cache) > 3 else self.num_directions  # (a pickle from before D)
        N, T, W = shape
        dy = real_array("dy", dy, dtype)
        if dy.shape != (N, W):
            raise ValueError(f"LastStep.backward: dy must have shape ({N}, {W}), "
                             f"got {shape_str(dy.shape)}")
        H = W // D
        _check_result(self, "d x", shape, dtype)
        dx = np.zeros(shape, dtype)                    # [N, T, D*H]
        dx[np.arange(N), lens - 1, :H] = dy[:, :H]
        if W != H:
            dx[:, 0, H:] += dy[:, H:]
        return dx

    def _forward_cuda(self, x, lengths):
        from .recurrent import _host_lengths
        x, device_out = _device_input("x", x, None)
        shape = tuple(x.shape)
        self._check_input(shape)
        N, T, W = shape
        lens = None if lengths is None else lengths_array(_host_lengths(lengths), N, T)
        if self.training and lens is not None:
            lens = _private(lens, lengths)
        D = self.num_directions
        y = _kernels().last_step_forward(x, lens, D)  # [N, D*H]
        self._keep((lens, shape, x.dtype, D) if self.training else None)
        return _out(y, device_out)

    def _backward_cuda(self, dy):
        lens, shape, dtype, D = self._need_cache()
        N, T, W = shape
        dy, device_out = _device_input("dy", dy, dtype)
        if tuple(dy.shape) != (N, W):
            raise ValueError(f"LastStep.backward: dy must have shape ({N}, {W}), "
                             f"got {shape_str(dy.shape)}")
        dx = _kernels().last_step_backward(dy, lens, T, D)  # [N, T, D*H]
        return _out(dx, device_out)

    def __repr__(self) -> str:
        args = [] if self.bidirectional is None else [f"bidirectional={self.bidirectional}"]
        if self.device != "cpu":
            args.append(f"device='{self.device}'")
        return f"LastStep({', '.join(args)})"
