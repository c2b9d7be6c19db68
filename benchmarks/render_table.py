"""Render a committed benchmark JSON as the Markdown table README.md shows.

    python benchmarks/render_table.py benchmarks/results/cpu-*.json
"""
import json
import sys


def render(path):
    with open(path) as f:
        r = json.load(f)
    m = r["machine"]
    lines = [f"Measured {r['date'][:10]} on {m['cpu']} ({m['cores']} cores), "
             f"{r['pyrnn']['threads']} threads, pyrnn {r['pyrnn']['version']} "
             f"({r['pyrnn']['cpu_isa']}) vs torch {r['torch']}; float32; median of interleaved "
             f"runs; ratio = pyrnn time / PyTorch time (lower is better"
             + ("; in brackets the quartiles of the per-round ratios" if any(
                 x.get("ratio_q1") is not None for x in r["results"]) else "") + "). "
             f"torch.matmul 2048x2048 reached {r['torch_matmul_2048_gflops']:.0f} GFLOP/s.",
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
            ratio = f"{x['ratio']:.2f}" if x.get("ratio") else "n/a"
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
    return "\n".join(lines)


if __name__ == "__main__":
    print("\n\n".join(render(p) for p in sys.argv[1:]))
