"""NLLLoss and CrossEntropyLoss against torch for every reduction, class weights and ignore_index."""
import numpy as np
import torch
from hypothesis import given

import minicnn as mc
from helpers import assert_close, t
from strategies import DTYPES, generator, loss_cases, seeds


def run(case, dtype, seed, mc_cls, torch_cls, log_probs):
    rng = generator(seed)
    x = (rng.standard_normal((case["n"], case["c"])) * case["scale"]).astype(dtype)
    target = rng.integers(0, case["c"], case["n"])
    ignore_index = -100
    if case["ignore"]:
        ignore_index = int(target[0])
    weight = rng.uniform(0.1, 2.0, case["c"]).astype(dtype) if case["weighted"] else None
    if log_probs:
        x = torch.log_softmax(t(x), 1).numpy()
    crit = mc_cls(weight=weight, ignore_index=ignore_index, reduction=case["reduction"])
    loss = crit(x, target)
    grad_out = rng.standard_normal(loss.shape).astype(dtype)
    dx = crit.backward(grad_out)

    xt = t(x, requires_grad=True)
    crit_t = torch_cls(weight=None if weight is None else t(weight), ignore_index=ignore_index,
                       reduction=case["reduction"])
    loss_t = crit_t(xt, t(target))
    loss_t.backward(t(grad_out))
    # The loss is a difference of terms the size of the inputs (logsumexp(x) - x_t): judge its
    # rounding against them, not against a result that may cancel to nearly 0.
    terms = float(np.abs(x).max() * (1.0 if weight is None else weight.max()))
    assert_close(loss, loss_t.detach().numpy(), "loss", scale=terms)
    assert_close(dx, xt.grad.numpy(), "input gradient")
    assert np.isfinite(loss).all() or case["ignore"]


@given(case=loss_cases(), dtype=DTYPES, seed=seeds)
def test_nll_loss_matches_torch(case, dtype, seed):
    run(case, dtype, seed, mc.NLLLoss, torch.nn.NLLLoss, log_probs=True)


@given(case=loss_cases(), dtype=DTYPES, seed=seeds)
def test_cross_entropy_matches_torch(case, dtype, seed):
    run(case, dtype, seed, mc.CrossEntropyLoss, torch.nn.CrossEntropyLoss, log_probs=False)


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
