"""2-D convolution (cross-correlation, as in torch), forward and backward.

Two implementations with the same functional interface:

* ``conv2d_forward_naive`` / ``conv2d_backward_naive``: direct loops, written
  to be read. The comments derive the backward pass.
* ``conv2d_forward`` / ``conv2d_backward``: the fast kernels of ``fast_conv``,
  register tiles on small blocks of gathered input that stay in cache (the
  layers use these);
* ``conv2d_forward_im2col`` / ``conv2d_backward_im2col``: im2col + one BLAS
  matrix product per group, a chunk of images at a time, then col2im: the
  textbook method, kept to compare against (``Conv2d(impl="im2col")``). Its
  products run on Numba's threads as ``Linear``'s do (``gemm.matmul``), never
  on BLAS's own threads beside Numba's.

Shapes
------
x    : (N, C, H, W)
w    : (F, C // groups, KH, KW)
b    : (F,) or None
out  : (N, F, OH, OW) with, per spatial axis,

    O = floor((I + pad_before + pad_after - dilation * (K - 1) - 1) / stride) + 1

Padding is given per side as ``(top, bottom, left, right)``; torch's symmetric
``padding=p`` is ``(p, p, p, p)`` and ``padding='same'`` puts the odd extra
row/column at the bottom/right, exactly as torch does.
"""
import functools
import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from .. import runtime
from ..runtime import parallel_kernel
from .fast_conv import (
    KERNEL_ROW_WIDTHS,
    ROW_FILTERS,
    ROW_VECTORS,
    WEIGHT_FILTERS,
    WEIGHT_TAPS,
    conv2d_image_tiles_forward,
    conv2d_rows_forward,
    conv2d_rows_weight_grad,
    conv2d_tiles_forward,
    conv2d_tiles_weight_grad,
    round_up,
    plane_vectors,
    row_vectors,
    tile_shape,
)
from . import checks
from .gemm import matmul
from .simd import VECTOR_BYTES

# Elements of cols (and dcols) built at once: the images are unfolded a chunk at a time, so the buffer
# stays small (1 Mi elements: 4 MB in float32) whatever the batch, and the backward unfolds them again
# instead of keeping every image's cols from the forward (80 MB for article's second conv at batch 256).
COLS_CHUNK_ELEMENTS = 1 << 20

# Taps per output (Cg*KH*KW) below which a stride-1 convolution runs as row tiles (filters x vectors
# of output pixels) rather than outer-product tiles (pixels x vectors of filters). Batch 64, same
# process, alternating with torch (AMD EPYC, AVX-512): notebook's 10->20 forward (90 taps) 0.30 ms by
# rows against 0.43 by tiles; article's 16->32 (400 taps) 2.25 against 2.12.
DIRECT_MAX_TAPS = 128
# ... and whatever the taps, when a group's output channels fill less than this share of a vector:
# an outer-product tile then computes lanes of zero filters, a row tile at most three. 400 taps
# (16 input channels, 5x5, 14x14 pixels), batch 64, same process (AMD EPYC, AVX-512), tiles against
# rows: 1 filter (a first layer's input gradient, 28x28 pixels) 3.81-3.87 ms against 1.12-1.17, 4
# filters 1.02-1.03 against 0.34-0.37, 8 filters 1.05-1.06 against 0.63-0.64, 12 filters 1.04-1.07
# against 0.86-0.88; with 16 filters or more outer-product tiles win (32: 2.12 against 2.25).
ROWS_BELOW_VECTOR = 1.0
# Row tiles run along the padded plane (``plane_vectors``: rows and their padding columns, the output
# staged, then copied) when that takes at most this share of the vectors that output rows take
# (``row_vectors``). Notebook's 10->20 forward at batch 64, same process (AMD EPYC, AVX-512; 8 vectors
# against 12): 0.27-0.33 ms along the plane against 0.33-0.46 by rows (torch 0.42); notebook's 1->10
# (44 against 48) 0.31-0.32 against 0.32, article's 1->16 (56 against 56) 0.57-0.58 against 0.49.
PLANE_VECTORS_MAX_SHARE = 0.8
# Outer-product tiles image by image (``conv2d_image_tiles_forward``: each plane of out written whole)
# when an image's last tile repeats at most this share of its pixels; else tiles that run on into the
# next image (``conv2d_tiles_forward``). Batch 64, same process (AMD EPYC, AVX-512), across images
# against by image: article's 16->32 forward 1.87 against 1.75 ms, its input gradient (32->16) 1.95
# against 1.80.
IMAGE_TILES_MAX_REPEATED = 0.125
# ... and along the output rows (R consecutive pixels from one address: no register holds a pixel's
# own address, which the tiles across rows keep on the stack when they run out of registers) when a
# row's last tile, moved back to end at the row's end, repeats at most this share of the pixels.
ROW_ALIGNED_MAX_REPEATED = 0.125
# ... and otherwise (stride 1, rows at least a tile long) along the rows with a strip: each row's
# last OW % R pixels taken across rows, leaving out the kernel columns that read only the right
# padding for all of them, when that leaves their kernel columns below this share of KW. With
# AVX2's 6-pixel wide tiles, article's 16->32 forward (14-pixel rows: 2 tiles along each row from
# its start, the last one leaving out the left padding's taps, and a strip of 2 columns that reads
# 4 of the 5) does 6% fewer multiply-adds than tiles across rows (198 pixels, every kernel column):
# imitated AVX2, old and new in one process, the tiles alone 0.92-0.93 of their time on one thread,
# the whole forward at batch 64 0.97-1.02 on two (docs/performance.md, session 25).
STRIP_MAX_KERNEL_COLUMNS = 1.0
# Narrow tiles along the rows take a kernel row's taps at once for the kernel widths in
# ``KERNEL_ROW_WIDTHS`` (imported from fast_conv; dilation 1 along the rows): each input value is
# broadcast once for up to KW multiply-adds. Article's 16->32 input gradient at batch 64, AMD EPYC
# family 26 (AVX-512), see docs/performance.md. For those widths, tiles along rows at an output
# row's ends leave out the taps of the columns of padding (session 15: article's 16->32 forward 8%
# faster, AMD EPYC family 25).
# The weight gradient's tiles run over the pixels of several images at once, as many as fit this
# many bytes of their output gradient, copied pixel-major (``conv2d_tiles_weight_grad``). Article's
# 16->32 at batch 64 (10 images a chunk), the kernel alone on 2 threads, AMD EPYC family 26: 287
# GFLOP/s image by image, 370 with 4 images a chunk, 381 with 8, 382 with 32.
WEIGHT_GRAD_CHUNK_BYTES = 256 * 1024
# Taps below which the weight gradient runs as row tiles (``conv2d_rows_weight_grad``), which keep filters x taps
# of sums: the first layers' 25 taps, article's 1->16 at batch 64 0.41-0.44 ms against 0.66-0.71 by
# outer-product tiles; notebook's 10->20 (90 taps) was slower by rows.
WEIGHT_ROWS_MAX_TAPS = 32


def conv2d_output_size(size, kernel, stride, pad_before, pad_after, dilation):
    """``floor((I + pad_before + pad_after - dilation*(K-1) - 1) / stride) + 1``."""
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


# ---------------------------------------------------------------------------
# Naive, readable kernels
# ---------------------------------------------------------------------------
def _conv2d_naive_forward_kernel(x, w, b, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, groups, out):
    """out[n, f, oh, ow] = b[f] + sum_{c, i, j} x[n, g*Cg + c, ih, iw] * w[f, c, i, j]

    where g = f // (F / groups) is the group of filter f, Cg = C / groups, and
    ih = oh*stride_h - pad_top + i*dil_h, iw = ow*stride_w - pad_left + j*dil_w
    (terms outside x are zero padding).
    """
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    Fg = F // groups
    OH, OW = out.shape[2], out.shape[3]
    for n in range(N):
        for f in range(F):
            g = f // Fg
            for oh in range(OH):
                for ow in range(OW):
                    acc = b[f]
                    for c in range(Cg):
                        for i in range(KH):
                            ih = oh * stride_h - pad_top + i * dil_h
                            if ih < 0 or ih >= H:
                                continue  # zero padding contributes nothing
                            for j in range(KW):
                                iw = ow * stride_w - pad_left + j * dil_w
                                if 0 <= iw < W:
                                    acc += x[n, g * Cg + c, ih, iw] * w[f, c, i, j]
                    out[n, f, oh, ow] = acc


def _conv2d_naive_backward_kernel(dout, x, w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, groups, dx, dw, db):
    """Backward pass of the direct convolution.

    Every output element is a sum of products
        out[n, f, oh, ow] = b[f] + sum x[n, g*Cg + c, ih, iw] * w[f, c, i, j],
    so by the chain rule each product term sends ``dout[n, f, oh, ow]`` back
    along both of its factors:

        dL/dx[n, g*Cg + c, ih, iw] += dout[n, f, oh, ow] * w[f, c, i, j]
        dL/dw[f, c, i, j]          += dout[n, f, oh, ow] * x[n, g*Cg + c, ih, iw]
        dL/db[f]                   += dout[n, f, oh, ow]

    An input pixel lies in many windows (one per output position whose window
    covers it), so its gradient is the *sum* over all of them: hence ``+=``.
    Terms that fell in the zero padding have no input element and are skipped.
    """
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    Fg = F // groups
    OH, OW = dout.shape[2], dout.shape[3]
    for n in range(N):
        for f in range(F):
            g = f // Fg
            for oh in range(OH):
                for ow in range(OW):
                    d = dout[n, f, oh, ow]
                    db[f] += d
                    for c in range(Cg):
                        for i in range(KH):
                            ih = oh * stride_h - pad_top + i * dil_h
                            if ih < 0 or ih >= H:
                                continue
                            for j in range(KW):
                                iw = ow * stride_w - pad_left + j * dil_w
                                if 0 <= iw < W:
                                    dx[n, g * Cg + c, ih, iw] += d * w[f, c, i, j]
                                    dw[f, c, i, j] += d * x[n, g * Cg + c, ih, iw]


conv2d_naive_forward_kernel = njit(cache=True)(_conv2d_naive_forward_kernel)
conv2d_naive_backward_kernel = njit(cache=True)(_conv2d_naive_backward_kernel)


# ---------------------------------------------------------------------------
# Fast kernels: im2col -> GEMM -> col2im
# ---------------------------------------------------------------------------
def _im2col(x, KH, KW, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, OH, OW, cols):
    """Unfold every receptive field of x into a column of ``cols``.

    cols[(c*KH + i)*KW + j, (n*OH + oh)*OW + ow]
        = x[n, c, oh*stride_h - pad_top + i*dil_h, ow*stride_w - pad_left + j*dil_w]
    (zero where that index falls in the padding). ``cols`` has shape
    (C*KH*KW, N*OH*OW); the rows of group g are the contiguous block
    [g*Cg*KH*KW, (g+1)*Cg*KH*KW). Rows are independent, so they run in parallel.
    """
    N, C, H, W = x.shape
    for row in prange(C * KH * KW):
        c = row // (KH * KW)
        i = (row // KW) % KH
        j = row % KW
        for n in range(N):
            for oh in range(OH):
                ih = oh * stride_h - pad_top + i * dil_h
                base = (n * OH + oh) * OW
                if ih < 0 or ih >= H:
                    for ow in range(OW):
                        cols[row, base + ow] = 0
                    continue
                for ow in range(OW):
                    iw = ow * stride_w - pad_left + j * dil_w
                    if 0 <= iw < W:
                        cols[row, base + ow] = x[n, c, ih, iw]
                    else:
                        cols[row, base + ow] = 0


def _col2im(cols, N, C, H, W, KH, KW, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, OH, OW, dx):
    """The adjoint of im2col: add every column entry back onto its input pixel.

    dx[n, c, ih, iw] += cols[(c*KH + i)*KW + j, (n*OH + oh)*OW + ow]
    Overlapping windows add up. Each (n, c) plane is owned by exactly one
    parallel iteration, so no two iterations write to the same element.
    """
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        dx[n, c] = 0
        for i in range(KH):
            for j in range(KW):
                row = (c * KH + i) * KW + j
                for oh in range(OH):
                    ih = oh * stride_h - pad_top + i * dil_h
                    if ih < 0 or ih >= H:
                        continue
                    base = (n * OH + oh) * OW
                    for ow in range(OW):
                        iw = ow * stride_w - pad_left + j * dil_w
                        if 0 <= iw < W:
                            dx[n, c, ih, iw] += cols[row, base + ow]


def _gemm_to_nchw(out_mat, b, out):
    """out[n, f, p] = out_mat[f, n*P + p] + b[f]: the GEMM result back in NCHW with the bias."""
    N, F, P = out.shape
    for n in prange(N):
        for f in range(F):
            bf = b[f]
            for p in range(P):
                out[n, f, p] = out_mat[f, n * P + p] + bf


def _nchw_to_gemm(dout, dout_mat, db):
    """dout_mat[f, n*P + p] = dout[n, f, p], and db[f] = sum over n, p of dout[n, f, p]."""
    N, F, P = dout.shape
    for f in prange(F):
        acc = 0.0
        for n in range(N):
            for p in range(P):
                v = dout[n, f, p]
                dout_mat[f, n * P + p] = v
                acc += v
        db[f] = acc


im2col = parallel_kernel(_im2col)
col2im = parallel_kernel(_col2im)
gemm_to_nchw = parallel_kernel(_gemm_to_nchw)
nchw_to_gemm = parallel_kernel(_nchw_to_gemm)


# ---------------------------------------------------------------------------
# Functional interface
# ---------------------------------------------------------------------------
class ConvGeometry(NamedTuple):
    """Where each window sits: strides, the padding before each axis, dilations and the output size."""
    stride_h: int
    stride_w: int
    pad_top: int
    pad_left: int
    dil_h: int
    dil_w: int
    out_h: int
    out_w: int


class ConvNaiveCache(NamedTuple):
    """What ``conv2d_backward_naive`` needs: the input itself (the loops re-read it)."""
    x: np.ndarray           # (N, C, H, W)
    w: np.ndarray           # (F, C // groups, KH, KW)
    has_bias: bool
    geometry: ConvGeometry
    groups: int


class ConvCache(NamedTuple):
    """What ``conv2d_backward`` needs: the input (it is unfolded again, a chunk at a time) and the weights."""
    x: np.ndarray           # (N, C, H, W), a reference to the forward's input
    w: np.ndarray           # (F, C // groups, KH, KW)
    has_bias: bool
    geometry: ConvGeometry
    groups: int


def conv2d_geometry(x_shape, w_shape, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1)):
    """The ``ConvGeometry`` of a convolution; ``padding`` is ``(top, bottom, left, right)``."""
    (stride_h, stride_w), (dil_h, dil_w) = stride, dilation
    pad_top, pad_bottom, pad_left, pad_right = padding
    out_h = conv2d_output_size(x_shape[2], w_shape[2], stride_h, pad_top, pad_bottom, dil_h)
    out_w = conv2d_output_size(x_shape[3], w_shape[3], stride_w, pad_left, pad_right, dil_w)
    return ConvGeometry(stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, out_h, out_w)


_ACCEPTED = {}  # _call_key of the convolutions checked and found valid: their ConvGeometry


def _call_key(x, w, b, stride, padding, dilation, groups):
    """What the checks of a convolution depend on, or None when x, w or b is no ndarray."""
    if type(x) is not np.ndarray or type(w) is not np.ndarray or (b is not None and type(b) is not np.ndarray):
        return None
    return (x.shape, x.dtype, w.shape, w.dtype, None if b is None else (b.shape, b.dtype), stride, padding, dilation,
            groups)


def checked_geometry(function, x, w, b, stride, padding, dilation, groups):
    """The ``ConvGeometry`` of a convolution of ``x`` by ``w`` (and ``b``), once every argument of the
    public ``function`` agrees with the others (``checks``); otherwise a ValueError or TypeError
    naming the argument."""
    return checks.check_once(_ACCEPTED, _call_key(x, w, b, stride, padding, dilation, groups),
                             _check_arguments, function, x, w, b, stride, padding, dilation, groups)


def _check_arguments(function, x, w, b, stride, padding, dilation, groups):
    """Raise on bad arguments; return their ConvGeometry."""
    checks.float_array(function, "x", x, 4, "(N, C, H, W)")
    checks.float_array(function, "w", w, 4, "(F, C // groups, KH, KW)", like=("x", x))
    checks.int_tuple(function, "stride", stride, 2, 1, "(height, width)")
    checks.int_tuple(function, "padding", padding, 4, 0, "(top, bottom, left, right)")
    checks.int_tuple(function, "dilation", dilation, 2, 1, "(height, width)")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1 or w.shape[0] % groups:
        raise ValueError(f"{function}: groups must be a positive int dividing w's {w.shape[0]} filters "
                         f"(w of shape {w.shape}), got {groups!r}")
    if x.shape[1] != w.shape[1] * groups:
        raise ValueError(f"{function}: w of shape {w.shape} with groups={groups} needs x with "
                         f"{w.shape[1] * groups} channels (N, C, H, W), got x of shape {x.shape}")
    if b is not None:
        checks.float_array(function, "b", b, 1, "(F,)", like=("x", x))
        checks.shape(function, "b", b, (w.shape[0],), "one entry per filter of w, shape")
    geo = conv2d_geometry(x.shape, w.shape, stride, padding, dilation)
    if geo.out_h < 1 or geo.out_w < 1:
        padded = (x.shape[2] + padding[0] + padding[1], x.shape[3] + padding[2] + padding[3])
        extent = (dilation[0] * (w.shape[2] - 1) + 1, dilation[1] * (w.shape[3] - 1) + 1)
        raise ValueError(f"{function}: the kernel (extent dilation*(k-1)+1 = {extent}, w of shape {w.shape}) is "
                         f"larger than the padded input {padded} of x of shape {x.shape}")
    return geo


def _bias(b, F, dtype):
    return np.zeros(F, dtype=dtype) if b is None else b


def conv2d_forward_naive(x, w, b=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """Direct-loop convolution. Same arguments and results as ``conv2d_forward``; the cache is a ``ConvNaiveCache``."""
    geo = checked_geometry("conv2d_forward_naive", x, w, b, stride, padding, dilation, groups)
    out = np.empty((x.shape[0], w.shape[0], geo.out_h, geo.out_w), dtype=x.dtype)
    conv2d_naive_forward_kernel(x, w, _bias(b, w.shape[0], x.dtype), *geo[:6], groups, out)
    return out, ConvNaiveCache(x, w, b is not None, geo, groups)


def conv2d_backward_naive(dout, cache, input_grad=True):
    """Direct-loop backward. Returns ``(dx, dw, db)`` as ``conv2d_backward`` does (the loops compute dx anyway)."""
    x, w = cache.x, cache.w
    checks.gradient("conv2d_backward_naive", dout, (x.shape[0], w.shape[0], cache.geometry.out_h, cache.geometry.out_w))
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    db = np.zeros(w.shape[0], dtype=x.dtype)
    conv2d_naive_backward_kernel(np.ascontiguousarray(dout, dtype=x.dtype), x, w, *cache.geometry[:6],
                                 cache.groups, dx, dw, db)
    return (dx if input_grad else None), dw, (db if cache.has_bias else None)


def _images_per_chunk(C, KH, KW, P, N):
    return max(1, min(N, COLS_CHUNK_ELEMENTS // max(1, C * KH * KW * P)))


def _chunk_view(buffer, rows, columns):
    """A C-contiguous (rows, columns) view of the front of a flat buffer. (A column slice of a 2-D
    buffer would be strided, and Numba compiles a slower, unvectorized kernel for strided arrays.)"""
    return buffer[:rows * columns].reshape(rows, columns)


def _group_slices(F, R, groups):
    """For each group: its filters (rows of w_mat) and its rows of cols."""
    Fg, Rg = F // groups, R // groups
    return [(slice(g * Fg, (g + 1) * Fg), slice(g * Rg, (g + 1) * Rg)) for g in range(groups)]


def conv2d_forward_im2col(x, w, b=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """Convolution by im2col and one BLAS matrix product per group, a chunk of images at a time.

    Parameters
    ----------
    x : ndarray (N, C, H, W), float32 or float64, C-contiguous
    w : ndarray (F, C // groups, KH, KW), same dtype
    b : ndarray (F,) or None
    stride, dilation : pair of int
    padding : (top, bottom, left, right)
    groups : int dividing both C and F

    Returns
    -------
    out : ndarray (N, F, OH, OW)
    cache : ConvCache for ``conv2d_backward_im2col``

    Notes
    -----
    With ``cols = im2col(x)`` of shape (C*KH*KW, n*OH*OW) for a chunk of n images and the weights
    seen as a matrix ``w_mat`` of shape (F, Cg*KH*KW), each group computes ``out_g = w_mat_g @ cols_g``.
    The backward pass is the transpose of that: ``dw_mat_g = sum over chunks of dout_g @ cols_g.T``,
    ``dcols_g = w_mat_g.T @ dout_g`` and ``dx = col2im(dcols)``; ``db`` sums dout over (N, OH, OW).
    Only one chunk's ``cols`` exists at a time (``COLS_CHUNK_ELEMENTS``), in the forward and in the
    backward, which unfolds the input again rather than keeping it unfolded.
    """
    geo = checked_geometry("conv2d_forward_im2col", x, w, b, stride, padding, dilation, groups)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    P = geo.out_h * geo.out_w
    w_mat, bias = w.reshape(F, Cg * KH * KW), _bias(b, F, x.dtype)
    out = np.empty((N, F, P), dtype=x.dtype)
    chunk = _images_per_chunk(C, KH, KW, P, N)
    cols = np.empty(C * KH * KW * chunk * P, dtype=x.dtype)
    out_mat = np.empty(F * chunk * P, dtype=x.dtype)
    for n0 in range(0, N, chunk):
        n1 = min(N, n0 + chunk)
        part, out_part = _chunk_view(cols, C * KH * KW, (n1 - n0) * P), _chunk_view(out_mat, F, (n1 - n0) * P)
        im2col.for_work(part.size)(x[n0:n1], KH, KW, *geo, part)
        for fs, rs in _group_slices(F, C * KH * KW, groups):
            matmul(w_mat[fs], part[rs], out=out_part[fs])
        gemm_to_nchw.for_work(out_part.size)(out_part, bias, out[n0:n1])
    return out.reshape(N, F, geo.out_h, geo.out_w), ConvCache(x, w, b is not None, geo, groups)


def conv2d_backward_im2col(dout, cache, input_grad=True):
    """Backward of ``conv2d_forward_im2col``. Returns ``(dx, dw, db)`` as ``conv2d_backward`` does."""
    x, w, geo, groups = cache.x, cache.w, cache.geometry, cache.groups
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    checks.gradient("conv2d_backward_im2col", dout, (N, F, geo.out_h, geo.out_w))
    P = geo.out_h * geo.out_w
    dout_mat = np.empty((F, N * P), dtype=w.dtype)
    db = np.empty(F, dtype=w.dtype)
    nchw_to_gemm.for_work(dout_mat.size)(np.ascontiguousarray(dout, dtype=w.dtype).reshape(N, F, P), dout_mat, db)
    w_mat = w.reshape(F, Cg * KH * KW)
    dw_mat, dw_part = np.zeros_like(w_mat), np.empty_like(w_mat)
    dx = np.empty((N, C, H, W), dtype=w.dtype)
    chunk = _images_per_chunk(C, KH, KW, P, N)
    cols = np.empty(C * KH * KW * chunk * P, dtype=w.dtype)
    dcols = np.empty_like(cols)
    for n0 in range(0, N, chunk):
        n1 = min(N, n0 + chunk)
        part, dpart = _chunk_view(cols, C * KH * KW, (n1 - n0) * P), _chunk_view(dcols, C * KH * KW, (n1 - n0) * P)
        dout_part = dout_mat[:, n0 * P:n1 * P]
        im2col.for_work(part.size)(x[n0:n1], KH, KW, *geo, part)
        for fs, rs in _group_slices(F, C * KH * KW, groups):
            matmul(dout_part[fs], part[rs].T, out=dw_part[fs])     # dW_g += dout_g @ cols_g.T
            if input_grad:
                matmul(w_mat[fs].T, dout_part[fs], out=dpart[rs])  # dcols_g = W_g.T @ dout_g
        dw_mat += dw_part
        if input_grad:
            col2im.for_work(dpart.size)(dpart, n1 - n0, C, H, W, KH, KW, *geo, dx[n0:n1])
    return (dx if input_grad else None), dw_mat.reshape(w.shape), (db if cache.has_bias else None)


def _weight_matrix(w, groups, transposed, row_multiple, column_multiple):
    """The weights as one zero-padded matrix per group: (groups, rows, columns).

    Rows are the output channels of the group, columns its taps (c, i, j). When no padding is
    needed and not ``transposed``, that matrix is w itself, reshaped (a view, not a copy).
    ``transposed`` gives the weights of the transposed convolution, the one the input gradient is:
    rows c, columns (f, i', j'), element w[g*Fg + f, c, KH-1-i', KW-1-j'].
    """
    F, Cg, KH, KW = w.shape
    per_group = w.reshape(groups, F // groups, Cg, KH, KW)
    if transposed:
        per_group = per_group[:, :, :, ::-1, ::-1].transpose(0, 2, 1, 3, 4)
    rows, taps = per_group.shape[1], per_group[0, 0].size
    if not transposed and rows % row_multiple == 0 and taps % column_multiple == 0:
        return np.ascontiguousarray(per_group).reshape(groups, rows, taps)  # w itself, seen as the matrix
    matrix = np.zeros((groups, round_up(rows, row_multiple), round_up(taps, column_multiple)), dtype=w.dtype)
    matrix[:, :rows, :taps] = per_group.reshape(groups, rows, taps)
    return matrix


def _input_extent(out, stride, dilation, kernel):
    """The padded input rows (or columns) that ``out`` output rows read: (out-1)*stride + dilation*(kernel-1) + 1."""
    return (out - 1) * stride + dilation * (kernel - 1) + 1


def _multiply_adds(out_shape, taps):
    """Multiply-adds of a convolution pass: every output element sums ``taps`` products."""
    return math.prod(out_shape) * taps


def _convolve(x, w, groups, bias, stride, pad_before, dilation, out_hw, out, upsample=(1, 1), transposed=False):
    """out (N, F, OH, OW) = the convolution of x (N, C, H, W) by w with per-axis ``stride``,
    ``pad_before`` (negative crops) and ``dilation``, after ``upsample - 1`` zeros are put between
    the pixels of x; with ``transposed``, by the weights of the transposed convolution (``conv2d_backward``).

    A stride-1 convolution with few taps per output (Cg*KH*KW < DIRECT_MAX_TAPS) or few output
    channels per group (less than ROWS_BELOW_VECTOR of a vector) runs as row tiles; otherwise as
    outer-product tiles (``fast_conv``).
    """
    N, C = x.shape[:2]
    KH, KW = w.shape[2:]
    (OH, OW), (sh, sw), (dh, dw) = out_hw, stride, dilation
    Cg = C // groups
    Hp, Wp = _input_extent(OH, sh, dh, KH), _input_extent(OW, sw, dw, KW)
    work = _multiply_adds(out.shape, Cg * KH * KW) // 32
    threads = runtime.threads_for(work)
    pads = (pad_before[0], pad_before[1], upsample[0], upsample[1])
    block = VECTOR_BYTES // x.itemsize
    if stride == (1, 1) and (Cg * KH * KW < DIRECT_MAX_TAPS or out.shape[1] // groups < block * ROWS_BELOW_VECTOR):
        flat = np.empty(N * C * Hp * Wp + block, dtype=x.dtype)  # a vector more: a row's last vector reads past it
        xp = flat[:-block].reshape(N, C, Hp, Wp)
        w_taps = _weight_matrix(w, groups, transposed, ROW_FILTERS, 1)
        if w_taps.shape[1] == out.shape[1] // groups:
            bias_rows = np.ascontiguousarray(bias).reshape(groups, -1)
        else:  # zeros for the rows that round the channels up to ROW_FILTERS
            bias_rows = np.zeros((groups, w_taps.shape[1]), dtype=x.dtype)
            bias_rows[:, :out.shape[1] // groups] = bias.reshape(groups, -1)
        offsets = _tap_offsets(C, Cg, KH, KW, dh, dw, Hp, Wp, 1)
        vectors, staged_plane = row_vectors(OH, OW, Wp, block, ROW_VECTORS), 0
        along_plane = plane_vectors(OH, OW, Wp, block, ROW_VECTORS)
        if along_plane[0].size <= vectors[0].size * PLANE_VECTORS_MAX_SHARE:
            vectors, staged_plane = along_plane, along_plane[0].size * block
        conv2d_rows_forward.for_work(work)(x, *pads, offsets, w_taps, bias_rows, *vectors, threads, xp, flat, out,
                                           staged_plane)
    else:
        xp = np.empty((N, C, Hp, Wp), dtype=x.dtype)
        wide, rows, block = tile_shape(out.shape[1] // groups, x.dtype)
        w_matrix = _weight_matrix(w, groups, transposed, block, 1)  # (groups, Fb, taps (c, i, j))
        along_rows = sw == 1 and OW >= rows and -OW % rows <= OW * ROW_ALIGNED_MAX_REPEATED
        strip, strip_kw = 0, KW
        if not along_rows and sw == 1 and OW >= rows:
            # the strip of each row's last OW % rows pixels reads data at kernel columns j < strip_kw: those
            # at which its first pixel, OW - OW % rows, reads at most the input's last column pad_left + (W - 1)*up_w
            strip_kw = min(KW, max(1, (pad_before[1] + (x.shape[3] - 1) * upsample[1] - (OW - OW % rows)) // dw + 1))
            if strip_kw < KW * STRIP_MAX_KERNEL_COLUMNS:
                along_rows, strip = True, OW % rows
        if along_rows or -(OH * OW) % rows <= OH * OW * IMAGE_TILES_MAX_REPEATED:
            # taps ordered (i, c, j): the kernel rows that read only padding, a prefix and a suffix of
            # them, are left out row by row (row_taps); narrow tiles along rows take a kernel row at a time
            kernel_row = KW if along_rows and dw == 1 and KW in KERNEL_ROW_WIDTHS else 1
            Fb = w_matrix.shape[1]
            w_taps = np.ascontiguousarray(w_matrix.reshape(groups, Fb, Cg, KH, KW).transpose(0, 3, 2, 4, 1))
            w_taps = w_taps.reshape(groups, Cg * KH * KW, Fb)
            offsets = _tap_offsets(C, Cg, KH, KW, dh, dw, Hp, Wp, 1, rows_first=True)
            row_taps = _row_tap_ranges(OH, sh, dh, KH, pad_before[0], upsample[0], x.shape[2], Cg * KW)
            strip_taps = (offsets, w_taps, row_taps)  # (not read without a strip)
            if strip:
                strip_w = w_taps.reshape(groups, KH, Cg, KW, Fb)[:, :, :, :strip_kw]
                strip_taps = (_tap_offsets(C, Cg, KH, strip_kw, dh, dw, Hp, Wp, 1, rows_first=True),
                              np.ascontiguousarray(strip_w).reshape(groups, KH * Cg * strip_kw, Fb),
                              _row_tap_ranges(OH, sh, dh, KH, pad_before[0], upsample[0], x.shape[2], Cg * strip_kw))
            conv2d_image_tiles_forward.for_work(work)(x, *pads, offsets, w_taps, bias, sh, sw, wide, along_rows,
                                                      kernel_row, row_taps, strip, *strip_taps, threads, xp, out)
        else:
            w_taps = np.ascontiguousarray(w_matrix.transpose(0, 2, 1))
            offsets = _tap_offsets(C, Cg, KH, KW, dh, dw, Hp, Wp, 1)
            conv2d_tiles_forward.for_work(work)(x, *pads, offsets, w_taps, bias, sh, sw, wide, threads, xp, out)


@functools.lru_cache(maxsize=64)
def _tap_offsets(C, Cg, KH, KW, dil_h, dil_w, Hp, Wp, multiple, rows_first=False):
    """Where tap t = (c, i, j) of an output pixel reads the padded input (N, C, Hp, Wp), flattened,
    relative to the pixel's own (c = i = j = 0) address: (c*Hp + i*dil_h)*Wp + j*dil_w; with
    ``rows_first`` in the order (i, c, j). Rounded up to a ``multiple`` of taps by repeating the last
    (a tile over taps then reads only real ones). Cached (read-only): a layer asks for the same
    offsets at every step, and building them costs about as much as a batch-1 first layer's whole kernel."""
    if rows_first:
        i, c, j = np.unravel_index(np.arange(Cg * KH * KW), (KH, Cg, KW))
    else:
        c, i, j = np.unravel_index(np.arange(Cg * KH * KW), (Cg, KH, KW))
    offsets = (c * Hp + i * dil_h) * Wp + j * dil_w
    offsets = np.concatenate([offsets, np.repeat(offsets[-1:], round_up(offsets.size, multiple) - offsets.size)])
    offsets.setflags(write=False)
    return offsets


@functools.lru_cache(maxsize=64)
def _row_tap_ranges(OH, stride_h, dil_h, KH, pad_top, up_h, H, per_kernel_row):
    """(OH, 2): for output row oh, the entries [begin, end) of taps ordered (i, c, j) whose kernel
    rows i can read data: per_kernel_row entries per kernel row i, those from the first i whose
    padded-input row oh*stride_h + i*dil_h holds an input row (pad_top + h*up_h, h < H) to the last.
    The others read only zeros of the padding (or of the zero rows put between rows when up_h > 1,
    those before the first and after the last), so leaving them out changes no sum: oneDNN's kernels
    skip them too (``t_overflow``/``b_overflow``). Article's 16->32 (5x5, padding 2, 14 rows):
    64 of its 70 kernel-row passes per output plane are left."""
    i = np.arange(KH)
    r = np.arange(OH)[:, None] * stride_h + i[None, :] * dil_h - pad_top
    data = (r >= 0) & (r <= (H - 1) * up_h) & (r % up_h == 0)
    first = np.where(data.any(axis=1), data.argmax(axis=1), 0)
    last = np.where(data.any(axis=1), KH - data[:, ::-1].argmax(axis=1), 0)
    ranges = np.stack([first, last], axis=1).astype(np.int64) * per_kernel_row
    ranges.setflags(write=False)
    return ranges


def conv2d_forward(x, w, b=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """Direct convolution with its sums in vector registers (``fast_conv``). The layers use this.

    Parameters
    ----------
    x : ndarray (N, C, H, W), float32 or float64, C-contiguous
    w : ndarray (F, C // groups, KH, KW), same dtype
    b : ndarray (F,) or None
    stride, dilation : pair of int
    padding : (top, bottom, left, right)
    groups : int dividing both C and F

    Returns
    -------
    out : ndarray (N, F, OH, OW)
    cache : ConvCache for ``conv2d_backward``

    Notes
    -----
    ``out[n, f, p] = b[f] + sum over taps t = (c, i, j) of w[f, t] * (input pixel that tap t of output
    pixel p reads)``, a matrix product whose second operand is never built. Two ways, chosen by the
    number of taps ``Cg*KH*KW`` (``DIRECT_MAX_TAPS``):

    * few taps, stride 1: **row tiles**. The input is padded (NCHW); 4 output channels x 4 vectors
      of 16 pixels along the output rows (AVX-512, float32) are summed in registers over every tap,
      ``acc[f, v] += w[f, t] * xp[x_at[v] + offset_t : +16]``, and stored straight into ``out``
      (a row's last vector masked).
    * otherwise: **outer-product tiles**. With the input padded, tap t = (c, i, j) of output pixel
      p is the element ``base(p) + offset(t)`` of it, flattened. A tile keeps 14 pixels x 16 output channels
      (or 7 x 32; AVX-512, float32) of sums in registers while it runs over every tap:
      ``acc[p, f:f+16] += xp[base(p) + offset(t)] * w[t, f:f+16]``, a broadcast times a vector.
    """
    geo = checked_geometry("conv2d_forward", x, w, b, stride, padding, dilation, groups)
    N = x.shape[0]
    F = w.shape[0]
    out = np.empty((N, F, geo.out_h, geo.out_w), dtype=x.dtype)
    if out.size:
        _convolve(x, w, groups, _bias(b, F, x.dtype), (geo.stride_h, geo.stride_w), (geo.pad_top, geo.pad_left),
                  (geo.dil_h, geo.dil_w), (geo.out_h, geo.out_w), out)
    return out, ConvCache(x, w, b is not None, geo, groups)


def conv2d_backward(dout, cache, input_grad=True):
    """Backward of ``conv2d_forward``. Returns ``(dx, dw, db)``; ``db`` is None without bias, ``dx`` None
    when ``input_grad`` is False (the input needs no gradient: torch's ``requires_grad=False``).

    Notes
    -----
    ``dx[n, c, ih, iw] = sum over f, i, j of dout[n, f, oh, ow] * w[f, c, i, j]`` where
    ``oh*stride_h = ih + pad_top - i*dil_h`` (and likewise for columns). Spread dout onto a grid with
    ``stride - 1`` zeros between its pixels, pad it by ``dil*(K-1) - pad`` before each axis, and this
    is a stride-1 convolution with the flipped kernel, channels swapped: the forward kernel computes it.
    ``dw[f, c, i, j] = sum over n, oh, ow of dout[n, f, oh, ow] * x[n, c, oh*stride_h - pad_top + i*dil_h, ...]``:
    the forward's tiles with the roles of pixels and taps swapped (``conv2d_tiles_weight_grad``): a tile
    of taps x output channels summed over the pixels of a few images (only the output rows at which
    its taps read data: ``_tile_row_ranges``), one partial sum per thread, added at the end. ``db``
    sums dout over (N, OH, OW).
    """
    x, w, geo, groups = cache.x, cache.w, cache.geometry, cache.groups
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    checks.gradient("conv2d_backward", dout, (N, F, geo.out_h, geo.out_w))
    dout = np.ascontiguousarray(dout, dtype=w.dtype)
    dx = np.zeros((N, C, H, W), dtype=w.dtype) if input_grad else None
    if N and geo.out_h * geo.out_w and input_grad:
        _convolve(dout, w, groups, np.zeros(C, w.dtype), (1, 1),
                  (geo.dil_h * (KH - 1) - geo.pad_top, geo.dil_w * (KW - 1) - geo.pad_left), (geo.dil_h, geo.dil_w),
                  (H, W), dx, upsample=(geo.stride_h, geo.stride_w), transposed=True)
    if (geo.stride_h, geo.stride_w) == (1, 1) and Cg * KH * KW < WEIGHT_ROWS_MAX_TAPS:
        dw, db = _weight_grad_rows(x, dout, geo, w.shape, groups)
    else:
        dw, db = _weight_grad_tiles(x, dout, geo, w.shape, groups)
    return dx, dw, (db if cache.has_bias else None)


def _weight_grad_geometry(x, dout, geo, w_shape):
    """(work, workers, Hp, Wp): the weight gradient's multiply-adds / 32, its workers, the padded input's size."""
    KH, KW = w_shape[2:]
    work = _multiply_adds(dout.shape, math.prod(w_shape[1:])) // 32
    Hp, Wp = _input_extent(geo.out_h, geo.stride_h, geo.dil_h, KH), _input_extent(geo.out_w, geo.stride_w, geo.dil_w, KW)
    return work, max(1, min(x.shape[0], runtime.threads_for(work))), Hp, Wp


def _weight_grad_tiles(x, dout, geo, w_shape, groups):
    """(dw, db) by outer-product tiles of taps x output channels (``conv2d_tiles_weight_grad``)."""
    N, C = x.shape[:2]
    F, Cg, KH, KW = w_shape
    work, workers, Hp, Wp = _weight_grad_geometry(x, dout, geo, w_shape)
    wide, rows, block = tile_shape(F // groups, x.dtype)
    dw_partial = np.zeros((workers, groups, Cg * KH * KW, round_up(F // groups, block)), dtype=x.dtype)
    db_partial = np.zeros((workers, F), dtype=x.dtype)
    if dout.size:
        xp = np.empty((N, C, Hp, Wp), dtype=x.dtype)
        offsets = _tap_offsets(C, Cg, KH, KW, geo.dil_h, geo.dil_w, Hp, Wp, rows, rows_first=True)
        tile_rows = _tile_row_ranges(Cg * KW, KH, rows, geo.out_h, geo.stride_h, geo.dil_h, geo.pad_top, x.shape[2])
        P = geo.out_h * geo.out_w
        chunk = max(1, WEIGHT_GRAD_CHUNK_BYTES // (groups * P * dw_partial.shape[3] * x.itemsize))
        conv2d_tiles_weight_grad.for_work(work)(x, geo.pad_top, geo.pad_left, dout.reshape(N, F, -1), offsets, tile_rows,
                                                geo.out_h, geo.out_w, geo.stride_h, geo.stride_w, wide, chunk, xp,
                                                dw_partial, db_partial)
    # (groups, taps (i, c, j), Fg) -> (groups, Fg, c, i, j) -> (F, Cg, KH, KW)
    dw = dw_partial.sum(axis=0)[:, :Cg * KH * KW, :F // groups].reshape(groups, KH, Cg, KW, F // groups)
    return dw.transpose(0, 4, 2, 1, 3).reshape(w_shape), db_partial.sum(axis=0)


@functools.lru_cache(maxsize=64)
def _tile_row_ranges(per_kernel_row, KH, R, OH, stride_h, dil_h, pad_top, H):
    """(tiles, 2): for each tile of R taps ordered (i, c, j) (``per_kernel_row`` taps per kernel row
    i, KH rows, the last tile's extra taps repeating the last), the output rows [begin, end) at which
    one of its taps reads an input row: oh*stride_h + i*dil_h - pad_top in [0, H). At the other rows
    every tap of the tile reads padding, whose products are zero, so the weight gradient's tiles
    leave them out, as the forward leaves out kernel rows (``_row_tap_ranges``). Article's 16->32
    (5x5, padding 2, 14 rows): 12, 13, 14, 13 and 12 rows for kernel rows 0 to 4."""
    i = np.arange(KH)
    begin = np.clip(-((i * dil_h - pad_top) // stride_h), 0, OH)            # ceil((pad_top - i*dil_h) / stride_h)
    end = np.clip((H - 1 + pad_top - i * dil_h) // stride_h + 1, 0, OH)
    taps = per_kernel_row * KH
    ranges = np.zeros((-(-taps // R), 2), np.int64)
    for k in range(ranges.shape[0]):
        rows = np.arange(k * R // per_kernel_row, (min(taps, k * R + R) - 1) // per_kernel_row + 1)
        rows = rows[end[rows] > begin[rows]]
        if rows.size:
            ranges[k] = begin[rows].min(), end[rows].max()
    ranges.setflags(write=False)
    return ranges


def _weight_grad_rows(x, dout, geo, w_shape, groups):
    """(dw, db) of a stride-1 convolution by row tiles of filters x taps (``conv2d_rows_weight_grad``)."""
    N, C = x.shape[:2]
    F, Cg, KH, KW = w_shape
    Fg, taps = F // groups, Cg * KH * KW
    work, workers, Hp, Wp = _weight_grad_geometry(x, dout, geo, w_shape)
    block = VECTOR_BYTES // x.itemsize
    filter_blocks, tap_blocks = -(-Fg // WEIGHT_FILTERS), -(-taps // WEIGHT_TAPS)
    dw_vectors = np.zeros((workers, groups, filter_blocks, tap_blocks, WEIGHT_FILTERS * WEIGHT_TAPS * block),
                          dtype=x.dtype)
    db_partial = np.zeros((workers, F), dtype=x.dtype)
    if dout.size:
        xp = np.empty((N, C, Hp, Wp), dtype=x.dtype)
        offsets = _tap_offsets(C, Cg, KH, KW, geo.dil_h, geo.dil_w, Hp, Wp, WEIGHT_TAPS)
        conv2d_rows_weight_grad.for_work(work)(x, geo.pad_top, geo.pad_left, dout.reshape(N, F, -1), offsets, geo.out_h,
                                               geo.out_w, xp, dw_vectors, db_partial)
    # (workers, groups, filter blocks, tap blocks, filters, taps, lanes) -> (groups, Fg, taps) -> (F, Cg, KH, KW)
    dw = dw_vectors.reshape(workers, groups, filter_blocks, tap_blocks, WEIGHT_FILTERS, WEIGHT_TAPS, block).sum(axis=(0, 6))
    dw = dw.transpose(0, 1, 3, 2, 4).reshape(groups, filter_blocks * WEIGHT_FILTERS, tap_blocks * WEIGHT_TAPS)
    return dw[:, :Fg, :taps].reshape(w_shape), db_partial.sum(axis=0)


# ---------------------------------------------------------------------------
# Padding modes other than zeros: pad explicitly, then convolve without padding
# ---------------------------------------------------------------------------
PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


class Pad2dCache(NamedTuple):
    """Which input row and column each padded row and column copies."""
    x_shape: tuple          # (N, C, H, W)
    rows: np.ndarray        # (H + pad_top + pad_bottom,) int: source row of each padded row
    cols: np.ndarray        # (W + pad_left + pad_right,) int: source column of each padded column


def pad2d_forward(x, padding, mode):
    """Pad (N, C, H, W) by ``padding = (top, bottom, left, right)`` in torch's ``padding_mode``.

    'reflect' mirrors without repeating the edge (``[2 1 | 1 2 3 | 3 2]`` is 'replicate' repeating it:
    ``[1 1 | 1 2 3 | 3 3]``), 'circular' wraps around. Returns ``(padded, Pad2dCache)``.
    """
    top, bottom, left, right = padding
    np_mode = PADDING_MODES[mode]
    rows = np.pad(np.arange(x.shape[2]), (top, bottom), mode=np_mode)
    cols = np.pad(np.arange(x.shape[3]), (left, right), mode=np_mode)
    return np.ascontiguousarray(x[:, :, rows[:, None], cols[None, :]]), Pad2dCache(x.shape, rows, cols)


def pad2d_backward(dpadded, cache):
    """The adjoint of the padding: each padded pixel's gradient goes back to the pixel it copied.

    Notes
    -----
    ``padded[n, c, r, q] = x[n, c, rows[r], cols[q]]``, so
    ``dx[n, c, h, w] = sum over r, q with rows[r] = h and cols[q] = w of dpadded[n, c, r, q]``:
    with the one-hot matrices ``R[r, h] = [rows[r] = h]`` and ``Q[q, w] = [cols[q] = w]``,
    ``dx = R.T @ dpadded @ Q`` (a pixel copied into the border gets its copies' gradients too).
    """
    H, W = cache.x_shape[2], cache.x_shape[3]
    one_hot_rows = (cache.rows[:, None] == np.arange(H)[None, :]).astype(dpadded.dtype)
    one_hot_cols = (cache.cols[:, None] == np.arange(W)[None, :]).astype(dpadded.dtype)
    return np.ascontiguousarray(one_hot_rows.T @ dpadded @ one_hot_cols)
