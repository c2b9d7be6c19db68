"""Host-side parts of the CUDA training stack that run without a GPU: a clear RuntimeError
naming the reason whenever device="cuda" is asked for without a usable device (every layer,
to(), Sequential, load), and the argument checks of the native device kernels (pyrnn._cuda's
training wrappers), exercised on borrowed DeviceArrays over fake pointers that are never
dereferenced: every misuse is a TypeError / ValueError before any device work."""
import numpy as np
import pytest

import pyrnn
import pyrnn.cuda

needs_ext = pytest.mark.skipif(not pyrnn.cuda.is_compiled(), reason="built without the CUDA backend")
no_device = pytest.mark.skipif(pyrnn.cuda.is_available(), reason="a CUDA device is present")

LAYERS = {
    "Dense": lambda **kw: pyrnn.Dense(3, 2, **kw),
    "Embedding": lambda **kw: pyrnn.Embedding(5, 2, **kw),
    "LayerNorm": lambda **kw: pyrnn.LayerNorm(4, **kw),
    "Dropout": lambda **kw: pyrnn.Dropout(0.5, **kw),
    "LastStep": lambda **kw: pyrnn.LastStep(**kw),
}


@no_device
@pytest.mark.parametrize("name", list(LAYERS))
def test_cuda_without_device_is_a_clear_error(name, tmp_path):
    reason = pyrnn.cuda.unavailable_reason()
    with pytest.raises(RuntimeError, match="device='cuda' is not available: ") as e:
        LAYERS[name](device="cuda")
    assert reason in str(e.value)
    layer = LAYERS[name]()
    with pytest.raises(RuntimeError, match="device='cuda' is not available"):
        layer.to("cuda")
    with pytest.raises(RuntimeError, match="device='cuda' is not available"):
        layer.cuda()
    assert layer.device == "cpu"  # unchanged by the refused move
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        LAYERS[name](device="gpu")


@no_device
def test_model_cuda_without_device_is_a_clear_error(tmp_path):
    model = pyrnn.Sequential([pyrnn.GRU(2, 3, batch_first=True), pyrnn.LastStep(),
                              pyrnn.Dense(3, 1)])
    with pytest.raises(RuntimeError, match="device='cuda' is not available"):
        model.to("cuda")
    assert model.device == "cpu"
    path = tmp_path / "m.pyrnn"
    model.save(path)
    with pytest.raises(RuntimeError, match="device='cuda' is not available"):
        pyrnn.load(path, device="cuda")
    assert pyrnn.load(path, device="cpu").device == "cpu"


@needs_ext
def test_native_kernels_validate_before_device_work():
    import pyrnn._cuda as native
    DA = native.DeviceArray

    def arr(shape, dtype="float32", readonly=False, ptr=0x90000):
        return DA.borrow(ptr, shape, dtype, None, readonly=readonly, device=0)

    x, w, b = arr((4, 3)), arr((2, 3)), arr((2,))
    with pytest.raises(TypeError, match="DeviceArray"):
        native.dense_forward(np.zeros((4, 3), np.float32), w, b, 0)
    with pytest.raises(ValueError, match=r"weight has shape \(2, 4\), expected \(2, 3\)"):
        native.dense_forward(x, arr((2, 4)), b, 0)
    with pytest.raises(TypeError, match="bias has dtype float64"):
        native.dense_forward(x, w, arr((2,), "float64"), 0)
    with pytest.raises(ValueError, match="dweight is read-only"):
        native.dense_backward(arr((2, 3), readonly=True), b, arr((4, 2)), arr((4, 2)), x, w, 0)
    with pytest.raises(ValueError, match=r"dy has shape \(4, 3\), expected \(4, 2\)"):
        native.dense_backward(w, b, arr((4, 3)), arr((4, 2)), x, w, 0)
    with pytest.raises(ValueError, match=r"bias has shape \(4,\), expected \(3,\)"):
        native.layernorm_forward(x, arr((3,)), arr((4,)), 1e-5)
    with pytest.raises(ValueError, match=r"rstd has shape \(3,\), expected \(4,\)"):
        native.layernorm_backward(arr((3,)), arr((3,)), x, x, arr((4,), "float64"),
                                  arr((3,), "float64"), arr((3,)))
    with pytest.raises(ValueError, match=r"dy has shape \(4, 3\), expected \(5, 3\)"):
        native.embedding_backward(arr((7, 3)), x, np.zeros(5, np.int64), -1)
    with pytest.raises(ValueError, match="lengths must have 2 entries"):
        native.last_step_forward(arr((2, 3, 4)), [1, 2, 3], 1)
    with pytest.raises(ValueError, match="does not split into 2 directions"):
        native.last_step_forward(arr((2, 3, 5)), None, 2)
    with pytest.raises(TypeError, match="float32 or float64"):
        native.dropout_forward(arr((3,), "int64"), 0, 0.5)
    p = arr((6,))
    with pytest.raises(ValueError, match=r"grad has shape \(5,\), expected \(6,\)"):
        native.sgd_step(p, arr((5,)), None, 0.1, 0.0, 0.0, 0.0, False, True)
    with pytest.raises(TypeError, match="momentum buffer must be a DeviceArray, got None"):
        native.sgd_step(p, p, None, 0.1, 0.9, 0.0, 0.0, False, True)
    with pytest.raises(TypeError, match="max_exp_avg_sq must be a DeviceArray, got None"):
        native.adam_step(p, p, p, p, None, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, True, 1)
    with pytest.raises(ValueError, match="step must be >= 1"):
        native.adam_step(p, p, p, p, None, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False, 0)
    with pytest.raises(TypeError, match="grad_avg must be a DeviceArray, got None"):
        native.rmsprop_step(p, p, p, None, None, 1e-2, 0.99, 1e-8, 0.0, 0.0, True)
    with pytest.raises(ValueError, match="read-only"):
        native.zero_(arr((3,), readonly=True))
    with pytest.raises(ValueError, match="copy_"):
        native.copy_(arr((3,)), arr((4,)))
    if not pyrnn.cuda.is_available():
        # Well-formed calls get as far as the device, and stop there with the reason.
        for call in (lambda: native.dense_forward(x, w, b, 0),
                     lambda: native.sum_squares(p),
                     lambda: native.sgd_step(p, p, None, 0.1, 0.0, 0.0, 0.0, False, True),
                     lambda: native.last_step_forward(arr((2, 3, 4)), [1, 3], 2)):
            with pytest.raises(RuntimeError, match="no usable CUDA device"):
                call()
