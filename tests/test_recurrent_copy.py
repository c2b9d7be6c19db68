"""copy.deepcopy / copy.copy / pickle of recurrent layers (and of models and Matrix holding
native memory).

A copy is a new layer with the same configuration, its own copies of the parameters and
accumulated gradients, the same training flag and the same dropout generator state: the copy
and the original give bitwise equal results for the same calls, and changing one never changes
the other. The forward cache is not copied (a copy needs its own training forward).
"""
import copy
import multiprocessing
import pickle

import numpy as np
import pytest

import pyrnn
from pyrnn import losses, optim

LAYERS = {
    "rnn-tanh": lambda: pyrnn.RNN(3, 5, seed=1),
    "rnn-relu-2-bi": lambda: pyrnn.RNN(3, 5, 2, nonlinearity="relu", bidirectional=True, seed=2),
    "lstm-2-dropout": lambda: pyrnn.LSTM(3, 5, 2, dropout=0.4, seed=3),
    "lstm-bi-f64-bf": lambda: pyrnn.LSTM(3, 4, bidirectional=True, batch_first=True,
                                         dtype="float64", seed=4),
    "gru-3-dropout-bi": lambda: pyrnn.GRU(3, 4, 3, dropout=0.3, bidirectional=True, seed=5),
    "gru-reset-after-nobias": lambda: pyrnn.GRU(3, 5, reset_after=True, bias=False, seed=6),
}

COPIES = {
    "deepcopy": copy.deepcopy,
    "copy": copy.copy,
    **{f"pickle-{p}": (lambda p: lambda obj: pickle.loads(pickle.dumps(obj, protocol=p)))(p)
       for p in range(pickle.HIGHEST_PROTOCOL + 1)},
}


def _x(layer, T=6, N=3, seed=0):
    shape = (N, T, layer.input_size) if layer.batch_first else (T, N, layer.input_size)
    return np.random.default_rng(seed).standard_normal(shape).astype(layer.dtype)


def _run(layer, x):
    """Training forward + backward with a random d_out: (out, states, dx, dh0, grads)."""
    out, states = layer(x, lengths=np.array([6, 2, 5]))
    d = np.random.default_rng(1).standard_normal(out.shape).astype(layer.dtype)
    dx, dstates = layer.backward(d)
    return [out, states, dx, dstates, layer.numpy_grads()]


def _assert_bitwise(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_bitwise(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _assert_bitwise(u, v)
    else:
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b, equal_nan=True) and a.tobytes() == b.tobytes()


def _trained(make):
    layer = make()
    _run(layer, _x(layer))  # gradients accumulated, dropout generator advanced
    return layer


@pytest.mark.parametrize("how", COPIES)
@pytest.mark.parametrize("name", LAYERS)
def test_copy_same_state_not_shared(name, how):
    layer = _trained(LAYERS[name])
    dup = COPIES[how](layer)
    assert type(dup) is type(layer) and dup is not layer
    assert dup.config() == layer.config() and repr(dup) == repr(layer)
    assert (dup.seed, dup.device, dup.training) == (layer.seed, layer.device, layer.training)
    assert dup.num_parameters() == layer.num_parameters()
    for views, other in ((dup.params, layer.params), (dup.grads, layer.grads)):
        assert views.keys() == other.keys()
        for k in views:
            _assert_bitwise(views[k], other[k])
            assert not np.shares_memory(views[k], other[k])
    assert np.any(dup.numpy_grads()[next(iter(dup.grads))] != 0)
    # The forward cache stays with the original.
    with pytest.raises(RuntimeError, match="backward\\(\\) needs a preceding forward"):
        dup.backward(np.zeros((6, 3, dup.num_directions * dup.hidden_size), dup.dtype))
    # The configuration of the copy is read-only too.
    with pytest.raises(AttributeError, match="fixed at construction"):
        dup.hidden_size = 2


@pytest.mark.parametrize("how", ["deepcopy", "copy", "pickle-5"])
@pytest.mark.parametrize("name", LAYERS)
def test_copy_gives_bitwise_equal_results(name, how):
    layer = _trained(LAYERS[name])
    dup = COPIES[how](layer)
    x = _x(layer, seed=7)
    # Two rounds: the dropout generators advance in step.
    for _ in range(2):
        _assert_bitwise(_run(dup, x), _run(layer, x))
    layer.eval(), dup.eval()
    _assert_bitwise(dup(x), layer(x))


@pytest.mark.parametrize("name", LAYERS)
def test_copy_is_independent(name):
    layer = _trained(LAYERS[name])
    before_p, before_g = layer.numpy_params(), layer.numpy_grads()
    dup = copy.deepcopy(layer)
    opt = optim.SGD(dup.parameters(), lr=0.1)
    for _ in range(2):
        _run(dup, _x(dup, seed=3))
        opt.step()
    dup.zero_grad()
    dup.load_params({k: v + 1 for k, v in dup.numpy_params().items()})
    _assert_bitwise(layer.numpy_params(), before_p)
    _assert_bitwise(layer.numpy_grads(), before_g)
    # And the other way round: the original's cache and gradients are its own.
    layer.backward(np.ones_like(layer(_x(layer))[0]))
    assert all(not np.any(g) for g in dup.numpy_grads().values())


def test_copy_keeps_eval_mode_and_memo():
    layer = pyrnn.LSTM(2, 3, seed=0).eval()
    pair = copy.deepcopy([layer, layer])
    assert pair[0] is pair[1] and pair[0] is not layer and pair[0].training is False


def test_sequential_copy_and_pickle():
    def model():
        return pyrnn.Sequential([pyrnn.GRU(3, 8, batch_first=True, seed=0), pyrnn.LastStep(),
                                 pyrnn.Dense(8, 2, seed=1)])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 5, 3)).astype(np.float32)
    y = rng.standard_normal((16, 2)).astype(np.float32)
    m = model()
    before = m.numpy_params()
    for dup in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        _assert_bitwise(dup.predict(x), m.predict(x))
        dup.fit(x, y, loss=losses.MSELoss(), optimizer=optim.Adam(dup.parameters(), 1e-2),
                epochs=1, batch_size=8, verbose=False, seed=0)
        assert not np.array_equal(dup.numpy_params()["0.weight_hh_l0"], before["0.weight_hh_l0"])
        _assert_bitwise(m.numpy_params(), before)
    # Trained from equal copies with equal seeds: equal results.
    a, b = copy.deepcopy(m), pickle.loads(pickle.dumps(m))
    for mm in (a, b):
        mm.fit(x, y, loss=losses.MSELoss(), optimizer=optim.Adam(mm.parameters(), 1e-2),
               epochs=2, batch_size=8, verbose=False, seed=3)
    _assert_bitwise(a.numpy_params(), b.numpy_params())


def _forward_in_child(layer, x):
    return layer(x)[0]


def test_pickled_layer_in_another_process():
    layer = _trained(LAYERS["lstm-2-dropout"]).eval()
    x = _x(layer, seed=2)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        out = pool.apply(_forward_in_child, (layer, x))
    _assert_bitwise(out, layer(x)[0])


def test_cuda_layer_copy_rebuilds_on_the_device(monkeypatch):
    """Through the NumPy-backed CUDA fakes: a copy of a "cuda" layer is a new native layer on
    "cuda" holding copies of the parameters and gradients (the same path as to())."""
    import cuda_fakes
    cuda_fakes.install(monkeypatch)
    layer = pyrnn.LSTM(3, 4, 2, dropout=0.2, seed=0).to("cuda")
    x = _x(layer)
    out, _ = layer(x)
    layer.backward(np.ones_like(out))
    for how in ("deepcopy", "pickle-5"):
        dup = COPIES[how](layer)  # each from the original's current dropout generator state
        assert dup.device == "cuda" and isinstance(dup._native, cuda_fakes.FakeNative)
        assert dup._native is not layer._native
        _assert_bitwise(dup.numpy_params(), layer.numpy_params())
        _assert_bitwise(dup.numpy_grads(), layer.numpy_grads())
        _assert_bitwise(dup(x)[0], layer(x)[0])
        dup.zero_grad()
        assert any(np.any(g) for g in layer.numpy_grads().values())
    data = pickle.dumps(layer)
    monkeypatch.undo()  # no CUDA here any more: unpickling says so
    if pyrnn.cuda.unavailable_reason():
        with pytest.raises(RuntimeError, match="device='cuda' is not available"):
            pickle.loads(data)


def test_cuda_model_copy_rebuilds_every_layer_on_the_device(monkeypatch):
    """A "cuda" model's feed-forward layers hold device arrays too (the fakes refuse pickling,
    as DeviceArray does): a copy uploads host copies again, like the recurrent layers."""
    import cuda_fakes
    cuda_fakes.install(monkeypatch)
    m = pyrnn.Sequential([pyrnn.GRU(3, 8, batch_first=True, seed=0), pyrnn.LayerNorm(8),
                          pyrnn.LastStep(), pyrnn.Dense(8, 2, seed=1)]).to("cuda")
    x = np.random.default_rng(0).standard_normal((4, 5, 3)).astype(np.float32)
    want = m.predict(x)
    for how in ("deepcopy", "pickle-5"):
        dup = COPIES[how](m)
        for a, b in zip(dup.layers, m.layers):
            assert a.device == "cuda" and a is not b
            for k, v in a.params.items():
                assert isinstance(v, cuda_fakes.FakeDev) and v.ptr != b.params[k].ptr
        _assert_bitwise(dup.predict(x), want)
    # The model's own state carries no second copy of the layers' arrays.
    assert m.__getstate__()["_params"] == {}
    dense = pyrnn.Dense(3, 2, seed=0).to("cuda")
    dense.grads["weight"] = np.ones((2, 3), np.float32)
    dup = pickle.loads(pickle.dumps(dense))
    _assert_bitwise(dup.numpy_grads()["weight"], dense.numpy_grads()["weight"])
    data = pickle.dumps(dense)
    monkeypatch.undo()
    if pyrnn.cuda.unavailable_reason():
        with pytest.raises(RuntimeError, match="not available"):
            pickle.loads(data)


def test_native_recurrent_itself_is_not_picklable():
    with pytest.raises(TypeError, match="copy or pickle the layer that owns it"):
        pickle.dumps(pyrnn.GRU(2, 3)._native)


@pytest.mark.parametrize("how", COPIES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matrix_copy_and_pickle(dtype, how):
    m = pyrnn.Matrix.from_numpy(np.arange(12, dtype=dtype).reshape(3, 4) / 7)
    dup = COPIES[how](m)
    assert isinstance(dup, pyrnn.Matrix) and dup.shape == (3, 4) and dup.dtype == m.dtype
    _assert_bitwise(dup.numpy(), m.numpy())
    assert not np.shares_memory(dup.numpy(), m.numpy())
    assert dup.numpy().ctypes.data % 64 == 0  # a real Matrix: aligned native memory
    dup.set(0, 0, 5.0)
    assert m.get(0, 0) == 0.0
    for shape in ((0, 3), (3, 0), (0, 0)):
        # (3, 0) once gave a (3,) view over no memory (uninitialised values) and no copy.
        empty = COPIES[how](pyrnn.Matrix(*shape, dtype))
        assert empty.shape == shape and empty.dtype == np.dtype(dtype)
        assert empty.numpy().shape == shape and np.asarray(empty).shape == shape
        assert pyrnn.Matrix.from_numpy(np.zeros(shape, dtype)).shape == shape
    assert pyrnn.Matrix(10**9, 0).numpy().nbytes == 0  # no memory behind it, none made up


def _model_and_optimizer(device="cpu"):
    model = pyrnn.Sequential([pyrnn.LSTM(3, 4, batch_first=True, seed=0), pyrnn.LastStep(),
                              pyrnn.Dense(4, 2, seed=1)]).to(device)
    return model, optim.Adam(model.parameters(), lr=0.1)


COPY_BOTH = {
    "deepcopy-model-first": lambda model, opt: copy.deepcopy((model, opt)),
    "deepcopy-optimizer-first": lambda model, opt: copy.deepcopy((opt, model))[::-1],
    "pickle-model-first": lambda model, opt: pickle.loads(pickle.dumps((model, opt))),
    "pickle-optimizer-first": lambda model, opt: pickle.loads(pickle.dumps((opt, model)))[::-1],
}


def _train_step(model, opt, x):
    y = model(x)
    model.backward(np.ones(y.shape, np.float32))
    opt.step()
    opt.zero_grad()


def check_copied_optimizer_trains_the_copied_model(device, how="deepcopy-model-first"):
    """A deep copy or pickle of (model, opt), in either order, after a step (so the optimizer
    has state): the copy's optimizer updates the copy's parameters (every layer, native memory
    included), never the original's, and the two then train bitwise alike; a Parameter copied
    alone is detached from the original."""
    model, opt = _model_and_optimizer(device)
    x = np.random.default_rng(0).standard_normal((5, 6, 3)).astype(np.float32)
    _train_step(model, opt, x)
    before = {k: np.array(v) for k, v in model.params.items()}
    m2, opt2 = COPY_BOTH[how](model, opt)
    _train_step(m2, opt2, x)
    after = {k: np.array(v) for k, v in m2.params.items()}
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert sorted(changed) == sorted(before), f"not trained by the copied optimizer: " \
        f"{sorted(set(before) - set(changed))}"
    for k, v in model.params.items():  # the original is untouched
        np.testing.assert_array_equal(np.array(v), before[k])
    _train_step(model, opt, x)  # the same step, with the original's state: the same result
    for k, v in model.params.items():
        np.testing.assert_array_equal(np.array(v), after[k])
    copied_layers = [m for m in m2.layers if list(m.parameters())]
    for p, q in zip(opt.params, opt2.params):
        assert q._owner is not p._owner and any(q._owner is m for m in copied_layers)
    lone = copy.deepcopy(opt.params[0])
    assert lone._owner is not opt.params[0]._owner
    first = np.array(opt.params[0].data).ravel()[0]
    pyrnn.init.constant_(lone, 7.0)
    assert np.array(opt.params[0].data).ravel()[0] == first
    assert np.array(lone.data).ravel()[0] == 7.0


@pytest.mark.parametrize("how", sorted(COPY_BOTH))
def test_copied_optimizer_trains_the_copied_model(how):
    # The LSTM's parameters (native memory, rebuilt by its copy) were left to detached copies;
    # with the optimizer first, every layer's were.
    check_copied_optimizer_trains_the_copied_model("cpu", how)


class SelfTrainingLSTM(pyrnn.LSTM):
    """A layer whose own state reaches its Parameters (it keeps its optimizer)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.opt = optim.Adam(self.parameters(), lr=0.1)


class ParamCachingDense(pyrnn.Dense):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cached = list(self.parameters())


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_layer_holding_its_own_parameters_copies(how):
    # Its Parameters are copied while the layer is half rebuilt (no arrays yet): an
    # AttributeError, before they were bound at the end of its __setstate__.
    dup = {"deepcopy": copy.deepcopy, "pickle": lambda o: pickle.loads(pickle.dumps(o))}[how]
    x = np.random.default_rng(1).standard_normal((4, 2, 3)).astype(np.float32)
    lstm = SelfTrainingLSTM(3, 4, seed=0)
    lstm.backward(np.ones((4, 2, 4), np.float32) + 0 * lstm(x)[0])
    lstm.opt.step()
    twin = dup(lstm)
    assert not hasattr(twin, "_pending_parameters")
    for p, (name, arr) in zip(twin.opt.params, twin.params.items()):
        assert p._owner is twin and p.data is arr and p.grad is twin.grads[name]
    for layer in (lstm, twin):  # the same next step on both: bitwise alike, independent
        layer.backward(np.ones((4, 2, 4), np.float32) + 0 * layer(x)[0])
        layer.opt.step()
    for k, v in lstm.params.items():
        np.testing.assert_array_equal(twin.params[k], v)
        assert not np.shares_memory(twin.params[k], v)
    dense = ParamCachingDense(3, 2, seed=0)
    twin = dup(dense)
    assert [p.data is twin.params[p.name] for p in twin.cached] == [True, True]


def test_copied_parameter_without_a_layer_copies_its_arrays():
    lstm = pyrnn.LSTM(3, 4, seed=0)
    p = next(lstm.parameters())
    free = pyrnn.Parameter("w", np.ones(3), np.zeros(3))
    for q in (copy.deepcopy(free), pickle.loads(pickle.dumps(free))):
        assert q._owner is None and q.name == "w" and not np.shares_memory(q.data, free.data)
        np.testing.assert_array_equal(q.data, free.data)
    shallow = copy.copy(p)  # the same arrays, as a shallow copy of a tensor view
    assert shallow.data is p.data and shallow._owner is lstm
