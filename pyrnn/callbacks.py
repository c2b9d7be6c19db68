"""Callbacks for Sequential.fit (Keras-style hooks).

fit() calls, in order: set_model(model), set_params(params) (Keras's: {"epochs", "steps",
"batch_size", "verbose", "metrics"}, "metrics" being the keys every epoch's logs will hold,
e.g. ["loss", "val_loss"]), on_train_begin(logs), then per epoch
on_epoch_begin(epoch, logs), per batch on_train_batch_begin(batch, logs) /
on_train_batch_end(batch, logs) (Keras' names; by default they call on_batch_begin /
on_batch_end, so a callback may define either; logs: {"loss": batch loss, "size": batch
samples}), on_epoch_end(epoch, logs) (logs:
the epoch's metrics, e.g. {"loss", "accuracy", "val_loss", "val_accuracy"}), and finally
on_train_end(logs). Epochs and batches count from 0. A callback stops training by setting
``self.model.stop_training = True``: no batch runs after the current one (that epoch still
ends: its logs over the batches run, validation, on_epoch_end), as in Keras. So set in a batch
hook, training stops after that batch; in on_epoch_end, after that epoch; in on_epoch_begin or
on_train_begin, after the epoch's first batch (Keras checks the flag after each batch).
Validation runs on_test_begin, on_test_batch_begin / on_test_batch_end per batch and
on_test_end(logs without the val_ prefix) between the last batch and on_epoch_end; evaluate()
and predict() take callbacks= too (the on_test_* / on_predict_* hooks). A callback may change the
learning rate, but not the model's layers (fit raises RuntimeError: a layer put in would not
train); edit the model between fit() calls.
"""
from __future__ import annotations

import math
import numbers
import os
import re
import string
from typing import TYPE_CHECKING

from ._validate import flag, real_number

if TYPE_CHECKING:
    from typing import Any, Callable, Literal, Optional, TypedDict

    from typing_extensions import Unpack

    from ._typing import Int, Real, StrPath
    from .model import Sequential

    # The logs a hook receives (None when fit has none to give, or called by hand).
    Logs = Optional[dict[str, Any]]

    class _Hooks(TypedDict, total=False):
        """LambdaCallback's keywords (None: the hook is not set)."""
        on_train_begin: Optional[Callable[[Logs], object]]
        on_train_end: Optional[Callable[[Logs], object]]
        on_epoch_begin: Optional[Callable[[int, Logs], object]]
        on_epoch_end: Optional[Callable[[int, Logs], object]]
        on_batch_begin: Optional[Callable[[int, Logs], object]]
        on_batch_end: Optional[Callable[[int, Logs], object]]
        on_train_batch_begin: Optional[Callable[[int, Logs], object]]
        on_train_batch_end: Optional[Callable[[int, Logs], object]]
        on_test_begin: Optional[Callable[[Logs], object]]
        on_test_end: Optional[Callable[[Logs], object]]
        on_test_batch_begin: Optional[Callable[[int, Logs], object]]
        on_test_batch_end: Optional[Callable[[int, Logs], object]]
        on_predict_begin: Optional[Callable[[Logs], object]]
        on_predict_end: Optional[Callable[[Logs], object]]
        on_predict_batch_begin: Optional[Callable[[int, Logs], object]]
        on_predict_batch_end: Optional[Callable[[int, Logs], object]]


class Callback:
    """Base class; every hook does nothing."""

    def __init__(self) -> None:
        # The model fit() trains (None until fit calls set_model).
        self.model: Optional[Sequential] = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Sequential) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: Logs = None) -> None:
        pass

    def on_train_end(self, logs: Logs = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: Logs = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        pass

    def on_batch_begin(self, batch: int, logs: Logs = None) -> None:
        pass

    def on_batch_end(self, batch: int, logs: Logs = None) -> None:
        pass

    # Keras' names of the batch hooks (what fit calls), which call the short ones by default,
    # as Keras' do: a subclass may define either.
    def on_train_batch_begin(self, batch: int, logs: Logs = None) -> None:
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: Logs = None) -> None:
        self.on_batch_end(batch, logs)

    # Keras' evaluation hooks: fit's validation each epoch and evaluate(callbacks=) call them
    # (logs as the training ones': {"size"} before a batch, {"loss", "size"} after it, the
    # pass's {"loss", metrics} at the end, without the val_ prefix).
    def on_test_begin(self, logs: Logs = None) -> None:
        pass

    def on_test_end(self, logs: Logs = None) -> None:
        pass

    def on_test_batch_begin(self, batch: int, logs: Logs = None) -> None:
        pass

    def on_test_batch_end(self, batch: int, logs: Logs = None) -> None:
        pass

    # predict(callbacks=) calls these (after a batch, logs {"outputs": its host predictions}).
    def on_predict_begin(self, logs: Logs = None) -> None:
        pass

    def on_predict_end(self, logs: Logs = None) -> None:
        pass

    def on_predict_batch_begin(self, batch: int, logs: Logs = None) -> None:
        pass

    def on_predict_batch_end(self, batch: int, logs: Logs = None) -> None:
        pass


def _mode(mode, monitor):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


def _check_keys(who, what, keys, available):
    """ValueError at on_train_begin when fit's epoch logs (params["metrics"], when known) will
    lack `keys`: a clear message before the first epoch instead of a failure after it."""
    if available is None:
        return
    missing = [k for k in keys if k not in available]
    if missing:
        raise ValueError(f"{who}: {what} {', '.join(map(repr, missing))} will not be in the "
                         f"epoch logs (available: {', '.join(available)}); validation metrics "
                         "need fit(validation_data=...)")


def _path_fields(path, whole=None):
    """The log keys a str.format path refers to ("ckpt-{epoch:03d}-{val_loss:.3f}" ->
    ["epoch", "val_loss"]), those nested in format specs too; ValueError for a malformed
    pattern or a positional field. (whole: the path a nested spec comes from, for messages.)"""
    whole = path if whole is None else whole
    try:
        parsed = list(string.Formatter().parse(path))
    except ValueError as e:
        raise ValueError(f"ModelCheckpoint: path {whole!r} is not a valid format string: {e}") \
            from None
    fields = []
    for _, field, spec, _ in parsed:
        if field is None:
            continue
        key = re.match(r"[^.\[]*", field).group()
        if not key or key.isdigit():
            raise ValueError(f"ModelCheckpoint: path {whole!r} has a positional field "
                             f"{{{field}}}; name a log key, e.g. {{epoch}} or {{val_loss}}")
        fields.append(key)
        if spec and "{" in spec:  # fields nested in a format spec ("{loss:.{digits}f}")
            fields.extend(k for k in _path_fields(spec, whole) if k not in fields)
    return fields


def _monitored(logs, monitor, who):
    if monitor not in logs:
        raise ValueError(f"{who}: the monitored quantity {monitor!r} is not in the epoch logs "
                         f"(available: {', '.join(sorted(logs))}); validation metrics need "
                         "fit(validation_data=...)")
    return float(logs[monitor])


class _TrueUnlessGiven:
    """EarlyStopping's restore_best default: True, told apart from a True given."""

    def __repr__(self) -> str:
        return "True"

    def __reduce__(self) -> str:  # copies and pickles are this one object (checked by identity)
        return "_TRUE_UNLESS_GIVEN"


_TRUE_UNLESS_GIVEN: Any = _TrueUnlessGiven()


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than min_delta for `patience` epochs (as
    Keras: patience 0 and 1 both stop at the first epoch without improvement).

    restore_best=True (the default): at the end of training (early stop or not) the weights of the best
    epoch are put back, if a later epoch was worse. The best weights are kept as a copy of
    every parameter, taken whenever the monitored value improves. Keras' keyword
    restore_best_weights is the same option; note the default differs: True here, False in
    Keras (give restore_best=False for Keras' behaviour, the last epoch's weights).
    Attributes after fit: best, best_epoch, stopped_epoch (None if it never stopped).
    """

    def __init__(self, monitor: str = "val_loss", patience: Int = 0, min_delta: Real = 0.0,
                 mode: Literal["auto", "min", "max"] = "auto",
                 restore_best: bool = _TRUE_UNLESS_GIVEN, *,
                 restore_best_weights: Optional[bool] = None) -> None:
        super().__init__()
        # (a default of its own, so that any pair is refused: a True given beside
        # restore_best_weights=False was taken as not given)
        given = restore_best is not _TRUE_UNLESS_GIVEN
        if restore_best_weights is not None:
            if given:
                raise TypeError("EarlyStopping: give restore_best or restore_best_weights (the "
                                "same option, Keras' name), not both")
            restore_best = flag("restore_best_weights", restore_best_weights)
        elif not given:
            restore_best = True
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral):
            raise TypeError(f"patience must be an int >= 0, got {type(patience).__name__}")
        if patience < 0:
            raise ValueError(f"patience must be an int >= 0, got {patience!r}")
        self.monitor = str(monitor)
        self.patience = int(patience)
        self.min_delta = abs(real_number("min_delta", min_delta, low=None))
        self.mode = _mode(mode, self.monitor)
        self.restore_best = flag("restore_best", restore_best)

    def _better(self, value, best):
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta

    def on_train_begin(self, logs=None):
        _check_keys("EarlyStopping", "the monitored quantity", [self.monitor],
                    self.params.get("metrics"))
        self.best = None
        self.best_epoch = None
        self.stopped_epoch = None
        self.wait = 0
        self._best_weights = None
        self._last_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        value = _monitored(logs or {}, self.monitor, "EarlyStopping")
        self._last_epoch = epoch
        if self._better(value, self.best):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self._best_weights = [p.data.copy() for p in self.model.parameters()]
            return
        self.wait += 1
        # As Keras (and Lightning): `patience` epochs without improvement stop training (so
        # patience 0 and 1 both stop at the first one).
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if (self.restore_best and self._best_weights is not None
                and self.best_epoch != self._last_epoch):
            from ._arrays import copy_into
            for p, w in zip(self.model.parameters(), self._best_weights):
                copy_into(p.data, w)  # on the parameters' device (a copy there)
                p._changed()


class ModelCheckpoint(Callback):
    """Save the model (model.save) after each epoch, or only when `monitor` improved
    (save_best_only). `path` may hold str.format fields: {epoch} (1-based) and any log key,
    e.g. "ckpt-{epoch:03d}-{val_loss:.3f}.pyrnn". Each save is pyrnn.save's: atomic where a
    rename can replace the file (its docstring says where not).
    Attributes: best (kept across fit calls, as Keras's: a later fit saves only what beats
    it), last_saved (the path of the last file written)."""

    def __init__(self, path: StrPath, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: Literal["auto", "min", "max"] = "auto") -> None:
        super().__init__()
        if not isinstance(path, (str, os.PathLike)):  # None was saved as a file named "None"
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        self.path = os.fspath(path)
        if not isinstance(self.path, str):
            raise TypeError("path must be a str path (it may hold {epoch} fields), got bytes")
        self._fields = _path_fields(self.path)
        self.monitor = str(monitor)
        self.save_best_only = flag("save_best_only", save_best_only)
        self.mode = _mode(mode, self.monitor)
        self.best = None
        self.last_saved = None

    def on_train_begin(self, logs=None):
        available = self.params.get("metrics")
        _check_keys("ModelCheckpoint", "the path's field",
                    [k for k in self._fields if k != "epoch"], available)
        if self.save_best_only:
            _check_keys("ModelCheckpoint", "the monitored quantity", [self.monitor], available)
        # What the first save would refuse, refused before the first epoch rather than after
        # it: a model save() cannot write (a custom layer class), a path whose format specs
        # cannot take the epoch number and fit's float logs ("{epoch:03s}", "{loss[0]}").
        from .serialize import _check_saveable
        save = getattr(type(self.model), "save", None)
        own = (getattr(save, "__module__", None) or "").startswith("pyrnn.")
        if self.model is not None and own:  # (a model class with a save() of its own: its rules)
            _check_saveable(self.model)
        if available is not None:
            try:
                self.path.format(epoch=1, **{k: 0.0 for k in self._fields if k != "epoch"})
            except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
                raise ValueError(f"ModelCheckpoint: the path {self.path!r} cannot be formatted "
                                 f"with the epoch number and fit's float logs: {e}") from None
        # best is kept across fit calls, as Keras's: a later fit saves only what beats it.

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        missing = [k for k in self._fields if k != "epoch" and k not in logs]
        if missing:  # used outside fit, or fit's logs changed: still a clear message
            raise ValueError(f"ModelCheckpoint: the path {self.path!r} needs "
                             f"{', '.join(map(repr, missing))}, not in the epoch logs "
                             f"(available: {', '.join(sorted(logs)) or 'none'}); validation "
                             "metrics need fit(validation_data=...)")
        if self.save_best_only:
            value = _monitored(logs, self.monitor, "ModelCheckpoint")
            improved = math.isfinite(value) and (
                self.best is None or (value < self.best if self.mode == "min" else value > self.best))
            if not improved:
                return
        path = self.path.format(epoch=epoch + 1, **logs)
        folder = os.path.dirname(path)
        if folder:  # as Keras: a missing folder is created
            os.makedirs(folder, exist_ok=True)
        self.model.save(path)
        self.last_saved = path
        if self.save_best_only:  # once saved: a failed save leaves the best to beat as it was
            self.best = value


class History(Callback):
    """Collects the epoch logs into history (dict of lists); fit() returns its dict."""

    def on_train_begin(self, logs=None):
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


class LambdaCallback(Callback):
    """A callback from plain functions: LambdaCallback(on_epoch_end=lambda epoch, logs: ...)."""

    def __init__(self, **hooks: Unpack[_Hooks]) -> None:
        super().__init__()
        names = {"on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
                 "on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end",
                 "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
                 "on_predict_begin", "on_predict_end", "on_predict_batch_begin",
                 "on_predict_batch_end"}
        for short in ("on_batch_begin", "on_batch_end"):
            long = short.replace("on_", "on_train_", 1)
            if hooks.get(short) is not None and hooks.get(long) is not None:
                raise TypeError(f"{short} and {long} are one hook (fit calls {long}, which "
                                f"calls {short} by default): give one of them")
        for name, fn in hooks.items():
            if name not in names:
                raise TypeError(f"unknown hook {name!r} (hooks: {', '.join(sorted(names))})")
            if fn is None:  # as Keras: a hook given as None is not set
                continue
            if not callable(fn):
                raise TypeError(f"hook {name!r} must be callable, got {type(fn).__name__}")
            setattr(self, name, fn)


__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "History", "LambdaCallback"]
