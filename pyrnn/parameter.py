"""pyrnn.Parameter: one trainable tensor, as the optimizers see it."""
import copy

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
    __slots__ = ("_name", "_data", "_grad", "_owner")

    def __init__(self, name, data, grad, owner=None):
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
        self._owner = owner  # the layer whose array data is (a ParamWrites), or None

    def __reduce__(self):
        # A copy or pickle is a detached Parameter: it does not drag its whole layer along.
        return (Parameter, (self._name, self._data, self._grad))

    def __deepcopy__(self, memo):
        # Deep-copied after its layer in the same call (copy.deepcopy((model, optimizer))): the
        # copied layer's own arrays, so the copied optimizer trains the copied model. A layer
        # holding native memory (recurrent layers, any layer on CUDA) is rebuilt by its copy,
        # and the arrays alone would otherwise be detached copies nobody else uses.
        # Otherwise (copied alone, or before its layer): a detached copy, as __reduce__.
        try:
            new_owner = memo[id(self._owner)]  # KeyError: its layer is not (yet) copied
            key = next(k for k, v in self._owner._params.items() if v is self._data)
            data, grad = new_owner._params[key], new_owner._grads[key]
        except (AttributeError, KeyError, StopIteration, TypeError):
            return Parameter(self._name, copy.deepcopy(self._data, memo),
                             copy.deepcopy(self._grad, memo))
        return Parameter(self._name, data, grad, new_owner)

    def _changed(self):
        """Called by whatever writes ``data`` through pyrnn (an optimizer step, pyrnn.init):
        the owning layer then refuses to differentiate a forward made before the write."""
        if self._owner is not None:
            self._owner._params_changed()

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
        yield Parameter(prefix + p.name, p.data, p.grad, getattr(p, "_owner", None))


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

    def _params_changed(self):
        self._params_version += 1

    def _forward_made(self):
        """At a training forward: the write count its cache belongs to."""
        self._forward_params_version = self._params_version

    def _check_params_unchanged(self):
        if self._forward_params_version not in (None, self._params_version):
            raise RuntimeError(
                f"{type(self).__name__}.backward(): its parameters were changed (an optimizer "
                "step, load_params, params assignment or pyrnn.init) after the forward() it "
                "would differentiate; call backward() before optimizer.step(), or run forward() "
                "again")
