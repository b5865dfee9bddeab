"""The SGD update of one parameter in one pass over its memory (``minicnn.optim.SGD`` calls it).

``sgd_update`` does, element by element, what ``SGD.step_numpy`` does with whole-array NumPy
operations, and rounds the same way: every operation is one float operation of the parameter's
dtype (the scalars are cast to it first, as NumPy does with a Python float against a float32 array),
in the same order, with no fused multiply-add. So the two agree to the last bit
(``tests/test_optim.py``). NumPy's version makes a pass over memory per operation (five with
momentum) and a temporary array for each product; this one reads each array once.
"""
import numpy as np
from numba import prange

from ..runtime import parallel_kernel


def _sgd_update_kernel(p, g, buf, lr, momentum, dampening_complement, weight_decay, decay, use_momentum, nesterov,
                       maximize, first):
    """One SGD step of p (flat) from its gradient g, with the momentum buffer buf (all of p's dtype):

        d = -g if maximize else g
        d = d + weight_decay * p                                      (if decay)
        buf = d if first else buf * momentum + (1 - dampening) * d    (if use_momentum)
        d = d + momentum * buf if nesterov else buf                   (if use_momentum)
        p = p - lr * d

    ``decay`` and ``use_momentum`` are the caller's ``weight_decay != 0`` and ``momentum != 0``, taken
    before the cast to p's dtype (which may round a tiny value to zero).
    """
    for i in prange(p.size):
        d = -g[i] if maximize else g[i]
        if decay:
            d = d + weight_decay * p[i]
        if use_momentum:
            if first:
                b = d
            else:
                b = buf[i] * momentum
                b = b + dampening_complement * d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        p[i] = p[i] - lr * d


sgd_update_kernel = parallel_kernel(_sgd_update_kernel)


def sgd_update(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, maximize, first):
    """Update ``p`` and ``buf`` in place by one SGD step (``_sgd_update_kernel``'s formula).

    Parameters
    ----------
    p, g, buf : C-contiguous ndarrays of one shape and one float dtype; ``buf`` is written (and read
        unless ``first``) only when momentum != 0, and may then be any array of that shape
    lr, momentum, dampening, weight_decay : float, cast to p's dtype (``1 - dampening`` is computed
        first, in Python, as ``SGD.step_numpy`` does)
    nesterov, maximize, first : bool; ``first``: the buffer is created by this step (``buf = d``)
    """
    scalar = p.dtype.type
    sgd_update_kernel.for_work(p.size)(p.reshape(-1), g.reshape(-1), buf.reshape(-1), scalar(lr), scalar(momentum),
                                       scalar(1 - dampening), scalar(weight_decay), weight_decay != 0, momentum != 0,
                                       bool(nesterov), bool(maximize), bool(first))
