"""OMP_WAIT_POLICY=passive: the CPU step loops' split barrier then yields and sleeps instead of
spinning (cpp/src/step_sync.h; its C++ tests check the sleeping). Only the waiting changes, so
every output and gradient must be bitwise what the spinning policy gives. The policy is read
when the library loads, so each policy runs in a child process, which reports the policy it
ran under (pyrnn.info()["cpu_wait_policy"])."""
import os
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import hashlib, numpy as np, pyrnn

    print(pyrnn.info()["cpu_wait_policy"])
    # (3, 16, 64, 512): weights too big for L2, steps split by hidden units, one split barrier
    # per step; (5, 64, 40, 128): by batch rows (no step barrier).
    for cell, (T, N, C, H) in [("LSTM", (3, 16, 64, 512)), ("GRU", (3, 16, 64, 512)),
                               ("LSTM", (5, 64, 40, 128))]:
        for threads in (2, 3):
            pyrnn.set_num_threads(threads)
            rng = np.random.default_rng(7)
            layer = getattr(pyrnn, cell)(C, H, 2, bidirectional=True, seed=5)
            x = rng.standard_normal((T, N, C)).astype(np.float32)
            y = layer(x)[0]
            dx = layer.backward(rng.standard_normal(y.shape).astype(np.float32))[0]
            h = hashlib.sha256(np.ascontiguousarray(y).tobytes())
            h.update(np.ascontiguousarray(dx).tobytes())
            for k in sorted(layer.grads):
                h.update(np.ascontiguousarray(layer.grads[k]).tobytes())
            print(f"{cell} {T}x{N}x{C}x{H} threads={threads} {h.hexdigest()}")
""")


def run_child(policy, cwd):
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    # cwd: not the repository root, whose source-tree pyrnn/ (no compiled modules) would be
    # imported first.
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.splitlines()


@pytest.mark.parametrize("value", ["passive", " PASSIVE "])
def test_passive_wait_policy_gives_the_same_bits(value, tmp_path):
    spin = run_child(None, tmp_path)
    passive = run_child(value, tmp_path)
    assert spin[0] == "spin" and passive[0] == "passive"
    assert len(spin) == 7 and passive[1:] == spin[1:]


def test_other_wait_policies_spin(tmp_path):
    assert run_child("active", tmp_path)[0] == "spin"
