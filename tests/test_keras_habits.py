"""What a Keras user does with pyrnn's training stack, from a hunt over Keras habits: masked
per-step losses with lengths, a final sigmoid before a logits loss, an optimizer given by name
over several fit calls, clipping with frozen layers, Keras' batch hook names, LambdaCallback
with None, learning-rate changes through model.optimizer, validation data errors, and the
loss mask itself against torch. Each test failed before its fix."""
import math
import warnings

import numpy as np
import pytest

import pyrnn
from pyrnn import callbacks, losses, optim

torch = pytest.importorskip("torch")


def _padded(seed=0):
    r = np.random.default_rng(seed)
    N, T, V, K = 8, 6, 10, 3
    L = np.array([6, 2, 3, 6, 1, 4, 5, 2])
    ids, t = r.integers(1, V, (N, T)), r.integers(0, K, (N, T))
    for i, n in enumerate(L):
        ids[i, n:] = 0
        t[i, n:] = 0
    return ids, t, L


def _tagger():
    return pyrnn.Sequential([pyrnn.Embedding(10, 4, padding_idx=0, seed=0),
                             pyrnn.LSTM(4, 5, batch_first=True, seed=0),
                             pyrnn.Dense(5, 3, seed=0)])


def test_per_step_losses_leave_out_the_padding_given_lengths():
    ids, t, L = _padded()
    m = _tagger()
    hist = m.fit(ids, t, loss="cross_entropy", optimizer=optim.SGD(m.parameters(), lr=0.0),
                 epochs=1, verbose=0, lengths=L)
    logits = m.predict(ids, lengths=L)
    valid = np.arange(ids.shape[1])[None, :] < L[:, None]
    want = float(torch.nn.functional.cross_entropy(torch.tensor(logits[valid]),
                                                   torch.tensor(t[valid])))
    assert hist["loss"][0] == pytest.approx(want, rel=1e-6)  # Keras' mask_zero loss
    assert hist["accuracy"][0] == pytest.approx((logits[valid].argmax(-1) == t[valid]).mean())
    assert m.evaluate(ids, t, lengths=L) == pytest.approx(want, rel=1e-6)
    # and the gradient: the padding's targets train nothing (the Dense bias saw them)
    m2 = _tagger()
    m2.fit(ids, t, loss="cross_entropy", optimizer=optim.SGD(m2.parameters(), lr=0.5),
           epochs=1, verbose=0, lengths=L, shuffle=False, batch_size=8)
    t_other = t.copy()
    t_other[~valid] = 2  # other padding targets: the same training
    m3 = _tagger()
    m3.fit(ids, t_other, loss="cross_entropy", optimizer=optim.SGD(m3.parameters(), lr=0.5),
           epochs=1, verbose=0, lengths=L, shuffle=False, batch_size=8)
    for k, v in m2.numpy_params().items():
        np.testing.assert_array_equal(v, m3.numpy_params()[k])


@pytest.mark.parametrize("name", ["mse", "bce"])
def test_masked_elementwise_losses_match_torch_on_the_valid_steps(name):
    rng = np.random.default_rng(1)
    pred, target = rng.standard_normal((4, 5, 3)), rng.random((4, 5, 3))
    mask = rng.random((4, 5)) < 0.6
    loss = losses.get(name)
    value = loss(pred, target, mask)
    d = loss.backward()
    p = torch.tensor(pred, requires_grad=True)
    fn = torch.nn.functional.mse_loss if name == "mse" else \
        torch.nn.functional.binary_cross_entropy_with_logits
    want = fn(p[torch.tensor(mask)], torch.tensor(target)[torch.tensor(mask)])
    want.backward()
    assert value == pytest.approx(want.item(), rel=1e-12)
    np.testing.assert_allclose(d, p.grad.numpy(), rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="leading axes"):
        loss(pred, target, mask[:, :4])
    with pytest.raises(TypeError, match="bool"):
        loss(pred, target, mask.astype(int))


def test_masked_cross_entropy_soft_targets():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((3, 4, 5))
    soft = rng.dirichlet(np.ones(5), size=(3, 4))
    mask = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], bool)
    loss = losses.CrossEntropyLoss()
    value = loss(logits, soft, mask)
    p = torch.tensor(logits, requires_grad=True)
    want = torch.nn.functional.cross_entropy(p[torch.tensor(mask)],
                                             torch.tensor(soft)[torch.tensor(mask)])
    want.backward()
    assert value == pytest.approx(want.item(), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), p.grad.numpy(), rtol=1e-12, atol=1e-15)
    assert loss.metric_counts()["accuracy"][1] == int(mask.sum())


def test_a_final_sigmoid_before_a_logits_loss_warns():
    x = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    m = pyrnn.Sequential([pyrnn.Dense(3, 1, activation="sigmoid", seed=0)])
    with pytest.warns(UserWarning, match="sigmoid is applied twice"):
        m.fit(x, y, loss="bce", optimizer="adam", epochs=1, verbose=0)
    with pytest.warns(UserWarning, match="drop the final activation"):
        m.evaluate(x, y, loss="bce")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.fit(x, y, loss="mse", optimizer="adam", epochs=1, verbose=0)  # no warning for mse
    with pytest.raises(TypeError, match="take LOGITS"):
        losses.get("binary_crossentropy")


def test_an_optimizer_given_by_name_is_kept_across_fit_calls():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 3)).astype(np.float32), rng.standard_normal((16, 1))
    once = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    h1 = once.fit(x, y, loss="mse", optimizer="adam", epochs=4, verbose=0, shuffle=False)
    split = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    h2 = [split.fit(x, y, loss="mse", optimizer="adam", epochs=1, verbose=0,
                    shuffle=False)["loss"][0] for _ in range(4)]
    assert h2 == h1["loss"]  # as Keras' compiled optimizer: Adam's moments continue
    assert split.optimizer.steps == 4
    kept = split.optimizer
    split.fit(x, y, loss="mse", optimizer="sgd", epochs=1, verbose=0)
    assert split.optimizer is not kept  # another name: a new one


def test_clip_norm_counts_only_the_trained_parameters():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 4, 3)).astype(np.float32)
    y = rng.standard_normal((50, 1)).astype(np.float32)
    m = pyrnn.Sequential([pyrnn.LSTM(3, 8, batch_first=True, seed=0), pyrnn.LastStep(),
                          pyrnn.Dense(8, 1, seed=0)])
    before = m.numpy_params()
    m.fit(x, y, loss="mse", optimizer=optim.SGD(list(m[2].parameters()), lr=1.0), epochs=1,
          batch_size=50, clip_norm=0.01, shuffle=False, verbose=0)
    after = m.numpy_params()
    step = np.sqrt(sum(np.sum((after[k] - before[k]) ** 2) for k in ("2.weight", "2.bias")))
    assert step == pytest.approx(0.01, rel=1e-3)  # the frozen LSTM's gradients did not count


def test_keras_batch_hook_names_are_called():
    calls = []

    class Mine(callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            calls.append(("begin", batch))

        def on_train_batch_end(self, batch, logs=None):
            calls.append(("end", batch, round(logs["loss"], 6) > 0))

    class Old(callbacks.Callback):  # the short names still work
        def on_batch_end(self, batch, logs=None):
            calls.append(("old", batch))

    x = np.ones((4, 3), np.float32)
    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    m.fit(x, np.zeros((4, 1)) + 1, loss="mse", optimizer="sgd", batch_size=2, verbose=0,
          callbacks=[Mine(), Old(), callbacks.LambdaCallback(
              on_train_batch_end=lambda b, logs: calls.append(("lambda", b)))])
    assert [c for c in calls if c[0] == "begin"] == [("begin", 0), ("begin", 1)]
    assert [c[:2] for c in calls if c[0] == "end"] == [("end", 0), ("end", 1)]
    assert [c for c in calls if c[0] == "old"] == [("old", 0), ("old", 1)]
    assert [c for c in calls if c[0] == "lambda"] == [("lambda", 0), ("lambda", 1)]


def test_lambda_callback_hooks_given_as_none_are_skipped():
    seen = []
    cb = callbacks.LambdaCallback(on_epoch_end=None, on_train_end=lambda logs: seen.append(1))
    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    m.fit(np.ones((4, 3)), np.ones((4, 1)), loss="mse", optimizer="sgd", epochs=2, verbose=0,
          callbacks=[cb])
    assert seen == [1] and len(m.history["loss"]) == 2
    with pytest.raises(TypeError, match="must be callable"):
        callbacks.LambdaCallback(on_epoch_end=3)


def test_learning_rate_changes_through_model_optimizer():
    class Schedule(callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.model.optimizer.learning_rate = 0.0 if epoch else 0.1

    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32)
    m.fit(x, y, loss="mse", optimizer="sgd", epochs=1, verbose=0, callbacks=[Schedule()])
    after_one = m.numpy_params()
    m2 = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    m2.fit(x, y, loss="mse", optimizer="sgd", epochs=3, verbose=0, callbacks=[Schedule()])
    for k, v in m2.numpy_params().items():  # epochs 2 and 3 ran at lr 0
        np.testing.assert_array_equal(v, after_one[k])
    opt = optim.Adam(m.parameters())
    opt.lr = 0.5
    assert opt.learning_rate == 0.5 and opt.hyperparameters()["lr"] == 0.5
    for bad in (-1.0, math.nan):
        with pytest.raises(ValueError, match="lr"):
            opt.learning_rate = bad


def test_validation_data_errors_name_the_validation_data():
    m = pyrnn.Sequential([pyrnn.Dense(3, 3, seed=0)])
    x = np.ones((6, 3), np.float32)
    with pytest.raises(ValueError, match=r"validation_data \(x_val \(5, 3\), y_val \(5, 2\)\)"):
        m.fit(x, np.zeros(6, int), loss="cross_entropy", optimizer="sgd", verbose=0,
              validation_data=(np.ones((5, 3)), np.zeros((5, 2), int)))


def test_old_optimizer_pickles_keep_their_learning_rate():
    import pickle
    opt = optim.SGD(pyrnn.Dense(2, 2).parameters(), lr=0.25)
    state = opt.__dict__.copy()
    state["lr"] = state.pop("_lr")  # as pickles from before lr was checked kept it
    old = optim.SGD.__new__(optim.SGD)
    old.__setstate__(state)
    assert old.lr == 0.25
    assert pickle.loads(pickle.dumps(opt)).lr == 0.25


def test_lambda_callback_refuses_both_names_of_one_hook():
    with pytest.raises(TypeError, match="one hook"):
        callbacks.LambdaCallback(on_batch_end=print, on_train_batch_end=print)


def test_model_optimizer_before_fit_and_after_a_refused_fit():
    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    assert m.optimizer is None  # Keras: None before compile

    class Refuse(callbacks.Callback):
        def on_train_begin(self, logs=None):
            raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        m.fit(np.ones((4, 3)), np.ones((4, 1)), loss="mse", optimizer="adam", verbose=0,
              callbacks=[Refuse()])
    assert m.optimizer is None


def test_a_custom_loss_without_mask_warns_that_the_padding_counts():
    class Plain(losses.Loss):
        def forward(self, pred, target):
            self._dtype = np.asarray(pred).dtype
            d = np.asarray(pred, np.float64) - target
            self._dpred = d
            self.count = d.size
            return float((d ** 2).mean())

    ids, t, L = _padded()
    m = _tagger()
    y = np.zeros(t.shape + (3,), np.float32)
    with pytest.warns(UserWarning, match="takes no mask="):
        m.fit(ids, y, loss=Plain(), optimizer="sgd", epochs=1, verbose=0, lengths=L)


def test_a_refused_fit_keeps_the_named_optimizer_of_the_last_one():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 3)).astype(np.float32), rng.standard_normal((8, 1))
    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    m.fit(x, y, loss="mse", optimizer="adam", epochs=2, verbose=0)
    adam = m.optimizer
    with pytest.raises(ValueError):
        m.fit(x, y, loss="mse", optimizer="sgd", verbose=0,
              callbacks=[callbacks.EarlyStopping(monitor="nope")])
    with pytest.raises(ValueError):
        m.fit(x, y, loss="mse", optimizer="rmsprop", epochs=-1, verbose=0)
    assert m.optimizer is adam
    m.fit(x, y, loss="mse", optimizer="adam", verbose=0)
    assert m.optimizer is adam and adam.steps == 3  # its moments and step count continue


def test_mask_warnings_point_at_the_callers_line():
    class Plain(losses.MSELoss):
        def forward(self, pred, target):
            return super().forward(pred, target)

    ids, t, L = _padded()
    m = _tagger()
    y = np.zeros(t.shape + (3,), np.float32)
    with pytest.warns(UserWarning, match="takes no mask=") as rec:
        m.evaluate(ids, y, loss=Plain(), lengths=L)
    assert all(w.filename == __file__ for w in rec)

    class Keywords(losses.MSELoss):
        def forward(self, pred, target, **kw):
            return super().forward(pred, target, **kw)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.evaluate(ids, y, loss=Keywords(), lengths=L)  # takes mask through **kw


def _resumable(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((40, 6, 3)).astype(np.float32)
    y = rng.standard_normal((40, 2)).astype(np.float32)
    m = pyrnn.Sequential([pyrnn.GRU(3, 5, batch_first=True, seed=1), pyrnn.LastStep(),
                          pyrnn.Dense(5, 2, seed=2)])
    return m, x, y


def test_initial_epoch_resumes_like_keras(tmp_path):
    # fit had no initial_epoch: a resumed fit numbered its epochs from 1 again, so schedules
    # restarted and ModelCheckpoint("ep{epoch}") overwrote the first files.
    m, x, y = _resumable()
    whole = m.fit(x, y, loss="mse", optimizer="adam", epochs=4, batch_size=8, seed=3,
                  verbose=0)
    m2, _, _ = _resumable()
    seen, lrs = [], []

    def schedule(epoch, logs):
        seen.append(epoch)
        m2.optimizer.lr = 0.01 * 0.5 ** epoch
        lrs.append(m2.optimizer.lr)

    ck = callbacks.ModelCheckpoint(str(tmp_path / "ep{epoch:02d}.pyrnn"))
    first = m2.fit(x, y, loss="mse", optimizer="adam", epochs=2, batch_size=8, seed=3,
                   verbose=0, callbacks=[ck])
    later = m2.fit(x, y, loss="mse", optimizer="adam", epochs=4, batch_size=8, seed=3,
                   verbose=0, initial_epoch=2, callbacks=[ck, callbacks.LambdaCallback(
                       on_epoch_begin=schedule)])
    assert seen == [2, 3] and lrs == [0.0025, 0.00125]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"ep0{i}.pyrnn" for i in (1, 2, 3, 4)]
    assert len(first["loss"]) == 2 and len(later["loss"]) == 2
    # Same seed: the resumed epochs shuffled as the uninterrupted run's epochs 3 and 4 (the
    # schedule aside, which changed the learning rate: compare a run without it).
    m3, _, _ = _resumable()
    m3.fit(x, y, loss="mse", optimizer="adam", epochs=2, batch_size=8, seed=3, verbose=0)
    m3.fit(x, y, loss="mse", optimizer="adam", epochs=4, batch_size=8, seed=3, verbose=0,
           initial_epoch=2)
    m4, _, _ = _resumable()
    m4.fit(x, y, loss="mse", optimizer="adam", epochs=4, batch_size=8, seed=3, verbose=0)
    for a, b in zip(m3.parameters(), m4.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    assert whole["loss"][2:] == pytest.approx(m3.history["loss"])


def test_initial_epoch_progress_and_checks(capsys):
    m, x, y = _resumable()
    m.fit(x, y, loss="mse", optimizer="sgd", epochs=3, initial_epoch=1, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 2/3" in out and "Epoch 3/3" in out and "Epoch 1/3" not in out
    assert m.fit(x, y, loss="mse", optimizer="sgd", epochs=3, initial_epoch=3,
                 verbose=0) == {}
    with pytest.raises(ValueError, match=r"initial_epoch must be in \[0, epochs\] = \[0, 3\], "
                                         r"got 4"):
        m.fit(x, y, loss="mse", optimizer="sgd", epochs=3, initial_epoch=4, verbose=0)
    with pytest.raises(ValueError, match=r"got -1"):
        m.fit(x, y, loss="mse", optimizer="sgd", epochs=3, initial_epoch=-1, verbose=0)
    for bad in (True, 1.0, "1"):
        with pytest.raises(TypeError, match="initial_epoch must be an int"):
            m.fit(x, y, loss="mse", optimizer="sgd", epochs=3, initial_epoch=bad, verbose=0)


def test_predict_and_evaluate_take_verbose(capsys, monkeypatch):
    # model.predict(x, verbose=0), the usual Keras call, was a TypeError.
    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    x, y = np.ones((5, 3), np.float32), np.zeros((5, 1), np.float32)
    want = m.predict(x)
    np.testing.assert_array_equal(m.predict(x, verbose=0), want)
    assert m.evaluate(x, y, loss="mse", verbose=False) == m.evaluate(x, y, loss="mse")
    assert capsys.readouterr().out == ""
    np.testing.assert_array_equal(m.predict(x, batch_size=2, verbose=2), want)
    logs = m.evaluate(x, y, loss="mse", batch_size=2, verbose=2, return_dict=True)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("predict - 5 samples in 3 batches (")
    assert out[1].startswith(f"evaluate - loss: {logs['loss']:.4f} (") and len(out) == 2
    for bad in ("no", 3, None):
        with pytest.raises(TypeError, match="verbose must be True, False, 0, 1 or 2"):
            m.predict(x, verbose=bad)
        with pytest.raises(TypeError, match="verbose must be True, False, 0, 1 or 2"):
            m.evaluate(x, y, loss="mse", verbose=bad)
    pytest.importorskip("tqdm")
    from pyrnn import model as model_module
    monkeypatch.setattr(model_module, "_isatty", lambda: True)  # a terminal: tqdm's bar
    m.predict(x, batch_size=2, verbose=1)
    m.evaluate(x, y, loss="mse", batch_size=2, verbose=1)
    text = capsys.readouterr().out
    assert "predict" in text and "evaluate" in text and "3/3" in text and "loss:" in text


def test_early_stopping_refuses_both_names_of_restore_best():
    # Any pair: an explicit True beside restore_best_weights=False was taken as not given
    # (restore_best became False), while an agreeing False pair was refused (helper-181).
    for a in (True, False):
        for b in (True, False):
            with pytest.raises(TypeError, match="restore_best or restore_best_weights"):
                callbacks.EarlyStopping(restore_best=a, restore_best_weights=b)
    with pytest.raises(TypeError, match="restore_best_weights"):
        callbacks.EarlyStopping(restore_best_weights="yes")
    assert callbacks.EarlyStopping().restore_best is True
    assert callbacks.EarlyStopping(restore_best=True).restore_best is True
    import inspect
    assert "restore_best: 'bool' = True," in str(inspect.signature(callbacks.EarlyStopping))
    assert callbacks.EarlyStopping(restore_best=False).restore_best is False
    assert callbacks.EarlyStopping(restore_best_weights=False).restore_best is False


class _Recorder(callbacks.Callback):
    """Records every hook, with a copy of its logs."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __getattribute__(self, name):
        if name.startswith("on_") and name not in ("on_batch_begin", "on_batch_end"):
            calls = object.__getattribute__(self, "calls")
            return lambda *args: calls.append((name, *args[:-1], dict(args[-1] or {})))
        return object.__getattribute__(self, name)


def test_validation_evaluate_and_predict_run_keras_test_and_predict_hooks():
    # Keras runs on_test_* during fit's validation and evaluate, on_predict_* in predict; a
    # Keras-style subclass defining on_test_end was silently never called, and evaluate /
    # predict refused callbacks= (helper-181).
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 1)).astype(np.float32)
    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    rec = _Recorder()
    hist = m.fit(x, y, loss="mse", optimizer="sgd", epochs=1, batch_size=4, verbose=0,
                 validation_data=(x[:3], y[:3]), shuffle=False, callbacks=[rec])
    names = [c[0] for c in rec.calls]
    assert names == ["on_train_begin", "on_epoch_begin",
                     "on_train_batch_begin", "on_train_batch_end",
                     "on_train_batch_begin", "on_train_batch_end",
                     "on_test_begin", "on_test_batch_begin", "on_test_batch_end", "on_test_end",
                     "on_epoch_end", "on_train_end"]
    test_end = rec.calls[names.index("on_test_end")]
    assert test_end[1] == {"loss": hist["val_loss"][0]}  # (no val_ prefix, as Keras)
    batch_end = rec.calls[names.index("on_test_batch_end")]
    assert batch_end[1] == 0 and batch_end[2]["size"] == 3
    assert batch_end[2]["loss"] == pytest.approx(hist["val_loss"][0])

    rec = _Recorder()
    logs = m.evaluate(x, y, loss="mse", batch_size=2, return_dict=True, callbacks=[rec])
    assert [c[0] for c in rec.calls] == ["on_test_begin"] + [
        "on_test_batch_begin", "on_test_batch_end"] * 3 + ["on_test_end"]
    assert rec.calls[-1][1] == logs and rec.model is m
    assert rec.params == {"epochs": 1, "steps": 3, "batch_size": 2, "verbose": 0}

    rec = _Recorder()
    out = m.predict(x, batch_size=2, callbacks=[rec])
    assert [c[0] for c in rec.calls] == ["on_predict_begin"] + [
        "on_predict_batch_begin", "on_predict_batch_end"] * 3 + ["on_predict_end"]
    got = [c[2]["outputs"] for c in rec.calls if c[0] == "on_predict_batch_end"]
    np.testing.assert_array_equal(np.concatenate(got), out)

    seen = []
    lam = callbacks.LambdaCallback(on_test_end=lambda logs: seen.append(("test", logs)),
                                   on_predict_end=lambda logs: seen.append(("predict", logs)))
    m.evaluate(x, y, loss="mse", callbacks=[lam])
    m.predict(x, callbacks=(lam,))
    assert [k for k, _ in seen] == ["test", "predict"]
    for call in (lambda: m.evaluate(x, y, loss="mse", callbacks=lam),
                 lambda: m.predict(x, callbacks=[object()])):
        with pytest.raises(TypeError, match="callbacks must be"):
            call()


def test_a_test_hook_changing_the_layers_during_fit_is_refused():
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32)
    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    grow = callbacks.LambdaCallback(on_test_end=lambda logs: m.add(pyrnn.Dense(1, 1, seed=1)))
    with pytest.raises(RuntimeError, match=r"a callback's on_test_end\(\) changed the model"):
        m.fit(x, y, loss="mse", optimizer="sgd", validation_data=(x, y), callbacks=[grow],
              verbose=0)


def test_the_epoch_line_shows_what_callbacks_add_to_the_logs(capsys):
    # Keras' progress bar runs last: a callback's logs["lr"] was in history, not in the line.
    def add(epoch, logs):
        logs["lr"] = 0.5
        logs["note"] = "warm"  # (not a number: shown as it is)

    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32)
    m.fit(x, y, loss="mse", optimizer="sgd", verbose=2,
          callbacks=[callbacks.LambdaCallback(on_epoch_end=add)])
    line = capsys.readouterr().out.strip()
    assert " - lr: 0.5000 - note: warm (" in line, line


def test_stop_training_set_at_an_epoch_begin_stops_after_its_first_batch():
    # As Keras (the flag is read after each batch), and as the callbacks docstring now says.
    seen = []

    def begin(epoch, logs):
        if epoch == 1:
            m.stop_training = True

    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    x, y = np.ones((6, 3), np.float32), np.zeros((6, 1), np.float32)
    hist = m.fit(x, y, loss="mse", optimizer="sgd", epochs=3, batch_size=2, verbose=0,
                 callbacks=[callbacks.LambdaCallback(
                     on_epoch_begin=begin, on_train_batch_end=lambda b, logs: seen.append(b))])
    assert seen == [0, 1, 2, 0] and len(hist["loss"]) == 2


def test_early_stoppings_default_survives_copies_and_pickles():
    # Its default is told apart from a given True by identity: a copied default (a sweep tool
    # copying signature defaults, kwargs sent to a worker) was "restore_best must be True or
    # False, got True" (helper-184).
    import copy
    import inspect
    import pickle
    default = inspect.signature(callbacks.EarlyStopping).parameters["restore_best"].default
    for twin in (copy.copy(default), copy.deepcopy(default), pickle.loads(pickle.dumps(default))):
        assert twin is default
        assert callbacks.EarlyStopping(restore_best=twin).restore_best is True
        with pytest.raises(TypeError, match="not both"):  # (True given: still not this one)
            callbacks.EarlyStopping(restore_best=True, restore_best_weights=False)


class _FakeBar:
    made = []

    def __init__(self, **kw):
        self.closed = 0
        _FakeBar.made.append(self)

    def update(self, n):
        pass

    def set_postfix(self, **kw):
        pass

    def set_postfix_str(self, text, refresh=True):
        self.text = text

    def close(self):
        self.closed += 1


@pytest.mark.parametrize("hook", ["on_test_begin", "on_test_batch_end", "on_test_end",
                                  "on_train_batch_begin", "on_epoch_end"])
def test_a_hook_error_closes_the_epochs_bar_and_is_the_error_raised(hook, monkeypatch):
    # A bar left open by an on_test_* hook's error garbled the next fit's bars; a value a
    # callback put in the logs that :.4f cannot format replaced the hook's own error
    # (helper-184).
    from fractions import Fraction

    from pyrnn import model as model_module
    monkeypatch.setattr(model_module, "_isatty", lambda: True)
    monkeypatch.setattr(model_module, "_tqdm", lambda: _FakeBar)
    _FakeBar.made.clear()

    def boom(*args):
        if args and isinstance(args[-1], dict):
            args[-1]["frac"] = Fraction(1, 3)
        raise KeyError("the hook's own error")

    x, y = np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32)
    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    with pytest.raises(KeyError, match="the hook's own error"):
        m.fit(x, y, loss="mse", optimizer="sgd", validation_data=(x, y), verbose=1,
              callbacks=[callbacks.LambdaCallback(**{hook: boom})])
    assert [b.closed >= 1 for b in _FakeBar.made] == [True]


@pytest.mark.parametrize("verbose", [0, 1])
def test_evaluates_on_test_end_runs_after_its_bar_is_closed(verbose, monkeypatch):
    # What on_test_end prints has lines of its own (it ran while evaluate's bar was open), as
    # on_predict_end's; its logs are evaluate's, and a change to them is not evaluate's return.
    from pyrnn import model as model_module
    monkeypatch.setattr(model_module, "_isatty", lambda: True)
    monkeypatch.setattr(model_module, "_tqdm", lambda: _FakeBar)
    _FakeBar.made.clear()
    seen = []

    def end(logs):
        seen.append(([b.closed for b in _FakeBar.made], dict(logs)))
        logs["loss"] = -1.0

    x, y = np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32)
    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    value = m.evaluate(x, y, loss="mse", batch_size=3, verbose=verbose,
                       callbacks=[callbacks.LambdaCallback(on_test_end=end)])
    assert seen == [([1] if verbose else [], {"loss": value})] and value >= 0


def test_evaluates_on_test_end_shares_one_logs_dict_and_precedes_the_plain_line(capsys):
    # As Keras' CallbackList and progress logger (and fit's epoch line): what one callback adds
    # the next one sees, and the line printed after the hooks shows it (helper-196).
    seen = []
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32)
    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    add = callbacks.LambdaCallback(on_test_end=lambda logs: (logs.update(extra=2.0),
                                                             print("hook")))
    look = callbacks.LambdaCallback(on_test_end=lambda logs: seen.append(sorted(logs)))
    out = m.evaluate(x, y, loss="mse", verbose=2, return_dict=True, callbacks=[add, look])
    assert seen == [["extra", "loss"]] and sorted(out) == ["loss"]
    text = capsys.readouterr().out
    assert text.index("hook") < text.index("evaluate - loss: ") and "extra: 2.0000" in text, text


def test_the_epoch_line_formats_any_value_a_callback_adds(capsys):
    import datetime
    from fractions import Fraction

    def add(epoch, logs):
        logs.update(frac=Fraction(1, 3), big=10**400, flag=True,
                    at=datetime.datetime(2026, 12, 7, 16, 43))  # (.4f is a strftime pattern)

    m = pyrnn.Sequential([pyrnn.Dense(3, 1, seed=0)])
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32)
    m.fit(x, y, loss="mse", optimizer="sgd", verbose=2,
          callbacks=[callbacks.LambdaCallback(on_epoch_end=add)])
    line = capsys.readouterr().out
    # (a Fraction takes .4f from Python 3.12 on, str() before)
    assert (" - frac: 1/3 - " in line or " - frac: 0.3333 - " in line) and " - big: 1000" in line \
        and " - flag: True - at: 2026-12-07 16:43:00 (" in line, line
