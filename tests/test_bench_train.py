"""benchmarks/bench_train.py: the JSON it writes, with and without torch (a quick run), and
that every case's two models take its data. Timings are never asserted."""
import json

import numpy as np
import pytest
from _scripts import load_script


@pytest.mark.parametrize("torch_side", [False, True])
def test_quick_run_writes_its_rows(tmp_path, torch_side):
    if torch_side:
        pytest.importorskip("torch")
    bench = load_script("bench_train")
    out = tmp_path / "train.json"
    args = ["--quick", "--repeats", "3", "--budget", "0.2", "--out", str(out)]
    assert bench.main(args + ([] if torch_side else ["--no-torch"])) == 0
    doc = json.loads(out.read_text())
    assert doc["threads"] == 1 and doc["isa"] and doc["cpu_model"]
    assert [r["case"] for r in doc["rows"]] == list(bench.QUICK)
    for r in doc["rows"]:
        assert r["samples"] == bench.QUICK_SAMPLES and r["batches"] == 8
        assert r["pyrnn_ms"] > 0 and r["rounds"] >= 3 and r["parameters"] > 0
        for key in ("torch_ms", "ratio", "torch_fused_ms", "ratio_fused"):
            assert (r[key] is not None) == torch_side, key
    assert doc["date"].endswith("+00:00") and doc["provenance"]["cpu_count"] >= 1


@pytest.mark.parametrize("name", ["adding_lstm", "char_gru", "text_big_embedding",
                                  "stacked_lstm"])
def test_every_case_builds_and_trains(name):
    bench = load_script("bench_train")
    assert set(bench.CASES) == {"adding_lstm", "char_gru", "text_big_embedding", "stacked_lstm"}
    c = bench.CASES[name]
    x, y = bench.make_data(c, 4)
    model = bench.pyrnn_model(c)
    pred = model.forward(x)
    want = (4, c["steps"], c["out"]) if c["per_step"] else (4, c["out"])
    assert pred.shape == want
    from pyrnn import losses, optim
    loss = losses.MSELoss() if c["out"] == 1 else losses.CrossEntropyLoss()
    hist = model.fit(x, y, loss=loss, optimizer=optim.Adam(model.parameters(), 1e-3),
                     batch_size=2, clip_norm=c["clip"], verbose=0, seed=0)
    assert np.isfinite(hist["loss"][0])
    torch = pytest.importorskip("torch")
    tm = bench.torch_model(c, torch)
    assert tuple(tm(torch.from_numpy(x)).shape) == want
