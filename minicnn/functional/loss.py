"""Negative log-likelihood and cross-entropy, forward and backward.

NLL takes log-probabilities ``logp`` (N, C) and integer targets (N,):

    l_i  = -w[t_i] * logp[i, t_i]        (0 where t_i == ignore_index)
    mean = sum_i l_i / sum_i w[t_i]      (the weighted mean, as in torch)
    sum  = sum_i l_i
    none = l                              shape (N,)

Cross-entropy is NLL of ``log_softmax(logits)``.
"""
from typing import NamedTuple

import numpy as np
from numba import njit

from .activation import LogSoftmaxCache, log_softmax_backward, log_softmax_forward

REDUCTIONS = ("mean", "sum", "none")


def _nll_forward_kernel(logp, target, weight, ignore_index, losses, target_weight):
    for i in range(logp.shape[0]):
        t = target[i]
        if t == ignore_index:
            losses[i] = 0
            target_weight[i] = 0
        else:
            target_weight[i] = weight[t]
            losses[i] = -weight[t] * logp[i, t]


def _nll_backward_kernel(grad_per_sample, target, target_weight, ignore_index, dlogp):
    """dlogp[i, t_i] = -w[t_i] * grad_i; every other entry is 0."""
    for i in range(dlogp.shape[0]):
        for k in range(dlogp.shape[1]):
            dlogp[i, k] = 0
        t = target[i]
        if t != ignore_index:
            dlogp[i, t] = -target_weight[i] * grad_per_sample[i]


nll_forward_kernel = njit(cache=True)(_nll_forward_kernel)
nll_backward_kernel = njit(cache=True)(_nll_backward_kernel)


class NLLCache(NamedTuple):
    target: np.ndarray          # (N,) int64
    target_weight: np.ndarray   # (N,): w[t_i], 0 where t_i == ignore_index
    ignore_index: int
    reduction: str
    logp_shape: tuple           # (N, C)


class CrossEntropyCache(NamedTuple):
    log_softmax: LogSoftmaxCache
    nll: NLLCache


def nll_forward(logp, target, weight=None, ignore_index=-100, reduction="mean"):
    """NLL loss. ``target`` must already be validated (int64, in range).

    Returns
    -------
    loss : 0-d ndarray for 'mean'/'sum', (N,) for 'none'
    cache : NLLCache for ``nll_backward``
    """
    N, C = logp.shape
    if weight is None:
        weight = np.ones(C, dtype=logp.dtype)
    losses = np.empty(N, dtype=logp.dtype)
    target_weight = np.empty(N, dtype=logp.dtype)
    nll_forward_kernel(logp, target, weight, ignore_index, losses, target_weight)
    if reduction == "none":
        loss = losses
    elif reduction == "sum":
        loss = losses.sum()
    else:
        with np.errstate(invalid="ignore", divide="ignore"):  # all ignored: 0/0 = nan, as in torch
            loss = losses.sum() / target_weight.sum()
    return np.asarray(loss, dtype=logp.dtype), NLLCache(target, target_weight, ignore_index, reduction, logp.shape)


def nll_backward(dloss, cache):
    """Gradient of the NLL loss with respect to ``logp``.

    Notes
    -----
    ``d l_i / d logp[i, k] = -w[t_i]`` if ``k == t_i`` else 0. For 'mean' every
    term is further divided by ``sum_i w[t_i]``; for 'none' ``dloss`` is (N,).
    """
    target_weight, reduction, shape = cache.target_weight, cache.reduction, cache.logp_shape
    dtype = target_weight.dtype
    if reduction == "none":
        per_sample = np.broadcast_to(np.asarray(dloss, dtype=dtype), (shape[0],))
    else:
        scale = np.asarray(dloss, dtype=dtype)
        if reduction == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):  # all targets ignored
                scale = scale / target_weight.sum()
        per_sample = np.full(shape[0], scale, dtype=dtype)
    dlogp = np.empty(shape, dtype=dtype)
    nll_backward_kernel(np.ascontiguousarray(per_sample), cache.target, target_weight, cache.ignore_index, dlogp)
    return dlogp


def cross_entropy_forward(logits, target, weight=None, ignore_index=-100, reduction="mean"):
    """``nll(log_softmax(logits, dim=1))``. Returns ``(loss, cache)``."""
    logp, softmax_cache = log_softmax_forward(logits, dim=1)
    loss, nll_cache = nll_forward(logp, target, weight, ignore_index, reduction)
    return loss, CrossEntropyCache(softmax_cache, nll_cache)


def cross_entropy_backward(dloss, cache):
    """Chain rule through NLL then log-softmax: ``softmax - onehot`` times the weights."""
    return log_softmax_backward(nll_backward(dloss, cache.nll), cache.log_softmax)
