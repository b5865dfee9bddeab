"""Argument checks of the functional API: a wrong shape or dtype is named before a kernel runs.

The kernels index memory without bounds checks (``simd.load`` reads a whole vector, Numba's array
indexing is unchecked), so an input whose shape disagrees with its weights would be read out of
bounds or give a silently wrong result. Each public function of ``minicnn.functional`` checks its
arguments here first, and an error names the function, the argument, what it expected and what it
got, in the layers' words (``nn/_checks.py``)::

    conv2d_forward: w of shape (4, 2, 3, 3) with groups=1 needs x with 2 channels (N, C, H, W), got x of shape (2, 3, 8, 8)

A call whose shapes, dtypes and arguments were accepted before costs a dict lookup (``check_once``),
which also returns what the check derived (an output shape): a layer calls with the same ones at
every step. ``tests/test_functional_errors.py`` runs every message.
"""
import numpy as np

_FLOAT_CHARS = "fd"  # dtype.char of float32 and float64: a string test is faster than comparing dtypes
ANY_NDIM = range(0, 33)  # every number of dimensions numpy allows
MAX_REMEMBERED = 4096  # keys kept by each dict of accepted arguments
_NOT_CHECKED = object()


def check_once(remembered, key, check, *args):
    """``check(*args)``, which raises on bad arguments and may return what it derived from them (an
    output shape), unless ``key`` (the shapes, dtypes and arguments of the call; None when they cannot
    make a key) passed before: then what it returned then. A layer calls with the same arguments at
    every step, and a dict lookup costs less than checking and deriving again. ``remembered`` is
    the calling module's dict of accepted keys."""
    if key is not None:
        try:
            result = remembered.get(key, _NOT_CHECKED)
        except TypeError:  # an unhashable argument (a list): checked every time
            key = None
        else:
            if result is not _NOT_CHECKED:
                return result
    result = check(*args)
    if key is not None and len(remembered) < MAX_REMEMBERED:
        remembered[key] = result
    return result


def float_array(function, name, a, ndim, layout, like=None):
    """``a`` must be a float32 or float64 ndarray of ``ndim`` dimensions (an int or a tuple of them),
    laid out as ``layout`` (for the message); with ``like = (its name, an array)``, of that array's dtype."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{function}: {name} must be a numpy.ndarray {layout}, got {type(a).__name__}")
    if like is not None:
        if a.dtype is not like[1].dtype and a.dtype != like[1].dtype:
            raise TypeError(f"{function}: {name} must have the dtype of {like[0]}, {like[1].dtype}, got {a.dtype}")
    elif a.dtype.char not in _FLOAT_CHARS:
        raise TypeError(f"{function}: {name} must be float32 or float64, got dtype {a.dtype}")
    if a.ndim != ndim if type(ndim) is int else a.ndim not in ndim:
        allowed = (ndim,) if type(ndim) is int else ndim
        dims = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{function}: {name} must be {dims} {layout}, got shape {a.shape}")
    return a


def int_tuple(function, name, value, length, minimum, meaning):
    """``value`` must be a tuple or list of ``length`` ints, each at least ``minimum``; ``meaning`` names
    the entries for the message, e.g. "(top, bottom, left, right)"."""
    if (not isinstance(value, (tuple, list)) or len(value) != length
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum for v in value)):
        raise ValueError(f"{function}: {name} must be {length} ints {meaning}, each at least {minimum}, got {value!r}")
    return value


def shape(function, name, a, expected, what):
    """``a`` must be an ndarray of shape ``expected``; ``what`` says where that shape comes from."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{function}: {name} must be a numpy.ndarray of shape {tuple(expected)}, got {type(a).__name__}")
    if a.shape != tuple(expected):
        raise ValueError(f"{function}: {name} must have {what} {tuple(expected)}, got {a.shape}")
    return a


def gradient(function, dout, expected):
    """``dout``, the gradient of a forward output of shape ``expected``."""
    return shape(function, "dout", dout, expected, "the forward output's shape")
