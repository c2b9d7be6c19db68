"""Python object semantics a PyTorch / Keras user relies on: Parameter identity (freezing by
set difference), subclass forward overrides, copies and pickles without transient state,
LastStep outside its model, backward after eval(), in-place operators on Parameter data,
Sequential as a container, save / load paths and file objects, Dense outputs the caller may
edit in place."""
import copy
import io
import os
import pickle
import threading

import numpy as np
import pytest

import pyrnn
from pyrnn import optim


def _model():
    return pyrnn.Sequential([pyrnn.GRU(2, 3, batch_first=True, seed=0), pyrnn.LastStep(),
                             pyrnn.Dense(3, 1, seed=1)])


def test_parameters_of_one_storage_are_equal_whatever_their_name():
    m = _model()
    frozen = set(m.layers[0].parameters())
    rest = [p.name for p in m.parameters() if p not in frozen]
    assert rest == ["2.weight", "2.bias"]  # as torch: only the Dense is left to train
    a, b = next(m.layers[0].parameters()), next(m.parameters())
    assert a == b and hash(a) == hash(b) and a.name != b.name
    w, bias = list(m.layers[2].parameters())
    assert w != bias and a != w
    assert a != "weight_ih_l0" and (a == object()) is False
    # an optimizer over that subset leaves the frozen layer alone
    before = m.layers[0].numpy_params()
    opt = optim.SGD([p for p in m.parameters() if p not in frozen], lr=0.1)
    x = np.random.default_rng(0).standard_normal((4, 5, 2)).astype(np.float32)
    y = m(x)
    m.backward(np.ones_like(y))
    opt.step()
    for k, v in m.layers[0].numpy_params().items():
        np.testing.assert_array_equal(v, before[k])


def test_empty_parameters_are_equal_only_to_themselves():
    p1 = pyrnn.Parameter("a", np.zeros(0), np.zeros(0))
    p2 = pyrnn.Parameter("b", np.zeros(0), np.zeros(0))
    assert p1 == p1 and p1 != p2 and len({p1, p2}) == 2


@pytest.mark.parametrize("make", [lambda: pyrnn.LSTM(3, 4, seed=0),
                                  lambda: pyrnn.GRU(3, 4, num_layers=2, seed=0),
                                  lambda: pyrnn.Dense(3, 2, seed=0)],
                         ids=["lstm", "gru2", "dense"])
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_set_of_its_own_parameters_kept_on_a_layer_survives_a_copy(make, how):
    # Copied before the copy's arrays existed, every Parameter compared equal and hashed as
    # None: the set and dict shrank to one entry, which then matched nothing (helper-143).
    layer = make()
    layer.no_decay = set(layer.parameters())
    layer.names = {p: p.name for p in layer.parameters()}
    layer.listed = list(layer.parameters())
    c = copy.deepcopy(layer) if how == "deepcopy" else pickle.loads(pickle.dumps(layer))
    n = len(list(layer.parameters()))
    assert len(c.no_decay) == len(c.names) == n
    assert all(p in c.no_decay and c.names[p] == p.name for p in c.parameters())
    assert not any(p in c.no_decay for p in layer.parameters())  # the copy's own storage
    assert [p.name for p in c.listed] == [p.name for p in layer.listed]
    assert all(a == b for a, b in zip(c.listed, c.parameters()))


@pytest.mark.parametrize("cls", [pyrnn.RNN, pyrnn.LSTM, pyrnn.GRU])
def test_calling_a_recurrent_subclass_runs_its_forward(cls):
    calls = []

    class Mine(cls):
        def forward(self, x, hx=None, lengths=None):
            calls.append(x.shape)
            return super().forward(x, hx, lengths)

    Mine(2, 3)(np.ones((4, 1, 2)))
    assert calls == [(4, 1, 2)]


@pytest.mark.parametrize("how", ["deepcopy", "copy", "pickle"])
def test_copies_do_not_keep_the_busy_mark_of_a_thread(how):
    d = pyrnn.Dense(3, 2, seed=0)
    d._busy_owner = (os.getpid(), threading.get_ident() + 1)  # another thread inside forward
    c = {"deepcopy": copy.deepcopy, "copy": copy.copy,
         "pickle": lambda o: pickle.loads(pickle.dumps(o))}[how](d)
    np.testing.assert_array_equal(c(np.ones((1, 3), np.float32)),
                                  pyrnn.Dense(3, 2, seed=0)(np.ones((1, 3), np.float32)))


def test_pickles_carry_no_forward_cache_or_loss_gradient():
    m = pyrnn.Sequential([pyrnn.Dense(64, 64, seed=0), pyrnn.LayerNorm(64),
                          pyrnn.Dense(64, 1, seed=1)])
    small = len(pickle.dumps(m))
    rng = np.random.default_rng(0)
    m.fit(rng.random((4000, 64), np.float32), rng.random((4000, 1), np.float32),
          loss="mse", optimizer="adam", batch_size=4000, verbose=0)
    kept = len(pickle.dumps(m.optimizer))  # fit keeps its optimizer (Keras' model.optimizer)
    assert len(pickle.dumps(m)) < small + kept + 20000  # was the last batch's activations
    loss = pyrnn.losses.MSELoss()
    loss(np.zeros((1000, 10)), np.ones((1000, 10)))
    c = pickle.loads(pickle.dumps(loss))
    with pytest.raises(RuntimeError, match="needs a preceding forward"):
        c.backward()
    assert loss.backward().shape == (1000, 10)  # the original keeps its own


def test_a_copied_layer_needs_its_own_forward_before_backward():
    d = pyrnn.Dense(3, 2, seed=0)
    d(np.ones((4, 3), np.float32))
    c = copy.deepcopy(d)
    with pytest.raises(RuntimeError, match="needs a preceding forward"):
        c.backward(np.ones((4, 2), np.float32))
    assert d.backward(np.ones((4, 2), np.float32)).shape == (4, 3)


def test_laststep_is_standalone_again_outside_its_model():
    x = np.arange(32, dtype=np.float32).reshape(2, 4, 4)
    want = pyrnn.LastStep()(x)
    ls = pyrnn.LastStep()
    m = pyrnn.Sequential([pyrnn.GRU(2, 2, batch_first=True, bidirectional=True, seed=0), ls])
    np.testing.assert_array_equal(ls(x), want)  # not bidirectional from its model
    out = m(np.ones((2, 4, 2), np.float32))  # inside the model it is, for the pass
    assert out.shape == (2, 4)
    np.testing.assert_array_equal(ls(x), want)
    m.pop()
    np.testing.assert_array_equal(ls(x), want)
    # A nested model's leading LastStep takes the enclosing model's direction, for the pass.
    inner = pyrnn.Sequential([pyrnn.LastStep()])
    outer = pyrnn.Sequential([pyrnn.GRU(2, 2, batch_first=True, bidirectional=True, seed=0),
                              inner])
    seq = outer.layers[0](np.ones((2, 4, 2), np.float32))[0]
    np.testing.assert_array_equal(outer(np.ones((2, 4, 2), np.float32)),
                                  pyrnn.LastStep(bidirectional=True)(seq))
    np.testing.assert_array_equal(inner(x), want)


def test_onnx_export_of_a_bidirectional_laststep_model_leaves_it_standalone():
    pytest.importorskip("onnx")
    ls = pyrnn.LastStep()
    m = pyrnn.Sequential([pyrnn.GRU(2, 2, batch_first=True, bidirectional=True,
                                    reset_after=True, seed=0), ls])
    pyrnn.export_onnx(m, io.BytesIO())
    assert ls.num_directions == 1


def test_backward_after_eval_differentiates_the_training_forward():
    # As the recurrent layers and PyTorch: eval() does not drop a training forward's cache.
    for layer, x in ((pyrnn.Dense(3, 2, seed=0), np.ones((4, 3), np.float32)),
                     (pyrnn.LayerNorm(3), np.arange(12, dtype=np.float32).reshape(4, 3)),
                     (pyrnn.GRU(3, 2, seed=0), np.ones((4, 1, 3), np.float32))):
        y = layer(x)
        y = y[0] if isinstance(y, tuple) else y
        layer.eval()
        d = layer.backward(np.ones_like(y))
        d = d[0] if isinstance(d, tuple) else d
        assert d.shape == x.shape
        layer(x)  # an eval forward drops it
        with pytest.raises(RuntimeError, match="needs a preceding forward"):
            layer.backward(np.ones_like(y))


def test_model_backward_refuses_before_any_layer_accumulates():
    m = pyrnn.Sequential([pyrnn.Dense(3, 3, seed=0), pyrnn.GRU(3, 4, batch_first=True, seed=1)])
    m.layers[0].eval()  # its forward keeps no cache; the GRU's does
    y = m(np.random.default_rng(0).random((2, 5, 3)).astype(np.float32))
    with pytest.raises(RuntimeError, match="Dense.backward"):
        m.backward(np.ones_like(y))
    assert all(not g.any() for g in m.grads.values())


def test_in_place_operators_on_parameter_data_and_grad():
    d = pyrnn.Dense(3, 2, seed=0)
    p = next(d.parameters())
    w0 = d.params["weight"].copy()
    p.data += 1
    np.testing.assert_array_equal(d.params["weight"], w0 + 1)
    d(np.ones((1, 3), np.float32))
    p.data *= 2  # a write: the cached forward belongs to the old weights
    with pytest.raises(RuntimeError, match="parameters were changed"):
        d.backward(np.ones((1, 2), np.float32))
    p.grad += 3
    np.testing.assert_array_equal(d.grads["weight"], np.full((2, 3), 3, np.float32))
    for what in ("data", "grad"):
        with pytest.raises(AttributeError, match=rf"p\.{what}\[\.\.\.\] = value"):
            setattr(p, what, np.zeros((2, 3), np.float32))


def test_sequential_is_a_container_of_its_layers():
    m = _model()
    assert len(m) == 3 and list(m) == m.layers
    assert m[0] is m.layers[0] and m[-1] is m.layers[2]
    head = m[1:]
    assert isinstance(head, pyrnn.Sequential) and head.layers == m.layers[1:]
    with pytest.raises(IndexError, match="out of range for a Sequential of 3 layers"):
        m[3]
    with pytest.raises(TypeError, match="integers or slices"):
        m["0"]
    last = m.pop()
    assert isinstance(last, pyrnn.Dense) and len(m) == 2
    assert isinstance(m.pop(0), pyrnn.GRU) and len(m) == 1
    m.pop()
    with pytest.raises(IndexError, match="empty"):
        m.pop()


def test_save_refuses_a_folder_or_empty_path_up_front(tmp_path):
    m = _model()
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        m.save(tmp_path)
    with pytest.raises(FileNotFoundError, match="empty path"):
        m.save("")
    with pytest.raises(TypeError, match="str, bytes, os.PathLike or a binary file"):
        m.save(3)
    assert list(tmp_path.iterdir()) == []


def test_save_and_load_through_file_objects(tmp_path):
    a, b = _model(), pyrnn.LSTM(2, 3, dtype="float64", seed=4)
    buf = io.BytesIO()
    a.save(buf)
    pyrnn.save(b, buf)
    buf.seek(0)
    a2, b2 = pyrnn.load(buf), pyrnn.load(buf)  # one after the other, as torch.load
    for want, got in ((a, a2), (b, b2)):
        for k, v in want.params.items():
            np.testing.assert_array_equal(got.params[k], v)
    path = tmp_path / "m.pyrnn"
    with open(path, "wb") as f:
        a.save(f)
    with open(path, "rb") as f:
        assert pyrnn.load(f).params.keys() == a.params.keys()
    with open(tmp_path / "t.txt", "w") as f:
        with pytest.raises(TypeError, match="binary mode"):
            a.save(f)
    with open(path, "r") as f:
        with pytest.raises(TypeError, match="binary mode"):
            pyrnn.load(f)
    with pytest.raises(ValueError, match="truncated"):
        pyrnn.load(io.BytesIO(buf.getvalue()[:100]))
    with pytest.raises(ValueError, match="not a pyrnn model file"):
        pyrnn.load(io.BytesIO(b"x" * 100))


class _Trickle(io.RawIOBase):
    """A raw stream (as a pipe or socket) whose reads return at most 5 bytes each."""

    def __init__(self, data):
        self._data, self._pos = data, 0

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), 5, len(self._data) - self._pos)
        b[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


def test_load_reads_a_raw_stream_to_the_end_and_names_a_short_one():
    # A raw stream's read(n) may return less than n before its end; load took that for a
    # truncated file (and said the file had changed while being read).
    a = _model()
    buf = io.BytesIO()
    a.save(buf)
    got = pyrnn.load(_Trickle(buf.getvalue()))
    for k, v in a.params.items():
        np.testing.assert_array_equal(got.params[k], v)
    with pytest.raises(ValueError, match=r"the stream ended \d+ bytes into a \d+-byte payload"):
        pyrnn.load(io.BytesIO(buf.getvalue()[:-3]))
    with pytest.raises(ValueError, match="truncated"):
        pyrnn.load(_Trickle(buf.getvalue()[:20]))


class _Dribble(io.RawIOBase):
    """A raw stream whose writes take at most 5 bytes each (or none: full)."""

    def __init__(self, full=False):
        self.data, self.full = bytearray(), full

    def writable(self):
        return True

    def write(self, b):
        b = bytes(b)[:0 if self.full else 5]
        self.data += b
        return len(b)


def test_save_writes_all_of_it_into_a_raw_stream():
    # save() ignored write()'s count: a raw stream taking 5 bytes at a time got 25 bytes of a
    # 486-byte file, and no error.
    a = _model()
    ref = io.BytesIO()
    a.save(ref)
    w = _Dribble()
    a.save(w)
    assert bytes(w.data) == ref.getvalue()
    with pytest.raises(OSError, match="accepted no bytes"):
        a.save(_Dribble(full=True))


def test_recurrent_repr_is_python():
    assert repr(pyrnn.GRU(3, 4, dtype="float64")) == "GRU(3, 4, dtype='float64')"


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_editing_a_dense_output_in_place_leaves_its_gradients(activation):
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 1))
    d = pyrnn.Dense(3, 1, activation=activation, seed=0, dtype="float64")
    p = d(x)
    d.backward((p - t) / 4)
    want = d.numpy_grads()
    d.zero_grad()
    p = d(x)
    p -= t  # the usual in-place "pred - target"
    d.backward(p / 4)
    for k, v in d.numpy_grads().items():
        np.testing.assert_allclose(v, want[k], rtol=1e-14, atol=0)


@pytest.mark.parametrize("kind", ["gzip", "zip"])
def test_save_and_load_through_compressed_file_objects(kind, tmp_path):
    import gzip
    import zipfile
    m = _model()
    if kind == "gzip":
        with gzip.open(tmp_path / "m.gz", "wb") as f:
            m.save(f)
        with gzip.open(tmp_path / "m.gz", "rb") as f:
            back = pyrnn.load(f)
    else:
        with zipfile.ZipFile(tmp_path / "m.zip", "w") as z, z.open("m.pyrnn", "w") as f:
            m.save(f)
        with zipfile.ZipFile(tmp_path / "m.zip") as z, z.open("m.pyrnn") as f:
            back = pyrnn.load(f)
    for k, v in m.params.items():
        np.testing.assert_array_equal(back.params[k], v)


def test_a_failed_onnx_export_leaves_no_direction_count():
    pytest.importorskip("onnx")
    ls = pyrnn.LastStep()
    m = pyrnn.Sequential([pyrnn.LSTM(2, 2, batch_first=True, bidirectional=True, seed=0), ls])
    with pytest.raises(ValueError, match="initial_states"):
        pyrnn.export_onnx(m, io.BytesIO(), initial_states=True)
    assert ls.num_directions == 1


def test_a_model_containing_itself_is_refused_and_unlinked_cleanly():
    m = pyrnn.Sequential([pyrnn.Dense(2, 2)])
    m.layers.append(m)
    with pytest.raises(ValueError, match="contains itself|itself"):
        m(np.ones((1, 2), np.float32))
