"""The Python side of device="cuda" (pyrnn.recurrent's CUDA path: NumPy <-> device copies,
batch_first and unbatched layouts as the native layer gets them, states, lengths, to(),
parameter views) run WITHOUT a GPU: pyrnn.cuda's native pieces are replaced by NumPy-backed fakes whose
"device" layer is the CPU NativeRecurrent. Outputs must then equal a CPU layer's exactly, so any
difference is a plumbing bug. (The native CUDA numerics are covered by test_cuda_layers.py on a
GPU and by the C++ host-emulation test.)"""
import itertools

import numpy as np
import pytest

import pyrnn
from cuda_fakes import FakeDev, FakeNative, install
from reference import make_layer as make


@pytest.fixture
def fake_cuda(monkeypatch):
    install(monkeypatch)


CELLS = ("rnn_tanh", "lstm", "gru", "gru_after")


def host(v):
    return v.a if isinstance(v, FakeDev) else v


GRID = list(itertools.product(CELLS, (False, True), (False, True), (False, True),
                              ("tnc", "ntc", "tc", "tc_bf"), ("numpy", "device")))


@pytest.mark.parametrize("cell, bidir, use_lengths, use_hx, layout, kind", GRID)
def test_cuda_path_equals_cpu(fake_cuda, cell, bidir, use_lengths, use_hx, layout, kind):
    if layout in ("tc", "tc_bf") and use_lengths:
        pytest.skip("lengths need a batch")
    rng = np.random.default_rng(1)
    C, H, T, N, L = 3, 4, 5, 2, 2
    kw = dict(bidirectional=bidir, dtype="float64", seed=9, batch_first=layout in ("ntc", "tc_bf"),
              dropout=0.3)
    cpu = make(cell, C, H, L, **kw)
    gpu = make(cell, C, H, L, device="cuda", **kw)
    assert isinstance(gpu._native, FakeNative) and gpu.device == "cuda"
    assert all(isinstance(v, FakeDev) for v in gpu.params.values())
    D = 2 if bidir else 1
    shape = {"tnc": (T, N, C), "ntc": (N, T, C), "tc": (T, C), "tc_bf": (T, C)}[layout]
    sshape = (L * D, H) if layout in ("tc", "tc_bf") else (L * D, N, H)
    dev = (lambda a: FakeDev(np.ascontiguousarray(a))) if kind == "device" else (lambda a: a)
    x = rng.standard_normal(shape)
    hx = None
    if use_hx:
        hx = rng.standard_normal(sshape)
        hx = (hx, rng.standard_normal(sshape)) if cell == "lstm" else hx
    lengths = [T, 2] if use_lengths else None

    def dev_hx(h):
        if h is None:
            return None
        return tuple(dev(v) for v in h) if isinstance(h, tuple) else dev(h)

    out_c, st_c = cpu(x, hx, lengths)
    out_g, st_g = gpu(dev(x), dev_hx(hx), lengths)
    assert isinstance(out_g, FakeDev if kind == "device" else np.ndarray)
    np.testing.assert_array_equal(host(out_g), out_c)
    for a, b in zip(st_g if cell == "lstm" else (st_g,), st_c if cell == "lstm" else (st_c,)):
        np.testing.assert_array_equal(host(a), b)

    d_out = rng.standard_normal(out_c.shape)
    d_hn = rng.standard_normal(sshape)
    if cell == "lstm":
        d_cn = rng.standard_normal(sshape)
        dx_c, (dh0_c, dc0_c) = cpu.backward(d_out, d_hn, d_cn)
        dx_g, (dh0_g, dc0_g) = gpu.backward(dev(d_out), dev(d_hn), dev(d_cn))
        np.testing.assert_array_equal(host(dc0_g), dc0_c)
    else:
        dx_c, dh0_c = cpu.backward(d_out, d_hn)
        dx_g, dh0_g = gpu.backward(dev(d_out), dev(d_hn))
    assert isinstance(dx_g, FakeDev if kind == "device" else np.ndarray)
    np.testing.assert_array_equal(host(dx_g), dx_c)
    np.testing.assert_array_equal(host(dh0_g), dh0_c)
    for k, v in gpu.numpy_grads().items():
        np.testing.assert_array_equal(v, cpu.grads[k])


def test_to_round_trip(fake_cuda):
    rng = np.random.default_rng(2)
    layer = make("lstm", 3, 4, 2, dtype="float64", seed=1)
    ref = make("lstm", 3, 4, 2, dtype="float64", seed=1)
    x, d = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 4))
    for m in (layer, ref):
        m(x)
        m.backward(d)
    layer.to("cuda")
    assert layer.device == "cuda" and isinstance(layer.params["bias_l0"], FakeDev)
    with pytest.raises(RuntimeError, match="training mode"):
        layer.backward(d)  # the cache does not travel
    for k, v in layer.numpy_params().items():
        np.testing.assert_array_equal(v, ref.params[k])
    for k, v in layer.numpy_grads().items():
        np.testing.assert_array_equal(v, ref.grads[k])
    layer.params["weight_hh_l1"].copy_from(np.full((16, 4), 0.01))
    ref.params["weight_hh_l1"][...] = 0.01
    np.testing.assert_array_equal(layer(x)[0], ref(x)[0])
    layer.load_params({"bias_l1": np.ones(16)})
    ref.params["bias_l1"][...] = 1
    layer.to("cpu")
    assert isinstance(layer.params["bias_l1"], np.ndarray)
    np.testing.assert_array_equal(layer(x)[0], ref(x)[0])
    assert "device='cuda'" in repr(make("gru", 2, 3, device="cuda"))


def test_failed_move_leaves_the_layer_whole(fake_cuda, monkeypatch):
    """A copy failing partway through to() (a device error, out of memory) leaves the layer on
    its old device with all its values, not on the new one with some weights still the seed's."""
    rng = np.random.default_rng(3)
    layer = make("gru", 3, 4, 2, dtype="float64", seed=1)
    for v in layer.params.values():
        v[...] = rng.standard_normal(v.shape)
    want = layer.numpy_params()
    x = rng.standard_normal((4, 2, 3))
    y = layer(x)[0]
    calls = []

    def failing(self, host):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("cudaMemcpy: out of memory (simulated)")
        self.a[...] = np.asarray(host).reshape(self.a.shape)

    monkeypatch.setattr(FakeDev, "copy_from", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        layer.to("cuda")
    assert layer.device == "cpu" and isinstance(layer.params["bias_l0"], np.ndarray)
    for k, v in layer.numpy_params().items():
        np.testing.assert_array_equal(v, want[k])
    np.testing.assert_array_equal(layer(x)[0], y)


def test_device_input_errors(fake_cuda):
    gpu = make("gru", 3, 4, device="cuda", dtype="float32")
    with pytest.raises(TypeError, match="dtype float64"):
        gpu(FakeDev(np.zeros((2, 1, 3))))
    with pytest.raises(ValueError, match=r"expected input of shape \(T, N, 3\)"):
        gpu(FakeDev(np.zeros((2, 1, 5), np.float32)))
    with pytest.raises(ValueError, match=r"hx must have shape \(1, 1, 4\)"):
        gpu(FakeDev(np.zeros((2, 1, 3), np.float32)), FakeDev(np.zeros((2, 1, 4), np.float32)))
    gpu(FakeDev(np.zeros((2, 1, 3), np.float32)))
    with pytest.raises(ValueError, match=r"d_out must have the forward output's shape \(2, 1, 4\)"):
        gpu.backward(FakeDev(np.zeros((2, 1, 5), np.float32)))
    with pytest.raises(ValueError, match="lengths"):
        gpu(np.zeros((2, 2, 3)), lengths=[1, 3])
    lstm = make("lstm", 3, 4, device="cuda", dtype="float32")
    with pytest.raises(TypeError, match=r"an LSTM's hx must be a tuple \(h0, c0\) of two arrays, "
                       r"both given.*got \(FakeDev, None\)"):
        lstm(FakeDev(np.zeros((2, 1, 3), np.float32)), (FakeDev(np.zeros((1, 1, 4), np.float32)), None))


def test_cuda_layer_parameters_are_device_views(fake_cuda, tmp_path):
    gpu = make("lstm", 3, 4, device="cuda", dtype="float64", seed=3)
    params = list(gpu.parameters())
    assert [p.name for p in params] == list(gpu.params)
    for p in params:  # the training stack updates them on the device (test_cuda_train_plumbing)
        assert p.device == "cuda" and p.data is gpu.params[p.name] and p.grad is gpu.grads[p.name]
    # save() goes through host copies and loads as a CPU layer with the same weights
    path = tmp_path / "gpu.pyrnn"
    gpu.save(path)
    back = pyrnn.load(path)
    assert back.device == "cpu"
    for k, v in gpu.numpy_params().items():
        np.testing.assert_array_equal(back.params[k], v)
