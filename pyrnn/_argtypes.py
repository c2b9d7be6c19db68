"""argparse types for the command line: a bad value is a usage error (exit status 2, the
option named), not a traceback from deep inside a run."""
import argparse
import math


def int_range(lo, hi=None):
    """An int in [lo, hi] (hi None: no upper bound)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value
    parse.__name__ = "int"  # argparse names the type in its message
    return parse


def int_list(lo, hi=None):
    """Comma-separated ints, each in [lo, hi] (hi None: >= lo; e.g. "20,100")."""
    one = int_range(lo, hi)

    def parse(text):
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
        return [one(p) for p in parts]
    parse.__name__ = "list of int"
    return parse


def positive_float(text):
    """A finite number > 0 (seconds, budgets)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


positive_float.__name__ = "float"


def name_list(choices):
    """Comma-separated names, each one of `choices` once (e.g. "seed,large"); the text as
    given."""
    def parse(text):
        parts = [p.strip() for p in text.split(",")]
        bad = [p for p in parts if p not in choices]
        if not text.strip() or bad:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated names from {', '.join(choices)}; got {text!r}")
        twice = sorted({p for p in parts if parts.count(p) > 1})
        if twice:  # (a result twice: summaries keyed by name counted or overwrote it)
            raise argparse.ArgumentTypeError(f"{', '.join(twice)} named twice in {text!r}")
        return ",".join(parts)
    parse.__name__ = "list of names"
    return parse
