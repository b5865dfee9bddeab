"""Conv2d against torch, and the naive kernels against the fast ones."""
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minicnn as mc
from helpers import assert_close, compare_with_torch
from minicnn.functional.conv import (conv2d_backward, conv2d_backward_im2col, conv2d_backward_naive, conv2d_forward,
                                    conv2d_forward_im2col, conv2d_forward_naive, pad2d_forward)
import minicnn.functional.conv as conv_module
from minicnn.functional.fast_conv import KERNEL_ROW_WIDTHS, round_up, tile_shape
from strategies import CONV_IMPLS, DTYPES, array, conv_cases, generator, seeds, tile_channels

pytestmark = pytest.mark.usefixtures("kernel_build")  # serial and parallel builds (conftest)


def make_conv(case, dtype, seed, impl="fast"):
    return mc.Conv2d(**case["args"], dtype=dtype, generator=np.random.default_rng(seed), impl=impl)


@given(case=conv_cases(), dtype=DTYPES, seed=seeds, impl=CONV_IMPLS)
def test_conv2d_matches_torch(case, dtype, seed, impl):
    rng = generator(seed)
    conv = make_conv(case, dtype, seed, impl)
    compare_with_torch(conv, array(rng, case["shape"], dtype), rng)


# Each way the fast kernels can run a pass, forced: row tiles wherever the stride allows, along
# the output rows ("direct") or along the padded plane ("plane"); outer-product tiles everywhere,
# running on across images ("tiles"), image by image across rows ("image tiles") or along each
# output row wherever stride and width allow ("aligned tiles": narrow tiles a kernel row at a time
# where its width allows; "aligned tiles, per tap": never), or along the rows with each row's
# leftover pixels taken across rows as a strip ("strip tiles"); and the im2col + BLAS pair.
_TILES = dict(DIRECT_MAX_TAPS=0, ROWS_BELOW_VECTOR=0, WEIGHT_ROWS_MAX_TAPS=0, ROW_ALIGNED_MAX_REPEATED=-1,
              STRIP_MAX_KERNEL_COLUMNS=0)
_ROWS = dict(DIRECT_MAX_TAPS=10**9, WEIGHT_ROWS_MAX_TAPS=10**9)
PATHS = {"direct": dict(_ROWS, PLANE_VECTORS_MAX_SHARE=0),                # row tiles along the output rows
         "plane": dict(_ROWS, PLANE_VECTORS_MAX_SHARE=10**9),             # ... along the padded plane
         "tiles": dict(_TILES, IMAGE_TILES_MAX_REPEATED=-1),             # tiles run on across images
         "image tiles": dict(_TILES, IMAGE_TILES_MAX_REPEATED=10**9),    # image by image, however many repeated
         "aligned tiles": dict(_TILES, ROW_ALIGNED_MAX_REPEATED=10**9),  # along the rows, however many repeated
         "aligned tiles, per tap": dict(_TILES, ROW_ALIGNED_MAX_REPEATED=10**9, KERNEL_ROW_WIDTHS=()),
         "strip tiles": dict(_TILES, STRIP_MAX_KERNEL_COLUMNS=10**9,     # along the rows and a strip, wherever
                             IMAGE_TILES_MAX_REPEATED=10**9),              # they fit; else image by image
         "im2col": {}}


@given(case=conv_cases(), dtype=DTYPES, seed=seeds, path=st.sampled_from(sorted(PATHS)), blocks=st.integers(1, 3))
def test_naive_and_fast_conv_agree(case, dtype, seed, path, blocks):
    """Every configuration through every path of the fast kernels; for im2col with a buffer small
    enough that ``blocks`` images are unfolded at a time, and the weight gradient's tiles taking
    ``blocks`` images at a time: several chunks, the last one partial, as at a large batch. (The tiles' own edges, a last tile past the last pixel or tap, come with every
    shape whose pixels or taps are not a multiple of the tile.)"""
    assert_naive_and_fast_agree(case, dtype, seed, path, blocks)


@given(case=conv_cases(extra_size=24), dtype=DTYPES, seed=seeds)
def test_tiles_along_rows_agree_with_naive(case, dtype, seed):
    """Outer-product tiles along the output rows need rows at least a tile long (14 or 7 pixels with
    AVX-512, 8 or 6 with AVX2): every configuration, with wider inputs; a row's last tile, moved
    back to end at the row's end, recomputes pixels of the one before whenever the tile does not
    divide the row."""
    assert_naive_and_fast_agree(case, dtype, seed, "aligned tiles", 1)


@given(case=conv_cases(extra_size=24), dtype=DTYPES, seed=seeds, path=st.sampled_from(["direct", "plane"]))
def test_row_tiles_on_wide_rows_agree_with_naive(case, dtype, seed, path):
    """Row tiles (forward, and the weight gradient's filters x taps) on rows up to 24 pixels longer
    than the kernel: full vectors of a row and its last partial one (masked), every configuration."""
    assert_naive_and_fast_agree(case, dtype, seed, path, 1)


@given(case=conv_cases(channels=tile_channels, extra_size=24,
                       kernels=st.tuples(st.integers(1, 5), st.sampled_from(KERNEL_ROW_WIDTHS))),
       dtype=DTYPES, seed=seeds)
def test_kernel_row_tiles_agree_with_naive_and_equal_per_tap_tiles(case, dtype, seed):
    """Tiles along the rows that know the kernel rows (kernel widths 3 and 5, forced wherever stride
    and width allow): narrow ones taking a kernel row's taps at once, and narrow and wide ones at an
    output row's ends leaving out the taps that read the padding's columns. Against the naive loops
    in every configuration, and to the last bit against the tiles tap by tap, whose sums take the
    same taps in the same order (a product left out is a zero, and a sum that starts at +0 is never -0)."""
    assert_naive_and_fast_agree(case, dtype, seed, "aligned tiles", 1)
    results = _forward_and_backward_by_path(case, dtype, seed, ("aligned tiles", "aligned tiles, per tap"))
    for name, by_row, by_tap in zip(("forward", "dx", "dw"), *results):
        np.testing.assert_array_equal(by_row, by_tap, err_msg=name)


def _forward_and_backward_by_path(case, dtype, seed, paths):
    """For each of ``paths``: [out, dx, dw] of one configuration, the same input, weights and output gradient."""
    rng = generator(seed)
    conv = make_conv(case, dtype, seed)
    x = array(rng, case["shape"], dtype)
    x = x if x.ndim == 4 else x[None]
    args = (conv.weight.data, None, conv.stride, conv.padding_per_side(), conv.dilation, conv.groups)
    results = []
    for path in paths:
        with mock.patch.multiple(conv_module, **PATHS[path]):
            out, cache = conv2d_forward(x, *args)
            results.append([out, *conv2d_backward(np.ones_like(out) * np.linspace(-1, 1, out.size).reshape(out.shape), cache)])
    return results


@given(case=conv_cases(channels=tile_channels, extra_size=24), dtype=DTYPES, seed=seeds)
def test_strip_tiles_agree_with_naive_and_equal_tiles_across_rows(case, dtype, seed):
    """Tiles along the rows with each row's leftover pixels taken across rows as a strip, forced
    wherever stride and width allow, the strip leaving out the kernel columns that read only the
    right padding for all its pixels: against the naive loops in every configuration, and to the
    last bit against the tiles across rows, whose sums take the same taps (ordered (i, c, j)) in
    the same order, and the padding's zeros too."""
    assert_naive_and_fast_agree(case, dtype, seed, "strip tiles", 1)
    by_strip, across_rows = _forward_and_backward_by_path(case, dtype, seed, ("strip tiles", "image tiles"))
    for name, got, want in zip(("forward", "dx", "dw"), by_strip, across_rows):
        np.testing.assert_array_equal(got, want, err_msg=name)


@st.composite
def strips_leaving_out_kernel_columns(draw):
    """(x, w, padding, dilation, groups) of a stride-1 convolution whose output rows are a few tiles
    plus s < R pixels, and whose right padding is wide enough that the strip of those s pixels
    leaves out kernel columns (the tile's R pixels: ``tile_shape``)."""
    dtype = draw(DTYPES)
    groups, Cg, Fg = draw(st.integers(1, 2)), draw(tile_channels), draw(tile_channels)
    KH, KW = draw(st.integers(1, 3)), draw(st.integers(2, 5))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    rows = tile_shape(Fg, dtype)[1]
    strip = draw(st.integers(1, rows - 1))
    right = strip + draw(st.integers(0, 2))  # strip <= right: kernel column KW - 1 reads only padding for all the strip
    left = draw(st.integers(0, dw * (KW - 1)))
    OW = draw(st.integers(1, 2)) * rows + strip
    W = OW - left - right + dw * (KW - 1)  # at least rows - 2
    top, bottom = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    smallest = max(1, dh * (KH - 1) + 1 - top - bottom)
    H = draw(st.integers(smallest, smallest + 3))
    rng = generator(draw(seeds))
    x = array(rng, (draw(st.integers(1, 3)), groups * Cg, H, W), dtype)
    w = array(rng, (groups * Fg, Cg, KH, KW), dtype)
    return x, w, (top, bottom, left, right), (dh, dw), groups


@given(case=strips_leaving_out_kernel_columns())
def test_strips_leave_out_kernel_columns_to_the_last_bit(case):
    """The strip where the default rule takes it (its kernel columns fewer than the kernel's),
    outer-product tiles forced: the forward against the naive loops, and forward and input
    gradient to the last bit against the tiles across rows."""
    x, w, padding, dilation, groups = case
    taken = []
    kernel = conv_module.conv2d_image_tiles_forward

    class Recorder:  # the strip each call of the image-tiles kernel took, and its taps against all of them
        def for_work(self, work):
            def run(*args):
                taken.append((args[14], args[16].shape[1], args[6].shape[1]))
                return kernel.for_work(work)(*args)
            return run

    results = []
    # outer-product tiles image by image: across rows, then along rows with a strip by the default rule
    for strips in (0, conv_module.STRIP_MAX_KERNEL_COLUMNS):
        with mock.patch.multiple(conv_module, **dict(PATHS["image tiles"], STRIP_MAX_KERNEL_COLUMNS=strips)), \
                mock.patch.object(conv_module, "conv2d_image_tiles_forward", Recorder()):
            taken.clear()
            out, cache = conv2d_forward(x, w, None, (1, 1), padding, dilation, groups)
            dout = np.linspace(-1, 1, out.size, dtype=out.dtype).reshape(out.shape)
            results.append([out, conv2d_backward(dout, cache)[0]])
    strip, strip_taps, taps = taken[0]  # the forward's, by the default rule
    assert strip > 0 and strip_taps < taps, taken
    assert_close(results[1][0], conv2d_forward_naive(x, w, None, (1, 1), padding, dilation, groups)[0], "forward")
    for name, by_strip, across_rows in zip(("forward", "dx"), results[1], results[0]):
        np.testing.assert_array_equal(by_strip, across_rows, err_msg=name)


@given(case=conv_cases(extra_size=24), dtype=DTYPES, seed=seeds, path=st.sampled_from(["aligned tiles", "strip tiles"]))
@settings(max_examples=40)
def test_tiles_along_rows_match_torch(case, dtype, seed, path):
    """The layer, forward and backward, with the outer-product tiles along the output rows forced
    wherever stride and width allow (a row's last tile moved back, or the rows' leftover pixels as
    a strip of columns), against torch."""
    rng = generator(seed)
    conv = make_conv(case, dtype, seed)
    with mock.patch.multiple(conv_module, **PATHS[path]):
        compare_with_torch(conv, array(rng, case["shape"], dtype), rng)


def assert_naive_and_fast_agree(case, dtype, seed, path, blocks):
    rng = generator(seed)
    conv = make_conv(case, dtype, seed)
    x = array(rng, case["shape"], dtype)
    x = x if x.ndim == 4 else x[None]  # the functional pair takes (N, C, H, W)
    pads = conv.padding_per_side()
    if conv.padding_mode != "zeros":  # the layer pads explicitly, then convolves without padding
        x, _ = pad2d_forward(x, pads, conv.padding_mode)
        pads = (0, 0, 0, 0)
    b = None if conv.bias is None else conv.bias.data
    args = (conv.weight.data, b, conv.stride, pads, conv.dilation, conv.groups)
    naive, naive_cache = conv2d_forward_naive(x, *args)
    taps = conv.weight.shape[1] * conv.kernel_size[0] * conv.kernel_size[1]
    positions = naive.shape[2] * naive.shape[3]
    Fb = round_up(conv.out_channels // conv.groups, tile_shape(conv.out_channels // conv.groups, dtype)[2])
    sizes = dict(COLS_CHUNK_ELEMENTS=blocks * taps * conv.groups * positions,
                 WEIGHT_GRAD_CHUNK_BYTES=blocks * conv.groups * positions * Fb * np.dtype(dtype).itemsize, **PATHS[path])
    forward, backward = ((conv2d_forward_im2col, conv2d_backward_im2col) if path == "im2col"
                         else (conv2d_forward, conv2d_backward))
    with mock.patch.multiple(conv_module, **sizes):
        fast, fast_cache = forward(x, *args)
        dout = array(rng, fast.shape, dtype)
        fast_grads = backward(dout, fast_cache)
        dx_skipped, *param_grads = backward(dout, fast_cache, input_grad=False)
    assert_close(fast, naive, "forward")
    for name, g_fast, g_naive in zip(("dx", "dw", "db"), fast_grads, conv2d_backward_naive(dout, naive_cache)):
        if b is None and name == "db":
            assert g_fast is None and g_naive is None
        else:
            assert_close(g_fast, g_naive, name)
    assert dx_skipped is None
    for name, g_fast, g_skipped in zip(("dw", "db"), fast_grads[1:], param_grads):
        assert (g_fast is None and g_skipped is None) or np.array_equal(g_fast, g_skipped), name


@given(case=conv_cases(channels=tile_channels), dtype=DTYPES, seed=seeds)
@settings(max_examples=40)
def test_fast_conv_across_tile_blocks_matches_torch_and_naive(case, dtype, seed):
    """The fast path with channels per group that fill one vector of a tile, two (a wide tile), or more
    blocks than one tile holds, on both sides: output channels for the forward and the weight gradient,
    input channels for the input gradient (the transposed convolution's outputs), in every configuration."""
    rng = generator(seed)
    conv = make_conv(case, dtype, seed)
    x = array(rng, case["shape"], dtype)
    compare_with_torch(conv, x, rng)
    conv.zero_grad()
    naive = make_conv(case, dtype, seed, impl="naive")
    x = x if x.ndim == 4 else x[None]
    out, ref = conv(x), naive(x)
    assert_close(out, ref, "forward")
    dout = array(rng, out.shape, dtype)
    assert_close(conv.backward(dout), naive.backward(dout), "dx")
    for p_fast, p_naive in zip(conv.parameters(), naive.parameters()):
        assert_close(p_fast.grad, p_naive.grad, "parameter gradient")


def test_conv2d_tutorial_shapes():
    """A 28x28 input with a 5x5 kernel and padding 2 stays 28x28 (the tutorial's first layer)."""
    conv = mc.Conv2d(1, 16, 5, padding=2)
    assert conv(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 16, 28, 28)
    assert mc.Conv2d(16, 32, 5, padding=2)(np.zeros((1, 16, 14, 14), np.float32)).shape == (1, 32, 14, 14)


def test_conv2d_hand_computed():
    """A 1-channel 3x3 input, 2x2 kernel of ones, bias 0.5: each output is its window's sum plus 0.5."""
    conv = mc.Conv2d(1, 1, 2, dtype=np.float64)
    conv.weight.data[...] = 1.0
    conv.bias.data[...] = 0.5
    x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
    out = conv(x)
    np.testing.assert_array_equal(out[0, 0], [[0 + 1 + 3 + 4 + 0.5, 1 + 2 + 4 + 5 + 0.5],
                                              [3 + 4 + 6 + 7 + 0.5, 4 + 5 + 7 + 8 + 0.5]])
    dx = conv.backward(np.ones_like(out))
    # Each input pixel receives one unit of gradient per window that covers it.
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    np.testing.assert_array_equal(conv.bias.grad, [4.0])
    np.testing.assert_array_equal(conv.weight.grad[0, 0], [[8, 12], [20, 24]])


@pytest.mark.parametrize("chunk_images", [1, 2])
def test_im2col_in_chunks_of_images_equals_naive(monkeypatch, chunk_images):
    """The im2col pair unfolds a few images at a time; force several chunks (the last one partial), with groups."""

    x = np.random.default_rng(0).standard_normal((5, 4, 7, 6))
    w = np.random.default_rng(1).standard_normal((6, 2, 3, 2))
    b = np.random.default_rng(2).standard_normal(6)
    args = (w, b, (2, 1), (1, 1, 0, 1), (1, 2), 2)
    naive, naive_cache = conv2d_forward_naive(x, *args)
    rows_times_positions = 4 * 3 * 2 * naive.shape[2] * naive.shape[3]
    monkeypatch.setattr(conv_module, "COLS_CHUNK_ELEMENTS", chunk_images * rows_times_positions)
    out, cache = conv2d_forward_im2col(x, *args)
    assert conv_module._images_per_chunk(4, 3, 2, naive.shape[2] * naive.shape[3], 5) == chunk_images
    assert_close(out, naive, "out")
    dout = np.random.default_rng(3).standard_normal(out.shape)
    for name, fast, naive in zip(("dx", "dw", "db"), conv2d_backward_im2col(dout, cache),
                                 conv2d_backward_naive(dout, naive_cache)):
        assert_close(fast, naive, name)
