"""A failed allocation while a layer's weights are packed on several threads (weights over
1 MiB are packed concurrently) must reach Python as a MemoryError: a C++ exception thrown
inside an OpenMP region terminates the process instead. Run in a child process whose address
space is capped just above what it already uses, so that an abort fails this test only."""
import os
import re
import subprocess
import sys
import textwrap

import pytest

resource = pytest.importorskip("resource")

CHILD = textwrap.dedent("""
    import resource, numpy as np, pyrnn
    pyrnn.set_num_threads(2)
    big = pyrnn.LSTM(512, 512, seed=0)   # 8 MiB of weights: two 4 MiB packs, on 2 threads
    big.eval()
    warm = pyrnn.LSTM(256, 256, seed=0)  # makes the thread pool before the cap
    warm.eval()
    warm(np.zeros((16, 1, 256), np.float32))
    # 16 steps: a one-step call reads the weights in place, packing nothing.
    x = np.zeros((16, 1, 512), np.float32)
    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * resource.getpagesize()
    # 3 MiB of room: Python's and NumPy's small needs fit, a 4 MiB pack does not.
    resource.setrlimit(resource.RLIMIT_AS, (size + (3 << 20), resource.RLIM_INFINITY))
    try:
        big(x)
        print("no error", flush=True)
    except MemoryError as e:
        print("MemoryError", str(e), flush=True)
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    print("recovered", bool(np.isfinite(big(x)[0]).all()), flush=True)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and RLIMIT_AS")
@pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""), reason="ASan reserves address space")
def test_weight_pack_out_of_memory_is_memory_error_not_abort(tmp_path):
    # cwd: not the repository root, whose source-tree pyrnn/ (no compiled modules) `-c` would
    # import first.
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stdout.splitlines()
    # The error is pyrnn's (a pack's buffer, with its size), not one of Python's own allocations.
    assert re.fullmatch(r"MemoryError a buffer of [\d.]+ MiB could not be allocated: the system "
                        r"refused it", lines[0]), proc.stdout
    assert lines[1] == "recovered True", proc.stdout
