"""CUDA benchmark: pyrnn's CUDA backend vs PyTorch/cuDNN (same process, same GPU, interleaved).

    python benchmarks/bench_cuda.py [--repeats 50] [--quick] [--precision float32|tf32|both]
                                    [--variants default,cublas,nographs,fused,persistent]
                                    [--out results.json]

The CPU benchmark's configurations and table (benchmarks/bench_cpu.py): seed (50, 64, 128, 128),
large (100, 64, 512, 512), latency (50, 1, 32, 8) as (T, N, C, H); RNN (tanh), LSTM, GRU in
PyTorch's form (reset_after=True) and pyrnn's default GRU form (GRU_seeds, reset_after=False, no
cuDNN twin); forward in eval mode, and forward + backward (d input, d state, d weights).

How it times (issue 7): end-to-end per call, PyTorch (cuDNN) vs pyrnn, both synchronized after
each call. Device tensors in and out on both sides (a torch CUDA tensor goes to pyrnn through
DLPack once, zero-copy, before timing; no host copies are timed); CUDA events on each side's
own stream (pyrnn's Context stream through torch.cuda.ExternalStream, PyTorch's current stream)
recorded around one call on an idle GPU, so the event time includes the host's launch work
(Python, argument checks, launches) wherever the GPU waits for it; warm-up first (pyrnn
captures its CUDA graphs there); then pyrnn and PyTorch interleaved, the order rotating every
round, the garbage collector off; medians. The torch side's input and parameter gradients are
set to None before each round (not timed), so it does not add into the last round's. float32
with TF32 OFF on both sides (torch.backends.cuda.matmul / cudnn.rnn fp32_precision = "ieee", or
the legacy allow_tf32 flags on older PyTorch); `--precision tf32` adds rows with TF32 on both
sides (pyrnn.cuda.configure(layer, precision="tf32")). Host wall-clock medians (call +
synchronize) are kept in the JSON too; their gap to the event times is the events' recording and
the synchronize's wake-up, not the host overhead (which the event times already hold).

Variants (--variants) time pyrnn under several backend settings (pyrnn.cuda.configure on each
layer) in the same rounds, against the same PyTorch timings: default (the build's defaults),
cublas (cuBLAS step GEMM + fused pointwise, CUDA graphs on), nographs (cublas, graphs off),
fused (one custom kernel per step, graphs on), persistent (one persistent kernel per direction).
A variant the build lacks is reported and skipped. Each variant's forward output is checked
against a float64 reference (pyrnn on the CPU, same weights): ||y - ref|| / ||ref|| goes into
the row, and the step algorithm that actually ran (pyrnn.cuda.layer_options) too.

Also recorded: the device name, compute capability, multiprocessor count, driver, CUDA runtime,
cuDNN version, and the GPU clocks READ (never set) before and after through NVML (pynvml) or
nvidia-smi; a torch.matmul float32 (TF32 off) 4096^3 rate as the machine's GEMM reference.
Without a usable GPU (or without PyTorch's CUDA build) it says why and exits with status 2.
Timings are benchmarks, never assertions.
"""
import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

from pyrnn.bench import gc_paused, provenance
from pyrnn._outfile import out_file, write_file

CONFIGS = {"seed": (50, 64, 128, 128), "large": (100, 64, 512, 512), "latency": (50, 1, 32, 8)}
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3, "GRU_seeds": 3}
# Issue 7's targets: pyrnn time / PyTorch-cuDNN time, float32 with TF32 off on both sides.
TARGETS = {("seed", "fwd"): 0.8, ("seed", "fwdbwd"): 1.0, ("large", "fwd"): 1.0,
           ("large", "fwdbwd"): 1.1, ("latency", "fwd"): 0.5, ("latency", "fwdbwd"): 0.8}
LSTM_SEED_FWD_TARGET_MS = 0.25
# The seeds' GPU table (document 003): forward at sequence 50, batch 64, hidden 128.
SEEDS_GPU_MS = {"RNN": 15.0, "LSTM": 25.0, "GRU": 20.0, "GRU_seeds": 20.0}
# pyrnn.cuda settings per variant (None: leave the build's default).
VARIANTS = {
    "default": {},
    "cublas": {"algo": "cublas", "graphs": True},
    "nographs": {"algo": "cublas", "graphs": False},
    "fused": {"algo": "fused", "graphs": True},
    "persistent": {"algo": "persistent"},
}
EXIT_NO_GPU = 2


def flops(cell, T, N, C, H, backward):
    fwd = 2.0 * T * N * GATES[cell] * H * (C + H)
    return fwd * 3 if backward else fwd  # backward: d input, d state and d weights GEMMs


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---- GPU clocks and driver: read only (NVML, else nvidia-smi queries) --------------------------

_SMI_FIELDS = ("name", "driver_version", "pstate", "clocks.sm", "clocks.mem", "clocks.max.sm",
               "clocks.max.mem", "clocks.applications.graphics", "temperature.gpu", "power.draw",
               "power.limit")


def read_clocks(index=0):
    """The GPU's clocks and state as READ through NVML or `nvidia-smi --query-gpu` (nothing is
    ever set). Returns a dict; {'error': ...} when neither is usable."""
    try:
        import pynvml
        pynvml.nvmlInit()
        try:
            h = pynvml.nvmlDeviceGetHandleByIndex(index)
            q = lambda f, *a: _nvml_try(f, h, *a)  # noqa: E731
            return {"source": "nvml",
                    "driver": _decode(_nvml_try(pynvml.nvmlSystemGetDriverVersion)),
                    "sm_mhz": q(pynvml.nvmlDeviceGetClockInfo, pynvml.NVML_CLOCK_SM),
                    "mem_mhz": q(pynvml.nvmlDeviceGetClockInfo, pynvml.NVML_CLOCK_MEM),
                    "max_sm_mhz": q(pynvml.nvmlDeviceGetMaxClockInfo, pynvml.NVML_CLOCK_SM),
                    "max_mem_mhz": q(pynvml.nvmlDeviceGetMaxClockInfo, pynvml.NVML_CLOCK_MEM),
                    "app_sm_mhz": q(pynvml.nvmlDeviceGetApplicationsClock, pynvml.NVML_CLOCK_SM),
                    "temperature_c": q(pynvml.nvmlDeviceGetTemperature, pynvml.NVML_TEMPERATURE_GPU),
                    "power_w": _scale(q(pynvml.nvmlDeviceGetPowerUsage), 1e-3),
                    "power_limit_w": _scale(q(pynvml.nvmlDeviceGetEnforcedPowerLimit), 1e-3),
                    "pstate": q(pynvml.nvmlDeviceGetPerformanceState)}
        finally:
            pynvml.nvmlShutdown()
    except Exception as e:  # no pynvml, no driver: fall back to nvidia-smi
        nvml_error = f"{type(e).__name__}: {e}"
    smi = shutil.which("nvidia-smi")
    if not smi:
        return {"error": f"no NVML ({nvml_error}) and no nvidia-smi"}
    try:
        out = subprocess.run([smi, f"--id={index}", "--query-gpu=" + ",".join(_SMI_FIELDS),
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        return {"error": f"nvidia-smi failed: {e}"}
    if out.returncode != 0:
        return {"error": f"nvidia-smi exit {out.returncode}: {out.stderr.strip()[:200]}"}
    values = [v.strip() for v in out.stdout.strip().splitlines()[0].split(",")]
    return {"source": "nvidia-smi", **dict(zip(_SMI_FIELDS, values))}


def _nvml_try(f, *args):
    try:
        return f(*args)
    except Exception:
        return None


def _decode(v):
    return v.decode() if isinstance(v, bytes) else v


def _scale(v, s):
    return None if v is None else v * s


# ---- the measuring back end --------------------------------------------------------------------

class NoGPU(Exception):
    """No usable GPU / CUDA build: the benchmark cannot run (exit status 2)."""


class TorchCudaBackend:
    """pyrnn's CUDA layers and PyTorch's cuDNN layers on GPU 0, timed with CUDA events."""

    def __init__(self):
        try:
            import torch
        except ImportError as e:
            raise NoGPU(f"PyTorch is not installed ({e}); the peer is cuDNN through torch.nn")
        if not torch.cuda.is_available():
            raise NoGPU(f"PyTorch {torch.__version__} sees no CUDA device "
                        f"(torch.version.cuda = {torch.version.cuda})")
        import pyrnn
        import pyrnn.cuda
        reason = pyrnn.cuda.unavailable_reason()
        if reason:
            raise NoGPU(f"pyrnn's CUDA backend is unavailable: {reason}")
        self.torch, self.pyrnn, self.pcuda = torch, pyrnn, pyrnn.cuda
        self.native = pyrnn.cuda._load()
        self.pstream = torch.cuda.ExternalStream(self.native.context_stream(0))
        self.tf32_api = None
        self._refs = {}

    # -- settings ------------------------------------------------------------------------------
    def set_torch_tf32(self, on):
        """TF32 for PyTorch's float32 matmuls and cuDNN RNNs; returns how it was set."""
        torch = self.torch
        prec = "tf32" if on else "ieee"
        rnn = getattr(getattr(torch.backends.cudnn, "rnn", None), "fp32_precision", None)
        if rnn is not None and hasattr(torch.backends.cuda.matmul, "fp32_precision"):
            torch.backends.cuda.matmul.fp32_precision = prec
            torch.backends.cudnn.rnn.fp32_precision = prec
            self.tf32_api = "fp32_precision"
            return {"api": "fp32_precision", "matmul": torch.backends.cuda.matmul.fp32_precision,
                    "cudnn_rnn": torch.backends.cudnn.rnn.fp32_precision}
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on
        self.tf32_api = "allow_tf32"
        return {"api": "allow_tf32", "matmul": torch.backends.cuda.matmul.allow_tf32,
                "cudnn": torch.backends.cudnn.allow_tf32}

    def options(self):
        """pyrnn.cuda's process-wide settings (the defaults every variant starts from)."""
        return self.pcuda.options() if hasattr(self.pcuda, "options") else {}

    def torch_version(self):
        return self.torch.__version__

    # -- facts ---------------------------------------------------------------------------------
    def device_info(self):
        torch = self.torch
        p = torch.cuda.get_device_properties(0)
        n = self.native
        return {"name": p.name, "index": 0, "compute_capability": f"{p.major}.{p.minor}",
                "multiprocessors": p.multi_processor_count,
                "memory_gib": round(p.total_memory / 2**30, 1),
                "pyrnn_cuda_runtime": n.runtime_version(), "pyrnn_driver_api": n.driver_version(),
                "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                "pyrnn_device_name": n.device_name(0)}

    def clocks(self):
        return read_clocks(0)

    def matmul_gflops(self):
        """torch.matmul 4096^3 float32, TF32 off: the GEMM rate this GPU gives PyTorch."""
        torch = self.torch
        self.set_torch_tf32(False)
        a = torch.randn(4096, 4096, device="cuda")
        b = torch.randn(4096, 4096, device="cuda")
        for _ in range(3):
            torch.matmul(a, b)
        ms = []
        for _ in range(10):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            torch.matmul(a, b)
            e1.record()
            e1.synchronize()
            ms.append(e0.elapsed_time(e1))
        return 2.0 * 4096 ** 3 / (statistics.median(ms) * 1e-3) / 1e9

    # -- one case ------------------------------------------------------------------------------
    def _timed(self, fn, stream):
        """(event ms, wall ms) of one call of fn, events on `stream` (None: torch's current)."""
        torch = self.torch
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t = time.perf_counter()
        if stream is None:
            e0.record()
        else:
            e0.record(stream)
        fn()
        if stream is None:
            e1.record()
        else:
            e1.record(stream)
        e1.synchronize()
        wall = (time.perf_counter() - t) * 1e3
        return e0.elapsed_time(e1), wall

    def make_case(self, cell, T, N, C, H, mode, check):
        """{'torch': timer or None, 'make_pyrnn': variant -> (timer, rel_err)}."""
        torch, pyrnn, pcuda = self.torch, self.pyrnn, self.pcuda
        torch.manual_seed(0)
        kind = {"RNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}
        tl_cpu = kind["GRU" if cell == "GRU_seeds" else cell](C, H)
        if cell == "GRU_seeds":  # no cuDNN twin; same-size weights, pyrnn's own GRU form
            p_cpu = pyrnn.GRU(C, H, reset_after=False, seed=0)
            tl = None
        else:
            p_cpu = pyrnn.from_torch(tl_cpu)
            tl = tl_cpu.cuda()
        gen = torch.Generator(device="cpu").manual_seed(1)
        x_cpu = torch.randn(T, N, C, generator=gen)
        dy_cpu = torch.randn(T, N, H, generator=gen)
        xt, dyt = x_cpu.cuda(), dy_cpu.cuda()
        xg = xt.clone().requires_grad_(True)
        ref = None
        if check:  # the same weights and input every time: computed once per shape and cell
            key = (cell, T, N, C, H)
            if key not in self._refs:
                p64 = type(p_cpu).from_config({**p_cpu.config(), "dtype": "float64"})
                p64.load_params({k: v.astype(np.float64) for k, v in p_cpu.numpy_params().items()})
                p64.eval()
                self._refs[key] = p64(x_cpu.numpy().astype(np.float64))[0]
            ref = self._refs[key]
        torch.cuda.synchronize()

        t_fn = None
        if tl is not None:
            if mode == "fwd":
                tl.eval()

                def t_call():
                    with torch.no_grad():
                        tl(xt)
            else:
                tl.train()

                def t_call():
                    y, _ = tl(xg)
                    y.backward(dyt)

            def t_fn():
                if mode != "fwd":  # fresh gradients, not added into the last round's (untimed)
                    xg.grad = None
                    tl.zero_grad(set_to_none=True)
                return self._timed(t_call, None)

        def make_pyrnn(variant, precision):
            """{'fn', 'err', 'info'} for pyrnn under a variant, or a str: why it cannot run."""
            g = type(p_cpu).from_config(p_cpu.config())
            g.load_params(p_cpu.numpy_params())
            g.to("cuda")
            settings = dict(VARIANTS[variant])
            if hasattr(pcuda, "configure"):  # explicit: whatever PYRNN_CUDA_PRECISION says
                settings["precision"] = precision
            if settings:
                if not hasattr(pcuda, "configure"):
                    return "this build has no pyrnn.cuda.configure (per-layer CUDA settings)"
                try:
                    pcuda.configure(g, **settings)
                except (ValueError, RuntimeError, TypeError) as e:
                    return f"{type(e).__name__}: {e}"
            xd = pcuda.as_device_array(xt)
            dyd = pcuda.as_device_array(dyt)
            err = None
            if ref is not None:
                g.eval()
                y = np.asarray(g(xd)[0].numpy(), dtype=np.float64)
                err = float(np.linalg.norm(y - ref) / max(np.linalg.norm(ref), 1e-300))
            if mode == "fwd":
                g.eval()

                def p_call():
                    g(xd)
            else:
                g.train()

                def p_call():
                    g(xd)
                    g.backward(dyd)
            info = (lambda: pcuda.layer_options(g)) if hasattr(pcuda, "layer_options") else dict
            return {"fn": lambda: self._timed(p_call, self.pstream), "err": err, "info": info}

        return t_fn, make_pyrnn


# ---- the driver (back-end independent: tests run it over a fake back end) ----------------------

def interleaved(fns, repeats, budget_s, warmup):
    """fns: {name: callable -> (event ms, wall ms)}. Warm-up, then rounds with a rotating order.
    Returns ({name: (median event ms, median wall ms)}, rounds)."""
    names = list(fns)
    for _ in range(warmup):
        for k in names:
            fns[k]()
    ev = {k: [] for k in names}
    wall = {k: [] for k in names}
    start = time.perf_counter()
    rounds = 0
    with gc_paused():
        for i in range(repeats):
            k0 = i % len(names)
            for k in names[k0:] + names[:k0]:
                e, w = fns[k]()
                ev[k].append(e)
                wall[k].append(w)
            rounds += 1
            if time.perf_counter() - start > budget_s and rounds >= 5:
                break
    return {k: (statistics.median(ev[k]), statistics.median(wall[k])) for k in names}, rounds


def _f(v, fmt):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


HEADER = (f"{'config':8s} {'cell':9s} {'mode':6s} {'variant':10s} {'prec':7s} {'pyrnn ms':>9s} "
          f"{'torch ms':>9s} {'ratio':>6s} {'GFLOP/s':>8s} {'target':>6s} {'rel err':>8s}")


def format_row(r):
    tgt = r["target_ratio"]
    mark = ""
    if tgt is not None and r["ratio"] is not None:
        mark = " ok" if r["ratio"] <= tgt else " MISS"
    return (f"{r['config']:8s} {r['cell']:9s} {r['mode']:6s} {r['variant']:10s} "
            f"{r['precision']:7s} {_f(r['pyrnn_ms'], '9.3f')} {_f(r['torch_ms'], '9.3f'):>9s} "
            f"{_f(r['ratio'], '6.2f'):>6s} {_f(r['pyrnn_gflops'], '8.1f'):>8s} "
            f"{_f(tgt, '6.2f'):>6s} {_f(r['rel_err'], '8.1e'):>8s}{mark}")


def run(backend, args, stream=sys.stdout):
    p = lambda *a: print(*a, file=stream, flush=True)  # noqa: E731
    import pyrnn
    precisions = {"float32": ["float32"], "tf32": ["float32", "tf32"],
                  "both": ["float32", "tf32"]}[args.precision]
    variants = args.variants.split(",")  # checked by parse_args
    device = backend.device_info()
    clocks_before = backend.clocks()
    peak = backend.matmul_gflops()
    p(f"pyrnn {pyrnn.__version__} CUDA vs PyTorch/cuDNN on {device['name']} "
      f"(cc {device['compute_capability']}, {device['multiprocessors']} SMs), "
      f"CUDA runtime {device['pyrnn_cuda_runtime']}, torch CUDA {device['torch_cuda']}, "
      f"cuDNN {device['cudnn']}")
    p(f"clocks read before: {clocks_before}")
    p(f"torch.matmul 4096^3 float32 (TF32 off): {peak:.0f} GFLOP/s")
    p(HEADER)
    p("-" * len(HEADER))
    rows, skipped = [], []
    tf32_settings = {}

    def write(clocks_after, complete):
        """The JSON (also rewritten after every case, so a run cut short keeps its rows)."""
        summary = summarize(rows)
        result = {
            "benchmark": "bench_cuda", "complete": complete,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                        "platform": platform.platform(), "python": sys.version.split()[0]},
            "device": {**device, "clocks_before": clocks_before, "clocks_after": clocks_after},
            "pyrnn": {"version": pyrnn.__version__, "options": backend.options()},
            "torch": backend.torch_version(),
            "torch_tf32_settings": tf32_settings,
            "torch_matmul_4096_gflops": peak,
            "targets": {f"{c}/{m}": v for (c, m), v in TARGETS.items()},
            "lstm_seed_fwd_target_ms": LSTM_SEED_FWD_TARGET_MS,
            "seeds_gpu_ms": SEEDS_GPU_MS,
            "timing": {"method": "end-to-end per call, both sides synchronized after each "
                                 "call: CUDA events around the call on each side's stream, "
                                 "idle GPU (host launch work included), interleaved, medians",
                       "repeats": args.repeats, "warmup": args.warmup, "budget_s": args.budget},
            "provenance": provenance(getattr(backend, "torch", None), __file__),
            "variants": {v: VARIANTS[v] for v in variants},
            "skipped": skipped, "summary": summary["data"], "results": rows,
        }
        if args.out:
            write_file(args.out, json.dumps(result, indent=2))  # whole or not at all
        return result

    for cname in args.configs.split(","):
        T, N, C, H = CONFIGS[cname]
        for cell in args.cells.split(","):
            for mode in ("fwd", "fwdbwd"):
                for prec in precisions:
                    tf32_settings[prec] = backend.set_torch_tf32(prec == "tf32")
                    t_fn, make_pyrnn = backend.make_case(cell, T, N, C, H, mode,
                                                         check=not args.no_check)
                    fns, made = {}, {}
                    for v in variants:
                        m = make_pyrnn(v, prec)
                        if isinstance(m, str):
                            skipped.append({"config": cname, "cell": cell, "mode": mode,
                                            "variant": v, "precision": prec, "reason": m})
                            continue
                        made[v] = m
                        fns[v] = m["fn"]
                    if not fns:
                        continue
                    if t_fn is not None:
                        fns["torch"] = t_fn
                    med, n = interleaved(fns, args.repeats, args.budget, args.warmup)
                    t_ms = med["torch"][0] if "torch" in med else None
                    for v in variants:
                        if v not in med:
                            continue
                        p_ms = med[v][0]
                        ratio = p_ms / t_ms if t_ms else None
                        row = {"config": cname, "T": T, "N": N, "C": C, "H": H, "cell": cell,
                               "mode": mode, "variant": v, "precision": prec,
                               "pyrnn_ms": p_ms, "torch_ms": t_ms, "ratio": ratio,
                               "pyrnn_gflops": flops(cell, T, N, C, H, mode == "fwdbwd")
                               / (p_ms * 1e-3) / 1e9,
                               "pyrnn_wall_ms": med[v][1],
                               "torch_wall_ms": med["torch"][1] if "torch" in med else None,
                               "target_ratio": TARGETS.get((cname, mode)) if prec == "float32"
                               else None,
                               "rel_err": made[v]["err"], "repeats": n,
                               "pyrnn_path": made[v]["info"]()}
                        if cname == "seed" and mode == "fwd":
                            row["seeds_gpu_ms"] = SEEDS_GPU_MS[cell]
                            row["x_faster_than_seeds"] = SEEDS_GPU_MS[cell] / p_ms
                        rows.append(row)
                        p(format_row(row))
                    write(None, complete=False)
    clocks_after = backend.clocks()
    backend.set_torch_tf32(False)
    p("")
    p(f"clocks read after: {clocks_after}")
    for s in skipped:
        p(f"skipped {s['config']} {s['cell']} {s['mode']} {s['variant']} {s['precision']}: "
          f"{s['reason']}")
    summary = summarize(rows)
    for line in summary["lines"]:
        p(line)
    p("ratio = pyrnn / PyTorch-cuDNN (< 1: pyrnn faster); target: issue 7's bound for float32 "
      "rows; rel err: ||y - y64|| / ||y64|| of the forward output against float64.")
    result = write(clocks_after, complete=True)
    if args.out:
        p(f"wrote {args.out}")
    return result


def summarize(rows):
    """Per variant: targets met / timed (float32 rows with a torch time), the seed LSTM forward
    against 0.25 ms, and the seed forwards against the seeds' GPU table."""
    lines, data = [], {}
    for v in sorted({r["variant"] for r in rows}):
        rs = [r for r in rows if r["variant"] == v and r["precision"] == "float32"]
        judged = [r for r in rs if r["target_ratio"] is not None and r["ratio"] is not None]
        met = [r for r in judged if r["ratio"] <= r["target_ratio"]]
        lstm = [r["pyrnn_ms"] for r in rs
                if (r["config"], r["cell"], r["mode"]) == ("seed", "LSTM", "fwd")]
        seeds = {r["cell"]: r["x_faster_than_seeds"] for r in rs if "x_faster_than_seeds" in r}
        data[v] = {"targets_met": len(met), "targets_judged": len(judged),
                   "lstm_seed_fwd_ms": lstm[0] if lstm else None,
                   "x_faster_than_seeds_gpu_table": seeds}
        line = f"variant {v}: ratio targets met {len(met)}/{len(judged)}"
        if lstm:
            line += (f"; seed LSTM forward {lstm[0]:.3f} ms (target < {LSTM_SEED_FWD_TARGET_MS})")
        if seeds:
            line += "; x faster than the seeds' GPU table: " + ", ".join(
                f"{c} {x:.0f}x" for c, x in seeds.items())
        lines.append(line)
    return {"lines": lines, "data": data}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--budget", type=float, default=6.0, help="seconds per case at most")
    ap.add_argument("--configs", default="seed,large,latency")
    ap.add_argument("--cells", default="RNN,LSTM,GRU,GRU_seeds")
    ap.add_argument("--precision", choices=("float32", "tf32", "both"), default="float32",
                    help="tf32/both: also rows with TF32 on both sides")
    ap.add_argument("--variants", default="default",
                    help="comma list of pyrnn settings to time: " + ", ".join(VARIANTS))
    ap.add_argument("--no-check", action="store_true", help="skip the float64 reference check")
    ap.add_argument("--quick", action="store_true", help="few repeats (smoke test)")
    ap.add_argument("--out", type=out_file, default=None, help="JSON file to write (checked "
                    "before the run)")
    args = ap.parse_args(argv)
    # Usage errors (exit 2) before a GPU is looked for, not a KeyError minutes into a run.
    for name, known in (("configs", CONFIGS), ("cells", GATES), ("variants", VARIANTS)):
        given = [v.strip() for v in getattr(args, name).split(",")]
        if not all(given) or any(v not in known for v in given):
            ap.error(f"--{name}: expected comma-separated names from {', '.join(known)}, got "
                     f"{getattr(args, name)!r}")
        setattr(args, name, ",".join(given))
    if args.repeats < 1 or args.warmup < 0:
        ap.error(f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats} and "
                 f"{args.warmup}")
    if not (math.isfinite(args.budget) and args.budget > 0):
        ap.error(f"--budget must be a finite number of seconds > 0, got {args.budget}")
    if args.quick:
        args.repeats, args.warmup, args.budget = 5, 2, 1.0
    return args


def main(argv=None, backend=None):
    args = parse_args(argv)
    if backend is None:
        try:
            backend = TorchCudaBackend()
        except NoGPU as e:
            print(f"bench_cuda: no GPU to benchmark on: {e}", file=sys.stderr)
            print("bench_cuda: needs an NVIDIA GPU, PyTorch with CUDA, and pyrnn built with "
                  "PYRNN_WITH_CUDA=ON (see benchmarks/README.md)", file=sys.stderr)
            return EXIT_NO_GPU
    run(backend, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
