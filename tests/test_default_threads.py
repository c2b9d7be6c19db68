"""The kernels' starting thread count (README, Threads): OMP_NUM_THREADS when it is a positive
integer, as OpenMP and PyTorch read it, else the CPUs in the process's affinity mask. Read when
the library loads, so each case runs in a child process."""
import os
import subprocess
import sys

import pytest

CHILD = "import pyrnn; print(pyrnn.get_num_threads(), pyrnn.info()['num_threads'])"


def threads_in_child(cwd, omp=None, cpus=None):
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if omp is not None:
        env["OMP_NUM_THREADS"] = omp
    args = [sys.executable, "-c", CHILD]
    if cpus is not None:
        args = ["taskset", "-c", cpus] + args
    # cwd: not the repository root, whose source-tree pyrnn/ would be imported first.
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    n, reported = map(int, proc.stdout.split())
    assert n == reported
    return n


@pytest.mark.parametrize("value,want", [("1", 1), ("3", 3), (" 5 ", 5), ("6,2", 6)])
def test_omp_num_threads_sets_the_default(value, want, tmp_path):
    assert threads_in_child(tmp_path, value) == want


@pytest.mark.parametrize("value", ["", "0", "abc", "-1"])
def test_unusable_omp_num_threads_falls_back_to_the_cpus(value, tmp_path):
    assert threads_in_child(tmp_path, value) == len(os.sched_getaffinity(0))


def test_default_is_the_affinity_mask(tmp_path):
    assert threads_in_child(tmp_path) == len(os.sched_getaffinity(0))
    cpu = min(os.sched_getaffinity(0))
    try:
        subprocess.run(["taskset", "-c", str(cpu), "true"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("taskset is not available")
    assert threads_in_child(tmp_path, cpus=str(cpu)) == 1


def test_pyrnn_bench_uses_the_library_default(tmp_path):
    # It used os.cpu_count(): under OMP_NUM_THREADS=1 (or a narrow cpuset) the bench ran, and
    # left pyrnn on, every core of the machine.
    import json
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = tmp_path / "b.json"
    proc = subprocess.run([sys.executable, "-m", "pyrnn", "bench", "--quick", "--no-torch",
                           "--json", str(out)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(out.read_text())["pyrnn"]["threads"] == 1
