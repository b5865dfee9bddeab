"""Fully connected layer: ``y = x @ W.T + b``.

The work is one BLAS matrix product each way, so there is nothing for a
hand-written kernel to add: these functions call numpy's matmul directly.

Shapes: x (N, in), W (out, in), b (out,), y (N, out).
"""
from typing import NamedTuple

import numpy as np


class LinearCache(NamedTuple):
    x: np.ndarray           # (N, in)
    w: np.ndarray           # (out, in)
    has_bias: bool


def linear_forward(x, w, b=None):
    """``y = x @ w.T + b``. Returns ``(y, cache)``."""
    y = x @ w.T
    if b is not None:
        y += b
    return y, LinearCache(x, w, b is not None)


def linear_backward(dout, cache):
    """Returns ``(dx, dw, db)``; ``db`` is None without bias.

    Notes
    -----
    From ``y[n, o] = sum_i x[n, i] w[o, i] + b[o]``:
    ``dx = dout @ w``, ``dw = dout.T @ x``, ``db = dout.sum(0)``.
    """
    dout = np.ascontiguousarray(dout, dtype=cache.w.dtype)
    return dout @ cache.w, dout.T @ cache.x, (dout.sum(axis=0) if cache.has_bias else None)
