"""The SGD update of one parameter in one pass over its memory (``minicnn.optim.SGD`` calls it).

torch's SGD (``_single_tensor_sgd``, the CPU's default) is a chain of tensor operations, and each
``a.add(b, alpha=c)`` among them is one fused multiply-add, ``b * c + a`` rounded once (ATen's
``native/ufunc/add.h``: ``vec::fmadd(other, alpha, self)``). ``sgd_update`` does, element by
element, the same operations in the same order, each in the parameter's dtype with the scalars
cast to it, fused where torch fuses (``simd.fma``): given the same gradients its parameters and
momentum buffers are torch's bit for bit (``tests/test_optim.py``). torch makes a pass over memory
per operation (up to five with momentum); this one reads each array once.
"""
import numpy as np
from numba import prange

from ..runtime import parallel_kernel
from . import checks
from .simd import fma


def _sgd_update_kernel(p, g, buf, neg_lr, momentum, dampening_complement, weight_decay, decay, use_momentum,
                       nesterov, maximize, first):
    """One SGD step of p (flat) from its gradient g, with the momentum buffer buf (all of p's dtype),
    torch's operations one by one (``fma(x, y, a)`` = ``a.add(x, alpha=y)`` = x * y + a rounded once):

        d = -g if maximize else g
        d = fma(p, weight_decay, d)                                     (if decay)
        buf = d if first else fma(d, 1 - dampening, buf * momentum)     (if use_momentum)
        d = fma(buf, momentum, d) if nesterov else buf                  (if use_momentum)
        p = fma(d, -lr, p)

    ``decay`` and ``use_momentum`` are the caller's ``weight_decay != 0`` and ``momentum != 0``, taken
    before the cast to p's dtype (which may round a tiny value to zero).
    """
    for i in prange(p.size):
        d = -g[i] if maximize else g[i]
        if decay:
            d = fma(p[i], weight_decay, d)
        if use_momentum:
            if first:
                b = d
            else:
                b = fma(d, dampening_complement, buf[i] * momentum)
            buf[i] = b
            d = fma(b, momentum, d) if nesterov else b
        p[i] = fma(d, neg_lr, p[i])


sgd_update_kernel = parallel_kernel(_sgd_update_kernel)


_ACCEPTED = {}  # (shape, dtype, C-contiguous) of p, g and buf in the calls checked and found valid


def _check_arrays(p, g, buf):
    checks.float_array("sgd_update", "p", p, checks.ANY_NDIM, "(any shape)")
    for name, a in (("g", g), ("buf", buf)):
        checks.float_array("sgd_update", name, a, checks.ANY_NDIM, "(p's shape)", like=("p", p))
        checks.shape("sgd_update", name, a, p.shape, "p's shape")
    for name, a in (("p", p), ("g", g), ("buf", buf)):
        if not a.flags.c_contiguous:
            raise ValueError(f"sgd_update: {name} must be C-contiguous (the update runs over its flat memory)")


def sgd_update(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, maximize, first):
    """Update ``p`` and ``buf`` in place by one SGD step (``_sgd_update_kernel``'s formula).

    Parameters
    ----------
    p, g, buf : C-contiguous ndarrays of one shape and one float dtype; ``buf`` is written (and read
        unless ``first``) only when momentum != 0, and may then be any array of that shape
    lr, momentum, dampening, weight_decay : float, cast to p's dtype (``-lr`` and ``1 - dampening``
        are computed first, in Python, as torch computes its ``alpha`` arguments)
    nesterov, maximize, first : bool; ``first``: the buffer is created by this step (``buf = d``)
    """
    key = None
    if type(p) is np.ndarray and type(g) is np.ndarray and type(buf) is np.ndarray:
        key = tuple((a.shape, a.dtype, a.flags.c_contiguous) for a in (p, g, buf))
    checks.check_once(_ACCEPTED, key, _check_arrays, p, g, buf)
    scalar = p.dtype.type
    sgd_update_kernel.for_work(p.size)(p.reshape(-1), g.reshape(-1), buf.reshape(-1), scalar(-lr), scalar(momentum),
                                       scalar(1 - dampening), scalar(weight_decay), weight_decay != 0, momentum != 0,
                                       bool(nesterov), bool(maximize), bool(first))
