"""CPU benchmark of the optimizer steps and gradient clipping against PyTorch's.

One large parameter; same process, same thread count, interleaved, medians (bench_cpu.py's
method).

    python benchmarks/bench_optim.py [--threads 1] [--size 12800000] [--out results.json]

Each case updates one float32 parameter of `size` elements (a 200000 x 64 embedding table is
12.8M) in place, from the second step on (the state exists): SGD with momentum, Adam, AdamW
with amsgrad, RMSprop centered with momentum. Both sides start from the same values, and after
the first step their parameters must agree ("rel_err"). Global-norm clipping of one gradient,
pyrnn.optim.clip_grad_norm against (each row's "compares" says what each side does):
- clip_grad_norm: torch.nn.utils.clip_grad_norm_ with an infinite bound. Not like for like:
  pyrnn then only computes the norm, torch also multiplies every gradient by min(inf, 1) = 1;
- clip_grad_norm_norm_only: torch.nn.utils.get_total_norm, the norm alone on both sides;
- clip_grad_norm_clipping: clip_grad_norm_ with a bound just under the gradient's norm at each
  call (1e-4 below), so both sides compute the norm and scale every gradient; the gradient
  shrinks by that much per call.
PyTorch runs its default step (the per-tensor loop on CPU) and, for the optimizers that have
one, its fused step (fused=True), each timed against pyrnn in a pairing of its own
(bench_cpu.pair_with_fused): both ratios are reported, each from its own rounds (RMSprop has no
fused step). Without PyTorch it reports pyrnn's times only.
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
from pyrnn.bench import check_same  # noqa: E402

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
    "clip_grad_norm_norm_only": None,
    "clip_grad_norm_clipping": None,
}
QUICK = ("adam", "clip_grad_norm", "clip_grad_norm_clipping")
COMPARES = {
    "clip_grad_norm": "pyrnn: the norm; torch clip_grad_norm_(max_norm=inf): the norm, then "
                      "every gradient multiplied by 1",
    "clip_grad_norm_norm_only": "pyrnn clip_grad_norm(max_norm=inf) vs torch "
                                "get_total_norm: the norm alone on both sides",
    "clip_grad_norm_clipping": "both: the norm, then every gradient scaled (bound 1e-4 under "
                               "the norm at each call)",
}
SHRINK = 1 - 1e-4  # the clipping row's bound / the gradient's norm: above rounding noise


def clipping(clip, norm0):
    """A call of clip(bound) -> norm whose bound stays just under the gradient's norm, which
    each clip brings down to the bound."""
    bound = [norm0 * SHRINK]

    def fn():
        bound[0] = min(float(clip(bound[0])), bound[0]) * SHRINK
    return fn


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
    row = {"case": name, "elements": int(params[0].size), "dtype": "float32", "rel_err": None}
    if case is None:
        row["compares"] = COMPARES[name]
        p_fn = lambda: optim.clip_grad_norm(params, math.inf)  # noqa: E731
        t_fn = t_fused = None
        if name == "clip_grad_norm_clipping":
            norm0 = optim.clip_grad_norm(params, math.inf)
            p_fn = clipping(lambda b: optim.clip_grad_norm(params, b), norm0)
        if torch is not None:
            grads = [t_param.grad]
            # get_total_norm is torch >= 2.6; before it, the same sum of per-tensor norms
            total_norm = getattr(torch.nn.utils, "get_total_norm", None) or (
                lambda gs: torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(g) for g in gs])))
            row["rel_err"] = check_same(f"{name} norm", optim.clip_grad_norm(params, math.inf),
                                        float(total_norm(grads)))
            if name == "clip_grad_norm":
                t_fn = lambda: torch.nn.utils.clip_grad_norm_([t_param], math.inf)  # noqa: E731
            elif name == "clip_grad_norm_norm_only":
                t_fn = lambda: total_norm(grads)  # noqa: E731
            else:
                t_fn = clipping(lambda b: torch.nn.utils.clip_grad_norm_([t_param], b), norm0)
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
            row["rel_err"] = check_same(f"{name} first step", params[0].data,
                                        t_param.detach().numpy())
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
    print(f"{'case (ms)':26} {'pyrnn':>8} {'torch':>8} {'ratio':>6} {'fused':>8} {'ratio':>6}")
    for r in rows:
        print(f"{r['case']:26} {r['pyrnn_ms']:8.2f} {fmt(r['torch_ms']):>8} "
              f"{fmt(r['ratio']):>6} {fmt(r['torch_fused_ms']):>8} {fmt(r['ratio_fused']):>6}")
    if args.out:
        write_results(args.out, "bench_optim", args.threads, torch, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
