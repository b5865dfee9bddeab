"""Argument and input validation shared by every layer.

Every error names the layer, the argument, and what was expected versus what
was received, so that a mistake deep inside a model is easy to place.
"""
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
ANY_NDIM = range(0, 33)


def as_dtype(layer, dtype):
    """Return ``np.dtype(dtype)`` if it is float32 or float64, else raise TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{layer}: dtype must be np.float32 or np.float64, got {dtype!r}")
    return dt


def positive_int(layer, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{layer}: {name} must be an int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{layer}: {name} must be positive, got {value}")
    return int(value)


def pair(layer, name, value, minimum=1):
    """Normalize an int or a pair of ints to a tuple ``(h, w)``, each ``>= minimum``."""
    given = value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)):
        raise TypeError(f"{layer}: {name} must be an int or a pair of ints, got {given!r}")
    h, w = int(value[0]), int(value[1])
    if h < minimum or w < minimum:
        bound = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{layer}: {name} must be {bound}, got {given!r}")
    return h, w


def choice(layer, name, value, options):
    """``value`` if it is one of ``options``, else a ValueError listing them."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{layer}: {name} must be one of {', '.join(repr(o) for o in options)}, got {value!r}")
    return value


def probability(layer, name, value):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{layer}: {name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def contiguous(x, dtype=None):
    """``x`` as a C-contiguous array of ``dtype``, keeping 0-d arrays 0-d (``np.ascontiguousarray`` makes them 1-D)."""
    x = np.asarray(x, dtype=dtype)
    return x if x.flags["C_CONTIGUOUS"] else x.copy(order="C")


def check_input(layer, x, ndims, dtype=None, channels=None, channel_axis=1, allow_empty=False):
    """Validate a layer's input array and return it (made C-contiguous).

    Parameters
    ----------
    layer : Module or str
        The layer, or its name, used in messages, e.g. ``"Conv2d(3, 8, ...)"``. A layer prints as its
        name, and only when a message is made: building the name at every call cost microseconds per
        layer at batch 1.
    x : array_like
        The input. It must already be a floating-point ndarray.
    ndims : tuple of int, or range
        The accepted numbers of dimensions (``ANY_NDIM`` or ``range(k, 33)``
        for "at least k").
    dtype : np.dtype or None
        If given, the input must have exactly this dtype (no silent casts).
    channels : int or None
        If given, ``x.shape[channel_axis]`` must equal it.
    allow_empty : bool
        Accept a size-0 input (an empty batch), as torch does for this layer.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{layer}: input must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{layer}: input must be float32 or float64, got dtype {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{layer}: input dtype {x.dtype} does not match the layer's dtype {dtype}; "
                        f"cast the input with x.astype(np.{dtype})")
    if x.ndim not in ndims:
        want = (f"at least {ndims.start}-D" if isinstance(ndims, range)
                else " or ".join(f"{n}-D" for n in ndims))
        raise ValueError(f"{layer}: input must be {want}, got a {x.ndim}-D array of shape {x.shape}")
    if channels is not None and x.shape[channel_axis] != channels:
        what = "features in its last dim" if channel_axis == -1 else f"channels in dim {channel_axis}"
        raise ValueError(f"{layer}: input must have {channels} {what}, got shape {x.shape}")
    if 0 in x.shape and not allow_empty:
        raise ValueError(f"{layer}: input must not be empty, got shape {x.shape}")
    return contiguous(x)


def check_grad(layer, dout, expected_shape, dtype):
    """Validate the gradient handed to ``backward`` against the forward output."""
    if not isinstance(dout, np.ndarray):
        raise TypeError(f"{layer}.backward: grad_output must be a numpy.ndarray, "
                        f"got {type(dout).__name__}")
    if dout.shape != tuple(expected_shape):
        raise ValueError(f"{layer}.backward: grad_output must have the forward output's shape "
                         f"{tuple(expected_shape)}, got {dout.shape}")
    return contiguous(dout, dtype)
