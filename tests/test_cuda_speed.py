"""The CUDA speed paths on a real GPU (skipped without one): every step algorithm (cuBLAS, fused
custom kernel, persistent kernel) with CUDA graphs on and off and the side stream, against the CPU
backend, at test sizes and at the benchmark's seed and large sizes (many blocks, grid barriers);
bitwise equality where the same kernels run; TF32's error bound; per-layer options surviving
layer.to(). The same paths run on the CPU in the C++ host emulation (ctest)."""
import zlib

import numpy as np
import pytest

import pyrnn
import pyrnn.cuda
from _emulation import EMULATED
from reference import make_layer as make

pytestmark = pytest.mark.skipif(not pyrnn.cuda.is_available(),
                                reason=f"no CUDA device: {pyrnn.cuda.unavailable_reason()}")

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru", "gru_after")
ALGOS = ("cublas", "fused", "persistent")


def run(layer, x, dy, lengths=None):
    out, _ = layer(x, lengths=lengths)
    dx = layer.backward(dy)[0]
    return np.asarray(out), np.asarray(dx), layer.numpy_grads()


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / max(np.linalg.norm(b), 1e-300))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("graphs", (True, False))
@pytest.mark.parametrize("bidir", (False, True))
def test_algorithms_match_cpu(cell, algo, graphs, bidir):
    rng = np.random.default_rng(zlib.crc32(repr((cell, algo, graphs, bidir)).encode()))
    C, H, T, N = 5, 7, 6, 3
    kw = dict(num_layers=2, bidirectional=bidir, seed=4)
    cpu = make(cell, C, H, **kw)
    gpu = make(cell, C, H, device="cuda", **kw)
    pyrnn.cuda.configure(gpu, algo=algo, graphs=graphs, persist_blocks=3)
    x = rng.standard_normal((T, N, C)).astype(np.float32)
    dy = rng.standard_normal((T, N, (2 if bidir else 1) * H)).astype(np.float32)
    for lengths in (None, [6, 2, 4], None):  # the repeat replays the graphs
        yc, dxc, gc = run(cpu, x, dy, lengths)
        yg, dxg, gg = run(gpu, x, dy, lengths)
        np.testing.assert_allclose(yg, yc, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dxg, dxc, rtol=1e-5, atol=1e-5)
        for k in gc:
            np.testing.assert_allclose(gg[k], gc[k], rtol=1e-5, atol=1e-5, err_msg=k)
    info = pyrnn.cuda.layer_options(gpu)
    assert info["last_forward_algo"] == algo and info["last_backward_algo"] == algo
    assert info["last_forward_graphs"] == (graphs and algo != "persistent")
    assert info["graphs_disabled_reason"] is None


@pytest.mark.skipif(EMULATED, reason="benchmark sizes are too slow for the host emulation")
@pytest.mark.parametrize("size", ["seed", "large"])
@pytest.mark.parametrize("cell", ("lstm", "gru", "gru_after"))
def test_persistent_at_benchmark_sizes(size, cell):
    """Many blocks and grid barriers (the sizes bench_cuda.py times)."""
    T, N, C, H = {"seed": (50, 64, 128, 128), "large": (100, 64, 512, 512)}[size]
    rng = np.random.default_rng(7)
    cpu = make(cell, C, H, seed=2)
    x = rng.standard_normal((T, N, C)).astype(np.float32)
    dy = rng.standard_normal((T, N, H)).astype(np.float32)
    yc, dxc, gc = run(cpu, x, dy)
    for algo in ("persistent", "fused"):
        gpu = make(cell, C, H, device="cuda", seed=2)
        pyrnn.cuda.configure(gpu, algo=algo)
        yg, dxg, gg = run(gpu, x, dy)
        info = pyrnn.cuda.layer_options(gpu)
        print(size, cell, algo, info["last_forward_algo"], info["last_backward_algo"])
        assert rel(yg, yc) < 1e-5 and rel(dxg, dxc) < 1e-5
        for k in gc:
            assert rel(gg[k], gc[k]) < 1e-5, k


def test_graphs_on_off_and_block_counts_are_bitwise_equal():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 8, 16)).astype(np.float32)
    dy = rng.standard_normal((20, 8, 64)).astype(np.float32)
    results = {}
    for name, opts in {"graphs": dict(algo="cublas", graphs=True),
                       "launches": dict(algo="cublas", graphs=False),
                       "fused1": dict(algo="fused", persist_blocks=1),
                       "fused5": dict(algo="fused", persist_blocks=5),
                       "persistent1": dict(algo="persistent", persist_blocks=1),
                       "persistent32": dict(algo="persistent", persist_blocks=32)}.items():
        gpu = make("lstm", 16, 32, device="cuda", seed=1, bidirectional=True)
        pyrnn.cuda.configure(gpu, **opts)
        results[name] = run(gpu, x, dy)
    for a, b in (("graphs", "launches"), ("fused1", "fused5"), ("fused1", "persistent1"),
                 ("fused1", "persistent32")):
        ya, dxa, ga = results[a]
        yb, dxb, gb = results[b]
        np.testing.assert_array_equal(ya, yb, err_msg=f"{a} vs {b}")
        np.testing.assert_array_equal(dxa, dxb, err_msg=f"{a} vs {b}")
        for k in ga:
            np.testing.assert_array_equal(ga[k], gb[k], err_msg=f"{a} vs {b}: {k}")


@pytest.mark.parametrize("cell", CELLS)
def test_tf32_error_bound(cell):
    """TF32 is opt-in and costs accuracy: bounded here, measured by bench_cuda.py."""
    rng = np.random.default_rng(5)
    C = H = 128
    x = rng.standard_normal((20, 16, C))
    cpu = make(cell, C, H, seed=8, dtype="float64")
    ref = np.asarray(cpu(x)[0])
    gpu = make(cell, C, H, device="cuda", seed=8)
    pyrnn.cuda.configure(gpu, precision="tf32")
    err = rel(gpu(x.astype(np.float32))[0], ref)
    print(cell, "tf32 rel. error", err)
    assert err < 1e-2
    pyrnn.cuda.configure(gpu, precision="float32")
    assert rel(gpu(x.astype(np.float32))[0], ref) < 1e-5


def test_configure_survives_to_cpu_and_back():
    gpu = make("gru", 3, 4, device="cuda", seed=0)
    pyrnn.cuda.configure(gpu, algo="fused", graphs=False)
    gpu.to("cpu").to("cuda")
    info = pyrnn.cuda.layer_options(gpu)
    assert info["options"]["algo"] == "fused" and info["options"]["graphs"] is False
    gpu(np.zeros((2, 1, 3), np.float32) + 0.5)
    assert pyrnn.cuda.layer_options(gpu)["last_forward_algo"] == "fused"


def test_graph_capture_beside_another_threads_copies_and_syncs():
    # A pass captures its step loop on the Context stream under the device lock. Another
    # thread's DeviceArray traffic does not take that lock: legacy-stream copies, permute01,
    # cudaMalloc / cudaFree and device-wide synchronizes (v0-v2 __cuda_array_interface__
    # imports, pyrnn.cuda.synchronize). Neither side may fail, and the graphs must stay on.
    # (From the review of the first GPU run: not yet run on a GPU.)
    import threading
    rng = np.random.default_rng(21)
    layer = make("lstm", 16, 32, 1, device="cuda", seed=5)
    pyrnn.cuda.configure(layer, graphs=True)
    x = rng.standard_normal((20, 8, 16)).astype(np.float32)
    errors, stop = [], threading.Event()

    class V2:  # PyTorch's kind of interface: no stream key, so the import syncs the device
        def __init__(self, a):
            self.a = a
            d = a.__cuda_array_interface__
            self.__cuda_array_interface__ = {k: d[k] for k in ("shape", "typestr", "data")}
            self.__cuda_array_interface__["version"] = 2

    def traffic():
        own = np.random.default_rng(22)  # a Generator is not shared between threads
        try:
            while not stop.is_set():
                a = pyrnn.cuda.to_device(own.standard_normal((64, 48)).astype(np.float32))
                b = a.permute01().copy()
                np.testing.assert_array_equal(b.numpy(), a.numpy().T)
                pyrnn.cuda.as_device_array(V2(a))
                pyrnn.cuda.synchronize()
                del a, b
        except Exception as e:  # reported by the main thread
            errors.append(e)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        for _ in range(30):
            out, _ = layer(x)
            layer.backward(np.ones_like(out))
    finally:
        stop.set()
        worker.join()
    assert not errors, errors
    info = pyrnn.cuda.layer_options(layer)
    assert info["graphs_disabled_reason"] is None and info["last_forward_graphs"]
