"""pyrnn.Parameter: one trainable tensor, as the optimizers see it."""
import numpy as np


class Parameter:
    """A named trainable tensor: ``data`` and ``grad`` are ndarrays of one shape and dtype.

    Both are *views*: into the native memory of a recurrent layer, or into the arrays a
    pure-Python layer owns. Writing into them (``p.data[...] = ...``, an optimizer step)
    changes the layer; rebinding ``p.data = other`` would not, so the attributes are
    read-only. Gradients accumulate into ``grad`` across backward calls until zero_grad().
    """
    __slots__ = ("_name", "_data", "_grad")

    def __init__(self, name, data, grad):
        if not isinstance(data, np.ndarray) or not isinstance(grad, np.ndarray):
            raise TypeError("Parameter data and grad must be ndarrays, got "
                            f"{type(data).__name__} and {type(grad).__name__}")
        if data.shape != grad.shape or data.dtype != grad.dtype:
            raise ValueError(f"Parameter {name!r}: data {data.shape} {data.dtype} and grad "
                             f"{grad.shape} {grad.dtype} differ")
        self._name = str(name)
        self._data = data
        self._grad = grad

    @property
    def name(self):
        return self._name

    @property
    def data(self):
        return self._data

    @property
    def grad(self):
        return self._grad

    @property
    def shape(self):
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def size(self):
        return self._data.size

    def zero_grad(self):
        self._grad[...] = 0

    def __repr__(self):
        shape = "(" + ", ".join(str(s) for s in self._data.shape) + ("," if self._data.ndim == 1
                                                                    else "") + ")"
        return f"Parameter({self._name!r}, shape={shape}, dtype={self._data.dtype})"


def prefixed(prefix, params):
    """The same Parameter views under names ``prefix + name`` (Sequential's "0.weight")."""
    for p in params:
        yield Parameter(prefix + p.name, p.data, p.grad)
