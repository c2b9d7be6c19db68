"""pyrnn.Sequential: a stack of layers with forward/backward, and a Keras-style fit loop.

Data is samples-first: x (N, T, C) for sequence models (or (N, T) integer tokens in front of
an Embedding, or (N, C) for a feed-forward stack), targets (N, ...). Recurrent layers inside
must be built with batch_first=True; they hand only their output sequence to the next layer
(the final states are dropped; use LastStep to take each sequence's last state). As in Keras,
a model whose data reaches a recurrent layer through rank-keeping layers only (Dense,
LayerNorm, Dropout) needs exactly 3-D (N, T, C) data, or (N, T) token ids when an Embedding
comes first, in fit / evaluate / predict and when called directly: anything else is a
ValueError, since a recurrent layer would read a 2-D batch as ONE unbatched sequence (a single
sequence goes in as x[None]; the layers' own unbatched (T, C) form is for layers used alone).

On a GPU: ``model.to("cuda")`` moves every layer (all layers of a model must be on one device;
a mix is a ValueError naming the layers). forward / backward then take NumPy (uploaded once,
results copied back) or device arrays (kept on the device); fit / evaluate / predict take NumPy
data and move each batch to the device, so activations, gradients and optimizer steps stay there
and only the batch, its predictions (for the loss) and d loss / d pred cross. save() writes host
copies; pyrnn.load(path, device="cuda") rebuilds on the GPU.
"""
from __future__ import annotations

import contextlib
import functools
import math
import numbers
import sys
import time
import warnings
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import (TYPE_CHECKING, Any, Callable, Literal, Optional, Protocol, Sequence, TypeVar,
                    Union, overload)

import numpy as np

from . import _arrays, _attrs, _fit_guard
from . import callbacks as _callbacks
from . import losses as _losses
from . import optim as _optim
from ._validate import (beyond_range, flag, host_only, lengths_array, positive_int,
                        real_array, seed_arg, shape_str, train_mode)
from .layers import (Dense, Dropout, Embedding, Layer, LastStep, LayerNorm, _host_real,
                     _one_thread)
from ._signals import sigint_deferred as _sigint_deferred
from .parameter import layers_in_fit, owners_held, prefixed, refuse_move_in_fit
from .recurrent import _Recurrent, _check_device, _user_stacklevel

_F = TypeVar("_F", bound=Callable[..., Any])

if TYPE_CHECKING:
    import numpy.typing as npt
    from typing_extensions import Self

    from ._cuda import DeviceArray
    from ._typing import Array, ArrayInput, Device, DeviceArrayLike, HostArray, Int, Real
    from .parameter import Parameter


class SupportsLayer(Protocol):
    """What Sequential takes as a layer: pyrnn's layers, nested Sequentials, or any object with
    these methods (a custom layer; config() too for save / load)."""

    def forward(self, *args: Any, **kwargs: Any) -> Any: ...
    def backward(self, *args: Any, **kwargs: Any) -> Any: ...
    def parameters(self) -> Iterable[Parameter]: ...
    def zero_grad(self) -> None: ...
    def train(self, mode: bool = ...) -> Any: ...


# Why fit / evaluate / predict refuse device arrays, on either device (host_only's `takes`).
_HOST_DATA = ("fit, evaluate and predict take host data on any device (they batch it there; a "
              "CUDA model uploads each batch)")


def _is_recurrent(layer):
    return isinstance(layer, _Recurrent)


# Layers whose output features are no longer [forward h | reverse h] halves: after one, a
# LastStep(bidirectional=None) takes every feature at the last valid step (it split a Dense
# head's features into "directions").
_MIXES_FEATURES = (Dense, Embedding)


def _directions_after(layers, bidirectional):
    """The direction flag a LastStep(bidirectional=None) gets after `layers` (flat walk,
    nested models in their place), given the flag before them: _link's rule."""
    for layer in _flat_layers(layers):
        if _is_recurrent(layer):
            bidirectional = layer.bidirectional
        elif isinstance(layer, _MIXES_FEATURES):
            bidirectional = False
    return bidirectional


def _uses_lengths(layers):
    """Whether a layer among `layers` (nested models' included) uses lengths=."""
    return any(_is_recurrent(layer) or getattr(layer, "_takes_lengths", False)
               for layer in _flat_layers(layers))


def _flat_layers(layers):
    """The layers in order, nested Sequentials' layers in their place."""
    for layer in layers:
        if isinstance(layer, Sequential):
            yield from _flat_layers(layer.layers)
        else:
            yield layer


def _marks_fitting(method: _F) -> _F:
    """fit, marking the model as fitting while it runs (to() refuses then)."""
    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        models = [self, *_flat_models(self.layers)]  # (a nested one's to() too)
        was = [m.__dict__.get("_fitting", False) for m in models]
        try:
            with _sigint_deferred():  # (whole: a Ctrl-C part-way left some marked for good)
                for m in models:
                    m.__dict__["_fitting"] = True
            # and every layer's: a slice's to(), or the layer's own, from a callback
            with layers_in_fit([layer for m in models for layer in m.layers]):
                return method(self, *args, **kwargs)
        finally:
            with _sigint_deferred():
                for m, w in zip(models, was):
                    m.__dict__["_fitting"] = w
    return run  # type: ignore[return-value]


def _leaves(layers, prefix=""):
    """(index path "2.0", layer) for every layer that is not a Sequential, nested models'
    in their place (a model met twice, a cycle, is not followed again)."""
    # (an explicit stack: a recursive closure is a reference cycle, which kept the layers it
    # listed alive until the next gc run)
    out, seen, todo = [], set(), [(list(layers), prefix, 0)]
    while todo:
        items, pre, i = todo.pop()
        while i < len(items):
            layer = items[i]
            i += 1
            if isinstance(layer, Sequential):
                if id(layer) not in seen:
                    seen.add(id(layer))
                    todo.append((items, pre, i))
                    items, pre, i = list(layer.layers), f"{pre}{i - 1}.", 0
            else:
                out.append((f"{pre}{i - 1}", layer))
    return out


def _layout(model):
    """The layer objects of model and its nested models, to compare (a cycle is not followed)."""
    return tuple((id(m), tuple(map(id, m.layers))) for m in [model, *_flat_models(model.layers)])


def _name_layer(e, i, layer):
    """Prefix a layer's ValueError / TypeError message with where it sits in the model
    ("layer 2.0 (Dense): ...", the index path of its parameter names), so that in a model with
    several Dense or recurrent layers the message says which one. The exception itself is
    kept (type, traceback); a subclass of its own (another constructor) or one without a
    plain message is left as it is. (_pyrnn_layer_at: (path, layer name, text, separator),
    set by the innermost model, extended by each enclosing one.)"""
    if type(e) not in (ValueError, TypeError) or len(e.args) != 1 \
            or not isinstance(e.args[0], str):
        return
    at = getattr(e, "_pyrnn_layer_at", None)
    if at is None:  # the innermost model: the layer itself raised
        at = ([], type(layer).__name__, e.args[0], ": ")
    path, name, text, sep = at
    path = [str(i), *path]
    e._pyrnn_layer_at = (path, name, text, sep)
    e.args = (f"layer {'.'.join(path)} ({name}){sep}{text}",)


def _flat_models(layers):
    """The Sequentials nested in layers, at any depth, each once (a cycle, which the model's
    own checks report, is not followed)."""
    out, todo, seen = [], list(layers) if isinstance(layers, list) else [], set()
    while todo:
        layer = todo.pop(0)
        if isinstance(layer, Sequential) and id(layer) not in seen:
            seen.add(id(layer))
            out.append(layer)
            if isinstance(layer.layers, list):
                todo.extend(layer.layers)
    return out


def _attribute_snapshots(layers):
    """(object, copy of its attribute dict) for every layer, nested Sequentials' layers
    included: what a move replaces (storage, native layer, cache, device) is held there."""
    out, todo, seen = [], list(layers), set()
    while todo:
        obj = todo.pop()
        if id(obj) in seen:  # (callers refuse cycles first; never loop on one)
            continue
        seen.add(id(obj))
        attrs = getattr(obj, "__dict__", None)
        if attrs is not None:
            out.append((obj, dict(attrs)))
        if isinstance(obj, Sequential):
            todo.extend(obj.layers)
    return out


def _layer_index(index, n):
    """index (an integer, negative from the end) checked against n layers."""
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, numbers.Integral):
        raise TypeError(f"Sequential indices must be integers or slices, got "
                        f"{type(index).__name__}")
    i = int(index)
    if not -n <= i < n:
        raise IndexError(f"layer index {i} out of range for a Sequential of {n} layers")
    return i


# Weakly keyed: a loss class defined per trial (with class attributes) is not kept alive.
_MASK_TAKERS: "weakref.WeakKeyDictionary[type, bool]" = weakref.WeakKeyDictionary()


def _takes_mask(loss):
    """Whether loss.forward takes mask= (the built-in losses do; a custom one may)."""
    kind = type(loss)
    if kind not in _MASK_TAKERS:
        import inspect
        try:
            ps = inspect.signature(loss.forward).parameters
            _MASK_TAKERS[kind] = "mask" in ps or any(
                p.kind is inspect.Parameter.VAR_KEYWORD for p in ps.values())
        except (TypeError, ValueError):
            _MASK_TAKERS[kind] = False
    return _MASK_TAKERS[kind]


def _batch_loss(loss, pred, target, lens, steps):
    """loss.forward of one batch of fit / evaluate. With lengths and a per-step prediction
    (n, T, ...), the steps past each sequence's length are masked out of the loss, its gradient
    and its metrics, as Keras' masking does: the recurrent output there is 0, and a Dense after
    it would otherwise be trained toward the padding's targets."""
    if not isinstance(loss, _losses.Loss):
        return _loss_value(loss, _batch_loss_forward(loss, pred, target, lens, steps))
    # Set again by this forward's _reduce (a custom loss may set neither: _batch_sum); put
    # back if it raises
    before = getattr(loss, "_numerator", None), getattr(loss, "count", 0)
    loss._numerator, loss.count = None, None
    try:
        return _loss_value(loss, _batch_loss_forward(loss, pred, target, lens, steps))
    except BaseException:
        loss._numerator, loss.count = before
        raise


def _loss_value(loss, value):
    """A loss forward's value as a Python float (Keras' logs hold floats: a custom loss's
    NumPy float32 reached evaluate's result and the History, which json could not write); what
    is not one real number (an array of shape (1,), None) a TypeError naming the loss."""
    if isinstance(value, numbers.Real):
        return float(value)
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        item = value.item()  # (a 0-d ndarray or tensor)
        if isinstance(item, numbers.Real):
            return float(item)
    shape = getattr(value, "shape", None)
    raise TypeError(f"{type(loss).__name__}.forward returned {type(value).__name__}"
                    f"{'' if shape is None else ' of shape ' + shape_str(tuple(shape))}; fit, "
                    "evaluate and the callbacks need the batch's loss as one real number")


def _batch_loss_forward(loss, pred, target, lens, steps):
    shape = tuple(pred.shape)
    if lens is not None and len(shape) >= 3 and shape[1] == steps and bool((lens < steps).any()):
        if _takes_mask(loss):
            return loss.forward(pred, target, mask=np.arange(steps)[None, :] < lens[:, None])
        warnings.warn(f"{type(loss).__name__}.forward takes no mask=: the padded steps past "
                      f"lengths count in its loss and gradient (pyrnn's losses take mask=, a "
                      f"bool array over the prediction's leading axes)", UserWarning,
                      stacklevel=_user_stacklevel())
    return loss.forward(pred, target)


def _batch_sum(loss, value, samples):
    """(what an epoch's (or evaluate's) mean adds up for one batch, what it divides by): the
    batch's sum before the mean divided it and loss.count, what the mean divided by. A built-in
    loss's forward keeps that sum (exact, also where a zero count gave a mean of 0); for any
    other forward (a custom loss, or a subclass changing the value) it is value * count, and a
    forward that sets no count is weighed by the batch's samples, as Keras weighs batch means
    (0 would make its epoch's loss 0). reduction="sum": the values add up."""
    if loss.count is None:
        loss.count = samples
    if loss.reduction != "mean":
        return value, loss.count
    numerator = getattr(loss, "_numerator", None)
    own = getattr(type(loss).forward, "__module__", None) == _losses.__name__
    return (numerator if own and numerator is not None else value * loss.count), loss.count


def _epoch_loss(loss, total, count):
    if loss.reduction != "mean":
        return total
    return total / count if count else 0.0  # nothing counted: 0, as a batch of it gives


class _Tally:
    """An epoch's (or evaluate's) loss so far: the batches' sums, what their mean divides by
    (_batch_sum), and each metric's (hits, counted)."""

    def __init__(self, loss):
        self.loss, self.total, self.count, self.metrics = loss, 0.0, 0, {}

    def add(self, value, samples):
        part, counted = _batch_sum(self.loss, value, samples)
        self.total += part
        self.count += counted
        for k, (c, t) in self.loss.metric_counts().items():
            a, s = self.metrics.get(k, (0, 0))
            self.metrics[k] = (a + c, s + t)

    def mean(self):
        return _epoch_loss(self.loss, self.total, self.count)

    def metric_values(self):
        return {k: (c / t if t else float("nan")) for k, (c, t) in self.metrics.items()}


def _pyrnn_backward(layer):
    """Whether layer's backward() is a pyrnn layer's own (its cache is then the pyrnn one)."""
    backward = getattr(type(layer), "backward", None)
    return (hasattr(layer, "_check_backward_ready") and
            getattr(backward, "__module__", "").startswith("pyrnn."))


def _walk_distinct(root, model, prefix, seen):
    """Sequential._check_distinct's walk, as a plain function: a nested closure calling itself
    is a reference cycle, which kept every model it had checked alive until a gc run."""
    for i, layer in enumerate(model.layers):
        where = f"{prefix}{i}"
        if id(layer) in seen:
            if layer is root:
                raise ValueError(f"layer {where} is the Sequential itself: a model cannot "
                                 "contain itself")
            raise ValueError(
                f"layer {where} ({type(layer).__name__}) is the same object as layer "
                f"{seen[id(layer)] or 'the model'}: a layer keeps one forward's cache, so a "
                "second use would give wrong gradients; use copy.deepcopy(layer) for an "
                "independent layer (shared weights are not supported)")
        seen[id(layer)] = where
        if isinstance(layer, Sequential):
            _walk_distinct(root, layer, where + ".", seen)


class Sequential(Layer):
    """Layers applied in order. ``layers`` is a plain list (the layer objects themselves)."""
    _takes_lengths = True
    optimizer: Optional[_optim.Optimizer] = None  # fit's optimizer, once fit has run (Keras' model.optimizer)
    layers: list[SupportsLayer]
    stop_training: bool
    history: Optional[dict[str, list[float]]]

    def __init__(self, layers: Iterable[SupportsLayer] = ()) -> None:
        super().__init__()
        # Direction count of the recurrent layer before this model in an enclosing one (set
        # by its _link during its passes); None when unknown (standalone, or nothing before).
        self._auto_bidirectional: Optional[bool] = None
        if isinstance(layers, (Layer, _Recurrent)):
            raise TypeError("Sequential takes a list of layers: Sequential([layer, ...])")
        self.layers = []
        for layer in layers:  # checked one by one, linked once (add() per layer was O(n^2))
            self._check_layer(len(self.layers), layer)
            self.layers.append(layer)
        self._check_links()
        self.stop_training = False
        self.history = None

    def add(self, layer: SupportsLayer) -> Self:
        self._check_layer(len(self.layers), layer)
        self.layers.append(layer)
        try:
            self._check_links()
        except Exception:  # (a TypeError too: an earlier edit of `layers` it reports)
            self.layers.pop()  # refused: the model stays as it was
            raise
        return self

    def pop(self, index: Int = -1) -> SupportsLayer:
        """Remove and return the layer at `index` (the last by default), as Keras' pop()."""
        if not self.layers:
            raise IndexError("pop from an empty Sequential")
        i = _layer_index(index, len(self.layers))
        if i == 0:
            # The layers left take what the first one gave, as model[1:] does: after a
            # bidirectional one, its two directions (a LastStep would take them as one).
            try:  # (a cycle: no direction walk; popping may be the repair)
                after = bool(_directions_after(self.layers[:1], self._start_directions()))
            except RecursionError:
                return self.layers.pop(0)
            layer = self.layers.pop(0)
            self._input_bidirectional = after
            return layer
        return self.layers.pop(i)

    # As PyTorch's nn.Sequential: len(model), iteration over the layers, model[i] (the layer
    # object) and model[a:b] (a new Sequential over the same layer objects).
    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[SupportsLayer]:
        return iter(list(self.layers))

    @overload
    def __getitem__(self, index: slice) -> Sequential: ...
    @overload
    def __getitem__(self, index: Int) -> SupportsLayer: ...

    def __getitem__(self, index: Union[slice, Int]) -> Union[Sequential, SupportsLayer]:
        if isinstance(index, slice):
            sub = Sequential(self.layers[index])
            start, _, step = index.indices(len(self.layers))
            if step == 1:
                # The direction count the slice's first layer gets in this model: model[1:] of
                # [BiGRU, LastStep(), Dense] took the BiGRU's output as unidirectional.
                self._check_distinct()
                sub._input_bidirectional = bool(
                    _directions_after(self.layers[:start], self._start_directions()))
            return sub
        return self.layers[_layer_index(index, len(self.layers))]

    @staticmethod
    def _check_layer(i, layer):
        if isinstance(layer, type):
            raise TypeError(f"layer {i} is the class {layer.__name__}, not a layer: "
                            f"{layer.__name__}(...) makes one")
        for attr in ("forward", "backward", "parameters", "zero_grad", "train"):
            if not callable(getattr(layer, attr, None)):
                raise TypeError(f"layer {i} ({type(layer).__name__}) is not a pyrnn layer: it has "
                                f"no {attr}()")
        if _is_recurrent(layer) and not layer.batch_first:
            raise ValueError(f"layer {i} ({layer!r}) must be built with batch_first=True: "
                             "Sequential's data is samples-first (N, T, C)")

    def _check_no_classes(self):
        """_check_layer's TypeError for a layer class put in `layers` (nested models' too):
        its `device` is a descriptor, which device and to() took for a device of its own (and
        to()'s rollback cleared the class's __dict__, an AttributeError)."""
        for path, layer in _leaves(self.layers):
            if isinstance(layer, type):
                self._check_layer(path, layer)

    def _check_distinct(self):
        """ValueError when one layer object sits at two places of the model, nested models
        included: a layer keeps one forward's cache, so backward would take its first use
        through the second use's activations (silently wrong gradients). Also refuses a model
        that contains itself."""
        _walk_distinct(self, self, "", {id(self): ""})

    @contextlib.contextmanager
    def _linked(self):
        """The direction counts _link gives, for one pass (a forward, an ONNX export) only: a
        LastStep (or nested model) used on its own afterwards, or taken out of the model, is
        standalone again, not still bidirectional from its last model."""
        try:
            self._link()
            yield
        finally:
            self._unlink()

    def _check_links(self):
        """_link's checks of `layers`, leaving no direction count set."""
        with self._linked():
            pass

    def _unlink(self):
        # A walk with a seen set: it also runs after _link refused a model containing itself.
        todo, seen = [self], {id(self)}
        while todo:
            for layer in todo.pop().layers:
                if isinstance(layer, LastStep):
                    layer._auto_bidirectional = False
                elif isinstance(layer, Sequential) and layer is not self:
                    layer._auto_bidirectional = None
                if isinstance(layer, Sequential) and id(layer) not in seen:
                    seen.add(id(layer))
                    todo.append(layer)

    def _link(self, _checked=False):
        """Tell each LastStep the direction count of the nearest preceding recurrent layer,
        across nested Sequentials: a nested model starts from what its enclosing model had
        before it (its _auto_bidirectional, set here, kept for its own forward calls) and
        passes on what its last recurrent layer had. Returns that direction flag. (_checked:
        the enclosing model checked this one's distinctness already, in its own walk.) Used
        through _linked, which clears the counts again."""
        if not _checked:
            self._check_distinct()
        bidirectional = self._start_directions()  # (None: unknown, no recurrent layer yet)
        for i, layer in enumerate(self.layers):
            self._check_layer(i, layer)  # `layers` is a public list: re-check edits
            if _is_recurrent(layer):
                bidirectional = layer.bidirectional
            elif isinstance(layer, _MIXES_FEATURES):
                bidirectional = False  # (see _directions_after)
            elif isinstance(layer, LastStep):
                layer._auto_bidirectional = bool(bidirectional)
            elif isinstance(layer, Sequential):
                layer._auto_bidirectional = bidirectional  # (None: the nested model's own)
                bidirectional = layer._link(_checked=True)
        return bidirectional

    # The direction count of what feeds this model, its own: a slice model[a:] keeps the one
    # in effect at a in the model (__getitem__), and save / load keep it. Used where no
    # enclosing model's layers before it say (a class default for pickles from before it).
    _input_bidirectional = False

    def _start_directions(self):
        """The direction flag this model's layers start from: its enclosing model's, where a
        layer there before it set one, else its own (a slice's) when True, else None."""
        if self._auto_bidirectional is not None:
            return self._auto_bidirectional
        return True if self._input_bidirectional else None

    def _input_rule(self):
        """(ndim, description) the model's input must have when it reaches a recurrent layer
        through rank-keeping layers only (an Embedding adds the feature axis); else None."""
        embedding = False
        for i, layer in enumerate(_flat_layers(self.layers)):
            if _is_recurrent(layer):
                where = "a recurrent first layer" if i == 0 else f"the recurrent layer {layer!r}"
                if embedding:
                    return 2, f"2-D (N, T) token ids for an Embedding feeding {where}"
                return 3, f"3-D (N, T, C) input for {where}"
            if isinstance(layer, Embedding) and not embedding:
                embedding = True
            elif not isinstance(layer, (Dense, Dropout, LayerNorm)):
                return None  # LastStep, a second Embedding, a custom layer: no rule
        return None

    def _features_first(self):
        """The model's first layer (past Dropout) when it is a Dense or LayerNorm, which takes
        a feature axis after the samples'; else None."""
        for layer in _flat_layers(self.layers):
            if isinstance(layer, (Dense, LayerNorm)):
                return layer
            if not isinstance(layer, Dropout):
                return None
        return None

    def _check_rank(self, x, name="x"):
        """ValueError when x's rank breaks _input_rule: a recurrent layer would otherwise take
        a 2-D batch for one unbatched sequence (and the results depend on batch_size)."""
        self._check_links()  # the layer checks first: an edit of `layers` is the real error
        rule = self._input_rule()
        if rule is None:
            return
        try:
            shape = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
        except Exception:
            return  # not array-like: the first layer reports it
        if len(shape) != rule[0]:
            raise ValueError(f"{name}: expected {rule[1]}, got shape {shape_str(shape)}; "
                             "Sequential data is samples-first (a single sequence: x[None])")

    # ---- parameters ----------------------------------------------------------------------
    def parameters(self) -> Iterator[Parameter]:
        """Every layer's Parameters, named "{layer index}.{name}" (e.g. "0.weight_ih_l0")."""
        self._check_distinct()  # `layers` is a public list: a cycle would recurse forever
        for i, layer in enumerate(self.layers):
            yield from prefixed(f"{i}.", layer.parameters())

    params = _arrays.NamedArrays(
        lambda self: self._named("data"), "parameter",
        """{"{layer index}.{name}": array}, the layers' own arrays (zero-copy). As for a
        layer, ``params[name] = value`` copies value into that layer's array (checked first);
        entries cannot be added or removed.""")
    grads = _arrays.NamedArrays(
        lambda self: self._named("grad"), "gradient",
        """{"{layer index}.{name}": gradient}, the layers' own arrays; assignment copies.""")

    def _named(self, what):
        """{"{layer index}.{name}": the layers' own data or grad arrays}."""
        return {p.name: getattr(p, what) for p in self.parameters()}

    # Copy / pickle: the layers carry their own data (each on its device); the model's own
    # state is Python's default (Layer's host-copy swap would duplicate every parameter).
    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_busy_owner", None)
        state.pop("_fitting", None)  # (a checkpoint saved during fit: not the copy's)
        state.pop("_forward_serials", None)  # (the copy's layers hold no forward's cache)
        return state

    def __setstate__(self, state):
        self.__dict__.update(_attrs.upgrade(type(self), state))

    @_one_thread
    def load_params(self, values: Mapping[str, ArrayInput], *, strict: bool = False) -> None:
        """Overwrite parameters from {name: array}, named as in ``params`` ("0.weight_ih_l0");
        missing names keep their value (strict=True: a KeyError naming them, as torch's
        load_state_dict). All or nothing: every name, shape and dtype is checked before any
        layer is written."""
        strict = flag("strict", strict)
        with owners_held(list(self.parameters())):  # (not while a layer runs elsewhere)
            _arrays.load_into(self._named("data"), values, strict=strict)
        self._params_changed()

    def _params_changed(self):
        # Writes through the model's params / load_params: each layer's backward then refuses
        # a forward made before them (parameter.ParamWrites), nested layers included.
        for p in self.parameters():
            p._changed()

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.parameters()))

    @_one_thread
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero every layer's gradients (set_to_none, torch's keyword, zeroes too: pyrnn's
        gradients are the layers' own arrays, never None)."""
        flag("set_to_none", set_to_none)
        self._check_distinct()
        for layer in self.layers:
            layer.zero_grad()

    @_one_thread  # (eval() in another thread switched a running fit's layers)
    def train(self, mode: bool = True) -> Self:
        mode = train_mode(mode)
        # Before anything changes: a refused call changes nothing.
        for i, layer in enumerate(self.layers):
            self._check_layer(i, layer)
        self._check_distinct()
        self.training = mode
        for layer in self.layers:
            layer.train(self.training)
        return self

    def config(self) -> dict[str, Any]:
        self._check_distinct()
        cfg: dict[str, Any] = {
            "layers": [{"class": type(layer).__name__, "config": layer.config()}  # type: ignore[attr-defined]
                       for layer in self.layers]}
        if self._input_bidirectional:  # a slice after a bidirectional layer (__getitem__)
            cfg["bidirectional_input"] = True
        return cfg

    # ---- device ----------------------------------------------------------------------------
    @property  # type: ignore[override]  # (computed from the layers; Layer's is a descriptor)
    def device(self) -> Device:
        """The device every layer is on ("cpu" or "cuda"); ValueError if they differ. An empty
        nested model has none (it is on whichever its neighbours are)."""
        self._check_distinct()
        self._check_no_classes()
        devices = [getattr(layer, "device", "cpu") for layer in self.layers
                   if not (isinstance(layer, Sequential) and not any(_flat_layers(layer.layers)))]
        if len(set(devices)) > 1:
            where = "; ".join(f"{d}: " + ", ".join(f"{i} ({type(self.layers[i]).__name__})"
                                                   for i, e in enumerate(devices) if e == d)
                              for d in dict.fromkeys(devices))
            raise ValueError(f"the layers of this Sequential are on different devices ({where}); "
                             "move the whole model with model.to('cuda') or model.to('cpu')")
        return devices[0] if devices else "cpu"  # type: ignore[return-value]

    @device.setter
    def device(self, value: Any) -> None:  # the layers decide; to() moves them
        _attrs.Device._refuse(self, "set", value)

    @device.deleter
    def device(self) -> None:
        _attrs.Device._refuse(self, "delete", None)

    @_one_thread
    def to(self, device: Device) -> Self:
        """Move every layer to "cpu" or "cuda" (in place; returns self). The optimizers the
        model and its nested models keep (model.optimizer, fit's) follow, with their state;
        build others after moving: Parameter views taken before point at the old storage. If a
        layer fails to move, the layers moved before it get their previous state back (the
        same arrays, caches and device), so a failed move changes nothing. Not during fit()
        (its guard holds the old storage)."""
        if self.__dict__.get("_fitting"):
            raise RuntimeError("model.to() during fit() (from a callback?) is not supported: "
                               "fit's optimizer and its guard hold the storage the move "
                               "replaces; move the model before fit()")
        _check_device(device)
        self._check_distinct()
        self._check_no_classes()
        for layer in _flat_layers(self.layers):  # (a slice model[:] of a fitting model)
            refuse_move_in_fit(layer, "model.to()")
        if device != "cpu":
            self._check_one_dtype(device)
        saved = _attribute_snapshots(self.layers)
        # Ctrl-C waits for the end (a move is whole or not at all, and so is the optimizers'
        # following it; between the two, it left them behind)
        with _sigint_deferred():
            try:
                self._move(device)
            except BaseException:
                for obj, attrs in saved:  # puts references back: cannot fail
                    obj.__dict__.clear()
                    obj.__dict__.update(attrs)
                raise
            del saved  # (the old storage: freed before the optimizers' state is uploaded)
            self._follow()
        return self

    def _move(self, device):
        """Every layer to device; a nested model's layers too, its optimizers left to the
        outer to() (a failed move puts only the layers back)."""
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Sequential):
                layer._move(device)
            elif callable(getattr(layer, "to", None)):
                layer.to(device)
            elif device != "cpu":
                raise TypeError(f"layer {i} ({type(layer).__name__}) has no to(): it "
                                f"cannot move to {device}")

    def _kept_optimizers(self):
        """The optimizers this model and its nested models keep (model.optimizer, the one fit
        built from a name), each once."""
        out, seen = [], set()
        for model in [self, *_flat_models(self.layers)]:
            kept = model.__dict__.get("_fit_named_optimizer")
            for opt in (model.__dict__.get("optimizer"), kept[1] if kept is not None else None):
                if isinstance(opt, _optim.Optimizer) and id(opt) not in seen:
                    seen.add(id(opt))
                    out.append(opt)
        return out

    def _follow(self):
        """After a move: the kept optimizers train the moved parameters (the same array of the
        same layer: equal Parameters), their state (steps, moments) uploaded to the new device,
        as the layers' arrays were. Their parameters would otherwise view the old storage
        (keeping it, and the last forward's activations, alive on the GPU; a CPU model's
        pickle needing a GPU). An optimizer none of whose parameters moved is not touched (a
        move to where the model is costs nothing); one that cannot follow (a custom one's state
        refused, a MemoryError) is left as it was: its next step then names the moved layer.
        Ctrl-C waits for the end: an optimizer is never left half uploaded."""
        opts = [opt for opt in self._kept_optimizers()
                if any(p._detached() for p in [*opt.params, *opt.__dict__.get("_left", ())])]
        if not opts:
            return
        moved = {p: p for p in self.parameters()}  # a moved one is equal to its old self
        with _sigint_deferred():  # (also when called alone)
            for opt in opts:
                try:
                    opt._repoint(moved)  # (all or nothing)
                except Exception:
                    pass

    def numpy_params(self) -> dict[str, HostArray]:
        """{name: ndarray} host COPIES of every parameter ("0.weight_ih_l0", ...)."""
        return {p.name: _arrays.host_copy(p.data) for p in self.parameters()}

    def numpy_grads(self) -> dict[str, HostArray]:
        return {p.name: _arrays.host_copy(p.grad) for p in self.parameters()}

    def _check_one_dtype(self, device):
        """A model on a GPU computes in one float dtype: device arrays pass from layer to layer
        as they are (the CPU model converts its host arrays at each layer instead). TypeError
        naming the layers of each dtype otherwise."""
        by_dtype: dict[np.dtype, list[str]] = {}
        for i, layer in enumerate(_flat_layers(self.layers)):
            dt = getattr(layer, "dtype", None)
            if dt is not None:
                by_dtype.setdefault(np.dtype(dt), []).append(f"{i} ({type(layer).__name__})")
        if len(by_dtype) > 1:
            where = "; ".join(f"{dt}: " + ", ".join(names) for dt, names in by_dtype.items())
            raise TypeError(f"a Sequential on {device} needs one dtype across its layers, got "
                            f"{where}; build every layer with the same dtype= (PyTorch requires "
                            f"this on any device)")

    def _dtype(self, reverse=False):
        """The float dtype of the first (last) layer that has one, nested models' layers in
        their place, else None."""
        flat = list(_flat_layers(self.layers))
        for layer in (reversed(flat) if reverse else flat):
            dt = getattr(layer, "dtype", None)
            if dt is not None:
                return np.dtype(dt)
        return None

    def _upload(self, x, reverse=False):
        """x on the device for a CUDA model: device arrays as they are; host data converted
        to the model's dtype (token ids in front of an Embedding: int64) and copied once."""
        if _arrays.on_device(x):
            return x
        if not reverse and isinstance(next(_flat_layers(self.layers), None), Embedding):
            arr = np.asarray(x)
            # Integer ids travel as int64 (the Embedding validates them); anything else stays
            # on the host so the Embedding reports it.
            return _arrays.to_device(arr, np.int64) if arr.dtype.kind in "iu" else x
        dtype = self._dtype(reverse)
        if dtype is None:
            # No layer with a dtype (LastStep, Dropout). Forward: the input's float32 / float64,
            # as those layers take host data alone and as the CPU model does. Backward: dy stays
            # on the host, and each layer converts it to the dtype its forward ran in (dy's own
            # dtype may differ: the CPU model converts it too).
            if reverse:
                return x
            return _arrays.to_device(_host_real(x))
        return _arrays.to_device(real_array("dy" if reverse else "x", x, dtype))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        from .serialize import _build, _check_spec, _registry
        spec, reg = {"class": "Sequential", "config": config}, _registry()
        # Its structure first (a bare KeyError named a class or a missing key); the layers'
        # constructors check their own arguments.
        _check_spec("Sequential.from_config", spec, reg)
        return _build(spec, reg)

    def __repr__(self) -> str:
        try:
            self._check_distinct()
        except ValueError as e:  # a cycle: repr must not recurse forever, nor raise
            return f"<Sequential of {len(self.layers)} layers: {e}>"
        inner = "".join(f"\n  ({i}): " + repr(layer).replace("\n", "\n  ")
                        for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)" if inner else "Sequential()"

    # ---- forward / backward --------------------------------------------------------------
    # forward / backward: host data in, NumPy out; a device array in (a CUDA model), a
    # DeviceArray out. (The output is the last layer's: an ndarray for pyrnn's layers.)
    @overload
    def forward(self, x: DeviceArray, lengths: Optional[npt.ArrayLike] = None) -> DeviceArray: ...
    @overload
    def forward(self, x: npt.ArrayLike, lengths: Optional[npt.ArrayLike] = None) -> HostArray: ...
    @overload
    def forward(self, x: DeviceArrayLike,
                lengths: Optional[npt.ArrayLike] = None) -> DeviceArray: ...
    @overload
    def forward(self, x: ArrayInput, lengths: Optional[npt.ArrayLike] = None) -> Array: ...

    @_one_thread  # its flags and layer caches: one call at a time, as a layer
    def forward(self, x: Any, lengths: Any = None) -> Any:
        """x (N, T, C) (or whatever the first layer takes); lengths (N,) passed to recurrent
        layers and LastStep. Returns the last layer's output. On a CUDA model: NumPy in, NumPy
        out (the input is uploaded once); a device array in, a DeviceArray out. Data that
        reaches a recurrent layer must be 3-D (N, T, C) ((N, T) ids before an Embedding), as in
        fit: see the module docstring."""
        if type(x).__name__ == "PackedSequence":  # (a tuple: numpy's "inhomogeneous shape")
            raise TypeError("a torch PackedSequence is not taken: pass the padded tensor and "
                            "lengths= (torch.nn.utils.rnn.pad_packed_sequence gives both)")
        self._check_rank(x)
        if lengths is not None:
            self._check_lengths_used()  # (ignored, whatever they held)
        if self.device == "cpu":
            return self._forward(x, lengths)
        out = self._forward(self._upload(x), lengths)
        return out if _arrays.on_device(x) else _arrays.host(out)

    def _forward_batch(self, x, lengths):
        """One batch for fit / evaluate / predict: on a CUDA model, moved to the device and
        left there (the loss copies the predictions back)."""
        return self._forward(self._upload(x) if self.device != "cpu" else x, lengths)

    def _forward(self, x, lengths=None):
        device = self.device
        if device != "cpu":  # (a model built from layers made on the device: not through to())
            self._check_one_dtype(device)
        if isinstance(x, np.ndarray) and x.dtype.kind in "iu":
            # Integers in the dtype pyrnn's first layer computing on them would take: a leading
            # Dropout or LastStep made them float32 (2**24 + 1 rounded) before a float64 layer
            # (a custom layer first gets them as they are: it may take ids)
            first = self._first_run_layer(skip=(Dropout, LastStep))[1]
            if (isinstance(first, (Dense, LayerNorm, _Recurrent)) and "forward" not in
                    first.__dict__ and type(first).forward in (Dense.forward, LayerNorm.forward,
                                                               _Recurrent.forward)):
                x = x.astype(first.dtype)  # (a subclass with a forward of its own: as given)
        with self._linked():
            return self._forward_linked(x, lengths)

    def _forward_linked(self, x, lengths):
        try:
            return self._forward_layers(x, lengths)
        except Exception:
            raise
        except BaseException:
            # A Ctrl-C landing between a layer's return and the next index left _failed_at
            # naming a layer whose cache had changed (at 0: "none changed", and backward mixed
            # the caches): counted as changed (at worst a backward refused that could run).
            if getattr(self, "_failed_at", None) is not None:
                self._failed_at += 1
            raise

    def _forward_layers(self, x, lengths):
        out = x
        # Until this forward completes, the layer it failed at: the layers before it hold this
        # forward's caches and the rest the last one's, which backward must not mix.
        self._failed_at = 0
        for i, layer in enumerate(self.layers):
            self._failed_at = i
            try:
                out = self._forward_one(i, layer, out, lengths)
            except (ValueError, TypeError) as e:
                _name_layer(e, i, layer)
                raise
        self._failed_at = None
        # Which forward each layer's cache now is, nested models' layers included (whoever
        # ran them: a Sequential subclass's own forward too): backward refuses a layer another
        # forward ran since (its cache no longer this forward's). Set last: a failed forward
        # keeps the old record (a failure at layer 0 leaves every cache as it was).
        # (ids, not the layers: a layer popped since is not kept alive by the record)
        self._forward_serials = [(path, id(layer), getattr(layer, "_forward_serial", None))
                                 for path, layer in _leaves(self.layers)]
        return out

    def _forward_one(self, i, layer, out, lengths):
        if _is_recurrent(layer) or (i and isinstance(layer, Sequential)):
            need = 3 if _is_recurrent(layer) else (layer._input_rule() or (None,))[0]
            shape = tuple(out.shape) if hasattr(out, "shape") else np.shape(out)
            if need is not None and len(shape) != need:
                # A 2-D (N, F) from LastStep would pass as ONE unbatched sequence whose
                # steps are the samples: results that depend on how the data is batched.
                what = "a sequence (N, T, F)" if need == 3 else f"{need}-D input"
                name = "a nested Sequential" if isinstance(layer, Sequential) else repr(layer)
                e = ValueError(f"needs {what}, but the layers before it give shape {shape}")
                e._pyrnn_layer_at = ([], name, e.args[0], " ")  # (_name_layer adds i)
                raise e
        if _is_recurrent(layer):
            return layer.forward(out, lengths=lengths)[0]
        if isinstance(layer, Sequential) and not _uses_lengths(layer.layers):
            return layer.forward(out)  # (a Dense head: it would refuse lengths= as unused)
        if getattr(layer, "_takes_lengths", False):
            return layer.forward(out, lengths=lengths)
        return layer.forward(out)

    # d x: None when the first layer is an Embedding (integer inputs have no gradient).
    @overload
    def backward(self, dy: DeviceArray) -> Optional[DeviceArray]: ...
    @overload
    def backward(self, dy: npt.ArrayLike) -> Optional[HostArray]: ...
    @overload
    def backward(self, dy: DeviceArrayLike) -> Optional[DeviceArray]: ...
    @overload
    def backward(self, dy: ArrayInput) -> Optional[Array]: ...

    @_one_thread
    def backward(self, dy: Any) -> Any:
        """Backpropagates dy (shaped like the output) through every layer of the last
        training-mode forward; parameter gradients accumulate. Returns d x (None when the
        first layer is an Embedding: integer inputs have no gradient). On a CUDA model a NumPy
        dy is uploaded once and d x comes back as NumPy; a device dy gives a device d x."""
        if dy is None:  # (not "a layer that passes no gradient back", as an Embedding's None)
            raise TypeError("dy must be a real numeric array (d loss / d output), got None")
        if self.device == "cpu":
            return self._backward(dy)
        d = self._backward(self._upload(dy, reverse=True))
        return d if d is None or _arrays.on_device(dy) else _arrays.host(d)

    def _check_params_unchanged(self):
        # Every layer (nested models too) before any runs: a refused backward accumulates no
        # gradient into the layers after the written one (or the one without a cache: a layer
        # put in eval mode on its own, or a forward that ran in eval mode).
        # One walk of the tree (per-level parameters() calls made deep nesting cost depth^4).
        checks = []
        for m in self._with_nested():
            if isinstance(m, Sequential):
                failed = getattr(m, "_failed_at", None)
                where = "" if m is self else " of a nested model"
                if failed:  # (a failure at layer 0 changed no cache)
                    raise RuntimeError(
                        f"Sequential.backward(): the last forward failed at layer {failed}{where}, "
                        f"after the layers before it had run, so the layers hold the caches of "
                        f"different forwards (their gradients would mix them); run a forward "
                        f"that succeeds first")
                m._check_own_forward(where)
                continue
            check = getattr(m, "_check_params_unchanged", None)
            if _pyrnn_backward(m):  # (an overridden backward may keep its cache elsewhere)
                check = m._check_backward_ready
            if check is not None:
                checks.append(check)
                continue
            # A custom layer: the pyrnn layers owning the parameters it hands out (one it wraps).
            params = getattr(m, "parameters", None)
            for p in params() if callable(params) else ():
                check = getattr(getattr(p, "_owner", None), "_check_params_unchanged", None)
                if check is not None:
                    checks.append(check)
        for check in checks:
            check()

    def _check_own_forward(self, where=""):
        """RuntimeError when a layer's cache is no longer this model's last forward's: another
        forward ran the layer since (a model sharing it, a slice such as model[:2] in training
        mode, a direct call), or the layers were edited since; backward would differentiate
        that forward's activations (silently wrong gradients)."""
        serials = self.__dict__.get("_forward_serials")
        if serials is None:  # no forward yet (or a copy): the layers' own checks report it
            return
        now = list(_leaves(self.layers))
        if [id(layer) for _, layer in now] != [i for _, i, _ in serials]:
            raise RuntimeError(f"Sequential.backward(): the layers{where} were changed (added, "
                               f"removed or replaced) after the forward it would "
                               f"differentiate; run forward() again")
        for (path, layer), (_, _, serial) in zip(now, serials):
            if getattr(layer, "_forward_serial", None) != serial:
                top = path.split(".")[0]
                slice_ = "" if where else f" such as model[:{int(top) + 1}]"
                raise RuntimeError(
                    f"Sequential.backward(): layer {path}{where} ({type(layer).__name__}) ran "
                    f"another forward after this model's (a model sharing it, a slice{slice_}, "
                    f"or a direct call); its cache holds that forward's activations, so the "
                    f"gradients would be wrong. Run this model's forward() again before "
                    f"backward()")

    def _backward(self, dy, _checked=False):
        """(_checked: an enclosing model's backward checked this one's whole tree already.)"""
        if not _checked:
            self._check_params_unchanged()
        d = dy
        for layer in reversed(self.layers):
            if d is None:
                raise RuntimeError(f"{type(layer).__name__} sits before a layer that passes no "
                                   "gradient back (Embedding must come first)")
            if isinstance(layer, Sequential) and type(layer).backward is Sequential.backward:
                # d is already where the nested model computes (uploaded once)
                d = layer._backward(d, _checked=True)
                continue
            d = layer.backward(d)
            if _is_recurrent(layer):
                d = d[0]
        return d

    # ---- training loop -------------------------------------------------------------------
    @staticmethod
    def _data(name, a, n=None, finite=True):
        if isinstance(a, (str, bytes)):
            raise TypeError(f"{name} must be an array, got {type(a).__name__}")
        if type(a).__name__ == "PackedSequence":  # (a tuple: numpy's "inhomogeneous shape")
            raise TypeError(f"{name}: a torch PackedSequence is not taken: pass the padded "
                            "tensor and lengths= (torch.nn.utils.rnn.pad_packed_sequence gives "
                            "both)")
        host_only(name, a, _HOST_DATA)
        try:
            arr = np.asarray(a)
        except Exception as e:
            raise TypeError(f"{name} must be an array: {e}") from None
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
        if arr.ndim < 1 or arr.shape[0] < 1:
            raise ValueError(f"{name} must have at least one sample, got shape "
                             f"{shape_str(arr.shape)}")
        if n is not None and arr.shape[0] != n:
            raise ValueError(f"{name} has {arr.shape[0]} samples but x has {n} "
                             f"({name} shape {shape_str(arr.shape)})")
        if finite:
            arr = Sequential._finite(name, arr, None)
        return arr

    @staticmethod
    def _finite(name, arr, lengths):
        """arr, refused if it holds NaN or Inf; with lengths, only steps within each sequence's
        length count, and padding that holds any is zeroed in a copy: the layers promise that
        padding reaches no output or gradient, but a Dense before the recurrent layer would
        still multiply it by its zero gradient (NaN * 0 = NaN in its weight gradient), and a
        loss's 0 * inf is NaN too."""
        if arr.dtype.kind != "f":
            return arr
        finite = np.isfinite(arr)
        if finite.all():
            return arr
        valid = Sequential._within_lengths(arr, lengths)
        bad = ~finite if valid is None else ~finite & valid
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{name} contains NaN or Inf (first at index {first}"
                             f"{', within its lengths' if valid is not None else ''}); "
                             "clean the data first")
        return np.where(valid, arr, arr.dtype.type(0))  # (only the padding had any)

    def _input_dtype(self):
        """The float dtype the input is first computed in: that of the first layer with one,
        nested models' included, past Dropout and LastStep (they keep the input's); None for
        integer input, or unknown (a custom layer without a dtype may transform the input)."""
        for layer in _flat_layers(self.layers):
            if isinstance(layer, Embedding):
                return None
            dt = getattr(layer, "dtype", None)
            if dt is not None:
                dt = np.dtype(dt)
                return dt if dt.kind == "f" else None
            if not isinstance(layer, (Dropout, LastStep)):
                return None
        return None

    @staticmethod
    def _int_padding(arr, lengths):
        """Integer data (token ids) with its padding past the lengths read as 0 in a copy,
        as float padding is: an id there (-1, a pad id past the vocabulary) is no sample's,
        and the Embedding refused it."""
        if lengths is None or arr.dtype.kind not in "iu" or arr.ndim < 2:
            return arr
        valid = Sequential._within_lengths(arr, lengths)
        if not (np.where(valid, 0, arr) != 0).any():
            return arr
        return np.where(valid, arr, arr.dtype.type(0))

    @staticmethod
    def _within_lengths(arr, lengths):
        """Bool (N, T, 1, ...) over arr (N, T, ...): the steps within each sequence's length;
        None without lengths."""
        if lengths is None:
            return None
        T = arr.shape[1]
        return (np.arange(T)[None, :] < lengths[:, None]).reshape(
            lengths.shape[0], T, *([1] * (arr.ndim - 2)))

    @staticmethod
    def _check_range(name, arr, dt, lengths=None):
        """arr, refused if it holds values finite here but Inf once converted to the model's
        dtype (as Inf is: the rule of every layer call, pyrnn._validate.cast_finite); with
        lengths, only steps within each sequence's length count, and padding that holds any is
        zeroed in a copy (as _finite does with NaN and Inf there)."""
        big = None if dt is None else beyond_range(arr, dt)
        if big is None:
            return arr
        valid = Sequential._within_lengths(arr, lengths)
        if valid is not None:
            big = beyond_range(arr[np.broadcast_to(valid, arr.shape)], dt)
        if big is not None:
            raise ValueError(f"{name} has values beyond the {dt} range of the model (the "
                             f"largest is {big:.3g}"
                             f"{', within its lengths' if valid is not None else ''}); "
                             "scale the data")
        return np.where(valid, arr, arr.dtype.type(0))  # (only the padding had any)

    def _prepare(self, x: Any, y: Any, lengths: Any, prefix: str = "",
                 need_y: bool = True) -> tuple[npt.NDArray[Any], Any, Optional[npt.NDArray[Any]]]:
        if need_y and y is None:  # (fit / evaluate: predict takes none)
            raise TypeError(f"{prefix}y is None: {'fit' if not prefix else 'validation_data'} "
                            f"and evaluate need targets (predict takes x alone)")
        x = self._data(prefix + "x", x, finite=False)  # (finite within lengths: below)
        self._check_rank(x, prefix + "x")
        N = x.shape[0]
        if lengths is not None:
            host_only(prefix + "lengths", lengths, _HOST_DATA)
            # (a Dense-only model on (N, F) data took them as T = F, then ignored them;
            # checked before their values, which were then reported against T = F)
            self._check_lengths_used(prefix)
            if x.ndim < 2:
                raise ValueError(f"{prefix}lengths need sequence data (N, T, ...), x has shape "
                                 f"{shape_str(x.shape)}")
            lengths = lengths_array(lengths, N, x.shape[1], prefix + "lengths", _HOST_DATA)
        if x.ndim < 2 and self._features_first():
            # (batches of a 1-D x reached Dense as one unbatched sample when batch_size
            # covered x, and as a wrong feature size otherwise)
            raise ValueError(f"{prefix}x: expected (N, F) samples-first input for "
                             f"{self._features_first()!r}, got shape {shape_str(x.shape)} "
                             f"(one sample: x[None])")
        self._warn_front_padding(x, lengths, prefix)
        x = self._finite(prefix + "x", x, lengths)
        x = self._int_padding(x, lengths)
        dt = self._input_dtype()
        x = self._check_range(prefix + "x", x, dt, lengths)
        y = None if y is None else self._data(prefix + "y", y, N, finite=False)
        if y is not None:
            # Per-step targets (N, T, ...) may hold anything in the padding, as x, and are read
            # as zeros there too: a loss without mask= would count them (with a warning).
            per_step = lengths is not None and y.ndim >= 2 and y.shape[1] == x.shape[1]
            # (the prediction's dtype, the loss's: not the input layer's, which an
            # Embedding-first model has none of)
            dt = self._dtype(reverse=True)
            if per_step and not self._clean(y, dt):
                # y's shape cannot tell per-step targets from per-sequence ones with as many
                # outputs as steps (LastStep -> Dense(H, T)): the prediction's can (the loss
                # masks the padding of a per-step one alone). Only asked when y holds values
                # to refuse or zero: a forward of one sample.
                per_step = self._per_step_output(x, lengths, prefix)
            y = self._finite(prefix + "y", y, lengths if per_step else None)
            y = self._check_range(prefix + "y", y, dt, lengths if per_step else None)
        return x, y, lengths

    def _warn_front_padding(self, x, lengths, prefix):
        """A UserWarning when x looks padded at the front (Keras' pad_sequences default) while
        lengths= reads each sequence's FIRST steps: most shorter sequences start with exactly
        T - length padding steps (all 0, or the first Embedding's padding_idx) and hold data
        past their lengths, which is ignored (the model would read padding, silently)."""
        if lengths is None or x.ndim < 2 or x.dtype.kind not in "iuf":
            return
        T = x.shape[1]
        short = lengths < T
        # Sequences two or more steps short tell front padding apart by its head alone; one
        # step short, a first step of 0 may be data (a BOS token, a start at the origin), so
        # the data past the length must also vary (padding at the end is one value).
        deep = short & (lengths <= T - 2)
        exempt_constant = not deep.any()
        if not exempt_constant:
            short = deep
        n_short = int(short.sum())
        if not n_short:
            return
        pads = [0]
        first = next(iter(_flat_layers(self.layers)), None)
        if isinstance(first, Embedding) and first.padding_idx is not None:
            pads.append(first.padding_idx)
        steps = np.arange(T)[None, :]
        for pad in dict.fromkeys(pads):
            # Only sequences starting with a padding step can be padded at the front: the
            # rest is never copied (post-padded data rarely starts with one).
            cand = short & (x[:, 0] == pad).reshape(x.shape[0], -1).all(axis=1)
            if 2 * int(cand.sum()) < n_short:
                continue
            xs, ls = x[cand], lengths[cand]
            within = steps < ls[:, None]                                      # [S, T]
            head = steps < (T - ls)[:, None]                                  # [S, T]
            is_pad = (xs == pad).reshape(xs.shape[0], T, -1).all(axis=2)     # [S, T]
            front = (is_pad | ~head).all(axis=1) & (~is_pad & ~within).any(axis=1)
            n = int(front.sum())
            past = xs[front][~within[front]]  # what lies past those lengths
            # Data there varies; padding of another value (-1, NaN, a padding_idx) does not.
            if exempt_constant and past.size and (np.all(past == past.flat[0])
                                                  or np.all(past != past)):
                continue
            if n and 2 * n >= n_short:
                # (no counts in the text: a text per batch defeated the once-per-place filter,
                # printed again and kept in __warningregistry__ each time)
                warnings.warn(f"{prefix}x looks padded at the front (Keras' pad_sequences "
                              f"default, padding='pre'): half or more of the sequences "
                              f"{'' if exempt_constant else 'two or more steps '}shorter "
                              f"than T start with T - length steps of {pad} and hold data "
                              f"past their lengths, which is ignored. lengths= counts each "
                              f"sequence's first steps as its data (padding at the end, as "
                              f"torch's pad_sequence and pad_sequences(padding='post') give)",
                              UserWarning, stacklevel=_user_stacklevel())
                return

    @staticmethod
    def _clean(arr, dt):
        """Whether float data arr holds only finite values within dtype dt's range."""
        return (arr.dtype.kind != "f" or
                (bool(np.isfinite(arr).all()) and (dt is None or beyond_range(arr, dt) is None)))

    def _per_step_output(self, x, lengths, prefix):
        """Whether the model's prediction on x is per step, (N, T, ...): that of _batch_loss's
        mask, which leaves the padding out of the loss. Found on x's first sample, in eval
        mode; a ValueError / TypeError names x, as fit's first-sample check does."""
        try:
            with self._eval_mode():
                pred = self._forward_batch(x[:1], lengths[:1])
        except (ValueError, TypeError) as e:
            if type(e) not in (ValueError, TypeError):
                raise
            raise type(e)(f"{prefix}x {shape_str(x.shape)}, checked on its first sample: "
                          f"{e}") from None
        shape = tuple(pred.shape)
        return len(shape) >= 3 and shape[1] == x.shape[1]

    def _probe_first_sample(self, data, loss, what):
        """Run data's (x, y, lengths) first sample through the model and the loss in eval mode
        (no training state changes); a ValueError / TypeError is re-raised naming `what`."""
        x, y, lengths = data
        shapes = []
        try:
            self._run_eval(x[:1], y[:1], None if lengths is None else lengths[:1], loss, 1,
                           shapes=shapes)
        except (ValueError, TypeError) as e:
            if type(e) not in (ValueError, TypeError):
                raise  # (a custom loss's own subclass: its constructor may take other arguments)
            raise type(e)(f"{what}, checked on its first sample: {e}") from None
        return shapes[0][1:] if shapes else ()  # (the prediction's shape per sample)

    def _first_run_layer(self, skip):
        """(index path, layer): the first layer x reaches with no code of the user's before it
        (nested models that run as Sequential does are entered; a type in `skip` is passed
        over), or (path, None) where a nested model's own forward comes first."""
        path, model, i = "", self, 0
        while True:
            if i >= len(model.layers):
                return path, None
            layer = model.layers[i]
            here = f"{path}{i}"
            if isinstance(layer, Sequential):
                if type(layer).forward is not Sequential.forward or "forward" in layer.__dict__:
                    return here, None  # (its own forward may map the input first)
                model, path, i = layer, here + ".", 0
                continue
            if skip and isinstance(layer, skip):
                i += 1
                continue
            return here, layer

    def _check_value_ranges(self, data, loss, what, pshape):
        """Embedding ids and cross-entropy class labels checked over ALL of data (x, y,
        lengths) before training, as finiteness is: the first-sample probe sees one sample,
        and a bad id or label in a later batch stopped fit with a ValueError after steps had
        changed the weights (or after a whole epoch, in validation data). pshape: the
        probe's prediction shape per sample. Only where pyrnn's own code reads them: an
        Embedding reached through no forward of the user's, the built-in loss."""
        x, y, lengths = data
        path, first = self._first_run_layer(skip=())
        if (isinstance(first, Embedding) and type(first).forward is Embedding.forward
                and "forward" not in first.__dict__ and x.dtype.kind in "iu"):
            num = first.num_embeddings  # (padding past the lengths is 0 by now: _prepare)
            bad = (x < 0) | (x >= num)
            if bad.any():
                i = tuple(int(k) for k in np.argwhere(bad)[0])
                raise ValueError(f"{what}: layer {path} (Embedding): index {x[i].item()} at "
                                 f"x{list(i)} is outside [0, {num}) (checked over all of x "
                                 f"before training)")
        if (type(loss) is not _losses.CrossEntropyLoss or "forward" in loss.__dict__
                or y.dtype.kind not in "iuf" or not pshape):
            return
        K = pshape[-1]
        if y.dtype.kind == "f" and y.shape[1:] == pshape:
            return  # (class probabilities)
        sparse = K != 1 and y.shape[1:] == pshape[:-1] + (1,)  # (Keras' sparse labels (N, 1))
        labels = y.reshape(y.shape[:-1]) if sparse else y
        if labels.shape[1:] != pshape[:-1]:
            return  # (a shape the loss refuses on each batch, as the probe found it did not)
        valid = labels != loss.ignore_index
        if lengths is not None and labels.ndim >= 2 and labels.shape[1] == x.shape[1]:
            valid &= self._within_lengths(labels, lengths)  # (per step: padding counts nowhere)
        if labels.dtype.kind == "f":
            odd = valid & ~(np.isfinite(labels) & (labels == np.round(labels)))
            if odd.any():
                i = tuple(int(k) for k in np.argwhere(odd)[0])
                raise TypeError(f"{what}: CrossEntropyLoss: class targets must be integers, got "
                                f"{labels[i].item()!r} at y{list(i) + [0] * sparse} (checked "
                                f"over all of y before training)")
        bad = valid & ((labels < 0) | (labels >= K))
        if bad.any():
            i = tuple(int(k) for k in np.argwhere(bad)[0])
            raise ValueError(f"{what}: CrossEntropyLoss: target {labels[i].item()!r} at "
                             f"y{list(i) + [0] * sparse} is outside [0, {K}) (ignore_index="
                             f"{loss.ignore_index}; checked over all of y before training)")

    def _check_lengths_used(self, prefix=""):
        """ValueError when no layer would use lengths= (given: they were ignored silently)."""
        if not _uses_lengths(self.layers):
            raise ValueError(f"{prefix}lengths= needs a recurrent layer or LastStep in the "
                             f"model, which would use them; this one has none")

    def _batches(self, N, batch_size, order=None):
        idx = np.arange(N) if order is None else order
        for start in range(0, N, batch_size):
            yield idx[start:start + batch_size]

    def _run_eval(self, x, y, lengths, loss, batch_size, bar=None, shapes=None, cbs=(),
                  after_hook=None, end_hook=True):
        """(mean loss over every counted element, {metric: value}) in eval mode (bar: a
        progress bar to advance per batch; shapes: a list given the predictions' shapes;
        cbs: callbacks whose on_test_* hooks run, each followed by after_hook(name);
        end_hook=False leaves on_test_end to the caller)."""
        def hook(name, *args):
            for cb in cbs:
                getattr(cb, name)(*args)
            if cbs and after_hook is not None:
                after_hook(name)

        hook("on_test_begin", {})
        with self._eval_mode():
            tally = _Tally(loss)
            for b, idx in enumerate(self._batches(x.shape[0], batch_size)):
                hook("on_test_batch_begin", b, {"size": len(idx)})
                if bar:
                    bar.update(1)
                lens = None if lengths is None else lengths[idx]
                pred = self._forward_batch(x[idx], lens)
                if shapes is not None:
                    shapes.append(tuple(pred.shape))
                value = _batch_loss(loss, pred, y[idx], lens, x.shape[1] if x.ndim > 1 else 0)
                tally.add(value, len(idx))
                hook("on_test_batch_end", b, {"loss": value, "size": len(idx)})
        mean, metrics = tally.mean(), tally.metric_values()
        if end_hook:
            hook("on_test_end", {"loss": mean, **metrics})
        return mean, metrics

    # fit / evaluate / predict take host data only (device arrays are a TypeError).
    @overload
    def evaluate(self, x: npt.ArrayLike, y: npt.ArrayLike,
                 loss: Union[_losses.Loss, type[_losses.Loss], str, None] = None,
                 batch_size: Int = 32, lengths: Optional[npt.ArrayLike] = None,
                 return_dict: Literal[False] = False, *,
                 verbose: Union[bool, Literal[0, 1, 2]] = 0,
                 callbacks: Optional[Iterable[_callbacks.Callback]] = None) -> float: ...
    @overload
    def evaluate(self, x: npt.ArrayLike, y: npt.ArrayLike,
                 loss: Union[_losses.Loss, type[_losses.Loss], str, None] = None,
                 batch_size: Int = 32, lengths: Optional[npt.ArrayLike] = None, *,
                 return_dict: Literal[True],
                 verbose: Union[bool, Literal[0, 1, 2]] = 0,
                 callbacks: Optional[Iterable[_callbacks.Callback]] = None) -> dict[str, float]: ...
    @overload
    def evaluate(self, x: npt.ArrayLike, y: npt.ArrayLike,
                 loss: Union[_losses.Loss, type[_losses.Loss], str, None] = None,
                 batch_size: Int = 32, lengths: Optional[npt.ArrayLike] = None,
                 return_dict: bool = False, *,
                 verbose: Union[bool, Literal[0, 1, 2]] = 0,
                 callbacks: Optional[Iterable[_callbacks.Callback]] = None
                 ) -> Union[float, dict[str, float]]: ...

    @_one_thread
    def evaluate(self, x: Any, y: Any, loss: Any = None, batch_size: Any = 32,
                 lengths: Any = None, return_dict: bool = False, *, verbose: Any = 0,
                 callbacks: Any = None) -> Any:
        """Loss of the model on (x, y) in eval mode, as one mean over every element the loss
        counted (all samples; with lengths and per-step predictions, the valid steps), not a
        mean of batch means. return_dict=True also gives the metrics: {"loss", "accuracy", ...}.
        loss: a Loss (or name); default the loss of the last fit(). verbose: as fit's (a bar,
        or one line with the loss and metrics), default 0: silent. callbacks: their set_model,
        set_params({"epochs": 1, "steps", "batch_size", "verbose"}) and on_test_* hooks run,
        as Keras' evaluate runs them."""
        return_dict = flag("return_dict", return_dict)  # ("no" was taken as True)
        verbose = _verbose_arg(verbose)
        loss = self._loss_arg(loss)
        self._warn_logit_losses(loss)
        batch_size = positive_int("batch_size", batch_size)
        cbs = _callback_list(callbacks)
        self.device  # noqa: B018 - a model mixing devices fails here, before any work
        x, y, lengths = self._prepare(x, y, lengths)
        t0 = time.perf_counter()
        n_batches = -(-x.shape[0] // batch_size)
        self._set_callbacks(cbs, n_batches, batch_size, verbose)
        with _progress(verbose, n_batches, "evaluate") as bar:
            value, metrics = self._run_eval(x, y, lengths, loss, batch_size, bar, cbs=cbs,
                                            end_hook=False)
            logs = {"loss": value, **metrics}
            if bar:
                _report(verbose, bar, "evaluate", _fmt(logs), t0)
        # on_test_end after the bar's close (what it prints has lines of its own), with one logs
        # dict for every callback (Keras' CallbackList); the plain line after it, as Keras'
        # progress logger (the last callback) and fit's epoch line: with what callbacks added.
        end_logs = dict(logs)
        for cb in cbs:
            cb.on_test_end(end_logs)
        if not bar:
            _report(verbose, None, "evaluate", _fmt(end_logs), t0)
        return logs if return_dict else value

    @_one_thread
    def predict(self, x: npt.ArrayLike, batch_size: Int = 32,
                lengths: Optional[npt.ArrayLike] = None, *,
                verbose: Union[bool, Literal[0, 1, 2]] = 0,
                callbacks: Optional[Iterable[_callbacks.Callback]] = None) -> HostArray:
        """The model's outputs for x in eval mode, batch by batch, concatenated. verbose: as
        fit's (a bar, or one line with the sample count), default 0: silent. callbacks: as
        evaluate's, with the on_predict_* hooks (on_predict_batch_end's logs: {"outputs": the
        batch's host predictions})."""
        batch_size = positive_int("batch_size", batch_size)
        verbose = _verbose_arg(verbose)
        cbs = _callback_list(callbacks)
        self.device  # noqa: B018 - a model mixing devices fails here, before any work
        x, _, lengths = self._prepare(x, None, lengths, need_y=False)
        t0 = time.perf_counter()
        n_batches = -(-x.shape[0] // batch_size)
        self._set_callbacks(cbs, n_batches, batch_size, verbose)
        for cb in cbs:
            cb.on_predict_begin({})
        with self._eval_mode(), _progress(verbose, n_batches, "predict") as bar:
            outs = []
            for b, idx in enumerate(self._batches(x.shape[0], batch_size)):
                for cb in cbs:
                    cb.on_predict_batch_begin(b, {"size": len(idx)})
                outs.append(_arrays.host(self._forward_batch(
                    x[idx], None if lengths is None else lengths[idx])))
                for cb in cbs:
                    cb.on_predict_batch_end(b, {"outputs": outs[-1]})
                if bar:
                    bar.update(1)
            _report(verbose, bar, "predict", f"{x.shape[0]} samples in {n_batches} batches",
                    t0)
        for cb in cbs:
            cb.on_predict_end({})
        return np.concatenate(outs, axis=0)

    def _set_callbacks(self, cbs, steps, batch_size, verbose):
        """evaluate / predict's set_model and set_params, as Keras' (one epoch of `steps`)."""
        for cb in cbs:
            cb.set_model(self)
            cb.set_params({"epochs": 1, "steps": steps, "batch_size": batch_size,
                           "verbose": verbose})

    @contextlib.contextmanager
    def _eval_mode(self):
        """eval() for the block, then every layer's own mode back, nested models included: as
        Keras's predict / evaluate, they change no model state (a layer the user put in eval
        mode stays there)."""
        restore = self._modes()
        self.eval()
        try:
            yield
        finally:
            restore()

    def _modes(self):
        """A function that gives the model and each layer the mode they have now."""
        was = self.training
        modes = [(m, m.training) for m in self._with_nested()
                 if m is not self and hasattr(m, "training")]

        def restore():
            self.train(was)  # every layer, a custom one keeping its mode elsewhere included
            for m, flag in modes:  # then each layer's own mode, where it says which
                if m.training != flag:
                    if isinstance(m, Sequential):
                        m.training = flag  # its layers are restored one by one
                    else:
                        m.train(flag)
        return restore

    def _with_nested(self, _checked=False):
        """This model and every layer in it, nested models' layers included (distinctness
        checked once, for the whole tree)."""
        if not _checked:
            self._check_distinct()
        yield self
        for layer in self.layers:
            if isinstance(layer, Sequential):
                yield from layer._with_nested(_checked=True)
            else:
                yield layer

    def _named_optimizer(self, optimizer: Any,
                         params: Any) -> tuple[_optim.Optimizer, Any]:
        """(fit's optimizer, what to keep once fit has started or None): one given by name is
        built once and kept for later fit calls with that name (while it still trains exactly
        these parameters), as Keras' compile keeps it; an instance is used as it is. A fit
        refused before it starts keeps nothing. After model.to() the kept one's parameters are
        detached (new storage): the new one takes its state (steps, moments), so a fit goes on
        as it would have on the old device."""
        if not isinstance(optimizer, str):
            return _optim.get(optimizer, params), None
        kept = self.__dict__.get("_fit_named_optimizer")
        old = kept[1] if kept is not None and kept[0] == optimizer.lower() else None
        moved = old is not None and any(p._detached() for p in old.params)
        if old is not None and not moved and old.params == params:
            return old, None
        built = _optim.get(optimizer, params)
        if old is not None and moved and [(p.name, p.shape) for p in old.params] == \
                [(p.name, p.shape) for p in params]:
            # (copied to the parameters' device; none taken out: fit lists them all)
            built.load_state_dict(old._state_dict(warn=False))
        return built, (optimizer.lower(), built)

    def _warn_logit_losses(self, loss):
        """A UserWarning when the model ends in a sigmoid and the loss takes logits: Keras'
        habit (Dense(1, activation="sigmoid") + binary_crossentropy) would train through a
        second sigmoid and count every sample as positive, silently."""
        last = None
        for layer in _flat_layers(self.layers):
            if not isinstance(layer, Dropout):
                last = layer
        if isinstance(last, Dense) and last.activation == "sigmoid" and isinstance(
                loss, (_losses.BCEWithLogitsLoss, _losses.CrossEntropyLoss)):
            warnings.warn(f"the model ends in Dense(activation='sigmoid') and "
                          f"{type(loss).__name__} takes logits: the sigmoid is applied twice "
                          f"(and accuracy counts outputs > 0); drop the final activation",
                          UserWarning, stacklevel=_user_stacklevel())

    def _loss_arg(self, loss):
        if loss is None:
            loss = getattr(self, "_fit_loss", None)
            if loss is None:
                raise TypeError("evaluate() needs a loss (none was given and fit() has not run)")
        return _losses.get(loss)

    @_one_thread
    @_marks_fitting
    def fit(self, x: npt.ArrayLike, y: npt.ArrayLike, *,
            loss: Union[_losses.Loss, type[_losses.Loss], str],
            optimizer: Union[_optim.Optimizer, str], epochs: Int = 1, batch_size: Int = 32,
            lengths: Optional[npt.ArrayLike] = None,
            validation_data: Optional[Sequence[Optional[npt.ArrayLike]]] = None,
            clip_norm: Optional[Real] = None,
            callbacks: Optional[Iterable[_callbacks.Callback]] = None,
            verbose: Union[bool, Literal[0, 1, 2]] = True, shuffle: bool = True,
            seed: Union[Int, np.random.Generator, None] = None,
            initial_epoch: Int = 0) -> dict[str, list[float]]:
        """Mini-batch training. Returns history: {"loss": [...], metrics ("accuracy" for the
        classification losses), and with validation_data "val_loss", "val_<metric>"}, one
        entry per epoch. The epoch loss is the mean over all elements the loss counted in the
        epoch (with reduction="sum": the sum over the epoch).

        loss: a pyrnn.losses.Loss (or 'mse' / 'cross_entropy' / 'bce'; the classification
        losses take logits: end the model without a sigmoid); optimizer: built over
        model.parameters(), or a name ('adam' / 'adamw' / 'sgd' / 'rmsprop': the class
        defaults, except 'sgd' with lr=0.01, Keras' default, where SGD's own is PyTorch's 1e-3),
        built on the first fit and kept by the model for later fit calls with the same name, as
        Keras' compile keeps it (its moments and step count continue). During fit the optimizer
        is ``model.optimizer`` (a callback may change its ``lr`` / ``learning_rate``).
        validation_data: (x_val, y_val) or (x_val, y_val, lengths_val) (the third is lengths,
        not Keras' sample weights). The first sample of x (and of the validation data) is run
        through the model and the loss in eval mode before training and before any callback,
        so that data they cannot take fails first.
        clip_norm: clip the global norm of the gradients the optimizer updates
        (pyrnn.optim.clip_grad_norm) before each step.
        verbose: 0 silent; 1 a tqdm bar per epoch when tqdm is installed and stdout is a
        terminal, else one line per epoch; 2 one line per epoch.
        shuffle / seed: a fresh permutation per epoch from numpy.random.default_rng(seed)
        (seed: None, an int >= 0, or a numpy Generator). shuffle is True or False.
        initial_epoch: Keras' way to resume: epochs initial_epoch .. epochs - 1 are run (so
        ``fit(epochs=4, initial_epoch=2)`` runs the third and fourth), and callbacks, the
        progress text and History see those numbers. With an int seed the epochs before it
        draw their permutations unused, so a run resumed with the same seed shuffles as the
        uninterrupted one; a Generator is used from its current state (keep it with the
        checkpoint).

        Safety: NaN/Inf in x, y or the validation data is a ValueError before training. The
        weights that produced the last finite batch loss, and the optimizer's state then, are
        copied before every optimizer step (one copy, reused); if a batch loss becomes NaN/Inf,
        or a step makes a weight or the optimizer's state (Adam's moments, say) non-finite,
        both are restored and RuntimeError is raised (its .history holds the epochs
        completed). The same optimizer can then go on, with a lower learning rate, say.
        """
        loss = _losses.get(loss)
        self._warn_logit_losses(loss)
        self.device  # noqa: B018 - a model mixing devices fails here, before any work
        params = list(self.parameters())
        if not params:
            raise ValueError("the model has no parameters to train")
        optimizer, named = self._named_optimizer(optimizer, params)
        current = {_arrays.data_ptr(p.data) for p in params}
        stale = [p.name for p in optimizer.params if _arrays.data_ptr(p.data) not in current]
        if stale:
            raise ValueError(f"the optimizer updates parameters this model does not have "
                             f"({', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''}): build "
                             "it over model.parameters() after model.to(...) and after adding "
                             "layers")
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral):
            raise TypeError(f"epochs must be an int, got {type(epochs).__name__}")
        epochs = int(epochs)
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, numbers.Integral):
            raise TypeError(f"initial_epoch must be an int, got {type(initial_epoch).__name__}")
        initial_epoch = int(initial_epoch)
        if not 0 <= initial_epoch <= epochs:
            raise ValueError(f"initial_epoch must be in [0, epochs] = [0, {epochs}], got "
                             f"{initial_epoch} (epochs is the number of the last epoch, as "
                             "in Keras, not a count)")
        batch_size = positive_int("batch_size", batch_size)
        shuffle = flag("shuffle", shuffle)
        verbose = _verbose_arg(verbose)
        if not isinstance(seed, np.random.Generator):  # a Generator is used as it is
            try:
                seed = seed_arg("seed", seed)
            except TypeError:
                raise TypeError(f"seed must be None, an int >= 0 or a numpy Generator, got "
                                f"{type(seed).__name__}") from None
        if clip_norm is not None and not (isinstance(clip_norm, numbers.Real)
                                          and not isinstance(clip_norm, bool)
                                          and 0 < clip_norm < math.inf):
            raise ValueError(f"clip_norm must be a positive number or None, got {clip_norm!r}")
        x, y, lengths = self._prepare(x, y, lengths)
        # One training sample through the model and the loss now: an x the first layer cannot
        # take (T = 0, a wrong feature size) or a y the output does not fit is refused before
        # on_train_begin, naming the whole x's shape (the first batch named its own).
        pshape = self._probe_first_sample((x, y, lengths), loss,
                                          f"x {shape_str(x.shape)}, y {shape_str(y.shape)}")
        self._check_value_ranges((x, y, lengths), loss, "fit", pshape)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise TypeError("validation_data must be (x_val, y_val) or "
                                "(x_val, y_val, lengths_val)")
            vx, vy, vl = (tuple(validation_data) + (None,))[:3]
            val = self._prepare(vx, vy, vl, prefix="validation ")
            if lengths is not None and vl is None:  # (token ids of an Embedding are 2-D)
                # (the loss there counts padding fit's own loss leaves out: EarlyStopping and
                # ModelCheckpoint would watch a different quantity; hunt helper-200)
                warnings.warn("fit got lengths but validation_data has no lengths: validation "
                              "reads every step of its sequences, padding included; pass "
                              "validation_data=(x_val, y_val, lengths_val)", UserWarning,
                              stacklevel=_user_stacklevel())
            # The same for validation: a y_val the output does not fit (a wrong width) is
            # refused before training, not after a whole epoch.
            vshape = self._probe_first_sample(val, loss, f"validation_data (x_val "
                                              f"{shape_str(val[0].shape)}, y_val "
                                              f"{shape_str(val[1].shape)})")
            self._check_value_ranges(val, loss, "fit: validation_data", vshape)
        cbs = _callback_list(callbacks)
        hist = _callbacks.History()
        cbs = cbs + [hist]  # last, as Keras's: it records what the others add to the logs
        # The epoch logs' keys, so callbacks can check theirs before the first epoch; only
        # the built-in losses know their metrics before a forward (a custom one may add some
        # there: unknown, not checked).
        log_keys = None
        if type(loss).__module__ == _losses.__name__:
            log_keys = ["loss"] + list(loss.metric_counts())
            if val is not None:
                log_keys += ["val_" + k for k in log_keys]
        cb_params = {"epochs": epochs, "steps": -(-x.shape[0] // batch_size),
                     "batch_size": batch_size, "verbose": verbose, "metrics": log_keys}
        for i, cb in enumerate(cbs):
            cb.set_model(self)
            # A custom callback before this one may add log keys (Keras's logs["val_x"] = ...):
            # then they are unknown here, and checked at epoch end instead.
            custom = any(type(c).__module__ != _callbacks.__name__
                         or isinstance(c, _callbacks.LambdaCallback) for c in cbs[:i])
            cb.set_params(dict(cb_params, metrics=None) if custom else cb_params)
        # What fit changes before its callbacks may still refuse it (on_train_begin checks
        # their keys): put back if they do.
        # The weights that gave the last finite batch loss, and the optimizer's state then
        # (copied first: a MemoryError here leaves the model as it was).
        good = _fit_guard.LastGood(params, optimizer)
        before = (getattr(self, "_fit_loss", None), self.stop_training, self._modes(),
                  self.optimizer)
        self._fit_loss = loss
        self.optimizer = optimizer  # (Keras' model.optimizer: a callback may change its lr)
        rng = np.random.default_rng(seed)
        N = x.shape[0]
        if shuffle and seed is not None and not isinstance(seed, np.random.Generator):
            for _ in range(initial_epoch):  # the permutations of the epochs already run
                rng.permutation(N)
        n_batches = -(-N // batch_size)
        use_bar = verbose == 1 or verbose is True
        bar_cls = _tqdm() if use_bar and _isatty() else None

        good_at = "the start of training"
        stepped = False  # (a step of this fit has run)

        def fail(why, advice="Lower the learning rate or set clip_norm."):
            what = good.restore()
            err = RuntimeError(f"{why}; training stopped and {what} restored to those of "
                               f"{good_at}. {advice}")
            err.history = hist.history
            self.history = hist.history
            return err

        self.stop_training = False
        self.train()
        layout = _layout(self)

        def same_layers(hook):
            # fit trains the layers it started with: a layer a callback put in would not train
            # (the optimizer steps the old one's parameters, the guard restores them).
            if _layout(self) != layout:
                raise RuntimeError(f"a callback's {hook}() changed the model's layers during "
                                   f"fit(); fit trains the layers it started with (its optimizer "
                                   f"and guard hold their parameters), so a new layer would not "
                                   f"train: edit the model between fit() calls")

        try:
            for cb in cbs:
                cb.on_train_begin({})
            same_layers("on_train_begin")
        except BaseException:
            self._fit_loss, self.stop_training = before[:2]
            before[2]()
            self.optimizer = before[3]
            raise
        if named is not None:
            self._fit_named_optimizer = named
        # Live: the epochs completed so far, also when Ctrl-C (KeyboardInterrupt) stops fit.
        # Steps are never interrupted halfway (_sigint_deferred), so the weights then are
        # those after the last whole optimizer step, and the model stays usable.
        self.history = hist.history
        last_logs: dict[str, float] = {}  # on_train_end gets the last epoch's, as in Keras
        for epoch in range(initial_epoch, epochs):
            t0 = time.perf_counter()
            for cb in cbs:
                cb.on_epoch_begin(epoch, {})
            same_layers("on_epoch_begin")
            order = rng.permutation(N) if shuffle else None
            tally = _Tally(loss)
            bar = bar_cls(total=n_batches, desc=f"Epoch {epoch + 1}/{epochs}", leave=True,
                          file=sys.stdout) if bar_cls else None
            try:
                for b, idx in enumerate(self._batches(N, batch_size, order)):
                    for cb in cbs:
                        cb.on_train_batch_begin(b, {"size": len(idx)})
                    same_layers("on_train_batch_begin")
                    lens = None if lengths is None else lengths[idx]
                    pred = self._forward_batch(x[idx], lens)
                    value = _batch_loss(loss, pred, y[idx], lens,
                                        x.shape[1] if x.ndim > 1 else 0)
                    if not math.isfinite(value):  # (the bar is closed on the way out)
                        raise fail(f"non-finite training loss ({value}) at epoch {epoch + 1}, "
                                   f"batch {b + 1}",
                                   "Lower the learning rate or set clip_norm." if stepped else
                                   # (no step of this fit yet: the rate cannot be the cause)
                                   "No step of this fit had run: the loss overflows at the "
                                   "weights it started with. If the model is new, scale the "
                                   "data (x, y) or the weights: the learning rate is not the "
                                   "cause; if an earlier fit trained it, its steps may have "
                                   "diverged: lower the learning rate or set clip_norm.")
                    good.keep()
                    good_at = f"epoch {epoch + 1}, batch {b + 1} (loss {value:.6g})"
                    self.zero_grad()
                    self._backward(loss.backward())  # d pred is on pred's device
                    if clip_norm is not None:  # (a frozen layer's gradients do not count)
                        _optim.clip_grad_norm(optimizer.params, clip_norm)
                    # A step is applied whole or not at all (Ctrl-C waits for its end), and one
                    # that overflows (Adam's squared moments first) is undone at once, also when
                    # a Ctrl-C is waiting: an Inf moment freezes its weight silently, and
                    # poisons every later step.
                    err = None
                    stepped = True
                    with _sigint_deferred():
                        good.step()  # optimizer.step(), keeping what it overwrites
                        bad = good.non_finite()
                        if bad is not None:
                            err = fail(f"the optimizer step of epoch {epoch + 1}, batch {b + 1} "
                                       f"made the {bad} non-finite")
                    if err is not None:
                        # Raised with its name dropped: the traceback holds this frame, which
                        # would hold the error (a cycle keeping the model, optimizer and data
                        # alive until a full gc run; a diverged trial of a sweep kept 360 MB
                        # each).
                        try:
                            raise err
                        finally:
                            err = None
                    tally.add(value, len(idx))
                    if bar:
                        bar.update(1)
                        bar.set_postfix(loss=f"{tally.mean():.4f}", refresh=False)
                    for cb in cbs:
                        cb.on_train_batch_end(b, {"loss": value, "size": len(idx)})
                    same_layers("on_train_batch_end")
                    if self.stop_training:  # as Keras: after this batch (the epoch still ends)
                        break
                logs = {"loss": tally.mean(), **tally.metric_values()}
                if val is not None:
                    vloss, vmetrics = self._run_eval(val[0], val[1], val[2], loss, batch_size,
                                                     cbs=cbs, after_hook=same_layers)
                    logs["val_loss"] = vloss
                    logs.update({"val_" + k: v for k, v in vmetrics.items()})
            except BaseException:
                if bar:  # (a hook's error too: a bar left open garbled the next one)
                    bar.close()
                raise
            if bar:  # closed before on_epoch_end: what callbacks print there has lines of its own
                bar.set_postfix_str(_fmt(logs), refresh=True)
                bar.close()
            for cb in cbs:
                cb.on_epoch_end(epoch, logs)
            same_layers("on_epoch_end")
            if verbose and not bar:  # (after the hooks, as Keras': it shows what they add)
                print(f"Epoch {epoch + 1}/{epochs} - {_fmt(logs)} "
                      f"({time.perf_counter() - t0:.1f}s)", flush=True)
            last_logs = logs
            if self.stop_training:
                break
        for cb in cbs:
            cb.on_train_end(last_logs)
        self.history = hist.history
        return hist.history


def _callback_list(callbacks):
    """fit / evaluate / predict's callbacks= as a list of Callback instances."""
    try:  # a list (any iterable) of callbacks; a single one was "not iterable"
        if isinstance(callbacks, _callbacks.Callback):
            raise TypeError
        cbs = list(callbacks or [])
    except TypeError:
        raise TypeError(f"callbacks must be a list of pyrnn.callbacks.Callback instances, "
                        f"got {type(callbacks).__name__}") from None
    for cb in cbs:
        if not isinstance(cb, _callbacks.Callback):
            raise TypeError(f"callbacks must be pyrnn.callbacks.Callback instances, got "
                            f"{type(cb).__name__}")
    return cbs


def _fmt(logs):
    # (a value a callback added may be anything: 4 decimals where it takes them, else str())
    def one(v):
        if isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)):
            try:
                return f"{v:.4f}"
            except (TypeError, ValueError, OverflowError):  # (an int of 400 digits)
                pass
        return str(v)
    return " - ".join(f"{k}: {one(v)}" for k, v in logs.items())


def _verbose_arg(verbose):
    """fit / evaluate / predict's verbose, checked: ("no" was taken as True: a progress bar)."""
    if not (isinstance(verbose, (bool, np.bool_)) or
            (isinstance(verbose, numbers.Integral) and verbose in (0, 1, 2))):
        raise TypeError(f"verbose must be True, False, 0, 1 or 2, got {verbose!r}")
    return verbose


@contextlib.contextmanager
def _progress(verbose, total, desc):
    """A tqdm bar over `total` batches for verbose 1 (True) when tqdm is installed and stdout
    is a terminal, closed at the block's end; else None."""
    bar_cls = _tqdm() if (verbose == 1 or verbose is True) and _isatty() else None
    bar = bar_cls(total=total, desc=desc, leave=True, file=sys.stdout) if bar_cls else None
    try:
        yield bar
    finally:
        if bar:
            bar.close()


def _report(verbose, bar, what, text, t0):
    """evaluate / predict's summary: on the bar, else one line when verbose."""
    if bar:
        bar.set_postfix_str(text, refresh=True)
    elif verbose:
        print(f"{what} - {text} ({time.perf_counter() - t0:.1f}s)", flush=True)


def _isatty():
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm
