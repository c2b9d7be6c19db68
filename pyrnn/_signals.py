"""Ctrl-C held back over a few operations that must run whole (an optimizer step, a temporary
file's creation)."""
import contextlib
import signal
import threading


@contextlib.contextmanager
def sigint_deferred():
    """Ctrl-C (SIGINT) arriving inside the block takes effect when the block ends.

    Around an optimizer step: Python runs a signal handler between two bytecodes, so a
    KeyboardInterrupt could otherwise land between two parameters' updates and leave the model
    half-stepped (and the optimizer's moments and step counts out of step with it). Only in the
    main thread (where Python runs signal handlers) and only when a Python-level handler is
    installed (the default one raises KeyboardInterrupt); otherwise a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
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
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            previous(*pending[0])  # the default handler raises KeyboardInterrupt here
