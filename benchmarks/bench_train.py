"""CPU benchmark of whole training epochs against the PyTorch training loop.

pyrnn's Sequential.fit against the loop a user writes for the same model in PyTorch: same
process, same thread count, interleaved, medians (bench_cpu.py's method).

    python benchmarks/bench_train.py [--threads 1] [--repeats 5] [--quick] [--out results.json]

Each case is one epoch over the same data, shuffled, with Adam and gradient clipping by global
norm on both sides: pyrnn's fit (its non-finite guard included), and torch's loop (randperm,
zero_grad, forward, loss, backward, clip_grad_norm_, step). The torch side uses its default Adam
(the per-tensor loop on CPU) and its fused one (Adam(fused=True)), each timed against pyrnn in
a pairing of its own (bench_cpu.pair_with_fused): both ratios are reported, each from its own
rounds. Both torch models start from the same seeded weights. What is measured is the epoch,
not a layer: the optimizer, the clipping, the loss and the per-batch Python work count, as they
do for a user. Without PyTorch it reports pyrnn's times only.
"""
import argparse
import os
import sys

import numpy as np

import pyrnn
from pyrnn import losses, optim

sys.path.insert(0, os.path.dirname(__file__))
from bench_cpu import add_common_args, pair_with_fused, start, write_results  # noqa: E402

# name: sizes of the model and its data.
#   cell, vocab (0: real-valued input of `inputs` features), embed, hidden, layers, out,
#   per_step (a prediction per step, else the last step's), samples, steps, batch, clip
CASES = {
    # The demo's adding problem: two features, one value out.
    "adding_lstm": dict(cell="LSTM", vocab=0, inputs=2, hidden=32, layers=1, out=1,
                        per_step=False, samples=2000, steps=100, batch=32, clip=1.0),
    # The demo's character model: a prediction at every step.
    "char_gru": dict(cell="GRU", vocab=40, embed=32, hidden=96, layers=1, out=40, per_step=True,
                     samples=2000, steps=64, batch=16, clip=5.0),
    # A text classifier whose embedding table (200000 x 64) dwarfs the rest: the optimizer, the
    # clipping and fit's guard pass over 13M parameters every batch.
    "text_big_embedding": dict(cell="LSTM", vocab=200000, embed=64, hidden=128, layers=1, out=10,
                               per_step=False, samples=2048, steps=32, batch=64, clip=5.0),
    # A deeper, wider recurrent stack: the recurrent passes dominate.
    "stacked_lstm": dict(cell="LSTM", vocab=0, inputs=64, hidden=256, layers=2, out=1,
                         per_step=False, samples=512, steps=50, batch=64, clip=1.0),
}
QUICK = ("adding_lstm",)
QUICK_SAMPLES = 256


def make_data(c, samples, seed=0):
    rng = np.random.default_rng(seed)
    if c["vocab"]:
        x = rng.integers(0, c["vocab"], (samples, c["steps"]))
    else:
        x = rng.standard_normal((samples, c["steps"], c["inputs"])).astype(np.float32)
    if c["out"] == 1:
        y = rng.standard_normal((samples, 1)).astype(np.float32)
    else:
        y = rng.integers(0, c["out"], (samples, c["steps"]) if c["per_step"] else samples)
    return x, y


def pyrnn_model(c):
    layers = []
    width = c.get("inputs", 0)
    if c["vocab"]:
        layers.append(pyrnn.Embedding(c["vocab"], c["embed"], seed=0))
        width = c["embed"]
    layers.append(getattr(pyrnn, c["cell"])(width, c["hidden"], num_layers=c["layers"],
                                            batch_first=True, seed=1))
    if not c["per_step"]:
        layers.append(pyrnn.LastStep())
    layers.append(pyrnn.Dense(c["hidden"], c["out"], seed=2))
    return pyrnn.Sequential(layers)


def torch_model(c, torch):
    nn = torch.nn

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            width = c.get("inputs", 0)
            self.emb = None
            if c["vocab"]:
                self.emb = nn.Embedding(c["vocab"], c["embed"])
                width = c["embed"]
            self.rnn = getattr(nn, c["cell"])(width, c["hidden"], num_layers=c["layers"],
                                              batch_first=True)
            self.out = nn.Linear(c["hidden"], c["out"])

        def forward(self, x):
            h = self.rnn(self.emb(x) if self.emb is not None else x)[0]
            return self.out(h if c["per_step"] else h[:, -1])
    return Model()


def run_case(name, torch, repeats, budget_s, samples=None):
    c = CASES[name]
    n = samples or c["samples"]
    x, y = make_data(c, n)
    model = pyrnn_model(c)
    loss = losses.MSELoss() if c["out"] == 1 else losses.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), 1e-3)
    epoch = [0]

    def p_fn():
        epoch[0] += 1
        model.fit(x, y, loss=loss, optimizer=opt, epochs=1, batch_size=c["batch"],
                  clip_norm=c["clip"], verbose=0, seed=epoch[0])

    t_fn = t_fused = None
    if torch is not None:
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def loop(fused):
            torch.manual_seed(0)  # the same initial weights for the default and fused runs
            tm = torch_model(c, torch)
            t_opt = torch.optim.Adam(tm.parameters(), 1e-3, fused=fused)
            t_loss = torch.nn.MSELoss() if c["out"] == 1 else torch.nn.CrossEntropyLoss()
            gen = torch.Generator().manual_seed(0)

            def fn():
                perm = torch.randperm(n, generator=gen)
                for i in range(0, n, c["batch"]):
                    idx = perm[i:i + c["batch"]]
                    xb, yb = xt[idx], yt[idx]
                    t_opt.zero_grad()
                    out = tm(xb)
                    if c["per_step"]:
                        out, yb = out.reshape(-1, out.shape[-1]), yb.reshape(-1)
                    t_loss(out, yb).backward()
                    torch.nn.utils.clip_grad_norm_(tm.parameters(), c["clip"])
                    t_opt.step()
            return fn
        t_fn, t_fused = loop(False), loop(True)

    row = {"case": name, **c, "samples": n, "batches": -(-n // c["batch"]),
           "parameters": int(sum(np.asarray(p.data).size for p in model.parameters()))}
    row.update(pair_with_fused(p_fn, t_fn, t_fused, repeats, budget_s))
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap, 5, 3, 30.0, f"only {', '.join(QUICK)}, on {QUICK_SAMPLES} samples")
    args = ap.parse_args(argv)
    torch = start(args)
    rows = [run_case(name, torch, args.repeats, args.budget,
                     QUICK_SAMPLES if args.quick else None)
            for name in (QUICK if args.quick else CASES)]
    fmt = lambda v, d=2: "n/a" if v is None else f"{v:.{d}f}"  # noqa: E731
    print(f"{'case (ms / epoch)':20} {'params':>9} {'pyrnn':>9} {'torch':>9} {'ratio':>6} "
          f"{'fused':>9} {'ratio':>6}")
    for r in rows:
        print(f"{r['case']:20} {r['parameters']:9d} {r['pyrnn_ms']:9.1f} "
              f"{fmt(r['torch_ms'], 1):>9} {fmt(r['ratio']):>6} "
              f"{fmt(r['torch_fused_ms'], 1):>9} {fmt(r['ratio_fused']):>6}")
    if args.out:
        write_results(args.out, "bench_train", args.threads, torch, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
