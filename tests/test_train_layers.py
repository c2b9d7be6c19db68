"""Dense, LayerNorm, Embedding, Dropout, LastStep against PyTorch (outputs and every gradient),
plus the layer protocol: parameters() views, accumulation, zero_grad, train/eval, errors."""
import copy
import os
import subprocess
import sys

import numpy as np
import pytest

import pyrnn

torch = pytest.importorskip("torch")

TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}
TORCH_DT = {np.float32: torch.float32, np.float64: torch.float64}


def t(a, grad=False):
    return torch.tensor(np.asarray(a), requires_grad=grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", [None, "relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("shape", [(7,), (5, 7), (3, 4, 7)])
def test_dense_matches_torch(dtype, activation, shape):
    rng = np.random.default_rng(0)
    layer = pyrnn.Dense(7, 5, activation=activation, dtype=dtype, seed=1)
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape[:-1] + (5,)).astype(dtype)
    y = layer(x)
    dx = layer.backward(dy)

    xt = t(x, True)
    w, b = t(layer.params["weight"], True), t(layer.params["bias"], True)
    yt = torch.nn.functional.linear(xt, w, b)
    yt = {None: yt, "relu": torch.relu(yt), "tanh": torch.tanh(yt),
          "sigmoid": torch.sigmoid(yt)}[activation]
    yt.backward(t(dy))
    assert y.dtype == dtype and y.shape == shape[:-1] + (5,)
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(layer.grads["weight"], w.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(layer.grads["bias"], b.grad.numpy(), **TOL[dtype])


def test_dense_init_and_attributes():
    layer = pyrnn.Dense(16, 3, activation="tanh", seed=0)
    assert (layer.in_features, layer.out_features, layer.activation) == (16, 3, "tanh")
    assert layer.params["weight"].shape == (3, 16) and layer.params["bias"].shape == (3,)
    assert np.abs(layer.params["weight"]).max() <= 0.25  # U(-1/sqrt(16), 1/sqrt(16))
    assert layer.num_parameters() == 51
    nobias = pyrnn.Dense(4, 2, bias=False)
    assert list(nobias.params) == ["weight"]
    x = np.ones((3, 4), np.float32)
    np.testing.assert_allclose(nobias(x), x @ nobias.params["weight"].T, rtol=1e-6)
    assert pyrnn.Dense(4, 2, seed=5).params["weight"].tolist() == \
        pyrnn.Dense(4, 2, seed=5).params["weight"].tolist()


def test_dense_grads_accumulate_and_zero():
    rng = np.random.default_rng(1)
    layer = pyrnn.Dense(3, 2, seed=0)
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    layer(x)
    layer.backward(dy)
    once = layer.grads["weight"].copy()
    layer(x)
    layer.backward(dy)
    np.testing.assert_allclose(layer.grads["weight"], 2 * once, rtol=1e-6)
    layer.zero_grad()
    assert not layer.grads["weight"].any() and not layer.grads["bias"].any()


def test_dense_errors():
    layer = pyrnn.Dense(3, 2)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\).*\(4, 5\)"):
        layer(np.zeros((4, 5)))
    with pytest.raises(TypeError):
        layer(np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match="activation"):
        pyrnn.Dense(3, 2, activation="gelu")
    with pytest.raises(RuntimeError, match="forward"):
        pyrnn.Dense(3, 2).backward(np.zeros((1, 2)))
    layer(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        layer.backward(np.zeros((4, 3)))
    layer.eval()
    layer(np.zeros((4, 3)))
    with pytest.raises(RuntimeError):
        layer.backward(np.zeros((4, 2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6,), (4, 6), (2, 3, 6)])
def test_layernorm_matches_torch(dtype, shape):
    rng = np.random.default_rng(2)
    layer = pyrnn.LayerNorm(6, eps=1e-5, dtype=dtype)
    layer.params["weight"][:] = rng.standard_normal(6)
    layer.params["bias"][:] = rng.standard_normal(6)
    x = (3 + 2 * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    y = layer(x)
    dx = layer.backward(dy)
    xt = t(x, True)
    w, b = t(layer.params["weight"], True), t(layer.params["bias"], True)
    yt = torch.nn.functional.layer_norm(xt, (6,), w, b, 1e-5)
    yt.backward(t(dy))
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else TOL[dtype]
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.grads["weight"], w.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.grads["bias"], b.grad.numpy(), **tol)
    assert (layer.dim, layer.eps) == (6, 1e-5)


def test_layernorm_large_offset_is_stable():
    # Two-pass statistics: a row with mean 1e4 and spread 1 normalises correctly in float32.
    x = (1e4 + np.arange(8, dtype=np.float32))[None]
    y = pyrnn.LayerNorm(8)(x)
    ref = (np.arange(8) - 3.5) / np.sqrt(np.var(np.arange(8)) + 1e-5)
    np.testing.assert_allclose(y[0], ref, rtol=1e-4, atol=1e-4)


def test_layernorm_float32_backward_differentiates_its_forward():
    # The float32 layer kept its row mean rounded to float32 for backward, so backward
    # differentiated another function than forward computed: at rows of 1e4 +- 1e-2 the
    # weight gradient was off by a large fraction. The float64 layer on the same float32
    # inputs is the reference.
    rng = np.random.default_rng(0)
    x = (1e4 + 1e-2 * rng.standard_normal((5, 16))).astype(np.float32)
    dy = rng.standard_normal((5, 16)).astype(np.float32)
    got, want = pyrnn.LayerNorm(16), pyrnn.LayerNorm(16, dtype="float64")
    got(x)
    dx = got.backward(dy)
    want(x.astype(np.float64))
    dx64 = want.backward(dy.astype(np.float64))
    for a, b in ((dx, dx64), (got.grads["weight"], want.grads["weight"]),
                 (got.grads["bias"], want.grads["bias"])):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layernorm_same_bits_on_every_isa_and_thread_count(dtype, restore_runtime):
    # Per-ISA row loops and row / column threads (above 64k elements): one result, bit for bit,
    # as the scalar ISA's on one thread. D = 1001 leaves a tail after the 8 partial sums.
    rng = np.random.default_rng(5)
    x = (2 + 3 * rng.standard_normal((70, 1001))).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    results = {}
    for isa in pyrnn.info()["available_isas"]:
        for threads in (1, 2, 3):
            pyrnn.set_cpu_isa(isa)
            pyrnn.set_num_threads(threads)
            layer = pyrnn.LayerNorm(1001, dtype=dtype)
            layer.params["weight"][:] = np.linspace(0.5, 1.5, 1001)
            layer.params["bias"][:] = np.linspace(-1, 1, 1001)
            y = layer(x)
            dx = layer.backward(dy)
            results[isa, threads] = (y, dx, layer.grads["weight"], layer.grads["bias"])
    want = results["scalar", 1]
    for key, got in results.items():
        for a, b in zip(got, want):
            assert a.tobytes() == b.tobytes(), key


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_matches_torch(dtype):
    rng = np.random.default_rng(3)
    layer = pyrnn.Embedding(10, 4, dtype=dtype, seed=0)
    idx = rng.integers(0, 10, size=(3, 5))
    idx[0, :3] = 7  # repeated indices accumulate
    dy = rng.standard_normal((3, 5, 4)).astype(dtype)
    y = layer(idx)
    assert layer.backward(dy) is None
    w = t(layer.params["weight"], True)
    yt = torch.nn.functional.embedding(torch.tensor(idx), w)
    yt.backward(t(dy))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_allclose(layer.grads["weight"], w.grad.numpy(), **TOL[dtype])
    assert (layer.num, layer.dim) == (10, 4)
    # 0-d and 1-d inputs keep their shapes.
    assert layer(np.int64(3)).shape == (4,) and layer([1, 2]).shape == (2, 4)


def test_embedding_padding_idx_matches_torch():
    rng = np.random.default_rng(4)
    layer = pyrnn.Embedding(6, 3, padding_idx=0, seed=1)
    assert not layer.params["weight"][0].any()
    idx = np.array([[0, 1, 0, 5], [2, 0, 3, 3]])
    dy = rng.standard_normal((2, 4, 3)).astype(np.float32)
    layer(idx)
    layer.backward(dy)
    w = t(layer.params["weight"], True)
    torch.nn.functional.embedding(torch.tensor(idx), w, padding_idx=0).backward(t(dy))
    np.testing.assert_allclose(layer.grads["weight"], w.grad.numpy(), rtol=1e-6, atol=1e-7)


def test_embedding_errors():
    layer = pyrnn.Embedding(5, 2)
    with pytest.raises(ValueError, match=r"index 5 is outside \[0, 5\)"):
        layer(np.array([0, 5]))
    with pytest.raises(ValueError, match="-1"):
        layer(np.array([-1]))
    with pytest.raises(TypeError, match="integer"):
        layer(np.array([0.0, 1.0]))
    with pytest.raises(ValueError):
        pyrnn.Embedding(5, 2, padding_idx=5)


def test_dropout_train_eval_and_seed():
    x = np.ones((200, 50), np.float32)
    d = pyrnn.Dropout(0.3, seed=0)
    y = d(x)
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    dy = np.full_like(x, 2.0)
    np.testing.assert_allclose(d.backward(dy), np.where(kept, 2 / 0.7, 0), rtol=1e-6)
    np.testing.assert_array_equal(pyrnn.Dropout(0.3, seed=0)(x), y)  # seeded: reproducible
    d.eval()
    assert d(x) is not None and np.array_equal(d(x), x)
    assert not pyrnn.Dropout(1.0)(x).any()
    with pytest.raises(ValueError):
        pyrnn.Dropout(1.5)
    assert pyrnn.Dropout(0.5).p == 0.5


@pytest.mark.parametrize("bidirectional", [False, True])
def test_laststep_matches_torch_final_states(bidirectional):
    # LastStep of the output equals h_n of PyTorch's packed-sequence GRU, both directions.
    rng = np.random.default_rng(5)
    N, T, C, H = 4, 6, 3, 5
    gru = pyrnn.GRU(C, H, batch_first=True, bidirectional=bidirectional, reset_after=True, seed=0)
    x = rng.standard_normal((N, T, C)).astype(np.float32)
    lengths = np.array([6, 2, 4, 1])
    out, hn = gru(x, lengths=lengths)
    last = pyrnn.LastStep(bidirectional=bidirectional)
    y = last(out, lengths=lengths)
    want = np.concatenate([hn[0], hn[1]], axis=1) if bidirectional else hn[0]
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-7)
    # Backward scatters dy to exactly those positions.
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = last.backward(dy)
    assert dx.shape == out.shape
    n = np.arange(N)
    np.testing.assert_array_equal(dx[n, lengths - 1, :H], dy[:, :H])
    if bidirectional:
        np.testing.assert_array_equal(dx[:, 0, H:], dy[:, H:])
    assert np.count_nonzero(dx) == np.count_nonzero(dy)


def test_laststep_in_sequential_learns_direction_count():
    gru = pyrnn.GRU(3, 4, batch_first=True, bidirectional=True)
    model = pyrnn.Sequential([gru, pyrnn.LastStep(), pyrnn.Dense(8, 2)])
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    out, _ = gru(x)
    last = np.concatenate([out[:, -1, :4], out[:, 0, 4:]], 1)
    np.testing.assert_allclose(pyrnn.LastStep(bidirectional=True)(out), last)
    # In the model's passes it is bidirectional; called on its own it is standalone (None:
    # unidirectional), whatever model it sits in.
    np.testing.assert_allclose(model(x), model.layers[2](last))
    assert model.layers[1].num_directions == 1
    np.testing.assert_allclose(model.layers[1](out), out[:, -1, :])
    with pytest.raises(ValueError, match=r"\(N, T, H\)"):
        pyrnn.LastStep()(np.zeros((2, 3)))


def test_laststep_in_nested_sequential_learns_direction_count():
    """A LastStep inside a nested Sequential takes the direction count of the recurrent layer
    before it in the enclosing model: the nested model equals the flat one (forward, backward
    and fit), at any depth."""
    x = np.random.default_rng(1).standard_normal((3, 5, 2)).astype(np.float32)
    lens = np.array([5, 2, 4])

    def build(nested):
        g = pyrnn.GRU(2, 3, batch_first=True, bidirectional=True, seed=0)
        head = [pyrnn.LastStep(), pyrnn.Dense(6, 1, seed=1)]
        if nested == 0:
            return pyrnn.Sequential([g] + head)
        if nested == 1:
            return pyrnn.Sequential([g, pyrnn.Sequential(head)])
        return pyrnn.Sequential([pyrnn.Sequential([g]), pyrnn.Dropout(0.0),
                                 pyrnn.Sequential([pyrnn.Sequential([head[0]]), head[1]])])

    flat = build(0)
    want = flat(x, lengths=lens)
    dx = flat.backward(np.ones_like(want))
    for depth in (1, 2):
        model = build(depth)
        np.testing.assert_array_equal(model(x, lengths=lens), want)
        np.testing.assert_array_equal(model.backward(np.ones_like(want)), dx)
        for a, b in zip(model.parameters(), flat.parameters()):
            np.testing.assert_array_equal(a.grad, b.grad)
        inner = model.layers[-1]
        np.testing.assert_array_equal(inner(flat.layers[0](x)[0]), flat.layers[2](
            flat.layers[1](flat.layers[0](x)[0])))  # the nested model called on its own
    y = np.random.default_rng(2).standard_normal((3, 1))
    h_flat = build(0).fit(x, y, loss="mse", optimizer="sgd", epochs=2, verbose=0, seed=0)
    h_nest = build(2).fit(x, y, loss="mse", optimizer="sgd", epochs=2, verbose=0, seed=0)
    assert h_flat == h_nest


def test_recurrent_parameters_are_native_views():
    lstm = pyrnn.LSTM(3, 4, num_layers=2, bidirectional=True)
    params = list(lstm.parameters())
    assert [p.name for p in params] == list(lstm.params)
    for p in params:
        assert isinstance(p, pyrnn.Parameter)
        assert np.shares_memory(p.data, lstm.params[p.name])
        assert np.shares_memory(p.grad, lstm.grads[p.name])
    # Writing through a Parameter changes the layer's output.
    x = np.ones((2, 1, 3), np.float32)
    before = lstm(x)[0].copy()
    params[0].data[...] += 1
    assert not np.allclose(lstm(x)[0], before)
    assert lstm.config()["num_layers"] == 2
    assert pyrnn.GRU(2, 3, reset_after=True).config()["reset_after"] is True
    assert pyrnn.RNN(2, 3, nonlinearity="relu").config()["nonlinearity"] == "relu"


def test_parameter_object():
    d = pyrnn.Dense(2, 3)
    p = next(d.parameters())
    assert p.name == "weight" and p.shape == (3, 2) and "weight" in repr(p)
    with pytest.raises(AttributeError):
        p.data = np.zeros((3, 2))
    with pytest.raises(ValueError):
        pyrnn.Parameter("w", np.zeros(3), np.zeros(4))


@pytest.mark.parametrize("activation", [None, "relu", "tanh", "sigmoid"])
def test_dense_nan_stays_nan(activation):
    layer = pyrnn.Dense(3, 2, activation, seed=0)
    x = np.array([[np.nan, 0.0, 0.0], [1.0, 2.0, 3.0]], np.float32)
    y = layer(x)
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()


@pytest.mark.parametrize("layer, names", [
    (pyrnn.Dense(3, 2, "relu", seed=1), ["in_features", "out_features", "activation", "bias",
                                         "dtype", "seed"]),
    (pyrnn.Embedding(5, 3, padding_idx=0, seed=1), ["num", "dim", "padding_idx", "dtype",
                                                    "seed"]),
    (pyrnn.LayerNorm(4, eps=1e-3), ["dim", "eps", "dtype"])], ids=lambda v: type(v).__name__)
def test_configuration_is_read_only(layer, names):
    # Once plain attributes: `dense.in_features = 5` left the weights (2, 3), and save() then
    # wrote a file load() refused. As for the recurrent layers, they are fixed at construction.
    import pickle
    cls = type(layer).__name__
    before = {n: getattr(layer, n) for n in names}
    for n in names:
        with pytest.raises(AttributeError, match=rf"cannot set {cls}\.{n}: a layer's "
                           r"configuration is fixed at construction"):
            setattr(layer, n, before[n])
        with pytest.raises(AttributeError, match="fixed at construction"):
            delattr(layer, n)
    assert {n: getattr(layer, n) for n in names} == before
    rebuilt = type(layer)(**layer.config())
    assert rebuilt.config() == layer.config()
    # A pickle from before kept them under their own names: it still loads.
    state = layer.__getstate__()
    old = {(k[1:] if k[1:] in names else k): v for k, v in state.items()}
    other = type(layer).__new__(type(layer))
    other.__setstate__(old)
    assert {n: getattr(other, n) for n in names} == before
    assert not set(names) & set(other.__dict__)
    assert pickle.loads(pickle.dumps(other)).config() == layer.config()


def test_an_older_dropout_pickle_still_loads():
    # Dropout.p became a checked property (its value in _p); a pickle from before keeps p
    # in the instance dict, where the property hid it: .p, config() and forward all failed.
    d = pyrnn.Dropout(0.25, seed=3)
    state = copy.deepcopy(d.__dict__)  # its own generator, in the same state as d's
    state["p"] = state.pop("_p")
    state["seed"] = state.pop("_seed")  # a plain attribute then too
    old = pyrnn.Dropout.__new__(pyrnn.Dropout)
    old.__setstate__(state)
    assert old.p == 0.25 and old.config() == {"p": 0.25, "seed": 3} and old.seed == 3
    np.testing.assert_array_equal(old(np.ones(64, np.float32)), d(np.ones(64, np.float32)))


@pytest.mark.parametrize("isa", pyrnn.info()["available_isas"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_dense_epilogue_at_edge_values_on_every_isa(isa, activation, restore_runtime):
    # The float32 epilogue uses the vectorised activations (per ISA, with masked tails): edge
    # values through the bias (NaN, +-Inf, huge, the saturation points) and row widths that are
    # no multiple of a vector, against float64 torch within the documented 4e-7 (plus float32's
    # own rounding), and NaN / Inf exactly where torch has them.
    pyrnn.set_cpu_isa(isa)
    edges = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 88.0, -88.0, -87.3, -87.4, 9.0,
                      -9.0, 8.5, 0.0, -0.0, 1e-45, 3.0, -0.5], np.float64)
    for out in (1, 7, 17, 33):
        layer = pyrnn.Dense(1, out, activation, seed=0)
        layer.eval()
        layer.params["weight"][...] = 0
        b = np.resize(edges, out).astype(np.float32)
        layer.params["bias"][...] = b
        y = layer.forward(np.zeros((3, 1), np.float32))
        f = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}[activation]
        want = f(torch.tensor(b.astype(np.float64))).numpy()
        for row in y:
            assert np.array_equal(np.isnan(row), np.isnan(want)), (isa, out)
            ok = ~np.isnan(want)
            np.testing.assert_allclose(row[ok], want[ok], rtol=4e-7 + 2 ** -24, atol=1.2e-38,
                                       err_msg=f"{isa} out={out}")


@pytest.mark.parametrize("isa", pyrnn.info()["available_isas"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_dense_float64_epilogue_at_edge_values_on_every_isa(isa, activation, restore_runtime):
    # float64: libm on the scalar ISA, the vectorised double math on AVX2 / AVX-512 (README: at
    # most 1.40 ulps for tanh, 2.49 for sigmoid); edge values of double's range (exp's overflow and underflow, tanh's
    # saturation, subnormals, the switches between tanh's forms at 0.4 and 0.7) against torch's
    # float64 within 4 ulps, NaN exactly where torch's.
    pyrnn.set_cpu_isa(isa)
    edges = np.array([np.nan, np.inf, -np.inf, 1e300, -1e300, 709.0, -709.0, -709.9, -745.2,
                      20.0, -19.06, 0.0, -0.0, 5e-324, 1e-300, 0.2166881686621500, -0.5,
                      -36.737427889889581, 3.0, 0.4, -0.39999999999999997, 0.7,
                      0.6999999999999998, 0.52070485391552002], np.float64)
    for out in (1, 3, 9, 19, len(edges)):
        layer = pyrnn.Dense(1, out, activation, seed=0, dtype="float64")
        layer.eval()
        layer.params["weight"][...] = 0
        b = np.resize(edges, out)
        layer.params["bias"][...] = b
        y = layer.forward(np.zeros((3, 1), np.float64))
        f = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}[activation]
        want = f(torch.tensor(b)).numpy()
        if activation == "sigmoid":  # 1 / (1 + exp(-x)) is 0 below -709.78 (a subnormal in torch)
            want = np.where(b < -709.78, 0.0, want)
        for row in y:
            assert np.array_equal(np.isnan(row), np.isnan(want)), (isa, out)
            ok = ~np.isnan(want)
            np.testing.assert_allclose(row[ok], want[ok], rtol=4 * 2.0 ** -52, atol=0,
                                       err_msg=f"{isa} out={out}")


def test_dense_backward_uses_the_input_as_it_was_at_forward():
    # A training forward keeps a private copy of x: the caller overwriting its input before
    # backward must not change the weight gradient (oracle: dW = dy^T x with x all ones).
    d = pyrnn.Dense(2, 1, seed=0)
    x = np.ones((3, 2), np.float32)
    d.forward(x)
    x[...] = 100.0
    d.backward(np.ones((3, 1), np.float32))
    np.testing.assert_array_equal(d.grads["weight"], [[3.0, 3.0]])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layernorm_backward_uses_the_input_as_it_was_at_forward(dtype):
    # A training forward keeps x for backward: the caller's array is copied (by the kernel, in
    # its first pass over each row), so overwriting it before backward changes nothing; an
    # input np.asarray had to build (a list) is kept as it is. Both give the results of a run
    # on an untouched copy, bit for bit.
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((5, 3, 7)) * 2 + 1).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    ref = pyrnn.LayerNorm(7, dtype=dtype)
    y_want = ref.forward(x.copy())
    dx_want = ref.backward(dy)
    for how in ("array", "view", "list"):
        given = {"array": x.copy(), "view": np.concatenate([x, x])[5:], "list": x.tolist()}[how]
        ln = pyrnn.LayerNorm(7, dtype=dtype)
        np.testing.assert_array_equal(ln.forward(given), y_want, err_msg=how)
        if how != "list":
            given[...] = 100.0
        np.testing.assert_array_equal(ln.backward(dy), dx_want, err_msg=how)
        for k in ("weight", "bias"):
            np.testing.assert_array_equal(ln.grads[k], ref.grads[k], err_msg=f"{how} {k}")


def test_layernorm_copies_only_inputs_the_caller_owns(monkeypatch):
    # The training cache is a copy made by the kernel only where x2 may be the caller's memory;
    # inputs NumPy had to convert (another dtype, a list, non-contiguous) are private already,
    # and eval keeps nothing.
    from pyrnn import layers
    asked = []
    real = layers._train.layernorm_forward

    def spy(y, mean, rstd, x, w, b, eps, x_keep=None):
        asked.append(x_keep is not None)
        return real(y, mean, rstd, x, w, b, eps, x_keep)
    monkeypatch.setattr(layers._train, "layernorm_forward", spy)
    ln = pyrnn.LayerNorm(4)
    owned = {"float32": np.ones((2, 4), np.float32), "3-d view": np.ones((3, 2, 4), np.float32)[1:]}
    fresh = {"float16": np.ones((2, 4), np.float16), "float64": np.ones((2, 4)),
             "list": [[1.0, 2.0, 3.0, 4.0]], "strided": np.ones((4, 4), np.float32)[::2],
             "no rows": np.ones((0, 4), np.float32)[:0]}
    for name, x in {**owned, **fresh}.items():
        asked.clear()
        ln.forward(x)
        assert asked == [name in owned], name
    ln.eval()
    asked.clear()
    ln.forward(owned["float32"])
    assert asked == [False]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""),
                    reason="ASan's quarantine keeps freed blocks resident")
@pytest.mark.parametrize("build", ["pyrnn.Dense(512, 50000, seed=0)",
                                   "pyrnn.Embedding(50000, 512, seed=0)"])
def test_building_a_large_table_takes_about_its_own_memory(tmp_path, build):
    # The initial values were drawn as one float64 table and then converted: building a
    # Dense(512, 50000) (98 MiB of float32 weights) peaked at 293 MiB. Drawn a block of rows
    # at a time (the same values), the peak is the weights (the zeroed gradients are not
    # touched until written).
    code = ("import re, numpy as np, pyrnn\n"
            "def peak():\n"
            "    with open('/proc/self/status') as f:\n"
            "        return int(re.search(r'VmHWM:\\s*(\\d+) kB', f.read()).group(1)) / 1024\n"
            "r0 = peak()\n"
            f"layer = {build}\n"
            "print(peak() - r0, layer.params['weight'].nbytes / 2**20)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    grown, weights = map(float, out.stdout.split())
    assert grown <= weights * 1.25 + 16, (grown, weights)


def test_small_tables_build_under_a_small_memory_limit(tmp_path):
    # The build's memory check counted a whole 8 MiB draw block for any table: under
    # PYRNN_MEMORY_LIMIT=4M, Dense(4, 4) was refused (LSTM(4, 4) was not).
    code = ("import pyrnn\n"
            "pyrnn.Dense(4, 4); pyrnn.Embedding(10, 4); pyrnn.Dense(300, 500)\n"
            "try:\n"
            "    pyrnn.Dense(1000, 1000)\n"
            "except MemoryError as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120,
                         env={**os.environ, "PYRNN_MEMORY_LIMIT": "4M"})
    assert out.returncode == 0, out.stderr
    # 1000 x 1000 float32 weights and gradients, and a 512 KiB draw block: 8.1 MiB
    assert out.stdout.startswith("Dense(1000, 1000) needs 8.1 MiB"), out.stdout


# ---- from a hunt (helper-137) -----------------------------------------------------------------

def test_dropout_backward_uses_the_p_of_its_forward():
    # The cache kept (seed, shape): backward after `d.p = 0.2` (a schedule) applied p = 0.2's
    # mask and scale, after `d.p = 0` the identity.
    x = np.ones((4, 64), np.float32)
    for new_p in (0.2, 0.0, 0.9):
        d = pyrnn.Dropout(0.5, seed=3)
        y = d(x)
        d.p = new_p
        dx = d.backward(np.ones_like(x))
        np.testing.assert_array_equal(dx, y)  # dy of ones: d x is the forward's mask * scale
    d = pyrnn.Dropout(0.0)  # an identity forward stays one whatever p becomes
    d(x)
    d.p = 0.5
    np.testing.assert_array_equal(d.backward(x), x)


@pytest.mark.parametrize("dy", [None, "abc", [[1, 2], [3]]])
def test_dropout_backward_of_non_numeric_dy_is_a_type_error(dy):
    # It was a ValueError naming the shape () of None, where other layers give TypeError.
    for p in (0.5, 0.0):
        d = pyrnn.Dropout(p, seed=0)
        d(np.ones((2, 2), np.float32))
        with pytest.raises(TypeError, match="dy must be a real numeric array"):
            d.backward(dy)


def test_zero_grad_takes_torchs_set_to_none_and_dense_keras_linear():
    for layer in (pyrnn.Dense(2, 2), pyrnn.LayerNorm(2), pyrnn.GRU(2, 3),
                  pyrnn.Sequential([pyrnn.Dense(2, 2)])):
        for p in layer.parameters():
            p.grad[...] = 1
        layer.zero_grad(set_to_none=True)  # zeroes: the gradients are arrays, never None
        assert all(not p.grad.any() for p in layer.parameters())
        with pytest.raises(TypeError, match="set_to_none"):
            layer.zero_grad(set_to_none="yes")
    d = pyrnn.Dense(3, 2, activation="linear", seed=0)
    assert d.activation is None and d.config()["activation"] is None
    np.testing.assert_array_equal(d(np.ones((1, 3))), pyrnn.Dense(3, 2, seed=0)(np.ones((1, 3))))
