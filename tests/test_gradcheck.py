"""Every layer's backward against central finite differences in float64, independent of torch."""
import numpy as np
import pytest

import minicnn as mc

EPS = 1e-6


def numerical_gradient(f, array):
    """Central differences of scalar ``f()`` with respect to every entry of ``array`` (perturbed in place)."""
    grad = np.zeros_like(array)
    for i in np.ndindex(array.shape):
        saved = array[i]
        array[i] = saved + EPS
        plus = f()
        array[i] = saved - EPS
        minus = f()
        array[i] = saved
        grad[i] = (plus - minus) / (2 * EPS)
    return grad


def assert_matches_finite_differences(layer, x, prepare=lambda: None, rtol=1e-6):
    """Check dL/dx and every dL/dparam for L = sum(layer(x) * R) with a fixed random R."""
    rng = np.random.default_rng(0)
    prepare()
    out = layer(x)
    weights = rng.standard_normal(out.shape)

    def loss():
        prepare()
        return float(np.sum(layer(x) * weights))

    prepare()
    layer(x)
    layer.zero_grad()
    dx = layer.backward(weights)
    analytic = [("input", dx, x)] + [(name, p.grad.copy(), p.data) for name, p in layer.named_parameters()]
    for name, grad, array in analytic:
        numeric = numerical_gradient(loss, array)
        scale = max(np.abs(numeric).max(), 1e-3)
        np.testing.assert_allclose(grad, numeric, rtol=rtol, atol=rtol * scale, err_msg=name)


def rand(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("args, shape", [
    (dict(in_channels=2, out_channels=3, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0)), (2, 2, 5, 4)),
    (dict(in_channels=4, out_channels=2, kernel_size=3, dilation=2, groups=2, padding="same"), (1, 4, 5, 6)),
    (dict(in_channels=1, out_channels=2, kernel_size=2, bias=False, padding="same"), (1, 1, 3, 3)),
])
def test_conv2d(args, shape):
    assert_matches_finite_differences(mc.Conv2d(**args, dtype=np.float64), rand(*shape))


@pytest.mark.parametrize("args", [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
                                  dict(kernel_size=(2, 3), stride=2, dilation=(2, 1), ceil_mode=True)])
def test_maxpool2d(args):
    assert_matches_finite_differences(mc.MaxPool2d(**args), rand(2, 2, 6, 7))


@pytest.mark.parametrize("layer, shape", [(mc.BatchNorm2d(3, dtype=np.float64), (2, 3, 2, 3)),
                                          (mc.BatchNorm1d(4, dtype=np.float64), (5, 4)),
                                          (mc.BatchNorm1d(2, dtype=np.float64), (3, 2, 4))])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm(layer, shape, training):
    layer.train(training)
    layer.weight.data[...] = rand(layer.num_features, seed=2)
    layer.bias.data[...] = rand(layer.num_features, seed=3)
    if not training:
        layer.running_mean[...] = rand(layer.num_features, seed=4)
        layer.running_var[...] = 1.5
    assert_matches_finite_differences(layer, rand(*shape))


def test_linear():
    assert_matches_finite_differences(mc.Linear(5, 3, dtype=np.float64), rand(4, 5))


def test_relu():
    x = rand(3, 4)
    x[np.abs(x) < 1e-3] = 0.5  # stay away from the kink
    assert_matches_finite_differences(mc.ReLU(), x)


def test_flatten_and_log_softmax():
    assert_matches_finite_differences(mc.Flatten(), rand(2, 3, 2))
    assert_matches_finite_differences(mc.LogSoftmax(dim=1), rand(3, 5) * 10)
    assert_matches_finite_differences(mc.LogSoftmax(dim=0), rand(3, 5))


def test_dropout_with_a_fixed_mask():
    layer = mc.Dropout(0.4)

    def same_mask():
        layer.generator = np.random.default_rng(5)

    assert_matches_finite_differences(layer, rand(4, 6), prepare=same_mask)


@pytest.mark.parametrize("crit", [mc.NLLLoss(reduction="mean"), mc.CrossEntropyLoss(reduction="sum"),
                                  mc.CrossEntropyLoss(weight=np.array([0.5, 1.0, 2.0]), reduction="mean")])
def test_losses(crit):
    x, target = rand(4, 3), np.array([0, 2, 1, 2])
    grad = (crit(x, target), crit.backward())[1]
    numeric = numerical_gradient(lambda: float(crit(x, target)), x)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_a_whole_model():
    model = mc.Sequential(mc.Conv2d(1, 2, 3, padding=1, dtype=np.float64), mc.BatchNorm2d(2, dtype=np.float64),
                          mc.ReLU(), mc.MaxPool2d(2), mc.Flatten(), mc.Linear(2 * 3 * 3, 4, dtype=np.float64),
                          mc.LogSoftmax(dim=1))
    assert_matches_finite_differences(model, rand(2, 1, 6, 6))
