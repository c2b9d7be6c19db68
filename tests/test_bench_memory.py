"""benchmarks/bench_memory.py: the JSON it writes, with and without torch, and what an eval
forward holds: its output and two states per direction, not every step's state (a peak-RSS
reading in a child process; sizes, never timings)."""
import json
import sys

import pytest
from _scripts import load_script

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc/self/status")


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
        assert r["pyrnn_mb"] >= 0 and r["output_mb"] == 60 * 4 * 16 * 4 / 2**20
        assert (r["torch_mb"] is not None) == torch_side


def test_child_arguments_are_checked():
    bench = load_script("bench_memory")
    with pytest.raises(SystemExit):
        bench.main(["--child", "tensorflow", "lstm_eval"])
    with pytest.raises(SystemExit):
        bench.main(["--child", "pyrnn", "no_such_case"])
    with pytest.raises(SystemExit):
        bench.main(["--cases", "lstm_eval,no_such_case"])


@linux_only
@pytest.mark.parametrize("case", ["lstm_eval", "lstm_bidir_eval", "gru_eval"])
def test_eval_forward_holds_its_output_and_little_else(case):
    """(T, N, H) = (1000, 32, 256): the output is 31 MiB per direction; keeping every step's h
    (and LSTM's c) as well, as eval did before its two-slot state ring, took 2-3x that."""
    bench = load_script("bench_memory")
    got = bench.measure("pyrnn", case, 1, False)
    if "why" in got:
        pytest.skip(got["why"])
    assert got["output_mb"] >= 31
    assert got["mb"] < 1.2 * got["output_mb"] + 4, got
