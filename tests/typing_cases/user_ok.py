"""A PyTorch / Keras user's script: it must type-check under mypy --strict."""
from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
import numpy.typing as npt

import pyrnn
from pyrnn import callbacks, init, losses, optim


def build(vocab: int, hidden: int) -> pyrnn.Sequential:
    return pyrnn.Sequential([
        pyrnn.Embedding(vocab, 16, padding_idx=0, seed=0),
        pyrnn.LSTM(16, hidden, batch_first=True, seed=1),
        pyrnn.LayerNorm(hidden),
        pyrnn.Dropout(0.1, seed=2),
        pyrnn.GRU(hidden, hidden, batch_first=True, reset_after=True, seed=3),
        pyrnn.RNN(hidden, hidden, batch_first=True, nonlinearity="relu", seed=4),
        pyrnn.LastStep(),
        pyrnn.Dense(hidden, 3, seed=5),
    ])


class StopAtLoss(callbacks.Callback):
    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None and logs["loss"] < self.threshold and self.model is not None:
            self.model.stop_training = True


def main() -> None:
    rng = np.random.default_rng(0)
    tokens: npt.NDArray[np.int64] = rng.integers(1, 50, size=(32, 7))
    labels = rng.integers(0, 3, size=32)
    lengths = rng.integers(1, 8, size=32)

    model = build(50, 8)
    model.add(pyrnn.Dropout(0.0))
    last = model.pop()
    assert isinstance(last, pyrnn.Dropout)
    print(len(model), model[0], model[1:3], model.device, model.num_parameters())

    opt = optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    opt.lr = 5e-4
    opt.param_groups[0]["lr"] = 1e-3
    log: list[float] = []
    history = model.fit(
        tokens, labels, loss="cross_entropy", optimizer=opt, epochs=2, batch_size=8,
        lengths=lengths, validation_data=(tokens[:8], labels[:8], lengths[:8]),
        clip_norm=1.0, verbose=0, seed=0,
        callbacks=[callbacks.EarlyStopping(monitor="val_loss", patience=2, mode="min"),
                   callbacks.LambdaCallback(on_epoch_end=lambda e, logs: log.append(e)),
                   StopAtLoss(0.01)])
    val_loss: list[float] = history["val_loss"]
    value: float = model.evaluate(tokens, labels, loss=losses.CrossEntropyLoss())
    metrics: dict[str, float] = model.evaluate(tokens, labels, return_dict=True)
    probs: npt.NDArray[Any] = model.predict(tokens, batch_size=16, lengths=lengths)
    print(val_loss, value, metrics["accuracy"], probs.shape)

    # Manual loop, PyTorch style.
    model.train()
    loss_fn = losses.CrossEntropyLoss(ignore_index=-1)
    sgd = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    for _ in range(2):
        sgd.zero_grad()
        out = model(tokens, lengths=lengths)
        loss: float = loss_fn(out, labels)
        dx = model.backward(loss_fn.backward())
        assert dx is None  # an Embedding comes first
        norm: float = optim.clip_grad_norm(model.parameters(), max_norm=1.0)
        sgd.step()
        print(loss, norm)
    model.eval()

    # Layers on their own.
    lstm = pyrnn.LSTM(4, 6, num_layers=2, bidirectional=True, dropout=0.1)
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    y, (h, c) = lstm(x)
    dx2, (dh, dc) = lstm.backward(np.ones_like(y))
    print(y.shape, h.shape, c.shape, dx2.shape, dh.shape, dc.shape, lstm.hidden_size + 1)
    gru = pyrnn.GRU(4, 6, dtype="float64")
    yg, hg = gru.forward(x, hx=np.zeros((1, 3, 6)))
    dxg, dhg = gru.backward(np.ones_like(yg))
    rnn = pyrnn.RNN(4, 6, nonlinearity="tanh").eval()
    yr, hr = rnn(x.tolist())
    dense = pyrnn.Dense(4, 2, activation="tanh", bias=False)
    yd = dense(x)
    dxd = dense.backward(np.ones_like(yd))
    ln = pyrnn.LayerNorm(4, eps=1e-6)
    print(yg.dtype, hg.shape, dxg.shape, dhg.shape, yr.sum() + hr.sum(), dxd.shape, ln(x).mean())
    print(dense.in_features * 2, dense.dtype.itemsize, lstm.params["weight_ih_l0"].shape)

    # Parameters, initialisers, state dicts.
    for p in lstm.parameters():
        print(p.name, p.shape, p.dtype, p.device, p.numel())
    init.xavier_uniform_(lstm.params["weight_ih_l0"], seed=0)
    init.orthogonal_(next(iter(lstm.parameters())), rng=np.random.default_rng(1))
    init.kaiming_normal_(np.empty((3, 4)), mode="fan_out", nonlinearity="relu")
    gain: float = init.calculate_gain("leaky_relu", 0.2)
    lstm.params["bias_l0"] = np.zeros(4 * 6)
    lstm.load_params({"bias_l1": np.zeros(4 * 6)})
    host: dict[str, npt.NDArray[Any]] = lstm.numpy_params()
    state = opt.state_dict()
    opt.load_state_dict(state)
    rms = optim.RMSprop(dense.parameters(), lr=1e-2, centered=True)
    adamw = optim.AdamW(ln.parameters(), weight_decay=0.01)
    rms.step()
    adamw.step()
    print(gain, sorted(host), optim.get("sgd", dense.parameters()))

    # Save / load, PyTorch interop, CUDA.
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.pyrnn")
        model.save(path)
        pyrnn.save(lstm, path + ".lstm")
        loaded = pyrnn.load(path)
        assert isinstance(loaded, pyrnn.Sequential)
        print(loaded.predict(tokens[:2]).shape)
    t_lstm = lstm.to_torch()
    back = pyrnn.from_torch(t_lstm)
    assert isinstance(back, pyrnn.LSTM)
    if pyrnn.cuda.is_available():
        lstm.to("cuda")
        dev_x = pyrnn.cuda.to_device(x)
        dy, _ = lstm(dev_x)
        print(dy.numpy().shape, pyrnn.cuda.device_names())
        pyrnn.cuda.set_precision("tf32")
    else:
        print(pyrnn.cuda.unavailable_reason())
    print(pyrnn.info()["version"], pyrnn.get_num_threads(), mse(x, x))


def mse(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    return losses.MSELoss(reduction="sum")(a, b)


if __name__ == "__main__":
    main()
