import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
# A buffer allocated during an OpenMP team's work aborts the test process, naming itself
# (pyrnn/aligned.h): refused, it would end the process only under memory pressure. Child
# processes inherit it.
os.environ.setdefault("PYRNN_CHECK_TEAM_ALLOCATIONS", "1")


def pytest_configure(config):
    # `python -m pytest` run in the repository puts it first on sys.path: its pyrnn/ folder,
    # which has no built extensions, then hides the installed package and every test module
    # fails with a circular-import error. Say so once, up front.
    try:
        import pyrnn  # noqa: F401
    except ImportError as e:
        if pathlib.Path(getattr(e, "path", "") or "").resolve().is_relative_to(REPO / "pyrnn") \
                or "partially initialized module 'pyrnn'" in str(e):
            raise pytest.UsageError(
                f"pyrnn was imported from the source tree ({REPO / 'pyrnn'}), which has no built "
                "extensions: run `pytest tests` (as README.md says) or run from another folder; "
                "`python -m pytest` in the repository puts it first on sys.path") from None
        raise


@pytest.fixture(scope="session")
def repo_root():
    return REPO


@pytest.fixture
def restore_runtime():
    """Whatever a test sets with pyrnn.set_cpu_isa / set_num_threads is undone after it."""
    import pyrnn
    isa, threads = pyrnn.get_cpu_isa(), pyrnn.get_num_threads()
    yield
    pyrnn.set_cpu_isa(isa)
    pyrnn.set_num_threads(threads)


def pytest_report_header(config):
    import pyrnn
    info = pyrnn.info()
    cuda = ", ".join(info["cuda_devices"]) or info["cuda_unavailable_reason"] or "not compiled"
    return f"pyrnn {pyrnn.__version__} from {os.path.dirname(pyrnn.__file__)}; CUDA: {cuda}"


@pytest.fixture
def sigint_delivered():
    """Python's Ctrl-C handler for the test: a run started in the background by a shell
    (`pytest &`, a CI job) inherits SIGINT ignored, and the tests that send it would then see
    nothing (pyrnn rightly leaves an ignored SIGINT ignored)."""
    import signal
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
