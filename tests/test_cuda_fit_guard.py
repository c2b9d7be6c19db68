"""fit's guard on a CUDA device (a GPU, or CI's host emulation of one): the built-in steps keep
what they overwrite (pyrnn::optim::StepKeep of device pointers) and report the NaN / Inf they
write (one device word), bitwise as the CPU does. Skipped without a device; the Python plumbing
is checked without one by tests/test_fit_guard_in_step.py over tests/cuda_fakes.py."""
import numpy as np
import pytest

import pyrnn
import pyrnn.cuda
from pyrnn import _fit_guard, optim

pytestmark = pytest.mark.skipif(not pyrnn.cuda.is_available(),
                                reason=f"no CUDA device: {pyrnn.cuda.unavailable_reason()}")

OPTIMIZERS = {
    "sgd-momentum": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
    "adam-amsgrad": lambda ps: optim.Adam(ps, lr=1e-2, weight_decay=0.1, amsgrad=True),
    "rmsprop-centered": lambda ps: optim.RMSprop(ps, lr=1e-2, centered=True, momentum=0.8),
}


def host(a):
    return a if isinstance(a, np.ndarray) else a.numpy()


def model(device):
    # 300 * 250 + 250 + 250 * 3 + 3 elements: over the guard's in-step threshold.
    return pyrnn.Sequential([pyrnn.Dense(300, 250, activation="tanh", dtype="float64", seed=0,
                                         device=device),
                             pyrnn.Dense(250, 3, dtype="float64", seed=1, device=device)])


def set_grads(params, seed, poison=None):
    rng = np.random.default_rng(seed)
    for i, p in enumerate(params):
        g = rng.standard_normal(p.shape)
        if poison is not None and i == 0:
            g.reshape(-1)[7] = poison
        if isinstance(p.grad, np.ndarray):
            p.grad[...] = g
        else:
            p.grad.copy_from(g)


def same(a, b):
    a, b = host(a), host(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_device_steps_keep_and_report_as_the_cpu(name):
    gpu, cpu = model("cuda"), model("cpu")
    gp, cp = list(gpu.parameters()), list(cpu.parameters())
    g_opt, c_opt = OPTIMIZERS[name](gp), OPTIMIZERS[name](cp)
    good = _fit_guard.LastGood(gp, g_opt)
    assert good.fused
    for step in range(3):
        set_grads(gp, step)
        set_grads(cp, step)
        before = [host(p.data) for p in gp]
        before_state = [{k: host(v) for k, v in st.items() if not isinstance(v, int)}
                        for st in g_opt.state]
        good.keep()
        good.step()
        c_opt.step()
        assert good.non_finite() is None and good.bad == 0
        assert all(same(k[0], b) for k, b in zip(good.weights, before))
        for kept, want in zip(good.state, before_state):
            assert all(same(kept[k], v) for k, v in want.items())
        assert all(same(p.data, q.data) for p, q in zip(gp, cp))  # bitwise the CPU's step
    # A NaN gradient reaches the parameter and the state: both bits, as the CPU's.
    set_grads(gp, 9, poison=np.nan)
    set_grads(cp, 9, poison=np.nan)
    good.keep()
    good.step()
    assert good.bad == 3 == c_opt._step(None)
    assert good.non_finite() == "weights"
