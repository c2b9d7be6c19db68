"""pyrnn.from_torch / layer.to_torch against PyTorch, random weights, every cell and option.

- torch -> pyrnn: same outputs (out, h_n, c_n; with and without packed lengths and initial
  states), weights bitwise equal.
- pyrnn -> torch -> pyrnn: every parameter bitwise equal (bias split as bias_ih = bias,
  bias_hh = 0, GRU n gate: bias_ih_n = bias_n, bias_hh_n = bias_hn).
- Linear / Embedding / LayerNorm / Dropout / Sequential, errors for unsupported modules.
"""
import sys
import warnings
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pyrnn  # noqa: E402

TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-10, atol=1e-12)}
TDT = {"float32": torch.float32, "float64": torch.float64}
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
OPTIONS = [
    dict(),
    dict(bidirectional=True),
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=3, batch_first=True),
    dict(bias=False, num_layers=2),
    dict(num_layers=2, dropout=0.25, batch_first=True, bidirectional=True),
]
C, H = 5, 7


def _torch_module(cell, dtype, **kw):
    kw = dict(kw, dtype=TDT[dtype])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if cell == "lstm":
            return torch.nn.LSTM(C, H, **kw)
        if cell == "gru":
            return torch.nn.GRU(C, H, **kw)
        return torch.nn.RNN(C, H, nonlinearity=cell[4:], **kw)


def _randomize_torch(m, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype) - 0.5)


def _randomize_pyrnn(layer, seed):
    rng = np.random.default_rng(seed)
    for p in layer.params.values():
        p[...] = rng.uniform(-0.5, 0.5, p.shape)


def _pyrnn_layer(cell, dtype, reset_after=True, **kw):
    kw = dict(kw, dtype=dtype, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if cell == "lstm":
            return pyrnn.LSTM(C, H, **kw)
        if cell == "gru":
            return pyrnn.GRU(C, H, reset_after=reset_after, **kw)
        return pyrnn.RNN(C, H, nonlinearity=cell[4:], **kw)


def _inputs(m, dtype, T=6, N=3, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, T, C) if m.batch_first else (T, N, C)).astype(dtype)
    LD = m.num_layers * (2 if m.bidirectional else 1)
    h0 = rng.standard_normal((LD, N, H)).astype(dtype)
    c0 = rng.standard_normal((LD, N, H)).astype(dtype)
    return x, h0, c0


def _run_torch(m, x, h0=None, c0=None, lengths=None):
    xt = torch.from_numpy(x)
    hx = None
    if h0 is not None:
        hx = (torch.from_numpy(h0), torch.from_numpy(c0)) if isinstance(m, torch.nn.LSTM) \
            else torch.from_numpy(h0)
    with torch.no_grad():
        if lengths is not None:
            T = x.shape[1] if m.batch_first else x.shape[0]
            packed = torch.nn.utils.rnn.pack_padded_sequence(
                xt, torch.as_tensor(lengths), batch_first=m.batch_first, enforce_sorted=False)
            out, hn = m(packed, hx)
            out = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=m.batch_first,
                                                         total_length=T)[0]
        else:
            out, hn = m(xt, hx)
    if isinstance(m, torch.nn.LSTM):
        return out.numpy(), hn[0].numpy(), hn[1].numpy()
    return out.numpy(), hn.numpy(), None


def _run_pyrnn(layer, x, h0=None, c0=None, lengths=None):
    hx = None
    if h0 is not None:
        hx = (h0, c0) if isinstance(layer, pyrnn.LSTM) else h0
    res = layer(x, hx, lengths)
    if isinstance(layer, pyrnn.LSTM):
        return res[0], res[1][0], res[1][1]
    return res[0], res[1], None


def _assert_outputs(a, b, tol):
    for u, v in zip(a, b):
        if u is None:
            assert v is None
        else:
            np.testing.assert_allclose(u, v, **tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
                         or "default")
@pytest.mark.parametrize("cell", CELLS)
def test_from_torch_matches_torch(cell, opts, dtype):
    m = _torch_module(cell, dtype, **opts).eval()
    _randomize_torch(m, seed=zlib.crc32(f"{cell}{dtype}{opts}".encode()) % 1000)
    layer = pyrnn.from_torch(m)
    expected_type = {"lstm": pyrnn.LSTM, "gru": pyrnn.GRU}.get(cell, pyrnn.RNN)
    assert type(layer) is expected_type
    assert (layer.num_layers, layer.bidirectional, layer.batch_first, layer.bias) == \
        (m.num_layers, m.bidirectional, m.batch_first, m.bias)
    assert layer.dropout == m.dropout and layer.dtype == np.dtype(dtype)
    assert not layer.training
    if cell == "gru":
        assert layer.reset_after
    if cell.startswith("rnn"):
        assert layer.nonlinearity == cell[4:]
    for name, w in layer.params.items():  # weights copied bitwise
        if name.startswith("weight"):
            assert np.array_equal(w, getattr(m, name).detach().numpy()), name
    x, h0, c0 = _inputs(m, dtype)
    tol = TOL[dtype]
    _assert_outputs(_run_pyrnn(layer, x), _run_torch(m, x), tol)
    _assert_outputs(_run_pyrnn(layer, x, h0, c0), _run_torch(m, x, h0, c0), tol)
    lengths = np.array([6, 2, 4])
    _assert_outputs(_run_pyrnn(layer, x, h0, c0, lengths), _run_torch(m, x, h0, c0, lengths), tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
                         or "default")
@pytest.mark.parametrize("cell", CELLS)
def test_pyrnn_torch_pyrnn_round_trip_is_bitwise(cell, opts, dtype):
    layer = _pyrnn_layer(cell, dtype, **opts).eval()
    _randomize_pyrnn(layer, seed=3)
    m = layer.to_torch()
    want = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(cell, torch.nn.RNN)
    assert type(m) is want and not m.training
    assert all(p.dtype == TDT[dtype] for p in m.parameters())
    # torch's copy computes the same outputs
    x, h0, c0 = _inputs(layer, dtype)
    tol = TOL[dtype]
    _assert_outputs(_run_torch(m, x, h0, c0), _run_pyrnn(layer, x, h0, c0), tol)
    # and converts back to bitwise the same parameters
    back = pyrnn.from_torch(m)
    assert back.params.keys() == layer.params.keys()
    for name, v in layer.params.items():
        assert back.params[name].dtype == v.dtype
        assert np.array_equal(back.params[name], v), name
    _assert_outputs(_run_pyrnn(back, x, h0, c0), _run_pyrnn(layer, x, h0, c0),
                    dict(rtol=0, atol=0))


def test_bias_split():
    layer = _pyrnn_layer("gru", "float32", bidirectional=True)
    _randomize_pyrnn(layer, seed=5)
    m = layer.to_torch()
    for sfx in ("_l0", "_l0_reverse"):
        b_ih = getattr(m, "bias_ih" + sfx).detach().numpy()
        b_hh = getattr(m, "bias_hh" + sfx).detach().numpy()
        assert np.array_equal(b_ih, layer.params["bias" + sfx])
        assert np.array_equal(b_hh[:2 * H], np.zeros(2 * H, np.float32))
        assert np.array_equal(b_hh[2 * H:], layer.params["bias_hn" + sfx])
    lstm = _pyrnn_layer("lstm", "float32")
    m = lstm.to_torch()
    assert np.array_equal(m.bias_ih_l0.detach().numpy(), lstm.params["bias_l0"])
    assert not m.bias_hh_l0.detach().numpy().any()


def test_torch_pyrnn_torch_round_trip():
    m = _torch_module("gru", "float64", num_layers=2, bidirectional=True)
    _randomize_torch(m, seed=9)
    m2 = pyrnn.from_torch(m).to_torch()
    sd, sd2 = m.state_dict(), m2.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd:
        if k.startswith("weight"):
            assert torch.equal(sd[k], sd2[k]), k
    x, h0, _ = _inputs(m, "float64")
    _assert_outputs(_run_torch(m2, x, h0), _run_torch(m, x, h0), TOL["float64"])


def test_training_mode_and_dropout_carried():
    m = _torch_module("lstm", "float32", num_layers=2, dropout=0.3)
    m.train()
    layer = pyrnn.from_torch(m)
    assert layer.training and layer.dropout == pytest.approx(0.3)
    layer.eval()
    m2 = layer.to_torch()
    assert not m2.training and m2.dropout == pytest.approx(0.3)


def test_gru_reset_before_has_no_torch_equivalent():
    layer = pyrnn.GRU(3, 4)  # reset_after=False (default)
    with pytest.raises(ValueError, match="reset_after=False.*no PyTorch equivalent"):
        layer.to_torch()


def test_unsupported_modules_and_options():
    with pytest.raises(ValueError, match="proj_size"):
        pyrnn.from_torch(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match=r"torch.nn.GRU with dropout=1.0 has no pyrnn "
                                         r"equivalent \(pyrnn's dropout .* is in \[0, 1\)"):
        pyrnn.from_torch(torch.nn.GRU(3, 4, num_layers=2, dropout=1.0))
    with pytest.raises(ValueError, match="float16"):
        pyrnn.from_torch(torch.nn.GRU(3, 4).half())
    with pytest.raises(TypeError, match="Conv1d"):
        pyrnn.from_torch(torch.nn.Conv1d(3, 4, 2))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        pyrnn.from_torch(np.zeros(3))
    with pytest.raises(TypeError, match="must follow a torch.nn.Linear"):
        pyrnn.from_torch(torch.nn.Sequential(torch.nn.ReLU()))
    with pytest.raises(TypeError):
        pyrnn.interop.to_torch(pyrnn.LastStep())


@pytest.mark.parametrize("kw, missing, fill", [
    ({"elementwise_affine": False}, "weight and bias", "weight 1 / bias 0"),
    ({"bias": False}, "bias", "bias 0")])  # (its weight is kept: helper-171)
def test_layernorm_without_affine_parameters(kw, missing, fill):
    # With neither, it became float32 in a float64 model; it also trains parameters the torch
    # one lacks, which is now warned about.
    seq = torch.nn.Sequential(torch.nn.Linear(3, 4, dtype=torch.float64),
                              torch.nn.LayerNorm(4, dtype=torch.float64, **kw))
    with pytest.warns(UserWarning, match=f"LayerNorm has no {missing}: .* converted with {fill} "
                                         r"\(the same outputs\), but training updates"):
        model = pyrnn.from_torch(seq)
    assert model.layers[1].dtype == np.float64
    with pytest.warns(UserWarning):
        nested = pyrnn.from_torch(torch.nn.Sequential(seq[0], torch.nn.Sequential(seq[1])))
    assert nested.layers[1].layers[0].dtype == np.float64  # the whole model's dtype decides
    x = np.random.default_rng(0).standard_normal((5, 3))
    with torch.no_grad():
        want = seq(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(x), want, rtol=1e-12, atol=1e-12)


def test_missing_torch_gives_clear_import_error(monkeypatch):
    layer = pyrnn.LSTM(3, 4)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="pip install torch"):
        layer.to_torch()
    with pytest.raises(ImportError, match="pip install torch"):
        pyrnn.from_torch(object())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_linear_and_feedforward(dtype):
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(5, 3, dtype=TDT[dtype])
    dense = pyrnn.from_torch(lin)
    assert isinstance(dense, pyrnn.Dense) and dense.activation is None
    x = np.random.default_rng(0).standard_normal((4, 2, 5)).astype(dtype)
    with torch.no_grad():
        want = lin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(dense(x), want, **TOL[dtype])
    nob = pyrnn.from_torch(torch.nn.Linear(5, 3, bias=False, dtype=TDT[dtype]))
    assert not nob.bias

    emb = torch.nn.Embedding(10, 4, padding_idx=2, dtype=TDT[dtype])
    ln = torch.nn.LayerNorm(4, eps=1e-4, dtype=TDT[dtype])
    with torch.no_grad():
        ln.weight.copy_(torch.rand(4, generator=g, dtype=TDT[dtype]) + 0.5)
        ln.bias.copy_(torch.rand(4, generator=g, dtype=TDT[dtype]) - 0.5)
    seq = torch.nn.Sequential(emb, torch.nn.Dropout(0.2), ln,
                              torch.nn.Linear(4, 6, dtype=TDT[dtype]), torch.nn.Tanh(),
                              torch.nn.Linear(6, 2, dtype=TDT[dtype]), torch.nn.ReLU(),
                              torch.nn.Linear(2, 1, dtype=TDT[dtype]))
    seq.eval()
    model = pyrnn.from_torch(seq)
    assert [type(l).__name__ for l in model.layers] == \
        ["Embedding", "Dropout", "LayerNorm", "Dense", "Dense", "Dense"]
    assert [l.activation for l in model.layers[3:]] == ["tanh", "relu", None]
    assert model.layers[0].padding_idx == 2 and model.layers[2].eps == 1e-4
    assert not model.training
    idx = np.random.default_rng(1).integers(0, 10, size=(3, 5))
    with torch.no_grad():
        want = seq(torch.from_numpy(idx)).numpy()
    np.testing.assert_allclose(model.forward(idx), want, **TOL[dtype])
    # and back for the feed-forward pieces
    for layer, mod in ((model.layers[0], torch.nn.Embedding), (model.layers[2], torch.nn.LayerNorm),
                       (model.layers[1], torch.nn.Dropout)):
        assert isinstance(pyrnn.interop.to_torch(layer), mod)
    back = pyrnn.interop.to_torch(model.layers[3])
    assert isinstance(back, torch.nn.Sequential) and isinstance(back[1], torch.nn.Tanh)
    assert np.array_equal(back[0].weight.detach().numpy(), seq[3].weight.detach().numpy())


def test_sequential_with_recurrent_layer():
    gru = torch.nn.GRU(4, 6, batch_first=True, bidirectional=True)
    seq = torch.nn.Sequential(gru)
    model = pyrnn.from_torch(seq)
    assert isinstance(model, pyrnn.Sequential) and isinstance(model.layers[0], pyrnn.GRU)
    x = np.random.default_rng(2).standard_normal((2, 5, 4)).astype(np.float32)
    with torch.no_grad():
        want = gru(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(model.forward(x), want, **TOL["float32"])
    with pytest.raises(ValueError, match="batch_first"):
        pyrnn.from_torch(torch.nn.Sequential(torch.nn.LSTM(4, 6)))


# ---- training after the bias collapse (README, pyrnn.interop docstring) -----------------------

def _train_both(topt, tkw, popt, kw_weights, kw_biases, steps=4):
    """torch LSTM and its pyrnn copy trained side by side on the same loss; pyrnn's bias_l*
    get their own optimizer. Returns the largest parameter difference afterwards."""
    torch.manual_seed(0)
    m = torch.nn.LSTM(3, 4, bidirectional=True).double()
    p = pyrnn.from_torch(m)
    to = topt(m.parameters(), **tkw)
    params = list(p.parameters())
    ow = popt([q for q in params if not q.name.startswith("bias_l")], **kw_weights)
    ob = popt([q for q in params if q.name.startswith("bias_l")], **kw_biases)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        x = rng.standard_normal((5, 2, 3))
        to.zero_grad()
        y, _ = m(torch.tensor(x))
        (y ** 2).sum().backward()
        to.step()
        p.zero_grad()
        out, _ = p(x)
        p.backward(2 * out)
        ow.step()
        ob.step()
    back = pyrnn.from_torch(m)
    return max(float(np.abs(back.params[k] - p.params[k]).max()) for k in p.params)


def test_collapsed_bias_trains_at_half_torchs_rate():
    """Same outputs and gradients, but torch steps both of its biases: with the same settings
    the collapsed bias falls behind; twice the learning rate on it matches torch (weight decay
    halved for SGD and AdamW), as the docs say."""
    from pyrnn import optim
    tsgd, tadam, tadamw = torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW
    assert _train_both(tsgd, dict(lr=0.05), optim.SGD, dict(lr=0.05), dict(lr=0.05)) > 1e-3
    assert _train_both(tadam, dict(lr=0.01), optim.Adam, dict(lr=0.01), dict(lr=0.01)) > 1e-3
    sgd = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)
    assert _train_both(tsgd, sgd, optim.SGD, sgd, dict(sgd, lr=0.1, weight_decay=0.05)) < 1e-12
    assert _train_both(tadam, dict(lr=0.01, amsgrad=True), optim.Adam,
                       dict(lr=0.01, amsgrad=True), dict(lr=0.02, amsgrad=True)) < 1e-12
    adamw = dict(lr=0.01, weight_decay=0.1)
    assert _train_both(tadamw, adamw, optim.AdamW, adamw, dict(lr=0.02, weight_decay=0.05)) < 1e-12
    rms = dict(lr=0.01, momentum=0.5, centered=True)
    assert _train_both(torch.optim.RMSprop, rms, optim.RMSprop, rms, dict(rms, lr=0.02)) < 1e-12


def test_each_layers_mode_is_carried_over():
    # from_torch reset every layer to the container's mode (a torch Dropout in eval mode came
    # back active), and Linear / Embedding / LayerNorm (both ways) came back training.
    seq = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5), torch.nn.LayerNorm(4),
                              torch.nn.Linear(4, 2), torch.nn.Tanh())
    seq.train()
    seq[1].eval()
    seq[2].eval()
    model = pyrnn.from_torch(seq)
    assert model.training
    assert [layer.training for layer in model.layers] == [True, False, False, True]
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    with torch.no_grad():
        want = seq(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(x), want, rtol=1e-5, atol=1e-6)
    for mod in (torch.nn.Linear(3, 2), torch.nn.Embedding(5, 2), torch.nn.LayerNorm(3)):
        assert not pyrnn.from_torch(mod.eval()).training
        assert pyrnn.from_torch(mod.train()).training
    for layer in (pyrnn.Dense(3, 2), pyrnn.Dense(3, 2, activation="relu"), pyrnn.Embedding(5, 2),
                  pyrnn.LayerNorm(3)):
        m = layer.eval().to_torch() if hasattr(layer, "to_torch") else \
            pyrnn.interop.to_torch(layer.eval())
        assert not any(x.training for x in m.modules())
        m = pyrnn.interop.to_torch(layer.train())
        assert all(x.training for x in m.modules())


def test_non_default_layer_options_survive_the_round_trip():
    # Dropout's p, Embedding's padding_idx and LayerNorm's eps, each off its default: carried
    # to the torch module and back (a default silently replacing them changes the outputs).
    layers = [pyrnn.Dropout(0.2), pyrnn.Embedding(5, 3, padding_idx=0, seed=0),
              pyrnn.LayerNorm(4, eps=1e-3)]
    mods = [pyrnn.interop.to_torch(layer) for layer in layers]
    assert mods[0].p == 0.2 and mods[1].padding_idx == 0 and mods[2].eps == 1e-3
    back = [pyrnn.from_torch(m) for m in mods]
    assert back[0].p == 0.2 and back[1].padding_idx == 0 and back[2].eps == 1e-3
    assert pyrnn.from_torch(torch.nn.Dropout(0.3)).p == 0.3


def test_torch_modules_pyrnn_cannot_match_are_refused():
    with pytest.raises(ValueError, match="max_norm, sparse or scale_grad_by_freq"):
        pyrnn.from_torch(torch.nn.Embedding(5, 3, max_norm=1.0))
    # A LayerNorm over more than the last axis: a clear message, not a NumPy broadcast error.
    with pytest.raises(ValueError, match=r"LayerNorm over \(2, 4\) is not supported: .*last "
                                         r"axis only"):
        pyrnn.from_torch(torch.nn.LayerNorm((2, 4)))


# ---- from a hunt (helper-134) -------------------------------------------------------------------

def test_activations_are_matched_by_class_not_name():
    nn = torch.nn

    class Tanh(nn.Module):  # the user's own module, named as torch's
        def forward(self, x):
            return 2.0 * torch.tanh(x)

    with pytest.raises(TypeError, match="does not support torch module Tanh"):
        pyrnn.from_torch(nn.Sequential(nn.Linear(3, 2), Tanh()))  # was Dense(tanh): x 0.5

    class MyReLU(nn.ReLU):  # a subclass adding nothing is fine, as for the other modules
        pass

    tm = nn.Sequential(nn.Linear(3, 2), MyReLU()).eval()
    pm = pyrnn.from_torch(tm)
    assert pm.layers[0].activation == "relu" and len(pm.layers) == 1
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(pm(x), tm(torch.from_numpy(x)).detach().numpy(), rtol=1e-6)


def test_modules_with_hooks_are_refused():
    # A hook changes what the module computes, as an overridden forward: converted silently.
    for register in (lambda m: m.register_forward_hook(lambda mod, inp, out: 2 * out),
                     lambda m: m.register_forward_pre_hook(lambda mod, inp: (inp[0] + 1,))):
        lin = torch.nn.Linear(3, 2)
        handle = register(lin)
        for module in (lin, torch.nn.Sequential(lin)):
            with pytest.raises(TypeError, match=r"Linear has forward (pre-)?hooks registered; "
                                                "pyrnn would not run them"):
                pyrnn.from_torch(module)
        handle.remove()
        pyrnn.from_torch(lin)
