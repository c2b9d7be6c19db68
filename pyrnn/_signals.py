"""Ctrl-C held back over a few operations that must run whole (an optimizer step, a temporary
file's creation)."""
import contextlib
import threading

try:  # the C functions: signal's wrappers convert handlers to enums, at 2-5 us a call (a
    import _signal as signal  # step of a small model took 11 us more with them)
except ImportError:  # pragma: no cover - (another Python implementation)
    import signal


_depth = [0]  # sigint_deferred blocks open in the main thread


@contextlib.contextmanager
def sigint_deferred():
    """Ctrl-C (SIGINT) arriving inside the block takes effect when the block ends.

    Around an optimizer step: Python runs a signal handler between two bytecodes, so a
    KeyboardInterrupt could otherwise land between two parameters' updates and leave the model
    half-stepped (and the optimizer's moments and step counts out of step with it). Only in the
    main thread (where Python runs signal handlers) and only when a Python-level handler is
    installed (the default one raises KeyboardInterrupt); otherwise a no-op.
    """
    if _depth[0] or threading.current_thread() is not threading.main_thread():
        yield  # (inside another: that one defers, for less than two handler swaps cost)
        return
    try:
        previous = signal.getsignal(signal.SIGINT)
    except (ValueError, OSError):
        previous = None
    if not callable(previous):
        yield
        return
    pending = []
    signal.signal(signal.SIGINT, lambda signum, frame: pending.append((signum, frame)))
    _depth[0] += 1
    try:
        yield
    finally:
        _depth[0] -= 1
        signal.signal(signal.SIGINT, previous)
        if pending:
            previous(*pending[0])  # the default handler raises KeyboardInterrupt here
