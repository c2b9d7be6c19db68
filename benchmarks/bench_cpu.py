"""CPU benchmark: pyrnn vs PyTorch (same process, same thread count, interleaved, medians).

    python benchmarks/bench_cpu.py [--threads 2] [--repeats 30] [--quick] [--out results.json]

Configurations (T, N, C, H): seed (50, 64, 128, 128), large (100, 64, 512, 512),
latency (50, 1, 32, 8); RNN (tanh), LSTM, GRU; forward in eval mode, and forward + backward.
GRU is compared in PyTorch's form (reset_after=True); the seeds' form (reset_after=False,
pyrnn's default) is timed too. Without PyTorch it reports pyrnn's absolute figures only.
GFLOP/s counts the GEMM work (2 flops per multiply-add), the measure of how close a run comes
to the machine's limit. Two limits are measured in the same run: torch.matmul on a 2048 x 2048
float32 product (issue 4's GFLOP/s bound is 75% of it), and the FMA peak, pyrnn's widest
multiply-add alone in a loop on every thread (timed before and after the cases; the machine's
speed drifts). No product beats the FMA peak, so for each ratio target the JSON gives the GFLOP/s
pyrnn would need to meet it ("needed_gflops") and that as a fraction of the peak: above about
0.9 (the micro-kernel's rate with its loads, on L1-resident operands), a target is out of reach.
Each row's ratio is the median of the per-round ratios (pyrnn and torch timed back to back,
alternating which goes first), with their quartiles: on a shared machine they show how far a
single median can move. "target" is issue 4's bound.
With PyTorch, pyrnn's layer is built from the torch module's weights (pyrnn.from_torch, torch
seeded) and both must agree before a case is timed: "rel_err" is ||y - y_torch|| / ||y_torch||
of the output, "rel_err_dx" that of d x and "rel_err_dw" the larger of the two weight
gradients' (forward + backward, a random d y), and a relative error beyond
pyrnn.bench.REL_TOL stops the run. The garbage collector is off in the timed rounds.
--dtype float64 times both sides in double (torch's module .double()): issue 4's targets are
float32's, so no row is judged, and "fraction_of_fma_peak" is of half the float32 peak (the
same vectors hold half as many doubles).
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

import pyrnn
from pyrnn.bench import (check_same, cpu_id, cpu_model, gc_paused,  # noqa: E402  (shared)
                         provenance)
from pyrnn._argtypes import int_range, name_list, positive_float
from pyrnn._outfile import out_file, write_file
from pyrnn._core import fma_peak_gflops

CONFIGS = {"seed": (50, 64, 128, 128), "large": (100, 64, 512, 512), "latency": (50, 1, 32, 8),
           # Not in issue 4's table (no targets; --configs odd_h,few_rows,one_step,...): shapes
           # that took slow plans until 2026-12-06: a hidden size that is a multiple of no panel
           # width (2 threads ran it on one), one row with large weights (W_ih read every step),
           # one step of one row (streaming inference: the weights packed for a single use) and of
           # 32 rows (a batch of streams), 8 rows of a short sequence (W_ih read every step), and
           # one row with mid-sized weights (2 threads ran the steps on one).
           "odd_h": (50, 64, 300, 300), "few_rows": (50, 1, 1024, 1024),
           "one_step": (1, 1, 1024, 1024), "one_step_batch": (1, 32, 1024, 1024),
           "short_rows": (16, 8, 1024, 1024), "one_row_mid": (100, 1, 256, 256)}
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3, "GRU_seeds": 3}
# Issue 4's targets: pyrnn time / PyTorch time, float32, same thread count.
TARGETS = {("seed", "fwd"): 0.75, ("seed", "fwdbwd"): 0.6, ("large", "fwd"): 1.0,
           ("large", "fwdbwd"): 0.75, ("latency", "fwd"): 0.3, ("latency", "fwdbwd"): 0.3}
GFLOPS_TARGET = 0.75  # of torch.matmul's 2048 x 2048 GFLOP/s, at the large configuration


def flops(cell, T, N, C, H, backward):
    fwd = 2.0 * T * N * GATES[cell] * H * (C + H)
    return fwd * 3 if backward else fwd  # backward: d input, d state and d weights GEMMs


def make_pyrnn(cell, C, H, batch_first=False, dtype="float32"):
    if cell == "RNN":
        return pyrnn.RNN(C, H, batch_first=batch_first, seed=0, dtype=dtype)
    if cell == "LSTM":
        return pyrnn.LSTM(C, H, batch_first=batch_first, seed=0, dtype=dtype)
    return pyrnn.GRU(C, H, reset_after=(cell == "GRU"), batch_first=batch_first, seed=0,
                     dtype=dtype)


def make_torch(torch, cell, C, H, batch_first=False, dtype="float32"):
    torch.manual_seed(0)
    m = {"RNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[cell](
        C, H, batch_first=batch_first)
    return m.double() if dtype == "float64" else m


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def torch_peer(threads, no_torch):
    """PyTorch on `threads` threads, or None (no_torch, or not installed)."""
    if no_torch:
        return None
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def add_common_args(ap, repeats, min_repeats, budget, quick_help):
    """The options the layer, optimizer and training benchmarks share."""
    ap.add_argument("--threads", type=int_range(1, 4096), default=1,
                    help="threads for both sides (default 1)")
    ap.add_argument("--repeats", type=int_range(min_repeats, 10**6), default=repeats,
                    help=f"rounds timed per side (default {repeats})")
    ap.add_argument("--budget", type=positive_float, default=budget,
                    help=f"seconds per case and peer, at most (default {budget:g})")
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--out", type=out_file, help="write the results as JSON here (checked "
                    "before the run)")


def start(args):
    """The common start of the layer, optimizer and training benchmarks: args.threads on both
    sides, and a banner line. Returns torch, or None (--no-torch, or not installed)."""
    torch = torch_peer(args.threads, args.no_torch)
    pyrnn.set_num_threads(args.threads)
    print(f"pyrnn {pyrnn.__version__} ({pyrnn.get_cpu_isa()}), {args.threads} threads, "
          f"{cpu_model()}" + (f", torch {torch.__version__}" if torch else ", no torch"))
    return torch


def write_results(path, benchmark, threads, torch, rows):
    """The rows as JSON at path, with the machine's and the versions' details."""
    doc = {"benchmark": benchmark,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
           "pyrnn_version": pyrnn.__version__,
           "torch_version": torch.__version__ if torch else None, "cpu_model": cpu_model(),
           "cpu_id": cpu_id(), "isa": pyrnn.get_cpu_isa(), "threads": threads,
           "python": platform.python_version(),
           "provenance": provenance(torch, __file__),  # (every script lives beside this one)
           "rows": rows}
    write_file(path, json.dumps(doc, indent=1))  # whole or not at all
    print(f"wrote {path}")


def pair_with_fused(p_fn, t_fn, t_fused, repeats, budget_s):
    """pyrnn against PyTorch's default implementation and, where given, its fused one (each
    pairing timed on its own, bench_pair): the fields of a result row."""
    pm, tm, rounds, spread = bench_pair(p_fn, t_fn, repeats, budget_s)
    row = {"pyrnn_ms": pm * 1e3, "torch_ms": None if tm is None else tm * 1e3,
           "ratio": None if tm is None else spread[1], "rounds": rounds,
           "ratio_quartiles": None if spread is None else [spread[0], spread[2]],
           "torch_fused_ms": None, "ratio_fused": None}
    if t_fused is not None:
        pm2, tf, _, spread2 = bench_pair(p_fn, t_fused, repeats, budget_s)
        row.update(torch_fused_ms=tf * 1e3, ratio_fused=spread2[1],
                   ratio_fused_quartiles=[spread2[0], spread2[2]])
    return row


def bench_pair(p_fn, t_fn, repeats, budget_s):
    for _ in range(2):  # warm-up: caches, packing buffers, thread pools
        p_fn()
        if t_fn:
            t_fn()
    ps, ts = [], []
    start = time.perf_counter()
    with gc_paused():
        for i in range(repeats):
            # Interleave, alternating who goes first, so drift hits both alike.
            order = (p_fn, t_fn) if i % 2 == 0 else (t_fn, p_fn)
            for fn in order:
                if fn is None:
                    continue
                (ps if fn is p_fn else ts).append(timed(fn))
            if time.perf_counter() - start > budget_s and i >= 4:
                break
    spread = None
    if ts:  # quartiles of the per-round ratios (each round times both, back to back): the
        # ratio reported is their median, so that it lies within its own spread (the ratio of
        # the two medians could fall outside it)
        q = statistics.quantiles([p / t for p, t in zip(ps, ts)], n=4, method="inclusive")
        spread = (q[0], q[1], q[2])
    return statistics.median(ps), (statistics.median(ts) if ts else None), len(ps), spread


def needed_gflops(row):
    """GFLOP/s pyrnn would need to run in target x PyTorch's median time (None without a
    torch time): the row's shown ratio is the median of the per-round ratios, so this reads
    slightly off it where the two medians' ratio differs."""
    if row.get("target_ratio") is None or not row.get("torch_ms"):
        return None
    return flops(row["cell"], row["T"], row["N"], row["C"], row["H"], row["mode"] == "fwdbwd") \
        / (row["target_ratio"] * row["torch_ms"] * 1e-3) / 1e9


def summarize(rows, peak, fma_peak=None):
    """Ratio targets met / judged (rows with a torch time), and the large configuration's best
    GFLOP/s against GFLOPS_TARGET x torch.matmul's. With the FMA peak: each missed target's
    needed GFLOP/s as a fraction of it."""
    judged = [r for r in rows if r["target_ratio"] is not None]
    missed = [r for r in judged if r["ratio"] > r["target_ratio"]]
    out = {"targets_met": len(judged) - len(missed), "targets_judged": len(judged),
           "targets_missed": [f"{r['config']} {r['cell']} {r['mode']}" for r in missed]}
    lines = [f"ratio targets met: {out['targets_met']}/{out['targets_judged']}"
             + (f" (missed: {', '.join(out['targets_missed'])})" if missed else "")]
    if fma_peak and missed:
        out["missed_needs"] = {}
        for r, name in zip(missed, out["targets_missed"]):
            need = needed_gflops(r)
            out["missed_needs"][name] = {"ratio": r["ratio"], "target": r["target_ratio"],
                                         "needed_gflops": need,
                                         "needed_fraction_of_fma_peak": need / fma_peak}
            lines.append(f"  {name}: {r['ratio']:.3f} vs {r['target_ratio']}; meeting it needs "
                         f"{need:.0f} GFLOP/s = {need / fma_peak:.0%} of the FMA peak "
                         f"({fma_peak:.0f}); pyrnn ran at {r['pyrnn_gflops']:.0f} "
                         f"({r['pyrnn_gflops'] / fma_peak:.0%})")
    large = [r["pyrnn_gflops"] for r in rows if r["config"] == "large"]
    if peak and large:
        out["large_best_gflops"] = max(large)
        out["gflops_target_met"] = max(large) >= GFLOPS_TARGET * peak
        lines.append(f"large configuration best {max(large):.1f} GFLOP/s vs "
                     f"{GFLOPS_TARGET:.0%} of torch.matmul = {GFLOPS_TARGET * peak:.1f}: "
                     + ("met" if out["gflops_target_met"] else "not met"))
    out["lines"] = lines
    return out


def matmul_peak(torch, threads):
    a = torch.randn(2048, 2048)
    b = torch.randn(2048, 2048)
    torch.matmul(a, b)
    best = min(timed(lambda: torch.matmul(a, b)) for _ in range(5))
    return 2.0 * 2048 ** 3 / best / 1e9


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int_range(1, 4096), default=None,
                    help="threads for both sides (default: pyrnn's: OMP_NUM_THREADS, else the "
                    "CPUs this process may run on)")
    ap.add_argument("--repeats", type=int_range(2), default=None,
                    help="timed rounds per case (>= 2: the quartiles need two; default 30, "
                    "3 with --quick)")
    ap.add_argument("--budget", type=positive_float, default=None,
                    help="seconds per case at most (default 20, 2 with --quick)")
    ap.add_argument("--configs", type=name_list(tuple(CONFIGS)), default="seed,large,latency")
    ap.add_argument("--cells", type=name_list(tuple(GATES)), default="RNN,LSTM,GRU,GRU_seeds")
    ap.add_argument("--quick", action="store_true", help="few repeats (smoke test): the "
                    "defaults of --repeats, --budget and --peak-seconds shrink")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                    help="both sides' dtype (float64: no targets judged)")
    ap.add_argument("--batch-first", action="store_true",
                    help="both libraries' layers with batch_first=True, inputs (N, T, C)")
    ap.add_argument("--peak-seconds", type=positive_float, default=None,
                    help="seconds for each FMA peak measurement (one before, one after; "
                    "default 1, 0.05 with --quick)")
    ap.add_argument("--out", type=out_file, default=None, help="JSON file to write (checked "
                    "before the run)")
    args = ap.parse_args(argv)
    # --quick shrinks the defaults; an option given keeps its value
    for name, normal, quick in (("repeats", 30, 3), ("budget", 20.0, 2.0),
                                ("peak_seconds", 1.0, 0.05)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else normal)
    if args.threads is None:
        args.threads = pyrnn.get_num_threads()

    torch = torch_peer(args.threads, args.no_torch)
    pyrnn.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    peak = matmul_peak(torch, args.threads) if torch else None
    fma = [fma_peak_gflops(args.threads, args.peak_seconds)]
    rows = []
    print(f"pyrnn {pyrnn.__version__} ({pyrnn.get_cpu_isa()}), {args.threads} threads, "
          f"{cpu_model()}" + (f", torch {torch.__version__}" if torch else ", no torch"))
    if peak:
        print(f"torch.matmul 2048x2048 float32: {peak:.1f} GFLOP/s")
    print(f"FMA peak ({pyrnn.get_cpu_isa()}, {args.threads} threads): {fma[0]:.1f} GFLOP/s")
    hdr = (f"{'config':8s} {'cell':9s} {'mode':6s} {'pyrnn ms':>9s} {'torch ms':>9s} {'ratio':>6s} "
           f"{'(q1-q3)':>11s} {'target':>6s} {'GFLOP/s':>8s} {'needed':>7s}")
    print(hdr)
    print("-" * len(hdr))
    for cname in args.configs.split(","):
        T, N, C, H = CONFIGS[cname]
        bf = args.batch_first
        x = rng.standard_normal((N, T, C) if bf else (T, N, C), dtype=np.dtype(args.dtype))
        for cell in args.cells.split(","):
            tl = (make_torch(torch, cell, C, H, bf, args.dtype)
                  if torch and cell != "GRU_seeds" else None)
            # The same weights on both sides (from_torch makes torch's GRU reset_after=True).
            layer = (make_pyrnn(cell, C, H, bf, args.dtype) if tl is None
                     else pyrnn.from_torch(tl))
            xt = torch.from_numpy(x) if tl is not None else None
            for mode in ("fwd", "fwdbwd"):
                err = err_dx = err_dw = None
                if tl is not None:
                    tl.train(mode == "fwdbwd")
                if mode == "fwd":
                    layer.eval()
                    if tl is not None:
                        with torch.no_grad():
                            err = check_same(f"{cname} {cell} forward", layer(x)[0],
                                             tl(xt)[0].numpy())

                    def p_fn():
                        layer(x)

                    def t_fn():
                        with torch.no_grad():
                            tl(xt)
                else:
                    layer.train()
                    # Random (a d y read with its axes swapped would pass with ones), made once
                    # for both sides (torch built a fresh ones_like(y) in its timed round)
                    dy = rng.standard_normal((N, T, H) if bf else (T, N, H),
                                             dtype=np.dtype(args.dtype))
                    dyt = torch.from_numpy(dy) if tl is not None else None
                    xg = xt.clone().requires_grad_(True) if tl is not None else None
                    if tl is not None:
                        layer.zero_grad()
                        y_p, dx_p = layer(x)[0], layer.backward(dy)[0]
                        y_t = tl(xg)[0]
                        y_t.backward(dyt)
                        err = check_same(f"{cname} {cell} training forward", y_p,
                                         y_t.detach().numpy())
                        err_dx = check_same(f"{cname} {cell} d x", dx_p, xg.grad.numpy())
                        # the weight gradients too (a third of the backward's work)
                        err_dw = max(check_same(f"{cname} {cell} d {k}", layer.grads[k],
                                                getattr(tl, k).grad.numpy())
                                     for k in ("weight_ih_l0", "weight_hh_l0"))

                    def p_fn():
                        # Fresh gradients each round on both sides, as a training step has
                        # (pyrnn's accumulate until zero_grad, torch's are set to None)
                        layer.zero_grad()
                        layer(x)
                        layer.backward(dy)

                    def t_fn():
                        xg.grad = None
                        tl.zero_grad(set_to_none=True)
                        y, _ = tl(xg)
                        y.backward(dyt)
                p_s, t_s, n, spread = bench_pair(p_fn, t_fn if tl is not None else None, args.repeats,
                                         args.budget)
                gf = flops(cell, T, N, C, H, mode == "fwdbwd") / p_s / 1e9
                ratio = spread[1] if t_s else None  # (the median of the per-round ratios)
                judged = ratio is not None and args.dtype == "float32"
                rows.append({"config": cname, "T": T, "N": N, "C": C, "H": H, "cell": cell,
                             "batch_first": bf, "dtype": args.dtype, "mode": mode,
                             "pyrnn_ms": p_s * 1e3,
                             "torch_ms": t_s * 1e3 if t_s else None, "ratio": ratio,
                             "pyrnn_gflops": gf, "repeats": n,
                             "ratio_q1": spread[0] if spread else None,
                             "ratio_q3": spread[2] if spread else None,
                             "target_ratio": TARGETS.get((cname, mode)) if judged else None,
                             "rel_err": err, "rel_err_dx": err_dx, "rel_err_dw": err_dw})
                rows[-1]["needed_gflops"] = needed_gflops(rows[-1])
                q = f"{spread[0]:.2f}-{spread[2]:.2f}" if spread else ""
                tgt = f"{TARGETS[(cname, mode)]:.2f}" if judged and (cname, mode) in TARGETS else ""
                need = rows[-1]["needed_gflops"]
                need = f"{need:.1f}" if need else ""
                print(f"{cname:8s} {cell:9s} {mode:6s} {p_s * 1e3:9.3f} "
                      f"{(t_s * 1e3 if t_s else float('nan')):9.3f} "
                      f"{(ratio if ratio else float('nan')):6.2f} {q:>11s} {tgt:>6s} {gf:8.1f} "
                      f"{need:>7s}", flush=True)
    fma.append(fma_peak_gflops(args.threads, args.peak_seconds))
    fma_peak = max(fma)
    dtype_peak = fma_peak / (2 if args.dtype == "float64" else 1)  # the peak is float32's
    for r in rows:
        r["fraction_of_fma_peak"] = r["pyrnn_gflops"] / dtype_peak
        if r["needed_gflops"] is not None:
            r["needed_fraction_of_fma_peak"] = r["needed_gflops"] / fma_peak
    print(f"FMA peak after the cases: {fma[1]:.1f} GFLOP/s")
    # The GFLOP/s bound is of torch.matmul's float32 product: judged in float32 only.
    summary = summarize(rows, peak if args.dtype == "float32" else None, fma_peak)
    for line in summary["lines"]:
        print(line)
    result = {
        "benchmark": "bench_cpu", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "machine": {"cpu": cpu_model(), "cpu_id": cpu_id(), "cores": os.cpu_count(),
                    "platform": platform.platform(), "python": sys.version.split()[0]},
        "pyrnn": {"version": pyrnn.__version__, "cpu_isa": pyrnn.get_cpu_isa(),
                  "threads": pyrnn.get_num_threads()},
        "torch": torch.__version__ if torch else None,
        "torch_threads": torch.get_num_threads() if torch else None,
        "batch_first": args.batch_first, "dtype": args.dtype,
        "torch_matmul_2048_gflops": peak,
        "fma_peak_gflops": {"before": fma[0], "after": fma[1], "max": fma_peak},
        "targets": {f"{c}/{m}": v for (c, m), v in TARGETS.items()},
        "summary": {k: v for k, v in summary.items() if k != "lines"},
        "provenance": provenance(torch, __file__), "results": rows,
    }
    if args.out is not None:
        write_file(args.out, json.dumps(result, indent=2))  # whole or not at all
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
