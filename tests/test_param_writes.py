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
