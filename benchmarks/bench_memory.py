"""CPU memory benchmark: the peak memory one recurrent (or Dense) call adds, pyrnn vs PyTorch.

    python benchmarks/bench_memory.py [--threads 1] [--cases lstm_eval,...] [--out results.json]

Recurrent layers over long sequences, and a vocabulary-sized Dense. An eval forward (torch under
no_grad) or a training forward + backward (the input requires grad on the torch side, as pyrnn
always returns d x). Each case and library runs in a fresh child process: it makes the input
(torch's copy that requires grad included), builds a throwaway layer of the same kind and
calls it on the input's first two steps (Dense: rows), so that library code and thread pools
are resident on both sides, returns the heap's free memory to the kernel (glibc's
malloc_trim), resets the kernel's peak-RSS mark (/proc/self/clear_refs), then builds the layer
and makes the measured call. Counted, on both sides alike, from before the layer is built: its
parameters, its gradient buffers (pyrnn allocates them with the layer, torch in the first
backward), and everything the call allocates, whether freed on return or kept (caches, packed
weights). `*_mb` is the peak minus the resident size before the build, in MiB: what a user
watching the process sees the layer take, its outputs included (`output_mb`: the output
alone); `*_build_mb` is the part the build took (parameters, and pyrnn's gradient buffers);
`*_held_mb` is what is still resident after the call beyond the output (the parameters and
gradients, a training cache kept for backward, buffers kept for the next call). Where the mark
cannot be reset (not Linux) the child says so and the case's row holds None.
"""
import argparse
import gc
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_cpu import start, write_results  # noqa: E402
from pyrnn._argtypes import int_range, name_list  # noqa: E402
from pyrnn._outfile import out_file  # noqa: E402

# name: (cell, (T, N, C, H), num_layers, bidirectional, mode)
CASES = {
    "lstm_eval": ("LSTM", (1000, 32, 64, 256), 1, False, "eval"),
    "lstm_eval_batch_first": ("LSTM", (1000, 32, 64, 256), 1, False, "eval"),
    "lstm_bidir_eval": ("LSTM", (1000, 32, 64, 256), 1, True, "eval"),
    "lstm_2layer_eval": ("LSTM", (1000, 32, 64, 256), 2, False, "eval"),
    "gru_eval": ("GRU", (1000, 32, 64, 256), 1, False, "eval"),
    "rnn_eval": ("RNN", (1000, 32, 64, 256), 1, False, "eval"),
    "lstm_train": ("LSTM", (1000, 32, 64, 256), 1, False, "train"),
    "lstm_train_batch_first": ("LSTM", (1000, 32, 64, 256), 1, False, "train"),
    "lstm_2layer_train": ("LSTM", (1000, 32, 64, 256), 2, False, "train"),
    "gru_train": ("GRU", (1000, 32, 64, 256), 1, False, "train"),
    # A language model's output layer: x [N, C] = [256, 512], a 100 MB weight.
    "dense_vocab_eval": ("Dense", (1, 256, 512, 50000), 1, False, "eval"),
    "dense_vocab_train": ("Dense", (1, 256, 512, 50000), 1, False, "train"),
}
# Layers built with batch_first=True on both sides, input (N, T, C).
BATCH_FIRST = ("lstm_eval_batch_first", "lstm_train_batch_first")
QUICK = ("lstm_eval", "lstm_train")
QUICK_SHAPE = (60, 4, 8, 16)
COUNTED = ("from before the layer is built: parameters, gradient buffers (pyrnn: at the build; "
           "torch: in the backward), the call's peak")


def _status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def _trim_heap():
    """Returns the heap's free memory to the kernel (glibc), so that the resident size before
    the call holds no freed memory the allocator could give back during it (which would make the
    call look smaller than it is, and its held memory negative)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def child(lib, name, threads, quick):
    """Runs in the child process: one case on one library; prints its JSON line."""
    cell, shape, layers, bidir, mode = CASES[name]
    T, N, C, H = QUICK_SHAPE if quick else shape
    dense = cell == "Dense"  # x [N, C] -> [N, H]; its warm-up call takes 2 rows
    bf = name in BATCH_FIRST
    x = np.random.default_rng(0).standard_normal(
        (N, C) if dense else (N, T, C) if bf else (T, N, C), dtype=np.float32)
    if lib == "pyrnn":
        import pyrnn
        pyrnn.set_num_threads(threads)

        def build():
            if dense:
                layer = pyrnn.Dense(C, H, seed=0)
            else:
                layer = getattr(pyrnn, cell)(C, H, num_layers=layers, bidirectional=bidir,
                                             batch_first=bf, seed=0)
            layer.train(mode == "train")
            return layer

        def prepare(xs):
            return xs

        def call(layer, xs):  # -> (output, its bytes), the output held until sizes are read
            y = layer.forward(xs) if dense else layer(xs)[0]
            if mode == "train":
                layer.backward(np.ones_like(y))
            return y, y.nbytes
    else:
        import torch
        torch.set_num_threads(threads)

        def build():
            if dense:
                layer = torch.nn.Linear(C, H)
            else:
                layer = getattr(torch.nn, cell)(C, H, num_layers=layers, bidirectional=bidir,
                                                batch_first=bf)
            layer.train(mode == "train")
            return layer

        def prepare(xs):
            xs = torch.from_numpy(xs)  # (shares the array's memory, strides included)
            return xs.clone().requires_grad_(True) if mode == "train" else xs

        def call(layer, xs):
            if mode == "eval":
                with torch.no_grad():
                    y = layer(xs)
                    y = y if dense else y[0]
                    return y, y.numel() * 4
            y = layer(xs) if dense else layer(xs)[0]
            y.backward(torch.ones_like(y))
            return y, y.numel() * 4
    # Inputs before the mark on both sides: pyrnn's array is not counted, nor torch's copy.
    xs = prepare(x)
    warm = build()
    call(warm, prepare(np.ascontiguousarray(x[:, :2] if bf else x[:2])))
    del warm
    gc.collect()
    _trim_heap()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError as e:
        print(json.dumps({"mb": None, "build_mb": None, "output_mb": None, "held_mb": None,
                          "why": f"peak RSS not resettable: {e}"}))
        return
    before = _status_kib("VmRSS")
    layer = build()
    built = _status_kib("VmRSS")
    y, out_bytes = call(layer, xs)
    peak, after = _status_kib("VmHWM"), _status_kib("VmRSS")
    del y
    print(json.dumps({"mb": (peak - before) / 1024, "build_mb": (built - before) / 1024,
                      "output_mb": out_bytes / 2**20,
                      "held_mb": (after - before) / 1024 - out_bytes / 2**20}))


def measure(lib, name, threads, quick):
    """One child's result: {"mb", "build_mb", "output_mb", "held_mb"[, "why"]}."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", lib, name,
           "--threads", str(threads)] + (["--quick"] if quick else [])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{lib} {name} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_case(name, torch, threads, quick):
    cell, shape, layers, bidir, mode = CASES[name]
    T, N, C, H = QUICK_SHAPE if quick else shape
    p = measure("pyrnn", name, threads, quick)
    t = measure("torch", name, threads, quick) if torch is not None else None
    ratio = None
    if t is not None and p["mb"] is not None and t["mb"]:
        ratio = p["mb"] / t["mb"]
    return {"case": name, "cell": cell, "T": T, "N": N, "C": C, "H": H, "num_layers": layers,
            "bidirectional": bidir, "batch_first": name in BATCH_FIRST, "mode": mode,
            "counted": COUNTED, "output_mb": p["output_mb"],
            "pyrnn_mb": p["mb"], "torch_mb": None if t is None else t["mb"], "ratio": ratio,
            "pyrnn_build_mb": p["build_mb"], "torch_build_mb": None if t is None else t["build_mb"],
            "pyrnn_held_mb": p["held_mb"], "torch_held_mb": None if t is None else t["held_mb"],
            **({"why": p["why"]} if "why" in p else {})}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int_range(1, 4096), default=1,
                    help="threads for both sides (default 1)")
    ap.add_argument("--cases", type=name_list(tuple(CASES)), default=None,
                    help=f"default: {','.join(CASES)} ({','.join(QUICK)} with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help=f"at (T, N, C, H) = {QUICK_SHAPE}, by default only {', '.join(QUICK)}")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--out", type=out_file, help="write the results as JSON here (checked "
                    "before the run)")
    ap.add_argument("--child", nargs=2, metavar=("LIB", "CASE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        lib, name = args.child
        if lib not in ("pyrnn", "torch") or name not in CASES:
            ap.error(f"--child takes pyrnn|torch and a case, got {lib} {name}")
        child(lib, name, args.threads, args.quick)
        return 0
    torch = start(args)
    names = args.cases.split(",") if args.cases else (QUICK if args.quick else list(CASES))
    rows = [run_case(name, torch, args.threads, args.quick) for name in names]
    fmt = lambda v, d=1: "n/a" if v is None else f"{v:.{d}f}"  # noqa: E731
    print(f"{'case (MiB)':18} {'output':>7} {'pyrnn':>7} {'torch':>7} {'ratio':>6} "
          f"{'held: pyrnn':>11} {'torch':>7}")
    for r in rows:
        print(f"{r['case']:18} {fmt(r['output_mb']):>7} {fmt(r['pyrnn_mb']):>7} "
              f"{fmt(r['torch_mb']):>7} {fmt(r['ratio'], 2):>6} {fmt(r['pyrnn_held_mb']):>11} "
              f"{fmt(r['torch_held_mb']):>7}")
    if args.out is not None:
        write_results(args.out, "bench_memory", args.threads, torch, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
