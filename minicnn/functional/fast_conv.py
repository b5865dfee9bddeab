"""The convolution's fast kernels: direct convolutions whose sums stay in vector registers.

oneDNN's kind of convolution (``ONEDNN_VERBOSE=1`` shows torch running ``jit:avx512_core`` or
``jit:avx2``, ``alg:convolution_direct``), with no gathered copy of the input. The input is padded
once (NCHW), so that tap t = (c, i, j) of output pixel p is the element ``base(p) + offset(t)`` of
the flattened padded input:

    base(n, oh, ow) = ((n*C)*Hp + oh*stride_h)*Wp + ow*stride_w
    offset(c, i, j) = (c*Hp + i*dil_h)*Wp + j*dil_w

forward      out[n, f, p] = b[f] + sum_t w[f, t] * xp[base(n, p) + offset(t)]
backward dx  the forward on dout, zero-upsampled by the stride and padded by dil*(K-1) - pad, with
             the flipped, transposed weights
backward dw  dw[f, t]     = sum_n sum_p dout[n, f, p] * xp[base(n, p) + offset(t)]

* ``conv2d_tiles_forward``: a tile of R output pixels x V vectors of output channels is summed in
  registers over all taps (``microkernels.outer_tile_*``), then stored. ``conv2d_image_tiles_forward``
  takes the tiles image by image and stores them pixel-major first, then copies them into the
  output planes a square of lanes x lanes at a time, transposed in registers (``planes_from_staged``);
  its tiles run across rows, along them, or along them with each row's leftover pixels as a strip
  of columns across rows, which leaves out the kernel columns that read only the right padding.
* ``conv2d_tiles_weight_grad``: the same tile with the roles swapped: R taps x V vectors of output
  channels summed over the pixels of a few images, their output gradient copied pixel-major first;
  each tile over only the output rows at which its taps read data.
* ``conv2d_rows_forward``, stride 1 with fewer taps (a first layer's 25, notebook's 10->20 90) or
  fewer output channels than a vector: row tiles, F output channels x V vectors of pixels along
  the output rows summed in registers over all taps (``microkernels.row_tile_*``), then stored
  straight into ``out`` (a row's last vector masked when the vector length does not divide the
  row); or, for short rows, vectors along the padded plane (``plane_vectors``), staged, then copied.
* ``conv2d_rows_weight_grad``, the first layers' weight gradient: row tiles of F output channels x
  T taps of vectors of pixels, summed over an image's rows (``microkernels.row_weight_tile_*``);
  the caller sums the lanes.

Each kernel is one parallel loop whose workers take a contiguous range of images, pad them
(``pad_image``) and convolve them: one parallel region per pass, since each costs a wake-up of the
threads (microseconds, tens of them after a pause; docs/threads.md). Every worker writes only its
own images' outputs (the weight gradient: its own partial sum), so no two iterations write to the
same place.
"""
import functools

import numpy as np
from numba import njit, prange

from ..runtime import parallel_kernel
from .microkernels import (
    outer_row_tile_6x2,
    outer_row_tile_6x2_k3_at,
    outer_row_tile_6x2_k5_at,
    outer_row_tile_7x2,
    outer_row_tile_7x2_k3_at,
    outer_row_tile_7x2_k5_at,
    outer_row_tile_8x1,
    outer_row_tile_8x1_k3_at,
    outer_row_tile_8x1_k5_at,
    outer_row_tile_14x1,
    outer_row_tile_14x1_k3_at,
    outer_row_tile_14x1_k5_at,
    outer_tile_6x2,
    outer_tile_7x2,
    outer_tile_8x1,
    outer_tile_14x1,
    row_tile_4x3,
    row_tile_4x4,
    row_weight_tile_4x5,
    row_weight_tile_4x2,
)
from .simd import VECTOR_BYTES, lanes, load, store, transpose_add, vector_registers

# Tiles by the CPU's vector registers: (function, pixels) for one vector of output channels
# ("narrow") and for two ("wide", used when a group has more output channels than a vector holds).
if vector_registers() >= 32:
    narrow_tile, narrow_row_tile, NARROW_ROWS = outer_tile_14x1, outer_row_tile_14x1, 14
    narrow_row_tile_k3, narrow_row_tile_k5 = outer_row_tile_14x1_k3_at, outer_row_tile_14x1_k5_at
    wide_tile, wide_row_tile, WIDE_ROWS = outer_tile_7x2, outer_row_tile_7x2, 7
    wide_row_tile_k3, wide_row_tile_k5 = outer_row_tile_7x2_k3_at, outer_row_tile_7x2_k5_at
    row_tile, ROW_FILTERS, ROW_VECTORS = row_tile_4x4, 4, 4
    row_weight_tile, WEIGHT_FILTERS, WEIGHT_TAPS = row_weight_tile_4x5, 4, 5
else:
    narrow_tile, narrow_row_tile, NARROW_ROWS = outer_tile_8x1, outer_row_tile_8x1, 8
    narrow_row_tile_k3, narrow_row_tile_k5 = outer_row_tile_8x1_k3_at, outer_row_tile_8x1_k5_at
    wide_tile, wide_row_tile, WIDE_ROWS = outer_tile_6x2, outer_row_tile_6x2, 6
    wide_row_tile_k3, wide_row_tile_k5 = outer_row_tile_6x2_k3_at, outer_row_tile_6x2_k5_at
    row_tile, ROW_FILTERS, ROW_VECTORS = row_tile_4x3, 4, 3
    row_weight_tile, WEIGHT_FILTERS, WEIGHT_TAPS = row_weight_tile_4x2, 4, 2
# The kernel widths whose tiles along rows know the kernel rows (``outer_row_tile_*_k*``): narrow
# ones take a kernel row at a time, and tiles at an output row's ends leave out the padding's columns.
KERNEL_ROW_WIDTHS = (3, 5)
# Where a tile lies along an output row, for the tiles over kernel rows: the first (last) KW // 2
# input values of each of its kernel rows are padding at the row's start (end).
EDGE_NONE, EDGE_START, EDGE_END = 0, 1, 2


def round_up(n, multiple):
    return -(-n // multiple) * multiple


def tile_shape(channels, dtype):
    """(wide, rows, block) for a tile over ``channels`` output channels per group of ``dtype``:
    two vectors of channels when one would not hold them, and the rows that fit the registers."""
    vector = VECTOR_BYTES // np.dtype(dtype).itemsize
    wide = channels > vector
    return wide, (WIDE_ROWS if wide else NARROW_ROWS), vector * (2 if wide else 1)


def _pad_image(x, n, pad_top, pad_left, up_h, up_w, xp):
    """xp[n, c, h*up_h + pad_top, w*up_w + pad_left] = x[n, c, h, w]; zeros elsewhere in xp[n].

    x : (N, C, H, W); xp : (N, C, Hp, Wp). ``up`` > 1 puts up - 1 zeros between pixels (the
    transposed convolution of a strided one); a negative pad crops.
    """
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    Hp, Wp = xp.shape[2], xp.shape[3]
    w_first = max(0, (up_w - 1 - pad_left) // up_w)          # the columns that land inside xp
    w_end = min(W, (Wp - 1 - pad_left) // up_w + 1)
    xp[n] = 0
    step, count = np.uint64(up_w), np.uint64(max(0, w_end - w_first))
    for c in range(C):
        src, dst = x[n, c].reshape(-1), xp[n, c].reshape(-1)
        for h in range(H):
            r = h * up_h + pad_top
            if 0 <= r < Hp:
                # unsigned indices: Numba then skips the negative-index wraparound, and the copy vectorizes
                to = np.uint64(r * Wp + w_first * up_w + pad_left)
                frm = np.uint64(h * W + w_first)
                if up_w == 1:  # a contiguous row: its own loop, which LLVM vectorizes (article 16->32: 2.85 -> 1.67 us an image)
                    for k in range(count):
                        dst[to + k] = src[frm + k]
                else:
                    for k in range(count):
                        dst[to + k * step] = src[frm + k]


def _planes_from_staged(staged, block, bias, first, channels, o, o0, P):
    """o[o0 + c*P + p] = staged[p*block + c] + bias[first + c] for c < channels, p < P: a block of
    tiles stored pixel-major, copied into ``channels`` planes of P pixels. Squares of lanes x lanes
    are transposed in registers (``simd.transpose_add``; float32 with AVX-512: 16 vector loads and
    stores and 64 shuffles for 256 values, where an element-by-element copy loads, adds and stores
    each); the pixels and channels left over are copied one by one."""
    L = lanes(staged)
    whole_channels, whole_pixels = channels - channels % L, P - P % L
    for c0 in range(0, whole_channels, L):
        for p0 in range(0, whole_pixels, L):
            transpose_add(staged, p0 * block + c0, block, bias, first + c0, o, o0 + c0 * P + p0, P)
    for c in range(channels):
        # unsigned: Numba then skips the negative-index wraparound
        b_c, to, p_begin = bias[first + c], np.uint64(o0 + c * P), np.uint64(whole_pixels if c < whole_channels else 0)
        for p in range(p_begin, np.uint64(P)):
            o[to + p] = staged[p * np.uint64(block) + np.uint64(c)] + b_c


def _plane_sum(a):
    """sum(a) for a 1-D array, in any order: the adds then vectorize, instead of each waiting on the last."""
    total = a.dtype.type(0)
    for i in range(a.size):
        total += a[i]
    return total


def _tile_size(xp, wide):
    """(R, block): the pixels (or taps) and the output channels of an outer-product tile, wide or narrow."""
    return (WIDE_ROWS, 2 * lanes(xp)) if wide else (NARROW_ROWS, lanes(xp))


def _outer_tile(wide, x, fixed, varying, length, w, w_stride, w_col, tile):
    """One outer-product tile, wide (two vectors of columns) or narrow (one)."""
    if wide:
        wide_tile(x, fixed, varying, length, w, w_stride, w_col, tile)
    else:
        narrow_tile(x, fixed, varying, length, w, w_stride, w_col, tile)


def _row_tile_edge(ow0, R, K, pad_left, W, up_w):
    """Where a tile of R pixels along an output row, from output column ``ow0`` (stride 1, dilation
    1), lies for kernel rows of K taps: EDGE_START if the first K // 2 of the R + K - 1 padded
    columns its kernel rows read, ow0 .. ow0 + K // 2 - 1, are all left padding; EDGE_END if the
    last K // 2 are all right padding, past the input's last column ``pad_left + (W - 1) * up_w``
    (``up_w`` columns apart in an input gradient's upsampled plane); their sum if both, else EDGE_NONE."""
    edge = EDGE_NONE
    if ow0 + K // 2 <= pad_left:
        edge += EDGE_START
    if ow0 + R + K - 1 - K // 2 > pad_left + (W - 1) * up_w:
        edge += EDGE_END
    return edge


def _outer_row_tile(wide, kernel_row, edge, x, base, varying, length, w, w_stride, w_col, tile):
    """One outer-product tile of consecutive pixels from one base address over ``length`` taps, wide
    or narrow. With ``kernel_row`` in KERNEL_ROW_WIDTHS (taps in kernel rows of that many, at
    consecutive columns) narrow tiles take a kernel row at a time, and tiles at an ``edge`` of an
    output row (EDGE_START + EDGE_END for both) leave out the taps that read the padding there.

    Called, not inlined, once a tile: its 22 tiles, inlined into it, would then be inlined again
    into every kernel that calls it; with Numba's own inlining that made the cold compile take about
    49 s instead of 15 (session 15, docs/benchmark-history.md).
    """
    if wide:
        if kernel_row == 5:
            wide_row_tile_k5(edge, x, base, varying, length, w, w_stride, w_col, tile)
        elif kernel_row == 3:
            wide_row_tile_k3(edge, x, base, varying, length, w, w_stride, w_col, tile)
        else:
            wide_row_tile(x, base, varying, length, w, w_stride, w_col, tile)
    elif kernel_row == 5:
        narrow_row_tile_k5(edge, x, base, varying, length, w, w_stride, w_col, tile)
    elif kernel_row == 3:
        narrow_row_tile_k3(edge, x, base, varying, length, w, w_stride, w_col, tile)
    else:
        narrow_row_tile(x, base, varying, length, w, w_stride, w_col, tile)


def _conv2d_tiles_forward(x, pad_top, pad_left, up_h, up_w, offsets, w_taps, bias, stride_h, stride_w, wide,
                          workers, xp, out):
    """out[n, g*Fg + f, oh, ow] = bias[g*Fg + f] + sum_t w_taps[g, t, f] * xp[base(n, oh, ow) + g*Cg*Hp*Wp + offsets[t]].

    x : (N, C, H, W), padded into xp : (N, C, Hp, Wp) by ``pad_image``; offsets : (T,) (module
    docstring); w_taps : (groups, T, Fb), Fg rounded up to the tile's block of columns with zeros;
    out : (N, F, OH, OW). A worker's output pixels are taken R at a time, across rows and images;
    its last tile repeats its last pixel and stores only its own.
    """
    N, C, Hp, Wp = xp.shape
    groups, T, Fb = w_taps.shape
    F, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    Fg, Cg = F // groups, C // groups
    P = OH * OW
    R, block = tile_size(xp, wide)
    workers = min(workers, N)
    flat, o = xp.reshape(-1), out.reshape(-1)
    for t in prange(workers):
        n_begin, n_end = t * N // workers, (t + 1) * N // workers
        padded = n_begin  # images are padded just before their first tile, while they stay in cache
        bases = np.empty(R, np.int64)
        targets = np.empty(R, np.int64)
        tile = np.empty(R * block, xp.dtype)
        n, oh, ow = n_begin, 0, 0  # the next pixel, counted forward (divisions cost more than the tile's stores)
        for q0 in range(n_begin * P, n_end * P, R):
            valid = min(R, n_end * P - q0)
            while padded <= (q0 + valid - 1) // P:
                pad_image(x, padded, pad_top, pad_left, up_h, up_w, xp)
                padded += 1
            for r in range(R):
                if r < valid:
                    bases[r] = (n * C * Hp + oh * stride_h) * Wp + ow * stride_w
                    targets[r] = n * F * P + oh * OW + ow
                    ow += 1
                    if ow == OW:
                        ow, oh = 0, oh + 1
                        if oh == OH:
                            oh, n = 0, n + 1
                else:  # past the worker's last pixel: repeat it
                    bases[r], targets[r] = bases[valid - 1], targets[valid - 1]
            for g in range(groups):
                w_g = w_taps[g].reshape(-1)
                for f0 in range(0, Fg, block):
                    outer_tile(wide, flat[g * Cg * Hp * Wp:], bases, offsets, T, w_g, Fb, f0, tile)
                    first = g * Fg + f0
                    for r in range(valid):
                        # unsigned: Numba then skips the negative-index wraparound on every store
                        dst, src = np.uint64(targets[r] + first * P), np.uint64(r * block)
                        for f in range(np.uint64(min(block, Fg - f0))):
                            o[dst + f * np.uint64(P)] = bias[first + f] + tile[src + f]


def _conv2d_image_tiles_forward(x, pad_top, pad_left, up_h, up_w, offsets, w_taps, bias, stride_h, stride_w, wide,
                                along_rows, kernel_row, row_taps, strip, strip_offsets, strip_w_taps, strip_row_taps,
                                workers, xp, out):
    """The same result as ``_conv2d_tiles_forward``, the tiles taken image by image and stored
    pixel-major into a buffer (P + R pixels x one block of channels), which is then copied into out's
    planes, bias added, a transposed square of lanes x lanes at a time (``planes_from_staged``). The
    copy writes whole vectors along each plane where ``_conv2d_tiles_forward`` scatters each tile's R
    pixels x block channels across as many planes.

    Tiles of R pixels run on across rows, each pixel from its own address (``outer_tile_*``; an
    image's last tile repeats its last pixel); or, with ``along_rows`` (stride_w 1, OW >= R), along
    each output row: R consecutive pixels from one address (``outer_row_tile_*``), a row's last tile
    moved back to end at the row's end, recomputing pixels of the one before. The caller chooses by
    the pixels repeated (``conv.IMAGE_TILES_MAX_REPEATED``, ``conv.ROW_ALIGNED_MAX_REPEATED``).
    The taps (w_taps' rows and ``offsets``) are ordered (i, c, j), and output row oh needs only the
    entries [row_taps[oh, 0], row_taps[oh, 1]) of ``offsets``: the kernel rows that read only padding
    are left out (``conv._row_tap_ranges``); a tile takes those of every row it touches. With
    ``kernel_row`` > 1 (along rows, dilation 1: a kernel row's taps at consecutive columns of xp),
    narrow tiles take a kernel row at a time, and a tile at an output row's start or end, whose
    kernel rows' first or last kernel_row // 2 columns are all padding, leaves those taps out (the
    tile's ``edges`` entry, EDGE_START + EDGE_END when both).

    With ``strip`` > 0 (along rows), each row takes OW // R tiles from its start instead, and its last
    ``strip`` pixels, a strip of columns down the image, are taken R at a time across rows (``outer_tile_*``,
    each pixel from its own address), stored into their places in the staging buffer. The strip's taps
    (``strip_offsets``, ``strip_w_taps``, ``strip_row_taps``, ordered (i, c, j) like the others) are
    the kernel columns j that read data for some pixel of the strip: those that read only the right
    padding are left out.
    """
    N, C, Hp, Wp = xp.shape
    groups, T, Fb = w_taps.shape
    F, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    Fg, Cg = F // groups, C // groups
    P = OH * OW
    R, block = tile_size(xp, wide)
    L = lanes(xp)
    per_row = OW // R if strip > 0 else -(-OW // R)  # with a strip, the tiles that fit from a row's start
    row_tiles = OH * per_row if along_rows else -(-P // R)
    tiles = row_tiles + -(-OH * strip // R)
    Ts = strip_w_taps.shape[1]
    workers = min(workers, N)
    flat, o = xp.reshape(-1), out.reshape(-1)
    for t in prange(workers):
        # tile k: its first output pixel starts[k]; where its pixels' taps start in the padded image,
        # bases[k*R + r] (along rows: bases[k*R], the others following it)
        # and the entries [taps[k, 0], taps[k, 1]) of offsets it takes: those of every output row it touches;
        # a tile of the strip (k >= row_tiles): targets[k*R + r], the pixel its r-th sums are stored as
        starts = np.empty(tiles, np.int64)
        bases = np.empty(tiles * R, np.int64)
        targets = np.empty(tiles * R, np.int64)
        taps = np.empty((tiles, 2), np.int64)
        edges = np.zeros(tiles, np.int64)
        for k in range(tiles):
            if k >= row_tiles:  # the strip, R of its OH x strip pixels at a time: each pixel's address and place in staged
                taps[k, 0], taps[k, 1] = Ts, 0
                for r in range(R):
                    q = min((k - row_tiles) * R + r, OH * strip - 1)
                    oh = q // strip
                    ow = OW - strip + q - oh * strip
                    bases[k * R + r], targets[k * R + r] = oh * stride_h * Wp + ow, oh * OW + ow
                    taps[k, 0], taps[k, 1] = min(taps[k, 0], strip_row_taps[oh, 0]), max(taps[k, 1], strip_row_taps[oh, 1])
                taps[k, 1] = max(taps[k, 0], taps[k, 1])
            elif along_rows:
                oh = k // per_row
                ow0 = min((k - oh * per_row) * R, OW - R)
                starts[k], bases[k * R] = oh * OW + ow0, oh * stride_h * Wp + ow0
                taps[k, 0], taps[k, 1] = row_taps[oh, 0], row_taps[oh, 1]
                if kernel_row > 1:
                    edges[k] = row_tile_edge(ow0, R, kernel_row, pad_left, x.shape[3], up_w)
            else:
                starts[k] = k * R
                taps[k, 0], taps[k, 1] = T, 0
                for r in range(R):
                    q = min(k * R + r, P - 1)
                    oh = q // OW
                    bases[k * R + r] = oh * stride_h * Wp + (q - oh * OW) * stride_w
                    taps[k, 0], taps[k, 1] = min(taps[k, 0], row_taps[oh, 0]), max(taps[k, 1], row_taps[oh, 1])
                taps[k, 1] = max(taps[k, 0], taps[k, 1])
        staged = np.empty((P + R) * block, xp.dtype)
        strip_tile = np.empty(R * block, xp.dtype)
        for n in range(t * N // workers, (t + 1) * N // workers):
            pad_image(x, n, pad_top, pad_left, up_h, up_w, xp)
            for g in range(groups):
                w_g, x_g = w_taps[g].reshape(-1), flat[(n * C + g * Cg) * Hp * Wp:]
                strip_w_g = strip_w_taps[g].reshape(-1)
                for f0 in range(0, Fg, block):
                    for k in range(tiles):
                        begin, end = taps[k, 0], taps[k, 1]
                        if k >= row_tiles:
                            outer_tile(wide, x_g, bases[k * R:], strip_offsets[begin:], end - begin,
                                       strip_w_g[begin * Fb:], Fb, f0, strip_tile)
                            for r in range(R):  # (a repeated last pixel is stored twice, the same values)
                                dst = targets[k * R + r] * block
                                for f in range(0, block, L):
                                    store(staged, dst + f, load(strip_tile, r * block + f))
                        elif along_rows:
                            outer_row_tile(wide, kernel_row, edges[k], x_g, bases[k * R], offsets[begin:], end - begin,
                                           w_g[begin * Fb:], Fb, f0, staged[starts[k] * block:])
                        else:
                            outer_tile(wide, x_g, bases[k * R:], offsets[begin:], end - begin, w_g[begin * Fb:], Fb, f0,
                                       staged[starts[k] * block:])
                    first = g * Fg + f0
                    planes_from_staged(staged, block, bias, first, min(block, Fg - f0), o, (n * F + first) * P, P)


def _conv2d_tiles_weight_grad(x, pad_top, pad_left, dout, offsets, tile_rows, OH, OW, stride_h, stride_w, wide, chunk,
                              xp, dw_partial, db_partial):
    """dw_partial[t, g, k, f] = sum over worker t's images n and pixels p of
    xp[base(n, p) + g*Cg*Hp*Wp + offsets[k]] * dout[n, g*Fg + f, p]; db_partial[t, g*Fg + f] = the
    sum of dout[n, g*Fg + f, :] over the same images.

    x : (N, C, H, W), padded into xp : (N, C, Hp, Wp); dout : (N, F, OH*OW); offsets : (T rounded
    up to R,) as in the forward, ordered (i, c, j), the extra taps repeating the last; tile_rows :
    (T / R, 2), the output rows [begin, end) whose pixels tile k's taps can read data at (the others
    read only padding, ``conv._tile_row_ranges``); dw_partial : (workers, groups, T, Fb), summed
    over workers by the caller. A worker takes its images ``chunk`` at a time: it pads them, copies
    their dout pixel-major and row by row, dout_t[(oh*images + i)*OW + ow, f] (so that a tile's
    step reads one vector of channels per pixel, and the pixels of output rows [begin, end) of
    every image of the chunk follow each other), and runs each tile over those pixels at once, so
    that a tile's set-up and the adding of its sums into dw_partial come once per chunk.
    """
    N, C, Hp, Wp = xp.shape
    F, P = dout.shape[1], dout.shape[2]
    workers, groups, T, Fb = dw_partial.shape
    Fg, Cg = F // groups, C // groups
    R, block = tile_size(xp, wide)
    flat = xp.reshape(-1)
    for t in prange(workers):
        bases = np.empty(chunk * P, np.int64)
        dout_t = np.zeros((groups, chunk * P, Fb), dtype=xp.dtype)
        tile = np.empty(R * block, xp.dtype)
        dw_partial[t] = 0
        db_partial[t] = 0
        n_end = (t + 1) * N // workers
        for n0 in range(t * N // workers, n_end, chunk):
            images = min(chunk, n_end - n0)
            for i in range(images):
                n = n0 + i
                pad_image(x, n, pad_top, pad_left, 1, 1, xp)
                for oh in range(OH):
                    q = (oh * images + i) * OW
                    for ow in range(OW):
                        bases[q + ow] = (n * C * Hp + oh * stride_h) * Wp + ow * stride_w
                for g in range(groups):
                    d_g = dout_t[g].reshape(-1)
                    for f in range(Fg):
                        src = dout[n, g * Fg + f]
                        for oh in range(OH):
                            # unsigned indices: Numba then skips the negative-index wraparound
                            q, frm = np.uint64((oh * images + i) * OW), np.uint64(oh * OW)
                            for ow in range(np.uint64(OW)):
                                d_g[(q + ow) * np.uint64(Fb) + np.uint64(f)] = src[frm + ow]
                        db_partial[t, g * Fg + f] += plane_sum(src)
            for g in range(groups):
                d_g, dw_g = dout_t[g].reshape(-1), dw_partial[t, g].reshape(-1)
                for k0 in range(0, T, R):
                    first, last = tile_rows[k0 // R, 0] * images * OW, tile_rows[k0 // R, 1] * images * OW
                    for f0 in range(0, Fg, block):
                        outer_tile(wide, flat[g * Cg * Hp * Wp:], offsets[k0:], bases[first:], last - first,
                                   d_g[first * Fb:], Fb, f0, tile)
                        for r in range(min(R, T - k0)):
                            dst, frm = np.uint64((k0 + r) * Fb + f0), np.uint64(r * block)
                            for f in range(np.uint64(min(block, Fg - f0))):
                                dw_g[dst + f] += tile[frm + f]


@functools.lru_cache(maxsize=64)
def row_vectors(OH, OW, Wp, block, vectors):
    """The vectors of output pixels a row tile takes, row by row: (x_at, o_at, count), each (K,).

    Vector k covers ``count[k]`` <= ``block`` pixels of one output row, from column c0: it reads the
    padded input from ``x_at[k] = oh*Wp + c0`` (plus a tap's offset) and is stored at ``o_at[k] = oh*OW
    + c0``. A row of OW pixels takes ceil(OW / block) vectors, its last one partial when ``block`` does not
    divide OW. K is rounded up to a multiple of ``vectors`` by repeating the last vector (computed twice,
    stored twice, the same values).
    """
    per_row = -(-OW // block)
    k = np.arange(round_up(OH * per_row, vectors))
    k = np.minimum(k, OH * per_row - 1)
    oh, c0 = k // per_row, (k % per_row) * block
    arrays = oh * Wp + c0, oh * OW + c0, np.minimum(block, OW - c0)
    for a in arrays:  # cached: the same three for every call of a layer
        a.setflags(write=False)
    return arrays


@functools.lru_cache(maxsize=64)
def plane_vectors(OH, OW, Wp, block, vectors):
    """The vectors of a row tile that runs along the padded plane instead, rows and their padding
    columns alike: (x_at, o_at, count) as in ``row_vectors``, vector k at ``k*block`` of both the
    padded input and a staging plane of rows Wp long, full (``count`` = block). They cover
    (OH - 1)*Wp + OW pixels, the first OW of each Wp being output pixels: fewer vectors than
    ``row_vectors`` when rows are short (notebook's 10->20 with AVX-512: 8 against 12).
    """
    count = -(-((OH - 1) * Wp + OW) // block)
    k = np.minimum(np.arange(round_up(count, vectors)), count - 1)
    arrays = k * block, k * block, np.full(k.size, block)
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _conv2d_rows_forward(x, pad_top, pad_left, up_h, up_w, offsets, w_taps, bias_rows, x_at, o_at, o_count, workers,
                         xp, flat, out, staged_plane):
    """out[n, g*Fg + f, oh, ow] = bias[g*Fg + f] + sum_t w_taps[g, f, t] * xp[n, g*Cg + c_t, oh + i_t*dil_h, ow + j_t*dil_w].

    A stride-1 convolution by row tiles (``microkernels.row_tile_*``): ROW_FILTERS output channels x
    ROW_VECTORS vectors of pixels of the output rows, summed in registers over all T taps, then
    stored. x : (N, C, H, W), padded into xp : (N, C, Hp, Wp), the start of flat (which has a vector
    more at its end: the last partial vector of a row reads past the row); offsets : (T,) the taps'
    offsets (module docstring); w_taps : (groups, Fg rounded up to ROW_FILTERS, T), the extra rows
    zero; bias_rows : (groups, the same); x_at, o_at, o_count : (K,) the vectors of one image's
    output (``row_vectors``); out : (N, F, OH, OW). With ``staged_plane`` > 0 the vectors are
    ``plane_vectors``: a tile of ROW_FILTERS channels is stored into a staging buffer of planes
    ``staged_plane`` long with rows Wp long, whose first OW columns are then copied into out.
    """
    N, C, Hp, Wp = xp.shape
    groups, Fg_rows, T = w_taps.shape
    F, P = out.shape[1], out.shape[2] * out.shape[3]
    Fg, Cg = F // groups, C // groups
    K = x_at.size
    o, b = out.reshape(-1), bias_rows.reshape(-1)
    workers = min(workers, N)
    OH, OW = out.shape[2], out.shape[3]
    for t in prange(workers):
        staged = np.empty(ROW_FILTERS * staged_plane, xp.dtype)
        for n in range(t * N // workers, (t + 1) * N // workers):
            pad_image(x, n, pad_top, pad_left, up_h, up_w, xp)
            for g in range(groups):
                w_g = w_taps[g].reshape(-1)
                x0 = (n * C + g * Cg) * Hp * Wp
                for f0 in range(0, Fg, ROW_FILTERS):
                    o0, filters = (n * F + g * Fg + f0) * P, min(ROW_FILTERS, Fg - f0)
                    # the tile's stores: straight into out's planes, or into the staging planes
                    dst, d0, plane = (staged, 0, staged_plane) if staged_plane else (o, o0, P)
                    for k0 in range(0, K, ROW_VECTORS):
                        row_tile(flat, x0, x_at[k0:], offsets, T, w_g, f0 * T, b, g * Fg_rows + f0, dst, d0,
                                 o_at[k0:], o_count[k0:], plane, filters)
                    if staged_plane:
                        for f in range(filters):
                            for oh in range(OH):
                                frm, to = np.uint64(f * staged_plane + oh * Wp), np.uint64(o0 + f * P + oh * OW)
                                for ow in range(np.uint64(OW)):
                                    o[to + ow] = staged[frm + ow]


def _conv2d_rows_weight_grad(x, pad_top, pad_left, dout, offsets, OH, OW, xp, dw_vectors, db_partial):
    """dw_vectors[t, g, fb, tb, (f*WEIGHT_TAPS + k)*L + l] = sum over worker t's images n, the output
    rows oh < OH and the columns ow = v*L + l < OW of dout[n, g*Fg + fb*WEIGHT_FILTERS + f, oh*OW + ow]
    * xp[n, g*Cg ..., oh*Wp + ow + offsets[tb*WEIGHT_TAPS + k]]: the weight gradient of a stride-1
    convolution by row tiles (``microkernels.row_weight_tile_*``: each row's vectors, its last one
    partial when L does not divide OW), summed over the workers and the L lanes by the caller.
    db_partial[t, f] = the sum of dout[n, f, :] over the same images.

    x : (N, C, H, W), padded into xp : (N, C, Hp, Wp); dout : (N, F, OH*OW);
    offsets : (taps rounded up to WEIGHT_TAPS,), the extra taps repeating the last;
    dw_vectors : (workers, groups, Fg / WEIGHT_FILTERS rounded up, taps / WEIGHT_TAPS rounded up,
    WEIGHT_FILTERS * WEIGHT_TAPS * L). A last block of filters past Fg repeats filter Fg - 1.
    """
    N, C, Hp, Wp = xp.shape
    workers, groups, filter_blocks, tap_blocks = dw_vectors.shape[:4]
    F, P = dout.shape[1], dout.shape[2]
    Fg, Cg = F // groups, C // groups
    flat, d = xp.reshape(-1), dout.reshape(-1)
    for t in prange(workers):
        planes = np.empty(WEIGHT_FILTERS, np.int64)
        dw_vectors[t] = 0
        db_partial[t] = 0
        for n in range(t * N // workers, (t + 1) * N // workers):
            pad_image(x, n, pad_top, pad_left, 1, 1, xp)
            for f in range(F):
                db_partial[t, f] += plane_sum(dout[n, f])
            for g in range(groups):
                x0 = (n * C + g * Cg) * Hp * Wp
                for fb in range(filter_blocks):
                    for f in range(WEIGHT_FILTERS):
                        planes[f] = (n * F + g * Fg + min(fb * WEIGHT_FILTERS + f, Fg - 1)) * P
                    for tb in range(tap_blocks):
                        row_weight_tile(flat, x0, Wp, offsets[tb * WEIGHT_TAPS:], d, planes, OW, OH,
                                        dw_vectors[t, g, fb, tb])


pad_image = njit(cache=True)(_pad_image)
plane_sum = njit(fastmath={"reassoc"}, cache=True)(_plane_sum)
planes_from_staged = njit(cache=True)(_planes_from_staged)
# LLVM inlines the tiles (make_microkernels._kernel says why) and outer_tile; outer_row_tile stays a call.
outer_tile = njit(cache=True, forceinline=True)(_outer_tile)
outer_row_tile = njit(cache=True)(_outer_row_tile)
row_tile_edge = njit(cache=True)(_row_tile_edge)
tile_size = njit(cache=True)(_tile_size)
conv2d_tiles_forward = parallel_kernel(_conv2d_tiles_forward)
conv2d_image_tiles_forward = parallel_kernel(_conv2d_image_tiles_forward)
conv2d_tiles_weight_grad = parallel_kernel(_conv2d_tiles_weight_grad)
conv2d_rows_forward = parallel_kernel(_conv2d_rows_forward)
conv2d_rows_weight_grad = parallel_kernel(_conv2d_rows_weight_grad)
