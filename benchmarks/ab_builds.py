"""Two builds of pyrnn against each other: their processes alternate, round after round, each
timing the same recurrent layers (pyrnn alone; no PyTorch), and each case's ratio is taken per
round (B's median / A's, from neighbouring processes) and then its median over the rounds. This
host's speed drifts within minutes, so two full benchmark runs one after the other can differ by
more than a change does; neighbouring processes see nearly the same machine.

    python benchmarks/ab_builds.py --a /tmp/old-site --b "" [--threads 1 2] [--rounds 5]
        [--dtype float64] [--specs LSTM,50,64,128,128,fwd ...] [--labels OLD NEW] [--out FILE]

--a / --b: a folder put first on PYTHONPATH (one a `pip install --target` made), or "" for the
pyrnn this Python imports. A spec is cell,T,N,C,H,mode with mode fwd (eval) or fwdbwd; the
default is the seed shape's three cells forward plus the large LSTM's forward.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

# This Python's pyrnn: the machine's description and the shared helpers only (the builds timed
# run in their own processes)
from pyrnn._argtypes import int_range, positive_float
from pyrnn._outfile import out_file, write_file
from pyrnn.bench import cpu_id, cpu_model, provenance

DEFAULT_SPECS = ["RNN,50,64,128,128,fwd", "LSTM,50,64,128,128,fwd", "GRU,50,64,128,128,fwd",
                 "LSTM,100,64,512,512,fwd"]

# What each process runs: argv = threads, dtype, seconds, specs...; prints one JSON line with
# pyrnn's version, where it was imported from, its ISA and each spec's median milliseconds.
CHILD = r"""
import gc, json, statistics, sys, time
import numpy as np, pyrnn
threads, dtype, budget = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
pyrnn.set_num_threads(threads)
out = {"version": pyrnn.__version__, "file": pyrnn.__file__, "isa": pyrnn.get_cpu_isa(),
       "ms": {}}
for spec in sys.argv[4:]:
    cell, T, N, C, H, mode = spec.split(",")
    T, N, C, H = int(T), int(N), int(C), int(H)
    layer = getattr(pyrnn, cell)(C, H, dtype=dtype, seed=0)
    x = np.random.default_rng(0).standard_normal((T, N, C)).astype(dtype)
    if mode == "fwd":
        layer.eval()
        def f():
            layer(x)
    else:
        layer.train()
        dy = np.ones((T, N, H), dtype)
        def f():
            layer(x)
            layer.backward(dy)
    f()
    ts, t0 = [], time.perf_counter()
    gc.collect()
    gc.disable()  # (a collection inside a timed call: the methodology of every script here)
    try:
        while len(ts) < 5 or (time.perf_counter() - t0 < budget and len(ts) < 400):
            a = time.perf_counter()
            f()
            ts.append(time.perf_counter() - a)
    finally:
        gc.enable()
    out["ms"][spec] = statistics.median(ts) * 1e3
print(json.dumps(out))
"""


def check_spec(spec):
    parts = spec.split(",")
    if (len(parts) != 6 or parts[0] not in ("RNN", "LSTM", "GRU")
            or parts[5] not in ("fwd", "fwdbwd") or not all(p.isdigit() and int(p) > 0
                                                           for p in parts[1:5])):
        raise argparse.ArgumentTypeError(f"a spec is cell,T,N,C,H,fwd|fwdbwd (cell RNN, LSTM or "
                                         f"GRU; sizes positive integers), got {spec!r}")
    return spec


def build_path(text):
    """--a / --b: "" (the installed pyrnn), or an existing folder, made absolute (the child
    runs elsewhere: a relative path found nothing there, and the installed build was timed
    under the folder's name)."""
    if text == "":
        return text
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder (a pip install --target "
                                         f"site, or \"\" for the installed pyrnn)")
    return os.path.abspath(text)


def run_side(path, threads, dtype, budget, specs):
    env = dict(os.environ)
    if path:
        env["PYTHONPATH"] = path + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                    else "")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(threads), dtype, str(budget), *specs],
                          env=env, capture_output=True, text=True, cwd=os.path.expanduser("~"))
    if proc.returncode != 0:
        raise RuntimeError(f"the build at {path or '(installed)'} failed:\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if path and not os.path.realpath(out["file"]).startswith(os.path.realpath(path) + os.sep):
        raise RuntimeError(f"the child imported pyrnn from {out['file']}, not from the build at "
                           f"{path} (no pyrnn package there?)")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", type=build_path, required=True,
                    help='build A: a PYTHONPATH folder, or "" (installed)')
    ap.add_argument("--b", type=build_path, required=True,
                    help='build B: a PYTHONPATH folder, or "" (installed)')
    ap.add_argument("--threads", type=int_range(1, 4096), nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int_range(1), default=5)
    ap.add_argument("--budget", type=positive_float, default=2.0,
                    help="seconds per case and process")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    ap.add_argument("--specs", type=check_spec, nargs="+", default=DEFAULT_SPECS)
    ap.add_argument("--labels", nargs=2, metavar=("A", "B"), default=["a", "b"],
                    help="names for the two builds in the JSON (e.g. their commits)")
    ap.add_argument("--out", type=out_file, help="JSON file to write (checked before the run)")
    args = ap.parse_args(argv)

    results, builds = [], {}
    for threads in args.threads:
        rounds = []
        for r in range(args.rounds):
            # The order alternates round by round: a drift within a round hits each side alike
            sides = {}
            for side in ("a", "b") if r % 2 == 0 else ("b", "a"):
                sides[side] = run_side(getattr(args, side), threads, args.dtype, args.budget,
                                       args.specs)
            a, b = sides["a"], sides["b"]
            builds = {"a": {k: a[k] for k in ("version", "file", "isa")},
                      "b": {k: b[k] for k in ("version", "file", "isa")}}
            rounds.append((a["ms"], b["ms"]))
        for spec in args.specs:
            ratios = [b[spec] / a[spec] for a, b in rounds]
            row = {"spec": spec, "threads": threads,
                   "a_ms": statistics.median(a[spec] for a, _ in rounds),
                   "b_ms": statistics.median(b[spec] for _, b in rounds),
                   "ratio_b_over_a": statistics.median(ratios), "ratios": ratios}
            results.append(row)
            print(f"{threads} thr  {spec:28} A {row['a_ms']:9.3f} ms  B {row['b_ms']:9.3f} ms  "
                  f"B/A {row['ratio_b_over_a']:.3f}  ({' '.join(f'{r:.3f}' for r in ratios)})",
                  flush=True)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    doc = {"benchmark": "ab_builds", "date": now,
           "machine": {"cpu": cpu_model(), "cpu_id": cpu_id(), "cores": os.cpu_count(),
                       "platform": platform.platform(), "python": sys.version.split()[0]},
           "dtype": args.dtype, "rounds": args.rounds, "budget_s": args.budget,
           "a": {"path": args.a, "label": args.labels[0], **builds.get("a", {})},
           "b": {"path": args.b, "label": args.labels[1], **builds.get("b", {})},
           "provenance": provenance(None, __file__), "results": results}
    if args.out:
        write_file(args.out, json.dumps(doc, indent=2))  # whole or not at all
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
