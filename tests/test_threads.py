"""Python threads and pyrnn: the GIL is released in compute, layers used from several threads
at once (one layer per thread) give exactly the serial results, and one layer shared by two
threads at the same moment is refused with a RuntimeError (README "Threads"), never a race
that silently mixes two calls' caches or gradients."""
import gc
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import pyrnn
from pyrnn import optim


def _run_threads(fns):
    """Runs every fn in its own thread, all released at once; returns their results (or
    raises the first exception)."""
    out = [None] * len(fns)
    errors = []
    barrier = threading.Barrier(len(fns))

    def body(i, fn):
        try:
            barrier.wait()
            out[i] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            errors.append(e)
    threads = [threading.Thread(target=body, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def _layer(kind, seed, **kw):
    cls = {"rnn": pyrnn.RNN, "lstm": pyrnn.LSTM, "gru": pyrnn.GRU}[kind]
    return cls(6, 24, num_layers=2, bidirectional=True, seed=seed, **kw)


def _work(layer, x, d, lengths):
    """Forward + backward a few times; returns the outputs and gradients (copies)."""
    results = []
    for _ in range(3):
        layer.zero_grad()
        out, _ = layer(x, lengths=lengths)
        dx = layer.backward(d)[0]
        results.append((out.copy(), dx.copy(),
                        {k: v.copy() for k, v in layer.grads.items()}))
    return results


def _equal(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(u, v) for u, v in zip(a, b))
    return np.array_equal(a, b)


@pytest.mark.parametrize("threads_per_op", [1, 2])
def test_separate_layers_in_threads_equal_serial(threads_per_op):
    prev = pyrnn.get_num_threads()
    pyrnn.set_num_threads(threads_per_op)
    try:
        rng = np.random.default_rng(0)
        jobs = []
        for i, kind in enumerate(["rnn", "lstm", "gru", "gru", "lstm", "rnn"]):
            kw = {"reset_after": True} if (kind == "gru" and i % 2) else {}
            x = rng.standard_normal((12, 5, 6)).astype(np.float32)
            d = rng.standard_normal((12, 5, 48)).astype(np.float32)
            lengths = rng.integers(1, 13, 5)
            jobs.append((kind, i, kw, x, d, lengths))
        serial = [_work(_layer(k, s, **kw), x, d, ln) for k, s, kw, x, d, ln in jobs]
        layers = [_layer(k, s, **kw) for k, s, kw, *_ in jobs]
        parallel = _run_threads([
            (lambda layer=layer, job=job: _work(layer, job[3], job[4], job[5]))
            for layer, job in zip(layers, jobs)])
        for i, (a, b) in enumerate(zip(serial, parallel)):
            assert _equal(a, b), f"job {i} differs from its serial run"
    finally:
        pyrnn.set_num_threads(prev)


def test_training_stack_in_threads_equal_serial():
    """Whole models (Embedding, GRU, LayerNorm, Dense, losses, Adam) trained in parallel
    threads, one model each: identical to training them one after the other."""
    def train(seed):
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 20, (32, 7))
        y = rng.integers(0, 3, 32)
        model = pyrnn.Sequential([pyrnn.Embedding(20, 8, seed=seed),
                                  pyrnn.GRU(8, 16, batch_first=True, seed=seed),
                                  pyrnn.LastStep(), pyrnn.LayerNorm(16),
                                  pyrnn.Dense(16, 3, seed=seed)])
        hist = model.fit(x, y, loss="cross_entropy",
                         optimizer=optim.Adam(model.parameters(), 1e-2), epochs=3,
                         batch_size=8, seed=seed, verbose=0)
        return hist["loss"], {k: v.copy() for k, v in model.params.items()}
    serial = [train(s) for s in range(4)]
    parallel = _run_threads([lambda s=s: train(s) for s in range(4)])
    for s in range(4):
        assert _equal(serial[s][0], parallel[s][0])
        assert _equal(serial[s][1], parallel[s][1])


def _spins_during(fn, repeats=3):
    """How far a spinning Python thread gets while `fn` runs in this thread (best of a few).

    The switch interval is set huge, so this thread is never forced to hand the GIL over and
    the spinner (which yields after each step with sleep(0)) runs ONLY while this thread has
    released the GIL. A call that keeps the GIL gives exactly 0; one that releases it gives
    many steps. (Counts, not timings.)"""
    import sys
    counter = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            counter[0] += 1
            time.sleep(0)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    t = threading.Thread(target=spin)
    try:
        t.start()
        time.sleep(0.05)  # the spinner is running
        best = 0
        for _ in range(repeats):
            before = counter[0]
            fn()
            best = max(best, counter[0] - before)
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old)
    return best


def _native_calls():
    """(name, fn) of long-enough native calls, called at the Cython level (no NumPy copies
    around them, whose own GIL release would blur the measurement)."""
    from pyrnn import _train
    rng = np.random.default_rng(0)
    lstm = pyrnn.LSTM(64, 256, num_layers=2, seed=0)
    x = rng.standard_normal((100, 16, 64)).astype(np.float32)
    dy = np.ones((100, 16, 256), np.float32)
    nat = lstm._native
    nat.forward(x, None, None, None, True, 0)
    M, n = 2048, 512
    a = rng.standard_normal((M, n)).astype(np.float32)
    w = rng.standard_normal((n, n)).astype(np.float32)
    y = np.empty((M, n), np.float32)
    dw, dx = np.zeros((n, n), np.float32), np.empty((M, n), np.float32)
    mean, rstd = np.empty(M), np.empty(M)  # float64 for both precisions
    ones, zeros = np.ones(n, np.float32), np.zeros(n, np.float32)
    big = rng.standard_normal(1 << 23).astype(np.float32)
    g1, m1, m2 = np.ones_like(big), np.zeros_like(big), np.zeros_like(big)
    return [
        ("recurrent forward", lambda: nat.forward(x, None, None, None, True, 0)),
        ("recurrent backward", lambda: nat.backward(dy, None, None)),
        ("dense forward", lambda: [_train.dense_forward(y, a, w, None, 0) for _ in range(4)]),
        ("dense backward", lambda: _train.dense_backward(dw, None, dx, y, y, a, w, 0)),
        ("layernorm forward", lambda: [_train.layernorm_forward(dx, mean, rstd, a, ones, zeros,
                                                                1e-5) for _ in range(8)]),
        ("adam step", lambda: [_train.adam_step(big, g1, m1, m2, None, 1e-3, 0.9, 0.999, 1e-8,
                                                0.0, False, False, 1) for _ in range(4)]),
        ("sum of squares", lambda: [_train.sum_squares(big) for _ in range(16)]),
    ]


def test_gil_is_released_in_native_calls():
    prev = pyrnn.get_num_threads()
    pyrnn.set_num_threads(1)
    try:
        # The method's control: pure Python holding the GIL lets the spinner take (almost)
        # no step; a released GIL lets it take hundreds to thousands.
        assert _spins_during(lambda: sum(range(300_000))) <= 2
        for name, fn in _native_calls():
            assert _spins_during(fn) >= 20, f"{name} kept the GIL"
    finally:
        pyrnn.set_num_threads(prev)


# ---- one layer shared by two threads ------------------------------------------------------------

def _slow_input(layer, T=150, N=32, at_least_s=0.1):
    """An input long enough that the layer's training forward takes at_least_s here (doubling
    T): _collide's 10 ms head start must end inside the native call on any machine (at a fixed
    T = 150 a fast CPU finished first, and no collision was ever seen)."""
    rng = np.random.default_rng(3)
    while True:
        x = rng.standard_normal((T, N, layer.input_size)).astype(np.float32)
        layer(x)  # the first call of a size also allocates: time the second
        start = time.perf_counter()
        layer(x)
        if time.perf_counter() - start >= at_least_s or T >= 150 * 64:
            return x
        T *= 2


def _collide(call_a, call_b):
    """Runs call_a in a thread and call_b in the main thread while call_a is (very likely)
    inside its native call. Returns (error of a, error of b)."""
    errs = {}
    started = threading.Event()

    def a():
        started.set()
        try:
            call_a()
        except Exception as e:  # noqa: BLE001
            errs["a"] = e
    t = threading.Thread(target=a)
    t.start()
    started.wait()
    time.sleep(0.01)
    try:
        call_b()
    except Exception as e:  # noqa: BLE001
        errs["b"] = e
    t.join()
    return errs.get("a"), errs.get("b")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_shared_recurrent_layer_concurrent_calls_are_refused(kind):
    cls = pyrnn.LSTM if kind == "lstm" else pyrnn.GRU
    layer = cls(32, 128, num_layers=2, seed=0)
    x = _slow_input(layer)
    ref = cls(32, 128, num_layers=2, seed=0)(x)[0]
    # Retry: the second call must land while the first is inside the native code.
    for _ in range(20):
        err_a, err_b = _collide(lambda: layer(x), lambda: layer(x[:5]))
        if err_b is not None:
            break
    assert err_a is None
    assert isinstance(err_b, RuntimeError), err_b
    assert "another thread" in str(err_b) and "one layer per thread" in str(err_b)
    # The refused call changed nothing: the layer works and gives the right result.
    assert np.array_equal(layer(x)[0], ref)
    # zero_grad while a backward runs elsewhere is refused too (it would race the
    # accumulation).
    layer(x)
    for _ in range(20):
        err_a, err_b = _collide(lambda: layer.backward(np.ones(x.shape[:2] + (128,), np.float32)),
                                layer.zero_grad)
        if err_b is not None:
            break
    assert err_a is None and isinstance(err_b, RuntimeError), (err_a, err_b)


def test_shared_dense_concurrent_backward_is_refused():
    """Without the check, two backward calls on one Dense accumulate into the same gradient
    arrays from two threads at once (lost updates)."""
    dense = pyrnn.Dense(1024, 1024, seed=0)
    x = np.random.default_rng(4).standard_normal((4096, 1024)).astype(np.float32)
    dense(x)
    dy = np.ones((4096, 1024), np.float32)
    for _ in range(20):
        err_a, err_b = _collide(lambda: dense.backward(dy), lambda: dense.backward(dy))
        if err_b is not None:
            break
    assert err_a is None
    assert isinstance(err_b, RuntimeError) and "one layer per thread" in str(err_b), err_b
    # Still usable from any thread afterwards.
    assert _run_threads([lambda: dense(x[:4]).shape])[0] == (4, 1024)


def test_sharing_rule_hammer():
    """Many threads hammer one shared layer: every call either completes with the correct
    result or is refused with RuntimeError; nothing crashes, nothing is wrong."""
    layer = pyrnn.GRU(8, 32, seed=1)
    layer.eval()
    rng = np.random.default_rng(9)
    xs = [rng.standard_normal((50, 4, 8)).astype(np.float32) for _ in range(4)]
    want = [pyrnn.GRU(8, 32, seed=1).eval()(x)[0] for x in xs]
    stats = {"ok": 0, "refused": 0}
    lock = threading.Lock()

    def worker(i):
        for _ in range(30):
            try:
                out = layer(xs[i])[0]
            except RuntimeError as e:
                assert "another thread" in str(e)
                with lock:
                    stats["refused"] += 1
                continue
            assert np.array_equal(out, want[i])
            with lock:
                stats["ok"] += 1
    _run_threads([lambda i=i: worker(i) for i in range(4)])
    assert stats["ok"] + stats["refused"] == 120 and stats["ok"] > 0


def test_a_forked_child_runs_on_one_thread():
    # After a pass on 2 threads, a fork()ed child (multiprocessing's default on Linux) hung in
    # its first multi-threaded pass: OpenMP's thread pool does not survive fork.
    import signal
    saved = pyrnn.get_num_threads()
    pyrnn.set_num_threads(2)
    try:
        x = np.random.default_rng(0).standard_normal((5, 64, 40)).astype(np.float32)
        layer = pyrnn.LSTM(40, 128, seed=1)
        want = layer(x)[0]
        dense = pyrnn.Dense(512, 512, seed=0)
        xd = np.ones((512, 512), np.float32)
        want_d = dense(xd)  # the training stack's module too (it had its own thread count)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, never return into pytest
            code = 1
            try:
                got = layer(x)[0]
                got_d = dense(xd)
                try:
                    pyrnn.set_num_threads(2)
                    refused = False
                except RuntimeError as e:
                    refused = "fork" in str(e)
                ok = (np.array_equal(got, want) and np.array_equal(got_d, want_d)
                      and pyrnn.get_num_threads() == 1 and refused)
                code = 0 if ok else 3
            finally:
                os._exit(code)
        os.close(w)
        deadline = time.time() + 60
        while time.time() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung in its first pass")
        os.close(r)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        assert pyrnn.get_num_threads() == 2  # the parent keeps its threads
    finally:
        pyrnn.set_num_threads(saved)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and RLIMIT_AS")
@pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""), reason="ASan reserves address space")
@pytest.mark.parametrize("when", ["set_num_threads", "first_team"])
def test_threads_the_system_refuses_are_a_runtime_error_not_an_exit(tmp_path, when):
    # libgomp ends the process when it cannot create a team member ("libgomp: Thread creation
    # failed", exit status 1): under `ulimit -v`, set_num_threads(2) and the next forward
    # killed Python. Now the threads a team would add are started (and joined) first, where a
    # refusal is an error code: a RuntimeError, from set_num_threads or from the call whose
    # team could not start (the count set before the limit came), with nothing run.
    # first_team: OMP_NUM_THREADS=2 and no team before the limit (set_num_threads' own check
    # would leave glibc's cached thread stacks to reuse); the call's first team packs weights.
    code = ("import resource, numpy as np, pyrnn\n"
            "layer = pyrnn.LSTM(256, 256, seed=0)\n"
            "x = np.zeros((2, 64, 256), np.float32)  # 2 threads, small buffers\n"
            + ("pyrnn.set_num_threads(1)\n" if when == "set_num_threads" else "") +
            "with open('/proc/self/statm') as f:\n"
            "    size = int(f.read().split()[0]) * resource.getpagesize()\n"
            "# 4 MiB of address space to spare: no room for a thread's stack\n"
            "resource.setrlimit(resource.RLIMIT_AS, (size + (4 << 20), resource.RLIM_INFINITY))\n"
            "try:\n"
            + ("    pyrnn.set_num_threads(2)\n" if when == "set_num_threads" else
               "    layer(x)\n") +
            "    print('no error')\n"
            "except RuntimeError as e:\n"
            "    print('RuntimeError', e)\n"
            "print('threads', pyrnn.get_num_threads())\n"
            "resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n"
            "pyrnn.set_num_threads(2)\n"
            "y2, _ = layer(x)\n"
            "pyrnn.set_num_threads(1)\n"
            "y1, _ = layer(x)\n"
            "print('same', bool(np.array_equal(y1, y2)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    lines = out.stdout.splitlines()
    assert lines[0].startswith("RuntimeError cannot start 2 threads: the system refused "
                               "thread 2"), out.stdout
    assert lines[1] == f"threads {1 if when == 'set_num_threads' else 2}", out.stdout
    assert lines[2] == "same True", out.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and RLIMIT_AS")
@pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""), reason="ASan reserves address space")
@pytest.mark.parametrize("case", ["pool_shrank", "omp_stacksize"])
def test_a_team_libgomp_would_create_again_is_checked_too(tmp_path, case):
    # pool_shrank: libgomp lets a thread's surplus workers go when a smaller team (of 2 or more)
    # starts, and creates them again for a larger one; the check counted the largest team ever
    # started, per copy of the library (pyrnn._train's Dense and pyrnn._core's LSTM each had
    # one), so a Dense team of 16 after an LSTM team of 2 was not checked: exit 1 under the
    # limit. omp_stacksize: libgomp's workers take OMP_STACKSIZE's stack, the check's threads
    # took the default one: 1 GiB stacks passed the check and libgomp ended the process.
    env = dict(os.environ, OMP_NUM_THREADS="2")
    if case == "pool_shrank":
        code = ("import numpy as np, pyrnn\n"
                "d = pyrnn.Dense(4, 32768)\n"
                "big = np.ones((16, 4), np.float32)\n"
                "lstm = pyrnn.LSTM(256, 256, seed=0)\n"
                "pyrnn.set_num_threads(16); y16 = d(big)\n"
                "pyrnn.set_num_threads(2); lstm(np.zeros((8, 64, 256), np.float32))\n"
                "pyrnn.set_num_threads(16)\n"
                "call = lambda: d(big)\n"
                "again = lambda: print('same', bool(np.array_equal(d(big), y16)))\n")
    else:
        env["OMP_STACKSIZE"] = "1G"
        code = ("import numpy as np, pyrnn\n"
                "lstm = pyrnn.LSTM(256, 256, seed=0)\n"
                "x = np.zeros((2, 64, 256), np.float32)\n"
                "call = lambda: lstm(x)\n"
                "again = lambda: print('same', True)\n")
    code += ("import resource\n"
             "with open('/proc/self/statm') as f:\n"
             "    size = int(f.read().split()[0]) * resource.getpagesize()\n"
             "resource.setrlimit(resource.RLIMIT_AS, (size + (64 << 20), resource.RLIM_INFINITY))\n"
             "try:\n"
             "    call(); print('no error')\n"
             "except RuntimeError as e:\n"
             "    print('RuntimeError', e)\n"
             "resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2)\n"
             "again()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120, env=env)
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    lines = out.stdout.splitlines()
    assert lines[0].startswith("RuntimeError cannot start "), out.stdout
    assert lines[1] == "same True", out.stdout


def _thread_ids():
    return set(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc/self/task")
@pytest.mark.parametrize("case", ["packs", "rows", "units", "dense", "fit"])
def test_passes_keep_their_threads(case):
    # libgomp ends a thread's surplus workers when a smaller team starts and creates them again
    # for the next larger one (~10-20 us per thread, and the start check as much again). Passes
    # whose regions differ in size paid that at every change: at 4 threads, a large LSTM's weight
    # packs ran on 2 (2 <-> 4 four times a pass), a by-rows step loop on N/8, a by-units one on
    # H/16; every thread of the pool was new after one training step. Now a region starts the
    # pool's size and its extra members idle: once warm, a pass creates no thread.
    rng = np.random.default_rng(0)
    f32 = np.float32
    # float64's GEMM panel width on this machine's ISA (Tile<double>::NR, kernels_isa.inc): the
    # by-units split and a narrow product's team follow it.
    nr = {"avx512": 16, "avx2": 8, "scalar": 4}[pyrnn.info()["cpu_isa"]]
    if case == "packs":  # weight packs over 1 MiB: one job per matrix
        layer = pyrnn.LSTM(512, 512, seed=0, dtype="float32")
        x = rng.standard_normal((4, 16, 512)).astype(f32)
    elif case == "rows":  # steps by rows on N/8 = 2 threads, the projection on 4
        layer = pyrnn.GRU(128, 128, seed=0, bidirectional=True)
        x = rng.standard_normal((20, 16, 128))
    elif case == "units":  # steps by units on H/nr = 2 threads, the packs on one
        if nr < 8:
            pytest.skip("the scalar kernels' by-units case needs inputs of some 200 MB")
        H = 2 * nr  # weights over L2's share (768 KiB) but packs under 1 MiB; >= 1M MACs a step
        C, N = 25 * 1024 // H, max(64, (1 << 20) // (4 * H * H))
        layer = pyrnn.LSTM(C, H, seed=0, dtype="float64")
        x = rng.standard_normal((2, N, C))
    if case in ("packs", "rows", "units"):
        def step():
            y, _ = layer(x)
            layer.backward(np.ones_like(y))
            layer.eval()
            layer(x)
            layer.train()
    elif case == "dense":  # a product over 3 column panels, then one over all
        # (150 rows: under 48 per thread, so the narrow product keeps its 3-panel team
        # instead of splitting its rows; over 1M multiply-adds for every panel width)
        narrow = pyrnn.Dense(1024, 2 * nr + 1, seed=0, dtype="float64")
        wide = pyrnn.Dense(256, 512, seed=1, dtype="float64")
        x_narrow, x = rng.standard_normal((150, 1024)), rng.standard_normal((512, 256))

        def step():
            narrow.backward(np.ones_like(narrow(x_narrow)))
            wide.backward(np.ones_like(wide(x)))
    else:
        model = pyrnn.Sequential([pyrnn.LSTM(64, 256, batch_first=True, seed=0),
                                  pyrnn.LastStep(), pyrnn.Dense(256, 5, seed=1)])
        xs, ys = rng.standard_normal((32, 12, 64)), rng.integers(0, 5, 32)
        opt = optim.Adam(model.parameters(), 1e-3)

        def step():
            model.fit(xs, ys, loss=pyrnn.losses.CrossEntropyLoss(), optimizer=opt, epochs=1,
                      batch_size=16, verbose=0)
    # A product on all 4 threads: the pool at its size whenever the threads are listed, so a
    # worker that ended and was created again within a step shows as a new thread id.
    full, full_x = pyrnn.Dense(256, 512, seed=2), rng.standard_normal((512, 256))
    before = pyrnn.get_num_threads()
    pyrnn.set_num_threads(4)
    try:
        step()
        full(full_x)
        ids = _thread_ids()
        for _ in range(3):
            step()
            full(full_x)
            # (New ids only: a thread of another library ending meanwhile is no churn.)
            assert not _thread_ids() - ids
    finally:
        pyrnn.set_num_threads(before)


# ---- from a hunt (helper-139): writes and model calls while another thread holds a layer ------

def _held_elsewhere(obj):
    """A context in which another thread holds obj as a running pass would (_exclusive)."""
    import contextlib
    from pyrnn.layers import _one_thread_held

    @contextlib.contextmanager
    def held():
        entered, done = threading.Event(), threading.Event()

        def hold():
            if hasattr(obj, "hold"):  # a native layer's busy flag (which knows its thread)
                obj.hold()
                try:
                    entered.set()
                    done.wait(30)
                finally:
                    obj.release()
                return
            with _one_thread_held(obj):
                entered.set()
                done.wait(30)
        t = threading.Thread(target=hold)
        t.start()
        entered.wait(30)
        try:
            yield
        finally:
            done.set()
            t.join()
    return held()


BUSY = "already running forward/backward in another thread"


def test_parameter_writes_are_refused_while_the_layer_runs_elsewhere():
    # load_params, params[...] =, pyrnn.init on a Parameter and clip_grad_norm went through
    # during another thread's pass (a forward then read half-old weights), where zero_grad
    # and an optimizer step were refused.
    from pyrnn import init
    dense = pyrnn.Dense(3, 2, seed=0)
    gru = pyrnn.GRU(3, 2, seed=0)
    def zeros(l, grad=False):
        name = "bias" if l is dense else "bias_l0"
        return {name: np.zeros_like((l.grads if grad else l.params)[name])}
    writes = {
        "load_params": lambda l: l.load_params(zeros(l)),
        "params[]": lambda l: l.params.update(zeros(l)),
        "params =": lambda l: setattr(l, "params", zeros(l)),
        "grads[]": lambda l: l.grads.update(zeros(l, grad=True)),
        "init": lambda l: init.zeros_(next(iter(l.parameters()))),
        "clip": lambda l: optim.clip_grad_norm(l.parameters(), 1e-9)}
    for layer in (dense, gru):
        before = layer.numpy_params()
        for what, write in writes.items():
            # a recurrent layer's own busy flag, as its native pass sets it in another thread
            with _held_elsewhere(layer._native if layer is gru else layer):
                with pytest.raises(RuntimeError, match=BUSY):
                    write(layer)
            assert all(np.array_equal(v, before[k]) for k, v in layer.numpy_params().items()), what
        for write in writes.values():  # and all of them go through when it is free
            write(layer)


def test_a_model_running_elsewhere_refuses_its_other_calls_and_its_nested_models():
    # eval(), zero_grad(), load_params() and save() on a model fitting in another thread went
    # through (save wrote tensors of two steps); so did a nested model's predict().
    inner = pyrnn.Sequential([pyrnn.Dense(4, 2, seed=1)])
    outer = pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True, seed=0), pyrnn.LastStep(),
                              inner])
    x = np.ones((2, 5, 3), np.float32)
    calls = {"eval": outer.eval, "train": outer.train, "zero_grad": outer.zero_grad,
             "load_params": lambda: outer.load_params({}),
             "save": lambda: outer.save(os.devnull),
             "inner.predict": lambda: inner.predict(np.ones((2, 4), np.float32)),
             "inner.eval": inner.eval}
    with _held_elsewhere(outer):
        for what, call in calls.items():
            with pytest.raises(RuntimeError, match="already running"):
                call()
    assert outer.training and inner.training
    for call in calls.values():
        call()
    assert outer.predict(x).shape == (2, 2)


def _other_thread_runs(layer, x):
    """None if another thread ran forward + backward on layer, else its exception."""
    out = []

    def body():
        try:
            y, _ = layer(x)
            layer.backward(np.ones_like(y))
            out.append(None)
        except Exception as e:  # noqa: BLE001 - returned for the assertion
            out.append(e)
    t = threading.Thread(target=body)
    t.start()
    t.join()
    return out[0]


class _CallsTheLayer(optim.SGD):
    """An optimizer whose update runs the layer (as SAM's second forward), drops what `kept`
    holds (an old exception keeping an abandoned hold's token alive), and meanwhile lets
    another thread try the layer."""

    def __init__(self, params, layer, x):
        super().__init__(params, lr=0.1)
        self.layer, self.x, self.seen, self.kept = layer, x, [], []

    def _update(self, data, grad, st, keep=None):
        if not self.seen:
            self.layer.eval()
            self.layer(self.x)  # this thread, inside its own step: allowed
            self.layer.train()
            self.kept.clear()
            gc.collect()
            self.seen.append(_other_thread_runs(self.layer, self.x))
        return super()._update(data, grad, st, keep)


def test_a_step_holds_its_layers_against_other_threads_also_after_an_interrupted_one():
    # An exception from a signal handler (a timeout's SIGALRM) landing between a step's hold
    # of a recurrent layer and its release left the native flag set (the layer refused every
    # call, its own thread's too, for good). The first fixes freed the thread's own calls but
    # left later steps not holding the layer, or holding it only through the abandoned hold,
    # which ended mid-step when its exception was dropped (another thread then ran the layer
    # during the step; helper-167, -169, -172). Now every step and pass holds the layer on its
    # own account, and an abandoned hold ends with its block's token.
    from pyrnn import _signals
    layer = pyrnn.LSTM(3, 4, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    opt = _CallsTheLayer(layer.parameters(), layer, x)

    def step():
        y, _ = layer(x)
        layer.backward(np.ones_like(y))
        opt.seen.clear()
        opt.step()
        opt.zero_grad()
        return opt.seen[0]
    assert BUSY in str(step())  # held for the whole step, its own nested forward included
    real, calls = _signals.sigint_deferred, [0]

    def interrupted_release():  # owners_held's second block: the release's
        calls[0] += 1
        if calls[0] == 2:
            raise TimeoutError("alarm")
        return real()
    _signals.sigint_deferred = interrupted_release
    try:
        y, _ = layer(x)
        layer.backward(np.ones_like(y))
        with pytest.raises(TimeoutError) as kept:  # (kept: its traceback keeps the token)
            opt.step()
    finally:
        _signals.sigint_deferred = real
    assert calls[0] == 2
    assert BUSY in str(_other_thread_runs(layer, x))  # the abandoned hold, while kept
    opt.kept.append(kept)
    del kept
    assert BUSY in str(step())  # dropped mid-step: the step's own hold stands
    assert _other_thread_runs(layer, x) is None  # and nothing is left held after it
    for _ in range(2):
        assert BUSY in str(step())
    before = layer.numpy_params()
    step()
    assert any(not np.array_equal(v, before[k]) for k, v in layer.numpy_params().items())


def test_hold_refused_or_bad_token_sets_nothing():
    # A token that cannot be weakly referenced raised after the flag was set (helper-172).
    layer = pyrnn.GRU(2, 3, seed=0)
    with pytest.raises(TypeError):
        layer._native.hold(object())
    assert _other_thread_runs(layer, np.ones((2, 1, 2), np.float32)) is None


def test_release_ends_its_own_hold_only():
    # release() of a bare hold took a dead token's entry instead, leaving the bare hold (the
    # layer refused to other threads; helper-174).
    from pyrnn.parameter import _HoldToken
    layer = pyrnn.GRU(2, 3, seed=0)
    x = np.ones((2, 1, 2), np.float32)
    native = layer._native
    native.hold()
    token = _HoldToken()
    native.hold(token)
    del token  # (its block gone without a release)
    native.release()
    assert _other_thread_runs(layer, x) is None
    token = _HoldToken()
    native.hold()
    native.hold(token)
    native.release(token)  # a token's release leaves the bare hold in place
    assert BUSY in str(_other_thread_runs(layer, x))
    native.release()
    assert _other_thread_runs(layer, x) is None
