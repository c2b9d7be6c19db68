"""batch_first on the CPU: the core reads x and d_out and writes out and d x as (N, T, .) in
place, with no transposed copies. Everything must be bitwise what the same layer gives in the
time-major layout on the same data with its first two axes swapped: outputs, final states,
d x, d h0 (d c0) and every parameter gradient, in training (dropout included) and eval, with
lengths and given initial states, batched and unbatched. (PyTorch parity of batch_first is in
test_torch_parity.py.)"""
import itertools

import numpy as np
import pytest

import pyrnn
from pyrnn import _core

CASES = list(itertools.product(
    [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}), ("GRU", {}),
     ("GRU", {"reset_after": True})],
    [(1, False, 0.0), (2, True, 0.0), (3, True, 0.4)],
    ["float32", "float64"]))


def _swap(a):
    return np.ascontiguousarray(np.swapaxes(a, 0, 1))


def _pair(cell, kw, layers, bidir, dropout, dtype):
    make = getattr(pyrnn, cell)
    args = dict(kw, num_layers=layers, bidirectional=bidir, dropout=dropout, dtype=dtype, seed=7)
    return make(4, 5, batch_first=True, **args), make(4, 5, batch_first=False, **args)


@pytest.mark.parametrize("cellkw,stack,dtype", CASES,
                         ids=[f"{c}{k.get('nonlinearity', '')}{'-ra' if k.get('reset_after') else ''}"
                              f"-L{s[0]}{'-bi' if s[1] else ''}{'-drop' if s[2] else ''}-{d}"
                              for (c, k), s, d in CASES])
def test_batch_first_is_the_time_major_layer_swapped(cellkw, stack, dtype):
    (cell, kw), (layers, bidir, dropout) = cellkw, stack
    bf, tm = _pair(cell, kw, layers, bidir, dropout, dtype)
    rng = np.random.default_rng(3)
    T, N, H, LD = 6, 5, 5, layers * (2 if bidir else 1)
    lstm = cell == "LSTM"
    x = rng.standard_normal((N, T, 4)).astype(dtype)
    lengths = np.array([6, 1, 4, 6, 3])
    h0 = rng.standard_normal((LD, N, H)).astype(dtype)
    hx = (h0, rng.standard_normal((LD, N, H)).astype(dtype)) if lstm else h0
    for training in (True, False):
        bf.train(training)
        tm.train(training)
        y_bf, s_bf = bf(x, hx, lengths=lengths)
        y_tm, s_tm = tm(_swap(x), hx, lengths=lengths)
        assert y_bf.shape == (N, T, H * (2 if bidir else 1))
        np.testing.assert_array_equal(y_bf, _swap(y_tm))
        np.testing.assert_array_equal(np.asarray(s_bf[0] if lstm else s_bf),
                                      np.asarray(s_tm[0] if lstm else s_tm))
        if lstm:
            np.testing.assert_array_equal(s_bf[1], s_tm[1])
        if not training:
            continue
        dy = rng.standard_normal(y_bf.shape).astype(dtype)
        dhn = rng.standard_normal((LD, N, H)).astype(dtype)
        states = (dhn, dhn[::-1].copy()) if lstm else (dhn,)
        dx_bf, ds_bf = bf.backward(dy, *states)
        dx_tm, ds_tm = tm.backward(_swap(dy), *states)
        np.testing.assert_array_equal(dx_bf, _swap(dx_tm))
        np.testing.assert_array_equal(np.asarray(ds_bf), np.asarray(ds_tm))
        for name, grad in bf.numpy_grads().items():
            np.testing.assert_array_equal(grad, tm.numpy_grads()[name], err_msg=name)


@pytest.mark.parametrize("cell", ["RNN", "LSTM", "GRU"])
def test_batch_first_unbatched_input(cell):
    bf, tm = _pair(cell, {}, 2, True, 0.0, "float64")
    x = np.random.default_rng(0).standard_normal((7, 4))
    y_bf, _ = bf(x)
    y_tm, _ = tm(x)
    assert y_bf.shape == (7, 10)
    np.testing.assert_array_equal(y_bf, y_tm)
    dy = np.ones_like(y_bf)
    np.testing.assert_array_equal(bf.backward(dy)[0], tm.backward(dy)[0])


def test_batch_first_reads_the_callers_array_in_place(monkeypatch):
    # The transposed copies of x and d_out are gone: the native layer gets the caller's arrays
    # (when they already have the layer dtype and are C-contiguous) and returns (N, T, .).
    layer = pyrnn.LSTM(4, 5, batch_first=True, seed=0)
    seen = {}
    native = layer._native

    class Spy:
        def __getattr__(self, name):
            return getattr(native, name)

        def forward(self, x, *args):
            seen["x"] = x
            return native.forward(x, *args)

        def backward(self, dy, *args):
            seen["dy"] = dy
            return native.backward(dy, *args)

    monkeypatch.setattr(layer, "_native", Spy())
    x = np.random.default_rng(1).standard_normal((3, 8, 4)).astype(np.float32)
    y, _ = layer(x)
    assert seen["x"] is x
    dy = np.ones_like(y)
    dx, _ = layer.backward(dy)
    assert seen["dy"] is dy
    assert y.shape == (3, 8, 5) and dx.shape == x.shape
    assert y.flags.c_contiguous and dx.flags.c_contiguous


def test_native_batch_first_buffers_are_checked_in_its_layout():
    n = _core.NativeRecurrent("lstm", 3, 4, 1, True, False, False, 0.0, "float32",
                              batch_first=True)
    assert n.batch_first
    assert not _core.NativeRecurrent("lstm", 3, 4, 1, True, False, False, 0.0, "float32").batch_first
    x = np.zeros((2, 5, 3), np.float32)  # (N, T, C)
    y, hn, cn = n.forward(x, None, None, None, True, 0)
    assert y.shape == (2, 5, 4) and hn.shape == (1, 2, 4)
    with pytest.raises(ValueError, match=r"y must have shape \(N, T, D\*H\) \(batch_first\) = "
                                         r"\(2, 5, 4\)"):
        n.forward_into(np.zeros((5, 2, 4), np.float32), hn, cn, x, None, None, None, True, 0)
    with pytest.raises(ValueError, match=r"dy must have shape \(N, T, D\*H\) of the cached "
                                         r"forward \(batch_first\) = \(2, 5, 4\)"):
        n.backward(np.zeros((5, 2, 4), np.float32), None, None)
    dx, dh0, dc0 = n.backward(np.ones((2, 5, 4), np.float32), None, None)
    assert dx.shape == (2, 5, 3)
    with pytest.raises(ValueError, match=r"dx must have shape \(N, T, C\) of the cached forward "
                                         r"\(batch_first\) = \(2, 5, 3\)"):
        n.backward_into(np.zeros((5, 2, 3), np.float32), dh0, dc0, np.ones((2, 5, 4), np.float32),
                        None, None)


def test_native_batch_first_extent_errors_name_the_shape_in_its_order():
    n = _core.NativeRecurrent("gru", 3, 4, 1, True, False, False, 0.0, "float32",
                              batch_first=True)
    # (N, T, C) = (2, 0, 3): no step
    with pytest.raises(ValueError, match=r"got shape \(2, 0, 3\)"):
        n.forward(np.zeros((2, 0, 3), np.float32), None, None, None, False, 0)
    with pytest.raises(ValueError, match=r"x of shape \(2, 1073741824, 3\) has T \* N"):
        n.check_forward(2**30, 2, False)
