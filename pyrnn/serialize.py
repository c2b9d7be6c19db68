"""pyrnn.save / pyrnn.load: a model (Sequential) or a single layer in ONE binary file.

Layout (all integers little-endian):

    offset  size  field
    0       8     magic b"\\x89PYRNN\\r\\n" (the \\x89 and \\r\\n catch text-mode damage)
    8       4     format version (u32) = 1
    12      4     flags (u32) = 0
    16      8     header length H (u64)
    24      8     payload length P (u64)
    32      4     CRC32 of the header
    36      4     CRC32 of the payload
    40      H     header: UTF-8 JSON {"format": "pyrnn", "format_version": 1,
                  "pyrnn_version", "model": {"class", "config"}, "tensors": [{"name",
                  "dtype" ("<f4" | "<f8"), "shape", "offset" (into the payload), "nbytes"}]}
    40+H    P     payload: raw little-endian tensor data, each tensor 64-byte aligned

and the file is exactly 40 + H + P bytes. `path` may also be a binary file object (as
torch.save / torch.load take): written from, or read to, its current position. Writing a
path is atomic: a temporary file in the same
folder, fsync, os.replace, then fsync of the folder, so a crash leaves the old file or the
new one, never a mix. Where no rename can replace the file, it is written into as open()
writes it, so not atomically: a pipe or device, this process's stdout (/dev/stdout,
/dev/fd/N), an existing file whose folder refuses the rename, and one the renamed file could
not stand in for as open() leaves it (another hard link to it; an owner or group this user
cannot give the new file).

Loading checks everything before building anything: magic, version, declared lengths
against the real file size (no allocation from a declared size the file cannot back), the
header's CRC, the JSON, every tensor's bounds (none empty, the payload exactly as long as
they need), and that the tensors are exactly the parameters the declared layers have (names,
shapes, dtypes), computed from the config without allocating; only then is the payload read
and its CRC checked. Any failure is a ValueError naming the problem; a model is returned
only when complete.
"""
from __future__ import annotations

import errno
import inspect
import io
import json
import operator
import os
import stat
import struct
import tempfile
import zlib
from typing import IO, TYPE_CHECKING, Union

import numpy as np

from ._signals import sigint_deferred
from ._validate import float_dtype

if TYPE_CHECKING:
    from ._typing import Device, PathOrBytes, SupportsWriteBytes
    from .layers import Layer
    from .recurrent import _Recurrent

    # What save writes and load returns: a Sequential (a Layer) or a single layer (the
    # recurrent ones derive from _Recurrent: RNN, LSTM, GRU).
    _Saveable = Union[Layer, _Recurrent]

MAGIC = b"\x89PYRNN\r\n"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIIQQII")  # magic, version, flags, H, P, crc(header), crc(payload)
_ALIGN = 64
_MAX_HEADER = 64 << 20   # a header is JSON about layers, never this large
_DTYPES = {"<f4": np.dtype("<f4"), "<f8": np.dtype("<f8")}


def _registry():
    from .layers import Dense, Dropout, Embedding, LastStep, LayerNorm
    from .model import Sequential
    from .recurrent import GRU, LSTM, RNN
    return {c.__name__: c for c in (Sequential, Dense, Embedding, Dropout, LayerNorm, LastStep,
                                    RNN, LSTM, GRU)}


# ---- save -----------------------------------------------------------------------------------

def _check_saveable(obj):
    """TypeError unless obj and every layer inside it, nested models included, is a class
    load() knows (a nested custom layer once saved fine and could not be loaded). Checked
    before any config() is asked for: a custom layer may not have one."""
    reg = _registry()
    todo = [obj]
    while todo:  # (a stack, not recursion: a model edited to contain itself is config()'s
        obj = todo.pop()  # ValueError, not a RecursionError here)
        name = type(obj).__name__
        if reg.get(name) is not type(obj):
            raise TypeError(f"cannot save a {name}: pyrnn.save handles Sequential and the "
                            f"layers {', '.join(sorted(reg))}")
        if name == "Sequential":
            obj._check_distinct()
            todo.extend(obj.layers)


def _spec(obj):
    """{"class", "config"} of a model or layer; Sequential's config nests its layers' specs."""
    _check_saveable(obj)
    return {"class": type(obj).__name__, "config": obj.config()}


def save(obj: _Saveable, path: Union[PathOrBytes, SupportsWriteBytes]) -> None:
    """Write a Sequential or a single layer (config + weights) to `path`, atomically (where a
    rename can replace the file: the module docstring says where it cannot). What is
    written is checked to load first: the classes (a class pyrnn.load cannot rebuild, such as a
    subclass or a custom layer, is a TypeError) and the parameters against the shapes and dtypes
    the configs give (else ValueError); either way no file is written."""
    path = _save_target(path)  # before the work: a folder or "" is named as given
    spec = _spec(obj)
    # The parameters read at one moment: a model fitting in another thread is refused (it
    # wrote files with tensors from two steps), as a step running on a layer now.
    from ._arrays import host
    from .layers import _one_thread_held
    from .parameter import owners_held
    with _one_thread_held(obj), owners_held(list(obj.parameters())):
        tensors, chunks, offset = _tensors(obj, host)
    want = _expected("save", spec, _registry(), len(tensors))
    have = {t["name"]: (tuple(t["shape"]), np.dtype(t["dtype"])) for t in tensors}
    if have != want:
        diff = sorted(set(have) ^ set(want)) or [n for n in have if have[n] != want[n]]
        raise ValueError(f"cannot save {type(obj).__name__}: its parameters do not match what "
                         f"its config describes, so the file could not be loaded (first "
                         f"difference: {diff[0]!r}: parameter {have.get(diff[0])}, config "
                         f"{want.get(diff[0])})")
    from . import __version__
    header = json.dumps({"format": "pyrnn", "format_version": FORMAT_VERSION,
                         "pyrnn_version": __version__, "model": spec, "tensors": tensors},
                        separators=(",", ":"), allow_nan=False).encode("utf-8")
    pcrc = 0
    for c in chunks:
        pcrc = zlib.crc32(c, pcrc)
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, 0, len(header), offset, zlib.crc32(header), pcrc)
    if _is_file(path):
        try:
            _write_all(path, prefix)
        except TypeError:  # a text stream that is not an io.TextIOBase
            raise TypeError("save() needs a file opened in binary mode ('wb'): its write() "
                            "refused bytes") from None
        for c in [header] + chunks:
            _write_all(path, c)
    else:
        _atomic_write(path, [prefix, header] + chunks)


def _tensors(obj, host):
    """(tensor table, payload chunks, payload size) of obj's parameters, each 64-byte aligned
    in little-endian order."""
    tensors, chunks, offset = [], [], 0
    for name, arr in obj.params.items():
        a = np.ascontiguousarray(host(arr))  # layers on a GPU: host copies
        le = a.dtype.newbyteorder("<")
        data = a.astype(le, copy=False).tobytes()
        pad = (-offset) % _ALIGN
        if pad:
            chunks.append(b"\0" * pad)
            offset += pad
        tensors.append({"name": name, "dtype": le.str, "shape": list(a.shape),
                        "offset": offset, "nbytes": len(data)})
        chunks.append(data)
        offset += len(data)
    return tensors, chunks, offset


def _write_all(f, data):
    """All of `data` into `f`: a raw stream (a pipe, a socket, an unbuffered file) may write
    less than it is given and say so by the count it returns (save() dropped the rest). The
    first write() gets `data` itself (some writers take bytes only); only the rest after a
    short write is a memoryview slice."""
    flat = memoryview(data).cast("B")  # (a buffer of wider items: its length in bytes)
    view, total = data, flat.nbytes
    while total:
        n = f.write(view)
        if n is None:  # a buffered or text stream returning nothing: it took it all
            if isinstance(f, io.RawIOBase):  # a non-blocking raw stream that would block
                raise OSError("save(): the stream accepted no bytes (a non-blocking stream "
                              "that would block); give a blocking one")
            return
        if isinstance(n, bool):  # (True: "done", not a count of 1)
            if n:
                return
            raise OSError("save(): the stream's write() returned False")
        try:
            n = operator.index(n)  # numpy integers count too
        except TypeError:
            return  # (a write() that returns something else: taken as all written)
        if n < 0 or n >= total:
            return
        if n == 0:
            raise OSError("save(): the stream accepted no bytes (it is full or closed)")
        view, total = flat[flat.nbytes - total + n:], total - n


def _is_file(obj):
    return hasattr(obj, "write") or hasattr(obj, "read")


def _binary_file(f, caller, method, mode):
    """f checked as save() / load() use it: binary (text files are io.TextIOBase; `mode` is
    no guide: gzip's is an int, a zip member's "r" is binary), with the method they call."""
    if isinstance(f, io.TextIOBase):
        raise TypeError(f"{caller}() needs a file opened in binary mode ({mode!r}), got a text "
                        "file")
    if not callable(getattr(f, method, None)):
        what = "writable" if method == "write" else "readable"
        raise TypeError(f"{caller}() needs a {what} file object, got {type(f).__name__} (it "
                        f"has no {method}())")
    return f


def _save_target(path, caller="save"):
    """`path` checked as open(path, "wb") would check it: a binary file object, or a str /
    bytes / os.PathLike naming no folder."""
    if _is_file(path):
        return _binary_file(path, caller, "write", "wb")
    try:
        name = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str, bytes, os.PathLike or a binary file object, got "
                        f"{type(path).__name__}") from None
    if not name:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory (an empty path)", name)
    # (a trailing slash, "." or ".." names a folder, as open() reads it: "m.pyrnn/" and
    # "m.pyrnn/." wrote a file m.pyrnn)
    sep, dots = (os.sep, (".", "..")) if isinstance(name, str) else (os.sep.encode(), (b".", b".."))
    if os.path.isdir(name) or name.endswith(sep) or os.path.basename(name) in dots:
        raise IsADirectoryError(errno.EISDIR, f"Is a directory ({caller}() needs a file path)",
                                name)
    return name


def _umask():
    """The process umask, without changing it where the system says (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting (restored at once)
    os.umask(mask)
    return mask


def _atomic_write(path, chunks):
    """chunks written to path as open(path, "wb") would write them, but whole or not at all
    where it can be: a regular file (or a new one) through a temporary file in its folder,
    fsync, os.replace. Written into as it is, as open() writes: a pipe, a device or socket,
    this process's own descriptor by its name (/dev/stdout, /dev/fd/N, /proc/self/fd/N:
    through the descriptor itself, after what was printed), and a writable file that no
    rename can replace (its folder read-only, or sticky and the file another user's)."""
    from ._outfile import _own_descriptor, write_descriptor
    given = os.fsdecode(os.fspath(path))  # what errors name, as open()'s do
    fd = _own_descriptor(given)
    if fd is not None:
        # (its realpath is a pipe:[n] name that does not exist; a redirect to a file was
        # replaced by the rename, and what was printed after went to the file it left)
        write_descriptor(fd, chunks, given)
        return
    # Through symlinks, as open() writes: the rename replaces the link's target, not the link.
    path = os.path.realpath(given)  # str or bytes, as open() takes
    try:
        st = os.stat(given)  # (follows /proc/<pid>/fd/N's links, which realpath cannot)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
        # A device, FIFO or socket: written into, as open() does, so not atomically (a rename
        # would replace /dev/null itself with a regular file when run as root).
        _write_in_place(given, chunks)
        return
    if st is not None and stat.S_ISREG(st.st_mode):
        # The check open(path, "wb") makes (without its truncation): the rename alone replaced
        # a read-only file, one the user protected, say.
        try:
            with sigint_deferred():  # (a Ctrl-C between the two left the descriptor open)
                os.close(os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)))
        except OSError as e:
            raise type(e)(e.errno, e.strerror, given) from None
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):  # (mkstemp would name its temporary file, not the path)
        raise FileNotFoundError(errno.ENOENT, f"{os.strerror(errno.ENOENT)} (the folder of the "
                                "file to write)", given)
    if st is not None and stat.S_ISREG(st.st_mode) and not os.access(folder, os.W_OK):
        _write_in_place(given, chunks)  # (no temporary file there, no rename: as open() writes)
        return
    if not _replace_atomically(given, path, folder, chunks):
        _write_in_place(given, chunks)
        return
    try:  # make the rename itself durable
        with sigint_deferred():  # (a Ctrl-C right after the open left the descriptor open)
            dfd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except OSError:
        pass


def _write_in_place(given, chunks):
    with open(given, "wb") as f:
        for c in chunks:
            f.write(c)


def _can_stand_in(fd, old):
    """Whether the temporary file (fd) can replace the file `old` describes as open("wb") would
    leave that file: no other hard link to it (that name would keep the old contents), and its
    owner and group (given to the temporary file here where this user may: else False)."""
    if old.st_nlink > 1:
        return False
    if not hasattr(os, "fchown"):  # (no POSIX owners)
        return True
    new = os.fstat(fd)
    if (new.st_uid, new.st_gid) == (old.st_uid, old.st_gid):
        return True
    try:
        os.fchown(fd, old.st_uid, old.st_gid)
    except OSError:  # another user's file, or a group this user is not in
        return False
    return True


def _replace_atomically(given, path, folder, chunks):
    """The temporary file written, then renamed over path; False (nothing left behind) where
    the rename alone is refused over a file the caller may write (a sticky folder's file of
    another user's, /tmp's): it is written in place then, as open() would."""
    fd, tmp = -1, None
    try:
        # 0600 while it is written; a short name (one derived from the target's could exceed
        # the file system's name limit where the target's does not). Ctrl-C waits until the
        # name is known here: inside mkstemp it left the file behind, and its descriptor open.
        with sigint_deferred():
            fd, tmp = tempfile.mkstemp(prefix=".pyrnn-", suffix=".tmp", dir=folder)
        # The descriptor stays ours, closed once in the finally below: a file object owning
        # it closed it when an interrupt landed between its creation and the line after, and
        # the cleanup closed it again (EBADF for the KeyboardInterrupt, or another thread's
        # file closed).
        # Whether it can take the old file's place (its links, owner and group) is known
        # before anything is written: written in place otherwise, as open() writes.
        old = os.stat(path) if os.path.exists(path) else None
        if old is not None and not _can_stand_in(fd, old):
            os.unlink(tmp)
            tmp = None
            return False
        with os.fdopen(fd, "wb", closefd=False) as f:
            for c in chunks:
                f.write(c)
            f.flush()
            os.fsync(fd)
        # The mode open() would give: an overwritten file keeps its own, a new one gets
        # 0o666 less the umask. Set only now, so nobody can open the file while it is written.
        os.chmod(tmp, old.st_mode & 0o777 if old is not None else 0o666 & ~_umask())
        try:
            os.replace(tmp, path)
        except PermissionError:
            if not os.access(path, os.W_OK):
                raise
            os.unlink(tmp)
            tmp = None
            return False
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError) and e.errno is not None and e.filename not in (given, path):
            # (the temporary file, or its folder: name the path the caller gave)
            raise type(e)(e.errno, e.strerror, given) from None
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    return True


# ---- load -----------------------------------------------------------------------------------

def _no_constant(name):
    raise ValueError(f"non-finite number {name}")


def _finite_float(text):
    v = float(text)
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"non-finite number {text}")
    return v


def _bad(path, why):
    return ValueError(f"{path}: {why}")


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_tensors(path, tensors, payload_len):
    if not isinstance(tensors, list):
        raise _bad(path, "corrupted header: 'tensors' is not a list")
    out = {}
    for i, t in enumerate(tensors):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise _bad(path, f"corrupted header: tensor entry {i} is malformed")
        name = t["name"]
        if name in out:
            raise _bad(path, f"corrupted header: tensor {name!r} appears twice")
        # JSON may put a list or an object anywhere: only a str can name a dtype (a dict lookup
        # with an unhashable key would be a TypeError).
        dt = _DTYPES.get(t["dtype"]) if isinstance(t.get("dtype"), str) else None
        if dt is None:
            raise _bad(path, f"tensor {name!r} has unsupported dtype {t.get('dtype')!r}")
        shape, off, nbytes = t.get("shape"), t.get("offset"), t.get("nbytes")
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(_int(s) and s >= 0 for s in shape)):
            raise _bad(path, f"corrupted header: tensor {name!r} has shape {shape!r}")
        if not (_int(off) and _int(nbytes) and off >= 0 and nbytes >= 0):
            raise _bad(path, f"corrupted header: tensor {name!r} has bad offset/size")
        count = 1
        for s in shape:
            count *= s  # Python ints: no overflow
        if count * dt.itemsize != nbytes:
            raise _bad(path, f"corrupted header: tensor {name!r} of shape {tuple(shape)} "
                             f"declares {nbytes} bytes")
        if count == 0:  # no layer has an empty parameter; free entries would inflate a header
            raise _bad(path, f"corrupted header: tensor {name!r} of shape {tuple(shape)} is "
                             "empty")
        if off + nbytes > payload_len:
            raise _bad(path, f"truncated or corrupted: tensor {name!r} needs bytes "
                             f"[{off}, {off + nbytes}) of a {payload_len}-byte payload")
        out[name] = (dt, tuple(shape), off, nbytes)
    end = max((off + nbytes for _, _, off, nbytes in out.values()), default=0)
    if end != payload_len:  # save() writes the tensors and nothing after them
        raise _bad(path, f"corrupted header: the tensors end at byte {end} of a "
                         f"{payload_len}-byte payload")
    return out


_MAX_LAYERS = 100_000  # layers of a model, nested ones included: far beyond any real model


def _expected(path, spec, reg, n_tensors, prefix="", seen=None):
    """{full name: (shape, dtype)} the model described by spec has, computed without
    building it; also validates the structure of spec. `seen` counts the layers so far."""
    seen = [0] if seen is None else seen
    seen[0] += bool(prefix)  # the layers inside the model (the model itself does not count)
    if seen[0] > _MAX_LAYERS:  # parameterless layers cost no tensors: bound them too
        raise _bad(path, f"more than {_MAX_LAYERS} layers in the model, which load refuses")
    cls, layers = _spec_class(path, spec, reg)  # a file's JSON: dicts and lists only
    cfg = spec["config"]
    if layers is not None:
        out = {}
        for i, sub in enumerate(layers):
            out.update(_expected(path, sub, reg, n_tensors, f"{prefix}{i}.", seen))
        return out
    unknown = sorted(set(cfg) - _config_keys(cls))
    if unknown:
        raise _bad(path, f"invalid {cls.__name__} config: unexpected keys {unknown}")
    # A declared layer count beyond the tensors in the file cannot be right, and would make
    # even the shape computation below loop for long: each (layer, direction) has two weights
    # at least, a bound that keeps the shapes within a few times the tensor table.
    # (Recurrent layers only: LastStep's config has "bidirectional" too, and no weights.)
    if "num_layers" in _config_keys(cls):
        n_layers = cfg.get("num_layers", 1)
        dirs = 2 if cfg.get("bidirectional") else 1
        if not _int(n_layers) or not 1 <= n_layers * dirs * 2 <= max(n_tensors, 2):
            raise _bad(path, f"corrupted config: num_layers = {n_layers!r}")
    try:  # any JSON value can sit anywhere in cfg: every use of it is inside this try
        shapes = cls.param_shapes(cfg)
        # As the constructor reads it (None is float32 there; np.dtype(None) is float64).
        dtype = float_dtype(cfg.get("dtype", "float32")) if shapes else None
        return {prefix + k: (tuple(int(s) for s in v), dtype) for k, v in shapes.items()}
    except Exception as e:
        raise _bad(path, f"invalid {cls.__name__} config {cfg!r}: {e}") from None


def _config_keys(cls):
    """The config keys a file may give a layer class: its constructor's arguments, less the
    ones config() never writes (device: a file must not move a model onto a GPU; seed: the
    weights come from the file, except for a class whose seed drives only its masks:
    _config_keeps_seed) and private ones."""
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                names.add(p.name)
        if not any(p.kind == p.VAR_KEYWORD for p in inspect.signature(init).parameters.values()):
            break
    dropped = ("self", "device") + (() if getattr(cls, "_config_keeps_seed", False) else ("seed",))
    return {n for n in names if n not in dropped and not n.startswith("_")}


def _spec_class(where, spec, reg, maps=dict, seqs=list):
    """(class, its layer specs or None) of spec {"class": a known class, "config": {...}}, a
    Sequential's config holding a list of layer specs; ValueError naming `where` otherwise.
    maps / seqs: the types accepted for the dicts and the list (a file's JSON: dict, list)."""
    if not isinstance(spec, maps) or not isinstance(spec.get("config"), maps):
        raise _bad(where, "invalid model spec: each layer must be {'class', 'config'}, got "
                          f"{str(spec)[:80]}")
    cls = reg.get(spec["class"]) if isinstance(spec.get("class"), str) else None
    if cls is None:
        raise _bad(where, f"unknown layer class {spec.get('class')!r} (known: "
                          f"{', '.join(sorted(reg))})")
    if cls.__name__ != "Sequential":
        return cls, None
    layers = spec["config"].get("layers")
    if not isinstance(layers, seqs):
        raise _bad(where, "invalid model spec: a Sequential config needs a 'layers' list")
    extra = sorted(set(spec["config"]) - {"layers", "bidirectional_input"}, key=str)
    if extra:
        raise _bad(where, f"invalid model spec: unknown Sequential config keys {extra}")
    if not isinstance(spec["config"].get("bidirectional_input", False), (bool, np.bool_)):
        raise _bad(where, "invalid model spec: a Sequential's 'bidirectional_input' must be "
                          f"true or false, got {spec['config']['bidirectional_input']!r}")
    return cls, layers


def _check_spec(where, spec, reg):
    """ValueError unless spec has the structure _build needs (without its KeyErrors), nested
    specs included; any mapping and list or tuple pass, as the constructors take them."""
    from collections.abc import Mapping
    _, layers = _spec_class(where, spec, reg, Mapping, (list, tuple))
    for sub in layers or ():
        _check_spec(where, sub, reg)


def _build(spec, reg):
    cls = reg[spec["class"]]
    cfg = spec["config"]
    if cls.__name__ == "Sequential":
        model = cls([_build(sub, reg) for sub in cfg["layers"]])
        model._input_bidirectional = bool(cfg.get("bidirectional_input", False))  # (a slice's)
        return model
    return cls.from_config(dict(cfg))


def load(path: Union[PathOrBytes, IO[bytes]], device: Device = "cpu") -> _Saveable:
    """Read a file written by model.save / pyrnn.save: returns the Sequential or layer, built on
    the CPU and then moved to `device` ("cpu" or "cuda") when that is another device."""
    from .recurrent import _check_device
    _check_device(device)
    if _is_file(path):
        _binary_file(path, "load", "read", "rb")
        name = getattr(path, "name", None)
        name = name if isinstance(name, (str, bytes)) else f"<{type(path).__name__}>"
        return _load(name, path, None, device)
    if isinstance(path, (bytes, bytearray, memoryview)) and bytes(path[:len(MAGIC)]) == MAGIC:
        # (bytes are a path, as open() takes them: a file's contents gave "embedded null byte")
        raise TypeError("load() takes a path or a binary file object, not the file's contents: "
                        "wrap them in io.BytesIO(data)")
    path = os.fspath(path)  # type: ignore[arg-type]  # (not a file object: _is_file said so)
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if stat.S_ISREG(st.st_mode):
            return _load(path, f, st.st_size, device)
        # A FIFO, /dev/stdin or a character device has no size (st_size 0, which was then
        # "truncated"): read as a stream, for what the prefix declares, then to its end, as
        # a regular file's size is checked (bytes after the model are refused there too).
        model = _load(path, f, None, device)
        if _read_some(f, 1):
            raise _bad(path, "corrupted pyrnn file: data after the model's declared end")
        return model


# Reads of a stream (size unknown) take at most this much at a time, so that a header
# declaring more than the stream holds costs only what it holds, not the declared size.
_STREAM_CHUNK = 1 << 24


def _read_some(f, n):
    """One f.read(n), checked: bytes, not None (a non-blocking stream with none ready) nor
    text."""
    data = f.read(n)
    if data is None:  # (as save() refuses a stream that would block)
        raise OSError("load(): the stream had no bytes ready (a non-blocking stream that would "
                      "block); give a blocking one")
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"load(): the file object's read() gave {type(data).__name__}, not "
                        "bytes (open it in binary mode)")
    return data


def _read_exact(f, n, size):
    """n bytes of `f`, fewer only at its end: a raw stream (a pipe, a socket, an unbuffered
    file) may return less than asked before its end. size None (a stream): in chunks."""
    step = n if size is not None else min(n, _STREAM_CHUNK)
    data = _read_some(f, step)
    if len(data) >= n or not data:
        return data
    buf = bytearray(data)
    while len(buf) < n:
        more = _read_some(f, min(n - len(buf), step))
        if not more:
            break
        buf += more
    return buf


def _short_read(what, want, got, size):
    if size is None:  # a caller's stream: it ended early
        return f"truncated pyrnn file: the stream ended {got} bytes into a {want}-byte {what}"
    return "truncated pyrnn file (the file changed while being read)"


def _load(path, f, size, device):
    """load() of an open binary file `f` of `size` bytes, named `path` in errors. size None:
    a file object given by the caller, read from its position for exactly what the prefix
    declares (several models may follow each other in it, as torch.load reads them)."""
    head = bytes(_read_exact(f, _PREFIX.size, size))
    if len(head) < _PREFIX.size or head[:8] != MAGIC:
        if head[:8] == MAGIC[:len(head)] and len(head) < _PREFIX.size:
            raise _bad(path, f"truncated pyrnn file ({len(head) if size is None else size} "
                             "bytes)")
        raise _bad(path, "not a pyrnn model file (bad magic number)")
    magic, version, flags, hlen, plen, hcrc, pcrc = _PREFIX.unpack(head)
    if version != FORMAT_VERSION:
        raise _bad(path, f"unsupported pyrnn file format version {version} (this pyrnn "
                         f"reads version {FORMAT_VERSION})")
    if flags != 0:
        raise _bad(path, f"unsupported pyrnn file flags {flags:#x}")
    if hlen > _MAX_HEADER or (size is not None and _PREFIX.size + hlen + plen != size):
        kind = ("truncated" if size is not None and _PREFIX.size + hlen + plen > size
                else "corrupted")
        raise _bad(path, f"{kind} pyrnn file: header ({hlen} bytes) and payload ({plen} "
                         f"bytes) do not add up to the file size ({size} bytes)"
                   if size is not None else f"{kind} pyrnn file: header length {hlen} bytes")
    header = _read_exact(f, hlen, size)
    if len(header) != hlen:
        raise _bad(path, _short_read("header", hlen, len(header), size))
    if zlib.crc32(header) != hcrc:
        raise _bad(path, "corrupted pyrnn file: header checksum mismatch")
    # The payload is read only once the header says what it holds (a lying header with a
    # huge declared payload cost its size in memory before any check).
    spec, tensors = _check_header(path, header, plen)
    payload = _read_exact(f, plen, size)
    if len(payload) != plen:
        raise _bad(path, _short_read("payload", plen, len(payload), size))
    if zlib.crc32(payload) != pcrc:
        raise _bad(path, "corrupted pyrnn file: weights checksum mismatch")

    # Everything is consistent: build (allocations now match what the file holds) and fill.
    reg = _registry()
    try:
        model = _build(spec, reg)
    except (TypeError, ValueError, KeyError, RuntimeError, OverflowError) as e:
        raise _bad(path, f"invalid model config: {e}") from None
    params = model.params
    if set(params) != set(tensors):
        raise _bad(path, "model parameters differ from the file's tensors after building")
    for name, (dt, shape, off, nbytes) in tensors.items():
        arr = np.frombuffer(payload, dtype=dt, count=nbytes // dt.itemsize, offset=off)
        params[name][...] = arr.reshape(shape)
    return model.to(device) if device != "cpu" else model


def _names(names, most=5):
    """At most `most` of the names, and how many more (a hostile header may list millions)."""
    names = sorted(names)
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return f"{names[:most]}{more}"


def _check_header(path, header, plen):
    """(model spec, {name: (dtype, shape, offset, nbytes)}) of a header whose CRC matched,
    after checking the JSON, the tensor table and the tensors against the model's parameters."""
    try:
        # save() never writes NaN or Infinity (allow_nan=False): a header with one, or with a
        # number that overflows to inf (1e999), is not one of ours.
        meta = json.loads(header.decode("utf-8"), parse_constant=_no_constant,
                          parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _bad(path, f"corrupted pyrnn file: header is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != "pyrnn":
        raise _bad(path, "corrupted pyrnn file: header is not a pyrnn header")
    if meta.get("format_version") != FORMAT_VERSION:
        raise _bad(path, f"unsupported pyrnn header version {meta.get('format_version')!r}")

    tensors = _check_tensors(path, meta.get("tensors"), plen)
    reg = _registry()
    try:
        expected = _expected(path, meta.get("model"), reg, len(tensors))
    except RecursionError:
        raise _bad(path, "corrupted header: model spec nested too deeply") from None
    if set(expected) != set(tensors):
        missing = set(expected) - set(tensors)
        extra = set(tensors) - set(expected)
        raise _bad(path, f"tensors do not match the model's parameters (missing: "
                         f"{_names(missing)}, unexpected: {_names(extra)})")
    for name, (shape, dtype) in expected.items():
        dt, tshape, _, _ = tensors[name]
        if tshape != shape or dt.newbyteorder("=") != dtype:
            raise _bad(path, f"tensor {name!r} is {tshape} {dt}, but the model's parameter is "
                             f"{shape} {dtype}")
    return meta["model"], tensors
