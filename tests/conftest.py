import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


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
