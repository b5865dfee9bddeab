"""Element-wise and row-wise activations: ReLU, log-softmax and dropout.

Every kernel works on a flat (or 2-D) contiguous view; the functional
wrappers restore the caller's shape.
"""
from typing import NamedTuple

import numpy as np
from numba import prange

from ..runtime import parallel_kernel
from . import checks
from .checks import ANY_NDIM


# ---------------------------------------------------------------------------
# ReLU
# ---------------------------------------------------------------------------
def _relu_forward_kernel(x, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = 0 if v <= 0 else v  # NaN propagates, as in torch


def _relu_backward_kernel(dout, out, dx):
    for i in prange(dout.size):
        dx[i] = 0 if out[i] <= 0 else dout[i]


relu_forward_kernel = parallel_kernel(_relu_forward_kernel)
relu_backward_kernel = parallel_kernel(_relu_backward_kernel)


class ReLUCache(NamedTuple):
    """ReLU's backward needs only the output: ``out > 0`` exactly where ``x > 0``."""
    out: np.ndarray


def relu_forward(x):
    """``out = max(x, 0)``, any shape (0-d too). Returns ``(out, ReLUCache)``."""
    checks.float_array("relu_forward", "x", x, ANY_NDIM, "(any shape)")
    out = np.empty_like(x)
    relu_forward_kernel.for_work(x.size)(x.reshape(-1), out.reshape(-1))
    return out, ReLUCache(out)


def relu_backward(dout, cache):
    """``dx = dout * (x > 0)``.

    Notes
    -----
    The derivative of max(x, 0) is 1 for x > 0 and 0 for x < 0; at x = 0
    torch uses 0, and so do we (``out > 0`` is the same test as ``x > 0``).
    """
    out = cache.out
    checks.gradient("relu_backward", dout, out.shape)
    dx = np.empty_like(out)
    relu_backward_kernel.for_work(dx.size)(np.ascontiguousarray(dout, dtype=out.dtype).reshape(-1), out.reshape(-1), dx.reshape(-1))
    return dx


# ---------------------------------------------------------------------------
# Log-softmax over the last axis of a 2-D array
# ---------------------------------------------------------------------------
def _log_softmax_forward_kernel(x, out):
    """out[r, k] = (x[r, k] - max_r) - log(sum_j exp(x[r, j] - max_r)).

    Subtracting the row max first keeps every exp() in (0, 1], so logits in
    the thousands neither overflow nor turn into inf - inf.
    """
    R, K = x.shape
    for r in prange(R):
        m = x[r, 0]
        for k in range(1, K):
            if x[r, k] > m:
                m = x[r, k]
        s = 0.0
        for k in range(K):
            s += np.exp(x[r, k] - m)
        log_s = np.log(s)
        for k in range(K):
            # (x - m) - log(s), not x - (m + log(s)): when one logit dominates, log(s) is tiny and
            # m + log(s) would round it away (in float32 that lost up to 2% of the loss; torch subtracts in this order)
            out[r, k] = (x[r, k] - m) - log_s


def _log_softmax_backward_kernel(dout, out, dx):
    """dx[r, k] = dout[r, k] - softmax[r, k] * sum_j dout[r, j], softmax = exp(out)."""
    R, K = out.shape
    for r in prange(R):
        s = 0.0
        for k in range(K):
            s += dout[r, k]
        for k in range(K):
            dx[r, k] = dout[r, k] - np.exp(out[r, k]) * s


log_softmax_forward_kernel = parallel_kernel(_log_softmax_forward_kernel)
log_softmax_backward_kernel = parallel_kernel(_log_softmax_backward_kernel)


def _rows(x, dim):
    """View ``x`` with axis ``dim`` last, as a contiguous 2-D array of rows."""
    moved = x if dim in (-1, x.ndim - 1) else np.moveaxis(x, dim, -1)  # (moveaxis costs microseconds at batch 1)
    return np.ascontiguousarray(moved).reshape(-1, x.shape[dim]), moved.shape


def _unmoved(rows, moved_shape, dim):
    """The inverse of ``_rows``: rows (R, K) back to the original layout, axis ``dim`` in its place."""
    moved = rows.reshape(moved_shape)
    return moved if dim in (-1, len(moved_shape) - 1) else np.moveaxis(moved, -1, dim)


class LogSoftmaxCache(NamedTuple):
    """The output as rows (the backward needs ``softmax = exp(out)``) and how to undo the row view."""
    out_rows: np.ndarray    # (R, K): log-softmax with axis ``dim`` moved last
    dim: int
    moved_shape: tuple      # the output's shape with axis ``dim`` moved last
    x_shape: tuple          # the input's (and the output's) shape


def log_softmax_forward(x, dim=1):
    """``log(softmax(x))`` along ``dim``, computed stably. Returns ``(out, cache)``."""
    checks.float_array("log_softmax_forward", "x", x, range(1, 33), "(at least 1-D)")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not -x.ndim <= dim < x.ndim:
        raise ValueError(f"log_softmax_forward: dim must be an int in [{-x.ndim}, {x.ndim}) for x of shape {x.shape}, "
                         f"got {dim!r}")
    rows, moved_shape = _rows(x, dim)
    out = np.empty_like(rows)
    log_softmax_forward_kernel.for_work(rows.size)(rows, out)
    return _unmoved(out, moved_shape, dim), LogSoftmaxCache(out, dim, moved_shape, x.shape)


def log_softmax_backward(dout, cache):
    """Backward of log-softmax.

    Notes
    -----
    y_k = x_k - log(sum_j exp(x_j)), so dy_k/dx_i = [k = i] - softmax_i, and
    dx_i = sum_k dout_k (delta_ki - softmax_i) = dout_i - softmax_i * sum_k dout_k.
    """
    out, dim, moved_shape = cache.out_rows, cache.dim, cache.moved_shape
    checks.gradient("log_softmax_backward", dout, cache.x_shape)
    drows, _ = _rows(np.asarray(dout, dtype=out.dtype), dim)
    dx = np.empty_like(out)
    log_softmax_backward_kernel.for_work(drows.size)(drows, out, dx)
    return _unmoved(dx, moved_shape, dim)


# ---------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------
def _scale_by_mask_kernel(x, mask, scale, out):
    for i in prange(x.size):
        out[i] = x[i] * scale if mask[i] else 0


scale_by_mask_kernel = parallel_kernel(_scale_by_mask_kernel)


class DropoutCache(NamedTuple):
    keep: np.ndarray        # bool, the input's shape: which elements were kept
    scale: float            # 1 / (1 - p), or 0 when p = 1


def dropout_forward(x, p, rng):
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)``.

    Returns ``(out, cache)``; the cache is the keep mask and the scale.
    ``p = 1`` zeroes everything, as torch does.
    """
    checks.float_array("dropout_forward", "x", x, ANY_NDIM, "(any shape)")
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)) or not 0 <= p <= 1:
        raise ValueError(f"dropout_forward: p must be a probability in [0, 1], got {p!r}")
    keep = rng.random(x.shape) >= p
    scale = 0.0 if p >= 1.0 else 1.0 / (1.0 - p)
    out = np.empty_like(x)
    scale_by_mask_kernel.for_work(x.size)(x.reshape(-1), keep.reshape(-1), scale, out.reshape(-1))
    return out, DropoutCache(keep, scale)


def dropout_backward(dout, cache):
    """``dx = dout * keep / (1 - p)``: the same mask and scale as the forward."""
    checks.gradient("dropout_backward", dout, cache.keep.shape)
    dx = np.empty(np.shape(dout), dtype=np.asarray(dout).dtype)  # (np.ascontiguousarray would make 0-d 1-D)
    scale_by_mask_kernel.for_work(dx.size)(np.ascontiguousarray(dout).reshape(-1), cache.keep.reshape(-1), cache.scale, dx.reshape(-1))
    return dx
