"""pyrnn.Parameter: one trainable tensor, as the optimizers see it."""
from __future__ import annotations

import contextlib
import itertools
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ._typing import Array, Device


class Parameter:
    """A named trainable tensor: ``data`` and ``grad`` are arrays of one shape and dtype, both
    NumPy ndarrays (a CPU layer) or both pyrnn.cuda.DeviceArrays (a CUDA layer; ``device``).

    Both are *views*: into the native memory of a recurrent layer, or into the arrays a
    pure-Python layer owns. Writing into them (``p.data[...] = ...`` on the host,
    ``p.data.copy_from(...)`` on a device, an optimizer step) changes the layer; rebinding
    ``p.data = other`` would not, so the attributes are read-only. Gradients accumulate into
    ``grad`` across backward calls until zero_grad(). A layer moved with ``.to(device)`` gets
    new storage: build optimizers after moving the model.

    Two Parameters are equal when they are the same parameter, whatever their names: the same
    array of the same layer (also across ``layer.to()``, as PyTorch's parameters survive
    ``.to()``; and while a copy of the layer is being rebuilt, before its arrays exist), or,
    for Parameters of no pyrnn layer, views of the same storage. Each parameters() call makes
    new Parameter objects, and Sequential's carry the layer index in their names, so
    ``p not in set(model.layers[0].parameters())`` is how a subset (layers to freeze) is told
    apart, as with PyTorch's tensors.
    """
    __slots__ = ("_name", "_data", "_grad", "_owner", "_key")

    def __init__(self, name: str, data: Array, grad: Array, owner: object | None = None) -> None:
        kinds = (_kind(data), _kind(grad))
        if None in kinds or kinds[0] != kinds[1]:
            raise TypeError("Parameter data and grad must both be ndarrays or both device arrays, "
                            f"got {type(data).__name__} and {type(grad).__name__}")
        if isinstance(data, np.matrix) or isinstance(grad, np.matrix):
            # (its reshape(-1) stays 2-D: the optimizers' and clip_grad_norm's flat views
            # failed halfway through a step, the parameters before it updated)
            raise TypeError(f"Parameter {name!r}: data and grad must be ndarrays, not "
                            f"numpy.matrix (np.asarray gives an ndarray view)")
        if tuple(data.shape) != tuple(grad.shape) or data.dtype != grad.dtype:
            raise ValueError(f"Parameter {name!r}: data {data.shape} {data.dtype} and grad "
                             f"{grad.shape} {grad.dtype} differ")
        self._name = str(name)
        self._data = data
        self._grad = grad
        self._owner = owner  # the layer whose array data is (a ParamWrites), or None
        self._key = None  # the owner's name for the array (owned()), or None

    def __reduce__(self):
        # As PyTorch, where an optimizer and its model hold the same tensors: a deep copy or a
        # pickle of (model, optimizer), in either order, gives an optimizer over the copied
        # model's own arrays, because the Parameter is rebuilt from its (copied) layer: the same
        # memo makes the layer one object in both. Copies of the arrays alone would not do: a
        # layer holding native memory (recurrent layers, any layer on CUDA) is rebuilt by its
        # copy, and they would be detached, used by nobody else. So a Parameter copied or
        # pickled on its own carries its layer too. One without a layer (or no longer one of
        # its layer's arrays, after layer.to()) carries its arrays.
        params = getattr(self._owner, "_params", None)
        key = next((k for k, v in params.items() if v is self._data), None) if params else None
        if key is None:
            return (Parameter, (self._name, self._data, self._grad))
        return (_of_layer, (self._name, self._owner, key))

    def _detached(self):
        """Whether its layer no longer holds the arrays this Parameter views (layer.to() gave
        it new storage): an update through it would change nothing the layer uses."""
        params = getattr(self._owner, "__dict__", {}).get("_params")
        return params is not None and not any(v is self._data for v in params.values())

    def _check_attached(self, what):
        """RuntimeError when _detached(): `what` would write memory its layer no longer uses."""
        if self._detached():
            raise RuntimeError(f"{what}: parameter {self._name!r} no longer views its layer's "
                               "memory (the layer was moved with .to() after this Parameter "
                               "was taken); take it again from the layer's parameters()")

    def _changed(self):
        """Called by whatever writes ``data`` through pyrnn (an optimizer step, pyrnn.init):
        the owning layer then refuses to differentiate a forward made before the write."""
        if self._owner is not None:
            self._owner._params_changed()

    def _storage(self):
        """What identifies the viewed memory: device, address, shape, strides, dtype."""
        from ._arrays import data_ptr
        d = self._data
        strides = d.strides if isinstance(d, np.ndarray) else getattr(d, "strides", None)
        return (_kind(d), data_ptr(d), tuple(d.shape), None if strides is None else
                tuple(strides), np.dtype(d.dtype).str)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Parameter):
            return NotImplemented
        if self is other:
            return True
        if self._key is not None or other._key is not None:
            # A layer's own: the same array of the same layer. Not its storage's address,
            # which a copy being rebuilt does not have yet (a set of them kept on the layer
            # was built then), and a hash by shape alone made sets quadratic.
            return self._owner is other._owner and self._key == other._key
        if self._data is other._data:
            return True
        if self._data is None or other._data is None or not self._data.size:
            return False  # (empty arrays may share an address without sharing anything)
        return self._storage() == other._storage()

    def __hash__(self) -> int:
        if self._key is not None:
            return hash((id(self._owner), self._key))
        if self._data is None or not self._data.size:
            return id(self._data)
        return hash(self._storage())

    @property
    def name(self) -> str:
        return self._name

    # In-place operators (``p.data += 1``, ``p.grad *= 0.5``) write into the array and then
    # assign the result, the same array, back: accepted. Rebinding to another array would
    # detach the Parameter from its layer, so it is refused, naming the in-place spelling.
    # data / grad: an ndarray on a CPU layer, a pyrnn.cuda.DeviceArray on a CUDA one (a
    # run-time property of the layer, hence the Union).
    @property
    def data(self) -> Array:
        return self._data

    @data.setter
    def data(self, value: Array) -> None:
        self._rebind("data", value)
        self._changed()  # (an in-place write: a cached forward belongs to the old values)

    @property
    def grad(self) -> Array:
        return self._grad

    @grad.setter
    def grad(self, value: Array) -> None:
        self._rebind("grad", value)

    def _rebind(self, what, value):
        if value is not getattr(self, "_" + what):
            raise AttributeError(
                f"Parameter {self._name!r}: {what} cannot be rebound (it views the layer's "
                f"memory); write into it instead: p.{what}[...] = value (host arrays) or "
                f"p.{what}.copy_from(value) (device arrays)")

    @property
    def device(self) -> Device:
        """"cpu" (ndarrays) or "cuda" (device arrays)."""
        return _kind(self._data)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._data.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._data.dtype

    @property
    def size(self) -> int:
        return self._data.size

    def numel(self) -> int:
        """The element count (PyTorch's name; ``size`` is NumPy's, an int)."""
        return int(self._data.size)

    def zero_grad(self) -> None:
        from ._arrays import zero_
        self._check_attached("zero_grad")
        with owners_held([self]):
            zero_(self._grad)

    def __repr__(self) -> str:
        shape: Any = self.shape  # (a tuple, then its text)
        shape = "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        dev = "" if self.device == "cpu" else f", device='{self.device}'"
        return f"Parameter({self._name!r}, shape={shape}, dtype={self._data.dtype}{dev})"


@contextlib.contextmanager
def owners_held(params):
    """The layers owning `params` marked busy, as their forward and backward mark them, while an
    optimizer writes into them: a step (or zero_grad) while another thread runs one of them is
    a RuntimeError, as that thread's layer.zero_grad() would be, not a race."""
    from .layers import _exclusive
    owners = {}
    for p in params:
        if p._owner is not None:
            owners.setdefault(id(p._owner), p._owner)
    from ._signals import sigint_deferred
    # Lives as long as this block: a native hold whose release an exception skipped (one from
    # a signal handler, which sigint_deferred does not hold back) ends with it, rather than
    # leaving the layer held for good (the native flag keeps a weak reference to it).
    token = _HoldToken()
    natives, stack = [], contextlib.ExitStack()
    try:
        # A hold and its record, and below a release and its record, are never split by a
        # Ctrl-C.
        with sigint_deferred():
            for owner in owners.values():
                native = getattr(owner, "__dict__", {}).get("_native")
                if native is not None and hasattr(native, "hold"):  # a recurrent layer's flag
                    # (raises while another thread runs or holds it; this thread's nested
                    # blocks each hold it, pyrnn.init's zeros_ calling constant_)
                    native.hold(token)
                    natives.append(native)
                else:
                    stack.enter_context(_exclusive(owner))
        yield
    finally:
        with sigint_deferred():
            for native in reversed(natives):
                native.release(token)
            stack.close()


class _HoldToken:
    """owners_held's token (weakly referable, unlike object())."""
    __slots__ = ("__weakref__",)


def owned(name, data, grad, layer, key):
    """The Parameter `name` over layer's array `key` (its data and grad)."""
    p = Parameter(name, data, grad, layer)
    p._key = key
    return p


def _of_layer(name, layer, key, *_):
    """The Parameter `name` over layer's parameter `key` (how a Parameter is copied)."""
    params = getattr(layer, "__dict__", {}).get("_params")
    if params is not None:
        return owned(name, params[key], layer._grads[key], layer, key)
    # The layer is still being rebuilt: its own state holds this Parameter (a layer keeping its
    # optimizer, or a set of its parameters), and copy / pickle restore that state before the
    # layer's arrays exist. The arrays are bound at the end of its __setstate__ (bind_pending);
    # it compares and hashes by (layer, key) meanwhile, as after.
    p = object.__new__(Parameter)
    p._name, p._data, p._grad, p._owner, p._key = name, None, None, layer, key
    layer.__dict__.setdefault("_pending_parameters", []).append((p, key))
    return p


def bind_pending(layer):
    """End of a layer's __setstate__: binds the Parameters copied while it was rebuilt."""
    for p, key in layer.__dict__.pop("_pending_parameters", ()):
        p._data, p._grad = layer._params[key], layer._grads[key]


def _kind(a):
    """"cpu" for an ndarray, "cuda" for a device array, None for anything else."""
    if isinstance(a, np.ndarray):
        return "cpu"
    from ._arrays import on_device
    return "cuda" if on_device(a) else None


def prefixed(prefix, params):
    """The same Parameter views under names ``prefix + name`` (Sequential's "0.weight")."""
    for p in params:
        q = Parameter(prefix + p.name, p.data, p.grad, getattr(p, "_owner", None))
        q._key = getattr(p, "_key", None)  # (a duck-typed parameter has none)
        yield q


# The layers a fit() is training (id -> number of fits): their to() is refused meanwhile, as
# the model's is (fit's optimizer and guard hold the storage a move replaces), also through a
# slice model[:] or the layer itself from a callback.
_IN_FIT: dict[int, int] = {}


@contextlib.contextmanager
def layers_in_fit(layers):
    from ._signals import sigint_deferred
    ids = [id(layer) for layer in layers]
    # Whole or not at all: a Ctrl-C part-way (a second one while the first unwinds fit) left
    # entries whose ids later layers reuse, and their to() was refused
    done = []
    try:
        with sigint_deferred():
            for i in ids:
                _IN_FIT[i] = _IN_FIT.get(i, 0) + 1
                done.append(i)
        yield
    finally:
        with sigint_deferred():
            for i in done:
                n = _IN_FIT.pop(i) - 1
                if n:
                    _IN_FIT[i] = n


def refuse_move_in_fit(layer, what=None):
    """RuntimeError when `layer` is being trained by a fit() (see _IN_FIT)."""
    if id(layer) in _IN_FIT:
        raise RuntimeError(f"{what or type(layer).__name__ + '.to()'} during fit() (from a "
                           f"callback?) is not supported: fit's optimizer and its guard hold "
                           f"the storage the move replaces; move the model before fit()")


_FORWARD_SERIALS = itertools.count(1)  # (next() on it is atomic under the GIL)


class ParamWrites:
    """Mixin of the layers with parameters: counts the writes made to them through pyrnn (an
    optimizer step, pyrnn.init on a Parameter, load_params, ``params[...] = ``), so that
    backward() refuses to differentiate a forward made before one, as PyTorch refuses a graph
    whose weights were modified in place: the cached activations belong to the old weights,
    and the gradients would silently mix the two. (Writes by hand into the arrays,
    ``layer.params[name][...] = v``, are not seen.)"""
    _params_version = 0  # class defaults: pickles from before have neither
    # The count the cached forward saw; None where no forward recorded one (a custom Layer
    # subclass that sets _cache itself, a pickle from before): not checked then.
    _forward_params_version = None

    # Which forward the cache is (process-wide numbers): a Sequential records its layers' at its
    # forward and refuses a backward after another forward replaced one (a model sharing the
    # layer, a slice, a direct call). None: no forward recorded one.
    _forward_serial = None

    def _params_changed(self):
        self._params_version += 1

    def _forward_made(self, version=None):
        """At a training forward: the write count its cache belongs to (version: the count at
        the pass's start, where the pass runs without the GIL; default the count now)."""
        self._forward_params_version = self._params_version if version is None else version
        self._forward_serial = next(_FORWARD_SERIALS)

    def _check_params_unchanged(self):
        if self._forward_params_version not in (None, self._params_version):
            raise RuntimeError(
                f"{type(self).__name__}.backward(): its parameters were changed (an optimizer "
                "step, load_params, params assignment or pyrnn.init) after the forward() it "
                "would differentiate; call backward() before optimizer.step(), or run forward() "
                "again")
