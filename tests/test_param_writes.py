"""backward() refuses a forward whose parameters were written since through pyrnn (an optimizer
step, pyrnn.init on a Parameter, load_params, params assignment), as PyTorch refuses a graph
whose weights were modified in place: the cached activations belong to the old weights, so the
gradients would silently mix old and new. Every layer with parameters, every write path, the
model level, and the paths that must stay allowed (gradient writes, a fresh forward, the normal
loop, gradient accumulation, fit). On the CPU, and on "cuda" where a device (or the host
emulation) is present."""
import pickle

import numpy as np
import pytest

import pyrnn
import pyrnn.cuda
from pyrnn import init, losses, optim

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not pyrnn.cuda.is_available(), reason=f"no CUDA device: {pyrnn.cuda.unavailable_reason()}"))]
REFUSED = "parameters were changed .* after the forward\\(\\) it would differentiate"


def host(a):
    return a.numpy() if isinstance(a, pyrnn.cuda.DeviceArray) else np.asarray(a)


def layer_and_input(kind, device):
    rng = np.random.default_rng(3)
    if kind in ("rnn", "lstm", "gru"):
        cls = {"rnn": pyrnn.RNN, "lstm": pyrnn.LSTM, "gru": pyrnn.GRU}[kind]
        return cls(3, 4, seed=1, device=device), rng.standard_normal((5, 2, 3)).astype(np.float32)
    if kind == "dense":
        return pyrnn.Dense(3, 4, seed=1, device=device), rng.standard_normal((2, 3)).astype(np.float32)
    if kind == "layernorm":
        return pyrnn.LayerNorm(3, device=device), rng.standard_normal((2, 3)).astype(np.float32)
    return pyrnn.Embedding(6, 4, seed=1, device=device), np.array([1, 5, 0])


def forward(layer, x):
    out = layer(x)
    return out[0] if isinstance(out, tuple) else out


def ones_like(out):
    return np.ones(tuple(out.shape), dtype=out.dtype)


def first_param(layer):
    return next(iter(layer.parameters()))


# Each writes the layer's parameters through pyrnn.
WRITES = {
    "sgd step": lambda layer: optim.SGD(layer.parameters(), lr=0.1).step(),
    "adam step": lambda layer: optim.Adam(layer.parameters()).step(),
    "init on a Parameter": lambda layer: init.normal_(first_param(layer), seed=0),
    "load_params": lambda layer: layer.load_params(layer.numpy_params()),
    "params[name] =": lambda layer: layer.params.__setitem__(
        first_param(layer).name, host(first_param(layer).data)),
    "params = {...}": lambda layer: setattr(layer, "params", layer.numpy_params()),
    "params |= {...}": lambda layer: layer.params.__ior__(layer.numpy_params()),
}
KINDS = ("rnn", "lstm", "gru", "dense", "layernorm", "embedding")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("write", list(WRITES))
@pytest.mark.parametrize("kind", KINDS)
def test_a_write_between_forward_and_backward_is_refused(kind, write, device):
    layer, x = layer_and_input(kind, device)
    out = forward(layer, x)
    WRITES[write](layer)
    grads = layer.numpy_grads()
    with pytest.raises(RuntimeError, match=REFUSED) as e:
        layer.backward(ones_like(out))
    assert type(layer).__name__ in str(e.value)
    for k, g in layer.numpy_grads().items():  # nothing was accumulated
        np.testing.assert_array_equal(g, grads[k], err_msg=k)
    # A fresh forward is differentiable again, and gives the gradients of the new weights.
    out = forward(layer, x)
    layer.zero_grad()
    layer.backward(ones_like(out))
    twin, _ = layer_and_input(kind, "cpu")
    twin.load_params(layer.numpy_params())
    twin.backward(ones_like(forward(twin, x)))
    for k, g in twin.numpy_grads().items():
        np.testing.assert_allclose(layer.numpy_grads()[k], g, rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
def test_what_stays_allowed(kind, device):
    layer, x = layer_and_input(kind, device)
    opt = optim.Adam(layer.parameters())
    for _ in range(2):  # the normal loop: forward, backward, step
        out = forward(layer, x)
        layer.backward(ones_like(out))
        opt.step()
        opt.zero_grad()
    out = forward(layer, x)
    # Gradient writes (clipping, assignment) are not parameter writes.
    layer.backward(ones_like(out))
    optim.clip_grad_norm(layer.parameters(), 0.5)
    layer.grads = layer.numpy_grads()
    layer.backward(ones_like(out))  # a second backward of the same forward accumulates
    # Writes made BEFORE the forward are fine, and eval forwards need no backward.
    layer.load_params(layer.numpy_params())
    layer.eval()
    forward(layer, x)
    layer.train()
    out = forward(layer, x)
    layer.backward(ones_like(out))


@pytest.mark.parametrize("device", DEVICES)
def test_model_level_writes(device):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)
    y = rng.standard_normal((4, 2)).astype(np.float32)

    def model():
        return pyrnn.Sequential([pyrnn.LSTM(3, 5, batch_first=True, seed=1), pyrnn.LastStep(),
                                 pyrnn.LayerNorm(5), pyrnn.Dense(5, 2, seed=2)]).to(device)

    for name, write in {
        "optimizer step": lambda m: optim.SGD(m.parameters(), lr=0.1).step(),
        "model.load_params": lambda m: m.load_params(
            {"3.weight": host(m.params["3.weight"])}),
        "model.params[name] =": lambda m: m.params.__setitem__(
            "0.weight_hh_l0", host(m.params["0.weight_hh_l0"])),
        "init on a model Parameter": lambda m: init.zeros_(next(iter(m.parameters()))),
    }.items():
        m = model()
        loss = losses.MSELoss()
        loss(m(x), y)
        write(m)
        with pytest.raises(RuntimeError, match=REFUSED):
            m.backward(loss.backward())
    # fit (forward, backward, step per batch) is untouched by the check.
    m = model()
    hist = m.fit(x, y, loss=losses.MSELoss(), optimizer=optim.Adam(m.parameters()), epochs=2,
                 batch_size=2, verbose=False, seed=0)
    assert len(hist["loss"]) == 2


def test_pickles_from_before_the_check_still_train():
    # A layer pickled before the write count existed has no such attributes: the class
    # defaults stand in.
    layer, x = layer_and_input("lstm", "cpu")
    layer.backward(ones_like(forward(layer, x)))
    optim.SGD(layer.parameters(), lr=0.1).step()
    old = pickle.loads(pickle.dumps(layer))
    for attr in ("_params_version", "_forward_params_version"):
        del old.__dict__[attr]
    out = forward(old, x)
    old.backward(ones_like(out))
    optim.SGD(old.parameters(), lr=0.1).step()
    with pytest.raises(RuntimeError, match=REFUSED):
        old.backward(ones_like(out))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_forward_keeps_the_old_forwards_count(kind, device):
    # The refused forward leaves the previous cache; a write since that one still counts.
    layer, x = layer_and_input(kind, device)
    out = forward(layer, x)
    optim.SGD(layer.parameters(), lr=0.1).step()
    bad = {"embedding": np.array([1, 99])}.get(kind, np.ones((7,) * x.ndim, np.float32))
    with pytest.raises((ValueError, IndexError)):
        layer(bad)
    with pytest.raises(RuntimeError, match=REFUSED):
        layer.backward(ones_like(out))


def test_fit_restoring_weights_after_a_nonfinite_loss_counts_as_a_write():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 4, 3)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    m = pyrnn.Sequential([pyrnn.LSTM(3, 4, batch_first=True, seed=1), pyrnn.LastStep(),
                          pyrnn.Dense(4, 2, seed=2)])
    with pytest.raises(RuntimeError, match="restored"):
        m.fit(x, y, loss=losses.MSELoss(), optimizer=optim.SGD(m.parameters(), lr=1e30),
              epochs=3, batch_size=2, verbose=False, seed=0)
    # The last cached forward is the non-finite batch's, made with the weights fit replaced.
    with pytest.raises(RuntimeError, match=REFUSED):
        m.backward(np.ones((2, 2), np.float32))


class _Custom(pyrnn.layers.Layer):
    """A user's layer as Layer's protocol allows: it sets _cache itself (no _keep)."""

    def __init__(self):
        super().__init__()
        self._params = {"w": np.ones(3, np.float32)}
        self._grads = {"w": np.zeros(3, np.float32)}

    def forward(self, x):
        self._cache = np.asarray(x, np.float32) if self.training else None
        return self._cache * self._params["w"]

    def backward(self, dy):
        x = self._need_cache()
        self._grads["w"] += (dy * x).sum(axis=0)
        return dy * self._params["w"]


class _Duck:
    """A duck-typed layer: plain objects with name / data / grad, wrapping a pyrnn Dense."""

    def __init__(self):
        self.inner = pyrnn.Dense(3, 3, seed=4)
        self.training = True

    def forward(self, x):
        return self.inner(x)

    __call__ = forward

    def backward(self, dy):
        return self.inner.backward(dy)

    def parameters(self):
        for p in self.inner.parameters():
            yield p  # pyrnn Parameters: their layer counts the model's writes

    def zero_grad(self):
        self.inner.zero_grad()

    def train(self, mode=True):
        self.training = mode
        self.inner.train(mode)
        return self


class _Plain:
    def __init__(self, name, data, grad):
        self.name, self.data, self.grad = name, data, grad


class _DuckPlain(_Duck):
    def parameters(self):
        for p in self.inner.parameters():
            yield _Plain(p.name, p.data, p.grad)


def test_custom_layers_in_a_model():
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    # A Layer subclass that sets _cache itself trains normally (its writes are not tracked).
    m = pyrnn.Sequential([_Custom(), pyrnn.Dense(3, 2, seed=1)])
    opt = optim.SGD(m.parameters(), lr=0.1)
    for _ in range(3):
        m.backward(np.ones((4, 2), np.float32) + 0 * m(x))
        opt.step()
        opt.zero_grad()
    # Duck-typed parameters (plain objects) still make Parameters, with no layer to tell.
    m = pyrnn.Sequential([_DuckPlain(), pyrnn.Dense(3, 2, seed=1)])
    assert [p.name for p in m.parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert m.num_parameters() == 20
    # A wrapper passing pyrnn's Parameters through: the model's writes reach the inner layer.
    m = pyrnn.Sequential([_Duck(), pyrnn.Dense(3, 2, seed=1)])
    out = m(x)
    m.params["0.weight"] = host(m.params["0.weight"])
    with pytest.raises(RuntimeError, match=REFUSED):
        m.backward(np.ones_like(out))


def test_a_parameter_copy_leaves_its_layer_behind():
    # A deep copy or pickle carries a copy of its layer: writes to it are not the original's.
    import copy
    layer, x = layer_and_input("dense", "cpu")
    p = first_param(layer)
    out = forward(layer, x)
    for q in (copy.deepcopy(p), pickle.loads(pickle.dumps(p))):
        assert q._owner is not layer and q.name == p.name
        np.testing.assert_array_equal(q.data, p.data)
        assert not np.shares_memory(q.data, p.data)
        init.normal_(q, seed=0)
    layer.backward(ones_like(out))
    # A shallow copy shares the arrays, so its writes are the layer's.
    out = forward(layer, x)
    init.normal_(copy.copy(p), seed=0)
    with pytest.raises(RuntimeError, match=REFUSED):
        layer.backward(ones_like(out))


@pytest.mark.parametrize("device", DEVICES)
def test_a_refused_model_backward_accumulates_nothing(device):
    # Only the first layer is written: the model refuses before the later layers accumulate.
    m = pyrnn.Sequential([pyrnn.Sequential([pyrnn.LSTM(3, 5, batch_first=True, seed=1)]),
                          pyrnn.LastStep(), pyrnn.Dense(5, 2, seed=2)]).to(device)
    x = np.random.default_rng(0).standard_normal((4, 6, 3)).astype(np.float32)
    out = m(x)
    optim.SGD(m.layers[0].parameters(), lr=0.1).step()
    with pytest.raises(RuntimeError, match=REFUSED):
        m.backward(ones_like(out))
    for name, g in m.grads.items():
        assert not host(g).any(), f"{name} accumulated a gradient"
    out = m(x)
    m.backward(ones_like(out))
    assert all(host(g).any() for g in m.grads.values())


def test_an_empty_update_is_no_write():
    # params.update({}) (or |= {}) wrote nothing but counted as a write: the next backward was
    # refused as if the weights had changed after the forward.
    layer = pyrnn.GRU(2, 3, seed=0)
    x = np.ones((4, 1, 2))
    y, _ = layer(x)
    layer.params.update({})
    layer.params |= {}
    layer.backward(np.ones_like(y))  # not refused
    y, _ = layer(x)
    layer.params.update({"bias_l0": layer.params["bias_l0"]})  # a real write still counts
    with pytest.raises(RuntimeError, match="parameters were changed"):
        layer.backward(np.ones_like(y))
