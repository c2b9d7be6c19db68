"""fit()'s guard against non-finite training: the weights and the optimizer's state before the
last step, to put back together when a loss or a step goes non-finite (weights restored
alone left Adam's Inf moments behind, and no retry could recover). Runs once per batch:
kept lean (one copy of the parameters and the optimizer's buffers, one read of them)."""
import copy

import numpy as np

from . import _arrays, _train
from ._arrays import native_float
from ._signals import sigint_deferred

_SCALARS = (int, float, bool, str, bytes, type(None), np.generic)


def _is_buffer(v):
    return isinstance(v, np.ndarray) or _arrays.on_device(v)


def _same_buffer(old, v):
    return (type(old) is type(v) and old.shape == v.shape and old.dtype == v.dtype
            and _arrays.device_of(old) == _arrays.device_of(v))


def _state_dicts(optimizer):
    """The optimizer's per-parameter state dicts, or None where it keeps its state otherwise (a
    custom optimizer: a dict keyed by parameter, say): then only the weights are guarded."""
    state = getattr(optimizer, "state", None)
    if (isinstance(state, list) and len(state) == len(optimizer.params)
            and all(isinstance(st, dict) for st in state)):
        return state
    return None


class LastGood:
    """keep() copies the parameters and the optimizer's per-parameter state into buffers kept
    across batches; restore() writes them back. Buffers are reused while their shape and dtype
    hold (an optimizer creates its state at its first step)."""

    def __init__(self, params, optimizer):
        self.params, self.optimizer = params, optimizer
        self.weights = [(_arrays.copy(p.data), p.data) for p in params]  # (copy, live)
        # The state buffers checked after a step: a built-in optimizer's, whose values are
        # finite in any sound run (a custom optimizer may keep Inf on purpose: a best-so-far).
        self.checked = frozenset(getattr(type(optimizer), "_state_buffers", None) or ())
        self.state = None
        self._keep_state()  # the state now: a fit that fails at its first batch puts it back
        self.steps = optimizer.steps

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
        for g, live in self.weights:
            if type(g) is np.ndarray:
                np.copyto(g, live)
            else:
                _arrays.copy_into(g, live)
        self._keep_state()
        self.steps = self.optimizer.steps

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
        if self.state is None or _state_dicts(self.optimizer) is None:
            return "the weights were"
        # The buffers themselves go back (fit stops right after): the optimizer owns them now.
        self.optimizer.state, self.state = self.state, None
        return "the weights and the optimizer's state were"

    def non_finite(self):
        """What the last step made non-finite ('weights' / 'optimizer state'), or None."""
        host, other = [], []  # the native-order host float arrays go to one native call
        for _, live in self.weights:
            (host if native_float(live) else other).append((live, "weights"))
        for st in _state_dicts(self.optimizer) or ():
            for k, v in st.items():
                if k in self.checked and _is_buffer(v) and np.dtype(v.dtype).kind == "f":
                    (host if native_float(v) else other).append((v, "optimizer state"))
        bad = _train.all_finite_arrays([a for a, _ in host])
        if bad >= 0:
            return host[bad][1]
        for a, what in other:
            if not _arrays.all_finite(a):
                return what
        return None
