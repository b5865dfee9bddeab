"""Fully connected layer: ``y = x @ W.T + b``.

The forward is register-tiled dot products of rows of x and rows of W on Numba's threads
(``fast_linear``). The backward is BLAS: ``gemm.matmul``, numpy's own BLAS kernel with the product's
rows or columns split between Numba's threads (``minicnn.functional.gemm`` says why not BLAS's
threads, and which); one sample's weight gradient is an outer product (see ``linear_backward``).

Shapes: x (N, in), W (out, in), b (out,), y (N, out).
"""
from typing import NamedTuple

import numpy as np
from numba import prange

from .. import runtime
from ..runtime import parallel_kernel
from . import checks
from .fast_linear import chunk_rows, linear_tiles_forward
from .gemm import matmul, product_work


class LinearCache(NamedTuple):
    x: np.ndarray           # (N, in)
    w: np.ndarray           # (out, in)
    has_bias: bool


_ACCEPTED = {}  # (x, w, b as (shape, dtype)) of the calls checked and found valid


def linear_forward(x, w, b=None):
    """``y = x @ w.T + b`` for x (N, in), w (out, in), b (out,) or None. Returns ``(y, cache)``.

    Each output is one dot product of a row of x and a row of w, in lanes (``fast_linear``), plus
    the bias: it can differ from numpy's ``x @ w.T + b`` by rounding, not by more.
    """
    key = None
    if type(x) is np.ndarray and type(w) is np.ndarray and (b is None or type(b) is np.ndarray):
        key = (x.shape, x.dtype, w.shape, w.dtype, None if b is None else (b.shape, b.dtype))
    checks.check_once(_ACCEPTED, key, _check_arguments, x, w, b)
    (M, K), N = x.shape, w.shape[0]
    y = np.empty((M, N), dtype=x.dtype)
    work = product_work(M, K, N)  # as gemm.matmul's: multiply-adds / 32, or reading w at small batches
    threads = runtime.threads_for(work)
    linear_tiles_forward.for_work(work)(np.ascontiguousarray(x), np.ascontiguousarray(w),
                                        y.reshape(-1)[:0] if b is None else np.ascontiguousarray(b), b is not None,
                                        chunk_rows(K, x.itemsize), threads, y)
    return y, LinearCache(x, w, b is not None)


def _check_arguments(x, w, b):
    checks.float_array("linear_forward", "x", x, 2, "(N, in_features)")
    checks.float_array("linear_forward", "w", w, 2, "(out_features, in_features)", like=("x", x))
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"linear_forward: w of shape {w.shape} needs x with {w.shape[1]} features (N, in_features), "
                         f"got x of shape {x.shape}")
    if b is not None:
        checks.float_array("linear_forward", "b", b, 1, "(out_features,)", like=("x", x))
        checks.shape("linear_forward", "b", b, (w.shape[0],), "one entry per row of w, shape")


def linear_backward(dout, cache, dw_into=None):
    """Returns ``(dx, dw, db)``; ``db`` is None without bias. With ``dw_into`` (an array of w's shape and
    dtype, a gradient being accumulated), the weight gradient is added into it, and it is the ``dw``
    returned: ``dw_into += dout.T @ x`` without a temporary for one sample.

    Notes
    -----
    From ``y[n, o] = sum_i x[n, i] w[o, i] + b[o]``:
    ``dx = dout @ w``, ``dw = dout.T @ x``, ``db = dout.sum(0)``. With one sample ``dw`` is the outer
    product of ``dout[0]`` and ``x[0]``, computed as one: OpenBLAS's product with a reduction of length 1
    is several times slower (Linear 2000->500 on the AMD EPYC machine: 1.6 ms against 0.46 ms). Added
    into ``dw_into``, it is one pass over it (``add_outer_kernel``), each element rounded as numpy's
    ``dw_into += np.multiply.outer(...)`` rounds it: notebook's 2000->500 backward at batch 1 wrote
    a 4 MB product, then read it again to add it.
    """
    checks.gradient("linear_backward", dout, (cache.x.shape[0], cache.w.shape[0]))
    if dw_into is not None:
        checks.float_array("linear_backward", "dw_into", dw_into, 2, "(out_features, in_features)", like=("w", cache.w))
        checks.shape("linear_backward", "dw_into", dw_into, cache.w.shape, "w's shape")
    dout = np.ascontiguousarray(dout, dtype=cache.w.dtype)
    x = cache.x
    db = dout.sum(axis=0) if cache.has_bias else None
    dx = matmul(dout, cache.w)
    if dw_into is None:
        return dx, (np.multiply.outer(dout[0], x[0]) if dout.shape[0] == 1 else matmul(dout.T, x)), db
    if dout.shape[0] == 1 and dw_into.flags.c_contiguous:
        add_outer_kernel.for_work(dw_into.size)(dout[0], np.ascontiguousarray(x[0]), dw_into)
    else:
        dw_into += np.multiply.outer(dout[0], x[0]) if dout.shape[0] == 1 else matmul(dout.T, x)
    return dx, dw_into, db


def _add_outer_kernel(a, b, out):
    """out[i, j] += a[i] * b[j]: a product, rounded, then a sum, rounded (no fused multiply-add), as numpy's
    ``out += np.multiply.outer(a, b)``. Each row belongs to one parallel iteration."""
    for i in prange(a.size):
        row, a_i = out[i], a[i]
        for j in range(b.size):
            row[j] += a_i * b[j]


add_outer_kernel = parallel_kernel(_add_outer_kernel)
