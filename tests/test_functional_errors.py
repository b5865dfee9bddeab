"""The functional API names its bad arguments: the function, the argument, expected against received.

Its kernels index memory without bounds checks, so before this a convolution whose weights
disagreed with its input in channels ran and returned numbers, and an NLL target past the last class
read beyond its row. Each case below checked that it now raises before any kernel runs, and that a
correct call through the same function still equals the naive kernel or numpy (the checks reject
nothing valid)."""
import numpy as np
import pytest

from minicnn import functional as F

f32, f64 = np.float32, np.float64
rng = np.random.default_rng(0)
X = rng.standard_normal((2, 3, 8, 8)).astype(f32)
W = rng.standard_normal((4, 3, 3, 3)).astype(f32)
CONV_FORWARDS = [F.conv2d_forward, F.conv2d_forward_im2col, F.conv2d_forward_naive]
CONV_BACKWARDS = {F.conv2d_forward: F.conv2d_backward, F.conv2d_forward_im2col: F.conv2d_backward_im2col,
                  F.conv2d_forward_naive: F.conv2d_backward_naive}
POOL_FORWARDS = {F.maxpool2d_forward: F.maxpool2d_backward, F.maxpool2d_forward_naive: F.maxpool2d_backward_naive}


@pytest.mark.parametrize("forward", CONV_FORWARDS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("args, exc, match", [
    ((X[0], W), ValueError, r"x must be 4-D \(N, C, H, W\), got shape \(3, 8, 8\)"),
    ((X, W[0]), ValueError, r"w must be 4-D \(F, C // groups, KH, KW\), got shape \(3, 3, 3\)"),
    ((X, W[:, :2]), ValueError, r"w of shape \(4, 2, 3, 3\) with groups=1 needs x with 2 channels \(N, C, H, W\), "
                                r"got x of shape \(2, 3, 8, 8\)"),
    ((X, W.astype(f64)), TypeError, r"w must have the dtype of x, float32, got float64"),
    ((X.astype(np.int32), W), TypeError, r"x must be float32 or float64, got dtype int32"),
    ((X.tolist(), W), TypeError, r"x must be a numpy.ndarray \(N, C, H, W\), got list"),
    ((X, W, np.zeros(3, f32)), ValueError, r"b must have one entry per filter of w, shape \(4,\), got \(3,\)"),
    ((X, W, np.zeros(4, f64)), TypeError, r"b must have the dtype of x, float32, got float64"),
    ((X, W, None, 1), ValueError, r"stride must be 2 ints \(height, width\), each at least 1, got 1"),
    ((X, W, None, (1, 1), 1), ValueError, r"padding must be 4 ints \(top, bottom, left, right\), each at least 0, got 1"),
    ((X, W, None, (1, 1), (1, 1, -1, 1)), ValueError, r"padding must be 4 ints .*got \(1, 1, -1, 1\)"),
    ((X, W, None, (1, 1), (0,) * 4, (0, 1)), ValueError, r"dilation must be 2 ints .*each at least 1, got \(0, 1\)"),
    ((X, W, None, (1, 1), (0,) * 4, (1, 1), 3), ValueError, r"groups must be a positive int dividing w's 4 filters"),
    ((X, np.zeros((4, 3, 9, 9), f32)), ValueError, r"the kernel \(extent dilation\*\(k-1\)\+1 = \(9, 9\), w of shape "
                                                     r"\(4, 3, 9, 9\)\) is larger than the padded input \(8, 8\)"),
    ((X, W, None, (1, 1), (0,) * 4, (4, 4)), ValueError, r"the kernel \(extent dilation\*\(k-1\)\+1 = \(9, 9\), w of shape \(4, 3, 3, 3\)\)"),
])
def test_convolution_arguments(forward, args, exc, match):
    with pytest.raises(exc, match=rf"^{forward.__name__}: {match}"):
        forward(*args)


@pytest.mark.parametrize("forward", CONV_FORWARDS, ids=lambda f: f.__name__)
def test_convolution_gradient_shape_and_a_valid_call(forward):
    """Grouped, padded, strided: accepted, and equal to the naive kernel; a dout of another shape is named."""
    x, w, b = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((6, 2, 3, 2)), rng.standard_normal(6)
    args = (w, b, (2, 1), (1, 0, 2, 1), (1, 2), 2)
    out, cache = forward(x, *args)
    want, want_cache = F.conv2d_forward_naive(x, *args)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    backward = CONV_BACKWARDS[forward]
    for got, expected in zip(backward(np.ones_like(out), cache), F.conv2d_backward_naive(np.ones_like(out), want_cache)):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=rf"^{backward.__name__}: dout must have the forward output's shape "
                                         rf"\(2, 6, 3, 7\), got \(2, 6, 7, 3\)"):
        backward(np.ones((2, 6, 7, 3)), cache)
    with pytest.raises(TypeError, match=rf"^{backward.__name__}: dout must be a numpy.ndarray of shape \(2, 6, 3, 7\), got float"):
        backward(1.0, cache)


@pytest.mark.parametrize("forward", list(POOL_FORWARDS), ids=lambda f: f.__name__)
@pytest.mark.parametrize("args, exc, match", [
    ((X[0], (2, 2), (2, 2)), ValueError, r"x must be 4-D \(N, C, H, W\), got shape \(3, 8, 8\)"),
    ((X.astype(np.int16), (2, 2), (2, 2)), TypeError, r"x must be float32 or float64, got dtype int16"),
    ((X, 2, (2, 2)), ValueError, r"kernel must be 2 ints \(height, width\), each at least 1, got 2"),
    ((X, (2, 2), (0, 2)), ValueError, r"stride must be 2 ints .*got \(0, 2\)"),
    ((X, (2, 2), (2, 2), (2, 0)), ValueError, r"padding must be at most half of kernel \(2, 2\), got padding=\(2, 0\)"),
    ((X, (9, 2), (1, 1)), ValueError, r"x of shape \(2, 3, 8, 8\) is too small for kernel \(9, 2\), padding \(0, 0\) "
                                      r"and dilation \(1, 1\): the output would be \(2, 3, 0, 7\)"),
])
def test_pooling_arguments(forward, args, exc, match):
    with pytest.raises(exc, match=rf"^{forward.__name__}: {match}"):
        forward(*args)


@pytest.mark.parametrize("forward", list(POOL_FORWARDS), ids=lambda f: f.__name__)
def test_pooling_gradient_shape_and_a_valid_call(forward):
    x = rng.standard_normal((2, 3, 7, 6))
    args = ((3, 2), (2, 1), (1, 1), (1, 2), True)
    out, cache = forward(x, *args)
    want, want_cache = F.maxpool2d_forward_naive(x, *args)
    np.testing.assert_array_equal(out, want)
    backward = POOL_FORWARDS[forward]
    dout = rng.standard_normal(out.shape)
    np.testing.assert_array_equal(backward(dout, cache), F.maxpool2d_backward_naive(dout, want_cache))
    with pytest.raises(ValueError, match=rf"^{backward.__name__}: dout must have the forward output's shape "
                                         rf"{tuple(out.shape)}".replace("(", r"\(").replace(")", r"\)")):
        backward(dout[:, :, 1:], cache)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: F.linear_forward(np.zeros((3, 9), f32), np.zeros((2, 10), f32)), ValueError,
     r"^linear_forward: w of shape \(2, 10\) needs x with 10 features \(N, in_features\), got x of shape \(3, 9\)"),
    (lambda: F.linear_forward(np.zeros((3, 10), f32), np.zeros((2, 10), f64)), TypeError,
     r"^linear_forward: w must have the dtype of x, float32, got float64"),
    (lambda: F.linear_forward(np.zeros(10, f32), np.zeros((2, 10), f32)), ValueError,
     r"^linear_forward: x must be 2-D \(N, in_features\), got shape \(10,\)"),
    (lambda: F.linear_forward(np.zeros((3, 10), f32), np.zeros((2, 10), f32), np.zeros(3, f32)), ValueError,
     r"^linear_forward: b must have one entry per row of w, shape \(2,\), got \(3,\)"),
    (lambda: F.linear_backward(np.zeros((3, 3), f32), F.linear_forward(np.zeros((3, 10), f32), np.zeros((2, 10), f32))[1]),
     ValueError, r"^linear_backward: dout must have the forward output's shape \(3, 2\), got \(3, 3\)"),
    (lambda: F.linear_backward(np.zeros((3, 2), f32), F.linear_forward(np.zeros((3, 10), f32), np.zeros((2, 10), f32))[1],
                               dw_into=np.zeros((10, 2), f32)),
     ValueError, r"^linear_backward: dw_into must have w's shape \(2, 10\), got \(10, 2\)"),
    (lambda: F.batchnorm_forward(X, np.ones(4, f32), np.zeros(3, f32)), ValueError,
     r"^batchnorm_forward: gamma must have one entry per channel of x \(2, 3, 8, 8\), shape \(3,\), got \(4,\)"),
    (lambda: F.batchnorm_forward(X, np.ones(3, f32), np.zeros(3, f32), running_mean=np.zeros(2), running_var=np.ones(3)),
     ValueError, r"^batchnorm_forward: running_mean must have one entry per channel .*shape \(3,\), got \(2,\)"),
    (lambda: F.batchnorm_forward(X, np.ones(3, f32), np.zeros(3, f32), batch_stats=False), ValueError,
     r"^batchnorm_forward: batch_stats=False normalizes with running_mean, got None"),
    (lambda: F.batchnorm_forward(X[0, 0, 0], np.ones(8, f32), np.zeros(8, f32)), ValueError,
     r"^batchnorm_forward: x must be 2-D or .* \(N, C, \*\), got shape \(8,\)"),
    (lambda: F.batchnorm_backward(X[:, :, :4], F.batchnorm_forward(X, np.ones(3, f32), np.zeros(3, f32))[1]), ValueError,
     r"^batchnorm_backward: dout must have the forward output's shape \(2, 3, 8, 8\), got \(2, 3, 4, 8\)"),
    (lambda: F.sgd_update(np.zeros(4, f32), np.ones(4), np.zeros(4, f32), 0.1, 0.9, 0.0, 0.0, False, False, True),
     TypeError, r"^sgd_update: g must have the dtype of p, float32, got float64"),
    (lambda: F.sgd_update(np.zeros(4, f32), np.ones(5, f32), np.zeros(4, f32), 0.1, 0.9, 0.0, 0.0, False, False, True),
     ValueError, r"^sgd_update: g must have p's shape \(4,\), got \(5,\)"),
    (lambda: F.sgd_update(np.zeros(4, f32), np.ones(4, f32), np.zeros((4, 2), f32)[:, 0], 0.1, 0.9, 0.0, 0.0, False, False,
                          True), ValueError, r"^sgd_update: buf must be C-contiguous"),
    (lambda: F.relu_forward(np.zeros(3, np.int8)), TypeError, r"^relu_forward: x must be float32 or float64, got dtype int8"),
    (lambda: F.relu_backward(np.zeros(4, f32), F.relu_forward(np.zeros(3, f32))[1]), ValueError,
     r"^relu_backward: dout must have the forward output's shape \(3,\), got \(4,\)"),
    (lambda: F.log_softmax_forward(np.zeros((2, 3), f32), dim=2), ValueError,
     r"^log_softmax_forward: dim must be an int in \[-2, 2\) for x of shape \(2, 3\), got 2"),
    (lambda: F.log_softmax_backward(np.zeros((3, 2), f32), F.log_softmax_forward(np.zeros((2, 3), f32))[1]), ValueError,
     r"^log_softmax_backward: dout must have the forward output's shape \(2, 3\), got \(3, 2\)"),
    (lambda: F.dropout_forward(np.zeros(3, f32), 1.5, rng), ValueError, r"^dropout_forward: p must be a probability in \[0, 1\], got 1.5"),
    (lambda: F.nll_forward(np.zeros((3, 4), f32), np.array([0, 1, 4])), ValueError,
     r"^nll_forward: target 4 \(sample 2 of 3\) is out of range for 4 classes \(valid: 0 to 3, or ignore_index=-100\)"),
    (lambda: F.nll_forward(np.zeros((3, 4), f32), np.array([0, -1, 2])), ValueError, r"^nll_forward: target -1 \(sample 1 of 3\)"),
    (lambda: F.nll_forward(np.zeros((3, 4), f32), np.array([0, 1])), ValueError,
     r"^nll_forward: target must have the samples' shape of logp \(3, 4\), \(3,\), got \(2,\)"),
    (lambda: F.nll_forward(np.zeros((3, 4), f32), np.array([0.0, 1, 2])), TypeError,
     r"^nll_forward: target must be an integer ndarray of class indices of shape \(3,\), got float64"),
    (lambda: F.nll_forward(np.zeros((3, 4), f32), np.array([0, 1, 2]), weight=np.ones(3, f32)), ValueError,
     r"^nll_forward: weight must have one entry per class of logp \(3, 4\), shape \(4,\), got \(3,\)"),
    (lambda: F.nll_forward(np.zeros((3, 4), f32), np.array([0, 1, 2]), reduction="avg"), ValueError,
     r"^nll_forward: reduction must be one of 'mean', 'sum', 'none', got 'avg'"),
    (lambda: F.nll_backward(np.ones(3, f32), F.nll_forward(np.zeros((3, 4), f32), np.array([0, 1, 2]))[1]), ValueError,
     r"^nll_backward: dloss must have the loss's shape \(\) \(reduction='mean'\), got \(3,\)"),
    (lambda: F.cross_entropy_forward(np.zeros((2, 4, 5), f32), np.zeros((2, 4), np.int64)), ValueError,
     r"^cross_entropy_forward: target must have the samples' shape of logits \(2, 4, 5\), \(2, 5\), got \(2, 4\)"),
    (lambda: F.cross_entropy_forward(np.zeros((2, 4), f32), np.array([9, 0])), ValueError,
     r"^cross_entropy_forward: target 9 \(sample 0 of 2\) is out of range for 4 classes"),
    (lambda: F.cross_entropy_forward(np.zeros((2, 4), f32), np.full((2, 3), 0.25, f32)), ValueError,
     r"^cross_entropy_forward: target must have \(class probabilities\) the logits' shape \(2, 4\), got \(2, 3\)"),
    (lambda: F.cross_entropy_forward(np.zeros((2, 4), f32), np.array([1, 0]), label_smoothing=-0.1), ValueError,
     r"^cross_entropy_forward: label_smoothing must be in \[0, 1\], got -0.1"),
    (lambda: F.cross_entropy_backward(np.ones(3, f32), F.cross_entropy_forward(np.zeros((2, 4), f32), np.array([1, 0]),
                                                                                 reduction="none")[1]), ValueError,
     r"^cross_entropy_backward: dloss must have the loss's shape \(2,\) \(reduction='none'\), got \(3,\)"),
])
def test_other_functions(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_valid_calls_of_the_other_functions_still_compute():
    """The same functions on arguments that pass, against numpy: nothing valid is refused."""
    x, w, b = rng.standard_normal((3, 10)), rng.standard_normal((2, 10)), rng.standard_normal(2)
    y, cache = F.linear_forward(x, w, b)
    np.testing.assert_allclose(y, x @ w.T + b, rtol=1e-12)
    dw = np.zeros_like(w)
    assert F.linear_backward(np.ones_like(y), cache, dw_into=dw)[1] is dw
    np.testing.assert_allclose(dw, np.ones_like(y).T @ x, rtol=1e-12)
    out, cache = F.batchnorm_forward(X, np.ones(3, f32), np.zeros(3, f32), running_mean=np.zeros(3, f32),
                                     running_var=np.ones(3, f32))
    assert F.batchnorm_backward(np.ones_like(out), cache)[0].shape == X.shape
    logits = rng.standard_normal((4, 5))
    logp, cache = F.log_softmax_forward(logits, dim=-1)
    np.testing.assert_allclose(logp, logits - np.log(np.exp(logits).sum(1, keepdims=True)), rtol=1e-12)
    target = np.array([0, 4, -100, 2])
    loss, cache = F.nll_forward(logp, target)
    np.testing.assert_allclose(loss, -(logp[0, 0] + logp[1, 4] + logp[3, 2]) / 3, rtol=1e-12)
    assert F.nll_backward(np.float64(1.0), cache).shape == logp.shape
    loss, cache = F.cross_entropy_forward(logits, np.full((4, 5), 0.2), reduction="none")
    np.testing.assert_allclose(loss, -logp.mean(axis=1), rtol=1e-12)
    assert F.cross_entropy_backward(np.ones(4), cache).shape == logits.shape


def test_a_remembered_valid_call_lets_no_other_call_through():
    """Valid calls are remembered by their shapes, dtypes and arguments (``checks.check_once``): the same
    x and w with a bias, stride or running statistics of another shape are still checked."""
    w, b = W.astype(f64), np.zeros(4)
    x = X.astype(f64)
    F.conv2d_forward(x, w, b)
    with pytest.raises(ValueError, match=r"^conv2d_forward: b must have one entry per filter of w, shape \(4,\), got \(5,\)"):
        F.conv2d_forward(x, w, np.zeros(5))
    with pytest.raises(ValueError, match=r"^conv2d_forward: stride must be 2 ints"):
        F.conv2d_forward(x, w, b, (1, 0))
    gamma, beta = np.ones(3), np.zeros(3)
    F.batchnorm_forward(x, gamma, beta, running_mean=None, running_var=np.ones(3))
    with pytest.raises(ValueError, match=r"^batchnorm_forward: running_var must have one entry per channel .*got \(2,\)"):
        F.batchnorm_forward(x, gamma, beta, running_mean=None, running_var=np.ones(2))
    F.nll_forward(np.zeros((3, 4)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"^nll_forward: target 5 \(sample 0 of 3\)"):
        F.nll_forward(np.zeros((3, 4)), np.array([5, 1, 2]))  # the same shapes: the range is checked every call
