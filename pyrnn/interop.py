"""PyTorch interop: ``pyrnn.from_torch(module)`` and ``layer.to_torch()``.

torch is optional: it is imported inside these functions only.

Parameter mapping (per layer k and direction; gate orders are the same in both libraries:
LSTM (i, f, g, o), GRU (r, z, n)):

- weight_ih_l{k}, weight_hh_l{k}: copied as they are.
- torch -> pyrnn: bias_l{k} = bias_ih + bias_hh (one bias per gate), except for the GRU,
  whose n gate keeps the two apart: bias_l{k} = concat(b_ih[:2H] + b_hh[:2H], b_ih[2H:]),
  bias_hn_l{k} = b_hh[2H:] (torch's GRU is pyrnn's GRU(reset_after=True)).
- pyrnn -> torch: bias_ih = bias, bias_hh = 0, except for the GRU n gate:
  bias_ih[2H:] = bias_n, bias_hh[2H:] = bias_hn. A pyrnn -> torch -> pyrnn round trip is
  therefore bitwise exact (x + 0 == x); torch -> pyrnn -> torch gives the same outputs up
  to the rounding of the bias sum.
- The collapse is lossless for outputs and gradients (d loss / d bias_l{k} equals torch's
  gradient of bias_ih and of bias_hh), not for training: torch's optimizer steps each of its
  two biases, so with the same settings their sum moves twice as far per step as pyrnn's one
  bias (SGD; Adam, AdamW and RMSprop too, their steps not scaling with the gradient). A second
  optimizer over the bias_l* parameters with twice the learning rate matches torch exactly
  for SGD (any momentum, weight_decay halved), AdamW (weight_decay halved), and Adam / RMSprop
  without weight decay (torch's L2 term then differs between its two biases). For the GRU
  only the r and z parts are collapsed: the n part of bias_l{k} (b_in) and bias_hn train as
  in torch.
- GRU(reset_after=False) (n = tanh(W_in x + W_hn (r*h) + b_n)) has no torch equivalent:
  to_torch raises ValueError.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Union

import numpy as np

if TYPE_CHECKING:
    from torch import nn

    from .layers import Dense, Dropout, Embedding, LayerNorm
    from .model import Sequential
    from .recurrent import GRU, LSTM, RNN, _Recurrent

    # What from_torch returns: the pyrnn class follows the torch one (Linear -> Dense, ...),
    # which a Union cannot say (overloads on torch classes would need torch to type-check).
    _PyrnnModule = Union[RNN, LSTM, GRU, Dense, Embedding, LayerNorm, Dropout, Sequential]

_TORCH_DTYPES = ("float32", "float64")


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("PyTorch interop needs the 'torch' package: pip install torch") from e
    return torch


def _np(t, dtype, what):
    """torch tensor -> a NumPy view of its data (CPU, detached; the callers write it through
    layer.params[k] = v, which copies into the layer's own memory). dtype: the pyrnn
    layer's ("float32" / "float64"), which every tensor of the module must have (torch runs
    no module mixing them; a complex bias lost its imaginary part here, a float64 one past
    the float32 range became Inf, each with only NumPy's warning)."""
    if str(t.dtype) != f"torch.{dtype}":
        raise ValueError(f"{what} has dtype {t.dtype}, the module's other parameters "
                         f"torch.{dtype}: pyrnn's layer holds one dtype")
    return t.detach().cpu().numpy()


def _dtype_name(torch, t, what):
    if t.dtype == torch.float32:
        return "float32"
    if t.dtype == torch.float64:
        return "float64"
    raise ValueError(f"{what}: pyrnn supports float32 and float64 parameters, got {t.dtype}")


# ---- torch -> pyrnn -------------------------------------------------------------------------

def _recurrent_from_torch(torch, m):
    from .recurrent import GRU, LSTM, RNN
    nn = torch.nn
    name = type(m).__name__
    if isinstance(m, nn.LSTM) and getattr(m, "proj_size", 0):
        raise ValueError(f"torch.nn.LSTM with proj_size={m.proj_size} has no pyrnn equivalent "
                         "(pyrnn's LSTM has no projection); use proj_size=0")
    if m.dropout >= 1:
        raise ValueError(f"torch.nn.{name} with dropout={m.dropout} has no pyrnn equivalent "
                         "(pyrnn's dropout between recurrent layers is in [0, 1); torch's 1.0 "
                         "zeroes every upper layer's input in training)")
    dtype = _dtype_name(torch, m.weight_ih_l0, f"torch.nn.{name}")
    kw = dict(num_layers=m.num_layers, bias=bool(m.bias), batch_first=bool(m.batch_first),
              bidirectional=bool(m.bidirectional), dropout=float(m.dropout), dtype=dtype)
    with warnings.catch_warnings():
        # torch already warned about dropout with num_layers=1 when the module was built.
        warnings.simplefilter("ignore", UserWarning)
        if isinstance(m, nn.LSTM):
            layer = LSTM(m.input_size, m.hidden_size, **kw)
        elif isinstance(m, nn.GRU):
            layer = GRU(m.input_size, m.hidden_size, reset_after=True, **kw)
        elif isinstance(m, nn.RNN):
            if m.nonlinearity not in ("tanh", "relu"):
                raise ValueError(f"torch.nn.RNN nonlinearity {m.nonlinearity!r} is not supported")
            layer = RNN(m.input_size, m.hidden_size, nonlinearity=m.nonlinearity, **kw)
        else:
            raise TypeError(f"unsupported recurrent module torch.nn.{name}")
    H = m.hidden_size
    gru = isinstance(m, nn.GRU)
    for k in range(m.num_layers):
        for sfx in ("", "_reverse")[:layer.num_directions]:
            s = f"_l{k}{sfx}"

            def get(key):
                return _np(getattr(m, key), dtype, f"torch.nn.{name} {key}")

            # Checked writes (params[key] = v): a float32 bias sum past the float32 range is
            # a ValueError naming the parameter, not Inf (summed in float64 for that).
            layer.params["weight_ih" + s] = get("weight_ih" + s)
            layer.params["weight_hh" + s] = get("weight_hh" + s)
            if not m.bias:
                continue
            b_ih, b_hh = get("bias_ih" + s).astype(np.float64), get("bias_hh" + s)
            if gru:
                layer.params["bias" + s] = np.concatenate(
                    [b_ih[:2 * H] + b_hh[:2 * H], b_ih[2 * H:]])
                layer.params["bias_hn" + s] = b_hh[2 * H:]
            else:
                layer.params["bias" + s] = b_ih + b_hh
    layer.train(m.training)
    return layer


def _linear_from_torch(torch, m, activation=None):
    from .layers import Dense
    dtype = _dtype_name(torch, m.weight, "torch.nn.Linear")
    layer = Dense(m.in_features, m.out_features, activation, bias=m.bias is not None,
                  dtype=dtype, seed=0)
    layer.params["weight"] = _np(m.weight, dtype, "torch.nn.Linear weight")
    if m.bias is not None:
        layer.params["bias"] = _np(m.bias, dtype, "torch.nn.Linear bias")
    return layer


def _embedding_from_torch(torch, m):
    from .layers import Embedding
    if m.max_norm is not None or m.sparse or m.scale_grad_by_freq:
        raise ValueError("torch.nn.Embedding with max_norm, sparse or scale_grad_by_freq has no "
                         "pyrnn equivalent")
    dtype = _dtype_name(torch, m.weight, "torch.nn.Embedding")
    layer = Embedding(m.num_embeddings, m.embedding_dim, padding_idx=m.padding_idx, dtype=dtype,
                      seed=0)
    layer.params["weight"] = _np(m.weight, dtype, "torch.nn.Embedding weight")
    return layer


def _layernorm_from_torch(torch, m, dtype=None):
    """dtype: the enclosing model's, for a LayerNorm with no parameters to tell its own."""
    from .layers import LayerNorm
    shape = tuple(m.normalized_shape)
    if len(shape) != 1:
        raise ValueError(f"torch.nn.LayerNorm over {shape} is not supported: pyrnn's LayerNorm "
                         "normalises the last axis only")
    w = getattr(m, "weight", None)
    b = getattr(m, "bias", None)
    if w is not None or b is not None:
        dtype = _dtype_name(torch, w if w is not None else b, "torch.nn.LayerNorm")
    elif dtype is None:  # (it was float32 whatever the model's)
        dtype = _dtype_name(torch, torch.empty(0), "torch.nn.LayerNorm")  # the default dtype
    if w is None or b is None:
        missing = [n for n, t in (("weight", w), ("bias", b)) if t is None]
        fill = " / ".join({"weight": "weight 1", "bias": "bias 0"}[n] for n in missing)
        warnings.warn(f"torch.nn.LayerNorm has no {' and '.join(missing)}: pyrnn's LayerNorm "
                      f"has both, so it is converted with {fill} (the same outputs), but "
                      f"training updates {'them' if len(missing) > 1 else 'it'}, which the "
                      f"torch module would not", UserWarning, stacklevel=3)
    layer = LayerNorm(shape[0], eps=float(m.eps), dtype=dtype)
    if w is not None:
        layer.params["weight"] = _np(w, dtype, "torch.nn.LayerNorm weight")
    if b is not None:
        layer.params["bias"] = _np(b, dtype, "torch.nn.LayerNorm bias")
    return layer


def _activation(torch, m):
    """Dense's activation for a torch activation module (its subclasses too: _check_plain
    refuses one overriding forward), else None. By class, not name: a module of the user's
    named Tanh computing 2 tanh(x) became Dense(activation="tanh"), with no error."""
    nn = torch.nn
    for cls, name in ((nn.ReLU, "relu"), (nn.Tanh, "tanh"), (nn.Sigmoid, "sigmoid")):
        if isinstance(m, cls):
            return name
    return None


def _check_plain(torch, m):
    """TypeError when m's class overrides forward() of the torch.nn class pyrnn converts it as:
    its parameters would be copied into a layer that computes something else (export_onnx
    refuses such subclasses too). A subclass that only adds attributes is fine."""
    nn = torch.nn
    for base in (nn.RNN, nn.LSTM, nn.GRU, nn.Linear, nn.Embedding, nn.LayerNorm, nn.Dropout,
                 nn.Sequential, nn.ReLU, nn.Tanh, nn.Sigmoid):
        if isinstance(m, base):
            if type(m).forward is not base.forward:
                raise TypeError(f"from_torch: {type(m).__name__} overrides forward() of "
                                f"torch.nn.{base.__name__}; pyrnn would compute "
                                f"torch.nn.{base.__name__}'s, not yours")
            break
    # Hooks change what the module computes as an overridden forward would: pyrnn runs none.
    hooks = [what for what, attr in (("forward hooks", "_forward_hooks"),
                                     ("forward pre-hooks", "_forward_pre_hooks"))
             if getattr(m, attr, None)]
    if hooks:
        raise TypeError(f"from_torch: {type(m).__name__} has {' and '.join(hooks)} "
                        "registered; pyrnn would not run them (remove them first)")


def _sequential_from_torch(torch, seq, hint=None):
    """hint: the outermost model's dtype name, for a LayerNorm without parameters of its own
    (the first parameter of the whole model decides, nested models included)."""
    if hint is None:
        first = next(iter(seq.parameters()), None)
        hint = None if first is None else _dtype_name(torch, first, "torch.nn.Sequential")
    from .model import Sequential
    nn = torch.nn
    layers = []
    mods = list(seq)
    i = 0
    while i < len(mods):
        m = mods[i]
        _check_plain(torch, m)
        if isinstance(m, nn.Linear):
            act = None
            if i + 1 < len(mods) and _activation(torch, mods[i + 1]) is not None:
                _check_plain(torch, mods[i + 1])
                act = _activation(torch, mods[i + 1])
                i += 1
            layers.append(_linear_from_torch(torch, m, act).train(m.training))
        elif isinstance(m, nn.LayerNorm):
            layers.append(_layernorm_from_torch(torch, m, hint).train(m.training))
        elif isinstance(m, nn.Sequential):
            layers.append(_sequential_from_torch(torch, m, hint))
        elif _activation(torch, m) is not None:
            raise TypeError(f"torch.nn.Sequential item {i} ({type(m).__name__}) must follow a "
                            "torch.nn.Linear: pyrnn has activations only inside Dense")
        else:
            layers.append(from_torch(m))
        i += 1
    model = Sequential(layers)
    # The container's own flag only: model.train() would reset each layer's mode, which
    # from_torch carried over one by one (a torch Dropout in eval mode came back active).
    model.training = bool(seq.training)
    return model


def from_torch(module: nn.Module) -> _PyrnnModule:
    """A pyrnn layer or model with the same parameters as a PyTorch module.

    Supported: torch.nn.RNN / LSTM / GRU (any num_layers, bidirectional, batch_first, bias,
    nonlinearity, dropout below 1; float32 or float64 parameters; torch's GRU becomes
    pyrnn.GRU(reset_after=True)); torch.nn.Linear -> pyrnn.Dense; Embedding, LayerNorm
    (over the last axis), Dropout; torch.nn.Sequential of these, where a ReLU / Tanh /
    Sigmoid right after a Linear becomes that Dense's activation (recurrent layers inside
    must use batch_first=True, and pyrnn's Sequential passes on only their output
    sequence). The training/eval mode is carried over. Parameters are copied.

    Raises TypeError for other modules and ValueError for unsupported options (e.g.
    LSTM proj_size > 0, float16 parameters).
    """
    torch = _torch()
    nn = torch.nn
    if not isinstance(module, nn.Module):
        raise TypeError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    _check_plain(torch, module)
    if isinstance(module, (nn.RNN, nn.LSTM, nn.GRU)):
        return _recurrent_from_torch(torch, module)
    if isinstance(module, nn.Linear):
        return _linear_from_torch(torch, module).train(module.training)
    if isinstance(module, nn.Embedding):
        return _embedding_from_torch(torch, module).train(module.training)
    if isinstance(module, nn.LayerNorm):
        return _layernorm_from_torch(torch, module).train(module.training)
    if isinstance(module, nn.Dropout):
        from .layers import Dropout
        layer = Dropout(float(module.p))
        layer.train(module.training)
        return layer
    if isinstance(module, nn.Sequential):
        return _sequential_from_torch(torch, module)
    raise TypeError(f"from_torch does not support torch module {type(module).__name__}; "
                    "supported: RNN, LSTM, GRU, Linear, Embedding, LayerNorm, Dropout and "
                    "Sequential of these")


# ---- pyrnn -> torch -------------------------------------------------------------------------

def _copy(torch, dst, arr):
    dst.copy_(torch.from_numpy(np.ascontiguousarray(arr)))


def to_torch(layer: Union[_Recurrent, Dense, Embedding, LayerNorm, Dropout]) -> nn.Module:
    """The PyTorch module equivalent to a pyrnn RNN / LSTM / GRU(reset_after=True) layer,
    Dense (-> Linear, or Sequential(Linear, activation)), Embedding, LayerNorm or Dropout.
    Parameters are copied (CPU, the layer's dtype); the training/eval mode is carried."""
    from .layers import Dense, Dropout, Embedding, LayerNorm
    from .recurrent import GRU, LSTM, RNN, _Recurrent
    # (Before importing torch: this layer has no equivalent whether torch is installed or not.)
    if isinstance(layer, GRU) and not layer.reset_after:
        raise ValueError("pyrnn.GRU(reset_after=False) has no PyTorch equivalent: "
                         "torch.nn.GRU applies the reset gate after the recurrent matmul "
                         "(n = tanh(W_in x + b_in + r*(W_hn h + b_hn))); build the layer with "
                         "reset_after=True to convert it")
    torch = _torch()
    nn = torch.nn
    if isinstance(layer, _Recurrent):
        tdtype = {"float32": torch.float32, "float64": torch.float64}[layer.dtype.name]
        kw = dict(num_layers=layer.num_layers, bias=layer.bias, batch_first=layer.batch_first,
                  dropout=layer.dropout, bidirectional=layer.bidirectional, dtype=tdtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # dropout with num_layers=1
            if isinstance(layer, LSTM):
                m = nn.LSTM(layer.input_size, layer.hidden_size, **kw)
            elif isinstance(layer, GRU):
                m = nn.GRU(layer.input_size, layer.hidden_size, **kw)
            elif isinstance(layer, RNN):
                m = nn.RNN(layer.input_size, layer.hidden_size,
                           nonlinearity=layer.nonlinearity, **kw)
            else:
                raise TypeError(f"to_torch does not support {type(layer).__name__}")
        H = layer.hidden_size
        p = layer.params
        with torch.no_grad():
            for k in range(layer.num_layers):
                for sfx in ("", "_reverse")[:layer.num_directions]:
                    s = f"_l{k}{sfx}"
                    _copy(torch, getattr(m, "weight_ih" + s), p["weight_ih" + s])
                    _copy(torch, getattr(m, "weight_hh" + s), p["weight_hh" + s])
                    if not layer.bias:
                        continue
                    b = p["bias" + s]
                    b_hh = np.zeros_like(b)
                    if isinstance(layer, GRU):
                        b_hh[2 * H:] = p["bias_hn" + s]
                    _copy(torch, getattr(m, "bias_ih" + s), b)
                    _copy(torch, getattr(m, "bias_hh" + s), b_hh)
        m.train(layer.training)
        return m
    if isinstance(layer, Dense):
        tdtype = {"float32": torch.float32, "float64": torch.float64}[layer.dtype.name]
        lin = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias, dtype=tdtype)
        with torch.no_grad():
            _copy(torch, lin.weight, layer.params["weight"])
            if layer.bias:
                _copy(torch, lin.bias, layer.params["bias"])
        if layer.activation is None:
            return lin.train(layer.training)
        act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[layer.activation]()
        return nn.Sequential(lin, act).train(layer.training)
    if isinstance(layer, Embedding):
        tdtype = {"float32": torch.float32, "float64": torch.float64}[layer.dtype.name]
        m = nn.Embedding(layer.num, layer.dim, padding_idx=layer.padding_idx, dtype=tdtype)
        with torch.no_grad():
            _copy(torch, m.weight, layer.params["weight"])
        return m.train(layer.training)
    if isinstance(layer, LayerNorm):
        tdtype = {"float32": torch.float32, "float64": torch.float64}[layer.dtype.name]
        m = nn.LayerNorm(layer.dim, eps=layer.eps, dtype=tdtype)
        with torch.no_grad():
            _copy(torch, m.weight, layer.params["weight"])
            _copy(torch, m.bias, layer.params["bias"])
        return m.train(layer.training)
    if isinstance(layer, Dropout):
        m = nn.Dropout(layer.p)
        m.train(layer.training)
        return m
    raise TypeError(f"to_torch does not support {type(layer).__name__}")
