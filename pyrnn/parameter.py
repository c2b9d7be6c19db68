"""pyrnn.Parameter: one trainable tensor, as the optimizers see it."""
import numpy as np


class Parameter:
    """A named trainable tensor: ``data`` and ``grad`` are arrays of one shape and dtype, both
    NumPy ndarrays (a CPU layer) or both pyrnn.cuda.DeviceArrays (a CUDA layer; ``device``).

    Both are *views*: into the native memory of a recurrent layer, or into the arrays a
    pure-Python layer owns. Writing into them (``p.data[...] = ...`` on the host,
    ``p.data.copy_from(...)`` on a device, an optimizer step) changes the layer; rebinding
    ``p.data = other`` would not, so the attributes are read-only. Gradients accumulate into
    ``grad`` across backward calls until zero_grad(). A layer moved with ``.to(device)`` gets
    new storage: build optimizers after moving the model.
    """
    __slots__ = ("_name", "_data", "_grad")

    def __init__(self, name, data, grad):
        kinds = (_kind(data), _kind(grad))
        if None in kinds or kinds[0] != kinds[1]:
            raise TypeError("Parameter data and grad must both be ndarrays or both device arrays, "
                            f"got {type(data).__name__} and {type(grad).__name__}")
        if tuple(data.shape) != tuple(grad.shape) or data.dtype != grad.dtype:
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
    def device(self):
        """"cpu" (ndarrays) or "cuda" (device arrays)."""
        return _kind(self._data)

    @property
    def shape(self):
        return tuple(self._data.shape)

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def size(self):
        return self._data.size

    def zero_grad(self):
        from ._arrays import zero_
        zero_(self._grad)

    def __repr__(self):
        shape = self.shape
        shape = "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        dev = "" if self.device == "cpu" else f", device='{self.device}'"
        return f"Parameter({self._name!r}, shape={shape}, dtype={self._data.dtype}{dev})"


def _kind(a):
    """"cpu" for an ndarray, "cuda" for a device array, None for anything else."""
    if isinstance(a, np.ndarray):
        return "cpu"
    from ._arrays import on_device
    return "cuda" if on_device(a) else None


def prefixed(prefix, params):
    """The same Parameter views under names ``prefix + name`` (Sequential's "0.weight")."""
    for p in params:
        yield Parameter(prefix + p.name, p.data, p.grad)
