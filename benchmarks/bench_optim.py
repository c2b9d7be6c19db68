"""CPU benchmark of the optimizer steps and gradient clipping against PyTorch's.

One large parameter; same process, same thread count, interleaved, medians (bench_cpu.py's
method).

    python benchmarks/bench_optim.py [--threads 1] [--size 12800000] [--out results.json]

Each case updates one float32 parameter of `size` elements (a 200000 x 64 embedding table is
12.8M) in place, from the second step on (the state exists): SGD with momentum, Adam, AdamW
with amsgrad, RMSprop centered with momentum, and the global-norm clipping of one gradient
(pyrnn.optim.clip_grad_norm against torch.nn.utils.clip_grad_norm_, with a bound that never
clips: pyrnn then only sums, torch also multiplies every gradient by 1). PyTorch runs its
default step (the per-tensor loop on CPU) and, for the optimizers that have one, its fused step
(fused=True) in the same rounds: both ratios are reported (RMSprop has no fused step). Without
PyTorch it reports pyrnn's times only.
"""
import argparse
import inspect
import math
import os
import sys

import numpy as np

import pyrnn
from pyrnn import optim
from pyrnn._argtypes import int_range

sys.path.insert(0, os.path.dirname(__file__))
from bench_cpu import add_common_args, pair_with_fused, start, write_results  # noqa: E402

# name: (pyrnn optimizer maker, torch optimizer name, its keyword arguments); None: clipping.
CASES = {
    "sgd_momentum": (lambda ps: optim.SGD(ps, lr=1e-3, momentum=0.9), "SGD",
                     {"lr": 1e-3, "momentum": 0.9}),
    "adam": (lambda ps: optim.Adam(ps, lr=1e-3), "Adam", {"lr": 1e-3}),
    "adamw_amsgrad": (lambda ps: optim.AdamW(ps, lr=1e-3, amsgrad=True), "AdamW",
                      {"lr": 1e-3, "amsgrad": True}),
    "rmsprop_centered": (lambda ps: optim.RMSprop(ps, lr=1e-3, centered=True, momentum=0.5),
                         "RMSprop", {"lr": 1e-3, "centered": True, "momentum": 0.5}),
    "clip_grad_norm": None,
}
QUICK = ("adam", "clip_grad_norm")


def run_case(name, torch, size, repeats, budget_s):
    layer = pyrnn.Embedding(size // 64, 64, seed=0)
    params = list(layer.parameters())
    rng = np.random.default_rng(0)
    params[0].grad[...] = rng.standard_normal(params[0].shape).astype(np.float32) * 1e-3
    t_param = None
    if torch is not None:
        t_param = torch.nn.Parameter(torch.from_numpy(params[0].data.copy()))
        t_param.grad = torch.from_numpy(params[0].grad.copy())
    case = CASES[name]
    row = {"case": name, "elements": int(params[0].size), "dtype": "float32"}
    if case is None:
        p_fn = lambda: optim.clip_grad_norm(params, math.inf)  # noqa: E731
        t_fn = None if torch is None else (
            lambda: torch.nn.utils.clip_grad_norm_([t_param], math.inf))
        t_fused = None
    else:
        make, t_name, t_kw = case
        opt = make(params)
        opt.step()  # the state exists from here on, as in training
        p_fn = opt.step
        t_fn = t_fused = None
        if torch is not None:
            cls = getattr(torch.optim, t_name)
            t_opt = cls([t_param], **t_kw)
            t_opt.step()
            t_fn = t_opt.step
            if "fused" in inspect.signature(cls).parameters:  # (RMSprop has none)
                t_param2 = torch.nn.Parameter(t_param.detach().clone())
                t_param2.grad = t_param.grad.clone()
                t_opt2 = cls([t_param2], fused=True, **t_kw)
                t_opt2.step()
                t_fused = t_opt2.step
    row.update(pair_with_fused(p_fn, t_fn, t_fused, repeats, budget_s))
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap, 21, 5, 10.0, f"only {', '.join(QUICK)}")
    ap.add_argument("--size", type=int_range(64, 1 << 31), default=12_800_000,
                    help="parameter elements (a multiple of 64; default 12800000)")
    args = ap.parse_args(argv)
    if args.size % 64:
        ap.error(f"--size must be a multiple of 64, got {args.size}")
    torch = start(args)
    rows = [run_case(name, torch, args.size, args.repeats, args.budget)
            for name in (QUICK if args.quick else CASES)]
    fmt = lambda v, d=2: "n/a" if v is None else f"{v:.{d}f}"  # noqa: E731
    print(f"{'case (ms)':18} {'pyrnn':>8} {'torch':>8} {'ratio':>6} {'fused':>8} {'ratio':>6}")
    for r in rows:
        print(f"{r['case']:18} {r['pyrnn_ms']:8.2f} {fmt(r['torch_ms']):>8} "
              f"{fmt(r['ratio']):>6} {fmt(r['torch_fused_ms']):>8} {fmt(r['ratio_fused']):>6}")
    if args.out:
        write_results(args.out, "bench_optim", args.threads, torch, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
