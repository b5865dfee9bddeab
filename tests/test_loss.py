"""NLLLoss and CrossEntropyLoss against torch: every reduction, class weights of either sign, ignore_index,
K extra dimensions, unbatched samples, the empty batch, label smoothing and class-probability targets."""
import numpy as np
import pytest
import torch
from hypothesis import assume, given, strategies as st

import minicnn as mc
from helpers import assert_close, t
from strategies import DTYPES, generator, loss_cases, seeds


def make_inputs(case, dtype, rng, cross_entropy):
    shape, c = case["shape"], case["c"]
    class_axis = 0 if len(shape) == 1 else 1
    x = (rng.standard_normal(shape) * case["scale"]).astype(dtype)
    sample_shape = shape[:class_axis] + shape[class_axis + 1:]
    if cross_entropy and case["probabilities"]:
        target = rng.uniform(0.0, 1.0, shape)
        target = (target / target.sum(axis=class_axis, keepdims=True)).astype(dtype)
        ignore_index = -100
    else:
        target = rng.integers(0, c, sample_shape)
        ignore_index = int(target.flat[0]) if case["ignore"] and target.size else -100
    low = {None: 1.0, "positive": 0.1, "any sign": -2.0}[case["weighted"]]
    weight = None if case["weighted"] is None else rng.uniform(low, 2.0, c).astype(dtype)
    return x, target, ignore_index, weight, class_axis


def run(case, dtype, seed, cross_entropy):
    rng = generator(seed)
    x, target, ignore_index, weight, class_axis = make_inputs(case, dtype, rng, cross_entropy)
    smoothing = case["label_smoothing"] if cross_entropy else 0.0
    probabilities = target.dtype.kind == "f"
    w = np.ones(case["c"]) if weight is None else weight.astype(np.float64)
    if not probabilities:
        counted = target[target != ignore_index]
        denominator = float(w[counted].sum())
        # a weighted mean over weights of both signs can cancel to ~0: ill-conditioned for torch and minicnn alike
        assume(case["reduction"] != "mean" or abs(denominator) > 0.2 * float(np.abs(w[counted]).sum()))
    else:
        denominator = float(max(target.size // case["c"], 1))
    if not cross_entropy:
        x = torch.log_softmax(t(x), class_axis).numpy()
    extra = dict(label_smoothing=smoothing) if cross_entropy else {}
    crit = (mc.CrossEntropyLoss if cross_entropy else mc.NLLLoss)(
        weight=weight, ignore_index=ignore_index, reduction=case["reduction"], **extra)
    loss = crit(x, target)
    grad_out = rng.standard_normal(loss.shape).astype(dtype)
    dx = crit.backward(grad_out)

    xt = t(x, requires_grad=True)
    crit_t = (torch.nn.CrossEntropyLoss if cross_entropy else torch.nn.NLLLoss)(
        weight=None if weight is None else t(weight), ignore_index=ignore_index, reduction=case["reduction"],
        **extra)
    loss_t = crit_t(xt, t(target))
    loss_t.backward(t(grad_out))
    # Loss and gradient are sums of terms that can cancel (weights of both signs, x_t - logsumexp(x));
    # judge their rounding against the size of those terms, not against a result that may be nearly 0.
    per_term = float(np.abs(w).max() * (2 * np.abs(x).max(initial=0.0) + np.log(case["c"]) + 1))
    count = max(int(np.prod(loss_t.shape if case["reduction"] == "none" else target.shape[:1] or (1,))), 1)
    divide = abs(denominator) if case["reduction"] == "mean" and denominator else 1.0
    loss_terms = per_term * (1 if case["reduction"] == "none" else max(x.size // case["c"], 1)) / divide
    grad_terms = float(np.abs(w).max() * np.abs(grad_out).max(initial=0.0)) / divide
    assert count >= 1
    assert_close(loss, loss_t.detach().numpy(), "loss", scale=loss_terms)
    assert_close(dx, xt.grad.numpy(), "input gradient", scale=grad_terms)


@given(case=loss_cases(), dtype=DTYPES, seed=seeds)
def test_nll_loss_matches_torch(case, dtype, seed):
    run(case, dtype, seed, cross_entropy=False)


@given(case=loss_cases(), dtype=DTYPES, seed=seeds)
def test_cross_entropy_matches_torch(case, dtype, seed):
    run(case, dtype, seed, cross_entropy=True)


@given(dtype=DTYPES, seed=seeds, n=st.integers(0, 4100), c=st.integers(1, 12), extra=st.sampled_from([(), (3,), (2, 5)]),
       weighted=st.sampled_from([None, "positive", "any sign"]), ignored=st.sampled_from([0.0, 0.3, 1.0]),
       reduction=st.sampled_from(["mean", "sum", "none"]))
def test_nll_loss_and_its_gradient_equal_torch_to_the_bit(dtype, seed, n, c, extra, weighted, ignored, reduction):
    """Given the same log-probabilities, NLLLoss's loss and input gradient are torch's bit for bit: its
    reductions sum in torch's order (a cascade of partial sums, one level every 16 samples, past
    4096 samples three levels deep), the unweighted mean divides by the count, and the backward by
    the forward's total weight. Batches up to 4100 samples, K extra dimensions, ignored samples."""
    rng = generator(seed)
    shape = (n, c, *extra)
    logp = torch.log_softmax(t(rng.standard_normal(shape).astype(dtype)), 1).numpy()
    target = rng.integers(0, c, (n, *extra))
    target[rng.random(target.shape) < ignored] = -100
    low = {None: 1.0, "positive": 0.1, "any sign": -2.0}[weighted]
    weight = None if weighted is None else rng.uniform(low, 2.0, c).astype(dtype)
    crit = mc.NLLLoss(weight=weight, reduction=reduction)
    loss = crit(logp, target)
    grad_out = rng.standard_normal(loss.shape).astype(dtype)
    dx = crit.backward(grad_out)
    xt = t(logp, requires_grad=True)
    loss_t = torch.nn.NLLLoss(weight=None if weight is None else t(weight), reduction=reduction)(xt, t(target))
    loss_t.backward(t(grad_out))
    np.testing.assert_array_equal(loss, loss_t.detach().numpy())  # (nan where both are: nothing counted)
    np.testing.assert_array_equal(dx, xt.grad.numpy())


def test_label_smoothing_hand_derived():
    """Uniform logits over 4 classes, e = 0.2: the loss stays log 4 (every class has probability 1/4), and the
    gradient is p - ((1 - e) onehot + e/C) = 1/4 - (0.8 + 0.05) at the target, 1/4 - 0.05 elsewhere."""
    crit = mc.CrossEntropyLoss(label_smoothing=0.2)
    np.testing.assert_allclose(crit(np.zeros((1, 4)), np.array([2])), np.log(4.0), rtol=1e-15)
    np.testing.assert_allclose(crit.backward(), [[0.2, 0.2, -0.6, 0.2]], rtol=1e-14)


def test_k_dimensional_loss_is_the_loss_over_every_position():
    """(N, C, d) with targets (N, d) equals the (N*d, C) loss of the positions moved to rows."""
    rng = np.random.default_rng(0)
    x, target = rng.standard_normal((2, 3, 4)), rng.integers(0, 3, (2, 4))
    for reduction in ("mean", "sum", "none"):
        k_dim, rows = mc.CrossEntropyLoss(reduction=reduction), mc.CrossEntropyLoss(reduction=reduction)
        loss = k_dim(x, target)
        loss_rows = rows(np.moveaxis(x, 1, -1).reshape(8, 3), target.reshape(8))
        np.testing.assert_allclose(np.ravel(loss), np.ravel(loss_rows), rtol=1e-15)
        grad = rng.standard_normal(np.shape(loss))
        np.testing.assert_allclose(np.moveaxis(k_dim.backward(grad), 1, -1).reshape(8, 3),
                                   rows.backward(grad.reshape(np.shape(loss_rows))), rtol=1e-15)


@pytest.mark.parametrize("make", [lambda: mc.NLLLoss(reduction="mean"), lambda: mc.CrossEntropyLoss()])
def test_the_empty_batch_gives_nan_mean_and_an_empty_gradient(make):
    crit = make()
    loss = crit(np.zeros((0, 3)), np.zeros(0, np.int64))
    assert np.isnan(loss) and crit.backward().shape == (0, 3)


def test_cross_entropy_hand_derived():
    """Uniform logits over 4 classes: loss log(4); gradient (softmax - onehot) / N."""
    crit = mc.CrossEntropyLoss()
    loss = crit(np.zeros((2, 4)), np.array([0, 3]))
    np.testing.assert_allclose(loss, np.log(4.0), rtol=1e-15)
    np.testing.assert_allclose(crit.backward(), [[-0.375, 0.125, 0.125, 0.125], [0.125, 0.125, 0.125, -0.375]],
                               rtol=1e-15)


def test_cross_entropy_of_logits_in_the_thousands_is_finite():
    crit = mc.CrossEntropyLoss()
    loss = crit(np.array([[5000.0, -5000.0, 0.0]], np.float32), np.array([1]))
    assert np.isfinite(loss) and abs(float(loss) - 10000.0) < 1e-2
    assert np.isfinite(crit.backward()).all()
