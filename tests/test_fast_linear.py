"""fast_linear: the Linear layer's forward as register-tiled dot products (``microkernels.dot_tile_*``)."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from numba import njit

import minicnn as mc
from helpers import assert_close, printed_without_jit
from minicnn import runtime
from minicnn.functional import fast_linear, gemm, simd
from minicnn.functional.linear import linear_forward
from strategies import DTYPES, generator, seeds


@pytest.mark.parametrize("dtype, big", [(np.float32, 2.0 ** 24), (np.float64, 2.0 ** 53)])
def test_sum_lanes_adds_the_high_half_to_the_low_half_until_one_lane_is_left(dtype, big):
    """Hand-derived: with ``big`` in lane 0 and ones in lanes 1 and L/2 + 1, halving first adds the
    two ones (lane 1 of the low half meets lane 1 of the high half), then big: big + 2, exact. From
    left to right, big + 1 would round back to big twice."""
    L = simd.VECTOR_BYTES // np.dtype(dtype).itemsize
    v = np.zeros(L, dtype)
    v[0], v[1], v[L // 2 + 1] = big, 1, 1
    summed = njit(lambda a: simd.sum_lanes(simd.load(a, 0)))(v)
    assert summed == big + 2 and simd._sum_lanes_py(v) == big + 2
    assert (v[0] + v[1]) + v[L // 2 + 1] == big


L32 = simd.VECTOR_BYTES // 4


@settings(max_examples=60, deadline=None)
@given(seed=seeds, M=st.integers(0, 11), N=st.integers(1, 14),
       K=st.sampled_from([0, 1, 3, L32 - 1, L32, L32 + 1, 2 * L32 + 3, 70]), has_bias=st.booleans(),
       chunk_tiles=st.integers(1, 3), workers=st.integers(1, 3), parallel=st.booleans(), dtype=DTYPES)
def test_every_output_is_its_own_rows_dot_product(seed, M, N, K, has_bias, chunk_tiles, workers, parallel, dtype):
    """Small integers: every product and partial sum is exact, so any order of the sums gives the
    integer result bit for bit, and a tile that reads or writes a wrong row, column or lane fails.
    Sizes around a tile (TILE_ROWS x TILE_COLUMNS), a chunk of x's rows and a vector (K); more
    workers than tiles of w splits x's rows instead."""
    rng = generator(seed)
    x, w, b = (rng.integers(-3, 4, size=s) for s in ((M, K), (N, K), (N,)))
    expected = x @ w.T + (b if has_bias else 0)
    out = np.full((M, N), np.nan, dtype)
    x, w, b = (np.ascontiguousarray(a, dtype=dtype) for a in (x, w, b))
    kernel = fast_linear.linear_tiles_forward
    chunk = chunk_tiles * fast_linear.TILE_ROWS
    (kernel.parallel if parallel else kernel.serial)(x, w, b if has_bias else b[:0], has_bias, chunk, workers, out)
    np.testing.assert_array_equal(out, expected.astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M, K, N", [(64, 1568, 10), (64, 2000, 500), (5, 500, 10), (9, 37, 7), (2, 50, 3),
                                     (1, 2000, 500)])
def test_linear_forward_equals_torch(dtype, M, K, N):
    """The seed models' Linear layers and odd sizes, with and without bias, from contiguous and
    transposed (column-major) arrays, on the threads the work gets, batch 1 to 64."""
    rng = generator(M * K + N)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((M, K), (N, K), (N,)))
    scale = float(np.abs(x).max() * np.abs(w).max() * K)
    for bias in (b, None):
        expected = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w),
                                              None if bias is None else torch.from_numpy(bias)).numpy()
        for xs, ws in ((x, w), (np.asfortranarray(x), np.asfortranarray(w))):
            out, cache = linear_forward(xs, ws, bias)
            assert out.flags.c_contiguous and cache.x is xs
            assert_close(out, expected, f"linear_forward {M}x{K} @ {K}x{N}", scale=scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_outputs_bits_depend_neither_on_the_batch_nor_on_the_split(dtype):
    """The full tile and the tile of one row make the same sums in the same order: each row of a
    batch of 13 (full tiles, then a tile with repeated rows or a single row, by the split) equals
    that row computed alone, bit for bit, with 1 to 5 workers splitting w's rows or x's, in chunks
    of one tile of rows or more."""
    rng = generator(3)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((13, 70), (12, 70), (12,)))
    kernel = fast_linear.linear_tiles_forward.parallel

    def forward(rows, workers, chunk):
        out = np.empty((rows.shape[0], w.shape[0]), dtype)
        kernel(rows, w, b, True, chunk, workers, out)
        return out

    alone = np.concatenate([forward(x[i:i + 1], 1, fast_linear.TILE_ROWS) for i in range(len(x))])
    for workers in range(1, 6):
        for chunk in (fast_linear.TILE_ROWS, 2 * fast_linear.TILE_ROWS, fast_linear.chunk_rows(70, x.itemsize)):
            np.testing.assert_array_equal(forward(x, workers, chunk), alone,
                                          err_msg=f"{workers} workers, chunk {chunk}")


def test_chunks_are_whole_tiles_of_about_chunk_bytes():
    """Hand-derived: 2000 float32 features are 8000 bytes a row, 262144 // 8000 = 32 rows (a multiple
    of 4 and of 3 less its remainder); a row larger than CHUNK_BYTES still makes a chunk of one tile."""
    R = fast_linear.TILE_ROWS
    assert fast_linear.CHUNK_BYTES == 1 << 18
    assert fast_linear.chunk_rows(2000, 4) == 32 - 32 % R
    assert fast_linear.chunk_rows(100_000, 8) == R and fast_linear.chunk_rows(0, 4) % R == 0


def test_the_linear_layer_splits_its_forward_between_threads_and_equals_torch():
    """notebook's 2000->500 at batch 64 is work for every thread (by W's rows); article's 1568->10 at
    batch 256 too, with fewer tiles of W than threads when there are more than two (by x's rows)."""
    mc.set_num_threads()
    for M, K, N in ((64, 2000, 500), (256, 1568, 10)):
        assert runtime.threads_for(gemm.product_work(M, K, N)) == runtime.numba.get_num_threads()
        layer = mc.Linear(K, N, generator=np.random.default_rng(0))
        x = generator(2).standard_normal((M, K)).astype(np.float32)
        expected = torch.nn.functional.linear(*(torch.from_numpy(a) for a in (x, layer.weight.data,
                                                                               layer.bias.data)))
        scale = float(np.abs(x).max() * np.abs(layer.weight.data).max() * K)
        assert_close(layer(x), expected.numpy(), "Linear", scale=scale)


def test_the_tiles_run_as_plain_python_with_the_jit_disabled():
    """NUMBA_DISABLE_JIT=1 runs fast_linear's loops and simd's operations as Python, for a debugger;
    on small integers (every sum exact) the result is the integer product, bit for bit."""
    code = ("import json, numpy as np, numba\n"
            "from minicnn.functional.linear import linear_forward\n"
            "assert numba.config.DISABLE_JIT\n"
            "rng = np.random.default_rng(0)\n"
            "x, w, b = (rng.integers(-3, 4, size=s).astype(np.float64) for s in ((5, 37), (7, 37), (7,)))\n"
            "print(json.dumps([linear_forward(x, w, b)[0].tolist(), (x @ w.T + b).tolist()]))\n")
    ours, exact = printed_without_jit(code)
    assert ours == exact
