"""Fuzz target: the array-input paths. Bytes choose a layer (RNN / LSTM / GRU with random
options, Dense, LayerNorm, Embedding, a loss) and arbitrary array arguments: rank, shape
(including zero and mismatched extents), dtype (ints, bools, float16/32/64, complex, object,
strings), memory layout (non-contiguous, Fortran, read-only) and values (NaN, Inf, huge).
Every call must either work or raise ValueError / TypeError / RuntimeError (MemoryError for
sizes beyond PYRNN_MEMORY_LIMIT); anything else, a crash, or non-finite outputs from finite
inputs and weights is a finding.

Run (atheris, coverage-guided; see README "Reliability"):
    PYRNN_MEMORY_LIMIT=1G python tests/fuzz/fuzz_layer.py -max_total_time=60 CORPUS_DIR \\
        tests/fuzz/corpus/layer
"""

import numpy as np

ALLOWED = (ValueError, TypeError, RuntimeError, MemoryError)
DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8, np.bool_,
          np.complex64, object, "U3"]


class Bytes:
    """A tiny FuzzedDataProvider that also works without atheris (corpus replay)."""

    def __init__(self, data):
        self.data, self.pos = data, 0

    def byte(self):
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def int(self, lo, hi):
        return lo + (self.byte() | (self.byte() << 8)) % (hi - lo + 1)

    def pick(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def floats(self, n):
        raw = self.data[self.pos:self.pos + 4 * n]
        self.pos += len(raw)
        vals = np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<f4").astype(np.float64)
        out = np.resize(vals, n) if vals.size else np.zeros(n)
        # Mostly tame values, with the raw bit patterns (NaN, Inf, 1e38, denormals) mixed in.
        mask = (np.arange(n) % 7) != 3
        out[mask] = np.tanh(np.nan_to_num(out[mask])) * 3
        return out


def array(b, want_shape=None):
    """An arbitrary array: usually shaped like want_shape (sometimes perturbed)."""
    kind = b.int(0, 15)
    if want_shape is not None and kind < 11:
        shape = list(want_shape)
        if kind == 10 and shape:  # off by one somewhere
            i = b.int(0, len(shape) - 1)
            shape[i] = max(0, shape[i] + b.pick([-1, 1]))
    else:
        shape = [b.int(0, 5) for _ in range(b.int(0, 4))]
    n = int(np.prod(shape)) if shape else 1
    values = b.floats(n).reshape(shape) if shape else b.floats(1)[0]
    dtype = DTYPES[0] if b.int(0, 3) else b.pick(DTYPES)
    try:
        a = np.asarray(values).astype(dtype)
    except (ValueError, OverflowError):
        a = np.asarray(values)
    layout = b.int(0, 7)
    if layout == 1 and a.ndim:
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        a = big[..., ::2]
    elif layout == 2:
        a = np.asfortranarray(a)
    elif layout == 3 and isinstance(a, np.ndarray):
        a = np.array(a)
        a.setflags(write=False)
    elif layout == 4:
        a = a.tolist() if isinstance(a, np.ndarray) else a
    return a


def finite_in(*arrays):
    for a in arrays:
        if a is None:
            continue
        try:
            arr = np.asarray(a)
        except Exception:  # noqa: BLE001
            return False
        if arr.dtype.kind not in "iuf" or not np.isfinite(arr.astype(np.float64)).all():
            return False
        if np.abs(arr.astype(np.float64)).max(initial=0) > 1e4:
            return False  # huge but finite inputs may legitimately overflow float32
    return True


def run_recurrent(b, pyrnn):
    cls = b.pick([pyrnn.RNN, pyrnn.LSTM, pyrnn.GRU])
    C, H, L = b.int(1, 5), b.int(1, 6), b.int(1, 3)
    kw = dict(num_layers=L, bidirectional=bool(b.int(0, 1)), batch_first=bool(b.int(0, 1)),
              bias=bool(b.int(0, 1)), dtype=b.pick(["float32", "float64"]), seed=b.int(0, 9))
    if cls is pyrnn.GRU:
        kw["reset_after"] = bool(b.int(0, 1))
    if cls is pyrnn.RNN:
        kw["nonlinearity"] = b.pick(["tanh", "relu"])
    layer = cls(C, H, **kw)
    T, N = b.int(0, 5), b.int(0, 4)
    D = 2 if kw["bidirectional"] else 1
    unbatched = b.int(0, 5) == 0
    xs = (T, C) if unbatched else ((N, T, C) if kw["batch_first"] else (T, N, C))
    x = array(b, xs)
    ss = (L * D, H) if unbatched else (L * D, N, H)
    hx = None
    if b.int(0, 2) == 0:
        hx = (array(b, ss), array(b, ss)) if cls is pyrnn.LSTM else array(b, ss)
        if b.int(0, 5) == 0:
            hx = array(b)
    lengths = None
    if b.int(0, 2) == 0:
        lengths = b.pick([lambda: [b.int(-2, T + 2) for _ in range(N)],
                          lambda: np.array([b.int(0, T + 1) for _ in range(N)], np.int64),
                          lambda: array(b)])()
    if b.int(0, 4) == 0:
        layer.eval()
    out, state = layer(x, hx, lengths)
    if finite_in(x, *(hx if isinstance(hx, tuple) else (hx,))):
        assert np.isfinite(out).all(), "finite inputs gave a non-finite output"
    if not layer.training:
        return
    ys = (T, D * H) if unbatched else ((N, T, D * H) if kw["batch_first"] else (T, N, D * H))
    d = array(b, ys)
    res = layer.backward(d)
    if finite_in(x, d, *(hx if isinstance(hx, tuple) else (hx,))):
        dx = res[0]
        assert np.isfinite(dx).all(), "finite inputs gave a non-finite gradient"


def run_other(b, pyrnn, which):
    if which == 0:
        layer = pyrnn.Dense(b.int(1, 5), b.int(1, 5), activation=b.pick([None, "relu", "tanh",
                                                                        "sigmoid"]))
        x = array(b, (b.int(0, 3), layer.in_features))
    elif which == 1:
        layer = pyrnn.LayerNorm(b.int(1, 5))
        x = array(b, (b.int(0, 3), layer.dim))
    elif which == 2:
        layer = pyrnn.Embedding(b.int(1, 6), b.int(1, 4), padding_idx=b.pick([None, 0]))
        x = array(b, (b.int(0, 3), b.int(0, 3)))
        if b.int(0, 1):  # mostly in-range indices
            x = np.array([b.int(-1, layer.num) for _ in range(b.int(0, 6))])
    elif which == 3:
        layer = pyrnn.LastStep(bidirectional=b.pick([None, True, False]))
        x = array(b, (b.int(0, 3), b.int(0, 3), 2 * b.int(0, 2)))
    else:
        loss = b.pick([pyrnn.losses.MSELoss, pyrnn.losses.CrossEntropyLoss,
                       pyrnn.losses.BCEWithLogitsLoss])()
        shape = (b.int(0, 3), b.int(1, 4))
        loss.forward(array(b, shape), array(b, shape if b.int(0, 1) else shape[:1]))
        loss.backward()
        return
    y = layer(x)
    if b.int(0, 3):
        layer.backward(array(b, np.shape(y)))


def test_one_input(data, pyrnn=None):
    if pyrnn is None:
        import pyrnn
    b = Bytes(data)
    which = b.int(0, 7)
    try:
        with np.errstate(all="ignore"):  # NumPy's cast warnings on odd data are not findings
            if which < 3:
                run_recurrent(b, pyrnn)
            else:
                run_other(b, pyrnn, which - 3)
    except ALLOWED:
        pass


if __name__ == "__main__":
    from _atheris_main import run
    run(test_one_input)
