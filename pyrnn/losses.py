"""Losses: ``forward(pred, target, mask=None) -> float`` beside ``backward() -> dpred``.

``mask`` (optional): a bool array shaped like the leading axes of the prediction (the (N, T)
of per-step outputs (N, T, ...)); elements where it is False count nowhere: not in the loss,
its mean, its gradient (0 there) or the metrics. fit / evaluate pass it for per-step outputs
when lengths are given (the steps past each sequence's end), as Keras' masking does.

Values are computed in float64 whatever the prediction dtype (so a float32 model's loss is
not rounded twice); ``backward`` returns d loss / d pred in the prediction's dtype. Every
loss is numerically stable for logits of any size (log-sum-exp, softplus on -|x|).

``reduction``: "mean" (default; the mean over the elements that count, as PyTorch) or "sum".
After a forward, ``count`` is what the mean divided by: the number of elements that count, or
for CrossEntropyLoss(weight=) with class targets the sum of their classes' weights, a float
(fit() uses it to weight batch losses, so an epoch's loss is the mean over all its elements, as
one batch of them all would give), and ``metric_counts()`` gives {"accuracy": (correct, total)}
for the classification losses.

Device predictions (a CUDA model's output, any device array): the loss is computed on the HOST
from a copy of the prediction (and of a device target), by exactly the code above, and
``backward`` returns d pred as a DeviceArray on the device. A prediction is one small tensor
per batch (batch x outputs, or x steps x classes) and the loss value must reach the host anyway
(fit checks it every batch), so the round trip costs two small copies and keeps one
implementation: CPU and CUDA training see bitwise the same loss and gradient for the same
predictions.
"""
from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

import numpy as np

from . import _arrays

if TYPE_CHECKING:
    import numpy.typing as npt

    from ._typing import Array, ArrayInput, Int

    Reduction = Literal["mean", "sum"]

from ._validate import beyond_range, host_asarray, host_only, real_array, shape_str

_REDUCTIONS = ("mean", "sum")


def _pred_array(name: str, value: Any) -> npt.NDArray[Any]:
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a real numeric array, got {type(value).__name__}")
    host_only(name, value)
    arr = host_asarray(name, value)
    if arr.dtype.kind not in "biuf":  # bool labels are 0 / 1 (Keras takes them for BCE)
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    return arr


def _host_target(target: Any) -> Any:
    """A device target (a DeviceArray, CuPy, a torch CUDA tensor) copied to the host, where
    the loss is computed, as the prediction is; anything else as it is."""
    if not _arrays.on_device(target):
        return target
    from . import cuda
    return cuda._usable_view("target", target).numpy()


def _expand_mask(mask: Any, shape: tuple[int, ...],
                 loss_name: str) -> Optional[npt.NDArray[np.bool_]]:
    """`mask` (bool, shaped like the leading axes of the prediction, e.g. (N, T) of (N, T, F):
    the steps that count) broadcast to `shape`; None stays None."""
    if mask is None:
        return None
    m = host_asarray(f"{loss_name}: mask", mask, "a bool array")
    if m.dtype != np.bool_:
        raise TypeError(f"{loss_name}: mask must be a bool array, got dtype {m.dtype}")
    if m.ndim > len(shape) or m.shape != tuple(shape[:m.ndim]):
        raise ValueError(f"{loss_name}: mask shape {shape_str(m.shape)} must be the leading "
                         f"axes of the prediction's {shape_str(shape)}")
    return np.broadcast_to(m.reshape(m.shape + (1,) * (len(shape) - m.ndim)), shape)


def _target_in_range(target: npt.NDArray[Any], pred: npt.NDArray[Any], loss_name: str,
                     mask: Optional[npt.NDArray[np.bool_]] = None) -> npt.NDArray[Any]:
    # The gradient takes the prediction's dtype: a target float32 cannot hold made it Inf.
    # Masked elements count for nothing, so whatever padding they hold is not checked.
    big = beyond_range(target if mask is None else target[mask], pred.dtype)
    if big is not None:
        raise ValueError(f"{loss_name}: target has values beyond the {pred.dtype} range of the "
                         f"prediction (the largest is {big:.3g}); scale the data")
    return target


def _same_shape(pred: npt.NDArray[Any], target: npt.NDArray[Any],
                loss_name: str) -> npt.NDArray[Any]:
    """target shaped as pred; a target missing only pred's trailing axis of size 1 (the
    (N,) targets of a (N, 1) regression output) is reshaped instead of silently broadcast."""
    if target.shape == pred.shape:
        return target
    if pred.ndim >= 1 and pred.shape[-1] == 1 and target.shape == pred.shape[:-1]:
        return target.reshape(pred.shape)
    raise ValueError(f"{loss_name}: target shape {shape_str(target.shape)} does not match the "
                     f"prediction shape {shape_str(pred.shape)}")


class Loss:
    """Base class: subclasses set self._dpred (pred-shaped, computed in float64; the built-in
    losses keep it rounded to the prediction's dtype, as backward returns it) in forward. A
    forward that raises changes nothing: what backward returns (values, dtype, device) is
    committed at its end, by _keep_dpred."""

    # Class defaults of what __init__ sets: a custom loss whose __init__ does not call
    # super().__init__() (a common slip) still works, with reduction "mean".
    _reduction: Reduction = "mean"
    _dpred: Any = None
    _dtype: Any = None
    _on_device = False
    _device = 0
    _place = (False, 0)
    count = 0
    _numerator: Optional[float] = None

    def __init__(self, reduction: Reduction = "mean") -> None:
        self.reduction = reduction
        self._dpred = None
        self._dtype = None
        self._on_device = False
        self._device = 0
        self._place = (False, 0)  # (on device, device) of the forward in progress
        self.count = 0
        self._numerator: Optional[float] = None

    @property
    def reduction(self) -> Reduction:
        """'mean' or 'sum'; checked whenever set (fit / evaluate weigh batches by it)."""
        return self._reduction

    @reduction.setter
    def reduction(self, value: Reduction) -> None:
        if not isinstance(value, str) or value not in _REDUCTIONS:
            raise ValueError(f"reduction must be 'mean' or 'sum', got {value!r}")
        self._reduction = value

    def __setstate__(self, state):
        # Pickles from before reduction was checked when set kept it as a plain attribute
        # (a subclass may still: a class attribute of its own replaces the property).
        if "reduction" in state and isinstance(getattr(type(self), "reduction", None), property):
            state["_reduction"] = state.pop("reduction")
        self.__dict__.update(state)

    def __getstate__(self):
        # The gradient of the last batch is not copied (a fitted model's pickle would carry
        # it, prediction-sized): a copy needs its own forward before backward(), as a layer.
        state = dict(self.__dict__)
        state["_dpred"] = None
        return state

    if TYPE_CHECKING:  # each loss defines it (a custom Loss subclass too)
        def forward(self, pred: ArrayInput, target: ArrayInput,
                    mask: Optional[npt.ArrayLike] = None) -> float: ...

    def __call__(self, pred: ArrayInput, target: ArrayInput,
                 mask: Optional[npt.ArrayLike] = None) -> float:
        return self.forward(pred, target) if mask is None else self.forward(pred, target, mask)

    def _keep_dpred(self, d, dtype):
        """Keeps d loss / d pred (float64) in the prediction's dtype until backward: the same
        values backward returns (one rounding either way), at half the memory for float32.
        With it, the forward's dtype and device: the end of a forward that succeeded."""
        dpred = np.asarray(d, dtype=dtype)
        self._dpred, self._dtype = dpred, dtype
        self._on_device, self._device = self._place

    def _reduce(self, total, count):
        """(loss, scale of the per-element gradient). count: what the mean divides by (the
        elements that count; CrossEntropyLoss(weight=): their classes' weights summed)."""
        self.count = count if isinstance(count, float) else int(count)
        # The sum the mean divides (fit / evaluate add these up: with class weights summing to 0
        # a batch's mean is 0, but its label-smoothing term still counts in the epoch's).
        self._numerator = float(total)
        if self.reduction == "sum":
            return float(total), 1.0
        if count == 0:
            # Nothing counts (every target ignored): PyTorch gives nan; a loss of 0 with zero
            # gradient lets a batch of pure padding through fit() without a NaN. Its optimizer
            # step still runs (momentum and weight decay move the weights), as in Keras.
            return 0.0, 0.0
        return float(total) / count, 1.0 / count

    def _host_pred(self, pred: Any) -> Any:
        """The prediction on the host (a device array is copied back, and backward will return
        d pred on the device, once the forward has succeeded)."""
        self._place = (False, 0)
        if _arrays.on_device(pred):
            from . import cuda
            arr = cuda._usable_view("pred", pred)
            self._place = (True, arr.device)  # d pred goes back to pred's GPU, whichever it is
            return arr.numpy()
        return pred

    def backward(self) -> Array:
        """d loss / d pred of the last forward, in the prediction's dtype, on its device."""
        if self._dpred is None:
            raise RuntimeError(f"{type(self).__name__}.backward() needs a preceding forward()")
        # A copy the caller may write into; np.array, not .astype: a 0-d prediction's
        # arithmetic left a NumPy scalar, which .astype kept a scalar (not writable, no array).
        d = np.array(self._dpred, dtype=self._dtype)
        return _arrays.to_device(d, device=self._device) if self._on_device else d

    def metric_counts(self) -> dict[str, tuple[int, int]]:
        return {}

    def config(self) -> dict[str, Any]:
        return {"reduction": self.reduction}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class MSELoss(Loss):
    """mean((pred - target)^2) over every element (torch.nn.MSELoss)."""

    def forward(self, pred: ArrayInput, target: ArrayInput,
                mask: Optional[npt.ArrayLike] = None) -> float:
        pred = _pred_array("pred", self._host_pred(pred))
        target = _pred_array("target", _host_target(target))
        target = _same_shape(pred, target, "MSELoss")
        m = _expand_mask(mask, pred.shape, "MSELoss")
        target = _target_in_range(target, pred, "MSELoss", m)
        dtype = pred.dtype
        diff = pred.astype(np.float64)                   # pred-shaped; in place below, so
        diff -= target                                   # one float64 array at a time
        if m is not None:  # masked elements: no loss, no gradient, not counted
            diff = np.where(m, diff, 0.0)
        n = diff.size if m is None else int(np.count_nonzero(m))
        loss, scale = self._reduce(np.dot(diff.ravel(), diff.ravel()), n)
        diff *= 2.0 * scale
        self._keep_dpred(diff, dtype)
        return loss


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy over the LAST axis (classes): logits (N, K) or per step
    (N, T, K) (any (..., K)) with integer targets (N,) / (N, T) (the logits' shape without
    K). Targets equal to ignore_index are left out of the loss, its mean and its gradient.
    Targets shaped exactly like the logits are class probabilities (soft labels).

    Note the class axis: PyTorch's per-step form is (N, K, T); here it is last, which is
    what a Dense layer on a samples-first sequence produces.

    As torch.nn.CrossEntropyLoss (keyword-only here: the positional order is ignore_index,
    reduction):

    - ``weight`` (K,): a weight per class, finite, >= 0 and not all 0 (checked whenever set;
      the loss keeps a read-only copy). With class targets each element's
      loss is scaled by its target's weight, and "mean" divides by the sum of those weights
      (not by their number); with probabilities, -sum_k weight_k t_k log p_k, and "mean"
      divides by the number of elements.
    - ``label_smoothing`` in [0, 1]: class targets become (1 - s) one-hot + s / K (with weight,
      the smoothing term is -sum_k weight_k log p_k, divided as above); probabilities become
      (1 - s) t + s / K.

    A batch whose counted weights sum to 0 (every target ignored or masked, or of classes of
    weight 0) gives loss 0 and a zero gradient, where PyTorch gives nan; fit / evaluate still
    count its label-smoothing term in the epoch's mean (the sum the mean divides, kept by
    every built-in loss, adds up over the batches), which is then the whole dataset's.
    """

    ignore_index: int
    _weight: Optional[npt.NDArray[np.float64]]
    _label_smoothing: float
    _correct: int
    _total: int

    def __init__(self, ignore_index: Int = -100, reduction: Reduction = "mean", *,
                 weight: Optional[npt.ArrayLike] = None, label_smoothing: float = 0.0) -> None:
        super().__init__(reduction)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
        self.ignore_index = int(ignore_index)
        self.weight = weight
        self.label_smoothing = label_smoothing
        self._correct = self._total = 0

    def __setstate__(self, state):
        # Pickles from before weight= and label_smoothing= existed load as their defaults.
        state.setdefault("_weight", None)
        state.setdefault("_label_smoothing", 0.0)
        if state["_weight"] is not None:
            state["_weight"].setflags(write=False)  # (unpickled arrays come back writable)
        super().__setstate__(state)

    @property
    def weight(self) -> Optional[npt.NDArray[np.float64]]:
        """The per-class weights (K,), read-only, or None; checked whenever set."""
        return self._weight

    @weight.setter
    def weight(self, value: Optional[npt.ArrayLike]) -> None:
        if value is not None:
            # A copy (the caller's array may change; the loss must not), read-only: a write
            # into it would skip these checks.
            w = real_array("weight", value, np.float64).copy()
            if w.ndim != 1 or w.size < 1:
                raise ValueError(f"weight must be (K,), one value per class, got "
                                 f"{shape_str(w.shape)}")
            if not np.isfinite(w).all() or (w < 0).any():
                raise ValueError(f"weight must be finite and >= 0, got {w.tolist()!r}")
            if not (w > 0).any():
                # Every batch would give loss 0 and no gradient (PyTorch: nan), silently.
                raise ValueError(f"weight must have a positive value, got {w.tolist()!r}")
            w.setflags(write=False)
            value = w
        self._weight = value

    @property
    def label_smoothing(self) -> float:
        """In [0, 1]: class targets become (1 - s) one-hot + s / K; checked whenever set."""
        return self._label_smoothing

    @label_smoothing.setter
    def label_smoothing(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"label_smoothing must be a number, got {type(value).__name__}")
        try:
            v = float(value)
        except OverflowError:  # an int beyond double's range
            v = float("inf")
        if not 0.0 <= v <= 1.0:  # NaN fails too
            raise ValueError(f"label_smoothing must be in [0, 1], got {value!r}")
        self._label_smoothing = v

    def config(self) -> dict[str, Any]:
        return {"ignore_index": self.ignore_index, "reduction": self.reduction,
                "weight": None if self.weight is None else self.weight.tolist(),
                "label_smoothing": self.label_smoothing}

    def _class_weight(self, K: int) -> Optional[npt.NDArray[np.float64]]:
        """weight for logits with K classes; another length is a ValueError (PyTorch's too)."""
        if self.weight is not None and self.weight.size != K:
            raise ValueError(f"CrossEntropyLoss: weight has {self.weight.size} values, but the "
                             f"logits have K = {K} classes on their last axis")
        return self.weight

    def forward(self, logits: ArrayInput, target: ArrayInput,
                mask: Optional[npt.ArrayLike] = None) -> float:
        logits = _pred_array("logits", self._host_pred(logits))
        if logits.ndim < 1 or logits.shape[-1] < 1:
            raise ValueError(f"CrossEntropyLoss: logits must be (..., K) with K >= 1 classes, "
                             f"got {shape_str(logits.shape)}")
        if isinstance(target, (str, bytes)):
            raise TypeError(f"target must be an array of class indices, got {type(target).__name__}")
        target = host_asarray("target", _host_target(target), "an array of class indices")
        dtype = logits.dtype
        K = logits.shape[-1]
        m = _expand_mask(mask, logits.shape[:-1], "CrossEntropyLoss")
        counted = None if m is None else m.reshape(-1)               # [M] rows that count
        # In place where the values allow (the same operations, so the same bits): two [M, K]
        # float64 arrays at a time instead of four.
        logp = logits.reshape(-1, K).astype(np.float64)               # [M, K]
        with np.errstate(over="ignore"):  # (1e308 - -1e308 is -Inf: torch's value, silently)
            logp -= logp.max(axis=1, keepdims=True)
        lse = np.log(np.exp(logp).sum(axis=1, keepdims=True))         # [M, 1]
        logp -= lse                                                   # log-softmax
        prob = np.exp(logp)                                           # [M, K]
        pred_class = logits.reshape(-1, K).argmax(axis=1)             # [M]

        w = self._class_weight(K)                                     # [K] or None
        s = self.label_smoothing
        if target.shape == logits.shape and target.dtype.kind == "f":
            _target_in_range(target, logits, "CrossEntropyLoss",
                             None if m is None else np.broadcast_to(m[..., None], logits.shape))
            t = target.reshape(-1, K).astype(np.float64)             # [M, K] probabilities
            rows = np.arange(t.shape[0]) if counted is None else np.nonzero(counted)[0]
            hit = pred_class[rows] == t[rows].argmax(axis=1)          # before smoothing
            if s:
                t = t * (1.0 - s) + s / K
            if counted is not None:
                t = np.where(counted[:, None], t, 0.0)  # a masked row adds nothing,
                logp[~counted] = 0.0  # also where its logits are -Inf / NaN (0 * -Inf is NaN)
                prob[~counted] = 0.0
            wt = t if w is None else t * w                            # [M, K]
            # d/dz_j of -sum_k wt_k log p_k = p_j sum_k wt_k - wt_j
            loss, scale = self._reduce(-(wt * logp).sum(), rows.size)
            self._keep_dpred(((prob * wt.sum(axis=1, keepdims=True) - wt) * scale)
                             .reshape(logits.shape), dtype)
            self._correct = int(hit.sum())
            self._total = int(rows.size)
            return loss

        if target.shape == logits.shape:
            raise TypeError(f"CrossEntropyLoss: targets shaped like the logits "
                            f"{shape_str(logits.shape)} are class probabilities and must be "
                            f"floating point, got dtype {target.dtype} (class indices have "
                            f"shape {shape_str(logits.shape[:-1])}: e.g. target.argmax(-1))")
        if K != 1 and target.shape == logits.shape[:-1] + (1,):
            target = target.reshape(logits.shape[:-1])  # Keras' sparse labels (N, 1)
        if target.shape != logits.shape[:-1]:
            hint = ""
            if logits.ndim >= 3 and target.shape == logits.shape[:1] + logits.shape[2:]:
                hint = (f"; these logits look like PyTorch's per-step (N, K, T) layout: here "
                        f"the classes are the last axis, (N, T, K) (e.g. "
                        f"logits.transpose(0, 2, 1))")
            raise ValueError(f"CrossEntropyLoss: targets must have shape "
                             f"{shape_str(logits.shape[:-1])} (the logits' shape without the "
                             f"class axis) or {shape_str(logits.shape)} (probabilities), got "
                             f"{shape_str(target.shape)}{hint}")
        if target.dtype.kind == "f":
            # Float class labels (e.g. read from a float array) are fine if integral; masked
            # ones count nowhere, whatever they hold (NaN, np.empty's leftovers)
            seen = target if counted is None else target.reshape(-1)[counted]
            if not np.all(np.isfinite(seen)) or np.any(seen != np.round(seen)):
                raise TypeError("CrossEntropyLoss: class targets must be integers")
        elif target.dtype.kind not in "iu":
            raise TypeError(f"CrossEntropyLoss: targets must be integer class indices, "
                            f"got dtype {target.dtype}")
        # Checked in the caller's dtype before any cast: a cast to int64 wraps huge values
        # (uint64 2**64 - 100 would become -100, the ignore_index, and be dropped).
        flat = target.reshape(-1)                                     # [M], caller's dtype
        valid = self._not_ignored(flat)                               # [M]
        if counted is not None:
            valid = valid & counted  # masked steps are ignored, whatever their target
        bad = valid & ((flat < 0) | (flat >= K))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"CrossEntropyLoss: target {flat[i].item()!r} is outside [0, {K}) "
                             f"(ignore_index={self.ignore_index})")
        t = np.where(valid, flat, 0).astype(np.int64)                 # [M], each in [0, K)
        rows = np.nonzero(valid)[0]
        tv = t[rows]
        if w is None and not s:
            loss, scale = self._reduce(-logp[rows, tv].sum(), rows.size)
            d = prob                                                  # [M, K], reused
            d[rows, tv] -= 1.0
        else:
            # Element r's loss: (1 - s) w_c (-log p_c) + s / K (-sum_k w_k log p_k), c its
            # target (w = 1 without weight); "mean" divides by sum_r w_c. Its gradient:
            # (1 - s) w_c (p - onehot_c) + s / K (p sum_k w_k - w).
            wc = np.ones(rows.size) if w is None else w[tv]          # [R]
            total = (1.0 - s) * (wc * -logp[rows, tv]).sum()
            if s:
                smooth = -logp[rows].sum() if w is None else -(logp[rows] @ w).sum()
                total += s / K * smooth
            loss, scale = self._reduce(total, rows.size if w is None else float(wc.sum()))
            d = prob                                                  # [M, K], reused
            if s:
                wsum = float(K) if w is None else float(w.sum())
                d *= (1.0 - s) * (np.ones(d.shape[0]) if w is None else w[t])[:, None] \
                    + s / K * wsum
                d -= s / K * (1.0 if w is None else w)
            elif w is not None:
                d *= w[t][:, None]
            d[rows, tv] -= (1.0 - s) * wc
        d[~valid] = 0.0
        d *= scale
        self._keep_dpred(d.reshape(logits.shape), dtype)
        self._correct = int((pred_class[rows] == tv).sum())
        self._total = int(rows.size)
        return loss

    def _not_ignored(self, flat):
        """flat != ignore_index, compared in flat's dtype (an ignore_index that dtype cannot
        hold matches nothing)."""
        if flat.dtype.kind in "iu":
            info = np.iinfo(flat.dtype)
            if not info.min <= self.ignore_index <= info.max:
                return np.ones(flat.shape, bool)
            return flat != flat.dtype.type(self.ignore_index)
        return flat != float(self.ignore_index)

    def metric_counts(self) -> dict[str, tuple[int, int]]:
        return {"accuracy": (self._correct, self._total)}


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits (torch.nn.BCEWithLogitsLoss), targets in [0, 1] shaped
    like the logits: (1 - y) x + w (log(1 + e^-|x|) + max(-x, 0)), w = 1 + (pos_weight - 1) y.
    pos_weight (optional): a scalar, one value, or one per output (K = the logits' last axis),
    applied along the last axis; another length is a ValueError at forward (PyTorch refuses
    it too), never a broadcast that changes the loss's shape."""

    _pos_weight: Optional[npt.NDArray[np.float64]]
    _correct: int
    _total: int

    def __init__(self, pos_weight: Optional[npt.ArrayLike] = None,
                 reduction: Reduction = "mean") -> None:
        super().__init__(reduction)
        self.pos_weight = pos_weight  # type: ignore[assignment]  # (the setter takes ArrayLike)
        self._correct = self._total = 0

    def __setstate__(self, state):
        # Pickles from before pos_weight was checked when set kept it as a plain attribute.
        if "pos_weight" in state and isinstance(getattr(type(self), "pos_weight", None),
                                                property):
            state["_pos_weight"] = state.pop("pos_weight")
        if state.get("_pos_weight") is not None:
            state["_pos_weight"].setflags(write=False)  # (unpickled arrays come back writable)
        super().__setstate__(state)

    @property
    def pos_weight(self) -> Optional[npt.NDArray[np.float64]]:
        """The positive-class weight (a 0-d or (C,) array, read-only), or None; checked
        whenever set."""
        return self._pos_weight

    @pos_weight.setter
    def pos_weight(self, value: Optional[npt.ArrayLike]) -> None:
        if value is not None:
            kind = host_asarray("pos_weight", value).dtype.kind
            if kind not in "iuf":  # "3" was taken as 3.0, "a" failed in NumPy's words
                raise TypeError(f"pos_weight must be a number or numbers, got "
                                f"{type(value).__name__} of dtype {np.asarray(value).dtype}")
            # A copy (the caller's array may change; the loss must not), read-only: a write
            # into it would skip these checks, as CrossEntropyLoss's weight.
            pw = np.array(value, dtype=np.float64)
            if pw.ndim > 1:
                raise ValueError(f"pos_weight must be a scalar or (C,), got "
                                 f"{shape_str(pw.shape)}")
            if not np.isfinite(pw).all():
                # Every loss and gradient would be NaN (inf: NaN at y = 0), found only in training.
                raise ValueError(f"pos_weight must be finite, got {pw.tolist()!r}")
            pw.setflags(write=False)
            value = pw
        self._pos_weight = value

    def config(self) -> dict[str, Any]:
        pw = None if self.pos_weight is None else self.pos_weight.tolist()
        return {"pos_weight": pw, "reduction": self.reduction}

    def forward(self, logits: ArrayInput, target: ArrayInput,
                mask: Optional[npt.ArrayLike] = None) -> float:
        logits = _pred_array("logits", self._host_pred(logits))
        target = _pred_array("target", _host_target(target))
        target = _same_shape(logits, target, "BCEWithLogitsLoss")
        m = _expand_mask(mask, logits.shape, "BCEWithLogitsLoss")
        target = _target_in_range(target, logits, "BCEWithLogitsLoss", m)
        dtype = logits.dtype
        x = logits.astype(np.float64)
        y = target.astype(np.float64)
        # softplus(-x) = log(1 + e^-x), stably: log1p(e^-|x|) + max(-x, 0).
        sp = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0.0)
        sig = np.exp(-sp)                        # sigmoid(x) = e^{-softplus(-x)}
        pw = 1.0 if self.pos_weight is None else self._pos_weight_for(x.shape)
        w = 1.0 + (pw - 1.0) * y
        per = (1.0 - y) * x + w * sp
        n = per.size if m is None else int(np.count_nonzero(m))
        if m is not None:  # masked elements: no loss, no gradient, not counted
            per = np.where(m, per, 0.0)
        loss, scale = self._reduce(per.sum(), n)
        # d/dx = (1 - y) - w sigmoid(-x) = w sigmoid(x) - pos_weight y (sigmoid(x) - y at pw=1)
        d = (w * sig - pw * y) * scale
        self._keep_dpred(d if m is None else np.where(m, d, 0.0), dtype)
        hit = (x > 0) == (y >= 0.5)
        self._correct = int(hit.sum() if m is None else (hit & m).sum())
        self._total = n
        return loss

    def _pos_weight_for(self, shape):
        """pos_weight as a float or a (K,) array for logits of `shape`: any other length
        would broadcast the per-element loss to a new shape."""
        pw = self.pos_weight
        if pw.size == 1:
            return float(pw.reshape(()))
        K = shape[-1] if shape else 1
        if pw.size != K:
            raise ValueError(f"BCEWithLogitsLoss: pos_weight has {pw.size} values, but the "
                             f"logits {shape_str(shape)} have {K} on their last axis; give a "
                             f"scalar, one value or {K} (one per output)")
        return pw

    def metric_counts(self) -> dict[str, tuple[int, int]]:
        return {"accuracy": (self._correct, self._total)}


_ALIASES = {"mse": MSELoss, "mean_squared_error": MSELoss,
            "cross_entropy": CrossEntropyLoss, "crossentropy": CrossEntropyLoss,
            "bce": BCEWithLogitsLoss, "bce_with_logits": BCEWithLogitsLoss}


def get(loss: Union[Loss, type[Loss], str]) -> Loss:
    """A Loss instance from an instance or a name ('mse', 'cross_entropy', 'bce')."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss.lower() in _ALIASES:
        return _ALIASES[loss.lower()]()
    if isinstance(loss, type) and issubclass(loss, Loss):
        return loss()
    raise TypeError(f"loss must be a pyrnn.losses.Loss or one of {sorted(_ALIASES)}, "
                    f"got {loss!r} (pyrnn's classification losses take LOGITS, as Keras' "
                    f"from_logits=True: 'bce' is binary_crossentropy, 'cross_entropy' "
                    f"sparse_categorical_crossentropy; end the model without a sigmoid)")
