"""Random-number state and torch's default parameter initialization.

``manual_seed(s)`` seeds the generator that layers use for their initial
weights and for dropout masks, like ``torch.manual_seed``. Every layer also
accepts its own ``numpy.random.Generator``.
"""
import math

import numpy as np

_default_generator = np.random.default_rng()


def manual_seed(seed):
    """Seed the default generator used by layer initialization and Dropout."""
    global _default_generator
    _default_generator = np.random.default_rng(seed)
    return _default_generator


def default_generator():
    """The generator layers use when they are not given one."""
    return _default_generator


def fan_in(shape):
    """Number of inputs feeding one output unit: ``shape[1] * prod(shape[2:])``.

    For a Linear weight ``(out, in)`` it is ``in``; for a Conv2d weight
    ``(out, in/groups, kh, kw)`` it is ``in/groups * kh * kw``.
    """
    return int(shape[1] * np.prod(shape[2:], dtype=np.int64))


def uniform(shape, bound, dtype, rng):
    """Samples of ``U(-bound, bound)`` with the given shape and dtype."""
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def kaiming_uniform(shape, dtype, rng, a=math.sqrt(5)):
    """torch's default weight init for Conv and Linear.

    Notes
    -----
    ``bound = gain * sqrt(3 / fan_in)`` with ``gain = sqrt(2 / (1 + a^2))``.
    For torch's ``a = sqrt(5)`` this is exactly ``1 / sqrt(fan_in)``.
    """
    gain = math.sqrt(2.0 / (1.0 + a * a))
    return uniform(shape, gain * math.sqrt(3.0 / fan_in(shape)), dtype, rng)
