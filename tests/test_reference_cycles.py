"""Models and layers are freed by reference counting alone, the moment the last reference goes:
a reference cycle pins their native (and device) memory until Python's cyclic gc runs, and for
ever where an application disables or freezes gc."""
import gc
import weakref

import numpy as np
import pytest

import pyrnn


@pytest.fixture
def no_gc():
    was = gc.isenabled()
    gc.disable()
    yield
    if was:
        gc.enable()


def test_a_used_model_is_freed_without_gc(no_gc):
    # Sequential's distinctness walk was a nested function calling itself (a closure cycle that
    # held the model), run on every forward, fit, predict and evaluate.
    inner = pyrnn.Sequential([pyrnn.Dense(4, 4)])
    m = pyrnn.Sequential([pyrnn.GRU(2, 4, batch_first=True), pyrnn.LastStep(), inner,
                          pyrnn.Dense(4, 1)])
    x, y = np.zeros((3, 5, 2), np.float32), np.zeros((3, 1), np.float32)
    m(x)
    m.predict(x)
    m.fit(x, y, loss="mse", optimizer="adam", epochs=2, verbose=0,
          callbacks=[pyrnn.callbacks.EarlyStopping("loss", patience=1)])
    m.evaluate(x, y)
    refs = [weakref.ref(m), weakref.ref(inner), weakref.ref(m.layers[0])]
    del m, inner
    assert [r() is None for r in refs] == [True, True, True]


@pytest.mark.parametrize("make", [lambda: pyrnn.LSTM(2, 3), lambda: pyrnn.Dense(2, 3),
                                  lambda: pyrnn.LayerNorm(3), lambda: pyrnn.Embedding(5, 3)])
def test_a_used_layer_is_freed_without_gc(make, no_gc):
    layer = make()
    x = np.zeros((4, 2, 2), np.float32) if isinstance(layer, pyrnn.LSTM) else (
        np.zeros((2, 3), np.float32) if isinstance(layer, pyrnn.LayerNorm) else
        np.zeros((2, 2), np.int64) if isinstance(layer, pyrnn.Embedding) else
        np.zeros((2, 2), np.float32))
    out = layer(x)
    out = out[0] if isinstance(out, tuple) else out
    layer.backward(np.ones_like(out))
    r = weakref.ref(layer)
    del layer, out
    assert r() is None
