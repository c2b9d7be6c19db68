"""Property-based tests (hypothesis) over random shapes and options of the recurrent layers:
forward/backward never crash and give finite results for finite inputs, results are bitwise
identical across runs and thread counts, every CPU ISA agrees with the scalar kernels, and a
NaN in one sequence stays in that sequence. Bounded (a few dozen examples each, no deadline)
so the file runs in well under a minute."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyrnn
from reference import make_layer as make

SETTINGS = dict(deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_after"]


@st.composite
def configs(draw, max_T=8, max_N=4, max_C=6, max_H=10):
    cfg = dict(
        cell=draw(st.sampled_from(CELLS)),
        C=draw(st.integers(1, max_C)), H=draw(st.integers(1, max_H)),
        num_layers=draw(st.integers(1, 3)), bidirectional=draw(st.booleans()),
        batch_first=draw(st.booleans()), bias=draw(st.booleans()),
        dtype=draw(st.sampled_from(["float32", "float64"])),
        T=draw(st.integers(1, max_T)), N=draw(st.integers(1, max_N)),
        unbatched=draw(st.booleans()), with_hx=draw(st.booleans()),
        with_lengths=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)),
    )
    cfg["dropout"] = draw(st.sampled_from([0.0, 0.0, 0.3])) if cfg["num_layers"] > 1 else 0.0
    if cfg["unbatched"]:
        cfg["N"] = 1
        cfg["with_lengths"] = False
    return cfg


def inputs(cfg, layer):
    rng = np.random.default_rng(cfg["seed"])
    T, N, C, H = cfg["T"], cfg["N"], cfg["C"], cfg["H"]
    LD = cfg["num_layers"] * (2 if cfg["bidirectional"] else 1)
    shape = (T, C) if cfg["unbatched"] else ((N, T, C) if cfg["batch_first"] else (T, N, C))
    x = rng.standard_normal(shape) * rng.choice([0.1, 1.0, 10.0])
    hx = None
    if cfg["with_hx"]:
        sshape = (LD, H) if cfg["unbatched"] else (LD, N, H)
        h0 = rng.standard_normal(sshape)
        hx = (h0, rng.standard_normal(sshape)) if isinstance(layer, pyrnn.LSTM) else h0
    lengths = rng.integers(1, T + 1, N) if cfg["with_lengths"] else None
    return x, hx, lengths


def build(cfg):
    return make(cfg["cell"], cfg["C"], cfg["H"], num_layers=cfg["num_layers"],
                bidirectional=cfg["bidirectional"], batch_first=cfg["batch_first"],
                bias=cfg["bias"], dropout=cfg["dropout"], dtype=cfg["dtype"],
                seed=cfg["seed"] % 1000)


def run(cfg, layer=None):
    """Forward + backward; everything as a flat list of arrays (copies)."""
    layer = layer or build(cfg)
    x, hx, lengths = inputs(cfg, layer)
    out, state = layer(x, hx, lengths)
    rng = np.random.default_rng(cfg["seed"] + 1)
    d = rng.standard_normal(out.shape)
    if isinstance(layer, pyrnn.LSTM):
        h, c = state
        dx, (dh0, dc0) = layer.backward(d, rng.standard_normal(h.shape),
                                        rng.standard_normal(c.shape))
        arrays = [out, h, c, dx, dh0, dc0]
    else:
        dx, dh0 = layer.backward(d, rng.standard_normal(state.shape))
        arrays = [out, state, dx, dh0]
    return [a.copy() for a in arrays] + [g.copy() for g in layer.grads.values()]


@settings(max_examples=200, **SETTINGS)
@given(configs())
def test_forward_backward_finite_with_right_shapes(cfg):
    layer = build(cfg)
    res = run(cfg, layer)
    D = 2 if cfg["bidirectional"] else 1
    out = res[0]
    if cfg["unbatched"]:
        assert out.shape == (cfg["T"], D * cfg["H"])
    elif cfg["batch_first"]:
        assert out.shape == (cfg["N"], cfg["T"], D * cfg["H"])
    else:
        assert out.shape == (cfg["T"], cfg["N"], D * cfg["H"])
    for a in res:
        assert a.dtype == np.dtype(cfg["dtype"])
        assert np.isfinite(a).all()
    if cfg["with_lengths"]:  # packed-sequence semantics: padded steps give zero output
        x, hx, lengths = inputs(cfg, layer)
        tm = out.transpose(1, 0, 2) if cfg["batch_first"] else out
        for n, ln in enumerate(lengths):
            assert not tm[ln:, n].any()


@settings(max_examples=100, **SETTINGS)
@given(configs())
def test_repeated_runs_bitwise_identical(cfg):
    if cfg["dropout"]:
        cfg["dropout"] = 0.0  # the mask comes from the layer's own generator
    a, b = run(cfg), run(cfg)
    layer = build(cfg)  # the same layer twice: its caches are reused, results identical
    c, d = run(cfg, layer), run(cfg, layer)
    for u, v, w in zip(a, b, c):
        assert np.array_equal(u, v) and np.array_equal(u, w)
    for u, w in zip(c[:len(c) - len(layer.grads)], d):  # grads accumulate: outputs only
        assert np.array_equal(u, w)


@settings(max_examples=30, **SETTINGS)
@given(configs(max_T=6, max_N=48, max_C=64, max_H=96))
def test_thread_counts_bitwise_identical(restore_runtime, cfg):
    """Sizes large enough that the kernels split work across threads (products of 1M
    multiply-adds and more)."""
    cfg["dropout"] = 0.0
    results = []
    for n in (1, 2, 3):
        pyrnn.set_num_threads(n)
        results.append(run(cfg))
    for other in results[1:]:
        for u, v in zip(results[0], other):
            assert np.array_equal(u, v)


@settings(max_examples=80, **SETTINGS)
@given(configs(max_T=6, max_N=9, max_C=40, max_H=40))
def test_every_isa_agrees_with_scalar(restore_runtime, cfg):
    cfg["dropout"] = 0.0
    pyrnn.set_cpu_isa("scalar")
    ref = run(cfg)
    f32 = cfg["dtype"] == "float32"
    for isa in pyrnn.info()["available_isas"]:
        pyrnn.set_cpu_isa(isa)
        got = run(cfg)
        for u, v in zip(ref, got):
            scale = max(1.0, float(np.abs(u).max(initial=0)))
            tol = 2e-4 * scale if f32 else 1e-10 * scale
            np.testing.assert_allclose(v, u, rtol=0, atol=tol, err_msg=f"isa {isa}")


@settings(max_examples=100, **SETTINGS)
@given(configs(max_N=4), st.data())
def test_nan_stays_in_its_sequence(cfg, data):
    """A NaN in sequence n's input propagates to sequence n's outputs (from that step on, in
    the forward direction) and never reaches another sequence."""
    if cfg["unbatched"] or cfg["N"] < 2:
        cfg.update(unbatched=False, N=2)
    cfg["dropout"] = 0.0
    layer = build(cfg)
    layer.eval()
    x, hx, lengths = inputs(cfg, layer)
    n = data.draw(st.integers(0, cfg["N"] - 1))
    T_n = cfg["T"] if lengths is None else int(lengths[n])
    t = data.draw(st.integers(0, T_n - 1))
    if cfg["batch_first"]:
        x[n, t, data.draw(st.integers(0, cfg["C"] - 1))] = np.nan
    else:
        x[t, n, data.draw(st.integers(0, cfg["C"] - 1))] = np.nan
    out, state = layer(x, hx, lengths)
    tm = out.transpose(1, 0, 2) if cfg["batch_first"] else out
    H = cfg["H"]
    others = [m for m in range(cfg["N"]) if m != n]
    assert np.isfinite(tm[:, others]).all()
    # forward direction of sequence n: NaN from step t to its end
    assert np.isnan(tm[t:T_n, n, :H]).all()
    h = state[0] if isinstance(state, tuple) else state
    assert np.isnan(h[:, n]).all() and np.isfinite(h[:, others]).all()
