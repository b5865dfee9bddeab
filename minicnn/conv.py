"""2-D convolution (cross-correlation, as in torch), forward and backward.

Two implementations with the same functional interface:

* ``conv2d_forward_naive`` / ``conv2d_backward_naive``: direct loops, written
  to be read. The comments derive the backward pass.
* ``conv2d_forward`` / ``conv2d_backward``: im2col + one BLAS matrix product
  per group for the whole batch, then col2im. The layers use these.

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
import numpy as np
from numba import njit, prange


# Elements of dcols built at once in the backward pass (4 Mi elements: 16 MB in float32).
COL2IM_CHUNK_ELEMENTS = 1 << 22


def conv2d_output_size(size, kernel, stride, pad_before, pad_after, dilation):
    """``floor((I + pad_before + pad_after - dilation*(K-1) - 1) / stride) + 1``."""
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


# ---------------------------------------------------------------------------
# Naive, readable kernels
# ---------------------------------------------------------------------------
def _conv2d_naive_forward_kernel(x, w, b, sh, sw, ph, pw, dh, dw, groups, out):
    """out[n, f, oh, ow] = b[f] + sum_{c, i, j} x[n, g*Cg + c, ih, iw] * w[f, c, i, j]

    where g = f // (F / groups) is the group of filter f, Cg = C / groups, and
    ih = oh*sh - ph + i*dh, iw = ow*sw - pw + j*dw (terms outside x are zero padding).
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
                            ih = oh * sh - ph + i * dh
                            if ih < 0 or ih >= H:
                                continue  # zero padding contributes nothing
                            for j in range(KW):
                                iw = ow * sw - pw + j * dw
                                if 0 <= iw < W:
                                    acc += x[n, g * Cg + c, ih, iw] * w[f, c, i, j]
                    out[n, f, oh, ow] = acc


def _conv2d_naive_backward_kernel(dout, x, w, sh, sw, ph, pw, dh, dw, groups, dx, dw_, db):
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
                            ih = oh * sh - ph + i * dh
                            if ih < 0 or ih >= H:
                                continue
                            for j in range(KW):
                                iw = ow * sw - pw + j * dw
                                if 0 <= iw < W:
                                    dx[n, g * Cg + c, ih, iw] += d * w[f, c, i, j]
                                    dw_[f, c, i, j] += d * x[n, g * Cg + c, ih, iw]


conv2d_naive_forward_kernel = njit(cache=True)(_conv2d_naive_forward_kernel)
conv2d_naive_backward_kernel = njit(cache=True)(_conv2d_naive_backward_kernel)


# ---------------------------------------------------------------------------
# Fast kernels: im2col -> GEMM -> col2im
# ---------------------------------------------------------------------------
def _im2col(x, KH, KW, sh, sw, ph, pw, dh, dw, OH, OW, cols):
    """Unfold every receptive field of x into a column of ``cols``.

    cols[(c*KH + i)*KW + j, (n*OH + oh)*OW + ow] = x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]
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
                ih = oh * sh - ph + i * dh
                base = (n * OH + oh) * OW
                if ih < 0 or ih >= H:
                    for ow in range(OW):
                        cols[row, base + ow] = 0
                    continue
                for ow in range(OW):
                    iw = ow * sw - pw + j * dw
                    if 0 <= iw < W:
                        cols[row, base + ow] = x[n, c, ih, iw]
                    else:
                        cols[row, base + ow] = 0


def _col2im(cols, N, C, H, W, KH, KW, sh, sw, ph, pw, dh, dw, OH, OW, dx):
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
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= H:
                        continue
                    base = (n * OH + oh) * OW
                    for ow in range(OW):
                        iw = ow * sw - pw + j * dw
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


im2col = njit(parallel=True, cache=True)(_im2col)
col2im = njit(parallel=True, cache=True)(_col2im)
gemm_to_nchw = njit(parallel=True, cache=True)(_gemm_to_nchw)
nchw_to_gemm = njit(parallel=True, cache=True)(_nchw_to_gemm)


# ---------------------------------------------------------------------------
# Functional interface
# ---------------------------------------------------------------------------
def _geometry(x, w, stride, padding, dilation):
    (sh, sw), (dh, dw) = stride, dilation
    pt, pb, pl, pr = padding
    OH = conv2d_output_size(x.shape[2], w.shape[2], sh, pt, pb, dh)
    OW = conv2d_output_size(x.shape[3], w.shape[3], sw, pl, pr, dw)
    return sh, sw, pt, pl, dh, dw, OH, OW


def _bias(b, F, dtype):
    return np.zeros(F, dtype=dtype) if b is None else b


def conv2d_forward_naive(x, w, b=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """Direct-loop convolution. Same arguments and results as ``conv2d_forward``."""
    sh, sw, pt, pl, dh, dw, OH, OW = _geometry(x, w, stride, padding, dilation)
    out = np.empty((x.shape[0], w.shape[0], OH, OW), dtype=x.dtype)
    conv2d_naive_forward_kernel(x, w, _bias(b, w.shape[0], x.dtype), sh, sw, pt, pl, dh, dw, groups, out)
    return out, (x, w, b is not None, stride, padding, dilation, groups)


def conv2d_backward_naive(dout, cache):
    """Direct-loop backward. Returns ``(dx, dw, db)``; ``db`` is None without bias."""
    x, w, has_bias, stride, padding, dilation, groups = cache
    sh, sw, pt, pl, dh, dw, _, _ = _geometry(x, w, stride, padding, dilation)
    dx, dw_ = np.zeros_like(x), np.zeros_like(w)
    db = np.zeros(w.shape[0], dtype=x.dtype)
    conv2d_naive_backward_kernel(np.ascontiguousarray(dout), x, w, sh, sw, pt, pl, dh, dw, groups, dx, dw_, db)
    return dx, dw_, (db if has_bias else None)


def conv2d_forward(x, w, b=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """Convolution by im2col and one matrix product per group.

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
    cache : tuple for ``conv2d_backward``

    Notes
    -----
    With ``cols = im2col(x)`` of shape (C*KH*KW, N*OH*OW) and the weights seen
    as a matrix ``Wm`` of shape (F, Cg*KH*KW), each group computes
    ``out_g = Wm_g @ cols_g``. The backward pass is the transpose of that:
    ``dWm_g = dout_g @ cols_g.T``, ``dcols_g = Wm_g.T @ dout_g``, and
    ``dx = col2im(dcols)``; ``db`` sums dout over (N, OH, OW). The backward
    builds ``dcols`` a chunk of images at a time (``COL2IM_CHUNK_ELEMENTS``),
    so its peak memory is ``cols`` plus one chunk, not twice ``cols``.
    """
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    sh, sw, pt, pl, dh, dw, OH, OW = _geometry(x, w, stride, padding, dilation)
    cols = np.empty((C * KH * KW, N * OH * OW), dtype=x.dtype)
    im2col(x, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW, cols)
    wm = w.reshape(F, Cg * KH * KW)
    if groups == 1:
        out_mat = wm @ cols
    else:
        Fg, R = F // groups, Cg * KH * KW
        out_mat = np.empty((F, cols.shape[1]), dtype=x.dtype)
        for g in range(groups):
            np.matmul(wm[g * Fg:(g + 1) * Fg], cols[g * R:(g + 1) * R], out=out_mat[g * Fg:(g + 1) * Fg])
    out = np.empty((N, F, OH * OW), dtype=x.dtype)
    gemm_to_nchw(out_mat, _bias(b, F, x.dtype), out)
    cache = (x.shape, w, cols, b is not None, stride, padding, dilation, groups, (OH, OW))
    return out.reshape(N, F, OH, OW), cache


def conv2d_backward(dout, cache):
    """Backward of ``conv2d_forward``. Returns ``(dx, dw, db)``; ``db`` is None without bias."""
    (N, C, H, W), w, cols, has_bias, stride, padding, dilation, groups, (OH, OW) = cache
    F, Cg, KH, KW = w.shape
    (sh, sw), (dh, dw), (pt, _, pl, _) = stride, dilation, padding
    dout_mat = np.empty((F, N * OH * OW), dtype=w.dtype)
    db = np.empty(F, dtype=w.dtype)
    nchw_to_gemm(np.ascontiguousarray(dout).reshape(N, F, OH * OW), dout_mat, db)
    wm = w.reshape(F, Cg * KH * KW)
    Fg, R, P = F // groups, Cg * KH * KW, OH * OW
    dwm = np.empty_like(wm)
    for g in range(groups):
        fs, rs = slice(g * Fg, (g + 1) * Fg), slice(g * R, (g + 1) * R)
        np.matmul(dout_mat[fs], cols[rs].T, out=dwm[fs])
    # dcols is as large as cols; build it a chunk of images at a time so that only one chunk exists.
    dx = np.empty((N, C, H, W), dtype=w.dtype)
    chunk = max(1, COL2IM_CHUNK_ELEMENTS // max(1, C * KH * KW * P))
    dcols = np.empty((C * KH * KW, min(chunk, N) * P), dtype=w.dtype)
    for n0 in range(0, N, chunk):
        n1 = min(N, n0 + chunk)
        part = dcols[:, :(n1 - n0) * P]
        for g in range(groups):
            fs, rs = slice(g * Fg, (g + 1) * Fg), slice(g * R, (g + 1) * R)
            np.matmul(wm[fs].T, dout_mat[fs, n0 * P:n1 * P], out=part[rs])
        col2im(part, n1 - n0, C, H, W, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW, dx[n0:n1])
    return dx, dwm.reshape(w.shape), (db if has_bias else None)
