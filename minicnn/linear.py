"""Fully connected layer: ``y = x @ W.T + b``.

The work is one BLAS matrix product each way, so there is nothing for a
hand-written kernel to add: these functions call numpy's matmul directly.

Shapes: x (N, in), W (out, in), b (out,), y (N, out).
"""
import numpy as np


def linear_forward(x, w, b=None):
    """``y = x @ w.T + b``. Returns ``(y, cache)``."""
    y = x @ w.T
    if b is not None:
        y += b
    return y, (x, w, b is not None)


def linear_backward(dout, cache):
    """Returns ``(dx, dw, db)``; ``db`` is None without bias.

    Notes
    -----
    From ``y[n, o] = sum_i x[n, i] w[o, i] + b[o]``:
    ``dx = dout @ w``, ``dw = dout.T @ x``, ``db = dout.sum(0)``.
    """
    x, w, has_bias = cache
    dout = np.ascontiguousarray(dout, dtype=w.dtype)
    return dout @ w, dout.T @ x, (dout.sum(axis=0) if has_bias else None)
