"""Negative log-likelihood and cross-entropy, forward and backward, with torch's semantics.

Shapes (the class axis is 1, or 0 for one unbatched sample):

    input  (N, C) or (N, C, d1, ..., dK) or (C,)
    target (N,)   or (N, d1, ..., dK)    or ()        class indices (int)
           or the input's shape                       class probabilities (cross-entropy only)

Every position ``i`` of the batch and the K extra dimensions is one sample: the
kernels see the input as rows (M, C) with M = N*d1*...*dK, and ``reduction='none'``
returns the loss in the target's shape.

NLL of log-probabilities ``logp`` with class weights ``w`` (default 1):

    l_i  = -w[t_i] * logp[i, t_i]        (0 where t_i == ignore_index)
    mean = sum_i l_i / sum_i w[t_i]      (the weighted mean, as in torch; ignored samples excluded)
    sum  = sum_i l_i
    none = l

summed in torch's order (``CASCADE_LEVELS``): given the same log-probabilities the loss and its
gradient are torch's bit for bit.

Cross-entropy is NLL of ``log_softmax(logits)`` along the class axis. With
``label_smoothing = e`` the target mixes the one-hot vector with the uniform one:

    l_i = (1 - e) * nll_i + (e / C) * s_i,      s_i = -sum_c w[c] * logp[i, c]

(``s_i`` is 0 for ignored samples, and 'mean' divides both parts by the same sum of w[t_i]).
With probability targets ``y`` (rows summing to 1), optionally smoothed to
``(1 - e) * y + e / C``:

    l_i = -sum_c w[c] * y[i, c] * logp[i, c],   mean = sum_i l_i / M   (M samples, not a weight sum)
"""
import functools
from typing import NamedTuple

import numpy as np
from numba import njit

from . import checks
from .activation import LogSoftmaxCache, log_softmax_backward, log_softmax_forward

REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------------------
# Kernels on rows (M, C)
# ---------------------------------------------------------------------------
# torch sums the NLL losses and weights of a reduction in its CPU kernel (LossNLL.cpp, LossNLL2d.cpp) by
# a cascade of CASCADE_LEVELS partial sums in the input's dtype; the kernel below sums the same numbers
# in the same order, so the loss is torch's to the bit.
CASCADE_LEVELS = 8


def _ceil_log2(n):
    """torch's ``utils::CeilLog2``: 1 for n <= 2, else the bits of n - 1."""
    if n <= 2:
        return 1
    bits = 0
    n -= 1
    while n:
        n >>= 1
        bits += 1
    return bits


def _nll_forward_kernel(logp, target, weight, ignore_index, losses, target_weight):
    """losses[i] = -w[t_i] * logp[i, t_i]. Returns (-1, the samples counted (not ignored), the sum of the
    losses, the sum of the w[t_i]), the sums in the losses' dtype, or (the first row whose target is
    no class, 0, 0, 0): the caller raises.

    Notes
    -----
    The sums are torch's cascade: each counted sample is added into ``partials[:, 0]`` (losses and
    weights, CASCADE_LEVELS levels each); after sample i, level j is added into level
    j + 1 and zeroed for j = 0, 1, ... while the j-th group of ``level_power`` bits of i is zero
    (every 16 samples into level 1, every 256 into level 2, ...). The totals then add the levels in
    order, starting from 0. Ignored samples count for nothing and do not cascade.
    """
    level_power = max(4, ceil_log2(logp.shape[0]) // CASCADE_LEVELS)
    level_mask = (1 << level_power) - 1
    partials = np.zeros((2, CASCADE_LEVELS), dtype=losses.dtype)
    counted = 0
    for i in range(logp.shape[0]):
        t = target[i]
        if t == ignore_index:
            losses[i] = 0
            target_weight[i] = 0
            continue
        if t < 0 or t >= logp.shape[1]:
            return i, 0, 0.0, 0.0
        counted += 1
        target_weight[i] = weight[t]
        losses[i] = -weight[t] * logp[i, t]
        partials[0, 0] += losses[i]
        partials[1, 0] += target_weight[i]
        for j in range(CASCADE_LEVELS - 1):
            if i & (level_mask << (j * level_power)) != 0:
                break
            for k in range(2):
                partials[k, j + 1] += partials[k, j]
                partials[k, j] = 0
    totals = np.zeros(2, dtype=losses.dtype)
    for k in range(2):
        for j in range(CASCADE_LEVELS):
            totals[k] += partials[k, j]
    return -1, counted, totals[0], totals[1]


def _nll_backward_kernel(grad_per_sample, target, target_weight, ignore_index, dlogp):
    """dlogp[i, t_i] = -w[t_i] * grad_i; every other entry is 0."""
    for i in range(dlogp.shape[0]):
        for k in range(dlogp.shape[1]):
            dlogp[i, k] = 0
        t = target[i]
        if t != ignore_index:
            dlogp[i, t] = -target_weight[i] * grad_per_sample[i]


ceil_log2 = njit(cache=True)(_ceil_log2)
nll_forward_kernel = njit(cache=True)(_nll_forward_kernel)
nll_backward_kernel = njit(cache=True)(_nll_backward_kernel)


# ---------------------------------------------------------------------------
# Shapes: class axis to rows and back
# ---------------------------------------------------------------------------
def to_rows(x):
    """``x`` (N, C, d1..dK) or (C,) as contiguous rows (M, C), the class axis last."""
    if x.ndim == 1:
        return np.ascontiguousarray(x).reshape(1, -1)
    if x.ndim == 2:  # already rows (moveaxis costs more than the kernel at these sizes)
        return np.ascontiguousarray(x)
    return np.ascontiguousarray(np.moveaxis(x, 1, -1)).reshape(-1, x.shape[1])


def from_rows(rows, shape):
    """The inverse of ``to_rows`` for an array of ``shape``."""
    if len(shape) <= 2:
        return rows.reshape(shape)
    moved = (shape[0], *shape[2:], shape[1])
    return np.moveaxis(rows.reshape(moved), -1, 1)


_ACCEPTED = {}  # _call_key of the loss calls checked and found valid (target ranges are checked every call)


def _call_key(function, x, target, weight, reduction, label_smoothing=0.0):
    """What the checks of a loss call depend on, or None when an array argument is no ndarray."""
    if type(x) is not np.ndarray or type(target) is not np.ndarray or (weight is not None and type(weight) is not np.ndarray):
        return None
    return (function, x.shape, x.dtype, target.shape, target.dtype, None if weight is None else (weight.shape, weight.dtype),
            reduction, label_smoothing)


def _check_input(function, name, x, weight, reduction):
    """The loss input ``x`` (N, C, d1..dK) or (C,), class ``weight`` (C,) or None, and ``reduction``.
    Returns the samples' shape (``x``'s without the class axis)."""
    checks.float_array(function, name, x, range(1, 33), "(N, C, d1, ..., dK) or (C,)")
    class_axis = 0 if x.ndim == 1 else 1
    if weight is not None:
        checks.float_array(function, "weight", weight, 1, "(C,)", like=(name, x))
        checks.shape(function, "weight", weight, (x.shape[class_axis],), f"one entry per class of {name} {x.shape}, shape")
    if reduction not in REDUCTIONS:
        raise ValueError(f"{function}: reduction must be one of {', '.join(map(repr, REDUCTIONS))}, got {reduction!r}")
    return x.shape[:class_axis] + x.shape[class_axis + 1:]


def _check_class_indices(function, name, x, target, sample_shape):
    if not isinstance(target, np.ndarray) or target.dtype.kind not in "iu":
        raise TypeError(f"{function}: target must be an integer ndarray of class indices of shape {sample_shape}, "
                        f"got {getattr(target, 'dtype', type(target).__name__)}")
    checks.shape(function, "target", target, sample_shape, f"the samples' shape of {name} {x.shape},")


def _check_nll(logp, target, weight, reduction):
    _check_class_indices("nll_forward", "logp", logp, target, _check_input("nll_forward", "logp", logp, weight, reduction))


def _check_dloss(function, dloss, reduction, sample_shape):
    expected = sample_shape if reduction == "none" else ()
    if np.shape(dloss) != expected:
        raise ValueError(f"{function}: dloss must have the loss's shape {expected} (reduction={reduction!r}), "
                         f"got {np.shape(dloss)}")


def _reduce(losses, denominator, reduction, sample_shape):
    if reduction == "none":
        return losses.reshape(sample_shape)
    if reduction == "sum":
        return losses.sum()
    if denominator != 0:
        return losses.sum() / denominator
    with np.errstate(invalid="ignore", divide="ignore"):  # nothing counted: 0/0 = nan, as in torch
        return losses.sum() / denominator


def _per_sample(dloss, denominator, reduction, count, dtype):
    """The upstream gradient of each sample's loss, (M,)."""
    if reduction == "none":
        return np.ascontiguousarray(np.asarray(dloss, dtype=dtype).reshape(count))  # the samples' order = the rows
    scale = np.asarray(dloss, dtype=dtype)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = scale / denominator
    return np.full(count, scale, dtype=dtype)


# ---------------------------------------------------------------------------
# NLL
# ---------------------------------------------------------------------------
class NLLCache(NamedTuple):
    target: np.ndarray          # (M,) int64: one class index per row
    target_weight: np.ndarray   # (M,): w[t_i], 0 where t_i == ignore_index
    total_weight: np.floating   # sum of target_weight, summed as torch does: the 'mean' divides by it
    ignore_index: int
    reduction: str
    input_shape: tuple          # the log-probabilities' shape
    sample_shape: tuple         # the target's shape: the shape of the 'none' loss


def nll_forward(logp, target, weight=None, ignore_index=-100, reduction="mean"):
    """NLL loss of log-probabilities ``logp`` for class indices ``target`` (an integer array of the
    samples' shape, each a class or ``ignore_index``).

    Returns
    -------
    loss : 0-d ndarray for 'mean'/'sum', the target's shape for 'none'
    cache : NLLCache for ``nll_backward``
    """
    checks.check_once(_ACCEPTED, _call_key("nll_forward", logp, target, weight, reduction), _check_nll,
                      logp, target, weight, reduction)
    return checked_nll_forward("nll_forward", logp, target, weight, ignore_index, reduction)


@functools.lru_cache(maxsize=64)
def _ones(size, dtype):
    """``size`` ones: the class weights of an unweighted loss, the same at every call. The kernel only
    reads them; left writable, so that it sees the same array type as given weights (a read-only
    array is another Numba type, compiled again)."""
    return np.ones(size, dtype)


def checked_nll_forward(function, logp, target, weight, ignore_index, reduction):
    """``nll_forward`` for arguments already checked (the loss layers check their own), but for the
    targets' range: the kernel checks it, and the error names ``function`` (a name, or the layer)."""
    rows = to_rows(logp)
    M, C = rows.shape
    flat_target = np.ascontiguousarray(target, dtype=np.int64).reshape(M)
    losses = np.empty(M, dtype=logp.dtype)
    target_weight = np.empty(M, dtype=logp.dtype)
    bad, counted, loss_sum, weight_sum = nll_forward_kernel(
        rows, flat_target, weight if weight is not None else _ones(C, logp.dtype), ignore_index, losses, target_weight)
    if bad >= 0:
        raise ValueError(f"{function}: target {flat_target[bad]} (sample {bad} of {M}) is out of range for {C} classes "
                         f"(valid: 0 to {C - 1}, or ignore_index={ignore_index})")
    # the sums come back from Numba as Python floats, which hold them exactly; torch's unweighted mean
    # divides by the count of samples (a sum of ones equals it only below 2**24 in float32)
    loss_sum = logp.dtype.type(loss_sum)
    total_weight = logp.dtype.type(weight_sum if weight is not None else counted)
    if reduction == "none":
        loss = losses.reshape(np.shape(target))
    elif reduction == "sum":
        loss = loss_sum
    elif total_weight != 0:
        loss = loss_sum / total_weight
    else:
        with np.errstate(invalid="ignore", divide="ignore"):  # nothing counted: 0/0 = nan, as in torch
            loss = loss_sum / total_weight
    cache = NLLCache(flat_target, target_weight, total_weight, ignore_index, reduction, logp.shape, np.shape(target))
    return np.asarray(loss, dtype=logp.dtype), cache


def nll_backward(dloss, cache):
    """Gradient of the NLL loss with respect to ``logp``.

    Notes
    -----
    ``d l_i / d logp[i, k] = -w[t_i]`` if ``k == t_i`` else 0. For 'mean' every
    term is further divided by ``sum_i w[t_i]``; for 'none' ``dloss`` has the
    samples' shape. K extra dimensions change nothing: each position is a sample.
    """
    _check_dloss("nll_backward", dloss, cache.reduction, cache.sample_shape)
    target_weight = cache.target_weight
    M = target_weight.shape[0]
    per_sample = _per_sample(dloss, cache.total_weight, cache.reduction, M, target_weight.dtype)
    C = cache.input_shape[0] if len(cache.input_shape) == 1 else cache.input_shape[1]
    dlogp = np.empty((M, C), dtype=target_weight.dtype)
    nll_backward_kernel(per_sample, cache.target, target_weight, cache.ignore_index, dlogp)
    return from_rows(dlogp, cache.input_shape)


# ---------------------------------------------------------------------------
# Cross-entropy
# ---------------------------------------------------------------------------
class CrossEntropyCache(NamedTuple):
    log_softmax: LogSoftmaxCache
    nll: NLLCache               # class-index targets (None with probability targets)
    smoothing: float            # label_smoothing e
    weight: np.ndarray          # (C,) class weights (ones when none were given)
    probabilities: np.ndarray   # (M, C): the (smoothed) target distribution, or None for class indices
    ignored: np.ndarray         # (M,) bool: rows whose target is ignore_index (class indices, label smoothing)
    reduction: str
    input_shape: tuple          # the logits' shape


def _check_cross_entropy(logits, target, weight, reduction, label_smoothing):
    sample_shape = _check_input("cross_entropy_forward", "logits", logits, weight, reduction)
    if isinstance(target, np.ndarray) and target.dtype.kind == "f":
        checks.shape("cross_entropy_forward", "target", target, logits.shape, "(class probabilities) the logits' shape")
    else:
        _check_class_indices("cross_entropy_forward", "logits", logits, target, sample_shape)
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) or not 0 <= label_smoothing <= 1:
        raise ValueError(f"cross_entropy_forward: label_smoothing must be in [0, 1], got {label_smoothing!r}")


def cross_entropy_forward(logits, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """``nll(log_softmax(logits))`` along the class axis, with label smoothing or probability targets.

    ``target`` holds class indices (int, the samples' shape) or class probabilities (float, the
    logits' shape). Returns ``(loss, CrossEntropyCache)``.
    """
    checks.check_once(_ACCEPTED, _call_key("cross_entropy_forward", logits, target, weight, reduction, label_smoothing),
                      _check_cross_entropy, logits, target, weight, reduction, label_smoothing)
    return checked_cross_entropy_forward("cross_entropy_forward", logits, target, weight, ignore_index, reduction,
                                         label_smoothing)


def checked_cross_entropy_forward(function, logits, target, weight, ignore_index, reduction, label_smoothing):
    """``cross_entropy_forward`` for arguments already checked, but for the range of class-index
    targets (``checked_nll_forward``); the error names ``function``."""
    class_axis = 0 if logits.ndim == 1 else 1
    C = logits.shape[class_axis]
    logp, softmax_cache = log_softmax_forward(logits, dim=class_axis)
    weights = np.ones(C, dtype=logits.dtype) if weight is None else weight
    rows = to_rows(logp)
    sample_shape = logits.shape[:class_axis] + logits.shape[class_axis + 1:]
    if target.dtype.kind == "f":  # class probabilities
        y = to_rows(target.astype(logits.dtype, copy=False))
        if label_smoothing > 0:
            y = y * (1 - label_smoothing) + label_smoothing / C
        losses = -(rows * y * weights).sum(axis=1)
        loss = _reduce(losses, rows.shape[0], reduction, sample_shape)
        cache = CrossEntropyCache(softmax_cache, None, label_smoothing, weights, y, None, reduction, logits.shape)
        return np.asarray(loss, dtype=logits.dtype), cache
    nll, nll_cache = checked_nll_forward(function, logp, target, weight, ignore_index, reduction)
    ignored = None
    if label_smoothing > 0:
        ignored = nll_cache.target == ignore_index
        smooth = -(rows * weights).sum(axis=1)
        smooth[ignored] = 0
        smooth_loss = _reduce(smooth, nll_cache.target_weight.sum(), reduction, sample_shape)
        nll = (1 - label_smoothing) * nll + (label_smoothing / C) * smooth_loss
    cache = CrossEntropyCache(softmax_cache, nll_cache, label_smoothing, weights, None, ignored, reduction,
                              logits.shape)
    return np.asarray(nll, dtype=logits.dtype), cache


def cross_entropy_backward(dloss, cache):
    """Chain rule through the loss, then through log-softmax. Returns d loss / d logits.

    Notes
    -----
    With respect to the log-probabilities, per sample ``i`` with upstream gradient ``g_i``
    (``dloss``, divided by the mean's denominator for 'mean'):

        class indices:   dlogp[i, c] = -g_i * ((1 - e) * w[t_i] * [c = t_i] + (e / C) * w[c])
                         (0 for an ignored sample)
        probabilities:   dlogp[i, c] = -g_i * w[c] * y[i, c]

    and ``log_softmax_backward`` turns that into ``dx = dlogp - softmax * sum_c dlogp``. Unweighted
    and unsmoothed, this is the familiar ``(softmax - onehot) * g``.
    """
    class_axis = 0 if len(cache.input_shape) == 1 else 1
    _check_dloss("cross_entropy_backward", dloss, cache.reduction,
                 cache.input_shape[:class_axis] + cache.input_shape[class_axis + 1:])
    dtype = cache.weight.dtype
    if cache.probabilities is not None:
        y = cache.probabilities
        per_sample = _per_sample(dloss, y.shape[0], cache.reduction, y.shape[0], dtype)
        dlogp = from_rows(-(per_sample[:, None] * cache.weight * y), cache.input_shape)
        return log_softmax_backward(dlogp, cache.log_softmax)
    nll_cache, e = cache.nll, cache.smoothing
    dlogp = nll_backward(dloss, nll_cache)
    if e > 0:
        M = nll_cache.target.shape[0]
        per_sample = _per_sample(dloss, nll_cache.target_weight.sum(), cache.reduction, M, dtype)
        per_sample = np.where(cache.ignored, 0, per_sample)
        C = cache.weight.shape[0]
        smooth_rows = -(per_sample[:, None] * cache.weight) * (e / C)
        dlogp = (1 - e) * dlogp + from_rows(smooth_rows, nll_cache.input_shape)
    return log_softmax_backward(dlogp, cache.log_softmax)
