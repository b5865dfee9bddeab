"""Batch normalization over the channel axis, forward and backward.

The kernels see the input as (N, C, M): M = H*W for BatchNorm2d, L for
BatchNorm1d on (N, C, L), and 1 for BatchNorm1d on (N, C). Statistics are
taken per channel over the ``count = N*M`` values of that channel.

Training forward (batch statistics)
-----------------------------------
    mean  = sum(x) / count
    var   = sum((x - mean)^2) / count            biased: used to normalize
    xhat  = (x - mean) / sqrt(var + eps)
    y     = gamma * xhat + beta
    running_mean <- (1 - momentum) * running_mean + momentum * mean
    running_var  <- (1 - momentum) * running_var  + momentum * sum((x - mean)^2) / (count - 1)
                                                 unbiased: used for the running estimate

Eval forward uses ``running_mean`` and ``running_var`` instead of the batch's.

Eval mode, rounded as torch rounds
----------------------------------
torch's CPU kernel (ATen's ``cpu/batch_norm_kernel.cpp``) computes, per channel and in the input's
dtype, ``invstd = 1 / sqrt(running_var + eps)``, ``alpha = invstd * gamma``, ``shift = beta -
running_mean * alpha`` and ``y = x * alpha + shift``, the last two each one fused multiply-add (its
compiler contracts them). The eval kernels do the same, so in eval mode the output is torch's bit
for bit (``tests/test_norm.py``). In training the statistics are float64 sums in an order of
minicnn's (vectorized), which can differ from torch's in the last bits. torch sums each channel
in order, n then m, in float64 (each square of the variance's sum rounded to x's dtype first),
rounds mean and the variance's sum to x's dtype, and takes invstd = 1 / sqrt(float64(var_sum /
count) + eps); done that way (session 18) the float32 output and running statistics were torch's
bit for bit for (N, C, M > 1), but the forward of BatchNorm2d(10) at batch 64 took 0.26-0.33 ms
against 0.094-0.100 (chains of dependent scalar adds), so it was not kept. Session 19 ran the
chains of 4 and then 8 channels side by side in each thread (independent adds, the channels split
evenly between the threads): still bit for bit, and 0.26 and 0.22 ms against 0.094-0.13 (torch
0.36-0.44; same process, AMD EPYC family 25): each element is converted to float64 and added on its
own, where the kept kernel's reordered sums convert and add whole vectors.
"""
import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ..runtime import parallel_kernel
from . import checks
from .simd import fma

# Channels a worker of the one-value-per-sample kernels (BatchNorm1d on (N, C)) takes at a time:
# it walks its block row by row, so its loads are contiguous and the sums vectorize across channels.
CHANNEL_BLOCK = 64


def _channel_stats(x, c):
    """(mean, sum of squared deviations) of channel c of x : (N, C, M), summed in float64."""
    N, _, M = x.shape
    s = 0.0
    for n in range(N):
        for m in range(M):
            s += x[n, c, m]
    mu = s / (N * M)
    ss = 0.0
    for n in range(N):
        for m in range(M):
            d = x[n, c, m] - mu
            ss += d * d
    return mu, ss


def _normalize_channel(x, c, mean, invstd, gamma, beta, out):
    """out = gamma * (x - mean) * invstd + beta, for channel c of x : (N, C, M)."""
    N, _, M = x.shape
    for n in range(N):
        for m in range(M):
            out[n, c, m] = (x[n, c, m] - mean) * invstd * gamma + beta


# Only the sums may be reordered (``fastmath`` reassoc, which stays on their instructions when LLVM
# inlines them): they then vectorize, where each add used to wait for the one before. They stay in
# float64.
channel_stats = njit(fastmath={"reassoc"}, cache=True)(_channel_stats)
normalize_channel = njit(cache=True, inline="always")(_normalize_channel)


def _batchnorm_train_forward_kernel(x, gamma, beta, eps, out, mean, var_unbiased, invstd):
    """Batch statistics and the normalized output of x : (N, C, M), a channel per iteration."""
    N, C, M = x.shape
    count = N * M
    for c in prange(C):
        mu, ss = channel_stats(x, c)
        inv = 1.0 / np.sqrt(ss / count + eps)
        mean[c], invstd[c], var_unbiased[c] = mu, inv, ss / (count - 1)
        normalize_channel(x, c, mu, inv, gamma[c], beta[c], out)


def _batchnorm_train_forward_rows_kernel(x, gamma, beta, eps, out, mean, var_unbiased, invstd):
    """The same for one value per channel and sample, x : (N, C): a block of channels per iteration,
    walked row by row (indices from 0 along a row's slice: Numba's negative-index checks on ``c``
    kept the loops from vectorizing, 4x slower)."""
    N, C = x.shape
    for block in prange((C + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK):
        c0, c1 = block * CHANNEL_BLOCK, min(C, (block + 1) * CHANNEL_BLOCK)
        width = c1 - c0
        s, ss = np.zeros(width), np.zeros(width)
        for n in range(N):
            row = x[n, c0:c1]
            for j in range(width):
                s[j] += row[j]
        mu = s / N
        for n in range(N):
            row = x[n, c0:c1]
            for j in range(width):
                d = row[j] - mu[j]
                ss[j] += d * d
        inv = 1.0 / np.sqrt(ss / N + eps)
        mean[c0:c1], invstd[c0:c1], var_unbiased[c0:c1] = mu, inv, ss / (N - 1)
        scale, shift = gamma[c0:c1], beta[c0:c1]
        for n in range(N):
            row, dst = x[n, c0:c1], out[n, c0:c1]
            for j in range(width):
                dst[j] = (row[j] - mu[j]) * inv[j] * scale[j] + shift[j]


def _scale_and_shift(x, c, mean, invstd, gamma, beta, out):
    """out = x * alpha + shift for channel c of x : (N, C, M), alpha = invstd * gamma and shift = beta -
    mean * alpha, each multiply-add fused, as torch's kernel computes them (all in x's dtype)."""
    N, _, M = x.shape
    alpha = invstd * gamma
    shift = fma(-mean, alpha, beta)
    for n in range(N):
        for m in range(M):
            out[n, c, m] = fma(x[n, c, m], alpha, shift)


scale_and_shift = njit(cache=True, inline="always")(_scale_and_shift)


def _batchnorm_eval_forward_kernel(x, gamma, beta, mean, invstd, out):
    """The normalized output of x : (N, C, M) with given statistics (of x's dtype), a channel per
    iteration, in torch's arithmetic (``scale_and_shift``)."""
    for c in prange(x.shape[1]):
        scale_and_shift(x, c, mean[c], invstd[c], gamma[c], beta[c], out)


def _batchnorm_eval_forward_rows_kernel(x, gamma, beta, mean, invstd, out):
    """The same for x : (N, C), row by row."""
    N, C = x.shape
    alpha = invstd * gamma
    shift = np.empty_like(alpha)
    for c in range(C):
        shift[c] = fma(-mean[c], alpha[c], beta[c])
    for n in prange(N):
        row, dst = x[n], out[n]
        for c in range(C):
            dst[c] = fma(row[c], alpha[c], shift[c])


def _channel_grad_sums(dout, x, c, mean, invstd):
    """(sum(dy), sum(dy * xhat)) over channel c of dout and x : (N, C, M), in float64."""
    N, _, M = x.shape
    sum_dy = 0.0
    sum_dy_xhat = 0.0
    for n in range(N):
        for m in range(M):
            sum_dy += dout[n, c, m]
            sum_dy_xhat += dout[n, c, m] * ((x[n, c, m] - mean) * invstd)
    return sum_dy, sum_dy_xhat


channel_grad_sums = njit(fastmath={"reassoc"}, cache=True)(_channel_grad_sums)


def _batchnorm_backward_kernel(dout, x, mean, invstd, gamma, batch_stats, dx, dgamma, dbeta):
    """Backward of batch norm over x : (N, C, M), a channel per iteration, xhat recomputed from x
    (``batchnorm_backward`` has the derivation)."""
    N, C, M = dout.shape
    count = N * M
    for c in prange(C):
        mu, inv = mean[c], invstd[c]
        sum_dy, sum_dy_xhat = channel_grad_sums(dout, x, c, mu, inv)
        dgamma[c], dbeta[c] = sum_dy_xhat, sum_dy
        k = gamma[c] * inv
        if batch_stats:
            mean_dy, mean_dy_xhat = sum_dy / count, sum_dy_xhat / count
            for n in range(N):
                for m in range(M):
                    dx[n, c, m] = k * (dout[n, c, m] - mean_dy - (x[n, c, m] - mu) * inv * mean_dy_xhat)
        else:
            for n in range(N):
                for m in range(M):
                    dx[n, c, m] = k * dout[n, c, m]


def _batchnorm_backward_rows_kernel(dout, x, mean, invstd, gamma, batch_stats, dx, dgamma, dbeta):
    """The same for x : (N, C): a block of channels per iteration, walked row by row."""
    N, C = dout.shape
    for block in prange((C + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK):
        c0, c1 = block * CHANNEL_BLOCK, min(C, (block + 1) * CHANNEL_BLOCK)
        width = c1 - c0
        mu, inv = mean[c0:c1], invstd[c0:c1]
        sum_dy, sum_dy_xhat = np.zeros(width), np.zeros(width)
        for n in range(N):
            dy, row = dout[n, c0:c1], x[n, c0:c1]
            for j in range(width):
                sum_dy[j] += dy[j]
                sum_dy_xhat[j] += dy[j] * ((row[j] - mu[j]) * inv[j])
        dgamma[c0:c1], dbeta[c0:c1] = sum_dy_xhat, sum_dy
        k = gamma[c0:c1] * inv
        mean_dy, mean_dy_xhat = sum_dy / N, sum_dy_xhat / N
        for n in range(N):
            dy, row, grad = dout[n, c0:c1], x[n, c0:c1], dx[n, c0:c1]
            for j in range(width):
                if batch_stats:
                    grad[j] = k[j] * (dy[j] - mean_dy[j] - (row[j] - mu[j]) * inv[j] * mean_dy_xhat[j])
                else:
                    grad[j] = k[j] * dy[j]


batchnorm_train_forward_kernel = parallel_kernel(_batchnorm_train_forward_kernel)
batchnorm_train_forward_rows_kernel = parallel_kernel(_batchnorm_train_forward_rows_kernel)
batchnorm_eval_forward_kernel = parallel_kernel(_batchnorm_eval_forward_kernel)
batchnorm_eval_forward_rows_kernel = parallel_kernel(_batchnorm_eval_forward_rows_kernel)
batchnorm_backward_kernel = parallel_kernel(_batchnorm_backward_kernel)
batchnorm_backward_rows_kernel = parallel_kernel(_batchnorm_backward_rows_kernel)


class BatchNormCache(NamedTuple):
    """What ``batchnorm_backward`` needs. Like torch, it keeps the input and the statistics, not the
    normalized input: the backward recomputes ``xhat = (x - mean) * invstd``."""
    x: np.ndarray           # (N, C, M): the input
    mean: np.ndarray        # (C,) float64: the mean used (the batch's or running_mean)
    gamma: np.ndarray       # (C,)
    invstd: np.ndarray      # (C,) float64: 1 / sqrt(var + eps) of the statistics used
    batch_stats: bool       # True: normalized with this batch's statistics (they depend on x)
    x_shape: tuple          # the input's shape, (N, C, *)


_ACCEPTED = {}  # _call_key of the forwards checked and found valid


def _call_key(x, gamma, beta, running_mean, running_var, batch_stats):
    """What the checks depend on: the arrays as (shape, dtype) (running statistics may be None), and
    batch_stats; None when an argument is not an ndarray."""
    if type(x) is not np.ndarray or type(gamma) is not np.ndarray or type(beta) is not np.ndarray:
        return None
    if ((running_mean is not None and type(running_mean) is not np.ndarray)
            or (running_var is not None and type(running_var) is not np.ndarray)):
        return None
    return (x.shape, x.dtype, gamma.shape, gamma.dtype, beta.shape, beta.dtype,
            None if running_mean is None else (running_mean.shape, running_mean.dtype),
            None if running_var is None else (running_var.shape, running_var.dtype), batch_stats)


def _check_arguments(x, gamma, beta, running_mean, running_var, batch_stats):
    checks.float_array("batchnorm_forward", "x", x, range(2, 33), "(N, C, *)")
    C = x.shape[1]
    for name, value in (("gamma", gamma), ("beta", beta)):
        checks.float_array("batchnorm_forward", name, value, 1, "(C,)", like=("x", x))
        checks.shape("batchnorm_forward", name, value, (C,), f"one entry per channel of x {x.shape}, shape")
    for name, value in (("running_mean", running_mean), ("running_var", running_var)):
        if value is None and not batch_stats:
            raise ValueError(f"batchnorm_forward: batch_stats=False normalizes with {name}, got None")
        if value is not None:
            checks.float_array("batchnorm_forward", name, value, 1, "(C,)")
            checks.shape("batchnorm_forward", name, value, (C,), f"one entry per channel of x {x.shape}, shape")


def batchnorm_forward(x, gamma, beta, eps=1e-5, batch_stats=True,
                      running_mean=None, running_var=None, momentum=0.1):
    """Batch norm of ``x`` over every axis but 1.

    Parameters
    ----------
    x : ndarray (N, C, *), float32 or float64
    gamma, beta : ndarray (C,) of x's dtype (ones and zeros when not affine)
    eps : float
    batch_stats : bool
        True: normalize with this batch's statistics (training, or no running
        statistics). False: normalize with ``running_mean``/``running_var``.
    running_mean, running_var : ndarray (C,) or None
        With ``batch_stats``, updated in place with factor ``momentum``.
    momentum : float
        The update factor (torch's ``momentum``, or ``1/num_batches_tracked``
        for a cumulative average).

    Returns
    -------
    out : ndarray of x's shape
    cache : BatchNormCache for ``batchnorm_backward``
    """
    checks.check_once(_ACCEPTED, _call_key(x, gamma, beta, running_mean, running_var, batch_stats),
                      _check_arguments, x, gamma, beta, running_mean, running_var, batch_stats)
    N, C = x.shape[0], x.shape[1]
    x3 = np.ascontiguousarray(x).reshape(N, C, math.prod(x.shape[2:]))
    rows = x3.shape[2] == 1  # one value per channel and sample: kernels that walk rows
    out = np.empty_like(x3)
    mean, invstd = np.zeros(C), np.zeros(C)
    if x.size == 0:  # an empty batch: nothing to normalize, and no statistics to update (as in torch)
        pass
    elif batch_stats:
        var_unbiased = np.empty(C)
        if rows:
            batchnorm_train_forward_rows_kernel.for_work(x3.size)(x3.reshape(N, C), gamma, beta, eps, out.reshape(N, C),
                                                                  mean, var_unbiased, invstd)
        else:
            batchnorm_train_forward_kernel.for_work(x3.size)(x3, gamma, beta, eps, out, mean, var_unbiased, invstd)
        if running_mean is not None:
            running_mean[...] = momentum * mean + (1 - momentum) * running_mean
            running_var[...] = momentum * var_unbiased + (1 - momentum) * running_var
    else:
        one = x3.dtype.type(1)
        mean = running_mean.astype(x3.dtype)
        invstd = one / np.sqrt(running_var.astype(x3.dtype) + x3.dtype.type(eps))  # in x's dtype, as torch's
        if rows:
            batchnorm_eval_forward_rows_kernel.for_work(x3.size)(x3.reshape(N, C), gamma, beta, mean, invstd, out.reshape(N, C))
        else:
            batchnorm_eval_forward_kernel.for_work(x3.size)(x3, gamma, beta, mean, invstd, out)
    # the backward computes in float64 from the statistics used
    return out.reshape(x.shape), BatchNormCache(x3, mean.astype(np.float64, copy=False), gamma,
                                                invstd.astype(np.float64, copy=False),
                                                batch_stats, x.shape)


def batchnorm_backward(dout, cache):
    """Backward of batch norm. Returns ``(dx, dgamma, dbeta)``.

    Notes
    -----
    With ``y = gamma * xhat + beta``: ``dbeta = sum(dy)`` and
    ``dgamma = sum(dy * xhat)``, sums over (N, M).

    In eval mode the statistics are constants, so ``dx = gamma * invstd * dy``.

    In training mode ``mean`` and ``var`` depend on every x of the channel.
    Differentiating ``xhat_i = (x_i - mean) * invstd`` through them gives

        dx_i = gamma * invstd * (dy_i - mean(dy) - xhat_i * mean(dy * xhat))

    the gradient ``gamma * invstd * dy`` with its mean removed and its
    component along ``xhat`` projected out, because shifting every x_i, or
    scaling every x_i - mean, leaves xhat unchanged.
    """
    checks.gradient("batchnorm_backward", dout, cache.x_shape)
    x3, shape = cache.x, cache.x_shape
    C = shape[1]
    dout3 = np.ascontiguousarray(dout, dtype=x3.dtype).reshape(x3.shape)
    dx = np.empty_like(x3)
    dgamma, dbeta = np.zeros(C, dtype=x3.dtype), np.zeros(C, dtype=x3.dtype)
    if x3.size == 0:  # an empty batch: no gradient anywhere
        return dx.reshape(shape), dgamma, dbeta
    args = (cache.mean, cache.invstd, cache.gamma, cache.batch_stats)
    N = shape[0]
    if x3.shape[2] == 1:
        batchnorm_backward_rows_kernel.for_work(x3.size)(dout3.reshape(N, C), x3.reshape(N, C), *args, dx.reshape(N, C),
                                                         dgamma, dbeta)
    else:
        batchnorm_backward_kernel.for_work(x3.size)(dout3, x3, *args, dx, dgamma, dbeta)
    return dx.reshape(shape), dgamma, dbeta
