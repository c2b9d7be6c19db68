"""A buffer the system refuses is a MemoryError, never an abort, and leaves the layer usable.

The recurrent passes run their time steps inside one OpenMP region; each thread's scratch (its
block of A for a product, its packs of the weight gradients' right operands) was allocated
there, on first use, and an exception thrown inside an OpenMP region ends the process
(std::terminate). Under an address-space limit (`ulimit -v`) a training step
aborted Python (found with `ulimit -v`: "terminate called after throwing std::bad_alloc").
Now every thread reserves its scratch before the steps, the team meets, and the steps run only
if all of them have it; the error is raised after the region.

pyrnn._core._fail_allocations_from(n) (tests only) makes every buffer allocation of n bytes or
more fail as a refused one would. Each case runs in a fresh process: the thread scratch grows
once per thread and is kept, so only a new process's first passes allocate it.
"""
import subprocess
import sys

import pytest

SWEEP = r'''
import sys
import numpy as np
import pyrnn
from pyrnn import _core

cell, dtype, C, H, N, T, threads, layers, bidir = sys.argv[1:10]
C, H, N, T, threads, layers = map(int, (C, H, N, T, threads, layers))
bidir = bidir == "1"
pyrnn.set_num_threads(threads)


def make():
    kw = dict(dtype=dtype, seed=3, num_layers=layers, bidirectional=bidir)
    if cell == "lstm":
        return pyrnn.LSTM(C, H, **kw)
    if cell.startswith("gru"):
        return pyrnn.GRU(C, H, reset_after=cell == "gru_after", **kw)
    return pyrnn.RNN(C, H, nonlinearity=cell[4:], **kw)


rng = np.random.default_rng(0)
x = rng.standard_normal((T, N, C)).astype(dtype)
dy = rng.standard_normal((T, N, (2 if bidir else 1) * H)).astype(dtype)
layer = make()
refused = {"forward": 0, "backward": 0}
# Allocations from `limit` bytes up refused, for limits growing by 1.25x: each pass fails at
# the first buffer it needs of that size (a buffer it keeps is not asked for again once it
# got it), so the limits walk through its allocations, those inside the step loop's thread
# team included. Backward is run after a forward made with every allocation allowed (the
# forward's own input-sized buffers would otherwise fail first at every limit).
limit = 64
while limit < 64 << 20:
    for phase in ("forward", "backward"):
        layer.zero_grad()
        try:
            if phase == "backward":
                layer(x)
            _core._fail_allocations_from(int(limit))
            if phase == "forward":
                layer(x)
            else:
                layer.backward(dy)
        except MemoryError as e:
            assert "refused by a test" in str(e), e
            refused[phase] += 1
            if phase == "backward" and layers == 1 and not bidir:
                # One layer and direction: its gradients are written only inside the steps,
                # which run only once every thread has its scratch.
                grads = layer.numpy_grads()
                assert not any(g.any() for g in grads.values()), "a failed backward wrote grads"
        finally:
            _core._fail_allocations_from(0)
    limit *= 1.25
# The layer that saw every failure computes what a new one does, bit for bit.
fresh = make()
outs = []
for net in (layer, fresh):
    net.zero_grad()
    y, _ = net(x)
    dx, _ = net.backward(dy)
    outs.append((y, dx, net.numpy_grads()))
(ya, dxa, ga), (yb, dxb, gb) = outs
assert np.array_equal(ya, yb) and np.array_equal(dxa, dxb)
assert all(np.array_equal(ga[k], gb[k]) for k in ga)
print(refused["forward"], refused["backward"])
'''

# (cell, dtype, C, H, N, T, threads, layers, bidirectional). The pack of a block's inputs
# ([4N, C]) is the largest buffer backward asks for, so the limits reach it.
CASES = [
    ("lstm", "float32", 1000, 16, 64, 12, 2, 1, 0),   # steps split by batch rows
    ("lstm", "float32", 3200, 32, 64, 8, 2, 1, 0),    # by hidden units (weights beyond L2)
    ("lstm", "float32", 1000, 20, 64, 12, 2, 1, 0),   # one thread steps, the projection on two
    ("gru_before", "float64", 1000, 16, 64, 8, 2, 1, 0),  # the seeds' GRU: r*h_prev packed too
    ("gru_after", "float32", 3200, 32, 64, 8, 2, 1, 0),
    ("rnn_tanh", "float32", 1000, 16, 64, 12, 1, 1, 0),   # one thread: still an OpenMP region
    ("lstm", "float64", 1000, 16, 64, 9, 2, 2, 1),        # two layers, both directions
]


@pytest.mark.parametrize("case", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_refused_allocations_in_a_pass_are_memory_errors(tmp_path, case):
    out = subprocess.run([sys.executable, "-c", SWEEP, *map(str, case)], capture_output=True,
                         text=True, cwd=tmp_path, timeout=300)
    # Before: "terminate called after throwing an instance of 'pyrnn::OutOfMemory'", SIGABRT.
    assert out.returncode == 0, out.stderr[-2000:]
    forward_refused, backward_refused = map(int, out.stdout.split())
    assert forward_refused > 0 and backward_refused > 0


FORWARD_SCRATCH = r'''
import numpy as np
import pyrnn
from pyrnn import _core

# An eval forward whose step products pack their A rows: on two threads each has 32 of the
# 64 rows (read in place), on one thread all 64 are packed. The buffers the layer keeps are
# the same for both, so with one thread the first allocation is the thread's A block, inside
# the step loop's OpenMP region (an abort before).
layer = pyrnn.RNN(3000, 16, seed=3).eval()
x = np.random.default_rng(0).standard_normal((4, 64, 3000)).astype(np.float32)
pyrnn.set_num_threads(2)
y2, _ = layer(x)
pyrnn.set_num_threads(1)
_core._fail_allocations_from(1)
try:
    layer(x)
    raise SystemExit("the forward allocated nothing")
except MemoryError as e:
    assert "refused by a test" in str(e), e
finally:
    _core._fail_allocations_from(0)
y1, _ = layer(x)
assert np.array_equal(y1, y2)
print("ok")
'''


def test_refused_thread_scratch_in_a_forward_is_a_memory_error(tmp_path):
    out = subprocess.run([sys.executable, "-c", FORWARD_SCRATCH], capture_output=True,
                         text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


def test_fail_allocations_from_checks_its_argument():
    from pyrnn import _core
    for bad in (-1, 1 << 64, 1.5, True, "1"):
        with pytest.raises(ValueError, match="nbytes"):
            _core._fail_allocations_from(bad)
