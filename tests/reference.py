"""NumPy float64 transcription of the seeds' / DESIGN.md section 3 equations (forward only).

Used as an oracle by the tests and for finite differences. Parameters are a dict with
pyrnn's names and layouts (gate order as PyTorch: LSTM i, f, g, o; GRU r, z, n):

    weight_ih_l{k}[_reverse]  (G*H, C_k)
    weight_hh_l{k}[_reverse]  (G*H, H)
    bias_l{k}[_reverse]       (G*H,)     absent when bias=False (treated as zero)
    bias_hn_l{k}[_reverse]    (H,)       GRU reset_after=True only

Cells ("rnn_tanh", "rnn_relu", "lstm", "gru"):

    RNN : h_t = act(W_ih x_t + W_hh h_{t-1} + b)
    LSTM: i, f, g, o = sig, sig, tanh, sig of (W_ih x_t + W_hh h_{t-1} + b)
          c_t = f*c_{t-1} + i*g ;  h_t = o*tanh(c_t)
    GRU : r, z = sig(W_i{r,z} x_t + W_h{r,z} h_{t-1} + b_{r,z})
          reset_after=False: n = tanh(W_in x_t + W_hn (r*h_{t-1}) + b_n)
          reset_after=True : n = tanh(W_in x_t + b_n + r*(W_hn h_{t-1} + b_hn))
          h_t = (1-z)*n + z*h_{t-1}

Layers k > 0 take the previous layer's (D*H)-wide output. ``lengths`` follows PyTorch's
packed-sequence semantics: output is zero at steps t >= len, the final state is the state
after each sequence's last valid step, and the reverse direction starts at each sequence's
own last valid step (from h0 of that direction).
"""
import numpy as np

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
CELLS = tuple(GATES)


def sigmoid(v):
    return 0.5 * (1.0 + np.tanh(0.5 * v))


def param_shapes(cell, input_size, hidden_size, num_layers=1, bidirectional=False, bias=True,
                 reset_after=False):
    """{name: shape} of every parameter, in pyrnn's naming."""
    G, H = GATES[cell], hidden_size
    D = 2 if bidirectional else 1
    shapes = {}
    for k in range(num_layers):
        C = input_size if k == 0 else D * H
        for d in range(D):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            shapes["weight_ih" + sfx] = (G * H, C)
            shapes["weight_hh" + sfx] = (G * H, H)
            if bias:
                shapes["bias" + sfx] = (G * H,)
                if cell == "gru" and reset_after:
                    shapes["bias_hn" + sfx] = (H,)
    return shapes


def random_params(rng, cell, input_size, hidden_size, num_layers=1, bidirectional=False,
                  bias=True, reset_after=False, scale=0.5):
    return {name: rng.uniform(-scale, scale, size=shape)
            for name, shape in param_shapes(cell, input_size, hidden_size, num_layers,
                                            bidirectional, bias, reset_after).items()}


def _cell_step(cell, x, h, c, W_ih, W_hh, b, b_hn, reset_after):
    """One step for a batch: x (N, C), h/c (N, H) -> (h, c)."""
    H = h.shape[1]
    gx = x @ W_ih.T
    if b is not None:
        gx = gx + b
    if cell in ("rnn_tanh", "rnn_relu"):
        pre = gx + h @ W_hh.T
        return (np.tanh(pre) if cell == "rnn_tanh" else np.maximum(pre, 0.0)), None
    if cell == "lstm":
        g = gx + h @ W_hh.T
        i, f, gg, o = (g[:, j * H:(j + 1) * H] for j in range(4))
        c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(gg)
        return sigmoid(o) * np.tanh(c_new), c_new
    if cell == "gru":
        gh_rz = h @ W_hh[:2 * H].T
        r = sigmoid(gx[:, :H] + gh_rz[:, :H])
        z = sigmoid(gx[:, H:2 * H] + gh_rz[:, H:])
        if reset_after:
            hn = h @ W_hh[2 * H:].T
            if b_hn is not None:
                hn = hn + b_hn
            n = np.tanh(gx[:, 2 * H:] + r * hn)
        else:
            n = np.tanh(gx[:, 2 * H:] + (r * h) @ W_hh[2 * H:].T)
        return (1.0 - z) * n + z * h, None
    raise ValueError(f"unknown cell {cell!r}")


def forward(cell, params, x, *, hidden_size, num_layers=1, bidirectional=False,
            reset_after=False, h0=None, c0=None, lengths=None):
    """Time-major forward.

    x (T, N, C); h0/c0 (num_layers*D, N, H) or None (zeros); lengths (N,) ints or None.
    Returns (out (T, N, D*H), h_n (L*D, N, H), c_n (L*D, N, H) for LSTM else None).
    """
    x = np.asarray(x, dtype=np.float64)
    T, N, _ = x.shape
    H, D, L = hidden_size, (2 if bidirectional else 1), num_layers
    lstm = cell == "lstm"
    h0 = np.zeros((L * D, N, H)) if h0 is None else np.asarray(h0, dtype=np.float64)
    c0 = np.zeros((L * D, N, H)) if c0 is None else np.asarray(c0, dtype=np.float64)
    lens = np.full(N, T) if lengths is None else np.asarray(lengths).astype(np.int64)
    assert lens.shape == (N,) and np.all((lens >= 1) & (lens <= T))
    h_n = np.zeros((L * D, N, H))
    c_n = np.zeros((L * D, N, H))
    inp = x
    for k in range(L):
        out = np.zeros((T, N, D * H))
        for d in range(D):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            W_ih, W_hh = params["weight_ih" + sfx], params["weight_hh" + sfx]
            b, b_hn = params.get("bias" + sfx), params.get("bias_hn" + sfx)
            h, c = h0[k * D + d].copy(), c0[k * D + d].copy()
            steps = range(T) if d == 0 else range(T - 1, -1, -1)
            for t in steps:
                valid = (t < lens)[:, None]
                h_new, c_new = _cell_step(cell, inp[t], h, c, W_ih, W_hh, b, b_hn, reset_after)
                h = np.where(valid, h_new, h)
                if lstm:
                    c = np.where(valid, c_new, c)
                out[t, :, d * H:(d + 1) * H] = np.where(valid, h_new, 0.0)
            h_n[k * D + d] = h
            c_n[k * D + d] = c
        inp = out
    return inp, h_n, (c_n if lstm else None)


def make_layer(cell, C, H, L=1, **kw):
    """A pyrnn layer by test cell name: rnn_tanh, rnn_relu, lstm, gru (the seeds' form) or
    gru_after (PyTorch's reset_after form); keywords pass through (device, seed, ...)."""
    import pyrnn
    kw.setdefault("num_layers", L)  # L positionally, or num_layers=... as a keyword
    if cell.startswith("rnn"):
        return pyrnn.RNN(C, H, nonlinearity=cell[4:], **kw)
    if cell == "lstm":
        return pyrnn.LSTM(C, H, **kw)
    return pyrnn.GRU(C, H, reset_after=cell == "gru_after", **kw)


def cell_of(layer):
    """The reference cell name of a pyrnn layer object."""
    name = type(layer).__name__
    if name == "RNN":
        return "rnn_" + getattr(layer, "nonlinearity", "tanh")
    return name.lower()


def forward_like(layer, x, hx=None, lengths=None, params=None):
    """Run the reference with a pyrnn layer's configuration and user-facing layouts.

    Accepts/returns the same layouts as ``layer(x, hx, lengths)`` (batch_first, unbatched),
    in float64. ``params`` defaults to the layer's own parameters.
    """
    cell = cell_of(layer)
    params = {k: np.asarray(v, dtype=np.float64)
              for k, v in (layer.params if params is None else params).items()}
    x = np.asarray(x, dtype=np.float64)
    unbatched = x.ndim == 2
    if unbatched:
        x = x[:, None, :]
    elif layer.batch_first:
        x = x.transpose(1, 0, 2)
    h0 = c0 = None
    if hx is not None:
        h0, c0 = (hx if cell == "lstm" else (hx, None))
        h0 = None if h0 is None else np.asarray(h0, dtype=np.float64)
        c0 = None if c0 is None else np.asarray(c0, dtype=np.float64)
        if unbatched:
            h0 = None if h0 is None else h0[:, None, :]
            c0 = None if c0 is None else c0[:, None, :]
    out, h_n, c_n = forward(cell, params, x, hidden_size=layer.hidden_size,
                            num_layers=layer.num_layers, bidirectional=layer.bidirectional,
                            reset_after=getattr(layer, "reset_after", False),
                            h0=h0, c0=c0, lengths=lengths)
    if unbatched:
        out, h_n = out[:, 0], h_n[:, 0]
        c_n = None if c_n is None else c_n[:, 0]
    elif layer.batch_first:
        out = out.transpose(1, 0, 2)
    return (out, (h_n, c_n)) if cell == "lstm" else (out, h_n)
