"""Python smoke run for a sanitized build (PYRNN_SANITIZE=ON: AddressSanitizer +
UndefinedBehaviorSanitizer in the extension modules). Exercises forward/backward of every
cell over layers, directions, layouts, lengths and dtypes, the training stack, save/load of
good and damaged files, every row of tests/test_input_table.py (the bad inputs), the fuzz
corpus with mutants, and layers in parallel threads. The sanitizers abort the process on
the first report, so a clean exit (status 0, "smoke: ok") means no report.

Run through tests/sanitize/run.sh asan-python (builds the extension, sets LD_PRELOAD).
"""
import itertools
import os
import sys
import tempfile
import threading

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, TESTS)
sys.path.insert(0, os.path.join(TESTS, "fuzz"))

import pyrnn  # noqa: E402  (the sanitized build: PYTHONPATH points at it)


def recurrent_grid():
    rng = np.random.default_rng(0)
    n = 0
    for cell, layers, bidir, dtype, lengths, batch_first in itertools.product(
            ["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_after"], [1, 2], [False, True],
            ["float32", "float64"], [False, True], [False, True]):
        kw = dict(num_layers=layers, bidirectional=bidir, dtype=dtype, batch_first=batch_first,
                  seed=n, dropout=0.25 if layers > 1 else 0.0)
        if cell.startswith("rnn"):
            layer = pyrnn.RNN(5, 7, nonlinearity=cell[4:], **kw)
        elif cell == "lstm":
            layer = pyrnn.LSTM(5, 7, **kw)
        else:
            layer = pyrnn.GRU(5, 7, reset_after=cell == "gru_after", **kw)
        T, N = 6, 4
        x = rng.standard_normal((N, T, 5) if batch_first else (T, N, 5))
        lens = rng.integers(1, T + 1, N) if lengths else None
        out, state = layer(x, lengths=lens)
        res = layer.backward(np.ones_like(out))
        assert np.isfinite(res[0]).all()
        layer(x[:, :2] if batch_first else x[:2])  # reuse with another shape
        layer.eval()
        layer(x[0] if batch_first else x[:, 0])  # unbatched
        n += 1
    print(f"smoke: {n} recurrent configurations")


def training_stack(tmp):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 20, (40, 9))
    y = rng.integers(0, 3, 40)
    model = pyrnn.Sequential([pyrnn.Embedding(20, 6, padding_idx=0), pyrnn.LSTM(6, 8, 2,
                              batch_first=True, bidirectional=True), pyrnn.LayerNorm(16),
                              pyrnn.Dropout(0.2), pyrnn.LastStep(), pyrnn.Dense(16, 3, "relu")])
    for opt in ("adam", "adamw", "sgd", "rmsprop"):
        model.fit(x, y, loss="cross_entropy", optimizer=opt, epochs=1, batch_size=8,
                  clip_norm=1.0, verbose=0, lengths=rng.integers(1, 10, 40))
    path = os.path.join(tmp, "m.pyrnn")
    model.save(path)
    again = pyrnn.load(path)
    assert np.array_equal(again.predict(x), model.predict(x))
    data = open(path, "rb").read()
    bad = os.path.join(tmp, "bad.pyrnn")
    for cut in range(0, len(data), max(1, len(data) // 50)):
        with open(bad, "wb") as f:
            f.write(data[:cut])
        try:
            pyrnn.load(bad)
        except ValueError:
            pass
    print("smoke: training stack, save/load")


def input_table():
    import test_input_table as t
    ns = {"__name__": "__case__"}
    exec(t.PRELUDE, ns)
    n = 0
    for case_id, src, _, _ in t.CASES:
        if any(w in src for w in ("torch", "onnx")):
            continue  # third-party libraries are not built with the sanitizers
        try:
            exec(src, dict(ns))
        except BaseException:  # noqa: BLE001 - only sanitizer reports matter here
            pass
        n += 1
    print(f"smoke: {n} input-table rows")


def fuzz_corpus():
    import fuzz_layer
    import fuzz_load
    import test_fuzz_corpus as t
    for name, target in (("load", fuzz_load), ("layer", fuzz_layer)):
        seeds = [d for _, d in t.corpus(name) if d]
        for data in seeds + t.mutants(seeds, 400, 7):
            try:
                target.test_one_input(data, pyrnn)
            except AssertionError:
                pass
    print("smoke: fuzz corpus and mutants")


def threads():
    def work(seed):
        layer = pyrnn.GRU(8, 16, 2, bidirectional=True, seed=seed)
        x = np.random.default_rng(seed).standard_normal((20, 3, 8))
        for _ in range(5):
            out, _ = layer(x)
            layer.backward(np.ones_like(out))
    ts = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    shared = pyrnn.LSTM(8, 16)

    def hammer():
        for _ in range(20):
            try:
                shared(np.ones((10, 2, 8)))
            except RuntimeError:
                pass
    ts = [threading.Thread(target=hammer) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print("smoke: threads")


def main():
    print("smoke: pyrnn from", os.path.dirname(pyrnn.__file__), pyrnn.info()["available_isas"])
    with tempfile.TemporaryDirectory() as tmp:
        for isa in pyrnn.info()["available_isas"]:
            pyrnn.set_cpu_isa(isa)
            recurrent_grid()
        training_stack(tmp)
        input_table()
        fuzz_corpus()
        threads()
    print("smoke: ok")


if __name__ == "__main__":
    main()
