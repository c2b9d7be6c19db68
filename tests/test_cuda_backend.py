"""CUDA packaging: lazy loading and clear reasons. (Device numerics need a GPU; see the CUDA
ctest suite and the CUDA issue.)"""
import subprocess
import sys

import pytest

import pyrnn
import pyrnn.cuda


def test_import_pyrnn_does_not_load_cuda(tmp_path):
    code = "import sys, pyrnn; print('pyrnn._cuda' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, check=True)
    assert out.stdout.strip() == "False"


def test_availability_is_consistent():
    info = pyrnn.info()
    assert info["cuda_compiled"] == pyrnn.cuda.is_compiled()
    assert info["cuda_available"] == pyrnn.cuda.is_available()
    assert pyrnn.cuda.device_count() == len(info["cuda_devices"])
    if pyrnn.cuda.is_available():
        assert pyrnn.cuda.unavailable_reason() is None
    else:
        assert isinstance(pyrnn.cuda.unavailable_reason(), str)
        pyrnn.cuda.synchronize()  # a no-op, not an error, without a device


def test_compiled_backend_reports_versions():
    if not pyrnn.cuda.is_compiled():
        pytest.skip("built without the CUDA backend")
    import pyrnn._cuda as native
    assert native.runtime_version() >= 12000
    assert native.driver_version() >= 0


def test_cuda_layer_request_without_device_is_a_clear_error():
    if pyrnn.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match="device='cuda' is not available"):
        pyrnn.LSTM(4, 8, device="cuda")
    with pytest.raises(ValueError, match="device must be"):
        pyrnn.LSTM(4, 8, device="tpu")
