"""fit()'s guard against non-finite training: the weights and the optimizer's state before the
last step, to put back together when a loss or a step goes non-finite (weights restored
alone left Adam's Inf moments behind, and no retry could recover). Runs once per batch:
kept lean. A built-in optimizer's step over many parameters writes the copies itself, as it
reads the values it replaces, and counts the non-finite values it writes
(optim.Optimizer._step): no pass of the guard's own over the weights and the state, which cost
a large embedding's training more than a third of its time. Another optimizer's step (or a
small model's) runs as it is, after one copy of the parameters and its buffers (keep()); one
read of them checks it."""
import copy

import numpy as np

from . import _arrays, _train
from . import optim as _optim
from ._arrays import native_float
from ._signals import sigint_deferred

_SCALARS = (int, float, bool, str, bytes, type(None), np.generic)
FUSE_ELEMENTS = 1 << 16  # parameter elements from which a built-in step keeps the copies


def _is_buffer(v):
    return isinstance(v, np.ndarray) or _arrays.on_device(v)


def _same_buffer(old, v):
    return (type(old) is type(v) and old.shape == v.shape and old.dtype == v.dtype
            and _arrays.device_of(old) == _arrays.device_of(v))


def _state_dicts(optimizer):
    """The optimizer's per-parameter state dicts, or None where it keeps its state otherwise (a
    custom optimizer: a dict keyed by parameter, say): then only the weights are guarded."""
    sync = getattr(optimizer, "_sync_params", None)
    if callable(sync):
        sync()  # (params appended through param_groups: their state paired first)
    state = getattr(optimizer, "state", None)
    if (isinstance(state, list) and len(state) == len(optimizer.params)
            and all(isinstance(st, dict) for st in state)):
        return state
    return None


def _any_non_finite(arrays):
    """Whether one of `arrays` (float buffers, host or device) holds a NaN or Inf; the
    native-order host arrays go to one native call."""
    host, other = [], []
    for a in arrays:
        if _is_buffer(a) and np.dtype(a.dtype).kind == "f":
            (host if native_float(a) else other).append(a)
    if host and _train.all_finite_arrays(host) >= 0:
        return True
    return any(not _arrays.all_finite(a) for a in other)


def _memory(p):
    """What identifies a parameter: its memory (model.parameters() makes new Parameter objects
    over the same arrays at every call)."""
    return _arrays.data_ptr(p.data), p.device, p.size * p.dtype.itemsize


class LastGood:
    """keep() then step() each batch: the optimizer's step, with the parameters and the
    optimizer's per-parameter state before it kept in buffers reused across batches (while
    their shape and dtype hold: an optimizer creates its state at its first step); restore()
    writes them back."""

    def __init__(self, params, optimizer):
        self.params, self.optimizer = params, optimizer
        self.weights = [(_arrays.copy(p.data), p.data) for p in params]  # (copy, live)
        # The state buffers checked after a step: a built-in optimizer's, whose values are
        # finite in any sound run (a custom optimizer may keep Inf on purpose: a best-so-far).
        self.checked = frozenset(getattr(type(optimizer), "_state_buffers", None) or ())
        self.state = None
        self._keep_state()  # the state now: a fit that fails at its first batch puts it back
        self.steps = optimizer.steps
        self.bad = None  # the last step's non-finite bits (a fused step's), else None
        self.unwritten = []
        self._map_steps()
        self.kept_for = self._opt_params()  # the optimizer parameters self.state pairs with

    def _opt_params(self):
        """The optimizer's parameter list now (after its own sync: a callback may have
        appended to it or removed from it), or None where it has none."""
        sync = getattr(self.optimizer, "_sync_params", None)
        if callable(sync):
            sync()
        opt_params = getattr(self.optimizer, "params", None)
        return list(opt_params) if isinstance(opt_params, list) else None

    def _map_steps(self):
        """Whether the step keeps the copies (each optimizer parameter's own kept copy: among
        params, once each), and the kept copies of the parameters it does not step; for the
        optimizer's parameter list as it is now (self.mapped). Below FUSE_ELEMENTS parameter
        elements the copies cost no more than the step's bookkeeping of them (a few us per
        batch either way): copied in keep()."""
        at = {_memory(p): i for i, p in enumerate(self.params)}
        opt_params = self.mapped = self._opt_params()
        self.fused = (_optim._keeps_in_step(self.optimizer) and opt_params is not None
                      and all(_memory(p) in at for p in opt_params)
                      and len({_memory(p) for p in opt_params}) == len(opt_params)
                      and sum(p.size for p in opt_params) >= FUSE_ELEMENTS)
        if self.fused:
            self.stepped = [at[_memory(p)] for p in opt_params]
            left = set(range(len(self.params))) - set(self.stepped)
            self.unstepped = [self.weights[i] for i in sorted(left)]

    def _keep_state(self):
        live = _state_dicts(self.optimizer)
        if live is None:
            self.state = None
            return
        if self.state is None or len(self.state) != len(live):
            self.state = [dict() for _ in live]
        for st, kept in zip(live, self.state):
            if kept.keys() != st.keys():
                for k in [k for k in kept if k not in st]:
                    del kept[k]
            for k, v in st.items():
                if type(v) is np.ndarray:  # the common case first: a host buffer
                    old = kept.get(k)
                    if (type(old) is np.ndarray and old is not v and old.shape == v.shape
                            and old.dtype == v.dtype):
                        np.copyto(old, v)
                    else:
                        kept[k] = v.copy()
                elif isinstance(v, _SCALARS):
                    kept[k] = v  # a counter
                elif _is_buffer(v):
                    old = kept.get(k)
                    if old is not None and old is not v and _same_buffer(old, v):
                        _arrays.copy_into(old, v)
                    else:
                        kept[k] = _arrays.copy(v)
                else:
                    try:  # a custom optimizer's own value (a list, a tuple of arrays, ...)
                        kept[k] = copy.deepcopy(v)
                    except Exception:  # (a lock, a memoryview): not ours to copy; as it is
                        kept[k] = v

    def keep(self):
        """The values to restore should this batch's step go non-finite (or the next batch's
        loss): copied now, or, by a built-in optimizer, in step()."""
        now = self._opt_params()
        if now is None or self.mapped is None or len(now) != len(self.mapped) or any(
                a is not b for a, b in zip(now, self.mapped)):
            # A callback changed the optimizer's list (unfreezing a layer, say): the step's
            # kept copies were paired with the old one (an IndexError halfway through a step).
            self._map_steps()
        for g, live in self.unstepped if self.fused else self.weights:
            if type(g) is np.ndarray:
                np.copyto(g, live)
            else:
                _arrays.copy_into(g, live)
        if not self.fused:
            self._keep_state()
            self.kept_for = self.mapped
            self.steps = self.optimizer.steps

    def step(self):
        """The optimizer's step (keep() first)."""
        self.bad = None
        if not self.fused:
            self.optimizer.step()
            return
        self.steps = self.optimizer.steps
        self.optimizer._ready()  # (its checks first: they may replace a buffer by a flat view)
        keeps = self._step_keeps()
        self.kept_for = self.mapped
        self.bad = self.optimizer._step(keeps)

    def _step_keeps(self):
        """Per optimizer parameter: (its kept copy, {state name: kept buffer}) for the step to
        fill; the state's counters and other values are kept here, as _keep_state keeps them.
        A buffer the step creates (absent now) gets no kept copy: restore() leaves it out."""
        live = self.optimizer.state
        if self.state is None or len(self.state) != len(live):
            self.state = [dict() for _ in live]
        keeps = []
        self.unwritten = []  # per optimizer parameter: the kept state its step only copies
        for i, st, kept in zip(self.stepped, live, self.state):
            for k in [k for k in kept if k not in st]:
                del kept[k]
            buffers = {}
            for k, v in st.items():
                if type(v) is np.ndarray:  # the common case first: a host buffer
                    old = kept.get(k)
                    if (type(old) is not np.ndarray or old is v or old.shape != v.shape
                            or old.dtype != v.dtype):
                        old = kept[k] = np.empty_like(v)
                    buffers[k] = old
                elif type(v) is int:  # the step count
                    kept[k] = v
                elif _is_buffer(v):
                    old = kept.get(k)
                    if old is None or old is v or not _same_buffer(old, v):
                        old = kept[k] = _arrays.zeros_like(v)
                    buffers[k] = old
                elif isinstance(v, _SCALARS):
                    kept[k] = v  # a counter
                else:  # (not a built-in optimizer's: kept as _keep_state keeps it)
                    try:
                        kept[k] = copy.deepcopy(v)
                    except Exception:
                        kept[k] = v
            self.unwritten.append([])
            keeps.append((self.weights[i][0].reshape(-1), buffers, self.unwritten[-1]))
        return keeps

    def restore(self):
        """Puts the kept weights (and state) back, whole (Ctrl-C waits for its end); returns
        what was restored, for the message."""
        with sigint_deferred():
            return self._restore()

    def _restore(self):
        for p, (g, _) in zip(self.params, self.weights):
            _arrays.copy_into(p.data, g)
            p._changed()
        self.optimizer.steps = self.steps
        # (not _state_dicts: its sync of a list changed since can refuse it, with the weights
        # already back; the pairing below does without)
        if self.state is None or not isinstance(getattr(self.optimizer, "state", None), list):
            return "the weights were"
        # The buffers themselves go back (fit stops right after): the optimizer owns them now,
        # paired with the list they were kept for. A list changed since is re-paired by the
        # optimizer's next sync (checked then, by parameter: the same array of the same
        # layer); a parameter taken out since finds its kept state there, one put back since
        # its own among those taken out (_left).
        state = self.state
        plist = getattr(self.optimizer, "params", None)
        now = list(plist) if isinstance(plist, list) else None
        if now is not None and self.kept_for is not None and (
                len(now) != len(self.kept_for)
                or any(a is not b for a, b in zip(now, self.kept_for))):
            self._unpair_since()
            if hasattr(self.optimizer, "_known"):
                self.optimizer._known = list(self.kept_for)
        self.optimizer.state, self.state = state, None
        return "the weights and the optimizer's state were"

    def _unpair_since(self):
        """Before the kept state goes back with the list it was kept for: a parameter paired
        since (a sync after a callback's edit) but not kept keeps its state among those taken
        out; a kept one's entry there (a later one) goes, the kept state standing for it."""
        opt = self.optimizer
        left = getattr(opt, "_left", None)
        if not isinstance(left, dict):
            return
        kept = set(self.kept_for)
        for q, st in zip(getattr(opt, "_known", ()), opt.state):
            if q not in kept and st:
                left[q] = (q, st)
        for q in self.kept_for:
            left.pop(q, None)

    def non_finite(self):
        """What the last step made non-finite ('weights' / 'optimizer state'), or None: from a
        read of the parameters and the optimizer's buffers, or, after a built-in step that kept
        the copies, as it counted them among the values it wrote (and a read of the rest: the
        parameters it does not step, the state buffers it does not write)."""
        if self.fused and self.bad is not None:
            if self.bad & 1 or _any_non_finite(live for _, live in self.unstepped):
                return "weights"
            state = [st[k] for st, names in zip(self.optimizer.state, self.unwritten)
                     for k in names if k in self.checked and k in st]
            return "optimizer state" if self.bad & 2 or _any_non_finite(state) else None
        if _any_non_finite(live for _, live in self.weights):
            return "weights"
        state = [v for st in _state_dicts(self.optimizer) or () for k, v in st.items()
                 if k in self.checked]
        return "optimizer state" if _any_non_finite(state) else None
