"""Result files of the command-line tools (`pyrnn bench --json`, `pyrnn demo --out`, the
benchmarks/ scripts' --out): checked before a run of minutes, not found bad after it; written
whole or not at all, so a failed write (a full disk) leaves the previous file as it was."""
import argparse
import os
import tempfile

from ._signals import sigint_deferred


def _missing_folders(folder):
    """The folders that do not exist yet on the way to `folder`, outermost first."""
    out = []
    while not os.path.lexists(folder):
        out.append(folder)
        folder = os.path.dirname(folder)
    return out[::-1]


def problem(path):
    """Why a file could not be written at `path` after the run (its folders made then), or
    None. What the check makes (folders, a probe file) is removed again."""
    if not path:
        return "an empty path"
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        return "a folder, not a file path"
    made = []
    try:
        for f in _missing_folders(os.path.dirname(os.path.abspath(path))):
            os.mkdir(f)
            made.append(f)
        if os.path.exists(path) and not os.path.isfile(path):
            if not os.access(path, os.W_OK):  # a pipe, /dev/stdout: written as it is
                raise PermissionError(13, "not writable")
        else:
            target = os.path.realpath(path)  # a link's target (a dangling one's too), kept so
            with sigint_deferred():  # (a Ctrl-C between the two left the file)
                if os.path.exists(target):
                    # replaced through a temporary file in its folder, if it may be written
                    if not os.access(target, os.W_OK):
                        raise PermissionError(13, "not writable")
                    fd, probe = tempfile.mkstemp(prefix=".pyrnn-probe.",
                                                 dir=os.path.dirname(target))
                else:  # the name itself too (/sys/x.json, /proc/x, a name too long)
                    fd, probe = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                        0o600), target
                os.close(fd)
                os.unlink(probe)
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
    status 2, before the run)."""
    why = problem(text)
    if why:
        raise argparse.ArgumentTypeError(f"{text!r}: {why}")
    return text


out_file.__name__ = "output file"


def write_file(path, data):
    """data (str or bytes) written to `path` as save() writes a model (folders made if need
    be): a regular file (or a new one) through a temporary file renamed into place, keeping
    the mode it had; a pipe or device written as it is."""
    from .serialize import _atomic_write
    data = data.encode() if isinstance(data, str) else data
    if os.path.exists(path) and not os.path.isfile(path):
        # (/dev/stdout's realpath names no file: the given path is opened, as open() does)
        with open(path, "wb") as f:
            f.write(data)
        return
    made = _missing_folders(os.path.dirname(os.path.abspath(os.path.realpath(path))))
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
