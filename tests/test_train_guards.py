"""Guards of the training stack: writes through ``params`` / ``grads``, Sequential's input
contract, loss / optimizer / callback argument checks, memory checks. Each test pins a
behaviour that used to be silently wrong."""
import re

import numpy as np
import pytest

import pyrnn
from pyrnn import optim

from cuda_fakes import FakeDev, install


def _x(*shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ---- params / grads: item assignment copies into the layer's own arrays ---------------------

def _layers():
    cases = [("gru", lambda: pyrnn.GRU(3, 4, seed=0), "weight_ih_l0", (5, 2, 3)),
             ("lstm-bi", lambda: pyrnn.LSTM(3, 4, bidirectional=True, seed=0),
              "bias_l0_reverse", (5, 2, 3)),
             ("dense", lambda: pyrnn.Dense(3, 4, seed=0), "weight", (5, 3)),
             ("layernorm", lambda: pyrnn.LayerNorm(3), "bias", (5, 3)),
             ("embedding", lambda: pyrnn.Embedding(7, 3, seed=0), "weight", None)]
    return [pytest.param(*c[1:], id=c[0]) for c in cases]


def _run(layer, shape):
    if shape is None:
        return layer(np.array([[1, 2, 6]]))
    out = layer(_x(*shape, seed=1))
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("make, key, shape", _layers())
def test_param_assignment_copies_into_the_layer(make, key, shape):
    layer, ref = make(), make()
    old = layer.params[key]
    opt = optim.SGD(layer.parameters(), lr=0.5)  # built BEFORE the assignment
    value = _x(*old.shape, seed=2, dtype=np.float64)  # float64 into a float32 layer: cast
    layer.params[key] = value
    assert layer.params[key] is old  # same array: the native layer and opt still see it
    ref.load_params({key: value.astype(np.float32)})
    np.testing.assert_array_equal(layer.params[key], value.astype(np.float32))
    np.testing.assert_array_equal(_run(layer, shape), _run(ref, shape))  # forward reads it
    # the optimizer built before updates the array forward reads
    layer.grads[key] = np.ones(old.shape)
    opt.step()
    np.testing.assert_array_equal(layer.params[key], value.astype(np.float32) - 0.5)
    np.testing.assert_array_equal(layer.numpy_params()[key], layer.params[key])


@pytest.mark.parametrize("make, key, shape", _layers())
def test_param_assignment_is_checked(make, key, shape):
    layer = make()
    before = layer.numpy_params()
    want = layer.params[key].shape
    with pytest.raises(ValueError, match=rf"{key} must have shape"):
        layer.params[key] = np.zeros((5, 5), np.float32)
    with pytest.raises(TypeError, match=r"complex128 cannot be cast"):
        layer.params[key] = np.zeros(want, np.complex128)
    with pytest.raises(TypeError, match=r"real numeric array"):
        layer.params[key] = "abc"
    with pytest.raises(KeyError, match=rf"unknown parameter 'nope'.*{key}"):
        layer.params["nope"] = np.zeros(want)
    with pytest.raises(KeyError, match=r"unknown gradient 'nope'"):
        layer.grads["nope"] = np.zeros(want)
    with pytest.raises(TypeError, match=rf"cannot remove parameter '{key}'.*{key}"):
        del layer.params[key]
    with pytest.raises(TypeError, match="cannot remove"):
        layer.params.pop(key)
    with pytest.raises(TypeError, match="cannot remove"):
        layer.grads.clear()
    # update is all or nothing: the good entry is not written when another is bad
    other = [k for k in layer.params if k != key]
    if other:
        with pytest.raises(ValueError, match="must have shape"):
            layer.params.update({key: np.ones(want), other[0]: np.ones((1, 1))})
    with pytest.raises(KeyError):
        layer.params.update({key: np.ones(want), "nope": 1.0})
    after = layer.numpy_params()
    assert set(after) == set(before)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])
    # reading stays a dict-like of the layer's own arrays
    assert list(layer.params) == list(before) and len(layer.params) == len(before)
    assert dict(layer.params.items()).keys() == before.keys() and key in layer.params
    assert all(v is layer.params[k] for k, v in layer.params.copy().items())


def test_recurrent_param_assignment_saves_and_loads(tmp_path):
    gru = pyrnn.GRU(3, 4, seed=0)
    gru.params["weight_hh_l0"] = _x(12, 4, seed=3)
    gru.save(tmp_path / "g.pyrnn")
    back = pyrnn.load(tmp_path / "g.pyrnn")
    x = _x(5, 2, 3, seed=4)
    np.testing.assert_array_equal(back(x)[0], gru(x)[0])
    names = {p.name: p.data for p in gru.parameters()}
    assert names["weight_hh_l0"] is gru.params["weight_hh_l0"]


def test_params_assignment_on_a_cuda_layer_goes_through_the_device(monkeypatch):
    install(monkeypatch)
    for make, key in ((lambda d: pyrnn.Dense(3, 2, seed=0, device=d), "weight"),
                      (lambda d: pyrnn.GRU(3, 2, seed=0, device=d), "weight_ih_l0")):
        gpu, cpu = make("cuda"), make("cpu")
        old = gpu.params[key]
        assert isinstance(old, FakeDev)
        value = _x(*old.shape, seed=5, dtype=np.float64)
        gpu.params[key] = value
        gpu.params[key] = FakeDev(np.ascontiguousarray(value, np.float32))  # device value
        cpu.params[key] = value
        assert gpu.params[key] is old
        np.testing.assert_array_equal(gpu.numpy_params()[key], cpu.params[key])
        with pytest.raises(ValueError, match="must have shape"):
            gpu.params[key] = np.zeros((9, 9))


@pytest.mark.parametrize("make", [lambda: pyrnn.LSTM(3, 2, num_layers=2, seed=0),
                                  lambda: pyrnn.Dense(3, 2, seed=0),
                                  lambda: pyrnn.Sequential([pyrnn.GRU(3, 2, batch_first=True, seed=0),
                                                            pyrnn.LastStep(),
                                                            pyrnn.Dense(2, 1, seed=1)])])
def test_load_params_strict_refuses_missing_names_and_writes_nothing(make):
    # A one-layer checkpoint loaded silently into a two-layer LSTM, the second layer left at
    # its initial weights (helper-197); torch's load_state_dict is strict by default.
    layer = make()
    full = {k: v + 1 for k, v in layer.numpy_params().items()}
    part = dict(list(full.items())[:1])
    before = layer.numpy_params()
    with pytest.raises(KeyError, match=r"missing parameters \[.*" + re.escape(repr(list(full)[-1]))):
        layer.load_params(part, strict=True)
    for k, v in layer.numpy_params().items():
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(TypeError, match="strict must be True or False"):
        layer.load_params(full, strict="yes")
    layer.load_params(full, strict=True)
    for k, v in layer.numpy_params().items():
        np.testing.assert_array_equal(v, full[k])
    layer.load_params(part)  # the default keeps what is missing, as before
    np.testing.assert_array_equal(layer.numpy_params()[list(full)[-1]], full[list(full)[-1]])


def test_sequential_params_assignment_and_load_params():
    m = pyrnn.Sequential([pyrnn.GRU(2, 4, batch_first=True, seed=0), pyrnn.LastStep(),
                          pyrnn.Sequential([pyrnn.Dense(4, 1, seed=1)])])
    names = list(m.params)
    assert names == ["0.weight_ih_l0", "0.weight_hh_l0", "0.bias_l0", "2.0.weight", "2.0.bias"]
    m.load_params({"2.0.bias": [3.0], "0.bias_l0": np.arange(12)})
    np.testing.assert_array_equal(m.layers[2].layers[0].params["bias"], [3.0])
    np.testing.assert_array_equal(m.layers[0].params["bias_l0"], np.arange(12))
    m.params["2.0.bias"] = [5]
    np.testing.assert_array_equal(m.layers[2].layers[0].params["bias"], [5.0])
    m.grads["2.0.bias"] = [7]
    np.testing.assert_array_equal(m.layers[2].layers[0].grads["bias"], [7.0])
    before = m.numpy_params()
    with pytest.raises(ValueError, match=r"2.0.weight must have shape \(1, 4\)"):
        m.load_params({"2.0.bias": [1.0], "2.0.weight": np.zeros((2, 2))})
    with pytest.raises(KeyError, match=r"unknown parameter '0.bias'.*'0.bias_l0'"):
        m.load_params({"2.0.bias": [1.0], "0.bias": np.zeros(12)})
    with pytest.raises(TypeError, match="cannot remove"):
        del m.params["2.0.bias"]
    after = m.numpy_params()
    for k in before:  # all or nothing
        np.testing.assert_array_equal(after[k], before[k])


# ---- Sequential: data reaching a recurrent layer must be samples-first 3-D -----------------

def test_sequential_refuses_2d_data_for_a_recurrent_first_layer():
    m = pyrnn.Sequential([pyrnn.GRU(2, 4, batch_first=True, seed=0), pyrnn.Dense(4, 1, seed=1)])
    x2, y = _x(16, 2), _x(16, 1)
    want = r"x: expected 3-D \(N, T, C\) input for a recurrent first layer, got shape \(16, 2\)"
    with pytest.raises(ValueError, match=want):
        m.fit(x2, y, loss="mse", optimizer="adam", batch_size=4, verbose=0)
    with pytest.raises(ValueError, match=want):
        m.predict(x2, batch_size=4)
    with pytest.raises(ValueError, match=want):
        m.evaluate(x2, y, loss="mse")
    with pytest.raises(ValueError, match=want):
        m(x2)  # Keras: calling the model checks the rank too
    with pytest.raises(ValueError, match=r"validation x: expected 3-D"):
        m.fit(x2[:, None], y, loss="mse", optimizer="adam", validation_data=(x2, y), verbose=0)
    # 3-D data works, and predict no longer depends on batch_size
    x3 = _x(16, 5, 2)
    m.fit(x3, _x(16, 5, 1), loss="mse", optimizer="adam", batch_size=4, epochs=1, verbose=0)
    np.testing.assert_allclose(m.predict(x3, batch_size=3), m.predict(x3, batch_size=16),
                               rtol=1e-6, atol=1e-7)
    # behind rank-keeping layers (also nested) the rule is the same
    n = pyrnn.Sequential([pyrnn.Sequential([pyrnn.Dense(2, 2), pyrnn.LayerNorm(2)]),
                          pyrnn.Dropout(0.1), pyrnn.GRU(2, 3, batch_first=True)])
    with pytest.raises(ValueError, match=r"3-D \(N, T, C\) input for the recurrent layer GRU"):
        n(np.ones((4, 2)))
    assert n(np.ones((4, 3, 2))).shape == (4, 3, 3)


def test_sequential_refuses_1d_token_ids_before_embedding_and_recurrent():
    m = pyrnn.Sequential([pyrnn.Embedding(5, 3, seed=0), pyrnn.LSTM(3, 4, batch_first=True),
                          pyrnn.Dense(4, 5)])
    ids = np.array([1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"expected 2-D \(N, T\) token ids for an Embedding "
                                         r"feeding the recurrent layer LSTM.*got shape \(4,\)"):
        m.fit(ids, ids, loss="cross_entropy", optimizer="adam", verbose=0)
    with pytest.raises(ValueError, match=r"2-D \(N, T\) token ids"):
        m(ids)
    assert m.predict(np.ones((2, 3), int)).shape == (2, 3, 5)


def test_feed_forward_sequential_still_takes_2d_data():
    m = pyrnn.Sequential([pyrnn.Dense(3, 4, seed=0), pyrnn.Dense(4, 1, seed=1)])
    assert m.predict(_x(6, 3)).shape == (6, 1)
    e = pyrnn.Sequential([pyrnn.Embedding(5, 3), pyrnn.Dense(3, 2)])  # no recurrent layer
    assert e(np.array([1, 2])).shape == (2, 2)


# ---- what a training forward keeps for backward is its own -----------------------------------

def _inplace_cases():
    cases = [("dense", lambda d="cpu": pyrnn.Dense(3, 4, activation="tanh", seed=0, device=d),
              lambda: _x(5, 3, seed=1), None),
             ("dense-3d", lambda d="cpu": pyrnn.Dense(3, 2, seed=0, device=d),
              lambda: _x(2, 4, 3, seed=1), None),
             ("layernorm", lambda d="cpu": pyrnn.LayerNorm(3, device=d),
              lambda: _x(5, 3, seed=1), None),
             ("embedding", lambda d="cpu": pyrnn.Embedding(9, 3, seed=0, device=d),
              lambda: np.array([[1, 2, 3], [4, 1, 8]], np.int64), None),
             ("laststep", lambda d="cpu": pyrnn.LastStep(device=d),
              lambda: _x(3, 4, 2, seed=1), "lengths")]
    return [pytest.param(*c[1:], id=c[0]) for c in cases]


def _forward_backward(layer, x, lengths, mutate):
    y = layer(x, lengths=lengths) if lengths is not None else layer(x)
    if mutate:  # the caller reuses its buffers between forward and backward
        x[...] = 1 if x.dtype.kind in "iu" else 0.5
        if lengths is not None:
            lengths[...] = 1
    dx = layer.backward(np.ones(np.shape(y), np.float32))
    return y, dx, layer.numpy_grads()


@pytest.mark.parametrize("make, data, lengths", _inplace_cases())
def test_modifying_the_input_between_forward_and_backward_changes_nothing(make, data, lengths):
    lens = np.array([4, 1, 2], np.int64) if lengths else None
    want = _forward_backward(make(), data(), None if lens is None else lens.copy(), False)
    got = _forward_backward(make(), data(), lens, True)
    for a, b in zip(got, want):
        if isinstance(a, dict):
            for k in a:
                np.testing.assert_array_equal(a[k], b[k])
        elif a is not None:
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make, data, lengths", _inplace_cases()[:3])
def test_modifying_a_device_input_between_forward_and_backward(monkeypatch, make, data,
                                                                lengths):
    install(monkeypatch)
    want = _forward_backward(make("cpu"), data(), None, False)
    layer, x = make("cuda"), FakeDev(data())
    y = layer(x)
    x.a[...] = 0.5  # the caller's device memory, changed in place
    dx = layer.backward(FakeDev(np.ones(y.shape, np.float32)))
    np.testing.assert_array_equal(dx.a, want[1])
    for k, g in layer.numpy_grads().items():
        np.testing.assert_array_equal(g, want[2][k])


# ---- callbacks, seeds, Dropout's identity backward, ONNX of a misplaced Embedding ------------

def _tiny():
    return pyrnn.Sequential([pyrnn.Dense(2, 1, seed=0)]), np.ones((4, 2)), np.ones((4, 1))


def test_checkpoint_refuses_what_its_first_save_would_before_training(tmp_path):
    # A custom layer class (save() refuses it) and path specs the epoch number or a float log
    # cannot take failed only after the first full epoch (helper-197).
    from pyrnn import callbacks

    class Scale(pyrnn.Dense):
        pass

    m, x, y = _tiny()
    custom = pyrnn.Sequential([Scale(2, 1, seed=0)])
    for model, path, err, match in (
            (custom, "c.pyrnn", TypeError, r"cannot save a Scale"),
            (m, "c-{epoch:03s}.pyrnn", ValueError, r"path '.*c-\{epoch:03s\}.pyrnn' cannot be "
                                                   r"formatted .*Unknown format code 's'"),
            (m, "c-{loss[0]}.pyrnn", ValueError, r"cannot be formatted .*not subscriptable")):
        before = model.numpy_params()
        with pytest.raises(err, match=match):
            model.fit(x, y, loss="mse", optimizer="sgd", epochs=2, verbose=0,
                      callbacks=[callbacks.ModelCheckpoint(str(tmp_path / path))])
        for k, v in model.numpy_params().items():
            np.testing.assert_array_equal(v, before[k])
    assert not list(tmp_path.iterdir())
    # well-formed specs of fit's logs still take them
    m.fit(x, y, loss="mse", optimizer="sgd", epochs=1, verbose=0,
          callbacks=[callbacks.ModelCheckpoint(str(tmp_path / "c-{epoch:02d}-{loss:.2e}.pyrnn"))])
    assert [p.name[:5] for p in tmp_path.iterdir()] == ["c-01-"]

    class Mine(pyrnn.Sequential):  # a save() of its own: its own rules (review helper-199)
        def save(self, path):
            with open(path, "w") as f:
                f.write("mine")

    mine = Mine([Scale(2, 1, seed=0)])
    mine.fit(x, y, loss="mse", optimizer="sgd", epochs=1, verbose=0,
             callbacks=[callbacks.ModelCheckpoint(str(tmp_path / "h-{epoch}.mine"))])
    assert (tmp_path / "h-1.mine").read_text() == "mine"


def test_checkpoint_path_needing_validation_logs_fails_before_training(tmp_path):
    from pyrnn import callbacks
    m, x, y = _tiny()
    before = m.numpy_params()
    ck = callbacks.ModelCheckpoint(str(tmp_path / "c-{val_loss:.3f}.pyrnn"))
    with pytest.raises(ValueError, match=r"ModelCheckpoint: the path's field 'val_loss' will not "
                                         r"be in the epoch logs \(available: loss\).*"
                                         r"validation_data"):
        m.fit(x, y, loss="mse", optimizer="sgd", epochs=2, verbose=0, callbacks=[ck])
    assert not list(tmp_path.iterdir())
    np.testing.assert_array_equal(m.numpy_params()["0.weight"], before["0.weight"])
    with pytest.raises(ValueError, match=r"monitored quantity 'val_accuracy'.*available: loss"):
        m.fit(x, y, loss="mse", optimizer="sgd", verbose=0,
              callbacks=[callbacks.ModelCheckpoint(str(tmp_path / "b.pyrnn"),
                                                   monitor="val_accuracy", save_best_only=True)])
    # outside fit (no params): a ValueError at the epoch's end, naming the logs there
    ck = callbacks.ModelCheckpoint(str(tmp_path / "c-{val_loss}.pyrnn"))
    ck.set_model(m)
    with pytest.raises(ValueError, match=r"needs 'val_loss', not in the epoch logs "
                                         r"\(available: loss\)"):
        ck.on_epoch_end(0, {"loss": 1.0})
    with pytest.raises(ValueError, match="positional field"):
        callbacks.ModelCheckpoint("c-{}.pyrnn")
    with pytest.raises(ValueError, match="not a valid format string"):
        callbacks.ModelCheckpoint("c-{val_loss.pyrnn")
    # with validation data the same path works, and callbacks see Keras's params
    seen = {}
    spy = callbacks.LambdaCallback(on_train_begin=lambda logs: seen.update(spy.params))
    ck = callbacks.ModelCheckpoint(str(tmp_path / "c-{epoch}-{val_loss:.3f}.pyrnn"))
    m.fit(x, y, loss="mse", optimizer="sgd", epochs=2, batch_size=3, verbose=0,
          validation_data=(x, y), callbacks=[ck, spy])
    assert len(list(tmp_path.iterdir())) == 2
    assert seen == {"epochs": 2, "steps": 2, "batch_size": 3, "verbose": 0,
                    "metrics": ["loss", "val_loss"]}


def test_custom_loss_metrics_known_only_after_a_forward():
    # A custom loss may create its metrics in forward: its keys are not checked up front.
    from pyrnn import callbacks, losses

    class MSEWithMAE(losses.MSELoss):
        def __init__(self):
            super().__init__()
            self._m = {}

        def forward(self, pred, target):
            err = np.abs(np.asarray(pred) - np.asarray(target))
            self._m = {"mae": (float(err.sum()), err.size)}
            return super().forward(pred, target)

        def metric_counts(self):
            return self._m

    m, x, y = _tiny()
    hist = m.fit(x, y, loss=MSEWithMAE(), optimizer="sgd", epochs=2, verbose=0,
                 callbacks=[callbacks.EarlyStopping("mae", patience=5)])
    assert len(hist["mae"]) == 2


def test_fit_takes_a_numpy_generator_as_seed():
    m, x, y = _tiny()
    a = m.fit(x, y, loss="mse", optimizer="sgd", epochs=2, batch_size=2, verbose=0,
              seed=np.random.default_rng(5))
    assert len(a["loss"]) == 2


def test_seeds_are_checked_with_clear_messages():
    from pyrnn import init
    m, x, y = _tiny()
    with pytest.raises(TypeError, match=r"seed must be None, an int >= 0 or a numpy Generator, "
                                        r"got str"):
        m.fit(x, y, loss="mse", optimizer="sgd", seed="abc", verbose=0)
    with pytest.raises(TypeError, match=r"or a numpy Generator, got SeedSequence"):
        m.fit(x, y, loss="mse", optimizer="sgd", seed=np.random.SeedSequence(0), verbose=0)
    # Keras' shuffle="batch" (and any other truthy value) ran a full shuffle without a word.
    for bad in ("batch", "no", 2, None):
        with pytest.raises(TypeError, match=r"shuffle must be True or False, got"):
            m.fit(x, y, loss="mse", optimizer="sgd", shuffle=bad, verbose=0)
    m.fit(x, y, loss="mse", optimizer="sgd", shuffle=np.bool_(False), verbose=0)
    m.fit(x, y, loss="mse", optimizer="sgd", shuffle=0, verbose=0)  # 0 / 1, as every switch
    with pytest.raises(ValueError, match=r"seed must be >= 0 \(or None\), got -1"):
        m.fit(x, y, loss="mse", optimizer="sgd", seed=-1, verbose=0)
    with pytest.raises(ValueError, match=r"seed must be >= 0 \(or None\), got -1"):
        init.normal_(np.zeros(3), seed=-1)
    with pytest.raises(TypeError, match=r"seed must be an int or None, got float"):
        init.xavier_uniform_(np.zeros((2, 2)), seed=1.0)
    for make in (lambda: pyrnn.Dense(2, 2, seed=-3), lambda: pyrnn.Embedding(3, 2, seed=-3),
                 lambda: pyrnn.Dropout(0.5, seed=-3)):
        with pytest.raises(ValueError, match=r"seed must be >= 0 \(or None\), got -3"):
            make()
    assert init.normal_(np.zeros(3), seed=np.int64(4)).any()
    m.fit(x, y, loss="mse", optimizer="sgd", seed=np.uint32(3), verbose=0)


def test_dropout_identity_backward_checks_dy():
    for d in (pyrnn.Dropout(0.0), pyrnn.Dropout(1.0)):
        d(np.ones((2, 3), np.float32))
        with pytest.raises(TypeError, match="dy must be a real numeric array"):
            d.backward(np.array([["a"] * 3] * 2))
        with pytest.raises(ValueError, match=r"dy must have shape \(2, 3\), got \(3,\)"):
            d.backward(np.ones(3))
    d = pyrnn.Dropout(0.0)
    d(np.ones((2, 3)))
    dx = d.backward(np.arange(6).reshape(2, 3))  # integers: computed as float32, as p > 0
    assert dx.dtype == np.float32
    np.testing.assert_array_equal(dx, np.arange(6).reshape(2, 3))


def test_onnx_export_names_a_misplaced_embedding():
    pytest.importorskip("onnx")
    m = pyrnn.Sequential([pyrnn.Dense(3, 4), pyrnn.Dropout(0.1), pyrnn.Embedding(10, 4)])
    with pytest.raises(ValueError, match=r"layer 2 \(Embedding\(10, 4\)\) takes integer ids, "
                                         r"so it must come first"):
        pyrnn.export_onnx(m)
    nested = pyrnn.Sequential([pyrnn.GRU(2, 3, batch_first=True),
                               pyrnn.Sequential([pyrnn.Embedding(5, 3)])])
    with pytest.raises(ValueError, match=r"Embedding\(5, 3\)\) takes integer ids"):
        pyrnn.export_onnx(nested)
    # Dropout gives floats, which Embedding refuses: pyrnn cannot run it, so no graph either.
    after_dropout = pyrnn.Sequential([pyrnn.Dropout(0.1), pyrnn.Embedding(10, 4),
                                      pyrnn.GRU(4, 3, batch_first=True)])
    with pytest.raises(TypeError, match="integer indices"):
        after_dropout.predict(np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match=r"layer 1 \(Embedding\(10, 4\)\) takes integer ids"):
        pyrnn.export_onnx(after_dropout)
    pyrnn.export_onnx(pyrnn.Sequential([pyrnn.Embedding(10, 4), pyrnn.Dropout(0.1),
                                        pyrnn.GRU(4, 3, batch_first=True)]))


def test_params_and_grads_are_dicts():
    # DESIGN.md's contract: dicts (dict(), |, np.savez(**d), pickle give plain dicts of arrays).
    import pickle
    layer = pyrnn.GRU(3, 4, seed=0)
    for d in (layer.params, layer.grads, pyrnn.Dense(3, 2).params):
        assert isinstance(d, dict)
        assert type(d | {}) is dict and type(d.copy()) is dict
        assert type(pickle.loads(pickle.dumps(d))) is dict
    p = layer.params
    w = p["weight_hh_l0"]
    p |= {"weight_hh_l0": np.ones((12, 4))}
    assert p["weight_hh_l0"] is w and np.all(layer.params["weight_hh_l0"] == 1)
    for mutate in (lambda: p.pop("bias_l0"), p.popitem, p.clear,
                   lambda: p.setdefault("new", np.zeros(1))):
        with pytest.raises(TypeError, match="fixed"):
            mutate()
    assert sorted(layer.params) == ["bias_l0", "weight_hh_l0", "weight_ih_l0"]


def test_params_augmented_and_whole_assignment_copy_in():
    # layer.params |= {...} writes, then assigns the result back to the attribute: accepted
    # (it raised AttributeError after writing); layer.params = {...} copies in too.
    for layer, key, shape in ((pyrnn.Dense(2, 2), "weight", (2, 2)),
                              (pyrnn.GRU(2, 3), "weight_hh_l0", (9, 3)),
                              (pyrnn.Sequential([pyrnn.Dense(2, 2)]), "0.weight", (2, 2))):
        w = layer.params[key]
        layer.params |= {key: np.full(shape, 7.0)}
        assert layer.params[key] is w and np.all(w == 7)
        layer.params = {key: np.full(shape, 3.0)}
        assert layer.params[key] is w and np.all(w == 3)
        layer.grads |= {key: np.ones(shape)}
        assert np.all(layer.grads[key] == 1)
        with pytest.raises(KeyError, match="unknown parameter"):
            layer.params = {"nope": 1.0}


def test_copy_of_a_layer_or_model_is_independent():
    import copy
    for obj in (pyrnn.Dense(2, 2, seed=0), pyrnn.Sequential([pyrnn.Dense(2, 2, seed=0)])):
        dup = copy.copy(obj)
        key = next(iter(dup.params))
        dup.params[key][...] = 0
        assert np.any(obj.params[key] != 0)



@pytest.mark.parametrize("x, y, why", [
    (np.zeros((10, 0, 2), np.float32), np.zeros((10, 1)), "at least one step"),
    (np.zeros((10, 3, 5), np.float32), np.zeros((10, 1)), "5"),      # 5 features for 2
    (np.zeros((10, 3, 2), np.float32), np.zeros((10, 3)), "3"),      # y wider than the output
], ids=["T=0", "features", "y-width"])
def test_fit_refuses_data_the_model_cannot_take_before_any_callback(x, y, why):
    # It was refused in the first batch, after on_train_begin had run, naming that batch's
    # shape (4, 0, 2), not x's.
    m = pyrnn.Sequential([pyrnn.LSTM(2, 4, batch_first=True, seed=0), pyrnn.LastStep(),
                          pyrnn.Dense(4, 1, seed=0)])
    before = {k: v.copy() for k, v in m.params.items()}
    ran = []
    cb = pyrnn.callbacks.LambdaCallback(on_train_begin=lambda logs: ran.append(1))
    with pytest.raises(ValueError, match=rf"x \(10, {x.shape[1]}, {x.shape[2]}\), y "
                                         rf"\(10, {y.shape[1]}\), checked on its first "
                                         rf"sample: .*{why}"):
        m.fit(x, y, loss="mse", optimizer="adam", batch_size=4, verbose=0, callbacks=[cb])
    assert ran == [] and m.training and m.optimizer is None
    assert all(np.array_equal(v, before[k]) for k, v in m.params.items())


def test_the_first_sample_check_keeps_a_custom_losss_own_exception():
    # It re-raised type(e)(message): a ValueError subclass taking other arguments became a
    # TypeError about its constructor.
    class Refused(ValueError):
        def __init__(self, code, why):
            super().__init__(why)
            self.code = code

    class Picky(pyrnn.losses.MSELoss):
        def forward(self, pred, target, mask=None):
            raise Refused(7, "no")

    m = pyrnn.Sequential([pyrnn.Dense(2, 1, seed=0)])
    with pytest.raises(Refused) as err:
        m.fit(np.zeros((4, 2)), np.zeros((4, 1)), loss=Picky(), optimizer="sgd", verbose=0)
    assert err.value.code == 7


def test_fit_predict_evaluate_name_a_packed_sequence():
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence
    packed = pack_padded_sequence(torch.randn(2, 5, 3), torch.tensor([5, 3]), batch_first=True)
    m = pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True), pyrnn.LastStep()])
    for call in (lambda: m.predict(packed), lambda: m.evaluate(packed, np.zeros((2, 4)), "mse"),
                 lambda: m.fit(packed, np.zeros((2, 4)), loss="mse", optimizer="sgd")):
        with pytest.raises(TypeError, match="x: a torch PackedSequence is not taken"):
            call()


def test_fit_warns_when_validation_data_lacks_the_lengths_training_has():
    # Validation read the padding fit's own loss left out: val_loss 0.148 against loss 0.119
    # on the same data at lr = 0, what EarlyStopping watched (hunt helper-200).
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5, 2)).astype(np.float32)
    y = rng.standard_normal((6, 1)).astype(np.float32)
    lens = np.array([5, 2, 3, 5, 1, 4])
    m = pyrnn.Sequential([pyrnn.GRU(2, 3, batch_first=True, bidirectional=True, seed=0),
                          pyrnn.LastStep(), pyrnn.Dense(6, 1, seed=1)])
    with pytest.warns(UserWarning, match=r"fit got lengths but validation_data has no lengths: "
                                         r"validation reads every step"):
        m.fit(x, y, lengths=lens, validation_data=(x, y), loss="mse", optimizer="sgd",
              verbose=0)
    # token ids of an Embedding (2-D x) too (review helper-202)
    ids = np.random.default_rng(1).integers(1, 9, (6, 5))
    e = pyrnn.Sequential([pyrnn.Embedding(9, 2, seed=0), pyrnn.GRU(2, 3, batch_first=True, seed=1),
                          pyrnn.LastStep(), pyrnn.Dense(3, 1, seed=2)])
    with pytest.warns(UserWarning, match=r"validation_data has no lengths"):
        e.fit(ids, y, lengths=lens, validation_data=(ids, y), loss="mse", optimizer="sgd",
              verbose=0)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = m.fit(x, y, lengths=lens, validation_data=(x, y, lens), loss="mse",
                  optimizer=optim.SGD(m.parameters(), lr=0.0), verbose=0)
    assert h["val_loss"][0] == pytest.approx(h["loss"][0], rel=1e-6)


def test_a_custom_losss_value_is_a_float_or_a_type_error_naming_it():
    # A NumPy float32 reached evaluate's result and the History (json could not write it); a
    # (1,) array was returned by evaluate as the loss; None failed in arithmetic (helper-200).
    import json

    class Mean(pyrnn.losses.Loss):
        def __init__(self, make):
            super().__init__()
            self.make = make

        def forward(self, pred, target):
            d = pred - np.asarray(target, pred.dtype)
            self._dpred, self._dtype = (2 * d / d.size).astype(pred.dtype), pred.dtype
            return self.make(pred, np.asarray(target, pred.dtype))

    x, y = np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32)
    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    ok = Mean(lambda p, t: ((p - t) ** 2).mean())  # float32 NumPy scalar
    h = m.fit(x, y, loss=ok, optimizer="sgd", epochs=2, verbose=0)
    value = m.evaluate(x, y, loss=ok)
    assert type(value) is float and all(type(v) is float for v in h["loss"])
    json.dumps(h)
    for make, what in ((lambda p, t: ((p - t) ** 2).mean(0), r"ndarray of shape \(1,\)"),
                       (lambda p, t: None, "NoneType")):
        for run in (lambda loss: m.fit(x, y, loss=loss, optimizer="sgd", verbose=0),
                    lambda loss: m.evaluate(x, y, loss=loss)):
            with pytest.raises(TypeError, match=r"Mean.forward returned " + what +
                               r".*the batch's loss as one real number"):
                run(Mean(make))
