"""Text generation: a character-level GRU on Shakespeare's sonnets, sampled with temperature.

The text (six sonnets, public domain) ships with pyrnn: pyrnn.data.sonnets(). Training uses
Sequential.fit on windows of 50 characters (next-character targets); generation runs the
layers one character at a time, carrying the GRU's hidden state (hx) from step to step.
Temperature divides the logits before the softmax: low is conservative and repetitive, high
is inventive and misspelled.

    python examples/generate_text.py [--quick] [--epochs 20] [--temperatures 0.3,0.7,1.0]
"""
import argparse

import numpy as np

import pyrnn
from pyrnn import losses, optim


def generate(emb, gru, dense, chars, prime, n, temperature, rng):
    index = {c: i for i, c in enumerate(chars)}
    out, h = gru(emb(np.array([[index[c] for c in prime]])))  # feed the prime, keep the state
    logits = dense(out[:, -1])[0].astype(np.float64)
    text = list(prime)
    for _ in range(n):
        # (the largest logit subtracted first: a tiny temperature gives -Inf, not Inf - Inf)
        with np.errstate(over="ignore"):
            p = np.exp((logits - logits.max()) / temperature)
        nxt = rng.choice(len(chars), p=p / p.sum())
        text.append(chars[nxt])
        out, h = gru(emb(np.array([[nxt]])), h)  # one step, state carried in hx
        logits = dense(out[:, -1])[0].astype(np.float64)
    return "".join(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one epoch, short samples")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--temperatures", default="0.3,0.7,1.0")
    ap.add_argument("--prime", default="Let me not")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for name in ("epochs", "hidden"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.seed < 0:
        ap.error(f"--seed must be >= 0, got {args.seed}")
    try:
        temperatures = [float(t) for t in args.temperatures.split(",")]
    except ValueError:
        temperatures = []
    if not temperatures or not all(np.isfinite(t) and t > 0 for t in temperatures):
        ap.error(f"--temperatures must be positive numbers, comma-separated, got "
                 f"{args.temperatures!r}")
    pyrnn.set_num_threads(1)
    text = pyrnn.data.sonnets()
    chars = sorted(set(text))
    unknown = sorted(set(args.prime) - set(chars))
    if not args.prime or unknown:
        ap.error(f"--prime must be non-empty text of the sonnets' characters"
                 + (f" ({''.join(unknown)!r} are not among them)" if unknown else ""))
    ids = np.array([chars.index(c) for c in text])
    T = 50
    starts = np.arange(0, ids.size - T - 1, T // 2)
    x = np.stack([ids[s:s + T] for s in starts])
    y = np.stack([ids[s + 1:s + T + 1] for s in starts])
    V, H = len(chars), (32 if args.quick else args.hidden)

    model = pyrnn.Sequential([pyrnn.Embedding(V, 16, seed=args.seed),
                              pyrnn.GRU(16, H, batch_first=True, seed=args.seed + 1),
                              pyrnn.Dense(H, V, seed=args.seed + 2)])
    hist = model.fit(x, y, loss=losses.CrossEntropyLoss(),
                     optimizer=optim.Adam(model.parameters(), 1e-2),
                     epochs=1 if args.quick else args.epochs, batch_size=16, clip_norm=5.0,
                     verbose=0 if args.quick else 2, seed=args.seed)
    print(f"{len(text)} characters, {V} distinct; final training loss "
          f"{hist['loss'][-1]:.3f} nats/char, accuracy {hist['accuracy'][-1]:.2f}")

    model.eval()
    emb, gru, dense = model.layers
    rng = np.random.default_rng(args.seed)
    for temp in temperatures:
        sample = generate(emb, gru, dense, chars, args.prime, 60 if args.quick else 250, temp,
                          rng)
        print(f"\n--- temperature {temp} ---\n{sample}")


if __name__ == "__main__":
    main()
