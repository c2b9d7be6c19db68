import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root():
    return REPO


def pytest_report_header(config):
    import pyrnn
    return f"pyrnn {pyrnn.__version__} from {os.path.dirname(pyrnn.__file__)}"
