"""Every documented error path of the RNN / LSTM / GRU layers: exception type, and a message
that names the offending shape or value. Also the accepted-input side of the same checks
(integer arrays, lists, numpy dtypes) and that a layer still works after a refused call."""
import re

import numpy as np
import pytest

import pyrnn

C, H = 4, 3


def layers(**kw):
    return [pyrnn.RNN(C, H, **kw), pyrnn.RNN(C, H, nonlinearity="relu", **kw),
            pyrnn.LSTM(C, H, **kw), pyrnn.GRU(C, H, **kw), pyrnn.GRU(C, H, reset_after=True, **kw)]


LAYER_IDS = ["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_after"]


def shape_re(*dims):
    """Loose regex for a shape written as (a, b, c), [a, b, c] or (a,)."""
    return r"[\(\[]\s*" + r"\s*,\s*".join(str(d) for d in dims) + r"\s*,?\s*[\)\]]"


def is_lstm(layer):
    return isinstance(layer, pyrnn.LSTM)


def hx_for(layer, h0, c0=None):
    if is_lstm(layer):
        return (h0, np.zeros_like(h0) if c0 is None else c0)
    return h0


@pytest.fixture(params=range(5), ids=LAYER_IDS)
def layer(request):
    return layers(num_layers=2, bidirectional=True)[request.param]


# ---- input x ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5,), (1, 5, 2, C), (2, 2, 2, 2, C)])
def test_wrong_rank(layer, shape):
    with pytest.raises(ValueError, match=shape_re(*shape)) as e:
        layer(np.zeros(shape))
    assert re.search(r"\bT\b|\bN\b|" + str(C), str(e.value)), f"no expected shape in: {e.value}"


@pytest.mark.parametrize("shape", [(5, 2, C + 1), (5, 2, 1), (5, C - 1)])
def test_wrong_feature_size(layer, shape):
    with pytest.raises(ValueError, match=shape_re(*shape)) as e:
        layer(np.zeros(shape))
    assert re.search(rf"\b{C}\b", str(e.value).split("got")[0]), \
        f"expected feature size {C} not named before 'got': {e.value}"


def test_wrong_feature_size_batch_first():
    layer = pyrnn.GRU(C, H, batch_first=True)
    with pytest.raises(ValueError, match=shape_re(2, 5, C + 2)):
        layer(np.zeros((2, 5, C + 2)))


@pytest.mark.parametrize("x", [
    np.array([["a"] * C] * 5),
    np.full((5, 2, C), "x", dtype=object),
    np.zeros((5, 2, C), dtype=complex),
    "hello",
    [[None] * C] * 5,
], ids=["str-array", "object-array", "complex", "str", "none-list"])
def test_non_numeric_input(layer, x):
    with pytest.raises(TypeError, match=r"(?i)numeric|real|dtype|type"):
        layer(x)


@pytest.mark.parametrize("shape", [(0, 2, C), (5, 0, C), (0, C), (0, 0, C)])
def test_empty_input(layer, shape):
    with pytest.raises(ValueError, match=r"\b0\b"):
        layer(np.zeros(shape))


@pytest.mark.parametrize("shape", [(0, 5, C), (2, 0, C)])
def test_empty_input_batch_first(shape):
    layer = pyrnn.LSTM(C, H, batch_first=True)
    with pytest.raises(ValueError, match="0"):
        layer(np.zeros(shape))


# ---- initial states ------------------------------------------------------------------------
@pytest.mark.parametrize("hshape", [(4, 3, H), (2, 2, H), (4, 2, H + 1), (4, H), (2, 4, 2, H)])
def test_wrong_hx_shape(layer, hshape):
    x = np.zeros((5, 2, C))  # num_layers * D = 4, N = 2
    with pytest.raises(ValueError, match=shape_re(*hshape)) as e:
        layer(x, hx_for(layer, np.zeros(hshape), np.zeros(hshape)))
    assert re.search(shape_re(4, 2, H), str(e.value)), f"expected shape not named: {e.value}"


def test_wrong_c0_shape():
    layer = pyrnn.LSTM(C, H, 2, bidirectional=True)
    with pytest.raises(ValueError, match=shape_re(4, 3, H)) as e:
        layer(np.zeros((5, 2, C)), (np.zeros((4, 2, H)), np.zeros((4, 3, H))))
    assert re.search(shape_re(4, 2, H), str(e.value)), str(e.value)


def test_unbatched_hx_must_be_unbatched(layer):
    """Unbatched x (T, C) takes hx (L*D, H); a batched hx is refused."""
    x = np.zeros((5, C))
    with pytest.raises(ValueError, match=shape_re(4, 1, H)) as e:
        layer(x, hx_for(layer, np.zeros((4, 1, H)), np.zeros((4, 1, H))))
    assert re.search(shape_re(4, H), str(e.value)), str(e.value)
    layer(x, hx_for(layer, np.zeros((4, H)), np.zeros((4, H))))  # the right one works


def test_lstm_hx_must_be_pair():
    layer = pyrnn.LSTM(C, H)
    with pytest.raises((TypeError, ValueError), match=r"(?i)tuple|pair|\(h0, c0\)|c0"):
        layer(np.zeros((5, 2, C)), np.zeros((1, 2, H)))


def test_non_numeric_hx(layer):
    bad = np.full((4, 2, H), "a")
    with pytest.raises(TypeError):
        layer(np.zeros((5, 2, C)), hx_for(layer, bad, bad))


# ---- lengths -------------------------------------------------------------------------------
@pytest.mark.parametrize("lengths,bad", [([0, 3], 0), ([3, 6], 6), ([-1, 2], -1),
                                         ([5, 100], 100)])
def test_lengths_out_of_range(layer, lengths, bad):
    with pytest.raises(ValueError, match=rf"(?<![\d-]){bad}(?!\d)") as e:
        layer(np.zeros((5, 2, C)), None, np.array(lengths))
    assert re.search(r"\b5\b|\[1", str(e.value)), f"T / valid range not named: {e.value}"


@pytest.mark.parametrize("lengths", [[3], [3, 3, 3], [[3, 3]]])
def test_lengths_wrong_count(layer, lengths):
    arr = np.array(lengths)
    with pytest.raises(ValueError, match=shape_re(*arr.shape)) as e:
        layer(np.zeros((5, 2, C)), None, arr)
    assert re.search(r"\b2\b", str(e.value)), f"expected count 2 not named: {e.value}"


@pytest.mark.parametrize("lengths,error,match", [
    ([2.5, 3.0], ValueError, r"^lengths must be whole numbers, got 2.5 at index 0$"),
    ([3.0, np.inf], ValueError, r"^lengths must be whole numbers, got inf at index 1$"),
    (["a", "b"], TypeError, r"^lengths must be integers, got dtype <U1$")],
    ids=["float", "inf", "str"])
def test_lengths_non_integer(layer, lengths, error, match):
    with pytest.raises(error, match=match):
        layer(np.zeros((5, 2, C)), None, np.array(lengths))


def test_lengths_as_whole_floats(layer):
    # A float mask's sum(1), as torch's pack_padded_sequence takes it.
    x = np.random.default_rng(0).standard_normal((5, 2, C))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.float32)
    np.testing.assert_array_equal(layer(x, None, mask.sum(1))[0], layer(x, None, [3, 5])[0])


def test_lengths_accepts_lists_and_int_dtypes(layer):
    x = np.random.default_rng(0).standard_normal((5, 3, C))
    ref = layer(x, None, np.array([5, 2, 3], dtype=np.int64))[0]
    for lens in ([5, 2, 3], (5, 2, 3), np.array([5, 2, 3], dtype=np.int32),
                 np.array([5, 2, 3], dtype=np.uint8)):
        np.testing.assert_array_equal(layer(x, None, lens)[0], ref)


# ---- constructor ---------------------------------------------------------------------------
CTORS = {"RNN": pyrnn.RNN, "LSTM": pyrnn.LSTM, "GRU": pyrnn.GRU}


@pytest.mark.parametrize("cls", list(CTORS), ids=list(CTORS))
@pytest.mark.parametrize("args,kwargs,pattern", [
    ((C, 0), {}, r"hidden_size.*0"),
    ((0, H), {}, r"input_size.*0"),
    ((C, H, 0), {}, r"num_layers.*0"),
    ((C, -2), {}, r"hidden_size.*-2"),
    ((C, H, 2), {"dropout": 1.0}, r"dropout.*1"),
    ((C, H, 2), {"dropout": -0.1}, r"dropout.*-0\.1"),
    ((C, H, 2), {"dropout": 1.5}, r"dropout.*1\.5"),
], ids=["hidden0", "input0", "layers0", "hidden-neg", "dropout1", "dropout-neg",
        "dropout>1"])
def test_bad_constructor_args(cls, args, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        CTORS[cls](*args, **kwargs)


@pytest.mark.parametrize("make, name", [
    (lambda v: pyrnn.LSTM(C, H, bias=v), "bias"),
    (lambda v: pyrnn.RNN(C, H, batch_first=v), "batch_first"),
    (lambda v: pyrnn.GRU(C, H, bidirectional=v), "bidirectional"),
    (lambda v: pyrnn.GRU(C, H, reset_after=v), "reset_after"),
    (lambda v: pyrnn.Dense(C, H, bias=v), "bias"),
    (lambda v: pyrnn.optim.SGD(pyrnn.Dense(C, H).parameters(), momentum=0.9, nesterov=v),
     "nesterov"),
    (lambda v: pyrnn.optim.Adam(pyrnn.Dense(C, H).parameters(), amsgrad=v), "amsgrad"),
    (lambda v: pyrnn.optim.AdamW(pyrnn.Dense(C, H).parameters(), amsgrad=v), "amsgrad"),
    (lambda v: pyrnn.optim.RMSprop(pyrnn.Dense(C, H).parameters(), centered=v), "centered"),
    (lambda v: pyrnn.callbacks.EarlyStopping(restore_best=v), "restore_best"),
    (lambda v: pyrnn.callbacks.ModelCheckpoint("m.pyrnn", save_best_only=v), "save_best_only"),
    (lambda v: pyrnn.optim.clip_grad_norm(pyrnn.Dense(C, H).parameters(), 1.0,
                                          error_if_nonfinite=v), "error_if_nonfinite"),
], ids=["lstm-bias", "batch_first", "bidirectional", "reset_after", "dense-bias", "nesterov",
        "adam-amsgrad", "adamw-amsgrad", "centered", "restore_best", "save_best_only",
        "error_if_nonfinite"])
def test_switches_take_bools_only(make, name):
    # bool("no") is True: bias="no" built a bias, batch_first="False" read (N, T, C).
    for bad in ["no", "False", None, 2, 0.0, [True]]:
        with pytest.raises(TypeError, match=rf"{name} must be True or False, got {re.escape(repr(bad))}"):
            make(bad)
    for good in [True, False, 0, 1, np.bool_(True), np.int64(0)]:
        make(good)


def test_unknown_nonlinearity():
    with pytest.raises(ValueError, match=r"sigmoid"):
        pyrnn.RNN(C, H, nonlinearity="sigmoid")


@pytest.mark.parametrize("cls", [pyrnn.RNN, pyrnn.LSTM], ids=["RNN", "LSTM"])
def test_reset_after_only_on_gru(cls):
    with pytest.raises(TypeError, match="reset_after"):
        cls(C, H, reset_after=True)


@pytest.mark.parametrize("cls", [pyrnn.GRU, pyrnn.LSTM], ids=["GRU", "LSTM"])
def test_nonlinearity_only_on_rnn(cls):
    with pytest.raises(TypeError, match="nonlinearity"):
        cls(C, H, nonlinearity="relu")


@pytest.mark.parametrize("dtype", ["float16", "int32", "complex64", "banana"])
def test_bad_dtype(dtype):
    with pytest.raises((TypeError, ValueError), match=re.escape(dtype)):
        pyrnn.LSTM(C, H, dtype=dtype)


def test_bad_device():
    with pytest.raises(ValueError, match="tpu"):
        pyrnn.GRU(C, H, device="tpu")


@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32, np.float64,
                                   np.dtype("float64")])
def test_dtype_spellings_accepted(dtype):
    layer = pyrnn.LSTM(C, H, dtype=dtype)
    want = np.dtype(dtype)
    assert all(v.dtype == want for v in layer.params.values())
    out, (h_n, c_n) = layer(np.zeros((3, 2, C), dtype=np.float32 if want == np.float64
                                     else np.float64))
    assert out.dtype == h_n.dtype == c_n.dtype == want


def test_integer_and_list_inputs_are_converted(layer):
    xi = np.arange(5 * 2 * C).reshape(5, 2, C) % 3 - 1
    ref = layer(xi.astype(np.float32))[0]
    np.testing.assert_array_equal(layer(xi)[0], ref)
    np.testing.assert_array_equal(layer(xi.tolist())[0], ref)


# ---- backward ----------------------------------------------------------------------------------
def test_backward_without_forward(layer):
    with pytest.raises(RuntimeError, match=r"(?i)forward"):
        layer.backward(np.zeros((5, 2, 2 * H)))


def test_backward_after_eval_forward(layer):
    layer.eval()
    out = layer(np.zeros((5, 2, C)))[0]
    with pytest.raises(RuntimeError, match=r"(?i)forward|train|eval"):
        layer.backward(np.ones_like(out))


def test_backward_after_train_then_eval_forward(layer):
    """An eval forward after a training forward must not leave the stale cache usable."""
    x = np.zeros((5, 2, C))
    layer(x)
    layer.eval()
    out = layer(np.zeros((4, 3, C)))[0]
    with pytest.raises(RuntimeError):
        layer.backward(np.ones_like(out))


@pytest.mark.parametrize("dshape", [(5, 2, H), (4, 2, 2 * H), (5, 3, 2 * H), (5, 2 * H)])
def test_backward_wrong_d_out_shape(layer, dshape):
    layer(np.zeros((5, 2, C)))
    with pytest.raises(ValueError, match=shape_re(*dshape)) as e:
        layer.backward(np.zeros(dshape))
    assert re.search(shape_re(5, 2, 2 * H), str(e.value)), str(e.value)


@pytest.mark.parametrize("sshape", [(4, 3, H), (2, 2, H), (4, 2)])
def test_backward_wrong_d_h_n_shape(layer, sshape):
    layer(np.zeros((5, 2, C)))
    with pytest.raises(ValueError, match=shape_re(*sshape)) as e:
        layer.backward(np.zeros((5, 2, 2 * H)), np.zeros(sshape))
    assert re.search(shape_re(4, 2, H), str(e.value)), str(e.value)


def test_backward_wrong_d_c_n_shape():
    layer = pyrnn.LSTM(C, H, 2, bidirectional=True)
    layer(np.zeros((5, 2, C)))
    with pytest.raises(ValueError, match=shape_re(4, 2, H + 1)):
        layer.backward(np.zeros((5, 2, 2 * H)), np.zeros((4, 2, H)), np.zeros((4, 2, H + 1)))


def test_layer_usable_after_refused_calls(layer):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 2, C))
    out0 = layer(x)[0].copy()
    for bad in (lambda: layer(np.zeros((5, 2, C + 1))),
                lambda: layer(x, None, [0, 9]),
                lambda: layer.backward(np.zeros((1, 1, 1)))):
        with pytest.raises((ValueError, TypeError)):
            bad()
    out = layer(x)[0]
    np.testing.assert_array_equal(out, out0)
    dx = layer.backward(np.ones_like(out))[0]
    assert dx.shape == x.shape and np.all(np.isfinite(dx))


class SubclassedLSTM(pyrnn.LSTM):
    pass


@pytest.mark.parametrize("cls", [pyrnn.RNN, pyrnn.LSTM, pyrnn.GRU, SubclassedLSTM])
def test_single_layer_dropout_warning_names_the_callers_line(cls):
    # As PyTorch's: warned at the user's line. LSTM (no __init__ of its own) pointed one frame
    # further up (at module level: "sys:1").
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cls(3, 4, 1, dropout=0.5)
    assert len(caught) == 1 and "no effect" in str(caught[0].message)
    assert caught[0].filename == __file__, caught[0].filename


@pytest.mark.parametrize("cls, own", [(pyrnn.RNN, ["nonlinearity"]), (pyrnn.LSTM, []),
                                      (pyrnn.GRU, ["reset_after"])])
def test_recurrent_signatures_spell_out_their_keywords(cls, own):
    # RNN and GRU took **kwargs (a typo passed type checkers, and its error named the private
    # _Recurrent), and LSTM's signature showed a private _reset_after.
    import inspect
    params = inspect.signature(cls).parameters
    common = ["bias", "batch_first", "bidirectional", "dropout", "dtype", "device", "seed"]
    assert list(params) == ["input_size", "hidden_size", "num_layers"] + own + common
    assert all(p.kind != p.VAR_KEYWORD for p in params.values())
    with pytest.raises(TypeError, match=rf"{cls.__name__}\.__init__\(\) got an unexpected "
                                        r"keyword argument 'bidirectionl'"):
        cls(3, 4, bidirectionl=True)


def test_integers_beyond_the_float_range_are_value_errors_naming_the_argument():
    # float(10**400) is an OverflowError: it escaped from init, callbacks, LayerNorm and
    # clip_grad_norm, naming nothing (helper-143).
    from pyrnn import callbacks, init, optim
    huge = 10 ** 400
    layer = pyrnn.Dense(3, 2)
    cases = {
        "gain": lambda: init.xavier_uniform_(np.zeros((3, 3)), gain=huge),
        "b": lambda: init.uniform_(np.zeros(3), 0, huge),
        "negative_slope": lambda: init.calculate_gain("leaky_relu", huge),
        "min_delta": lambda: callbacks.EarlyStopping(min_delta=huge),
        "eps": lambda: pyrnn.LayerNorm(3, eps=huge),
        "max_norm": lambda: optim.clip_grad_norm(layer.parameters(), huge),
        "norm_type": lambda: optim.clip_grad_norm(layer.parameters(), 1.0, norm_type=huge),
        "lr": lambda: optim.Adam(layer.parameters(), lr=huge),
    }
    for name, call in cases.items():
        with pytest.raises(ValueError, match=rf"{name} must be .*got an integer of 401 digits"):
            call()
    # Beyond str()'s 4300 digits, its size is still named (helper-145)
    with pytest.raises(ValueError, match=r"lr must be .*got an integer of about 5001 digits"):
        optim.Adam(layer.parameters(), lr=10 ** 5000)
    with pytest.raises(ValueError, match=r"lengths\[0\] = an integer of about 5001 digits"):
        pyrnn.RNN(3, 4)(np.zeros((5, 2, 3)), lengths=[10 ** 5000, 1])


def test_init_argument_errors_name_the_argument():
    from pyrnn import init
    for fn in (init.xavier_uniform_, init.xavier_normal_):
        with pytest.raises(ValueError, match=r"gain must be >= 0, got -1.0"):  # was NumPy's words
            fn(np.zeros((3, 3)), gain=-1)
    w = np.zeros(3, np.float16)
    for value in (70000, 70000.0):  # the int was a bare FloatingPointError
        with pytest.raises(ValueError, match="beyond the float16 range"):
            init.constant_(w, value)
    init.constant_(w, 65504)
    assert (w == 65504).all()


def test_lengths_beyond_int64_are_named_out_of_range():
    layer = pyrnn.RNN(3, 4)
    with pytest.raises(ValueError, match=r"lengths\[0\] = 18446744073709551616 is outside "
                                         r"\[1, 5\]"):  # was "must be integers, dtype object"
        layer(np.zeros((5, 2, 3)), lengths=[2 ** 64, 1])
    y, _ = layer(np.zeros((5, 2, 3)), lengths=np.array([5, 2], dtype=object))
    assert y.shape == (5, 2, 4)


@pytest.mark.parametrize("batch_first", [False, True])
def test_backward_takes_anything_in_d_out_padding_as_forward_takes_it_in_x(batch_first):
    # NaN there was ignored, but a finite float64 value beyond float32's range was refused
    # (helper-143); it reaches no gradient either way.
    rng = np.random.default_rng(0)
    layer = pyrnn.GRU(3, 4, seed=1, batch_first=batch_first)
    x = rng.standard_normal((2, 5, 3) if batch_first else (5, 2, 3))
    lens = [5, 2]
    d = rng.standard_normal((2, 5, 4) if batch_first else (5, 2, 4))
    pad = (1, slice(2, None)) if batch_first else (slice(2, None), 1)
    layer(x, lengths=lens)
    want = layer.backward(d)
    layer.zero_grad()
    dirty = d.copy()
    dirty[pad] = 1e39
    layer(x, lengths=lens)
    for got, expect in zip(layer.backward(dirty), want):  # (dx, dh0)
        np.testing.assert_array_equal(got, expect)
    inside = d.copy()
    inside[(0, 1) if batch_first else (1, 0)] = 1e39
    layer(x, lengths=lens)
    with pytest.raises(ValueError, match=r"d_out has values beyond the float32 range within "
                                         r"its lengths \(the largest is 1e\+39\)"):
        layer.backward(inside)
    layer(x)  # no lengths: every step counts
    with pytest.raises(ValueError, match=r"d_out has values beyond the float32 range"):
        layer.backward(dirty)
    # The forward's lengths, not the caller's array as changed since (helper-145)
    mine = np.array([5, 5])
    layer(x, lengths=mine)
    mine[1] = 2
    with pytest.raises(ValueError, match=r"d_out has values beyond the float32 range within"):
        layer.backward(dirty)
