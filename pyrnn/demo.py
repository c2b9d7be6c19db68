"""`pyrnn demo`: the seeds' claims about RNN, GRU and LSTM, measured live on this machine.

1. The adding problem (Hochreiter & Schmidhuber 1997) at two sequence lengths (default 20
   and 100): every step carries a value in U(0, 1) and a marker; two steps are marked (one
   in each half) and the target is the sum of their values. Always answering the mean (1.0)
   scores MSE 1/6 = 0.167, so a model only beats 0.167 by carrying the marked values across
   the sequence. The seeds say a vanilla RNN has poor long-term memory while GRU and LSTM
   hold; the demo trains all three with the same data and epoch budget and prints the seeds'
   decision table filled in with what it measured (test MSE, seconds per epoch, parameters)
   and whether each claim held in this run.
2. A small character-level GRU on six Shakespeare sonnets (pyrnn.data.sonnets, public
   domain), and a sample drawn from it with a temperature.

Everything is importable (``run()`` returns the measurements) and needs no network; the
data is generated or ships with the package. With matplotlib installed, the loss curves are
written to ``<out>/pyrnn_demo.png``.
"""
import argparse
import io
import math
import os
import sys
import time

import numpy as np

from . import _outfile
from ._argtypes import int_list, int_range

PNG_NAME = "pyrnn_demo.png"  # in --out

BASELINE = 1.0 / 6.0  # MSE of always predicting the mean target (1.0) on the adding problem

# The seeds' decision table (seed document 003, "Quick Summary").
SEEDS_TABLE = {
    "RNN": {"parameters": "Fewest", "speed": "Fastest", "memory": "Poor",
            "best_for": "Short sequences (< 10 steps)"},
    "GRU": {"parameters": "Medium", "speed": "Fast", "memory": "Very Good",
            "best_for": "Medium sequences (10-50 steps)"},
    "LSTM": {"parameters": "Most", "speed": "Slowest", "memory": "Excellent",
             "best_for": "Long sequences (20-100+ steps)"},
}
CELLS = ("RNN", "GRU", "LSTM")
# Adam learning rates that train each cell reliably on this task (see tests/test_train_learning.py);
# every cell gets the same data, hidden size, batch size and epoch budget.
LEARNING_RATES = {"RNN": 5e-3, "GRU": 5e-3, "LSTM": 1e-2}
SOLVED = 0.05        # test MSE below this: the model carries the values (baseline / 3.3)
STOP_AT = 0.01       # validation MSE at which training stops early

DEFAULTS = {"lengths": (20, 100), "n_train": 2000, "n_val": 500, "n_test": 1000, "hidden": 32,
            "batch_size": 32, "epochs": {20: 30, 100: 40}, "char_epochs": 15,
            "char_hidden": 96, "sample_chars": 300}
QUICK = {"lengths": (10, 20), "n_train": 256, "n_val": 128, "n_test": 256, "hidden": 16,
         "batch_size": 32, "epochs": {10: 2, 20: 2}, "char_epochs": 1, "char_hidden": 32,
         "sample_chars": 80}


class DemoError(Exception):
    """A problem the command line reports as a message with exit status 2."""


# ---- data -------------------------------------------------------------------------------
def adding_problem(n, T, rng):
    """(x (n, T, 2) float32, y (n, 1) float32): values in channel 0, two markers in channel 1
    (one in each half), target the sum of the two marked values."""
    if T < 2:
        raise ValueError(f"the adding problem needs T >= 2, got {T}")
    x = np.zeros((n, T, 2), np.float32)
    x[:, :, 0] = rng.uniform(0, 1, (n, T))
    first = rng.integers(0, T // 2, n)
    second = rng.integers(T // 2, T, n)
    rows = np.arange(n)
    x[rows, first, 1] = 1.0
    x[rows, second, 1] = 1.0
    y = (x[rows, first, 0] + x[rows, second, 0])[:, None].astype(np.float32)
    return x, y


def char_windows(ids, T, step):
    """Input/target windows (next character) of length T every `step` characters."""
    starts = np.arange(0, ids.size - T - 1, step)
    return (np.stack([ids[s:s + T] for s in starts]),
            np.stack([ids[s + 1:s + T + 1] for s in starts]))


# ---- progress ---------------------------------------------------------------------------
def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


def _progress_callback(desc, total, stream, monitor):
    """A fit() callback that shows one tqdm bar per training run (terminal + tqdm), else
    prints a plain line every 10 epochs and after the last one."""
    from .callbacks import Callback

    bar_cls = _tqdm() if _isatty(stream) else None

    class Progress(Callback):
        def on_train_begin(self, logs=None):
            self.t0 = time.perf_counter()
            self.epoch_times = []
            self.unprinted = None  # (epoch, value) of an epoch with no line yet
            self.bar = (bar_cls(total=total, desc=desc, file=stream, leave=False,
                                unit="epoch") if bar_cls else None)

        def on_epoch_begin(self, epoch, logs=None):
            self.te = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_times.append(time.perf_counter() - self.te)
            value = logs.get(monitor, logs.get("loss"))
            if self.bar is not None:
                self.bar.update(1)
                self.bar.set_postfix_str(f"{monitor} {value:.4f}")
            else:
                self.unprinted = (epoch, value)
                if (epoch + 1) % 10 == 0:
                    self._line()

        def _line(self):
            epoch, value = self.unprinted
            print(f"  {desc}: epoch {epoch + 1}/{total}, {monitor} {value:.4f}", file=stream,
                  flush=True)
            self.unprinted = None

        def on_train_end(self, logs=None):
            if self.bar is not None:
                self.bar.close()
            elif self.unprinted is not None:
                self._line()  # (an early stop between tens)

    return Progress()


class _StopBelow:
    """Factory for a callback ending training once val_loss < threshold."""

    @staticmethod
    def make(threshold):
        from .callbacks import Callback

        class StopBelow(Callback):
            def on_epoch_end(self, epoch, logs=None):
                if logs.get("val_loss", math.inf) < threshold:
                    self.model.stop_training = True

        return StopBelow()


# ---- the adding problem -----------------------------------------------------------------
def run_adding(cell, T, *, epochs, n_train=2000, n_val=500, n_test=1000, hidden=32,
               batch_size=32, lr=None, seed=0, device="cpu", stream=None):
    """Train `cell` ("RNN", "GRU" or "LSTM") on the adding problem at length T; returns a
    dict of measurements (test_mse, baseline_mse, epochs, sec_per_epoch, params, ...)."""
    stream = sys.stdout if stream is None else stream  # at call time: redirect_stdout
    import pyrnn
    from pyrnn import losses, optim

    rng = np.random.default_rng([seed, T])  # same data for every cell at a given T
    x, y = adding_problem(n_train, T, rng)
    xv, yv = adding_problem(n_val, T, rng)
    xt, yt = adding_problem(n_test, T, rng)
    baseline = float(np.mean((yt - 1.0) ** 2))
    lr = LEARNING_RATES[cell] if lr is None else lr
    layer = getattr(pyrnn, cell)(2, hidden, batch_first=True, seed=seed + 1, device=device)
    model = pyrnn.Sequential([layer, pyrnn.LastStep(), pyrnn.Dense(hidden, 1, seed=seed + 2)])
    if device != "cpu":
        model.to(device)  # the whole model trains there (LastStep, Dense, Adam too)
    progress = _progress_callback(f"{cell:4s} T={T}", epochs, stream, "val_loss")
    t0 = time.perf_counter()
    hist = model.fit(x, y, loss=losses.MSELoss(), optimizer=optim.Adam(model.parameters(), lr),
                     epochs=epochs, batch_size=batch_size, clip_norm=1.0,
                     validation_data=(xv, yv), callbacks=[progress, _StopBelow.make(STOP_AT)],
                     verbose=0, seed=seed)
    train_s = time.perf_counter() - t0
    test_mse = float(model.evaluate(xt, yt, loss="mse", batch_size=500))
    epochs_run = len(hist["loss"])
    return {"cell": cell, "T": T, "hidden": hidden, "lr": lr, "params": layer.num_parameters(),
            "model_params": model.num_parameters(), "test_mse": test_mse,
            "baseline_mse": baseline, "epochs": epochs_run, "max_epochs": epochs,
            "sec_per_epoch": float(np.median(progress.epoch_times)) if progress.epoch_times
            else float("nan"), "train_s": train_s, "solved": test_mse < SOLVED,
            "val_loss": [float(v) for v in hist["val_loss"]],
            "loss": [float(v) for v in hist["loss"]]}


def _secs(v):
    return f"{v:.3f}" if v < 0.1 else f"{v:.2f}"


def verdict(r):
    """Plain words for one result."""
    if r["test_mse"] < SOLVED:
        return "learned"
    if r["test_mse"] > 0.8 * r["baseline_mse"]:
        return "failed: MSE above 0.8 x predicting the mean"
    return "partly"


def format_table(results, lengths):
    """The seeds' decision table with measured columns, as aligned text."""
    by = {(r["cell"], r["T"]): r for r in results}
    head = ["Architecture", "Parameters", "Speed (seeds)", "Memory (seeds)"]
    for T in lengths:
        head += [f"s/epoch T={T}", f"test MSE T={T}"]
    head += ["Best for (seeds)"]
    rows = []
    for cell in CELLS:
        if not any((cell, T) in by for T in lengths):
            continue
        s = SEEDS_TABLE[cell]
        params = next(by[(cell, T)]["params"] for T in lengths if (cell, T) in by)
        row = [cell, f"{params:,} ({s['parameters'].lower()})", s["speed"], s["memory"]]
        for T in lengths:
            r = by.get((cell, T))
            if r is None:
                row += ["-", "-"]
            else:
                row += [_secs(r["sec_per_epoch"]),
                        f"{r['test_mse']:.4f} {'ok' if r['solved'] else 'FAIL'}"]
        row.append(s["best_for"])
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


_HELD = {True: "held", False: "NOT observed", None: "inconclusive"}


def claims(results, lengths):
    """The seeds' claims checked against this run: list of (claim, held: bool|None, evidence)."""
    by = {(r["cell"], r["T"]): r for r in results}
    short, long_ = min(lengths), max(lengths)
    out = []

    def mse(cell, T):
        r = by.get((cell, T))
        return None if r is None else r["test_mse"]

    rnn_long = by.get(("RNN", long_))
    gated = [by.get((c, long_)) for c in ("GRU", "LSTM")]
    if rnn_long:
        # The RNN's failure says something about its memory only where a gated cell learned
        # the same task: if every cell failed, the run (budget, seed) proves nothing.
        gated_learned = any(r and r["solved"] for r in gated)
        held = (not rnn_long["solved"]) if (gated_learned or rnn_long["solved"]) else None
        out.append((f"A vanilla RNN has poor long-term memory (fails at T={long_})", held,
                    f"RNN test MSE at T={long_}: {rnn_long['test_mse']:.4f} "
                    f"({verdict(rnn_long)}); baseline {rnn_long['baseline_mse']:.3f}"
                    + ("" if held is not None else
                       f"; no gated cell learned T={long_} either, so this run cannot tell")))
    if all(gated):
        out.append((f"GRU and LSTM hold on long dependencies (learn T={long_})",
                    all(r["solved"] for r in gated),
                    ", ".join(f"{r['cell']} {r['test_mse']:.4f} ({verdict(r)}, "
                              f"{r['epochs']} epochs)" for r in gated)))
    rnn_short = by.get(("RNN", short))
    if rnn_short:
        out.append((f"A vanilla RNN does well on short sequences (learns T={short}; the seeds "
                    "recommend it below 10 steps)",
                    rnn_short["solved"],
                    f"RNN test MSE at T={short}: {rnn_short['test_mse']:.4f} "
                    f"({verdict(rnn_short)})"))
    speeds = {c: by[(c, long_)]["sec_per_epoch"] for c in CELLS if (c, long_) in by}
    if len(speeds) == 3:
        order = sorted(speeds, key=speeds.get)
        out.append(("Speed: RNN fastest, GRU in between, LSTM slowest",
                    order == ["RNN", "GRU", "LSTM"],
                    f"seconds per epoch at T={long_}: " +
                    ", ".join(f"{c} {_secs(speeds[c])}" for c in order)))
    return out


# ---- the character-level GRU ------------------------------------------------------------
def train_char_gru(*, epochs=15, hidden=96, embed=16, T=50, lr=1e-2, seed=0, device="cpu",
                   stream=None):
    """A character-level GRU language model on pyrnn.data.sonnets(). Returns
    (model, chars, history, seconds)."""
    stream = sys.stdout if stream is None else stream  # at call time: redirect_stdout
    import pyrnn
    from pyrnn import losses, optim

    text = pyrnn.data.sonnets()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index[c] for c in text], np.int64)
    x, y = char_windows(ids, T, T // 2)
    V = len(chars)
    model = pyrnn.Sequential([pyrnn.Embedding(V, embed, seed=seed),
                              pyrnn.GRU(embed, hidden, batch_first=True, seed=seed + 1,
                                        device=device),
                              pyrnn.Dense(hidden, V, seed=seed + 2)])
    if device != "cpu":
        model.to(device)
    progress = _progress_callback("char GRU", epochs, stream, "loss")
    t0 = time.perf_counter()
    hist = model.fit(x, y, loss=losses.CrossEntropyLoss(),
                     optimizer=optim.Adam(model.parameters(), lr), epochs=epochs, batch_size=16,
                     clip_norm=5.0, callbacks=[progress], verbose=0, seed=seed)
    return model, chars, hist, time.perf_counter() - t0


def sample(model, chars, prime, n, temperature=0.7, seed=0):
    """Draw n characters from a Sequential([Embedding, GRU, Dense]) char model, after feeding
    `prime`, with softmax(logits / temperature) (temperature <= 0: always the likeliest)."""
    emb, gru, dense = model.layers
    index = {c: i for i, c in enumerate(chars)}
    prime = "".join(c for c in prime if c in index) or chars[0]
    rng = np.random.default_rng(seed)
    was = model.training
    model.eval()
    try:
        ids = np.array([[index[c] for c in prime]], np.int64)            # (1, len)
        out, h = gru(emb.forward(ids))                                    # (1, len, H)
        logits = dense.forward(out[:, -1])[0].astype(np.float64)         # (V,)
        text = []
        for _ in range(n):
            if temperature <= 0:
                nxt = int(np.argmax(logits))
            else:
                # (the largest logit subtracted first: a tiny temperature gives -Inf, not
                # Inf - Inf = NaN, so it samples the likeliest)
                with np.errstate(over="ignore"):
                    p = np.exp((logits - logits.max()) / temperature)
                nxt = int(rng.choice(len(chars), p=p / p.sum()))
            text.append(chars[nxt])
            out, h = gru(emb.forward(np.array([[nxt]], np.int64)), h)
            logits = dense.forward(out[:, -1])[0].astype(np.float64)
    finally:
        model.train(was)
    return prime + "".join(text)


# ---- plot -------------------------------------------------------------------------------
def plot(results, char_hist, path):
    """Loss curves to a PNG; returns the path, or None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    lengths = sorted({r["T"] for r in results})
    fig, axes = plt.subplots(1, len(lengths) + 1, figsize=(5 * (len(lengths) + 1), 4))
    for ax, T in zip(axes, lengths):
        for r in (r for r in results if r["T"] == T):
            ax.plot(range(1, len(r["val_loss"]) + 1), r["val_loss"], marker=".",
                    label=f"{r['cell']} (test {r['test_mse']:.3f})")
        ax.axhline(BASELINE, color="gray", ls="--", lw=1, label="baseline 1/6")
        ax.set_yscale("log")
        ax.set_title(f"adding problem, T={T}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation MSE")
        ax.legend()
    ax = axes[-1]
    if char_hist:
        ax.plot(range(1, len(char_hist["loss"]) + 1), char_hist["loss"], marker=".")
    ax.set_title("char GRU on the sonnets")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training cross-entropy (nats/char)")
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=100)
        _outfile.write_file(path, buf.getvalue())  # no half PNG at `path` if it fails
    except OSError as e:
        raise DemoError(f"could not write {path}: {e}") from None
    finally:
        plt.close(fig)
    return path


# ---- driver -----------------------------------------------------------------------------
def check_device(device):
    """'cpu', or 'cuda' when usable; DemoError (exit 2) with the reason otherwise."""
    if device == "cpu":
        return device
    if device != "cuda":
        raise DemoError(f"--device must be 'cpu' or 'cuda', got {device!r}")
    from . import cuda
    if not cuda.is_available():
        raise DemoError("--device cuda: no usable CUDA device: "
                        f"{cuda.unavailable_reason() or 'no device found'}. "
                        "Run without --device (CPU) or on a machine with a GPU and a CUDA "
                        "build of pyrnn (pyrnn info shows what this build has).")
    return device


def run(*, quick=False, device="cpu", seed=0, out=".", threads=1, lengths=None, plot_png=True,
        stream=None):
    """The whole demo; prints as it goes and returns {"adding": [...], "claims": [...],
    "char": {...}, "png": path|None, "seconds": total}. The thread count it sets is put back
    when it returns."""
    stream = sys.stdout if stream is None else stream  # at call time: redirect_stdout
    import pyrnn
    saved = pyrnn.get_num_threads()
    try:
        return _run(quick=quick, device=device, seed=seed, out=out, threads=threads,
                    lengths=lengths, plot_png=plot_png, stream=stream)
    finally:
        restore_threads(pyrnn.set_num_threads, saved)


def restore_threads(setter, n):
    """setter(n), the thread count put back after a run; a system refusing the threads now
    (a process limit reached meanwhile) leaves the run's count, rather than turning a finished
    run (its results, its JSON) into a traceback."""
    try:
        setter(n)
    except RuntimeError:
        pass


def _run(*, quick, device, seed, out, threads, lengths, plot_png, stream):
    import pyrnn

    device = check_device(device)
    cfg = dict(QUICK if quick else DEFAULTS)
    if lengths:  # None or empty: the defaults
        lengths = check_lengths(lengths)
        default_epochs = max(cfg["epochs"].values())
        cfg["epochs"] = {T: cfg["epochs"].get(T, default_epochs) for T in lengths}
        cfg["lengths"] = lengths
    if threads:
        pyrnn.set_num_threads(threads)
    t_start = time.perf_counter()
    p = lambda *a: print(*a, file=stream, flush=True)
    p(f"pyrnn {pyrnn.__version__} demo: CPU kernels {pyrnn.get_cpu_isa()}, "
      f"{pyrnn.get_num_threads()} thread(s), device {device}, seed {seed}"
      + (" (quick mode: tiny budgets, the numbers mean nothing)" if quick else ""))
    p("")
    p(f"1. The adding problem: two marked values in a sequence of length T; the target is "
      f"their sum.\n   Predicting the mean scores MSE {BASELINE:.3f}; beating it needs "
      f"memory across the sequence.\n   Same data, hidden size {cfg['hidden']}, batch "
      f"{cfg['batch_size']} and epoch budget for every cell (Adam; stops early once "
      f"validation MSE < {STOP_AT}).")
    results = []
    try:
        for T in cfg["lengths"]:
            for cell in CELLS:
                r = run_adding(cell, T, epochs=cfg["epochs"][T], n_train=cfg["n_train"],
                               n_val=cfg["n_val"], n_test=cfg["n_test"], hidden=cfg["hidden"],
                               batch_size=cfg["batch_size"], seed=seed, device=device,
                               stream=stream)
                results.append(r)
                p(f"   {cell:4s} T={T:<4d} test MSE {r['test_mse']:.4f} - {verdict(r)} - after "
                  f"{r['epochs']}/{r['max_epochs']} epochs, {_secs(r['sec_per_epoch'])} s/epoch")
    except RuntimeError as e:
        if device != "cpu":
            raise DemoError(f"--device {device}: {e}") from None
        raise
    p("")
    p("The seeds' decision table, filled in with this run's measurements "
      f"(MSE 'ok' below {SOLVED}, baseline {BASELINE:.3f}):")
    p(format_table(results, cfg["lengths"]))
    p("")
    p("The seeds' claims, as observed in this run:")
    checked = claims(results, cfg["lengths"])
    for claim, held, evidence in checked:
        p(f"  [{_HELD[held]}] {claim}: {evidence}")
    if quick:
        p("  (quick mode: budgets this small cannot show the claims; run without --quick)")

    p("")
    p(f"2. A character-level GRU on six Shakespeare sonnets (public domain, "
      f"{len(pyrnn.data.sonnets())} characters):")
    model, chars, hist, secs = train_char_gru(epochs=cfg["char_epochs"],
                                              hidden=cfg["char_hidden"], seed=seed,
                                              device=device, stream=stream)
    unigram = _unigram_entropy(pyrnn.data.sonnets())
    p(f"   {len(hist['loss'])} epochs in {secs:.1f} s: training loss {hist['loss'][-1]:.3f} "
      f"nats/char (unigram entropy {unigram:.3f}), training next-character accuracy "
      f"{hist['accuracy'][-1]:.2f}")
    text = sample(model, chars, "Shall I compare thee", cfg["sample_chars"], temperature=0.7,
                  seed=seed)
    p("   Sample (temperature 0.7, primed with 'Shall I compare thee'):")
    p("")
    p("\n".join("     " + line for line in text.splitlines()))
    p("")
    png = None
    if plot_png:
        png = plot(results, hist, os.path.join(out, PNG_NAME))
        if png:
            p(f"Loss curves written to {os.path.abspath(png)}")
        else:
            p("(install matplotlib to get the loss curves as a PNG: pip install matplotlib)")
    total = time.perf_counter() - t_start
    p(f"Demo finished in {total:.1f} s.")
    return {"adding": results, "claims": [{"claim": c, "held": h, "evidence": e}
                                          for c, h, e in checked],
            "char": {"loss": hist["loss"], "accuracy": hist["accuracy"], "seconds": secs,
                     "unigram_entropy": unigram, "sample": text},
            "png": png, "seconds": total}


def _unigram_entropy(text):
    _, counts = np.unique(list(text), return_counts=True)
    f = counts / counts.sum()
    return float(-(f * np.log(f)).sum())


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true",
                        help="tiny budgets: runs in seconds (for CI); the numbers mean nothing")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="where the models train (cuda needs a GPU and a CUDA build)")
    parser.add_argument("--seed", type=int_range(0), default=0,
                        help="seed for data and weights (>= 0)")
    parser.add_argument("--out", default=".", help="folder for pyrnn_demo.png (default: .)")
    parser.add_argument("--threads", type=int_range(1, 4096), default=1,
                        help="CPU threads (default 1: the demo's models are small, and one "
                             "thread is fastest for them)")
    parser.add_argument("--lengths", type=_lengths_arg, default=None,
                        help=f"adding-problem lengths, two or more distinct, each in [2, "
                             f"{MAX_LENGTH}], e.g. 20,100 (the shortest and the longest are "
                             "the claims' short and long)")
    parser.add_argument("--no-plot", action="store_true", help="do not write the PNG")


MAX_LENGTH = 10000  # steps; the demo's data is (samples, T, 2) float32 per split


def check_lengths(lengths):
    """lengths as a tuple of ints; ValueError unless two or more distinct, each in [2, MAX]:
    one length is both the claims' short and long one, and repeats were trained twice and
    shown as one."""
    lengths = tuple(lengths)
    if any(isinstance(T, bool) or not isinstance(T, (int, np.integer)) for T in lengths):
        raise ValueError(f"lengths must be integers, got {lengths!r}")
    lengths = tuple(int(T) for T in lengths)
    if len(set(lengths)) != len(lengths) or len(lengths) < 2:
        raise ValueError(f"lengths must be two or more distinct values, got {list(lengths)}")
    bad = [T for T in lengths if not 2 <= T <= MAX_LENGTH]
    if bad:
        raise ValueError(f"lengths must each be in [2, {MAX_LENGTH}], got {bad[0]}")
    return lengths


def _lengths_arg(text):
    try:
        return check_lengths(int_list(2, MAX_LENGTH)(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


_lengths_arg.__name__ = "lengths"


def _out_problem(out):
    """Why the PNG could not be written to folder `out` (made if need be), or None; nothing
    is left behind."""
    png = os.path.join(out or ".", PNG_NAME)
    why = _outfile.problem(png)
    return None if why is None else f"{png}: {why}"


def main_args(args):
    import importlib.util
    from .cli import cpu_ready
    if not cpu_ready("demo"):
        return 2
    try:
        check_device(args.device)  # refusals before the run, not after it
        if not args.no_plot and importlib.util.find_spec("matplotlib") is not None:
            why = _out_problem(args.out)
            if why:
                raise DemoError(f"--out {args.out}: {why}")
        run(quick=args.quick, device=args.device, seed=args.seed, out=args.out,
            threads=args.threads, lengths=args.lengths, plot_png=not args.no_plot)
    except DemoError as e:
        print(f"pyrnn demo: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pyrnn demo", description=__doc__.split("\n")[0])
    add_arguments(parser)
    from .cli import guarded
    return guarded("demo", main_args, parser.parse_args(argv))


if __name__ == "__main__":
    from .cli import exit_with
    exit_with(main())
