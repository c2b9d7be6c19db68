"""Loads the benchmark scripts (benchmarks/*.py: not a package) as modules for their tests."""
import importlib.util
import pathlib

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


def load_script(name):
    """benchmarks/<name>.py as a fresh module (its main() is not run)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
