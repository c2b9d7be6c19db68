"""Host / device dispatch for the training stack: the few array operations that layers,
optimizers and Sequential need on either a NumPy array or a CUDA device array.

Device arrays are pyrnn.cuda.DeviceArray (anything with ``__cuda_array_interface__`` is
recognised); their kernels come from ``pyrnn.cuda.kernels()`` (the native pyrnn._cuda module,
whose functions mirror pyrnn._train's). Nothing here imports CUDA for host arrays.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Callable, NoReturn, overload

import numpy as np

from . import _train
from ._validate import cast_finite, shape_str

if TYPE_CHECKING:
    from typing_extensions import Self

    from ._typing import Array, ArrayInput

    _ArrayDictBase = dict[str, Array]
else:
    _ArrayDictBase = dict


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


def overlap(a, b):
    """Whether arrays a and b (both C-contiguous, on one kind of device) share bytes."""
    n_a, n_b = a.size * a.dtype.itemsize, b.size * b.dtype.itemsize
    pa, pb = data_ptr(a), data_ptr(b)
    return pa < pb + n_b and pb < pa + n_a


def apart_from(dy, arrays):
    """dy, or a copy of it where it shares memory with one of `arrays` (a layer's gradients:
    its kernels read dy while they accumulate into them)."""
    if isinstance(dy, np.ndarray):
        shares = any(np.may_share_memory(dy, g) for g in arrays)
    else:
        shares = any(overlap(dy, g) for g in arrays)
    return dy.copy() if shares else dy


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


def native_float(a):
    """A C-contiguous, native-order float32 / float64 ndarray: what the native finiteness checks
    (_train.all_finite, all_finite_arrays) read in place."""
    return (type(a) is np.ndarray and a.dtype.kind == "f" and a.dtype.itemsize in (4, 8)
            and a.dtype.isnative and a.flags.c_contiguous)


def all_finite(a):
    """No NaN or Inf in `a` (on a device: one reduction, a float comes back)."""
    if isinstance(a, np.ndarray):
        if native_float(a):
            return _train.all_finite(a.reshape(-1))  # native: one read, no temporary
        return bool(np.isfinite(a).all())
    return math.isfinite(kernels_for(a).max_abs(a.reshape(-1)))


def assign(view, value):
    """Write host data into an ndarray or device view of the same shape."""
    if isinstance(view, np.ndarray):
        view[...] = value
    else:
        view.copy_from(np.asarray(value, dtype=view.dtype).reshape(tuple(view.shape)))


def _checked_value(name, view, value, what):
    """value as a host ndarray that can be written into `view` (same shape, a dtype that
    casts to the view's same_kind: ints and floats of any width, never complex or text)."""
    if on_device(value):
        value = host(value)
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{what} {name!r} must be a real numeric array, got "
                        f"{type(value).__name__}")
    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged lists and the like
        raise TypeError(f"{what} {name!r} must be a real numeric array: {e}") from None
    want = tuple(view.shape)
    if tuple(arr.shape) != want:
        raise ValueError(f"{name} must have shape {shape_str(want)}, "
                         f"got {shape_str(arr.shape)}")
    if arr.dtype.kind not in "biuf" or not np.can_cast(arr.dtype, view.dtype, "same_kind"):
        raise TypeError(f"{what} {name!r} is {view.dtype}; a value of dtype {arr.dtype} "
                        "cannot be cast to it")
    return cast_finite(f"{what} {name!r}", arr, view.dtype)


def load_into(views, values, what="parameter", strict=False):
    """Overwrite the named views from {name: array} (missing names keep their value, or with
    strict a KeyError naming them, as torch's load_state_dict): a layer's load_params and the
    item assignment of its params / grads. All or nothing: every entry (name, shape, dtype) is
    checked before any is written. Device values are copied to the host first."""
    if not hasattr(values, "items"):
        raise TypeError(f"expected a mapping {{name: array}}, got {type(values).__name__}")
    items = list(values.items())  # once: a lazy mapping (an .npz) reads each array per call
    if strict:
        given = {name for name, _ in items}
        missing = [name for name in views if name not in given]
        if missing:
            raise KeyError(f"missing {what}s {missing} (strict=True loads every one; "
                           f"strict=False keeps their values)")
    checked = []
    for name, value in items:
        if name not in views:
            raise KeyError(f"unknown {what} {name!r}; expected one of {list(views)}")
        checked.append((views[name], _checked_value(name, views[name], value, what)))
    # A value that is (a view of) one of these arrays is copied first: a swap ({"a": p["b"],
    # "b": p["a"]}) would otherwise read "a" after its own write.
    targets = [v for v in views.values() if isinstance(v, np.ndarray)]
    checked = [(view, arr.copy() if isinstance(arr, np.ndarray) and any(
        np.may_share_memory(arr, t) for t in targets) else arr) for view, arr in checked]
    for view, arr in checked:
        assign(view, arr)


def assign_all(views, values, what="parameter"):
    """``layer.params = values`` (and the write-back of ``layer.params |= values``): values
    copied into the views, as load_into; an ArrayDict over these very arrays (what ``|=``
    hands back, already written) is left alone. Whether anything was written."""
    if isinstance(values, ArrayDict) and len(values) == len(views) and all(
            values.get(k) is v for k, v in views.items()):
        return False
    load_into(views, values, what)
    return len(values) > 0


def _holder(obj):
    """A context-manager factory marking obj's layers busy while a write through its params /
    grads runs (parameter.owners_held): one while a layer runs in another thread is refused, as
    an optimizer step is (a write mid-pass mixed old and new weights in a forward)."""
    def hold():
        from .parameter import owners_held
        parameters = getattr(obj, "parameters", None)
        return owners_held(list(parameters())) if callable(parameters) else \
            contextlib.nullcontext()
    return hold


class NamedArrays:
    """The ``params`` / ``grads`` attribute of a layer or model: reading gives an ArrayDict over
    its own arrays (``arrays(obj)``: {name: array}); assigning, and ``|=``, copy into them
    (assign_all)."""

    def __init__(self, arrays, what, doc):
        self._arrays, self._what, self.__doc__ = arrays, what, doc

    # Overloads for type checkers: on the class, the descriptor; on a layer, its ArrayDict.
    @overload
    def __get__(self, obj: None, owner: Any = None) -> NamedArrays: ...
    @overload
    def __get__(self, obj: object, owner: Any = None) -> ArrayDict: ...

    def __get__(self, obj: object, owner: Any = None) -> NamedArrays | ArrayDict:
        return self if obj is None else ArrayDict(self._arrays(obj), self._what,
                                                  self._on_write(obj), _holder(obj))

    def __set__(self, obj: object, values: Mapping[str, ArrayInput]) -> None:
        # (|= counted its write in update: the write-back here is none)
        with _holder(obj)():
            written = assign_all(self._arrays(obj), values, self._what)
        if written and (on_write := self._on_write(obj)) is not None:
            on_write()

    def _on_write(self, obj):
        # Parameter writes are counted (parameter.ParamWrites); gradient writes are not.
        return getattr(obj, "_params_changed", None) if self._what == "parameter" else None


class ArrayDict(_ArrayDictBase):
    """A layer's {name: array} of parameters or gradients (``layer.params`` / ``.grads``): a
    dict (DESIGN.md's contract; ``isinstance(d, dict)``, ``dict(d)``, ``d | other`` and
    ``np.savez(**d)`` work) whose values are the layer's own arrays, zero-copy (ndarrays, or
    DeviceArrays on "cuda"), so ``d[name][...] = v`` writes the layer.

    ``d[name] = v`` COPIES v into that array after checking the name, the shape and that v's
    dtype casts to the array's: the native layer and optimizers built before hold the array
    itself, so rebinding the entry would leave them on the old one. ``update`` (and ``|=``)
    is all or nothing. Entries cannot be added or removed (KeyError / TypeError naming the
    known ones). ``copy()`` and pickling give a plain dict of the arrays.
    """
    __slots__ = ("_what", "_on_write", "_hold")

    def __init__(self, views: Mapping[str, Array], what: str = "parameter",
                 on_write: Callable[[], object] | None = None,
                 hold: Callable[[], contextlib.AbstractContextManager[Any]] | None = None) -> None:
        super().__init__(views)
        self._what = what
        self._on_write = on_write  # called after each write (the layer's _params_changed)
        self._hold = hold  # the layers marked busy while a write runs (parameter.owners_held)

    # The values written may be any real array-like of the entry's shape (copied in), not
    # only the arrays reading gives.
    def __setitem__(self, name: str, value: ArrayInput) -> None:
        self.update({name: value})

    def update(  # type: ignore[override]
            self, other: Mapping[str, ArrayInput] | Iterable[tuple[str, ArrayInput]] = (), /,
            **kwargs: ArrayInput) -> None:
        values = dict(other)
        values.update(kwargs)
        with self._hold() if self._hold is not None else contextlib.nullcontext():
            load_into(self, values, self._what)
        if values and self._on_write is not None:  # (update({}) writes nothing: no write)
            self._on_write()

    def __ior__(self, other: Mapping[str, ArrayInput]) -> Self:  # type: ignore[override,misc]
        self.update(other)
        return self

    def setdefault(self, name: str, default: object = None) -> Array:
        if name in self:
            return self[name]
        self._fixed(f"cannot add {self._what} {name!r}")

    def __delitem__(self, name: str) -> NoReturn:
        self._fixed(f"cannot remove {self._what} {name!r}")

    def pop(self, name: str, *default: object) -> NoReturn:
        self._fixed(f"cannot remove {self._what} {name!r}")

    def popitem(self) -> NoReturn:
        self._fixed(f"cannot remove a {self._what}")

    def clear(self) -> NoReturn:
        self._fixed(f"cannot remove the {self._what}s")

    def _fixed(self, what: str) -> NoReturn:
        raise TypeError(f"{what}: a layer's {self._what}s are fixed "
                        f"({', '.join(map(repr, self))}); assign to an entry to overwrite its "
                        "values")

    def copy(self) -> dict[str, Array]:
        return dict(self)

    def __reduce__(self):
        return (dict, (dict(self),))
