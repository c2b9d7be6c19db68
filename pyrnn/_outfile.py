"""Result files of the command-line tools (`pyrnn bench --json`, `pyrnn demo --out`, the
benchmarks/ scripts' --out): checked before a run of minutes, not found bad after it; written
whole or not at all where a rename can replace the file, so a failed write (a full disk)
leaves the previous file as it was (a pipe, a device, stdout, and a file no rename can replace
are written into, as open() writes)."""
import argparse
import os
import re
import select
import sys

from ._signals import sigint_deferred


def _missing_folders(folder):
    """The folders that do not exist yet on the way to `folder`, outermost first."""
    out = []
    while not os.path.lexists(folder):
        out.append(folder)
        folder = os.path.dirname(folder)
    return out[::-1]


# The names of a descriptor of this process (a task's too: threads share the table)
_DESCRIPTOR = re.compile(r"/dev/std(out|err)|/dev/fd/(\d+)"
                         r"|/proc/(self|thread-self|\d+)(?:/task/(\d+))?/fd/(\d+)")


def _descriptor_name(path):
    """path, its symlinks followed one by one up to a name of a descriptor (/dev/stdout,
    /dev/fd/N, /proc/self/fd/N: realpath would go on to the pipe or file behind it; also
    through a linked folder, pfd/1 with pfd -> /proc/self/fd), or to a name that is no link."""
    name = os.path.abspath(path)
    for _ in range(40):  # (the kernel's own limit on a chain of links)
        if _DESCRIPTOR.fullmatch(name):
            return name
        # (the link's real folder: ".." past a linked folder is the physical parent)
        folder = os.path.realpath(os.path.dirname(name))
        physical = os.path.join(folder, os.path.basename(name))
        if _DESCRIPTOR.fullmatch(physical):
            return physical
        try:
            target = os.readlink(name)
        except (OSError, ValueError):
            return name
        name = os.path.abspath(os.path.join(folder, target))
    return name


def _own_descriptor(path):
    """The descriptor number `path` names in this process (/dev/stdout 1, /dev/stderr 2,
    /dev/fd/N, /proc/self/fd/N, or a symlink to one of them), or None."""
    m = _DESCRIPTOR.fullmatch(_descriptor_name(path))
    if m is None:
        return None
    if m.group(1):
        return 1 if m.group(1) == "out" else 2
    if m.group(2):
        return int(m.group(2))
    if m.group(3) not in ("self", "thread-self") and int(m.group(3)) != os.getpid():
        return None
    if m.group(4) and not os.path.isdir(os.path.dirname(m.group(0))):
        return None  # (no such thread of this process: open() would not find it either)
    return int(m.group(5))


def _in_place(path):
    """Whether `path` is written into as it is (not replaced through a rename): a pipe, a
    device, or an open descriptor's name (/dev/stdout redirected to a file is a regular file;
    a rename would replace the file the shell opened)."""
    return (_DESCRIPTOR.fullmatch(_descriptor_name(path)) is not None
            or (os.path.exists(path) and not os.path.isfile(path)))


def write_descriptor(fd, chunks, given):
    """chunks written through this process's descriptor fd (named `given`, as errors name it).
    Through the descriptor itself: a second handle on /dev/stdout (a redirect to a file) has
    an offset of its own, and what Python had buffered for stdout, or printed after,
    overwrote the data."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    try:
        for c in chunks:
            view = memoryview(c).cast("B")
            while view:
                try:
                    view = view[os.write(fd, view):]
                except BlockingIOError:  # (a non-blocking stdout, inherited: wait, as print)
                    select.select([], [fd], [])
    except OSError as e:
        if e.errno is None:
            raise
        raise type(e)(e.errno, e.strerror, given) from None


def problem(path):
    """Why a file could not be written at `path` after the run (its folders made then), or
    None. What the check makes (folders, a probe file) is removed again."""
    if not path:
        return "an empty path"
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        return "a folder, not a file path"
    made = []
    try:
        fd = _own_descriptor(path)
        if fd is not None:  # written through the descriptor: it must be open for writing
            import fcntl
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE not in (os.O_WRONLY, os.O_RDWR):
                raise PermissionError(13, f"descriptor {fd} is not open for writing")
            return None
        if _in_place(path) and os.path.exists(path):
            if not os.access(path, os.W_OK):
                raise PermissionError(13, "not writable")
            return None
        target = os.path.realpath(path)  # a link's target (a dangling one's too), kept so
        for f in _missing_folders(os.path.dirname(target)):
            os.mkdir(f)
            made.append(f)
        if os.path.exists(target):
            # replaced through a rename, or written in place where its folder is read-only
            if not os.access(target, os.W_OK):
                raise PermissionError(13, "not writable")
            return None
        with sigint_deferred():  # (a Ctrl-C between the two left the file)
            # the name itself too (/sys/x.json, /proc/x, a name too long)
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(target)
    except OSError as e:
        return f"not a writable file path ({e.strerror or e})"
    finally:
        for f in reversed(made):
            try:
                os.rmdir(f)
            except OSError:
                pass
    return None


def out_file(text):
    """argparse type of an output file option: the path, checked now (a usage error, exit
    status 2, before the run). "-" is stdout."""
    if text == "-":
        text = "/dev/stdout"
    why = problem(text)
    if why:
        raise argparse.ArgumentTypeError(f"{text!r}: {why}")
    return text


out_file.__name__ = "output file"


def write_file(path, data):
    """data (str or bytes) written to `path` as save() writes a model (folders made if need
    be): a regular file (or a new one) through a temporary file renamed into place, keeping
    the mode it had. Written into as it is: a pipe, a device, a file whose folder is not
    writable (no rename possible; as open() would), and /dev/stdout and the like, through the
    process's own descriptor (ending in a newline), after what was printed before."""
    from .serialize import _atomic_write
    data = data.encode() if isinstance(data, str) else data
    fd = _own_descriptor(path)
    if fd is not None:
        write_descriptor(fd, [data if data.endswith(b"\n") else data + b"\n"], path)
        return
    if _in_place(path):
        with open(path, "ab") as f:  # (a pipe, a device, another process's descriptor)
            f.write(data)
        return
    target = os.path.realpath(path)
    if os.path.isfile(target) and not os.access(os.path.dirname(target), os.W_OK):
        with open(path, "wb") as f:  # (no rename in a read-only folder: as open() writes)
            f.write(data)
        return
    made = _missing_folders(os.path.dirname(target))
    for f in made:
        os.mkdir(f)
    try:
        _atomic_write(path, [data])
    except BaseException:
        for f in reversed(made):  # (a failed write leaves nothing behind)
            try:
                os.rmdir(f)
            except OSError:
                pass
        raise
