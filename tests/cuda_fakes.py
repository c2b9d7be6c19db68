"""NumPy-backed stand-ins for pyrnn's native CUDA pieces, so the Python side of device="cuda"
(layers, Sequential, losses, optimizers, save/load) runs WITHOUT a GPU: FakeDev plays
pyrnn.cuda.DeviceArray over a host ndarray, FakeNative plays NativeRecurrentCUDA over the CPU
NativeRecurrent, and FakeKernels plays the device kernels (pyrnn.cuda.kernels()) with the CPU
kernels of pyrnn._train. Every fake asserts that tensors arrive as device arrays and indices /
lengths as host arrays, so a plumbing slip (a host array reaching a device kernel, a device
array left where the host is needed) fails loudly. With these, a "CUDA" model must reproduce a
CPU model BITWISE: any difference is a bug in the Python path. (The native CUDA numerics are
covered by tests/test_cuda_train.py on a GPU and by the C++ host emulation.)"""
import numpy as np

import pyrnn
import pyrnn.cuda
from pyrnn import _core, _train


class FakeDev:
    """pyrnn.cuda.DeviceArray over a C-contiguous ndarray (views stay views)."""

    def __init__(self, a, device=0):
        assert isinstance(a, np.ndarray) and a.flags.c_contiguous, type(a)
        assert a.dtype in (np.float32, np.float64, np.int64), a.dtype
        self.a = a
        self.device = device

    shape = property(lambda self: tuple(self.a.shape))
    dtype = property(lambda self: self.a.dtype)
    ndim = property(lambda self: self.a.ndim)
    size = property(lambda self: self.a.size)
    nbytes = property(lambda self: self.a.nbytes)
    readonly = False

    @property
    def ptr(self):
        return self.a.ctypes.data

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.a.shape, "typestr": self.a.dtype.str,
                "data": (self.a.ctypes.data or 1, False), "version": 3}

    def reshape(self, *shape):
        return FakeDev(self.a.reshape(*shape), self.device)

    def __reduce__(self):  # as a DeviceArray viewing a layer's memory: never pickled
        raise TypeError("a DeviceArray (device memory) cannot be pickled")

    def __copy__(self):  # as DeviceArray: copy / deepcopy make a device copy
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def permute01(self):
        return FakeDev(np.ascontiguousarray(self.a.swapaxes(0, 1)), self.device)

    def copy(self):
        return FakeDev(self.a.copy(), self.device)

    def numpy(self):
        return self.a.copy()

    def __array__(self, dtype=None, copy=None):
        return self.a.copy() if dtype is None else self.a.astype(dtype)

    def copy_from(self, host):
        self.a[...] = np.asarray(host).reshape(self.a.shape)

    def __repr__(self):
        return f"FakeDev({self.a.shape}, {self.a.dtype})"


def dev(x):
    """The ndarray behind a FakeDev (None passes); anything else is a plumbing error."""
    if x is None:
        return None
    assert isinstance(x, FakeDev), f"a device kernel got {type(x).__name__}, not a device array"
    return x.a


def host_ints(x):
    if x is None:
        return None
    assert isinstance(x, np.ndarray) and x.dtype == np.int64, \
        f"indices / lengths must reach the kernels as host int64, got {type(x).__name__}"
    return x


class FakeNative:
    """NativeRecurrentCUDA's interface over the CPU NativeRecurrent."""

    def __init__(self, *args, batch_first=False):
        self.n = _core.NativeRecurrent(*args, batch_first=batch_first)
        self.dtype = self.n.dtype

    def __getattr__(self, name):  # num_parameters, reset_parameters, zero_grad, has_cache, ...
        return getattr(self.n, name)

    def views(self, grads):
        return {k: FakeDev(v) for k, v in self.n.views(grads).items()}

    def forward(self, x, h0, c0, lengths, training, seed):
        for v in (x, h0, c0):
            assert v is None or v.dtype == self.dtype, f"{v.dtype} reached a {self.dtype} layer"
        y, hn, cn = self.n.forward(dev(x), dev(h0), dev(c0), host_ints(lengths), training, seed)
        return FakeDev(y), FakeDev(hn), None if cn is None else FakeDev(cn)

    def backward(self, dy, dhn, dcn):
        dx, dh0, dc0 = self.n.backward(dev(dy), dev(dhn), dev(dcn))
        return FakeDev(dx), FakeDev(dh0), None if dc0 is None else FakeDev(dc0)


class FakeKernels:
    """The device kernels of pyrnn._cuda (same names and arguments) over pyrnn._train."""

    def __init__(self):
        self.calls = {}

    def _count(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1

    # ---- layers ---------------------------------------------------------------------------
    def dense_forward(self, x, w, b, act):
        self._count("dense_forward")
        x, w = dev(x), dev(w)
        y = np.empty((x.shape[0], w.shape[0]), x.dtype)
        _train.dense_forward(y, x, w, dev(b), act)
        return FakeDev(y)

    def dense_backward(self, dw, db, dy, y, x, w, act, need_dx=True):
        self._count("dense_backward")
        dx = np.empty_like(dev(x)) if need_dx else None
        _train.dense_backward(dev(dw), dev(db), dx, dev(dy), dev(y), dev(x), dev(w), act)
        return FakeDev(dx) if need_dx else None

    def layernorm_forward(self, x, w, b, eps, keep=False):
        self._count("layernorm_forward")
        x = dev(x)
        y, mean, rstd = np.empty_like(x), np.empty(x.shape[0]), np.empty(x.shape[0])
        kept = np.empty_like(x) if keep else None
        _train.layernorm_forward(y, mean, rstd, x, dev(w), dev(b), eps, kept)
        return FakeDev(y), FakeDev(mean), FakeDev(rstd), None if kept is None else FakeDev(kept)

    def layernorm_backward(self, dw, db, dy, x, mean, rstd, w):
        self._count("layernorm_backward")
        dx = np.empty_like(dev(x))
        _train.layernorm_backward(dx, dev(dw), dev(db), dev(dy), dev(x), dev(mean), dev(rstd),
                                  dev(w))
        return FakeDev(dx)

    def embedding_forward(self, idx, table):
        self._count("embedding_forward")
        table = dev(table)
        y = np.empty((host_ints(idx).shape[0], table.shape[1]), table.dtype)
        _train.embedding_forward(y, idx, table)
        return FakeDev(y)

    def embedding_backward(self, dtable, dy, idx, padding_idx):
        self._count("embedding_backward")
        _train.embedding_backward(dev(dtable), dev(dy), host_ints(idx), padding_idx)

    def dropout_forward(self, x, seed, p):
        self._count("dropout_forward")
        x = dev(x)
        y = np.empty_like(x)
        _train.dropout_forward(y.reshape(-1), x.reshape(-1), seed, p)
        return FakeDev(y)

    def dropout_backward(self, dy, seed, p):
        self._count("dropout_backward")
        dy = dev(dy)
        dx = np.empty_like(dy)
        _train.dropout_backward(dx.reshape(-1), dy.reshape(-1), seed, p)
        return FakeDev(dx)

    def last_step_forward(self, x, lengths, D):
        self._count("last_step_forward")
        x = dev(x)
        y = np.empty((x.shape[0], x.shape[2]), x.dtype)
        _train.last_step_forward(y, x, host_ints(lengths), D)
        return FakeDev(y)

    def last_step_backward(self, dy, lengths, T, D):
        self._count("last_step_backward")
        dy = dev(dy)
        dx = np.empty((dy.shape[0], T, dy.shape[1]), dy.dtype)
        _train.last_step_backward(dx, dy, host_ints(lengths), D)
        return FakeDev(dx)

    # ---- optimizers -----------------------------------------------------------------------
    @staticmethod
    def _keep(keep):
        return None if keep is None else tuple(dev(k) for k in keep)

    def sgd_step(self, param, grad, buf, *args, keep=None):
        self._count("sgd_step")
        return _train.sgd_step(dev(param), dev(grad), dev(buf), *args, keep=self._keep(keep))

    def adam_step(self, param, grad, m, v, vmax, *args, keep=None):
        self._count("adam_step")
        return _train.adam_step(dev(param), dev(grad), dev(m), dev(v), dev(vmax), *args,
                                keep=self._keep(keep))

    def rmsprop_step(self, param, grad, s, a, b, *args, keep=None):
        self._count("rmsprop_step")
        return _train.rmsprop_step(dev(param), dev(grad), dev(s), dev(a), dev(b), *args,
                                   keep=self._keep(keep))

    def sum_squares(self, x):
        self._count("sum_squares")
        return _train.sum_squares(dev(x).reshape(-1))

    def max_abs(self, x):
        self._count("max_abs")
        return _train.max_abs(dev(x).reshape(-1))

    def scale_inplace(self, x, scale):
        self._count("scale_inplace")
        _train.scale_inplace(dev(x).reshape(-1), scale)

    def zero_(self, x):
        self._count("zero_")
        dev(x)[...] = 0

    def copy_(self, dst, src):
        self._count("copy_")
        dev(dst)[...] = dev(src)


def install(monkeypatch):
    """Route pyrnn.cuda's native entry points to the fakes; returns the FakeKernels."""
    kernels = FakeKernels()

    def as_device_array(obj):
        if isinstance(obj, FakeDev):
            return obj
        raise TypeError(f"{type(obj).__name__} is not a CUDA device array")

    def to_device(a, dtype=None, device=0):
        return FakeDev(np.array(a, dtype=dtype, order="C"), device)

    monkeypatch.setattr(pyrnn.cuda, "unavailable_reason", lambda: None)
    # setitem on the module dict: setattr would first read the old value through the
    # module's __getattr__, which raises RuntimeError in a build without the CUDA backend.
    monkeypatch.setitem(vars(pyrnn.cuda), "NativeRecurrentCUDA", FakeNative)
    monkeypatch.setattr(pyrnn.cuda, "as_device_array", as_device_array)
    monkeypatch.setattr(pyrnn.cuda, "to_device", to_device)
    monkeypatch.setattr(pyrnn.cuda, "kernels", lambda: kernels)
    return kernels
