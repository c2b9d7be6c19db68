"""fit's guard with a built-in optimizer: the step itself keeps what it overwrites (the parameter
and each state buffer, pyrnn/optim.h's StepKeep) instead of the guard copying them before it.
Checked: the kept values are exactly the values before the step, for every built-in step and
option, on the host and over the device plumbing (tests/cuda_fakes.py); the step is bitwise the
plain one; fit restores the same weights and state either way (the guard's own copies forced
for comparison); custom steps get no keeps; state a step does not write is still kept."""
import numpy as np
import pytest

import pyrnn
from pyrnn import _fit_guard, _train, optim

from cuda_fakes import FakeDev, install

OPTIMIZERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.1),
    "sgd-momentum-wd": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
    "sgd-nesterov": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda ps: optim.Adam(ps, lr=1e-2),
    "adam-amsgrad-wd": lambda ps: optim.Adam(ps, lr=1e-2, weight_decay=0.1, amsgrad=True),
    "adamw-amsgrad": lambda ps: optim.AdamW(ps, lr=1e-2, amsgrad=True),
    "rmsprop": lambda ps: optim.RMSprop(ps, lr=1e-2),
    "rmsprop-centered-momentum": lambda ps: optim.RMSprop(ps, lr=1e-2, centered=True,
                                                          momentum=0.8, weight_decay=0.01),
}


def host(a):
    return a.a if isinstance(a, FakeDev) else np.asarray(a)


def model(dtype, device="cpu", activation="tanh"):
    # Big enough (> 64k elements) that the host step splits over the threads.
    return pyrnn.Sequential([pyrnn.Dense(300, 250, activation=activation, dtype=dtype, seed=0,
                                         device=device),
                             pyrnn.Dense(250, 3, dtype=dtype, seed=1, device=device)])


def set_grads(params, seed):
    rng = np.random.default_rng(seed)
    for p in params:
        g = rng.standard_normal(p.shape).astype(p.dtype)
        if isinstance(p.grad, np.ndarray):
            p.grad[...] = g
        else:
            p.grad.copy_from(g)


def snapshot(params, opt):
    return ([host(p.data).copy() for p in params],
            [{k: host(v).copy() if not isinstance(v, int) else v for k, v in st.items()}
             for st in opt.state])


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("device", ["cpu", "fake"])
def test_each_step_keeps_exactly_what_it_overwrites(monkeypatch, name, dtype, device):
    if device == "fake":
        install(monkeypatch)
    m, twin = model(dtype, "cuda" if device == "fake" else "cpu"), model(dtype)
    params, twin_params = list(m.parameters()), list(twin.parameters())
    opt, twin_opt = OPTIMIZERS[name](params), OPTIMIZERS[name](twin_params)
    good = _fit_guard.LastGood(params, opt)
    assert good.fused
    for step in range(3):
        set_grads(params, step)
        set_grads(twin_params, step)
        before = snapshot(params, opt)
        good.keep()
        good.step()
        twin_opt.step()  # the plain step, no keeps
        # What was kept is the parameters and state as they were before this step ...
        for kept, want in zip(good.weights, before[0]):
            assert same(host(kept[0]), want)
        assert [set(k) for k in good.state] == [set(b) for b in before[1]]
        for kept, want in zip(good.state, before[1]):
            for k, v in want.items():
                assert (same(host(kept[k]), v) if isinstance(v, np.ndarray) else kept[k] == v), k
        # ... and the step is the plain one, bit for bit.
        for p, q in zip(params, twin_params):
            assert same(host(p.data), q.data)
        for st, tw in zip(opt.state, twin_opt.state):
            assert set(st) == set(tw)
            for k in st:
                v = st[k]
                assert same(host(v), tw[k]) if not isinstance(v, int) else v == tw[k]
    # restore() puts the last step's "before" back, weights and state.
    good.restore()
    for p, want in zip(params, before[0]):
        assert same(host(p.data), want)
    assert opt.steps == 2
    for st, want in zip(opt.state, before[1]):
        assert set(st) == set(want)


def _diverging_fit(name, fused, monkeypatch):
    """A fit that fails at a later batch; (weights, state, message) after it."""
    if not fused:
        monkeypatch.setattr(optim, "_keeps_in_step", lambda o: False)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 300)).astype(np.float32)
    y = rng.standard_normal((64, 3)).astype(np.float32)
    if name == "state":  # batch 4's inputs overflow Adam's second moment: the step goes Inf
        x[24:32] *= 1e18
        make = lambda ps: optim.Adam(ps, lr=1e-2, amsgrad=True)  # noqa: E731
    elif name == "weights":  # batch 4's gradient overflows float32 (its loss, in float64, not)
        x[24:32] *= 1e20
        make = lambda ps: optim.SGD(ps, lr=1e-2, momentum=0.5)  # noqa: E731
    else:  # batch 4's inputs overflow the forward: its loss is Inf
        x[24:32] = 3e38
        make = lambda ps: optim.RMSprop(ps, lr=1e-3, centered=True, momentum=0.5)  # noqa: E731
    m = model("float32", activation=None)  # (tanh would saturate: no overflow)
    opt = make(m.parameters())
    with pytest.raises(RuntimeError, match="batch 4") as err:
        m.fit(x, y, loss="mse", optimizer=opt, epochs=1, batch_size=8, verbose=0,
              shuffle=False, clip_norm=1e30)
    return snapshot(list(m.parameters()), opt), opt.steps, str(err.value)


@pytest.mark.parametrize("name", ["state", "weights", "loss"])
def test_fit_restores_the_same_with_the_guards_own_copies(monkeypatch, name):
    reads = []
    real = _train.all_finite_arrays
    monkeypatch.setattr(_train, "all_finite_arrays", lambda a: reads.append(1) or real(a))
    (w1, s1), n1, msg1 = _diverging_fit(name, True, monkeypatch)
    assert not reads  # the step counted its non-finite values: no read of the guard's own
    (w0, s0), n0, msg0 = _diverging_fit(name, False, monkeypatch)
    assert reads
    assert msg1 == msg0 and n1 == n0 == (2 if name == "loss" else 3)  # before step 3 / 4
    want = {"state": "made the optimizer state non-finite",
            "weights": "made the weights non-finite", "loss": "non-finite training loss"}
    assert want[name] in msg1
    assert all(same(a, b) for a, b in zip(w1, w0))
    for a, b in zip(s1, s0):
        assert set(a) == set(b)
        for k in a:
            assert same(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k]


def test_fit_with_a_built_in_optimizer_copies_nothing_itself(monkeypatch):
    # model.parameters() makes new Parameter objects at every call: the guard matches the
    # optimizer's to fit's by their memory, and only its first copy (the start) is its own.
    m = model("float32")
    copies = []
    real = _fit_guard.LastGood._keep_state
    monkeypatch.setattr(_fit_guard.LastGood, "_keep_state",
                        lambda self: copies.append(1) or real(self))
    x = np.random.default_rng(0).standard_normal((32, 300)).astype(np.float32)
    m.fit(x, x[:, :3], loss="mse", optimizer=optim.Adam(m.parameters()), batch_size=8,
          verbose=0)
    assert len(copies) == 1
    assert _fit_guard.LastGood(list(m.parameters()), optim.Adam(m.parameters())).fused


def test_built_in_steps_report_what_they_made_non_finite():
    ps = list(pyrnn.Dense(4, 3, seed=0).parameters())
    opt = optim.Adam(ps, lr=1e-2)
    set_grads(ps, 0)
    assert opt.step() is None and opt._step(None) == 0  # step() returns nothing, as torch's
    ps[0].grad[0, 0] = np.float32(3e38)  # its square overflows the second moment
    assert opt._step(None) == 2
    ps[1].grad[0] = np.nan
    assert opt._step(None) == 3

    class Own(optim.SGD):
        def _update(self, data, grad, st):
            data -= grad

    assert Own(ps)._step(None) is None  # a custom step reports nothing: the guard reads


def test_a_step_wrapped_on_the_object_is_the_one_fit_calls():
    # mock.patch.object(opt, "step", wraps=...) and the like: fit must call that, not the
    # class's step underneath it.
    m = model("float32")
    opt = optim.Adam(m.parameters())
    calls = []
    real = opt.step
    opt.step = lambda: calls.append(1) or real()
    assert not _fit_guard.LastGood(list(m.parameters()), opt).fused
    x = np.random.default_rng(0).standard_normal((16, 300)).astype(np.float32)
    m.fit(x, x[:, :3], loss="mse", optimizer=opt, batch_size=8, verbose=0)
    assert len(calls) == 2 and opt.steps == 2


def test_non_finite_state_the_step_only_copies_stops_fit_as_before(monkeypatch):
    # A loaded max_exp_avg_sq holding Inf, which an Adam without amsgrad never writes: the
    # guard's read found it; with the step keeping the copies, the guard reads it still.
    def run(fused):
        if not fused:
            monkeypatch.setattr(optim, "_keeps_in_step", lambda o: False)
        m = model("float32")
        opt = optim.Adam(m.parameters(), lr=1e-3)
        set_grads(list(m.parameters()), 0)
        opt.step()
        sd = opt.state_dict()
        sd["state"][0]["max_exp_avg_sq"] = np.full_like(sd["state"][0]["exp_avg"], np.inf)
        opt.load_state_dict(sd)
        x = np.random.default_rng(0).standard_normal((16, 300)).astype(np.float32)
        assert _fit_guard.LastGood(list(m.parameters()), opt).fused == fused
        with pytest.raises(RuntimeError) as err:
            m.fit(x, x[:, :3], loss="mse", optimizer=opt, batch_size=8, verbose=0,
                  shuffle=False)
        return str(err.value)
    fused_msg = run(True)
    assert "batch 1 made the optimizer state non-finite" in fused_msg
    assert fused_msg == run(False)


def test_keeps_may_be_any_writable_buffer_of_the_dtype():
    import array
    p, g, m, v = (np.zeros(8, np.float32) for _ in range(4))
    p[:] = 1
    kept = array.array("f", [7.0] * 8)
    assert _train.adam_step(p, g, m, v, None, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False, 1,
                            keep=(kept, None, None, None)) == 0
    assert list(kept) == [1.0] * 8


def test_custom_steps_get_no_keeps():
    ps = list(model("float32").parameters())

    class OwnUpdate(optim.Adam):
        def _update(self, data, grad, st):
            data -= 0.01 * grad

    class OwnStep(optim.SGD):
        def step(self):
            super().step()

    assert _fit_guard.LastGood(ps, optim.AdamW(ps)).fused  # a built-in subclass, unchanged
    # A small model: the guard's own copies are as cheap as the step's bookkeeping.
    small = list(pyrnn.Dense(200, 100, seed=0).parameters())
    assert sum(p.size for p in ps) >= _fit_guard.FUSE_ELEMENTS > sum(p.size for p in small)
    assert not _fit_guard.LastGood(small, optim.Adam(small)).fused
    assert not _fit_guard.LastGood(ps, OwnUpdate(ps)).fused
    assert not _fit_guard.LastGood(ps, OwnStep(ps)).fused
    # An optimizer over some of the parameters: the others are copied by keep() itself.
    good = _fit_guard.LastGood(ps, optim.SGD(ps[:2], lr=0.1))
    assert good.fused and len(good.unstepped) == 2
    ps[3].data[...] = 7
    good.keep()
    assert (good.weights[3][0] == 7).all()


def test_state_the_step_does_not_write_is_kept_as_well():
    # An Adam without amsgrad that loaded a state holding max_exp_avg_sq: its step never writes
    # that buffer, the guard still keeps (and restores) it.
    ps = list(model("float64").parameters())
    opt = optim.Adam(ps, lr=1e-2)
    set_grads(ps, 0)
    opt.step()
    sd = opt.state_dict()
    for st in sd["state"]:
        st["max_exp_avg_sq"] = np.full_like(st["exp_avg"], 0.25)
    opt.load_state_dict(sd)
    good = _fit_guard.LastGood(ps, opt)
    for st in opt.state:  # changed after the guard's first copy: only the step's keep has it
        st["max_exp_avg_sq"][...] = 0.5
    good.keep()
    good.step()
    for kept in good.state:
        assert (kept["max_exp_avg_sq"] == 0.5).all()
    for st in opt.state:
        st["max_exp_avg_sq"][...] = 9
    good.restore()
    assert all((st["max_exp_avg_sq"] == 0.5).all() for st in opt.state)


def test_the_kernels_check_their_keeps():
    from pyrnn import _train
    n = 8
    p, g, m, v = (np.zeros(n, np.float32) for _ in range(4))
    k = np.zeros(n, np.float32)
    with pytest.raises(RuntimeError, match="keep.state.2. is given, but the step writes no "
                                           r"max_exp_avg_sq \(amsgrad is off\)"):
        _train.adam_step(p, g, m, v, None, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False, 1,
                         keep=(None, None, None, k))
    with pytest.raises(RuntimeError, match="param and keep.param overlap"):
        _train.adam_step(p, g, m, v, None, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False, 1,
                         keep=(p, None, None, None))
    with pytest.raises(ValueError, match="keep state.0. has 4 elements, expected 8"):
        _train.sgd_step(p, g, m, 0.1, 0.9, 0.0, 0.0, False, True, keep=(None, k[:4], None, None))
    with pytest.raises(ValueError, match="keep must be"):
        _train.sgd_step(p, g, None, 0.1, 0.0, 0.0, 0.0, False, True, keep=(k,))
    with pytest.raises(ValueError, match="dtype mismatch"):
        _train.rmsprop_step(p, g, m, None, None, 1e-2, 0.99, 1e-8, 0.0, 0.0, False,
                            keep=(np.zeros(n), None, None, None))


class _EditList(pyrnn.callbacks.Callback):
    """Changes the optimizer's list (torch's param_groups[0]["params"]) at a batch's start."""

    def __init__(self, opt, at_batch, edit):
        super().__init__()
        self.opt, self.at, self.edit, self.seen = opt, at_batch, edit, 0

    def on_train_batch_begin(self, batch, logs=None):
        if self.seen == self.at:
            self.edit(self.opt.param_groups[0]["params"])
        self.seen += 1


@pytest.mark.parametrize("edit", ["append", "pop"])
def test_a_list_changed_mid_fit_is_stepped_as_the_plain_guard_steps_it(monkeypatch, edit):
    # Unfreezing a layer from a callback: the fused guard kept its pairing from the start of
    # fit, so the step raised IndexError (appended) or ValueError (removed) halfway through,
    # some parameters stepped, nothing restored.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 300)).astype(np.float32)
    y = rng.standard_normal((32, 3)).astype(np.float32)
    results = []
    for fused in (True, False):
        with monkeypatch.context() as mp:
            if not fused:
                mp.setattr(optim, "_keeps_in_step", lambda o: False)
            m = model("float32")
            first, head = list(m.layers[0].parameters()), list(m.layers[1].parameters())
            opt = optim.Adam(first if edit == "append" else first + head, lr=1e-2)
            assert _fit_guard.LastGood(list(m.parameters()), opt).fused == fused
            change = (lambda ps: ps.extend(head)) if edit == "append" else (lambda ps: ps.pop(0))
            m.fit(x, y, loss="mse", optimizer=opt, epochs=1, batch_size=8, verbose=0,
                  shuffle=False, callbacks=[_EditList(opt, 2, change)])
            results.append(snapshot(list(m.parameters()), opt))
            steps = [st["step"] for st in opt.state]
            assert steps == ([4, 4, 2, 2] if edit == "append" else [4, 4, 4])
    (w1, s1), (w0, s0) = results
    assert all(same(a, b) for a, b in zip(w1, w0))
    for a, b in zip(s1, s0):
        assert set(a) == set(b) and all(
            same(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k] for k in a)


def _diverging(monkeypatch, fused, bad_from=16):
    """(x, y, model) of a fit whose batches of 8 from sample `bad_from` on have an Inf loss;
    the guard's fused path, or not."""
    if not fused:
        monkeypatch.setattr(optim, "_keeps_in_step", lambda o: False)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 300)).astype(np.float32)
    x[bad_from:] = 3e38
    y = rng.standard_normal((24, 3)).astype(np.float32)
    return x, y, model("float32", activation=None)


@pytest.mark.parametrize("fused", [True, False])
def test_a_restore_after_the_list_changed_pairs_each_state_with_its_parameter(monkeypatch,
                                                                            fused):
    # The kept state (a list paired with the old parameter list) went back as it was: 2 states
    # for 4 parameters, and the appended head was then never stepped.
    x, y, m = _diverging(monkeypatch, fused)  # batch 3's loss is Inf
    first, head = list(m.layers[0].parameters()), list(m.layers[1].parameters())
    opt = optim.Adam(first, lr=1e-2)
    with pytest.raises(RuntimeError, match="batch 2"):
        m.fit(x, y, loss="mse", optimizer=opt, epochs=1, batch_size=8, verbose=0,
              shuffle=False, callbacks=[_EditList(opt, 2, lambda ps: ps.extend(head))])
    state = opt.state_dict()["state"]  # (re-paired with the list by the optimizer's sync)
    assert len(state) == len(opt.params) == 4
    assert [st.get("step") for st in state] == [1, 1, None, None]  # as before batch 1's step
    for p in opt.params:
        p.grad[...] = 1
    opt.step()
    assert [st["step"] for st in opt.state] == [2, 2, 1, 1]


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("edit", ["relist", "remove"])
def test_a_restore_pairs_state_by_parameter(monkeypatch, fused, edit):
    # By object identity: parameters listed anew (model.parameters() again) got {} back, and
    # a parameter taken out kept its later state among those taken out (helper-148).
    x, y, m = _diverging(monkeypatch, fused)  # batch 3's loss is Inf
    opt = optim.Adam(m.parameters(), lr=1e-2)
    change = ((lambda ps: ps.__setitem__(slice(None), list(m.parameters()))) if edit == "relist"
              else (lambda ps: ps.pop()))
    with pytest.raises(RuntimeError, match="batch 3"):
        m.fit(x, y, loss="mse", optimizer=opt, epochs=1, batch_size=8, verbose=0,
              shuffle=False, callbacks=[_EditList(opt, 2, change)])
    # the state before batch 2's step (batch 2's loss was the last finite one)
    opt._sync_params()
    assert [st.get("step") for st in opt.state] == [1] * len(opt.params)
    if edit == "remove":
        gone = list(m.parameters())[-1]
        assert opt._left[gone][1]["step"] == 1
        opt.param_groups[0]["params"].append(gone)
        for p in opt.params:
            p.grad[...] = 1
        opt.step()
        assert [st["step"] for st in opt.state] == [2] * 4


@pytest.mark.parametrize("fused", [True, False])
def test_a_restore_keeps_the_state_of_a_parameter_put_back_or_taken_out_since(monkeypatch,
                                                                              fused):
    # Put back after the last keep: the restore's own sync took its state out of _left, then
    # paired it with nothing; taken out with no state at the keep: _left kept the state of the
    # step the restore undid (helper-150).
    for case in ("put back", "fresh, taken out"):
        # batch 3's loss is Inf (put back at 3's start), or batch 2's
        x, y, m = _diverging(monkeypatch, fused, 16 if case == "put back" else 8)
        opt = optim.Adam(m.parameters(), lr=1e-2)
        store = {}
        edits = [_EditList(opt, 1, lambda ps: store.setdefault("p", ps.pop()))]
        if case == "put back":
            edits.append(_EditList(opt, 2, lambda ps: ps.append(store["p"])))
        with pytest.raises(RuntimeError, match="non-finite"):
            m.fit(x, y, loss="mse", optimizer=opt, epochs=1, batch_size=8, verbose=0,
                  shuffle=False, callbacks=edits)
        state = opt.state_dict()["state"]  # (re-paired with the list by the optimizer's sync)
        if case == "put back":
            assert [st.get("step") for st in state] == [1, 1, 1, 1] and not opt._left
        else:  # the weights are those before the first step: so is its (no) state
            assert [st.get("step") for st in state] == [None] * 3 and not opt._left


def test_a_restore_is_whole_when_the_list_changed_since_is_refused():
    # The restore synced the list first: a duplicate a callback appended made it raise with
    # the weights back and the state not (helper-152). The kept state goes back with the list
    # it was kept for; the next sync refuses the duplicate.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 300)).astype(np.float32)
    y = rng.standard_normal((12, 3)).astype(np.float32)
    x[8:] = 3e38
    m = model("float32", activation=None)
    opt = optim.Adam(m.parameters(), lr=0.1)

    class Dup(pyrnn.callbacks.Callback):
        def on_train_batch_end(self, b, logs=None):
            if b == 1:
                opt.param_groups[0]["params"].append(list(m.parameters())[0])
    with pytest.raises(RuntimeError, match="non-finite training loss"):
        m.fit(x, y, loss="mse", optimizer=opt, epochs=1, batch_size=4, verbose=0,
              shuffle=False, callbacks=[Dup()])
    assert [st["step"] for st in opt.state] == [1] * 4 and opt.steps == 1
    with pytest.raises(ValueError, match="appears twice"):
        opt.step()
