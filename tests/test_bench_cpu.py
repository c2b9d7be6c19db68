"""benchmarks/bench_cpu.py: the JSON and table it writes (a quick run on the latency configuration,
with and without torch) and its target bookkeeping on made-up rows. Timings are never asserted."""
import json
import math
import platform
import sys

import pytest
from _scripts import load_script


def load_bench():
    return load_script("bench_cpu")


def row(config, mode, ratio, gflops=1.0, cell="LSTM", torch_ms=2.0):
    T, N, C, H = load_bench().CONFIGS[config]
    return {"config": config, "cell": cell, "mode": mode, "ratio": ratio, "pyrnn_gflops": gflops,
            "T": T, "N": N, "C": C, "H": H, "torch_ms": None if ratio is None else torch_ms,
            "target_ratio": None if ratio is None else load_bench().TARGETS.get((config, mode))}


def test_configs_outside_the_issue_table_are_timed_not_judged():
    bench = load_bench()
    extra = ("odd_h", "few_rows", "one_step", "one_step_batch", "short_rows", "one_row_mid")
    assert set(bench.CONFIGS) >= {"seed", "large", "latency", *extra}
    assert bench.CONFIGS["odd_h"][3] % 32 and bench.CONFIGS["few_rows"][1] == 1
    assert bench.CONFIGS["one_step"][:2] == (1, 1) and bench.CONFIGS["one_step_batch"][0] == 1
    assert not any(c in extra for c, _ in bench.TARGETS)
    rows = [row("odd_h", "fwd", 1.4), row("few_rows", "fwdbwd", 2.0), row("seed", "fwd", 0.5)]
    s = bench.summarize(rows, peak=None)
    assert (s["targets_met"], s["targets_judged"]) == (1, 1)
    assert s["targets_missed"] == []


def test_summary_counts_targets_and_the_gflops_bound():
    bench = load_bench()
    rows = [row("seed", "fwd", 0.74), row("seed", "fwdbwd", 0.61),  # 0.6 bound: missed
            row("large", "fwd", 1.0, gflops=300.0), row("large", "fwdbwd", 0.5, gflops=310.0),
            row("latency", "fwd", None, cell="GRU_seeds")]          # no torch peer: not judged
    s = bench.summarize(rows, peak=400.0)
    assert (s["targets_met"], s["targets_judged"]) == (3, 4)
    assert s["targets_missed"] == ["seed LSTM fwdbwd"]
    assert s["large_best_gflops"] == 310.0 and s["gflops_target_met"] is True  # 310 >= 0.75*400
    assert not bench.summarize(rows, peak=420.0)["gflops_target_met"]          # 310 < 315
    assert "missed: seed LSTM fwdbwd" in s["lines"][0]
    assert "gflops_target_met" not in bench.summarize(rows, peak=None)
    assert "missed_needs" not in s  # no FMA peak given


def test_missed_targets_say_what_they_need_of_the_fma_peak():
    bench = load_bench()
    # seed LSTM forward + backward: 3 x 2 T N 4H (C + H) = 2.5166 GFLOP; torch 8 ms, bound 0.6:
    # meeting it takes 2.5166 / 4.8 ms = 524.3 GFLOP/s.
    rows = [row("seed", "fwdbwd", 0.8, gflops=400.0, torch_ms=8.0), row("seed", "fwd", 0.5)]
    assert bench.needed_gflops(rows[0]) == pytest.approx(2.5165824e9 / 4.8e-3 / 1e9)
    assert bench.needed_gflops(row("latency", "fwd", None, cell="GRU_seeds")) is None
    s = bench.summarize(rows, peak=None, fma_peak=550.0)
    need = s["missed_needs"]["seed LSTM fwdbwd"]
    assert need["needed_gflops"] == pytest.approx(524.288)
    assert need["needed_fraction_of_fma_peak"] == pytest.approx(524.288 / 550.0)
    assert (need["ratio"], need["target"]) == (0.8, 0.6)
    assert list(s["missed_needs"]) == ["seed LSTM fwdbwd"]  # the met one is not listed
    assert "needs 524 GFLOP/s = 95% of the FMA peak (550); pyrnn ran at 400 (73%)" in s["lines"][1]


def test_fma_peak_runs_on_every_isa_and_refuses_bad_arguments():
    import pyrnn
    from pyrnn import _core
    before = pyrnn.get_cpu_isa()
    try:
        for isa in pyrnn._core.available_isas():
            pyrnn.set_cpu_isa(isa)
            for threads in (1, 2):
                g = _core.fma_peak_gflops(threads, 0.01)
                assert math.isfinite(g) and g > 0, (isa, threads, g)
    finally:
        pyrnn.set_cpu_isa(before)
    assert _core.fma_peak_gflops(seconds=0.01) > 0  # threads default: get_num_threads()
    for bad, err in [((0, 1.0), "threads must be in"), ((4097, 1.0), "threads must be in"),
                     ((1, 0.0), "seconds must be in"), ((1, -1.0), "seconds must be in"),
                     ((1, float("nan")), "seconds must be in"), ((1, 61), "seconds must be in")]:
        with pytest.raises(ValueError, match=err):
            _core.fma_peak_gflops(*bad)
    for bad in [(True, 1.0), (1.5, 1.0), (1, "1"), (1, None)]:
        with pytest.raises(TypeError):
            _core.fma_peak_gflops(*bad)


def test_quick_run_without_torch_writes_absolute_figures(tmp_path, capsys):
    bench = load_bench()
    out = tmp_path / "r.json"
    res = bench.main(["--quick", "--no-torch", "--threads", "1", "--configs", "latency",
                      "--cells", "RNN,GRU_seeds", "--out", str(out)])
    on_disk = json.loads(out.read_text())
    assert on_disk["results"] == res["results"]
    assert on_disk["torch"] is None and on_disk["torch_matmul_2048_gflops"] is None
    assert on_disk["torch_threads"] is None
    # The table renders without PyTorch's figures (it formatted None, a TypeError).
    text = load_script("render_table").render(str(out))
    assert "without PyTorch (no ratios)" in text and "torch.matmul" not in text
    assert "| latency (50, 1, 32, 8) | RNN |" in text and "| n/a |" in text
    fma = on_disk["fma_peak_gflops"]
    assert fma["before"] > 0 and fma["after"] > 0 and fma["max"] == max(fma["before"], fma["after"])
    assert on_disk["pyrnn"]["threads"] == 1 and on_disk["machine"]["cpu"]
    if sys.platform.startswith("linux") and platform.machine() in ("x86_64", "i686"):
        # family/model tell CPU generations apart (x86's /proc/cpuinfo has them; ARM's not)
        assert isinstance(on_disk["machine"]["cpu_id"]["family"], int)
        assert isinstance(on_disk["machine"]["cpu_id"]["model"], int)
    assert len(on_disk["results"]) == 4  # 2 cells x (fwd, fwdbwd)
    for r in on_disk["results"]:
        assert r["pyrnn_ms"] > 0 and r["pyrnn_gflops"] > 0 and r["repeats"] >= 3
        assert r["torch_ms"] is None and r["ratio"] is None and r["target_ratio"] is None
        assert r["ratio_q1"] is None and r["ratio_q3"] is None
        assert r["needed_gflops"] is None and "needed_fraction_of_fma_peak" not in r
        assert r["fraction_of_fma_peak"] == pytest.approx(r["pyrnn_gflops"] / fma["max"])
    assert on_disk["summary"]["targets_judged"] == 0
    assert "ratio targets met: 0/0" in capsys.readouterr().out


def test_quick_run_of_a_config_without_targets(tmp_path, monkeypatch, capsys):
    # odd_h / few_rows have no targets: their rows are timed and printed, never judged (the
    # table's target column once looked every config up in TARGETS and raised KeyError).
    pytest.importorskip("torch")
    bench = load_bench()
    monkeypatch.setitem(bench.CONFIGS, "odd_h", (4, 16, 8, 33))  # its kind of shape, but quick
    res = bench.main(["--quick", "--threads", "1", "--configs", "odd_h", "--cells", "RNN",
                      "--out", str(tmp_path / "r.json")])
    assert [r["mode"] for r in res["results"]] == ["fwd", "fwdbwd"]
    for r in res["results"]:
        # the median of the per-round ratios: within its own quartiles (the ratio of the two
        # medians could fall outside them; helper-175)
        assert r["ratio_q1"] <= r["ratio"] <= r["ratio_q3"]
        assert r["target_ratio"] is None and r["needed_gflops"] is None
    assert res["summary"]["targets_judged"] == 0
    assert "odd_h    RNN       fwd" in capsys.readouterr().out


def test_quick_run_with_torch_pairs_every_case(tmp_path):
    pytest.importorskip("torch")
    bench = load_bench()
    res = bench.main(["--quick", "--threads", "1", "--configs", "latency", "--cells",
                      "LSTM,GRU,GRU_seeds", "--out", str(tmp_path / "r.json")])
    assert res["torch_matmul_2048_gflops"] > 0
    assert res["torch_threads"] == res["pyrnn"]["threads"] == 1  # the same on both sides
    assert res["targets"]["latency/fwd"] == 0.3
    for r in res["results"]:
        if r["cell"] == "GRU_seeds":  # torch has no such GRU
            assert r["torch_ms"] is None and r["ratio"] is None
            continue
        # the median of the per-round ratios: within its own quartiles (the ratio of the two
        # medians could fall outside them; helper-175)
        assert r["ratio_q1"] <= r["ratio"] <= r["ratio_q3"]
        assert r["ratio_q1"] <= r["ratio_q3"] and r["target_ratio"] == 0.3
        assert r["needed_gflops"] == pytest.approx(
            r["pyrnn_gflops"] * r["pyrnn_ms"] / r["torch_ms"] / 0.3)
        if r["mode"] == "fwdbwd":  # the weight gradients are checked too
            assert r["rel_err_dw"] is not None and r["rel_err_dw"] < 1e-4
        assert r["needed_fraction_of_fma_peak"] == pytest.approx(
            r["needed_gflops"] / res["fma_peak_gflops"]["max"])
    assert res["summary"]["targets_judged"] == 4
    for r in res["results"]:  # the same weights on both sides, checked before timing
        if r["cell"] == "GRU_seeds":
            assert r["rel_err"] is None and r["rel_err_dx"] is None
            continue
        assert 0 <= r["rel_err"] <= 1e-4
        assert (r["rel_err_dx"] is None) == (r["mode"] == "fwd")
    prov = res["provenance"]
    assert prov["torch"]["num_threads"] == 1 and prov["torch"]["cpu_capability"]
    assert set(prov["env"]) >= {"OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS",
                                "MKL_ENABLE_INSTRUCTIONS"}


def test_sides_that_disagree_are_not_timed(monkeypatch):
    """Weights that differ from the torch module's: a clear error before any timing."""
    pytest.importorskip("torch")
    import pyrnn
    bench = load_bench()
    monkeypatch.setattr(pyrnn, "from_torch", lambda m: bench.make_pyrnn(
        "RNN", m.input_size, m.hidden_size))  # pyrnn's own seeded weights
    with pytest.raises(RuntimeError, match="latency RNN forward: pyrnn and PyTorch disagree"):
        bench.main(["--quick", "--threads", "1", "--configs", "latency", "--cells", "RNN"])


def test_batch_first_run_builds_both_sides_batch_first(tmp_path):
    pytest.importorskip("torch")
    bench = load_bench()
    out = tmp_path / "r.json"
    res = bench.main(["--quick", "--threads", "1", "--configs", "latency", "--cells", "LSTM,GRU",
                      "--batch-first", "--out", str(out)])
    assert res["batch_first"] is True
    assert [r["batch_first"] for r in res["results"]] == [True] * 4
    assert all(r["ratio_q1"] <= r["ratio"] <= r["ratio_q3"] for r in res["results"])
    text = load_script("render_table").render(str(out))
    assert "; float32; batch_first layers, inputs (N, T, C); median of interleaved runs" in text
    assert bench.main(["--quick", "--no-torch", "--threads", "1", "--configs", "latency",
                       "--cells", "RNN"])["batch_first"] is False


def test_float64_run_times_both_sides_in_double_and_judges_nothing(tmp_path):
    pytest.importorskip("torch")
    bench = load_bench()
    out = tmp_path / "r.json"
    res = bench.main(["--quick", "--threads", "1", "--configs", "latency", "--cells", "LSTM,GRU",
                      "--dtype", "float64", "--out", str(out)])
    assert res["dtype"] == "float64" and [r["dtype"] for r in res["results"]] == ["float64"] * 4
    half_peak = res["fma_peak_gflops"]["max"] / 2
    for r in res["results"]:
        # the median of the per-round ratios: within its own quartiles (the ratio of the two
        # medians could fall outside them; helper-175)
        assert r["ratio_q1"] <= r["ratio"] <= r["ratio_q3"]
        assert r["target_ratio"] is None and r["needed_gflops"] is None  # targets are float32's
        assert r["fraction_of_fma_peak"] == pytest.approx(r["pyrnn_gflops"] / half_peak)
        # Agreement checked in double: far tighter than float32 could give.
        assert 0 <= r["rel_err"] <= 1e-12
        assert r["rel_err_dx"] is None or r["rel_err_dx"] <= 1e-12
    assert res["summary"]["targets_judged"] == 0 and "gflops_target_met" not in res["summary"]
    assert "; float64; median of interleaved runs" in load_script("render_table").render(str(out))
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--dtype", "float16"])


def test_render_table_shows_ratios_spread_and_summary(tmp_path):
    render = load_script("render_table")
    base = {"config": "seed", "T": 50, "N": 64, "C": 128, "H": 128, "cell": "LSTM"}
    doc = {"date": "2026-12-03T00:00:00", "machine": {"cpu": "Test CPU", "cores": 2},
           "pyrnn": {"threads": 2, "version": "0.1.0", "cpu_isa": "avx512"}, "torch": "2.13.0",
           "torch_matmul_2048_gflops": 180.0,
           "summary": {"targets_met": 1, "targets_judged": 2, "targets_missed": ["seed LSTM fwd"]},
           "results": [dict(base, mode="fwd", pyrnn_ms=2.2, torch_ms=2.75, ratio=0.8,
                            ratio_q1=0.78, ratio_q3=0.84, pyrnn_gflops=381.0),
                       dict(base, mode="fwdbwd", pyrnn_ms=7.0, torch_ms=14.0, ratio=0.5,
                            pyrnn_gflops=360.0)]}  # an older file: no quartiles
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    text = render.render(str(path))
    assert "| seed (50, 64, 128, 128) | LSTM | 2.2 (2.75) | 0.80 (0.78-0.84) | 7 (14) | 0.50 | 381 / 360 |" in text
    assert "Issue 4's ratio targets met: 1 of 2 (missed: seed LSTM fwd)." in text
    assert "quartiles of the per-round ratios" in text
    assert "on Test CPU, 2 cores," in text  # an older file: no cpu_id
    assert "Benchmark checkout" not in text and "checked equal" not in text  # (nor provenance)
    # Which code ran, PyTorch's threads and the check of both sides' results (helper-175)
    doc["provenance"] = {"benchmark_checkout": "abc1234", "torch": {"num_threads": 2}}
    doc["results"][0].update(rel_err=5e-7)
    doc["results"][1].update(rel_err=2e-7, rel_err_dx=4e-7, rel_err_dw=6e-7)
    path.write_text(json.dumps(doc))
    assert ("Benchmark checkout abc1234; PyTorch on 2 threads; both sides' results checked "
            "equal before timing (largest relative difference: y 5.0e-07, d x 4.0e-07, d W "
            "6.0e-07).") in render.render(str(path))
    del doc["provenance"]
    doc["results"][0].update(ratio=0.7503, target_ratio=0.75)  # a miss that .2f shows as 0.75
    doc["results"][1].update(ratio=0.5, target_ratio=0.6)
    path.write_text(json.dumps(doc))
    assert "| 0.7503 (0.78-0.84) | 7 (14) | 0.50 |" in render.render(str(path))
    assert [render.ratio_text(r, 0.75) for r in (0.7501, 0.75004, 0.75, 0.7496, 0.7449, 0.9)] == \
        ["0.7501", "0.75004", "0.75", "0.75", "0.74", "0.90"]
    # Within 5e-7 of the target, the side is marked: "1.000000" read as met.
    assert render.ratio_text(1.0000001, 1.0) == "1.000000+"
    assert render.ratio_text(0.9999999, 1.0) == "1.00"  # met, and reads as met
    doc["machine"]["cpu_id"] = {"vendor": "AuthenticAMD", "family": 26, "model": 2}
    path.write_text(json.dumps(doc))
    assert "on Test CPU (family 26, model 2), 2 cores," in render.render(str(path))
    assert "FMA peak" not in render.render(str(path))  # an older file: no FMA peak
    doc["fma_peak_gflops"] = {"before": 540.2, "after": 530.0, "max": 540.2}
    doc["summary"]["missed_needs"] = {"seed LSTM fwd": {
        "ratio": 0.7503, "target": 0.75, "needed_gflops": 503.4,
        "needed_fraction_of_fma_peak": 503.4 / 540.2}}
    path.write_text(json.dumps(doc))
    text = render.render(str(path))
    assert "reached 180 GFLOP/s; the FMA peak (pyrnn's multiply-add alone, before / after the " \
        "cases) 540 / 530." in text
    assert "- seed LSTM fwd: 0.7503 against 0.75; meeting it needs 503 GFLOP/s, 93% of the peak." \
        in text


@pytest.mark.parametrize("argv,message", [
    (["--configs", "tiny"], "expected comma-separated names from seed, large, latency"),
    (["--cells", "LSTMX"], "expected comma-separated names from RNN, LSTM, GRU, GRU_seeds"),
    (["--repeats", "1"], "--repeats: must be >= 2"),  # the quartiles need two rounds
    (["--threads", "0"], "--threads: must be in [1, 4096]"),
    (["--budget", "-1"], "--budget: must be a finite number > 0"),
    (["--peak-seconds", "nan"], "--peak-seconds: must be a finite number > 0"),
])
def test_bad_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        load_bench().main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_quick_keeps_the_options_given_and_names_are_refused_twice(tmp_path, monkeypatch):
    # --quick overwrote --repeats / --budget / --peak-seconds given with it; a config named
    # twice was run twice and counted twice in the summary (helper-141).
    bench = load_bench()
    seen = {}
    real = bench.fma_peak_gflops
    monkeypatch.setattr(bench, "fma_peak_gflops",
                        lambda threads, seconds: seen.setdefault("peak", seconds) and
                        real(threads, 0.01))
    res = bench.main(["--quick", "--no-torch", "--threads", "1", "--configs", "latency",
                      "--cells", "RNN", "--repeats", "4", "--budget", "30",
                      "--peak-seconds", "0.02"])
    assert {r["repeats"] for r in res["results"]} == {4} and seen["peak"] == 0.02
    for opt in ("--configs", "--cells"):
        value = {"--configs": "latency,latency", "--cells": "RNN,GRU,RNN"}[opt]
        with pytest.raises(SystemExit):
            bench.main(["--quick", opt, value])
    for out in (str(tmp_path), "", "/proc/pyrnn-x.json"):  # refused before the run
        with pytest.raises(SystemExit):
            bench.main(["--quick", "--no-torch", "--out", out])


def test_results_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    # open(path, "w") then json.dump: a full disk left a cut, unreadable file over the
    # previous one (helper-141).
    bench = load_bench()
    out = tmp_path / "r.json"
    out.write_text('{"previous": true}')
    import pyrnn.serialize

    def full(f, *a):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(pyrnn.serialize, "_atomic_write",
                        lambda path, chunks: full(None))
    with pytest.raises(OSError, match="No space left"):
        bench.write_results(str(out), "bench_layers", 1, None, [{"a": 1}])
    assert json.loads(out.read_text()) == {"previous": True}
    monkeypatch.undo()
    bench.write_results(str(out), "bench_layers", 1, None, [{"a": 1}])
    assert json.loads(out.read_text())["rows"] == [{"a": 1}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
