"""gradcheck and compare_with_torch pass correct modules and catch a deliberately broken backward."""
import numpy as np
import pytest

import minicnn as mc
from minicnn.testing import compare_with_torch


class Square(mc.Module):
    """A learner's own module: y = x * x * scale, with a trainable scale."""

    def __init__(self, broken=False):
        super().__init__()
        self.scale = mc.Parameter(np.array([1.5]))
        self.broken = broken

    def forward(self, x):
        self._cache = x
        return x * x * self.scale.data

    def backward(self, grad_output):
        x = self._saved()
        self.scale.grad += np.sum(grad_output * x * x, keepdims=True).reshape(1)
        factor = 1.0 if self.broken else 2.0  # the broken one forgets the 2 of d(x^2)/dx
        return grad_output * factor * x * self.scale.data


class BrokenReLU(mc.ReLU):
    def backward(self, grad_output):
        return grad_output  # passes gradient through the negative side too


@pytest.mark.parametrize("module, shape", [
    (mc.Conv2d(2, 3, (3, 2), stride=2, padding=1), (2, 2, 5, 6)),
    (mc.MaxPool2d(2, stride=1), (1, 2, 4, 4)),
    (mc.BatchNorm2d(2), (3, 2, 2, 2)),
    (mc.Sequential(mc.Linear(4, 3), mc.LogSoftmax(dim=1)), (2, 4)),
    (Square(), (3, 2)),
])
def test_gradcheck_passes_correct_modules(module, shape):
    report = mc.gradcheck(module, np.random.default_rng(0).standard_normal(shape))
    assert report.ok, str(report)
    assert set(report.errors) == {"input", *(n for n, _ in module.named_parameters())}
    assert "passed" in str(report)


def test_gradcheck_restores_the_module():
    conv = mc.Conv2d(1, 1, 3)
    weights = conv.weight.data.copy()
    mc.gradcheck(conv, np.random.rand(1, 1, 4, 4))
    assert conv.weight.data.dtype == np.float32 and conv.dtype == np.float32
    np.testing.assert_array_equal(conv.weight.data, weights)
    bn = mc.BatchNorm1d(2)
    mc.gradcheck(bn, np.random.rand(4, 2))
    assert int(bn.num_batches_tracked) == 0 and bn.running_mean.dtype == np.float32


def test_gradcheck_catches_a_broken_backward():
    report = mc.gradcheck(Square(broken=True), np.random.default_rng(1).standard_normal((3, 2)))
    assert not report.ok
    assert report.errors["input"] == pytest.approx(0.5, rel=1e-4)  # half the true gradient
    assert report.errors["scale"] < 1e-8  # the parameter's gradient is right
    assert "FAILED" in str(report) and "<-- wrong" in str(report)
    x = np.random.default_rng(2).standard_normal((2, 5))
    x[np.abs(x) < 0.1] = 0.5
    assert not mc.gradcheck(BrokenReLU(), x).ok


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compare_with_torch_passes_correct_modules(dtype):
    model = mc.Sequential(mc.Conv2d(1, 2, 3, dtype=dtype), mc.BatchNorm2d(2, dtype=dtype), mc.ReLU(),
                          mc.MaxPool2d(2), mc.Flatten(), mc.Linear(8, 3, dtype=dtype))
    result = compare_with_torch(model, np.random.default_rng(0).random((2, 1, 6, 6)).astype(dtype))
    assert result.ok, str(result)
    assert {"output", "input gradient", "gradient of 0.weight", "buffer 1.running_var"} <= set(result.rows)


def test_compare_with_torch_catches_a_broken_backward():
    x = np.random.default_rng(3).standard_normal((2, 6))
    result = compare_with_torch(mc.Sequential(mc.Linear(6, 4, dtype=np.float64), BrokenReLU()), x)
    assert not result.ok
    assert result.rows["output"][1] < 1e-12  # the forward is right
    assert result.rows["input gradient"][1] > 0.01 and "<-- differs" in str(result)
