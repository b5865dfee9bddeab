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
"""
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ..runtime import parallel_kernel


def _normalize_channel(x, c, mean, invstd, gamma, beta, xhat, out):
    """xhat = (x - mean) * invstd and out = gamma * xhat + beta, for channel c."""
    N, _, M = x.shape
    for n in range(N):
        for m in range(M):
            xh = (x[n, c, m] - mean) * invstd
            xhat[n, c, m] = xh
            out[n, c, m] = xh * gamma + beta


normalize_channel = njit(cache=True, inline="always")(_normalize_channel)


def _batchnorm_train_forward_kernel(x, gamma, beta, eps, out, xhat, mean, var, var_unbiased, invstd):
    N, C, M = x.shape
    count = N * M
    for c in prange(C):
        s = 0.0
        for n in range(N):
            for m in range(M):
                s += x[n, c, m]
        mu = s / count
        ss = 0.0
        for n in range(N):
            for m in range(M):
                d = x[n, c, m] - mu
                ss += d * d
        inv = 1.0 / np.sqrt(ss / count + eps)
        mean[c], var[c], invstd[c] = mu, ss / count, inv
        var_unbiased[c] = ss / (count - 1)
        normalize_channel(x, c, mu, inv, gamma[c], beta[c], xhat, out)


def _batchnorm_eval_forward_kernel(x, gamma, beta, running_mean, running_var, eps, out, xhat, invstd):
    N, C, M = x.shape
    for c in prange(C):
        inv = 1.0 / np.sqrt(running_var[c] + eps)
        invstd[c] = inv
        normalize_channel(x, c, running_mean[c], inv, gamma[c], beta[c], xhat, out)


def _batchnorm_backward_kernel(dout, xhat, gamma, invstd, batch_stats, dx, dgamma, dbeta):
    """Backward of batch norm; see ``batchnorm_backward`` for the derivation."""
    N, C, M = dout.shape
    count = N * M
    for c in prange(C):
        sum_dy = 0.0
        sum_dy_xhat = 0.0
        for n in range(N):
            for m in range(M):
                sum_dy += dout[n, c, m]
                sum_dy_xhat += dout[n, c, m] * xhat[n, c, m]
        dgamma[c], dbeta[c] = sum_dy_xhat, sum_dy
        k = gamma[c] * invstd[c]
        if batch_stats:
            mean_dy = sum_dy / count
            mean_dy_xhat = sum_dy_xhat / count
            for n in range(N):
                for m in range(M):
                    dx[n, c, m] = k * (dout[n, c, m] - mean_dy - xhat[n, c, m] * mean_dy_xhat)
        else:
            for n in range(N):
                for m in range(M):
                    dx[n, c, m] = k * dout[n, c, m]


batchnorm_train_forward_kernel = parallel_kernel(_batchnorm_train_forward_kernel)
batchnorm_eval_forward_kernel = parallel_kernel(_batchnorm_eval_forward_kernel)
batchnorm_backward_kernel = parallel_kernel(_batchnorm_backward_kernel)


class BatchNormCache(NamedTuple):
    """What ``batchnorm_backward`` needs."""
    xhat: np.ndarray        # (N, C, M): the normalized input
    gamma: np.ndarray       # (C,)
    invstd: np.ndarray      # (C,): 1 / sqrt(var + eps) of the statistics used
    batch_stats: bool       # True: normalized with this batch's statistics (they depend on x)
    x_shape: tuple          # the input's shape, (N, C, *)


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
    N, C = x.shape[0], x.shape[1]
    x3 = np.ascontiguousarray(x).reshape(N, C, int(np.prod(x.shape[2:], dtype=np.int64)))
    out, xhat = np.empty_like(x3), np.empty_like(x3)
    invstd = np.empty(C, dtype=x.dtype)
    if x.size == 0:  # an empty batch: nothing to normalize, and no statistics to update (as in torch)
        invstd[...] = 0
    elif batch_stats:
        mean, var, var_unbiased = (np.empty(C, dtype=x.dtype) for _ in range(3))
        batchnorm_train_forward_kernel.for_work(x3.size)(x3, gamma, beta, eps, out, xhat, mean, var, var_unbiased, invstd)
        if running_mean is not None:
            running_mean[...] = momentum * mean + (1 - momentum) * running_mean
            running_var[...] = momentum * var_unbiased + (1 - momentum) * running_var
    else:
        batchnorm_eval_forward_kernel.for_work(x3.size)(x3, gamma, beta, running_mean, running_var, eps, out, xhat, invstd)
    return out.reshape(x.shape), BatchNormCache(xhat, gamma, invstd, batch_stats, x.shape)


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
    xhat, shape = cache.xhat, cache.x_shape
    C = shape[1]
    dout3 = np.ascontiguousarray(dout, dtype=xhat.dtype).reshape(xhat.shape)
    dx = np.empty_like(xhat)
    dgamma, dbeta = np.zeros(C, dtype=xhat.dtype), np.zeros(C, dtype=xhat.dtype)
    if xhat.size == 0:  # an empty batch: no gradient anywhere
        return dx.reshape(shape), dgamma, dbeta
    batchnorm_backward_kernel.for_work(dout3.size)(dout3, xhat, cache.gamma, cache.invstd, cache.batch_stats, dx, dgamma, dbeta)
    return dx.reshape(shape), dgamma, dbeta
