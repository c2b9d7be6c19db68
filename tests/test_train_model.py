"""Sequential: forward/backward of whole models against the same model in PyTorch, and the
fit / evaluate / predict loop (history, seeding, progress output, callbacks, NaN safety)."""
import copy
import os
import warnings

import numpy as np
import pytest

import pyrnn
from pyrnn import callbacks, losses, optim

from duck_layer import ScaleLayer

torch = pytest.importorskip("torch")


def copy_gru_to_torch(gru, tgru):
    """pyrnn GRU(reset_after=True) -> torch.nn.GRU: b_ih = bias, b_hh = (0, 0, bias_hn)."""
    H = gru.hidden_size
    with torch.no_grad():
        for name, p in gru.params.items():
            sfx = name[name.index("_l"):]
            if name.startswith("weight"):
                getattr(tgru, name).copy_(torch.tensor(p))
            elif name.startswith("bias_hn"):
                bhh = torch.zeros(3 * H, dtype=torch.float64)
                bhh[2 * H:] = torch.tensor(p)
                getattr(tgru, "bias_hh" + sfx).copy_(bhh)
            else:
                getattr(tgru, "bias_ih" + sfx).copy_(torch.tensor(p))


def copy_lstm_to_torch(lstm, tlstm):
    with torch.no_grad():
        for name, p in lstm.params.items():
            if name.startswith("weight"):
                getattr(tlstm, name).copy_(torch.tensor(p))
            else:
                sfx = name[len("bias"):]
                getattr(tlstm, "bias_ih" + sfx).copy_(torch.tensor(p))
                getattr(tlstm, "bias_hh" + sfx).zero_()


def test_language_model_stack_matches_torch():
    # Embedding -> GRU -> LayerNorm -> Dense(tanh) -> Dropout(eval-free p=0) -> Dense, per-step
    # cross-entropy with ignored padding: loss and every gradient.
    rng = np.random.default_rng(0)
    V, E, H, N, T = 11, 5, 6, 3, 7
    f64 = dict(dtype="float64")
    model = pyrnn.Sequential([
        pyrnn.Embedding(V, E, seed=0, **f64),
        pyrnn.GRU(E, H, batch_first=True, reset_after=True, seed=1, **f64),
        pyrnn.LayerNorm(H, **f64),
        pyrnn.Dense(H, H, activation="tanh", seed=2, **f64),
        pyrnn.Dropout(0.0),
        pyrnn.Dense(H, V, seed=3, **f64),
    ])
    model.layers[2].params["weight"][:] = rng.uniform(0.5, 1.5, H)
    model.layers[2].params["bias"][:] = rng.uniform(-0.5, 0.5, H)
    x = rng.integers(0, V, (N, T))
    y = rng.integers(0, V, (N, T))
    y[1, 4:] = -100
    loss = losses.CrossEntropyLoss()
    value = loss(model(x), y)
    model.zero_grad()
    assert model.backward(loss.backward()) is None  # Embedding first: no input gradient

    emb = torch.nn.Embedding(V, E).double()
    gru = torch.nn.GRU(E, H, batch_first=True).double()
    ln = torch.nn.LayerNorm(H).double()
    d1, d2 = torch.nn.Linear(H, H).double(), torch.nn.Linear(H, V).double()
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(model.layers[0].params["weight"]))
        ln.weight.copy_(torch.tensor(model.layers[2].params["weight"]))
        ln.bias.copy_(torch.tensor(model.layers[2].params["bias"]))
        for d, layer in ((d1, model.layers[3]), (d2, model.layers[5])):
            d.weight.copy_(torch.tensor(layer.params["weight"]))
            d.bias.copy_(torch.tensor(layer.params["bias"]))
    copy_gru_to_torch(model.layers[1], gru)
    out = d2(torch.tanh(d1(ln(gru(emb(torch.tensor(x)))[0]))))
    tloss = torch.nn.functional.cross_entropy(out.permute(0, 2, 1), torch.tensor(y))
    tloss.backward()

    np.testing.assert_allclose(value, float(tloss.detach()), rtol=1e-10)
    g = model.grads
    np.testing.assert_allclose(g["0.weight"], emb.weight.grad.numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(g["1.weight_ih_l0"], gru.weight_ih_l0.grad.numpy(), rtol=1e-8,
                               atol=1e-12)
    np.testing.assert_allclose(g["1.weight_hh_l0"], gru.weight_hh_l0.grad.numpy(), rtol=1e-8,
                               atol=1e-12)
    np.testing.assert_allclose(g["1.bias_l0"], gru.bias_ih_l0.grad.numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(g["1.bias_hn_l0"], gru.bias_hh_l0.grad.numpy()[2 * H:], rtol=1e-8,
                               atol=1e-12)
    np.testing.assert_allclose(g["2.weight"], ln.weight.grad.numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(g["2.bias"], ln.bias.grad.numpy(), rtol=1e-8, atol=1e-12)
    for i, d in ((3, d1), (5, d2)):
        np.testing.assert_allclose(g[f"{i}.weight"], d.weight.grad.numpy(), rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(g[f"{i}.bias"], d.bias.grad.numpy(), rtol=1e-8, atol=1e-12)


def test_bidirectional_classifier_with_lengths_matches_torch():
    # LSTM(bidirectional) -> LastStep -> Dense, variable lengths vs packed sequences.
    rng = np.random.default_rng(1)
    N, T, C, H = 4, 6, 3, 5
    model = pyrnn.Sequential([
        pyrnn.LSTM(C, H, batch_first=True, bidirectional=True, dtype="float64", seed=0),
        pyrnn.LastStep(),
        pyrnn.Dense(2 * H, 2, dtype="float64", seed=1),
    ])
    x = rng.standard_normal((N, T, C))
    lengths = np.array([6, 3, 1, 5])
    y = rng.standard_normal((N, 2))
    loss = losses.MSELoss()
    value = loss(model(x, lengths=lengths), y)
    dx = model.backward(loss.backward())

    lstm = torch.nn.LSTM(C, H, batch_first=True, bidirectional=True).double()
    dense = torch.nn.Linear(2 * H, 2).double()
    copy_lstm_to_torch(model.layers[0], lstm)
    with torch.no_grad():
        dense.weight.copy_(torch.tensor(model.layers[2].params["weight"]))
        dense.bias.copy_(torch.tensor(model.layers[2].params["bias"]))
    xt = torch.tensor(x, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=True,
                                                     enforce_sorted=False)
    _, (hn, _) = lstm(packed)
    out = dense(torch.cat([hn[0], hn[1]], dim=1))
    tloss = torch.nn.functional.mse_loss(out, torch.tensor(y))
    tloss.backward()
    np.testing.assert_allclose(value, float(tloss.detach()), rtol=1e-10)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-8, atol=1e-12)
    for name in ("weight_ih_l0", "weight_hh_l0", "weight_ih_l0_reverse", "weight_hh_l0_reverse"):
        np.testing.assert_allclose(model.grads["0." + name], getattr(lstm, name).grad.numpy(),
                                   rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(model.grads["0.bias_l0_reverse"],
                               lstm.bias_ih_l0_reverse.grad.numpy(), rtol=1e-8, atol=1e-12)


def test_sequential_structure_and_errors():
    with pytest.raises(ValueError, match="batch_first=True"):
        pyrnn.Sequential([pyrnn.GRU(3, 4)])
    with pytest.raises(TypeError, match="not a pyrnn layer"):
        pyrnn.Sequential([lambda x: x])
    with pytest.raises(TypeError, match="list"):
        pyrnn.Sequential(pyrnn.Dense(2, 2))
    model = pyrnn.Sequential([pyrnn.Dense(3, 4), pyrnn.Dense(4, 2)])
    names = [p.name for p in model.parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert model.num_parameters() == 3 * 4 + 4 + 4 * 2 + 2
    model.eval()
    assert all(not layer.training for layer in model.layers)
    model.train()
    assert all(layer.training for layer in model.layers)
    model.layers.append(pyrnn.GRU(2, 2))  # a direct edit of the list is checked at forward
    with pytest.raises(ValueError, match="batch_first"):
        model(np.zeros((1, 3)))


def test_a_layer_used_twice_is_refused():
    # A layer keeps one forward's cache: Sequential([d, d]) once ran, and its backward took the
    # first use through the second use's activations (d x off by 0.1, d weight by 1.9, no error).
    d = pyrnn.Dense(4, 4, "tanh", dtype="float64", seed=0)
    same = r"layer {} \(Dense\) is the same object as layer {}: a layer keeps one forward's cache"
    with pytest.raises(ValueError, match=same.format(1, 0)):
        pyrnn.Sequential([d, d])
    with pytest.raises(ValueError, match=same.format(1, r"0\.0")):
        pyrnn.Sequential([pyrnn.Sequential([d]), d])
    inner = pyrnn.Sequential([pyrnn.Dense(4, 4)])
    with pytest.raises(ValueError, match=r"layer 1 \(Sequential\) is the same object as layer 0"):
        pyrnn.Sequential([inner, inner])
    model = pyrnn.Sequential([d])
    with pytest.raises(ValueError, match="same object"):
        model.add(d)
    with pytest.raises(ValueError, match="layer 1 is the Sequential itself"):
        model.add(model)
    assert model.layers == [d]  # a refused add leaves the model as it was
    model.layers.append(d)  # a direct edit of the list is checked at forward
    with pytest.raises(ValueError, match="same object"):
        model(np.ones((2, 4)))
    model.layers.pop()
    # Independent copies are the supported way, and give torch's gradients.
    twin = pyrnn.Sequential([d, copy.deepcopy(d)])
    x = np.random.default_rng(0).standard_normal((3, 4))
    lin = torch.nn.Linear(4, 4).double()
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(d.params["weight"]))
        lin.bias.copy_(torch.from_numpy(d.params["bias"]))
    xt = torch.from_numpy(x).requires_grad_(True)
    torch.tanh(lin(torch.tanh(lin(xt)))).sum().backward()
    y = twin(x)
    dx = twin.backward(np.ones_like(y))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    total = twin.layers[0].grads["weight"] + twin.layers[1].grads["weight"]
    np.testing.assert_allclose(total, lin.weight.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_a_recurrent_layer_after_laststep_is_refused():
    # LastStep gives (N, F): a recurrent layer after it once took that as ONE unbatched
    # sequence whose steps were the samples (results depending on how data is batched).
    x = np.zeros((2, 5, 3), np.float32)
    model = pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True), pyrnn.LastStep(),
                              pyrnn.GRU(4, 2, batch_first=True)])
    with pytest.raises(ValueError, match=r"layer 2 \(GRU\(4, 2, batch_first=True\)\) needs a "
                       r"sequence \(N, T, F\), but the layers before it give shape \(2, 4\)"):
        model(x)
    # Array-likes still pass (the check reads their shape the way NumPy does).
    ok = pyrnn.Sequential([pyrnn.LSTM(2, 3, batch_first=True), pyrnn.LastStep(), pyrnn.Dense(3, 1)])
    assert ok.forward([[[1.0, 2.0], [3.0, 4.0]]]).shape == (1, 1)
    nested = pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True), pyrnn.LastStep(),
                               pyrnn.Sequential([pyrnn.LSTM(4, 2, batch_first=True)])])
    # (named as the layer it is, not as the user's x)
    with pytest.raises(ValueError, match=r"layer 2 \(a nested Sequential\) needs a sequence "
                                         r"\(N, T, F\), but the layers before it give shape "
                                         r"\(2, 4\)"):
        nested(x)


def regression_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5, 2)).astype(np.float32)
    y = x.sum(axis=(1, 2))[:, None] * 0.3
    return x, y


def small_model(seed=0):
    return pyrnn.Sequential([pyrnn.GRU(2, 8, batch_first=True, seed=seed), pyrnn.LastStep(),
                             pyrnn.Dense(8, 1, seed=seed + 1)])


def test_fit_history_seeding_and_evaluate():
    x, y = regression_data()
    runs = []
    for _ in range(2):
        m = small_model()
        h = m.fit(x, y, loss="mse", optimizer=optim.Adam(m.parameters(), 0.01), epochs=3,
                  batch_size=16, validation_data=(x[:16], y[:16]), verbose=0, seed=3)
        runs.append((h, m))
    (h, m), (h2, _) = runs
    assert set(h) == {"loss", "val_loss"} and len(h["loss"]) == 3
    assert h == h2  # same seeds: same shuffles, same numbers
    assert h["loss"][-1] < h["loss"][0]
    assert m.history is h
    # evaluate: one mean over all samples, independent of the batch size.
    full = losses.MSELoss()(m.predict(x), y)
    assert m.evaluate(x, y, loss="mse", batch_size=7) == pytest.approx(full, rel=1e-6)
    assert m.evaluate(x, y, batch_size=64) == pytest.approx(full, rel=1e-6)  # fit's loss
    assert m.predict(x, batch_size=5).shape == (64, 1)
    np.testing.assert_allclose(m.predict(x, batch_size=5), m.predict(x, batch_size=64),
                               rtol=1e-6, atol=1e-7)
    m3 = small_model()
    h3 = m3.fit(x, y, loss="mse", optimizer="adam", epochs=3, batch_size=16, verbose=0,
                seed=4)
    assert h3["loss"] != h["loss"]


def test_fit_classification_reports_accuracy_and_lengths():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 6, 3)).astype(np.float32)
    lengths = rng.integers(1, 7, 60)
    y = (x[np.arange(60), lengths - 1, 0] > 0).astype(np.int64)
    m = pyrnn.Sequential([pyrnn.LSTM(3, 8, batch_first=True, seed=0), pyrnn.LastStep(),
                          pyrnn.Dense(8, 2, seed=1)])
    h = m.fit(x, y, loss=losses.CrossEntropyLoss(), optimizer=optim.Adam(m.parameters(), 0.03),
              epochs=8, batch_size=20, lengths=lengths, verbose=0, seed=0,
              validation_data=(x, y, lengths))
    assert set(h) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert h["accuracy"][-1] > 0.8
    r = m.evaluate(x, y, loss="cross_entropy", lengths=lengths, return_dict=True)
    assert set(r) == {"loss", "accuracy"} and r["accuracy"] == pytest.approx(h["val_accuracy"][-1])


def test_fit_output_plain_lines_and_tqdm(capsys, monkeypatch):
    x, y = regression_data(16)
    m = small_model()
    m.fit(x, y, loss="mse", optimizer="sgd", epochs=2, batch_size=8, verbose=True)
    out = capsys.readouterr().out
    assert "Epoch 1/2 - loss:" in out and "Epoch 2/2" in out  # not a terminal: plain lines
    m.fit(x, y, loss="mse", optimizer="sgd", epochs=2, batch_size=8, verbose=0)
    assert capsys.readouterr().out == ""
    pytest.importorskip("tqdm")
    import pyrnn.model as model_mod
    monkeypatch.setattr(model_mod, "_isatty", lambda: True)
    m.fit(x, y, loss="mse", optimizer="sgd", epochs=1, batch_size=8, verbose=1)
    out = capsys.readouterr()
    assert "2/2" in out.out + out.err  # tqdm's batch counter


def test_fit_rejects_non_finite_data():
    x, y = regression_data(16)
    m = small_model()
    bad = x.copy()
    bad[3, 2, 1] = np.nan
    with pytest.raises(ValueError, match=r"x contains NaN or Inf.*\(3, 2, 1\)"):
        m.fit(bad, y, loss="mse", optimizer="sgd", epochs=1, verbose=0)
    ybad = y.copy()
    ybad[0] = np.inf
    with pytest.raises(ValueError, match="y contains NaN"):
        m.fit(x, ybad, loss="mse", optimizer="sgd", epochs=1, verbose=0)
    with pytest.raises(ValueError, match="validation"):
        m.fit(x, y, loss="mse", optimizer="sgd", epochs=1, verbose=0,
              validation_data=(bad, y))
    with pytest.raises(ValueError, match="samples"):
        m.fit(x, y[:5], loss="mse", optimizer="sgd", epochs=1, verbose=0)
    with pytest.raises(ValueError, match="lengths"):
        m.fit(x, y, loss="mse", optimizer="sgd", epochs=1, verbose=0, lengths=np.full(16, 9))


def test_fit_diverging_restores_last_good_weights():
    # Linear regression with a learning rate far too large diverges to inf within a few steps.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32) * 10
    y = rng.standard_normal((64, 1)).astype(np.float32)
    m = pyrnn.Sequential([pyrnn.Dense(4, 1, seed=0)])
    seen = []

    class Record(callbacks.Callback):
        def on_batch_begin(self, batch, logs=None):
            seen.append([p.data.copy() for p in self.model.parameters()])

    with pytest.raises(RuntimeError, match="made the weights non-finite") as err:
        m.fit(x, y, loss="mse", optimizer=optim.SGD(m.parameters(), lr=50.0), epochs=50,
              batch_size=8, verbose=0, callbacks=[Record()], shuffle=False)
    assert len(seen) >= 2
    # Restored: the weights at the start of the batch whose step overflowed (its loss was
    # still finite: the loss is summed in float64).
    for p, w in zip(m.parameters(), seen[-1]):
        np.testing.assert_array_equal(p.data, w)
    assert np.isfinite(m.evaluate(x[:8], y[:8], loss="mse"))
    assert isinstance(err.value.history, dict)


def test_fit_non_finite_loss_restores_weights_and_state_of_the_last_finite_batch():
    # Batch 2's inputs overflow the forward (10 * 3e38 in float32): its loss is Inf. Back to
    # the weights that gave batch 1's finite loss, and the optimizer's state before its step.
    x = np.ones((8, 1), np.float32)
    x[4:] = 3e38
    y = np.zeros((8, 1), np.float32)
    m = pyrnn.Sequential([pyrnn.Dense(1, 1, seed=0)])
    m.layers[0].params["weight"][...] = 10
    w0 = [p.data.copy() for p in m.parameters()]
    opt = optim.Adam(m.parameters(), lr=1e-3)
    with pytest.raises(RuntimeError, match=r"non-finite training loss \(inf\) at epoch 1, "
                                           r"batch 2.*restored to those of epoch 1, batch 1"):
        m.fit(x, y, loss="mse", optimizer=opt, epochs=1, batch_size=4, verbose=0,
              shuffle=False)
    for p, w in zip(m.parameters(), w0):
        np.testing.assert_array_equal(p.data, w)
    assert opt.steps == 0 and opt.state == [{}, {}]


@pytest.mark.parametrize("named", [False, True])
def test_fit_undoes_a_step_that_overflows_the_optimizer_state(named):
    # Inputs of 1e18 keep the loss finite (~1e36) but square the gradient past float32: Adam's
    # second moment became Inf, its update 0, and fit went on with that weight frozen for good
    # (later steps, any learning rate, any clip_norm). Now that step is undone, weights and
    # moments together, and the same optimizer goes on.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = rng.standard_normal((64, 1)).astype(np.float32)
    xb = x.copy()
    xb[40:48] *= 1e18  # batch 6
    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=1)])
    opt = "adam" if named else optim.Adam(m.parameters(), lr=1e-2)
    before = []

    class Record(callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            o = self.model.optimizer
            before.append(([p.data.copy() for p in self.model.parameters()],
                           o.state_dict(), o.steps))

    with pytest.raises(RuntimeError, match="batch 6 made the optimizer state non-finite"):
        m.fit(xb, y, loss="mse", optimizer=opt, epochs=1, batch_size=8, verbose=0,
              shuffle=False, callbacks=[Record()])
    opt = m.optimizer
    weights, state, steps = before[5]
    for p, w in zip(m.parameters(), weights):
        np.testing.assert_array_equal(p.data, w)
    assert opt.steps == steps == 5
    for got, want in zip(opt.state_dict()["state"], state["state"]):
        assert got.keys() == want.keys()
        for k in got:
            np.testing.assert_array_equal(got[k], want[k])
    opt.lr = 1e-2
    loss0 = m.evaluate(x, y, loss="mse")
    m.fit(x, y, loss="mse", optimizer=opt, epochs=5, batch_size=8, verbose=0)
    assert m.evaluate(x, y, loss="mse") < loss0
    assert all(np.isfinite(v).all() for st in opt.state for v in st.values()
               if isinstance(v, np.ndarray))


def test_a_fit_that_fails_at_once_keeps_the_optimizers_earlier_state():
    # The guard started from empty state dicts: a resumed fit failing on its first batch
    # "restored" an Adam that had run 4 steps to no moments at all.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3)).astype(np.float32)
    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    opt = optim.Adam(m.parameters(), lr=1e-2)
    m.fit(x, x[:, :1], loss="mse", optimizer=opt, epochs=2, batch_size=8, verbose=0)
    before = opt.state_dict()
    m.layers[0].params["weight"][...] = 10
    with pytest.raises(RuntimeError, match="non-finite training loss"):
        m.fit(np.full_like(x, 3e38), x[:, :1], loss="mse", optimizer=opt, batch_size=8,
              verbose=0, shuffle=False)
    after = opt.state_dict()
    assert after["steps"] == before["steps"] == 4
    for got, want in zip(after["state"], before["state"]):
        assert got.keys() == want.keys() and got["step"] == 4
        for k in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(got[k], want[k])


class _OddState(optim.Optimizer):
    """A custom optimizer keeping what the guard cannot copy or must not check: a lock, a
    big-endian array, a best-so-far of Inf, a tuple of arrays it updates in place."""

    def __init__(self, params, lr=0.01):
        self.lr = lr
        super().__init__(params)

    def _update(self, data, grad, st):
        import threading
        st.setdefault("lock", threading.Lock())
        st.setdefault("big_endian", np.zeros(2, ">f4"))
        st.setdefault("best", np.full(1, np.inf))
        pair = st.setdefault("pair", (np.zeros(1), np.zeros(1)))
        pair[0][0] += 1
        data -= self.lr * grad


class _DictState(optim.Optimizer):
    """torch's habit: state is a dict keyed by parameter."""

    def __init__(self, params, lr=0.01):
        self.lr = lr
        super().__init__(params)
        self.state = {}

    def step(self):
        for p in self.params:
            self.state.setdefault(p, {"n": 0})["n"] += 1
            p.data[...] -= self.lr * p.grad


@pytest.mark.parametrize("cls", [_OddState, _DictState])
def test_fit_guard_leaves_custom_optimizer_state_alone(cls):
    # These fits ran before the guard kept the optimizer's state; the guard must not refuse
    # them (it deep-copied a lock, read big-endian data natively, and took a deliberate Inf
    # for an overflow).
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 3)).astype(np.float32)
    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    opt = cls(m.parameters())
    hist = m.fit(x, x[:, :1], loss="mse", optimizer=opt, epochs=2, batch_size=8, verbose=0)
    assert len(hist["loss"]) == 2 and hist["loss"][1] < hist["loss"][0]
    if cls is _OddState:
        assert opt.state[0]["pair"][0][0] == 4  # updated in place, by reference: 4 steps


def test_fit_undoes_a_step_that_makes_the_weights_non_finite():
    # Finite loss and gradient, an update past float32: the weights become Inf at that step.
    x = np.full((4, 1), 100, np.float32)
    y = np.zeros((4, 1), np.float32)
    m = pyrnn.Sequential([pyrnn.Dense(1, 1, seed=0)])
    w0 = [p.data.copy() for p in m.parameters()]
    opt = optim.SGD(m.parameters(), lr=1e37, momentum=0.9)
    with pytest.raises(RuntimeError, match="batch 1 made the weights non-finite"):
        m.fit(x, y, loss="mse", optimizer=opt, epochs=1, batch_size=4, verbose=0)
    for p, w in zip(m.parameters(), w0):
        np.testing.assert_array_equal(p.data, w)
    assert opt.steps == 0 and opt.state == [{}, {}]  # as before the step: no momentum yet


@pytest.mark.parametrize("kw, restored", [({}, True), ({"restore_best": False}, False),
                                          ({"restore_best_weights": True}, True),  # Keras' name
                                          ({"restore_best_weights": False}, False)])
def test_early_stopping_restores_best_weights(kw, restored):
    m = pyrnn.Sequential([pyrnn.Dense(2, 1, seed=0)])
    es = callbacks.EarlyStopping(monitor="val_loss", patience=2, **kw)
    assert es.restore_best is restored
    es.set_model(m)
    es.on_train_begin()
    w = m.layers[0].params["weight"]
    w[...] = 1.0
    es.on_epoch_end(0, {"val_loss": 1.0})
    w[...] = 2.0
    es.on_epoch_end(1, {"val_loss": 1.5})
    assert not getattr(m, "stop_training", False)
    w[...] = 3.0
    es.on_epoch_end(2, {"val_loss": 1.2})
    assert m.stop_training and es.stopped_epoch == 2 and es.best_epoch == 0
    es.on_train_end()
    assert (w == (1.0 if restored else 3.0)).all()
    with pytest.raises(ValueError, match="val_loss"):
        es.on_epoch_end(3, {"loss": 1.0})


@pytest.mark.parametrize("patience, epochs_run", [(0, 2), (1, 2), (3, 4)])
def test_early_stopping_counts_patience_as_keras(patience, epochs_run):
    # Keras's docstring: patience=3 with no improvement after the first epoch runs 4 epochs
    # (pyrnn ran patience + 1 epochs without improvement: 5).
    m = pyrnn.Sequential([pyrnn.Dense(2, 1, seed=0)])
    es = callbacks.EarlyStopping(monitor="loss", patience=patience)
    es.set_model(m)
    es.on_train_begin()
    ran = 0
    for epoch in range(10):
        ran += 1
        es.on_epoch_end(epoch, {"loss": 1.0 if epoch == 0 else 2.0})
        if getattr(m, "stop_training", False):
            break
    assert ran == epochs_run and es.stopped_epoch == epochs_run - 1


def test_fit_takes_any_iterable_of_callbacks_but_not_one_callback():
    x, y = regression_data(16)
    m = small_model()
    seen = []

    class Count(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(epoch)

    m.fit(x, y, loss="mse", optimizer="sgd", epochs=2, batch_size=8, verbose=0,
          callbacks=(cb for cb in [Count()]))
    assert seen == [0, 1]
    with pytest.raises(TypeError, match="callbacks must be a list .* got Count"):
        m.fit(x, y, loss="mse", optimizer="sgd", epochs=1, verbose=0, callbacks=Count())


def test_checkpoint_creates_its_folder(tmp_path):
    # As Keras: a missing folder was a FileNotFoundError naming a hidden temporary file, after
    # the first epoch's training.
    x, y = regression_data(16)
    m = small_model()
    ck = callbacks.ModelCheckpoint(str(tmp_path / "ckpts" / "run1" / "ckpt-{epoch:02d}.pyrnn"),
                                   monitor="loss")
    m.fit(x, y, loss="mse", optimizer="adam", epochs=2, batch_size=8, verbose=0, callbacks=[ck])
    assert sorted(os.listdir(tmp_path / "ckpts" / "run1")) == ["ckpt-01.pyrnn", "ckpt-02.pyrnn"]


def test_predict_and_evaluate_keep_each_layers_mode():
    # They put every layer back in the model's mode: a Dropout the user froze with eval()
    # came back in training mode.
    x, y = regression_data(16)
    inner = pyrnn.Sequential([pyrnn.Dropout(0.5), pyrnn.Dense(4, 4, seed=2)])
    m = pyrnn.Sequential([pyrnn.LSTM(2, 4, batch_first=True, seed=1), pyrnn.LastStep(), inner,
                          pyrnn.Dense(4, 1, seed=3)])
    inner.layers[0].eval()

    def modes(model):
        return [layer.training for layer in model._with_nested()]

    before = modes(m)
    assert before == [True, True, True, True, False, True, True]
    m.predict(x)
    assert modes(m) == before
    m.evaluate(x, y, loss="mse")
    assert modes(m) == before
    m.eval()
    m.predict(x)
    assert not any(modes(m))
    # fit trains every layer and leaves the model training, as model.train() in PyTorch (README).
    m.fit(x, y, loss="mse", optimizer="sgd", epochs=1, batch_size=8, verbose=0)
    assert all(modes(m))


class _ModeElsewhere:
    """A custom layer keeping its mode in its own attribute (no `training`)."""

    def __init__(self):
        self.is_training = True

    def train(self, mode=True):
        self.is_training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def forward(self, x):
        return x

    def backward(self, d):
        return d

    def parameters(self):
        return iter(())

    def zero_grad(self):
        pass


def test_predict_restores_a_custom_layers_own_mode():
    # Only layers with a `training` attribute were restored: this one stayed in eval mode, and
    # fit's first validation pass left it there for every later epoch.
    x, y = regression_data(16)
    custom = _ModeElsewhere()
    m = pyrnn.Sequential([pyrnn.GRU(2, 4, batch_first=True, seed=0), pyrnn.LastStep(), custom,
                          pyrnn.Dense(4, 1, seed=1)])
    m.predict(x)
    assert custom.is_training
    m.fit(x, y, loss="mse", optimizer="adam", epochs=1, batch_size=8, verbose=0,
          validation_data=(x, y))
    assert custom.is_training


def test_early_stopping_and_checkpoint_in_fit(tmp_path):
    x, y = regression_data(32)
    m = small_model()
    es = callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=1e9)  # never improves
    ck = callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch}.pyrnn"), monitor="loss")
    h = m.fit(x, y, loss="mse", optimizer="adam", epochs=5, batch_size=8, verbose=0,
              callbacks=[es, ck])
    assert len(h["loss"]) == 2 and es.stopped_epoch == 1
    assert sorted(os.listdir(tmp_path)) == ["ckpt-1.pyrnn", "ckpt-2.pyrnn"]
    best = callbacks.ModelCheckpoint(str(tmp_path / "best.pyrnn"), monitor="loss",
                                     save_best_only=True)
    m.fit(x, y, loss="mse", optimizer="adam", epochs=3, batch_size=8, verbose=0,
          callbacks=[best])
    loaded = pyrnn.load(best.last_saved)
    assert isinstance(loaded, pyrnn.Sequential) and len(loaded.layers) == 3
    with pytest.raises(ValueError, match="val_loss"):
        m.fit(x, y, loss="mse", optimizer="adam", epochs=1, verbose=0,
              callbacks=[callbacks.EarlyStopping()])


def test_lambda_callback_hooks_order():
    x, y = regression_data(16)
    m = small_model()
    calls = []
    cb = callbacks.LambdaCallback(on_train_begin=lambda logs: calls.append("train_begin"),
                                  on_epoch_end=lambda e, logs: calls.append(("epoch", e)),
                                  on_batch_end=lambda b, logs: calls.append(("batch", b)),
                                  on_train_end=lambda logs: calls.append("train_end"))
    m.fit(x, y, loss="mse", optimizer="sgd", epochs=2, batch_size=8, verbose=0, callbacks=[cb])
    assert calls == ["train_begin", ("batch", 0), ("batch", 1), ("epoch", 0), ("batch", 0),
                     ("batch", 1), ("epoch", 1), "train_end"]


def test_on_train_end_gets_the_last_epochs_logs():
    # As Keras ("the output of the last call to on_epoch_end() is passed"): it got {}, and a
    # Keras callback reading logs["loss"] there raised KeyError (helper-133).
    x, y = regression_data(16)
    m = small_model()
    got = []
    cb = callbacks.LambdaCallback(on_epoch_end=lambda e, logs: got.append(dict(logs)),
                                  on_train_end=lambda logs: got.append(dict(logs)))
    h = m.fit(x, y, loss="mse", optimizer="sgd", epochs=2, verbose=0, callbacks=[cb],
              validation_data=(x, y))
    assert got[-1] == got[-2] and set(got[-1]) == {"loss", "val_loss"}
    assert got[-1]["loss"] == h["loss"][-1]
    got.clear()
    m.fit(x, y, loss="mse", optimizer="sgd", epochs=0, verbose=0, callbacks=[cb])
    assert got == [{}]  # no epoch ran


# ---- model structure: found by a hunt over Sequential, each failed before its fix -------------

def test_a_model_containing_itself_is_refused_everywhere():
    # Only forward refused it: to() looped until memory ran out, the rest hit RecursionError.
    m = pyrnn.Sequential([pyrnn.Dense(2, 2)])
    m.layers.append(m)
    x = np.zeros((3, 2), np.float32)
    for call in (lambda: m.to("cpu"), lambda: list(m.parameters()), lambda: m.train(),
                 lambda: m.zero_grad(), lambda: m.config(), lambda: m.device,
                 lambda: m.num_parameters(), lambda: m.predict(x), lambda: m(x)):
        with pytest.raises(ValueError, match="cannot contain itself"):
            call()
    assert "cannot contain itself" in repr(m)


def test_backward_after_a_forward_that_failed_partway_is_refused():
    # The layers before the failure held the failed forward's caches and the rest the last
    # good one's: backward mixed them (wrong gradients, no error).
    rng = np.random.default_rng(0)
    m = pyrnn.Sequential([pyrnn.Dense(2, 3, "tanh", dtype="float64", seed=0),
                          pyrnn.GRU(3, 3, batch_first=True, dtype="float64", seed=1),
                          pyrnn.LastStep(), pyrnn.Dense(3, 1, dtype="float64", seed=2)])
    x = rng.standard_normal((3, 4, 2))
    out = m(x, lengths=[4, 2, 3])
    with pytest.raises(ValueError):
        m(x, lengths=[4, 9, 3])  # the GRU refuses, after the Dense ran
    with pytest.raises(RuntimeError, match="last forward failed at layer 1"):
        m.backward(np.ones_like(out))
    assert not any(np.abs(g).max() for g in m.grads.values())
    out = m(x, lengths=[4, 2, 3])
    with pytest.raises(ValueError, match="Dense"):
        m(rng.standard_normal((3, 4, 5)))  # refused by layer 0: no cache changed

    m.backward(np.ones_like(out))


def test_laststep_backward_uses_its_forwards_direction_count():
    # A head shared with a unidirectional model, linked after the forward, changed LastStep's
    # direction count before backward: the gradients were wrong, without an error.
    x = np.random.default_rng(0).standard_normal((2, 4, 2))
    head = pyrnn.Sequential([pyrnn.LastStep(), pyrnn.Dense(6, 1, dtype="float64", seed=2)])
    m = pyrnn.Sequential([pyrnn.GRU(2, 3, batch_first=True, bidirectional=True,
                                    dtype="float64", seed=1), head])
    ref = copy.deepcopy(m)
    out = m(x)
    pyrnn.Sequential([pyrnn.GRU(2, 6, batch_first=True, dtype="float64"), head])
    dx = m.backward(np.ones_like(out))
    np.testing.assert_array_equal(dx, ref.backward(np.ones_like(ref(x))))
    for k in m.grads:
        np.testing.assert_array_equal(m.grads[k], ref.grads[k])


def test_a_refused_fit_leaves_the_model_as_it_was():
    # EarlyStopping refusing in on_train_begin left every layer training, stop_training reset
    # and evaluate()'s default loss switched to the refused fit's.
    x, y = regression_data(16)
    m = small_model()
    m.fit(x, y, loss="mse", optimizer="sgd", epochs=1, verbose=0)
    m.eval()
    m.stop_training = True
    with pytest.raises(ValueError, match="val_loss"):
        m.fit(x, y, loss=losses.CrossEntropyLoss(), optimizer="sgd", epochs=1, verbose=0,
              callbacks=[callbacks.EarlyStopping("val_loss")])
    assert not any(layer.training for layer in m._with_nested())
    assert m.stop_training is True
    assert type(m._fit_loss).__name__ == "MSELoss"


def test_the_input_checks_look_through_nested_models_and_dropout():
    # Float64 data beyond float32's range was refused only when the first layer itself was a
    # float32 layer: a nested model or a Dropout in front let it through (NaN results).
    x = np.full((4, 3, 2), 1e39)
    y = np.zeros((4, 1))
    for first in (lambda: pyrnn.Sequential([pyrnn.GRU(2, 3, batch_first=True)]),
                  lambda: pyrnn.Dropout(0.1)):
        layers = [first()] + ([pyrnn.GRU(2, 3, batch_first=True)]
                              if isinstance(first(), pyrnn.Dropout) else [])
        m = pyrnn.Sequential(layers + [pyrnn.LastStep(), pyrnn.Dense(3, 1)])
        for call in (lambda: m.predict(x), lambda: m.fit(x, y, loss="mse", optimizer="sgd",
                                                         verbose=0)):
            with pytest.raises(ValueError, match="beyond the float32 range"):
                call()


def test_a_refused_add_leaves_the_layers_as_they_were():
    # A TypeError (an earlier edit of `layers` reported by the link) left the layer appended.
    m = pyrnn.Sequential([pyrnn.Dense(2, 2)])
    m.layers.append("not a layer")
    d = pyrnn.Dense(2, 2)
    with pytest.raises(TypeError, match=r"layer 1 \(str\) is not a pyrnn layer"):
        m.add(d)
    assert m.layers[-1] == "not a layer" and len(m.layers) == 2
    m.layers.pop()
    m.add(d)
    assert m.layers[-1] is d


def test_a_refused_backward_checks_layers_inside_custom_wrappers():
    # Only the model's direct layers were checked: with the changed pyrnn layer inside a
    # duck-typed wrapper, the Dense after it had already accumulated gradients.
    from test_param_writes import _Duck  # wraps a pyrnn Dense

    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    w = _Duck()
    m = pyrnn.Sequential([w, pyrnn.Dense(3, 2, seed=1)])
    out = m(x)
    optim.SGD(w.parameters(), lr=0.1).step()
    with pytest.raises(RuntimeError, match="parameters were changed"):
        m.backward(np.ones_like(out))
    assert not any(np.abs(g).max() for g in m.grads.values())


@pytest.mark.parametrize("config, match", [
    ({"layers": [{"class": "My", "config": {}}]}, r"unknown layer class 'My' \(known: Dense"),
    ({"layers": [{"class": "Dense"}]}, r"each layer must be \{'class', 'config'\}"),
    ({}, r"a Sequential config needs a 'layers' list"),
    ({"layers": [{"class": "Sequential", "config": {"layers": 3}}]}, r"needs a 'layers' list")])
def test_from_config_names_what_is_wrong(config, match):
    # Bare KeyErrors ('My', 'config', 'layers') named neither the problem nor what is accepted.
    with pytest.raises(ValueError, match="Sequential.from_config: .*" + match):
        pyrnn.Sequential.from_config(config)


def test_from_config_takes_what_the_layers_take():
    # What each layer's constructor takes passes (seed, device, a tuple of layers, NumPy ints);
    # the file loader's stricter checks are not from_config's.
    m = pyrnn.Sequential.from_config({"layers": (
        {"class": "GRU", "config": {"input_size": 2, "hidden_size": 3, "num_layers": np.int64(2),
                                    "batch_first": True, "seed": 1}},
        {"class": "LastStep", "config": {}},
        {"class": "Dense", "config": {"in_features": 3, "out_features": 1, "seed": 0,
                                      "device": "cpu"}})})
    assert [type(layer).__name__ for layer in m.layers] == ["GRU", "LastStep", "Dense"]
    np.testing.assert_array_equal(m.layers[2].params["weight"],
                                  pyrnn.Dense(3, 1, seed=0).params["weight"])
    with pytest.raises(TypeError, match="colour"):
        pyrnn.Sequential.from_config({"layers": [{"class": "Dense", "config": {
            "in_features": 2, "out_features": 2, "colour": 1}}]})


def test_a_custom_first_layer_without_dtype_keeps_the_input_unchecked():
    # It may transform the input (here: scale it down), so the range of a later float32 layer
    # says nothing about the data given to the model.
    m = pyrnn.Sequential([ScaleLayer(1e-30), pyrnn.Dense(2, 1)])
    assert np.isfinite(m.predict(np.full((3, 2), 5e38))).all()


def test_backward_through_deep_nesting_stays_cheap():
    # Each level's check asked parameters() of its whole subtree, itself per level: at depth 40
    # one backward took 300x as long as before. Counted, not timed: distinctness walks per backward.
    calls = []
    real = pyrnn.Sequential._check_distinct
    m = pyrnn.Sequential([pyrnn.Dense(2, 2)])
    for _ in range(40):
        m = pyrnn.Sequential([m])
    y = m(np.ones((1, 2), np.float32))
    pyrnn.Sequential._check_distinct = lambda self: calls.append(1) or real(self)
    try:
        m.backward(np.ones_like(y))
    finally:
        pyrnn.Sequential._check_distinct = real
    assert len(calls) <= 2 * 41, len(calls)  # linear in the depth (each walk over a subtree)


# ---- callbacks: found by a hunt ---------------------------------------------------------------

def test_checkpoint_fields_nested_in_a_format_spec_are_checked_before_training(tmp_path):
    # "{loss:.{digits}f}" failed with a bare KeyError, "{epoch:0{}d}" with an IndexError, both
    # after the first epoch had trained.
    x, y = regression_data(16)
    m = small_model()
    with pytest.raises(ValueError, match="'val_digits' will not be in the epoch logs"):
        m.fit(x, y, loss="mse", optimizer="sgd", epochs=1, verbose=0, callbacks=[
            callbacks.ModelCheckpoint(str(tmp_path / "ck-{loss:.{val_digits}f}.pyrnn"), "loss")])
    with pytest.raises(ValueError, match="positional field"):
        callbacks.ModelCheckpoint(str(tmp_path / "ck-{epoch:0{}d}.pyrnn"))
    ck = callbacks.ModelCheckpoint(str(tmp_path / "ck-{epoch:{width}d}.pyrnn"), "loss")
    assert ck._fields == ["epoch", "width"]


def test_checkpoint_best_is_kept_across_fits(tmp_path):
    # on_train_begin reset best: a second fit overwrote the best file with a worse model.
    x, y = regression_data(16)
    m = small_model()
    ck = callbacks.ModelCheckpoint(str(tmp_path / "best.pyrnn"), "loss", save_best_only=True)
    m.fit(x, y, loss="mse", optimizer=optim.SGD(m.parameters(), 0.05), epochs=3, verbose=0,
          callbacks=[ck])
    best, saved = ck.best, (tmp_path / "best.pyrnn").read_bytes()
    for p in m.parameters():
        p.data[...] += 3.0  # far worse weights, barely trained below
    m.fit(x, y, loss="mse", optimizer=optim.SGD(m.parameters(), 1e-9), epochs=1, verbose=0,
          callbacks=[ck])
    assert ck.best == best and (tmp_path / "best.pyrnn").read_bytes() == saved


def test_a_callback_may_add_log_keys_for_later_ones():
    # As in Keras, a callback writing logs["val_max_err"] in on_epoch_end: EarlyStopping on it
    # was refused before training, and History (run first) never recorded it.
    x, y = regression_data(16)
    m = small_model()

    class MaxErr(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_max_err"] = float(np.abs(m.predict(x) - y).max())

    es = callbacks.EarlyStopping("val_max_err", patience=5)
    hist = m.fit(x, y, loss="mse", optimizer="sgd", epochs=2, verbose=0,
                 callbacks=[MaxErr(), es])
    assert len(hist["val_max_err"]) == 2 and es.best == min(hist["val_max_err"])
    with pytest.raises(ValueError, match="'val_max_err' will not be in the epoch logs"):
        m.fit(x, y, loss="mse", optimizer="sgd", epochs=1, verbose=0,
              callbacks=[callbacks.EarlyStopping("val_max_err"), MaxErr()])  # it runs after
    # A LambdaCallback may add keys too (it counted as a built-in: refused up front).
    lam = callbacks.LambdaCallback(on_epoch_end=lambda e, logs: logs.update(val_custom=1.0 / (e + 1)))
    hist = m.fit(x, y, loss="mse", optimizer="sgd", epochs=2, verbose=0,
                 callbacks=[lam, callbacks.EarlyStopping("val_custom", patience=3)])
    assert hist["val_custom"] == [1.0, 0.5]


# ---- behaviours found unchecked by mutation testing ---------------------------------------

def _dense_data(n=8):
    x = np.arange(2.0 * n).reshape(n, 2) / (2 * n)
    return x, x[:, :1] ** 2


def test_fit_shuffle_uses_the_documented_permutation():
    # shuffle=True draws the batch order from numpy.random.default_rng(seed).permutation(N):
    # the same as shuffle=False on the data put in that order (oracle), and not the same as
    # the unshuffled order.
    x, y = _dense_data()

    def run(xs, ys, shuffle):
        m = pyrnn.Sequential([pyrnn.Dense(2, 1, seed=0, dtype="float64")])
        m.fit(xs, ys, loss="mse", optimizer="sgd", batch_size=2, shuffle=shuffle, seed=3,
              verbose=0)
        return m.params["0.weight"].copy()

    perm = np.random.default_rng(3).permutation(len(x))
    shuffled = run(x, y, True)
    np.testing.assert_array_equal(shuffled, run(x[perm], y[perm], False))
    assert not np.array_equal(shuffled, run(x, y, False))


def test_a_named_optimizer_is_rebuilt_after_add():
    # The optimizer given by name is kept across fits only while it trains exactly the model's
    # parameters: after add() the new layer must train too.
    x, y = _dense_data()
    m = pyrnn.Sequential([pyrnn.Dense(2, 2, seed=0)])
    m.fit(x, y[:, [0, 0]], loss="mse", optimizer="sgd", epochs=1, verbose=0, shuffle=False)
    m.add(pyrnn.Dense(2, 1, seed=1))
    w = m.layers[1].params["weight"].copy()
    m.fit(x, y, loss="mse", optimizer="sgd", epochs=1, verbose=0, shuffle=False)
    assert len(m.optimizer.params) == 4
    assert not np.array_equal(m.layers[1].params["weight"], w)


def test_a_fit_after_an_early_stop_runs_all_its_epochs():
    # stop_training set by a callback ends that fit only; the next fit starts afresh.
    x, y = _dense_data()
    m = pyrnn.Sequential([pyrnn.Dense(2, 1, seed=0)])

    class StopNow(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    h = m.fit(x, y, loss="mse", optimizer="sgd", epochs=5, verbose=0, callbacks=[StopNow()])
    assert len(h["loss"]) == 1
    h = m.fit(x, y, loss="mse", optimizer="sgd", epochs=3, verbose=0)
    assert len(h["loss"]) == 3


def test_lengths_one_short_of_the_steps_are_masked():
    # lengths [T, T-1]: the last step of the second sequence is padding, out of the per-step
    # loss. Oracle: the mean of the squared errors over the valid steps of predict's output.
    rng = np.random.default_rng(0)
    T = 4
    x = rng.standard_normal((2, T, 2))
    y = rng.standard_normal((2, T, 1))
    y[1, T - 1] = 100.0  # a padding target that would dominate the loss
    lengths = np.array([T, T - 1])
    m = pyrnn.Sequential([pyrnn.GRU(2, 3, batch_first=True, seed=0, dtype="float64"),
                          pyrnn.Dense(3, 1, seed=1, dtype="float64")])
    pred = m.predict(x, lengths=lengths)
    valid = np.arange(T)[None, :] < lengths[:, None]
    want = ((pred - y) ** 2)[valid].mean()
    assert m.evaluate(x, y, loss="mse", lengths=lengths) == pytest.approx(want, rel=1e-12)


def test_fit_epoch_loss_with_reduction_sum_is_the_sum():
    # reduction="sum": the epoch loss is the sum over the epoch, as evaluate's. With lr=0 the
    # weights do not move, so the two see the same model (oracle: the numpy sum too).
    x, y = _dense_data()
    m = pyrnn.Sequential([pyrnn.Dense(2, 1, seed=0, dtype="float64")])
    loss = losses.MSELoss(reduction="sum")
    want = float(((m.predict(x) - y) ** 2).sum())
    assert m.evaluate(x, y, loss=loss, batch_size=3) == pytest.approx(want, rel=1e-12)
    h = m.fit(x, y, loss=loss, optimizer=optim.SGD(m.parameters(), lr=0.0), batch_size=3,
              verbose=0, shuffle=False)
    assert h["loss"][0] == pytest.approx(want, rel=1e-12)


def test_fit_with_zero_epochs_trains_nothing():
    # epochs=0 is allowed (as Keras): an empty history and the weights as they were.
    x, y = _dense_data()
    m = pyrnn.Sequential([pyrnn.Dense(2, 1, seed=0)])
    w = m.params["0.weight"].copy()
    assert m.fit(x, y, loss="mse", optimizer="sgd", epochs=0, verbose=0) == {}
    np.testing.assert_array_equal(m.params["0.weight"], w)


def test_fit_refuses_clip_norm_zero():
    # clip_norm must be positive: 0 would zero every gradient (documented: "a positive number").
    x, y = _dense_data()
    m = pyrnn.Sequential([pyrnn.Dense(2, 1, seed=0)])
    with pytest.raises(ValueError, match="clip_norm must be a positive number"):
        m.fit(x, y, loss="mse", optimizer="sgd", clip_norm=0, verbose=0)


def test_the_most_negative_layer_index_is_the_first_layer():
    # model[-len(model)] is model[0], as for a list; one further is an IndexError.
    m = pyrnn.Sequential([pyrnn.Dense(2, 3, seed=0), pyrnn.Dense(3, 1, seed=1)])
    assert m[-2] is m.layers[0]
    with pytest.raises(IndexError):
        m[-3]


def test_evaluate_accuracy_with_every_target_ignored_is_nan():
    # No counted target: accuracy is 0 / 0, NaN (not 0, which reads as "all wrong").
    x, _ = _dense_data()
    m = pyrnn.Sequential([pyrnn.Dense(2, 3, seed=0)])
    r = m.evaluate(x, np.full(len(x), -100), loss="cross_entropy", return_dict=True)
    assert np.isnan(r["accuracy"])


def _drive(cb, key, values, model=None):
    """Runs a callback over a scripted sequence of epoch values of `key`, as fit calls it
    (stopping when it sets stop_training). The model is only trained by the script."""
    m = model if model is not None else pyrnn.Sequential([pyrnn.Dense(2, 1, seed=0)])
    m.stop_training = False
    cb.set_model(m)
    cb.set_params({})
    cb.on_train_begin({})
    for epoch, value in enumerate(values):
        cb.on_epoch_end(epoch, {key: value})
        if m.stop_training:
            break
    cb.on_train_end({})
    return m


@pytest.mark.parametrize("monitor", ["acc", "accuracy", "val_accuracy"])
def test_early_stopping_auto_mode_maximises_accuracies(monitor):
    # Keras' mode "auto": "max" for a monitor naming an accuracy, so a rising accuracy is
    # improvement every epoch (best = last, no stop); "min" for anything else.
    es = callbacks.EarlyStopping(monitor, patience=0)
    assert es.mode == "max"
    _drive(es, monitor, [0.5, 0.6, 0.7])
    assert (es.best, es.best_epoch, es.stopped_epoch) == (0.7, 2, None)
    assert callbacks.EarlyStopping("val_loss").mode == "min"


@pytest.mark.parametrize("values, patience, min_delta, mode, want", [
    # a plateau is no improvement: patience 1 stops at the first repeat
    ([0.5, 0.5, 0.5], 1, 0.0, "auto", (0.5, 0, 1)),
    # each improvement resets the wait: two bad epochs never in a row, no stop
    ([0.5, 0.6, 0.4, 0.45, 0.3], 2, 0.0, "auto", (0.3, 4, None)),
    # mode max: a rise by less than min_delta is no improvement
    ([0.5, 0.55, 0.58], 1, 0.1, "max", (0.5, 0, 1)),
    # min_delta is taken as its absolute value (Keras): -0.1 acts as 0.1
    ([0.5, 0.45, 0.42], 1, -0.1, "auto", (0.5, 0, 1)),
    # NaN is never an improvement, also as the first value
    ([float("nan"), 0.5, 0.4], 5, 0.0, "auto", (0.4, 2, None)),
], ids=["plateau", "wait_reset", "max_min_delta", "negative_min_delta", "nan_first"])
def test_early_stopping_over_scripted_values(values, patience, min_delta, mode, want):
    # Oracle: Keras' rule, worked by hand: improved = value < best - |min_delta| (min mode)
    # or value > best + |min_delta| (max mode); `patience` epochs without one stop.
    es = callbacks.EarlyStopping("loss", patience=patience, min_delta=min_delta, mode=mode,
                                 restore_best=False)
    assert es.min_delta == abs(min_delta)
    _drive(es, "loss", values)
    assert (es.best, es.best_epoch, es.stopped_epoch) == want


def test_early_stopping_best_is_reset_by_each_fit():
    # A reused EarlyStopping starts each fit afresh (Keras' on_train_begin): a best from the
    # first fit must not stop the second at once.
    es = callbacks.EarlyStopping("loss", patience=1, restore_best=False)
    _drive(es, "loss", [0.1, 0.2])
    assert (es.best, es.stopped_epoch) == (0.1, 1)
    _drive(es, "loss", [0.5, 0.4, 0.3])
    assert (es.best, es.best_epoch, es.stopped_epoch) == (0.3, 2, None)


def test_early_stopping_refuses_negative_patience():
    with pytest.raises(ValueError, match="patience must be an int >= 0"):
        callbacks.EarlyStopping(patience=-1)


def test_early_stopping_restore_marks_the_weights_changed():
    # Restoring the best weights is a write to the parameters: a forward made before it can no
    # longer be differentiated (as after an optimizer step).
    m = pyrnn.Sequential([pyrnn.Dense(2, 1, seed=0)])
    es = callbacks.EarlyStopping("loss", patience=5)
    m.stop_training = False
    es.set_model(m)
    es.set_params({})
    es.on_train_begin({})
    es.on_epoch_end(0, {"loss": 1.0})
    m.layers[0].params["weight"][...] += 1.0
    es.on_epoch_end(1, {"loss": 2.0})
    m.train()
    m.forward(np.ones((3, 2), np.float32))
    es.on_train_end({})
    with pytest.raises(RuntimeError, match="parameters were changed"):
        m.backward(np.ones((3, 1), np.float32))


@pytest.mark.parametrize("values, saved", [
    ([float("nan"), 0.5, 0.4], ["m-2.pyrnn", "m-3.pyrnn"]),  # NaN is never the best
    ([0.5, 0.5, 0.5], ["m-1.pyrnn"]),  # a tie is no improvement: not saved again
], ids=["nan_first", "ties"])
def test_checkpoint_save_best_only_over_scripted_values(tmp_path, values, saved):
    ck = callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch}.pyrnn"), "loss",
                                   save_best_only=True)
    _drive(ck, "loss", values)
    assert sorted(os.listdir(tmp_path)) == saved
    assert ck.last_saved == str(tmp_path / saved[-1])
    assert ck.best == min(v for v in values if v == v)


def test_checkpoint_missing_monitor_is_refused_before_training(tmp_path):
    # save_best_only on val_loss without validation_data: refused at on_train_begin, so the
    # weights are as they were (not after a first epoch of training).
    x, y = _dense_data()
    m = pyrnn.Sequential([pyrnn.Dense(2, 1, seed=0)])
    w = m.params["0.weight"].copy()
    ck = callbacks.ModelCheckpoint(str(tmp_path / "m.pyrnn"), save_best_only=True)
    with pytest.raises(ValueError, match="'val_loss' will not be in the epoch logs"):
        m.fit(x, y, loss="mse", optimizer="sgd", epochs=2, verbose=0, callbacks=[ck])
    np.testing.assert_array_equal(m.params["0.weight"], w)
    assert os.listdir(tmp_path) == []


def test_checkpoint_refuses_a_positional_path_field():
    with pytest.raises(ValueError, match=r"positional field \{0\}"):
        callbacks.ModelCheckpoint("ckpt-{0}.pyrnn")


def test_weights_restored_by_the_guard_invalidate_the_last_forward():
    # Batch 2's loss is Inf: the weights go back to those before batch 1's step, so the
    # forward of batch 2 (made with the stepped weights) can no longer be differentiated.
    x = np.ones((8, 1), np.float32)
    x[4:] = 3e38
    m = pyrnn.Sequential([pyrnn.Dense(1, 1, seed=0)])
    m.layers[0].params["weight"][...] = 10
    with pytest.raises(RuntimeError, match="non-finite training loss"):
        m.fit(x, np.zeros((8, 1), np.float32), loss="mse", optimizer="sgd", batch_size=4,
              verbose=0, shuffle=False)
    with pytest.raises(RuntimeError, match="parameters were changed"):
        m.backward(np.ones((4, 1), np.float32))


class _ReshapingState(optim.Optimizer):
    """A custom optimizer whose per-parameter state changes between steps: step 1 adds
    "first", step 2 drops it, every step appends to a list in place; step 3 makes the weights
    Inf."""

    def _update(self, data, grad, st):
        n = st["n"] = st.get("n", 0) + 1
        st.setdefault("log", []).append(n)
        if n == 1:
            st["first"] = 1.0
        elif n == 2:
            del st["first"]
        else:
            data[...] = np.inf


def test_fit_guard_restores_custom_state_as_it_was_kept():
    # Oracle: the state after step 2, the last whole one (the keys it had then, and the list's
    # contents then, not the live list step 3 appended to).
    m = pyrnn.Sequential([pyrnn.Dense(1, 1, seed=0)])
    opt = _ReshapingState(m.parameters())
    with pytest.raises(RuntimeError, match="batch 3 made the weights non-finite"):
        m.fit(np.ones((12, 1)), np.zeros((12, 1)), loss="mse", optimizer=opt, batch_size=4,
              verbose=0, shuffle=False)
    assert opt.state == [{"n": 2, "log": [1, 2]}] * 2


def test_missing_targets_are_named():
    # y = None passed _prepare (predict's case): fit and evaluate failed on "'NoneType' object is
    # not subscriptable", and validation_data=(x, None) inside fit's own error message.
    m = pyrnn.Sequential([pyrnn.Dense(4, 1, seed=0)])
    x = np.random.default_rng(0).standard_normal((8, 4))
    kw = dict(loss="mse", optimizer="sgd", verbose=0)
    with pytest.raises(TypeError, match="^y is None: fit and evaluate need targets"):
        m.fit(x, None, **kw)
    with pytest.raises(TypeError, match="^y is None"):
        m.evaluate(x, None, loss="mse")
    with pytest.raises(TypeError, match="^validation y is None: validation_data"):
        m.fit(x, x[:, :1], validation_data=(x, None), **kw)
    assert m.predict(x).shape == (8, 1)


def test_lengths_need_a_layer_that_uses_them():
    # A Dense-only model took lengths= (checked against x's second axis) and ignored them.
    m = pyrnn.Sequential([pyrnn.Dense(4, 1, seed=0)])
    x = np.random.default_rng(0).standard_normal((8, 4))
    for call in (lambda: m.fit(x, x[:, :1], loss="mse", optimizer="sgd", verbose=0,
                               lengths=np.full(8, 2)),
                 lambda: m.evaluate(x, x[:, :1], loss="mse", lengths=np.full(8, 2)),
                 lambda: m.predict(x, lengths=np.full(8, 2))):
        with pytest.raises(ValueError, match="lengths= needs a recurrent layer or LastStep"):
            call()
    seq = pyrnn.Sequential([pyrnn.Sequential([pyrnn.LastStep()]), pyrnn.Dense(4, 1, seed=0)])
    assert seq.predict(np.ones((2, 3, 4)), lengths=[3, 1]).shape == (2, 1)  # nested: used


def test_lengths_are_checked_for_use_before_their_values():
    # (N, F) data: the values were checked against T = F first ("lengths[0] = 3 is outside
    # [1, 2] (sequence length T = 2)"), hiding that no layer uses them.
    m = pyrnn.Sequential([pyrnn.Dense(2, 1, seed=0)])
    with pytest.raises(ValueError, match="lengths= needs a recurrent layer or LastStep"):
        m.predict(np.ones((3, 2)), lengths=[3, 3, 3])


def test_padding_past_lengths_may_hold_anything():
    # The layers' promise (padding reaches no output or gradient) holds through fit / predict /
    # evaluate: NaN there was refused as bad data. With a Dense before the recurrent layer, a
    # padded NaN would otherwise reach the Dense's weight gradient (NaN * 0): it is zeroed.
    x, y = regression_data(16)
    lens = np.array([5, 3, 4, 1] * 4)
    pad = np.arange(5)[None, :] >= lens[:, None]
    dirty = x.copy()
    dirty[pad] = np.nan
    dirty[1, 4, 0] = np.inf
    clean = np.where(pad[..., None], 0, x).astype(np.float32)

    def model():
        return pyrnn.Sequential([pyrnn.Dense(2, 2, seed=3), pyrnn.GRU(2, 8, batch_first=True, seed=0),
                                 pyrnn.LastStep(), pyrnn.Dense(8, 1, seed=1)])
    runs = []
    for data in (dirty, clean):
        m = model()
        h = m.fit(data, y, lengths=lens, loss="mse", optimizer="adam", epochs=2, batch_size=4,
                  verbose=0, shuffle=False, validation_data=(data, y, lens))
        runs.append((h, m.predict(data, lengths=lens), m.evaluate(data, y, lengths=lens),
                     [np.array(p.data) for p in m.parameters()]))
    assert all(np.isfinite(v).all() for v in runs[0][0].values())
    assert runs[0][0] == runs[1][0] and runs[0][2] == runs[1][2]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    for a, b in zip(runs[0][3], runs[1][3]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.isnan(dirty).any()  # the caller's array is not cleaned in place
    # Within the lengths it is still refused, naming the first bad index.
    dirty[2, 3, 1] = np.nan
    with pytest.raises(ValueError, match=r"x contains NaN or Inf \(first at index \(2, 3, 1\), "
                                         r"within its lengths\)"):
        model().predict(dirty, lengths=lens)
    with pytest.raises(ValueError, match=r"x contains NaN or Inf \(first at index \(1, 3, 0\)\)"):
        model().predict(dirty)  # without lengths, every step counts


def test_padding_beyond_the_model_dtype_range_may_hold_anything_too():
    # float64 data for a float32 model: values past float32's range in the padding of x and of
    # per-step targets (np.empty's leftovers) were refused as out of range (helper-131); they
    # are padding like NaN, read as zeros. Within the lengths they are still refused.
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((4, 5, 2)), rng.standard_normal((4, 5, 1))
    lens = np.array([5, 3, 2, 4])
    pad = np.arange(5)[None, :] >= lens[:, None]
    dx, dy = x.copy(), y.copy()
    dx[pad] = 1e300
    dy[pad] = -1e39

    def run(xs, ys):
        m = pyrnn.Sequential([pyrnn.GRU(2, 3, batch_first=True, seed=0), pyrnn.Dense(3, 1, seed=1)])
        h = m.fit(xs, ys, lengths=lens, loss="mse", optimizer="adam", epochs=2, verbose=0,
                  shuffle=False, validation_data=(xs, ys, lens))
        return h, m.evaluate(xs, ys, lengths=lens), m.predict(xs, lengths=lens).tolist()
    got = run(dx, dy)
    assert got == run(np.where(pad[..., None], 0.0, x), np.where(pad[..., None], 0.0, y))
    assert all(np.isfinite(v).all() for v in got[0].values())
    dx[0, 4, 1] = 1e300  # within sequence 0's length
    with pytest.raises(ValueError, match=r"x has values beyond the float32 range of the model "
                                         r"\(the largest is 1e\+300, within its lengths\)"):
        run(dx, dy)
    dx[0, 4, 1] = 0.0
    dy[1, 0, 0] = 1e39
    with pytest.raises(ValueError, match=r"y has values beyond the float32 range of the model "
                                         r"\(the largest is 1e\+39, within its lengths\)"):
        run(dx, dy)


@pytest.mark.parametrize("loss, shape, fill", [
    ("mse", (4, 5, 1), np.nan), ("mse", (4, 5), np.nan), ("bce", (4, 5, 1), np.inf),
    ("custom", (4, 5, 1), np.nan)], ids=["mse", "mse-NT", "bce-inf", "no-mask-loss"])
def test_per_step_target_padding_may_hold_anything(loss, shape, fill):
    # y with NaN / Inf past each length was refused, though the loss masks those steps out; it
    # is read as zeros there, as x (a loss without mask= counts them, with a warning; BCE's
    # 0 * inf warned in every batch).
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 5, 2)), rng.uniform(0, 1, shape)
    lens = np.array([5, 3, 2, 4])
    pad = np.arange(5)[None, :] >= lens[:, None]
    dirty = y.copy()
    dirty[pad] = fill

    class NoMask(pyrnn.losses.MSELoss):  # a loss whose forward takes no mask=
        def forward(self, pred, target):
            return super().forward(pred, target)
    loss_obj = {"mse": "mse", "bce": "bce_with_logits", "custom": None}[loss]

    def run(targets):
        m = pyrnn.Sequential([pyrnn.GRU(2, 3, batch_first=True, seed=0, dtype="float64"),
                              pyrnn.Dense(3, 1, seed=1, dtype="float64")])
        lf = NoMask() if loss_obj is None else loss_obj
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            warnings.filterwarnings("ignore", "NoMask.forward takes no mask=")
            h = m.fit(x, targets, lengths=lens, loss=lf, optimizer="adam", epochs=2, verbose=0,
                      shuffle=False)
            return h, m.evaluate(x, targets, lengths=lens, loss=lf)
    got = run(dirty)
    assert got == run(np.where(pad.reshape(pad.shape + (1,) * (len(shape) - 2)), 0.0, y))
    assert all(np.isfinite(v).all() for v in got[0].values())
    dirty[(0, 4) + (0,) * (len(shape) - 2)] = np.inf  # within the lengths: refused
    with pytest.raises(ValueError, match=r"y contains NaN or Inf \(first at index \(0, 4"):
        run(dirty)


def test_target_padding_is_checked_against_the_predictions_dtype():
    # Against the input layer's: an Embedding-first model has none (1e300 in the padding went
    # to the loss, which refused it), a float64 GRU before a float32 head let it through, and
    # targets a float64 head takes were refused against a float32 first layer (helper-149).
    rng = np.random.default_rng(0)
    N, T, V = 8, 6, 10
    lens = rng.integers(1, T + 1, N)
    pad = np.arange(T)[None] >= lens[:, None]
    y = rng.standard_normal((N, T, 2))
    dirty = y.copy()
    dirty[pad] = 1e300
    ids, x = rng.integers(0, V, (N, T)), rng.standard_normal((N, T, 3))
    for make, xx in ((lambda: pyrnn.Sequential([pyrnn.Embedding(V, 3, seed=0),
                                                 pyrnn.GRU(3, 4, batch_first=True, seed=0),
                                                 pyrnn.Dense(4, 2, seed=0)]), ids),
                     (lambda: pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True, seed=0,
                                                          dtype="float64"),
                                                pyrnn.Dense(4, 2, seed=0)]), x)):
        assert make().evaluate(xx, dirty, loss="mse", lengths=lens) == \
            make().evaluate(xx, np.where(pad[..., None], 0.0, y), loss="mse", lengths=lens)
        make().fit(xx, dirty, loss="mse", optimizer="sgd", lengths=lens, verbose=0)
    m = pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True, seed=0), pyrnn.LastStep(),
                          pyrnn.Dense(4, 1, dtype="float64", seed=0)])
    big = rng.standard_normal((N, 1)) * 1e39  # within the float64 prediction's range
    assert np.isfinite(m.evaluate(x, big, loss="mse"))


def test_float_class_targets_in_the_padding_may_hold_anything():
    # Masked float class targets were still required to be whole numbers (helper-149).
    rng = np.random.default_rng(0)
    N, T = 8, 6
    x = rng.standard_normal((N, T, 3)).astype(np.float32)
    lens = rng.integers(1, T + 1, N)
    lens[0] = 2
    pad = np.arange(T)[None] >= lens[:, None]
    y = rng.integers(0, 3, (N, T)).astype(np.float32)
    m = pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True, seed=0), pyrnn.Dense(4, 3, seed=0)])
    want = m.evaluate(x, y, loss="cross_entropy", lengths=lens)
    for fill in (0.5, np.nan, -1.0):
        yy = y.copy()
        yy[pad] = fill
        assert m.evaluate(x, yy, loss="cross_entropy", lengths=lens) == want
    logits = rng.standard_normal((2, 3, 4))
    mask = np.array([[True, True, False], [True, True, True]])
    t = np.array([[1., 2., 0.5], [3., 0., 0.]])
    assert losses.CrossEntropyLoss()(logits, t, mask) == losses.CrossEntropyLoss()(
        logits, np.where(mask, t, 0.0), mask)
    t[1, 1] = 0.5  # counted: refused
    with pytest.raises(TypeError, match="class targets must be integers"):
        losses.CrossEntropyLoss()(logits, t, mask)


def test_token_id_padding_may_hold_anything_too():
    # README: with lengths the padding of x may hold anything; an Embedding refused a padding
    # id of -1 (or one past the vocabulary) even past every length (helper-146).
    def model():
        return pyrnn.Sequential([pyrnn.Embedding(10, 4, seed=0),
                                 pyrnn.GRU(4, 3, batch_first=True, seed=1), pyrnn.LastStep(),
                                 pyrnn.Dense(3, 2, seed=2)])
    lens = np.array([3, 1])
    clean = np.array([[1, 2, 3], [4, 0, 0]])
    y = np.array([0, 1])
    for pad in (-1, 10 ** 6):
        ids = clean.copy()
        ids[1, 1:] = pad
        a, b = model(), model()
        np.testing.assert_array_equal(a.predict(ids, lengths=lens), b.predict(clean, lengths=lens))
        assert a.evaluate(ids, y, loss="cross_entropy", lengths=lens) == \
            b.evaluate(clean, y, loss="cross_entropy", lengths=lens)
        ha = a.fit(ids, y, loss="cross_entropy", optimizer="adam", lengths=lens, verbose=0,
                   epochs=2, shuffle=False)
        hb = b.fit(clean, y, loss="cross_entropy", optimizer="adam", lengths=lens, verbose=0,
                   epochs=2, shuffle=False)
        assert ha == hb
        assert ids[1, 1] == pad  # the caller's array untouched
    ids = clean.copy()
    ids[1, 0] = -1  # within the length: refused, as before
    with pytest.raises(ValueError, match="Embedding index -1 is outside"):
        model().predict(ids, lengths=lens)


def test_sequence_targets_as_wide_as_the_steps_are_not_read_as_per_step():
    # y (N, 3) for LastStep -> Dense(H, 3) on T = 3 looked per-step: a NaN in a column past a
    # sample's length was accepted, and every such column of every sample zeroed, though the
    # (N, 3) prediction takes no mask (helper-142). The prediction's shape decides now.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 3, 2))
    lens = np.array([3, 2, 3, 1, 3, 3])
    y = rng.standard_normal((6, 3))
    m = pyrnn.Sequential([pyrnn.GRU(2, 4, batch_first=True, seed=1, dtype="float64"),
                          pyrnn.LastStep(), pyrnn.Dense(4, 3, seed=2, dtype="float64")])
    pred = m.predict(x, lengths=lens)
    assert m.evaluate(x, y, loss="mse", lengths=lens) == pytest.approx(
        float(((pred - y) ** 2).mean()), rel=1e-12)
    dirty = y.copy()
    dirty[1, 2] = np.nan  # past sample 1's length, but a target of its own
    for call in (lambda: m.evaluate(x, dirty, loss="mse", lengths=lens),
                 lambda: m.fit(x, dirty, loss="mse", optimizer="sgd", lengths=lens, verbose=0)):
        with pytest.raises(ValueError, match=r"y contains NaN or Inf \(first at index \(1, 2\)\)"):
            call()
    with pytest.raises(ValueError, match=r"validation y contains NaN or Inf"):
        m.fit(x, y, loss="mse", optimizer="sgd", lengths=lens, verbose=0,
              validation_data=(x, dirty, lens))
    big = y.copy()
    big[3, 1] = 1e300  # beyond float64? no: beyond a float32 model's range
    m32 = pyrnn.Sequential([pyrnn.GRU(2, 4, batch_first=True, seed=1), pyrnn.LastStep(),
                            pyrnn.Dense(4, 3, seed=2)])
    with pytest.raises(ValueError, match=r"y has values beyond the float32 range"):
        m32.evaluate(x, big, loss="mse", lengths=lens)
    # The question is asked with a forward of one sample: a model that cannot take x says so,
    # naming x, as fit's first-sample check does.
    bad = pyrnn.Sequential([pyrnn.GRU(5, 4, batch_first=True, seed=1), pyrnn.LastStep(),
                            pyrnn.Dense(4, 3, seed=2)])
    with pytest.raises(ValueError, match=r"x \(6, 3, 2\), checked on its first sample: .*"):
        bad.evaluate(x, dirty, loss="mse", lengths=lens)


@pytest.mark.parametrize("call", ["fit", "evaluate", "predict"])
def test_one_dimensional_data_for_a_dense_model_is_refused(call):
    # A 1-D x (3,) reached Dense as one unbatched sample when the batch covered it, and as a
    # wrong feature size (N = 3 samples of no features) otherwise (helper-142).
    m = pyrnn.Sequential([pyrnn.Dropout(0.1), pyrnn.Dense(3, 1, seed=0)])
    x, y = np.ones(3, np.float32), np.ones((3, 1), np.float32)
    kw = {"fit": dict(loss="mse", optimizer="sgd", verbose=0), "evaluate": dict(loss="mse"),
          "predict": {}}[call]
    args = (x,) if call == "predict" else (x, y)
    for bs in (1, 2, 32):
        with pytest.raises(ValueError, match=r"x: expected \(N, F\) samples-first input for "
                                             r"Dense\(3, 1\), got shape \(3,\)"):
            getattr(m, call)(*args, batch_size=bs, **kw)
    assert m(x).shape == (1,)  # a direct call takes an unbatched sample, as torch's Linear
    emb = pyrnn.Sequential([pyrnn.Embedding(5, 2, seed=0)])  # (N,) token ids: N samples
    assert emb.predict(np.array([0, 1, 4]), batch_size=2).shape == (3, 2)


def test_a_diverged_fit_does_not_keep_the_model_alive():
    # The error was raised from a local: the traceback's frame held it, a cycle that kept the
    # model, optimizer and data alive until a full gc run.
    import gc
    import weakref
    m = pyrnn.Sequential([pyrnn.Dense(4, 1, seed=0)])
    ref = weakref.ref(m)
    gc.disable()
    try:
        with pytest.raises(RuntimeError, match="non-finite"):
            m.fit(np.ones((8, 4), np.float32), np.full((8, 1), 1e30, np.float32), loss="mse",
                  optimizer=pyrnn.optim.SGD(m.parameters(), lr=1e38), verbose=0)
        del m
        assert ref() is None
    finally:
        gc.enable()


def test_a_custom_loss_class_is_not_kept_by_the_mask_check():
    # _takes_mask cached per loss class in a plain dict: every class ever used stayed alive.
    import gc
    import weakref

    def trial():
        class TrialLoss(pyrnn.losses.MSELoss):
            pass
        x, y = np.ones((2, 3, 2)), np.ones((2, 3, 1))
        m = pyrnn.Sequential([pyrnn.GRU(2, 1, batch_first=True, seed=0, dtype="float64")])
        m.fit(x, y, lengths=[3, 2], loss=TrialLoss(), optimizer="sgd", verbose=0)
        return weakref.ref(TrialLoss)
    ref = trial()
    gc.collect()  # (a class is always in a cycle: its __mro__)
    assert ref() is None


def test_flags_are_booleans_not_truthy_values():
    m = pyrnn.Sequential([pyrnn.Dense(4, 1, seed=0)])
    x = np.random.default_rng(0).standard_normal((8, 4))
    for bad in ("no", "0", 3, None, 1.0):
        with pytest.raises(TypeError, match="verbose must be True, False, 0, 1 or 2"):
            m.fit(x, x[:, :1], loss="mse", optimizer="sgd", verbose=bad)
    with pytest.raises(TypeError, match="return_dict must be True or False"):
        m.evaluate(x, x[:, :1], loss="mse", return_dict="yes")
    assert isinstance(m.evaluate(x, x[:, :1], loss="mse", return_dict=np.bool_(True)), dict)
    m.fit(x, x[:, :1], loss="mse", optimizer="sgd", verbose=np.int64(0))


# ---- from a hunt (helper-137, helper-134): Sequential composition --------------------------

def _bigru(**kw):
    return pyrnn.GRU(2, 3, batch_first=True, bidirectional=True, seed=0, **kw)


def test_laststep_after_a_dense_head_takes_every_feature_at_the_last_step():
    # After a per-step Dense on a bidirectional layer, LastStep(None) still split the head's
    # features into "directions" (the first half at len-1, the rest at step 0).
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    lens = np.array([5, 2, 4])
    gru, head = _bigru(), pyrnn.Dense(6, 4, seed=1)
    model = pyrnn.Sequential([gru, head, pyrnn.LastStep()])
    per_step = head(gru(x, lengths=lens)[0])
    np.testing.assert_array_equal(model(x, lengths=lens), per_step[np.arange(3), lens - 1])
    odd = pyrnn.Sequential([_bigru(), pyrnn.Dense(6, 3, seed=1), pyrnn.LastStep()])
    assert odd(x, lengths=lens).shape == (3, 3)  # (refused as "(N, T, 2*H) bidirectional")
    # Dropout and LayerNorm keep the halves: the reverse half is still taken at step 0.
    for mid in (pyrnn.Dropout(0.0), pyrnn.LayerNorm(6)):
        m = pyrnn.Sequential([_bigru(), mid, pyrnn.LastStep()])
        seq = mid(_bigru()(x, lengths=lens)[0])
        want = np.concatenate([seq[np.arange(3), lens - 1, :3], seq[:, 0, 3:]], axis=1)
        np.testing.assert_allclose(m(x, lengths=lens), want, rtol=1e-6)


def test_a_slice_keeps_the_direction_count_before_it(tmp_path):
    # model[1:] of [BiGRU, LastStep(), Dense] took the BiGRU's output as unidirectional.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    lens = np.array([5, 2, 4])
    model = pyrnn.Sequential([_bigru(), pyrnn.LastStep(), pyrnn.Dense(6, 1, seed=1)])
    whole = model(x, lengths=lens)
    enc, head = model[:1], model[1:]
    np.testing.assert_array_equal(head(enc(x, lengths=lens), lengths=lens), whole)
    mixed = pyrnn.Sequential([_bigru(), pyrnn.Dense(6, 6, seed=1), pyrnn.LastStep()])
    assert model[1:]._input_bidirectional and not mixed[2:]._input_bidirectional  # (Dense)
    # Nested into another model (which relinks its layers), it keeps it: alone, nested first,
    # and saved afterwards.
    outer = pyrnn.Sequential([head])
    h = enc(x, lengths=lens)
    np.testing.assert_array_equal(outer(h, lengths=lens), whole)
    np.testing.assert_array_equal(head(h, lengths=lens), whole)
    np.testing.assert_array_equal(model[1:][0:](h, lengths=lens), whole)  # a slice of a slice
    head.save(tmp_path / "head.pyrnn")  # and through a file
    loaded = pyrnn.load(tmp_path / "head.pyrnn")
    np.testing.assert_array_equal(loaded(h, lengths=lens), whole)
    assert "bidirectional_input" not in model.config()
    # An enclosing model's own recurrent layer before it still decides.
    uni = pyrnn.Sequential([pyrnn.GRU(2, 6, batch_first=True, seed=2), head])
    g = uni.layers[0](x, lengths=lens)[0]
    np.testing.assert_array_equal(uni(x, lengths=lens),
                                  head.layers[1](g[np.arange(3), lens - 1]))


def test_a_saved_sequential_config_with_unknown_or_bad_keys_is_refused(tmp_path):
    import json
    import struct
    import zlib
    from pyrnn import serialize
    pyrnn.Sequential([pyrnn.LastStep()]).save(tmp_path / "m.pyrnn")
    data = (tmp_path / "m.pyrnn").read_bytes()
    hlen = struct.unpack_from("<Q", data, 16)[0]
    header = json.loads(data[40:40 + hlen])
    for cfg, match in (({"bidirectional_input": 1}, "must be true or false"),
                       ({"extra": 1}, "unknown Sequential config keys")):
        h = json.loads(json.dumps(header))
        h["model"]["config"].update(cfg)
        hb = json.dumps(h).encode()
        (tmp_path / "bad.pyrnn").write_bytes(struct.pack(
            "<8sIIQQII", serialize.MAGIC, 1, 0, len(hb), 0, zlib.crc32(hb), zlib.crc32(b"")) + hb)
        with pytest.raises(ValueError, match=match):
            pyrnn.load(tmp_path / "bad.pyrnn")


def test_sequential_call_refuses_lengths_no_layer_uses():
    # fit / predict refused them; model(x, lengths=[99, -5, 0]) ignored them silently.
    dense = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    with pytest.raises(ValueError, match="lengths= needs a recurrent layer or LastStep"):
        dense(np.ones((3, 4, 3), np.float32), lengths=[99, -5, 0])
    # A nested Dense head of a recurrent model is called without them.
    model = pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True, seed=0), pyrnn.LastStep(),
                              pyrnn.Sequential([pyrnn.Dense(4, 2, seed=1)])])
    assert model(np.ones((3, 4, 3), np.float32), lengths=[4, 2, 1]).shape == (3, 2)


def test_sequential_backward_of_none_is_a_type_error_and_packed_input_is_named():
    m = pyrnn.Sequential([pyrnn.Dense(3, 2, seed=0), pyrnn.Dense(2, 1, seed=1)])
    m(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="dy must be a real numeric array"):
        m.backward(None)  # (was "Dense sits before a layer that passes no gradient back")
    from torch.nn.utils.rnn import pack_padded_sequence
    packed = pack_padded_sequence(torch.randn(2, 5, 3), torch.tensor([5, 3]), batch_first=True)
    with pytest.raises(TypeError, match="PackedSequence is not taken: pass the padded tensor"):
        pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True)])(packed)


@pytest.mark.parametrize("ids", [True, False])
def test_front_padded_data_with_lengths_warns(ids):
    # Keras' pad_sequences pads at the front by default; lengths= reads the first steps: the
    # model then read only padding, and the data past each length was ignored, silently.
    rng = np.random.default_rng(0)
    N, T = 6, 8
    lens = np.array([3, 5, 8, 2, 4, 6])
    if ids:
        model = pyrnn.Sequential([pyrnn.Embedding(10, 3, padding_idx=9, seed=0),
                                  pyrnn.GRU(3, 4, batch_first=True, seed=1), pyrnn.LastStep(),
                                  pyrnn.Dense(4, 1, seed=2)])
        post = np.full((N, T), 9)
        data = lambda n: rng.integers(1, 9, n)  # noqa: E731
    else:
        model = pyrnn.Sequential([pyrnn.GRU(2, 4, batch_first=True, seed=1), pyrnn.LastStep(),
                                  pyrnn.Dense(4, 1, seed=2)])
        post = np.zeros((N, T, 2), np.float32)
        data = lambda n: rng.standard_normal((n, 2)) + 3.0  # noqa: E731
    pre = post.copy()
    for i, L in enumerate(lens):
        v = data(L)
        post[i, :L] = v
        pre[i, T - L:] = v
    y = np.zeros((N, 1), np.float32)
    with pytest.warns(UserWarning, match=r"x looks padded at the front.*half or more of the sequences (two "
                                         r"or more steps )?shorter than T start"):
        model.predict(pre, lengths=lens)
    # one text whatever the batch (counts in it defeated the once-per-place filter: a new
    # warning and registry entry per call; helper-170)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        for k in range(3):
            model.predict(pre[k:], lengths=lens[k:])
    assert len(seen) == 1
    with pytest.warns(UserWarning, match=r"validation x looks padded at the front"):
        model.fit(post, y, lengths=lens, loss="mse", optimizer="sgd", verbose=0,
                  validation_data=(pre, y, lens))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(post, lengths=lens)  # padded at the end: no warning
        model.predict(pre)  # no lengths: the front padding is data, as the user says
        model.predict(pre, lengths=np.full(N, T))


def test_integer_input_through_a_leading_dropout_keeps_the_models_dtype():
    # The eval Dropout (or a LastStep) first made integers float32 before the float64 Dense:
    # 2**24 + 1 became 2**24 (helper-173).
    d = pyrnn.Dense(1, 1, bias=False, dtype="float64")
    d.params["weight"] = np.ones((1, 1))
    x = np.array([[2**24 + 1]], np.int64)
    class MyDense(pyrnn.Dense):  # (a subclass of pyrnn's own computes as it does)
        pass
    d2 = MyDense(1, 1, bias=False, dtype="float64")
    d2.params["weight"] = np.ones((1, 1))
    for model in (pyrnn.Sequential([d]), pyrnn.Sequential([pyrnn.Dropout(0.1), d]),
                  pyrnn.Sequential([pyrnn.Dropout(0.1), d2])):
        assert model.predict(x)[0, 0] == 2**24 + 1
        model.eval()
        assert model(x)[0, 0] == 2**24 + 1

    class Lookup(pyrnn.layers.Layer):  # a custom first layer that has a dtype and takes ids
        dtype = np.dtype(np.float32)

        def __init__(self):
            super().__init__()
            self.table = np.arange(12, dtype=np.float32).reshape(4, 3)

        def forward(self, ids):
            return self.table[ids[:, 0]]

        def backward(self, d):
            return None
    m = pyrnn.Sequential([Lookup(), pyrnn.Dense(3, 1, seed=0)]).eval()
    assert m(np.array([[1], [2]])).shape == (2, 1)  # (the ids reach it as ints)


def test_out_of_range_labels_and_ids_anywhere_are_refused_before_training():
    # Only the first sample was checked: a bad label or id in a later batch stopped fit with
    # a ValueError after optimizer steps had changed the weights (in validation data, after a
    # whole epoch), naming no sample (helper-177).
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4, 3)).astype(np.float32)
    m = pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True, seed=1), pyrnn.LastStep(),
                          pyrnn.Dense(4, 3, seed=2)])
    w0 = m.numpy_params()
    kw = dict(loss="cross_entropy", optimizer="sgd", batch_size=2, shuffle=False, verbose=0)
    for y, err, text in ((np.array([0, 1, 2, 0, 1, 7]), ValueError, r"target 7 at y\[5\] is "
                          r"outside \[0, 3\)"),
                         (np.array([[0], [1], [2], [0], [-1], [1]]), ValueError,
                          r"target -1 at y\[4, 0\] is outside"),
                         (np.array([0., 1., 2., 0., 1.5, 1.]), TypeError,
                          r"must be integers, got 1.5 at y\[4\]")):
        with pytest.raises(err, match="^fit: CrossEntropyLoss: .*" + text):
            m.fit(x, y, **kw)
        assert all(np.array_equal(v, w0[k]) for k, v in m.numpy_params().items())
    good = np.array([0, 1, 2, 0, 1, -100])  # ignore_index is no class, and fine
    with pytest.raises(ValueError, match=r"^fit: validation_data: CrossEntropyLoss: target 3 "):
        m.fit(x, good, validation_data=(x, np.array([0, 1, 2, 0, 1, 3])), **kw)
    assert all(np.array_equal(v, w0[k]) for k, v in m.numpy_params().items())
    m.fit(x, good, **kw)  # (and probabilities, per-step labels past the lengths: not refused)
    m.fit(x, np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]], **kw)
    per_step = pyrnn.Sequential([pyrnn.GRU(3, 3, batch_first=True, seed=1)])
    labels = np.array([[0, 1, 2, 9]] * 6)  # 9 past every length (3)
    per_step.fit(x, labels, lengths=np.full(6, 3), **kw)
    ids = rng.integers(0, 10, (6, 5))
    ids[4, 2] = 10
    emb = pyrnn.Sequential([pyrnn.Embedding(10, 3, seed=0),
                            pyrnn.GRU(3, 2, batch_first=True, seed=0), pyrnn.LastStep()])
    with pytest.raises(ValueError, match=r"^fit: layer 0 \(Embedding\): index 10 at x\[4, 2\] "
                                         r"is outside \[0, 10\)"):
        emb.fit(ids, np.zeros((6, 2), np.float32), loss="mse", optimizer="sgd", verbose=0)
    lens = np.full(6, 5)
    lens[4] = 2  # (past the length, an id is padding: read as 0, not refused)
    emb.fit(ids, np.zeros((6, 2), np.float32), lengths=lens, loss="mse", optimizer="sgd",
            verbose=0)


def test_a_loss_already_non_finite_before_any_step_says_to_scale_the_data():
    m = pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True, seed=1, dtype="float64"),
                          pyrnn.Dense(4, 1, seed=2, dtype="float64")])
    x = np.random.default_rng(0).standard_normal((5, 4, 3))
    y = np.random.default_rng(1).standard_normal((5, 4, 1)) * 1e200
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(RuntimeError, match="No step of this fit had run: .*scale the data"):
            m.fit(x, y, loss="mse", optimizer="sgd", verbose=0)


def test_the_progress_bar_shows_the_loss_as_its_reduction_gives_it(monkeypatch):
    # reduction="sum": the bar showed the per-element mean during the epoch and the sum at
    # its end (helper-177).
    from pyrnn import losses, model as model_mod
    shown = []

    class Bar:
        def __init__(self, **kw):
            pass

        def update(self, n):
            pass

        def set_postfix(self, refresh=False, **kw):
            shown.append(float(kw["loss"]))

        def set_postfix_str(self, text, refresh=True):
            pass

        def close(self):
            pass
    monkeypatch.setattr(model_mod, "_tqdm", lambda: Bar)
    monkeypatch.setattr(model_mod, "_isatty", lambda: True)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 3)).astype(np.float32), rng.standard_normal((7, 1))
    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    hist = m.fit(x, y.astype(np.float32), loss=losses.MSELoss(reduction="sum"),
                 optimizer=pyrnn.optim.SGD(m.parameters(), lr=0.0), batch_size=3, verbose=1)
    assert len(shown) == 3 and shown[-1] == pytest.approx(hist["loss"][-1], rel=1e-4)
    assert shown[0] < shown[1] < shown[2]  # (a running sum)


def test_the_data_checks_leave_what_user_code_reads_alone():
    # (helper-178) A nested model with its own forward may map the ids before its Embedding;
    # a subclass with its own forward may take ids; a 1-D prediction with cross-entropy.
    rng = np.random.default_rng(0)

    class Hashing(pyrnn.Sequential):
        def forward(self, x, lengths=None):
            return super().forward(np.asarray(x) % 10, lengths)
    m = pyrnn.Sequential([Hashing([pyrnn.Embedding(10, 3, seed=0)]),
                          pyrnn.GRU(3, 2, batch_first=True, seed=0), pyrnn.LastStep()])
    m.fit(rng.integers(0, 1000, (6, 5)), np.zeros((6, 2), np.float32), loss="mse",
          optimizer="sgd", verbose=0)
    nested = pyrnn.Sequential([pyrnn.Sequential([pyrnn.Embedding(10, 3, seed=0)]),
                               pyrnn.GRU(3, 2, batch_first=True, seed=0), pyrnn.LastStep()])
    ids = np.zeros((6, 5), np.int64)
    ids[3, 1] = 12
    with pytest.raises(ValueError, match=r"layer 0\.0 \(Embedding\): index 12 at x\[3, 1\]"):
        nested.fit(ids, np.zeros((6, 2), np.float32), loss="mse", optimizer="sgd", verbose=0)

    class IdDense(pyrnn.Dense):
        def forward(self, x):
            return self.params["weight"].T[np.asarray(x)]
    assert pyrnn.Sequential([IdDense(10, 3, seed=0)]).eval()(np.array([1, 2, 3])).shape == (3, 3)
    m = pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True, seed=1), pyrnn.LastStep(),
                          pyrnn.Dense(4, 3, seed=2)])
    with pytest.raises(ValueError, match=r"target 7 at y\[5, 0\] is outside"):
        m.fit(rng.standard_normal((6, 4, 3)).astype(np.float32),
              np.array([[0], [1], [2], [0], [1], [7]]), loss="cross_entropy", optimizer="sgd",
              verbose=0)


def test_user_code_first_gets_the_data_as_given():
    # A nested model with its own forward got float32 ids (helper-179); a cross-entropy
    # instance with its own forward had its labels refused before it could map them.
    class OneHot(pyrnn.Sequential):
        def forward(self, x, lengths=None):
            return super().forward(np.eye(4, dtype=np.float32)[np.asarray(x)], lengths)
    m = pyrnn.Sequential([OneHot([pyrnn.Dense(4, 3, seed=0)])]).eval()
    assert m(np.array([[1], [2]])).shape == (2, 1, 3)
    loss = pyrnn.losses.CrossEntropyLoss()
    orig = loss.forward
    loss.forward = lambda p, t, mask=None: orig(p, np.asarray(t) % 3, mask=mask)
    clf = pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True, seed=1), pyrnn.LastStep(),
                            pyrnn.Dense(4, 3, seed=2)])
    x = np.random.default_rng(0).standard_normal((6, 4, 3)).astype(np.float32)
    clf.fit(x, np.arange(6), loss=loss, optimizer="sgd", verbose=0)
