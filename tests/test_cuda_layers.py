"""CUDA layers against the CPU backend: every output and gradient, over the CPU tests' grid
(cells incl. both GRU forms, layers, bidirectional, lengths, hx, float32/float64, time-major /
batch_first / unbatched), dropout masks, accumulation, layer.to(), and the device-array
protocols (DeviceArray, torch CUDA tensors / CuPy when present). Skipped without a device.

Twin layers are built with the same seed, so they start bitwise equal; the GPU must then match
the CPU to 1e-10 (float64) or 1e-5 relative (float32).
"""
import ctypes
import itertools
import zlib

import numpy as np
import pytest

import pyrnn
import pyrnn.cuda
from _emulation import live_device_allocations
from reference import make_layer as make

pytestmark = pytest.mark.skipif(not pyrnn.cuda.is_available(),
                                reason=f"no CUDA device: {pyrnn.cuda.unavailable_reason()}")

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru", "gru_after")
TOL = {"float64": dict(rtol=1e-10, atol=1e-10), "float32": dict(rtol=1e-5, atol=1e-5)}


def seed_of(*parts):
    return zlib.crc32(repr(parts).encode())


def twins(cell, C, H, L=1, **kw):
    cpu = make(cell, C, H, L, **kw)
    gpu = make(cell, C, H, L, device="cuda", **kw)
    for k, v in gpu.numpy_params().items():
        np.testing.assert_array_equal(v, cpu.params[k], err_msg=f"initial {k}")
    return cpu, gpu


def close(got, want, dtype, what):
    got = got.numpy() if isinstance(got, pyrnn.cuda.DeviceArray) else got
    np.testing.assert_allclose(got, want, err_msg=what, **TOL[np.dtype(dtype).name])


GRID = list(itertools.product(CELLS, (1, 2), (False, True), (False, True), (False, True),
                              ("float32", "float64"), ("tnc", "ntc", "tc", "tc_bf")))


@pytest.mark.parametrize("cell, L, bidir, use_lengths, use_hx, dtype, layout", GRID)
def test_matches_cpu(cell, L, bidir, use_lengths, use_hx, dtype, layout):
    if layout in ("tc", "tc_bf") and use_lengths:
        pytest.skip("lengths need a batch")
    rng = np.random.default_rng(seed_of(cell, L, bidir, use_lengths, use_hx, dtype, layout))
    C, H, T, N = 5, 7, 6, 3
    kw = dict(bidirectional=bidir, dtype=dtype, seed=seed_of("w", cell, L),
              batch_first=layout in ("ntc", "tc_bf"))
    cpu, gpu = twins(cell, C, H, L, **kw)
    D = 2 if bidir else 1
    shape = {"tnc": (T, N, C), "ntc": (N, T, C), "tc": (T, C), "tc_bf": (T, C)}[layout]
    x = rng.standard_normal(shape)
    sshape = (L * D, H) if layout in ("tc", "tc_bf") else (L * D, N, H)
    hx = None
    if use_hx:
        hx = rng.standard_normal(sshape)
        if cell == "lstm":
            hx = (hx, rng.standard_normal(sshape))
    lengths = [T, 2, 4] if use_lengths else None
    for n, length in enumerate(lengths or ()):  # padding is never read: NaN must not leak out
        if layout == "ntc":
            x[n, length:] = np.nan
        else:
            x[length:, n] = np.nan
    out_c, st_c = cpu(x, hx, lengths)
    out_g, st_g = gpu(x, hx, lengths)
    assert isinstance(out_g, np.ndarray)  # NumPy in, NumPy out
    close(out_g, out_c, dtype, "output")
    if cell == "lstm":
        close(st_g[0], st_c[0], dtype, "h_n")
        close(st_g[1], st_c[1], dtype, "c_n")
    else:
        close(st_g, st_c, dtype, "h_n")

    d_out = rng.standard_normal(out_c.shape)
    d_hn = rng.standard_normal(sshape)
    for _ in range(2):  # parameter gradients accumulate
        if cell == "lstm":
            d_cn = rng.standard_normal(sshape)
            dx_c, (dh0_c, dc0_c) = cpu.backward(d_out, d_hn, d_cn)
            dx_g, (dh0_g, dc0_g) = gpu.backward(d_out, d_hn, d_cn)
            close(dc0_g, dc0_c, dtype, "dc0")
        else:
            dx_c, dh0_c = cpu.backward(d_out, d_hn)
            dx_g, dh0_g = gpu.backward(d_out, d_hn)
        close(dx_g, dx_c, dtype, "dx")
        close(dh0_g, dh0_c, dtype, "dh0")
    for k, v in gpu.numpy_grads().items():
        assert np.isfinite(v).all() and np.isfinite(cpu.grads[k]).all(), k
        close(v, cpu.grads[k], dtype, f"grad {k}")
    assert np.isfinite(out_g).all() and np.isfinite(dx_g).all()
    gpu.zero_grad()
    assert all(not v.any() for v in gpu.numpy_grads().values())


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_no_bias_matches_cpu(cell, dtype):
    rng = np.random.default_rng(seed_of("nobias", cell, dtype))
    cpu, gpu = twins(cell, 4, 6, 2, bias=False, bidirectional=True, dtype=dtype, seed=3)
    x = rng.standard_normal((5, 3, 4))
    out_c, _ = cpu(x, lengths=[5, 1, 3])
    out_g, _ = gpu(x, lengths=[5, 1, 3])
    close(out_g, out_c, dtype, "output")
    d = rng.standard_normal(out_c.shape)
    close(gpu.backward(d)[0], cpu.backward(d)[0], dtype, "dx")
    for k, v in gpu.numpy_grads().items():
        close(v, cpu.grads[k], dtype, f"grad {k}")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_masks_and_eval_match(cell, dtype):
    rng = np.random.default_rng(seed_of("drop", cell, dtype))
    cpu, gpu = twins(cell, 4, 6, 3, dropout=0.4, bidirectional=True, dtype=dtype, seed=7)
    x = rng.standard_normal((5, 3, 4))
    for mode in ("train", "eval"):
        getattr(cpu, mode)()
        getattr(gpu, mode)()
        out_c, _ = cpu(x)
        out_g, _ = gpu(x)
        close(out_g, out_c, dtype, f"{mode} output")
    cpu.train()
    gpu.train()
    out_c, _ = cpu(x)
    out_g, _ = gpu(x)
    d = rng.standard_normal(out_c.shape)
    close(gpu.backward(d)[0], cpu.backward(d)[0], dtype, "dx through dropout")
    for k, v in gpu.numpy_grads().items():
        close(v, cpu.grads[k], dtype, f"grad {k}")


def test_eval_has_no_cache_and_backward_errors():
    gpu = make("lstm", 3, 4, device="cuda").eval()
    gpu(np.ones((2, 1, 3)))
    with pytest.raises(RuntimeError, match="training mode"):
        gpu.backward(np.ones((2, 1, 4)))
    with pytest.raises(ValueError, match="lengths"):
        gpu.train()(np.ones((2, 2, 3)), lengths=[1, 3])


def test_to_moves_params_and_grads():
    rng = np.random.default_rng(3)
    layer = make("gru_after", 3, 5, 2, bidirectional=True, dtype="float64", seed=11)
    ref = make("gru_after", 3, 5, 2, bidirectional=True, dtype="float64", seed=11)
    x = rng.standard_normal((4, 2, 3))
    d = rng.standard_normal((4, 2, 10))
    ref(x)
    ref.backward(d)
    layer(x)
    layer.backward(d)
    assert layer.to("cuda") is layer and layer.device == "cuda"
    assert isinstance(layer.params["weight_ih_l0"], pyrnn.cuda.DeviceArray)
    for k, v in layer.numpy_grads().items():
        np.testing.assert_array_equal(v, ref.grads[k])
    layer(x)
    layer.backward(d)  # accumulates on top of the moved gradients
    ref(x)
    ref.backward(d)
    layer.to("cpu")
    assert isinstance(layer.params["weight_ih_l0"], np.ndarray)
    for k, v in layer.grads.items():
        close(v, ref.grads[k], "float64", k)


def test_params_are_device_views():
    gpu = make("lstm", 3, 4, device="cuda", dtype="float64", seed=5)
    cpu = make("lstm", 3, 4, dtype="float64", seed=5)
    w = gpu.params["weight_hh_l0"]
    assert isinstance(w, pyrnn.cuda.DeviceArray) and w.shape == (16, 4)
    new = np.arange(64, dtype=np.float64).reshape(16, 4) / 100
    w.copy_from(new)  # writes through to the layer
    cpu.params["weight_hh_l0"][...] = new
    x = np.random.default_rng(0).standard_normal((3, 2, 3))
    close(gpu(x)[0], cpu(x)[0], "float64", "after writing a parameter view")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_device_array_in_and_out(cell, batch_first):
    # (T, C) device input: the layer reshapes it to its layout's (1, T, C) or (T, 1, C), and
    # y, h_n, d x, d h0 come back unbatched, on the device.
    rng = np.random.default_rng(seed_of("unbatched-device", cell, batch_first))
    T, C, H, L = 5, 3, 4, 2
    cpu, gpu = twins(cell, C, H, L, dtype="float64", bidirectional=True,
                     batch_first=batch_first, seed=7)
    x = rng.standard_normal((T, C))
    out_g, st_g = gpu(pyrnn.cuda.to_device(x))
    out_c, st_c = cpu(x)
    assert isinstance(out_g, pyrnn.cuda.DeviceArray) and out_g.shape == (T, 2 * H)
    close(out_g, out_c, "float64", "out")
    for g, c in zip(st_g if cell == "lstm" else (st_g,), st_c if cell == "lstm" else (st_c,)):
        assert g.shape == (2 * L, H)
        close(g, c, "float64", "state")
    d = rng.standard_normal((T, 2 * H))
    dx_g, d0_g = gpu.backward(pyrnn.cuda.to_device(d))
    dx_c, d0_c = cpu.backward(d)
    assert isinstance(dx_g, pyrnn.cuda.DeviceArray) and dx_g.shape == (T, C)
    close(dx_g, dx_c, "float64", "dx")
    close(d0_g[0] if cell == "lstm" else d0_g, d0_c[0] if cell == "lstm" else d0_c, "float64",
          "dh0")
    for k, v in gpu.numpy_grads().items():
        close(v, cpu.grads[k], "float64", f"grad {k}")


def test_device_array_in_device_array_out():
    rng = np.random.default_rng(9)
    cpu, gpu = twins("lstm", 4, 5, 2, dtype="float32", batch_first=True, seed=2)
    x = rng.standard_normal((3, 6, 4)).astype(np.float32)
    xd = pyrnn.cuda.to_device(x)
    out_g, (hn_g, cn_g) = gpu(xd, lengths=[6, 3, 1])
    assert isinstance(out_g, pyrnn.cuda.DeviceArray) and out_g.shape == (3, 6, 5)
    out_c, (hn_c, cn_c) = cpu(x, lengths=[6, 3, 1])
    close(out_g, out_c, "float32", "out")
    close(hn_g, hn_c, "float32", "hn")
    d = pyrnn.cuda.to_device(np.ones((3, 6, 5), np.float32))
    dx_g, (dh0_g, _) = gpu.backward(d)
    dx_c, (dh0_c, _) = cpu.backward(np.ones((3, 6, 5), np.float32))
    assert isinstance(dx_g, pyrnn.cuda.DeviceArray)
    close(dx_g, dx_c, "float32", "dx")
    with pytest.raises(TypeError, match="dtype float64"):
        gpu(pyrnn.cuda.to_device(x.astype(np.float64)))


def test_permute01_and_copy_write_their_own_device_output():
    # Both once passed the address of a Python int as the output pointer: on an H200 (HMM) the
    # kernel wrote the host heap and batch_first layers crashed later, elsewhere. Poisoned
    # memory first, so an unwritten output cannot pass by reusing a freed array's contents.
    rng = np.random.default_rng(11)
    for dtype in (np.float32, np.float64, np.int64):
        a = (rng.standard_normal((37, 53, 29)) * 100).astype(dtype)
        for _ in range(2):
            poison = pyrnn.cuda.to_device(np.full(a.shape, -7, dtype))
            del poison
            d = pyrnn.cuda.to_device(a)
            np.testing.assert_array_equal(d.permute01().numpy(), a.transpose(1, 0, 2))
            np.testing.assert_array_equal(d.copy().numpy(), a)
            np.testing.assert_array_equal(d.numpy(), a)  # the source is untouched


def test_host_memory_behind_cuda_array_interface_is_refused():
    # On a GPU with HMM a kernel would read and write it silently; elsewhere it faults.
    host = np.zeros((3, 4), np.float32)

    class HostCAI:
        __cuda_array_interface__ = {"shape": (3, 4), "typestr": "<f4", "version": 3,
                                    "data": (host.ctypes.data, False), "stream": None}

    with pytest.raises(TypeError, match="not CUDA device or managed memory"):
        pyrnn.cuda.as_device_array(HostCAI())


def test_device_arrays_are_released():
    # Every DeviceArray pyrnn allocates (inputs moved to the device, outputs, permuted copies)
    # is freed with its last reference, in every path a layer takes.
    import gc
    _cuda = pyrnn.cuda.kernels()  # the loaded pyrnn._cuda module
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 6, 4)).astype(np.float32)
    gc.collect()
    before = _cuda._live_allocations()
    for cell in ("lstm", "gru"):
        layer = make(cell, 4, 5, 2, bidirectional=True, batch_first=True, device="cuda",
                     seed=3)
        for _ in range(3):
            out, _ = layer(x, lengths=[6, 3, 1])
            layer.backward(np.ones_like(out))
            out_d, _ = layer(pyrnn.cuda.to_device(x))
            layer.backward(pyrnn.cuda.to_device(np.ones(out_d.shape, np.float32)))
            out_d.copy().permute01().reshape(-1).numpy()
        del layer, out, out_d, _  # _: the last call's h_n, a DeviceArray too
    gc.collect()
    assert _cuda._live_allocations() == before


@pytest.mark.skipif(live_device_allocations() is None, reason="needs the host emulation's count")
def test_every_device_allocation_is_freed_with_its_objects():
    # All device memory, not only DeviceArrays': each step algorithm (graphs' staging buffers,
    # persistent grid workspaces), float32/float64, dropout, lengths, batch_first, device in and
    # out, eval, layer.to(), and a device-side training step. Once the objects are gone, so is
    # every allocation they made (what compute-sanitizer's leak check cannot separate from the
    # per-device Context's memory, kept on purpose).
    import gc
    rng = np.random.default_rng(13)
    gc.collect()
    before = live_device_allocations()
    for opts in (dict(algo="cublas", graphs=True), dict(algo="fused", persist_blocks=3),
                 dict(algo="persistent", persist_blocks=3)):
        for dtype in ("float32", "float64"):
            for i, cell in enumerate(CELLS):
                layer = make(cell, 3, 5, 2, bidirectional=True, dropout=0.3, dtype=dtype,
                             device="cuda", seed=1, batch_first=bool(i % 2))
                pyrnn.cuda.configure(layer, **opts)
                x = rng.standard_normal((4, 3, 3))
                for _ in range(2):  # the second pass replays captured graphs
                    out, _ = layer(x, lengths=[3, 2, 1, 3] if i % 2 else [4, 2, 1])
                    layer.backward(np.ones_like(out))
                out_d, state_d = layer(pyrnn.cuda.to_device(x.astype(dtype)))
                layer.backward(out_d.copy())
                layer.eval()
                layer(x)
                layer.to("cpu").to("cuda")
                del layer, out, out_d, state_d, _
    model = pyrnn.Sequential([pyrnn.LSTM(3, 6, batch_first=True), pyrnn.LastStep(),
                              pyrnn.Dense(6, 2)]).to("cuda")
    model.fit(rng.standard_normal((8, 5, 3)), rng.standard_normal((8, 2)),
              loss=pyrnn.losses.MSELoss(), optimizer=pyrnn.optim.Adam(model.parameters()),
              epochs=2, batch_size=4, verbose=False)
    del model
    gc.collect()
    assert live_device_allocations() == before


def test_device_array_protocols_round_trip():
    a = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    d = pyrnn.cuda.to_device(a)
    np.testing.assert_array_equal(d.numpy(), a)
    np.testing.assert_array_equal(np.asarray(d), a)
    np.testing.assert_array_equal(d.permute01().numpy(), a.transpose(1, 0, 2))
    np.testing.assert_array_equal(d.reshape(6, 4).numpy(), a.reshape(6, 4))
    z = pyrnn.cuda.DeviceArray.zeros((3,), "int64")
    np.testing.assert_array_equal(z.numpy(), [0, 0, 0])
    v = pyrnn.cuda.as_device_array(d)
    assert v is d
    # DLPack ABI 1 with copy=True: a new buffer, flagged as copied, same contents.
    cap = d.__dlpack__(max_version=(1, 0), copy=True)
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    # DLManagedTensorVersioned: version (2 x uint32), manager_ctx, deleter, then flags.
    flags = ctypes.cast(get(cap, b"dltensor_versioned") + 24, ctypes.POINTER(ctypes.c_uint64))
    assert flags.contents.value == 2  # DLPACK_FLAG_BITMASK_IS_COPIED

    class Producer:
        def __dlpack__(self, stream=None, max_version=None):
            return cap

        def __dlpack_device__(self):
            return (2, d.device)

    c = pyrnn.cuda.from_dlpack(Producer())
    assert c.ptr != d.ptr and not c.readonly
    np.testing.assert_array_equal(c.numpy(), a)


class _CAI:
    """A bare __cuda_array_interface__ producer over device memory (any version and stream)."""

    def __init__(self, ptr, shape, typestr, owner, version, stream=None):
        self.owner = owner
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr,
                                         "data": (ptr, False), "version": version}
        if version >= 3:
            self.__cuda_array_interface__["stream"] = stream


@pytest.mark.parametrize("version,stream", [(2, None), (3, None), (3, 1), (3, 2)])
def test_cuda_array_interface_versions_and_streams(version, stream):
    # v0-v2, and v3 with stream 2 (another thread's per-thread stream, maybe): a wait for the
    # array's device; v3 with a handle or 1 (legacy default): a wait for that stream, on the
    # array's device.
    d = pyrnn.cuda.to_device(np.arange(6, dtype=np.float32).reshape(2, 3))
    a = pyrnn.cuda.from_cuda_array_interface(_CAI(d.ptr, d.shape, d.dtype.str, d, version,
                                                  stream))
    assert a.ptr == d.ptr and a.device == d.device
    np.testing.assert_array_equal(a.numpy(), d.numpy())


def test_cuda_array_interface_stream_none_waits_for_the_legacy_stream():
    # v3 "stream": None (what Numba says for its default stream): the producer's write is still
    # queued on the legacy default stream behind a long GPU sleep. pyrnn's Context stream is
    # non-blocking, so without a wait the layer's input GEMM read the zeros.
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs PyTorch's CUDA build")
    layer = pyrnn.LSTM(8, 5, device="cuda", dtype="float32", seed=1)
    cpu = pyrnn.LSTM(8, 5, dtype="float32", seed=1)
    with torch.cuda.stream(torch.cuda.default_stream()):  # the legacy default stream
        t = torch.zeros((6, 3, 8), dtype=torch.float32, device="cuda")
        torch.cuda.synchronize()
        torch.cuda._sleep(400_000_000)  # some 0.2 s of GPU clock cycles
        t.fill_(0.5)
    x = pyrnn.cuda.from_cuda_array_interface(_CAI(t.data_ptr(), tuple(t.shape), "<f4", t, 3, None))
    y, _ = layer(x)
    want, _ = cpu(np.full((6, 3, 8), 0.5, np.float32))
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-5, atol=1e-6)


def test_borrow_refuses_host_memory():
    # On an HMM GPU the kernels would read and write the host heap through it, silently.
    host = np.zeros(4, np.float32)
    with pytest.raises(TypeError, match="not CUDA device or managed memory"):
        pyrnn.cuda.DeviceArray.borrow(host.ctypes.data, (4,), "float32", host)


@pytest.mark.skipif(pyrnn.cuda.device_count() < 2, reason="needs two CUDA devices")
@pytest.mark.parametrize("version,stream", [(2, None), (3, 1), (3, 2)])
def test_cuda_array_interface_waits_on_the_arrays_device(version, stream):
    # Work still pending on device 1's default stream (a long GPU sleep, then the write) while
    # device 0 is current: a wait on device 0, or on ITS legacy stream, lets pyrnn's copy read
    # the array before the write lands (zeros).
    torch = pytest.importorskip("torch")
    with torch.cuda.device(1):
        t = torch.zeros(1 << 20, dtype=torch.float32, device="cuda:1")
        torch.cuda.synchronize()
        torch.cuda._sleep(400_000_000)  # some 0.2 s of GPU clock cycles
        t.fill_(3.0)
    assert torch.cuda.current_device() == 0
    a = pyrnn.cuda.from_cuda_array_interface(_CAI(t.data_ptr(), t.shape, "<f4", t, version,
                                                  stream))
    assert a.device == 1
    assert (a.numpy() == 3.0).all()


def test_torch_interop():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    t = torch.arange(12, dtype=torch.float64, device="cuda").reshape(3, 4) * 2
    a = pyrnn.cuda.from_cuda_array_interface(t)  # CAI path (v2: device synchronize), zero-copy
    assert a.ptr == t.data_ptr() and a.owner is t
    assert pyrnn.cuda.as_device_array(t).ptr == t.data_ptr()  # DLPack preferred
    np.testing.assert_array_equal(a.numpy(), t.cpu().numpy())
    b = pyrnn.cuda.from_dlpack(t)      # DLPack path, zero-copy
    assert b.ptr == t.data_ptr()
    back = torch.from_dlpack(b)        # our capsule into torch
    assert back.data_ptr() == t.data_ptr()
    back2 = torch.as_tensor(a, device="cuda")  # our CAI into torch
    assert back2.data_ptr() == t.data_ptr()
    with pytest.raises(ValueError, match="C-contiguous"):
        pyrnn.cuda.as_device_array(t.t())
    # A layer fed torch tensors returns DeviceArrays, equal to the CPU result
    cpu, gpu = twins("gru", 3, 4, dtype="float64", seed=4)
    x = torch.randn(5, 2, 3, dtype=torch.float64, device="cuda")
    out_g, hn_g = gpu(x)
    out_c, hn_c = cpu(x.cpu().numpy())
    close(out_g, out_c, "float64", "torch in")
    close(torch.from_dlpack(out_g).cpu().numpy(), out_c, "float64", "torch out")


def test_cupy_interop():
    cp = pytest.importorskip("cupy")
    x = cp.arange(6, dtype=cp.float32).reshape(2, 3)
    a = pyrnn.cuda.as_device_array(x)
    assert a.ptr == x.data.ptr
    y = cp.asarray(a)
    assert y.data.ptr == x.data.ptr


def test_init_fills_a_foreign_device_array_in_place():
    # A CuPy-like array (only __cuda_array_interface__) through a zero-copy DeviceArray view:
    # it reached .numpy() and raised AttributeError (helper-180).
    d = pyrnn.cuda.to_device(np.zeros((3, 4), np.float32))
    foreign = _CAI(d.ptr, d.shape, d.dtype.str, d, 3)
    assert pyrnn.init.xavier_uniform_(foreign, seed=5) is foreign
    np.testing.assert_array_equal(
        d.numpy(), pyrnn.init.xavier_uniform_(np.zeros((3, 4), np.float32), seed=5))
    pyrnn.init.constant_(foreign, 2.5)
    assert (d.numpy() == 2.5).all()
