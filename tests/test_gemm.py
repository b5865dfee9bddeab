"""gemm.matmul: numpy's BLAS kernel with the product's rows or columns split between Numba's threads."""
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from helpers import assert_close
from minicnn import runtime
from minicnn.functional import gemm
from strategies import DTYPES, generator, seeds


def operand(rng, rows, cols, dtype, layout):
    """A (rows, cols) matrix stored row-major, column-major (a transpose) or as a strided slice."""
    if layout == "rows":
        return rng.standard_normal((rows, cols)).astype(dtype)
    if layout == "columns":
        return rng.standard_normal((cols, rows)).astype(dtype).T
    return rng.standard_normal((rows + 1, 2 * cols)).astype(dtype)[1:, ::2]  # neither: copied first


def one_blas_call(a, b):
    """``a @ b`` by one call of the cblas_?gemm that matmul calls, on the operands as matmul passes them
    (row- or column-major, so with the same transpose flags: OpenBLAS's sums can differ between the
    two; numpy's ``@`` takes gemv for a vector)."""
    (a, trans_a, lda), (b, trans_b, ldb) = gemm._operand(a), gemm._operand(b)
    out = np.empty((a.shape[0], b.shape[1]), a.dtype)
    with runtime.blas_threads(1):
        gemm._cblas_functions()[a.dtype](gemm.CBLAS_ROW_MAJOR, trans_a, trans_b, *out.shape, a.shape[1], 1.0,
                                         a.ctypes.data, lda, b.ctypes.data, ldb, 0.0, out.ctypes.data, out.shape[1])
    return out


@given(dtype=DTYPES, seed=seeds, M=st.one_of(st.integers(1, 9), st.integers(64, 70)),
       N=st.one_of(st.integers(1, 9), st.integers(64, 70)), K=st.one_of(st.integers(1, 9), st.integers(64, 66)),
       parts=st.integers(2, 4), layouts=st.tuples(*[st.sampled_from(["rows", "columns", "strided"])] * 2))
def test_each_row_or_column_range_is_one_blas_call_and_the_product_equals_torch(dtype, seed, M, N, K, parts,
                                                                                 layouts):
    """A thin product (fewer than 64 columns or terms) of 64 rows or more is split by rows, any other
    by columns (``split_rows``); either way each range is one BLAS call's bits."""
    rng = generator(seed)
    a, b = operand(rng, M, K, dtype, layouts[0]), operand(rng, K, N, dtype, layouts[1])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runtime, "threads_for", lambda work: parts)  # split products this small too
        out = gemm.matmul(a, b)
    assert out.dtype == dtype and out.shape == (M, N) and out.flags.c_contiguous
    by_rows = (N < 64 or K < 64) and M >= 64
    assert gemm.split_rows(M, K, N) == by_rows
    length = M if by_rows else N
    used = min(parts, length)
    bounds = [part * length // used for part in range(used + 1)]
    if used == 1:  # one row (or column): not split, numpy's own product
        with runtime.blas_threads(1):
            np.testing.assert_array_equal(out, a @ b)
    for lo, hi in zip(bounds[:-1], bounds[1:]) if used > 1 else ():
        if by_rows:
            np.testing.assert_array_equal(out[lo:hi], one_blas_call(a[lo:hi], b))
        else:
            np.testing.assert_array_equal(out[:, lo:hi], one_blas_call(a, b[:, lo:hi]))
    expected = torch.from_numpy(np.ascontiguousarray(a)) @ torch.from_numpy(np.ascontiguousarray(b))
    assert_close(out, expected.numpy(), "matmul against torch.mm", scale=float(np.abs(a).max() * np.abs(b).max() * K))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_sized_products_are_split_and_equal_torch(dtype):
    """notebook's Linear 2000->500 at batch 64: forward, weight and input gradients, each split."""
    rng = generator(0)
    x, w, dout = (rng.standard_normal(s).astype(dtype) for s in ((64, 2000), (500, 2000), (64, 500)))
    assert runtime.threads_for(64 * 500 * 2000 // 32) == runtime.numba.get_num_threads()
    for a, b in ((x, w.T), (dout.T, x), (dout, w)):
        expected = (torch.from_numpy(np.ascontiguousarray(a)) @ torch.from_numpy(np.ascontiguousarray(b))).numpy()
        assert_close(gemm.matmul(a, b), expected, "matmul", scale=float(np.abs(a).max() * np.abs(b).max() * a.shape[1]))


def test_a_products_work_is_its_multiply_adds_over_32_or_its_second_operand_whichever_is_more():
    """Hand-derived, notebook's 2000->500: at batch 64 64*2000*500/32 = 2,000,000 multiply-adds' worth;
    at batch 1 the 1,000,000 weights it reads outweigh its 31,250."""
    assert gemm.product_work(64, 2000, 500) == 2_000_000
    assert gemm.product_work(1, 2000, 500) == 1_000_000


def test_float32_and_float64_in_one_process_each_use_their_own_blas_function(monkeypatch):
    """Numba's dispatcher once ran the float32 build with dgemm (it found the two ctypes types convertible)."""
    monkeypatch.setattr(runtime, "threads_for", lambda work: 2)
    rng = generator(1)
    for dtype in (np.float32, np.float64, np.float32):
        a, b = rng.standard_normal((5, 7)).astype(dtype), rng.standard_normal((7, 6)).astype(dtype)
        expected = np.concatenate([one_blas_call(a, b[:, :3]), one_blas_call(a, b[:, 3:])], axis=1)
        np.testing.assert_array_equal(gemm.matmul(a, b), expected)


def test_without_openblas_or_for_mixed_dtypes_it_is_numpys_product(monkeypatch):
    rng = generator(2)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((3, 5)).astype(np.float32)
    np.testing.assert_array_equal(gemm.matmul(a, b), a @ b)
    monkeypatch.setattr(gemm, "_cblas", {})
    monkeypatch.setattr(runtime, "threads_for", lambda work: 2)
    b = b.astype(np.float64)
    np.testing.assert_array_equal(gemm.matmul(a, b), a @ b)


def test_blas_thread_count_is_restored_and_bad_shapes_are_named():
    before = [get() for get, _ in runtime._openblas_controls()]
    rng = generator(3)
    gemm.matmul(rng.standard_normal((64, 300)), rng.standard_normal((300, 400)))
    assert [get() for get, _ in runtime._openblas_controls()] == before
    with pytest.raises(ValueError, match=r"matmul: expected a \(M, K\) and b \(K, N\), got a \(2, 3\) and b \(4, 5\)"):
        gemm.matmul(np.zeros((2, 3)), np.zeros((4, 5)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("build", ["serial", "parallel"])
def test_one_sample_weight_gradient_is_added_in_place_as_numpy_adds_it(dtype, build):
    """``linear_backward(..., dw_into=g)`` at batch 1 adds the outer product into g in one pass
    (``add_outer_kernel``), equal to numpy's ``g += np.multiply.outer(dout[0], x[0])`` to the last
    bit: each product rounded, then each sum (no fused multiply-add). At batch 3 it adds the product."""
    from minicnn.functional.linear import add_outer_kernel, linear_backward, linear_forward
    rng = np.random.default_rng(7)
    for batch in (1, 3):
        x, w = rng.standard_normal((batch, 37)).astype(dtype), rng.standard_normal((23, 37)).astype(dtype)
        _, cache = linear_forward(x, w, np.zeros(23, dtype))
        dout = rng.standard_normal((batch, 23)).astype(dtype)
        grad = rng.standard_normal(w.shape).astype(dtype)
        want = grad + (np.multiply.outer(dout[0], x[0]) if batch == 1 else dout.T @ x)
        kernel = getattr(add_outer_kernel, build)
        with mock.patch("minicnn.functional.linear.add_outer_kernel.for_work", lambda work: kernel):
            dx, dw, db = linear_backward(dout, cache, dw_into=grad)
        assert dw is grad
        if batch == 1:
            np.testing.assert_array_equal(grad, want)
        else:
            np.testing.assert_allclose(grad, want, rtol=1e-5 if dtype == np.float32 else 1e-12)
        np.testing.assert_allclose(dx, dout @ w, rtol=1e-5 if dtype == np.float32 else 1e-12)
        np.testing.assert_array_equal(db, dout.sum(axis=0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("parts", [1, 2])
def test_out_receives_the_product_as_numpys_out_does(monkeypatch, dtype, parts):
    """``matmul(a, b, out=o)`` fills and returns ``o``: bit for bit the product it returns without
    ``out``, whether split or not, into a C-contiguous ``o`` or a strided view; a wrong shape or dtype
    is named."""
    monkeypatch.setattr(runtime, "threads_for", lambda work: parts)
    rng = generator(4)
    a, b = rng.standard_normal((6, 9)).astype(dtype), rng.standard_normal((9, 8)).astype(dtype).T.copy().T
    want = gemm.matmul(a, b)
    for out in (np.full((6, 8), np.nan, dtype), np.full((6, 16), np.nan, dtype)[:, ::2]):
        assert gemm.matmul(a, b, out=out) is out
        np.testing.assert_array_equal(out, want)
    with pytest.raises(ValueError, match=r"matmul: expected out of shape \(6, 8\) and dtype float\d+, got \(8, 6\)"):
        gemm.matmul(a, b, out=np.empty((8, 6), dtype))
    with pytest.raises(ValueError, match=r"expected out of shape \(6, 8\) and dtype float32, got \(6, 8\) and float64"):
        gemm.matmul(a.astype(np.float32), b.astype(np.float32), out=np.empty((6, 8)))


@pytest.mark.parametrize("input_grad", [True, False])
def test_im2col_convolution_never_runs_blas_on_its_own_threads(monkeypatch, input_grad):
    """The im2col path's products go through ``matmul``, whose BLAS runs on one thread beside Numba's
    pool. With numpy's own ``np.matmul`` on OpenBLAS's threads (as it once was), a product and Numba's
    spinning workers took turns by scheduler ticks: article's 16->32 forward at batch 8 took 8.0 ms
    instead of 0.4-0.7 (AMD EPYC, fresh processes). Every product here, split or not, must run with
    OpenBLAS at one thread, even when the process asks for two."""
    from minicnn.functional.conv import conv2d_backward_im2col, conv2d_forward_im2col
    controls = runtime._openblas_controls()
    if not controls:
        pytest.fail("numpy's wheels ship OpenBLAS; without it this test cannot see BLAS's threads")
    seen = []
    numpy_matmul, split = np.matmul, gemm.gemm_parts.parallel

    def numpy_product(*args, **kwargs):
        seen.append(max(get() for get, _ in controls))
        return numpy_matmul(*args, **kwargs)

    def split_product(*args):
        seen.append(max(get() for get, _ in controls))
        return split(*args)

    monkeypatch.setattr(np, "matmul", numpy_product)
    monkeypatch.setattr(gemm, "gemm_parts", SimpleNamespace(parallel=split_product))
    previous = [(get(), put) for get, put in controls]
    for _, put in previous:
        put(2)
    try:
        rng = generator(5)
        x = rng.standard_normal((20, 16, 14, 14)).astype(np.float32)  # two chunks of cols (13 images each)
        w = rng.standard_normal((32, 16, 5, 5)).astype(np.float32)
        out, cache = conv2d_forward_im2col(x, w, None, (1, 1), (2, 2, 2, 2))
        conv2d_backward_im2col(np.ones_like(out), cache, input_grad=input_grad)
    finally:
        for count, put in previous:
            put(count)
    assert len(seen) == 2 * (2 + input_grad) and set(seen) == {1}, seen
