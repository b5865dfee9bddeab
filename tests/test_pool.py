"""MaxPool2d against torch (with ties, overlap, padding, dilation, ceil_mode), naive versus fast."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, strategies as st

import minicnn as mc
from helpers import assert_close, compare_with_torch
from minicnn.functional.pool import maxpool2d_backward, maxpool2d_backward_naive, maxpool2d_forward, maxpool2d_forward_naive
from strategies import DTYPES, IMPLS, array, generator, pool_cases, seeds

pytestmark = pytest.mark.usefixtures("kernel_build")  # serial and parallel builds (conftest)


@given(case=pool_cases(), dtype=DTYPES, seed=seeds, ties=st.booleans(), impl=IMPLS)
def test_maxpool2d_matches_torch(case, dtype, seed, ties, impl):
    rng = generator(seed)
    pool, x = mc.MaxPool2d(**case["args"], impl=impl), array(rng, case["shape"], dtype, ties)
    # A window made only of padding outputs -inf; torch's backward then writes outside the input
    # (undefined behaviour), so gradients are compared only where every window holds an element.
    assume(np.isfinite(pool(x)).all())
    compare_with_torch(pool, x, rng)


@given(case=pool_cases(), dtype=DTYPES, seed=seeds, ties=st.booleans())
def test_maxpool2d_indices_match_torch(case, dtype, seed, ties):
    """The winner of every window, ties included, is the very element torch picks."""
    x = array(generator(seed), case["shape"], dtype, ties)
    out, indices = mc.MaxPool2d(**case["args"], return_indices=True)(x)
    out_t, indices_t = F.max_pool2d(torch.from_numpy(x), **case["args"], return_indices=True)
    np.testing.assert_array_equal(out, out_t.numpy())
    np.testing.assert_array_equal(indices, indices_t.numpy())


@given(case=pool_cases(), dtype=DTYPES, seed=seeds, ties=st.booleans())
def test_naive_and_fast_maxpool_agree(case, dtype, seed, ties):
    rng = generator(seed)
    pool = mc.MaxPool2d(**case["args"])
    x = array(rng, case["shape"], dtype, ties)
    x = x if x.ndim == 4 else x[None]  # the functional pair takes (N, C, H, W)
    args = (pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode)
    fast, fast_cache = maxpool2d_forward(x, *args)
    naive, naive_cache = maxpool2d_forward_naive(x, *args)
    np.testing.assert_array_equal(fast, naive)
    dout = array(rng, fast.shape, dtype)
    assert_close(maxpool2d_backward(dout, fast_cache), maxpool2d_backward_naive(dout, naive_cache), "dx")


def test_overlapping_windows_accumulate():
    """3x3 windows with stride 1 over a 4x4 input whose max is in the middle: it wins all 4 windows."""
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 2] = 5.0
    pool = mc.MaxPool2d(3, stride=1)
    out = pool(x)
    np.testing.assert_array_equal(out[0, 0], [[5, 5], [5, 5]])
    dx = pool.backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    expected = np.zeros((4, 4))
    expected[1, 2] = 10.0  # 1 + 2 + 3 + 4
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_ties_go_to_the_first_element_in_row_major_order():
    x = np.ones((1, 1, 2, 2), np.float32)
    pool = mc.MaxPool2d(2)
    pool(x)
    np.testing.assert_array_equal(pool.backward(np.full((1, 1, 1, 1), 7, np.float32))[0, 0], [[7, 0], [0, 0]])


def test_ceil_mode_tutorial_example():
    """The tutorial's 5x5 input through a 3x3 max-pool with ceil_mode gives [[2, 3], [5, 1]]."""
    x = np.array([[1, 2, 0, 3, 1], [0, 1, 2, 3, 1], [1, 2, 1, 0, 0], [5, 2, 3, 1, 1], [2, 1, 0, 1, 1]],
                 dtype=np.float32).reshape(1, 1, 5, 5)
    np.testing.assert_array_equal(mc.MaxPool2d(3, ceil_mode=True)(x)[0, 0], [[2, 3], [5, 1]])
    np.testing.assert_array_equal(mc.MaxPool2d(3)(x)[0, 0], [[2]])


def test_ceil_mode_drops_a_window_that_starts_in_the_padding():
    """I=4, k=2, s=2, p=1: ceil((4+2-2)/2)+1 = 3, and the third window starts at 3 < I+p = 5, so kept;
    I=5, k=2, s=3, p=1: ceil((5+2-2)/3)+1 = 3, but (3-1)*3 = 6 >= I+p = 6 starts in the padding: 2."""
    pool = mc.MaxPool2d(2, stride=2, padding=1, ceil_mode=True)
    assert pool(np.zeros((1, 1, 4, 4), np.float32)).shape == (1, 1, 3, 3)
    pool = mc.MaxPool2d(2, stride=3, padding=1, ceil_mode=True)
    assert pool(np.zeros((1, 1, 5, 5), np.float32)).shape == (1, 1, 2, 2)
    assert F.max_pool2d(torch.zeros(1, 1, 5, 5), 2, 3, 1, ceil_mode=True).shape == (1, 1, 2, 2)


def test_nan_wins_like_torch():
    x = np.array([[[[np.nan, 1.0], [np.nan, 2.0]]]])
    out, idx = mc.MaxPool2d(2, return_indices=True)(x)
    out_t, idx_t = F.max_pool2d(torch.from_numpy(x), 2, return_indices=True)
    assert np.isnan(out).all() and np.isnan(out_t.numpy()).all()
    np.testing.assert_array_equal(idx, idx_t.numpy())


# The seed models' pool, 2x2 windows with stride 2, which the fast kernel scans in a case of its own.
two_by_two_cases = st.builds(lambda n, c, h, w, ceil: dict(args=dict(kernel_size=2, ceil_mode=ceil), shape=(n, c, h, w)),
                             st.integers(1, 3), st.integers(1, 4), st.integers(2, 30), st.integers(2, 30), st.booleans())


@given(case=st.one_of(pool_cases(), two_by_two_cases), dtype=DTYPES, seed=seeds,
       nan_share=st.sampled_from([0.02, 0.3, 1.0]))
def test_windows_with_nans_pick_torchs_winner(case, dtype, seed, nan_share):
    """A NaN wins its window, the last NaN of it if there are several, as in torch. The fast kernel
    compares with a plain ``>`` in planes without NaN and the NaN-aware way in the others, so half
    of the planes get NaNs (``nan_share`` of their elements) and half none; values and indices are
    torch's."""
    rng = generator(seed)
    x = array(rng, case["shape"], dtype, ties=True)
    with_nans = rng.random(x.shape[:-2] + (1, 1)) < 0.5
    x[with_nans & (rng.random(x.shape) < nan_share)] = np.nan
    pool = mc.MaxPool2d(**case["args"], return_indices=True)
    out, indices = pool(x)
    out_t, indices_t = F.max_pool2d(torch.from_numpy(x), **case["args"], return_indices=True)
    np.testing.assert_array_equal(out, out_t.numpy())  # NaN where torch has NaN
    np.testing.assert_array_equal(indices, indices_t.numpy())


def test_a_window_of_only_padding_gives_minus_inf_and_no_gradient():
    """k=2, d=2, p=1 on a width-1 input: the window covers columns -1 and 1, neither of which exists."""
    x = np.ones((1, 1, 1, 1), np.float32)
    pool = mc.MaxPool2d((1, 2), padding=(0, 1), dilation=(1, 2), return_indices=True)
    out, idx = pool(x)
    out_t, idx_t = F.max_pool2d(torch.from_numpy(x), (1, 2), padding=(0, 1), dilation=(1, 2), return_indices=True)
    np.testing.assert_array_equal(out, out_t.numpy())
    np.testing.assert_array_equal(out, [[[[-np.inf]]]])
    np.testing.assert_array_equal(idx, idx_t.numpy())
    np.testing.assert_array_equal(pool.backward(np.ones_like(out)), np.zeros_like(x))
