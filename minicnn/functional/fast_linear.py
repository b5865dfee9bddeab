"""The Linear layer's fast forward: ``y = x @ W.T + b`` as register-tiled dot products.

Both operands of the forward product lie along its reduction: a row of x (N, in) and a row of W
(out, in) are each contiguous over the input features. So the tile vectorizes along that axis
(``microkernels.dot_tile_RxC``): R rows of x by C rows of W, R*C vectors of sums in registers, each
step loading R + C vectors for R*C multiply-adds, every sum's lanes added once at the end. Nothing is
copied or rearranged first. numpy's ``x @ W.T`` (``gemm.matmul``) ran the same products 1.4-3x
slower (docs/performance.md, session 22).

Work between threads: each worker takes a contiguous range of W's rows (output features), or, when
W has fewer tiles of rows than there are workers, a range of x's rows. Each tile of W in it meets
every tile of x in turn, so W is read from memory once. Taking x in chunks of 128 KB to 1 MB, every
tile of W meeting a chunk before the next one (so that it stays in L2), made no difference at the
seed models' sizes up to batch 256 (2 MB of x; AMD EPYC family 25, medians of nine alternating
rounds in one process, within 2%: 2.90-3.00 ms against 2.95 unchunked at notebook's 2000->500).
"""
import numpy as np
from numba import prange

from ..runtime import parallel_kernel
from .microkernels import dot_tile_1x4, dot_tile_1x5, dot_tile_3x4, dot_tile_4x5
from .simd import vector_registers

# Rows of x and of W per tile, by the CPU's vector registers (make_microkernels.DOT_TILES), and the
# tile of one row of x for the rows that do not fill a tile.
if vector_registers() >= 32:
    dot_tile, dot_row_tile, TILE_ROWS, TILE_COLUMNS = dot_tile_4x5, dot_tile_1x5, 4, 5
else:
    dot_tile, dot_row_tile, TILE_ROWS, TILE_COLUMNS = dot_tile_3x4, dot_tile_1x4, 3, 4


def _linear_tiles_forward(x, w, bias, has_bias, workers, out):
    """out[n, o] = sum_k x[n, k] * w[o, k] (+ bias[o] with ``has_bias``).

    x : (M, K), w : (N, K), both C-contiguous and of one dtype; bias : (N,); out : (M, N).
    workers : how many ranges to split the work in (module docstring). A tile past the last row of
    its range (of x, or of w) repeats that row and stores only its own; a single row of x left at
    the end of a range takes the tile of one row (``dot_row_tile``). Both tiles make the same sums
    in the same order: an output's bits do not depend on the batch or on the split.
    """
    M, K = x.shape
    N = w.shape[0]
    R, C = TILE_ROWS, TILE_COLUMNS
    w_tiles = (N + C - 1) // C
    by_rows = w_tiles < workers
    x_flat, w_flat = x.reshape(-1), w.reshape(-1)
    for t in prange(workers):
        if by_rows:
            m_lo, m_hi, n_lo, n_hi = t * M // workers, (t + 1) * M // workers, 0, N
        else:
            m_lo, m_hi = 0, M
            n_lo, n_hi = min(N, t * w_tiles // workers * C), min(N, (t + 1) * w_tiles // workers * C)
        x_at = np.empty(R, np.int64)
        w_at = np.empty(C, np.int64)
        tile = np.empty(R * C, x.dtype)
        for n in range(n_lo, n_hi, C):
            columns = min(C, n_hi - n)
            for c in range(C):
                w_at[c] = min(n + c, n_hi - 1) * K
            for m in range(m_lo, m_hi, R):
                rows = min(R, m_hi - m)
                if rows > 1:
                    for r in range(R):
                        x_at[r] = min(m + r, m_hi - 1) * K
                    dot_tile(x_flat, x_at, w_flat, w_at, K, tile)
                else:
                    x_at[0] = m * K
                    dot_row_tile(x_flat, x_at, w_flat, w_at, K, tile)
                for r in range(rows):
                    for c in range(columns):
                        out[m + r, n + c] = tile[r * C + c] + bias[n + c] if has_bias else tile[r * C + c]


linear_tiles_forward = parallel_kernel(_linear_tiles_forward)
