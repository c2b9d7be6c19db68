"""Type aliases of the public API, for type checkers only.

Nothing in pyrnn imports this module at run time (every use is under ``TYPE_CHECKING`` or in
a ``from __future__ import annotations`` annotation), so it may import the CUDA stubs freely.
"""
from __future__ import annotations

import os
from typing import Any, Literal, Protocol, TypeAlias, Union

import numpy as np
import numpy.typing as npt

from ._cuda import DeviceArray


class SupportsCudaArrayInterface(Protocol):
    """Device memory through ``__cuda_array_interface__`` (CuPy, Numba, torch CUDA tensors)."""

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]: ...


class SupportsDLPackDevice(Protocol):
    """Memory exported through DLPack; pyrnn takes it as device memory when the DLPack
    device is CUDA (``__dlpack_device__()[0]`` 2 or 13), as host data otherwise."""

    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...


#: A CUDA device array as the layers and pyrnn.cuda.as_device_array take it.
DeviceArrayLike: TypeAlias = Union[DeviceArray, SupportsCudaArrayInterface, SupportsDLPackDevice]

#: Host data (anything numpy.asarray reads) or a device array. (DeviceArray defines
#: __array__, so it is an ArrayLike too; the protocols add CuPy / Numba style objects.)
ArrayInput: TypeAlias = Union[npt.ArrayLike, DeviceArrayLike]

#: An array whose kind depends on the device a layer is on at run time: ndarray on "cpu",
#: pyrnn.cuda.DeviceArray on "cuda" (parameters, gradients, Parameter.data / .grad).
Array: TypeAlias = Union[npt.NDArray[Any], DeviceArray]

#: A host result of a layer or model (float32 or float64: the layer's dtype).
HostArray: TypeAlias = npt.NDArray[Any]

#: An integer argument: the checks take any numbers.Integral except bool (NumPy ints too).
Int: TypeAlias = Union[int, np.integer[Any]]

#: A real-number argument: the checks take any numbers.Real except bool (float admits int).
Real: TypeAlias = Union[float, np.floating[Any], np.integer[Any]]

#: The seeds: None or an int >= 0.
Seed: TypeAlias = Union[Int, None]

#: dtype= of the layers: float32 (the default, also for None) or float64, as a name, a
#: NumPy scalar type or a dtype. (NumPy's other spellings, "f4" or Python's float, are taken
#: at run time too; they are left out here so that the two documented names complete.)
FloatDType: TypeAlias = Union[Literal["float32", "float64"], type[np.float32],
                              type[np.float64], "np.dtype[np.float32]", "np.dtype[np.float64]",
                              None]

#: device= of the layers and models.
Device: TypeAlias = Literal["cpu", "cuda"]

#: Dense's activation.
Activation: TypeAlias = Literal["relu", "tanh", "sigmoid", "linear", None]

#: A file path (pyrnn.save / load, ModelCheckpoint).
StrPath: TypeAlias = Union[str, "os.PathLike[str]"]
PathOrBytes: TypeAlias = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


class SupportsWriteBytes(Protocol):
    """A binary writer as pyrnn.save / layer.save take it: anything with write(bytes) (a file
    opened "wb", io.BytesIO, a gzip or zip member, a pipe or socket file); what write returns
    may be a count, None or anything else (save writes the rest after a short count)."""

    def write(self, data: bytes, /) -> object: ...
