"""ONE table of bad (and tricky but valid) inputs for every public entry point of pyrnn.

Each row: (id, snippet, expected exception, message regex). The snippet runs in a child
process (tests/_case_runner.py; all rows in a few processes, so it stays fast), so a crash,
an abort or an OOM kill is a failure naming the row, never a dead test run. Expected
exception None means the call must succeed; such snippets check their results themselves
(assert), e.g. that a non-contiguous view gives the same result as its contiguous copy.

Policy the rows pin down (README "Reliability"):
- Array inputs (x, hx, lengths, d_out, targets, fit data) may be any real array-like: other
  dtypes, non-contiguous views, Fortran order and read-only memory (even a read-only mmap,
  where a write would be a segfault) are accepted, copied when needed, never written.
- Arrays the library updates in place (optimizer parameters and gradients, clip_grad_norm's
  gradients) must be writable and C-contiguous: anything else is refused, since an update of
  a temporary copy would be silently lost. init functions write through any writable view.
- Device arrays handed to CPU code are a TypeError naming the device mismatch.
- Sizes beyond the machine's memory are a MemoryError before anything is allocated (the
  children run with PYRNN_MEMORY_LIMIT=2G so the rows mean the same on any machine, and under
  an address-space limit as a safety net).
"""
import os

import pytest

import pyrnn.cuda

from _case_runner import run_cases

PRELUDE = r'''
import atexit, os, shutil, tempfile, json, struct, zlib
import numpy as np
import pyrnn
from pyrnn import losses, optim, init, callbacks
from pyrnn.parameter import Parameter

# In the runner's own temporary folder (the child's working directory), which it removes even
# when a child crashes; atexit for a normal exit.
TMP = tempfile.mkdtemp(prefix="pyrnn-table-", dir=os.getcwd())
atexit.register(shutil.rmtree, TMP, ignore_errors=True)
rng = np.random.default_rng(0)

def rand(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)

def ro(a):
    """A read-only copy."""
    a = np.array(a)
    a.setflags(write=False)
    return a

_maps = []
def romap(a):
    """The array in a read-only memory map (PROT_READ): a write through it is a segfault."""
    a = np.ascontiguousarray(a)
    path = os.path.join(TMP, f"map{len(_maps)}.bin")
    a.tofile(path)
    m = np.memmap(path, dtype=a.dtype, mode="r", shape=a.shape)
    _maps.append(m)
    return m

def strided(a):
    """A non-contiguous view with the same values."""
    a = np.asarray(a)
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    v = big[..., ::2]
    assert not v.flags.c_contiguous
    return v

def same(a, b):
    if isinstance(a, tuple):
        return all(same(u, v) for u, v in zip(a, b))
    if a is None or b is None:
        return a is b
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)

class FakeCAI:
    """Looks like device memory (CUDA array interface); its pointer is never dereferenced by
    a correct CPU path."""
    def __init__(self, shape, typestr="<f4"):
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr,
                                         "data": (0x7f0000000000, False), "version": 3,
                                         "strides": None, "stream": None}

def small_model(**kw):
    return pyrnn.Sequential([pyrnn.GRU(2, 4, batch_first=True, seed=0, **kw),
                             pyrnn.LastStep(), pyrnn.Dense(4, 1, seed=1)])

X = rng.random((8, 5, 2)).astype(np.float32)
Y = X[:, :, 0].mean(axis=1, keepdims=True)

def fit(model=None, x=None, y=None, **kw):
    model = model or small_model()
    args = dict(loss="mse", optimizer="adam", epochs=1, batch_size=4, verbose=0)
    args.update(kw)
    return model.fit(X if x is None else x, Y if y is None else y, **args)

def saved_file():
    path = os.path.join(TMP, "model.pyrnn")
    small_model().save(path)
    return path

def write_raw(header, payload=b"", version=1):
    """A file with valid checksums around an arbitrary header (the lies must be caught by
    the consistency checks, not by a CRC)."""
    h = json.dumps(header).encode()
    prefix = struct.pack("<8sIIQQII", b"\x89PYRNN\r\n", version, 0, len(h), len(payload),
                         zlib.crc32(h), zlib.crc32(payload))
    path = os.path.join(TMP, "raw.pyrnn")
    with open(path, "wb") as f:
        f.write(prefix + h + payload)
    return path

def header_of(path):
    data = open(path, "rb").read()
    hlen = struct.unpack_from("<Q", data, 16)[0]
    return json.loads(data[40:40 + hlen]), data[40 + hlen:]

def lstm_pair(**kw):
    """Two LSTMs with the same weights."""
    return pyrnn.LSTM(3, 4, seed=7, **kw), pyrnn.LSTM(3, 4, seed=7, **kw)
'''

V, T, M = ValueError, TypeError, MemoryError
R, I = RuntimeError, IndexError
OK = None

# (id, snippet, expected exception or OK, regex the message must match)
CASES = [
    # ---- recurrent layers: construction -----------------------------------------------------
    ("rnn-input-size-str", "pyrnn.RNN('4', 3)", T, r"input_size must be an int, got str"),
    ("lstm-input-size-float", "pyrnn.LSTM(4.0, 3)", T, r"input_size must be an int, got float"),
    ("gru-input-size-0", "pyrnn.GRU(0, 3)", V, r"input_size must be >= 1, got 0"),
    ("lstm-hidden-negative", "pyrnn.LSTM(4, -1)", V, r"hidden_size must be >= 1, got -1"),
    ("lstm-hidden-bool", "pyrnn.LSTM(4, True)", T, r"hidden_size must be an int, got bool"),
    ("lstm-layers-0", "pyrnn.LSTM(4, 3, num_layers=0)", V, r"num_layers must be >= 1, got 0"),
    ("lstm-dropout-1", "pyrnn.LSTM(4, 3, 2, dropout=1.0)", V, r"dropout must be in \[0, 1\), got 1.0"),
    ("lstm-dropout-str", "pyrnn.LSTM(4, 3, dropout='0.1')", T, r"dropout must be a float"),
    ("lstm-dropout-nan", "pyrnn.LSTM(4, 3, 2, dropout=float('nan'))", V, r"dropout must be in"),
    ("lstm-dtype-float16", "pyrnn.LSTM(4, 3, dtype='float16')", T, r"float32.*float64.*float16"),
    ("lstm-dtype-int", "pyrnn.LSTM(4, 3, dtype=np.int32)", T, r"got int32"),
    ("lstm-dtype-garbage", "pyrnn.LSTM(4, 3, dtype='fp32x')", T, r"dtype must be"),
    ("lstm-device-tpu", "pyrnn.LSTM(4, 3, device='tpu')", V, r"device must be 'cpu' or 'cuda', got 'tpu'"),
    ("lstm-seed-float", "pyrnn.LSTM(4, 3, seed=1.5)", T, r"seed must be an int or None, got float"),
    ("gru-seed-negative", "pyrnn.GRU(4, 3, seed=-1)", V, r"seed must be >= 0 \(or None\), got -1"),
    ("rnn-nonlinearity", "pyrnn.RNN(4, 3, nonlinearity='sigmoid')", V, r"'tanh' or 'relu', got 'sigmoid'"),
    ("gru-nonlinearity-kw", "pyrnn.GRU(4, 3, nonlinearity='relu')", T, r"nonlinearity"),
    ("lstm-reset-after-kw", "pyrnn.LSTM(4, 3, reset_after=True)", T, r"reset_after"),
    ("lstm-hidden-2**20", "pyrnn.LSTM(10, 2**20)", V, r"too large.*hidden_size=1048576"),
    # (named input_size alone, which is 1 here: the product that overflows is 2 * hidden_size's)
    ("lstm-hidden-16384", "pyrnn.LSTM(1, 16384)", V, r"gates\*hidden_size\*max\(input_size, 2\*hidden_size\) = 2147483648 is 2\^31 or more.*hidden_size=16384, input_size=1\)"),
    ("lstm-hidden-10**6", "pyrnn.LSTM(10, 10**6)", V, r"too large.*hidden_size=1000000"),
    ("lstm-input-2**31", "pyrnn.LSTM(2**31, 3)", V, r"input_size = 2147483648 is too large"),
    ("lstm-params-beyond-memory", "pyrnn.LSTM(512, 8192, num_layers=100)", M,
     r"parameters and gradients needs [\d.]+ GiB, more than PYRNN_MEMORY_LIMIT \(2.0 GiB\)"),
    ("rnn-many-layers-beyond-memory", "pyrnn.RNN(1, 1, num_layers=2**31 - 1)", M,
     r"needs [\d.]+ GiB, more than"),
    ("gru-bidirectional-huge", "pyrnn.GRU(4096, 4096, num_layers=64, bidirectional=True)", M,
     r"GiB"),
    # ---- recurrent layers: forward -------------------------------------------------------------
    ("lstm-x-rank1", "pyrnn.LSTM(4, 3)(np.zeros(5))", V, r"\(T, N, 4\).*got \(5,\)"),
    ("lstm-x-rank4", "pyrnn.LSTM(4, 3)(np.zeros((2, 5, 2, 4)))", V, r"got \(2, 5, 2, 4\)"),
    ("lstm-x-scalar", "pyrnn.LSTM(4, 3)(1.0)", V, r"got \(\)"),
    ("gru-x-features", "pyrnn.GRU(4, 3)(np.zeros((5, 2, 5)))", V, r"\(T, N, 4\).*got \(5, 2, 5\)"),
    ("gru-x-features-batch-first", "pyrnn.GRU(4, 3, batch_first=True)(np.zeros((2, 5, 3)))", V,
     r"\(N, T, 4\) with batch_first.*got \(2, 5, 3\)"),
    ("rnn-x-str", "pyrnn.RNN(4, 3)('hello')", T, r"x must be a real numeric array, got str"),
    ("rnn-x-object", "pyrnn.RNN(4, 3)(np.full((5, 2, 4), None))", T, r"got dtype object"),
    ("rnn-x-complex", "pyrnn.RNN(4, 3)(np.zeros((5, 2, 4), complex))", T, r"got dtype complex128"),
    ("rnn-x-bool", "pyrnn.RNN(4, 3)(np.zeros((5, 2, 4), bool))", T, r"got dtype bool"),
    ("rnn-x-none", "pyrnn.RNN(4, 3)(None)", T, r"got dtype object"),
    ("rnn-x-ragged", "pyrnn.RNN(4, 3)([[1.0] * 4, [1.0] * 3])", T, r"x must be a real numeric array"),
    ("lstm-x-empty-T", "pyrnn.LSTM(4, 3)(np.zeros((0, 2, 4)))", V, r"T = 0, N = 2"),
    ("lstm-x-empty-N", "pyrnn.LSTM(4, 3)(np.zeros((5, 0, 4)))", V, r"T = 5, N = 0"),
    ("lstm-x-empty-unbatched", "pyrnn.LSTM(4, 3)(np.zeros((0, 4)))", V, r"T = 0"),
    ("lstm-x-device-array", "pyrnn.LSTM(4, 3)(FakeCAI((5, 2, 4)))", T,
     r"x is a CUDA device array.*CPU"),
    ("lstm-hx-not-pair", "pyrnn.LSTM(4, 3)(np.zeros((5, 2, 4)), np.zeros((1, 2, 3)))", T,
     r"an LSTM's hx must be a tuple \(h0, c0\) of two arrays.*; got ndarray$"),
    # Both states or neither, as in PyTorch: a missing one is named, not "dtype object".
    ("lstm-hx-c0-none", "pyrnn.LSTM(4, 3)(np.zeros((5, 2, 4)), (np.zeros((1, 2, 3)), None))", T,
     r"^an LSTM's hx must be a tuple \(h0, c0\) of two arrays, both given, or hx=None for zero "
     r"states \(PyTorch requires both too\); got \(ndarray, None\)$"),
    ("lstm-hx-h0-none", "pyrnn.LSTM(4, 3)(np.zeros((5, 2, 4)), [None, np.zeros((1, 2, 3))])", T,
     r"both given.*got \(None, ndarray\)$"),
    ("lstm-hx-one", "pyrnn.LSTM(4, 3)(np.zeros((5, 2, 4)), (np.zeros((1, 2, 3)),))", T,
     r"both given.*got \(ndarray,\)$"),
    ("lstm-h0-shape", "pyrnn.LSTM(4, 3)(np.zeros((5, 2, 4)), (np.zeros((1, 3, 3)), np.zeros((1, 2, 3))))",
     V, r"h0 must have shape \(1, 2, 3\), got \(1, 3, 3\)"),
    ("lstm-c0-shape", "pyrnn.LSTM(4, 3)(np.zeros((5, 2, 4)), (np.zeros((1, 2, 3)), np.zeros((2, 2, 3))))",
     V, r"c0 must have shape \(1, 2, 3\), got \(2, 2, 3\)"),
    ("gru-hx-shape-bidirectional", "pyrnn.GRU(4, 3, 2, bidirectional=True)(np.zeros((5, 2, 4)), np.zeros((2, 2, 3)))",
     V, r"hx must have shape \(4, 2, 3\), got \(2, 2, 3\)"),
    ("gru-hx-str", "pyrnn.GRU(4, 3)(np.zeros((5, 2, 4)), np.full((1, 2, 3), 'a'))", T, r"hx must be a real"),
    ("gru-hx-device-array", "pyrnn.GRU(4, 3)(np.zeros((5, 2, 4)), FakeCAI((1, 2, 3)))", T,
     r"hx is a CUDA device array"),
    ("rnn-lengths-0", "pyrnn.RNN(4, 3)(np.zeros((5, 2, 4)), lengths=[0, 3])", V,
     r"lengths\[0\] = 0 is outside \[1, 5\]"),
    ("rnn-lengths-too-long", "pyrnn.RNN(4, 3)(np.zeros((5, 2, 4)), lengths=[5, 6])", V,
     r"lengths\[1\] = 6 is outside \[1, 5\]"),
    ("rnn-lengths-negative", "pyrnn.RNN(4, 3)(np.zeros((5, 2, 4)), lengths=[-1, 2])", V, r"-1"),
    ("rnn-lengths-huge", "pyrnn.RNN(4, 3)(np.zeros((5, 2, 4)), lengths=np.array([2**62, 1]))", V,
     r"4611686018427387904 is outside"),
    ("rnn-lengths-uint64-huge", "pyrnn.RNN(4, 3)(np.zeros((5, 2, 4)), lengths=np.array([2**64 - 1, 1], np.uint64))",
     V, r"outside \[1, 5\]"),
    ("rnn-lengths-count", "pyrnn.RNN(4, 3)(np.zeros((5, 2, 4)), lengths=[3])", V,
     r"lengths must have shape \(2,\).*got shape \(1,\)"),
    # A scalar is one length for a batch of one; otherwise the message names what was passed.
    ("rnn-lengths-scalar", "pyrnn.RNN(4, 3)(np.zeros((5, 2, 4)), lengths=3)", V,
     r"^lengths must have shape \(2,\) \(one per sequence\), got a single number, shape \(\)$"),
    ("rnn-lengths-scalar-batch-of-one", "x = rand(5, 1, 4); l = pyrnn.RNN(4, 3, seed=0); "
     "assert np.array_equal(l(x, lengths=np.int64(3))[0], l(x, lengths=[3])[0])", OK, ""),
    ("rnn-lengths-2d", "pyrnn.RNN(4, 3)(np.zeros((5, 2, 4)), lengths=[[3, 3]])", V, r"\(1, 2\)"),
    ("rnn-lengths-float", "pyrnn.RNN(4, 3)(np.zeros((5, 2, 4)), lengths=[3.0, 2.5])", V,
     r"^lengths must be whole numbers, got 2.5 at index 1$"),
    ("rnn-lengths-float-nan", "pyrnn.RNN(4, 3)(np.zeros((5, 2, 4)), lengths=[np.nan, 2])", V,
     r"^lengths must be whole numbers, got nan at index 0$"),
    # Whole floats (a float mask's sum(1)) are lengths, as in torch's pack_padded_sequence.
    ("rnn-lengths-whole-floats", "x = rand(5, 2, 4); l = pyrnn.RNN(4, 3, seed=0); "
     "assert np.array_equal(l(x, lengths=np.array([5.0, 2.0], np.float32))[0], "
     "l(x, lengths=[5, 2])[0])", OK, ""),
    ("rnn-lengths-float-range", "pyrnn.RNN(4, 3)(np.zeros((5, 2, 4)), lengths=[3.0, 1e30])", V,
     r"lengths\[1\] = \S+ is outside \[1, 5\]"),
    ("rnn-lengths-bool", "pyrnn.RNN(4, 3)(np.zeros((5, 2, 4)), lengths=np.array([True, True]))",
     T, r"lengths must be integers, got dtype bool"),
    # (NumPy made a list's True an int 1: helper-171)
    ("rnn-lengths-bool-list", "pyrnn.RNN(4, 3)(np.zeros((5, 2, 4)), lengths=[True, 3])", T,
     r"^lengths must be integers, got a bool in the list$"),
    ("rnn-lengths-bool-array-in-list",
     "pyrnn.RNN(4, 3)(np.zeros((5, 2, 4)), lengths=[np.array(True), 3])", T,
     r"^lengths must be integers, got a bool in the list$"),
    ("rnn-lengths-bool-deque",
     "import collections; pyrnn.RNN(4, 3)(np.zeros((5, 2, 4)), "
     "lengths=collections.deque([3, np.True_]))", T,
     r"^lengths must be integers, got a bool in the deque$"),
    ("rnn-lengths-str", "pyrnn.RNN(4, 3)(np.zeros((5, 2, 4)), lengths='55')", T, r"lengths must be integers"),
    ("rnn-lengths-device", "pyrnn.RNN(4, 3)(np.zeros((5, 2, 4)), lengths=FakeCAI((2,), '<i8'))", T,
     r"lengths is a CUDA device array"),
    ("lstm-forward-beyond-memory",
     "pyrnn.LSTM(1, 64, num_layers=8, bidirectional=True)(np.zeros((500, 200, 1), np.float32))", M,
     r"this forward's activations needs [\d.]+ GiB, more than PYRNN_MEMORY_LIMIT"),
    ("lstm-forward-int32-overflow",
     "pyrnn.LSTM(1, 64)(np.broadcast_to(np.float32(0), (2**16, 2**15, 1)))", V,
     r"x of shape \(65536, 32768, 1\) holds T \* N = 2147483648 steps of sequences; at most "
     r"2\*\*31 - 1"),
    ("lstm-forward-int32-overflow-batch-first-names-the-given-shape",
     "pyrnn.LSTM(1, 64, batch_first=True)(np.broadcast_to(np.float32(0), (2**15, 2**16, 1)))", V,
     r"x of shape \(32768, 65536, 1\) holds T \* N = 2147483648"),
    ("lstm-forward-beyond-memory-before-conversion",  # (a broadcast view: copied first, 4 GB)
     "l = pyrnn.LSTM(1, 1024).eval(); l(np.broadcast_to(np.float32(0), (10**6, 10**3, 1)))", M,
     r"this forward's activations needs [\d.]+ GiB"),
    # accepted: conversions, views, read-only memory
    ("lstm-x-nan-propagates", "out, _ = pyrnn.LSTM(4, 3)(np.full((5, 2, 4), np.nan)); assert np.isnan(out).all()",
     OK, ""),
    ("lstm-x-int-and-list", "l = pyrnn.LSTM(4, 3, seed=0); a = l(np.ones((5, 2, 4), np.int64))[0]; "
     "b = l(np.ones((5, 2, 4)).tolist())[0]; assert same(a, b) and a.dtype == np.float32", OK, ""),
    ("lstm-x-float16-converted", "l = pyrnn.LSTM(4, 3, seed=0); x = rand(5, 2, 4); "
     "assert same(l(x.astype(np.float16))[0], l(x.astype(np.float16).astype(np.float32))[0])", OK, ""),
    ("lstm-x-noncontiguous", "a, b = lstm_pair(); x = rand(6, 2, 3); h = (rand(1, 2, 4), rand(1, 2, 4)); "
     "assert same(a(strided(x), (strided(h[0]), strided(h[1])), lengths=strided(np.array([6, 2])))[0], b(x, h, lengths=[6, 2])[0])",
     OK, ""),
    ("lstm-x-fortran-order", "a, b = lstm_pair(); x = rand(6, 2, 3); assert same(a(np.asfortranarray(x)), b(x))",
     OK, ""),
    ("lstm-x-batch-first-transposed-view", "a, b = lstm_pair(batch_first=True); x = rand(6, 2, 3); "
     "assert same(a(x.transpose(1, 0, 2)), b(np.ascontiguousarray(x.transpose(1, 0, 2))))", OK, ""),
    ("gru-readonly-mmap-inputs", "l = pyrnn.GRU(3, 4, seed=1); x = rand(6, 2, 3); h = rand(1, 2, 4); "
     "want = l(x, h, lengths=[6, 3]); got = l(romap(x), romap(h), lengths=romap(np.array([6, 3]))); "
     "assert same(want, got) and np.array_equal(np.asarray(_maps[0]), x)", OK, ""),
    ("lstm-readonly-backward-inputs", "l = pyrnn.LSTM(3, 4, seed=1); x = rand(6, 2, 3); out, _ = l(x); "
     "d = rand(*out.shape); a = l.backward(d); b = l.backward(romap(d), romap(rand(1, 2, 4) * 0), ro(np.zeros((1, 2, 4), np.float32)));"
     "assert same(a[0], b[0])", OK, ""),
    ("lstm-output-not-aliasing-input", "l = pyrnn.LSTM(3, 3, seed=1); x = rand(4, 2, 3); x0 = x.copy(); "
     "out, (h, c) = l(x); out[...] = 7; h[...] = 7; assert np.array_equal(x, x0)", OK, ""),
    # ---- recurrent layers: backward ------------------------------------------------------------
    ("gru-backward-no-forward", "pyrnn.GRU(4, 3).backward(np.zeros((5, 2, 3)))", R,
     r"backward\(\) needs a preceding forward\(\) in training mode"),
    ("gru-backward-after-eval", "l = pyrnn.GRU(4, 3); l(np.zeros((5, 2, 4))); l.eval(); l(np.zeros((5, 2, 4))); "
     "l.backward(np.zeros((5, 2, 3)))", R, r"training mode"),
    ("gru-backward-after-refused-forward", "l = pyrnn.GRU(4, 3); l(np.zeros((5, 2, 4)))\n"
     "try:\n    l(np.zeros((6, 2, 4)), lengths=[5, 9])\nexcept ValueError:\n    pass\n"
     "dx, dh = l.backward(np.ones((5, 2, 3))); assert dx.shape == (5, 2, 4)", OK, ""),
    ("lstm-backward-d-out-shape", "l = pyrnn.LSTM(4, 3); l(np.zeros((5, 2, 4))); l.backward(np.zeros((5, 3, 3)))",
     V, r"d_out must have the forward output's shape \(5, 2, 3\), got \(5, 3, 3\)"),
    ("lstm-backward-d-out-str", "l = pyrnn.LSTM(4, 3); l(np.zeros((5, 2, 4))); l.backward('x')", T, r"d_out must be a real"),
    ("lstm-backward-d-out-device", "l = pyrnn.LSTM(4, 3); l(np.zeros((5, 2, 4))); l.backward(FakeCAI((5, 2, 3)))",
     T, r"d_out is a CUDA device array"),
    ("lstm-backward-d-h-n-shape", "l = pyrnn.LSTM(4, 3); l(np.zeros((5, 2, 4))); l.backward(np.zeros((5, 2, 3)), np.zeros((1, 2, 4)))",
     V, r"d_h_n must have shape \(1, 2, 3\), got \(1, 2, 4\)"),
    ("lstm-backward-d-c-n-shape", "l = pyrnn.LSTM(4, 3); l(np.zeros((5, 2, 4))); l.backward(np.zeros((5, 2, 3)), None, np.zeros((2, 2, 3)))",
     V, r"d_c_n must have shape \(1, 2, 3\)"),
    ("lstm-backward-noncontiguous", "a, b = lstm_pair(); x = rand(6, 2, 3); a(x); b(x); d = rand(6, 2, 4); "
     "ra = a.backward(strided(d), strided(rand(1, 2, 4) * 0)); rb = b.backward(d, np.zeros((1, 2, 4), np.float32)); "
     "assert same(ra[0], rb[0]) and all(same(a.grads[k], b.grads[k]) for k in a.grads)", OK, ""),
    # ---- layer parameter helpers ---------------------------------------------------------------
    ("lstm-load-params-unknown", "pyrnn.LSTM(4, 3).load_params({'weight': np.zeros(3)})", KeyError, r"unknown parameter"),
    ("lstm-load-params-shape", "pyrnn.LSTM(4, 3).load_params({'weight_ih_l0': np.zeros((3, 3))})", V,
     r"weight_ih_l0 must have shape \(12, 4\), got \(3, 3\)"),
    ("lstm-load-params-views", "a, b = lstm_pair(); w = rand(16, 3); a.load_params({'weight_ih_l0': strided(w)}); "
     "b.load_params({'weight_ih_l0': romap(w)}); assert same(a.params['weight_ih_l0'], w) and same(b.params['weight_ih_l0'], w)",
     OK, ""),
    # ---- Dense ---------------------------------------------------------------------------------
    ("dense-in-0", "pyrnn.Dense(0, 3)", V, r"in_features must be >= 1, got 0"),
    ("dense-out-float", "pyrnn.Dense(3, 2.5)", T, r"out_features must be an int, got float"),
    ("dense-activation", "pyrnn.Dense(3, 2, activation='gelu')", V, r"activation must be None.*got 'gelu'"),
    ("dense-dtype", "pyrnn.Dense(3, 2, dtype='int8')", T, r"got int8"),
    ("dense-seed", "pyrnn.Dense(3, 2, seed='a')", T, r"seed must be an int"),
    ("dense-beyond-memory", "pyrnn.Dense(10**6, 10**6)", M, r"Dense\(1000000, 1000000\) needs [\d.]+ GiB"),
    ("dense-forward-beyond-memory", "pyrnn.Dense(1, 2**20)(np.zeros((2**12, 1), np.float32))", M,
     r"Dense\(1, 1048576\) output of shape \(4096, 1048576\) needs 16.0 GiB, more than PYRNN_MEMORY_LIMIT"),
    ("dense-x-features", "pyrnn.Dense(3, 2)(np.zeros((4, 5)))", V, r"\(\.\.\., 3\), got \(4, 5\)"),
    ("dense-x-scalar", "pyrnn.Dense(3, 2)(1.0)", V, r"got \(\)"),
    ("dense-x-str", "pyrnn.Dense(3, 2)('abc')", T, r"x must be a real numeric array"),
    ("dense-x-device", "pyrnn.Dense(3, 2)(FakeCAI((4, 3)))", T, r"x is a CUDA device array"),
    ("dense-backward-no-forward", "pyrnn.Dense(3, 2).backward(np.zeros((4, 2)))", R, r"Dense.backward\(\) needs a preceding forward"),
    ("dense-backward-shape", "d = pyrnn.Dense(3, 2); d(np.zeros((4, 3))); d.backward(np.zeros((4, 3)))", V,
     r"dy must have the output's shape \(4, 2\), got \(4, 3\)"),
    ("dense-empty-rows-ok", "y = pyrnn.Dense(3, 2)(np.zeros((0, 3))); assert y.shape == (0, 2)", OK, ""),
    ("dense-noncontiguous-readonly", "a = pyrnn.Dense(3, 2, activation='tanh', seed=0); b = pyrnn.Dense(3, 2, activation='tanh', seed=0); "
     "x = rand(4, 3); d = rand(4, 2); ya = a(strided(x)); dxa = a.backward(romap(d)); yb = b(x); dxb = b.backward(d); "
     "assert same(ya, yb) and same(dxa, dxb) and same(a.grads['weight'], b.grads['weight'])", OK, ""),
    ("dense-swapped-param-shape", "d = pyrnn.Dense(3, 2); d.params['weight'] = np.zeros((5, 3), np.float32)",
     V, r"weight must have shape \(2, 3\), got \(5, 3\)"),
    ("dense-param-float64-copied", "d = pyrnn.Dense(3, 2); w = d.params['weight']; d.params['weight'] = np.ones((2, 3)); "
     "assert d.params['weight'] is w and w.dtype == np.float32 and same(d(np.ones((1, 3)))[0], 3 + d.params['bias'])", OK, ""),
    # ---- Embedding -----------------------------------------------------------------------------
    ("embedding-num-0", "pyrnn.Embedding(0, 3)", V, r"num must be >= 1, got 0"),
    ("embedding-padding-range", "pyrnn.Embedding(10, 3, padding_idx=10)", V, r"padding_idx must be in \[-10, 10\), got 10"),
    ("embedding-padding-float", "pyrnn.Embedding(10, 3, padding_idx=1.0)", T, r"padding_idx must be an int"),
    ("embedding-beyond-memory", "pyrnn.Embedding(10**9, 10**4)", M, r"Embedding\(1000000000, 10000\) needs"),
    ("embedding-forward-beyond-memory", "pyrnn.Embedding(2, 2**16)(np.zeros(2**16, np.int64))", M,
     r"Embedding\(2, 65536\) output of shape \(65536, 65536\) needs 16.0 GiB, more than PYRNN_MEMORY_LIMIT"),
    ("embedding-float-index", "pyrnn.Embedding(10, 3)(np.array([1.0, 2.0]))", T, r"integer indices, got dtype float64"),
    ("embedding-index-high", "pyrnn.Embedding(10, 3)(np.array([[1, 10]]))", V, r"index 10 is outside \[0, 10\)"),
    ("embedding-index-negative", "pyrnn.Embedding(10, 3)([3, -1])", V, r"index -1 is outside"),
    ("embedding-index-uint64-huge", "pyrnn.Embedding(10, 3)(np.array([2**64 - 1], np.uint64))", V, r"outside \[0, 10\)"),
    ("embedding-index-str", "pyrnn.Embedding(10, 3)('12')", T, r"integer indices, got str"),
    ("embedding-index-device", "pyrnn.Embedding(10, 3)(FakeCAI((2,), '<i8'))", T, r"device array"),
    ("embedding-backward-shape", "e = pyrnn.Embedding(10, 3); e([1, 2]); e.backward(np.zeros((2, 4)))", V,
     r"dy must have shape \(2, 3\), got \(2, 4\)"),
    ("embedding-shrunk-table", "e = pyrnn.Embedding(10, 3); e.params['weight'] = np.zeros((2, 3), np.float32)",
     V, r"weight must have shape \(10, 3\), got \(2, 3\)"),
    ("embedding-readonly-noncontiguous", "e = pyrnn.Embedding(10, 3, seed=0); i = np.arange(10)[::3]; "
     "assert same(e(romap(i)), e(np.ascontiguousarray(i)))", OK, ""),
    # ---- LayerNorm -----------------------------------------------------------------------------
    ("layernorm-dim-0", "pyrnn.LayerNorm(0)", V, r"dim must be >= 1, got 0"),
    ("layernorm-beyond-memory", "pyrnn.LayerNorm(2**28)", M, r"LayerNorm\(268435456\) needs 4.0 GiB, more than PYRNN_MEMORY_LIMIT"),
    ("layernorm-eps-negative", "pyrnn.LayerNorm(3, eps=-1)", V, r"eps must be a finite number >= 0, got -1"),
    ("layernorm-eps-nan", "pyrnn.LayerNorm(3, eps=float('nan'))", V, r"eps must be a finite number >= 0, got nan"),
    ("layernorm-eps-inf", "pyrnn.LayerNorm(3, eps=float('inf'))", V, r"eps must be a finite number >= 0, got inf"),
    ("layernorm-x-dim", "pyrnn.LayerNorm(3)(np.zeros((2, 4)))", V, r"\(\.\.\., 3\), got \(2, 4\)"),
    ("layernorm-backward-shape", "n = pyrnn.LayerNorm(3); n(np.zeros((2, 3))); n.backward(np.zeros((3, 3)))", V,
     r"dy must have shape \(2, 3\), got \(3, 3\)"),
    ("layernorm-noncontiguous", "n = pyrnn.LayerNorm(3); x = rand(4, 3); assert same(n(strided(x)), n(x))", OK, ""),
    # ---- Dropout, LastStep ---------------------------------------------------------------------
    ("dropout-p-range", "pyrnn.Dropout(1.5)", V, r"p must be in \[0, 1\], got 1.5"),
    ("dropout-p-str", "pyrnn.Dropout('0.5')", T, r"p must be a float, got str"),
    ("dropout-p-bool", "pyrnn.Dropout(True)", T, r"got bool"),
    ("dropout-x-str", "pyrnn.Dropout(0.5)('abc')", T, r"x must be a real numeric array"),
    ("dropout-backward-no-forward", "pyrnn.Dropout(0.5).backward(np.zeros(3))", R, r"Dropout.backward\(\) needs"),
    ("dropout-backward-shape", "d = pyrnn.Dropout(0.5); d(np.zeros((2, 3))); d.backward(np.zeros((3, 2)))", V,
     r"dy must have shape \(2, 3\), got \(3, 2\)"),
    ("dropout-backward-device", "d = pyrnn.Dropout(0.5); d(np.zeros((2, 3))); d.backward(FakeCAI((2, 3)))", T, r"device array"),
    ("dropout-forward-device", "pyrnn.Dropout(0.5)(FakeCAI((2, 3)))", T, r"x is a CUDA device array \(FakeCAI\)"),
    ("laststep-forward-device", "pyrnn.LastStep()(FakeCAI((2, 3, 4)))", T, r"x is a CUDA device array \(FakeCAI\)"),
    ("dropout-readonly-input-not-written", "d = pyrnn.Dropout(0.5, seed=0); x = romap(np.ones((4, 4), np.float32)); y = d(x); "
     "assert np.asarray(x).sum() == 16", OK, ""),
    ("laststep-bidirectional-str", "pyrnn.LastStep(bidirectional='yes')", T, r"bidirectional must be True, False or None"),
    ("laststep-x-rank", "pyrnn.LastStep()(np.zeros((2, 3)))", V, r"got \(2, 3\)"),
    ("laststep-x-odd-width", "pyrnn.LastStep(bidirectional=True)(np.zeros((2, 3, 5)))", V, r"2\*H.*got \(2, 3, 5\)"),
    ("laststep-lengths", "pyrnn.LastStep()(np.zeros((2, 3, 4)), lengths=[1, 4])", V, r"lengths\[1\] = 4 is outside \[1, 3\]"),
    ("laststep-noncontiguous-readonly", "s = pyrnn.LastStep(bidirectional=True); x = rand(3, 5, 4); "
     "assert same(s(strided(x), lengths=romap(np.array([5, 1, 3]))), s(x, lengths=[5, 1, 3]))", OK, ""),
    ("laststep-backward-shape", "s = pyrnn.LastStep(); s(np.zeros((2, 3, 4))); s.backward(np.zeros((2, 5)))", V,
     r"dy must have shape \(2, 4\), got \(2, 5\)"),
    # ---- losses --------------------------------------------------------------------------------
    ("mse-shape", "losses.MSELoss()(np.zeros(3), np.zeros(4))", V, r"target shape \(4,\) does not match the prediction shape \(3,\)"),
    ("mse-str", "losses.MSELoss()('a', np.zeros(3))", T, r"pred must be a real numeric array, got str"),
    # FakeCAI's pointer is host memory: with a device, the pointer check refuses it first.
    ("mse-device", "losses.MSELoss()(FakeCAI((3,)), np.zeros(3))",
     *((T, r"data pointer 0x[0-9a-f]+ is not CUDA device or managed memory \(shape \(3,\)\)")
       if pyrnn.cuda.is_available() else (R, r"pred is a CUDA device array .* no CUDA device is usable"))),
    ("mse-target-device", "losses.MSELoss()(np.zeros(3), FakeCAI((3,)))",
     *((T, r"data pointer 0x[0-9a-f]+ is not CUDA device or managed memory \(shape \(3,\)\)")
       if pyrnn.cuda.is_available() else (R, r"target is a CUDA device array \(FakeCAI\), but no CUDA device is usable"))),
    ("mse-backward-first", "losses.MSELoss().backward()", R, r"needs a preceding forward"),
    ("mse-reduction", "losses.MSELoss(reduction='avg')", V, r"reduction must be 'mean' or 'sum', got 'avg'"),
    ("ce-target-range", "losses.CrossEntropyLoss()(np.zeros((2, 3)), [0, 5])", V, r"target 5 is outside \[0, 3\)"),
    ("ce-target-fraction", "losses.CrossEntropyLoss()(np.zeros((2, 3)), [0.5, 1.0])", T, r"class targets must be integers"),
    ("ce-target-shape", "losses.CrossEntropyLoss()(np.zeros((2, 3)), [0, 1, 2])", V, r"targets must have shape \(2,\)"),
    ("ce-no-classes", "losses.CrossEntropyLoss()(np.zeros((2, 0)), [0, 1])", V, r"K >= 1 classes, got \(2, 0\)"),
    ("ce-ignore-index-float", "losses.CrossEntropyLoss(ignore_index=1.5)", T, r"ignore_index must be an int"),
    ("losses-noncontiguous-readonly", "p = rand(4, 3); t = rand(4, 3); l1, l2 = losses.MSELoss(), losses.MSELoss(); "
     "assert l1(strided(p), romap(t)) == l2(p, t) and same(l1.backward(), l2.backward()); "
     "c1, c2 = losses.CrossEntropyLoss(), losses.CrossEntropyLoss(); i = np.array([0, 2, 1, 2]); "
     "assert c1(np.asfortranarray(p), romap(i)) == c2(p, i) and same(c1.backward(), c2.backward())", OK, ""),
    ("bce-shape", "losses.BCEWithLogitsLoss()(np.zeros((2, 3)), np.zeros((3, 2)))", V, r"target shape \(3, 2\)"),
    ("bce-pos-weight-2d", "losses.BCEWithLogitsLoss(pos_weight=np.ones((2, 2)))", V, r"pos_weight must be a scalar or \(C,\)"),
    ("bce-pos-weight-nan", "losses.BCEWithLogitsLoss(pos_weight=[1.0, np.nan])", V, r"pos_weight must be finite, got \[1\.0, nan\]"),
    ("bce-pos-weight-inf", "losses.BCEWithLogitsLoss(pos_weight=np.inf)", V, r"pos_weight must be finite, got inf"),
    ("loss-get-unknown", "losses.get('hinge')", T, r"loss must be a pyrnn.losses.Loss"),
    # ---- optimizers, clip_grad_norm --------------------------------------------------------------
    ("adam-lr-negative", "optim.Adam(pyrnn.Dense(3, 2).parameters(), lr=-1)", V, r"lr must be in \[0.0, inf\), got -1"),
    ("adam-lr-nan", "optim.Adam(pyrnn.Dense(3, 2).parameters(), lr=float('nan'))", V, r"got nan"),
    ("adam-lr-str", "optim.Adam(pyrnn.Dense(3, 2).parameters(), lr='0.1')", T, r"lr must be a number, got str"),
    ("adam-betas-triple", "optim.Adam(pyrnn.Dense(3, 2).parameters(), betas=(0.9, 0.9, 0.9))", T, r"betas must be a pair"),
    ("adam-beta1-one", "optim.Adam(pyrnn.Dense(3, 2).parameters(), betas=(1.0, 0.9))", V, r"beta1 must be in \[0.0, 1.0\)"),
    ("adam-empty", "optim.Adam([])", V, r"empty parameter list"),
    ("adam-ndarray", "optim.Adam([np.zeros(3)])", T, r"params\[0\] is a ndarray, expected pyrnn.Parameter"),
    ("adam-single-parameter", "optim.Adam(next(pyrnn.Dense(3, 2).parameters()))", T, r"got a single Parameter"),
    ("adam-duplicate", "d = pyrnn.Dense(3, 2); optim.Adam(list(d.parameters()) * 2)", V, r"appears twice"),
    ("sgd-nesterov", "optim.SGD(pyrnn.Dense(3, 2).parameters(), nesterov=True)", V, r"nesterov momentum requires momentum > 0"),
    ("sgd-readonly-param", "optim.SGD([Parameter('w', ro(np.zeros(3, np.float32)), np.zeros(3, np.float32))])", V,
     r"data must be a writable C-contiguous array"),
    ("sgd-noncontiguous-param", "optim.SGD([Parameter('w', strided(np.zeros(3, np.float32)), np.zeros(3, np.float32))])", V,
     r"'w': data must be a writable C-contiguous"),
    ("sgd-float16-param", "optim.SGD([Parameter('w', np.zeros(3, np.float16), np.zeros(3, np.float16))])", T,
     r"dtype must be float32 or float64, got float16"),
    ("parameter-mismatch", "Parameter('w', np.zeros(3), np.zeros(4))", V, r"data \(3,\) float64 and grad \(4,\) float64 differ"),
    ("adam-load-state-mismatch", "o = optim.Adam(pyrnn.Dense(3, 2).parameters()); o.load_state_dict(optim.Adam(pyrnn.Dense(3, 2, bias=False).parameters()).state_dict())",
     V, r"holds 1 parameter states, this optimizer has 2"),
    ("optim-get-unknown", "optim.get('adagrad', pyrnn.Dense(3, 2).parameters())", T, r"optimizer must be"),
    ("clip-negative", "optim.clip_grad_norm(pyrnn.Dense(3, 2).parameters(), -1)", V, r"max_norm must be in \[0.0, inf\)"),
    ("clip-norm-type-0", "optim.clip_grad_norm(pyrnn.Dense(3, 2).parameters(), 1, norm_type=0)", V, r"norm_type must be > 0"),
    ("clip-not-parameter", "optim.clip_grad_norm([np.zeros(3)], 1)", T, r"parameters\[0\] is a ndarray"),
    ("clip-transposed-grad", "g = np.ones((2, 3), np.float32).T; optim.clip_grad_norm([Parameter('w', np.zeros((3, 2), np.float32), g)], 1e-3)",
     V, r"'w': grad must be a writable C-contiguous array"),
    ("clip-readonly-grad", "optim.clip_grad_norm([Parameter('w', np.zeros(3, np.float32), ro(np.ones(3, np.float32)))], 1e-3)",
     V, r"grad must be a writable"),
    ("clip-float16-grad", "optim.clip_grad_norm([Parameter('w', np.zeros(3, np.float16), np.ones(3, np.float16))], 1.0)",
     T, r"grad dtype must be float32 or float64, got float16"),
    # ---- init ------------------------------------------------------------------------------------
    ("init-int-array", "init.xavier_uniform_(np.zeros((3, 3), int))", T, r"floating-point array, got dtype int64"),
    ("init-readonly", "init.xavier_uniform_(ro(np.zeros((3, 3))))", V, r"writable array"),
    ("init-1d-fans", "init.xavier_uniform_(np.zeros(3))", V, r"at least 2 dimensions, got shape \(3,\)"),
    ("init-list", "init.xavier_uniform_([[0.0]])", T, r"in place on an ndarray or Parameter, got list"),
    ("init-rng-and-seed", "init.normal_(np.zeros(3), rng=np.random.default_rng(), seed=1)", T, r"pass rng= or seed=, not both"),
    ("init-rng-type", "init.normal_(np.zeros(3), rng=1)", T, r"rng must be a numpy.random.Generator"),
    ("init-kaiming-mode", "init.kaiming_uniform_(np.zeros((3, 3)), mode='fan')", V, r"mode must be 'fan_in' or 'fan_out'"),
    ("init-gain-nan", "init.xavier_uniform_(np.zeros((3, 3)), gain=float('nan'))", V, r"gain must be a finite number, got nan"),
    ("init-std-negative", "init.normal_(np.zeros(3), std=-1)", V, r"std must be >= 0, got -1"),
    ("init-uniform-bounds", "init.uniform_(np.zeros(3), 1, 0)", V, r"a <= b, got a=1.0, b=0.0"),
    ("init-orthogonal-1d", "init.orthogonal_(np.zeros(3))", V, r"at least 2 dimensions"),
    # (it wrote Inf with only NumPy's warning; the other initialisers refused)
    ("init-orthogonal-gain-past-float32", "a = np.zeros((3, 3), np.float32); "
     "init.orthogonal_(a, gain=1e39)", V, r"initial values has values beyond the float32 range"),
    ("init-nonlinearity", "init.kaiming_normal_(np.zeros((3, 3)), nonlinearity='gelu')", V, r"unsupported nonlinearity 'gelu'"),
    ("init-zero-size-noop", "a = np.zeros((3, 0)); init.kaiming_uniform_(a); init.kaiming_normal_(a); init.xavier_uniform_(a); "
     "init.xavier_normal_(a); init.orthogonal_(a)", OK, ""),
    ("init-writes-through-view", "base = np.zeros((4, 6)); v = base[:, ::2]; init.xavier_uniform_(v, seed=0); "
     "assert (base[:, ::2] != 0).all() and (base[:, 1::2] == 0).all()", OK, ""),
    # ---- Sequential: construction, fit, evaluate, predict ----------------------------------------
    ("seq-single-layer", "pyrnn.Sequential(pyrnn.Dense(3, 2))", T, r"takes a list of layers"),
    ("seq-not-a-layer", "pyrnn.Sequential([pyrnn.Dense(3, 2), 'relu'])", T, r"layer 1 \(str\) is not a pyrnn layer"),
    ("seq-time-major-rnn", "pyrnn.Sequential([pyrnn.LSTM(3, 2)])", V, r"must be built with batch_first=True"),
    ("fit-x-nan", "x = X.copy(); x[3, 2, 1] = np.nan; fit(x=x)", V, r"x contains NaN or Inf \(first at index \(3, 2, 1\)\)"),
    ("fit-y-inf", "y = Y.copy(); y[5, 0] = np.inf; fit(y=y)", V, r"y contains NaN or Inf \(first at index \(5, 0\)\)"),
    ("fit-x-overflows-float32", "fit(x=X.astype(np.float64) * 1e300)", V, r"x has values beyond the float32 range"),
    ("fit-xy-length-mismatch", "fit(y=Y[:5])", V, r"y has 5 samples but x has 8"),
    ("fit-empty", "fit(x=X[:0], y=Y[:0])", V, r"x must have at least one sample, got shape \(0, 5, 2\)"),
    ("fit-x-str", "fit(x='abc')", T, r"x must be an array, got str"),
    ("fit-x-object", "fit(x=np.array([None] * 8))", T, r"x must be a real numeric array, got dtype object"),
    ("fit-x-device", "fit(x=FakeCAI((8, 5, 2)))", T, r"x is a CUDA device array"),
    ("fit-x-features", "fit(x=X[:, :, :1])", V, r"x \(8, 5, 1\), y \(8, 1\), checked on its first sample: .*\(N, T, 2\) with batch_first.*got \(1, 5, 1\)"),
    ("fit-y-shape", "fit(y=np.zeros((8, 3)))", V, r"x \(8, 5, 2\), y \(8, 3\), checked on its first sample: .*target shape \(1, 3\) does not match the prediction shape \(1, 1\)"),
    ("fit-epochs-negative", "fit(epochs=-1)", V, r"epochs must be >= 0, got -1"),
    ("fit-epochs-float", "fit(epochs=2.5)", T, r"epochs must be an int, got float"),
    ("fit-epochs-str", "fit(epochs='2')", T, r"epochs must be an int, got str"),
    ("fit-batch-size-0", "fit(batch_size=0)", V, r"batch_size must be >= 1, got 0"),
    ("fit-clip-nan", "fit(clip_norm=float('nan'))", V, r"clip_norm must be a positive number or None, got nan"),
    ("fit-clip-inf", "fit(clip_norm=float('inf'))", V, r"clip_norm must be a positive number or None, got inf"),
    ("fit-validation-not-tuple", "fit(validation_data=X)", T, r"validation_data must be \(x_val, y_val\)"),
    ("fit-validation-nan", "fit(validation_data=(X, Y * np.nan))", V, r"validation y contains NaN or Inf"),
    ("fit-validation-mismatch", "fit(validation_data=(X, Y[:3]))", V, r"validation y has 3 samples but x has 8"),
    ("fit-validation-lengths-count", "fit(validation_data=(X, Y, [5] * 7))", V, r"^validation lengths must have shape \(8,\)"),
    ("fit-validation-lengths-range", "fit(validation_data=(X, Y, [0] * 8))", V, r"^validation lengths\[0\] = 0 is outside \[1, 5\]"),
    ("fit-lengths-range", "fit(lengths=[6] * 8)", V, r"lengths\[0\] = 6 is outside \[1, 5\]"),
    ("fit-lengths-count", "fit(lengths=[5] * 7)", V, r"lengths must have shape \(8,\)"),
    ("fit-lengths-scalar", "fit(lengths=5)", V, r"lengths must have shape \(8,\).*got a single number"),
    ("fit-lengths-flat-x", "fit(model=pyrnn.Sequential([pyrnn.LastStep(), pyrnn.Dense(2, 1)]), x=np.zeros((8, 2))[:, 0], y=np.zeros(8), lengths=[1] * 8)",
     V, r"lengths need sequence data"),
    ("fit-lengths-dense-only", "fit(model=pyrnn.Sequential([pyrnn.Dense(2, 1)]), x=np.zeros((8, 2))[:, 0], y=np.zeros(8), lengths=[1] * 8)",
     V, r"lengths= needs a recurrent layer or LastStep"),
    ("fit-callbacks", "fit(callbacks=[print])", T, r"callbacks must be pyrnn.callbacks.Callback instances"),
    ("fit-loss", "fit(loss='hinge')", T, r"loss must be a pyrnn.losses.Loss"),
    ("fit-optimizer", "fit(optimizer='adagrad')", T, r"optimizer must be a pyrnn.optim.Optimizer"),
    ("fit-no-parameters", "pyrnn.Sequential([pyrnn.Dropout(0.1)]).fit(X, X, loss='mse', optimizer='sgd')", V,
     r"the model has no parameters to train"),
    ("fit-noncontiguous-readonly-data", "a = fit(model=small_model(), x=romap(X), y=ro(Y), shuffle=False); "
     "b = fit(model=small_model(), x=strided(X), y=Y, shuffle=False); assert a == b", OK, ""),
    ("evaluate-no-loss", "small_model().evaluate(X, Y)", T, r"evaluate\(\) needs a loss"),
    ("evaluate-mismatch", "small_model().evaluate(X, Y[:3], loss='mse')", V, r"y has 3 samples but x has 8"),
    ("evaluate-nan", "small_model().evaluate(X * np.nan, Y, loss='mse')", V, r"x contains NaN or Inf"),
    ("predict-empty", "small_model().predict(X[:0])", V, r"at least one sample"),
    ("predict-batch-size", "small_model().predict(X, batch_size=0)", V, r"batch_size must be >= 1, got 0"),
    ("predict-inf", "small_model().predict(X + np.inf)", V, r"x contains NaN or Inf"),
    # ---- save / load -----------------------------------------------------------------------------
    ("save-path-none", "pyrnn.Dense(2, 2).save(None)", T,
     r"path must be a str, bytes, os.PathLike or a binary file object, got NoneType"),
    ("save-missing-folder", "pyrnn.Dense(2, 2).save(os.path.join(TMP, 'no', 'such', 'dir', 'm.pyrnn'))", FileNotFoundError, r""),
    ("save-foreign-object", "pyrnn.save(object(), os.path.join(TMP, 'x'))", T, r"cannot save a object"),
    ("save-into-directory", "pyrnn.Dense(2, 2).save(TMP)", IsADirectoryError, r""),
    ("load-path-none", "pyrnn.load(None)", T, r"expected str, bytes or os.PathLike"),
    ("load-missing", "pyrnn.load(os.path.join(TMP, 'missing.pyrnn'))", FileNotFoundError, r""),
    ("load-directory", "pyrnn.load(TMP)", IsADirectoryError, r""),
    ("load-empty-file", "p = os.path.join(TMP, 'empty'); open(p, 'wb').close(); pyrnn.load(p)", V, r"truncated pyrnn file \(0 bytes\)"),
    ("load-garbage", "p = os.path.join(TMP, 'junk'); open(p, 'wb').write(os.urandom(1000)); pyrnn.load(p)", V, r"not a pyrnn model file"),
    ("load-truncated", "p = saved_file(); d = open(p, 'rb').read(); open(p, 'wb').write(d[:len(d) // 2]); pyrnn.load(p)", V,
     r"truncated pyrnn file"),
    ("load-flipped-byte", "p = saved_file(); d = bytearray(open(p, 'rb').read()); d[-3] ^= 1; open(p, 'wb').write(d); pyrnn.load(p)",
     V, r"weights checksum mismatch"),
    ("load-wrong-version", "h, pl = header_of(saved_file()); pyrnn.load(write_raw(h, pl, version=9))", V,
     r"unsupported pyrnn file format version 9"),
    ("load-huge-declared-shape", "h, pl = header_of(saved_file()); t = h['tensors'][0]; t['shape'] = [2**40, 2**30]; "
     "t['nbytes'] = 2**70 * 4; pyrnn.load(write_raw(h, pl))", V, r"truncated or corrupted: tensor"),
    ("load-huge-declared-layer", "h, pl = header_of(saved_file()); h['model']['config']['layers'][0]['config']['hidden_size'] = 2**30; "
     "pyrnn.load(write_raw(h, pl))", V, r"but the model's parameter is"),
    ("load-huge-layer-count", "h, pl = header_of(saved_file()); h['model']['config']['layers'][0]['config']['num_layers'] = 10**15; "
     "pyrnn.load(write_raw(h, pl))", V, r"num_layers"),
    ("load-huge-header-length", "p = os.path.join(TMP, 'hh'); open(p, 'wb').write(struct.pack('<8sIIQQII', b'\\x89PYRNN\\r\\n', 1, 0, 2**62, 0, 0, 0)); pyrnn.load(p)",
     V, r"truncated pyrnn file: header \(4611686018427387904 bytes\)"),
    ("load-config-device-cuda", "h, pl = header_of(saved_file()); h['model']['config']['layers'][0]['config']['device'] = 'cuda'; "
     "pyrnn.load(write_raw(h, pl))", V, r"invalid GRU config: unexpected keys \['device'\]"),
    ("load-config-private-key", "h, pl = header_of(saved_file()); h['model']['config']['layers'][0]['config']['_reset_after'] = True; "
     "pyrnn.load(write_raw(h, pl))", V, r"unexpected keys \['_reset_after'\]"),
    ("load-config-unknown-key", "h, pl = header_of(saved_file()); h['model']['config']['layers'][2]['config']['units'] = 3; "
     "pyrnn.load(write_raw(h, pl))", V, r"invalid Dense config: unexpected keys \['units'\]"),
    ("load-dtype-not-a-string", "h, pl = header_of(saved_file()); h['tensors'][0]['dtype'] = ['<f4']; pyrnn.load(write_raw(h, pl))",
     V, r"unsupported dtype \['<f4'\]"),
    ("load-class-not-a-string", "h, pl = header_of(saved_file()); h['model']['config']['layers'][1]['class'] = {'a': 1}; "
     "pyrnn.load(write_raw(h, pl))", V, r"unknown layer class \{'a': 1\}"),
    ("load-config-null-size", "h, pl = header_of(saved_file()); h['model']['config']['layers'][2]['config']['in_features'] = None; "
     "pyrnn.load(write_raw(h, pl))", V, r"invalid Dense config"),
    ("load-config-overflowing-float", "p = os.path.join(TMP, 'ln.pyrnn'); pyrnn.LayerNorm(3).save(p); h, pl = header_of(p); "
     "raw = json.dumps(h).replace('1e-05', '1e999'); path = write_raw(h, pl); d = open(path, 'rb').read(); "
     "hb = raw.encode(); d = struct.pack('<8sIIQQII', b'\\x89PYRNN\\r\\n', 1, 0, len(hb), len(pl), zlib.crc32(hb), zlib.crc32(pl)) + hb + pl; "
     "open(path, 'wb').write(d); pyrnn.load(path)", V, r"non-finite number 1e999"),
    ("load-config-nan-constant", "h, pl = header_of(saved_file()); h['model']['config']['layers'][0]['config']['dropout'] = float('nan'); "
     "pyrnn.load(write_raw(h, pl))", V, r"non-finite number NaN"),
    ("load-unknown-class", "h, pl = header_of(saved_file()); h['model']['config']['layers'][0]['class'] = 'os.system'; pyrnn.load(write_raw(h, pl))",
     V, r"unknown layer class 'os.system'"),
    ("load-json-bomb", "deep = b'[' * 200000 + b']' * 200000; p = os.path.join(TMP, 'deep'); "
     "open(p, 'wb').write(struct.pack('<8sIIQQII', b'\\x89PYRNN\\r\\n', 1, 0, len(deep), 0, zlib.crc32(deep), 0) + deep); pyrnn.load(p)",
     V, r""),
    # ---- runtime settings --------------------------------------------------------------------------
    ("threads-0", "pyrnn.set_num_threads(0)", V, r"num_threads must be in \[1, 4096\], got 0"),
    ("threads-huge", "pyrnn.set_num_threads(2**40)", V, r"got 1099511627776"),
    ("threads-str", "pyrnn.set_num_threads('2')", T, r"num_threads must be an int, got str"),
    ("threads-float", "pyrnn.set_num_threads(2.0)", T, r"got float"),
    ("threads-bool", "pyrnn.set_num_threads(True)", T, r"got bool"),
    ("isa-unknown", "pyrnn.set_cpu_isa('avx1024')", V, r"unknown CPU ISA 'avx1024'"),
    ("isa-none", "pyrnn.set_cpu_isa(None)", T, r"ISA name must be a str"),
    ("isa-unsupported-or-ok", "bad = [i for i in ('avx2', 'avx512') if i not in pyrnn.info()['available_isas']]\n"
     "for i in bad:\n    try:\n        pyrnn.set_cpu_isa(i)\n    except ValueError as e:\n        assert 'not supported by this CPU' in str(e)\n"
     "    else:\n        raise AssertionError(i)", OK, ""),
    # ---- Matrix ----------------------------------------------------------------------------------
    ("matrix-float-size", "pyrnn.Matrix(2.5, 3)", T, r"Matrix rows must be an int, got float"),
    ("matrix-negative", "pyrnn.Matrix(-1, 2)", V, r"must be non-negative, got \(-1, 2\)"),
    ("matrix-overflow", "pyrnn.Matrix(2**40, 2**40)", M, r"Matrix\(1099511627776, 1099511627776, float32\) needs"),
    ("matrix-beyond-memory", "pyrnn.Matrix(10**6, 10**6)", M, r"needs [\d.]+ GiB"),
    ("matrix-dtype", "pyrnn.Matrix(2, 2, 'int32')", T, r"float32 or float64, got int32"),
    ("matrix-get-range", "pyrnn.Matrix(2, 2).get(5, 0)", I, r"Matrix index \(5, 0\) out of range for shape \(2, 2\)"),
    ("matrix-get-negative", "pyrnn.Matrix(2, 2).get(-1, 0)", I, r"\(-1, 0\) out of range"),
    ("matrix-set-range", "pyrnn.Matrix(2, 2).set(0, 2, 1.0)", I, r"\(0, 2\) out of range"),
    ("matrix-from-complex", "pyrnn.Matrix.from_numpy(np.zeros((2, 2), complex))", T, r"real numeric array, got dtype complex128"),
    ("matrix-from-1d", "pyrnn.Matrix.from_numpy(np.zeros(3))", V, r"2-D array"),
    # ---- CUDA without a GPU (rows skip themselves where a GPU is usable) -------------------------
    ("cuda-layer", "if not pyrnn.cuda.is_available(): pyrnn.LSTM(2, 3, device='cuda')\nelse: raise RuntimeError('device=cuda is not available (skip)')",
     R, r"device='cuda' is not available|skip"),
    ("cuda-layer-to", "if not pyrnn.cuda.is_available(): pyrnn.GRU(2, 3).to('cuda')\nelse: raise RuntimeError('is not available (skip)')",
     R, r"is not available"),
    ("cuda-to-device", "if not pyrnn.cuda.is_available(): pyrnn.cuda.to_device(np.zeros(3))\nelse: raise RuntimeError('no usable (skip)')",
     R, r"no usable CUDA device|CUDA backend is unavailable|skip"),
    ("cuda-as-device-array-host", "pyrnn.cuda.as_device_array(np.zeros(3))", (T, R), r"not a CUDA device array|unavailable"),
    ("cuda-cai-strided", "from pyrnn._device import parse_cuda_array_interface as p; "
     "p({'shape': (2, 3), 'typestr': '<f4', 'data': (64, False), 'version': 3, 'strides': (4, 8)})", V, r"C-contiguous"),
    ("cuda-cai-dtype", "from pyrnn._device import parse_cuda_array_interface as p; "
     "p({'shape': (2,), 'typestr': '<f2', 'data': (64, False), 'version': 3})", T, r"float32, float64 or int64, got float16"),
    ("cuda-cai-null", "from pyrnn._device import parse_cuda_array_interface as p; "
     "p({'shape': (2,), 'typestr': '<f4', 'data': (0, False), 'version': 3})", V, r"NULL"),
    # ---- interop ----------------------------------------------------------------------------------
    ("from-torch-none", "pyrnn.from_torch(None)", T, r"from_torch expects a torch.nn.Module, got NoneType"),
    ("from-torch-conv", "import torch; pyrnn.from_torch(torch.nn.Conv1d(2, 2, 3))", T, r"does not support torch module Conv1d"),
    ("from-torch-proj", "import torch; pyrnn.from_torch(torch.nn.LSTM(2, 4, proj_size=2))", V, r"proj_size=2"),
    ("from-torch-half", "import torch; pyrnn.from_torch(torch.nn.GRU(2, 3).half())", V, r"float32 and float64.*float16"),
    ("to-torch-gru-reset-before", "pyrnn.GRU(2, 3).to_torch()", V, r"reset_after=False\) has no PyTorch equivalent"),
    ("export-onnx-object", "pyrnn.export_onnx(object())", T, r"export_onnx takes a pyrnn RNN/LSTM/GRU layer or a pyrnn.Sequential"),
    ("export-onnx-opset", "pyrnn.export_onnx(pyrnn.LSTM(2, 3), opset=5)", V, r"opset must be an int >= 13, got 5"),
    ("export-onnx-seq-len", "pyrnn.export_onnx(pyrnn.LSTM(2, 3), seq_len=-1)", V, r"seq_len must be an int >= 1, got -1"),
    ("export-onnx-missing-folder", "pyrnn.export_onnx(pyrnn.LSTM(2, 3), os.path.join(TMP, 'no', 'x.onnx'))", FileNotFoundError, r""),
    # ---- argument types and values found by a hunt: each was coerced, ignored or failed in
    # Python's / NumPy's own words naming no argument -------------------------------------------
    ("dtype-none-is-float32", "assert pyrnn.LSTM(2, 3, dtype=None).dtype == np.float32 and pyrnn.Dense(2, 3, dtype=None).dtype "
     "== np.float32 and pyrnn.Matrix(2, 2, None).dtype == np.float32 and pyrnn.GRU(2, 3, dtype=None)(rand(4, 1, 2))[0].dtype == np.float32",
     OK, ""),
    ("dropout-p-set-negative", "d = pyrnn.Dropout(0.5); d.p = -0.5", V, r"p must be in \[0, 1\], got -0.5"),
    ("dropout-p-set-nan", "d = pyrnn.Dropout(0.5); d.p = float('nan')", V, r"p must be in \[0, 1\], got nan"),
    ("dropout-p-set-str", "d = pyrnn.Dropout(0.5); d.p = '0.1'", T, r"p must be a float, got str"),
    ("dropout-p-set-ok", "d = pyrnn.Dropout(0.5, seed=0); d.p = 1; assert d.p == 1.0 and (d(np.ones(8)) == 0).all()", OK, ""),
    ("train-mode-str", "pyrnn.LSTM(2, 3).train('False')", T, r"mode must be a bool, got str"),
    ("train-mode-none", "pyrnn.Dense(2, 3).train(None)", T, r"mode must be a bool, got NoneType"),
    ("train-mode-sequential", "pyrnn.Sequential([pyrnn.Dense(2, 3)]).train('eval')", T, r"mode must be a bool"),
    ("train-mode-numpy-bool", "m = pyrnn.Sequential([pyrnn.Dense(2, 3)]).train(np.bool_(False)); assert not m.layers[0].training", OK, ""),
    ("layernorm-eps-str", "pyrnn.LayerNorm(3, eps='1e-5')", T, r"eps must be a finite number >= 0, got str"),
    ("dense-activation-list", "pyrnn.Dense(3, 2, activation=['relu'])", V, r"activation must be None.*got \['relu'\]"),
    ("clip-norm-type-none", "optim.clip_grad_norm(pyrnn.Dense(3, 2).parameters(), 1, norm_type=None)", T, r"norm_type must be a number"),
    ("clip-norm-type-str", "optim.clip_grad_norm(pyrnn.Dense(3, 2).parameters(), 1, norm_type='two')", V, r"norm_type must be a number > 0 or 'inf', got 'two'"),
    ("clip-norm-type-inf-str", "d = pyrnn.Dense(3, 2); d.grads['weight'][0, 0] = -5; "
     "assert optim.clip_grad_norm(d.parameters(), 1, norm_type='inf') == 5.0", OK, ""),
    ("earlystop-patience-float", "callbacks.EarlyStopping(patience=2.5)", T, r"patience must be an int >= 0, got float"),
    ("earlystop-min-delta-str", "callbacks.EarlyStopping(min_delta='x')", T, r"min_delta must be a number, got str"),
    ("earlystop-min-delta-nan", "callbacks.EarlyStopping(min_delta=float('nan'))", V, r"min_delta must be in"),
    ("bce-pos-weight-str", "losses.BCEWithLogitsLoss(pos_weight='3')", T, r"pos_weight must be a number or numbers, got str"),
    ("fit-callbacks-not-list", "m = pyrnn.Sequential([pyrnn.Dense(2, 1)]); m.fit(rand(4, 3, 2), rand(4, 3, 1), loss='mse', "
     "optimizer='sgd', verbose=0, callbacks=callbacks.EarlyStopping('loss'))", T, r"callbacks must be a list.*got EarlyStopping"),
    ("checkpoint-path-none", "callbacks.ModelCheckpoint(None)", T, r"path must be a str or os.PathLike, got NoneType"),
    ("init-uniform-overflow", "init.uniform_(np.zeros(3), -1e308, 1e308)", V, r"finite b - a"),
    ("init-kaiming-slope-nan", "init.kaiming_normal_(np.zeros((3, 3)), float('nan'))", V, r"a \(the leaky_relu negative slope\) must be a finite number, got nan"),
    ("init-kaiming-slope-str", "init.kaiming_uniform_(np.zeros((3, 3)), 'a')", T, r"a \(the leaky_relu negative slope\) must be a finite number, got str"),
    ("init-gain-str", "init.xavier_uniform_(np.zeros((3, 3)), gain='1')", T, r"gain must be a finite number, got str"),
    # Finite float64 that float32 cannot hold would be Inf, then NaN, in every result: as fit.
    ("lstm-x-overflows-float32", "pyrnn.LSTM(2, 3)(np.full((4, 1, 2), 1e300))", V,
     r"^x has values beyond the float32 range \(the largest is 1e\+300\)"),
    ("dense-x-overflows-float32", "x = np.zeros((4, 2)); x[1, 1] = -1e39; pyrnn.Dense(2, 3)(x)", V,
     r"^x has values beyond the float32 range \(the largest is 1e\+39\)"),
    ("model-call-x-overflows-float32", "pyrnn.Sequential([pyrnn.Dense(2, 1)])(np.full((4, 2), 1e300))", V,
     r"x has values beyond the float32 range"),
    ("gru-hx-overflows-float32", "pyrnn.GRU(2, 3)(np.zeros((4, 1, 2)), np.full((1, 1, 3), 1e300))", V,
     r"^hx has values beyond the float32 range"),
    ("lstm-dout-overflows-float32", "l = pyrnn.LSTM(2, 3); l(np.zeros((4, 1, 2))); l.backward(np.full((4, 1, 3), 1e300))", V,
     r"^d_out has values beyond the float32 range"),
    ("params-overflow-float32", "d = pyrnn.Dense(2, 3); d.params['bias'] = np.full(3, 1e300)", V,
     r"^parameter 'bias' has values beyond the float32 range"),
    ("params-overflow-leaves-value", "d = pyrnn.Dense(2, 3); b = d.params['bias'].copy()\n"
     "try:\n    d.params.update(weight=np.zeros((3, 2)), bias=np.full(3, 1e300))\nexcept ValueError:\n    pass\n"
     "assert (d.params['bias'] == b).all() and (d.params['weight'] != 0).any()", OK, ""),
    # Inf and NaN are values, not out of range: taken (a NaN in every row reaches every output).
    ("lstm-x-inf-nan-float64-accepted", "y, _ = pyrnn.LSTM(2, 3, seed=0)(np.array([[[np.inf, np.nan]]] * 4)); "
     "assert np.isnan(y).all()", OK, ""),
    ("mse-target-overflows-float32", "losses.MSELoss()(np.zeros((4, 1), np.float32), np.full((4, 1), 1e39))", V,
     r"^MSELoss: target has values beyond the float32 range of the prediction \(the largest is 1e\+39\)"),
    ("bce-target-overflows-float32", "losses.BCEWithLogitsLoss()(np.zeros(3, np.float32), np.array([0, 1, -1e39]))", V,
     r"^BCEWithLogitsLoss: target has values beyond the float32 range"),
    ("ce-soft-target-overflows-float32", "losses.CrossEntropyLoss()(np.zeros((2, 3), np.float32), np.full((2, 3), 1e39))", V,
     r"^CrossEntropyLoss: target has values beyond the float32 range"),
    ("mse-target-float64-in-range", "l = losses.MSELoss(); l(np.zeros((4, 1), np.float32), np.full((4, 1), 1e38)); "
     "assert np.isfinite(l.backward()).all()", OK, ""),
    ("fit-y-overflows-float32", "fit(y=Y.astype(np.float64) * 1e300)", V, r"^y has values beyond the float32 range of the model"),
    # Rounds to float32's largest value, not Inf: a layer call takes it, so fit does too.
    ("fit-x-rounds-to-float32-max", "fit(x=np.full(X.shape, 3.4028235e38 * (1 + 2.0 ** -26)))", OK, ""),
    # An underflow the caller's errstate asks about is that, not "beyond the range".
    ("errstate-underflow-stays-underflow", "with np.errstate(all='raise'):\n    pyrnn.Dense(3, 1)(np.array([[1.0, 1e-50, -1.0]]))",
     FloatingPointError, r"underflow"),
    ("embedding-padding-idx-positional", "assert pyrnn.Embedding(5, 3, 1).padding_idx == 1  # as torch.nn.Embedding", OK, ""),
    ("float64-layer-takes-1e300", "y, _ = pyrnn.LSTM(2, 3, dtype='float64')(np.full((4, 1, 2), 1e300)); assert np.isfinite(y).all()", OK, ""),
]

ABSURD_WITHOUT_ENV = [
    # The guard must also hold with the machine's own limit (no PYRNN_MEMORY_LIMIT).
    ("machine-lstm-100000-layers", "pyrnn.LSTM(512, 8192, num_layers=10**5)", M,
     r"needs [\d.]+ GiB, more than this machine's memory \([\d.]+ GiB\)"),
    ("machine-matrix-huge", "pyrnn.Matrix(10**9, 10**9)", M, r"more than this machine's memory"),
    ("machine-dense-huge", "pyrnn.Dense(10**7, 10**7)", M, r"more than this machine's memory"),
]

ALL = CASES + ABSURD_WITHOUT_ENV
assert len({c[0] for c in ALL}) == len(ALL), "duplicate case ids"

_results = {}


def _run_all():
    if not _results:
        env = dict(os.environ, PYRNN_MEMORY_LIMIT="2G", OMP_NUM_THREADS="2")
        cases = [(c[0], c[1]) for c in CASES]
        # Two batches so the children share the work of imports (torch for the interop rows).
        half = len(cases) // 2
        for batch in (cases[:half], cases[half:]):
            _results.update(run_cases(batch, PRELUDE, env=env, address_space=8 << 30, timeout=300))
        env.pop("PYRNN_MEMORY_LIMIT")
        _results.update(run_cases([(c[0], c[1]) for c in ABSURD_WITHOUT_ENV], PRELUDE, env=env,
                                  address_space=8 << 30, timeout=120))
    return _results


# Rows that reach an optional package: they skip where it is not installed (the test extras
# have both; a numpy-only install runs the rest). The ONNX row fails only when writing, after
# the graph is built; from_torch needs torch to tell a Module.
NEEDS = {"export-onnx-missing-folder": "onnx", "from-torch-none": "torch"}


def _needed_module(case_id, src):
    return NEEDS.get(case_id, "torch" if "import torch" in src else None)


@pytest.mark.parametrize("case_id,src,exc,pattern", ALL, ids=[c[0] for c in ALL])
def test_input_case(case_id, src, exc, pattern):
    import importlib.util
    import re
    module = _needed_module(case_id, src)
    if module is not None and importlib.util.find_spec(module) is None:
        pytest.skip(f"needs {module}")
    res = _run_all()[case_id]
    if "crash" in res:
        pytest.fail(f"{case_id}: {res['crash']}")
    got, msg = res["exc"], res["msg"]
    if exc is None:
        assert got is None, f"{case_id}: expected success, got {got}: {msg}"
        return
    names = {e.__name__ for e in (exc if isinstance(exc, tuple) else (exc,))}
    # Subclasses count (FileNotFoundError is an OSError...), by name through the MRO.
    expected_mro_ok = got in names or any(
        got == sub.__name__ for e in (exc if isinstance(exc, tuple) else (exc,))
        for sub in _subclasses(e))
    assert expected_mro_ok, f"{case_id}: expected {sorted(names)}, got {got}: {msg}"
    assert re.search(pattern, msg, re.S), f"{case_id}: message {msg!r} does not match {pattern!r}"


def _subclasses(cls):
    out = [cls]
    for sub in cls.__subclasses__():
        out += _subclasses(sub)
    return out
