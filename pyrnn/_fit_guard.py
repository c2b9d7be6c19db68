"""fit()'s guard against non-finite training: the weights and the optimizer's state before the
last step, to put back together when a loss or a step goes non-finite (weights restored
alone left Adam's Inf moments behind, and no retry could recover). Runs once per batch:
kept lean (a few microseconds per array)."""
import copy

import numpy as np

from . import _arrays, _train

_IMMUTABLE = (int, float, bool, str, bytes, tuple, type(None))


def _plain(a):
    """A C-contiguous float32 / float64 ndarray (what _train.all_finite_arrays reads)."""
    return (type(a) is np.ndarray and a.dtype.kind == "f" and a.dtype.itemsize in (4, 8)
            and a.flags.c_contiguous)


def _is_buffer(v):
    return type(v) is np.ndarray or _arrays.on_device(v)


class LastGood:
    """keep() copies the parameters and the optimizer's per-parameter state into buffers kept
    across batches; restore() writes them back. Buffers are reused while their shape and dtype
    hold (an optimizer creates its state at its first step)."""

    def __init__(self, params, optimizer):
        self.params, self.optimizer = params, optimizer
        self.weights = [(_arrays.copy(p.data), p.data) for p in params]  # (copy, live)
        self.state, self.steps = [dict() for _ in optimizer.state], optimizer.steps

    def keep(self):
        for g, live in self.weights:
            _arrays.copy_into(g, live)
        state = self.optimizer.state
        if len(self.state) != len(state):
            self.state = [dict() for _ in state]
        for st, kept in zip(state, self.state):
            if kept.keys() != st.keys():
                for k in [k for k in kept if k not in st]:
                    del kept[k]
            for k, v in st.items():
                if isinstance(v, _IMMUTABLE):
                    kept[k] = v  # a counter
                elif not _is_buffer(v):
                    kept[k] = copy.deepcopy(v)  # a custom optimizer's own value
                else:
                    old = kept.get(k)
                    if (type(old) is type(v) and old.shape == v.shape and old.dtype == v.dtype
                            and _arrays.device_of(old) == _arrays.device_of(v)):
                        _arrays.copy_into(old, v)
                    else:
                        kept[k] = _arrays.copy(v)
        self.steps = self.optimizer.steps

    def restore(self):
        for p, (g, _) in zip(self.params, self.weights):
            _arrays.copy_into(p.data, g)
            p._changed()
        # The buffers themselves go back (fit stops right after): the optimizer owns them now.
        self.optimizer.state = self.state
        self.optimizer.steps = self.steps
        self.state = [dict() for _ in self.state]

    def non_finite(self):
        """What the last step made non-finite ('weights' / 'optimizer state'), or None."""
        host, other = [], []  # the host float arrays go to one native call
        for _, live in self.weights:
            (host if _plain(live) else other).append((live, "weights"))
        for st in self.optimizer.state:
            for v in st.values():
                if type(v) is np.ndarray and v.dtype.kind != "f":
                    continue
                if _plain(v):
                    host.append((v, "optimizer state"))
                elif _is_buffer(v):
                    other.append((v, "optimizer state"))
        bad = _train.all_finite_arrays([a for a, _ in host])
        if bad >= 0:
            return host[bad][1]
        for a, what in other:
            if not _arrays.all_finite(a):
                return what
        return None
