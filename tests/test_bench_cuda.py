"""benchmarks/bench_cuda.py without a GPU: the clear exit (status 2), and the table / JSON shape
through its driver over a fake timing back end (deterministic numbers, no torch, no CUDA).
The real measurements need a GPU; timings are never asserted."""
import io
import json
import pathlib
import subprocess
import sys

import pytest

import pyrnn
import pyrnn.cuda
from _scripts import load_script

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "bench_cuda.py"


def load_bench():
    return load_script("bench_cuda")


def gpu_usable():
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() and pyrnn.cuda.is_available()


@pytest.mark.skipif(gpu_usable(), reason="a usable GPU is present: the benchmark would run")
def test_without_gpu_exits_2_with_a_reason(tmp_path):
    out = subprocess.run([sys.executable, str(BENCH), "--quick", "--out", str(tmp_path / "r.json")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "bench_cuda: no GPU to benchmark on:" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "r.json").exists()


class FakeBackend:
    """The TorchCudaBackend interface with made-up, deterministic timings (ms)."""

    def __init__(self, missing_variant=None):
        self.missing = missing_variant
        self.tf32 = []

    def device_info(self):
        return {"name": "Fake H200", "index": 0, "compute_capability": "9.0",
                "multiprocessors": 132, "memory_gib": 139.8, "pyrnn_cuda_runtime": 13000,
                "pyrnn_driver_api": 13000, "torch_cuda": "13.0", "cudnn": 91000,
                "pyrnn_device_name": "Fake H200"}

    def clocks(self):
        return {"source": "fake", "sm_mhz": 1980, "mem_mhz": 3201}

    def matmul_gflops(self):
        return 51000.0

    def set_torch_tf32(self, on):
        self.tf32.append(on)
        return {"api": "fake", "matmul": "tf32" if on else "ieee"}

    def options(self):
        return {"graphs": True, "algo": "auto", "precision": "float32"}

    def torch_version(self):
        return "0.fake"

    def make_case(self, cell, T, N, C, H, mode, check):
        base = 1e-4 * T * N * (C + H) * H / 1e3 * (3 if mode == "fwdbwd" else 1)
        t_fn = None if cell == "GRU_seeds" else (lambda: (base, base * 1.1))

        def make_pyrnn(variant, precision):
            if variant == self.missing:
                return "this build has no such variant"
            ms = base * (0.5 if variant == "persistent" else 0.9)
            return {"fn": lambda: (ms, ms * 1.2), "err": 1e-7 if check else None,
                    "info": lambda: {"last_forward_algo": variant}}
        return t_fn, make_pyrnn


def test_fake_backend_table_and_json(tmp_path):
    bench = load_bench()
    path = tmp_path / "out" / "cuda.json"
    buf = io.StringIO()
    args = bench.parse_args(["--quick", "--variants", "default,persistent,fused",
                             "--precision", "both", "--out", str(path)])
    backend = FakeBackend(missing_variant="fused")
    result = bench.run(backend, args, stream=buf)
    text = buf.getvalue()
    on_disk = json.loads(path.read_text())
    assert on_disk["results"] == json.loads(json.dumps(result["results"]))

    # The CPU benchmark's JSON shape, plus the device block.
    for key in ("benchmark", "date", "machine", "pyrnn", "torch", "results"):
        assert key in on_disk
    assert on_disk["benchmark"] == "bench_cuda" and on_disk["complete"] is True
    dev = on_disk["device"]
    assert dev["name"] == "Fake H200" and dev["clocks_before"]["sm_mhz"] == 1980
    assert "clocks_after" in dev and "pyrnn_cuda_runtime" in dev and "pyrnn_driver_api" in dev
    assert on_disk["torch_matmul_4096_gflops"] == 51000.0
    assert on_disk["targets"]["seed/fwd"] == 0.8 and on_disk["targets"]["latency/fwd"] == 0.5
    assert on_disk["timing"]["method"].startswith("end-to-end per call")
    prov = on_disk["provenance"]  # (the fake back end has no torch)
    assert prov["torch"] is None and prov["cpu_count"] >= 1 and "openmp_runtimes" in prov

    rows = on_disk["results"]
    cpu_keys = {"config", "T", "N", "C", "H", "cell", "mode", "pyrnn_ms", "torch_ms", "ratio",
                "pyrnn_gflops", "repeats"}
    for r in rows:
        assert cpu_keys <= set(r)
        assert r["variant"] in ("default", "persistent")
        assert r["precision"] in ("float32", "tf32")
        assert r["rel_err"] == 1e-7
        if r["cell"] == "GRU_seeds":
            assert r["torch_ms"] is None and r["ratio"] is None
        else:
            assert r["ratio"] == pytest.approx(r["pyrnn_ms"] / r["torch_ms"])
        if r["precision"] == "float32":
            assert r["target_ratio"] == bench.TARGETS[(r["config"], r["mode"])]
        else:
            assert r["target_ratio"] is None
    # every config x cell x mode x precision x timed variant, once
    assert len(rows) == 3 * 4 * 2 * 2 * 2
    seed_lstm = [r for r in rows if (r["config"], r["cell"], r["mode"], r["precision"])
                 == ("seed", "LSTM", "fwd", "float32")]
    assert {r["variant"] for r in seed_lstm} == {"default", "persistent"}
    for r in seed_lstm:
        assert r["seeds_gpu_ms"] == 25.0
        assert r["x_faster_than_seeds"] == pytest.approx(25.0 / r["pyrnn_ms"])
    # the missing variant is reported, not timed
    assert on_disk["skipped"] and all(s["variant"] == "fused" for s in on_disk["skipped"])
    assert on_disk["summary"]["persistent"]["targets_judged"] == 3 * 3 * 2
    assert True in backend.tf32 and backend.tf32[-1] is False  # TF32 back off at the end

    # The printed table: the CPU benchmark's columns (+ variant, precision, target, error).
    header = [ln for ln in text.splitlines() if ln.startswith("config")][0]
    for col in ("config", "cell", "mode", "pyrnn ms", "torch ms", "ratio", "GFLOP/s",
                "variant", "prec", "target", "rel err"):
        assert col in header
    assert sum(1 for ln in text.splitlines() if ln.startswith(("seed ", "large ", "latency "))) \
        == len(rows)
    assert "variant persistent: ratio targets met" in text
    assert "skipped seed RNN fwd fused float32" in text
    assert "clocks read before" in text and "clocks read after" in text

    # render_table.py turns the JSON into the README's table: float32 rows, one per config,
    # cell and mode, a column per variant (the skipped one left empty).
    table = load_script("render_table").render(str(path))
    lines = table.splitlines()
    assert lines[0].startswith("Measured ") and "Fake H200" in lines[0]
    head = [ln for ln in lines if ln.startswith("| config")][0]
    assert head.endswith("| cuDNN ms | pyrnn default | pyrnn persistent | pyrnn fused |")
    body = [ln for ln in lines if ln.startswith(("| seed", "| large", "| latency"))]
    assert len(body) == 3 * 4 * 2
    r = next(x for x in rows if (x["config"], x["cell"], x["mode"], x["variant"], x["precision"])
             == ("seed", "LSTM", "fwd", "persistent", "float32"))
    row = [ln for ln in body if ln.startswith("| seed (50, 64, 128, 128) | LSTM | fwd |")][0]
    assert f"{r['pyrnn_ms']:.3g} ({r['ratio']:.2f})" in row and row.endswith("|  |")
    assert any("GRU (seeds' form)" in ln and "| n/a |" in ln for ln in body)


@pytest.mark.parametrize("argv,message", [
    (["--variants", "warp-speed"], "--variants: expected comma-separated names"),
    (["--configs", "tiny"], "--configs: expected comma-separated names from seed, large, latency"),
    (["--cells", "LSTM,"], "--cells: expected"),
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--budget", "nan"], "--budget must be a finite number"),
])
def test_bad_arguments_are_usage_errors(argv, message, capsys):
    # Before any GPU is looked for (a KeyError minutes into a run, before).
    bench = load_bench()
    with pytest.raises(SystemExit) as e:
        bench.parse_args(["--quick"] + argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_read_clocks_never_fails():
    bench = load_bench()
    c = bench.read_clocks(0)
    assert isinstance(c, dict) and ("error" in c or "source" in c)
