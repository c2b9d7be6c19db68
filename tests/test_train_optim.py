"""Optimizers (several steps, every option) and clip_grad_norm against PyTorch; pyrnn.init
distributions against torch.nn.init's (statistics) and orthogonality (exactly)."""
import collections
import math

import numpy as np
import pytest

import pyrnn
from pyrnn import init, optim

from duck_layer import Whitened

torch = pytest.importorskip("torch")

SHAPES = [(4, 3), (5,), (2, 3, 2)]


def make_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    data = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [np.zeros(s, dtype) for s in SHAPES]
    return [pyrnn.Parameter(f"p{i}", d, g) for i, (d, g) in enumerate(zip(data, grads))]


def run_both(make_ours, make_torch, dtype, steps=5):
    """Same parameters and the same gradient sequence through both optimizers."""
    params = make_params(dtype)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    opt, topt = make_ours(params), make_torch(tparams)
    rng = np.random.default_rng(1)
    for _ in range(steps):
        for p, tp in zip(params, tparams):
            g = rng.standard_normal(p.shape).astype(dtype)
            p.grad[...] = g
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
    return params, tparams


CASES = {
    "sgd": (lambda p: optim.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd_momentum": (lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
                     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    "sgd_dampening_wd": (lambda p: optim.SGD(p, lr=0.05, momentum=0.8, dampening=0.3,
                                             weight_decay=0.1),
                         lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, dampening=0.3,
                                                   weight_decay=0.1)),
    "sgd_nesterov_wd": (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True,
                                            weight_decay=0.01),
                        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True,
                                                  weight_decay=0.01)),
    "adam": (lambda p: optim.Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    "adam_wd_betas": (lambda p: optim.Adam(p, lr=0.02, betas=(0.8, 0.99), eps=1e-6,
                                           weight_decay=0.1),
                      lambda p: torch.optim.Adam(p, lr=0.02, betas=(0.8, 0.99), eps=1e-6,
                                                 weight_decay=0.1)),
    "adam_amsgrad": (lambda p: optim.Adam(p, lr=0.01, amsgrad=True),
                     lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True)),
    "adamw": (lambda p: optim.AdamW(p, lr=0.01), lambda p: torch.optim.AdamW(p, lr=0.01)),
    "adamw_wd_amsgrad": (lambda p: optim.AdamW(p, lr=0.03, weight_decay=0.2, amsgrad=True),
                         lambda p: torch.optim.AdamW(p, lr=0.03, weight_decay=0.2,
                                                     amsgrad=True)),
    "rmsprop": (lambda p: optim.RMSprop(p, lr=0.01), lambda p: torch.optim.RMSprop(p, lr=0.01)),
    "rmsprop_momentum_wd": (lambda p: optim.RMSprop(p, lr=0.01, alpha=0.9, momentum=0.5,
                                                    weight_decay=0.1),
                            lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, momentum=0.5,
                                                          weight_decay=0.1)),
    "rmsprop_centered": (lambda p: optim.RMSprop(p, lr=0.01, centered=True, momentum=0.3,
                                                 eps=1e-4),
                         lambda p: torch.optim.RMSprop(p, lr=0.01, centered=True, momentum=0.3,
                                                       eps=1e-4)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(CASES))
def test_optimizer_matches_torch(case, dtype):
    ours, theirs = CASES[case]
    params, tparams = run_both(ours, theirs, dtype, steps=6)
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), **tol)


@pytest.mark.parametrize("case", ["adam", "adamw_amsgrad", "rmsprop", "rmsprop_centered"])
def test_adam_and_rmsprop_update_in_torchs_order(case):
    # The update is torch's addcdiv order, (lr * m) / denom: m / denom first differed by an
    # ulp now and then, and by 1% with subnormal gradients and eps (-7.1 for torch's -7.0;
    # helper-189). These steps are torch's bits.
    kw = {"lr": 0.01, "eps": 1e-45}
    ours, theirs = {
        "adam": (lambda p: optim.Adam(p, **kw), lambda p: torch.optim.Adam(p, **kw)),
        "adamw_amsgrad": (lambda p: optim.AdamW(p, amsgrad=True, **kw),
                          lambda p: torch.optim.AdamW(p, amsgrad=True, **kw)),
        "rmsprop": (lambda p: optim.RMSprop(p, **kw), lambda p: torch.optim.RMSprop(p, **kw)),
        "rmsprop_centered": (lambda p: optim.RMSprop(p, centered=True, **kw),
                             lambda p: torch.optim.RMSprop(p, centered=True, **kw)),
    }[case]
    g = np.array([1e-42, 1e-41, 3e-39, -7e-40, 0.3, -2.0], np.float32)
    p = pyrnn.Parameter("p", np.zeros(6, np.float32), g.copy())
    tp = torch.zeros(6, requires_grad=True)
    tp.grad = torch.tensor(g)
    opt, topt = ours([p]), theirs([tp])
    for _ in range(3):
        opt.step()
        topt.step()
    np.testing.assert_array_equal(p.data, tp.detach().numpy())


@pytest.mark.parametrize("dtype, huge", [(np.float32, 2e21), (np.float64, 2e156)])
def test_centered_rmsprop_past_overflow_matches_torch(dtype, huge):
    # Once grad_avg**2 overflows, square_avg is +Inf too: torch's fused addcmul gives an Inf
    # variance and a step of 0. pyrnn computed Inf - Inf = NaN and wrote NaN parameters (found by
    # helper-118). Huge gradients among ordinary ones, in the vector bodies and the tail, per ISA.
    g = np.where(np.arange(37) % 3 == 1, huge, np.linspace(-1, 1, 37)).astype(dtype)
    tp = torch.tensor(np.full(37, 0.5, dtype), requires_grad=True)
    topt = torch.optim.RMSprop([tp], lr=0.01, centered=True)
    tp.grad = torch.tensor(g)
    topt.step()
    want = tp.detach().numpy()
    assert np.isfinite(want).all() and (want[1::3] == 0.5).all()
    for isa in pyrnn._core.available_isas():
        pyrnn.set_cpu_isa(isa)
        p = pyrnn.Parameter("p", np.full(37, 0.5, dtype), g.copy())
        optim.RMSprop([p], lr=0.01, centered=True).step()
        np.testing.assert_allclose(p.data, want, rtol=1e-6 if dtype == np.float32 else 1e-13,
                                   err_msg=isa)
        assert (p.data[1::3] == 0.5).all(), isa


def _in_step_with_torch(case, params, held_back, edits, seed):
    """Six steps of pyrnn's and torch's optimizer `case` over params (the last `held_back`
    left out at first), the same gradients; edits {step: f(our list, torch's list, every torch
    tensor)} change both lists before that step. Every parameter ends equal to torch's.
    Returns ours."""
    ours, theirs = CASES[case]
    tps_all = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    n = len(params) - held_back
    opt, topt = ours(list(params[:n])), theirs(list(tps_all[:n]))
    rng = np.random.default_rng(seed)
    for step in range(6):
        if step in edits:
            edits[step](opt.param_groups[0]["params"], topt.param_groups[0]["params"], tps_all)
        for p, tp in zip(params, tps_all):
            g = rng.standard_normal(p.shape)
            p.grad[...] = g
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
    for p, tp in zip(params, tps_all):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-11, atol=1e-13)
    return opt


@pytest.mark.parametrize("case", ["sgd_momentum", "adam", "rmsprop_centered"])
def test_a_parameter_appended_to_param_groups_is_trained_as_in_torch(case):
    # param_groups[0]["params"] is the optimizer's own list, as torch's: a parameter appended
    # after some steps is stepped from then on with fresh state (Adam's step count its own),
    # the others' state continuing; and a removed one is no longer touched. Used to be zeroed by
    # zero_grad() but never stepped.
    params = make_params(np.float64)
    late = params[-1]
    opt = _in_step_with_torch(case, params, 1, {
        2: lambda ps, tps, every: (ps.append(late), tps.append(every[-1])),
        4: lambda ps, tps, every: (ps.pop(0), tps.pop(0))}, seed=2)
    with pytest.warns(RuntimeWarning, match=r"does not hold the state of the 1 parameter\(s\) "
                                            r"taken out of param_groups \('p0'\)"):
        assert len(opt.state_dict()["state"]) == len(opt.params)
    opt.param_groups[0]["params"].append(late)  # twice: refused, as at construction
    with pytest.raises(ValueError, match="appears twice"):
        opt.step()


@pytest.mark.parametrize("case", ["sgd_momentum", "adam", "rmsprop_centered"])
def test_a_parameter_taken_out_and_put_back_resumes_its_state_as_in_torch(case):
    # State was keyed by the Parameter object and dropped with it: a parameter removed then
    # appended again, or the list rebuilt from model.parameters(), restarted from zero (Adam's
    # bias correction with zeroed moments: a full-size step). torch keys state by tensor and
    # never drops it (helper-147).
    params = make_params(np.float64)
    _in_step_with_torch(case, params, 0, {
        2: lambda ps, tps, every: (ps.pop(), tps.pop()),
        4: lambda ps, tps, every: (ps.append(params[-1]), tps.append(every[-1]))}, seed=3)
    # The same parameters listed anew (new Parameter objects) keep their state.
    m = pyrnn.Sequential([pyrnn.Dense(3, 2, seed=0)])
    opt = optim.Adam(m.parameters(), lr=0.1)
    for q in opt.params:
        q.grad[...] = 1.0
    opt.step()
    opt.param_groups[0]["params"][:] = list(m.parameters())
    opt.step()
    assert [st["step"] for st in opt.state] == [2, 2]


def test_load_state_dict_replaces_the_state_of_parameters_taken_out_too():
    # A parameter taken out, state loaded, then put back found its old state; torch's load
    # replaces all state (helper-148).
    p = [pyrnn.Parameter(f"p{i}", np.ones(3), np.full(3, 0.5)) for i in range(2)]
    t = [torch.ones(3, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    opt, topt = optim.Adam(p, lr=0.1), torch.optim.Adam(t, lr=0.1)
    for tp in t:
        tp.grad = torch.full((3,), 0.5, dtype=torch.float64)
    for _ in range(3):
        opt.step()
        topt.step()
    opt.param_groups[0]["params"].pop()
    topt.param_groups[0]["params"].pop()
    opt.load_state_dict(optim.Adam([p[0]], lr=0.1).state_dict())
    topt.load_state_dict(torch.optim.Adam([t[0]], lr=0.1).state_dict())
    opt.param_groups[0]["params"].append(p[1])
    topt.param_groups[0]["params"].append(t[1])
    p[1].grad[...] = -2.0
    t[1].grad = torch.full((3,), -2.0, dtype=torch.float64)
    opt.step()
    topt.step()
    assert opt.state[1]["step"] == 1
    np.testing.assert_allclose(p[1].data, t[1].detach().numpy(), rtol=1e-12)


def test_a_custom_optimizers_own_state_comes_back_as_it_was():
    # A parameter taken out and put back got its state re-validated: own arrays flattened,
    # values of its own dropped (helper-150).
    p = [pyrnn.Parameter(f"w{i}", np.ones((2, 2)), np.ones((2, 2))) for i in range(2)]
    opt = Whitened(p)  # (keeps "L", np.eye(2), and a count "n" per parameter)
    opt.step()
    gone = opt.param_groups[0]["params"].pop()
    opt.step()
    opt.param_groups[0]["params"].append(gone)
    opt.step()
    assert [st["n"] for st in opt.state] == [3, 2]
    assert all(st["L"].shape == (2, 2) for st in opt.state)


def test_a_step_refused_for_an_overlap_changes_nothing():
    # The kernel refused a parameter whose grad aliases its data, after the parameters before
    # it were stepped (helper-147): checked with the others now, before any update.
    a = np.ones(4)
    p0 = pyrnn.Parameter("p0", np.zeros(4), np.ones(4))
    p1 = pyrnn.Parameter("p1", a, a)
    with pytest.raises(ValueError, match="'p1': data and grad overlap"):
        optim.Adam([p0, p1], lr=0.1)
    opt = optim.Adam([p0], lr=0.1)
    buf = np.zeros(8)
    opt.param_groups[0]["params"].append(pyrnn.Parameter("p2", buf[:5], buf[3:]))
    with pytest.raises(ValueError, match="'p2': data and grad overlap"):
        opt.step()
    assert (p0.data == 0).all() and opt.state[0] == {} and opt.steps == 0
    half = np.zeros(8)  # neighbours, not overlapping: accepted
    optim.SGD([pyrnn.Parameter("p3", half[:4], half[4:])], lr=0.1).step()


def test_amsgrad_max_takes_nan_as_torch_maximum():
    # max_exp_avg_sq kept its old value over a NaN exp_avg_sq; torch.maximum gives NaN
    # (helper-147). Every ISA, a SIMD body and a tail.
    g1 = np.full(37, 0.5)
    g2 = g1.copy()
    g2[[1, 33]] = np.nan
    before = pyrnn.get_cpu_isa()
    for isa in pyrnn.info()["available_isas"]:
        pyrnn.set_cpu_isa(isa)
        try:
            p = pyrnn.Parameter("p", np.ones(37), np.zeros(37))
            t = torch.ones(37, dtype=torch.float64, requires_grad=True)
            opt = optim.Adam([p], lr=0.01, amsgrad=True)
            topt = torch.optim.Adam([t], lr=0.01, amsgrad=True)
            for g in (g1, g2):
                p.grad[...] = g
                t.grad = torch.tensor(g)
                opt.step()
                topt.step()
            want = topt.state[t]["max_exp_avg_sq"].numpy()
            np.testing.assert_array_equal(opt.state[0]["max_exp_avg_sq"], want, err_msg=isa)
            assert np.isnan(want[[1, 33]]).all()
        finally:
            pyrnn.set_cpu_isa(before)


def test_clip_grad_norm_of_a_norm_beyond_the_float_range_is_inf_as_torch():
    g = np.ones(2000)
    t = torch.zeros(2000, dtype=torch.float64, requires_grad=True)
    t.grad = torch.tensor(g)
    want = float(torch.nn.utils.clip_grad_norm_([t], 1.0, norm_type=0.01))
    p = pyrnn.Parameter("p", np.zeros(2000), g.copy())
    assert optim.clip_grad_norm([p], 1.0, norm_type=0.01) == want == math.inf
    np.testing.assert_array_equal(p.grad, t.grad.numpy())  # scaled by 0, as torch's
    q = pyrnn.Parameter("q", np.zeros(2000), g.copy())
    with pytest.raises(RuntimeError, match="total norm of order 0.01 of the gradients is inf"):
        optim.clip_grad_norm([q], 1.0, norm_type=0.01, error_if_nonfinite=True)  # (OverflowError)


def test_optimizer_updates_recurrent_layer_in_place_and_zero_grad():
    gru = pyrnn.GRU(3, 4, seed=0)
    before = {k: v.copy() for k, v in gru.params.items()}
    opt = optim.Adam(gru.parameters(), lr=0.1)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    out, _ = gru(x)
    gru.backward(np.ones_like(out))
    opt.step()
    for k in before:
        assert not np.allclose(gru.params[k], before[k]), k
    opt.zero_grad()
    assert all(not g.any() for g in gru.grads.values())
    # lr is a plain attribute: changing it takes effect at the next step.
    opt.lr = 0.0
    snap = {k: v.copy() for k, v in gru.params.items()}
    gru(x)
    gru.backward(np.ones_like(out))
    opt.step()
    for k in snap:
        np.testing.assert_array_equal(gru.params[k], snap[k])


def test_optimizer_state_dict_round_trip():
    params = make_params(np.float64)
    opt = optim.Adam(params, lr=0.01)
    for p in params:
        p.grad[...] = 1.0
    opt.step()
    sd = opt.state_dict()
    other = optim.Adam(params, lr=0.5)
    other.load_state_dict(sd)
    assert other.lr == 0.01 and other.state[0]["step"] == 1
    np.testing.assert_array_equal(other.state[0]["exp_avg"], opt.state[0]["exp_avg"])


def _stepped(cls, params, **kw):
    for p in params:
        p.grad[...] = 0.5
    opt = cls(params, **kw)
    opt.step()
    opt.step()
    return opt


def _same_state(a, b):
    assert a.steps == b.steps and a.hyperparameters() == b.hyperparameters()
    assert [sorted(st) for st in a.state] == [sorted(st) for st in b.state]
    for sa, sb in zip(a.state, b.state):
        for k in sa:
            np.testing.assert_array_equal(sa[k], sb[k])


@pytest.mark.parametrize("change, exc, pattern", [
    (lambda sd: sd.update(steps="x"), TypeError, r"steps must be an int, got str"),
    (lambda sd: sd.update(steps=-2), ValueError, r"steps must be in \[0, 2\*\*62\], got -2"),
    (lambda sd: sd["hyper"].update(lr="oops"), TypeError, r"hyperparameters: lr must be a number"),
    (lambda sd: sd["hyper"].update(betas=(0.9, 1.0)), ValueError, r"beta2 must be in"),
    (lambda sd: sd["hyper"].update(momentum=0.9), ValueError, r"unknown: \['momentum'\]"),
    (lambda sd: sd["hyper"].pop("eps"), ValueError, r"missing: \['eps'\]"),
    (lambda sd: sd.update({"class": "SGD"}), ValueError, r"state_dict is from SGD, not Adam"),
    (lambda sd: sd["state"][1].update(exp_avg=np.zeros(4)), ValueError,
     r"state 'exp_avg' of 'p1' has shape \(4,\), expected \(5,\)"),
    (lambda sd: sd["state"][0].update(exp_avg_sq=np.zeros(12, np.int64)), ValueError,
     r"state 'exp_avg_sq' of 'p0' has dtype int64, expected float64"),
    (lambda sd: sd["state"][1].update(momentum_buffer=np.zeros(3)), ValueError,
     r"'momentum_buffer' of 'p1' is not Adam state"),
    (lambda sd: sd["state"][1].update(step=1.5), TypeError, r"state 'step' of 'p1' must be an int"),
    (lambda sd: sd["state"][1].update(exp_avg="abc"), TypeError, r"must be a real numeric array"),
    (lambda sd: sd["state"].pop(), ValueError, r"holds 2 parameter states, this optimizer has 3"),
    (lambda sd: sd.pop("hyper"), ValueError, r"lacks 'hyper'"),
], ids=["steps-str", "steps-negative", "lr-str", "beta2", "unknown-hyper", "missing-hyper",
        "class", "state-shape", "state-dtype", "state-name", "step-float", "state-str",
        "state-count", "no-hyper"])
def test_optimizer_load_state_dict_is_all_or_nothing(change, exc, pattern):
    """Everything is validated before anything changes: a failed load leaves the optimizer
    exactly as it was (steps, state, hyperparameters), and bad hyperparameters fail here,
    not at the next step()."""
    params = make_params(np.float64)
    sd = _stepped(optim.Adam, params, lr=0.01, amsgrad=True).state_dict()
    change(sd)
    target = _stepped(optim.Adam, make_params(np.float64), lr=0.2)
    before = _stepped(optim.Adam, make_params(np.float64), lr=0.2)
    with pytest.raises(exc, match=pattern):
        target.load_state_dict(sd)
    _same_state(target, before)


def test_optimizer_load_state_dict_refuses_another_class():
    params = make_params(np.float64)
    sgd = _stepped(optim.SGD, params, lr=0.1, momentum=0.9).state_dict()
    adam = optim.Adam(params)
    with pytest.raises(ValueError, match="state_dict is from SGD, not Adam"):
        adam.load_state_dict(sgd)
    del sgd["class"]  # a dict without the class: its hyperparameters give it away
    with pytest.raises(ValueError, match=r"do not fit Adam \(unknown: \['dampening'"):
        adam.load_state_dict(sgd)
    with pytest.raises(ValueError, match="from Adam, not AdamW"):  # same hyperparameter names
        optim.AdamW(params).load_state_dict(_stepped(optim.Adam, params).state_dict())
    assert adam.steps == 0 and adam.state == [{}, {}, {}]


@pytest.mark.parametrize("cls, kw", [(optim.SGD, dict(lr=0.1, momentum=0.9)),
                                     (optim.Adam, dict(lr=0.01, amsgrad=True)),
                                     (optim.RMSprop, dict(centered=True, momentum=0.5))])
def test_optimizer_load_state_dict_accepts_lists_and_parameter_shapes(cls, kw):
    """State given as lists (e.g. from JSON) or in the parameter's own shape is converted;
    training then continues exactly as with the original state."""
    params = make_params(np.float32)
    opt = _stepped(cls, params, **kw)
    sd = opt.state_dict()
    as_lists = dict(sd, state=[{k: (v.tolist() if isinstance(v, np.ndarray) else v)
                                for k, v in st.items()} for st in sd["state"]])
    shaped = dict(sd, state=[{k: (v.reshape(p.shape) if isinstance(v, np.ndarray) else v)
                              for k, v in st.items()} for p, st in zip(params, sd["state"])])
    for variant in (as_lists, shaped):
        other = cls(params, lr=0.5)
        other.load_state_dict(variant)
        _same_state(other, opt)
        assert all(v.dtype == np.float32 and v.shape == (p.size,)
                   for p, st in zip(params, other.state) for v in st.values()
                   if isinstance(v, np.ndarray))


def test_optimizer_argument_errors():
    params = make_params(np.float32)
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        optim.Adam(params, lr=-1)
    with pytest.raises(ValueError, match="beta"):
        optim.Adam(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="twice"):
        optim.SGD(params + params[:1], lr=0.1)
    with pytest.raises(TypeError, match="Parameter"):
        optim.SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError):
        optim.SGD(params[0], lr=0.1)


@pytest.mark.parametrize("norm_type", [2.0, math.inf, 1.0, 3.0])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    rng = np.random.default_rng(2)
    params = make_params(np.float32)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    for p, tp in zip(params, tparams):
        g = rng.standard_normal(p.shape).astype(np.float32)
        p.grad[...] = g
        tp.grad = torch.tensor(g)
    total = optim.clip_grad_norm(params, max_norm, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type=norm_type)
    assert isinstance(total, float)
    np.testing.assert_allclose(total, float(ttotal), rtol=1e-5)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("foreach", [None, True, False])
def test_clip_grad_norm_takes_torchs_foreach_keyword(foreach):
    # A ported torch call passing foreach= was a TypeError (hunt helper-201).
    params = make_params(np.float32)
    for p in params:
        p.grad[...] = 1.0
    before = [p.grad.copy() for p in params]
    total = optim.clip_grad_norm_(params, 0.5, foreach=foreach, error_if_nonfinite=True)
    want = math.sqrt(sum(g.size for g in before))
    assert total == pytest.approx(want)
    for p in params:
        np.testing.assert_allclose(p.grad, 0.5 / (want + 1e-6), rtol=1e-6)
    with pytest.raises(TypeError, match="foreach must be True or False"):
        optim.clip_grad_norm(params, 0.5, foreach="yes")


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_clip_grad_norm_counts_a_merged_bias_once(kind):
    # As the README says: torch's total norm counts both of its biases, pyrnn's one merged bias
    # once, so torch's squared norm is pyrnn's plus the merged biases' (all of bias_l* but a
    # GRU's n part, whose torch biases b_in and b_hn pyrnn keeps apart too).
    torch.manual_seed(0)
    t = getattr(torch.nn, kind)(3, 4, num_layers=2).double()
    layer = pyrnn.from_torch(t)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    y, _ = layer(x)
    dy = np.cos(np.arange(y.size)).reshape(y.shape)
    layer.backward(dy)
    (t(torch.tensor(x))[0] * torch.tensor(dy)).sum().backward()
    ours = optim.clip_grad_norm(list(layer.parameters()), math.inf)
    theirs = float(torch.nn.utils.clip_grad_norm_(t.parameters(), math.inf))
    merged = [g for name, g in layer.grads.items() if name.startswith("bias_l")]
    extra = sum(float(np.sum((g[:8] if kind == "GRU" else g) ** 2)) for g in merged)
    assert len(merged) == 2 and extra > 0
    assert ours < theirs
    np.testing.assert_allclose(theirs ** 2, ours ** 2 + extra, rtol=1e-12)


def test_clip_grad_norm_nonfinite():
    params = make_params(np.float64)
    params[0].grad[0, 0] = np.inf
    with pytest.raises(RuntimeError, match="non"):
        optim.clip_grad_norm(params, 1.0, error_if_nonfinite=True)
    assert optim.clip_grad_norm(params, 1.0) == math.inf


@pytest.mark.parametrize("norm_type", [math.inf, 2.0, 3.0])
@pytest.mark.parametrize("where", [0, -1])
def test_clip_grad_norm_nan_in_any_parameter(norm_type, where):
    # The inf-norm ignored a NaN in any parameter but the first (Python's max() keeps an earlier
    # value over a later NaN): norm 4, the finite gradients clipped, error_if_nonfinite silent.
    params = make_params(np.float64)
    assert len(params) > 1
    params[where].grad.reshape(-1)[0] = np.nan
    with pytest.raises(RuntimeError, match="non"):
        optim.clip_grad_norm(params, 1.0, norm_type=norm_type, error_if_nonfinite=True)
    assert math.isnan(optim.clip_grad_norm(params, 1.0, norm_type=norm_type))
    assert all(np.isnan(p.grad).all() for p in params)  # torch: every gradient times nan


# ---- init -------------------------------------------------------------------------------------

def torch_sample(fn, shape, n_rep=1, **kw):
    torch.manual_seed(0)
    return np.concatenate([fn(torch.empty(shape), **kw).numpy().ravel() for _ in range(n_rep)])


@pytest.mark.parametrize("name,ours,theirs,kw", [
    ("xavier_uniform", init.xavier_uniform_, torch.nn.init.xavier_uniform_, {"gain": 2.0}),
    ("xavier_normal", init.xavier_normal_, torch.nn.init.xavier_normal_, {"gain": 0.5}),
    ("kaiming_uniform", init.kaiming_uniform_, torch.nn.init.kaiming_uniform_, {}),
    ("kaiming_normal", init.kaiming_normal_, torch.nn.init.kaiming_normal_,
     {"mode": "fan_out", "nonlinearity": "relu"}),
    # torch's keywords: nn.Linear's own init call, a slope for kaiming_normal_, U(a, b)
    ("kaiming_uniform_a", init.kaiming_uniform_, torch.nn.init.kaiming_uniform_,
     {"a": math.sqrt(5)}),
    ("kaiming_normal_a", init.kaiming_normal_, torch.nn.init.kaiming_normal_, {"a": 0.3}),
    ("uniform_ab", init.uniform_, torch.nn.init.uniform_, {"a": -0.3, "b": 0.3}),
])
def test_init_distributions_match_torch(name, ours, theirs, kw):
    shape = (300, 200, 3)  # fans include the receptive field (3)
    a = ours(np.empty(shape, np.float32), seed=0, **kw)
    b = torch_sample(theirs, shape, **kw)
    # Same spread (std within 1%), same support (bounds within 1%), mean ~ 0.
    np.testing.assert_allclose(a.std(), b.std(), rtol=0.01)
    assert abs(a.mean()) < 0.01 * a.std() * 10
    if "uniform" in name:
        np.testing.assert_allclose(np.abs(a).max(), np.abs(b).max(), rtol=0.01)
    else:
        # Gaussian: fourth moment ratio 3 (uniform would give 1.8).
        assert abs(((a / a.std()) ** 4).mean() - 3.0) < 0.1


def test_init_arguments_are_torchs():
    # Named as torch names them, so torch code passes its keywords unchanged (kaiming's slope
    # is `a`, which collided with pyrnn's former name for the array); rng / seed are pyrnn's
    # generator, torch's `generator` has no counterpart.
    import inspect
    for name in init.__all__:
        if name in ("he_uniform_", "he_normal_"):
            continue
        ours = [p for p in inspect.signature(getattr(init, name)).parameters
                if p not in ("rng", "seed")]
        theirs = [p for p in inspect.signature(getattr(torch.nn.init, name)).parameters
                  if p != "generator"]
        assert ours == theirs, name
    w = np.empty((6, 4))
    init.kaiming_uniform_(tensor=w, a=math.sqrt(5), seed=0)
    assert np.abs(w).max() <= math.sqrt(1 / 4) + 1e-12  # gain sqrt(2 / 6), bound 1 / sqrt(fan)
    assert np.array_equal(init.constant_(w, val=0.5), np.full((6, 4), 0.5))


def test_init_kaiming_formula_and_gain():
    a = init.kaiming_uniform_(np.empty((50, 400)), seed=1)
    assert np.abs(a).max() <= math.sqrt(2.0) * math.sqrt(3.0 / 400) + 1e-12
    for nl, param in [("tanh", None), ("relu", None), ("leaky_relu", 0.2), ("selu", None),
                      ("sigmoid", None), ("linear", None)]:
        assert init.calculate_gain(nl, param) == pytest.approx(
            torch.nn.init.calculate_gain(nl, param))


@pytest.mark.parametrize("shape", [(6, 6), (4, 9), (9, 4), (3, 2, 5)])
def test_orthogonal_is_orthogonal(shape):
    a = init.orthogonal_(np.empty(shape), gain=1.5, seed=3)
    m = a.reshape(shape[0], -1) / 1.5
    rows, cols = m.shape
    if rows <= cols:
        np.testing.assert_allclose(m @ m.T, np.eye(rows), atol=1e-12)
    else:
        np.testing.assert_allclose(m.T @ m, np.eye(cols), atol=1e-12)


def test_orthogonal_float32_and_haar_signs():
    a = init.orthogonal_(np.empty((64, 64), np.float32), rng=np.random.default_rng(0))
    np.testing.assert_allclose(a @ a.T, np.eye(64), atol=1e-5)
    # Haar-distributed: the diagonal is not biased to be positive (sign fix of QR).
    diags = np.concatenate([np.diag(init.orthogonal_(np.empty((8, 8)), seed=s)) for s in range(50)])
    assert 0.35 < (diags > 0).mean() < 0.65


def test_init_seeding_and_targets():
    a = init.xavier_uniform_(np.empty((5, 4)), seed=7)
    b = init.xavier_uniform_(np.empty((5, 4)), rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    lstm = pyrnn.LSTM(3, 4)
    w = lstm.params["weight_hh_l0"]
    init.orthogonal_(w, seed=0)  # in place on a native view
    np.testing.assert_allclose(w.T @ w, np.eye(4), atol=1e-5)
    p = next(pyrnn.Dense(3, 2).parameters())
    init.zeros_(p)
    assert not p.data.any()
    with pytest.raises(TypeError):
        init.xavier_uniform_(np.empty((3, 3)), seed=1, rng=np.random.default_rng(1))
    with pytest.raises(ValueError, match="2 dimensions"):
        init.xavier_normal_(np.empty(5))
    with pytest.raises(TypeError):
        init.normal_([1.0, 2.0])


def test_custom_optimizer_state_dict_round_trip():
    # A subclass that keeps no hyperparameters() and needs its own constructor arguments: the
    # hyperparameter check (which builds a probe optimizer) must not get in its way.
    class MySGD(optim.Optimizer):
        def __init__(self, params, lr):
            super().__init__(params)
            self.lr = lr

        def _update(self, data, grad, state):
            data -= self.lr * grad
            state["n"] = state.get("n", 0) + 1

    layer = pyrnn.Dense(3, 2, seed=0)
    a = MySGD(layer.parameters(), 0.1)
    a.step()
    b = MySGD(layer.parameters(), 0.1)
    b.load_state_dict(a.state_dict())
    assert b.steps == 1 and b.state == a.state


def test_subclass_of_a_builtin_optimizer_loads_its_own_state_dict():
    # Its constructor needs another argument, and it keeps state of its own (an array shaped
    # like the parameter and a tuple): the built-in checks apply to what it inherits only.
    class Warm(optim.Adam):
        def __init__(self, params, warmup, **kw):
            super().__init__(params, **kw)
            self.warmup = warmup

        def _update(self, data, grad, state):
            super()._update(data, grad, state)
            state["ema"] = data.copy()
            state["hist"] = (1, 2)

    layer = pyrnn.Dense(3, 2, seed=0)
    layer.grads["weight"][...] = 0.5
    a = Warm(layer.parameters(), 3, lr=0.01)
    a.step()
    b = Warm(layer.parameters(), 3, lr=0.5)
    b.load_state_dict(a.state_dict())
    assert b.lr == 0.01 and b.steps == 1
    for sa, sb in zip(a.state, b.state):
        assert sorted(sa) == sorted(sb) and sb["hist"] == (1, 2)
        np.testing.assert_array_equal(sa["ema"], sb["ema"])
        np.testing.assert_array_equal(sa["exp_avg"], sb["exp_avg"])
    bad = a.state_dict()
    bad["hyper"]["lr"] = -1.0  # the inherited checks still apply
    with pytest.raises(ValueError, match="state_dict hyperparameters"):
        b.load_state_dict(bad)
    adam = optim.Adam(layer.parameters())
    adam.step()
    sd = adam.state_dict()
    sd["state"][0]["ema"] = np.zeros(6, np.float32)  # the built-in class itself stays strict
    with pytest.raises(ValueError, match="'ema' of 'weight' is not Adam state"):
        adam.load_state_dict(sd)


def test_subclass_keeps_hyperparameters_it_fixes_and_its_own_arrays():
    # A subclass fixing some base hyperparameters (not listed in its hyperparameters()) keeps
    # them through load_state_dict, and an array of its own shape and dtype passes as given.
    class DecayAdam(optim.Adam):
        def __init__(self, params, lr=1e-3):
            super().__init__(params, lr=lr, weight_decay=0.1, amsgrad=True)

        def hyperparameters(self):
            return {"lr": self.lr}

        def _update(self, data, grad, state):
            super()._update(data, grad, state)
            state["row_norm"] = np.zeros(3)  # float64, not the parameter's shape

    layer = pyrnn.Dense(3, 2, seed=0)
    o = DecayAdam(layer.parameters(), lr=0.01)
    o.step()
    o.load_state_dict(o.state_dict())
    assert (o.lr, o.weight_decay, o.amsgrad) == (0.01, 0.1, True)
    assert o.state[0]["row_norm"].dtype == np.float64 and o.state[0]["row_norm"].shape == (3,)


def test_step_counts_are_bounded_and_a_failed_step_counts_nothing():
    # A per-parameter Adam step of 2**63 loaded, then every step() raised OverflowError while
    # the optimizer's and the parameter's counts still went up.
    params = make_params(np.float32)
    opt = optim.Adam(params, 1e-3)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["step"] = 2**63
    with pytest.raises(ValueError, match=r"must be in \[0, 2\*\*62\], got 9223372036854775808"):
        opt.load_state_dict(sd)
    sd["state"][0]["step"] = 2**62
    opt.load_state_dict(sd)
    params[1].data.flags.writeable = False  # cannot be updated in place
    steps, counts = opt.steps, [st.get("step") for st in opt.state]
    before = [p.data.copy() for p in params]
    with pytest.raises(ValueError, match="'p1': data must be a writable C-contiguous array"):
        opt.step()
    # Refused before any update (p0 was stepped before p1 failed).
    assert opt.steps == steps and [st.get("step") for st in opt.state] == counts
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.data, b)


def _ks_distance(samples, cdf):
    """Kolmogorov-Smirnov statistic of samples against a CDF."""
    s = np.sort(np.asarray(samples, np.float64).ravel())
    n = s.size
    f = cdf(s)
    return max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))


@pytest.mark.parametrize("make", [
    lambda: pyrnn.LSTM(5, 40, num_layers=2, bidirectional=True, seed=3),
    lambda: pyrnn.GRU(5, 40, seed=3),
    lambda: pyrnn.GRU(5, 40, seed=3, reset_after=True),
    lambda: pyrnn.RNN(5, 40, dtype="float64", seed=3)], ids=["lstm", "gru", "gru-after", "rnn"])
def test_default_init_is_pytorchs(make):
    # Weights U(-k, k), k = 1/sqrt(H); a bias entry is the sum of two such draws (torch's
    # b_ih + b_hh: triangular on [-2k, 2k]), except GRU reset_after's n-gate bias and bias_hn,
    # single draws. Parity tests copy weights across, so nothing else checks this. KS bound
    # 1.95/sqrt(n): p ~ 0.001 (fixed seeds: never flaky).
    layer = make()
    H = layer.hidden_size
    k = 1 / math.sqrt(H)
    uniform = lambda x: np.clip((x + k) / (2 * k), 0, 1)  # noqa: E731
    triangle = lambda x: np.where(x < 0, (x + 2 * k) ** 2, 8 * k * k - (2 * k - x) ** 2) \
        / (8 * k * k)  # noqa: E731
    single, summed = [], []
    for name, v in layer.params.items():
        v = np.asarray(v, np.float64)
        if name.startswith("weight") or name.startswith("bias_hn"):
            single.append(v.ravel())
        elif getattr(layer, "reset_after", False):
            summed.append(v[:2 * H])
            single.append(v[2 * H:])
        else:
            summed.append(v)
    single, summed = np.concatenate(single), np.concatenate(summed)
    assert np.abs(single).max() <= k and np.abs(summed).max() <= 2 * k
    assert np.abs(summed).max() > k  # a sum of two draws, not one
    assert _ks_distance(single, uniform) < 1.95 / math.sqrt(single.size)
    assert _ks_distance(summed, triangle) < 1.95 / math.sqrt(summed.size)
    # The seed decides it all: the same seed, the same values.
    again = make()
    for name, v in layer.params.items():
        np.testing.assert_array_equal(again.params[name], v)


def test_a_state_shape_error_names_each_shape_once():
    p = pyrnn.Dense(3, 2, seed=0)
    opt = optim.Adam(list(p.parameters()))
    sd = opt.state_dict()
    sd["state"] = [{"exp_avg": np.zeros((2, 3), np.float32)}, {"exp_avg": np.zeros(3, np.float32)}]
    with pytest.raises(ValueError, match=r"state 'exp_avg' of '.*bias' has shape \(3,\), "
                                         r"expected \(2,\)$"):
        opt.load_state_dict(sd)
    sd["state"] = [{"exp_avg": np.zeros(5, np.float32)}, {}]
    with pytest.raises(ValueError, match=r"has shape \(5,\), expected \(6,\) or \(2, 3\)$"):
        opt.load_state_dict(sd)


# ---- behaviours found unchecked by mutation testing ---------------------------------------

def test_sgd_by_name_uses_keras_learning_rate():
    # Documented (fit, optim.get): 'sgd' is built with lr=0.01, Keras' default, where SGD's
    # own default is PyTorch's 1e-3.
    params = make_params(np.float32)
    assert optim.get("sgd", params).lr == 0.01
    # Documented: names in any case.
    for name, cls in [("SGD", optim.SGD), ("Adam", optim.Adam), ("ADAMW", optim.AdamW),
                      ("RMSProp", optim.RMSprop)]:
        assert type(optim.get(name, params)) is cls, name
    m = pyrnn.Sequential([pyrnn.Dense(2, 1, seed=0)])
    m.fit(np.ones((2, 2)), np.ones((2, 1)), loss="mse", optimizer="sgd", verbose=0)
    assert m.optimizer.lr == 0.01


def test_load_state_dict_copies_the_callers_buffers():
    # The loaded state is the optimizer's own: writing into the caller's array afterwards
    # must not change it.
    params = make_params(np.float32)
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    sd = opt.state_dict()
    buf = np.zeros(params[1].shape, np.float32)
    sd["state"][1] = {"momentum_buffer": buf}
    opt.load_state_dict(sd)
    buf[...] = 99.0
    np.testing.assert_array_equal(opt.state[1]["momentum_buffer"], 0.0)


def test_load_state_dict_refuses_a_buffer_of_the_same_size_but_another_shape():
    # A (3, 4) buffer for a (4, 3) weight has the right size, but not the parameter's layout.
    params = make_params(np.float32)
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    sd = opt.state_dict()
    sd["state"][0] = {"momentum_buffer": np.zeros((3, 4), np.float32)}
    with pytest.raises(ValueError, match=r"has shape \(3, 4\), expected \(12,\) or \(4, 3\)"):
        opt.load_state_dict(sd)


def test_loaded_hyperparameters_are_normalised_as_the_constructor_does():
    # betas saved (or edited) as a list come back as the tuple Adam(betas=...) keeps, lr as a
    # float: a state_dict round trip gives the hyperparameters a fresh Adam would have.
    params = make_params(np.float32)
    opt = optim.Adam(params)
    sd = opt.state_dict()
    sd["hyper"]["betas"] = [0.8, 0.9]
    sd["hyper"]["lr"] = 1
    opt.load_state_dict(sd)
    want = optim.Adam(params, lr=1, betas=[0.8, 0.9])
    assert opt.hyperparameters() == want.hyperparameters()
    assert opt.betas == (0.8, 0.9) and type(opt.lr) is float


def test_clip_grad_norm_with_max_norm_inf_only_reports_the_norm():
    # As torch: max_norm=inf scales nothing and returns the total norm (oracle: sqrt(2)).
    params = make_params(np.float64)
    params[0].grad[0, :2] = 1.0
    assert optim.clip_grad_norm(params, math.inf) == pytest.approx(math.sqrt(2), rel=1e-15)
    assert params[0].grad.sum() == 2.0


def test_clip_grad_norm_refuses_norm_type_zero():
    with pytest.raises(ValueError, match="norm_type must be > 0 or inf, got 0.0"):
        optim.clip_grad_norm(make_params(np.float64), 1.0, norm_type=0)


def test_clip_grad_norm_takes_a_single_parameter():
    # As torch: one Parameter instead of a list (oracle: |(3, 3)| = sqrt(18), clipped to 1).
    p = pyrnn.Parameter("w", np.zeros(2), np.full(2, 3.0))
    assert optim.clip_grad_norm(p, 1.0) == pytest.approx(math.sqrt(18), rel=1e-15)
    assert np.linalg.norm(p.grad) == pytest.approx(1.0, rel=1e-5)


def test_clip_grad_norm_refuses_a_read_only_grad_before_scaling_any():
    # Clipping scales in place: a read-only gradient is refused, and checked before the
    # others are scaled (nothing is half clipped).
    first = pyrnn.Parameter("a", np.zeros(2), np.full(2, 3.0))
    ro = np.full(2, 3.0)
    ro.flags.writeable = False
    second = pyrnn.Parameter("b", np.zeros(2), ro)
    with pytest.raises(ValueError, match="'b': grad must be a writable C-contiguous array"):
        optim.clip_grad_norm([first, second], 1.0)
    np.testing.assert_array_equal(first.grad, 3.0)


def test_init_leaky_relu_default_slope_and_degenerate_ranges():
    # As torch.nn.init: leaky_relu's gain without a slope takes torch's default 0.01 (not 0);
    # low == high and std == 0 are allowed and fill the constant.
    assert init.calculate_gain("leaky_relu") == pytest.approx(
        torch.nn.init.calculate_gain("leaky_relu"), rel=1e-12)
    np.testing.assert_array_equal(init.uniform_(np.zeros(3), 2.0, 2.0, seed=0), 2.0)
    np.testing.assert_array_equal(init.normal_(np.ones(3), 0.5, 0.0, seed=0), 0.5)


def test_init_leaky_relu_gain_of_a_huge_slope_is_finite():
    # sqrt(2 / (1 + s^2)) squared the slope first: past 1e154 a bare OverflowError naming
    # nothing (torch's too); the gain itself is a small finite number (helper-180).
    for slope in (1e155, 1e200, 10**200, -1e300):
        gain = init.calculate_gain("leaky_relu", slope)
        assert gain == pytest.approx(math.sqrt(2.0) / abs(float(slope)), rel=1e-12)
    w = init.kaiming_uniform_(np.zeros((30, 40)), a=1e200, seed=0)
    bound = math.sqrt(3.0) * math.sqrt(2.0) / 1e200 / math.sqrt(40)
    assert np.abs(w).max() <= bound and np.abs(w).max() > bound / 2
    # Below the overflow the value is torch's expression, bit for bit.
    for slope in (0.01, 0.2, 3.0, 1e150):
        assert init.calculate_gain("leaky_relu", slope) == \
            torch.nn.init.calculate_gain("leaky_relu", slope)


def test_init_on_a_device_array_without_a_usable_device_names_why():
    # A CuPy-like array went to pyrnn.cuda.as_device_array and failed inside the CUDA
    # runtime ("cudaGetDevice(&prev_) failed at device_scope.cuh"); now as the losses say it.
    if not pyrnn.cuda.unavailable_reason():
        pytest.skip("a CUDA device is usable here")

    class CupyLike:
        __cuda_array_interface__ = {"shape": (3, 4), "typestr": "<f4", "data": (1 << 20, False),
                                    "version": 3, "strides": None}

    with pytest.raises(RuntimeError, match=r"tensor is a CUDA device array \(CupyLike\), but no "
                                           r"CUDA device is usable: "):
        init.xavier_uniform_(CupyLike(), seed=0)


@pytest.mark.parametrize("cls, attr, bad", [
    (optim.Adam, "betas", (0.9, 1.5)), (optim.Adam, "eps", -1.0),
    (optim.AdamW, "weight_decay", -5.0), (optim.Adam, "amsgrad", "yes"),
    (optim.SGD, "nesterov", True), (optim.SGD, "momentum", -0.1),
    (optim.RMSprop, "alpha", math.nan), (optim.RMSprop, "centered", 2)])
def test_hyperparameters_are_checked_when_set(cls, attr, bad):
    # Plain attributes: opt.betas = (0.9, 1.5) or eps = -1 wrote NaN weights at the next
    # step, SGD(nesterov=True) without momentum ran without it, and state_dict() gave a dict
    # load_state_dict() refused.
    params = make_params("float32")
    opt = cls(params, lr=0.1)
    before = opt.hyperparameters()
    with pytest.raises((ValueError, TypeError), match=attr.rstrip("s") if attr != "betas"
                       else "beta2"):
        setattr(opt, attr, bad)
    assert opt.hyperparameters() == before
    opt.load_state_dict(opt.state_dict())


def test_a_hyperparameter_set_is_normalised_and_used():
    params = make_params("float64")
    opt = optim.SGD(params, lr=0.1)
    opt.momentum = 1  # an int, kept as the constructor keeps it
    assert opt.momentum == 1.0 and isinstance(opt.momentum, float)
    opt.nesterov = np.True_  # (now momentum > 0: accepted)
    assert opt.nesterov is True
    with pytest.raises(ValueError, match="nesterov"):
        opt.momentum = 0.0  # nesterov needs it
    ref = optim.SGD(make_params("float64"), lr=0.1, momentum=1.0, nesterov=True)
    for o in (opt, ref):
        for p in o.params:
            p.grad[...] = 1.0
        o.step()
    assert all(np.array_equal(a.data, b.data) for a, b in zip(opt.params, ref.params))
    adam = optim.Adam(make_params("float32"))
    adam.betas = [0.5, 0.6]
    assert adam.betas == (0.5, 0.6)

    class Custom(optim.Optimizer):  # a custom optimizer's attributes stay its own business
        def _update(self, data, grad, state):
            pass
    c = Custom(make_params("float32"))
    c.eps = -1
    assert c.eps == -1


@pytest.mark.parametrize("cls, kw, drop", [
    (optim.Adam, {}, "step"), (optim.Adam, {}, "exp_avg"),
    (optim.AdamW, {"amsgrad": True}, "exp_avg_sq"),
    (optim.RMSprop, {"centered": True}, "square_avg")])
def test_load_state_dict_refuses_a_stepped_parameter_missing_state(cls, kw, drop):
    # Accepted: the next step restarted the missing entry from zero (Adam without its step
    # count moved the weight -0.19 instead of -0.10); torch's load_state_dict raises KeyError.
    # (SGD keeps one entry: without it a parameter is one not stepped yet, as in torch.)
    params = make_params("float32")
    opt = _stepped(cls, params, **kw)
    sd = opt.state_dict()
    before = ([p.data.copy() for p in params], opt.state_dict())
    del sd["state"][1][drop]
    fresh = cls(params, lr=0.1, **kw)
    with pytest.raises(ValueError, match=f"state of 'p1' lacks '{drop}'"):
        fresh.load_state_dict(sd)
    assert all(st == {} for st in fresh.state) and fresh.steps == 0
    sd["state"][1] = {}  # a parameter not stepped yet: nothing to lack
    fresh.load_state_dict(sd)
    assert fresh.state[1] == {} and fresh.steps == 2
    saved = before[1]["state"][0]
    assert set(fresh.state[0]) == set(saved) and all(  # (kept flat, saved in p's shape)
        np.array_equal(np.ravel(fresh.state[0][k]), np.ravel(v)) for k, v in saved.items())


@pytest.mark.parametrize("cls, option", [(optim.Adam, {"amsgrad": True}),
                                         (optim.RMSprop, {"centered": True}),
                                         (optim.RMSprop, {"momentum": 0.9}),
                                         (optim.SGD, {"momentum": 0.9})])
def test_an_option_switched_on_between_steps_keeps_state_dict_loadable(cls, option):
    # Its entry is created at the next step; a state_dict taken before that step lacks it and
    # must load back into the optimizer itself.
    params = make_params("float32")
    opt = _stepped(cls, params, lr=0.1)
    for k, v in option.items():
        setattr(opt, k, v)
    sd = opt.state_dict()
    opt.load_state_dict(sd)
    twin = cls([pyrnn.Parameter(p.name, p.data.copy(), p.grad.copy()) for p in params],
               lr=0.1, **option)
    twin.load_state_dict(sd)
    for o in (opt, twin):
        for p in o.params:
            p.grad[...] = 0.5
        o.step()
    assert all(np.array_equal(a.data, b.data) for a, b in zip(opt.params, twin.params))


@pytest.mark.parametrize("reset", [lambda o: o.state.clear(), lambda o: setattr(o, "state", {}),
                                   lambda o: setattr(o, "state", collections.defaultdict(dict)),
                                   lambda o: setattr(o, "state", [])],
                         ids=["clear", "dict", "defaultdict", "list"])
def test_a_state_reset_the_torch_way_restarts_every_parameter(reset):
    # torch's reset of the moments (opt.state.clear(), opt.state = defaultdict(dict)): every
    # later step updated nothing (zip with an empty list), steps still counted, no error.
    params = make_params(np.float64)
    opt = _stepped(optim.Adam, params, lr=0.1)
    opt.param_groups[0]["params"].pop()  # a taken-out one's state is reset too, as in torch
    opt.step()
    reset(opt)
    twin = optim.Adam(make_params(np.float64), lr=0.1)
    for q, p in zip(twin.params, params):
        q.data[...] = p.data
        q.grad[...] = p.grad
    opt.param_groups[0]["params"].append(params[-1])
    opt.step()
    twin.step()  # a fresh optimizer from the same weights: the same first step
    for p, q in zip(params, twin.params):
        np.testing.assert_array_equal(p.data, q.data)
    assert [st["step"] for st in opt.state] == [1] * len(params) and not opt._left


def test_a_state_list_out_of_step_with_the_parameters_is_refused():
    params = make_params(np.float32)
    opt = _stepped(optim.Adam, params, lr=0.1)
    before = [p.data.copy() for p in params]
    del opt.state[1]  # (torch's del opt.state[p]: a list has no parameter keys)
    with pytest.raises(ValueError, match=r"Adam\.state holds 2 entries for 3 parameters: it is "
                                         r"a list of one dict per parameter.*opt\.state\.clear"):
        opt.step()
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.data, b)
    opt.state = "nonsense"
    with pytest.raises(ValueError, match=r"holds a str for 3 parameters"):
        opt.state_dict()
    opt.state = [{}, {}, {}]  # one dict per parameter: each restarts
    opt.step()


def test_state_dict_buffers_have_their_parameters_shapes():
    # Flat buffers passed the shape check of an optimizer over the same parameters in another
    # order when the sizes matched: the moments of one weight trained another, silently.
    a = pyrnn.Parameter("a", np.ones((4, 3), np.float32), np.full((4, 3), 0.5, np.float32))
    b = pyrnn.Parameter("b", np.ones((3, 4), np.float32), np.full((3, 4), 0.5, np.float32))
    opt = optim.Adam([a, b], lr=0.1)
    opt.step()
    sd = opt.state_dict()
    assert [st["exp_avg"].shape for st in sd["state"]] == [(4, 3), (3, 4)]
    with pytest.raises(ValueError, match=r"state 'exp_avg' of 'b' has shape \(4, 3\), expected "
                                         r"\(12,\) or \(3, 4\)"):
        optim.Adam([b, a], lr=0.1).load_state_dict(sd)
    again = optim.Adam([a, b], lr=0.1)
    again.load_state_dict(sd)
    _same_state(again, opt)


@pytest.mark.parametrize("src, dst", [(np.float32, np.float64), (np.float64, np.float32)])
def test_a_float32_checkpoint_loads_into_a_float64_optimizer_and_back(src, dst):
    sd = _stepped(optim.Adam, make_params(src), lr=0.1, amsgrad=True).state_dict()
    opt = optim.Adam(make_params(dst), lr=0.1, amsgrad=True)
    opt.load_state_dict(sd)  # as torch casts the state to its parameter's dtype
    for st, saved in zip(opt.state, sd["state"]):
        for k, v in saved.items():
            if k != "step":
                assert st[k].dtype == dst
                np.testing.assert_array_equal(st[k], np.ravel(v).astype(dst))
    big = _stepped(optim.Adam, make_params(np.float64), lr=0.1).state_dict()
    big["state"][0]["exp_avg_sq"].flat[0] = 1e300
    with pytest.raises(ValueError, match=r"exp_avg_sq' of 'p0' has values beyond the float32"):
        optim.Adam(make_params(np.float32), lr=0.1).load_state_dict(big)


def test_hand_set_state_buffers_are_checked_before_any_parameter_steps():
    params = make_params(np.float32)
    opt = _stepped(optim.Adam, params, lr=0.1)
    before = [p.data.copy() for p in params]
    steps = [st["step"] for st in opt.state]
    bad = [(np.zeros(3, np.float32), r"has shape \(3,\), expected \(12,\) or \(2, 3, 2\)",
            ValueError),
           (np.zeros(12), r"has dtype float64, expected float32", ValueError),
           (np.zeros(24, np.float32)[::2], r"must be a writable C-contiguous array", ValueError),
           ([0.0] * 12, r"must be a NumPy array on the parameter's device \(cpu\), got list",
            TypeError)]
    for buf, pattern, exc in bad:
        opt.state[-1]["exp_avg"] = buf  # the last parameter's: the others came first
        with pytest.raises(exc, match=r"state 'exp_avg' of 'p2' " + pattern):
            opt.step()
        for p, b in zip(params, before):
            np.testing.assert_array_equal(p.data, b)
        assert [st["step"] for st in opt.state[:-1]] == steps[:-1]
    # torch's habit: a buffer in the parameter's shape is taken (a flat view of it is updated)
    shaped = np.zeros(params[0].shape, np.float32)
    twin = _stepped(optim.Adam, make_params(np.float32), lr=0.1)
    opt.state[-1]["exp_avg"] = twin.state[-1]["exp_avg"].copy()
    opt.state[0]["exp_avg"] = shaped
    shaped[...] = twin.state[0]["exp_avg"].reshape(shaped.shape)
    twin.state[0]["exp_avg"] = twin.state[0]["exp_avg"].copy()
    opt.step()
    twin.step()
    for p, q in zip(params, twin.params):
        np.testing.assert_array_equal(p.data, q.data)
    np.testing.assert_array_equal(shaped.ravel(), twin.state[0]["exp_avg"])


def test_a_parameter_shaped_buffer_in_fits_fused_guard_path():
    # (>= FUSE_ELEMENTS parameter elements: the guard sized its kept copies from the buffer's
    # 2-D shape, which the kernel refused after the parameters before it had stepped)
    m = pyrnn.Sequential([pyrnn.Dense(300, 250, seed=0), pyrnn.Dense(250, 3, seed=1)])
    twin = pyrnn.Sequential([pyrnn.Dense(300, 250, seed=0), pyrnn.Dense(250, 3, seed=1)])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 300)).astype(np.float32)
    y = rng.standard_normal((16, 3)).astype(np.float32)
    opts = [optim.Adam(model.parameters(), lr=1e-3) for model in (m, twin)]
    for model, opt in zip((m, twin), opts):
        model.fit(x, y, loss="mse", optimizer=opt, epochs=1, batch_size=8, verbose=0,
                  shuffle=False)
    shape = opts[0].params[2].shape
    opts[0].state[2]["exp_avg"] = opts[0].state[2]["exp_avg"].reshape(shape).copy()
    for model, opt in zip((m, twin), opts):
        model.fit(x, y, loss="mse", optimizer=opt, epochs=1, batch_size=8, verbose=0,
                  shuffle=False)
    for a, b in zip(m.parameters(), twin.parameters()):
        np.testing.assert_array_equal(a.data, b.data)


def test_a_subclass_with_its_own_update_keeps_its_own_state_layout():
    # float64 moments for float32 parameters (a master copy): the built-in buffer checks were
    # applied to it (refused at its second step, its float64 state cast on load).
    class MasterAdam(optim.Adam):
        def _update(self, data, grad, st, keep=None):
            m = st.setdefault("exp_avg", np.zeros(data.size, np.float64))
            st["step"] = st.get("step", 0) + 1
            m *= 0.9
            m += 0.1 * grad
            data -= (self.lr * m).astype(data.dtype)

    p = pyrnn.Parameter("w", np.ones((2, 3), np.float32), np.full((2, 3), 0.5, np.float32))
    opt = MasterAdam([p], lr=0.1)
    for _ in range(3):
        opt.step()
    sd = opt.state_dict()
    assert sd["state"][0]["exp_avg"].shape == (6,)  # its own shape, not the parameter's
    again = MasterAdam([p], lr=0.1)
    again.load_state_dict(sd)
    assert again.state[0]["exp_avg"].dtype == np.float64
    np.testing.assert_array_equal(again.state[0]["exp_avg"], opt.state[0]["exp_avg"])


def test_a_subclass_wrapping_step_is_reset_and_checked_too():
    class ClosureAdam(optim.Adam):
        def step(self, closure=None):
            loss = closure() if closure is not None else None
            super().step()
            return loss

    p = pyrnn.Parameter("w", np.ones(3), np.full(3, 0.5))
    q = pyrnn.Parameter("b", np.ones(2), np.full(2, 0.5))
    opt = ClosureAdam([p, q], lr=0.1)
    opt.step()
    opt.state.clear()
    opt.step()
    assert [st["step"] for st in opt.state] == [1, 1]
    del opt.state[1]
    with pytest.raises(ValueError, match=r"ClosureAdam\.state holds 1 entries for 2"):
        opt.step()
    opt.load_state_dict(ClosureAdam([p, q], lr=0.1).state_dict())  # a load replaces it
    assert opt.state == [{}, {}]


def test_device_state_buffers_are_checked_before_any_parameter_steps(monkeypatch):
    from cuda_fakes import FakeDev, install
    install(monkeypatch)
    ps = [pyrnn.Parameter(f"p{i}", FakeDev(np.ones((2, 2), np.float32)),
                          FakeDev(np.full((2, 2), 0.5, np.float32))) for i in range(3)]
    opt = optim.Adam(ps, lr=0.1)
    opt.step()
    before = [p.data.a.copy() for p in ps]
    for buf, exc, pattern in [
            (np.zeros(4, np.float32), TypeError,
             r"must be a pyrnn\.cuda\.DeviceArray on the parameter's device \(cuda:0\), got "
             r"ndarray"),
            (FakeDev(np.zeros(4, np.float32), device=1), ValueError,
             r"is on cuda:1, the parameter on cuda:0")]:
        opt.state[2]["exp_avg"] = buf
        with pytest.raises(exc, match=r"state 'exp_avg' of 'p2' " + pattern):
            opt.step()
        for p, b in zip(ps, before):
            np.testing.assert_array_equal(p.data.a, b)
    opt.state[2]["exp_avg"] = FakeDev(np.zeros((2, 2), np.float32))  # the parameter's shape
    opt.step()


def test_a_reset_optimizer_follows_a_model_move(monkeypatch):
    from cuda_fakes import install
    install(monkeypatch)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    m = pyrnn.Sequential([pyrnn.Dense(3, 2, seed=0, dtype="float64")])
    opt = optim.Adam(m.parameters(), lr=0.01)
    m.fit(x, y, loss="mse", optimizer=opt, epochs=1, batch_size=4, verbose=0)
    opt.state = {}
    m.to("cuda")
    m.fit(x, y, loss="mse", optimizer=opt, epochs=1, batch_size=4, verbose=0)
    assert {p.device for p in opt.params} == {"cuda"}
    assert [st["step"] for st in opt.state] == [2, 2]


def test_a_subclass_calling_super_update_gets_parameter_shaped_buffers_flattened():
    class ClippedAdam(optim.Adam):
        def _update(self, data, grad, st, keep=None):
            np.clip(grad, -0.1, 0.1, out=grad)
            return super()._update(data, grad, st, keep)

    p = pyrnn.Parameter("w", np.ones((2, 3)), np.full((2, 3), 0.5))
    q = pyrnn.Parameter("w", np.ones((2, 3)), np.full((2, 3), 0.5))
    a, b = ClippedAdam([p], lr=0.1), ClippedAdam([q], lr=0.1)
    a.step()
    b.step()
    a.state[0]["exp_avg"] = a.state[0]["exp_avg"].reshape(2, 3).copy()  # torch's layout
    a.step()
    b.step()
    np.testing.assert_array_equal(p.data, q.data)
    sd = a.state_dict()
    sd["state"][0]["exp_avg_sq"] = sd["state"][0]["exp_avg_sq"].reshape(2, 3)
    c = ClippedAdam([p], lr=0.1)
    c.load_state_dict(sd)
    c.step()
    b.step()
    np.testing.assert_array_equal(p.data, q.data)


def test_the_state_list_is_checked_before_the_parameter_list_is_synced():
    class ClosureAdam(optim.Adam):
        def step(self, closure=None):
            super().step()

    p = pyrnn.Parameter("w", np.ones(3), np.full(3, 0.5))
    q = pyrnn.Parameter("b", np.ones(2), np.full(2, 0.5))
    r = pyrnn.Parameter("c", np.ones(2), np.full(2, 0.5))
    opt = ClosureAdam([p, q], lr=0.1)
    opt.step()
    del opt.state[0]
    opt.param_groups[0]["params"].append(r)  # (paired by position, w took b's moments)
    with pytest.raises(ValueError, match=r"ClosureAdam\.state holds 1 entries for 2"):
        opt.step()


def test_step_counters_set_by_hand_are_checked_before_any_parameter_steps():
    params = make_params(np.float64)
    opt = _stepped(optim.Adam, params, lr=0.1)
    before = [p.data.copy() for p in params]
    opt.state[-1]["step"] = -1
    with pytest.raises(ValueError, match=r"state 'step' of 'p2' must be in \[0, 2\*\*62\]"):
        opt.step()
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.data, b)
    opt.state[-1]["step"] = 2.0  # torch keeps its step as a float
    opt.step()
    assert [st["step"] for st in opt.state] == [3, 3, 3]
    assert all(type(st["step"]) is int for st in opt.state)
    optim.Adam(params, lr=0.1).load_state_dict(opt.state_dict())


def test_load_state_dict_takes_a_whole_number_float_step_count():
    # As step() takes one set by hand (torch keeps Adam's step a float): it was a TypeError
    # in load_state_dict only (helper-165).
    layer = pyrnn.Dense(3, 2, seed=0)
    opt = optim.Adam(layer.parameters(), 0.01)
    layer.train()
    layer(np.ones((4, 3), np.float32))
    layer.backward(np.ones((4, 2), np.float32))
    opt.step()
    sd = opt.state_dict()
    sd["state"] = [{**st, "step": 1.0} for st in sd["state"]]
    other = optim.Adam(layer.parameters())
    other.load_state_dict(sd)
    assert all(type(st["step"]) is int and st["step"] == 1 for st in other.state)
    sd["state"] = [{**st, "step": np.array(5.0)} for st in sd["state"]]
    other.load_state_dict(sd)  # (a 0-d array too, as torch's step tensor)
    assert all(type(st["step"]) is int and st["step"] == 5 for st in other.state)
    sd["state"] = [{**st, "step": np.float32(2.0)} for st in sd["state"]]
    other.load_state_dict(sd)  # (a NumPy float too, in both places)
    assert all(type(st["step"]) is int and st["step"] == 2 for st in other.state)
    other.state[0]["step"] = np.float32(3.0)
    layer(np.ones((4, 3), np.float32))
    layer.backward(np.ones((4, 2), np.float32))
    other.step()
    assert other.state[0]["step"] == 4
    for bad, err in ((1.5, TypeError), (float("nan"), TypeError), (-1.0, ValueError)):
        sd["state"] = [{**st, "step": bad} for st in sd["state"]]
        with pytest.raises(err, match="state 'step' of"):
            other.load_state_dict(sd)
