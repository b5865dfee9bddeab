"""The convolution's fast kernels: gather a block of rows into a small buffer, multiply by register tiles.

Every pass of the convolution is a matrix product whose operands are gathered from the input a
block at a time, into a buffer private to one thread and small enough to stay in its L2 cache; the
product itself is ``microkernels.tile_products_*``, which keeps a tile of sums in vector registers
along a contiguous reduction axis. One parallel loop per pass: the workers split the (image, group,
pixel block) tasks evenly, each with its own buffer and its own output elements, so no two
iterations write to the same place.

forward      out[n, f, p]      = b[f] + sum_k  w_rows[f, k] * rows[p, k]
                                 rows[p, (i, j, c)] = xp[n, oh*sh + i*dh, ow*sw + j*dw, c]
backward dx  dx[n, c, q]       = the forward on dout, zero-upsampled by the stride and padded by
                                 dil*(K-1) - pad, with the flipped, transposed weights
backward dw  dw[f, (c, i, j)]  = sum_n sum_p dout[n, f, p] * cols[(c, i, j), p]
                                 cols[(c, i, j), p] = x[n, c, oh*sh - pt + i*dh, ow*sw - pl + j*dw]

``xp`` is the input in NHWC order with its padding written out (``pad_nhwc``), so that the
reduction index ``(i, j, c)`` of one pixel's row reads runs of contiguous channels.
"""
import numpy as np
from llvmlite import binding
from numba import config, njit, prange

from ..runtime import parallel_kernel
from .microkernels import (
    pixel_pass_2x4,
    pixel_pass_4x8,
    tile_products_4x4,
    tile_products_6x2,
)


def _vector_registers():
    """32 with AVX-512 (the CPU Numba compiles for), else 16."""
    features = config.CPU_FEATURES or binding.get_host_cpu_features().flatten()
    return 32 if "+avx512f" in features.split(",") else 16


if _vector_registers() >= 32:
    tile_products, TILE_A, TILE_B = tile_products_4x4, 4, 4
    pixel_pass, PASS_ROWS, PASS_TAPS = pixel_pass_4x8, 4, 8
else:
    tile_products, TILE_A, TILE_B = tile_products_6x2, 6, 2
    pixel_pass, PASS_ROWS, PASS_TAPS = pixel_pass_2x4, 2, 4

# The reduction axis of every buffer is padded with zeros to a multiple of this (16 float32 lanes
# of AVX-512), so that the vectorized loop has no scalar remainder.
LANES = 16

# Elements of one thread's gather buffer: 64 Ki (256 KB in float32) stays in L2 on both CPU kinds.
BLOCK_ELEMENTS = 1 << 16


def round_up(n, multiple):
    return -(-n // multiple) * multiple


def _pad_nhwc(x, pad_top, pad_left, up_h, up_w, xp):
    """xp[n, r, s, c] = x[n, c, h, w] where r = h*up_h + pad_top, s = w*up_w + pad_left; 0 elsewhere.

    x : (N, C, H, W); xp : (N, Hp, Wp, C). ``up`` > 1 puts up - 1 zeros between pixels (the
    transposed convolution of a strided one); a negative pad crops.
    """
    N, C, H, W = x.shape
    Hp, Wp = xp.shape[1], xp.shape[2]
    for n in prange(N):
        xp[n] = 0
        src, dst = x[n].reshape(-1), xp[n].reshape(-1)
        for h in range(H):
            r = h * up_h + pad_top
            if r < 0 or r >= Hp:
                continue
            for w in range(W):
                s = w * up_w + pad_left
                if 0 <= s < Wp:
                    # unsigned indices: Numba then skips the negative-index wraparound
                    to = np.uint64((r * Wp + s) * C)
                    frm = np.uint64(h * W + w)
                    for c in range(np.uint64(C)):
                        dst[to + c] = src[frm + c * np.uint64(H * W)]


def _gather_rows(xp, n, c0, Cg, KH, KW, stride_h, stride_w, dil_h, dil_w, OW, p0, p1, rows):
    """rows[p - p0, (i*KW + j)*Cg + c] = xp[n, oh*stride_h + i*dil_h, ow*stride_w + j*dil_w, c0 + c], p = oh*OW + ow.

    xp : (N, Hp, Wp, C). Without dilation along W and with one group, the KW*C values of one kernel
    row are contiguous in xp, and are copied as one run.
    """
    Wp, C = xp.shape[2], xp.shape[3]
    flat = xp[n].reshape(-1)
    Kp = rows.shape[1]
    out_flat = rows.reshape(-1)
    run = KW * C if dil_w == 1 and Cg == C else Cg
    for p in range(p0, p1):
        oh = p // OW
        ow = p - oh * OW
        r = p - p0
        for i in range(KH):
            row_start = (oh * stride_h + i * dil_h) * Wp
            for j in range(0, KW, run // Cg):
                start = (row_start + ow * stride_w + j * dil_w) * C + c0
                k = (i * KW + j) * Cg
                dst = np.uint64(r * Kp + k)  # unsigned: no negative-index wraparound, so the copy vectorizes
                src = np.uint64(start)
                for e in range(np.uint64(run)):
                    out_flat[dst + e] = flat[src + e]


def _conv2d_rows_forward(xp, w_rows, bias, KH, KW, stride_h, stride_w, dil_h, dil_w, OW, block, workers, out):
    """out[n, g*Fg + f, p] = bias[g*Fg + f] + sum_k w_rows[g, f, k] * rows_{n,g}[p, k].

    xp : (N, Hp, Wp, C) padded NHWC input; w_rows : (groups, Fg rounded up to TILE_B, Kp), the
    weights in (i, j, c) order with zero rows and columns; out : (N, F, P). ``block`` pixels (a
    multiple of TILE_A) are gathered at a time, and ``workers`` threads share the tasks.
    """
    N, C = xp.shape[0], xp.shape[3]
    groups, Kp = w_rows.shape[0], w_rows.shape[2]
    F, P = out.shape[1], out.shape[2]
    Fg, Cg = F // groups, C // groups
    blocks = (P + block - 1) // block
    tasks = N * groups * blocks
    workers = min(tasks, workers)
    for t in prange(workers):
        rows = np.zeros((block, Kp), dtype=xp.dtype)
        for task in range(t * tasks // workers, (t + 1) * tasks // workers):
            blk = task % blocks
            g = (task // blocks) % groups
            n = task // (blocks * groups)
            p0 = blk * block
            p1 = min(P, p0 + block)
            gather_rows(xp, n, g * Cg, Cg, KH, KW, stride_h, stride_w, dil_h, dil_w, OW, p0, p1, rows)
            tile_products(rows, w_rows[g], p1 - p0, Fg, Kp, out[n, g * Fg:(g + 1) * Fg], p0,
                          bias[g * Fg:(g + 1) * Fg], False)


def _gather_columns(xp, n, c0, Cg, KH, KW, stride_h, stride_w, dil_h, dil_w, OH, OW, cols, col0):
    """cols[(c*KH + i)*KW + j, col0 + oh*OW + ow] = xp[n, c0 + c, oh*stride_h + i*dil_h, ow*stride_w + j*dil_w]:
    im2col of one image and group, from the padded input xp (N, C, Hp, Wp)."""
    Hp, Wp = xp.shape[2], xp.shape[3]
    src, dst = xp[n].reshape(-1), cols.reshape(-1)
    width, step = cols.shape[1], np.uint64(stride_w)
    for c in range(Cg):
        for i in range(KH):
            for j in range(KW):
                row = (c * KH + i) * KW + j
                for oh in range(OH):
                    # unsigned: Numba then skips the negative-index wraparound, and the copy vectorizes
                    frm = np.uint64(((c0 + c) * Hp + oh * stride_h + i * dil_h) * Wp + j * dil_w)
                    to = np.uint64(row * width + col0 + oh * OW)
                    for ow in range(np.uint64(OW)):
                        dst[to + ow] = src[frm + ow * step]


def _conv2d_weight_grad(xp, dout, KH, KW, stride_h, stride_w, dil_h, dil_w, OH, OW, groups, images,
                        dw_partial, db_partial):
    """dw_partial[t, g, f, k] = the weight gradient of worker t's images; db_partial[t, F] likewise.

    xp : (N, C, Hp, Wp) the padded input; dout : (N, F, OH*OW); dw_partial : (workers, groups, Fg,
    Cg*KH*KW), summed over workers by the caller. ``images`` images (of one group) are unfolded at a
    time, side by side along the reduction axis: cols (Cg*KH*KW, images*P) and douts (Fg, images*P),
    then ``dw_g += douts @ cols.T`` by register tiles.
    """
    N, C = xp.shape[0], xp.shape[1]
    F, P = dout.shape[1], dout.shape[2]
    Fg, Cg = F // groups, C // groups
    K = Cg * KH * KW
    workers = dw_partial.shape[0]
    width = -(-images * P // LANES) * LANES
    for t in prange(workers):
        cols = np.zeros((-(-K // TILE_A) * TILE_A, width), dtype=xp.dtype)
        douts = np.zeros((-(-Fg // TILE_B) * TILE_B, width), dtype=xp.dtype)
        dw_partial[t] = 0
        db_partial[t] = 0
        n_begin, n_end = t * N // workers, (t + 1) * N // workers
        for g in range(groups):
            for n0 in range(n_begin, n_end, images):
                n1 = min(n_end, n0 + images)
                for n in range(n0, n1):
                    col0 = (n - n0) * P
                    gather_columns(xp, n, g * Cg, Cg, KH, KW, stride_h, stride_w, dil_h, dil_w, OH, OW, cols, col0)
                    for f in range(Fg):
                        src, dst = dout[n, g * Fg + f], douts[f]
                        acc = db_partial[t, g * Fg + f]
                        for p in range(np.uint64(P)):
                            v = src[p]
                            dst[np.uint64(col0) + p] = v
                            acc += v
                        db_partial[t, g * Fg + f] = acc
                used = (n1 - n0) * P
                cols[:, used:] = 0
                douts[:, used:] = 0
                tile_products(cols, douts, K, Fg, -(-used // LANES) * LANES, dw_partial[t, g], 0, db_partial[t], True)


def _pad_nchw(x, pad_top, pad_left, up_h, up_w, xp):
    """xp[n, c, r, s] = x[n, c, h, w] where r = h*up_h + pad_top, s = w*up_w + pad_left; 0 elsewhere.

    Like ``pad_nhwc``, channels first: x : (N, C, H, W); xp : (N, C, Hp, Wp).
    """
    N, C, H, W = x.shape
    Hp, Wp = xp.shape[2], xp.shape[3]
    for n in prange(N):
        xp[n] = 0
        for c in range(C):
            for h in range(H):
                r = h * up_h + pad_top
                if r < 0 or r >= Hp:
                    continue
                for w in range(W):
                    s = w * up_w + pad_left
                    if 0 <= s < Wp:
                        xp[n, c, r, s] = x[n, c, h, w]


def _conv2d_direct_forward(xp, offsets, w_taps, bias, OH, OW, workers, out):
    """out[n, g*Fg + f, oh, ow] = bias[g*Fg + f] + sum_t w_taps[g, f, t] * xp[n, g*Cg + c_t, oh + i_t*dil_h, ow + j_t*dil_w].

    A stride-1 convolution by pixel passes (``microkernels.pixel_pass_*``). xp : (N, C, Hp, Wp)
    padded input; offsets : (Tp,) where each tap reads xp[n, g*Cg:] flattened, c*Hp*Wp +
    i*dil_h*Wp + j*dil_w (Tp a multiple of PASS_TAPS, the extra taps with weight 0); w_taps :
    (groups, Fg rounded up to PASS_ROWS, Tp). The output pixels are computed on the padded width
    Wp, q = oh*Wp + ow, so that every tap reads a contiguous run of xp; the Wp - OW extra columns of
    each row are computed and dropped.
    """
    N, C, Hp, Wp = xp.shape
    groups, Fg_rows, Tp = w_taps.shape
    F = out.shape[1]
    Fg, Cg = F // groups, C // groups
    n_q = (OH - 1) * Wp + OW
    flat = xp.reshape(N, -1)
    row_blocks = Fg_rows // PASS_ROWS
    tasks = N * groups * row_blocks
    workers = min(tasks, workers)
    for t in prange(workers):
        acc = np.empty((PASS_ROWS, n_q), dtype=xp.dtype)
        for task in range(t * tasks // workers, (t + 1) * tasks // workers):
            f0 = (task % row_blocks) * PASS_ROWS
            g = (task // row_blocks) % groups
            n = task // (row_blocks * groups)
            for s in range(PASS_ROWS):
                acc[s] = bias[g * Fg + f0 + s] if f0 + s < Fg else 0
            for t0 in range(0, Tp, PASS_TAPS):
                pixel_pass(flat[n], g * Cg * Hp * Wp, offsets, w_taps[g, f0:f0 + PASS_ROWS], t0, acc, n_q)
            for s in range(min(PASS_ROWS, Fg - f0)):
                dst = out[n, g * Fg + f0 + s].reshape(-1)
                src = acc[s]
                for oh in range(OH):
                    to, frm = np.uint64(oh * OW), np.uint64(oh * Wp)  # unsigned: the copy vectorizes
                    for ow in range(np.uint64(OW)):
                        dst[to + ow] = src[frm + ow]


pad_nhwc = parallel_kernel(_pad_nhwc)
pad_nchw = parallel_kernel(_pad_nchw)
conv2d_direct_forward = parallel_kernel(_conv2d_direct_forward)
gather_rows = njit(cache=True)(_gather_rows)
gather_columns = njit(cache=True)(_gather_columns)
conv2d_rows_forward = parallel_kernel(_conv2d_rows_forward)
conv2d_weight_grad = parallel_kernel(_conv2d_weight_grad)
