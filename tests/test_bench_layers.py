"""benchmarks/bench_layers.py: the JSON it writes, with and without torch (a quick run). Timings
are never asserted."""
import json

import pytest
from _scripts import load_script


@pytest.mark.parametrize("torch_side", [False, True])
def test_quick_run_writes_its_rows(tmp_path, torch_side):
    if torch_side:
        pytest.importorskip("torch")
    bench = load_script("bench_layers")
    out = tmp_path / "layers.json"
    args = ["--quick", "--repeats", "5", "--budget", "0.2", "--out", str(out)]
    assert bench.main(args + ([] if torch_side else ["--no-torch"])) == 0
    doc = json.loads(out.read_text())
    assert doc["threads"] == 1 and doc["isa"] and doc["cpu_model"]
    assert [r["case"] for r in doc["rows"]] == list(bench.QUICK)
    for r in doc["rows"]:
        for mode in ("fwd", "fwdbwd"):
            m = r[mode]
            assert m["pyrnn_ms"] > 0 and m["rounds"] >= 5
            assert (m["ratio"] is not None) == torch_side
            assert (m["torch_ms"] is not None) == torch_side
            assert (m["rel_err"] is not None) == torch_side and (m["rel_err"] or 0) <= 1e-4
        if torch_side:
            assert r["fwdbwd"]["rel_err_grads"] <= 1e-4
            assert r["fwdbwd"]["rel_err_dx"] is not None  # (no Embedding among the quick cases)
    assert "openmp_runtimes" in doc["provenance"]


def test_every_case_builds():
    bench = load_script("bench_layers")
    for name, (kind, M, sizes, act) in bench.CASES.items():
        p, t, make_x = bench.make(kind, sizes, act, None)
        assert t is None and p.forward(make_x(2)).shape[0] == 2, name
