"""benchmarks/bench_memory.py: the JSON it writes, with and without torch, and what an eval
forward holds: its output and two states per direction, not every step's state (a peak-RSS
reading in a child process; sizes, never timings)."""
import json
import os
import sys

import pytest
from _scripts import load_script

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc/self/status")
# Under AddressSanitizer (tests/reliability.sh preloads it) shadow memory adds to every size.
sizes_meaningful = pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""),
                                      reason="sizes under AddressSanitizer include its shadow")


@linux_only
@pytest.mark.parametrize("torch_side", [False, True])
def test_quick_run_writes_its_rows(tmp_path, torch_side):
    if torch_side:
        pytest.importorskip("torch")
    bench = load_script("bench_memory")
    out = tmp_path / "memory.json"
    args = ["--quick", "--out", str(out)]
    assert bench.main(args + ([] if torch_side else ["--no-torch"])) == 0
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "bench_memory" and doc["threads"] == 1 and doc["cpu_model"]
    assert [r["case"] for r in doc["rows"]] == list(bench.QUICK)
    for r in doc["rows"]:
        assert (r["T"], r["N"], r["C"], r["H"]) == bench.QUICK_SHAPE
        if "why" in r:  # a kernel that cannot reset the peak mark: the row says so
            assert r["pyrnn_mb"] is None and "peak RSS" in r["why"]
            continue
        # (-0.5: the kernel may reclaim a few pages of the process meanwhile)
        assert r["pyrnn_mb"] >= -0.5 and r["output_mb"] == 60 * 4 * 16 * 4 / 2**20
        assert (r["torch_mb"] is not None) == torch_side
        assert r["pyrnn_held_mb"] is not None
        assert (r["torch_held_mb"] is not None) == torch_side
        # The build counts on both sides: the parameters at least (pyrnn's gradients too).
        assert r["pyrnn_build_mb"] is not None and r["counted"] == bench.COUNTED
        assert (r["torch_build_mb"] is not None) == torch_side


@linux_only
def test_every_case_runs_at_the_quick_shape():
    """Each case's child, pyrnn's side (torch's too for the Dense cases, whose calls differ from
    the recurrent ones), at the quick shape."""
    bench = load_script("bench_memory")
    torch_too = __import__("importlib").util.find_spec("torch") is not None
    for name, (cell, *_rest) in bench.CASES.items():
        for lib in ("pyrnn", "torch") if torch_too and cell == "Dense" else ("pyrnn",):
            got = bench.measure(lib, name, 1, True)
            assert got.get("why") or got["mb"] >= -0.5, (lib, name, got)
            N, H = bench.QUICK_SHAPE[1], bench.QUICK_SHAPE[3]
            T = 1 if cell == "Dense" else bench.QUICK_SHAPE[0]
            D = 2 if bench.CASES[name][3] else 1
            assert got.get("why") or got["output_mb"] == T * N * D * H * 4 / 2**20, (lib, name)


def test_child_arguments_are_checked():
    bench = load_script("bench_memory")
    with pytest.raises(SystemExit):
        bench.main(["--child", "tensorflow", "lstm_eval"])
    with pytest.raises(SystemExit):
        bench.main(["--child", "pyrnn", "no_such_case"])
    with pytest.raises(SystemExit):
        bench.main(["--cases", "lstm_eval,no_such_case"])


@linux_only
@sizes_meaningful
@pytest.mark.parametrize("case", ["lstm_eval", "lstm_bidir_eval", "gru_eval",
                                  "lstm_eval_batch_first"])
def test_eval_forward_holds_its_output_and_little_else(case):
    """(T, N, H) = (1000, 32, 256): the output is 31 MiB per direction; keeping every step's h
    (and LSTM's c) as well, as eval did before its two-slot state ring, took 2-3x that, and
    batch_first's transposed copies of x and y (before the core read them in place) 2.3x."""
    bench = load_script("bench_memory")
    got = bench.measure("pyrnn", case, 1, False)
    if "why" in got:
        pytest.skip(got["why"])
    assert got["output_mb"] >= 31
    assert got["mb"] < 1.2 * got["output_mb"] + 4, got


def test_quick_keeps_the_cases_given():
    # --quick ran its own two cases whatever --cases named (helper-141).
    bench = load_script("bench_memory")
    ran = []
    bench.run_case = lambda name, torch, threads, quick: ran.append((name, quick)) or {
        "case": name, "output_mb": None, "pyrnn_mb": None, "torch_mb": None, "ratio": None,
        "pyrnn_held_mb": None, "torch_held_mb": None}
    bench.main(["--quick", "--no-torch", "--cases", "gru_eval"])
    assert ran == [("gru_eval", True)]
    ran.clear()
    bench.main(["--quick", "--no-torch"])
    assert ran == [(name, True) for name in bench.QUICK]
