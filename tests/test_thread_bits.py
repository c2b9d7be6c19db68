"""Thread counts and step-loop splits never change a bit: the CPU step loops share a pass's
steps by batch rows or by hidden units, or run on one thread, and a training forward writes its
gate cache in place or streams it from a hot per-step slot (caches over 8 MiB per layer and
direction); every output and gradient must be bitwise the same whichever path runs, since each
element has one writer and one summation order. No torch needed."""
import numpy as np
import pytest

import pyrnn
from reference import make_layer

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru_after", "gru")  # gru: the seeds' reset_after=False
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru_after": 3, "gru": 3}
STREAMED_CACHE = 8 << 20  # bytes: kStreamedCache in cpp/src/recurrent.cpp


def _train_pass(cell, T, N, C, H, threads, layers=1, dtype="float32"):
    """One training forward and backward (bidirectional, varied lengths) at `threads`; returns
    copies of the output, d x and every gradient."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, N, C)).astype(dtype)
    lens = rng.integers(1, T + 1, size=N)
    lens[0] = T
    pyrnn.set_num_threads(threads)
    layer = make_layer(cell, C, H, layers, bidirectional=True, seed=3, dtype=dtype)
    out = layer(x, None, lens)[0]
    d_out = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    dx = layer.backward(d_out)[0]
    return out.copy(), dx.copy(), {k: v.copy() for k, v in layer.grads.items()}


def _assert_same(a, b):
    np.testing.assert_array_equal(a[0], b[0], err_msg="output")
    np.testing.assert_array_equal(a[1], b[1], err_msg="d x")
    for k in a[2]:
        np.testing.assert_array_equal(a[2][k], b[2][k], err_msg=k)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
# Below 32 rows the backward's weight-gradient blocks are P = ceil(128 / N) steps (N = 16: 8,
# N = 4: 32): those shapes run two whole blocks and a partial one.
# One row: units are split for the weights a step reads (256 KiB and more, 8 MiB over the
# steps), not its arithmetic.
@pytest.mark.parametrize("shape", [(5, 64, 40, 128), (19, 16, 64, 512), (19, 16, 64, 300),
                                   (67, 4, 600, 256), (40, 1, 40, 256)],
                         ids=["rows", "units", "rows_past_l2", "few_rows", "one_row"])
@pytest.mark.parametrize("isa", pyrnn.info()["available_isas"])
@pytest.mark.parametrize("cell", CELLS)
def test_thread_count_gives_identical_bits(cell, isa, shape, dtype, restore_runtime):
    """Large enough that 2 threads share the work: the forward steps by batch rows (weights that
    fit in L2, or larger ones with H = 300, a multiple of no AVX2 or AVX-512 panel width) or by
    hidden units (larger ones), the backward by units, the weight gradients by their rows and
    d x by its columns; two layers. A batch of 4 rows with a W_ih past L2 projects all steps in
    one GEMM. Three threads also run on a 2-core machine: the split step barrier's waits must
    then yield, not starve a thread. Both precisions: their panel widths differ."""
    pyrnn.set_cpu_isa(isa)
    T, N, C, H = shape
    runs = [_train_pass(cell, T, N, C, H, threads, layers=2, dtype=dtype) for threads in (1, 2, 3)]
    for other in runs[1:]:
        _assert_same(runs[0], other)


def _steps_over_streamed(cell, N, H):
    """Steps that make one direction's training cache (gates, and GRU's aux) exceed the
    streaming threshold."""
    per_step = N * (GATES[cell] + (1 if cell.startswith("gru") else 0)) * H * 4
    return STREAMED_CACHE // per_step + 2


@pytest.mark.parametrize("isa", [i for i in pyrnn.info()["available_isas"] if i != "scalar"])
@pytest.mark.parametrize("cell", CELLS)
def test_streamed_training_cache_gives_identical_bits(cell, isa, restore_runtime):
    """Training caches over the streaming threshold, each way of filling them:
    - H = 501 (a multiple of no panel width) with too few rows to split them (12) keeps the
      step loop on one thread: with 1 thread the cache is streamed from the hot slot, with 2
      the big projection over all steps writes it in place: the two must agree bitwise;
    - H = 512 splits the step loop by hidden units at 2 and 3 threads (each thread streams its
      units' columns), against 1 thread (all rows streamed);
    - small weights (H = 64) and a wide batch split it by batch rows at 2 threads.
    (The scalar kernels stream with memcpy; stream_copy is tested per ISA in the C++ tests.)"""
    pyrnn.set_cpu_isa(isa)
    for N, H, thread_counts in [(12, 501, (1, 2)), (64, 512, (1, 2, 3)), (192, 64, (1, 2))]:
        T, C = _steps_over_streamed(cell, N, H), 16
        runs = [_train_pass(cell, T, N, C, H, threads) for threads in thread_counts]
        for other in runs[1:]:
            _assert_same(runs[0], other)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_reused_layer_matches_fresh_one_across_shapes_and_modes(cell, restore_runtime):
    """One layer called with shapes that shrink and grow, alternating eval and training (its
    eval buffers only grow; a streamed training cache at the large shape) gives bitwise what a
    fresh layer gives for each call, outputs and gradients."""
    pyrnn.set_num_threads(2)
    C, H = 16, 512
    calls = [("eval", 3, 5), ("eval", 20, 64), ("train", 20, 64), ("train", 3, 5),
             ("eval", 30, 96), ("eval", 2, 64), ("train", 20, 64)]
    reused = make_layer(cell, C, H, 1, seed=3)
    for i, (mode, T, N) in enumerate(calls):
        x = np.random.default_rng(i).standard_normal((T, N, C)).astype(np.float32)
        results = []
        for layer in (reused, make_layer(cell, C, H, 1, seed=3)):
            getattr(layer, mode)()
            layer.zero_grad()
            out = layer(x)[0].copy()
            got = [out]
            if mode == "train":
                got.append(layer.backward(np.ones_like(out))[0].copy())
                got += [g.copy() for g in layer.grads.values()]
            results.append(got)
        for a, b in zip(*results):
            np.testing.assert_array_equal(a, b, err_msg=f"call {i}: {mode} T={T} N={N}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_stack_layers_give_identical_bits_at_any_thread_count(dtype, restore_runtime):
    """Above 64k elements (LayerNorm: 32k) the training-stack layers split rows, elements or
    columns over the threads (Dense's bias + activation and d pre-activation, its bias-gradient
    column sums; LayerNorm's rows; Embedding's gather; Dropout's masks): each element has one formula and
    each column sum its rows in order, so 1, 2 and 3 threads agree bit for bit."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 257)).astype(dtype)
    ids = rng.integers(0, 1000, (40, 50))
    makers = {f"dense_{a}": (lambda a=a: pyrnn.Dense(257, 301, a, seed=1, dtype=dtype), x)
              for a in (None, "relu", "tanh", "sigmoid")}
    makers["layernorm"] = (lambda: pyrnn.LayerNorm(257, dtype=dtype), x)
    # Between LayerNorm's own thread threshold (32k elements) and the others' (64k).
    makers["layernorm_40k"] = (lambda: pyrnn.LayerNorm(1000, dtype=dtype),
                               rng.standard_normal((40, 1000)).astype(dtype))
    makers["embedding"] = (lambda: pyrnn.Embedding(1000, 40, seed=2, dtype=dtype), ids)
    makers["dropout"] = (lambda: pyrnn.Dropout(0.3, seed=4), x)
    for name, (make, inp) in makers.items():
        runs = []
        for threads in (1, 2, 3):
            pyrnn.set_num_threads(threads)
            layer = make()
            y = layer.forward(inp)
            dy = np.random.default_rng(3).standard_normal(y.shape).astype(y.dtype)
            dx = layer.backward(dy)
            runs.append((y.copy(), None if dx is None else dx.copy(),
                         {k: v.copy() for k, v in layer.grads.items()}))
        for other in runs[1:]:
            np.testing.assert_array_equal(runs[0][0], other[0], err_msg=f"{name} y")
            if runs[0][1] is not None:
                np.testing.assert_array_equal(runs[0][1], other[1], err_msg=f"{name} d x")
            for k in runs[0][2]:
                np.testing.assert_array_equal(runs[0][2][k], other[2][k], err_msg=f"{name} {k}")


@pytest.mark.parametrize("cell", CELLS)
def test_few_rows_project_per_step_or_at_once_with_identical_bits(cell, restore_runtime):
    """A batch of fewer than 8 rows whose W_ih is past L2 (256 KiB) projects every step's input
    in one GEMM (a per-step projection would read all of W_ih for each step's few rows), except
    in eval when that gate buffer would exceed 8 MiB (kStreamedCache): there, per step. Training
    and eval outputs of one long sequence take the two paths and must agree bitwise."""
    C, H, N = 512, 512, 2
    per_step = N * (GATES[cell] + (1 if cell.startswith("gru") else 0)) * H * 4
    T = STREAMED_CACHE // per_step + 2
    pyrnn.set_num_threads(1)  # (more threads may take the one GEMM in eval too)
    x = np.random.default_rng(0).standard_normal((T, N, C)).astype(np.float32)
    layer = make_layer(cell, C, H, 1, bidirectional=False, seed=3, dtype="float32")
    train_out = layer(x)[0].copy()
    layer.eval()
    np.testing.assert_array_equal(layer(x)[0], train_out)


@pytest.mark.parametrize("cell", ["lstm", "gru_after"])
def test_eval_keeps_one_projections_gates_within_the_streamed_cache(cell, restore_runtime):
    """Few rows in all (T*N*C within 512 KiB) with a W_ih past 256 KiB project every step in
    one product reading W_ih in place, but eval (which keeps its buffers) only while that
    product's [T, N, G*H] gates stay within 8 MiB: here 12-16 MiB, so eval projects per step
    from one [N, G*H] slot and allocates no buffer of 8 MiB or more (one would be refused:
    MemoryError). Training keeps its cache either way; both give the same bits."""
    from pyrnn import _core
    T, N, C, H = 256, 8, 64, 512
    pyrnn.set_num_threads(1)
    x = np.random.default_rng(0).standard_normal((T, N, C)).astype(np.float32)
    train_out = make_layer(cell, C, H, 1, bidirectional=True, seed=3, dtype="float32")(x)[0]
    layer = make_layer(cell, C, H, 1, bidirectional=True, seed=3, dtype="float32")
    layer.eval()  # a new layer: training's cache would be reused (eval buffers only grow)
    _core._fail_allocations_from(STREAMED_CACHE)
    try:
        eval_out = layer(x)[0]
    finally:
        _core._fail_allocations_from(0)
    np.testing.assert_array_equal(eval_out, train_out)


# Hidden sizes whose W_hh and W_ih (C = H) pass 256 KiB in float32: a batch of at most 8 rows
# then reads them in place for a one-step call, instead of packing them (W_ih also for any call
# of at most 8 rows of steps in all).
IN_PLACE_H = {"rnn_tanh": 384, "rnn_relu": 384, "lstm": 256, "gru_after": 256, "gru": 256}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("N", [1, 3, 8, 20])
@pytest.mark.parametrize("cell", CELLS)
def test_streaming_steps_give_the_whole_sequences_bits(cell, N, dtype, restore_runtime):
    """Inference one step at a time (the state carried by hx) reads the weights in place (20
    rows: a panel packed at a time, past the 8 read in registers); in chunks of 2 steps W_ih
    alone (N <= 4: at most 8 rows in all; N = 8 packs both; N = 20: 40 rows, a panel at a
    time); the whole sequence of 12 steps packs W_hh. All must give the same bits, on 1 and 2
    threads, two layers, and match the float64 NumPy reference."""
    from reference import forward_like
    C = H = IN_PLACE_H[cell]
    T = 12
    x = np.random.default_rng(0).standard_normal((T, N, C)).astype(dtype)
    layer = make_layer(cell, C, H, 2, seed=3, dtype=dtype)
    layer.eval()
    for threads in (1, 2):
        pyrnn.set_num_threads(threads)
        y_all, state_all = layer(x)
        y_all = y_all.copy()
        for chunk in (1, 2):
            state, ys = None, []
            for t in range(0, T, chunk):
                y, state = layer(x[t:t + chunk], state)
                ys.append(y.copy())
            np.testing.assert_array_equal(np.concatenate(ys), y_all, err_msg=f"{chunk}-step y")
            pairs = zip(state, state_all) if cell == "lstm" else [(state, state_all)]
            for a, b in pairs:
                np.testing.assert_array_equal(a, b, err_msg=f"{chunk}-step state")
    y_ref = forward_like(layer, x)[0]
    tol = 1e-11 if dtype == "float64" else 2e-4
    np.testing.assert_allclose(y_all, y_ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("N", [1, 5, 11, 12])
@pytest.mark.parametrize("cell", CELLS)
def test_batch_first_backward_blocks_give_time_major_bits(cell, N, restore_runtime):
    """Below 32 rows the backward takes d x a block of P ~ 128 / N steps at a time: time-major
    as one product over the block's rows, batch_first (d x read and written in place as
    [N, T, C]) as one product per sequence, up to 11 rows (12: per step). Over two blocks and a
    partial one, bidirectional (the second direction adds onto d x), two layers, lengths, on 1
    and 2 threads: batch_first must give the time-major bits."""
    P = min(64, -(-128 // N))
    T, C, H = 2 * P + 3, 40, 64
    rng = np.random.default_rng(N)
    x = rng.standard_normal((T, N, C)).astype(np.float32)
    dy = rng.standard_normal((T, N, 2 * H)).astype(np.float32)
    lens = rng.integers(1, T + 1, size=N)
    lens[0] = T
    for threads in (1, 2):
        pyrnn.set_num_threads(threads)
        runs = []
        for bf in (False, True):
            layer = make_layer(cell, C, H, 2, bidirectional=True, batch_first=bf, seed=3,
                               dtype="float32")
            y = layer(x.swapaxes(0, 1) if bf else x, None, lens)[0]
            dx = layer.backward(dy.swapaxes(0, 1) if bf else dy)[0]
            runs.append((y.swapaxes(0, 1) if bf else y, dx.swapaxes(0, 1) if bf else dx,
                         {k: v.copy() for k, v in layer.grads.items()}))
        _assert_same(runs[0], runs[1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("H", [1, 2, 5, 16])
@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("threads", [1, 2])
def test_rnn_rows_in_one_cell_run_or_one_at_a_time_give_identical_bits(cell, H, threads, dtype,
                                                                        restore_runtime):
    """While every row is running, an RNN step's cell covers all its rows in one run (their
    pre-activations are contiguous); once a sequence has ended, row by row. A row's outputs must
    not depend on which: the same bits with and without another row's early end, and alone."""
    T, N, C = 6, 40, 3
    pyrnn.set_num_threads(threads)
    x = np.random.default_rng(0).standard_normal((T, N, C)).astype(dtype)
    layer = make_layer(cell, C, H, 2, bidirectional=True, seed=3, dtype=dtype)
    layer.eval()
    full = layer(x)[0].copy()
    lens = np.full(N, T)
    lens[7] = 2  # from step 2 on (and in reverse, before it), rows one at a time
    ended = layer(x, None, lens)[0]
    running = lens == T
    np.testing.assert_array_equal(ended[:, running], full[:, running])
    np.testing.assert_array_equal(layer(x[:, 3:4])[0][:, 0], full[:, 3])
