"""``impl="naive"``: the readable direct loops run through the same layers, train the real models,
and stay debuggable as plain Python with NUMBA_DISABLE_JIT=1."""

import numpy as np
import pytest

import minicnn as mc
from helpers import assert_close, printed_without_jit
from minicnn.training import models


@pytest.mark.parametrize("name", list(models.MODELS))
def test_a_training_step_on_the_naive_kernels_equals_the_fast_one(name):
    rng = np.random.default_rng(0)
    x, y = rng.random((3, *models.INPUT_SHAPE)), rng.integers(0, 10, 3)
    grads = {}
    for impl in ("fast", "naive"):
        model = models.build(name, dtype=np.float64, seed=4, impl=impl)
        assert all(m.impl == impl for m in model if isinstance(m, (mc.Conv2d, mc.MaxPool2d)))
        criterion = models.criterion(name)
        loss = criterion(model(x), y)
        dx = model.backward(criterion.backward())
        grads[impl] = (loss, dx, {n: p.grad.copy() for n, p in model.named_parameters()})
    (loss_f, dx_f, g_f), (loss_n, dx_n, g_n) = grads["fast"], grads["naive"]
    assert_close(loss_n, loss_f, "loss")
    assert_close(dx_n, dx_f, "input gradient")
    # A conv bias feeding a BatchNorm has a gradient that is zero in theory: both sides are rounding
    # noise, so every gradient is judged against the model's largest gradient entry.
    largest = max(np.abs(g).max() for g in g_f.values())
    for key in g_f:
        assert_close(g_n[key], g_f[key], key, scale=largest)


def test_the_naive_layers_run_as_plain_python_with_the_jit_disabled():
    """The same numbers with NUMBA_DISABLE_JIT=1 (a debugger can step through every loop)."""
    code = ("import json, numpy as np, minicnn as mc, numba\n"
            "assert numba.config.DISABLE_JIT\n"
            "rng = np.random.default_rng(0)\n"
            "m = mc.Sequential(mc.Conv2d(2, 3, (3, 2), stride=2, padding=1, dtype=np.float64, impl='naive',\n"
            "                            generator=np.random.default_rng(1)), mc.MaxPool2d(2, stride=1, impl='naive'))\n"
            "x = rng.standard_normal((2, 2, 7, 6))\n"
            "out = m(x); dx = m.backward(np.ones_like(out))\n"
            "print(json.dumps([out.tolist(), dx.tolist(), m[0].weight.grad.tolist()]))\n")
    out_py, dx_py, dw_py = (np.array(v) for v in printed_without_jit(code))
    rng = np.random.default_rng(0)
    m = mc.Sequential(mc.Conv2d(2, 3, (3, 2), stride=2, padding=1, dtype=np.float64,
                                generator=np.random.default_rng(1)), mc.MaxPool2d(2, stride=1))
    x = rng.standard_normal((2, 2, 7, 6))
    out = m(x)
    dx = m.backward(np.ones_like(out))
    assert_close(out_py, out, "output")
    assert_close(dx_py, dx, "input gradient")
    assert_close(dw_py, m[0].weight.grad, "weight gradient")


def test_impl_is_checked():
    with pytest.raises(ValueError, match=r"Conv2d: impl must be one of 'fast', 'im2col', 'naive', got 'slow'"):
        mc.Conv2d(1, 1, 3, impl="slow")
    with pytest.raises(ValueError, match=r"MaxPool2d: impl must be one of 'fast', 'naive', got None"):
        mc.MaxPool2d(2, impl=None)
