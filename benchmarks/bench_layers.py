"""CPU benchmark of the non-recurrent layers: pyrnn vs PyTorch (same process, same thread count,
interleaved, medians; bench_cpu.py's method).

    python benchmarks/bench_layers.py [--threads 1] [--repeats 15] [--quick] [--out results.json]

Dense (with each activation, and at one row, where a weight pack is not amortised), LayerNorm
and Embedding, forward in eval mode and forward + backward (d x included on both sides: the
torch input requires grad). The cases come from the performance-cliff hunt of 2026-12-05, plus a
vocabulary-sized Dense (its 65 MB weight is packed in blocks); the recurrent layers are
bench_cpu.py's. With PyTorch, pyrnn's layer takes the torch module's weights (torch seeded) and
both must agree before a case is timed: "rel_err" (output), "rel_err_dx" (d x; Embedding has
none) and "rel_err_grads" (the parameters' gradients, the largest) go into each mode's row.
Without PyTorch it reports pyrnn's times only.
"""
import argparse
import os
import sys

import numpy as np

import pyrnn

sys.path.insert(0, os.path.dirname(__file__))
from bench_cpu import add_common_args, bench_pair, start, write_results  # noqa: E402
from pyrnn.bench import check_same  # noqa: E402

# name: (kind, rows M, sizes, activation)
CASES = {
    "dense_tanh": ("dense", 256, (129, 1000), "tanh"),
    "dense_sigmoid": ("dense", 256, (129, 1000), "sigmoid"),
    "dense_relu": ("dense", 256, (129, 1000), "relu"),
    "dense_linear": ("dense", 1024, (512, 512), None),
    "dense_one_row": ("dense", 1, (2048, 2048), None),
    "dense_vocab": ("dense", 128, (512, 32000), None),  # a language model's output layer
    "layernorm_512": ("layernorm", 4096, (512,), None),
    "layernorm_1000": ("layernorm", 64, (1000,), None),
    "embedding": ("embedding", 4096, (50000, 128), None),
}
QUICK = ("dense_tanh", "layernorm_1000")


def make(kind, sizes, act, torch):
    """(pyrnn layer, torch module or None, input maker); with torch, the same weights."""
    rng = np.random.default_rng(0)
    if kind == "dense":
        p = pyrnn.Dense(sizes[0], sizes[1], act, seed=0)
        t = None
        if torch:
            torch.manual_seed(0)
            lin = torch.nn.Linear(*sizes)
            p.load_params(pyrnn.from_torch(lin).numpy_params())
            f = {"tanh": torch.nn.Tanh(), "sigmoid": torch.nn.Sigmoid(), "relu": torch.nn.ReLU(),
                 None: torch.nn.Identity()}[act]
            t = torch.nn.Sequential(lin, f)
        return p, t, lambda M: rng.standard_normal((M, sizes[0])).astype(np.float32)
    if torch:
        torch.manual_seed(0)
        t = torch.nn.LayerNorm(sizes[0]) if kind == "layernorm" else torch.nn.Embedding(*sizes)
        p = pyrnn.from_torch(t)
    else:
        t = None
        p = pyrnn.LayerNorm(sizes[0]) if kind == "layernorm" else pyrnn.Embedding(*sizes, seed=0)
    if kind == "layernorm":
        return p, t, lambda M: rng.standard_normal((M, sizes[0])).astype(np.float32)
    return p, t, lambda M: rng.integers(0, sizes[0], M)


def check(name, p, t, x, torch):
    """The relative errors of pyrnn's forward, and of its backward (d x, parameter gradients),
    against torch's; raises where they disagree."""
    errs = {}
    p.eval()
    t.eval()
    with torch.no_grad():
        errs["fwd"] = {"rel_err": check_same(f"{name} forward", p.forward(x),
                                             t(torch.from_numpy(x)).numpy())}
    p.train()
    t.train()
    p.zero_grad()
    t.zero_grad()
    y = p.forward(x)
    # (not ones: LayerNorm's d x for a constant dy is zero, rounding noise on both sides)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    dx = p.backward(dy)
    xt = torch.from_numpy(x)
    if xt.is_floating_point():
        xt = xt.clone().requires_grad_()
    yt = t(xt)
    yt.backward(torch.from_numpy(dy))
    row = {"rel_err": check_same(f"{name} training forward", y, yt.detach().numpy()),
           "rel_err_dx": None if xt.grad is None else check_same(f"{name} d x", dx,
                                                                 xt.grad.numpy())}
    row["rel_err_grads"] = max(
        check_same(f"{name} d {q.name}", q.grad, tq.grad.numpy())
        for q, tq in zip(p.parameters(), t.parameters()))
    errs["fwdbwd"] = row
    return errs


def run_case(name, torch, repeats, budget_s):
    kind, M, sizes, act = CASES[name]
    p, t, make_x = make(kind, sizes, act, torch)
    x = make_x(M)
    out = {"case": name, "layer": kind, "rows": M, "sizes": list(sizes), "activation": act}
    errs = check(name, p, t, x, torch) if t is not None else {}
    for mode in ("fwd", "fwdbwd"):
        if mode == "fwd":
            p.eval()
            p_fn = lambda: p.forward(x)  # noqa: E731
            if t is not None:
                t.eval()
                xt = torch.from_numpy(x)

                def t_fn():
                    with torch.no_grad():
                        t(xt)
            else:
                t_fn = None
        else:
            p.train()
            y = p.forward(x)
            dy = np.ones_like(y)

            def p_fn():
                p.zero_grad()
                p.forward(x)
                p.backward(dy)
            if t is not None:
                t.train()
                xt = torch.from_numpy(x)
                if kind != "embedding":
                    xt = xt.clone().requires_grad_()
                dyt = torch.from_numpy(dy)

                def t_fn():
                    t.zero_grad()
                    if xt.grad is not None:
                        xt.grad = None  # a fresh d x each round, as pyrnn's backward returns
                    t(xt).backward(dyt)
            else:
                t_fn = None
        pm, tm, n, spread = bench_pair(p_fn, t_fn, repeats, budget_s)
        out[mode] = {"pyrnn_ms": pm * 1e3, "torch_ms": None if tm is None else tm * 1e3,
                     "ratio": None if tm is None else spread[1], "rounds": n,
                     "ratio_quartiles": None if spread is None else [spread[0], spread[2]],
                     **errs.get(mode, {"rel_err": None})}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap, 15, 5, 5.0, f"only {', '.join(QUICK)}")
    args = ap.parse_args(argv)
    torch = start(args)
    rows = [run_case(name, torch, args.repeats, args.budget)
            for name in (QUICK if args.quick else CASES)]
    print(f"{'case':16} {'fwd ms':>9} {'ratio':>6} {'fwd+bwd ms':>11} {'ratio':>6}")
    for r in rows:
        f, b = r["fwd"], r["fwdbwd"]
        fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"{r['case']:16} {f['pyrnn_ms']:9.3f} {fmt(f['ratio']):>6} "
              f"{b['pyrnn_ms']:11.3f} {fmt(b['ratio']):>6}")
    if args.out:
        write_results(args.out, "bench_layers", args.threads, torch, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
