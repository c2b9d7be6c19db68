"""Sequence classification with variable lengths: `lengths=` plus LastStep.

Each sample is a noisy sine wave of one of three frequencies, between 8 and 60 steps long,
zero-padded to a common length. The recurrent layer gets the true lengths (PyTorch packed-
sequence semantics: steps past a sequence's length are skipped), and LastStep takes each
sequence's own last valid state, so padding never reaches the classifier. For comparison the
script also reports what happens when the lengths are left out (the model then reads the
zeros too).

    python examples/classify_variable_length.py [--quick] [--epochs 15] [--seed 0]
"""
import argparse

import numpy as np

import pyrnn
from pyrnn import losses, optim

FREQS = (0.05, 0.1, 0.2)  # cycles per step, one class each


def make_data(n, rng, t_min=8, t_max=60):
    lengths = rng.integers(t_min, t_max + 1, n)
    labels = rng.integers(0, len(FREQS), n)
    x = np.zeros((n, t_max, 1), np.float32)  # padded, samples first
    for i, (T, k) in enumerate(zip(lengths, labels)):
        t = np.arange(T)
        phase = rng.uniform(0, 2 * np.pi)
        x[i, :T, 0] = np.sin(2 * np.pi * FREQS[k] * t + phase) + 0.3 * rng.standard_normal(T)
    return x, labels, lengths


def build(seed):
    return pyrnn.Sequential([pyrnn.GRU(1, 32, batch_first=True, seed=seed),
                             pyrnn.LastStep(),            # state at each sequence's last step
                             pyrnn.Dense(32, len(FREQS), seed=seed + 1)])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one epoch on little data")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.seed < 0:
        ap.error(f"--seed must be >= 0, got {args.seed}")
    pyrnn.set_num_threads(1)  # a small model: one thread is fastest
    rng = np.random.default_rng(args.seed)
    n_train, n_test = (200, 100) if args.quick else (2000, 500)
    epochs = 1 if args.quick else args.epochs
    x, y, lengths = make_data(n_train, rng)
    xt, yt, lt = make_data(n_test, rng)
    print(f"{n_train} training sequences, lengths {lengths.min()}-{lengths.max()} "
          f"(padded to {x.shape[1]}), {len(FREQS)} classes")

    model = build(args.seed)
    model.fit(x, y, lengths=lengths, loss=losses.CrossEntropyLoss(),
              optimizer=optim.Adam(model.parameters(), 1e-2), epochs=epochs, batch_size=32,
              clip_norm=1.0, validation_data=(xt, yt, lt), verbose=0 if args.quick else 2,
              seed=args.seed)
    acc = model.evaluate(xt, yt, lengths=lt, return_dict=True)["accuracy"]
    print(f"test accuracy with lengths: {acc:.3f}")

    pred = model.predict(xt, lengths=lt).argmax(axis=1)
    short = lt < 20
    print(f"  sequences shorter than 20 steps: {np.mean(pred[short] == yt[short]):.3f} "
          f"({short.sum()} of them); 20 steps or more: "
          f"{np.mean(pred[~short] == yt[~short]):.3f}")

    plain = build(args.seed)  # the same model, fed the padding as if it were data
    plain.fit(x, y, loss=losses.CrossEntropyLoss(),
              optimizer=optim.Adam(plain.parameters(), 1e-2), epochs=epochs, batch_size=32,
              clip_norm=1.0, verbose=0, seed=args.seed)
    acc_plain = plain.evaluate(xt, yt, return_dict=True)["accuracy"]
    print(f"test accuracy without lengths (padding read as data): {acc_plain:.3f}")
    return acc, acc_plain


if __name__ == "__main__":
    main()
