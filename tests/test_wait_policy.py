"""OMP_WAIT_POLICY=passive: the CPU step loops' split barrier then sleeps instead of spinning
(cpp/src/step_sync.h; its C++ tests check the sleeping). Only the waiting changes, so every
output and gradient must be bitwise what the default policy gives. The policy is read once per
process, so the passive run is a child process."""
import os
import subprocess
import sys
import textwrap

import pyrnn

CASES = textwrap.dedent("""
    import hashlib, numpy as np, pyrnn

    def digests():
        out = []
        # (3, 16, 64, 512): weights too big for L2, steps split by hidden units, one split
        # barrier per step; (5, 64, 40, 128): by batch rows (no step barrier).
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
                out.append(f"{cell} {T}x{N}x{C}x{H} threads={threads} {h.hexdigest()}")
        return out
""")


def test_passive_wait_policy_gives_the_same_bits(tmp_path):
    ns = {}
    exec(CASES, ns)
    threads = pyrnn.get_num_threads()
    try:
        here = ns["digests"]()
    finally:
        pyrnn.set_num_threads(threads)
    env = dict(os.environ, OMP_WAIT_POLICY="passive")
    # cwd: not the repository root, whose source-tree pyrnn/ (no compiled modules) would be
    # imported first.
    proc = subprocess.run([sys.executable, "-c", CASES + "\nprint('\\n'.join(digests()))"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == here
