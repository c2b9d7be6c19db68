"""A recurrent layer's configuration is fixed.

The C++ core (pyrnn::Recurrent<T>::forward/backward) takes raw pointers without sizes, so a
buffer that does not match its config is an out-of-bounds access. The configuration attributes
(input_size, hidden_size, ...) are read-only: once they were plain attributes, and changing one
made the Python shape checks pass wrong-sized buffers (segfaults, the first two rows).
Every row runs in a child process (tests/_case_runner.py): a regression is a failed row, not a
dead test run.
"""
import re

import numpy as np
import pytest

import pyrnn
from _case_runner import run_cases

PRELUDE = r'''
import numpy as np
import pyrnn

f32 = lambda *s: np.ones(s, np.float32)
f64 = lambda *s: np.ones(s, np.float64)

def lstm_native(dtype="float32"):
    """L=2, D=2 (L*D=4), C=3, H=4: x (5, 2, 3), y (5, 2, 8), states (4, 2, 4)."""
    return pyrnn.LSTM(3, 4, 2, bidirectional=True, dtype=dtype, seed=0)._native

def gru_native():
    """L=1, D=1, C=3, H=4."""
    return pyrnn.GRU(3, 4, seed=0)._native

def trained(native, T=5, N=2, dtype=np.float32):
    native.forward(np.ones((T, N, 3), dtype), None, None, None, True, 0)
    return native
'''

A, V, T, R = AttributeError, ValueError, TypeError, RuntimeError
FIXED = r"cannot set LSTM\.{}: a layer's configuration is fixed at construction; build a new layer"

CASES = [
    # ---- the review's repros: now refused at the assignment ----------------------------------
    ("repro-input-size", "l = pyrnn.LSTM(4096, 8); l.input_size = 1; "
     "l(np.ones((200, 64, 1), np.float32))", A, FIXED.format("input_size")),
    ("repro-hidden-size", "l = pyrnn.LSTM(2, 4096); l(np.ones((50, 64, 2), np.float32)); "
     "l.hidden_size = 1; l.backward(np.ones((50, 64, 1), np.float32))", A,
     FIXED.format("hidden_size")),
]


_results = {}


def _run_all():
    if not _results:
        _results.update(run_cases([(c[0], c[1]) for c in CASES], PRELUDE, timeout=300))
    return _results


@pytest.mark.parametrize("case_id,src,exc,pattern", CASES, ids=[c[0] for c in CASES])
def test_guard_case(case_id, src, exc, pattern):
    res = _run_all()[case_id]
    if "crash" in res:
        pytest.fail(f"{case_id}: {res['crash']}")
    if exc is None:
        assert res["exc"] is None, f"{case_id}: {res['exc']}: {res['msg']}"
        return
    assert res["exc"] == exc.__name__, \
        f"{case_id}: expected {exc.__name__}, got {res['exc']}: {res['msg']}"
    assert re.search(pattern, res["msg"], re.S), f"{case_id}: {res['msg']!r} !~ {pattern!r}"


# ---- read-only configuration (in process: an assignment cannot crash) -------------------------
COMMON = ["input_size", "hidden_size", "num_layers", "bias", "batch_first", "bidirectional",
          "dropout", "dtype", "seed"]
LAYERS = [(pyrnn.RNN, {"nonlinearity": "relu"}, ["nonlinearity"]),
          (pyrnn.LSTM, {}, []),
          (pyrnn.GRU, {"reset_after": True}, ["reset_after"])]


@pytest.mark.parametrize("cls,kwargs,extra", LAYERS, ids=["RNN", "LSTM", "GRU"])
def test_configuration_is_read_only(cls, kwargs, extra):
    layer = cls(3, 4, 2, bidirectional=True, batch_first=True, dropout=0.25, seed=5, **kwargs)
    before = {name: getattr(layer, name) for name in COMMON + extra}
    assert before["input_size"] == 3 and before["hidden_size"] == 4 and before["seed"] == 5
    for name in COMMON + extra:
        with pytest.raises(AttributeError, match=rf"cannot set {cls.__name__}\.{name}: a "
                           r"layer's configuration is fixed at construction; build a new "
                           rf"layer instead, e\.g\. pyrnn\.{cls.__name__}\(\*\*dict\(layer"
                           rf"\.config\(\), {name}=\.\.\.\)\)"):
            setattr(layer, name, getattr(layer, name))
        with pytest.raises(AttributeError, match="fixed at construction"):
            delattr(layer, name)
    assert {name: getattr(layer, name) for name in COMMON + extra} == before
    # The suggested rebuild works (config() has every constructor argument but seed/device).
    other = cls(**dict(layer.config(), hidden_size=6))
    assert other.hidden_size == 6 and other.config() == dict(layer.config(), hidden_size=6)


def test_device_and_training_stay_settable():
    layer = pyrnn.GRU(3, 4)
    assert layer.eval() is layer and layer.training is False
    layer.train()
    assert layer.training is True
    layer.training = False  # plain attributes, as before (train()/eval() and to() set them)
    assert layer.to("cpu") is layer and layer.device == "cpu"
    out, _ = layer(np.ones((2, 1, 3), np.float32))
    assert out.shape == (2, 1, 4) and not layer._native.has_cache()
