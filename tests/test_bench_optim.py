"""benchmarks/bench_optim.py: the JSON it writes, with and without torch (a quick run on a small
parameter). Timings are never asserted."""
import json

import pytest
from _scripts import load_script


@pytest.mark.parametrize("torch_side", [False, True])
def test_quick_run_writes_its_rows(tmp_path, torch_side):
    if torch_side:
        pytest.importorskip("torch")
    bench = load_script("bench_optim")
    out = tmp_path / "optim.json"
    args = ["--quick", "--size", "64000", "--repeats", "5", "--budget", "0.2", "--out", str(out)]
    assert bench.main(args + ([] if torch_side else ["--no-torch"])) == 0
    doc = json.loads(out.read_text())
    assert doc["threads"] == 1 and doc["isa"] and doc["cpu_model"]
    assert [r["case"] for r in doc["rows"]] == list(bench.QUICK)
    for r in doc["rows"]:
        assert r["elements"] == 64000 and r["pyrnn_ms"] > 0 and r["rounds"] >= 5
        assert (r["ratio"] is not None) == torch_side
        clip = r["case"].startswith("clip_grad_norm")
        assert (r["ratio_fused"] is not None) == (torch_side and not clip)
        assert (r["rel_err"] is not None) == torch_side and (r["rel_err"] or 0) <= 1e-4
        assert ("compares" in r) == clip
    assert set(doc["provenance"]) >= {"benchmark_checkout", "utc", "cpu_count", "affinity_cpus", "env",
                                      "openmp_runtimes", "torch"}
    assert (doc["provenance"]["torch"] is not None) == torch_side


@pytest.mark.parametrize("torch_side", [False, True])
def test_every_case_runs(torch_side):
    torch = pytest.importorskip("torch") if torch_side else None
    bench = load_script("bench_optim")
    for name in bench.CASES:
        r = bench.run_case(name, torch, 6400, 5, 0.1)
        assert r["pyrnn_ms"] > 0 and (r["ratio"] is None) != torch_side, name
        fused = torch_side and name in ("sgd_momentum", "adam", "adamw_amsgrad")
        assert (r["ratio_fused"] is not None) == fused, name


def test_size_must_split_into_rows_of_64():
    bench = load_script("bench_optim")
    with pytest.raises(SystemExit):
        bench.main(["--size", "100", "--no-torch"])
