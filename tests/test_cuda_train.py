"""The training stack on a real GPU against the CPU: every layer's output and gradients (NumPy
and device-array inputs, accumulation, float32 / float64), bitwise dropout masks and
deterministic embedding gradients, every optimizer step, clip_grad_norm, the losses on device
predictions, Sequential.fit / evaluate / predict / save / load on device="cuda", and
`pyrnn demo --device cuda`. Skipped without a usable device (see tests/test_cuda_train_plumbing.py
for the Python path without one, and the CUDA ctest's host emulation for the C++).

Twins are built with the same seed, so they start bitwise equal; the GPU must then match the
CPU to 1e-10 (float64) or 1e-5 relative (float32) for single passes; the element-wise parts that
are documented as bitwise the CPU's (dropout masks, embedding and LastStep gathers/scatters,
optimizer updates given equal inputs) are compared exactly.
"""
import itertools
import zlib

import numpy as np
import pytest

import pyrnn
import pyrnn.cuda
from pyrnn import losses, optim

pytestmark = pytest.mark.skipif(not pyrnn.cuda.is_available(),
                                reason=f"no CUDA device: {pyrnn.cuda.unavailable_reason()}")

TOL = {"float64": dict(rtol=1e-10, atol=1e-10), "float32": dict(rtol=1e-5, atol=1e-5)}
DTYPES = ("float32", "float64")


def seed_of(*parts):
    return zlib.crc32(repr(parts).encode())


def host(a):
    return a.numpy() if isinstance(a, pyrnn.cuda.DeviceArray) else np.asarray(a)


def close(got, want, dtype, what):
    np.testing.assert_allclose(host(got), want, err_msg=what, **TOL[np.dtype(dtype).name])


def check_tree(got, want, dtype, what):
    assert set(got) == set(want)
    for k in want:
        close(got[k], want[k], dtype, f"{what} {k}")


LAYERS = {
    "dense": lambda dt, dev: pyrnn.Dense(7, 5, dtype=dt, seed=1, device=dev),
    "dense_relu": lambda dt, dev: pyrnn.Dense(7, 5, "relu", dtype=dt, seed=2, device=dev),
    "dense_tanh": lambda dt, dev: pyrnn.Dense(7, 5, "tanh", dtype=dt, seed=3, device=dev),
    "dense_sigmoid_nobias": lambda dt, dev: pyrnn.Dense(7, 5, "sigmoid", bias=False, dtype=dt,
                                                        seed=4, device=dev),
    "layernorm": lambda dt, dev: pyrnn.LayerNorm(7, dtype=dt, device=dev),
    "layernorm_wide": lambda dt, dev: pyrnn.LayerNorm(7, eps=1e-3, dtype=dt, device=dev),
}


@pytest.mark.parametrize("name, dtype, kind", list(itertools.product(LAYERS, DTYPES,
                                                                        ("numpy", "device"))))
def test_layer_matches_cpu(name, dtype, kind):
    rng = np.random.default_rng(seed_of(name, dtype, kind))
    cpu, gpu = LAYERS[name](dtype, "cpu"), LAYERS[name](dtype, "cuda")
    for k, v in gpu.numpy_params().items():
        np.testing.assert_array_equal(v, cpu.params[k], err_msg=f"initial {k}")
    if name == "layernorm_wide":  # non-trivial weights, and rows with a large mean
        for k in cpu.params:
            v = rng.standard_normal(cpu.params[k].shape).astype(dtype)
            cpu.params[k][...] = v
            gpu.params[k].copy_from(v)
    x = rng.standard_normal((4, 9, 7)) + (3.0 if name.startswith("layernorm") else 0.0)
    wrap = (lambda a: pyrnn.cuda.to_device(a, dtype)) if kind == "device" else (lambda a: a)
    for rep in range(2):  # gradients accumulate
        y_c, y_g = cpu(x), gpu(wrap(x))
        assert isinstance(y_g, pyrnn.cuda.DeviceArray if kind == "device" else np.ndarray)
        close(y_g, y_c, dtype, f"{name} y")
        dy = rng.standard_normal(y_c.shape)
        dx_c, dx_g = cpu.backward(dy), gpu.backward(wrap(dy))
        close(dx_g, dx_c, dtype, f"{name} dx")
    check_tree(gpu.numpy_grads(), cpu.grads, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding_is_bitwise_and_deterministic(dtype, padding_idx):
    rng = np.random.default_rng(seed_of("emb", dtype, padding_idx))
    cpu = pyrnn.Embedding(50, 6, padding_idx=padding_idx, dtype=dtype, seed=5)
    gpu = pyrnn.Embedding(50, 6, padding_idx=padding_idx, dtype=dtype, seed=5, device="cuda")
    ids = (rng.integers(0, 50, (16, 40)) * rng.random((16, 40)) ** 3).astype(np.int64)  # repeats
    dy = rng.standard_normal((16, 40, 6)).astype(dtype)
    np.testing.assert_array_equal(gpu(ids), cpu(ids))
    cpu.backward(dy)
    gpu.backward(pyrnn.cuda.to_device(dy))
    np.testing.assert_array_equal(gpu.numpy_grads()["weight"], cpu.grads["weight"])
    first = gpu.numpy_grads()["weight"]
    gpu.zero_grad()
    gpu(pyrnn.cuda.to_device(ids))
    gpu.backward(pyrnn.cuda.to_device(dy))
    np.testing.assert_array_equal(gpu.numpy_grads()["weight"], first)  # run to run


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_dropout_masks_are_the_cpus(dtype, p):
    rng = np.random.default_rng(seed_of("drop", dtype, p))
    cpu, gpu = pyrnn.Dropout(p, seed=9), pyrnn.Dropout(p, seed=9, device="cuda")
    x = rng.standard_normal((8, 33, 5)).astype(dtype)
    for _ in range(2):
        y_c, y_g = cpu(x), gpu(pyrnn.cuda.to_device(x))
        np.testing.assert_array_equal(y_g.numpy(), y_c)
        dy = rng.standard_normal(x.shape).astype(dtype)
        np.testing.assert_array_equal(host(gpu.backward(pyrnn.cuda.to_device(dy))),
                                      cpu.backward(dy))
    gpu.eval()
    np.testing.assert_array_equal(gpu(x), x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bidirectional, use_lengths",
                         list(itertools.product((False, True), (False, True))))
def test_laststep_is_bitwise(dtype, bidirectional, use_lengths):
    rng = np.random.default_rng(seed_of("last", dtype, bidirectional, use_lengths))
    cpu = pyrnn.LastStep(bidirectional)
    gpu = pyrnn.LastStep(bidirectional, device="cuda")
    x = rng.standard_normal((5, 7, 8)).astype(dtype)
    lengths = rng.integers(1, 8, 5) if use_lengths else None
    np.testing.assert_array_equal(gpu(x, lengths=lengths), cpu(x, lengths=lengths))
    dy = rng.standard_normal((5, 8)).astype(dtype)
    np.testing.assert_array_equal(gpu.backward(dy), cpu.backward(dy))


OPTIMIZERS = [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (optim.Adam, dict(lr=1e-2)),
    (optim.Adam, dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
    (optim.AdamW, dict(lr=1e-2, weight_decay=0.05)),
    (optim.RMSprop, dict(lr=1e-2)),
    (optim.RMSprop, dict(lr=1e-2, momentum=0.5, centered=True, weight_decay=0.01)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls, kw", OPTIMIZERS)
def test_optimizer_steps_match_cpu(dtype, cls, kw):
    """Same parameters and gradients on both sides, several steps: within 1e-6 relative of the
    CPU (and documented bitwise: the GPU runs the CPU's per-element operations, no FMA)."""
    rng = np.random.default_rng(seed_of("opt", dtype, cls.__name__, sorted(kw.items())))
    cpu = [pyrnn.Dense(6, 4, dtype=dtype, seed=1), pyrnn.LSTM(4, 3, dtype=dtype, seed=2)]
    gpu = [pyrnn.Dense(6, 4, dtype=dtype, seed=1, device="cuda"),
           pyrnn.LSTM(4, 3, dtype=dtype, seed=2, device="cuda")]
    pc = [p for m in cpu for p in m.parameters()]
    pg = [p for m in gpu for p in m.parameters()]
    oc, og = cls(pc, **kw), cls(pg, **kw)
    for _ in range(4):
        for a, b in zip(pc, pg):
            g = rng.standard_normal(a.shape).astype(dtype)
            a.grad[...] = g
            b.grad.copy_from(g)
        oc.step()
        og.step()
        for a, b in zip(pc, pg):  # re-sync so every step starts from equal parameters
            np.testing.assert_allclose(b.data.numpy(), a.data, rtol=1e-6, atol=1e-7,
                                       err_msg=a.name)
            b.data.copy_from(a.data)
    for (k, sc), sg in zip(enumerate(oc.state_dict()["state"]), og.state_dict()["state"]):
        for key, v in sc.items():
            if isinstance(v, np.ndarray):
                np.testing.assert_allclose(sg[key], v, rtol=1e-6, atol=1e-7, err_msg=key)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", [2.0, float("inf"), 3.0])
def test_clip_grad_norm_matches_cpu(dtype, norm_type):
    rng = np.random.default_rng(seed_of("clip", dtype, norm_type))
    c = pyrnn.GRU(5, 7, num_layers=2, dtype=dtype, seed=3)
    g = pyrnn.GRU(5, 7, num_layers=2, dtype=dtype, seed=3, device="cuda")
    for name in c.grads:
        v = rng.standard_normal(c.grads[name].shape).astype(dtype)
        c.grads[name][...] = v
        g.grads[name].copy_from(v)
    first = optim.clip_grad_norm(g.parameters(), 1e9, norm_type)  # no clipping at this bound
    assert optim.clip_grad_norm(g.parameters(), 1e9, norm_type) == first  # reproducible
    nc = optim.clip_grad_norm(c.parameters(), 0.5, norm_type)
    ng = optim.clip_grad_norm(g.parameters(), 0.5, norm_type)
    assert ng == first and ng == pytest.approx(nc, rel=1e-12)
    check_tree(g.numpy_grads(), c.grads, dtype, "clipped")


@pytest.mark.parametrize("loss, shape, target", [
    (losses.MSELoss(), (6, 2), lambda r: r.standard_normal((6, 2))),
    (losses.CrossEntropyLoss(ignore_index=1), (4, 5, 3), lambda r: r.integers(0, 3, (4, 5))),
    (losses.BCEWithLogitsLoss(), (6, 3), lambda r: r.integers(0, 2, (6, 3)).astype(float)),
])
def test_losses_take_device_predictions(loss, shape, target):
    rng = np.random.default_rng(6)
    pred = rng.standard_normal(shape).astype(np.float32)
    t = target(rng)
    want = loss.forward(pred, t)
    d_want = loss.backward()
    assert loss.forward(pyrnn.cuda.to_device(pred), t) == want
    d = loss.backward()
    assert isinstance(d, pyrnn.cuda.DeviceArray) and d.dtype == np.float32
    np.testing.assert_array_equal(d.numpy(), d_want)


def _regression(dtype):
    return pyrnn.Sequential([pyrnn.LSTM(3, 6, batch_first=True, bidirectional=True, seed=1,
                                        dtype=dtype),
                             pyrnn.LastStep(), pyrnn.LayerNorm(12, dtype=dtype),
                             pyrnn.Dropout(0.2, seed=4),
                             pyrnn.Dense(12, 2, "tanh", seed=2, dtype=dtype)])


def _char(dtype):
    return pyrnn.Sequential([pyrnn.Embedding(11, 4, seed=3, padding_idx=0, dtype=dtype),
                             pyrnn.GRU(4, 8, batch_first=True, seed=4, dtype=dtype),
                             pyrnn.Dense(8, 11, seed=6, dtype=dtype)])


@pytest.mark.parametrize("dtype, opt, rtol", [("float64", "adam", 1e-8), ("float32", "sgd", 1e-4)])
@pytest.mark.parametrize("which", ["regression", "char"])
def test_fit_matches_cpu(tmp_path, dtype, opt, rtol, which):
    rng = np.random.default_rng(seed_of("fit", dtype, which))
    if which == "regression":
        make, loss = _regression, losses.MSELoss
        x = rng.standard_normal((50, 8, 3))
        y, lengths = x[:, :, :2].sum(axis=1) / 4, rng.integers(1, 9, 50)
    else:
        make, loss = _char, losses.CrossEntropyLoss
        x = rng.integers(0, 11, (40, 9))
        y, lengths = np.roll(x, -1, axis=1), None
    cpu, gpu = make(dtype), make(dtype).to("cuda")
    assert gpu.device == "cuda"

    def optimizer(params):
        return optim.Adam(params, 1e-2) if opt == "adam" else optim.SGD(params, 0.05, 0.9)

    hist = [m.fit(x, y, loss=loss(), optimizer=optimizer(m.parameters()), epochs=2, batch_size=16,
                  lengths=lengths, clip_norm=1.0, validation_data=(x[:10], y[:10]), verbose=0,
                  seed=1) for m in (cpu, gpu)]
    for k in hist[0]:
        np.testing.assert_allclose(hist[1][k], hist[0][k], rtol=rtol, err_msg=k)
    for k, v in gpu.numpy_params().items():
        np.testing.assert_allclose(v, cpu.numpy_params()[k], rtol=rtol, atol=rtol, err_msg=k)
    np.testing.assert_allclose(gpu.predict(x, lengths=lengths), cpu.predict(x, lengths=lengths),
                               rtol=rtol, atol=rtol)
    assert gpu.evaluate(x, y, lengths=lengths) == pytest.approx(
        cpu.evaluate(x, y, lengths=lengths), rel=rtol)
    path = tmp_path / "m.pyrnn"
    gpu.save(path)
    for device in ("cpu", "cuda"):
        back = pyrnn.load(path, device=device)
        assert back.device == device
        for k, v in back.numpy_params().items():
            np.testing.assert_array_equal(v, gpu.numpy_params()[k])


def test_sequential_device_arrays_in_and_out():
    model = _regression("float32").to("cuda")
    x = np.random.default_rng(0).standard_normal((4, 8, 3)).astype(np.float32)
    y = model(pyrnn.cuda.to_device(x))
    assert isinstance(y, pyrnn.cuda.DeviceArray) and y.shape == (4, 2)
    dx = model.backward(pyrnn.cuda.to_device(np.ones((4, 2), np.float32)))
    assert isinstance(dx, pyrnn.cuda.DeviceArray) and dx.shape == (4, 8, 3)
    np.testing.assert_array_equal(model.eval()(x), model(pyrnn.cuda.to_device(x)).numpy())


def test_demo_trains_on_the_gpu(tmp_path):
    from pyrnn import demo
    out = demo.run(quick=True, device="cuda", out=str(tmp_path), plot_png=False,
                   stream=open(tmp_path / "log.txt", "w"))
    assert len(out["adding"]) == 6 and out["char"]["loss"]


def test_fit_undoes_an_overflowing_step_on_the_device():
    # As on the CPU (test_train_model): the device moments and weights before the step that
    # made Adam's second moment Inf come back, and the same optimizer goes on.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = rng.standard_normal((64, 1)).astype(np.float32)
    xb = x.copy()
    xb[40:48] *= 1e18  # batch 6: finite loss, gradient squared past float32
    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=1, device="cuda")])
    ref = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=1)])
    for model in (m, ref):
        with pytest.raises(RuntimeError, match="batch 6 made the optimizer state non-finite"):
            model.fit(xb, y, loss="mse", optimizer="adam", epochs=1, batch_size=8, verbose=0,
                      shuffle=False)
    assert m.optimizer.steps == ref.optimizer.steps == 5
    for got, want in zip(m.optimizer.state, ref.optimizer.state):
        assert got["step"] == want["step"]
        for k in ("exp_avg", "exp_avg_sq"):
            close(host(got[k]), want[k], np.float32, k)
    for a, b in zip(m.parameters(), ref.parameters()):
        close(host(a.data), b.data, np.float32, a.name)
    m.fit(x, y, loss="mse", optimizer="adam", epochs=2, batch_size=8, verbose=0)
    assert all(np.isfinite(host(v)).all() for st in m.optimizer.state for k, v in st.items()
               if k != "step")
