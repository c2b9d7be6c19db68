"""device="cuda" at its edges, each against what the CPU does: one layer entered from two threads,
clip_grad_norm over a read-only device gradient, copies of objects holding device state, 0-d
arrays, float64 through a model of parameter-less layers, float16 into LastStep, extents past
the kernels' int range, and the errors for misused interop calls. Found by a bug hunt over the
host emulation; each test failed before its fix. Skipped without a usable device (the host
emulation counts: `bash tests/reliability.sh cuda-emulation`)."""
import copy
import os
import threading

import numpy as np
import pytest

import pyrnn
import pyrnn.cuda
from pyrnn import callbacks, optim
from pyrnn.layers import Dense, Dropout, Embedding, LastStep, LayerNorm

from test_threads import _collide, _slow_input

pytestmark = pytest.mark.skipif(not pyrnn.cuda.is_available(),
                                reason=f"no CUDA device: {pyrnn.cuda.unavailable_reason()}")
DA = pyrnn.cuda.DeviceArray if pyrnn.cuda.is_compiled() else None


# ---- one layer, two threads -------------------------------------------------------------------

def test_zero_grad_during_a_device_backward_is_refused():
    # It used to wait for the backward and then wipe the gradients it had just accumulated.
    layer = pyrnn.GRU(16, 64, seed=0, device="cuda")
    x = _slow_input(layer, T=50, N=8)
    dy = np.ones(x.shape[:2] + (64,), np.float32)
    for _ in range(20):
        layer(x)
        err_a, err_b = _collide(lambda: layer.backward(dy), layer.zero_grad)
        if err_b is not None:
            break
    assert err_a is None and isinstance(err_b, RuntimeError), (err_a, err_b)
    assert "another thread" in str(err_b)
    assert any(np.any(p.grad.numpy() != 0) for p in layer.parameters())  # nothing wiped


@pytest.mark.parametrize("make, x", [
    (lambda: Dense(6, 4, seed=0, device="cuda"), np.ones((3, 6), np.float32)),
    (lambda: LayerNorm(6, device="cuda"), np.ones((3, 6), np.float32)),
    (lambda: Embedding(9, 4, seed=0, device="cuda"), np.array([[1, 2], [3, 8]])),
], ids=["Dense", "LayerNorm", "Embedding"])
def test_device_layers_refuse_a_second_thread(make, x):
    # The CPU paths ran inside _exclusive(layer); the device paths did not, so a second
    # thread's call raced the first's cache and gradient accumulation unnoticed.
    layer = make()
    y = layer(x)
    dy = np.ones(y.shape, np.float32)
    layer._busy_owner = (os.getpid(), threading.get_ident() + 1)  # another thread inside
    for call in (lambda: layer(x), lambda: layer.backward(dy)):
        with pytest.raises(RuntimeError, match="already running forward/backward in another "
                                               "thread; use one layer per thread"):
            call()
    layer._busy_owner = None
    layer(x)
    layer.backward(dy)  # usable again


# ---- clip_grad_norm ---------------------------------------------------------------------------

def test_clip_grad_norm_refuses_a_read_only_device_grad_before_scaling_any():
    def param(name, grad, readonly=False):
        g = pyrnn.cuda.to_device(grad)
        if readonly:
            g = DA.borrow(g.ptr, g.shape, g.dtype, g, readonly=True)
        return pyrnn.Parameter(name, pyrnn.cuda.to_device(np.zeros_like(grad)), g)
    grads = np.full(2, 10.0, np.float32)
    a, b = param("a", grads), param("b", grads, readonly=True)
    with pytest.raises(ValueError, match="parameter 'b': grad must be a writable"):
        optim.clip_grad_norm([a, b], 1.0)
    np.testing.assert_array_equal(a.grad.numpy(), grads)  # untouched, as on the host
    np.testing.assert_array_equal(b.grad.numpy(), grads)


# ---- copies -----------------------------------------------------------------------------------

def test_device_arrays_copy_like_ndarrays():
    src = pyrnn.cuda.to_device(np.arange(6.0).reshape(2, 3))
    view = DA.borrow(src.ptr, src.shape, src.dtype, src, readonly=True)
    for how in (copy.copy, copy.deepcopy):
        c = how(view)
        assert isinstance(c, DA) and c.ptr != src.ptr and not c.readonly
        assert c.shape == (2, 3) and c.dtype == np.float64
        np.testing.assert_array_equal(c.numpy(), src.numpy())
        c.copy_from(np.zeros((2, 3)))  # its own memory
        np.testing.assert_array_equal(src.numpy(), np.arange(6.0).reshape(2, 3))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_objects_holding_device_state_deepcopy_as_on_the_host(device):
    # An optimizer, EarlyStopping's best weights and a Parameter deepcopied on the CPU but
    # raised TypeError on a device.
    model = pyrnn.Sequential([pyrnn.LSTM(3, 4, batch_first=True, seed=0), LastStep(),
                              Dense(4, 2, seed=1)])
    model.to(device)
    opt = optim.Adam(model.parameters(), lr=0.1)
    x = np.random.default_rng(0).standard_normal((5, 6, 3)).astype(np.float32)
    y = model(x)
    model.backward(np.ones_like(y))
    opt.step()
    stop = callbacks.EarlyStopping(patience=1)
    stop._best_weights = [p.data.copy() for p in model.parameters()]  # as at its best epoch
    opt2, stop2, p2 = copy.deepcopy((opt, stop, opt.params[0]))
    pairs = [(p.data, q.data) for p, q in zip(opt.params, opt2.params)]
    pairs += [(st[k], st2[k]) for st, st2 in zip(opt.state, opt2.state) for k in st
              if not isinstance(st[k], (int, float))]
    pairs += list(zip(stop._best_weights, stop2._best_weights)) + [(opt.params[0].data, p2.data)]
    assert len(pairs) > 2 * len(opt.params)
    for a, b in pairs:
        assert type(a) is type(b)
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
        if device == "cuda":
            assert a.ptr != b.ptr  # copies, not views


@pytest.mark.parametrize("how", ["deepcopy-model-first", "deepcopy-optimizer-first",
                                 "pickle-model-first", "pickle-optimizer-first"])
def test_copied_optimizer_trains_the_copied_device_model(how):
    # Pickling an optimizer with state (device arrays) was a TypeError.
    from test_recurrent_copy import check_copied_optimizer_trains_the_copied_model
    check_copied_optimizer_trains_the_copied_model("cuda", how)


def test_pickled_device_arrays():
    # pyrnn's own memory pickles as its values (a new device array on unpickle), as CuPy's
    # arrays do; a view of memory it does not own (a layer's parameter) is refused.
    import pickle
    host = np.arange(12, dtype=np.float64).reshape(3, 4)
    a = pyrnn.cuda.to_device(host)
    ro = DA.borrow(a.ptr, a.shape, a.dtype, a, readonly=True)
    for arr in (a, a.reshape(4, 3), ro, DA.zeros((0, 2))):
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            b = pickle.loads(pickle.dumps(arr, protocol))
            assert isinstance(b, DA) and b.ptr != arr.ptr or arr.size == 0
            assert (b.shape, b.dtype, b.device, b.readonly) == (arr.shape, arr.dtype, arr.device,
                                                                arr.readonly)
            np.testing.assert_array_equal(b.numpy(), arr.numpy())
    layer = pyrnn.LSTM(3, 4, seed=0, device="cuda")
    with pytest.raises(TypeError, match="memory pyrnn does not own"):
        pickle.dumps(layer.params["weight_ih_l0"])
    assert pickle.loads(pickle.dumps(layer)).device == "cuda"  # layers carry host copies


def test_copied_parameter_of_a_moved_layer_copies_its_arrays():
    # After to(), the Parameter's arrays are no longer its layer's: copied as arrays.
    lstm = pyrnn.LSTM(3, 4, seed=0)
    p = next(lstm.parameters())
    lstm.to("cuda")
    q = copy.deepcopy(p)
    assert q._owner is None and isinstance(q.data, np.ndarray)
    np.testing.assert_array_equal(q.data, p.data)


# ---- 0-d arrays, dtypes -----------------------------------------------------------------------

def test_zero_d_arrays_stay_zero_d():
    assert DA.zeros(()).shape == () and DA.zeros(()).numpy() == 0
    a = DA.empty((), "float64")
    a.copy_from(np.array(1.5))
    assert a.numpy().shape == () and a.numpy() == 1.5
    b = pyrnn.cuda.to_device(np.float32(3.5))
    assert b.shape == () and b.numpy() == 3.5
    one = DA.zeros((1,))
    one.copy_from(1.5)  # a scalar into one element still works
    assert one.numpy().tolist() == [1.5]
    d = Dropout(0.5, seed=3, device="cuda")  # training mode: uploads, draws a mask
    y = d(np.float64(2.0))
    assert y.shape == Dropout(0.5, seed=3)(np.float64(2.0)).shape == ()
    assert d.backward(np.float64(1.0)).shape == ()
    with pytest.raises(ValueError, match=r"got \(\)"):
        Dense(3, 2, device="cuda")(np.float32(1.0))


@pytest.mark.parametrize("x_dtype, dy_dtype", [("float64", "float64"), ("float64", "float32"),
                                               ("float32", "float64")])
def test_a_model_of_parameterless_layers_keeps_the_input_dtype(x_dtype, dy_dtype):
    # The device model rounded float64 to float32; its backward must then take a dy of
    # another float dtype as the CPU model does (converted to the forward's).
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 5, 6)).astype(x_dtype)
    dy = rng.standard_normal((4, 6)).astype(dy_dtype)
    res = []
    for device in ("cpu", "cuda"):
        m = pyrnn.Sequential([Dropout(0.0), LastStep()]).to(device)
        y = m(x)
        res.append((y, m.backward(dy)))
    for (y, dx) in res:
        assert y.dtype == dx.dtype == np.dtype(x_dtype)
    np.testing.assert_array_equal(res[1][0], res[0][0])
    np.testing.assert_array_equal(res[1][1], res[0][1])


def test_laststep_computes_float16_in_float32_on_both_devices():
    x = np.random.default_rng(2).standard_normal((3, 4, 5)).astype(np.float16)
    outs = []
    for device in ("cpu", "cuda"):
        layer = LastStep(device=device)
        y = layer(x)
        dx = layer.backward(np.ones_like(y))
        assert y.dtype == dx.dtype == np.float32, device
        outs.append((y, dx))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][0], x[:, -1].astype(np.float32))
    np.testing.assert_array_equal(outs[0][1], outs[1][1])


# ---- sizes past the kernels' int --------------------------------------------------------------

def test_extents_past_int_are_value_errors():
    # A view imported through __cuda_array_interface__ can claim any shape; the kernels take
    # int extents, so these must be refused before any launch (they were OverflowErrors).
    mem = DA.zeros((8,))
    k = pyrnn.cuda.kernels()
    for shape, call in [
            ((2**31, 1, 2), lambda a: k.last_step_forward(a, None, 1)),
            ((1, 2**31, 2), lambda a: k.last_step_forward(a, None, 1)),
            ((2**31, 2), lambda a: k.last_step_backward(a, None, 3, 1)),
            ((2, 2**31), lambda a: k.layernorm_forward(a, mem, mem, 1e-5))]:
        big = DA.borrow(mem.ptr, shape, "float32", mem)
        with pytest.raises(ValueError, match="must be below 2\\*\\*31"):
            call(big)
    with pytest.raises(ValueError, match="must be below 2\\*\\*31"):
        LastStep(device="cuda")(DA.borrow(mem.ptr, (2**31, 1, 2), "float32", mem))


# ---- interop misuse ---------------------------------------------------------------------------

def test_from_cuda_array_interface_refuses_host_arrays_with_a_type_error():
    for host in (np.ones(3), [1.0, 2.0], 3.0):
        with pytest.raises(TypeError, match="has no __cuda_array_interface__: pyrnn.cuda."
                                            "as_device_array or from_dlpack take DLPack"):
            pyrnn.cuda.from_cuda_array_interface(host)


# ---- DLPack export to the host ----------------------------------------------------------------

@pytest.mark.parametrize("readonly", [False, True])
@pytest.mark.parametrize("shape", [(2, 3), (), (0, 4)])
def test_numpy_from_dlpack_of_a_device_array_is_a_host_copy(shape, readonly):
    # np.from_dlpack(device="cpu") asks for dl_device=(kDLCPU, 0); a BufferError before.
    host = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    a = pyrnn.cuda.to_device(host)
    if readonly:
        a = DA.borrow(a.ptr, a.shape, a.dtype, a, readonly=True)
    from test_cuda_host import capsule_tensor
    numpy_2_1 = np.lib.NumpyVersion(np.__version__) >= "2.1.0"  # max_version, dl_device, copy
    cap = a.__dlpack__(max_version=(1, 0), dl_device=(1, 0))
    t = capsule_tensor(cap, b"dltensor_versioned" if numpy_2_1 else b"dltensor")
    assert t.dl_tensor.device.device_type == 1  # kDLCPU
    if numpy_2_1:
        assert t.flags & 2  # DLPACK_FLAG_BITMASK_IS_COPIED
    del t, cap
    if numpy_2_1:
        # (Without device="cpu", NumPy asks for the array where it is, and refuses CUDA.)
        for out in (np.from_dlpack(a, device="cpu"), np.from_dlpack(a, device="cpu", copy=True)):
            assert out.shape == shape and out.dtype == np.float64
            np.testing.assert_array_equal(out, host)
            out[...] = -1  # a copy: the device array is unchanged
        np.testing.assert_array_equal(a.numpy(), host)
        with pytest.raises(BufferError, match="copy=False"):
            np.from_dlpack(a, device="cpu", copy=False)


def test_device_array_dtype_none_is_float32():
    # np.dtype(None) is float64: DeviceArray.empty(shape, None) disagreed with the layers'
    # dtype=None (float32, as torch).
    assert DA.empty((2,), None).dtype == np.float32
    assert DA.zeros((2, 3), None).dtype == np.float32


def test_a_nested_first_model_gets_its_input_in_its_own_dtype():
    # Only the outer model's first layer was looked at: token ids for a nested [Embedding, GRU]
    # were uploaded as float32 (refused), float32 data for a nested float64 GRU stayed float32.
    ids = np.random.default_rng(0).integers(0, 5, (4, 3))
    x = np.random.default_rng(1).standard_normal((4, 3, 2)).astype(np.float32)
    for inner, data in ((lambda d: [pyrnn.Embedding(5, 2, device=d),
                                    pyrnn.GRU(2, 3, batch_first=True, device=d)], ids),
                        (lambda d: [pyrnn.GRU(2, 3, batch_first=True, dtype="float64",
                                              device=d)], x)):
        models = [pyrnn.Sequential([pyrnn.Sequential(inner(d)), LastStep(device=d),
                                    Dense(3, 1, dtype=inner("cpu")[-1].dtype, device=d)])
                  for d in ("cpu", "cuda")]
        models[1].load_params(models[0].params)
        np.testing.assert_allclose(models[1].predict(data), models[0].predict(data), rtol=1e-5,
                                   atol=1e-6)


def test_an_empty_nested_model_does_not_pin_the_device():
    # An empty Sequential reported "cpu", so a model holding one could never run on the GPU.
    m = pyrnn.Sequential([pyrnn.Sequential([]), pyrnn.GRU(2, 3, batch_first=True), LastStep()])
    m.to("cuda")
    assert m.device == "cuda"
    assert m.predict(np.zeros((2, 4, 2), np.float32)).shape == (2, 3)


def test_the_first_load_from_several_threads_sees_the_backend(tmp_path):
    # _load() marked itself done before the module was set: other threads saw "unavailable:
    # None" (is_available() False on a working device) while one thread imported it.
    import os
    import subprocess
    import sys
    code = """
import threading, pyrnn.cuda as c
results = []
def probe():
    try:
        results.append((c.is_available(), c.options()["algo"]))
    except Exception as e:
        results.append(repr(e))
ts = [threading.Thread(target=probe) for _ in range(8)]
for t in ts: t.start()
for t in ts: t.join()
print(set(map(str, results)))
"""
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=tmp_path, env=dict(os.environ), timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "{\"(True, 'auto')\"}", out.stdout


# ---- the device's tiles in the host emulation -----------------------------------------------------

def _state_pairs(a, b):
    """(device, host) pairs of final states: h_n, or LSTM's (h_n, c_n)."""
    return list(zip(a, b)) if isinstance(b, tuple) else [(a, b)]


@pytest.mark.parametrize("cls, kw", [(pyrnn.LSTM, {}), (pyrnn.GRU, {}),
                                     (pyrnn.GRU, {"reset_after": False}), (pyrnn.RNN, {})],
                         ids=["lstm", "gru", "gru_before", "rnn"])
def test_step_kernels_with_the_devices_tiles_match_the_cpu(monkeypatch, cls, kw):
    # The emulation's own tiles are tiny (kc 4, nc 2) so that small tests take every path; a
    # device tiles with kc = min(K, 128) and nc = min(N, 64) (cells.cu). Here the step kernels
    # run with those: a batch past one 64-row tile (70, 66), sums past one 128-long chunk
    # (H = 150: K = 150 forward, G*150 backward), K under one chunk (H = 33, 40), a requested
    # block count, a single unit; bidirectional, with and without lengths, against the CPU.
    from _emulation import EMULATED
    if not EMULATED:
        pytest.skip("sets the host emulation's tile sizes")
    monkeypatch.setenv("PYRNN_EMU_DEVICE_TILES", "1")
    rng = np.random.default_rng(5)
    for T, N, C, H, blocks in [(2, 70, 3, 40, 0), (2, 3, 3, 150, 0), (2, 66, 2, 33, 5),
                               (1, 1, 1, 1, 0)]:
        for algo in ("fused", "persistent"):
            for with_lengths in (False, True):
                cpu = cls(C, H, seed=3, dtype="float64", bidirectional=True, **kw)
                dev = cls(C, H, seed=3, dtype="float64", bidirectional=True, device="cuda", **kw)
                pyrnn.cuda.configure(dev, algo=algo, persist_blocks=blocks, graphs=False)
                x = rng.standard_normal((T, N, C))
                lengths = None
                if with_lengths:
                    lengths = rng.integers(1, T + 1, N)
                    lengths[0] = T
                y_cpu, h_cpu = cpu(x, lengths=lengths)
                y_dev, h_dev = dev(x, lengths=lengths)
                dy = rng.standard_normal(y_cpu.shape)
                want, got = cpu.backward(dy), dev.backward(dy)
                case = f"T={T} N={N} C={C} H={H} blocks={blocks} {algo} lengths={with_lengths}"
                ran = pyrnn.cuda.layer_options(dev)
                assert (ran["last_forward_algo"], ran["last_backward_algo"]) == (algo, algo), case
                pairs = [(y_dev, y_cpu)] + _state_pairs(h_dev, h_cpu) + list(zip(got, want))
                for a, b in pairs:
                    if b is not None:
                        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10,
                                                   atol=1e-12, err_msg=case)
                for k, g in dev.numpy_grads().items():
                    np.testing.assert_allclose(g, cpu.grads[k], rtol=1e-10, atol=1e-12,
                                               err_msg=f"{case} {k}")


# ---- what only a real GPU shows (from a static review of the kernels) ---------------------------

def test_two_persistent_grids_at_once_finish_and_match_cublas():
    # Bidirectional with streams: each direction's persistent backward is a cooperative grid,
    # and at H = 512 in float64 one block fills an SM, so the two grids compete for every SM.
    # They must be serialised by the driver (never one launched in part: its grid barrier would
    # wait for ever) and give the cuBLAS path's results. (gpu_session.sh runs pytest with a
    # 90 s timeout per test, so a hang fails here instead of stalling the session.)
    from _emulation import EMULATED
    if EMULATED:
        pytest.skip("a GPU's co-residency only: far too slow over the host emulation")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 64, 32))
    dy = rng.standard_normal((4, 64, 2 * 512))
    grads = {}
    for algo in ("cublas", "persistent"):
        layer = pyrnn.LSTM(32, 512, bidirectional=True, dtype="float64", device="cuda", seed=5)
        pyrnn.cuda.configure(layer, algo=algo, streams=True)
        out, _ = layer(x)
        dx, _ = layer.backward(dy)
        ran = pyrnn.cuda.layer_options(layer)
        grads[algo] = (np.asarray(out), np.asarray(dx),
                       {k: v.numpy() for k, v in layer.grads.items()},
                       ran["last_forward_algo"], ran["last_backward_algo"])
    ref, got = grads["cublas"], grads["persistent"]
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-10, atol=1e-12)
    for k in ref[2]:
        np.testing.assert_allclose(got[2][k], ref[2][k], rtol=1e-10, atol=1e-11, err_msg=k)
    print("persistent run:", got[3], got[4])  # what ran (a fallback is allowed, and shown)


def test_graph_capture_works_on_the_first_pass_of_a_fresh_process(tmp_path):
    # The step kernels and GEMM shapes are first launched inside the stream capture, where CUDA's
    # lazy module loading applies: if that made the capture fail, graphs would be switched off
    # for the layer for good (graphs_disabled_reason), silently costing the graphs' speed.
    import subprocess
    import sys
    child = (
        "import numpy as np, pyrnn, pyrnn.cuda\n"
        "layer = pyrnn.GRU(8, 16, device='cuda', seed=0)\n"
        "pyrnn.cuda.configure(layer, algo='cublas', graphs=True)\n"
        "x = np.ones((5, 3, 8), np.float32)\n"
        "out, _ = layer(x); layer.backward(np.ones_like(out))\n"
        "o = pyrnn.cuda.layer_options(layer)\n"
        "print(o['graphs_disabled_reason'], o['last_forward_graphs'], o['last_backward_graphs'])\n")
    res = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ["None", "True", "True"], res.stdout


def test_uploads_refuse_finite_values_beyond_float32():
    # The CPU layers' rule (pyrnn._validate.cast_finite): to_device and copy_from narrowed 1e39
    # to Inf with only numpy's warning, and a float32 layer then took the Inf as it was.
    with pytest.raises(ValueError, match=r"beyond the float32 range \(the largest is 1e\+39\)"):
        pyrnn.cuda.to_device(np.array([1.0, -1e39, 2.0]), "float32")
    d = pyrnn.cuda.to_device(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="beyond the float32 range"):
        d.copy_from(np.full(3, 1e39))
    assert (d.numpy() == 0).all()
    d.copy_from(np.array([np.inf, -np.inf, 1.0]))  # Inf is a value: it stays
    assert np.isinf(d.numpy()[:2]).all()


# ---- found by the Python CUDA API hunt of 2026-12-04 (host emulation) ------------------------
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_editing_a_device_dense_output_leaves_its_gradients(activation):
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 1))
    d = Dense(3, 1, activation=activation, seed=0, dtype="float64", device="cuda")
    xd = pyrnn.cuda.to_device(x)
    p = d(xd)
    d.backward(pyrnn.cuda.to_device((p.numpy() - t) / 4))
    want = d.numpy_grads()
    d.zero_grad()
    p = d(xd)
    p.copy_from(p.numpy() - t)  # the caller edits its output in place
    d.backward(pyrnn.cuda.to_device(p.numpy() / 4))
    for k, v in d.numpy_grads().items():
        np.testing.assert_allclose(v, want[k], rtol=1e-14, atol=0)


@pytest.mark.parametrize("to", ["cuda", "cpu"])
def test_an_optimizer_over_a_moved_layer_refuses_to_step(to):
    layer = pyrnn.LSTM(3, 4, seed=0, device="cpu" if to == "cuda" else "cuda")
    opt = optim.SGD(layer.parameters(), lr=0.1)
    layer.to(to)
    w0 = layer.numpy_params()
    for call in (opt.step, opt.zero_grad):
        with pytest.raises(RuntimeError, match="no longer views its layer's memory"):
            call()
    with pytest.raises(RuntimeError, match="no longer views"):
        optim.Adam(opt.params)
    for k, v in layer.numpy_params().items():
        np.testing.assert_array_equal(v, w0[k])
    optim.SGD(layer.parameters(), lr=0.1).step()  # one built after the move is fine


@pytest.mark.parametrize("loss, target", [
    (pyrnn.losses.MSELoss(), np.ones((2, 3))),
    (pyrnn.losses.BCEWithLogitsLoss(), np.ones((2, 3))),
    (pyrnn.losses.CrossEntropyLoss(), np.array([0, 2])),
])
def test_losses_take_device_targets_as_host_ones(loss, target):
    pred = np.random.default_rng(0).standard_normal((2, 3))
    want = loss(pred, target)
    want_d = loss.backward()
    assert loss(pyrnn.cuda.to_device(pred), pyrnn.cuda.to_device(target)) == want
    np.testing.assert_array_equal(loss.backward().numpy(), want_d)
    assert loss(pred, pyrnn.cuda.to_device(target)) == want


def test_uploads_to_int64_refuse_nan_and_inf():
    with pytest.raises(ValueError, match="NaN or Inf values, which int64 cannot hold"):
        pyrnn.cuda.to_device(np.array([np.nan, 2.0]), dtype="int64")
    a = pyrnn.cuda.to_device(np.array([1, 2]), dtype="int64")
    with pytest.raises(ValueError, match="NaN or Inf"):
        a.copy_from(np.array([np.inf, 1.0]))
    np.testing.assert_array_equal(a.numpy(), [1, 2])


def test_uploads_to_int64_refuse_values_past_its_range():
    # Finite floats past int64 became INT64_MIN (a NumPy warning only), uint64 past 2**63
    # wrapped around (no warning): refused, as float32 overflow is.
    for bad in (np.array([1e30, 1.0]), np.array([-1e19]), np.array([2.0**63]),
                np.array([2**63 + 5], np.uint64)):
        with pytest.raises(ValueError, match="beyond the int64 range"):
            pyrnn.cuda.to_device(bad, dtype="int64")
    a = pyrnn.cuda.to_device(np.array([1, 2]), dtype="int64")
    with pytest.raises(ValueError, match="beyond the int64 range"):
        a.copy_from(np.array([1e30, 1.0]))
    np.testing.assert_array_equal(a.numpy(), [1, 2])
    ok = np.array([2.0**62, -2.0**63])  # the edges that fit
    np.testing.assert_array_equal(pyrnn.cuda.to_device(ok, dtype="int64").numpy(),
                                  ok.astype(np.int64))
    big = np.array([2**63 - 1], np.uint64)
    assert pyrnn.cuda.to_device(big, dtype="int64").numpy()[0] == 2**63 - 1


def test_persist_blocks_default_in_any_case():
    # (the other four options and the environment take 'DEFAULT'; this setter wanted 'default')
    pyrnn.cuda.set_persist_blocks(3)
    pyrnn.cuda.set_persist_blocks("DEFAULT")
    assert pyrnn.cuda.options()["persist_blocks"] == 0
    layer = pyrnn.GRU(2, 3, device="cuda")
    pyrnn.cuda.configure(layer, persist_blocks="Default")
    assert pyrnn.cuda.layer_options(layer)["options"]["persist_blocks"] == "default"


def test_configure_options_travel_with_copies_not_with_save(tmp_path):
    import pickle
    layer = pyrnn.LSTM(2, 3, batch_first=True, device="cuda")
    pyrnn.cuda.configure(layer, algo="cublas", graphs=False)
    want = pyrnn.cuda.layer_options(layer)["options"]
    for twin in [copy.copy(layer), copy.deepcopy(layer), pickle.loads(pickle.dumps(layer)),
                 layer.to("cpu").to("cuda")]:
        assert pyrnn.cuda.layer_options(twin)["options"] == want
    # As a torch state dict, a saved model holds no execution options (docs/cuda_performance.md).
    pyrnn.save(pyrnn.Sequential([layer]), tmp_path / "m.pyrnn")
    loaded = pyrnn.load(tmp_path / "m.pyrnn", device="cuda")[0]
    assert pyrnn.cuda.layer_options(loaded)["options"]["algo"] == "default"


def test_big_endian_host_data_uploads_as_its_values():
    a = pyrnn.cuda.to_device(np.arange(3, dtype=">f8"))
    assert a.dtype == np.float64
    np.testing.assert_array_equal(a.numpy(), [0, 1, 2])


def test_borrow_checks_the_device_index():
    b = pyrnn.cuda.to_device(np.arange(2.0))
    n = pyrnn.cuda.device_count()
    with pytest.raises(ValueError, match=f"CUDA device {n} out of range"):
        DA.borrow(b.ptr, (2,), "float64", b, device=n)


def test_option_setters_take_numpy_bools_and_ints():
    before = pyrnn.cuda.options()
    try:
        pyrnn.cuda.set_graphs(np.True_)
        assert pyrnn.cuda.options()["graphs"] is True
        pyrnn.cuda._need().set_default_options(persist_blocks=np.int64(3))
        assert pyrnn.cuda.options()["persist_blocks"] == 3
        with pytest.raises(TypeError, match="persist_blocks"):  # a bool is no count
            pyrnn.cuda._need().set_default_options(persist_blocks=np.bool_(True))
    finally:
        pyrnn.cuda._need().set_default_options(**before)


@pytest.mark.parametrize("cls", [pyrnn.GRU, pyrnn.LSTM])
def test_backward_from_a_device_final_state_only_stays_on_the_device(cls):
    layer = cls(3, 4, seed=0, device="cuda")
    x = pyrnn.cuda.to_device(np.ones((5, 2, 3), np.float32))
    layer(x)
    dh = pyrnn.cuda.to_device(np.ones((1, 2, 4), np.float32))
    extra = (None,) if cls is pyrnn.LSTM else ()
    dx = layer.backward(None, dh, *extra)[0]
    assert isinstance(dx, DA)
    layer(x)
    want = layer.backward(pyrnn.cuda.to_device(np.zeros((5, 2, 4), np.float32)), dh, *extra)[0]
    np.testing.assert_array_equal(dx.numpy(), want.numpy())


def test_device_relu_backward_passes_zero_for_inactive_units_whatever_dy():
    # As torch's threshold_backward (and the CPU): 0 * Inf was NaN.
    d = Dense(2, 2, activation="relu", seed=0, device="cuda")
    d.params = {"weight": np.array([[1, 0], [-1, 0]], np.float32),
                "bias": np.zeros(2, np.float32)}
    x = np.array([[1.0, 0.0]], np.float32)
    d(x)
    dx = d.backward(np.array([[1.0, np.inf]], np.float32))
    np.testing.assert_array_equal(dx, [[1.0, 0.0]])
    np.testing.assert_array_equal(d.numpy_grads()["weight"], [[1, 0], [0, 0]])
    cpu = pyrnn.RNN(3, 5, nonlinearity="relu", seed=1)
    gpu = pyrnn.RNN(3, 5, nonlinearity="relu", seed=1, device="cuda")
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    y = cpu(x)[0]
    gpu(x)
    dy = np.ones_like(y)
    dy[y == 0] = np.inf
    got, want = gpu.backward(dy)[0], cpu.backward(dy)[0]
    assert np.isfinite(got).all() and np.isfinite(want).all()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for k, v in gpu.numpy_grads().items():
        assert np.isfinite(v).all()
        np.testing.assert_allclose(v, cpu.grads[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [lambda: LayerNorm(6), lambda: Dense(6, 4, "tanh", seed=0)])
def test_overwriting_a_device_input_before_backward_changes_nothing(make):
    # A device input is the caller's memory (zero-copy): the training forward keeps a copy of
    # it (LayerNorm's kernel makes it in the same pass), so backward differentiates the input
    # the forward saw, as on the CPU.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 6)).astype(np.float32) + 2
    cpu, dev = make(), make().to("cuda")
    dy = rng.standard_normal(cpu.forward(x).shape).astype(np.float32)
    dx_want = cpu.backward(dy)
    xd = pyrnn.cuda.to_device(x)
    dev.forward(xd)
    xd.copy_from(np.full(x.shape, 100.0, np.float32))
    dx = dev.backward(pyrnn.cuda.to_device(dy)).numpy()
    np.testing.assert_allclose(dx, dx_want, rtol=1e-5, atol=1e-6)
    for k, g in dev.numpy_grads().items():
        np.testing.assert_allclose(g, cpu.grads[k], rtol=1e-5, atol=1e-6, err_msg=k)


def _legacy_stream_hooks():
    """The host emulation's stand-in for another library (PyTorch, CuPy, Numba) queueing work
    on the legacy default stream, their default: on a device there is no such hook."""
    from _emulation import EMULATED
    if not EMULATED:
        pytest.skip("needs the host emulation's streams")
    import ctypes
    lib = ctypes.CDLL(pyrnn.cuda.kernels().__file__)
    lib.pyrnn_emu_legacy_memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    lib.pyrnn_emu_legacy_copy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.pyrnn_emu_pending.restype = ctypes.c_ulonglong
    return lib


def test_work_another_library_queued_on_the_legacy_stream_comes_first():
    # pyrnn's stream is non-blocking: nothing ordered it after work another library had queued
    # on the legacy stream for an array pyrnn then used (a torch mul_ on the DLPack view of a
    # layer's output, then the next layer read it; a clone of a weight still queued when an
    # optimizer step overwrote it). Each call now waits for the legacy stream first.
    lib = _legacy_stream_hooks()
    dense = Dense(4, 3, seed=0, device="cuda")
    lstm = pyrnn.LSTM(4, 5, batch_first=True, device="cuda", seed=0)
    zeros = np.zeros((2, 3, 4), np.float32)
    want_dense = dense.forward(pyrnn.cuda.to_device(zeros)).numpy()
    want_lstm = lstm(pyrnn.cuda.to_device(zeros))[0].numpy()
    for run, want in [(dense.forward, want_dense), (lambda a: lstm(a)[0], want_lstm)]:
        x = pyrnn.cuda.to_device(np.ones((2, 3, 4), np.float32))
        lib.pyrnn_emu_legacy_memset(x.ptr, 0, x.nbytes)  # still queued: zeroes x when run
        np.testing.assert_array_equal(run(x).numpy(), want)
    # The other way: a copy of the weight still queued when a step overwrites it.
    w = dense.params["weight"]
    before = w.numpy()
    dense.forward(pyrnn.cuda.to_device(np.ones((2, 4), np.float32)))
    dense.backward(pyrnn.cuda.to_device(np.ones((2, 3), np.float32)))
    snapshot = pyrnn.cuda.DeviceArray.empty(w.shape, w.dtype)
    lib.pyrnn_emu_legacy_copy(snapshot.ptr, w.ptr, w.nbytes)
    optim.SGD(dense.parameters(), lr=0.5).step()
    assert not np.array_equal(w.numpy(), before)  # the step moved the weight...
    np.testing.assert_array_equal(snapshot.numpy(), before)  # ...after the copy had read it
    # A recurrent backward after a write to d_out, and zero_grad after a read of the grads.
    x = pyrnn.cuda.to_device(np.ones((2, 3, 4), np.float32))
    lstm(x)
    dx_zero = lstm.backward(pyrnn.cuda.to_device(np.zeros((2, 3, 5), np.float32)))[0].numpy()
    lstm(x)
    d_out = pyrnn.cuda.to_device(np.ones((2, 3, 5), np.float32))
    lib.pyrnn_emu_legacy_memset(d_out.ptr, 0, d_out.nbytes)
    np.testing.assert_array_equal(lstm.backward(d_out)[0].numpy(), dx_zero)
    g = lstm.grads["weight_ih_l0"]
    lstm(x)
    lstm.backward(pyrnn.cuda.to_device(np.ones((2, 3, 5), np.float32)))
    grads = g.numpy()
    snapshot = pyrnn.cuda.DeviceArray.empty(g.shape, g.dtype)
    lib.pyrnn_emu_legacy_copy(snapshot.ptr, g.ptr, g.nbytes)
    lstm.zero_grad()
    assert not g.numpy().any() and grads.any()
    np.testing.assert_array_equal(snapshot.numpy(), grads)
    assert lib.pyrnn_emu_pending() == 0
