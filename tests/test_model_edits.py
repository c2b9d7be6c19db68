"""Sequential as users edit, share and slice it: backward refuses caches another forward left,
fit refuses layers changed under it (and their moves), error messages name the layer, and
stop_training from a batch hook stops after that batch, as in Keras."""
import warnings

import numpy as np
import pytest

import pyrnn
from pyrnn import callbacks

RNG = np.random.default_rng(0)
XA = RNG.standard_normal((4, 5, 3)).astype(np.float32)
XB = RNG.standard_normal((4, 5, 3)).astype(np.float32)
DY = np.ones((4, 1), np.float32)


def _a_clean_rerun_gives(model, want):
    """model's gradients from zero, one forward of XA and one backward, equal to want."""
    model.zero_grad()
    model(XA)
    model.backward(DY)
    for k, v in model.numpy_grads().items():
        np.testing.assert_array_equal(v, want[k])


def _head(enc, seed=1):
    return pyrnn.Sequential([enc, pyrnn.LastStep(), pyrnn.Dense(4, 1, seed=seed)])


def test_a_shared_layer_run_by_another_model_is_refused_by_backward():
    enc = pyrnn.GRU(3, 4, batch_first=True, seed=0)
    a, b = _head(enc), _head(enc, seed=2)
    a(XA)
    b(XB)  # the encoder's cache is now B's batch
    with pytest.raises(RuntimeError, match=r"layer 0 \(GRU\) ran another forward after this "
                                           r"model's"):
        a.backward(DY)
    assert not np.any(enc.numpy_grads()["weight_ih_l0"])  # nothing accumulated
    # B's own backward is fine, and A's after its own forward again
    b.backward(DY)
    a.zero_grad()
    a(XA)
    a.backward(DY)
    _a_clean_rerun_gives(a, a.numpy_grads())


def test_a_slice_or_direct_call_in_training_mode_between_forward_and_backward_is_refused():
    m = _head(pyrnn.GRU(3, 4, batch_first=True, seed=1))
    m(XA)
    m[:2](XB)  # features of another batch, logged in training mode
    with pytest.raises(RuntimeError, match=r"layer 0 \(GRU\) ran another forward.*model\[:1\]"):
        m.backward(DY)
    m(XA)
    m.layers[2](np.ones((4, 4), np.float32))  # the Dense on its own
    with pytest.raises(RuntimeError, match=r"layer 2 \(Dense\) ran another forward"):
        m.backward(DY)
    # A nested model's layer too, named as nested
    inner = pyrnn.Sequential([pyrnn.LastStep(), pyrnn.Dense(4, 1, seed=3)])
    outer = pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True, seed=1), inner])
    outer(XA)
    inner.layers[1](np.ones((4, 4), np.float32))
    with pytest.raises(RuntimeError, match=r"layer 1\.1 \(Dense\) ran another"):
        outer.backward(DY)


def test_eval_forwards_and_no_forward_keep_their_own_errors():
    m = _head(pyrnn.GRU(3, 4, batch_first=True, seed=1))
    with pytest.raises(RuntimeError, match="needs a preceding forward"):
        m.backward(DY)  # no forward yet: the layers' message
    m.eval()
    m(XA)
    m.train()
    with pytest.raises(RuntimeError, match="needs a preceding forward"):
        m.backward(DY)


def test_layers_added_or_replaced_after_the_forward_are_refused_by_backward():
    d = pyrnn.Dense(4, 1, seed=0)
    d(np.ones((4, 4), np.float32))  # a cache of its own, of the right shape
    m = pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True, seed=1), pyrnn.LastStep()])
    m(XA)
    m.add(d)
    with pytest.raises(RuntimeError, match=r"were changed \(added, removed or replaced\) after "
                                           r"the forward"):
        m.backward(DY)
    assert not np.any(d.numpy_grads()["weight"])
    m(XA)
    m.layers[2] = pyrnn.Dense(4, 1, seed=5)
    m.layers[2](np.ones((4, 4), np.float32))
    with pytest.raises(RuntimeError, match=r"were changed \(added, removed or replaced\)"):
        m.backward(DY)


def test_a_failed_forward_at_the_first_layer_keeps_the_last_forwards_record():
    m = _head(pyrnn.GRU(3, 4, batch_first=True, seed=1))
    m(XA)
    with pytest.raises(ValueError):
        m(np.ones((4, 5, 7), np.float32))  # refused by layer 0: no cache changed
    m.backward(DY)  # the first forward's, as before
    _a_clean_rerun_gives(m, m.numpy_grads())


def test_copies_do_not_carry_the_forward_record():
    import copy
    import pickle
    m = _head(pyrnn.GRU(3, 4, batch_first=True, seed=1))
    m(XA)
    for c in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert "_forward_serials" not in c.__dict__
        with pytest.raises(RuntimeError, match="needs a preceding forward"):
            c.backward(DY)
        c(XA)
        c.backward(DY)


def test_a_layer_class_instead_of_an_instance_is_refused():
    with pytest.raises(TypeError, match=r"layer 1 is the class Dropout, not a layer: "
                                        r"Dropout\(\.\.\.\) makes one"):
        pyrnn.Sequential([pyrnn.Dense(3, 3), pyrnn.Dropout])
    m = pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True)])
    with pytest.raises(TypeError, match="the class LastStep"):
        m.add(pyrnn.LastStep)
    assert len(m) == 1
    m.layers.append(pyrnn.LastStep)  # the public list, edited: found at the next call
    with pytest.raises(TypeError, match="the class LastStep"):
        m(XA)


def test_pop_of_the_first_layer_keeps_the_direction_count_as_a_slice_does():
    bi = pyrnn.GRU(3, 4, batch_first=True, bidirectional=True, seed=0)
    m = pyrnn.Sequential([bi, pyrnn.LastStep(), pyrnn.Dense(8, 2, seed=1)])
    want = m(XA)
    h = bi(XA)[0]
    np.testing.assert_array_equal(m[1:](h), want)
    assert m.pop(0) is bi
    np.testing.assert_array_equal(m(h), want)  # not the BiGRU output read as one direction
    # popping another layer changes nothing of the kind
    m2 = pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True, seed=0), pyrnn.LastStep(),
                           pyrnn.Dense(4, 2, seed=1)])
    m2.pop()
    assert m2._input_bidirectional is False


def test_errors_raised_by_a_layer_name_its_place_in_the_model():
    m = pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True), pyrnn.GRU(5, 2, batch_first=True)])
    with pytest.raises(ValueError, match=r"^layer 1 \(GRU\): expected input of shape \(N, T, "
                                         r"5\)"):
        m(XA)
    nested = pyrnn.Sequential([pyrnn.GRU(3, 4, batch_first=True), pyrnn.LastStep(),
                               pyrnn.Sequential([pyrnn.Dense(4, 4), pyrnn.Dense(5, 1)])])
    with pytest.raises(ValueError, match=r"^layer 2\.1 \(Dense\): Dense expects"):
        nested(XA)
    # The type and message otherwise stay; the same error again is named once, not twice.
    with pytest.raises(ValueError) as e:
        nested(XA)
    assert str(e.value).count("layer 2.1") == 1


def test_a_callback_changing_the_layers_during_fit_is_refused():
    x = RNG.standard_normal((16, 5, 3)).astype(np.float32)
    y = RNG.standard_normal((16, 1)).astype(np.float32)

    def swap(self, *args, **kwargs):
        self.model.layers[2] = pyrnn.Dense(4, 1, seed=9)

    for hook in ("on_train_begin", "on_epoch_begin", "on_train_batch_begin",
                 "on_train_batch_end", "on_epoch_end"):
        m = _head(pyrnn.GRU(3, 4, batch_first=True, seed=0))
        with pytest.raises(RuntimeError, match=rf"a callback's {hook}\(\) changed the model's "
                                               r"layers during fit\(\)"):
            m.fit(x, y, loss="mse", optimizer="sgd", epochs=2, batch_size=8, verbose=0,
                  callbacks=[type("Swap", (callbacks.Callback,), {hook: swap})()])
    # Between fits the new layer trains
    m = _head(pyrnn.GRU(3, 4, batch_first=True, seed=0))
    m.fit(x, y, loss="mse", optimizer="sgd", epochs=1, verbose=0)
    m.layers[2] = new = pyrnn.Dense(4, 1, seed=9)
    w = new.numpy_params()["weight"]
    m.fit(x, y, loss="mse", optimizer="sgd", epochs=1, verbose=0)
    assert not np.array_equal(new.numpy_params()["weight"], w)


def test_moving_a_fitting_models_layers_through_a_slice_or_the_layer_is_refused():
    x = RNG.standard_normal((8, 5, 3)).astype(np.float32)
    y = RNG.standard_normal((8, 1)).astype(np.float32)
    tried = []

    class Move(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            for move in (lambda: self.model[:].to("cpu"), lambda: self.model[1:].to("cpu")):
                with pytest.raises(RuntimeError, match=r"model\.to\(\) during fit\(\)"):
                    move()
                tried.append(1)
            # a layer's own to() to another device is refused (to its own: nothing to move)
            layer = self.model.layers[0]
            from pyrnn.parameter import refuse_move_in_fit
            with pytest.raises(RuntimeError, match=r"GRU\.to\(\) during fit\(\)"):
                refuse_move_in_fit(layer)
            assert layer.to("cpu") is layer
            tried.append(2)

    m = _head(pyrnn.GRU(3, 4, batch_first=True, seed=0))
    m.fit(x, y, loss="mse", optimizer="sgd", epochs=1, verbose=0, callbacks=[Move()])
    assert tried == [1, 1, 2]
    m[:].to("cpu")  # after fit: free again
    from pyrnn.parameter import _IN_FIT
    assert not _IN_FIT


def test_stop_training_from_a_batch_hook_stops_after_that_batch():
    x = RNG.standard_normal((40, 5, 3)).astype(np.float32)
    y = RNG.standard_normal((40, 1)).astype(np.float32)
    seen = []

    class StopAt(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(("batch", batch))
            if batch == 1:
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            seen.append(("epoch", epoch, sorted(logs)))

    m = _head(pyrnn.GRU(3, 4, batch_first=True, seed=0))
    h = m.fit(x, y, loss="mse", optimizer="sgd", epochs=3, batch_size=8, verbose=0,
              validation_data=(x[:8], y[:8]), callbacks=[StopAt()], shuffle=False)
    assert seen == [("batch", 0), ("batch", 1), ("epoch", 0, ["loss", "val_loss"])]
    assert len(h["loss"]) == 1
    # The epoch loss is the mean over the two batches run
    m2 = _head(pyrnn.GRU(3, 4, batch_first=True, seed=0))
    m2.fit(x[:16], y[:16], loss="mse", optimizer="sgd", epochs=1, batch_size=8, verbose=0,
           shuffle=False)
    assert m2.history["loss"] == h["loss"]


def test_a_nested_model_run_on_its_own_between_forward_and_backward_is_refused():
    # The Keras GAN pattern: gan = [G, D], D also run on its own (real data) in between.
    G = pyrnn.Sequential([pyrnn.Dense(2, 3, activation="tanh", seed=0)])
    D = pyrnn.Sequential([pyrnn.Dense(3, 4, activation="tanh", seed=1), pyrnn.Dense(4, 1, seed=2)])
    gan = pyrnn.Sequential([G, D])
    z = np.ones((4, 2), np.float32)
    gan(z)
    D(np.full((4, 3), 3.0, np.float32))
    with pytest.raises(RuntimeError, match=r"layer 1\.0 \(Dense\) ran another forward.*"
                                           r"model\[:2\]"):
        gan.backward(DY)
    gan(z)
    gan[1:](np.ones((4, 3), np.float32))  # a slice over D runs D's forward too
    with pytest.raises(RuntimeError, match=r"layer 1\.0 \(Dense\) ran another forward"):
        gan.backward(DY)
    gan(z)
    gan.layers[1] = pyrnn.Sequential([pyrnn.Dense(3, 4, seed=1), pyrnn.Dense(4, 1, seed=2)])
    with pytest.raises(RuntimeError, match=r"were changed \(added, removed or replaced\)"):
        gan.backward(DY)
    gan.layers[1] = D
    gan(z)
    gan.backward(DY)  # its own forward: fine


def test_rank_errors_name_the_nested_place_and_keep_fits_context():
    m = pyrnn.Sequential([pyrnn.Dense(3, 4, seed=0),
                          pyrnn.Sequential([pyrnn.LSTM(4, 4, batch_first=True), pyrnn.LastStep(),
                                            pyrnn.LSTM(4, 4, batch_first=True)])])
    with pytest.raises(ValueError, match=r"^layer 1\.2 \(LSTM\(4, 4, batch_first=True\)\) needs "
                                         r"a sequence \(N, T, F\), but the layers before it give "
                                         r"shape \(2, 4\)"):
        m(np.ones((2, 5, 3), np.float32))
    flat = pyrnn.Sequential([pyrnn.LSTM(3, 4, batch_first=True), pyrnn.LastStep(),
                             pyrnn.LSTM(4, 4, batch_first=True)])
    with pytest.raises(ValueError, match=r"^x \(2, 5, 3\), y \(2, 4\), checked on its first "
                                         r"sample: layer 2 \(LSTM"):
        flat.fit(np.ones((2, 5, 3), np.float32), np.ones((2, 4), np.float32), loss="mse",
                 optimizer="sgd", verbose=0)
    with pytest.raises(ValueError) as e:
        flat(np.ones((2, 5, 3), np.float32))
    assert type(e.value) is ValueError


def test_pop_of_the_first_layer_repairs_a_model_holding_a_layer_twice():
    d = pyrnn.Dense(3, 3, seed=0)
    m = pyrnn.Sequential([d, pyrnn.Dense(3, 1, seed=1)])
    m.layers.append(d)
    assert m.pop(0) is d
    assert len(m) == 2


@pytest.mark.parametrize("case", ["bos0_pad_minus1", "bos0_padding_idx", "nan_padding"])
def test_post_padded_data_starting_with_zero_steps_does_not_warn(case):
    rng = np.random.default_rng(0)
    N, T = 64, 20
    lengths = np.where(rng.random(N) < 0.3, T, T - 1)
    if case == "nan_padding":  # trajectories relative to their start: step 0 all zeros
        x = np.cumsum(rng.normal(size=(N, T, 2)), axis=1)
        x -= x[:, :1]
        for i, L in enumerate(lengths):
            x[i, L:] = np.nan
        m = pyrnn.Sequential([pyrnn.LSTM(2, 8, batch_first=True, seed=1), pyrnn.LastStep()])
    else:  # token ids with BOS = 0, padded at the end with -1 or the padding_idx
        x = rng.integers(3, 50, (N, T))
        x[:, 0] = 0
        pad = -1 if case == "bos0_pad_minus1" else 1
        for i, L in enumerate(lengths):
            x[i, L:] = pad
        m = pyrnn.Sequential([pyrnn.Embedding(50, 8, padding_idx=None if pad < 0 else 1, seed=0),
                              pyrnn.LSTM(8, 8, batch_first=True, seed=1), pyrnn.LastStep()])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.predict(x, lengths=lengths)


def test_a_sequential_subclass_running_its_own_layers_is_covered_too():
    class Residual(pyrnn.Sequential):  # its own forward: runs its layers itself
        def forward(self, x, lengths=None):
            return x + self.layers[0].forward(x)

        def backward(self, dy):
            return dy + self.layers[0].backward(dy)

    inner = pyrnn.Dense(3, 3, seed=1)
    m = pyrnn.Sequential([pyrnn.Dense(2, 3, seed=0), Residual([inner]), pyrnn.Dense(3, 1, seed=2)])
    z = np.ones((4, 2), np.float32)
    m(z)
    inner(np.full((4, 3), 3.0, np.float32))
    with pytest.raises(RuntimeError, match=r"layer 1\.0 \(Dense\) ran another forward"):
        m.backward(DY)
    m(z)
    m.backward(DY)


def test_pop_of_the_first_layer_with_a_duplicate_keeps_the_direction_count():
    bi = pyrnn.GRU(3, 4, batch_first=True, bidirectional=True, seed=0)
    d = pyrnn.Dense(8, 2, seed=1)
    m = pyrnn.Sequential([bi, pyrnn.LastStep(), d])
    want = m[1:](bi(XA)[0])
    m.layers.append(d)
    m.pop(0)
    m.pop()
    np.testing.assert_array_equal(m(bi(XA)[0]), want)


def test_front_padded_data_ending_with_one_token_still_warns():
    # (Keras pad_sequences(padding="pre") of token ids ending with EOS: constant past the
    # lengths, which the exemption for padding at the end must not take for padding)
    rng = np.random.default_rng(0)
    N, T = 32, 10
    lengths = rng.integers(3, T, N)
    x = np.zeros((N, T), np.int64)
    for i, L in enumerate(lengths):
        x[i, T - L:] = np.r_[rng.integers(3, 50, L - 1), 2]  # ... EOS = 2
    m = pyrnn.Sequential([pyrnn.Embedding(50, 4, seed=0), pyrnn.GRU(4, 4, batch_first=True),
                          pyrnn.LastStep()])
    with pytest.warns(UserWarning, match=r"looks padded at the front.*two or more steps "
                                         r"shorter"):
        m.predict(x, lengths=lengths)


def test_the_forward_record_does_not_keep_a_popped_layer_alive():
    import gc
    import weakref
    m = _head(pyrnn.GRU(3, 4, batch_first=True, seed=0))
    m(XA)
    gone = weakref.ref(m.layers[0])
    was = gc.isenabled()
    gc.disable()
    try:
        m.pop(0)
        assert gone() is None  # (its cache, device memory on a GPU, freed with it)
    finally:
        if was:
            gc.enable()
