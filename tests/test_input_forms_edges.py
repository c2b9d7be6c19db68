"""Inputs at the edges an input-forms hunt found: ReLU backward with Inf / NaN gradients
(PyTorch selects, 0 * Inf is NaN), big-endian float64, swaps through load_params, a Dense dy
that is its own gradient array, clip_grad_norm(max_norm=inf), pyrnn.init beyond float32,
bool targets, a validation y the model cannot take, and backward from h_n only; and from an
unusual-arrays hunt (helper-182): an Embedding dy that is its own gradient, np.matrix
Parameters, mixed-dtype torch modules, ragged lists and tensors requiring grad, optimizer state
dtypes, Matrix edge shapes and copy=False, init on a broadcast view; array-likes the
parameter-less layers read twice. Each test failed before its fix."""
import math

import numpy as np
import pytest

import pyrnn
from pyrnn import init, optim

torch = pytest.importorskip("torch")


def test_dense_relu_backward_passes_zero_for_inactive_units_whatever_dy():
    d = pyrnn.Dense(2, 2, activation="relu", seed=0)
    d.params["weight"] = np.array([[1, 0], [-1, 0]], np.float32)
    d.params["bias"] = np.zeros(2, np.float32)
    x = np.array([[1.0, 0.0]], np.float32)
    d(x)  # y = [[1, 0]]: unit 1 inactive
    for bad in (np.nan, np.inf):
        d.zero_grad()
        d(x)
        dx = d.backward(np.array([[1.0, bad]], np.float32))
        np.testing.assert_array_equal(dx, [[1.0, 0.0]])  # torch: [[1, 0]]
        np.testing.assert_array_equal(d.grads["weight"], [[1, 0], [0, 0]])
        np.testing.assert_array_equal(d.grads["bias"], [1, 0])


@pytest.mark.parametrize("isa", pyrnn.info()["available_isas"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rnn_relu_backward_matches_torch_with_inf_and_nan(isa, dtype):
    saved = pyrnn.info()["cpu_isa"]
    pyrnn.set_cpu_isa(isa)
    try:
        rng = np.random.default_rng(0)
        layer = pyrnn.RNN(3, 17, nonlinearity="relu", seed=1, dtype=dtype)
        ref = layer.to_torch()
        x = rng.standard_normal((4, 2, 3)).astype(dtype)
        x[1, 0, 2] = np.nan  # NaN activations (relu(NaN) is NaN, as torch's)
        dy = rng.standard_normal((4, 2, 17)).astype(dtype)
        y = layer(x)[0]
        dy[y == 0] = np.inf  # Inf gradients on inactive units
        dx, _ = layer.backward(dy)
        xt = torch.tensor(x, requires_grad=True)
        yt, _ = ref(xt)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(yt.detach().numpy()))
        yt.backward(torch.tensor(dy))
        np.testing.assert_array_equal(np.isnan(dx), np.isnan(xt.grad.numpy()))
        np.testing.assert_array_equal(np.isinf(dx), np.isinf(xt.grad.numpy()))
        g = layer.grads["weight_ih_l0"]
        np.testing.assert_array_equal(np.isfinite(g), np.isfinite(ref.weight_ih_l0.grad.numpy()))
        # The values too: where h is NaN, d passes (torch: h <= 0 ? 0 : d; this gave 0).
        tol = dict(rtol=1e-5, atol=1e-5) if np.dtype(dtype) == np.float32 else \
            dict(rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx, xt.grad.numpy(), equal_nan=True, **tol)
        for k in ("weight_ih_l0", "weight_hh_l0"):
            np.testing.assert_allclose(layer.grads[k], getattr(ref, k).grad.numpy(),
                                       equal_nan=True, **tol)
        layer1 = pyrnn.RNN(1, 1, nonlinearity="relu", seed=0, dtype=dtype)
        ref1 = layer1.to_torch()
        x1 = np.array([[[np.nan]], [[1.0]]], dtype)
        y1 = layer1(x1)[0]
        dx1, _ = layer1.backward(np.ones_like(y1))
        xt1 = torch.tensor(x1, requires_grad=True)
        ref1(xt1)[0].backward(torch.ones(2, 1, 1, dtype=xt1.dtype))
        np.testing.assert_allclose(dx1, xt1.grad.numpy(), equal_nan=True, **tol)
    finally:
        pyrnn.set_cpu_isa(saved)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_relu_backward_passes_the_gradient_where_the_output_is_nan(dtype):
    # torch's rule, h <= 0 ? 0 : d: a NaN output passes d (it gave 0).
    layer = pyrnn.Dense(2, 3, activation="relu", seed=0, dtype=dtype)
    ref = torch.nn.Linear(2, 3, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(layer.params["weight"]))
        ref.bias.copy_(torch.tensor(layer.params["bias"]))
    x = np.array([[np.nan, 1.0], [0.5, -2.0]], dtype)
    dy = np.arange(6, dtype=dtype).reshape(2, 3) + 1
    y = layer(x)
    dx = layer.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    torch.relu(ref(xt)).backward(torch.tensor(dy))
    tol = dict(rtol=1e-5, atol=1e-6) if np.dtype(dtype) == np.float32 else dict(rtol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), equal_nan=True, **tol)
    np.testing.assert_allclose(layer.grads["weight"], ref.weight.grad.numpy(), equal_nan=True,
                               **tol)
    assert np.isnan(y[0]).all()


def test_big_endian_float64_keeps_its_dtype_and_range():
    a = np.array([[1 / 3, 1e300]], ">f8")
    m = pyrnn.Matrix.from_numpy(a)
    assert m.dtype == np.float64
    np.testing.assert_array_equal(m.numpy(), a)
    with pytest.raises(ValueError, match="beyond the float32 range"):
        pyrnn.Matrix.from_numpy(np.array([[1e39]], np.longdouble))
    m32 = pyrnn.Matrix(1, 1, np.float32)
    with pytest.raises(ValueError, match="beyond the float32 range"):
        m32.set(0, 0, 1e39)
    m32.set(0, 0, math.inf)  # Inf and NaN are values, as everywhere
    assert m32.get(0, 0) == math.inf
    y = pyrnn.Dropout(0.0)(np.array([1 / 3, 1e300], ">f8"))  # was float32, and a range error
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, [1 / 3, 1e300])
    y = pyrnn.LastStep()(np.full((1, 2, 3), 1e300, ">f8"))
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, np.full((1, 3), 1e300))


def test_load_params_swaps_two_parameters():
    layer = pyrnn.LSTM(3, 4, bidirectional=True, seed=0)
    before, p = layer.numpy_params(), layer.params
    layer.params = {"weight_ih_l0": p["weight_ih_l0_reverse"],
                    "weight_ih_l0_reverse": p["weight_ih_l0"]}
    np.testing.assert_array_equal(layer.params["weight_ih_l0"], before["weight_ih_l0_reverse"])
    np.testing.assert_array_equal(layer.params["weight_ih_l0_reverse"], before["weight_ih_l0"])
    m = pyrnn.Sequential([pyrnn.Dense(3, 3, seed=1), pyrnn.Dense(3, 3, seed=2)])
    w0, w1 = m.params["0.weight"].copy(), m.params["1.weight"].copy()
    m.load_params({"0.weight": m.params["1.weight"], "1.weight": m.params["0.weight"]})
    np.testing.assert_array_equal(m.params["0.weight"], w1)
    np.testing.assert_array_equal(m.params["1.weight"], w0)


def test_dense_backward_with_dy_that_is_its_own_gradient_array():
    x = np.random.default_rng(0).random((3, 3)).astype(np.float32)
    want = pyrnn.Dense(3, 3, seed=0)
    want.grads["weight"] = np.arange(9.0).reshape(3, 3)
    want(x)
    dx_want = want.backward(want.grads["weight"].copy())
    d = pyrnn.Dense(3, 3, seed=0)
    d.grads["weight"] = np.arange(9.0).reshape(3, 3)
    d(x)
    dx = d.backward(d.grads["weight"])
    np.testing.assert_array_equal(dx, dx_want)
    np.testing.assert_array_equal(d.grads["weight"], want.grads["weight"])


def test_clip_grad_norm_with_an_infinite_max_norm_only_reports():
    d = pyrnn.Dense(3, 2, seed=0)
    d.grads["weight"] = np.full((2, 3), 1e3, np.float32)
    g0 = d.numpy_grads()
    total = optim.clip_grad_norm(d.parameters(), math.inf)
    assert total == pytest.approx(float(np.sqrt(6) * 1e3), rel=1e-6)
    for k, v in d.numpy_grads().items():
        np.testing.assert_array_equal(v, g0[k])
    with pytest.raises(ValueError, match="max_norm"):
        optim.clip_grad_norm(d.parameters(), -math.inf)


@pytest.mark.parametrize("fill", [
    lambda p: init.constant_(p, 1e39),
    lambda p: init.uniform_(p, 1e39, 2e39),
    lambda p: init.xavier_uniform_(p, gain=1e39),
])
def test_init_beyond_float32_is_refused_and_writes_nothing(fill):
    d = pyrnn.Dense(3, 2, seed=0)
    w0 = d.params["weight"].copy()
    with pytest.raises(ValueError, match="beyond the float32 range"):
        fill(next(d.parameters()))
    np.testing.assert_array_equal(d.params["weight"], w0)


def test_bool_targets_train_with_bce_and_mse():
    x = np.random.default_rng(0).random((8, 3)).astype(np.float32)
    y = x[:, :1] > 0.5
    for loss in ("bce", "mse"):
        m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
        # (the same order of samples: a shuffled sum moves the loss's last bit)
        hist = m.fit(x, y, loss=loss, optimizer="sgd", epochs=1, verbose=0, shuffle=False)
        ref = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
        ref_hist = ref.fit(x, y.astype(np.float32), loss=loss, optimizer="sgd", epochs=1,
                           verbose=0, shuffle=False)
        assert hist["loss"] == ref_hist["loss"]


def test_a_validation_y_the_model_cannot_take_is_refused_before_training():
    x = np.random.default_rng(0).random((8, 3)).astype(np.float32)
    m = pyrnn.Sequential([pyrnn.Dense(3, 2, seed=0)])
    w0 = m.numpy_params()
    with pytest.raises(ValueError, match="target shape"):
        m.fit(x, np.zeros((8, 2)), loss="mse", optimizer="sgd", verbose=0,
              validation_data=(x, np.zeros((8, 5))))
    for k, v in m.numpy_params().items():
        np.testing.assert_array_equal(v, w0[k])  # no epoch ran


def test_predict_on_nan_data_does_not_speak_of_training():
    m = pyrnn.Sequential([pyrnn.Dense(3, 2, seed=0)])
    with pytest.raises(ValueError, match="contains NaN or Inf") as e:
        m.predict(np.full((2, 3), np.nan))
    assert "training" not in str(e.value)


@pytest.mark.parametrize("cls", [pyrnn.RNN, pyrnn.GRU, pyrnn.LSTM])
def test_backward_from_the_final_state_only(cls):
    rng = np.random.default_rng(0)
    layer = cls(3, 4, seed=0, batch_first=True)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    out, state = layer(x)
    dh = rng.standard_normal((1, 2, 4)).astype(np.float32)
    extra = (None,) if cls is pyrnn.LSTM else ()
    got = layer.backward(None, dh, *extra)
    g_none = layer.numpy_grads()
    layer.zero_grad()
    layer(x)
    want = layer.backward(np.zeros_like(out), dh, *extra)
    np.testing.assert_array_equal(got[0], want[0])
    for k, v in layer.numpy_grads().items():
        np.testing.assert_array_equal(g_none[k], v)


def test_matrix_set_takes_every_value_that_rounds_into_float32():
    m = pyrnn.Matrix(1, 1, np.float32)
    top = float(np.finfo(np.float32).max)
    m.set(0, 0, top + 2.0 ** 102)  # rounds to FLT_MAX, as numpy's cast
    assert m.get(0, 0) == top
    with pytest.raises(ValueError, match="beyond the float32 range"):
        m.set(0, 0, -(top + 2.0 ** 103))  # rounds to -Inf


def test_init_constant_refuses_complex_values():
    d = pyrnn.Dense(3, 2, seed=0)
    with pytest.raises(TypeError, match="real value"):
        init.constant_(next(d.parameters()), 1 + 2j)


def test_embedding_dy_that_is_its_own_gradient_is_read_before_accumulating():
    idx = np.array([1, 0])
    grads = []
    for alias in (True, False):
        e = pyrnn.Embedding(2, 1, seed=0)
        e(idx)
        e.grads["weight"][...] = [[1.0], [10.0]]
        dy = e.grads["weight"] if alias else e.grads["weight"].copy()
        e.backward(dy)
        grads.append(e.grads["weight"].ravel().copy())
    np.testing.assert_array_equal(grads[0], grads[1])
    np.testing.assert_array_equal(grads[0], [11.0, 11.0])  # (aliased, row 0 read 11: [12, 11])


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # (np.matrix's own)
def test_a_numpy_matrix_parameter_is_refused_before_any_step():
    # Its reshape(-1) stays 2-D: Adam stepped the first parameter, then failed in Cython's words.
    with pytest.raises(TypeError, match=r"Parameter 'b': data and grad must be ndarrays, not "
                                        r"numpy.matrix"):
        pyrnn.Parameter("b", np.matrix(np.ones((1, 4), np.float32)),
                        np.matrix(np.zeros((1, 4), np.float32)))


@pytest.mark.parametrize("module, attr, bad", [
    ("linear", "bias", lambda t: t.to(torch.complex64) * (1 + 1j)),
    ("linear", "bias", lambda t: t.double().fill_(1e300)),
    ("gru", "bias_hh_l0", lambda t: t.to(torch.complex64) * (1 + 1j)),
    ("lstm", "weight_hh_l0", lambda t: t.double()),
    ("layernorm", "bias", lambda t: t.double()),
])
def test_from_torch_refuses_a_module_mixing_dtypes(module, attr, bad):
    # Only one tensor per module was checked: a complex bias lost its imaginary part, a float64
    # 1e300 became Inf in the float32 layer, each with only NumPy's warning.
    m = {"linear": lambda: torch.nn.Linear(2, 2), "gru": lambda: torch.nn.GRU(2, 3),
         "lstm": lambda: torch.nn.LSTM(2, 3), "embedding": lambda: torch.nn.Embedding(4, 2),
         "layernorm": lambda: torch.nn.LayerNorm(3)}[module]()
    setattr(m, attr, torch.nn.Parameter(bad(getattr(m, attr).detach().clone())))
    with pytest.raises(ValueError, match=rf"{attr} has dtype torch\.\w+, the module's other "
                                         r"parameters torch.float32"):
        pyrnn.from_torch(m)


def test_from_torch_refuses_a_float32_bias_sum_past_the_range():
    # The layer keeps b_ih + b_hh: two float32 biases of 3e38 summed to Inf in float32.
    m = torch.nn.LSTM(2, 3)
    with torch.no_grad():
        m.bias_ih_l0.fill_(3e38)
        m.bias_hh_l0.fill_(3e38)
    with pytest.raises(ValueError, match="parameter 'bias_l0' has values beyond the float32 "
                                         "range"):
        pyrnn.from_torch(m)


_RAGGED = [[1.0, 2.0], [3.0]]


@pytest.mark.parametrize("name, call", [
    ("x", lambda: pyrnn.Dropout(0.5)(_RAGGED)),
    ("x", lambda: pyrnn.Dropout(0.5)(torch.ones(2, 2, requires_grad=True))),
    ("x", lambda: pyrnn.LastStep()([_RAGGED])),
    ("x", lambda: pyrnn.LastStep()(torch.ones(2, 3, 2, requires_grad=True))),
    ("Embedding input must be integer indices", lambda: pyrnn.Embedding(5, 2)([[1, 2], [3]])),
    ("pred", lambda: pyrnn.losses.MSELoss()(_RAGGED, _RAGGED)),
    ("pred", lambda: pyrnn.losses.MSELoss()(torch.ones(2, 2, requires_grad=True),
                                            np.ones((2, 2)))),
    ("target must be an array of class indices",
     lambda: pyrnn.losses.CrossEntropyLoss()(np.zeros((2, 3)), [[0], [1, 2]])),
    ("MSELoss: mask must be a bool array",
     lambda: pyrnn.losses.MSELoss()(np.zeros((2, 2)), np.zeros((2, 2)), [[True], [False, True]])),
    ("pos_weight", lambda: pyrnn.losses.BCEWithLogitsLoss(pos_weight=_RAGGED)),
    ("Matrix.from_numpy: the array", lambda: pyrnn.Matrix.from_numpy(_RAGGED)),
    ("val", lambda: init.constant_(np.zeros((2, 2), np.float32), _RAGGED)),
])
def test_ragged_lists_and_grad_tensors_are_type_errors_naming_the_argument(name, call):
    # NumPy's ValueError / torch's RuntimeError escaped, naming nothing.
    if " must be " not in name:
        name += " must be a real numeric array"
    with pytest.raises(TypeError, match=rf"^{name}: "):
        call()


def test_optimizer_state_buffers_of_non_numeric_dtype_are_type_errors():
    # An ndarray was a ValueError, the same values as a list a TypeError.
    m = pyrnn.Sequential([pyrnn.Dense(3, 2, seed=0)])
    opt = optim.Adam(m.parameters(), lr=0.1)
    m.fit(np.ones((4, 3), np.float32), np.zeros((4, 2)), loss="mse", optimizer=opt, verbose=0)
    for bad in (np.ones((2, 3), np.complex64), np.ones((2, 3), np.complex64).tolist(),
                np.ones((2, 3)).astype(object), np.full((2, 3), "a")):
        sd = opt.state_dict()
        sd["state"][0]["exp_avg"] = bad
        with pytest.raises(TypeError, match="state 'exp_avg' of '0.weight' must be a real "
                                            "numeric array"):
            optim.Adam(m.parameters()).load_state_dict(sd)


def test_matrix_dimensions_past_the_array_limit_and_copy_false():
    for rows in (2**63, 2**64):  # (an empty Matrix was built, its numpy() view failed)
        with pytest.raises(ValueError, match="exceeds the largest float32 array dimension"):
            pyrnn.Matrix(rows, 0)
    # (NumPy takes no dimension past intp's bytes: float32 2**61, float64 2**60 were built)
    with pytest.raises(ValueError, match="exceeds the largest float32 array dimension"):
        pyrnn.Matrix(2**61, 0)
    with pytest.raises(ValueError, match="exceeds the largest float64 array dimension"):
        pyrnn.Matrix(0, 2**60, "float64")
    assert pyrnn.Matrix(2**61 - 1, 0).numpy().shape == (2**61 - 1, 0)
    m = pyrnn.Matrix(2, 3)
    with pytest.raises(ValueError, match="needs a copy, and copy=False was given"):
        np.asarray(m, dtype=np.float64, copy=False)
    v = np.asarray(m, copy=False)  # the same dtype: a view, as before
    v[0, 0] = 7.0
    assert m.numpy()[0, 0] == 7.0
    assert np.asarray(m, dtype=np.float64).dtype == np.float64


def test_init_refuses_a_view_repeating_memory():
    from numpy.lib.stride_tricks import as_strided
    w = as_strided(np.zeros(6, np.float32), shape=(4, 6), strides=(0, 4), writeable=True)
    for fn in (lambda a: init.orthogonal_(a, seed=0), lambda a: init.uniform_(a, seed=0),
               lambda a: init.xavier_normal_(a, seed=0)):
        with pytest.raises(ValueError, match=r"repeats memory along an axis \(strides \(0, 4\)"):
            fn(w)
    init.uniform_(as_strided(np.ones(6, np.float32), shape=(1, 6), strides=(0, 4),
                             writeable=True), seed=0)  # (one row: nothing repeats)
    # A constant fills it, as torch's constant_ / zeros_ / ones_ fill an expand()-ed tensor.
    init.constant_(w, 2.5)
    assert (w == 2.5).all() and init.zeros_(w) is w and (w == 0).all()
    with pytest.raises(ValueError, match="repeats memory"):  # (varying values cannot: the
        init.constant_(w, np.arange(24.0).reshape(4, 6))    # last row written won)


class _Counted:
    """An array-like that counts its conversions (a generator-backed one could not be read
    twice)."""

    def __init__(self, a):
        self.a, self.reads = a, 0

    def __array__(self, dtype=None, copy=None):
        self.reads += 1
        return self.a if dtype is None else self.a.astype(dtype)


@pytest.mark.parametrize("make, shape", [(lambda: pyrnn.Dropout(0.5, seed=0), (2, 3)),
                                         (lambda: pyrnn.Dropout(0.0), (2, 3)),
                                         (pyrnn.LastStep, (2, 3, 4)),
                                         (lambda: pyrnn.Sequential([pyrnn.LastStep()]), (2, 3, 4))])
def test_parameter_less_layers_read_an_array_like_once(make, shape):
    layer = make()
    x = _Counted(np.arange(np.prod(shape), dtype=np.float64).reshape(shape))
    y = layer(x)
    assert x.reads == 1 and y.dtype == np.float64
    dy = _Counted(np.ones(y.shape))
    layer.backward(dy)
    assert dy.reads == 1
