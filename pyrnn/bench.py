"""`pyrnn bench`: the seeds' CPU-vs-GPU forward-time table, measured on this machine.

The seeds (document 003, "GPU Acceleration") claim, for a forward pass at sequence 50,
batch 64, hidden 128: RNN 250 ms CPU / 15 ms GPU, LSTM 800 / 25, GRU 600 / 20. This command
times the same forward passes (input size 128, float32, eval mode) with pyrnn on the CPU, with
PyTorch on the CPU when it is installed (same thread count), and on the GPU when
pyrnn.cuda.is_available() (else the GPU column says 'n/a' and why).

Timing follows benchmarks/bench_cpu.py: warm-up, then pyrnn and PyTorch interleaved (who goes
first alternates, the garbage collector off), median of the repeats. With PyTorch, pyrnn's layer
is built from the torch module's weights (pyrnn.from_torch; the GRU in PyTorch's reset_after=True
form) and their outputs must agree (relative error <= REL_TOL) before anything is timed.
Timings are noisy on a shared machine; the medians and the pyrnn/PyTorch ratio (same process,
same moment) are the figures to read.
"""
import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

from . import _outfile
from ._argtypes import int_range

# Seed document 003: operation -> (CPU ms, GPU ms) at seq 50, batch 64, hidden 128.
SEEDS_MS = {"RNN": (250.0, 15.0), "LSTM": (800.0, 25.0), "GRU": (600.0, 20.0)}
CONFIG = {"T": 50, "N": 64, "C": 128, "H": 128}
# Beyond this relative error (float32) two sides are not computing the same thing; summation
# order alone gives about 1e-6.
REL_TOL = 1e-4
_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "MKL_ENABLE_INSTRUCTIONS")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_id():
    """{vendor, family, model, stepping} of the first CPU in /proc/cpuinfo ({} elsewhere): "AMD
    EPYC" alone does not tell a Zen 4 (AVX-512 on 256-bit units) from a Zen 5 (512-bit units,
    twice the FMA peak), which decides what a GFLOP/s figure means."""
    keys = {"vendor_id": "vendor", "cpu family": "family", "model": "model", "stepping": "stepping"}
    out = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block only
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key in keys:
                    out[keys[key]] = int(value) if value.isdigit() else value
    except OSError:
        pass
    return out


def git_commit(path):
    """`git describe --always --dirty` of the checkout that tracks `path`; None when it is not
    tracked (an installed package, even one inside a checkout's ignored .venv) or git is
    missing."""
    folder, name = os.path.split(os.path.abspath(path))

    def git(*a):  # (no index.lock taken: another git may be running there)
        return subprocess.run(["git", "-C", folder, *a], capture_output=True, text=True,
                              timeout=20, stdin=subprocess.DEVNULL,
                              env=dict(os.environ, GIT_OPTIONAL_LOCKS="0"))
    try:
        if git("ls-files", "--error-unmatch", name).returncode != 0:
            return None
        done = git("describe", "--always", "--dirty")
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def openmp_runtimes():
    """Paths of the OpenMP runtimes mapped into this process (libgomp, libiomp, libomp): two
    at once (torch's bundled libgomp beside another) make two thread pools. None where
    /proc/self/maps cannot be read."""
    try:
        with open("/proc/self/maps") as f:
            fields = [line.split(None, 5) for line in f]
    except OSError:
        return None
    paths = {f[5].strip() for f in fields if len(f) == 6}  # (anonymous mappings have no path)
    return sorted(p for p in paths
                  if os.path.basename(p).startswith(("libgomp", "libiomp", "libomp")))


def provenance(torch=None, source=None):
    """What a result depends on beyond the code: the commit `source` (a file) is tracked in,
    the CPUs this process may use, the thread and ISA settings of both libraries and the
    OpenMP runtimes loaded. For every benchmark's JSON."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = None
    env = {k: os.environ.get(k) for k in _ENV}
    env.update({k: v for k, v in sorted(os.environ.items()) if k.startswith("PYRNN_")})
    # The checkout the benchmark script ran from: the pyrnn it imported was built from that
    # tree only if it was installed from it since (pyrnn.info() says which version).
    out = {"benchmark_checkout": git_commit(source) if source else None,
           "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
           "cpu_count": os.cpu_count(), "affinity_cpus": affinity,
           "platform": platform.platform(), "env": env, "openmp_runtimes": openmp_runtimes(),
           "torch": None}
    if torch is not None:
        cpu = getattr(torch.backends, "cpu", None)
        out["torch"] = {"num_threads": torch.get_num_threads(),
                        "num_interop_threads": torch.get_num_interop_threads(),
                        "cpu_capability": cpu.get_cpu_capability() if cpu else None}
    return out


def rel_err(got, want):
    """||got - want|| / ||want||, in float64."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-300))


def check_same(what, got, want, tol=REL_TOL):
    """rel_err(got, want), raising RuntimeError beyond tol: timing two sides that compute
    different things compares nothing."""
    err = rel_err(got, want)
    if not err <= tol:
        raise RuntimeError(f"{what}: pyrnn and PyTorch disagree, relative error {err:.2e} > "
                           f"{tol:g}; not timing them")
    return err


class gc_paused:
    """Collects, then keeps the garbage collector off (a collection inside one side's timed
    call would be charged to it); restores it on exit."""

    def __enter__(self):
        gc.collect()
        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self.was:
            gc.enable()


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def load_average():
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def interleaved_medians(fns, repeats, budget_s, warmup=2):
    """Median seconds of each callable in `fns` (None entries are skipped), run interleaved
    with a rotating order; stops after `repeats` rounds or `budget_s` seconds (at least 3
    rounds). Returns (list of medians or None, rounds)."""
    live = [f for f in fns if f is not None]
    for _ in range(warmup):
        for f in live:
            f()
    times = [[] for _ in fns]
    start = time.perf_counter()
    rounds = 0
    with gc_paused():
        for i in range(repeats):
            k = i % len(fns)
            for j in list(range(k, len(fns))) + list(range(k)):
                if fns[j] is not None:
                    times[j].append(_timed(fns[j]))
            rounds += 1
            if time.perf_counter() - start > budget_s and rounds >= 3:
                break
    return [statistics.median(t) if t else None for t in times], rounds


def _make_pyrnn(cell, C, H, device="cpu"):
    import pyrnn
    # GRU in PyTorch's (and cuDNN's) form, the one timed against it
    kw = {"reset_after": True} if cell == "GRU" else {}
    layer = getattr(pyrnn, cell)(C, H, seed=0, device=device, **kw)
    layer.eval()
    return layer


def _gpu_fn(cell, x, torch):
    """A callable timing one pyrnn forward on the GPU (synchronized), or raise with why not."""
    from . import cuda
    if not cuda.is_available():
        raise RuntimeError(cuda.unavailable_reason() or "no CUDA device")
    layer = _make_pyrnn(cell, x.shape[2], CONFIG["H"], device="cuda")
    xin = x
    if torch is not None and torch.cuda.is_available():
        xin = torch.from_numpy(x).cuda()  # device input: no host<->device copies timed

    def fn():
        layer(xin)
        cuda.synchronize()
    fn()
    return fn, ("device input" if xin is not x else "NumPy input: includes host<->device copies")


def run(*, quick=False, threads=None, repeats=None, use_torch=True, stream=None):
    """Measure the table; returns a JSON-able dict (also printed as a table). The thread
    counts it sets (pyrnn's and PyTorch's) are put back at the end, as demo.run does."""
    import pyrnn
    torch = None
    if use_torch:
        try:
            import torch  # noqa: F811
        except (ImportError, OSError):  # (a broken install: a missing .so is an OSError)
            pass
    saved = pyrnn.get_num_threads(), (torch.get_num_threads() if torch is not None else None)
    try:
        return _run(quick, threads, repeats, use_torch, stream)
    finally:
        from .demo import restore_threads
        restore_threads(pyrnn.set_num_threads, saved[0])
        if torch is not None:
            restore_threads(torch.set_num_threads, saved[1])


def _run(quick, threads, repeats, use_torch, stream):
    stream = sys.stdout if stream is None else stream  # at call time: redirect_stdout
    import pyrnn
    from . import cuda

    threads = threads or pyrnn.get_num_threads()  # the library's default (OMP_NUM_THREADS, cpuset)
    repeats = repeats or (3 if quick else 30)
    budget = 0.3 if quick else 10.0
    T, N, C, H = CONFIG["T"], CONFIG["N"], CONFIG["C"], CONFIG["H"]
    pyrnn.set_num_threads(threads)
    torch = None
    torch_note = "not installed"
    if use_torch:
        try:
            import torch  # noqa: F811
            torch.set_num_threads(threads)
            torch_note = torch.__version__
        except (ImportError, OSError) as e:
            torch = None
            torch_note = ("not installed" if isinstance(e, ModuleNotFoundError) else
                          f"import failed ({type(e).__name__}: {e}), not timed")
    else:
        torch_note = "disabled (--no-torch)"
    gpu_reason = None if cuda.is_available() else (cuda.unavailable_reason() or "no CUDA device")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, N, C), dtype=np.float32)
    p = lambda *a: print(*a, file=stream, flush=True)
    p(f"pyrnn {pyrnn.__version__} bench: forward (eval) at sequence {T}, batch {N}, input {C}, "
      f"hidden {H}, float32")
    p(f"CPU: {cpu_model()}, {threads} thread(s), pyrnn kernels {pyrnn.get_cpu_isa()}; "
      f"PyTorch: {torch_note}")
    load = load_average()
    if load is not None:
        busy = load > 0.5 * (os.cpu_count() or 1)
        p(f"Load average {load:.1f} on {os.cpu_count()} cores"
          + (": the machine is busy, absolute times are inflated (the ratio is fairer)"
             if busy else ""))
    p(f"GPU: {', '.join(cuda.device_names()) if gpu_reason is None else 'n/a: ' + gpu_reason}")
    rows = []
    for cell in ("RNN", "LSTM", "GRU"):
        tl, err = None, None
        if torch is not None:
            torch.manual_seed(0)
            tl = {"RNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[cell](C, H)
            tl.eval()
            xt = torch.from_numpy(x)
            layer = pyrnn.from_torch(tl)  # the same weights (a GRU comes with reset_after=True)
            layer.eval()
            with torch.no_grad():
                err = check_same(f"{cell} forward", layer(x)[0], tl(xt)[0].numpy())
        else:
            layer = _make_pyrnn(cell, C, H)

        def p_fn():
            layer(x)

        def t_fn():
            with torch.no_grad():
                tl(xt)

        (p_s, t_s), n = interleaved_medians([p_fn, t_fn if tl is not None else None],
                                            repeats, budget, warmup=1 if quick else 2)
        row = {"cell": cell, **CONFIG, "seeds_cpu_ms": SEEDS_MS[cell][0],
               "seeds_gpu_ms": SEEDS_MS[cell][1], "pyrnn_cpu_ms": p_s * 1e3,
               "torch_cpu_ms": t_s * 1e3 if t_s else None,
               "pyrnn_over_torch": (p_s / t_s) if t_s else None, "rel_err": err,
               "reset_after": layer.reset_after if cell == "GRU" else None, "repeats": n,
               "pyrnn_gpu_ms": None, "gpu_note": gpu_reason}
        if gpu_reason is None:
            try:
                g_fn, note = _gpu_fn(cell, x, torch)
                (g_s,), _ = interleaved_medians([g_fn], repeats, budget)
                row["pyrnn_gpu_ms"], row["gpu_note"] = g_s * 1e3, note
            except Exception as e:  # CUDA layers missing from this build, driver errors, ...
                row["gpu_note"] = f"{type(e).__name__}: {e}"
        rows.append(row)
    p("")
    p(format_table(rows, torch is not None))
    notes = sorted({r["gpu_note"] for r in rows if r["gpu_note"]})
    for note in notes:
        p(f"GPU column: {note}")
    p("GRU: pyrnn in PyTorch's form (reset_after=True; pyrnn's default is the seeds' "
      "reset_after=False); benchmarks/bench_cpu.py times pyrnn in both forms.")
    p("Seeds' figures are the document's claims, not measurements on this machine. "
      "pyrnn/torch < 1 means pyrnn is faster.")
    return {"benchmark": "pyrnn bench", "quick": bool(quick),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "machine": {"cpu": cpu_model(), "cpu_id": cpu_id(), "cores": os.cpu_count(),
                        "platform": platform.platform(), "python": sys.version.split()[0],
                        "load_average_1min": load},
            "pyrnn": {"version": pyrnn.__version__, "cpu_isa": pyrnn.get_cpu_isa(),
                      "threads": pyrnn.get_num_threads()},
            "torch": torch.__version__ if torch is not None else None,
            "cuda": {"available": gpu_reason is None, "devices": cuda.device_names(),
                     "reason": gpu_reason},
            "config": CONFIG, "provenance": provenance(torch, __file__), "results": rows}


def _ms(v):
    return "n/a" if v is None else (f"{v:.2f}" if v < 100 else f"{v:.0f}")


def format_table(rows, with_torch):
    head = ["Operation", "seeds CPU", "seeds GPU", "pyrnn CPU ms"]
    if with_torch:
        head += ["PyTorch CPU ms", "pyrnn/torch"]
    head += ["pyrnn GPU ms", "speedup (CPU/GPU)"]
    body = []
    for r in rows:
        line = [f"{r['cell']} forward (seq {r['T']}, batch {r['N']}, hidden {r['H']})",
                f"{r['seeds_cpu_ms']:.0f} ms", f"{r['seeds_gpu_ms']:.0f} ms",
                _ms(r["pyrnn_cpu_ms"])]
        if with_torch:
            line += [_ms(r["torch_cpu_ms"]),
                     f"{r['pyrnn_over_torch']:.2f}" if r["pyrnn_over_torch"] else "n/a"]
        g = r["pyrnn_gpu_ms"]
        line += [_ms(g), f"{r['pyrnn_cpu_ms'] / g:.1f}x" if g else "n/a"]
        body.append(line)
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    fmt = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [fmt(b) for b in body])


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true", help="few repeats (a few seconds)")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results "
                        "as JSON (machine, versions, every timing; - for stdout)")
    parser.add_argument("--threads", type=int_range(1, 4096), default=None,
                        help="CPU threads for pyrnn and PyTorch (default: pyrnn's thread count: "
                        "OMP_NUM_THREADS, else the CPUs this process may run on)")
    parser.add_argument("--repeats", type=int_range(1), default=None,
                        help="timed rounds per cell, at most (>= 1; default 30, 3 with "
                        "--quick): a cell stops after 10 s of rounds (0.3 s with --quick) once "
                        "3 have run; the JSON records each cell's count")
    parser.add_argument("--no-torch", action="store_true", help="do not time PyTorch")


def main_args(args):
    from .cli import cpu_ready
    if not cpu_ready("bench"):
        return 2
    if args.json == "-":
        args.json = "/dev/stdout"  # (was a file named "-")
    if args.json is not None:
        # Before the run, not after minutes of it
        why = _outfile.problem(args.json)
        if why:
            print(f"pyrnn bench: --json {args.json}: {why}", file=sys.stderr)
            return 2
    # JSON on stdout (--json - or /dev/stdout): the table and the last line go to stderr, so
    # that stdout is the JSON alone (`pyrnn bench --json - | jq`)
    to_stdout = args.json is not None and _outfile._own_descriptor(args.json) == 1
    result = run(quick=args.quick, threads=args.threads, repeats=args.repeats,
                 use_torch=not args.no_torch, stream=sys.stderr if to_stdout else None)
    if args.json is not None:
        text = json.dumps(result, indent=2)
        try:
            _outfile.write_file(args.json, text)  # whole or not at all
        except BrokenPipeError:
            from .cli import _stdout_closed
            if _stdout_closed():
                raise  # (stdout's reader gone, | head: cli.guarded ends quietly)
            print(f"pyrnn bench: --json {args.json}: its reader has gone (broken pipe); the "
                  f"results:\n{text}", file=sys.stderr)
            return 2
        except OSError as e:  # checked before the run, but a disk can fill meanwhile
            print(f"pyrnn bench: --json {args.json}: {e.strerror or e}; the results:\n{text}",
                  file=sys.stderr)
            return 2
        print(f"wrote {args.json}", file=sys.stderr if to_stdout else sys.stdout)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pyrnn bench", description=__doc__.split("\n")[0])
    add_arguments(parser)
    from .cli import guarded
    return guarded("bench", main_args, parser.parse_args(argv))


if __name__ == "__main__":
    from .cli import exit_with
    exit_with(main())
