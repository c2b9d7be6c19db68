"""pyrnn against the NumPy transcription of the seeds' equations (tests/reference.py) and
against float64 central differences; parameter names, shapes and counts.

This covers what PyTorch cannot: GRU reset_after=False (the default, the seeds' form).
"""
import itertools

import numpy as np
import pytest

import pyrnn
from reference import CELLS, GATES, forward_like, param_shapes, random_params

# (cell, reset_after): every cell form pyrnn has
VARIANTS = [("rnn_tanh", False), ("rnn_relu", False), ("lstm", False), ("gru", False),
            ("gru", True)]


def vid(v):
    return v[0] + ("_reset_after" if v[1] else "")


def make_layer(cell, reset_after, C, H, L=1, **kw):
    if cell.startswith("rnn"):
        return pyrnn.RNN(C, H, L, nonlinearity=cell[4:], **kw)
    if cell == "lstm":
        return pyrnn.LSTM(C, H, L, **kw)
    return pyrnn.GRU(C, H, L, reset_after=reset_after, **kw)


LAYOUTS = ("time_major", "batch_first", "unbatched")

# option sets: (num_layers, bidirectional, layout, hx given, lengths given, bias)
OPTIONS = [
    (1, False, "time_major", False, False, True),
    (2, True, "time_major", True, True, True),
    (2, False, "batch_first", True, True, True),
    (1, True, "unbatched", True, False, True),
    (2, True, "batch_first", False, True, False),
    (3, True, "time_major", True, False, True),
]


def oid(o):
    L, bi, layout, hx, lens, bias = o
    return f"L{L}-{'bi' if bi else 'uni'}-{layout}-{'hx' if hx else 'nohx'}-" \
           f"{'lens' if lens else 'full'}-{'bias' if bias else 'nobias'}"


def setup(variant, opts, dtype="float64", T=5, N=3, C=3, H=4, seed=0, scale=0.8):
    """A layer with random parameters and random inputs in the user's layout."""
    cell, ra = variant
    L, bi, layout, hx_given, lens_given, bias = opts
    rng = np.random.default_rng([seed, CELLS.index(cell), ra, L, bi, LAYOUTS.index(layout),
                                 hx_given, lens_given, bias])
    layer = make_layer(cell, ra, C, H, L, bias=bias, bidirectional=bi,
                       batch_first=(layout == "batch_first"), dtype=dtype, seed=seed)
    for name, v in random_params(rng, cell, C, H, L, bi, bias, ra, scale=scale).items():
        layer.params[name][...] = v
    D = 2 if bi else 1
    if layout == "unbatched":
        x = rng.standard_normal((T, C))
        sshape = (L * D, H)
        N = 1
    else:
        x = rng.standard_normal((N, T, C) if layout == "batch_first" else (T, N, C))
        sshape = (L * D, N, H)
    x = x.astype(dtype)
    hx = None
    if hx_given:
        h0 = rng.standard_normal(sshape).astype(dtype)
        hx = (h0, rng.standard_normal(sshape).astype(dtype)) if cell == "lstm" else h0
    lengths = None
    if lens_given:
        lengths = np.array([T - 2, T, 1, 3, T - 1][:N])
    return layer, x, hx, lengths, rng


def unpack(cell, res):
    """(out, h_n, c_n or None) from a layer / forward_like result."""
    out, st = res
    if cell == "lstm":
        return out, st[0], st[1]
    return out, st, None


# ---- forward equals the seeds' equations ---------------------------------------------------
@pytest.mark.parametrize("opts", OPTIONS, ids=oid)
@pytest.mark.parametrize("variant", VARIANTS, ids=vid)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_forward_matches_reference(variant, opts, dtype):
    cell = variant[0]
    layer, x, hx, lengths, _ = setup(variant, opts, dtype)
    got = unpack(cell, layer(x, hx, lengths))
    want = unpack(cell, forward_like(layer, x, hx, lengths))
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == "float64" else dict(rtol=1e-5, atol=1e-6)
    for name, g, w in zip(("out", "h_n", "c_n"), got, want):
        if w is None:
            continue
        assert g.shape == w.shape, f"{name}: shape {g.shape} != {w.shape}"
        assert g.dtype == np.dtype(dtype), f"{name}: dtype {g.dtype}"
        np.testing.assert_allclose(g, w, err_msg=name, **tol)
    if lengths is not None:  # zero output past each sequence's end
        out = got[0] if layer.batch_first else got[0].transpose(1, 0, 2)
        for n, ln in enumerate(lengths):
            assert not np.any(out[n, ln:]), f"nonzero output past length {ln} of sequence {n}"


@pytest.mark.parametrize("variant", VARIANTS, ids=vid)
def test_eval_forward_matches_reference(variant):
    layer, x, hx, lengths, _ = setup(variant, OPTIONS[1])
    layer.eval()
    got = unpack(variant[0], layer(x, hx, lengths))
    want = unpack(variant[0], forward_like(layer, x, hx, lengths))
    for g, w in zip(got, want):
        if w is not None:
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10)


def test_gru_reset_after_forms_differ():
    """The two GRU forms are different functions (guards against one silently ignoring the
    flag); the reference agrees with each."""
    layer_a, x, hx, lengths, _ = setup(("gru", False), OPTIONS[1])
    layer_b = make_layer("gru", True, 3, 4, 2, bidirectional=True, dtype="float64")
    for k in layer_b.params:
        if k.startswith("bias_hn"):
            layer_b.params[k][...] = 0.0
        else:
            layer_b.params[k][...] = layer_a.params[k]
    ya, yb = layer_a(x, hx, lengths)[0], layer_b(x, hx, lengths)[0]
    assert np.max(np.abs(ya - yb)) > 1e-3
    np.testing.assert_allclose(yb, forward_like(layer_b, x, hx, lengths)[0], rtol=1e-10,
                               atol=1e-10)


# ---- central differences ---------------------------------------------------------------------
def make_loss(cell, out_shape, hn_shape, rng):
    W1 = rng.standard_normal(out_shape)
    W2 = rng.standard_normal(hn_shape)
    W3 = rng.standard_normal(hn_shape) if cell == "lstm" else None

    def loss(out, h_n, c_n):
        v = np.sum(out * W1) + np.sum(h_n * W2)
        if cell == "lstm":
            v += np.sum(c_n * W3)
        return float(v)
    return loss, W1, W2, W3


def central_diff(f, arr, eps=1e-6):
    """d f() / d arr by central differences, perturbing ``arr`` in place (restored)."""
    g = np.zeros(arr.shape)
    for idx in np.ndindex(arr.shape):
        orig = arr[idx]
        arr[idx] = orig + eps
        fp = f()
        arr[idx] = orig - eps
        fm = f()
        arr[idx] = orig
        g[idx] = (fp - fm) / (2 * eps)
    return g


FD_TOL = dict(rtol=1e-6, atol=1e-7)  # FD error: eps^2 truncation + ~1e-16*|loss|/eps roundoff

GRAD_OPTIONS = [
    (2, True, "time_major", True, True, True),
    (1, False, "batch_first", True, False, True),
    (2, True, "unbatched", False, False, False),
]


def analytic(layer, cell, x, hx, lengths, loss_parts):
    _, W1, W2, W3 = loss_parts
    layer.train()
    layer.zero_grad()
    layer(x, hx, lengths)
    if cell == "lstm":
        dx, (dh0, dc0) = layer.backward(W1, W2, W3)
    else:
        (dx, dh0), dc0 = layer.backward(W1, W2), None
    return dx, dh0, dc0, {k: np.array(v) for k, v in layer.grads.items()}


def compare_grads(layer, cell, hx, dx, dh0, dc0, grads, fd_x, fd_h0, fd_c0, fd_params):
    np.testing.assert_allclose(dx, fd_x, err_msg="dx", **FD_TOL)
    if hx is not None:
        np.testing.assert_allclose(dh0, fd_h0, err_msg="dh0", **FD_TOL)
        if cell == "lstm":
            np.testing.assert_allclose(dc0, fd_c0, err_msg="dc0", **FD_TOL)
    assert set(grads) == set(fd_params)
    for name in fd_params:
        assert np.any(fd_params[name]), f"{name}: FD gradient is zero (test too weak)"
        np.testing.assert_allclose(grads[name], fd_params[name], err_msg=f"grad {name}",
                                   **FD_TOL)


@pytest.mark.parametrize("opts", GRAD_OPTIONS, ids=oid)
@pytest.mark.parametrize("variant", VARIANTS, ids=vid)
def test_gradcheck_pyrnn_forward(variant, opts):
    """Analytic BPTT gradients vs central differences of pyrnn's own forward."""
    cell = variant[0]
    layer, x, hx, lengths, rng = setup(variant, opts, T=4, N=2, C=3, H=3)
    out, h_n, c_n = unpack(cell, layer(x, hx, lengths))
    loss_parts = make_loss(cell, out.shape, h_n.shape, rng)
    loss = loss_parts[0]
    dx, dh0, dc0, grads = analytic(layer, cell, x, hx, lengths, loss_parts)
    layer.eval()
    x = x.copy()
    h0, c0 = (hx if cell == "lstm" else (hx, None)) if hx is not None else (None, None)

    def f():
        hh = None if hx is None else ((h0, c0) if cell == "lstm" else h0)
        return loss(*unpack(cell, layer(x, hh, lengths)))

    fd_x = central_diff(f, x)
    fd_h0 = central_diff(f, h0) if h0 is not None else None
    fd_c0 = central_diff(f, c0) if c0 is not None else None
    fd_params = {name: central_diff(f, layer.params[name]) for name in layer.params}
    compare_grads(layer, cell, hx, dx, dh0, dc0, grads, fd_x, fd_h0, fd_c0, fd_params)


@pytest.mark.parametrize("variant", VARIANTS, ids=vid)
def test_gradcheck_reference_forward(variant):
    """Analytic BPTT gradients vs central differences of the reference (seeds') equations:
    bidirectional, 2 layers, lengths, hx."""
    cell = variant[0]
    opts = (2, True, "time_major", True, True, True)
    layer, x, hx, lengths, rng = setup(variant, opts, T=4, N=3, C=2, H=2)
    out, h_n, c_n = unpack(cell, layer(x, hx, lengths))
    loss_parts = make_loss(cell, out.shape, h_n.shape, rng)
    loss = loss_parts[0]
    dx, dh0, dc0, grads = analytic(layer, cell, x, hx, lengths, loss_parts)
    params = {k: np.array(v) for k, v in layer.params.items()}
    x = x.copy()
    h0, c0 = (hx if cell == "lstm" else (hx, None))

    def f():
        hh = (h0, c0) if cell == "lstm" else h0
        return loss(*unpack(cell, forward_like(layer, x, hh, lengths, params=params)))

    fd_x = central_diff(f, x)
    fd_h0 = central_diff(f, h0)
    fd_c0 = central_diff(f, c0) if c0 is not None else None
    fd_params = {name: central_diff(f, params[name]) for name in params}
    compare_grads(layer, cell, hx, dx, dh0, dc0, grads, fd_x, fd_h0, fd_c0, fd_params)
    # past each sequence's end, the input gets no gradient
    for n, ln in enumerate(lengths):
        assert not np.any(dx[ln:, n]), f"nonzero dx past length {ln} of sequence {n}"


# ---- names, shapes, counts ---------------------------------------------------------------
def test_param_count_table():
    """The seeds' table: input 10, hidden 50."""
    assert pyrnn.RNN(10, 50).num_parameters() == 3050
    assert pyrnn.RNN(10, 50, nonlinearity="relu").num_parameters() == 3050
    assert pyrnn.GRU(10, 50).num_parameters() == 9150
    assert pyrnn.LSTM(10, 50).num_parameters() == 12200
    assert pyrnn.GRU(10, 50, reset_after=True).num_parameters() == 9150 + 50


@pytest.mark.parametrize("variant", VARIANTS, ids=vid)
@pytest.mark.parametrize("L,bi,bias", list(itertools.product([1, 2, 3], [False, True],
                                                             [True, False])))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_param_names_shapes_counts(variant, L, bi, bias, dtype):
    cell, ra = variant
    C, H = 5, 7
    layer = make_layer(cell, ra, C, H, L, bidirectional=bi, bias=bias, dtype=dtype)
    want = param_shapes(cell, C, H, L, bi, bias, ra)
    assert {k: tuple(v.shape) for k, v in layer.params.items()} == want
    assert {k: tuple(v.shape) for k, v in layer.grads.items()} == want
    for k, v in layer.params.items():
        assert v.dtype == np.dtype(dtype), k
        assert v.flags.writeable, k
        assert layer.grads[k].dtype == np.dtype(dtype), k
    D = 2 if bi else 1
    G = GATES[cell]
    count = 0
    for k in range(L):
        Ck = C if k == 0 else D * H
        count += D * (G * H * (Ck + H) + (G * H + (H if ra else 0) if bias else 0))
    assert layer.num_parameters() == count == sum(int(np.prod(s)) for s in want.values())
    # random init: every weight matrix nonzero and not constant
    for k, v in layer.params.items():
        if k.startswith("weight"):
            assert np.std(v) > 0, f"{k} is constant"


# ---- caches and buffers ---------------------------------------------------------------------
def _grads_of(layer):
    return {k: np.array(v) for k, v in layer.grads.items()}


@pytest.mark.parametrize("variant", VARIANTS, ids=vid)
def test_backward_independent_of_caller_buffers(variant):
    """Mutating x, hx or the returned outputs between forward and backward changes nothing
    (the cache must not alias the caller's arrays)."""
    cell = variant[0]
    layer, x, hx, lengths, rng = setup(variant, OPTIONS[1])
    d_out = rng.standard_normal(layer(x, hx, lengths)[0].shape)
    layer.zero_grad()
    layer(x, hx, lengths)
    dx_ref = np.array(layer.backward(d_out)[0])
    g_ref = _grads_of(layer)
    layer.zero_grad()
    x2 = x.copy()
    hx2 = tuple(h.copy() for h in hx) if cell == "lstm" else hx.copy()
    out, st = layer(x2, hx2, lengths)
    out[...] = 1e3
    for s in (st if cell == "lstm" else (st,)):
        s[...] = -7.0
    x2[...] = 99.0
    for h in (hx2 if cell == "lstm" else (hx2,)):
        h[...] = 5.0
    dx = layer.backward(d_out)[0]
    np.testing.assert_array_equal(dx, dx_ref)
    for k, g in layer.grads.items():
        np.testing.assert_array_equal(g, g_ref[k], err_msg=k)


@pytest.mark.parametrize("variant", VARIANTS, ids=vid)
def test_returned_arrays_are_not_reused(variant):
    cell = variant[0]
    layer, x, hx, lengths, rng = setup(variant, OPTIONS[1])
    out1, st1 = layer(x, hx, lengths)
    keep = (np.array(out1), [np.array(s) for s in (st1 if cell == "lstm" else (st1,))])
    d1 = layer.backward(np.ones_like(out1))
    dx1 = np.array(d1[0])
    out2, _ = layer(2 * x, None, None)
    layer.backward(3 * np.ones_like(out2))
    np.testing.assert_array_equal(out1, keep[0])
    for s, k in zip((st1 if cell == "lstm" else (st1,)), keep[1]):
        np.testing.assert_array_equal(s, k)
    np.testing.assert_array_equal(d1[0], dx1)


@pytest.mark.parametrize("variant", VARIANTS, ids=vid)
def test_backward_twice_on_one_forward(variant):
    """A second backward on the same forward either is refused (RuntimeError) or repeats the
    first exactly (same dx, gradients accumulated twice); never garbage."""
    layer, x, hx, lengths, rng = setup(variant, OPTIONS[1])
    out = layer(x, hx, lengths)[0]
    d_out = rng.standard_normal(out.shape)
    layer.zero_grad()
    layer(x, hx, lengths)
    dx1 = np.array(layer.backward(d_out)[0])
    g1 = _grads_of(layer)
    try:
        dx2 = layer.backward(d_out)[0]
    except RuntimeError:
        return
    np.testing.assert_array_equal(dx2, dx1)
    for k, g in layer.grads.items():
        np.testing.assert_allclose(g, 2 * g1[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_param_views_outlive_the_layer():
    import gc
    layer = pyrnn.LSTM(3, 4, 2, bidirectional=True, dtype="float64", seed=3)
    params, grads = layer.params, layer.grads
    snapshot = {k: np.array(v) for k, v in params.items()}
    del layer
    gc.collect()
    _ = [np.ones(10000) for _ in range(50)]  # churn the allocator
    for k, v in params.items():
        np.testing.assert_array_equal(v, snapshot[k], err_msg=k)
        assert not np.any(grads[k])


@pytest.mark.parametrize("variant", VARIANTS, ids=vid)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_noncontiguous_and_other_dtype_inputs(variant, dtype):
    """Strided / reversed / Fortran-ordered / other-dtype arrays give the same results as
    their contiguous layer-dtype copies."""
    cell = variant[0]
    layer, x, hx, lengths, rng = setup(variant, OPTIONS[1], dtype=dtype)
    x = x.astype(np.float32).astype(dtype)  # exactly representable in both dtypes
    other = np.float64 if dtype == "float32" else np.float32
    big = np.zeros((x.shape[0], 2 * x.shape[1], 2 * x.shape[2]), dtype=other)
    big[:, ::2, ::2] = x
    xs = big[:, ::2, ::2]
    hs = (tuple(np.asfortranarray(h) for h in hx) if cell == "lstm"
          else np.asfortranarray(hx))
    d_out = rng.standard_normal(layer(x, hx, lengths)[0].shape).astype(dtype)
    d_rev = np.ascontiguousarray(d_out[::-1])[::-1]
    ref = layer(x, hx, lengths)
    dx_ref = np.array(layer.backward(d_out)[0])
    got = layer(xs, hs, list(lengths))
    dx = layer.backward(d_rev)[0]
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(dx, dx_ref)
    assert got[0].dtype == np.dtype(dtype) and dx.dtype == np.dtype(dtype)


@pytest.fixture
def restore_isa():
    isa = pyrnn.info()["cpu_isa"]
    yield
    pyrnn.set_cpu_isa(isa)


# relu does not saturate (outputs ~1e5 carry ordinary float32 rounding of ~1e-2), so only
# the sigmoid/tanh cells are run at these magnitudes.
SATURATING = [v for v in VARIANTS if v[0] != "rnn_relu"]


@pytest.mark.parametrize("isa", pyrnn.info()["available_isas"])
@pytest.mark.parametrize("variant", SATURATING, ids=vid)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_saturated_activations(variant, dtype, isa, restore_isa):
    """Huge pre-activations (|x| up to 1e5) saturate cleanly in every SIMD variant: finite
    outputs equal to the reference, finite gradients (vectorised exp/tanh often overflow)."""
    pyrnn.set_cpu_isa(isa)
    cell = variant[0]
    layer, _, _, _, rng = setup(variant, (1, True, "time_major", False, False, True),
                                dtype=dtype, H=19)  # 19: exercises vector tails
    x = (rng.standard_normal((4, 3, 3)) * np.array([30.0, 1e3, 1e5])).astype(dtype)
    out, h_n, c_n = unpack(cell, layer(x))
    want = unpack(cell, forward_like(layer, x))
    # float32: the saturated region is flat, so only ordinary rounding differs
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == "float64" else dict(rtol=1e-5, atol=1e-5)
    for name, g, w in zip(("out", "h_n", "c_n"), (out, h_n, c_n), want):
        if w is None:
            continue
        assert np.all(np.isfinite(g)), f"{name} has non-finite values ({isa})"
        np.testing.assert_allclose(g, w, err_msg=name, **tol)
    dx = layer.backward(np.ones_like(out))[0]
    assert np.all(np.isfinite(dx)), f"non-finite dx ({isa})"
    for k, g in layer.grads.items():
        assert np.all(np.isfinite(g)), f"non-finite grad {k} ({isa})"


def _readonly(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("which", ["x", "hx", "lengths", "d_out", "d_h_n", "eval_x"])
@pytest.mark.parametrize("variant", [("lstm", False)], ids=vid)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_readonly_inputs_accepted(variant, dtype, which):
    """Read-only arrays (np.load(mmap_mode='r'), np.frombuffer, onnx.numpy_helper.to_array,
    flags.writeable=False) already in the layer dtype are valid inputs: "any real
    array-like"; pyrnn never writes to its inputs."""
    cell = variant[0]
    layer, x, hx, lengths, rng = setup(variant, OPTIONS[1], dtype=dtype)
    d_out = rng.standard_normal(layer(x, hx, lengths)[0].shape).astype(dtype)
    d_hn = rng.standard_normal(hx[0].shape if cell == "lstm" else hx.shape).astype(dtype)
    lengths = np.asarray(lengths, dtype=np.int64)
    ref = layer(x, hx, lengths)[0]
    dx_ref = layer.backward(d_out, d_hn)[0]
    args = dict(x=x, hx=hx, lengths=lengths, d_out=d_out, d_h_n=d_hn)
    key = "x" if which == "eval_x" else which
    if key == "hx":
        args["hx"] = tuple(_readonly(h) for h in hx) if cell == "lstm" else _readonly(hx)
    else:
        args[key] = _readonly(args[key])
    if which == "eval_x":
        layer.eval()
    out = layer(args["x"], args["hx"], args["lengths"])[0]
    np.testing.assert_array_equal(out, ref)
    if which != "eval_x":
        dx = layer.backward(args["d_out"], args["d_h_n"])[0]
        np.testing.assert_array_equal(dx, dx_ref)
