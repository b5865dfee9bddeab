"""Bad input gets a ValueError/TypeError naming the layer, the argument, and expected versus received."""
import numpy as np
import pytest

import minicnn as mc

f32 = np.float32


@pytest.mark.parametrize("layer, x, exc, match", [
    # wrong ndim
    (mc.Conv2d(3, 4, 3), np.zeros((3, 8), f32), ValueError, r"Conv2d\(3, 4.*must be 3-D or 4-D, got a 2-D array of shape \(3, 8\)"),
    (mc.Conv2d(3, 4, 3), np.zeros((2, 8, 8), f32), ValueError, r"Conv2d\(3, 4.*must have 3 channels in dim 0, got shape \(2, 8, 8\)"),
    (mc.MaxPool2d(2), np.zeros((8, 8), f32), ValueError, r"MaxPool2d.*must be 3-D or 4-D.*\(8, 8\)"),
    (mc.BatchNorm2d(3), np.zeros((2, 3), f32), ValueError, r"BatchNorm2d\(3.*must be 4-D.*\(2, 3\)"),
    (mc.BatchNorm1d(3), np.zeros((2, 3, 4, 4), f32), ValueError, r"BatchNorm1d\(3.*must be 2-D or 3-D.*\(2, 3, 4, 4\)"),
    (mc.LogSoftmax(dim=2), np.zeros((2, 3), f32), ValueError, r"LogSoftmax.*dim 2 is out of range.*\(2, 3\)"),
    # wrong channel count
    (mc.Conv2d(3, 4, 3), np.zeros((1, 2, 8, 8), f32), ValueError, r"Conv2d.*must have 3 channels in dim 1, got shape \(1, 2, 8, 8\)"),
    (mc.BatchNorm2d(3), np.zeros((2, 4, 2, 2), f32), ValueError, r"BatchNorm2d.*3 channels.*\(2, 4, 2, 2\)"),
    (mc.Linear(1568, 10), np.zeros((2, 1567), f32), ValueError, r"Linear\(in_features=1568.*1568 features in its last dim, got shape \(2, 1567\)"),
    # integer or non-float input
    (mc.Conv2d(1, 1, 1), np.zeros((1, 1, 2, 2), np.int64), TypeError, r"Conv2d.*float32 or float64, got dtype int64"),
    (mc.ReLU(), np.zeros(3, np.uint8), TypeError, r"ReLU.*got dtype uint8"),
    (mc.MaxPool2d(2), [[1.0]], TypeError, r"MaxPool2d.*numpy.ndarray, got list"),
    (mc.Linear(2, 2), np.zeros((1, 2), np.float64), TypeError, r"Linear.*dtype float64 does not match the layer's dtype float32"),
    # kernel larger than the padded input
    (mc.Conv2d(1, 1, 5, padding=1), np.zeros((1, 1, 2, 9), f32), ValueError, r"Conv2d.*kernel \(extent d\*\(k-1\)\+1 = \(5, 5\)\) is larger than the padded input \(4, 11\)"),
    (mc.Conv2d(1, 1, 3, dilation=3), np.zeros((1, 1, 6, 6), f32), ValueError, r"extent.*\(7, 7\).*padded input \(6, 6\)"),
    (mc.MaxPool2d(3), np.zeros((1, 1, 2, 2), f32), ValueError, r"MaxPool2d.*input shape \(1, 1, 2, 2\) is too small.*\(1, 1, 0, 0\)"),
])
def test_bad_input(layer, x, exc, match):
    with pytest.raises(exc, match=match):
        layer(x)


@pytest.mark.parametrize("make, exc, match", [
    (lambda: mc.Conv2d(1, 1, 0), ValueError, r"Conv2d: kernel_size must be positive, got 0"),
    (lambda: mc.Conv2d(1, 1, (3, -1)), ValueError, r"Conv2d: kernel_size must be positive, got \(3, -1\)"),
    (lambda: mc.Conv2d(1, 1, 3, stride=0), ValueError, r"Conv2d: stride must be positive, got 0"),
    (lambda: mc.Conv2d(1, 1, 3, dilation=(1, 0)), ValueError, r"Conv2d: dilation must be positive"),
    (lambda: mc.Conv2d(1, 1, 3, padding=-1), ValueError, r"Conv2d: padding must be >= 0, got -1"),
    (lambda: mc.Conv2d(1, 1, 3, padding="full"), ValueError, r"Conv2d: padding must be .* 'same', got 'full'"),
    (lambda: mc.Conv2d(1, 1, 2.5), TypeError, r"Conv2d: kernel_size must be an int or a pair of ints, got 2.5"),
    (lambda: mc.Conv2d(3, 4, 3, groups=2), ValueError, r"Conv2d: in_channels must be divisible by groups, got in_channels=3, groups=2"),
    (lambda: mc.Conv2d(4, 3, 3, groups=2), ValueError, r"Conv2d: out_channels must be divisible by groups, got out_channels=3, groups=2"),
    (lambda: mc.Conv2d(4, 4, 3, groups=0), ValueError, r"Conv2d: groups must be positive, got 0"),
    (lambda: mc.Conv2d(1, 1, 3, stride=2, padding="same"), ValueError, r"Conv2d: padding='same' is not supported for strided convolutions, got stride=\(2, 2\)"),
    (lambda: mc.Conv2d(1, 1, 3, dtype=np.int32), TypeError, r"Conv2d: dtype must be np.float32 or np.float64"),
    (lambda: mc.MaxPool2d(0), ValueError, r"MaxPool2d: kernel_size must be positive, got 0"),
    (lambda: mc.MaxPool2d(2, stride=-1), ValueError, r"MaxPool2d: stride must be positive, got -1"),
    (lambda: mc.MaxPool2d(2, dilation=0), ValueError, r"MaxPool2d: dilation must be positive"),
    (lambda: mc.MaxPool2d(2, padding=-1), ValueError, r"MaxPool2d: padding must be >= 0, got -1"),
    (lambda: mc.MaxPool2d(2, padding=2), ValueError, r"MaxPool2d: padding must be at most half of kernel_size \(2, 2\), got padding=\(2, 2\)"),
    (lambda: mc.BatchNorm2d(0), ValueError, r"BatchNorm2d: num_features must be positive, got 0"),
    (lambda: mc.BatchNorm1d(3, momentum=2.0), ValueError, r"BatchNorm1d: momentum must be a probability"),
    (lambda: mc.Dropout(1.5), ValueError, r"Dropout: p must be a probability in \[0, 1\], got 1.5"),
    (lambda: mc.NLLLoss(reduction="avg"), ValueError, r"NLLLoss: reduction must be one of .*got 'avg'"),
])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("crit", [mc.NLLLoss(), mc.CrossEntropyLoss()])
def test_loss_targets_are_checked(crit):
    name = type(crit).__name__
    x = np.zeros((2, 3), f32)
    with pytest.raises(ValueError, match=rf"{name}.*target 3 \(sample 1 of 2\) is out of range for 3 classes \(valid: 0 to 2"):
        crit(x, np.array([0, 3]))
    with pytest.raises(ValueError, match=rf"{name}.*target -1 \(sample 0 of 2\) is out of range"):
        crit(x, np.array([-1, 0]))
    with pytest.raises(ValueError, match=rf"{name}.*target must have shape \(2,\) to match input shape \(2, 3\) "
                                         rf"\(the input without its class dim 1\), got \(3,\)"):
        crit(x, np.array([0, 1, 2]))
    if name == "NLLLoss":
        with pytest.raises(TypeError, match=rf"{name}.*target must be an integer ndarray of class indices, got dtype float64"):
            crit(x, np.array([0.0, 1.0]))
    else:  # a float target is a distribution over the classes, of the input's shape
        with pytest.raises(ValueError, match=rf"{name}.*class probabilities must have the input's shape \(2, 3\), got \(2,\)"):
            crit(x, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=rf"{name}.*target must have shape \(\) to match input shape \(3,\)"):
        crit(np.zeros(3, f32), np.array([0]))
    with pytest.raises(ValueError, match=rf"{name}.*must be at least 1-D"):
        crit(np.zeros((), f32), np.array(0))
    with pytest.raises(ValueError, match=rf"{name}.*weight must have shape \(3,\)"):
        type(crit)(weight=np.ones(4, f32))(x, np.array([0, 1]))
    with pytest.raises(TypeError, match=rf"{name}: ignore_index must be an int, got None"):
        type(crit)(ignore_index=None)


def test_backward_checks_the_gradient_shape():
    conv = mc.Conv2d(1, 2, 3)
    conv(np.zeros((1, 1, 5, 5), f32))
    with pytest.raises(ValueError, match=r"Conv2d.*backward: grad_output must have the forward output's shape \(1, 2, 3, 3\), got \(1, 2, 5, 5\)"):
        conv.backward(np.zeros((1, 2, 5, 5), f32))
