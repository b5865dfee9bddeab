"""2-D max-pooling, forward and backward, with torch's exact semantics.

Two implementations with the same functional interface:

* ``maxpool2d_forward_naive`` / ``maxpool2d_backward_naive``: direct loops
  that keep nothing but the input; the backward re-finds each window's max.
* ``maxpool2d_forward`` / ``maxpool2d_backward``: the forward records the
  flat index of every window's max (torch's ``return_indices``), so the
  backward is a single scatter-add. Both run in parallel over (n, c) planes.

Shapes
------
x   : (N, C, H, W)
out : (N, C, OH, OW) with, per spatial axis (torch's rule),

    O = floor((I + 2p - d(k-1) - 1) / s) + 1          (ceil_mode=False)
    O = ceil((I + 2p - d(k-1) - 1) / s) + 1           (ceil_mode=True),
        minus one if the last window would start in the right padding,
        i.e. if (O - 1) * s >= I + p.

Padding is implicit -inf: a padded position never wins.

Which element wins a window
---------------------------
The window is scanned row by row; an element replaces the current max if it
is strictly greater or is NaN. So among equal values the *first* in row-major
order wins (and a NaN wins over numbers, the last NaN over earlier ones),
exactly as torch's CPU kernel does. Only that one element gets the gradient.
"""
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ..runtime import parallel_kernel
from . import checks


def maxpool2d_output_size(size, kernel, stride, padding, dilation, ceil_mode):
    """torch's pooling output size (see the module docstring)."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _window_argmax(plane, oh, ow, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w):
    """Flat index (ih * W + iw) and value of the element that wins window (oh, ow).

    With dilation and padding a window can hold no element at all; then, as in
    torch, the value is -inf and the index points past the window's start
    (possibly outside the plane). Such a window passes no gradient back.
    """
    H, W = plane.shape
    ih0 = oh * stride_h - pad_top
    iw0 = ow * stride_w - pad_left
    ih1 = min(ih0 + (kernel_h - 1) * dil_h + 1, H)
    iw1 = min(iw0 + (kernel_w - 1) * dil_w + 1, W)
    while ih0 < 0:  # skip the rows of the window that lie in the padding
        ih0 += dil_h
    while iw0 < 0:
        iw0 += dil_w
    best = ih0 * W + iw0
    best_val = -np.inf
    for ih in range(ih0, ih1, dil_h):
        for iw in range(iw0, iw1, dil_w):
            v = plane[ih, iw]
            if v > best_val or np.isnan(v):
                best_val = v
                best = ih * W + iw
    return best, best_val


window_argmax = njit(cache=True, inline="always")(_window_argmax)


# ---------------------------------------------------------------------------
# Naive, readable kernels
# ---------------------------------------------------------------------------
def _maxpool2d_naive_forward_kernel(x, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, out):
    """out[n, c, oh, ow] = max of x[n, c] over window (oh, ow)."""
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    _, value = window_argmax(x[n, c], oh, ow, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w)
                    out[n, c, oh, ow] = value


def _maxpool2d_naive_backward_kernel(dout, x, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, dx):
    """Backward of max-pooling.

    out[n, c, oh, ow] = x[n, c, a] where a is the window's winning index, so
    d out / d x[n, c, a] = 1 and the derivative with respect to every other
    element of the window is 0. The gradient flows only to the winner:

        dx[n, c, a(oh, ow)] += dout[n, c, oh, ow]

    When windows overlap (stride < kernel), one element can win several
    windows and receives the *sum* of their gradients: hence ``+=``.
    """
    N, C, H, W = x.shape
    OH, OW = dout.shape[2], dout.shape[3]
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    k, _ = window_argmax(x[n, c], oh, ow, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w)
                    if k < H * W:  # an empty window (all padding) has no winner
                        dx[n, c, k // W, k % W] += dout[n, c, oh, ow]


maxpool2d_naive_forward_kernel = njit(cache=True)(_maxpool2d_naive_forward_kernel)
maxpool2d_naive_backward_kernel = njit(cache=True)(_maxpool2d_naive_backward_kernel)


# ---------------------------------------------------------------------------
# Fast kernels: parallel over planes, argmax recorded in the forward
# ---------------------------------------------------------------------------
def _replaces(v, value, nan_free):
    """Does ``v`` replace the window's winner so far, ``value``: it is larger, or it is a NaN (the
    last NaN wins, as in torch). ``nan_free`` is a constant where this is inlined: the plane holds
    no NaN, and a plain ``>`` decides.

    Why two forms: compiled for AVX-512, the NaN-aware test becomes two scalar compares into mask
    registers, OR-ed there, moved to a general register and back (``kmovd``, ``andb $1``, ``kmovd``;
    ``inspect_asm``) before the selects, a chain of several cycles per element; the plain ``>``
    becomes a compare and conditional moves. 64 planes of 24x24 in one call, 2x2 windows: 4.4 ns
    an output the NaN-aware way, 1.6 ns the plain way, 1.8 ns with the plane's NaN test before it
    (AMD EPYC family 25; imitated AVX2, ``znver3``: 2.1 and 1.5 ns, 1.9 with the test).
    """
    if nan_free:
        return v > value
    return (v > value) | (v != v)


def _has_nan(flat):
    """Whether ``flat`` (1-D) holds a NaN: a count of ``v != v``, which LLVM vectorizes
    (0.06-0.1 ns an element, 64 planes of 24x24; AMD EPYC family 25)."""
    count = 0
    for k in range(flat.size):
        count += flat[k] != flat[k]
    return count > 0


def _scan_window(flat, start, kernel_h, kernel_w, row_step, col_step, nan_free):
    """(flat index, value) of the winner of the window whose first element is ``flat[start]`` and whose
    elements are ``start + i*row_step + j*col_step``: the scan of ``window_argmax``, for a window
    wholly inside the plane, on unsigned indices (no negative-index arithmetic)."""
    best, value = start, flat[start]
    for i in range(kernel_h):
        row = start + np.uint64(i) * row_step
        for j in range(kernel_w):
            k = row + np.uint64(j) * col_step
            v = flat[k]
            if replaces(v, value, nan_free):  # the first largest value wins, a NaN wins (the last one)
                value, best = v, k
    return best, value


def _scan_row(flat, first, count, stride_w, kernel_h, kernel_w, row_step, col_step, q0, out_flat, indices_flat,
              nan_free):
    """Windows ``0..count-1`` of one output row, the first starting at ``flat[first]``, into
    ``out_flat[q0:q0+count]`` and ``indices_flat[...]``: ``scan_window`` each."""
    for o in range(count):
        best, value = scan_window(flat, first + o * np.uint64(stride_w), kernel_h, kernel_w, row_step, col_step,
                                  nan_free)
        indices_flat[q0 + o] = best
        out_flat[q0 + o] = value


def _scan_row_2x2(flat, first, second, count, q0, out_flat, indices_flat, nan_free):
    """The seed models' pool, 2x2 windows with stride 2 along the row: ``scan_window`` with the four
    elements at constant offsets, ``first`` and ``second`` the starts of the window's two rows.
    2.3x faster than ``scan_window`` with the window's size known only at run time (the same kernel
    without this case, one process, timed by hand: 7.5-8.2 ms against 3.2-3.4 ms for 256x16x28x28;
    AMD EPYC)."""
    for o in range(count):
        k0, k2 = first + np.uint64(2) * o, second + np.uint64(2) * o
        best, value = k0, flat[k0]
        v = flat[k0 + np.uint64(1)]
        if replaces(v, value, nan_free):
            value, best = v, k0 + np.uint64(1)
        v = flat[k2]
        if replaces(v, value, nan_free):
            value, best = v, k2
        v = flat[k2 + np.uint64(1)]
        if replaces(v, value, nan_free):
            value, best = v, k2 + np.uint64(1)
        indices_flat[q0 + o] = best
        out_flat[q0 + o] = value


def _maxpool2d_forward_kernel(x, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, out, indices):
    """out[n, c, oh, ow] = the largest value of window (oh, ow), indices[...] its flat position ih*W + iw.

    The windows wholly inside the plane (all of them without padding or ceil_mode), rows
    [oh_lo, oh_hi) x columns [ow_lo, ow_hi), are scanned row by row with no test per window
    (``scan_row``; ``scan_row_2x2`` for the seed models' 2x2 windows with stride 2), in a form
    that compares with a plain ``>`` when the plane holds no NaN (``has_nan``, ``replaces``).
    Article's first pool at batch 256 (AMD EPYC, ``make bench``'s layer table): 7.11 ms with a test
    and the general scan per window, 3.41 ms with the 2x2 case (torch 10.2 ms). The border windows go
    through ``window_argmax``. All scan in the same order, so the winners are the same.
    """
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    # output rows/columns whose whole window is inside the plane: [lo, hi)
    oh_lo = min(OH, -(-pad_top // stride_h))
    ow_lo = min(OW, -(-pad_left // stride_w))
    oh_hi = max(oh_lo, min(OH, (H - 1 - (kernel_h - 1) * dil_h + pad_top) // stride_h + 1))
    ow_hi = max(ow_lo, min(OW, (W - 1 - (kernel_w - 1) * dil_w + pad_left) // stride_w + 1))
    row_step, col_step = np.uint64(dil_h * W), np.uint64(dil_w)
    two_by_two = kernel_h == 2 and kernel_w == 2 and stride_w == 2 and dil_w == 1
    count = np.uint64(ow_hi - ow_lo)
    border = oh_lo > 0 or oh_hi < OH or ow_lo > 0 or ow_hi < OW  # windows that reach past the plane
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        plane = x[n, c]
        flat, out_flat, indices_flat = plane.reshape(-1), out[n, c].reshape(-1), indices[n, c].reshape(-1)
        nan_free = not has_nan(flat)
        for oh in range(oh_lo, oh_hi):
            first = np.uint64((oh * stride_h - pad_top) * W + ow_lo * stride_w - pad_left)
            q0 = np.uint64(oh * OW + ow_lo)
            # each call with a constant nan_free: inlined, each compiles to its own loop
            if two_by_two and nan_free:
                scan_row_2x2(flat, first, first + row_step, count, q0, out_flat, indices_flat, True)
            elif two_by_two:
                scan_row_2x2(flat, first, first + row_step, count, q0, out_flat, indices_flat, False)
            elif nan_free:
                scan_row(flat, first, count, stride_w, kernel_h, kernel_w, row_step, col_step, q0, out_flat,
                         indices_flat, True)
            else:
                scan_row(flat, first, count, stride_w, kernel_h, kernel_w, row_step, col_step, q0, out_flat,
                         indices_flat, False)
        if not border:
            continue
        for oh in range(OH):
            inner = oh_lo <= oh < oh_hi
            for ow in range(OW):
                if inner and ow_lo <= ow < ow_hi:
                    continue
                k, value = window_argmax(plane, oh, ow, kernel_h, kernel_w, stride_h, stride_w, pad_top,
                                         pad_left, dil_h, dil_w)
                indices_flat[oh * OW + ow] = k
                out_flat[oh * OW + ow] = value


def _maxpool2d_backward_kernel(dout, indices, dx):
    """dx[n, c].flat[indices[n, c, oh, ow]] += dout[n, c, oh, ow].

    Each (n, c) plane belongs to one parallel iteration, so the ``+=`` of
    overlapping windows never races. The plane is addressed flat, with unsigned
    indices: no division into (row, column) and no negative-index wraparound per
    window. Article's first pool at batch 256, alternating with torch in one process (AMD EPYC
    family 25): 1.71 ms with ``dx[n, c, k // W, k % W]`` (torch 0.72); 0.72 ms this way, in
    another process (torch 0.80).
    """
    N, C, H, W = dx.shape
    size, windows = np.uint64(H * W), np.uint64(dout.shape[2] * dout.shape[3])
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        plane, grad, winners = dx[n, c].reshape(-1), dout[n, c].reshape(-1), indices[n, c].reshape(-1)
        for k in range(size):
            plane[k] = 0
        for q in range(windows):
            k = np.uint64(winners[q])
            if k < size:  # an empty window (all padding) has no winner
                plane[k] += grad[q]


replaces = njit(cache=True, inline="always")(_replaces)
has_nan = njit(cache=True, inline="always")(_has_nan)
scan_window = njit(cache=True, inline="always")(_scan_window)
scan_row = njit(cache=True, inline="always")(_scan_row)
scan_row_2x2 = njit(cache=True, inline="always")(_scan_row_2x2)
maxpool2d_forward_kernel = parallel_kernel(_maxpool2d_forward_kernel)
maxpool2d_backward_kernel = parallel_kernel(_maxpool2d_backward_kernel)


# ---------------------------------------------------------------------------
# Functional interface
# ---------------------------------------------------------------------------
class PoolNaiveCache(NamedTuple):
    """What ``maxpool2d_backward_naive`` needs: the input and the window geometry (it re-finds each winner)."""
    x: np.ndarray           # (N, C, H, W)
    kernel: tuple           # (kernel_h, kernel_w)
    stride: tuple           # (stride_h, stride_w)
    padding: tuple          # (pad_top, pad_left): the same padding on the opposite sides
    dilation: tuple         # (dil_h, dil_w)
    out_shape: tuple        # (N, C, OH, OW): the output's shape, which dout must have


class PoolCache(NamedTuple):
    """What ``maxpool2d_backward`` needs: where each window's winner is, and the input's shape."""
    indices: np.ndarray     # (N, C, OH, OW) int64: flat index ih * W + iw of each window's winner
    x_shape: tuple          # (N, C, H, W)
    dtype: np.dtype


def maxpool2d_output_shape(x_shape, kernel, stride, padding=(0, 0), dilation=(1, 1), ceil_mode=False):
    """``(N, C, OH, OW)`` for an input of ``x_shape``, by ``maxpool2d_output_size`` along each axis."""
    return (x_shape[0], x_shape[1]) + tuple(
        maxpool2d_output_size(x_shape[2 + a], kernel[a], stride[a], padding[a], dilation[a], ceil_mode)
        for a in range(2))


_ACCEPTED = {}  # (x's shape and dtype, kernel, stride, padding, dilation, ceil_mode) checked and valid: the output shape


def checked_output_shape(function, x, kernel, stride, padding, dilation, ceil_mode):
    """The output shape of max-pooling ``x``, once the arguments of the public ``function`` are valid
    (``checks``); otherwise a ValueError or TypeError naming the argument."""
    key = (x.shape, x.dtype, kernel, stride, padding, dilation, ceil_mode) if type(x) is np.ndarray else None
    return checks.check_once(_ACCEPTED, key, _check_arguments, function, x, kernel, stride, padding, dilation,
                             ceil_mode)


def _check_arguments(function, x, kernel, stride, padding, dilation, ceil_mode):
    """Raise on bad arguments; return the output shape."""
    checks.float_array(function, "x", x, 4, "(N, C, H, W)")
    checks.int_tuple(function, "kernel", kernel, 2, 1, "(height, width)")
    checks.int_tuple(function, "stride", stride, 2, 1, "(height, width)")
    checks.int_tuple(function, "padding", padding, 2, 0, "(height, width)")
    checks.int_tuple(function, "dilation", dilation, 2, 1, "(height, width)")
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{function}: padding must be at most half of kernel {tuple(kernel)}, got padding={tuple(padding)}")
    shape = maxpool2d_output_shape(x.shape, kernel, stride, padding, dilation, ceil_mode)
    if shape[2] < 1 or shape[3] < 1:
        raise ValueError(f"{function}: x of shape {x.shape} is too small for kernel {tuple(kernel)}, padding "
                         f"{tuple(padding)} and dilation {tuple(dilation)}: the output would be {shape}")
    return shape


def _geometry_args(kernel, stride, padding, dilation):
    """The kernels' scalar arguments: kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w."""
    return (*kernel, *stride, *padding, *dilation)


def maxpool2d_forward_naive(x, kernel, stride, padding=(0, 0), dilation=(1, 1), ceil_mode=False):
    """Direct-loop max-pool. Same arguments and results as ``maxpool2d_forward``; the cache is a ``PoolNaiveCache``."""
    out = np.empty(checked_output_shape("maxpool2d_forward_naive", x, kernel, stride, padding, dilation, ceil_mode),
                   dtype=x.dtype)
    maxpool2d_naive_forward_kernel(x, *_geometry_args(kernel, stride, padding, dilation), out)
    return out, PoolNaiveCache(x, kernel, stride, padding, dilation, out.shape)


def maxpool2d_backward_naive(dout, cache):
    """Direct-loop backward; re-finds each window's winner. Returns dx."""
    checks.gradient("maxpool2d_backward_naive", dout, cache.out_shape)
    dx = np.zeros_like(cache.x)
    maxpool2d_naive_backward_kernel(np.ascontiguousarray(dout, dtype=cache.x.dtype), cache.x,
                                    *_geometry_args(cache.kernel, cache.stride, cache.padding, cache.dilation), dx)
    return dx


def maxpool2d_forward(x, kernel, stride, padding=(0, 0), dilation=(1, 1), ceil_mode=False):
    """Max-pool over (H, W).

    Parameters
    ----------
    x : ndarray (N, C, H, W), float32 or float64, C-contiguous
    kernel, stride, padding, dilation : pair of int (padding <= kernel // 2)
    ceil_mode : bool

    Returns
    -------
    out : ndarray (N, C, OH, OW)
    cache : PoolCache; ``cache.indices[n, c, oh, ow]`` is the flat index
        ``ih * W + iw`` of the winner, the same as torch's ``return_indices``.

    Notes
    -----
    ``dx[n, c].flat[indices[n, c, oh, ow]] += dout[n, c, oh, ow]``.
    """
    shape = checked_output_shape("maxpool2d_forward", x, kernel, stride, padding, dilation, ceil_mode)
    out = np.empty(shape, dtype=x.dtype)
    indices = np.empty(shape, dtype=np.int64)
    work = out.size * kernel[0] * kernel[1]
    maxpool2d_forward_kernel.for_work(work)(x, *_geometry_args(kernel, stride, padding, dilation), out, indices)
    return out, PoolCache(indices, x.shape, x.dtype)


def maxpool2d_backward(dout, cache):
    """Scatter-add ``dout`` to the recorded winners. Returns dx of the input's shape."""
    checks.gradient("maxpool2d_backward", dout, cache.indices.shape)
    dx = np.empty(cache.x_shape, dtype=cache.dtype)
    maxpool2d_backward_kernel.for_work(dx.size)(np.ascontiguousarray(dout, dtype=cache.dtype), cache.indices, dx)
    return dx
