"""The Linear layer's fast forward: ``y = x @ W.T + b`` as register-tiled dot products.

Both operands of the forward product lie along its reduction: a row of x (N, in) and a row of W
(out, in) are each contiguous over the input features. So the tile vectorizes along that axis
(``microkernels.dot_tile_RxC``): R rows of x by C rows of W, R*C vectors of sums in registers, each
step loading R + C vectors for R*C multiply-adds, every sum's lanes added once at the end. A
C-contiguous x and W are read where they are: nothing is copied or packed first. The layer's
forward by ``gemm.matmul`` (numpy's OpenBLAS) and by these tiles, in alternating processes (AMD
EPYC family 25, session 22): notebook's 2000->500 at batch 64 1.10-1.14 ms against 0.80-0.81,
article's 1568->10 at batch 64 0.078-0.080 against 0.032-0.035, 2000->500 at batch 256 3.25-3.47
against 3.15-3.35 (docs/performance.md, "What changed in session 22").

Work between threads: each worker takes a contiguous range of W's rows (output features), or, when
W has fewer tiles of rows than there are workers, a range of x's rows. Its rows of x are taken in
chunks of about ``CHUNK_BYTES`` (``chunk_rows``), and every tile of W meets every tile of a chunk
before the next chunk: the chunk stays in the core's L2 cache, and W is read once per chunk. At
notebook's 2000->500, batch 256 (2 MB of x), 2 threads, medians of seven alternating rounds in one
process (AMD EPYC family 25, session 22): 2.69 ms with chunks of 256 KB against 2.82 unchunked,
and 3.09 against 3.67 imitating AVX2 (``znver3``); chunks of 128 or 512 KB within 1.5% of 256.
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
CHUNK_BYTES = 1 << 18  # within every L2 cache of the machines measured (512 KB to 2 MB a core)


def chunk_rows(in_features, itemsize):
    """Rows of x per chunk: about CHUNK_BYTES of them, a whole number of tiles, at least one."""
    rows = CHUNK_BYTES // max(1, in_features * itemsize)
    return max(TILE_ROWS, rows - rows % TILE_ROWS)


def _linear_tiles_forward(x, w, bias, has_bias, chunk, workers, out):
    """out[n, o] = sum_k x[n, k] * w[o, k] (+ bias[o] with ``has_bias``).

    x : (M, K), w : (N, K), both C-contiguous and of one dtype; bias : (N,); out : (M, N).
    chunk : rows of x per chunk, a multiple of TILE_ROWS (``chunk_rows``); workers : how many ranges
    to split the work in (module docstring). A tile past the last row of its chunk (of x), or of
    its range (of w), repeats that row and stores only its own; a single row of x left at the end
    of a chunk takes the tile of one row (``dot_row_tile``). Both tiles make the same sums in the
    same order: an output's bits depend neither on the batch nor on the split.
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
        for m0 in range(m_lo, m_hi, chunk):
            m1 = min(m_hi, m0 + chunk)
            for n in range(n_lo, n_hi, C):
                columns = min(C, n_hi - n)
                for c in range(C):
                    w_at[c] = min(n + c, n_hi - 1) * K
                for m in range(m0, m1, R):
                    rows = min(R, m1 - m)
                    if rows > 1:
                        for r in range(R):
                            x_at[r] = min(m + r, m1 - 1) * K
                        dot_tile(x_flat, x_at, w_flat, w_at, K, tile)
                    else:
                        x_at[0] = m * K
                        dot_row_tile(x_flat, x_at, w_flat, w_at, K, tile)
                    for r in range(rows):
                        for c in range(columns):
                            out[m + r, n + c] = tile[r * C + c] + bias[n + c] if has_bias else tile[r * C + c]


linear_tiles_forward = parallel_kernel(_linear_tiles_forward)
