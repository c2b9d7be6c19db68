"""RNN, LSTM and GRU layers: the public Python API over pyrnn._core.NativeRecurrent.

Layout follows PyTorch: x (T, N, C) time-major, (N, T, C) with batch_first, or unbatched
(T, C); states (num_layers * D, N, H) indexed layer * D + direction.
"""
from __future__ import annotations

import copy
import numbers
import sys
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, Optional, Sequence, Tuple, Union, overload

import numpy as np

from . import _arrays, _attrs, _core
from ._validate import (beyond_range, flag, float_dtype, lengths_array, positive_int, real_array,
                        seed_arg, shape_str, train_mode)
from .parameter import (Parameter, ParamWrites, bind_pending, owned, owners_held,
                        refuse_move_in_fit)

if TYPE_CHECKING:
    import numpy.typing as npt
    import torch
    from typing_extensions import Self

    from ._cuda import DeviceArray
    from ._typing import (Array, ArrayInput, Device, DeviceArrayLike, FloatDType, HostArray,
                          Int, PathOrBytes, Real, Seed, SupportsWriteBytes)

    # hx of an LSTM: the pair (h0, c0), both given (a list of two is taken too).
    _LSTMState = Union[Tuple[ArrayInput, ArrayInput], Sequence[ArrayInput]]


def _user_stacklevel():
    """warnings.warn's stacklevel, from its caller, of the first frame outside pyrnn (the
    user's line: LSTM has no __init__ of its own, RNN and GRU do, a subclass adds more)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "pyrnn":
        frame, level = frame.f_back, level + 1
    return level


def _check_device(device):
    if device == "cpu":
        return
    if device == "cuda":
        from . import cuda
        reason = cuda.unavailable_reason()
        if reason:
            raise RuntimeError(f"device='cuda' is not available: {reason}")
        return
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def _host_lengths(lengths):
    """lengths stay on the host (validated there); device arrays of lengths are copied back."""
    from . import cuda
    if cuda.is_device_array(lengths):
        return cuda.as_device_array(lengths).numpy()
    return lengths


class _Recurrent(ParamWrites):
    _cell: Any = None  # "rnn_tanh" | "rnn_relu" | "lstm" | "gru"
    _takes_lengths = True  # Sequential passes the sequence lengths to forward
    _last_lens = None  # (class default: pickles from before have none)

    # Read-only (see _attrs.Fixed); `training` stays a plain attribute (train(), eval()); `device`
    # changes only through to().
    device = _attrs.Device()
    input_size: _attrs.Fixed[int] = _attrs.Fixed()
    hidden_size: _attrs.Fixed[int] = _attrs.Fixed()
    num_layers: _attrs.Fixed[int] = _attrs.Fixed()
    bias: _attrs.Fixed[bool] = _attrs.Fixed()
    batch_first: _attrs.Fixed[bool] = _attrs.Fixed()
    bidirectional: _attrs.Fixed[bool] = _attrs.Fixed()
    dropout: _attrs.Fixed[float] = _attrs.Fixed()
    dtype: _attrs.Fixed[np.dtype[Any]] = _attrs.Fixed()
    seed: _attrs.Fixed[Optional[int]] = _attrs.Fixed()
    training: bool
    if TYPE_CHECKING:  # set in __init__ (the native layer and its {name: view} dicts)
        _native: Any
        _params: dict[str, Any]
        _grads: dict[str, Any]
        _rng: np.random.Generator
        _last: Any
        _device: str

    _reset_after = False  # GRU's reset_after, set by GRU before this __init__

    def __init__(self, input_size: Int, hidden_size: Int, num_layers: Int = 1, *,
                 bias: bool = True, batch_first: bool = False, bidirectional: bool = False,
                 dropout: Real = 0.0, dtype: FloatDType = "float32", device: Device = "cpu",
                 seed: Seed = None) -> None:
        self._input_size = positive_int("input_size", input_size)
        self._hidden_size = positive_int("hidden_size", hidden_size)
        self._num_layers = positive_int("num_layers", num_layers)
        self._bias = flag("bias", bias)
        self._batch_first = flag("batch_first", batch_first)
        self._bidirectional = flag("bidirectional", bidirectional)
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
            raise TypeError(f"dropout must be a float, got {type(dropout).__name__}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if dropout > 0 and self.num_layers == 1:
            warnings.warn("dropout applies between recurrent layers; with num_layers=1 it has "
                          "no effect", stacklevel=_user_stacklevel())
        self._dropout = float(dropout)
        self._dtype = float_dtype(dtype)
        _check_device(device)
        self._device = device
        self._seed = seed = seed_arg("seed", seed)
        self._rng = np.random.default_rng(seed)
        self._native = self._make_native(device)
        # The same draw on either device: a CUDA layer starts with the CPU layer's exact values.
        self._native.reset_parameters(int(self._rng.integers(0, 2**63)))
        self._params = self._native.views(False)
        self._grads = self._native.views(True)
        self.training = True
        self._last = None  # (unbatched, T, N) of the cached forward
        self._last_lens = None  # its lengths (N,) int64, or None

    def _make_native(self, device):
        args = (self._cell, self.input_size, self.hidden_size, self.num_layers, self.bias,
                self.bidirectional, self._reset_after, self.dropout, self.dtype)
        if device == "cuda":
            from . import cuda
            native = cuda.NativeRecurrentCUDA(*args, batch_first=self.batch_first)
            if getattr(self, "_cuda_options", None):  # pyrnn.cuda.configure, kept across to()
                native.set_options(**self._cuda_options)
            return native
        # batch_first buffers go to the core as they are: the CPU core reads and writes them in
        # place, the CUDA core swaps them on its own stream.
        return _core.NativeRecurrent(*args, batch_first=self.batch_first)

    def to(self, device: Device) -> Self:
        """Move parameters and accumulated gradients to "cpu" or "cuda" (in place; returns
        self). The cached forward is dropped (run forward again before backward)."""
        _check_device(device)
        if device == self.device:
            return self
        refuse_move_in_fit(self)
        params, grads = self.numpy_params(), self.numpy_grads()
        native = self._make_native(device)
        new_params, new_grads = native.views(False), native.views(True)
        # Filled before the layer switches: a failure here (out of device memory, say) leaves it
        # whole on its old device, never on the new one with some weights still the seed's.
        for name, value in params.items():
            _arrays.assign(new_params[name], value)
        for name, value in grads.items():
            _arrays.assign(new_grads[name], value)
        self._native = native
        self._device = device
        self._params, self._grads = new_params, new_grads
        self._last = None
        return self

    # ---- copy / pickle ----------------------------------------------------------------------
    # The native layer (C++ memory) cannot be shared or pickled: a copy gets a new one on the
    # same device, holding copies of the parameters and accumulated gradients. The training
    # flag, the CUDA options and the dropout generator's state are copied too, so the copy and
    # the original draw the same dropout masks and give bitwise equal results for the same
    # calls (processes given pickled copies draw the same masks as well). The forward cache is
    # not copied: a copy needs its own training forward before backward().
    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_native"]
        state["_params"], state["_grads"] = self.numpy_params(), self.numpy_grads()
        state["_last"] = None
        state.pop("_busy_owner", None)  # (a save holding it in another thread: not the copy's)
        return state

    def __setstate__(self, state):
        state = _attrs.upgrade(type(self), state)
        params, grads = state.pop("_params"), state.pop("_grads")
        self.__dict__.update(state)
        _check_device(self.device)  # a CUDA layer unpickled where no GPU is: a clear error
        native = self._make_native(self.device)
        new_params, new_grads = native.views(False), native.views(True)
        for what, views, values in (("parameters", new_params, params),
                                    ("gradients", new_grads, grads)):
            if set(values) != set(views):  # every value is overwritten: none left unset
                raise ValueError(f"pickled {what} {sorted(values)} do not match the layer's "
                                 f"{sorted(views)}")
            _arrays.load_into(views, values, what[:-1])
        self._native, self._params, self._grads = native, new_params, new_grads
        bind_pending(self)

    def __copy__(self) -> Self:
        # A shallow copy cannot share the native storage either (nor, sensibly, the dropout
        # generator): it is the deep copy.
        return copy.deepcopy(self)

    def cuda(self) -> Self:
        return self.to("cuda")

    def cpu(self) -> Self:
        return self.to("cpu")

    # ---- parameters -----------------------------------------------------------------------
    params = _arrays.NamedArrays(
        lambda self: self._params, "parameter",
        """{name: writable view of the native parameter}: ndarray views on CPU layers,
        pyrnn.cuda.DeviceArray views (device memory, zero-copy) on CUDA layers. Host copies on
        either device: numpy_params(). ``params[name] = value`` copies value INTO the native
        parameter (checked: known name, same shape, a castable dtype): rebinding the entry
        would leave forward on the old weights. Names cannot be added or removed.
        ``layer.params = {...}`` and ``|=`` copy in too.""")
    grads = _arrays.NamedArrays(
        lambda self: self._grads, "gradient",
        """{name: view of the accumulated gradient} (ndarray on CPU, DeviceArray on CUDA);
        cleared by zero_grad(). Host copies on either device: numpy_grads(). Assignment
        copies into the native gradient, as for params.""")

    def numpy_params(self) -> dict[str, HostArray]:
        """{name: ndarray} host COPIES of the parameters, on any device."""
        return {k: _arrays.host_copy(v) for k, v in self._params.items()}

    def numpy_grads(self) -> dict[str, HostArray]:
        """{name: ndarray} host COPIES of the accumulated gradients, on any device."""
        return {k: _arrays.host_copy(v) for k, v in self._grads.items()}

    def load_params(self, values: Mapping[str, ArrayInput], *, strict: bool = False) -> None:
        """Overwrite parameters from {name: array} (missing names keep their value; strict=True:
        a KeyError naming them, as torch's load_state_dict). All or nothing: every name, shape
        and dtype is checked before anything is written."""
        strict = flag("strict", strict)
        with owners_held(list(self.parameters())):  # (not while it runs in another thread)
            _arrays.load_into(self._params, values, strict=strict)
        self._params_changed()

    def num_parameters(self) -> int:
        return int(self._native.num_parameters())

    def parameters(self) -> Iterator[Parameter]:
        """Yields a pyrnn.Parameter per entry of `params` (same names), whose data and grad
        are the views into native memory (ndarrays on the CPU, DeviceArrays on CUDA):
        optimizers update the layer in place, on its device. layer.to() gives the layer new
        storage: build optimizers after moving it."""
        for name, data in self._params.items():
            yield owned(name, data, self._grads[name], self, name)

    # ---- serialization (pyrnn.save / pyrnn.load) ------------------------------------------
    def config(self) -> dict[str, Any]:
        """Constructor arguments as a JSON-able dict (the seed and device are not kept)."""
        cfg = {"input_size": self.input_size, "hidden_size": self.hidden_size,
               "num_layers": self.num_layers, "bias": self.bias,
               "batch_first": self.batch_first, "bidirectional": self.bidirectional,
               "dropout": self.dropout, "dtype": self.dtype.name}
        cfg.update(self._extra_config())
        return cfg

    def _extra_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        return cls(**config)

    @classmethod
    def param_shapes(cls, config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        """{name: shape} of a layer built from `config`, computed without allocating."""
        G = {"lstm": 4, "gru": 3}.get(cls._cell, 1)
        H, L = int(config["hidden_size"]), int(config["num_layers"])
        D = 2 if config.get("bidirectional", False) else 1
        bias = config.get("bias", True)
        reset_after = config.get("reset_after", False)
        shapes: dict[str, tuple[int, ...]] = {}
        for k in range(L):
            C = int(config["input_size"]) if k == 0 else D * H
            for d in range(D):
                sfx = f"_l{k}" + ("_reverse" if d else "")
                shapes["weight_ih" + sfx] = (G * H, C)
                shapes["weight_hh" + sfx] = (G * H, H)
                if bias:
                    shapes["bias" + sfx] = (G * H,)
                    if reset_after:
                        shapes["bias_hn" + sfx] = (H,)
        return shapes

    def save(self, path: Union[PathOrBytes, SupportsWriteBytes]) -> None:
        """Write this layer (config + weights) to one file (as pyrnn.save: a str, bytes or
        path-like path, or a binary file object); pyrnn.load(path) reads it back."""
        from .serialize import save
        save(self, path)

    def to_torch(self) -> torch.nn.Module:
        """The equivalent torch.nn.RNN / LSTM / GRU with copied parameters (see
        pyrnn.interop; needs torch). GRU(reset_after=False) has none: ValueError."""
        from .interop import to_torch
        return to_torch(self)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the gradients (set_to_none, torch's keyword, zeroes too: pyrnn's gradients are
        the layer's own arrays, never None)."""
        flag("set_to_none", set_to_none)
        self._native.zero_grad()

    def train(self, mode: bool = True) -> Self:
        self.training = train_mode(mode)
        return self

    def eval(self) -> Self:
        return self.train(False)

    @property
    def num_directions(self) -> Literal[1, 2]:
        return 2 if self.bidirectional else 1

    # ---- forward / backward ---------------------------------------------------------------
    def _is_lstm(self):
        return self._cell == "lstm"

    def _check_sizes_first(self, x):
        """An input too large for this forward is refused before its conversion (a copy of a
        broadcast view took its full size, for seconds): T * N past the GEMM's int rows is a
        ValueError naming the given shape; a pass that would not fit memory, counting the
        copies made here, a MemoryError."""
        try:
            shape = x.shape
            kind = np.dtype(x.dtype).kind
        except Exception:  # not an array (or a torch tensor): the conversion says what it is
            return
        if kind not in "fiu":  # the conversion's dtype error comes first
            return
        if not (isinstance(shape, tuple) and len(shape) in (2, 3)
                and all(isinstance(s, int) for s in shape) and shape[-1] == self.input_size):
            return
        batched = len(shape) == 3
        T, N = (shape[1], shape[0]) if batched and self.batch_first else \
            (shape[0], shape[1] if batched else 1)
        if T < 1 or N < 1:
            return
        if T * N > 2**31 - 1:
            raise ValueError(f"x of shape {shape_str(shape)} holds T * N = {T * N} steps of "
                             "sequences; at most 2**31 - 1 (the input projection's 32-bit "
                             "GEMM row count)")
        copies = 0
        if not (isinstance(x, np.ndarray) and x.dtype == self.dtype and x.flags.c_contiguous):
            copies += T * N * self.input_size  # the converted input
        # (batch_first makes no copy: the native layer reads it in place)
        self._native.check_forward(T, N, self.training, copies)

    def _input(self, x, lengths=None):
        """x as a 3-d array of the layer dtype in the layer's layout, as the cores read it:
        (T, N, C), or (N, T, C) with batch_first; with whether it was unbatched."""
        if self.device == "cpu":
            self._check_sizes_first(x)
        try:
            x = real_array("x", x, self.dtype)
        except ValueError as e:
            x = self._beyond_range_in_padding(x, lengths, e)
        given = x.shape
        C = self.input_size
        if x.ndim not in (2, 3) or x.shape[-1] != C:
            want = "(N, T, {0}) with batch_first" if self.batch_first else "(T, N, {0})"
            raise ValueError(f"expected input of shape {want.format(C)} or unbatched (T, {C}), "
                             f"got {shape_str(x.shape)}")
        unbatched = x.ndim == 2
        if unbatched:
            x = x[None] if self.batch_first else x[:, None, :]
        T, N = self._steps_batch(x)
        if T < 1 or N < 1:
            raise ValueError(f"input must have at least one step and one sequence, got "
                             f"T = {T}, N = {N} (input shape {shape_str(given)})")
        return x, unbatched

    def _beyond_range_in_padding(self, x, lengths, err, name="x"):
        """x (the input, or d_out: `name`) cast to the layer dtype when its values beyond that
        range (float64 data for a float32 layer: err) all lie past the lengths, where padding
        may hold anything (as NaN and Inf may: they become +-Inf there, which reaches no output
        or gradient); else err, or the largest such value within the lengths."""
        arr = np.asarray(x)  # (real_array took it: numeric, on the host)
        if lengths is None or "beyond the" not in str(err) or arr.ndim not in (2, 3):
            raise err
        if arr.ndim == 2:
            arr3 = arr[None] if self.batch_first else arr[:, None, :]
        else:
            arr3 = arr
        T, N = self._steps_batch(arr3)
        lens = lengths_array(lengths, N, T)
        valid = np.arange(T)[:, None] < lens[None, :]  # [T, N]
        if self.batch_first:
            valid = valid.T                            # [N, T]
        big = beyond_range(arr3[valid], self.dtype)
        if big is not None:
            raise ValueError(f"{name} has values beyond the {np.dtype(self.dtype)} range "
                             f"within its lengths (the largest is {big:.3g}); scale the data "
                             f"or use float64") from None
        with np.errstate(over="ignore"):
            return np.asarray(arr, dtype=self.dtype, order="C")

    def _padding_range(self, d_out, want, err):
        """_beyond_range_in_padding for backward's d_out, shaped as the forward's output (any
        other shape: err, and then the shape error)."""
        lens = self._last_lens if np.shape(d_out) == want else None
        return self._beyond_range_in_padding(d_out, lens, err, "d_out")

    def _state(self, name, value, N, unbatched):
        LD, H = self.num_layers * self.num_directions, self.hidden_size
        want = (LD, H) if unbatched else (LD, N, H)
        arr = real_array(name, value, self.dtype)
        if arr.shape != want:
            raise ValueError(f"{name} must have shape {shape_str(want)}, got {shape_str(arr.shape)}")
        return np.ascontiguousarray(arr.reshape(LD, N, H))

    @staticmethod
    def _lstm_pair(hx):
        """(h0, c0) of an LSTM's hx; both must be given, as in PyTorch (hx=None: zeros)."""
        if isinstance(hx, (tuple, list)) and len(hx) == 2 and all(v is not None for v in hx):
            return hx[0], hx[1]
        if isinstance(hx, (tuple, list)):
            got = tuple("None" if v is None else type(v).__name__ for v in hx)
            got = str(got).replace("'", "")  # (ndarray, None)
        else:
            got = type(hx).__name__
        raise TypeError(f"an LSTM's hx must be a tuple (h0, c0) of two arrays, both given, or "
                        f"hx=None for zero states (PyTorch requires both too); got {got}")

    def _initial(self, hx, N, unbatched):
        if hx is None:
            return None, None
        if self._is_lstm():
            h0, c0 = self._lstm_pair(hx)
            return self._state("h0", h0, N, unbatched), self._state("c0", c0, N, unbatched)
        return self._state("hx", hx, N, unbatched), None

    def _to_user(self, y, unbatched):
        """The CPU core's y or dx (its layout: batch_first's in place) in the user's shape."""
        if unbatched:
            return y[0] if self.batch_first else y[:, 0, :]
        return y

    # forward / backward: host data in (NumPy, lists, CPU tensors), NumPy out; on a CUDA layer
    # a device array in (DeviceArray, __cuda_array_interface__, CUDA __dlpack__), a DeviceArray
    # out. RNN / GRU return (y, h_n), an LSTM (y, (h_n, c_n)): typed on each class.
    def forward(self, x: Any, hx: Any = None, lengths: Any = None) -> tuple[Any, Any]:
        """(output, h_n) for RNN and GRU, (output, (h_n, c_n)) for LSTM, as torch's.

        x: (T, N, C), (N, T, C) with batch_first, or one unbatched sequence (T, C); a NumPy
        array-like (float32 / float64 kept, integers and other floats converted to the
        layer's dtype), or a DeviceArray on a CUDA layer. hx: the initial state(s)
        (num_layers * D, N, H), index layer * D + direction, (L*D, H) unbatched; an LSTM takes
        (h0, c0); None is zeros. lengths: N integers in [1, T] (or whole floats): steps past a
        sequence's length are padding, as torch's packed sequences (outputs 0 there, h_n
        from the last real step; padding may hold NaN). output: (T, N, D*H) in x's layout.
        In training mode the pass keeps what backward() needs; an eval() pass keeps no BPTT
        cache of its own (buffers from an earlier training pass are kept for reuse)."""
        if type(x).__name__ == "PackedSequence":  # (torch's, a tuple of its own)
            raise TypeError("a torch PackedSequence is not taken: pass the padded tensor and "
                            "lengths= (PyTorch's packed-sequence semantics, without packing)")
        if self.device == "cuda":
            return self._forward_cuda(x, hx, lengths)
        x, unbatched = self._input(x, lengths)
        T, N = self._steps_batch(x)
        h0, c0 = self._initial(hx, N, unbatched)
        lens = None if lengths is None else lengths_array(lengths, N, T)
        seed = int(self._rng.integers(0, 2**63)) if self.training and self.dropout else 0
        y, hn, cn = self._native_forward(x, h0, c0, lens, seed, T, N, unbatched)
        y = self._to_user(y, unbatched)
        if unbatched:
            hn = hn[:, 0, :]
            cn = None if cn is None else cn[:, 0, :]
        return (y, (hn, cn)) if self._is_lstm() else (y, hn)

    def _native_forward(self, x, h0, c0, lens, seed, T, N, unbatched):
        """The native pass (CPU or CUDA) and the record of the cache it leaves. The record is
        cleared first: a Ctrl-C landing between the pass's return and the new record left a
        new cache under the old record (a backward then differentiated the interrupted forward
        silently); now backward refuses it. A pass that fails keeps its old cache, and the
        record. The write count is the one at the pass's start: a parameter write during it
        makes backward refuse it."""
        version, last = self._params_version, self._last
        self._last = None
        try:
            y, hn, cn = self._native.forward(x, h0, c0, lens, self.training, seed)
        except Exception:  # (not a KeyboardInterrupt: that one may follow a whole pass)
            self._last = last
            raise
        self._forward_made(version)
        # A copy (the caller's int64 array is used as it is: it may change before backward),
        # set before _last: an interrupt between them leaves _last None
        self._last_lens = None if lens is None else lens.copy()
        self._last = (unbatched, T, N) if self.training else None
        return y, hn, cn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Through self.forward, so that a subclass overriding forward() is called.
        return self.forward(*args, **kwargs)

    def _check_backward_ready(self):
        """RuntimeError unless backward() can run (Sequential asks every layer before any runs)."""
        if not self._native.has_cache():
            # Another thread's pass clears the cache at its start: name that, not "no forward"
            # (checked without taking the flag: nothing for an interrupt to leave set).
            self._native.check_free()
        if self._last is None or not self._native.has_cache():
            raise RuntimeError(f"{type(self).__name__}.backward() needs a preceding forward() in "
                               "training mode: it differentiates the layer's LAST forward, and "
                               "there is none, or it ran in eval mode, which keeps no cache "
                               "(call layer.train() before forward)")
        self._check_params_unchanged()

    def _backward(self, d_out, d_h_n, d_c_n):
        self._check_backward_ready()
        if d_out is None:  # only d_h_n / d_c_n flow back (a loss on the final state alone)
            unbatched, T, N = self._last
            DH = self.num_directions * self.hidden_size
            shape = (T, DH) if unbatched else (N, T, DH) if self.batch_first else (T, N, DH)
            from . import cuda
            if self.device == "cuda" and any(cuda.is_device_array(d) for d in (d_h_n, d_c_n)):
                # device state gradients: d x comes back on the device, as for a device d_out
                d_out = cuda._need().DeviceArray.zeros(shape, self.dtype, self._native.device)
            else:
                d_out = np.zeros(shape, self.dtype)
        if self.device == "cuda":
            return self._backward_cuda(d_out, d_h_n, d_c_n)
        unbatched, T, N = self._last
        DH = self.num_directions * self.hidden_size
        if unbatched:
            want = (T, DH)
        else:
            want = (N, T, DH) if self.batch_first else (T, N, DH)
        try:
            dy = real_array("d_out", d_out, self.dtype)
        except ValueError as e:  # padding past the lengths may hold anything, as in forward
            dy = self._padding_range(d_out, want, e)
        if dy.shape != want:
            raise ValueError(f"d_out must have the forward output's shape {shape_str(want)}, "
                             f"got {shape_str(dy.shape)}")
        if unbatched:
            dy = dy[None] if self.batch_first else dy[:, None, :]
        dhn = None if d_h_n is None else self._state("d_h_n", d_h_n, N, unbatched)
        dcn = None if d_c_n is None else self._state("d_c_n", d_c_n, N, unbatched)
        dx, dh0, dc0 = self._native.backward(dy, dhn, dcn)
        dx = self._to_user(dx, unbatched)
        if unbatched:
            dh0 = dh0[:, 0, :]
            dc0 = None if dc0 is None else dc0[:, 0, :]
        return dx, dh0, dc0

    # ---- CUDA path ------------------------------------------------------------------------
    # Host (NumPy / array-like) data is validated exactly as on the CPU and uploaded; the
    # results come back as NumPy. Device arrays (DeviceArray, __cuda_array_interface__, CUDA
    # __dlpack__) must be C-contiguous and of the layer dtype (else ValueError / TypeError: no
    # silent device copy); they are used zero-copy, and the results are DeviceArrays.
    # batch_first arrays go to the core in that layout (it swaps them on its stream).
    def _device_in(self, name, value):
        from . import cuda
        arr = cuda.as_device_array(value)
        if arr.dtype != self.dtype:
            raise TypeError(f"{name} is a device array of dtype {arr.dtype}, but the layer is "
                            f"{self.dtype}; convert it on the device first")
        return arr

    def _input_cuda(self, x, lengths=None):
        from . import cuda
        if not cuda.is_device_array(x):
            xh, unbatched = self._input(x, lengths)
            return cuda.to_device(xh), unbatched, False
        x = self._device_in("x", x)
        given, C = tuple(x.shape), self.input_size
        if x.ndim not in (2, 3) or given[-1] != C:
            want = "(N, T, {0}) with batch_first" if self.batch_first else "(T, N, {0})"
            raise ValueError(f"expected input of shape {want.format(C)} or unbatched (T, {C}), "
                             f"got {shape_str(given)}")
        unbatched = x.ndim == 2
        if unbatched:
            x = x.reshape(1, given[0], C) if self.batch_first else x.reshape(given[0], 1, C)
        T, N = self._steps_batch(x)
        if T < 1 or N < 1:
            raise ValueError(f"input must have at least one step and one sequence, got "
                             f"T = {T}, N = {N} (input shape {shape_str(given)})")
        return x, unbatched, True

    def _state_cuda(self, name, value, N, unbatched):
        from . import cuda
        if not cuda.is_device_array(value):
            return cuda.to_device(self._state(name, value, N, unbatched))
        arr = self._device_in(name, value)
        LD, H = self.num_layers * self.num_directions, self.hidden_size
        want = (LD, H) if unbatched else (LD, N, H)
        if tuple(arr.shape) != want:
            raise ValueError(f"{name} must have shape {shape_str(want)}, got {shape_str(arr.shape)}")
        return arr.reshape(LD, N, H)

    def _steps_batch(self, x):
        """(T, N) of a 3-d sequence in the core's layout."""
        return (x.shape[1], x.shape[0]) if self.batch_first else (x.shape[0], x.shape[1])

    def _to_user_cuda(self, y, unbatched, device_out):
        if unbatched:  # (1, T, W) batch_first, (T, 1, W) time-major
            y = y.reshape(y.shape[0] * y.shape[1], y.shape[2])
        return y if device_out else y.numpy()

    def _states_out_cuda(self, s, unbatched, device_out):
        if s is None:
            return None
        if unbatched:
            s = s.reshape(s.shape[0], s.shape[2])
        return s if device_out else s.numpy()

    def _forward_cuda(self, x, hx, lengths):
        x, unbatched, device_out = self._input_cuda(x, lengths)
        T, N = self._steps_batch(x)
        h0 = c0 = None
        if hx is not None:
            if self._is_lstm():
                h0, c0 = self._lstm_pair(hx)
                h0 = self._state_cuda("h0", h0, N, unbatched)
                c0 = self._state_cuda("c0", c0, N, unbatched)
            else:
                h0 = self._state_cuda("hx", hx, N, unbatched)
        lens = None if lengths is None else lengths_array(_host_lengths(lengths), N, T)
        seed = int(self._rng.integers(0, 2**63)) if self.training and self.dropout else 0
        y, hn, cn = self._native_forward(x, h0, c0, lens, seed, T, N, unbatched)
        y = self._to_user_cuda(y, unbatched, device_out)
        hn = self._states_out_cuda(hn, unbatched, device_out)
        cn = self._states_out_cuda(cn, unbatched, device_out)
        return (y, (hn, cn)) if self._is_lstm() else (y, hn)

    def _backward_cuda(self, d_out, d_h_n, d_c_n):
        from . import cuda
        unbatched, T, N = self._last
        DH = self.num_directions * self.hidden_size
        if unbatched:
            want = (T, DH)
        else:
            want = (N, T, DH) if self.batch_first else (T, N, DH)
        device_out = cuda.is_device_array(d_out)
        if device_out:
            dy = self._device_in("d_out", d_out)
        else:
            try:
                dy = real_array("d_out", d_out, self.dtype)
            except ValueError as e:  # padding past the lengths may hold anything, as in forward
                dy = self._padding_range(d_out, want, e)
        if tuple(dy.shape) != want:
            raise ValueError(f"d_out must have the forward output's shape {shape_str(want)}, "
                             f"got {shape_str(dy.shape)}")
        if not device_out:
            dy = cuda.to_device(dy)
        if unbatched:
            dy = dy.reshape(1, T, DH) if self.batch_first else dy.reshape(T, 1, DH)
        dhn = None if d_h_n is None else self._state_cuda("d_h_n", d_h_n, N, unbatched)
        dcn = None if d_c_n is None else self._state_cuda("d_c_n", d_c_n, N, unbatched)
        dx, dh0, dc0 = self._native.backward(dy, dhn, dcn)
        dx = self._to_user_cuda(dx, unbatched, device_out)
        dh0 = self._states_out_cuda(dh0, unbatched, device_out)
        dc0 = self._states_out_cuda(dc0, unbatched, device_out)
        return dx, dh0, dc0

    def __repr__(self) -> str:
        extra = []
        if self.num_layers != 1:
            extra.append(f"num_layers={self.num_layers}")
        for name, default in (("bias", True), ("batch_first", False),
                              ("bidirectional", False), ("dropout", 0.0)):
            if getattr(self, name) != default:
                extra.append(f"{name}={getattr(self, name)}")
        extra += self._extra_repr()
        if self.dtype != np.float32:
            extra.append(f"dtype={self.dtype.name!r}")
        if self.device != "cpu":
            extra.append(f"device='{self.device}'")
        args = ", ".join([str(self.input_size), str(self.hidden_size)] + extra)
        return f"{type(self).__name__}({args})"

    def _extra_repr(self) -> list[str]:
        return []


class _OneStateRecurrent(_Recurrent):
    """RNN and GRU: one state, h, so forward gives (y, h_n) and backward (dx, dh0)."""

    if TYPE_CHECKING:
        @overload
        def forward(self, x: DeviceArray, hx: Optional[ArrayInput] = None,
                    lengths: Optional[npt.ArrayLike] = None
                    ) -> tuple[DeviceArray, DeviceArray]: ...
        @overload
        def forward(self, x: npt.ArrayLike, hx: Optional[ArrayInput] = None,
                    lengths: Optional[npt.ArrayLike] = None) -> tuple[HostArray, HostArray]: ...
        @overload
        def forward(self, x: DeviceArrayLike, hx: Optional[ArrayInput] = None,
                    lengths: Optional[npt.ArrayLike] = None
                    ) -> tuple[DeviceArray, DeviceArray]: ...
        @overload
        def forward(self, x: ArrayInput, hx: Optional[ArrayInput] = None,
                    lengths: Optional[npt.ArrayLike] = None) -> tuple[Array, Array]: ...
        def forward(self, x: Any, hx: Any = None, lengths: Any = None) -> Any: ...

        # (the same as forward: __call__ calls it)
        @overload
        def __call__(self, x: DeviceArray, hx: Optional[ArrayInput] = None,
                    lengths: Optional[npt.ArrayLike] = None
                    ) -> tuple[DeviceArray, DeviceArray]: ...
        @overload
        def __call__(self, x: npt.ArrayLike, hx: Optional[ArrayInput] = None,
                    lengths: Optional[npt.ArrayLike] = None) -> tuple[HostArray, HostArray]: ...
        @overload
        def __call__(self, x: DeviceArrayLike, hx: Optional[ArrayInput] = None,
                    lengths: Optional[npt.ArrayLike] = None
                    ) -> tuple[DeviceArray, DeviceArray]: ...
        @overload
        def __call__(self, x: ArrayInput, hx: Optional[ArrayInput] = None,
                    lengths: Optional[npt.ArrayLike] = None) -> tuple[Array, Array]: ...
        def __call__(self, x: Any, hx: Any = None, lengths: Any = None) -> Any: ...

    @overload
    def backward(self, d_out: DeviceArray, d_h_n: Optional[ArrayInput] = None
                 ) -> tuple[DeviceArray, DeviceArray]: ...
    @overload
    def backward(self, d_out: npt.ArrayLike, d_h_n: Optional[ArrayInput] = None
                 ) -> tuple[HostArray, HostArray]: ...
    @overload
    def backward(self, d_out: Optional[ArrayInput], d_h_n: Optional[ArrayInput] = None
                 ) -> tuple[Array, Array]: ...

    def backward(self, d_out: Optional[ArrayInput],
                 d_h_n: Optional[ArrayInput] = None) -> tuple[Array, Array]:
        """BPTT through the last training forward -> (dx, dh0); parameter grads accumulate.
        d_out None: zeros (only d_h_n flows back)."""
        dx, dh0, _ = self._backward(d_out, d_h_n, None)
        return dx, dh0


class RNN(_OneStateRecurrent):
    """Elman RNN: h_t = act(W_ih x_t + W_hh h_{t-1} + b), act = tanh or relu."""
    nonlinearity: _attrs.Fixed[Literal["tanh", "relu"]] = _attrs.Fixed()

    # Every keyword spelled out (not **kwargs): signatures, checkers and a misspelt keyword's
    # error name this class.
    def __init__(self, input_size: Int, hidden_size: Int, num_layers: Int = 1, *,
                 nonlinearity: Literal["tanh", "relu"] = "tanh", bias: bool = True,
                 batch_first: bool = False, bidirectional: bool = False, dropout: Real = 0.0,
                 dtype: FloatDType = "float32", device: Device = "cpu",
                 seed: Seed = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self._nonlinearity = nonlinearity
        self._cell = "rnn_" + nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                         bidirectional=bidirectional, dropout=dropout, dtype=dtype,
                         device=device, seed=seed)

    def _extra_repr(self) -> list[str]:
        return [] if self.nonlinearity == "tanh" else [f"nonlinearity='{self.nonlinearity}'"]

    def _extra_config(self) -> dict[str, Any]:
        return {"nonlinearity": self.nonlinearity}


class LSTM(_Recurrent):
    """LSTM, gates (i, f, g, o): c_t = f*c_{t-1} + i*g, h_t = o*tanh(c_t)."""
    _cell = "lstm"

    def __init__(self, input_size: Int, hidden_size: Int, num_layers: Int = 1, *,
                 bias: bool = True, batch_first: bool = False, bidirectional: bool = False,
                 dropout: Real = 0.0, dtype: FloatDType = "float32", device: Device = "cpu",
                 seed: Seed = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                         bidirectional=bidirectional, dropout=dropout, dtype=dtype,
                         device=device, seed=seed)

    if TYPE_CHECKING:
        @overload
        def forward(self, x: DeviceArray, hx: Optional[_LSTMState] = None,
                    lengths: Optional[npt.ArrayLike] = None
                    ) -> tuple[DeviceArray, tuple[DeviceArray, DeviceArray]]: ...
        @overload
        def forward(self, x: npt.ArrayLike, hx: Optional[_LSTMState] = None,
                    lengths: Optional[npt.ArrayLike] = None
                    ) -> tuple[HostArray, tuple[HostArray, HostArray]]: ...
        @overload
        def forward(self, x: DeviceArrayLike, hx: Optional[_LSTMState] = None,
                    lengths: Optional[npt.ArrayLike] = None
                    ) -> tuple[DeviceArray, tuple[DeviceArray, DeviceArray]]: ...
        @overload
        def forward(self, x: ArrayInput, hx: Optional[_LSTMState] = None,
                    lengths: Optional[npt.ArrayLike] = None
                    ) -> tuple[Array, tuple[Array, Array]]: ...
        def forward(self, x: Any, hx: Any = None, lengths: Any = None) -> Any: ...

        # (the same as forward: __call__ calls it)
        @overload
        def __call__(self, x: DeviceArray, hx: Optional[_LSTMState] = None,
                    lengths: Optional[npt.ArrayLike] = None
                    ) -> tuple[DeviceArray, tuple[DeviceArray, DeviceArray]]: ...
        @overload
        def __call__(self, x: npt.ArrayLike, hx: Optional[_LSTMState] = None,
                    lengths: Optional[npt.ArrayLike] = None
                    ) -> tuple[HostArray, tuple[HostArray, HostArray]]: ...
        @overload
        def __call__(self, x: DeviceArrayLike, hx: Optional[_LSTMState] = None,
                    lengths: Optional[npt.ArrayLike] = None
                    ) -> tuple[DeviceArray, tuple[DeviceArray, DeviceArray]]: ...
        @overload
        def __call__(self, x: ArrayInput, hx: Optional[_LSTMState] = None,
                    lengths: Optional[npt.ArrayLike] = None
                    ) -> tuple[Array, tuple[Array, Array]]: ...
        def __call__(self, x: Any, hx: Any = None, lengths: Any = None) -> Any: ...

    @overload
    def backward(self, d_out: DeviceArray, d_h_n: Optional[ArrayInput] = None,
                 d_c_n: Optional[ArrayInput] = None
                 ) -> tuple[DeviceArray, tuple[DeviceArray, DeviceArray]]: ...
    @overload
    def backward(self, d_out: npt.ArrayLike, d_h_n: Optional[ArrayInput] = None,
                 d_c_n: Optional[ArrayInput] = None
                 ) -> tuple[HostArray, tuple[HostArray, HostArray]]: ...
    @overload
    def backward(self, d_out: Optional[ArrayInput], d_h_n: Optional[ArrayInput] = None,
                 d_c_n: Optional[ArrayInput] = None) -> tuple[Array, tuple[Array, Array]]: ...

    def backward(self, d_out: Optional[ArrayInput],
                 d_h_n: Optional[ArrayInput] = None,
                 d_c_n: Optional[ArrayInput] = None) -> tuple[Array, tuple[Array, Array]]:
        """BPTT through the last training forward -> (dx, (dh0, dc0)); grads accumulate.
        d_out None: zeros (only d_h_n / d_c_n flow back)."""
        dx, dh0, dc0 = self._backward(d_out, d_h_n, d_c_n)
        return dx, (dh0, dc0)


class GRU(_OneStateRecurrent):
    """GRU, gates (r, z, n), h_t = (1-z)*n + z*h_{t-1}.

    reset_after=False (default; the seeds', Cho et al.'s and ONNX's default form):
        n = tanh(W_in x + W_hn (r*h_{t-1}) + b_n)
    reset_after=True (PyTorch / cuDNN / Keras default form):
        n = tanh(W_in x + b_n + r*(W_hn h_{t-1} + b_hn)), with the extra parameter bias_hn.
    """
    _cell = "gru"
    reset_after: _attrs.Fixed[bool] = _attrs.Fixed()  # stored as _reset_after (see _Recurrent)

    def __init__(self, input_size: Int, hidden_size: Int, num_layers: Int = 1, *,
                 reset_after: bool = False, bias: bool = True, batch_first: bool = False,
                 bidirectional: bool = False, dropout: Real = 0.0, dtype: FloatDType = "float32",
                 device: Device = "cpu", seed: Seed = None) -> None:
        self._reset_after = flag("reset_after", reset_after)
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                         bidirectional=bidirectional, dropout=dropout, dtype=dtype,
                         device=device, seed=seed)

    def _extra_repr(self) -> list[str]:
        return ["reset_after=True"] if self.reset_after else []

    def _extra_config(self) -> dict[str, Any]:
        return {"reset_after": self.reset_after}
