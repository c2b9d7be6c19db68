"""The Python side of training on device="cuda" WITHOUT a GPU (tests/cuda_fakes.py): every
training-stack layer, the optimizers, clip_grad_norm, the losses and Sequential (fit /
evaluate / predict / save / load / to) must give BITWISE the results of the CPU path, keep
activations and gradients on the "device" (the fakes refuse host arrays in device kernels), and
fail clearly (mixed devices, stale optimizers). The real kernels are checked against the CPU by
tests/test_cuda_train.py on a GPU and by the C++ host emulation (ctest)."""
import io
import itertools
import pickle

import numpy as np
import pytest

import pyrnn
import pyrnn.cuda
from pyrnn import callbacks, init, losses, optim

from cuda_fakes import FakeDev, install


@pytest.fixture
def fake(monkeypatch):
    return install(monkeypatch)


def h(x):
    """Host view of a result (FakeDev -> its array)."""
    return x.a if isinstance(x, FakeDev) else x


def same_tree(a, b, what=""):
    assert set(a) == set(b), what
    for k in a:
        np.testing.assert_array_equal(h(a[k]), h(b[k]), err_msg=f"{what} {k}")


# ---- single layers --------------------------------------------------------------------------

def layer_cases():
    yield "dense", lambda dev: pyrnn.Dense(5, 4, activation="tanh", dtype="float64", seed=1,
                                           device=dev), (3, 7, 5)
    for act, bias in itertools.product((None, "relu", "sigmoid"), (True, False)):
        yield f"dense-{act}-{bias}", lambda dev, a=act, b=bias: pyrnn.Dense(
            5, 3, activation=a, bias=b, seed=2, device=dev), (6, 5)
    yield "layernorm", lambda dev: pyrnn.LayerNorm(6, dtype="float64", device=dev), (4, 3, 6)
    yield "layernorm32", lambda dev: pyrnn.LayerNorm(6, eps=1e-3, device=dev), (5, 6)
    yield "dropout", lambda dev: pyrnn.Dropout(0.4, seed=3, device=dev), (4, 5, 6)


@pytest.mark.parametrize("name, make, shape", list(layer_cases()), ids=lambda v: v
                         if isinstance(v, str) else "")
@pytest.mark.parametrize("kind", ["numpy", "device"])
def test_layer_matches_cpu(fake, name, make, shape, kind):
    rng = np.random.default_rng(0)
    cpu, gpu = make("cpu"), make("cuda")
    assert gpu.device == "cuda" and "device='cuda'" in repr(gpu)
    assert all(isinstance(v, FakeDev) for v in list(gpu.params.values()) + list(gpu.grads.values()))
    same_tree(gpu.numpy_params(), cpu.params, "initial")
    dtype = getattr(cpu, "dtype", np.float64)  # Dropout computes in the input's dtype
    wrap = (lambda a: FakeDev(np.ascontiguousarray(a, dtype))) if kind == "device" else (lambda a: a)
    x = rng.standard_normal(shape)
    for rep in range(2):  # twice: gradients accumulate, dropout draws a new mask
        y_c, y_g = cpu(x), gpu(wrap(x))
        assert isinstance(y_g, FakeDev if kind == "device" else np.ndarray)
        np.testing.assert_array_equal(h(y_g), y_c)
        dy = rng.standard_normal(y_c.shape)
        dx_c, dx_g = cpu.backward(dy), gpu.backward(wrap(dy))
        assert isinstance(dx_g, FakeDev if kind == "device" else np.ndarray)
        np.testing.assert_array_equal(h(dx_g), dx_c)
    same_tree(gpu.numpy_grads(), cpu.grads, "grads")
    gpu.eval()
    cpu.eval()
    np.testing.assert_array_equal(h(gpu(wrap(x))), cpu(x))
    with pytest.raises(RuntimeError, match="preceding forward"):
        gpu.backward(wrap(dy))


@pytest.mark.parametrize("padding_idx", [None, 0, 3])
@pytest.mark.parametrize("kind", ["numpy", "device"])
def test_embedding_matches_cpu(fake, padding_idx, kind):
    rng = np.random.default_rng(1)
    cpu = pyrnn.Embedding(7, 3, padding_idx=padding_idx, seed=4)
    gpu = pyrnn.Embedding(7, 3, padding_idx=padding_idx, seed=4, device="cuda")
    ids = rng.integers(0, 7, size=(5, 6))
    ids_in = FakeDev(ids.astype(np.int64)) if kind == "device" else ids
    for _ in range(2):
        y_c, y_g = cpu(ids), gpu(ids_in)
        assert isinstance(y_g, FakeDev if kind == "device" else np.ndarray)
        np.testing.assert_array_equal(h(y_g), y_c)
        dy = rng.standard_normal(y_c.shape).astype(np.float32)
        assert cpu.backward(dy) is None and gpu.backward(FakeDev(dy)) is None
    same_tree(gpu.numpy_grads(), cpu.grads)
    with pytest.raises(ValueError, match="outside"):
        gpu(np.array([[7]]))
    with pytest.raises(TypeError, match="integer"):
        gpu(np.zeros((2, 2)))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("use_lengths", [False, True])
def test_laststep_matches_cpu(fake, bidirectional, use_lengths):
    rng = np.random.default_rng(2)
    cpu, gpu = pyrnn.LastStep(bidirectional), pyrnn.LastStep(bidirectional, device="cuda")
    x = rng.standard_normal((4, 5, 6)).astype(np.float32)
    lengths = [5, 1, 3, 2] if use_lengths else None
    y_c, y_g = cpu(x, lengths=lengths), gpu(FakeDev(x), lengths=lengths)
    np.testing.assert_array_equal(h(y_g), y_c)
    dy = rng.standard_normal(y_c.shape).astype(np.float32)
    np.testing.assert_array_equal(h(gpu.backward(FakeDev(dy))), cpu.backward(dy))
    np.testing.assert_array_equal(gpu(x, lengths=lengths), y_c)  # NumPy in, NumPy out
    with pytest.raises(ValueError, match="lengths"):
        gpu(FakeDev(x), lengths=[6, 1, 1, 1])


def test_device_input_errors(fake):
    gpu = pyrnn.Dense(3, 2, device="cuda")
    with pytest.raises(TypeError, match="dtype float64"):
        gpu(FakeDev(np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        gpu(FakeDev(np.zeros((2, 4), np.float32)))
    gpu(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="output's shape"):
        gpu.backward(FakeDev(np.zeros((2, 3), np.float32)))
    with pytest.raises(TypeError, match="float32 or float64"):
        pyrnn.Dropout(0.5, device="cuda")(FakeDev(np.zeros(3, np.int64)))


def test_layer_to_round_trip(fake):
    rng = np.random.default_rng(3)
    ref = pyrnn.LayerNorm(4, dtype="float64")
    layer = pyrnn.LayerNorm(4, dtype="float64")
    x, dy = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    for m in (layer, ref):
        m(x)
        m.backward(dy)
    layer.to("cuda")
    assert layer.device == "cuda" and isinstance(layer.params["weight"], FakeDev)
    with pytest.raises(RuntimeError, match="preceding forward"):
        layer.backward(dy)  # the cache does not travel
    same_tree(layer.numpy_grads(), ref.grads)
    layer.load_params({"bias": np.full(4, 0.5)})
    ref.params["bias"][...] = 0.5
    np.testing.assert_array_equal(layer(x), ref(x))
    layer.zero_grad()
    assert not layer.numpy_grads()["weight"].any()
    assert layer.cpu() is layer and isinstance(layer.params["weight"], np.ndarray)
    np.testing.assert_array_equal(layer(x), ref(x))
    assert layer.cuda().device == "cuda"


# ---- optimizers, clipping, losses ----------------------------------------------------------

OPTIMIZERS = [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (optim.Adam, dict(lr=1e-2)),
    (optim.Adam, dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
    (optim.AdamW, dict(lr=1e-2)),
    (optim.RMSprop, dict(lr=1e-2)),
    (optim.RMSprop, dict(lr=1e-2, momentum=0.5, centered=True, weight_decay=0.01)),
]


@pytest.mark.parametrize("cls, kw", OPTIMIZERS)
def test_optimizer_steps_match_cpu(fake, cls, kw):
    rng = np.random.default_rng(4)
    cpu = [pyrnn.Dense(4, 3, seed=5, dtype="float64"), pyrnn.GRU(3, 2, seed=6, dtype="float64")]
    gpu = [pyrnn.Dense(4, 3, seed=5, dtype="float64", device="cuda"),
           pyrnn.GRU(3, 2, seed=6, dtype="float64", device="cuda")]
    pc = [p for m in cpu for p in m.parameters()]
    pg = [p for m in gpu for p in m.parameters()]
    assert all(p.device == "cuda" and "device='cuda'" in repr(p) for p in pg)
    oc, og = cls(pc, **kw), cls(pg, **kw)
    for _ in range(3):
        for a, b in zip(pc, pg):
            g = rng.standard_normal(a.shape)
            a.grad[...] = g
            b.grad.copy_from(g)
        nc = optim.clip_grad_norm(pc, 0.5)
        ng = optim.clip_grad_norm(pg, 0.5)
        assert nc == ng
        oc.step()
        og.step()
    for a, b in zip(pc, pg):
        np.testing.assert_array_equal(h(b.data), a.data, err_msg=a.name)
    sd = og.state_dict()
    assert all(isinstance(v, np.ndarray) for st in sd["state"] for v in st.values()
               if not isinstance(v, (int, float)))
    same = cls(pg, **kw)
    same.load_state_dict(sd)
    assert all(isinstance(v, FakeDev) for st in same.state for v in st.values()
               if not isinstance(v, (int, float)))
    og.zero_grad()
    assert all(not h(p.grad).any() for p in pg)
    assert fake.calls.get({"SGD": "sgd_step", "Adam": "adam_step", "AdamW": "adam_step",
                           "RMSprop": "rmsprop_step"}[cls.__name__], 0) > 0


@pytest.mark.parametrize("norm_type", [2.0, float("inf"), 3.0])
def test_clip_grad_norm_matches_cpu(fake, norm_type):
    rng = np.random.default_rng(5)
    c, g = pyrnn.Dense(5, 4, seed=1), pyrnn.Dense(5, 4, seed=1, device="cuda")
    for name in c.grads:
        v = rng.standard_normal(c.grads[name].shape).astype(np.float32)
        c.grads[name][...] = v
        g.grads[name].copy_from(v)
    assert optim.clip_grad_norm(c.parameters(), 0.1, norm_type) == \
        optim.clip_grad_norm(g.parameters(), 0.1, norm_type)
    same_tree(g.numpy_grads(), c.grads)


@pytest.mark.parametrize("loss, shape, target", [
    (losses.MSELoss(), (6, 2), lambda r: r.standard_normal((6, 2))),
    (losses.CrossEntropyLoss(ignore_index=1), (4, 5, 3), lambda r: r.integers(0, 3, (4, 5))),
    (losses.BCEWithLogitsLoss(), (6, 3), lambda r: r.integers(0, 2, (6, 3)).astype(float)),
])
def test_losses_take_device_predictions(fake, loss, shape, target):
    rng = np.random.default_rng(6)
    pred = rng.standard_normal(shape).astype(np.float32)
    t = target(rng)
    want = loss.forward(pred, t)
    d_want = loss.backward()
    assert isinstance(d_want, np.ndarray)
    assert loss.forward(FakeDev(pred), t) == want
    d = loss.backward()
    assert isinstance(d, FakeDev) and d.dtype == np.float32
    np.testing.assert_array_equal(d.a, d_want)
    loss.forward(FakeDev(pred, device=1), t)  # a prediction on another GPU
    d = loss.backward()
    assert d.device == 1  # d pred returns to pred's device, not device 0
    np.testing.assert_array_equal(d.a, d_want)


@pytest.mark.parametrize("loss, shape, target", [
    (losses.MSELoss(), (6, 2), lambda r: r.standard_normal((6, 2))),
    (losses.CrossEntropyLoss(), (4, 5, 3), lambda r: r.integers(0, 3, (4, 5))),
    (losses.BCEWithLogitsLoss(), (6, 3), lambda r: r.integers(0, 2, (6, 3)).astype(float)),
])
def test_a_refused_loss_forward_changes_nothing(fake, loss, shape, target):
    # backward() still returns the last successful forward's d pred, in its dtype, on its
    # device, whatever a refused forward (wrong target shape) was given in between.
    rng = np.random.default_rng(8)
    pred = rng.standard_normal(shape).astype(np.float32)
    t = target(rng)
    bad = np.zeros((7,) + shape[1:])
    for first, then in ((pred, FakeDev(pred.astype(np.float64), device=1)),
                        (FakeDev(pred, device=1), pred.astype(np.float64))):
        loss.forward(first, t)
        want = loss.backward()
        with pytest.raises(ValueError):
            loss.forward(then, bad)
        got = loss.backward()
        assert type(got) is type(want) and got.dtype == np.float32
        if isinstance(got, FakeDev):
            assert got.device == 1
            got, want = got.a, want.a
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("cls, kw", [(c, kw) for c, kw in OPTIMIZERS if c is not optim.SGD
                                     or kw.get("momentum")])  # those that keep state
def test_optimizer_state_on_the_parameters_device(fake, cls, kw):
    """State buffers (new, or loaded from a state_dict) live on their parameter's device, which
    need not be device 0 (a Parameter built over arrays on another GPU)."""
    rng = np.random.default_rng(7)
    p = pyrnn.Parameter("w", FakeDev(rng.standard_normal(6), device=1),
                        FakeDev(rng.standard_normal(6), device=1))
    opt = cls([p], **kw)
    opt.step()
    buffers = [v for st in opt.state for v in st.values() if isinstance(v, FakeDev)]
    assert buffers and all(v.device == 1 for v in buffers)
    again = cls([p], **kw)
    again.load_state_dict(opt.state_dict())
    loaded = [v for st in again.state for v in st.values() if isinstance(v, FakeDev)]
    assert len(loaded) == len(buffers) and all(v.device == 1 for v in loaded)


# ---- Sequential -----------------------------------------------------------------------------

def model_seq_regression(device):
    return pyrnn.Sequential([pyrnn.LSTM(3, 5, batch_first=True, bidirectional=True, seed=1,
                                        dtype="float64"),
                             pyrnn.LastStep(),
                             pyrnn.LayerNorm(10, dtype="float64"),
                             pyrnn.Dense(10, 2, seed=2, dtype="float64")]).to(device)


def model_char(device):
    return pyrnn.Sequential([pyrnn.Embedding(9, 4, seed=3, padding_idx=0),
                             pyrnn.GRU(4, 6, batch_first=True, seed=4, reset_after=True),
                             pyrnn.Dropout(0.3, seed=5),
                             pyrnn.Dense(6, 9, seed=6)]).to(device)


def model_binary(device):
    return pyrnn.Sequential([pyrnn.RNN(2, 4, num_layers=2, dropout=0.2, batch_first=True,
                                       seed=7),
                             pyrnn.LastStep(),
                             pyrnn.Dense(4, 4, activation="relu", seed=8),
                             pyrnn.Dense(4, 1, seed=9)]).to(device)


def data_regression(rng):
    x = rng.standard_normal((37, 6, 3))
    return x, x[:, :, :2].sum(axis=1), rng.integers(1, 7, 37)


def data_char(rng):
    x = rng.integers(0, 9, (23, 7))
    return x, np.roll(x, -1, axis=1), None


def data_binary(rng):
    x = rng.standard_normal((41, 5, 2)).astype(np.float32)
    return x, (x.sum(axis=(1, 2)) > 0).astype(np.float32)[:, None], None


FITS = [
    ("regression", model_seq_regression, data_regression, losses.MSELoss,
     lambda p: optim.Adam(p, lr=1e-2), 1.0),
    ("char", model_char, data_char, losses.CrossEntropyLoss,
     lambda p: optim.RMSprop(p, lr=1e-2, momentum=0.3), 5.0),
    ("binary", model_binary, data_binary, losses.BCEWithLogitsLoss,
     lambda p: optim.SGD(p, lr=0.1, momentum=0.9), None),
]


@pytest.mark.parametrize("name, make, data, loss, opt, clip", FITS, ids=[f[0] for f in FITS])
def test_fit_matches_cpu(fake, tmp_path, name, make, data, loss, opt, clip):
    rng = np.random.default_rng(7)
    x, y, lengths = data(rng)
    cpu, gpu = make("cpu"), make("cuda")
    assert gpu.device == "cuda" and cpu.device == "cpu"
    same_tree(gpu.numpy_params(), cpu.numpy_params(), "initial")
    hist = {}
    for tag, m in (("cpu", cpu), ("gpu", gpu)):
        hist[tag] = m.fit(x, y, loss=loss(), optimizer=opt(m.parameters()), epochs=3,
                          batch_size=8, lengths=lengths, clip_norm=clip,
                          validation_data=(x[:9], y[:9]) + ((lengths[:9],) if lengths is not None
                                                            else ()),
                          verbose=0, seed=11)
    assert hist["gpu"] == hist["cpu"]
    same_tree(gpu.numpy_params(), cpu.numpy_params(), "trained")
    assert all(isinstance(p.data, FakeDev) for p in gpu.parameters())
    # evaluate / predict: NumPy in, NumPy out, equal
    assert gpu.evaluate(x, y, lengths=lengths) == cpu.evaluate(x, y, lengths=lengths)
    p_g = gpu.predict(x, batch_size=5, lengths=lengths)
    assert isinstance(p_g, np.ndarray)
    np.testing.assert_array_equal(p_g, cpu.predict(x, batch_size=5, lengths=lengths))
    # save from the CUDA model (host copies); load on either device
    path = tmp_path / "m.pyrnn"
    gpu.save(path)
    back = pyrnn.load(path)
    assert back.device == "cpu"
    same_tree(back.numpy_params(), cpu.numpy_params(), "loaded")
    back_gpu = pyrnn.load(path, device="cuda")
    assert back_gpu.device == "cuda"
    same_tree(back_gpu.numpy_params(), cpu.numpy_params(), "loaded on cuda")


def test_fit_keeps_batches_on_the_device(fake):
    rng = np.random.default_rng(8)
    x, y, lengths = data_regression(rng)
    gpu = model_seq_regression("cuda")
    gpu.fit(x, y, loss="mse", optimizer="adam", epochs=1, batch_size=16, lengths=lengths,
            clip_norm=1.0, verbose=0)
    # 3 batches: every layer ran on the device kernels, the optimizer and clipping too (and
    # one forward more: x's first sample, checked before training)
    assert fake.calls["dense_forward"] == 4 and fake.calls["dense_backward"] == 3
    assert fake.calls["layernorm_backward"] == 3 and fake.calls["last_step_backward"] == 3
    assert fake.calls["adam_step"] == 3 * len(list(gpu.parameters()))
    assert fake.calls["sum_squares"] == 3 * len(list(gpu.parameters()))


def test_sequential_forward_backward_devices(fake):
    rng = np.random.default_rng(9)
    cpu, gpu = model_seq_regression("cpu"), model_seq_regression("cuda")
    x = rng.standard_normal((4, 6, 3))
    y_c = cpu(x, lengths=[6, 2, 3, 1])
    y_g = gpu(x, lengths=[6, 2, 3, 1])
    assert isinstance(y_g, np.ndarray)
    np.testing.assert_array_equal(y_g, y_c)
    dy = rng.standard_normal(y_c.shape)
    dx_c = cpu.backward(dy)
    dx_g = gpu.backward(dy)
    assert isinstance(dx_g, np.ndarray)
    np.testing.assert_array_equal(dx_g, dx_c)
    y_d = gpu(FakeDev(x), lengths=[6, 2, 3, 1])
    assert isinstance(y_d, FakeDev)
    assert isinstance(gpu.backward(FakeDev(dy)), FakeDev)
    char = model_char("cuda")
    assert isinstance(char(np.zeros((2, 3), np.int64)), np.ndarray)
    assert char.backward(np.zeros((2, 3, 9), np.float32)) is None
    with pytest.raises(TypeError, match="integer"):
        char(np.zeros((2, 3)))


def test_mixed_devices_are_a_clear_error(fake):
    model = pyrnn.Sequential([pyrnn.GRU(2, 3, batch_first=True, device="cuda"), pyrnn.LastStep(),
                              pyrnn.Dense(3, 1)])
    msg = r"cuda: 0 \(GRU\); cpu: 1 \(LastStep\), 2 \(Dense\).*model.to\('cuda'\)"
    for call in (lambda: model.device, lambda: model(np.zeros((1, 2, 2))),
                 lambda: model.fit(np.zeros((2, 2, 2)), np.zeros((2, 1)), loss="mse",
                                   optimizer="sgd", verbose=0),
                 lambda: model.predict(np.zeros((1, 2, 2))),
                 lambda: model.evaluate(np.zeros((1, 2, 2)), np.zeros((1, 1)), loss="mse")):
        with pytest.raises(ValueError, match=msg):
            call()
    model.to("cuda")
    assert model.device == "cuda" and all(layer.device == "cuda" for layer in model.layers)
    model.to("cpu")
    assert model.device == "cpu"
    with pytest.raises(ValueError, match="export a CPU model"):
        pyrnn.export_onnx(model.to("cuda"))


def test_failed_move_leaves_layers_and_models_whole(fake, monkeypatch):
    """A move failing partway (a device error, out of memory) changes nothing: a Dense keeps
    every array on the host, and a Sequential moves back the layers that had moved."""
    dense = pyrnn.Dense(3, 2, seed=1)
    want = {k: v.copy() for k, v in dense.params.items()}
    real, calls = pyrnn.cuda.to_device, []

    def failing(a, dtype=None, device=0):
        calls.append(1)
        if len(calls) == 3:  # weight, bias moved; the first gradient fails
            raise RuntimeError("cudaMalloc: out of memory (simulated)")
        return real(a, dtype, device)

    monkeypatch.setattr(pyrnn.cuda, "to_device", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        dense.to("cuda")
    assert dense.device == "cpu"
    assert all(isinstance(v, np.ndarray) for v in list(dense.params.values())
               + list(dense.grads.values()))
    same_tree(dense.params, want, "after a failed move")
    monkeypatch.setattr(pyrnn.cuda, "to_device", real)

    class Custom:  # a layer without to(): the model cannot move
        def forward(self, x):
            return x
        backward = forward

        def parameters(self):
            return iter(())

        def zero_grad(self):
            pass

        def train(self, mode=True):
            return self

    inner = pyrnn.Sequential([pyrnn.GRU(2, 2, batch_first=True, seed=4), pyrnn.LastStep()])
    model = pyrnn.Sequential([pyrnn.Dense(2, 2, seed=2), inner, pyrnn.Dense(2, 2, seed=3),
                              Custom()])
    x = np.random.default_rng(8).standard_normal((3, 4, 2)).astype(np.float32)
    model.train()
    y = model(x)
    arrays = {p.name: p.data for p in model.parameters()}
    opt = optim.SGD(model.parameters(), lr=0.5)  # built before the failed move: still valid
    with pytest.raises(TypeError, match="has no to()"):
        model.to("cuda")
    assert [layer.device for layer in model.layers[:3]] == ["cpu"] * 3
    assert all(p.data is arrays[p.name] for p in model.parameters())  # the same storage
    before = {name: a.copy() for name, a in arrays.items()}
    model.backward(np.ones_like(y))  # the forward's caches are still there
    opt.step()  # and an optimizer built before still updates the model
    changed = [name for name, a in arrays.items() if not np.array_equal(a, before[name])]
    assert len(changed) == len(arrays)


def test_nested_model_on_mixed_devices_can_be_moved(fake):
    inner = pyrnn.Sequential([pyrnn.Dense(2, 2, seed=1), pyrnn.Dense(2, 2, seed=2)])
    outer = pyrnn.Sequential([inner, pyrnn.Dense(2, 1, seed=3)])
    inner.layers[0].to("cuda")  # the inner model is split: its device property raises
    with pytest.raises(ValueError, match="different devices"):
        inner.device
    outer.to("cpu")
    assert outer.device == "cpu"


def test_optimizer_built_before_moving_is_refused(fake):
    model = pyrnn.Sequential([pyrnn.Dense(2, 1)])
    opt = optim.SGD(model.parameters(), lr=0.1)
    model.to("cuda")
    with pytest.raises(ValueError, match=r"after model.to"):
        model.fit(np.zeros((2, 2)), np.zeros((2, 1)), loss="mse", optimizer=opt, verbose=0)
    model.fit(np.zeros((2, 2)), np.zeros((2, 1)), loss="mse",
              optimizer=optim.SGD(model.parameters(), lr=0.1), verbose=0)


def test_nonfinite_loss_restores_device_weights(fake):
    rng = np.random.default_rng(10)
    x, y, _ = data_binary(rng)
    model = model_binary("cuda")
    before = model.numpy_params()
    y_bad = y.copy()
    with pytest.raises(RuntimeError, match="restored"):
        model.fit(x, y_bad, loss="mse", optimizer=optim.SGD(model.parameters(), lr=1e30),
                  epochs=3, batch_size=8, verbose=0)
    after = model.numpy_params()
    assert all(np.isfinite(v).all() for v in after.values())
    assert set(after) == set(before)


def test_demo_trains_on_the_device(fake):
    from pyrnn import demo
    kw = dict(epochs=1, n_train=64, n_val=32, n_test=32, hidden=4, batch_size=16, seed=0,
              stream=io.StringIO())
    cpu = demo.run_adding("GRU", 5, device="cpu", **kw)
    gpu = demo.run_adding("GRU", 5, device="cuda", **kw)
    assert gpu["test_mse"] == cpu["test_mse"] and gpu["loss"] == cpu["loss"]
    model, chars, hist, _ = demo.train_char_gru(epochs=1, hidden=8, T=10, device="cuda",
                                                stream=io.StringIO())
    assert all(layer.device == "cuda" for layer in model.layers)
    assert isinstance(demo.sample(model, chars, "Shall", 5), str)


@pytest.mark.parametrize("fn", ["xavier_uniform_", "kaiming_normal_", "orthogonal_", "zeros_"])
def test_init_on_device_parameters(fake, fn):
    cpu, gpu = pyrnn.Dense(4, 3, seed=1), pyrnn.Dense(4, 3, seed=1, device="cuda")
    init = getattr(pyrnn.init, fn)
    kw = {} if fn == "zeros_" else {"seed": 5}
    assert init(gpu.params["weight"], **kw) is gpu.params["weight"]
    init(cpu.params["weight"], **kw)
    init(next(gpu.parameters()), **kw)  # a Parameter works too
    same_tree(gpu.numpy_params(), cpu.params)


class _ForeignDeviceArray:
    """A CuPy-like array: only __cuda_array_interface__ (no .numpy() / .copy_from())."""

    def __init__(self, dev):
        self._dev = dev
        self.__cuda_array_interface__ = dev.__cuda_array_interface__


def test_init_fills_a_foreign_device_array_in_place(fake, monkeypatch):
    # torch.nn.init fills any tensor in place; a CuPy array reached .numpy() and raised
    # AttributeError (helper-180). Now it goes through pyrnn.cuda.as_device_array's
    # zero-copy view (here the fakes' stand-in of it).
    wrap = pyrnn.cuda.as_device_array
    monkeypatch.setattr(pyrnn.cuda, "as_device_array",
                        lambda obj: obj._dev if isinstance(obj, _ForeignDeviceArray) else wrap(obj))
    foreign = _ForeignDeviceArray(FakeDev(np.zeros((3, 4), np.float32)))
    assert pyrnn.init.xavier_uniform_(foreign, seed=5) is foreign
    expect = pyrnn.init.xavier_uniform_(np.zeros((3, 4), np.float32), seed=5)
    np.testing.assert_array_equal(foreign._dev.a, expect)
    assert pyrnn.init.ones_(foreign) is foreign and (foreign._dev.a == 1).all()


@pytest.mark.parametrize("kind", ["dense", "embedding"])
def test_a_device_dy_sharing_the_gradients_memory_is_copied_first(fake, kind):
    # The kernels read dy while they accumulate into the gradients: as on the CPU, a dy that
    # is (a view of) the layer's own gradient is copied first (helper-185).
    results = []
    for device in ("cpu", "cuda"):
        layer = (pyrnn.Dense(3, 3, seed=0, device=device) if kind == "dense"
                 else pyrnn.Embedding(2, 3, seed=0, device=device))
        x = np.eye(3, dtype=np.float32)[:1] if kind == "dense" else np.array([1, 0])
        layer(x)
        key = "bias" if kind == "dense" else "weight"
        shape = tuple(layer.grads[key].shape)
        layer.grads[key] = np.arange(1.0, 1.0 + np.prod(shape), dtype=np.float32).reshape(shape)
        g = layer.grads[key]
        dy = g.reshape(1, 3) if kind == "dense" else g
        layer.backward(dy)
        results.append({k: h(v).copy() for k, v in (layer.numpy_grads() if device == "cuda"
                                                    else layer.grads).items()})
    same_tree(results[1], results[0], "aliased dy")


def test_callbacks_on_a_cuda_model(fake, tmp_path):
    from pyrnn import callbacks
    rng = np.random.default_rng(11)
    x, y, lengths = data_regression(rng)
    runs = {}
    for device in ("cpu", "cuda"):
        m = model_seq_regression(device)
        stop = callbacks.EarlyStopping("val_loss", patience=0, restore_best=True)
        ckpt = callbacks.ModelCheckpoint(str(tmp_path / f"{device}-{{epoch}}.pyrnn"))
        hist = m.fit(x, y, loss="mse", optimizer=optim.SGD(m.parameters(), lr=1.0), epochs=4,
                     batch_size=8, lengths=lengths, validation_data=(x, y, lengths),
                     callbacks=[stop, ckpt], clip_norm=1.0, verbose=0, seed=1)
        assert stop.best_epoch == 2  # epoch 4 was worse: the best weights were put back
        runs[device] = (hist, m.numpy_params(), pyrnn.load(ckpt.last_saved).numpy_params())
    assert runs["cuda"][0] == runs["cpu"][0]
    same_tree(runs["cuda"][1], runs["cpu"][1], "restored best")
    same_tree(runs["cuda"][2], runs["cpu"][2], "checkpoint")


@pytest.mark.parametrize("given", ["adam", "instance"])
def test_the_models_optimizer_follows_it_to_the_cpu(fake, given):
    # model.optimizer kept the device Parameters after model.to("cpu"): the old device
    # storage stayed alive, and the CPU model's pickle held device arrays (helper-144). It
    # follows now, its moments with it, as the named one did at the next fit.
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 4, 3)), rng.standard_normal((8, 2))

    def trained(device, moves):
        m = model_seq_regression(device)
        opt = "adam" if given == "adam" else optim.Adam(m.parameters(), lr=0.01)
        m.fit(x, y, loss="mse", optimizer=opt, epochs=1, batch_size=4, verbose=0, seed=1)
        for d in moves:
            m.to(d)
        m.fit(x, y, loss="mse", optimizer=opt, epochs=1, batch_size=4, verbose=0, seed=2)
        return m
    want = trained("cpu", [])
    got = trained("cuda", ["cpu"])
    same_tree(got.numpy_params(), want.numpy_params(), "cuda, then cpu")
    assert got.optimizer.steps == want.optimizer.steps == 4
    opt = got.optimizer
    assert all(isinstance(p.data, np.ndarray) and not p._detached() for p in opt.params)
    assert all(isinstance(v, np.ndarray) for st in opt.state for v in st.values()
               if hasattr(v, "shape"))
    assert b"FakeDev" not in pickle.dumps(got)  # a CPU model's pickle needs no GPU
    back = trained("cpu", ["cuda", "cpu"])  # and there and back again
    same_tree(back.numpy_params(), want.numpy_params(), "cpu, cuda, cpu")
    if given == "instance":  # the caller's own instance is the one that follows
        m = model_seq_regression("cuda")
        mine = optim.SGD(m.parameters(), lr=0.1)
        m.fit(x, y, loss="mse", optimizer=mine, epochs=1, verbose=0)
        m.to("cpu")
        assert m.optimizer is mine and all(a == b for a, b in zip(mine.params, m.parameters()))


def _fitted_inner(opt="adam"):
    rng = np.random.default_rng(0)
    inner = pyrnn.Sequential([pyrnn.LSTM(3, 4, batch_first=True, seed=1), pyrnn.LastStep(),
                              pyrnn.Dense(4, 2, seed=2)])
    inner.fit(rng.standard_normal((6, 3, 3)), rng.standard_normal((6, 2)), loss="mse",
              optimizer=opt, epochs=1, batch_size=3, verbose=0)
    return inner


def test_a_failed_move_leaves_a_nested_models_optimizer_too(fake):
    # inner.to() inside outer.to() moved inner.optimizer; a later layer failing put the layers
    # back, not the optimizer (helper-145). The optimizers follow once every layer has moved.
    class Stuck(pyrnn.Dense):
        def to(self, device):
            if device != "cpu":
                raise RuntimeError("cannot move (simulated)")
            return self
    inner = _fitted_inner()
    opt = inner.optimizer
    params, state = list(opt.params), [dict(st) for st in opt.state]
    outer = pyrnn.Sequential([inner, Stuck(2, 2, seed=3)])
    with pytest.raises(RuntimeError, match="simulated"):
        outer.to("cuda")
    assert all(a is b for a, b in zip(opt.params, params)) and not any(
        p._detached() for p in opt.params)
    assert all(st[k] is before[k] for st, before in zip(opt.state, state) for k in st)
    outer.layers.pop()
    outer.to("cuda")  # the nested model's optimizer follows the outer move
    assert all(isinstance(p.data, FakeDev) and not p._detached() for p in opt.params)
    assert all(isinstance(v, FakeDev) for st in opt.state for k, v in st.items() if k != "step")


def test_a_move_to_where_the_model_is_changes_nothing(fake):
    # The optimizer's state went to the host and back, its Parameters replaced (helper-145).
    m = _fitted_inner()
    opt = optim.Adam(list(m.layers[2].parameters()), lr=0.01)
    m.fit(np.zeros((3, 3, 3)), np.zeros((3, 2)), loss="mse", optimizer=opt, verbose=0)
    params, state = list(opt.params), [dict(st) for st in opt.state]
    m.to("cpu")
    assert all(a is b for a, b in zip(opt.params, params))
    assert all(st[k] is before[k] for st, before in zip(opt.state, state) for k in st)
    m.to("cuda")
    assert [p.name for p in opt.params] == [p.name for p in params]  # its own names kept


def test_a_move_during_fit_is_refused(fake):
    # From a callback: fit's guard kept the old storage, and reported restoring weights it
    # never restored (helper-145).
    m = _fitted_inner()

    class Mover(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            m.to("cuda")
    with pytest.raises(RuntimeError, match=r"model.to\(\) during fit\(\)"):
        m.fit(np.zeros((3, 3, 3)), np.zeros((3, 2)), loss="mse", optimizer="adam", verbose=0,
              callbacks=[Mover()])
    m.to("cuda")  # after fit: as before
    assert not m.__dict__.get("_fitting")
    m.__dict__["_fitting"] = True  # (a checkpoint saved during fit)
    assert "_fitting" not in m.__getstate__()


def test_an_optimizer_that_cannot_follow_is_left_as_it_was(fake):
    # A custom optimizer whose state_dict() fails made to() raise (helper-145); it follows
    # now (its state moves without a state_dict). One keeping its state in a dict of its own
    # is left as it was.
    class Mine(optim.Optimizer):
        def __init__(self, params):
            super().__init__(params)
            self.lr = 0.1

        def _update(self, data, grad, state):
            data -= self.lr * grad

        def state_dict(self):
            raise AttributeError("no state_dict here")
    m = _fitted_inner(opt="sgd")
    mine = Mine(m.parameters())
    m.fit(np.zeros((3, 3, 3)), np.zeros((3, 2)), loss="mse", optimizer=mine, verbose=0)
    m.to("cuda")
    assert m.device == "cuda" and m.optimizer is mine and not any(
        p._detached() for p in mine.params)

    class Keyed(optim.Optimizer):  # torch's layout: {parameter: state}
        def __init__(self, params):
            super().__init__(params)
            self.state = {}

        def step(self):
            for p in self.params:
                p.data -= 0.1 * p.grad
    m = _fitted_inner(opt="sgd")
    keyed = Keyed(m.parameters())
    m.optimizer = keyed
    m.to("cuda")
    assert m.device == "cuda" and keyed.state == {} and all(p._detached() for p in keyed.params)


def test_ctrl_c_while_an_optimizer_follows_waits_for_its_end(fake, monkeypatch, sigint_delivered):
    # The state was replaced by {} before its upload ended: a Ctrl-C there left the model
    # moved and the optimizer's moments lost (helper-145).
    import os
    import signal
    m = _fitted_inner()
    opt = m.optimizer
    real, calls = optim.Optimizer._moved_state, []

    def checked(self, p, st):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, p, st)
    monkeypatch.setattr(optim.Optimizer, "_moved_state", checked)
    with pytest.raises(KeyboardInterrupt):
        m.to("cuda")
    assert m.device == "cuda" and not any(p._detached() for p in opt.params)
    assert all(set(st) == {"step", "exp_avg", "exp_avg_sq"} for st in opt.state)


def _train_step(m, opt, x, y):
    loss = losses.MSELoss()
    m.train()
    loss(m(x), y)
    m.zero_grad()
    m.backward(loss.backward())
    opt.step()


def test_state_taken_again_after_a_move_is_moved_with_it(fake):
    # Parameters listed anew after layer.to() (as the refusal says to) found their state,
    # still on the old device: the next step failed in the kernel (helper-148).
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((4, 3, 3)), rng.standard_normal((4, 2))
    runs = {}
    for moves in ([], ["cuda"], ["cuda", "cpu"]):
        m = pyrnn.Sequential([pyrnn.LSTM(3, 4, batch_first=True, seed=1, dtype="float64"),
                              pyrnn.LastStep(), pyrnn.Dense(4, 2, seed=2, dtype="float64")])
        opt = optim.Adam(m.parameters(), lr=0.01)
        _train_step(m, opt, x, y)
        for d in moves:
            m.to(d)
        opt.param_groups[0]["params"][:] = list(m.parameters())
        _train_step(m, opt, x, y)
        assert [st["step"] for st in opt.state] == [2] * len(opt.state)
        runs[tuple(moves)] = {k: h(v) for k, v in m.numpy_params().items()}
    same_tree(runs[("cuda",)], runs[()], "moved once")
    same_tree(runs[("cuda", "cpu")], runs[()], "there and back")


def test_state_of_a_parameter_taken_out_moves_and_frees_the_old_storage(fake):
    # The state of a parameter taken out stayed on the old device, under a key holding the
    # old storage: a CPU model's pickle needed a GPU, and putting it back failed (helper-148).
    import pickle
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((4, 3, 3)), rng.standard_normal((4, 2))
    m = pyrnn.Sequential([pyrnn.LSTM(3, 4, batch_first=True, seed=1, dtype="float64"),
                          pyrnn.LastStep(), pyrnn.Dense(4, 2, seed=2, dtype="float64")]).to("cuda")
    opt = optim.Adam(m.parameters(), lr=0.01)
    m.fit(x, y, loss="mse", optimizer=opt, verbose=0)
    frozen = set(m.layers[2].parameters())
    opt.param_groups[0]["params"][:] = [p for p in m.parameters() if p not in frozen]
    m.fit(x, y, loss="mse", optimizer=opt, verbose=0)
    m.to("cpu")
    assert not any(p._detached() for p in opt._left)
    assert all(isinstance(v, np.ndarray) for _, st in opt._left.values() for k, v in st.items()
               if k != "step")  # moved with it
    pickle.dumps((m, opt))  # no device array left anywhere
    opt.param_groups[0]["params"].extend(m.layers[2].parameters())  # unfrozen: resumes
    m.fit(x, y, loss="mse", optimizer=opt, verbose=0)
    assert [st["step"] for st in opt.state][-2:] == [2, 2]


def test_a_move_uploads_the_optimizers_state_once(fake, monkeypatch):
    # _sync_params moved the state, then load_state_dict uploaded it again: twice the device
    # memory at the peak (helper-150).
    m = _fitted_inner()
    n_state = sum(1 for st in m.optimizer.state for k in st if k != "step")
    n_params = len(m.optimizer.params)
    real, calls = pyrnn.cuda.to_device, []

    def counting(a, dtype=None, device=0):
        calls.append(1)
        return real(a, dtype, device)
    monkeypatch.setattr(pyrnn.cuda, "to_device", counting)
    m.to("cuda")
    moved = len(calls)
    calls.clear()
    for layer in _fitted_inner().layers:  # what the layers alone upload
        layer.to("cuda")
    assert moved - len(calls) == n_state, (moved, len(calls), n_state, n_params)


def test_a_put_back_interrupted_changes_nothing(fake, monkeypatch):
    # The entry left _left before its state had moved: an interrupt lost it (helper-150).
    layer = pyrnn.Dense(3, 2, seed=0)
    opt = optim.SGD(list(layer.parameters()), lr=0.1, momentum=0.9)
    for p in opt.params:
        p.grad[...] = 1.0
    opt.step()
    opt.param_groups[0]["params"].pop()
    opt.step()
    layer.to("cuda")
    opt.param_groups[0]["params"][:] = list(layer.parameters())

    def interrupted(self, p, st):
        raise KeyboardInterrupt
    monkeypatch.setattr(optim.Optimizer, "_moved_state", interrupted)
    left, state = dict(opt._left), list(opt.state)
    with pytest.raises(KeyboardInterrupt):
        opt.step()
    assert opt._left == left and opt.state == state
    monkeypatch.undo()
    fake = install(monkeypatch)  # (undo took the fakes too)
    opt.step()
    assert [st["momentum_buffer"].__class__.__name__ for st in opt.state] == ["FakeDev"] * 2


def test_an_edit_of_the_list_before_a_move_is_followed_too(fake):
    # The follow took a state_dict first, whose sync of the edited list refused the listed
    # parameters (viewing the old storage): the optimizer was left behind, silently
    # (helper-152). A no-op re-list did it too.
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 3, 3)), rng.standard_normal((8, 2))
    for edit in ("freeze", "relist"):
        m = _fitted_inner()
        opt = m.optimizer
        frozen = set(m.layers[2].parameters())
        opt.param_groups[0]["params"][:] = (
            [p for p in m.parameters() if p not in frozen] if edit == "freeze"
            else list(m.parameters()))
        m.to("cuda")
        assert not any(p._detached() for p in opt.params) and not any(
            p._detached() for p in opt._left)
        assert all(isinstance(v, FakeDev) for st in opt.state for k, v in st.items()
                   if k != "step")
        assert all(isinstance(v, FakeDev) for _, st in opt._left.values()
                   for k, v in st.items() if k != "step")
        m.fit(x, y, loss="mse", optimizer=opt, epochs=1, batch_size=4, verbose=0)
        m.fit(x, y, loss="mse", optimizer="adam", epochs=1, batch_size=4, verbose=0)


def test_a_custom_optimizers_own_arrays_keep_their_shape_through_a_move(fake):
    # Flattened to (size,) and uploaded when of the parameter's size (helper-152).
    from duck_layer import Whitened
    layer = pyrnn.Dense(2, 2, seed=0, dtype="float64")
    m = pyrnn.Sequential([layer])
    mine = Whitened(m.parameters())
    m.fit(np.ones((4, 2)), np.ones((4, 2)), loss="mse", optimizer=mine, verbose=0)
    m.to("cuda")
    assert [tuple(st["L"].shape) for st in mine.state] == [(2, 2), (2, 2)]
    sd = mine.state_dict()
    mine.load_state_dict(sd)
    assert [tuple(st["L"].shape) for st in mine.state] == [(2, 2), (2, 2)]


def test_a_nested_models_move_during_fit_is_refused(fake):
    inner = _fitted_inner()
    outer = pyrnn.Sequential([inner])

    class Mover(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            inner.to("cuda")
    with pytest.raises(RuntimeError, match=r"model.to\(\) during fit\(\)"):
        outer.fit(np.zeros((3, 3, 3)), np.zeros((3, 2)), loss="mse", optimizer="adam",
                  verbose=0, callbacks=[Mover()])
    assert not inner.__dict__.get("_fitting")
    inner.to("cuda")


def test_ctrl_c_between_the_move_and_the_optimizers_waits(fake, monkeypatch, sigint_delivered):
    import os
    import signal
    m = _fitted_inner()
    opt = m.optimizer
    real = pyrnn.Sequential._kept_optimizers

    def kept(self):
        os.kill(os.getpid(), signal.SIGINT)
        return real(self)
    monkeypatch.setattr(pyrnn.Sequential, "_kept_optimizers", kept)
    with pytest.raises(KeyboardInterrupt):
        m.to("cuda")
    assert m.device == "cuda" and not any(p._detached() for p in opt.params)


def test_zero_grad_of_an_optimizer_built_before_moving_is_refused(fake):
    # Its Parameters view the layer's old (host) arrays: zeroing them would silently leave the
    # layer's gradients as they are.
    layer = pyrnn.Dense(2, 1, seed=0)
    opt = optim.SGD(layer.parameters(), lr=0.1)
    layer.to("cuda")
    with pytest.raises(RuntimeError, match="no longer views its layer's memory"):
        opt.zero_grad()


@pytest.mark.parametrize("kind", ["dense", "lstm"])
def test_init_or_zero_grad_through_a_parameter_taken_before_moving_is_refused(fake, kind):
    # pyrnn.init wrote the old host arrays, silently (and counted a write the layer never got);
    # Parameter.zero_grad zeroed them (helper-143), clip_grad_norm scaled them (helper-145).
    # The optimizers already refused.
    layer = pyrnn.Dense(2, 3, seed=0) if kind == "dense" else pyrnn.LSTM(2, 3, seed=0)
    p = next(layer.parameters())
    layer.to("cuda")
    before = {k: h(v).copy() for k, v in layer.numpy_params().items()}
    for call in (lambda: init.constant_(p, 5.0), lambda: init.xavier_uniform_(p, seed=0),
                 p.zero_grad, lambda: optim.clip_grad_norm([p], 1.0)):
        with pytest.raises(RuntimeError, match=f"parameter '{p.name}' no longer views its "
                                               "layer's memory"):
            call()
    same_tree(layer.numpy_params(), before, "untouched")
    fresh = next(layer.parameters())
    init.constant_(fresh, 5.0)  # the Parameter taken again does reach the layer
    assert (h(layer.numpy_params()[fresh.name]) == 5.0).all()


def test_layernorm_keeps_a_copy_of_a_device_input_for_backward(fake):
    # A device input is the caller's memory: the training forward asks the kernel for a copy,
    # so overwriting the input before backward changes nothing. Host input is uploaded (already
    # private), and eval keeps nothing: no copy asked for either.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6)).astype(np.float32) + 2
    dy = rng.standard_normal((4, 6)).astype(np.float32)
    cpu = pyrnn.LayerNorm(6)
    cpu.forward(x)
    want = cpu.backward(dy)
    asked = []
    real = fake.layernorm_forward

    def spy(x, w, b, eps, keep=False):
        asked.append(bool(keep))
        return real(x, w, b, eps, keep)
    fake.layernorm_forward = spy
    g = pyrnn.LayerNorm(6).to("cuda")
    xd = FakeDev(x.copy())
    g.forward(xd)
    xd.a[...] = 100.0
    np.testing.assert_array_equal(h(g.backward(FakeDev(dy))), want)
    g.forward(x)
    g.eval()
    g.forward(xd)
    assert asked == [True, False, False]


def test_a_model_of_mixed_dtypes_is_refused_on_the_device(fake):
    # On the CPU each layer converts its host input; on a GPU activations stay device arrays of
    # their layer's dtype, so a float32 layer cannot feed a float64 one: one clear TypeError at
    # to("cuda") (the model left on the CPU, unchanged), and at the first forward of a model
    # built from layers made on the device.
    def layers(device):
        return [pyrnn.Dense(3, 4, seed=1, device=device),
                pyrnn.LSTM(4, 5, batch_first=True, dtype="float64", seed=2, device=device),
                pyrnn.LastStep(device=device), pyrnn.Dense(5, 1, seed=3, device=device)]

    model = pyrnn.Sequential(layers("cpu"))
    x = np.random.default_rng(0).standard_normal((2, 6, 3))
    want = model.predict(x)  # the CPU model converts between layers
    with pytest.raises(TypeError, match=r"one dtype .*float32: 0 \(Dense\), 3 \(Dense\); "
                                        r"float64: 1 \(LSTM\)"):
        model.to("cuda")
    assert model.device == "cpu"
    np.testing.assert_array_equal(model.predict(x), want)
    built = pyrnn.Sequential(layers("cuda"))
    with pytest.raises(TypeError, match="one dtype across its layers"):
        built.predict(x)
    same = pyrnn.Sequential([pyrnn.LSTM(3, 5, batch_first=True, dtype="float64", seed=2),
                             pyrnn.LastStep(), pyrnn.Dense(5, 1, dtype="float64", seed=3)])
    same.to("cuda")  # one dtype (float64): moves
    assert same.device == "cuda"


@pytest.mark.parametrize("name", ["adam", "rmsprop", "adamw"])
def test_a_named_optimizer_keeps_its_state_across_to(fake, name):
    # fit(optimizer=name) keeps its optimizer for the next fit, as Keras' compile does; moving
    # the model in between gives the parameters new storage, and the new optimizer takes the
    # old one's steps and moments: the same weights as never moving (the fakes compute as the
    # CPU, bitwise). It used to start again from zero moments.
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((8, 5, 3)), rng.standard_normal((8, 1))

    def model():
        return pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True, seed=1), pyrnn.LastStep(),
                                 pyrnn.Dense(4, 1, seed=2)])

    kw = dict(loss="mse", optimizer=name, epochs=1, batch_size=4, shuffle=False, verbose=0)
    stay = model()
    for _ in range(3):
        stay.fit(x, y, **kw)
    moved = model()
    moved.fit(x, y, **kw)
    moved.to("cuda")
    moved.fit(x, y, **kw)
    moved.to("cpu")
    moved.fit(x, y, **kw)
    assert moved.optimizer.steps == stay.optimizer.steps == 6
    same_tree(moved.numpy_params(), stay.numpy_params())
