"""A recurrent layer's configuration is fixed, and its native layer checks every buffer.

The C++ core (pyrnn::Recurrent<T>::forward/backward) takes raw pointers without sizes, so a
buffer that does not match its config is an out-of-bounds access. Two guards, tested here:
- the configuration attributes (input_size, hidden_size, ...) are read-only: once they were
  plain attributes, and changing one made the Python shape checks pass wrong-sized buffers
  (segfaults, the first two rows);
- pyrnn._core.NativeRecurrent checks every buffer against the native config and the cached
  forward's T and N, so even a Python-side bug (simulated by writing the attributes' storage
  directly) is a ValueError. Those rows call the native object with wrong buffers directly.
Every row runs in a child process (tests/_case_runner.py): a regression is a failed row, not a
dead test run.
"""
import os
import re
import subprocess
import sys

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
    # ---- the same slips behind the read-only attributes (a Python-side bug): native ValueError --
    ("bypass-input-size", "l = pyrnn.LSTM(4096, 8); l.__dict__['_input_size'] = 1; "
     "l(np.ones((200, 64, 1), np.float32))", V,
     r"x must have shape \(T, N, C\) = \(200, 64, 4096\) for this layer, got \(200, 64, 1\)"),
    ("bypass-hidden-size", "l = pyrnn.LSTM(2, 4096); l(np.ones((50, 64, 2), np.float32)); "
     "l.__dict__['_hidden_size'] = 1; l.backward(np.ones((50, 64, 1), np.float32))", V,
     r"dy must have shape \(T, N, D\*H\) of the cached forward = \(50, 64, 4096\) for this "
     r"layer, got \(50, 64, 1\)"),
    ("bypass-num-layers", "l = pyrnn.GRU(3, 8); l.__dict__['_num_layers'] = 4; "
     "l(f32(5, 2, 3), np.zeros((4, 2, 8)))", V,
     r"h0 must have shape \(L\*D, N, H\) = \(1, 2, 8\) for this layer, got \(4, 2, 8\)"),
    ("bypass-bidirectional", "l = pyrnn.RNN(3, 8); l(f32(5, 2, 3)); "
     "l.__dict__['_bidirectional'] = True; l.backward(f32(5, 2, 16))", V,
     r"dy must have shape .* = \(5, 2, 8\) for this layer, got \(5, 2, 16\)"),
    ("bypass-dtype", "l = pyrnn.GRU(3, 8); l.__dict__['_dtype'] = np.dtype(np.float64); "
     "l(f32(5, 2, 3))", T, r"x must have dtype float32, got float64"),
    ("bypass-cell", "l = pyrnn.RNN(3, 8); l._cell = 'lstm'; "
     "l(f32(5, 2, 3), (np.zeros((1, 2, 8)), np.zeros((1, 2, 8))))", V,
     r"c0 / cn are for an LSTM; this layer has no cell state"),
    ("bypass-cached-shape", "l = pyrnn.LSTM(3, 8); l(f32(5, 2, 3)); l._last = (False, 50, 64); "
     "l.backward(f32(50, 64, 8))", V, r"dy must have shape .* = \(5, 2, 8\) .* got \(50, 64, 8\)"),
    # ---- NativeRecurrent.forward: every input ---------------------------------------------------
    ("fwd-x-width", "lstm_native().forward(f32(5, 2, 7), None, None, None, True, 0)", V,
     r"x must have shape \(T, N, C\) = \(5, 2, 3\) for this layer, got \(5, 2, 7\)"),
    ("fwd-x-rank", "lstm_native().forward(f32(5, 3), None, None, None, True, 0)", V,
     r"x must have 3 dimensions, got shape \(5, 3\)"),
    ("fwd-x-dtype", "lstm_native().forward(f64(5, 2, 3), None, None, None, True, 0)", T,
     r"x must have dtype float32, got float64"),
    ("fwd-x-dtype-f64-layer", "lstm_native('float64').forward(f32(5, 2, 3), None, None, None, True, 0)",
     T, r"x must have dtype float64, got float32"),
    ("fwd-x-strided", "lstm_native().forward(f32(5, 2, 6)[:, :, ::2], None, None, None, True, 0)",
     V, r"x must be C-contiguous"),
    ("fwd-x-list", "lstm_native().forward([[[1.0] * 3]], None, None, None, True, 0)", T,
     r"x must be a numpy.ndarray, got list"),
    ("fwd-x-none", "lstm_native().forward(None, None, None, None, True, 0)", T,
     r"x must be a numpy.ndarray, got None"),
    ("fwd-x-empty-T", "lstm_native().forward(f32(0, 2, 3), None, None, None, True, 0)", V,
     r"x must have 1 <= T, N < 2\*\*31, got shape \(0, 2, 3\)"),
    ("fwd-x-empty-N", "lstm_native().forward(f32(5, 0, 3), None, None, None, True, 0)", V,
     r"got shape \(5, 0, 3\)"),
    ("fwd-h0-layers", "lstm_native().forward(f32(5, 2, 3), f32(2, 2, 4), None, None, True, 0)", V,
     r"h0 must have shape \(L\*D, N, H\) = \(4, 2, 4\) for this layer, got \(2, 2, 4\)"),
    ("fwd-h0-batch", "lstm_native().forward(f32(5, 2, 3), f32(4, 3, 4), None, None, True, 0)", V,
     r"h0 must have shape .* = \(4, 2, 4\) .* got \(4, 3, 4\)"),
    ("fwd-h0-hidden", "lstm_native().forward(f32(5, 2, 3), f32(4, 2, 5), None, None, True, 0)", V,
     r"h0 must have shape .* = \(4, 2, 4\) .* got \(4, 2, 5\)"),
    ("fwd-h0-dtype", "lstm_native().forward(f32(5, 2, 3), f64(4, 2, 4), None, None, True, 0)", T,
     r"h0 must have dtype float32, got float64"),
    ("fwd-c0-shape", "lstm_native().forward(f32(5, 2, 3), None, f32(4, 2, 9), None, True, 0)", V,
     r"c0 must have shape \(L\*D, N, H\) = \(4, 2, 4\) for this layer, got \(4, 2, 9\)"),
    ("fwd-c0-f64-layer", "lstm_native('float64').forward(f64(5, 2, 3), None, f64(1, 2, 4), None, True, 0)",
     V, r"c0 must have shape .* = \(4, 2, 4\) .* got \(1, 2, 4\)"),
    ("fwd-c0-not-lstm", "gru_native().forward(f32(5, 2, 3), None, f32(1, 2, 4), None, True, 0)", V,
     r"c0 / cn are for an LSTM"),
    ("fwd-lengths-count", "lstm_native().forward(f32(5, 2, 3), None, None, np.array([5], np.int64), True, 0)",
     V, r"lengths must have shape \(N,\) = \(2,\), got \(1,\)"),
    ("fwd-lengths-dtype", "lstm_native().forward(f32(5, 2, 3), None, None, np.array([5, 5], np.int32), True, 0)",
     T, r"lengths must have dtype int64, got int32"),
    ("fwd-lengths-rank", "lstm_native().forward(f32(5, 2, 3), None, None, np.ones((2, 1), np.int64), True, 0)",
     V, r"lengths must have 1 dimensions, got shape \(2, 1\)"),
    # ---- NativeRecurrent.forward_into: every output ------------------------------------------
    ("fwd-y-shape", "lstm_native().forward_into(f32(5, 2, 4), f32(4, 2, 4), f32(4, 2, 4), "
     "f32(5, 2, 3), None, None, None, True, 0)", V,
     r"y must have shape \(T, N, D\*H\) = \(5, 2, 8\) for this layer, got \(5, 2, 4\)"),
    ("fwd-hn-shape", "lstm_native().forward_into(f32(5, 2, 8), f32(1, 2, 4), f32(4, 2, 4), "
     "f32(5, 2, 3), None, None, None, True, 0)", V,
     r"hn must have shape \(L\*D, N, H\) = \(4, 2, 4\) for this layer, got \(1, 2, 4\)"),
    ("fwd-cn-shape", "lstm_native().forward_into(f32(5, 2, 8), f32(4, 2, 4), f32(4, 1, 4), "
     "f32(5, 2, 3), None, None, None, True, 0)", V,
     r"cn must have shape .* = \(4, 2, 4\) .* got \(4, 1, 4\)"),
    ("fwd-cn-missing", "lstm_native().forward_into(f32(5, 2, 8), f32(4, 2, 4), None, "
     "f32(5, 2, 3), None, None, None, True, 0)", V, r"an LSTM's forward needs a cn buffer"),
    ("fwd-cn-not-lstm", "gru_native().forward_into(f32(5, 2, 4), f32(1, 2, 4), f32(1, 2, 4), "
     "f32(5, 2, 3), None, None, None, True, 0)", V, r"c0 / cn are for an LSTM"),
    ("fwd-y-readonly", "y = f32(5, 2, 4); y.setflags(write=False); "
     "gru_native().forward_into(y, f32(1, 2, 4), None, f32(5, 2, 3), None, None, None, True, 0)",
     V, r"y is an output and must be writable"),
    # Outputs overlapping inputs or each other: the C++ would read what it already wrote.
    ("fwd-y-overlaps-x", "b = np.zeros(200, np.float32); lstm_native().forward_into("
     "b[:80].reshape(5, 2, 8), f32(4, 2, 4), f32(4, 2, 4), b[50:80].reshape(5, 2, 3), None, None, "
     "None, True, 0)", V, r"y shares memory with x: outputs must not overlap"),
    ("fwd-hn-is-cn", "h = f32(4, 2, 4); lstm_native().forward_into(f32(5, 2, 8), h, h, "
     "f32(5, 2, 3), None, None, None, True, 0)", V, r"hn shares memory with cn"),
    ("bwd-dx-overlaps-dy", "b = np.zeros(200, np.float32); trained(lstm_native()).backward_into("
     "b[:30].reshape(5, 2, 3), f32(4, 2, 4), f32(4, 2, 4), b[:80].reshape(5, 2, 8), None, None)",
     V, r"dx shares memory with dy"),
    # ---- NativeRecurrent.backward / backward_into: against the cached forward -----------------
    ("bwd-no-forward", "lstm_native().backward(f32(5, 2, 8), None, None)", R,
     r"backward needs a preceding forward in training mode"),
    ("bwd-after-eval", "n = lstm_native(); n.forward(f32(5, 2, 3), None, None, None, False, 0); "
     "n.backward(f32(5, 2, 8), None, None)", R, r"backward needs a preceding forward"),
    ("bwd-into-no-forward", "lstm_native().backward_into(f32(5, 2, 3), f32(4, 2, 4), f32(4, 2, 4), "
     "f32(5, 2, 8), None, None)", R, r"backward needs a preceding forward"),
    ("bwd-dy-steps", "trained(lstm_native()).backward(f32(6, 2, 8), None, None)", V,
     r"dy must have shape \(T, N, D\*H\) of the cached forward = \(5, 2, 8\) for this layer, "
     r"got \(6, 2, 8\)"),
    ("bwd-dy-batch", "trained(lstm_native()).backward(f32(5, 3, 8), None, None)", V,
     r"dy must have shape .* = \(5, 2, 8\) .* got \(5, 3, 8\)"),
    ("bwd-dy-width", "trained(lstm_native()).backward(f32(5, 2, 4), None, None)", V,
     r"dy must have shape .* = \(5, 2, 8\) .* got \(5, 2, 4\)"),
    ("bwd-dy-rank", "trained(lstm_native()).backward(f32(5, 16), None, None)", V,
     r"dy must have 3 dimensions, got shape \(5, 16\)"),
    ("bwd-dy-dtype", "trained(lstm_native()).backward(f64(5, 2, 8), None, None)", T,
     r"dy must have dtype float32, got float64"),
    ("bwd-dy-none", "trained(lstm_native()).backward(None, None, None)", T,
     r"dy must be a numpy.ndarray, got None"),
    ("bwd-dy-f64-layer", "trained(lstm_native('float64'), dtype=np.float64).backward(f64(5, 1, 8), None, None)",
     V, r"dy must have shape .* = \(5, 2, 8\) .* got \(5, 1, 8\)"),
    ("bwd-dhn-shape", "trained(lstm_native()).backward(f32(5, 2, 8), f32(4, 2, 3), None)", V,
     r"dhn must have shape \(L\*D, N, H\) = \(4, 2, 4\) for this layer, got \(4, 2, 3\)"),
    ("bwd-dcn-shape", "trained(lstm_native()).backward(f32(5, 2, 8), None, f32(2, 2, 4))", V,
     r"dcn must have shape .* = \(4, 2, 4\) .* got \(2, 2, 4\)"),
    ("bwd-dcn-not-lstm", "trained(gru_native()).backward(f32(5, 2, 4), None, f32(1, 2, 4))", V,
     r"dc0 / dcn are for an LSTM"),
    ("bwd-dx-shape", "trained(lstm_native()).backward_into(f32(5, 2, 4), f32(4, 2, 4), "
     "f32(4, 2, 4), f32(5, 2, 8), None, None)", V,
     r"dx must have shape \(T, N, C\) of the cached forward = \(5, 2, 3\) for this layer, "
     r"got \(5, 2, 4\)"),
    ("bwd-dh0-shape", "trained(lstm_native()).backward_into(f32(5, 2, 3), f32(4, 2, 5), "
     "f32(4, 2, 4), f32(5, 2, 8), None, None)", V,
     r"dh0 must have shape .* = \(4, 2, 4\) .* got \(4, 2, 5\)"),
    ("bwd-dc0-shape", "trained(lstm_native()).backward_into(f32(5, 2, 3), f32(4, 2, 4), "
     "f32(3, 2, 4), f32(5, 2, 8), None, None)", V,
     r"dc0 must have shape .* = \(4, 2, 4\) .* got \(3, 2, 4\)"),
    ("bwd-dc0-missing", "trained(lstm_native()).backward_into(f32(5, 2, 3), f32(4, 2, 4), None, "
     "f32(5, 2, 8), None, None)", V, r"an LSTM's backward needs a dc0 buffer"),
    ("bwd-dc0-not-lstm", "trained(gru_native()).backward_into(f32(5, 2, 3), f32(1, 2, 4), "
     "f32(1, 2, 4), f32(5, 2, 4), None, None)", V, r"dc0 / dcn are for an LSTM"),
    # Outputs sized for one forward, then another forward (another thread, say) changed the
    # cache before backward: refused, not written past their end.
    ("bwd-stale-outputs", "n = trained(lstm_native(), T=3, N=1); trained(n, T=5, N=2); "
     "n.backward_into(f32(3, 1, 3), f32(4, 1, 4), f32(4, 1, 4), f32(3, 1, 8), None, None)", V,
     r"dy must have shape .* = \(5, 2, 8\) .* got \(3, 1, 8\)"),
    # ---- the checks let every valid call through --------------------------------------------
    ("valid-native-calls",
     "l = pyrnn.LSTM(3, 4, 2, bidirectional=True, seed=0); x = np.random.default_rng(0)"
     ".standard_normal((5, 2, 3)).astype(np.float32); lens = np.array([5, 3], np.int64)\n"
     "y, (hn, cn) = l(x, lengths=lens); dx, (dh0, dc0) = l.backward(np.ones_like(y))\n"
     "m = pyrnn.LSTM(3, 4, 2, bidirectional=True, seed=0)._native\n"
     "y2, hn2, cn2 = m.forward(x, None, None, lens, True, 0)\n"
     "dx2, dh02, dc02 = m.backward(np.ones_like(y), None, None)\n"
     "assert all(np.array_equal(a, b) for a, b in ((y, y2), (hn, hn2), (cn, cn2), (dx, dx2), "
     "(dh0, dh02), (dc0, dc02)))", None, ""),
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
                           rf"layer instead, e\.g\. {cls.__name__}\(\*\*dict\(layer"
                           rf"\.config\(\), {name}=\.\.\.\)\)"):
            setattr(layer, name, getattr(layer, name))
        with pytest.raises(AttributeError, match="fixed at construction"):
            delattr(layer, name)
    assert {name: getattr(layer, name) for name in COMMON + extra} == before
    # The suggested rebuild works (config() has every constructor argument but seed/device).
    other = cls(**dict(layer.config(), hidden_size=6))
    assert other.hidden_size == 6 and other.config() == dict(layer.config(), hidden_size=6)


def test_training_stays_settable():
    layer = pyrnn.GRU(3, 4)
    assert layer.eval() is layer and layer.training is False
    layer.train()
    assert layer.training is True
    layer.training = False  # a plain attribute, as in PyTorch (train()/eval() set it)
    assert layer.to("cpu") is layer and layer.device == "cpu"
    out, _ = layer(np.ones((2, 1, 3), np.float32))
    assert out.shape == (2, 1, 4) and not layer._native.has_cache()


def _every_layer():
    return [pyrnn.RNN(3, 4, seed=0), pyrnn.LSTM(3, 4, seed=0), pyrnn.GRU(3, 4, seed=0),
            pyrnn.Dense(3, 4, seed=0), pyrnn.Embedding(5, 3, seed=0), pyrnn.LayerNorm(3),
            pyrnn.Dropout(0.5), pyrnn.LastStep(),
            pyrnn.Sequential([pyrnn.LSTM(3, 4, batch_first=True, seed=0), pyrnn.LastStep(), pyrnn.Dense(4, 2)])]


@pytest.mark.parametrize("layer", _every_layer(), ids=lambda l: type(l).__name__)
def test_device_is_read_only(layer):
    # Once a plain attribute: `layer.device = "cuda"` relabelled a layer whose arrays stayed on
    # the host (the next forward handed them to the CUDA backend), and a Sequential ignored it.
    cls = type(layer).__name__
    for value in ("cuda", "cpu"):
        with pytest.raises(AttributeError, match=rf"cannot set {cls}\.device: it says where the "
                           rf"arrays are; move them with \.to\('{value}'\)$"):
            layer.device = value
    with pytest.raises(AttributeError, match=rf"cannot set {cls}\.device: .* move them with "
                       r"\.to\('cuda'\) or \.to\('cpu'\)$"):
        layer.device = "gpu"  # not a device: to() is named with the real ones
    with pytest.raises(AttributeError, match=rf"cannot delete {cls}\.device: .* \.to\('cuda'\) "
                       r"or \.to\('cpu'\)$"):
        del layer.device
    assert layer.device == "cpu" and layer.to("cpu") is layer and layer.device == "cpu"
    assert type(layer).device.__get__(None, type(layer)) is not None  # class access works


@pytest.mark.parametrize("layer", _every_layer(), ids=lambda l: type(l).__name__)
def test_pickles_from_before_device_was_read_only_load(layer):
    # Such a pickle carries "device" in the instance dict; it becomes the layer's device.
    import pickle
    state = layer.__getstate__()
    if "_device" in state:
        state["device"] = state.pop("_device")
    other = type(layer).__new__(type(layer))
    other.__setstate__(state)
    assert other.device == "cpu" and "device" not in other.__dict__
    assert pickle.loads(pickle.dumps(other)).device == "cpu"
    for name, value in layer.numpy_params().items():
        np.testing.assert_array_equal(other.numpy_params()[name], value)

def test_eval_forward_is_checked_against_what_eval_allocates(tmp_path):
    # The up-front memory check counted eval as a cache-keeping pass and more (two layer inputs
    # and a full gate cache): inference that needs ~125 MiB was refused under a 150 MiB limit
    # that the larger training pass of the same layer also exceeds. Both estimates are
    # printed by the refusal; eval's is now below training's. (130 MiB: training counts the
    # layer caches it keeps, one layer's needs 139 MiB.)
    code = (
        "import numpy as np, pyrnn\n"
        "x = np.zeros((100, 100, 1), np.float32)\n"
        "for mode in ('train', 'eval'):\n"
        "    for layers in (1, 3):\n"
        "        l = getattr(pyrnn.LSTM(1, 512, num_layers=layers, seed=0), mode)()\n"
        "        try:\n"
        "            l(x); print(mode, layers, 'ok')\n"
        "        except MemoryError as e:\n"
        "            print(mode, layers, 'refused')\n")
    env = dict(os.environ, PYRNN_MEMORY_LIMIT="130M")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:4] == ["train 1 refused", "train 3 refused", "eval 1 ok",
                                          "eval 3 ok"], out.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("setup", [
    "l = pyrnn.RNN(16, 64, batch_first=True, seed=0).eval()\nx = np.zeros((400, 600, 16))\n",
    # training: each layer's caches; without dropout a layer's input is the output below it
    "l = pyrnn.LSTM(16, 128, num_layers=3, seed=0).train()\n"
    "x = np.zeros((100, 100, 16), np.float32)\n",
    "l = pyrnn.GRU(16, 128, num_layers=3, dropout=0.5, seed=0).train()\n"
    "x = np.zeros((100, 100, 16), np.float32)\n",
], ids=["eval-converted-batch-first", "train-3-layers", "train-3-layers-dropout"])
def test_forward_memory_check_counts_outputs_and_input_copies(tmp_path, setup):
    # The check counted only the layer's own buffers: an eval forward whose outputs, converted
    # input and batch_first transposes were most of its memory passed it, and the OS killed
    # the process (LSTM(4, 8) on a (16384, 16384, 4) view: 17 GB counted, ~30 GB used).
    # Here the estimate (from the refusal under a tiny limit) is set against the measured peak
    # growth of the same forward in a fresh process: float64 batch_first input to a float32
    # layer (converted, then transposed), eval; and training passes of three layers, whose
    # caches the estimate counts one by one (with and without dropout's copies and masks).
    # (VmHWM, the peak of this process's memory: ru_maxrss is kept across exec, so a child
    # of a large pytest worker starts with the worker's peak.)
    code = (
        "import re, numpy as np, pyrnn\n"
        "def peak():\n"
        "    with open('/proc/self/status') as f:\n"
        "        return int(re.search(r'VmHWM:\\s*(\\d+) kB', f.read()).group(1))\n"
        + setup +
        "x += 0\n"
        "try:\n"
        "    r0 = peak()\n"
        "    y, h = l(x)\n"
        "    print((peak() - r0) / 1024)\n"
        "except MemoryError as e:\n"
        "    print(re.search(r'needs ([\\d.]+) MiB', str(e)).group(1))\n")
    runs = {}
    for limit in ("4M", None):  # (4M: the layer's parameters fit, the forward does not)
        env = dict(os.environ)
        env.pop("PYRNN_MEMORY_LIMIT", None)
        if limit:
            env["PYRNN_MEMORY_LIMIT"] = limit
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, cwd=tmp_path, timeout=120)
        assert out.returncode == 0, out.stderr
        runs[limit] = float(out.stdout)
    estimate, used = runs["4M"], runs[None]
    assert used <= estimate * 1.05 + 8, (estimate, used)  # not an underestimate
    assert estimate <= used * 1.5 + 8, (estimate, used)   # nor a wild overestimate
