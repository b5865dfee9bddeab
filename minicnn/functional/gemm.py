"""Matrix products on Numba's threads: numpy's own BLAS ``?gemm``, called from a ``prange``.

``matmul(a, b)`` is ``a @ b`` (2-D) with the rows or the columns of the product split between Numba's
threads, each part one single-threaded call of the ``cblas_sgemm`` / ``cblas_dgemm`` in the OpenBLAS
that numpy loaded. The product is the same BLAS kernel numpy's ``@`` runs, only in parts.

Why not numpy's ``@`` on BLAS's own threads, or a second pool of Python threads: on 2 cores every
other pool runs beside Numba's and fights it for the cores. Numba's OpenMP workers spin after each
parallel region whenever their runtime is torch's (torch's wheel loads its ``libgomp`` globally and
Numba's ``omppool`` then binds to it: ``gdb`` shows Numba's worker in ``torch/lib/libgomp.so.1``'s
``gomp_barrier_wait_end``). With the products split between a thread pool beside it, the spinning
worker and the pool's thread shared a core: notebook's Linear 2000->500 at batch 64 took 2.6 ms
forward inside a training step against 1.3 ms on its own (AMD EPYC). Run on Numba's threads, the
worker that spins is the one that computes. docs/threads.md has the measurements.

Rows or columns (``split_rows``): columns, unless the product is thin (fewer than ``THIN`` = 64
columns, or a sum over fewer than 64 terms) and has at least 64 rows; then rows. Timed on the AMD
EPYC of family 25 (session 20), the layer's products split each way in one process, alternating
blocks of calls (medians of 15): article's Linear 1568->10 at batch 256 took 0.12-0.13 ms forward
against 0.16-0.19 by columns (three runs), and 0.31 ms forward and backward against 0.40 (its input
gradient sums over 10 terms). Splitting notebook's 2000->500 products by rows as well, a rule tried
first, made none faster in the layer (its forward at batch 256: 3.14 against 3.00 ms), though its
weight gradient at batch 64, repeated alone, was (0.80 against 1.04 ms). The products alone, two
processes, each repeated: article's input gradient at batch 256 0.13-0.16 ms by rows against 0.28-0.34 by columns,
and 0.10 against 0.12 with OpenBLAS's Haswell kernels (``OPENBLAS_CORETYPE=Haswell``; numpy's
OpenBLAS takes its SkylakeX kernels on this CPU).

When numpy's BLAS is not OpenBLAS with the ILP64 ``cblas`` names numpy's wheels ship, or the dtypes
are not both float32 or both float64, or ``set_num_threads(blas_threads=n)`` asked for BLAS's own
threads, ``matmul`` is numpy's ``@`` on ``runtime.BLAS_THREADS`` threads.
"""
import ctypes

import numpy as np
from numba import prange

from .. import runtime
from ..runtime import parallel_kernel

CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS = 101, 111, 112
THIN = 64  # a product with fewer columns or terms than this, and at least this many rows, is split by rows
_cblas = None  # {dtype: ctypes function} of numpy's OpenBLAS, found at the first product


def _gemm_parts(gemm, trans_a, trans_b, K, a, lda, a_row_bytes, b, ldb, b_column_bytes, out, parts, by_rows):
    """C[lo:hi, :] = A[lo:hi, :] @ B for ``parts`` row ranges (``by_rows``), or C[:, lo:hi] =
    A @ B[:, lo:hi] for ``parts`` column ranges, one per ``prange`` iteration.

    Parameters
    ----------
    gemm : ctypes function ``cblas_?gemm`` (ILP64: every size and leading dimension is an int64).
    trans_a, trans_b : CBLAS_NO_TRANS or CBLAS_TRANS (row-major storage of A and B).
    K : A is (M, K), B is (K, N).
    a, b : addresses of the first elements; lda, ldb their leading dimensions (elements).
    a_row_bytes, b_column_bytes : how far apart in memory two neighbouring rows of A, and two
        neighbouring columns of B, start.
    out : C, a C-contiguous (M, N) array of A's dtype. parts : the ranges (at most M, or N).
    by_rows : split the rows of C (and A) rather than its columns (and B's); see ``split_rows``.

    Notes
    -----
    ``out`` is passed as an array, not an address, so that the float32 and float64 builds have
    different signatures: Numba's dispatcher would otherwise run the build compiled for one
    ctypes function type with the other function (it finds the two types convertible).
    """
    M, N = out.shape
    c = out.ctypes.data
    item = out.itemsize
    for part in prange(parts):
        if by_rows:
            lo = part * M // parts
            hi = (part + 1) * M // parts
            gemm(CBLAS_ROW_MAJOR, trans_a, trans_b, hi - lo, N, K, 1.0, a + lo * a_row_bytes, lda,
                 b, ldb, 0.0, c + lo * N * item, N)
        else:
            lo = part * N // parts
            hi = (part + 1) * N // parts
            gemm(CBLAS_ROW_MAJOR, trans_a, trans_b, M, hi - lo, K, 1.0, a, lda,
                 b + lo * b_column_bytes, ldb, 0.0, c + lo * item, N)


gemm_parts = parallel_kernel(_gemm_parts)


def product_work(M, K, N):
    """The work of an (M, K) by (K, N) product, as ``runtime.threads_for`` counts it: the multiply-adds
    / 32, or reading the (K, N) operand, about an element a nanosecond, whichever is more. So a
    matrix-vector product over an operand larger than one core's L2 is split too (notebook's Linear
    2000->500 at batch 1, 4 MB of weights, Intel Xeon with 2 MB of L2 a core: 0.125-0.145 ms on one
    thread, 0.043 in two halves)."""
    return max(M * N * K // 32, K * N)


def split_rows(M, K, N):
    """Whether the product of an (M, K) and a (K, N) matrix is split by rows (else by columns): when it
    is thin, fewer than ``THIN`` columns or a sum over fewer than ``THIN`` terms, and has ``THIN``
    rows or more (module docstring)."""
    return (N < THIN or K < THIN) and M >= THIN


def _find_cblas():
    """{np.float32: cblas_sgemm, np.float64: cblas_dgemm} of numpy's OpenBLAS (ILP64 names), else {}."""
    i64 = ctypes.c_int64
    for path in runtime._openblas_libraries():
        library = ctypes.CDLL(path)
        functions = {}
        for dtype, letter, real in ((np.float32, "s", ctypes.c_float), (np.float64, "d", ctypes.c_double)):
            for name in (f"scipy_cblas_{letter}gemm64_", f"cblas_{letter}gemm64_"):
                function = getattr(library, name, None)
                if function is not None:
                    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i64, i64, i64, real,
                                         i64, i64, i64, i64, real, i64, i64]
                    function.restype = None
                    functions[np.dtype(dtype)] = function
                    break
        if len(functions) == 2:
            return functions
    return {}


def _cblas_functions():
    global _cblas
    if _cblas is None:
        _cblas = _find_cblas()
    return _cblas


def _operand(m):
    """(m or a contiguous copy, CBLAS trans flag, leading dimension) of a 2-D row-major or column-major matrix."""
    item = m.itemsize
    rows, cols = m.shape
    if m.strides[1] == item and m.strides[0] % item == 0 and m.strides[0] // item >= max(1, cols):
        return m, CBLAS_NO_TRANS, m.strides[0] // item
    if m.strides[0] == item and m.strides[1] % item == 0 and m.strides[1] // item >= max(1, rows):
        return m, CBLAS_TRANS, m.strides[1] // item
    m = np.ascontiguousarray(m)
    return m, CBLAS_NO_TRANS, max(1, cols)


def matmul(a, b, out=None):
    """``a @ b`` for 2-D ``a`` (M, K) and ``b`` (K, N), the product's rows or columns split between
    Numba's threads (``split_rows``).

    Returns a new C-contiguous (M, N) array, or ``out`` (M, N) of ``a``'s dtype filled with the
    product, as ``np.matmul(a, b, out=out)`` does. Each of its row ranges is bit for bit one
    single-threaded ``cblas_?gemm`` call on ``a[lo:hi]``, or each column range one on ``b[:, lo:hi]``:
    every element is one call's sum over the whole of K (``tests/test_gemm.py``).
    Against the undivided product it can differ by rounding, as OpenBLAS's own threads do
    (its dgemm's summation order depends on N). Products whose ``product_work`` is under
    ``runtime.threads_for``'s threshold are one call on the calling thread.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: expected a (M, K) and b (K, N), got a {a.shape} and b {b.shape}")
    M, K = a.shape
    N = b.shape[1]
    if out is not None and (out.shape != (M, N) or out.dtype != a.dtype):
        raise ValueError(f"matmul: expected out of shape {(M, N)} and dtype {a.dtype}, "
                         f"got {out.shape} and {out.dtype}")
    gemm = _cblas_functions().get(a.dtype) if a.dtype == b.dtype else None
    work = product_work(M, K, N)
    threads = runtime.threads_for(work) if gemm is not None and runtime.BLAS_THREADS == 1 else 1
    by_rows = split_rows(M, K, N)
    parts = min(threads, M if by_rows else N)
    if parts <= 1 or M == 0 or K == 0:
        with runtime.blas_threads():
            return np.matmul(a, b, out=out)
    if out is not None and not out.flags.c_contiguous:
        out[...] = matmul(a, b)
        return out
    a, trans_a, lda = _operand(a)
    b, trans_b, ldb = _operand(b)
    out = np.empty((M, N), dtype=a.dtype) if out is None else out
    item = a.itemsize
    a_row_bytes = item * (lda if trans_a == CBLAS_NO_TRANS else 1)
    b_column_bytes = item * (ldb if trans_b == CBLAS_TRANS else 1)
    with runtime.blas_threads(1):
        gemm_parts.parallel(gemm, trans_a, trans_b, K, a.ctypes.data, lda, a_row_bytes, b.ctypes.data, ldb,
                            b_column_bytes, out, parts, by_rows)
    return out
