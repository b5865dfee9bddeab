"""Every layer's backward against central finite differences in float64, independent of torch.

``mc.gradcheck`` is itself tested both ways in test_learner_tools.py (it passes correct modules
and catches broken ones)."""
from unittest import mock

import numpy as np
import pytest

import minicnn as mc
import minicnn.functional.conv as conv_module
from minicnn.functional.norm import CHANNEL_BLOCK
from minicnn.testing import numerical_gradient

TOLERANCE = 1e-6


def check(module, x):
    report = mc.gradcheck(module, x, tolerance=TOLERANCE)
    assert report.ok, str(report)


def rand(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("args, shape", [
    (dict(in_channels=2, out_channels=3, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0)), (2, 2, 5, 4)),
    (dict(in_channels=4, out_channels=2, kernel_size=3, dilation=2, groups=2, padding="same"), (1, 4, 5, 6)),
    (dict(in_channels=1, out_channels=2, kernel_size=2, bias=False, padding="same"), (1, 1, 3, 3)),
    # 17 output and 9 input channels per group: the fast path's wide tiles (two vectors of float64), two blocks
    (dict(in_channels=18, out_channels=34, kernel_size=(2, 3), stride=(2, 1), padding=(1, 2), dilation=(1, 2),
          groups=2), (1, 18, 4, 5)),
])
def test_conv2d(args, shape):
    check(mc.Conv2d(**args), rand(*shape))


@pytest.mark.parametrize("kernel, widths", [((2, 3), ()), ((2, 3), (3, 5)), ((2, 5), (3, 5))])
def test_conv2d_tiles_along_rows(kernel, widths):
    """Outer-product tiles along the output rows, forced for every pass they can take (rows 16 wide:
    a row's last tile moved back over the one before); the forward and the input gradient both,
    tap by tap (``widths`` empty) or a kernel row of 3 or 5 taps at a time."""
    forced = dict(DIRECT_MAX_TAPS=0, ROWS_BELOW_VECTOR=0, WEIGHT_ROWS_MAX_TAPS=0, ROW_ALIGNED_MAX_REPEATED=10**9,
                  KERNEL_ROW_WIDTHS=widths)
    with mock.patch.multiple(conv_module, **forced):
        check(mc.Conv2d(3, 3, kernel, padding=(0, kernel[1] // 2)), rand(2, 3, 3, 16))


@pytest.mark.parametrize("kernel", [(2, 3), (2, 5)])
def test_conv2d_tiles_along_rows_with_a_strip(kernel):
    """Outer-product tiles along the output rows with each row's leftover pixels as a strip of columns
    across rows, forced for every pass that can take it (rows 16 wide: one 14-pixel tile and a strip
    of 2, which with the 5-wide kernel's padding of 2 leaves out its last kernel column)."""
    forced = dict(DIRECT_MAX_TAPS=0, ROWS_BELOW_VECTOR=0, WEIGHT_ROWS_MAX_TAPS=0, ROW_ALIGNED_MAX_REPEATED=-1,
                  STRIP_MAX_KERNEL_COLUMNS=10**9)
    with mock.patch.multiple(conv_module, **forced):
        check(mc.Conv2d(3, 3, kernel, padding=(0, kernel[1] // 2)), rand(2, 3, 3, 16))


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("impl", ["fast", "naive"])
def test_conv2d_padding_modes(padding_mode, impl):
    """A border pixel copied into the padding gets its copies' gradients too (the adjoint of the padding)."""
    conv = mc.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(2, 1), padding_mode=padding_mode, impl=impl)
    check(conv, rand(2, 2, 4, 5))


def test_unbatched_conv_and_pool():
    check(mc.Conv2d(2, 3, 3, padding=1), rand(2, 4, 5))
    check(mc.MaxPool2d(2, stride=1), rand(2, 4, 5))


@pytest.mark.parametrize("args", [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
                                  dict(kernel_size=(2, 3), stride=2, dilation=(2, 1), ceil_mode=True)])
def test_maxpool2d(args):
    check(mc.MaxPool2d(**args), rand(2, 2, 6, 7))


@pytest.mark.parametrize("layer, shape", [(mc.BatchNorm2d(3), (2, 3, 2, 3)), (mc.BatchNorm1d(4), (5, 4)),
                                          (mc.BatchNorm1d(2), (3, 2, 4)),
                                          # more channels than a block of the kernels that walk rows
                                          (mc.BatchNorm1d(CHANNEL_BLOCK + 1), (3, CHANNEL_BLOCK + 1))])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm(layer, shape, training):
    layer.train(training)
    layer.weight.data[...] = rand(layer.num_features, seed=2)
    layer.bias.data[...] = rand(layer.num_features, seed=3)
    if not training:
        layer.running_mean[...] = rand(layer.num_features, seed=4)
        layer.running_var[...] = 1.5
    check(layer, rand(*shape))


def test_linear_relu_flatten_log_softmax():
    check(mc.Linear(5, 3), rand(4, 5))
    x = rand(3, 4)
    x[np.abs(x) < 1e-3] = 0.5  # stay away from ReLU's kink
    check(mc.ReLU(), x)
    check(mc.Flatten(), rand(2, 3, 2))
    check(mc.LogSoftmax(dim=1), rand(3, 5) * 10)
    check(mc.LogSoftmax(dim=0), rand(3, 5))


class FixedMask:
    """A stand-in generator whose ``random`` always returns the same draws, so every forward drops the same."""

    def __init__(self, draws):
        self.draws = draws

    def random(self, shape):
        return self.draws.reshape(shape)


def test_dropout_with_a_fixed_mask():
    draws = np.random.default_rng(5).random(24)
    check(mc.Dropout(0.4, generator=FixedMask(draws)), rand(4, 6))


def _probabilities(shape, axis):
    p = np.random.default_rng(7).uniform(0.1, 1.0, shape)
    return p / p.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("crit, x, target", [
    (mc.NLLLoss(reduction="mean"), rand(4, 3), np.array([0, 2, 1, 2])),
    (mc.CrossEntropyLoss(reduction="sum"), rand(4, 3), np.array([0, 2, 1, 2])),
    (mc.CrossEntropyLoss(weight=np.array([0.5, 1.0, 2.0]), reduction="mean"), rand(4, 3), np.array([0, 2, 1, 2])),
    # K-dimensional, with ignore_index and weights of both signs
    (mc.NLLLoss(weight=np.array([0.5, -1.0, 2.0]), ignore_index=1), rand(2, 3, 2, 2),
     np.array([[[0, 1], [2, 2]], [[1, 0], [2, 0]]])),
    (mc.CrossEntropyLoss(reduction="sum"), rand(2, 3, 4), np.array([[0, 1, 2, 2], [1, 0, 2, 0]])),
    # label smoothing, alone, with weights and an ignored class
    (mc.CrossEntropyLoss(label_smoothing=0.3), rand(5, 4), np.array([0, 3, 1, 2, 3])),
    (mc.CrossEntropyLoss(label_smoothing=0.3, weight=np.array([0.5, 1.0, 2.0, 1.5]), ignore_index=3),
     rand(2, 4, 3), np.array([[0, 3, 1], [2, 3, 0]])),
    # class-probability targets, smoothed and weighted; one unbatched sample
    (mc.CrossEntropyLoss(label_smoothing=0.2, weight=np.array([0.5, 1.0, 2.0])), rand(3, 3, 2),
     _probabilities((3, 3, 2), 1)),
    (mc.CrossEntropyLoss(), rand(5), np.array(3)),
])
def test_losses(crit, x, target):
    crit(x, target)
    grad = crit.backward()
    numeric = numerical_gradient(lambda: float(crit(x, target)), x)
    np.testing.assert_allclose(grad, numeric, rtol=TOLERANCE, atol=TOLERANCE * np.abs(numeric).max())


def test_a_whole_model():
    model = mc.Sequential(mc.Conv2d(1, 2, 3, padding=1), mc.BatchNorm2d(2), mc.ReLU(), mc.MaxPool2d(2),
                          mc.Flatten(), mc.Linear(2 * 3 * 3, 4), mc.LogSoftmax(dim=1))
    check(model, rand(2, 1, 6, 6))


def test_batchnorm_without_bias():
    """torch 2.14's BatchNorm(bias=False): only the scale is a parameter."""
    layer = mc.BatchNorm2d(3, bias=False)
    layer.weight.data[...] = rand(3, seed=2)
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    check(layer, rand(4, 3, 2, 2))


def test_linear_with_its_products_split_between_threads(monkeypatch):
    """gemm.matmul's split path (forced for this small layer): forward, weight and input gradients."""
    from minicnn import runtime
    monkeypatch.setattr(runtime, "threads_for", lambda work: 3)
    check(mc.Linear(5, 7), rand(4, 5))
