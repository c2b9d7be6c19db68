"""ONNX export: ``pyrnn.export_onnx(layer_or_model, path, ...)``.

Needs the ``onnx`` package (imported inside the function only). The graph is built with
onnx.helper and validated with onnx.checker (full check, including shape inference).

What is exported
- A single RNN / LSTM / GRU layer. Graph inputs: ``X`` (T, N, C), or (N, T, C) with
  ``batch_first`` (transposed inside the graph: ONNX runtimes implement the time-major
  layout only); with ``initial_states=True`` also ``h0`` (and ``c0`` for LSTM),
  (num_layers*D, N, H); with ``lengths=True`` also ``lengths`` int64 (N,). Outputs in
  pyrnn's layout: ``Y`` (T, N, D*H) (batch_first: (N, T, D*H)), ``Y_h`` (and ``Y_c``)
  (num_layers*D, N, H), index layer*D + direction. A stack of layers is one ONNX
  RNN/LSTM/GRU node per layer; dropout between layers is an inference-time identity.
  Unbatched (T, C) inputs are not part of the exported graph (add a batch axis of 1).
- A pyrnn.Sequential of Embedding (Gather; input ``X`` int64 (N, T)), recurrent layers
  (batch_first=True, as Sequential requires), LastStep (Slice / GatherND with
  ``lengths``), Dense (MatMul + Add + Relu/Tanh/Sigmoid), LayerNorm (float32:
  LayerNormalization, opset >= 17; float64: ReduceMean, Sub, Mul, Add, Sqrt, Div, since
  LayerNormalization's epsilon attribute is a 32-bit float) and Dropout (identity). Input ``X`` (N, T, C) (or int64 (N, T)), optional
  ``lengths`` int64 (N,), output ``Y``. A Sequential of rank-keeping layers only (no
  recurrent layer or LastStep), which pyrnn runs on any rank, takes ``X`` (N, F) (ids
  (N,)), or sequences (N, T, F) (ids (N, T)) when ``seq_len`` is given. Only pyrnn's own
  classes are exported; a subclass is a TypeError (its forward may differ from what the
  graph would compute).

The batch and time axes are dynamic ("batch", "seq_len") unless ``batch`` / ``seq_len``
give fixed sizes.

Weight mapping pyrnn -> ONNX (per layer and direction): W = weight_ih, R = weight_hh with
the gate blocks reordered (LSTM pyrnn (i, f, g, o) -> ONNX (i, o, f, c); GRU pyrnn
(r, z, n) -> ONNX (z, r, h)); B = [Wb, Rb] with Wb = bias and Rb = 0, so ONNX's Wb + Rb is
exactly pyrnn's bias, except:
- GRU(reset_after=True) -> linear_before_reset=1 with Rbh = bias_hn (Rb = [0, 0, bias_hn]);
- GRU(reset_after=False) -> linear_before_reset=0. ONNX adds Rbh outside the reset gate
  there (ht = g(Xt Wh^T + (rt . Ht-1) Rh^T + Rbh + Wbh)), which is pyrnn's b_n: the whole
  n bias goes into Wbh and Rbh = 0.
RNN(nonlinearity="relu") -> activations=["Relu"] (one per direction).
"""
from __future__ import annotations

from typing import IO, TYPE_CHECKING, Optional, Union

import numpy as np

if TYPE_CHECKING:
    import onnx

    from ._typing import Int, PathOrBytes
    from .model import Sequential
    from .recurrent import GRU, LSTM, RNN

DEFAULT_OPSET = 17
_MIN_OPSET = 13  # Squeeze / Unsqueeze / Slice take axes as inputs
_LSTM_TO_ONNX = [0, 3, 1, 2]  # ONNX block j is pyrnn block _LSTM_TO_ONNX[j]: i, o, f, c
_GRU_TO_ONNX = [1, 0, 2]      # z, r, h
_INT64_MAX = np.iinfo(np.int64).max


def _onnx():
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("ONNX export needs the 'onnx' package: pip install onnx") from e
    return onnx


class _Graph:
    """Collects nodes, initializers, inputs and outputs with unique names."""

    def __init__(self, onnx, dtype):
        self.onnx = onnx
        self.helper = onnx.helper
        self.dtype = np.dtype(dtype)
        self.elem = {np.dtype(np.float32): onnx.TensorProto.FLOAT,
                     np.dtype(np.float64): onnx.TensorProto.DOUBLE}[self.dtype]
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self._used = set()

    def name(self, base):
        n, i = base, 0
        while n in self._used:
            i += 1
            n = f"{base}_{i}"
        self._used.add(n)
        return n

    def const(self, base, arr):
        name = self.name(base)
        # (np.array, not ascontiguousarray: that makes a scalar [1], and Range takes scalars)
        self.inits.append(self.onnx.numpy_helper.from_array(np.array(arr, order="C"), name))
        return name

    def ints(self, base, values):
        return self.const(base, np.asarray(values, np.int64))

    def node(self, op, inputs, base=None, n_out=1, outputs=None, **attrs):
        base = base or op.lower()
        outs = outputs or [self.name(f"{base}_out{i}" if n_out > 1 else base)
                           for i in range(n_out)]
        self.nodes.append(self.helper.make_node(op, list(inputs), outs,
                                                name=self.name("n_" + base), **attrs))
        return outs if n_out > 1 else outs[0]

    def input(self, name, elem, shape):
        self._used.add(name)
        self.inputs.append(self.helper.make_tensor_value_info(name, elem, shape))
        return name

    def output(self, name, src, elem, shape):
        self._used.add(name)
        self.node("Identity", [src], outputs=[name])
        self.outputs.append(self.helper.make_tensor_value_info(name, elem, shape))


# ---- recurrent layers -----------------------------------------------------------------------

def _onnx_weights(layer, k):
    """W [D, G*H, C_k], R [D, G*H, H], B [D, 2*G*H] or None for layer k, ONNX gate order."""
    from .recurrent import GRU, LSTM
    H = layer.hidden_size
    if isinstance(layer, LSTM):
        order = _LSTM_TO_ONNX
    elif isinstance(layer, GRU):
        order = _GRU_TO_ONNX
    else:
        order = [0]
    G = len(order)

    def reorder(a):
        blocks = np.split(np.asarray(a), G, axis=0)
        return np.concatenate([blocks[j] for j in order], axis=0)

    Ws, Rs, Bs = [], [], []
    for sfx in ("", "_reverse")[:layer.num_directions]:
        s = f"_l{k}{sfx}"
        p = layer.params
        Ws.append(reorder(p["weight_ih" + s]))
        Rs.append(reorder(p["weight_hh" + s]))
        if layer.bias:
            wb = reorder(p["bias" + s])
            rb = np.zeros_like(wb)
            if isinstance(layer, GRU) and layer.reset_after:
                rb[2 * H:] = p["bias_hn" + s]  # ONNX h block is last, as pyrnn's n block
            Bs.append(np.concatenate([wb, rb]))
    W = np.stack(Ws).astype(layer.dtype)
    R = np.stack(Rs).astype(layer.dtype)
    B = np.stack(Bs).astype(layer.dtype) if Bs else None
    return W, R, B


def _emit_recurrent(g, layer, x, h0=None, c0=None, seq_lens=None):
    """x: time-major (T, N, C) tensor name. Returns (y (T, N, D*H), [Y_h per layer],
    [Y_c per layer])."""
    from .recurrent import GRU, LSTM
    op = "LSTM" if isinstance(layer, LSTM) else "GRU" if isinstance(layer, GRU) else "RNN"
    D, H = layer.num_directions, layer.hidden_size
    attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
    if op == "GRU":
        attrs["linear_before_reset"] = int(layer.reset_after)
    if op == "RNN":
        attrs["activations"] = ["Relu" if layer.nonlinearity == "relu" else "Tanh"] * D
    yh, yc = [], []
    base = op.lower()
    for k in range(layer.num_layers):
        W, R, B = _onnx_weights(layer, k)
        ins = [x, g.const(f"{base}_W_l{k}", W), g.const(f"{base}_R_l{k}", R),
               "" if B is None else g.const(f"{base}_B_l{k}", B), seq_lens or ""]
        if h0 is not None or c0 is not None:
            starts, ends, axes = (g.ints("starts", [k * D]), g.ints("ends", [(k + 1) * D]),
                                  g.ints("axes", [0]))
            ins.append("" if h0 is None else g.node("Slice", [h0, starts, ends, axes],
                                                    f"{base}_h0_l{k}"))
            if op == "LSTM":
                ins.append("" if c0 is None else g.node("Slice", [c0, starts, ends, axes],
                                                        f"{base}_c0_l{k}"))
        while ins and ins[-1] == "":
            ins.pop()
        outs = g.node(op, ins, f"{base}_l{k}", n_out=3 if op == "LSTM" else 2, **attrs)
        Y = outs[0]                                                     # [T, D, N, H]
        yh.append(outs[1])                                              # [D, N, H]
        if op == "LSTM":
            yc.append(outs[2])
        Yt = g.node("Transpose", [Y], f"{base}_Yt_l{k}", perm=[0, 2, 1, 3])  # [T, N, D, H]
        x = g.node("Reshape", [Yt, g.ints("shape", [0, 0, -1])], f"{base}_y_l{k}")  # [T,N,DH]
    return x, yh, yc


def _cat_states(g, parts, base):
    return parts[0] if len(parts) == 1 else g.node("Concat", parts, base, axis=0)


def _export_recurrent(g, layer, seq_len, batch, lengths, initial_states):
    T = seq_len if seq_len is not None else "seq_len"
    N = batch if batch is not None else "batch"
    C, H = layer.input_size, layer.hidden_size
    LD = layer.num_layers * layer.num_directions
    x = g.input("X", g.elem, [N, T, C] if layer.batch_first else [T, N, C])
    if layer.batch_first:
        x = g.node("Transpose", [x], "X_time_major", perm=[1, 0, 2])
    h0 = c0 = None
    if initial_states:
        h0 = g.input("h0", g.elem, [LD, N, H])
        if layer._is_lstm():
            c0 = g.input("c0", g.elem, [LD, N, H])
    seq_lens = None
    if lengths:
        seq_lens = g.node("Cast", [g.input("lengths", g.onnx.TensorProto.INT64, [N])],
                          "sequence_lens", to=g.onnx.TensorProto.INT32)
    y, yh, yc = _emit_recurrent(g, layer, x, h0, c0, seq_lens)
    DH = layer.num_directions * H
    if layer.batch_first:
        y = g.node("Transpose", [y], "Y_batch_first", perm=[1, 0, 2])
    g.output("Y", y, g.elem, [N, T, DH] if layer.batch_first else [T, N, DH])
    g.output("Y_h", _cat_states(g, yh, "Y_h_all"), g.elem, [LD, N, H])
    if yc:
        g.output("Y_c", _cat_states(g, yc, "Y_c_all"), g.elem, [LD, N, H])


# ---- Sequential -----------------------------------------------------------------------------

def _flatten(model):
    from .model import Sequential
    # (no linking here: the callers check the model, and export inside its _linked(), which
    # gives every LastStep, nested ones too, its direction count)
    out = []
    for layer in model.layers:
        if isinstance(layer, Sequential):  # dissolved here, so checked here
            _check_own_class(layer, f"a nested {type(layer).__name__}")
            out.extend(_flatten(layer))
        else:
            out.append(layer)
    return out


def _export_sequential(g, model, seq_len, batch, lengths, opset):
    from .layers import Dense, Dropout, Embedding, LastStep, LayerNorm
    from .recurrent import _Recurrent
    T = seq_len if seq_len is not None else "seq_len"
    N = batch if batch is not None else "batch"
    layers = _flatten(model)
    if not layers:
        raise ValueError("cannot export an empty Sequential")
    for i, layer in enumerate(layers):
        _check_own_class(layer, f"layer {i} ({type(layer).__name__})")
    sequence = any(isinstance(l, (_Recurrent, LastStep)) for l in layers)
    if lengths and not sequence:
        raise ValueError("lengths=True needs a recurrent layer or LastStep in the model")
    first = next((l for l in layers if not isinstance(l, Dropout)), None)
    # Samples-first sequences, as fit takes them. Rank-keeping layers only run on any rank in
    # pyrnn, and an ONNX input needs one: (N, F), or sequences when seq_len asks for a T.
    lead = [N, T] if sequence or seq_len is not None else [N]
    if isinstance(first, Embedding):
        x = g.input("X", g.onnx.TensorProto.INT64, lead)
        feat = None
    else:
        feat = first.input_size if isinstance(first, _Recurrent) else \
            first.in_features if isinstance(first, Dense) else \
            first.dim if isinstance(first, LayerNorm) else None
        if feat is None:
            what = "only Dropout layers" if first is None else \
                f"its first layer after any Dropout a {type(first).__name__}"
            raise TypeError(f"cannot infer the input width of a Sequential with {what}: it "
                            f"must start with a layer of fixed input width (Embedding, a "
                            f"recurrent layer, Dense or LayerNorm)")
        x = g.input("X", g.elem, lead + [feat])
    lens64 = seq_lens = None
    if lengths:
        lens64 = g.input("lengths", g.onnx.TensorProto.INT64, [N])
        seq_lens = g.node("Cast", [lens64], "sequence_lens", to=g.onnx.TensorProto.INT32)
    rank = len(lead) + 1

    def fits(i, layer, width, seq=False):
        """ValueError unless layer i can take what the layers before it give (rank, width), as
        running the model would check: a graph of a model that cannot run is not exported."""
        given = "(N, T, F)" if rank == 3 else "(N, F)" if rank == 2 else f"rank {rank}"
        if seq and rank != 3:
            raise ValueError(f"cannot export: layer {i} ({layer!r}) takes a sequence (N, T, F), "
                             f"but the layers before it give {given}; the model cannot run")
        if width is not None and feat is not None and width != feat:
            raise ValueError(f"cannot export: layer {i} ({layer!r}) takes {width} features, but "
                             f"the layers before it give {feat}; the model cannot run")

    for i, layer in enumerate(layers):
        if isinstance(layer, Embedding):
            if i != 0:  # pyrnn refuses the floats a layer before it gives (Dropout's too)
                raise ValueError(f"cannot export: layer {i} ({layer!r}) takes integer ids, so "
                                 "it must come first in the model (nested models count in "
                                 "their place); the model cannot run")
            x = _emit_embedding(g, layer, x, i, lens64)
            feat = layer.dim
        elif isinstance(layer, _Recurrent):
            if not layer.batch_first:
                raise ValueError(f"layer {i} ({layer!r}) must be batch_first inside Sequential")
            fits(i, layer, layer.input_size, seq=True)
            xt = g.node("Transpose", [x], f"rnn{i}_in", perm=[1, 0, 2])
            y, _, _ = _emit_recurrent(g, layer, xt, seq_lens=seq_lens)
            x = g.node("Transpose", [y], f"rnn{i}_out", perm=[1, 0, 2])  # [N, T, D*H]
            feat = layer.num_directions * layer.hidden_size
        elif isinstance(layer, LastStep):
            fits(i, layer, None, seq=True)
            D = layer.num_directions
            if feat is not None and feat % D:  # as LastStep refuses it when the model runs
                raise ValueError(f"cannot export: layer {i} ({layer!r}) takes a bidirectional "
                                 f"output (N, T, 2*H), but the layers before it give {feat} "
                                 f"features; the model cannot run")
            Hd = feat // D
            if lens64 is not None:
                idx = g.node("Sub", [lens64, g.ints("one", [1])], f"last{i}_idx")
                idx = g.node("Unsqueeze", [idx, g.ints("axes", [1])], f"last{i}_idx2")  # [N,1]
                fwd = g.node("GatherND", [x, idx], f"last{i}_fwd", batch_dims=1)       # [N,W]
            else:
                fwd = g.node("Slice", [x, g.ints("starts", [-1]), g.ints("ends", [_INT64_MAX]),
                                       g.ints("axes", [1])], f"last{i}_fwd3")
                fwd = g.node("Squeeze", [fwd, g.ints("axes", [1])], f"last{i}_fwd")
            if D == 2:
                rev = g.node("Slice", [x, g.ints("starts", [0]), g.ints("ends", [1]),
                                       g.ints("axes", [1])], f"last{i}_rev3")
                rev = g.node("Squeeze", [rev, g.ints("axes", [1])], f"last{i}_rev")
                ax = g.ints("axes", [1])
                fwd = g.node("Slice", [fwd, g.ints("starts", [0]), g.ints("ends", [Hd]), ax],
                             f"last{i}_fwdh")
                rev = g.node("Slice", [rev, g.ints("starts", [Hd]), g.ints("ends", [2 * Hd]),
                                       ax], f"last{i}_revh")
                fwd = g.node("Concat", [fwd, rev], f"last{i}", axis=1)
            x = fwd
            rank -= 1
        elif isinstance(layer, Dense):
            fits(i, layer, layer.in_features)
            W = np.ascontiguousarray(layer.params["weight"].T).astype(g.dtype)
            x = g.node("MatMul", [x, g.const(f"dense{i}_weight_t", W)], f"dense{i}_mm")
            if layer.bias:
                x = g.node("Add", [x, g.const(f"dense{i}_bias",
                                              layer.params["bias"].astype(g.dtype))],
                           f"dense{i}_add")
            if layer.activation is not None:
                act = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}[layer.activation]
                x = g.node(act, [x], f"dense{i}_{layer.activation}")
            feat = layer.out_features
        elif isinstance(layer, LayerNorm):
            fits(i, layer, layer.dim)
            x = _emit_layernorm(g, layer, x, i, opset)
        elif isinstance(layer, Dropout):
            continue  # identity at inference
        else:
            raise TypeError(f"ONNX export does not support layer {i} ({type(layer).__name__})")
    out_shape = ([N, T] if rank == 3 else [N] if rank == 2 else [None] * (rank - 1)) + [feat]
    g.output("Y", x, g.elem, out_shape)


def _emit_embedding(g, layer, ids, i, lens64):
    """Embedding as pyrnn runs it: ids past a sequence's length (lens64 [N], or None) are
    padding, read as 0 whatever they hold (-1, say: a Gather failed on an id >= num); an id
    outside [0, num) within the lengths, which pyrnn refuses, gives a row of NaN (a graph
    cannot raise; a Gather took -1 as the last row, silently)."""
    num = layer.num_embeddings
    zero = g.ints(f"emb{i}_zero", 0)
    if lens64 is not None:  # ids [N, T]: steps t < lengths[n] are data
        T = g.node("Gather", [g.node("Shape", [ids], f"emb{i}_shape"), g.ints(f"emb{i}_one", 1)],
                   f"emb{i}_T")
        steps = g.node("Range", [zero, T, g.ints(f"emb{i}_step", 1)], f"emb{i}_steps")  # [T]
        data = g.node("Less", [g.node("Unsqueeze", [steps, g.ints(f"emb{i}_ax0", [0])],
                                      f"emb{i}_steps_row"),
                               g.node("Unsqueeze", [lens64, g.ints(f"emb{i}_ax1", [1])],
                                      f"emb{i}_lens_col")], f"emb{i}_data")          # [N, T]
        ids = g.node("Where", [data, ids, zero], f"emb{i}_ids")
    valid = g.node("And", [g.node("GreaterOrEqual", [ids, zero], f"emb{i}_nonneg"),
                           g.node("Less", [ids, g.ints(f"emb{i}_num", num)], f"emb{i}_below")],
                   f"emb{i}_valid")
    rows = g.node("Gather", [g.const(f"emb{i}_weight", layer.params["weight"].astype(g.dtype)),
                             g.node("Where", [valid, ids, zero], f"emb{i}_safe")],
                  f"emb{i}_rows", axis=0)
    return g.node("Where", [g.node("Unsqueeze", [valid, g.ints(f"emb{i}_axl", [-1])],
                                   f"emb{i}_valid_col"),
                            rows, g.const(f"emb{i}_nan", np.asarray(np.nan, g.dtype))],
                  f"emb{i}")


def _emit_layernorm(g, layer, x, i, opset):
    """LayerNorm over the last axis. float32: one LayerNormalization node. float64: the same
    formula from basic ops, with eps a float64 constant: LayerNormalization's epsilon
    attribute is a 32-bit float (0.3 became 0.30000001192..., an error of 1e-8 where float64
    agrees to 1e-16)."""
    w = g.const(f"ln{i}_weight", layer.params["weight"].astype(g.dtype))
    b = g.const(f"ln{i}_bias", layer.params["bias"].astype(g.dtype))
    if g.dtype != np.float64:
        if opset < 17:
            raise ValueError(f"LayerNorm exports as LayerNormalization, which needs "
                             f"opset >= 17 (got opset={opset})")
        if layer.eps > 0 and np.float32(layer.eps) == 0:
            # (0 there: a constant row became NaN, where pyrnn adds eps in double)
            raise ValueError(f"cannot export: LayerNorm eps={layer.eps!r} is 0 as the 32-bit "
                             f"float of LayerNormalization's epsilon (the smallest is 1.4e-45); "
                             f"a float64 model exports it exactly")
        return g.node("LayerNormalization", [x, w, b], f"ln{i}", axis=-1, epsilon=layer.eps)

    def mean_last(v, base):  # ReduceMean over the last axis, kept: axes an input from opset 18
        if opset >= 18:
            return g.node("ReduceMean", [v, g.ints("axes", [-1])], base, keepdims=1)
        return g.node("ReduceMean", [v], base, axes=[-1], keepdims=1)

    d = g.node("Sub", [x, mean_last(x, f"ln{i}_mean")], f"ln{i}_centered")
    var = mean_last(g.node("Mul", [d, d], f"ln{i}_sq"), f"ln{i}_var")
    eps = g.const(f"ln{i}_eps", np.asarray(layer.eps, np.float64))
    std = g.node("Sqrt", [g.node("Add", [var, eps], f"ln{i}_var_eps")], f"ln{i}_std")
    y = g.node("Div", [d, std], f"ln{i}_norm")
    return g.node("Add", [g.node("Mul", [y, w], f"ln{i}_scaled"), b], f"ln{i}")


# ---- entry point ----------------------------------------------------------------------------

def _check_own_class(obj, what):
    """TypeError for a subclass of a pyrnn class: the graph is built from the class's known
    computation, and a subclass may compute something else (an overridden forward)."""
    own = next((c for c in type(obj).__mro__ if c.__module__.split(".")[0] == "pyrnn"), None)
    if own is not None and type(obj) is not own:  # no pyrnn class at all: refused later
        raise TypeError(f"ONNX export writes pyrnn's own classes only: {what} is a subclass of "
                        f"pyrnn.{own.__name__}, and the graph cannot know what it overrides")


def _check_int(name, v, low):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
    return int(v)


def _write(model, path):
    """Writes the serialized model to a path (atomically, as pyrnn.save) or a binary file."""
    data = model.SerializeToString()
    from .serialize import _atomic_write, _write_all
    if hasattr(path, "write"):
        _write_all(path, data)  # all of it: a raw stream may take less per write()
    else:
        _atomic_write(path, [data])

def _model_dtype(obj):
    from .layers import Dropout, LastStep
    from .model import Sequential
    if isinstance(obj, Sequential):
        obj._check_links()  # the layers, and no cycle, before the walk
        # (a custom layer has no dtype, maybe: the walk after this one refuses it by name)
        dts = {np.dtype(l.dtype) for l in _flatten(obj)
               if not isinstance(l, (Dropout, LastStep)) and hasattr(l, "dtype")}
        if len(dts) > 1:
            raise ValueError(f"ONNX export needs one float dtype across the model, got "
                             f"{sorted(d.name for d in dts)}")
        return dts.pop() if dts else np.dtype(np.float32)
    return np.dtype(obj.dtype)


def export_onnx(obj: Union[Sequential, RNN, LSTM, GRU],
                path: Union[PathOrBytes, IO[bytes], None] = None, *,
                seq_len: Optional[Int] = None, batch: Optional[Int] = None,
                opset: Int = DEFAULT_OPSET, lengths: bool = False,
                initial_states: bool = False, check: bool = True) -> onnx.ModelProto:
    """Write `obj` (a pyrnn RNN / LSTM / GRU layer or a pyrnn.Sequential) as an ONNX model.

    path: file to write, atomically (str, bytes or os.PathLike), or a binary file object to
    write to (None: only return the model). seq_len / batch: fixed sizes for
    the time and batch axes (default dynamic). opset: ONNX opset (>= 13; >= 17 when the
    model has a float32 LayerNorm). lengths: add an int64 ``lengths`` (N,) input (per-sequence
    lengths, pyrnn/PyTorch packed-sequence semantics). initial_states (single layers
    only): add ``h0`` (and ``c0``) inputs. check: run onnx.checker (full check).
    Returns the onnx.ModelProto. See the module docstring for the graph's layout.
    """
    from .model import Sequential
    from .recurrent import _Recurrent
    # The arguments first: a wrong one is named whether or not onnx is installed.
    opset = _check_int("opset", opset, _MIN_OPSET)
    seq_len = None if seq_len is None else _check_int("seq_len", seq_len, 1)
    batch = None if batch is None else _check_int("batch", batch, 1)
    for flag, value in (("lengths", lengths), ("initial_states", initial_states),
                        ("check", check)):
        if not isinstance(value, (bool, np.bool_)):  # "no" would read as True
            raise TypeError(f"{flag} must be True or False, got {value!r}")
    if path is not None:
        # As save() checks it, before the work: a folder ("m.onnx/", "") or a text file is
        # named as given (a trailing slash wrote a file m.onnx)
        from .serialize import _save_target
        path = _save_target(path, "export_onnx")
    if not isinstance(obj, (Sequential, _Recurrent)):
        raise TypeError(f"export_onnx takes a pyrnn RNN/LSTM/GRU layer or a pyrnn.Sequential, "
                        f"got {type(obj).__name__}")
    _check_own_class(obj, type(obj).__name__)
    what = "layer" if isinstance(obj, _Recurrent) else "model"
    if obj.device != "cpu":
        raise ValueError(f"export a CPU {what} ({what}.to('cpu'))")
    onnx = _onnx()
    if opset > onnx.defs.onnx_opset_version():
        raise ValueError(f"opset {opset} is newer than this onnx package knows "
                         f"({onnx.__version__}: up to {onnx.defs.onnx_opset_version()})")
    g = _Graph(onnx, _model_dtype(obj))
    if isinstance(obj, _Recurrent):
        _export_recurrent(g, obj, seq_len, batch, lengths, initial_states)
        name = type(obj).__name__
    else:
        if initial_states:
            raise ValueError("initial_states=True applies to single recurrent layers only")
        with obj._linked():  # each LastStep's direction count, for this export only
            _export_sequential(g, obj, seq_len, batch, lengths, opset)
        name = "Sequential"
    from . import __version__
    graph = onnx.helper.make_graph(g.nodes, f"pyrnn_{name}", g.inputs, g.outputs, g.inits)
    opsets = [onnx.helper.make_opsetid("", opset)]
    model = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="pyrnn",
                                   producer_version=str(__version__))
    try:  # the lowest IR version that carries this opset, so older runtimes load it
        model.ir_version = onnx.helper.find_min_ir_version_for(opsets)
    except Exception:  # pragma: no cover - old onnx
        pass
    if check:
        onnx.checker.check_model(model, full_check=True)
    if path is not None:
        _write(model, path)
    return model
