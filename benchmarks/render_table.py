"""Render a committed benchmark JSON as the Markdown table README.md shows.

    python benchmarks/render_table.py benchmarks/results/cpu-*.json
    python benchmarks/render_table.py benchmarks/results/cuda-*.json    # bench_cuda.py's JSON
"""
import argparse
import json
import sys


def ratio_text(ratio, target=None):
    """Two decimals; near its target, as many more (up to 6) as it takes for a miss to print
    above the target and a met ratio at or below it (0.7503 against 0.75 is not "0.75"); closer
    still, 6 decimals and "+" (a miss) or "-"."""
    for digits in range(2, 7):
        text = f"{ratio:.{digits}f}"
        if target is None or (float(text) > target) == (ratio > target):
            return text
    # Within 5e-7 of the target: the rounding would read as met; say on which side it is.
    return f"{text}{'+' if ratio > target else '-'}"


def _sentence(text):
    """text as a sentence; "torch.matmul" keeps its case."""
    return (text if text.startswith("torch.") else text[0].upper() + text[1:]) + "."


class NotATable(ValueError):
    """A result JSON of another script (bench_layers.py, ab_builds.py, ...): no table here."""


def _provenance_text(r):
    """Which code ran, PyTorch's threads, and the check of both sides' results, as far as the
    file records them (the oldest record none: nothing is said)."""
    prov = r.get("provenance") or {}
    out = []
    if prov.get("benchmark_checkout"):
        out.append(f"benchmark checkout {prov['benchmark_checkout']}")
    if (prov.get("torch") or {}).get("num_threads"):
        n = prov["torch"]["num_threads"]
        out.append(f"PyTorch on {n} thread{'s' if n != 1 else ''}")
    errs = {k: max((x[k] for x in r["results"] if x.get(k) is not None), default=None)
            for k in ("rel_err", "rel_err_dx", "rel_err_dw")}
    if errs["rel_err"] is not None:
        what = [f"{name} {errs[k]:.1e}" for k, name in (("rel_err", "y"), ("rel_err_dx", "d x"),
                                                        ("rel_err_dw", "d W"))
                if errs[k] is not None]
        out.append("both sides' results checked equal before timing (largest relative "
                   f"difference: {', '.join(what)})")
    return (" " + _sentence("; ".join(out))) if out else ""


def render(path):
    with open(path) as f:
        r = json.load(f)
    if r.get("benchmark") == "bench_cuda":
        return render_cuda(r)
    if r.get("benchmark") not in (None, "bench_cpu") or not {"machine", "pyrnn"} <= set(r):
        raise NotATable(f"{path}: a {r.get('benchmark') or 'other'} result, not bench_cpu.py's "
                        f"or bench_cuda.py's: skipped")
    m = r["machine"]
    cid = m.get("cpu_id") or {}
    cpu = m["cpu"] + (f" (family {cid['family']}, model {cid['model']})"
                      if "family" in cid and "model" in cid else "")
    has_torch = r.get("torch") is not None
    matmul, peak = r.get("torch_matmul_2048_gflops"), r.get("fma_peak_gflops")
    quartiles = any(x.get("ratio_q1") is not None for x in r["results"])
    rates = ([f"torch.matmul 2048x2048 reached {matmul:.0f} GFLOP/s"] if matmul is not None else [])
    if peak:
        rates.append(f"the FMA peak (pyrnn's multiply-add alone, before / after the cases) "
                     f"{peak['before']:.0f} / {peak['after']:.0f}")
    data = (r.get("dtype", "float32")
            + ("; batch_first layers, inputs (N, T, C)" if r.get("batch_first") else ""))
    lines = [f"Measured {r['date'][:10]} on {cpu}, {m['cores']} cores, "
             f"{r['pyrnn']['threads']} threads, pyrnn {r['pyrnn']['version']} "
             f"({r['pyrnn']['cpu_isa']})"
             + (f" vs torch {r['torch']}; {data}; median of interleaved runs; ratio = pyrnn "
                f"time / PyTorch time (lower is better"
                + ("; in brackets the quartiles of the per-round ratios" if quartiles else "")
                + ")." if has_torch else f", without PyTorch (no ratios); {data}; medians.")
             + (" " + _sentence("; ".join(rates)) if rates else "")
             + _provenance_text(r),
             "",
             "| config (T, N, C, H) | cell | forward ms (torch) | ratio | fwd+bwd ms (torch) | ratio | GFLOP/s fwd / fwd+bwd |",
             "|---|---|---|---|---|---|---|"]
    rows = {}
    for row in r["results"]:
        rows.setdefault((row["config"], row["T"], row["N"], row["C"], row["H"], row["cell"]),
                        {})[row["mode"]] = row
    for (cfg, T, N, C, H, cell), modes in rows.items():
        f, b = modes.get("fwd"), modes.get("fwdbwd")

        def cell_text(x):
            if x is None:
                return "", ""
            torch_ms = f" ({x['torch_ms']:.3g})" if x.get("torch_ms") else ""
            ratio = ratio_text(x["ratio"], x.get("target_ratio")) if x.get("ratio") else "n/a"
            if x.get("ratio_q1") is not None:  # quartiles of the per-round ratios
                ratio += f" ({x['ratio_q1']:.2f}-{x['ratio_q3']:.2f})"
            return f"{x['pyrnn_ms']:.3g}{torch_ms}", ratio

        ft, fr = cell_text(f)
        bt, br = cell_text(b)
        gf = f"{f['pyrnn_gflops']:.0f} / {b['pyrnn_gflops']:.0f}" if f and b else ""
        name = "GRU (seeds' form)" if cell == "GRU_seeds" else cell
        lines.append(f"| {cfg} ({T}, {N}, {C}, {H}) | {name} | {ft} | {fr} | {bt} | {br} | {gf} |")
    if "summary" in r:
        s = r["summary"]
        lines += ["", f"Issue 4's ratio targets met: {s['targets_met']} of {s['targets_judged']}"
                  + (f" (missed: {', '.join(s['targets_missed'])})" if s["targets_missed"] else "")
                  + "."]
        needs = s.get("missed_needs") or {}
        if needs:
            peak = r["fma_peak_gflops"]["max"]
            lines += ["", f"What each missed target needs (GFLOP/s, and its fraction of the FMA "
                          f"peak, {peak:.0f}):", ""]
            lines += [f"- {name}: {ratio_text(n['ratio'], n['target'])} against {n['target']}; "
                      f"meeting it needs {n['needed_gflops']:.0f} GFLOP/s, "
                      f"{n['needed_fraction_of_fma_peak']:.0%} "
                      f"of the peak." for name, n in needs.items()]
    return "\n".join(lines)


def render_cuda(r):
    """bench_cuda.py's JSON: float32 rows (TF32 off on both sides), one line per configuration,
    cell and mode, cuDNN's time and each variant's (ratio = pyrnn / cuDNN in brackets)."""
    d = r["device"]
    variants = list(r["variants"])
    lines = [f"Measured {r['date'][:10]} on an {d['name']} ({d['multiprocessors']} SMs, driver "
             f"{d['clocks_before'].get('driver', '?')}, SM clock {d['clocks_before'].get('sm_mhz', '?')}"
             f" MHz), pyrnn {r['pyrnn']['version']} vs torch {r['torch']} with cuDNN "
             f"{d['cudnn']}; float32 with TF32 off on both sides; end-to-end per call, both "
             f"synchronized after each call (CUDA events around each call on an idle GPU: host "
             f"launch work included), medians of interleaved runs; ms, in brackets pyrnn time / cuDNN time (lower is better).",
             "",
             "| config (T, N, C, H) | cell | mode | cuDNN ms | "
             + " | ".join(f"pyrnn {v}" for v in variants) + " |",
             "|---|---|---|---|" + "---|" * len(variants)]
    rows = {}
    for x in r["results"]:
        if x["precision"] == "float32":
            key = (x["config"], x["T"], x["N"], x["C"], x["H"], x["cell"], x["mode"])
            rows.setdefault(key, {})[x["variant"]] = x
    for (cfg, T, N, C, H, cell, mode), by in rows.items():
        torch_ms = next((x["torch_ms"] for x in by.values() if x.get("torch_ms")), None)
        cells = []
        for v in variants:
            x = by.get(v)
            if x is None:
                cells.append("")
                continue
            ratio = f" ({x['ratio']:.2f})" if x.get("ratio") else ""
            cells.append(f"{x['pyrnn_ms']:.3g}{ratio}")
        name = "GRU (seeds' form)" if cell == "GRU_seeds" else cell
        lines.append(f"| {cfg} ({T}, {N}, {C}, {H}) | {name} | {'fwd+bwd' if mode == 'fwdbwd' else 'fwd'} | "
                     f"{f'{torch_ms:.3g}' if torch_ms else 'n/a'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="+", metavar="JSON",
                    help="bench_cpu.py / bench_cuda.py results (others are skipped, named on "
                    "stderr)")
    args = ap.parse_args(argv)
    first = True
    for path in args.paths:
        try:
            table = render(path)
        except NotATable as e:
            print(e, file=sys.stderr)
            continue
        print(("" if first else "\n") + table, flush=True)  # each as soon as it is made
        first = False
    return 0


if __name__ == "__main__":
    sys.exit(main())
