"""Attribute descriptors of layers and models: read-only configuration and device."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, overload

if TYPE_CHECKING:
    from ._typing import Device as _DeviceName

_T = TypeVar("_T")


class Fixed(Generic[_T]):
    """A configuration attribute (input_size, hidden_size, ...), read-only: the native layer's
    storage is sized by it at construction, and the Python shape checks read it, so a changed
    value would make the two disagree (for the training-stack layers, save() would write a
    config that load() cannot match with the parameters). Stored in the instance dict as
    "_<name>"."""

    def __set_name__(self, owner, name):
        self.name, self.slot = name, "_" + name

    # Typed: ``input_size: Fixed[int] = Fixed()`` reads as an int on a layer, and assigning
    # it is a type error (as it is an AttributeError at run time).
    @overload
    def __get__(self, obj: None, objtype: Any = None) -> Fixed[_T]: ...
    @overload
    def __get__(self, obj: object, objtype: Any = None) -> _T: ...

    def __get__(self, obj: object, objtype: Any = None) -> Fixed[_T] | _T:
        if obj is None:
            return self
        try:
            return obj.__dict__[self.slot]
        except KeyError:
            raise AttributeError(f"{type(obj).__name__} has no {self.name} yet") from None

    def __set__(self, obj: object, value: NoReturn) -> NoReturn:
        cls = type(obj).__name__
        raise AttributeError(f"cannot set {cls}.{self.name}: a layer's configuration is fixed "
                             f"at construction; build a new layer instead, e.g. "
                             f"{cls}(**dict(layer.config(), {self.name}=...))")

    def __delete__(self, obj: object) -> NoReturn:
        self.__set__(obj, None)  # type: ignore[arg-type]



class Device:
    """The ``device`` attribute of a layer or model: "cpu" or "cuda", read-only. Assigning it
    would only relabel: the arrays would stay where they are and the next forward would hand
    them to the other backend. ``to(device)`` moves them (AttributeError naming it)."""

    @overload
    def __get__(self, obj: None, owner: Any = None) -> Device: ...
    @overload
    def __get__(self, obj: object, owner: Any = None) -> _DeviceName: ...

    def __get__(self, obj: object, owner: Any = None) -> Device | _DeviceName:
        return self if obj is None else obj.__dict__.get("_device", "cpu")

    @staticmethod
    def _refuse(obj: object, what: str, value: object) -> NoReturn:
        to = f".to({value!r})" if value in ("cpu", "cuda") else ".to('cuda') or .to('cpu')"
        raise AttributeError(f"cannot {what} {type(obj).__name__}.device: it says where the "
                             f"arrays are; move them with {to}")

    def __set__(self, obj: object, value: NoReturn) -> NoReturn:
        self._refuse(obj, "set", value)

    def __delete__(self, obj: object) -> NoReturn:
        self._refuse(obj, "delete", None)


def upgrade(cls, state):
    """A copy of `state` (an instance dict from a pickle) with the read-only attributes of cls
    (Fixed, Device) and its checked ones (a property with a setter, e.g. Dropout.p) in their
    "_<name>" slots: pickles from before they were read-only or checked kept them under their
    own names, where the class's descriptor hides them. (Sequential computes its device from
    its layers: an old plain `device` goes to the slot too, out of the way.)"""
    state = dict(state)
    for name in dir(cls):
        attr = getattr(cls, name, None)
        checked = isinstance(attr, property) and attr.fset is not None
        if name in state and "_" + name not in state and (
                name == "device" or checked or isinstance(attr, (Fixed, Device))):
            state["_" + name] = state.pop(name)
    return state
