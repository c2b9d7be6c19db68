"""Optimizers with PyTorch's update formulas, their loops in C++ (pyrnn/optim.h).

Built PyTorch-style over parameters: ``opt = pyrnn.optim.Adam(model.parameters(), lr=1e-3)``;
``opt.step()`` updates every Parameter's ``data`` in place from its ``grad`` (the views into
the layers, so the model changes without copies), ``opt.zero_grad()`` zeroes the gradients.
Hyperparameters are attributes (``opt.lr = 1e-4`` takes effect at the next step), checked
whenever set as the constructor checks them (``opt.eps = -1`` is a ValueError).

State buffers (momentum, Adam moments, ...) are owned by the optimizer, one per parameter, in
the parameter's dtype and on its device; ``state_dict()`` / ``load_state_dict()`` copy them
(as host ndarrays).

Parameters of CUDA layers (DeviceArrays) are updated on the GPU by the device twins of the same
loops (pyrnn/cuda/optim.h: the CPU's per-element expressions, no fused multiply-adds, so a step
is bitwise the CPU's); clip_grad_norm reduces each gradient on the device in a fixed order
(the 2- and inf-norms; other orders copy the gradients to the host).
"""
from __future__ import annotations

import inspect
import math
import numbers
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from . import _arrays, _attrs
from ._validate import as_float, cast_finite, flag, real_array, real_number
from ._arrays import zero_
from ._signals import sigint_deferred
from .parameter import Parameter, owners_held

if TYPE_CHECKING:
    from ._typing import Real

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "clip_grad_norm", "clip_grad_norm_"]


_float = real_number


_MAX_COUNT = 2**62  # the kernels take a C int64 step, and later steps add to it


def _count(name, value):
    """A non-negative int (step counters in a state_dict), small enough for the kernels."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= _MAX_COUNT:
        raise ValueError(f"{name} must be in [0, 2**62], got {value}")
    return int(value)


def _whole_float_as_int(v):
    """A step count given as a whole float (a Python or NumPy float, or a 0-d array or tensor
    of one: torch keeps Adam's step a float tensor) as an int; anything else as it is (for
    _count to check)."""
    if getattr(v, "ndim", None) == 0 and callable(getattr(v, "item", None)):
        v = v.item()  # a 0-d array, or torch's 0-d step tensor (on the host)
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
        return int(v)
    return v


def _check_updatable(p):
    """TypeError / ValueError unless the optimizer can update p in place; RuntimeError when
    p's layer has left the memory p views (moved by .to()): the steps would train nothing."""
    if p._detached():
        raise RuntimeError(f"parameter {p.name!r} no longer views its layer's memory (the layer "
                           "was moved with .to() after this optimizer was built, or the "
                           "Parameter was taken before): build the optimizer over "
                           "model.parameters() after moving the model")
    for what, a in (("data", p.data), ("grad", p.grad)):
        if a.dtype not in (np.float32, np.float64):
            raise TypeError(f"parameter {p.name!r}: {what} dtype must be float32 or "
                            f"float64, got {a.dtype}")
        # Device arrays are C-contiguous by construction.
        contiguous = a.flags.c_contiguous if isinstance(a, np.ndarray) else True
        if not contiguous or not _arrays.writable(a):
            raise ValueError(f"parameter {p.name!r}: {what} must be a writable C-contiguous "
                             "array (the optimizer updates it in place)")
    if p.data.size and _overlap(p.data, p.grad):
        # (the kernel refuses it too, but after the parameters before it were stepped)
        raise ValueError(f"parameter {p.name!r}: data and grad overlap; each must be a buffer "
                         "of its own")


def _usable_buffer(p, k, v):
    """State buffer v (set by hand: a load_state_dict's are the optimizer's own) as the step's
    kernel updates it, a flat view of its memory; else TypeError / ValueError naming it."""
    what = f"state {k!r} of {p.name!r}"
    d = p.data
    on_dev = type(d) is not np.ndarray
    if type(v) is not type(d) and not (not on_dev and isinstance(v, np.ndarray)):
        kind = "a pyrnn.cuda.DeviceArray" if on_dev else "a NumPy array"
        where = f"cuda:{d.device}" if on_dev else "cpu"
        raise TypeError(f"{what} must be {kind} on the parameter's device ({where}), got "
                        f"{type(v).__name__}; optimizer.load_state_dict() converts any "
                        f"array-like")
    if on_dev and v.device != d.device:
        raise ValueError(f"{what} is on cuda:{v.device}, the parameter on cuda:{d.device}")
    if np.dtype(v.dtype) != p.dtype:
        raise ValueError(f"{what} has dtype {v.dtype}, expected {p.dtype}")
    if tuple(v.shape) not in ((p.size,), tuple(p.shape)):
        want = f"({p.size},)" + ("" if p.shape == (p.size,) else f" or {tuple(p.shape)}")
        raise ValueError(f"{what} has shape {tuple(v.shape)}, expected {want}")
    if not _arrays.writable(v) or (not on_dev and not v.flags.c_contiguous):
        raise ValueError(f"{what} must be a writable C-contiguous array (the step updates it "
                         f"in place)")
    return v.reshape(-1)


_overlap = _arrays.overlap


def _renamed(p, name):
    """Parameter p under `name` (an optimizer's parameter keeps its name across a move)."""
    if p.name == name:
        return p
    q = Parameter(name, p.data, p.grad, p._owner)
    q._key = p._key
    return q


def _param_list(params):
    if isinstance(params, Parameter):
        raise TypeError("params must be an iterable of pyrnn.Parameter (e.g. "
                        "model.parameters()), got a single Parameter")
    try:
        plist = list(params)
    except TypeError:
        raise TypeError(f"params must be an iterable of pyrnn.Parameter, got "
                        f"{type(params).__name__}") from None
    if not plist:
        raise ValueError("optimizer got an empty parameter list")
    seen = {}
    for i, p in enumerate(plist):
        if not isinstance(p, Parameter):
            raise TypeError(f"params[{i}] is a {type(p).__name__}, expected pyrnn.Parameter")
        _check_updatable(p)
        key = _arrays.data_ptr(p.data), p.device, p.size * p.dtype.itemsize
        if p.data.size and key in seen:
            raise ValueError(f"parameter {p.name!r} appears twice (also as {seen[key]!r}); "
                             "an optimizer must see each parameter once")
        seen[key] = p.name
    return plist


_HYPER_NAMES: dict[type, frozenset[str]] = {}  # Optimizer._base_hyper_names, per class


class _ParamGroup(Mapping[str, Any]):
    """One of Optimizer.param_groups: the optimizer's hyperparameters and params by key."""

    def __init__(self, opt: Optimizer) -> None:
        self._opt = opt

    def _items(self) -> dict[str, Any]:
        return {"params": self._opt.params, **self._opt.hyperparameters()}

    def __getitem__(self, key: str) -> Any:
        return self._items()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())

    def __setitem__(self, key: str, value: Any) -> None:
        # As the attribute (checked as the constructor checks it): a schedule written for
        # torch sets "lr", or "momentum" / "betas" (torch's OneCycleLR cycles them).
        if key == "params":
            raise TypeError("param_groups[0]['params'] is the optimizer's own list: change it "
                            "in place (append, remove), as torch's")
        if key not in self._opt.hyperparameters():
            raise KeyError(f"{key!r} is not a hyperparameter of {type(self._opt).__name__} "
                           f"(it has {', '.join(self._opt.hyperparameters()) or 'none'})")
        setattr(self._opt, key, value)

    def __repr__(self) -> str:
        return repr({k: v for k, v in self._items().items() if k != "params"})


class Optimizer:
    """Base: holds the parameter list and one state dict per parameter."""

    _lr: float

    def __init__(self, params: Iterable[Parameter]) -> None:
        self.params: list[Parameter] = _param_list(params)
        self.state: list[dict[str, Any]] = [dict() for _ in self.params]
        self._known = list(self.params)  # what self.state is paired with (_sync_params)
        self._left: dict[Parameter, Any] = {}  # state of parameters taken out (_sync_params)
        self.steps = 0  # step() calls so far

    def _sync_params(self):
        """self.params as the caller may have changed it (it is param_groups[0]["params"], a
        live list as torch's: a parameter appended there is trained, as torch trains it):
        checked as at construction, and each parameter keeps its state (one new to the list
        starts with none, as in torch, whose Adam counts steps per parameter too)."""
        known = self._known
        self._check_state_list(known)
        if len(known) == len(self.params) and all(a is b for a, b in zip(known, self.params)):
            return
        plist = _param_list(self.params)
        # By parameter (the same array of the same layer: Parameter's equality), as torch keys
        # its state by tensor: one listed again (model.parameters() anew, also after a move)
        # keeps its state, and one removed then added back finds its own again (torch never
        # drops it either: _left, {parameter: (the parameter it was kept for, its state)}).
        # Moved to the parameter's device only where its layer moved meanwhile; all or
        # nothing (nothing changes before every state is found).
        left = self.__dict__.setdefault("_left", {})
        now = {q: (q, st) for q, st in zip(known, self.state)}
        state, back = [], []
        for p in plist:
            src = now.get(p)
            if src is None:
                src = left.get(p)
                if src is not None:
                    back.append(p)
            if src is None:
                state.append({})
                continue
            q, st = src
            state.append(self._moved_state(p, st) if st and q.device != p.device else st)
        listed = set(plist)
        for p in back:
            del left[p]
        for q, src in now.items():  # taken out
            if q not in listed and src[1]:
                left[q] = src
        self.state = state
        self._known = plist

    def _state_list_ok(self, known):
        state = self.state
        return isinstance(state, list) and len(state) == len(known) and all(
            type(st) is dict for st in state)

    def _check_state_list(self, known, strict=False):
        """self.state as the caller may have changed it: emptied (torch's reset,
        ``opt.state.clear()`` or ``opt.state = {}``), every parameter's state starts afresh,
        taken-out ones' too; any other list than one dict per parameter is refused (a step
        zipped it with the parameters: a shorter one left the rest untrained, silently). An
        optimizer with a step of its own keeps its state as it likes, unless it runs the base
        class's step (strict: from there)."""
        if self._state_list_ok(known):
            return
        state = self.state
        if not strict and (type(self)._step is not Optimizer._step
                           or type(self).step is not Optimizer.step) and not (
                isinstance(state, list) and not state):
            return  # (an empty list, the base layout, is a reset whoever steps)
        if isinstance(state, (list, dict)) and not state:
            self.state = [{} for _ in known]
            self._left = {}
            return
        got = (f"{len(state)} entries" if isinstance(state, (list, dict))
               else f"a {type(state).__name__}")
        raise ValueError(f"{type(self).__name__}.state holds {got} for {len(known)} parameters: "
                         f"it is a list of one dict per parameter, in the order of "
                         f"param_groups[0]['params'] (state[i] = {{}} restarts parameter i); "
                         f"to reset every parameter's state, opt.state.clear()")

    def _moved_state(self, p, st):
        """State st, kept for p on the device its layer has left, on p's device: each array
        of p's size and dtype (the moments; a custom optimizer's own of that size too, its
        shape kept) copied there once; device arrays of other sizes to the host when p is on
        it; everything else as it is."""
        out = {}
        for k, v in st.items():
            on_dev = _arrays.on_device(v)
            if (on_dev or isinstance(v, np.ndarray)) and v.size == p.size and (
                    np.dtype(v.dtype) == p.dtype):
                arr = np.array(_arrays.host(v) if on_dev else v, order="C")
                out[k] = (_arrays.to_device(arr, device=p.data.device) if p.device != "cpu"
                          else arr)
            elif on_dev and p.device == "cpu":
                out[k] = _arrays.host(v)
            else:
                out[k] = v
        return out

    def _repoint(self, moved):
        """After a model's move (Sequential.to): its parameters here (listed, appended or
        taken out since, or kept among those taken out) become `moved`'s, equal to them (the
        same array of the same layer), each under its own name, and their state goes to the
        new device, once. All or nothing: nothing changes unless every state has moved. An
        optimizer keeping its state otherwise (a custom one's dict) is left as it is."""
        try:
            self._check_state_list(self._known)  # (a reset since: the fresh state follows)
        except ValueError:
            return False  # (its next step names the problem)
        if not isinstance(self.state, list) or len(self.state) != len(self._known):
            return False

        def new_of(p):
            return _renamed(moved[p], p.name) if p._detached() and p in moved else p
        params = _param_list([new_of(p) for p in self.params])  # (checked as at a sync)
        now = {q: (q, st) for q, st in zip(self._known, self.state)}
        left = self.__dict__.get("_left", {})
        state = []
        for p in params:
            q, st = now.get(p) or left.get(p) or (p, {})
            state.append(self._moved_state(p, st) if st and q.device != p.device else st)
        listed, kept = set(params), {}
        for q, (src, st) in [*left.items(), *now.items()]:
            if q in listed or not st:
                continue
            p = new_of(q)
            kept[p] = (src, st) if p is q else (
                p, self._moved_state(p, st) if src.device != p.device else st)
        self.params[:] = params
        self._known, self.state, self._left = list(params), state, kept
        return True

    # The learning rate may be changed between steps (a schedule); checked as the
    # constructor checks it. learning_rate is Keras' name for it.
    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _float("lr", value)

    learning_rate = lr

    @property
    def param_groups(self) -> list[_ParamGroup]:
        """PyTorch's view of it, one group: [{"params": [...], "lr": ..., the other
        hyperparameters}]. ``g["lr"] = x`` sets the learning rate (as ``opt.lr = x``: a
        schedule written for torch works), and ``g["momentum"] = x`` another hyperparameter,
        checked as the constructor checks it. "params" is the optimizer's own list, as
        torch's: a parameter appended to it is trained from the next step, with state of its
        own."""
        return [_ParamGroup(self)]

    def __setattr__(self, name: str, value: Any) -> None:
        # A built-in optimizer's hyperparameters, once built, pass its constructor's checks
        # when set (opt.betas = (0.9, 1.5) or opt.eps = -1 wrote NaN weights at the next step,
        # and a state_dict load_state_dict then refused); lr has its own property.
        if "state" in self.__dict__ and not name.startswith("_") and name != "lr":
            known = self._base_hyper_names()
            if name in known:
                hyper = {k: v for k, v in self.hyperparameters().items() if k in known}
                value = self._probe_hyper({**hyper, name: value})[name]
        object.__setattr__(self, name, value)

    def _base_hyper_names(self) -> frozenset[str]:
        """The hyperparameters the nearest built-in class's constructor takes (none for a
        custom optimizer: its values are its own business). Per class, once: every attribute
        write asks (steps += 1 at each step among them)."""
        cls = type(self)
        names = _HYPER_NAMES.get(cls)
        if names is None:
            base = next((c for c in cls.__mro__ if c in _BUILTIN), None)
            names = frozenset() if base is None else frozenset(
                set(inspect.signature(base).parameters) - {"params"})  # (its __init__'s)
            _HYPER_NAMES[cls] = names
        return names

    def _probe_hyper(self, hyper: Mapping[str, Any]) -> dict[str, Any]:
        """hyper (the built-in base's constructor arguments) as that constructor normalises
        them, its checks applied (their TypeError / ValueError raised)."""
        base = next(c for c in type(self).__mro__ if c in _BUILTIN)
        return base(self.params, **hyper).hyperparameters()

    def __setstate__(self, state):
        self.__dict__.update(_attrs.upgrade(type(self), state))  # (pickles kept a plain lr)
        self.__dict__.setdefault("_known", list(self.params))  # (pickles from before it)
        self.__dict__.setdefault("_left", {})

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero every gradient. (pyrnn's gradients are arrays, never None: set_to_none, torch's
        keyword, zeroes as well; a parameter no step touched is then still moved by momentum
        and weight decay, where torch skips a None gradient.)"""
        self._sync_params()
        for p in self.params:  # all before any is cleared, as step()
            if p._detached():
                _check_updatable(p)
        with owners_held(self.params):
            for p in self.params:
                zero_(p.grad)

    def step(self) -> None:
        self._step(None)

    def _ready(self):
        """step()'s checks, all before any parameter changes (a refused step changes
        nothing): the parameter list, the state list, each parameter, and a built-in step's
        state buffers (set by hand: a load_state_dict's are the optimizer's own), made the flat
        views its kernel updates. fit's guard runs them before it sizes its kept copies."""
        # (strict before the sync, which pairs the list with the parameters by position)
        self._check_state_list(self._known, strict=True)
        self._sync_params()
        for p in self.params:
            _check_updatable(p)
        # A subclass with an _update of its own may keep its own layout (float64 moments, a
        # factored one): only a buffer in its parameter's shape is flattened (torch's layout,
        # for a super()._update), nothing refused.
        own = type(self)._update not in _KEEPING
        buffers, counters = self._state_buffers or (), self._state_counters
        for p, st in zip(self.params, self.state):
            d = p.data
            host = type(d) is np.ndarray
            for k in buffers:
                v = st.get(k)
                if v is None:
                    continue
                if host:  # the usual case, tested fast
                    if (type(v) is np.ndarray and v.ndim == 1 and v.dtype == d.dtype
                            and v.size == d.size and v.flags.c_contiguous
                            and v.flags.writeable):
                        continue
                elif (type(v) is type(d) and v.shape == (d.size,) and v.dtype == d.dtype
                      and v.device == d.device and not v.readonly):
                    continue
                if own:
                    if (type(v) is type(d) and tuple(v.shape) == tuple(d.shape)
                            and v.dtype == d.dtype and _arrays.writable(v)
                            and (not host or v.flags.c_contiguous)):
                        st[k] = v.reshape(-1)
                    continue
                st[k] = _usable_buffer(p, k, v)
            for k in () if own else counters:  # (an integral float count becomes an int)
                v = st.get(k)
                if v is not None and not (type(v) is int and 0 <= v <= _MAX_COUNT):
                    st[k] = _count(f"state {k!r} of {p.name!r}", _whole_float_as_int(v))

    def _step(self, keeps):
        """step(). keeps (built-in optimizers only, see _keeps_in_step): None, or per parameter
        (a flat copy-to-be of it, {state name: flat copy-to-be}, a list the step adds the names
        of the state it only copies to), which the step fills with the values it overwrites, as
        it reads them: fit's guard (_fit_guard.py) without a pass of its own over the weights
        and the state. Returns, from a built-in step, what it made non-finite among the values
        it wrote (bit 1 a parameter, bit 2 the state), else None."""
        if keeps is None:  # (fit's guard ran them before sizing its keeps)
            self._ready()
        bad = 0
        # Whole or not at all: a Ctrl-C between two parameters' updates left the model half
        # stepped, the per-parameter step counts out of step (fit deferred it; a loop of the
        # user's calling step() did not).
        with sigint_deferred(), owners_held(self.params):
            for i, (p, st) in enumerate(zip(self.params, self.state)):
                if keeps is None:
                    bits = self._update(p.data.reshape(-1), p.grad.reshape(-1), st)
                else:
                    bits = self._update(p.data.reshape(-1), p.grad.reshape(-1), st, keeps[i])
                p._changed()
                bad = None if bad is None or not isinstance(bits, int) else bad | bits
            self.steps += 1  # counted once done (a step that raised is not one)
        return bad

    def _update(self, data, grad, state):  # flat [n] views
        raise NotImplementedError

    @staticmethod
    def _native_keep(st, keep, slots):
        """A kernel's keep argument (param, state0, state1, state2) from _step's keep for one
        parameter, (its kept copy, {state name: kept copy}, [names]): slots names the state
        buffer in each of the kernel's state slots (None: one it does not write). Kept buffers
        of state the kernel does not write are copied here, and their names listed."""
        if keep is None:
            return None
        kept_param, kept_state, unwritten = keep
        for name, kept in kept_state.items():
            if name not in slots:
                _arrays.copy_into(kept, st[name])
                unwritten.append(name)
        return (kept_param,) + tuple(None if name is None else kept_state.get(name)
                                     for name in slots) + (None,) * (3 - len(slots))

    def _buffer(self, state, key, like):
        buf = state.get(key)
        if buf is None:
            buf = state[key] = _arrays.zeros_like(like)  # on the parameter's device
        return buf

    # ---- state (for checkpoints) ---------------------------------------------------------
    # Per-parameter state names: buffers shaped like the parameter, and integer counters.
    # None (the base class): any names, as a custom optimizer keeps them.
    _state_buffers: Optional[tuple[str, ...]] = None
    _state_counters: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, Any]:
        """Class name, steps, hyperparameters and per-parameter state; state arrays as host
        ndarray copies (whatever device the parameters are on), a built-in optimizer's in
        their parameters' shapes (as torch's)."""
        return self._state_dict(warn=True)

    def _state_dict(self, warn):
        buffers = (self._state_buffers or ()) if type(self)._update in _KEEPING else ()

        def copy(p, k, v):
            if isinstance(v, np.ndarray):
                v = v.copy()
            elif _arrays.on_device(v):
                v = _arrays.host(v)
            else:
                return v
            # A built-in buffer in its parameter's shape, as torch saves it: loaded into an
            # optimizer over the parameters in another order, a flat one of the same size
            # passed (the moments of one weight trained another, silently).
            return v.reshape(p.shape) if k in buffers and v.size == p.size else v
        self._sync_params()
        left = self.__dict__.get("_left") or {}
        if left and warn:
            names = ", ".join(repr(q.name) for q in list(left)[:3]) + (", ..." if len(left) > 3
                                                                       else "")
            warnings.warn(f"{type(self).__name__}.state_dict() does not hold the state of the "
                          f"{len(left)} parameter(s) taken out of param_groups ({names}): a "
                          f"checkpoint of it starts them afresh when they are put back (torch "
                          f"raises here); put them back in the list before saving to keep it",
                          RuntimeWarning, stacklevel=3)
        return {"class": type(self).__name__, "steps": self.steps,
                "hyper": self.hyperparameters(),
                "state": [{k: copy(p, k, v) for k, v in st.items()}
                          for p, st in zip(self.params, self.state)]}

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        """Restore what state_dict() gave, all or nothing: the class, every hyperparameter
        (through the constructor's checks), every state entry (name, shape, dtype, against
        the parameters) and steps are validated before anything changes. State arrays may be
        any array-like (lists are converted to the parameter's dtype; an ndarray must have it)
        of the parameter's flat (size,) or own shape; they are copied to its device."""
        name = type(self).__name__
        if not self._state_list_ok(self._known):
            try:
                self._check_state_list(self._known)
            except ValueError:  # out of step with the parameters: replaced below anyway
                self.state, self._left = [{} for _ in self._known], {}
        self._sync_params()
        if not isinstance(sd, Mapping):
            raise TypeError(f"state_dict must be a dict (from {name}.state_dict()), got "
                            f"{type(sd).__name__}")
        missing = [k for k in ("steps", "hyper", "state") if k not in sd]
        if missing:
            raise ValueError(f"state_dict lacks {', '.join(map(repr, missing))} (expected the "
                             f"dict {name}.state_dict() returns)")
        if "class" in sd and sd["class"] != name:
            raise ValueError(f"state_dict is from {sd['class']}, not {name}: load it into the "
                             "optimizer class that saved it")
        hyper = self._checked_hyper(sd["hyper"])
        steps = _count("steps", sd["steps"])
        states = sd["state"]
        if isinstance(states, (str, bytes, Mapping)) or not hasattr(states, "__len__"):
            raise TypeError(f"state_dict['state'] must be a list of dicts, got "
                            f"{type(states).__name__}")
        if len(states) != len(self.params):
            raise ValueError(f"state_dict holds {len(states)} parameter states, this "
                             f"optimizer has {len(self.params)} parameters")
        new = [self._checked_state(p, st) for p, st in zip(self.params, states)]
        need = self._stepped_state({**self.hyperparameters(), **hyper})
        for p, st in zip(self.params, new):
            lack = sorted(need - set(st)) if st else []  # ({}: a parameter not stepped yet)
            if lack:
                # (the step restarted what was missing from zero: a wrong update, no error)
                raise ValueError(f"state of {p.name!r} lacks {', '.join(map(repr, lack))}: "
                                 f"{name} with these hyperparameters keeps "
                                 f"{', '.join(sorted(need))} for every parameter it stepped")
        # Everything checked (and uploaded): nothing below can fail halfway.
        self.state = new
        self._left = {}  # (all state is replaced, as torch's load_state_dict replaces it)
        self.steps = steps
        for k, v in hyper.items():  # (checked together above: one at a time could refuse
            object.__setattr__(self, k, v)  # momentum = 0 before nesterov = False)

    def _checked_hyper(self, hyper):
        """The hyperparameters as the constructor normalises them (its checks apply)."""
        if not isinstance(hyper, Mapping):
            raise TypeError(f"state_dict['hyper'] must be a dict, got {type(hyper).__name__}")
        want = set(self.hyperparameters())
        if set(hyper) != want:
            extra, lack = sorted(set(hyper) - want), sorted(want - set(hyper))
            raise ValueError(f"state_dict hyperparameters do not fit {type(self).__name__} "
                             f"(unknown: {extra or 'none'}; missing: {lack or 'none'})")
        # The checks of the nearest built-in class: a subclass's constructor may need other
        # arguments, and a custom optimizer's values are its own business.
        known = self._base_hyper_names()
        if not known:
            return dict(hyper)
        # Only the values saved: a subclass that fixes some of the base's hyperparameters (and
        # does not list them) keeps its own.
        try:
            checked = self._probe_hyper({k: v for k, v in hyper.items() if k in known})
        except (TypeError, ValueError) as e:
            raise type(e)(f"state_dict hyperparameters: {e}") from None
        return {k: checked.get(k, v) if k in known else v for k, v in hyper.items()}

    def _checked_state(self, p, st):
        """One parameter's state, validated, as the optimizer keeps it (buffers flat, on the
        parameter's device)."""
        if not isinstance(st, Mapping):
            raise TypeError(f"state of {p.name!r} must be a dict, got {type(st).__name__}")
        d = {}
        # (a subclass with a step of its own: its buffers are its business, as a custom one's)
        buffers = (self._state_buffers or ()) if type(self)._update in _KEEPING else ()
        for k, v in st.items():
            if k in self._state_counters:
                v = _whole_float_as_int(v)  # (as step() takes it: torch's Adam's is a float)
                d[k] = _count(f"state {k!r} of {p.name!r}", v)
            elif k in buffers:
                d[k] = self._checked_buffer(p, k, v)
            elif type(self) in _BUILTIN:
                known = sorted(buffers) + sorted(self._state_counters)
                raise ValueError(f"state {k!r} of {p.name!r} is not {type(self).__name__} "
                                 f"state (it keeps {', '.join(known)})")
            elif _arrays.on_device(v) or (isinstance(v, np.ndarray) and v.dtype == p.dtype
                                          and v.size == p.size):
                # of the parameter's size: on its device, in its own shape (a custom optimizer's
                # matrix of that size, say)
                d[k] = self._checked_buffer(p, k, v).reshape(tuple(v.shape))
            elif isinstance(v, np.ndarray):
                d[k] = v.copy()  # a custom array of its own shape, kept on the host as given
            else:
                d[k] = v  # a custom optimizer's own value (a number, a list, ...), as it was
        return d

    @staticmethod
    def _checked_buffer(p, k, v):
        if _arrays.on_device(v):
            v = _arrays.host(v)
        what = f"state {k!r} of {p.name!r}"
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "iuf":  # (a TypeError, as for the same values in a list)
                raise TypeError(f"{what} must be a real numeric array, got dtype {v.dtype}")
            if v.dtype != p.dtype and v.dtype.kind != "f":
                raise ValueError(f"{what} has dtype {v.dtype}, expected {p.dtype}")
            # float32 <-> float64 state converts, as torch casts a loaded state to its
            # parameter's (a finite value float32 cannot hold is refused)
            arr = v if v.dtype == p.dtype else cast_finite(what, v, p.dtype)
        else:
            arr = real_array(what, v, p.dtype)  # a list has no dtype of its own: the parameter's
        if arr.shape not in ((p.size,), p.shape):
            want = f"({p.size},)" + ("" if p.shape == (p.size,) else f" or {p.shape}")
            raise ValueError(f"{what} has shape {arr.shape}, expected {want}")
        arr = np.array(arr.reshape(p.size), dtype=p.dtype, order="C")  # the optimizer's own
        return _arrays.to_device(arr, device=p.data.device) if p.device != "cpu" else arr

    def hyperparameters(self) -> dict[str, Any]:
        return {}

    def _stepped_state(self, hyper: Mapping[str, Any]) -> set[str]:
        """The state entries a built-in step keeps for every parameter it stepped, whatever
        its options (one an option adds, amsgrad's max_exp_avg_sq say, starts at zero when the
        option is switched on between steps: a state saved before that step lacks it); none
        where _update is not a built-in one (a subclass's own)."""
        return set()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({len(self.params)} parameters, {args})"


class SGD(Optimizer):
    """torch.optim.SGD: g = grad + weight_decay * p; with momentum, buf = g on the first step
    then buf = momentum * buf + (1 - dampening) * g, and g = g + momentum * buf (nesterov)
    or g = buf; p -= lr * g."""
    _state_buffers = ("momentum_buffer",)

    def __init__(self, params: Iterable[Parameter], lr: Real = 1e-3, momentum: Real = 0.0,
                 dampening: Real = 0.0, weight_decay: Real = 0.0, nesterov: bool = False) -> None:
        self.lr = _float("lr", lr)
        self.momentum = _float("momentum", momentum)
        self.dampening = _float("dampening", dampening)
        self.weight_decay = _float("weight_decay", weight_decay)
        self.nesterov = flag("nesterov", nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov momentum requires momentum > 0 and dampening = 0")
        super().__init__(params)

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "weight_decay": self.weight_decay, "nesterov": self.nesterov}

    def _stepped_state(self, hyper):
        if type(self)._update is not SGD._update:
            return set()
        return set()  # (its one entry is optional: without it, a first momentum step)

    def _update(self, data, grad, st, keep=None):
        buf = None
        first = False
        if self.momentum != 0:
            first = "momentum_buffer" not in st
            buf = self._buffer(st, "momentum_buffer", data)
        keep = self._native_keep(st, keep, ("momentum_buffer" if self.momentum != 0 else None,))
        return _arrays.kernels_for(data).sgd_step(data, grad, buf, self.lr, self.momentum,
                                                  self.dampening, self.weight_decay,
                                                  self.nesterov, first, keep=keep)


class Adam(Optimizer):
    """torch.optim.Adam (L2 weight decay added to the gradient); amsgrad as PyTorch."""
    _decoupled = False
    _state_buffers = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _state_counters = ("step",)

    def __init__(self, params: Iterable[Parameter], lr: Real = 1e-3,
                 betas: Union[tuple[Real, Real], list[Real]] = (0.9, 0.999),
                 eps: Real = 1e-8, weight_decay: Real = 0.0, amsgrad: bool = False) -> None:
        self.lr = _float("lr", lr)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
        self.betas = (_float("beta1", b1, high=1.0), _float("beta2", b2, high=1.0))
        self.eps = _float("eps", eps)
        self.weight_decay = _float("weight_decay", weight_decay)
        self.amsgrad = flag("amsgrad", amsgrad)
        super().__init__(params)

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps,
                "weight_decay": self.weight_decay, "amsgrad": self.amsgrad}

    def _stepped_state(self, hyper):
        if type(self)._update is not Adam._update:
            return set()
        return {"step", "exp_avg", "exp_avg_sq"}

    def _update(self, data, grad, st, keep=None):
        m = self._buffer(st, "exp_avg", data)
        v = self._buffer(st, "exp_avg_sq", data)
        vmax = self._buffer(st, "max_exp_avg_sq", data) if self.amsgrad else None
        step = st.get("step", 0) + 1
        keep = self._native_keep(st, keep, ("exp_avg", "exp_avg_sq",
                                            "max_exp_avg_sq" if self.amsgrad else None))
        bad = _arrays.kernels_for(data).adam_step(data, grad, m, v, vmax, self.lr, self.betas[0],
                                                  self.betas[1], self.eps, self.weight_decay,
                                                  self._decoupled, self.amsgrad, step, keep=keep)
        st["step"] = step  # after the kernel: a failed update leaves the count as it was
        return bad


class AdamW(Adam):
    """torch.optim.AdamW: decoupled weight decay, p *= 1 - lr * weight_decay, then Adam."""
    _decoupled = True

    def __init__(self, params: Iterable[Parameter], lr: Real = 1e-3,
                 betas: Union[tuple[Real, Real], list[Real]] = (0.9, 0.999),
                 eps: Real = 1e-8, weight_decay: Real = 1e-2, amsgrad: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


class RMSprop(Optimizer):
    """torch.optim.RMSprop: s = alpha s + (1 - alpha) g^2; avg = sqrt(s) + eps (centered:
    sqrt(s - mean_g^2) + eps); p -= lr g / avg, or through a momentum buffer."""
    _state_buffers = ("square_avg", "grad_avg", "momentum_buffer")

    def __init__(self, params: Iterable[Parameter], lr: Real = 1e-2, alpha: Real = 0.99,
                 eps: Real = 1e-8, weight_decay: Real = 0.0, momentum: Real = 0.0,
                 centered: bool = False) -> None:
        self.lr = _float("lr", lr)
        self.alpha = _float("alpha", alpha)
        self.eps = _float("eps", eps)
        self.weight_decay = _float("weight_decay", weight_decay)
        self.momentum = _float("momentum", momentum)
        self.centered = flag("centered", centered)
        super().__init__(params)

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps,
                "weight_decay": self.weight_decay, "momentum": self.momentum,
                "centered": self.centered}

    def _stepped_state(self, hyper):
        if type(self)._update is not RMSprop._update:
            return set()
        return {"square_avg"}

    def _update(self, data, grad, st, keep=None):
        s = self._buffer(st, "square_avg", data)
        a = self._buffer(st, "grad_avg", data) if self.centered else None
        b = self._buffer(st, "momentum_buffer", data) if self.momentum > 0 else None
        keep = self._native_keep(st, keep, ("square_avg", "grad_avg" if self.centered else None,
                                            "momentum_buffer" if self.momentum > 0 else None))
        return _arrays.kernels_for(data).rmsprop_step(data, grad, s, a, b, self.lr, self.alpha,
                                                      self.eps, self.weight_decay, self.momentum,
                                                      self.centered, keep=keep)


_ALIASES = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}

# The steps that take _step's keeps: the built-in ones, where a subclass changes neither.
_KEEPING = (SGD._update, Adam._update, RMSprop._update)


def _keeps_in_step(optimizer: Optimizer) -> bool:
    """Whether optimizer._step(keeps) keeps what its step overwrites (a built-in optimizer's
    own step); a custom one's step is run as it is, and fit's guard copies before it."""
    cls = type(optimizer)
    own = vars(optimizer) if hasattr(optimizer, "__dict__") else {}
    return (cls.step is Optimizer.step and cls._step is Optimizer._step
            and cls._native_keep is Optimizer._native_keep and cls._buffer is Optimizer._buffer
            and cls._update in _KEEPING
            # (a step wrapped or replaced on the object itself runs as it is)
            and not any(k in own for k in ("step", "_step", "_update", "_buffer", "_native_keep")))


def get(optimizer: Union[Optimizer, str], params: Iterable[Parameter]) -> Optimizer:
    """An Optimizer from an instance, or from a name ('sgd', 'adam', 'adamw', 'rmsprop')
    built over `params` with default hyperparameters (SGD: lr=0.01)."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in _ALIASES:
        cls = _ALIASES[optimizer.lower()]
        return cls(params, lr=0.01) if cls is SGD else cls(params)
    raise TypeError(f"optimizer must be a pyrnn.optim.Optimizer or one of {sorted(_ALIASES)}, "
                    f"got {optimizer!r}")


def clip_grad_norm(parameters: Union[Parameter, Iterable[Parameter]], max_norm: Real,
                   norm_type: Union[Real, str] = 2.0, error_if_nonfinite: bool = False,
                   foreach: Optional[bool] = None) -> float:
    """Scale every gradient by max_norm / (total_norm + 1e-6) when that is below 1, total_norm
    being the norm of all gradients together (torch.nn.utils.clip_grad_norm_). Returns the
    total norm before clipping, as a float. norm_type: a positive number or inf ('inf' too,
    as torch takes it). foreach: torch's choice of its kernels, taken so ported calls run;
    pyrnn's loops are its own, with the same result either way."""
    error_if_nonfinite = flag("error_if_nonfinite", error_if_nonfinite)
    if foreach is not None:
        flag("foreach", foreach)
    if isinstance(parameters, Parameter):
        parameters = [parameters]
    parameters = list(parameters)
    # The norm and the scaling on gradients no other thread's pass is writing (refused, as
    # a step): one read mid-backward clipped by a norm of half-accumulated gradients.
    with owners_held([p for p in parameters if isinstance(p, Parameter)]):
        return _clip_grad_norm(parameters, max_norm, norm_type, error_if_nonfinite)


def _clip_grad_norm(parameters, max_norm, norm_type, error_if_nonfinite):
    grads = []
    for i, p in enumerate(parameters):
        if not isinstance(p, Parameter):
            raise TypeError(f"parameters[{i}] is a {type(p).__name__}, expected pyrnn.Parameter")
        p._check_attached("clip_grad_norm")  # (it scaled gradients the layer no longer has)
        g = p.grad
        if g.dtype not in (np.float32, np.float64):
            raise TypeError(f"parameter {p.name!r}: grad dtype must be float32 or float64, "
                            f"got {g.dtype}")
        # Clipping scales the gradient in place: a copy (what reshape makes of a strided
        # array) would be scaled instead, and the clip silently lost. Checked for every
        # parameter before any is scaled. (DeviceArrays are C-contiguous; a read-only one, a
        # user's Parameter over an imported view, say, is refused as on the host.)
        if not _arrays.writable(g) or (not _arrays.on_device(g) and not g.flags.c_contiguous):
            raise ValueError(f"parameter {p.name!r}: grad must be a writable C-contiguous array "
                             "(clip_grad_norm scales it in place)")
        grads.append(g.reshape(-1))
    if isinstance(max_norm, numbers.Real) and not isinstance(max_norm, bool) and \
            as_float("max_norm", max_norm) == math.inf:
        # torch still multiplies every gradient by min(inf / (norm + 1e-6), 1) = 1; here a
        # finite norm leaves them untouched (the same values), a NaN or inf one scales by
        # NaN as torch's does
        max_norm = math.inf
    else:
        max_norm = _float("max_norm", max_norm)
    if isinstance(norm_type, str):  # torch's float(norm_type) takes 'inf'
        try:
            norm_type = float(norm_type)
        except ValueError:
            raise ValueError(f"norm_type must be a number > 0 or 'inf', got "
                             f"{norm_type!r}") from None
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real):
        raise TypeError(f"norm_type must be a number > 0 (or math.inf), got "
                        f"{type(norm_type).__name__}")
    norm_type = as_float("norm_type", norm_type, "a number > 0 (or math.inf)")
    if not norm_type > 0:
        raise ValueError(f"norm_type must be > 0 or inf, got {norm_type}")
    if not grads:
        return 0.0
    if math.isinf(norm_type):
        # NaN anywhere makes the norm NaN, as torch's (max() keeps an earlier value over it).
        norms = [_arrays.kernels_for(g).max_abs(g) for g in grads]
        total = math.nan if any(math.isnan(v) for v in norms) else max(norms)
    elif norm_type == 2.0:
        total = math.sqrt(sum(_arrays.kernels_for(g).sum_squares(g) for g in grads))
    else:  # rare orders: NumPy on the host (device gradients are copied back)
        total = sum(float(np.sum(np.abs(_arrays.host(g).astype(np.float64)) ** norm_type))
                    for g in grads)
        try:
            total = total ** (1.0 / norm_type)
        except OverflowError:  # (Python's float power raises; torch's gives inf)
            total = math.inf
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"the total norm of order {norm_type} of the gradients is {total}; "
                           "set error_if_nonfinite=False to clip anyway")
    coef = max_norm / (total + 1e-6)
    if coef < 1.0 or math.isnan(coef):
        for g in grads:
            _arrays.kernels_for(g).scale_inplace(g, coef)
    return float(total)


clip_grad_norm_ = clip_grad_norm

# Classes whose state names and hyperparameters load_state_dict checks strictly (subclasses
# may keep more: theirs pass as they are).
_BUILTIN = (SGD, Adam, AdamW, RMSprop)
