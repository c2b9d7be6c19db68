"""Losses against PyTorch: values and gradients, ignore_index, soft targets, stability."""
import numpy as np
import pytest

import pyrnn
from pyrnn import losses

torch = pytest.importorskip("torch")
F = torch.nn.functional


def grad_of(fn, pred):
    p = torch.tensor(pred, requires_grad=True)
    v = fn(p)
    v.backward()
    return float(v.detach()), p.grad.numpy()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mse_matches_torch(reduction, dtype):
    rng = np.random.default_rng(0)
    pred = rng.standard_normal((4, 3, 2)).astype(dtype)
    target = rng.standard_normal((4, 3, 2)).astype(dtype)
    loss = losses.MSELoss(reduction=reduction)
    v = loss(pred, target)
    d = loss.backward()
    tv, tg = grad_of(lambda p: F.mse_loss(p, torch.tensor(target), reduction=reduction), pred)
    assert isinstance(v, float) and d.dtype == dtype
    np.testing.assert_allclose(v, tv, rtol=1e-6)
    np.testing.assert_allclose(d, tg, rtol=1e-5, atol=1e-7)


def test_mse_trailing_one_and_shape_errors():
    loss = losses.MSELoss()
    pred = np.arange(3.0)[:, None]
    assert loss(pred, np.zeros(3)) == pytest.approx(5 / 3)  # (N,) target for (N, 1) output
    assert loss.backward().shape == (3, 1)
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(3, 1\)"):
        loss(pred, np.zeros((3, 2)))
    with pytest.raises(RuntimeError):
        losses.MSELoss().backward()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_2d_matches_torch(dtype):
    rng = np.random.default_rng(1)
    logits = (3 * rng.standard_normal((6, 5))).astype(dtype)
    target = rng.integers(0, 5, 6)
    loss = losses.CrossEntropyLoss()
    v = loss(logits, target)
    d = loss.backward()
    tv, tg = grad_of(lambda p: F.cross_entropy(p, torch.tensor(target)), logits)
    tol = dict(rtol=1e-5, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(v, tv, **tol)
    np.testing.assert_allclose(d, tg, **tol)
    assert d.dtype == dtype
    acc = loss.metric_counts()["accuracy"]
    assert acc == (int((logits.argmax(1) == target).sum()), 6)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_per_step_with_ignore_index_matches_torch(reduction):
    # Samples-first (N, T, K) logits here; PyTorch's per-step layout is (N, K, T).
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((3, 4, 7))
    target = rng.integers(0, 7, (3, 4))
    target[0, 2:] = -100
    target[2, 0] = -100
    loss = losses.CrossEntropyLoss(reduction=reduction)
    v = loss(logits, target)
    d = loss.backward()
    tv, tg = grad_of(lambda p: F.cross_entropy(p.permute(0, 2, 1), torch.tensor(target),
                                               reduction=reduction), logits)
    np.testing.assert_allclose(v, tv, rtol=1e-12)
    np.testing.assert_allclose(d, tg, rtol=1e-12, atol=1e-14)
    assert loss.count == 9
    assert not d[0, 2:].any()


def test_cross_entropy_custom_ignore_index_and_all_ignored():
    logits = np.random.default_rng(3).standard_normal((4, 3))
    target = np.array([0, 2, 2, 1])
    loss = losses.CrossEntropyLoss(ignore_index=2)
    v = loss(logits, target)
    tv = F.cross_entropy(torch.tensor(logits), torch.tensor(target), ignore_index=2)
    np.testing.assert_allclose(v, float(tv), rtol=1e-12)
    # Every target ignored: 0 and a zero gradient (PyTorch gives nan; documented deviation).
    assert loss(logits, np.full(4, 2)) == 0.0
    assert not loss.backward().any()


def test_cross_entropy_soft_targets_match_torch():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((5, 4))
    probs = rng.dirichlet(np.ones(4), size=5)
    loss = losses.CrossEntropyLoss()
    v = loss(logits, probs)
    tv, tg = grad_of(lambda p: F.cross_entropy(p, torch.tensor(probs)), logits)
    np.testing.assert_allclose(v, tv, rtol=1e-12)
    np.testing.assert_allclose(loss.backward(), tg, rtol=1e-10, atol=1e-14)


WEIGHTS = [0.5, 2.0, 0.0, 1.5, 3.0, 1.0, 0.25]  # one class of weight 0


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("weight", [None, WEIGHTS])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_weight_and_label_smoothing_match_torch(reduction, weight, smoothing,
                                                              dtype):
    # Class targets, per step with ignored ones (PyTorch's layout (N, K, T)), and soft targets.
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((3, 4, 7)).astype(dtype)
    target = rng.integers(0, 7, (3, 4))
    target[0, 2:] = -100
    target[1, 1] = 2  # the weight-0 class
    probs = rng.dirichlet(np.ones(7), size=(3, 4))
    tw = None if weight is None else torch.tensor(weight, dtype=torch.float64)
    loss = losses.CrossEntropyLoss(reduction=reduction, weight=weight, label_smoothing=smoothing)
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    for tgt, torch_tgt in ((target, torch.tensor(target)),
                           (probs, torch.tensor(probs).permute(0, 2, 1))):
        v = loss(logits, tgt)
        d = loss.backward()
        tv, tg = grad_of(lambda p: F.cross_entropy(
            p.double().permute(0, 2, 1), torch_tgt, weight=tw, reduction=reduction,
            label_smoothing=smoothing), logits)
        assert d.dtype == dtype
        np.testing.assert_allclose(v, tv, rtol=rtol, atol=1e-15)
        np.testing.assert_allclose(d, tg, rtol=rtol * 10, atol=1e-7 if dtype == np.float32
                                   else 1e-15)
    # The mean divided by the counted targets' weights (class targets), as a float.
    loss(logits, target)
    if weight is not None:
        assert loss.count == pytest.approx(float(np.sum(np.array(weight)[target[target >= 0]])))
    else:
        assert loss.count == 10
    assert not loss.backward()[0, 2:].any()


def test_cross_entropy_weight_with_a_mask_is_ignoring_those_steps():
    # mask= (fit's padding) leaves elements out as ignore_index does, weighted mean included.
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((2, 5, 3))
    target = rng.integers(0, 3, (2, 5))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    loss = losses.CrossEntropyLoss(weight=[1.0, 2.0, 0.5], label_smoothing=0.2)
    v = loss(logits, target, mask=mask)
    d = loss.backward()
    v2 = loss(logits, np.where(mask, target, -100))
    assert v == v2 and np.array_equal(d, loss.backward())
    assert not d[0, 3:].any()


def test_cross_entropy_weights_summing_to_zero_give_zero():
    # PyTorch gives nan (0 / 0); as for an all-ignored batch, pyrnn gives 0 and no gradient.
    logits = np.random.default_rng(7).standard_normal((4, 3))
    loss = losses.CrossEntropyLoss(weight=[0.0, 1.0, 0.0], label_smoothing=0.1)
    assert loss(logits, np.array([0, 2, 2, 0])) == 0.0
    assert not loss.backward().any() and loss.count == 0.0


def test_cross_entropy_weight_and_smoothing_checks():
    with pytest.raises(ValueError, match=r"weight has 3 values, but the logits have K = 4"):
        losses.CrossEntropyLoss(weight=[1, 2, 3])(np.zeros((2, 4)), np.array([0, 1]))
    with pytest.raises(ValueError, match="finite and >= 0"):
        losses.CrossEntropyLoss(weight=[1.0, -0.5])
    with pytest.raises(ValueError, match="finite and >= 0"):
        losses.CrossEntropyLoss(weight=[1.0, np.nan])
    with pytest.raises(ValueError, match=r"\(K,\).*\(2, 2\)"):
        losses.CrossEntropyLoss(weight=[[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(TypeError, match="weight must be a real numeric array"):
        losses.CrossEntropyLoss(weight=["a", "b"])
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]"):
            losses.CrossEntropyLoss(label_smoothing=bad)
    for bad in (True, "0.1", None):
        with pytest.raises(TypeError, match="label_smoothing must be a number"):
            losses.CrossEntropyLoss(label_smoothing=bad)
    with pytest.raises(TypeError):  # keyword-only: the positional order is PyTorch's otherwise
        losses.CrossEntropyLoss(-100, "mean", [1.0, 2.0])  # type: ignore[misc]


def test_cross_entropy_weight_is_the_losss_own():
    w = np.array([1.0, 2.0, 3.0])
    loss = losses.CrossEntropyLoss(weight=w, label_smoothing=0.05)
    w[:] = 0.0  # the caller's array changing later changes nothing
    assert loss.weight.tolist() == [1.0, 2.0, 3.0]
    assert repr(loss) == ("CrossEntropyLoss(ignore_index=-100, reduction='mean', "
                          "weight=[1.0, 2.0, 3.0], label_smoothing=0.05)")
    import pickle
    again = pickle.loads(pickle.dumps(loss))
    logits, target = np.random.default_rng(8).standard_normal((4, 3)), np.array([0, 1, 2, 1])
    assert again(logits, target) == loss(logits, target)


def test_weighted_cross_entropy_epoch_loss_is_the_datasets_weighted_mean():
    # fit / evaluate weigh each batch's mean by loss.count (here the batch's weight sum), so
    # the result does not depend on the batch size and is PyTorch's over the whole dataset.
    rng = np.random.default_rng(9)
    x = rng.standard_normal((10, 4)).astype(np.float64)
    y = rng.integers(0, 3, 10)
    model = pyrnn.Sequential([pyrnn.Dense(4, 3, seed=0, dtype="float64")])
    w = [0.2, 1.0, 3.0]
    loss = losses.CrossEntropyLoss(weight=w, label_smoothing=0.1)
    logits = model.predict(x)
    want = float(F.cross_entropy(torch.tensor(logits), torch.tensor(y),
                                 weight=torch.tensor(w, dtype=torch.float64),
                                 label_smoothing=0.1))
    for bs in (1, 3, 10):
        assert model.evaluate(x, y, loss=loss, batch_size=bs) == pytest.approx(want, rel=1e-12)
    # A batch whose targets all have weight 0: its mean is 0 (PyTorch: nan), but its label
    # smoothing term still counts in the dataset's (helper-130's case).
    x4, y4 = x[:4], np.array([0, 1, 2, 0])
    loss = losses.CrossEntropyLoss(weight=[0.0, 1.0, 2.0], label_smoothing=0.3)
    want = float(F.cross_entropy(torch.tensor(model.predict(x4)), torch.tensor(y4),
                                 weight=torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64),
                                 label_smoothing=0.3))
    for bs in (1, 2, 4):
        assert model.evaluate(x4, y4, loss=loss, batch_size=bs) == pytest.approx(want, rel=1e-12)
    hist = model.fit(x4, y4, loss=loss, optimizer=pyrnn.optim.SGD(model.parameters(), lr=0.0),
                     epochs=1, batch_size=1, verbose=False)
    assert hist["loss"][0] == pytest.approx(want, rel=1e-12)  # lr 0: the weights stay


def test_cross_entropy_weight_and_smoothing_are_checked_whenever_set():
    loss = losses.CrossEntropyLoss(weight=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="read-only"):
        loss.weight[0] = -5.0  # the loss's own copy, not writable around the checks
    loss.weight = [3, 2, 1]
    assert loss.weight.dtype == np.float64 and loss.weight.tolist() == [3.0, 2.0, 1.0]
    with pytest.raises(ValueError, match="positive value"):
        loss.weight = [0.0, 0.0, 0.0]  # every batch would give 0 and no gradient, silently
    with pytest.raises(TypeError, match="weight must be a real numeric array"):
        loss.weight = [[1.0, 2.0], [3.0]]
    with pytest.raises(TypeError, match="weight must be a real numeric array"):
        loss.weight = [2 ** 70, 1, 1]
    assert loss.weight.tolist() == [3.0, 2.0, 1.0]  # a refused write changes nothing
    loss.weight = None
    assert loss.weight is None
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]"):
        loss.label_smoothing = 5.0
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]"):
        loss.label_smoothing = 10 ** 400
    with pytest.raises(TypeError, match="label_smoothing must be a number"):
        loss.label_smoothing = "0.1"
    loss.label_smoothing = 1
    assert loss.label_smoothing == 1.0 and isinstance(loss.label_smoothing, float)


def test_cross_entropy_pickled_before_weights_existed_still_loads():
    import pickle
    old = losses.CrossEntropyLoss(ignore_index=3)
    del old.__dict__["_weight"], old.__dict__["_label_smoothing"]  # as an older pyrnn's
    loss = pickle.loads(pickle.dumps(old))
    assert loss.weight is None and loss.label_smoothing == 0.0
    assert "weight=None" in repr(loss)
    logits, target = np.random.default_rng(10).standard_normal((4, 5)), np.array([0, 3, 4, 1])
    assert loss(logits, target) == losses.CrossEntropyLoss(ignore_index=3)(logits, target)
    # And a weighted one comes back with its weights read-only still.
    again = pickle.loads(pickle.dumps(losses.CrossEntropyLoss(weight=[1.0, 2.0])))
    with pytest.raises(ValueError, match="read-only"):
        again.weight[0] = 0.0


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [-1e30, 1e30, 0.0]], np.float32)
    target = np.array([1, 0])
    loss = losses.CrossEntropyLoss()
    v = loss(logits, target)
    tv = F.cross_entropy(torch.tensor(logits), torch.tensor(target))
    assert np.isfinite(v) and np.all(np.isfinite(loss.backward()))
    np.testing.assert_allclose(v, float(tv), rtol=1e-6)


def test_cross_entropy_errors():
    loss = losses.CrossEntropyLoss()
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        loss(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"\(2,?\)"):
        loss(np.zeros((2, 3)), np.array([[0, 1], [1, 2]]))  # ((2, 1), Keras' sparse, is taken)
    with pytest.raises(TypeError, match="integer"):
        loss(np.zeros((2, 3)), np.array([0.5, 1.0]))
    assert loss(np.zeros((2, 3)), np.array([0.0, 1.0])) == pytest.approx(np.log(3))


@pytest.mark.parametrize("target, shown", [
    (np.array([0, 2**64 - 100], np.uint64), "18446744073709551516"),  # == -100 as int64
    (np.array([0, 2**64 - 1], np.uint64), "18446744073709551615"),    # -1 as int64
    (np.array([0.0, 1e30]), r"1e\+30"),                               # int64 min after cast
    (np.array([[1, 2**63 - 1]], np.uint64)[0], "9223372036854775807"),
    (np.array([0, 200], np.uint8), "200"),
])
def test_cross_entropy_checks_targets_before_casting(target, shown):
    """Out-of-range targets are refused and named as the caller passed them, never wrapped by
    a cast to int64 (uint64 2**64 - 100 used to become -100 == ignore_index and be dropped)."""
    with pytest.raises(ValueError, match=rf"target {shown} is outside \[0, 3\)"):
        losses.CrossEntropyLoss()(np.zeros((2, 3)), target)


def test_cross_entropy_ignore_index_in_any_integer_dtype():
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((4, 3))
    want = losses.CrossEntropyLoss(ignore_index=2)(logits, np.array([2, 0, 1, 2]))
    for dt in (np.uint8, np.int8, np.uint64, np.int16, np.float32):
        got = losses.CrossEntropyLoss(ignore_index=2)(logits, np.array([2, 0, 1, 2], dt))
        assert got == want
    # an ignore_index the dtype cannot hold matches nothing
    loss = losses.CrossEntropyLoss()
    assert loss(logits, np.array([0, 1, 2, 0], np.uint8)) == pytest.approx(
        loss(logits, np.array([0, 1, 2, 0])))
    assert loss.count == 4
    assert losses.CrossEntropyLoss()(logits, np.array([-100, 1, -100, 0], np.int8)) == \
        pytest.approx(losses.CrossEntropyLoss()(logits, np.array([-100, 1, -100, 0])))


def test_cross_entropy_one_hot_integer_targets_say_float_is_needed():
    with pytest.raises(TypeError, match=r"targets shaped like the logits \(2, 3\) are class "
                                        r"probabilities and must be floating point, got dtype "
                                        r"int64.*shape \(2,\)"):
        losses.CrossEntropyLoss()(np.zeros((2, 3)), np.eye(3, dtype=np.int64)[:2])
    # as floats they are probabilities
    assert losses.CrossEntropyLoss()(np.zeros((2, 3)), np.eye(3)[:2]) == pytest.approx(np.log(3))


@pytest.mark.parametrize("pos_weight", [None, [0.5, 2.0, 3.0]])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_matches_torch(pos_weight, dtype):
    rng = np.random.default_rng(5)
    logits = (4 * rng.standard_normal((6, 3))).astype(dtype)
    target = rng.uniform(0, 1, (6, 3)).astype(dtype)
    target[:2] = np.round(target[:2])
    loss = losses.BCEWithLogitsLoss(pos_weight=pos_weight)
    v = loss(logits, target)
    pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float64)
    tv, tg = grad_of(lambda p: F.binary_cross_entropy_with_logits(
        p.double(), torch.tensor(target).double(), pos_weight=pw), logits)
    tol = dict(rtol=1e-5, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(v, tv, **tol)
    np.testing.assert_allclose(loss.backward(), tg, **tol)


def test_bce_pos_weight_must_fit_the_last_axis():
    """pos_weight (3,) against logits (4, 1) used to broadcast to a (4, 3) loss and gradient;
    PyTorch refuses it. A scalar or one value applies to every output, as in PyTorch."""
    rng = np.random.default_rng(6)
    logits, target = rng.standard_normal((4, 1)), rng.uniform(0, 1, (4, 1))
    loss = losses.BCEWithLogitsLoss(pos_weight=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"pos_weight has 3 values, but the logits \(4, 1\) "
                                         r"have 1 on their last axis"):
        loss(logits, target)
    with pytest.raises(RuntimeError):  # torch agrees
        F.binary_cross_entropy_with_logits(torch.tensor(logits), torch.tensor(target),
                                           pos_weight=torch.tensor([1.0, 2.0, 3.0]))
    for pw in (2.5, [2.5]):
        for shape in ((4, 1), (4, 3), (5,)):
            x, t = rng.standard_normal(shape), rng.uniform(0, 1, shape)
            loss = losses.BCEWithLogitsLoss(pos_weight=pw)
            v = loss(x, t)
            tv, tg = grad_of(lambda p: F.binary_cross_entropy_with_logits(
                p, torch.tensor(t), pos_weight=torch.tensor(np.atleast_1d(pw))), x)
            np.testing.assert_allclose(v, tv, rtol=1e-12)
            d = loss.backward()
            assert d.shape == shape
            np.testing.assert_allclose(d, tg, rtol=1e-12, atol=1e-15)
    loss = losses.BCEWithLogitsLoss(pos_weight=[2.0])
    assert loss(np.array(0.3), np.array(1.0)) > 0 and loss.backward().shape == ()


def test_bce_is_stable_for_huge_logits():
    logits = np.array([1e4, -1e4, 80.0, -80.0])
    target = np.array([0.0, 1.0, 1.0, 0.0])
    loss = losses.BCEWithLogitsLoss()
    v = loss(logits, target)
    tv, tg = grad_of(lambda p: F.binary_cross_entropy_with_logits(p, torch.tensor(target)), logits)
    np.testing.assert_allclose(v, tv, rtol=1e-12)
    np.testing.assert_allclose(loss.backward(), tg, rtol=1e-12, atol=1e-300)


def test_loss_lookup_by_name():
    assert isinstance(losses.get("mse"), losses.MSELoss)
    assert isinstance(losses.get("cross_entropy"), losses.CrossEntropyLoss)
    assert isinstance(losses.get("bce"), losses.BCEWithLogitsLoss)
    # Documented: every alias, in any case.
    for name, cls in [("MSE", losses.MSELoss), ("Mean_Squared_Error", losses.MSELoss),
                      ("CrossEntropy", losses.CrossEntropyLoss),
                      ("CROSS_ENTROPY", losses.CrossEntropyLoss),
                      ("BCE_with_logits", losses.BCEWithLogitsLoss)]:
        assert type(losses.get(name)) is cls, name
    with pytest.raises(TypeError):
        losses.get("hinge")
    with pytest.raises(ValueError):
        losses.MSELoss(reduction="none")
    assert pyrnn.losses is losses


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [losses.MSELoss, losses.CrossEntropyLoss, losses.BCEWithLogitsLoss])
def test_backward_returns_a_fresh_array(dtype, make):
    # float64 predictions got the loss's own stored gradient: a caller scaling it in place
    # changed what the next backward() returned.
    rng = np.random.default_rng(0)
    pred = rng.standard_normal((4, 3)).astype(dtype)
    target = rng.integers(0, 3, 4) if make is losses.CrossEntropyLoss else \
        rng.random((4, 3)).astype(dtype)
    loss = make()
    loss.forward(pred, target)
    g = loss.backward()
    want = g.copy()
    g *= 100
    again = loss.backward()
    assert again is not g and again.dtype == dtype
    np.testing.assert_array_equal(again, want)


# Accuracy counts (correct, counted) that fit and evaluate report; oracle: worked by hand.
def test_cross_entropy_accuracy_skips_ignored_targets():
    # Ignored rows are neither counted nor correct, whatever the prediction there (argmax 0,
    # the class an ignored target is filled with internally).
    ce = losses.CrossEntropyLoss()
    ce(np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0]]), np.array([1, -100, -100]))
    assert ce.metric_counts() == {"accuracy": (0, 1)}


def test_cross_entropy_accuracy_with_soft_targets():
    # Class probabilities: a row is correct when the logits' argmax is the target's argmax.
    ce = losses.CrossEntropyLoss()
    ce(np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]]),
       np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]))
    assert ce.metric_counts() == {"accuracy": (2, 3)}


def test_bce_accuracy_counts_only_unmasked_elements():
    bce = losses.BCEWithLogitsLoss()
    bce(np.ones((1, 3, 1)), np.ones((1, 3, 1)), np.array([[True, False, False]]))
    assert bce.metric_counts() == {"accuracy": (1, 1)}


@pytest.mark.parametrize("make", ["mse", "bce", "ce_soft"])
def test_masked_targets_beyond_the_prediction_range_are_not_checked(make):
    # Masked elements count for nothing: float64 padding beyond float32 (a sentinel, np.empty's
    # leftovers) is fine there, as NaN already was, and the result equals zero padding's.
    pred = np.linspace(-1.0, 1.0, 2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    target = np.full((2, 3, 2), 0.25)
    mask = np.array([[True, True, False], [True, False, False]])
    padded = target.copy()
    padded[~mask] = 1e300
    loss = {"mse": losses.MSELoss, "bce": losses.BCEWithLogitsLoss,
            "ce_soft": losses.CrossEntropyLoss}[make]()
    want = loss(pred, target, mask), loss.backward()
    got = loss(pred, padded, mask), loss.backward()
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])
    padded[0, 0, 0] = 1e300  # an unmasked one is still refused
    with pytest.raises(ValueError, match="beyond the float32 range"):
        loss(pred, padded, mask)


def test_bce_accuracy_thresholds():
    # pyrnn's rule (hit = (x > 0) == (y >= 0.5)): a logit of exactly 0, probability 0.5, is
    # the negative class (as Keras' BinaryAccuracy: sigmoid(x) > 0.5); a soft target of
    # exactly 0.5 is rounded up to the positive one.
    bce = losses.BCEWithLogitsLoss()
    bce(np.zeros((4, 1)), np.zeros((4, 1)))
    assert bce.metric_counts() == {"accuracy": (4, 4)}
    bce(np.ones((2, 1)), np.full((2, 1), 0.5))
    assert bce.metric_counts() == {"accuracy": (2, 2)}


def test_cross_entropy_accuracy_ties_go_to_the_first_class():
    # Documented (README, accuracy): a tie in the logits predicts the first of the tied
    # classes, and a tie in probability targets makes the first of them the target.
    ce = losses.CrossEntropyLoss()
    ce(np.array([[1.0, 1.0], [1.0, 1.0]]), np.array([0, 1]))
    assert ce.metric_counts() == {"accuracy": (1, 2)}
    ce(np.array([[0.0, 2.0], [2.0, 0.0]]), np.array([[0.5, 0.5], [0.5, 0.5]]))
    assert ce.metric_counts() == {"accuracy": (1, 2)}


@pytest.mark.parametrize("make", [losses.MSELoss, losses.BCEWithLogitsLoss])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_of_a_0d_prediction_is_a_writable_0d_array(make, dtype):
    # It was a NumPy scalar (the arithmetic on 0-d arrays gives scalars): not an ndarray, and
    # not writable, though backward documents a copy the caller may write into.
    loss = make()
    loss(np.array(0.3, dtype), np.array(1.0, dtype))
    d = loss.backward()
    assert type(d) is np.ndarray and d.shape == () and d.dtype == dtype
    d[...] = 0.0


@pytest.mark.parametrize("make, target", [
    (lambda: losses.MSELoss(), lambda rng, p: rng.standard_normal(p.shape)),
    (lambda: losses.CrossEntropyLoss(), lambda rng, p: rng.integers(0, p.shape[-1], p.shape[:-1])),
    (lambda: losses.BCEWithLogitsLoss(), lambda rng, p: (rng.random(p.shape) > 0.5) * 1.0)])
def test_the_kept_gradient_is_in_the_prediction_dtype(make, target):
    # d pred is computed in float64 and kept rounded to the prediction's dtype (half the memory
    # of a float64 copy for float32 logits, e.g. a large vocabulary's): backward returns the
    # float64 gradient rounded once, as before, in a fresh array each call.
    rng = np.random.default_rng(4)
    p32 = rng.standard_normal((6, 5, 7)).astype(np.float32)
    t = target(rng, p32)
    lf, ref = make(), make()
    lf(p32, t)
    ref(p32.astype(np.float64), t)  # the same values in float64
    assert lf._dpred.dtype == np.float32
    d = lf.backward()
    assert d.dtype == np.float32 and d is not lf.backward()
    np.testing.assert_array_equal(d, ref.backward().astype(np.float32))


def test_a_subclass_changing_the_value_is_reported_as_it_returns_it():
    # fit / evaluate added up the built-in forward's numerator, not what a subclass's forward
    # returned: twice the MSE was reported as the MSE (helper-142).
    class Doubled(losses.MSELoss):
        def forward(self, pred, target, mask=None):
            return 2.0 * super().forward(pred, target, mask)

        def backward(self):
            return 2.0 * super().backward()
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((7, 4)), rng.standard_normal((7, 2))
    model = pyrnn.Sequential([pyrnn.Dense(4, 2, seed=0, dtype="float64")])
    want = 2.0 * float(((model.predict(x) - y) ** 2).mean())
    for bs in (2, 7):
        assert model.evaluate(x, y, loss=Doubled(), batch_size=bs) == pytest.approx(want, 1e-12)
    hist = model.fit(x, y, loss=Doubled(), optimizer=pyrnn.optim.SGD(model.parameters(), lr=0.0),
                     batch_size=3, verbose=0)
    assert hist["loss"][0] == pytest.approx(want, rel=1e-12)


def test_a_custom_loss_setting_no_count_is_weighed_by_the_batch_samples():
    # Its batches weighed count = 0: fit and evaluate reported a loss of 0.0 (helper-142).
    class MyMSE(losses.Loss):
        def forward(self, pred, target, mask=None):
            d = np.asarray(pred, np.float64) - target
            self._keep_dpred(2 * d / d.size, np.asarray(pred).dtype)
            return float((d ** 2).mean())
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((6, 4)), rng.standard_normal((6, 1))
    model = pyrnn.Sequential([pyrnn.Dense(4, 1, seed=0, dtype="float64")])
    want = float(((model.predict(x) - y) ** 2).mean())
    # batches of 4 and 2: their means weighed by samples, as Keras weighs them
    assert model.evaluate(x, y, loss=MyMSE(), batch_size=3) == pytest.approx(want, rel=1e-12)
    assert model.evaluate(x, y, loss=MyMSE(), batch_size=4) == pytest.approx(want, rel=1e-12)
    hist = model.fit(x, y, loss=MyMSE(), optimizer=pyrnn.optim.SGD(model.parameters(), lr=0.0),
                     batch_size=4, verbose=0)
    assert hist["loss"][0] == pytest.approx(want, rel=1e-12)


def test_pos_weight_is_the_losss_own_and_checked_whenever_set():
    import pickle
    pw = np.array([1.0, 2.0])
    bce = losses.BCEWithLogitsLoss(pos_weight=pw)
    logits, target = np.array([[0.5, -1.0]]), np.array([[1.0, 1.0]])
    before = bce(logits, target)
    pw[1] = np.inf  # the caller's array changing later changes nothing (helper-142)
    assert bce(logits, target) == before and bce.pos_weight.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="read-only"):
        bce.pos_weight[0] = np.inf  # nor a write around the checks
    with pytest.raises(ValueError, match="pos_weight must be finite"):
        bce.pos_weight = [1.0, np.nan]
    with pytest.raises(TypeError, match="pos_weight must be a number"):
        bce.pos_weight = "3"
    assert bce.pos_weight.tolist() == [1.0, 2.0]
    again = pickle.loads(pickle.dumps(bce))
    assert again(logits, target) == before
    with pytest.raises(ValueError, match="read-only"):
        again.pos_weight[0] = 0.0
    old = losses.BCEWithLogitsLoss(pos_weight=3.0)  # as an older pyrnn pickled it
    state = dict(old.__dict__)
    state["pos_weight"] = np.array(3.0)
    state["reduction"] = state.pop("_reduction")
    del state["_pos_weight"]
    restored = losses.BCEWithLogitsLoss.__new__(losses.BCEWithLogitsLoss)
    restored.__setstate__(state)
    assert restored(logits, target) == old(logits, target)
    assert repr(restored) == "BCEWithLogitsLoss(pos_weight=3.0, reduction='mean')"


@pytest.mark.parametrize("make", [losses.MSELoss, losses.CrossEntropyLoss,
                                  losses.BCEWithLogitsLoss])
def test_reduction_is_checked_whenever_set(make):
    # A plain attribute: "none" set later was a mean to the loss and a sum to fit (helper-142).
    loss = make()
    for bad in ("none", "Mean", None, 1):
        with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
            loss.reduction = bad
    assert loss.reduction == "mean"
    loss.reduction = "sum"
    assert repr(loss).count("reduction='sum'") == 1


class Summed(losses.MSELoss):  # (module level: pickled by name)
    reduction = "sum"


def test_a_subclass_with_its_own_reduction_attribute_keeps_it_through_a_pickle():
    # A class attribute replaces the property; __setstate__ moved the instance's value aside
    # and the class's came back (helper-145).
    import pickle
    loss = Summed()
    loss.reduction = "mean"
    assert pickle.loads(pickle.dumps(loss)).reduction == "mean"


def test_a_custom_loss_without_the_base_constructor_still_trains():
    # _batch_loss read loss._numerator, which only Loss.__init__ sets (helper-148).
    class MyMSE(losses.Loss):
        reduction = "mean"

        def __init__(self, scale=1.0):
            self.scale = scale

        def forward(self, pred, target, mask=None):
            d = np.asarray(pred) - np.asarray(target)
            self._dpred = 2 * self.scale * d / d.size
            return float(self.scale * (d ** 2).mean())

        def backward(self):
            return self._dpred
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((6, 4)), rng.standard_normal((6, 1))
    model = pyrnn.Sequential([pyrnn.Dense(4, 1, seed=0, dtype="float64")])
    want = float(((model.predict(x) - y) ** 2).mean())
    hist = model.fit(x, y, loss=MyMSE(), optimizer=pyrnn.optim.SGD(model.parameters(), lr=0.0),
                     batch_size=3, verbose=0)
    assert hist["loss"][0] == pytest.approx(want, rel=1e-12)


def test_cross_entropy_takes_keras_sparse_labels_shaped_n_by_1():
    logits = np.random.default_rng(0).standard_normal((5, 3))
    t = np.array([0, 2, 1, 1, 0])
    ce = losses.CrossEntropyLoss()
    want = ce(logits, t), ce.backward()
    got = ce(logits, t[:, None]), ce.backward()
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])
    # and through fit, as Keras' sparse_categorical_crossentropy takes them
    m = pyrnn.Sequential([pyrnn.Dense(2, 3, seed=0)])
    x = np.random.default_rng(1).standard_normal((6, 2)).astype(np.float32)
    y = np.array([[0], [1], [2], [0], [1], [2]])
    h = m.fit(x, y, loss="cross_entropy", optimizer="sgd", epochs=1, verbose=0)
    assert np.isfinite(h["loss"][0])
    assert m.evaluate(x, y, loss="cross_entropy") == pytest.approx(
        m.evaluate(x, y[:, 0], loss="cross_entropy"), rel=0, abs=0)


def test_cross_entropy_names_pytorchs_per_step_layout():
    # torch's per-step logits are (N, K, T): here the classes are last.
    logits = np.zeros((2, 4, 6))   # (N, K, T) as a torch port keeps it
    target = np.zeros((2, 6), np.int64)
    with pytest.raises(ValueError, match=r"look like PyTorch's per-step \(N, K, T\) layout.*"
                                         r"logits\.transpose\(0, 2, 1\)"):
        losses.CrossEntropyLoss()(logits, target)
    losses.CrossEntropyLoss()(logits.transpose(0, 2, 1), target)


def test_a_custom_loss_without_super_init_works_with_mean_reduction():
    class Half(losses.Loss):
        def __init__(self, scale=0.5):
            self.scale = scale  # no super().__init__()

        def forward(self, pred, target):
            d = np.asarray(pred, np.float64) - np.asarray(target)
            self._g = (2 * self.scale * d / d.size).astype(np.asarray(pred).dtype)
            return float(self.scale * (d * d).mean())

        def backward(self):
            return self._g

    rng = np.random.default_rng(0)
    m = pyrnn.Sequential([pyrnn.GRU(2, 3, batch_first=True, seed=0), pyrnn.LastStep(),
                          pyrnn.Dense(3, 1, seed=1)])
    h = m.fit(rng.standard_normal((4, 5, 2)), rng.standard_normal((4, 1)), loss=Half(),
              optimizer="adam", verbose=0)
    assert np.isfinite(h["loss"][0]) and Half().reduction == "mean"


@pytest.mark.parametrize("bad", [[-np.inf, 0.0, 0.0], [np.nan, 1.0, 2.0], [1e308, -1e308, 0.0]])
def test_probability_targets_ignore_a_masked_rows_logits_whatever_they_are(bad):
    # The class-index path did; with probability targets 0 * -Inf (or NaN) made the loss NaN
    # and the masked row's gradient NaN (helper-188). torch on the counted row is the oracle.
    rng = np.random.default_rng(3)
    logits = np.array([[rng.normal(size=3), bad]])                 # (1, 2, 3)
    target = rng.dirichlet(np.ones(3), size=(1, 2))
    ce = losses.CrossEntropyLoss()
    value = ce(logits, target, mask=np.array([[True, False]]))
    grad = ce.backward()
    want = torch.nn.functional.cross_entropy(torch.tensor(logits[0, :1]),
                                             torch.tensor(target[0, :1]))
    assert value == pytest.approx(float(want), rel=1e-12)
    np.testing.assert_array_equal(grad[0, 1], 0.0)
    assert np.isfinite(grad).all()
