"""Hypothesis strategies shared by the tests: layer configurations and inputs.

Arrays are drawn from a numpy Generator seeded by hypothesis (fast, and shrinkable through the seed).
"""
import numpy as np
from hypothesis import strategies as st

from minicnn.functional.norm import CHANNEL_BLOCK

DTYPES = st.sampled_from([np.float32, np.float64])
IMPLS = st.sampled_from(["fast", "naive"])  # MaxPool2d: the argmax kernels or the direct loops
CONV_IMPLS = st.sampled_from(["fast", "im2col", "naive"])  # Conv2d: fast_conv, im2col + BLAS, the direct loops
seeds = st.integers(0, 2**32 - 1)
small = st.integers(1, 3)
# Channels per group around the fast convolution's tile blocks (a vector holds 16 float32 or 8 float64
# with AVX-512, half with AVX2; a wide tile two vectors): one vector or less, two, more than two.
tile_channels = st.sampled_from([1, 3, 8, 9, 16, 17, 33])


def generator(seed):
    return np.random.default_rng(seed)


def array(rng, shape, dtype, ties=False):
    """Standard-normal values, or with ``ties`` a few repeated small integers (max-pool ties)."""
    if ties:
        return rng.integers(-2, 3, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def pairs(lo, hi):
    return st.tuples(st.integers(lo, hi), st.integers(lo, hi))


@st.composite
def conv_cases(draw, channels=small, extra_size=6, kernels=pairs(1, 4)):
    """Conv2d arguments and an input shape whose padded size fits the kernel.

    Covers batch 1 and the empty batch, unbatched (C, H, W) input, odd sizes, non-square kernels,
    strides, dilation, padding ('same' and 'valid' too), every padding_mode and groups; ``channels``
    draws the input and output channels per group, and each input side is at most ``extra_size``
    longer than the kernel needs; ``kernels`` draws the kernel's (height, width).
    """
    groups = draw(st.integers(1, 3))
    in_channels, out_channels = groups * draw(channels), groups * draw(channels)
    kernel = draw(kernels)
    dilation = draw(pairs(1, 2))
    padding = draw(st.one_of(pairs(0, 2), st.sampled_from(["same", "valid"])))
    stride = (1, 1) if padding == "same" else draw(pairs(1, 3))
    pads = (0, 0) if isinstance(padding, str) else padding
    padding_mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    spatial = []
    for k, d, p in zip(kernel, dilation, pads):
        smallest = max(1, d * (k - 1) + 1 - 2 * p)
        if padding_mode in ("reflect", "circular"):  # reflect needs pad < size, circular pad <= size
            smallest = max(smallest, d * (k - 1) + 1, p + 1)
        spatial.append(draw(st.integers(smallest, smallest + extra_size)))
    batch = draw(st.sampled_from(["unbatched", 0, 1, 2, 3]))
    shape = (in_channels, *spatial) if batch == "unbatched" else (batch, in_channels, *spatial)
    return dict(args=dict(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel,
                          stride=stride, padding=padding, dilation=dilation, groups=groups,
                          bias=draw(st.booleans()), padding_mode=padding_mode),
                shape=shape)


@st.composite
def pool_cases(draw):
    """MaxPool2d arguments and an input shape with at least one output position."""
    kernel = draw(pairs(1, 4))
    dilation = draw(pairs(1, 2))
    stride = draw(st.one_of(st.none(), pairs(1, 3)))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    spatial = []
    for k, d, p in zip(kernel, dilation, padding):
        smallest = max(1, d * (k - 1) + 1 - 2 * p)
        spatial.append(draw(st.integers(smallest, smallest + 7)))
    batch = draw(st.sampled_from(["unbatched", 0, 1, 2, 3]))  # 0: the empty batch
    channels = draw(small)
    return dict(args=dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                          ceil_mode=draw(st.booleans())),
                shape=(channels, *spatial) if batch == "unbatched" else (batch, channels, *spatial))


@st.composite
def batchnorm_cases(draw):
    """BatchNorm1d/2d arguments, an input shape with > 1 value per channel, and a mode."""
    kind = draw(st.sampled_from(["1d-NC", "1d-NCL", "2d"]))
    channels = draw(st.integers(1, 4))
    if kind == "1d-NC" and draw(st.booleans()):  # several blocks of the kernels that walk rows, the last one partial
        channels = draw(st.sampled_from([CHANNEL_BLOCK - 1, CHANNEL_BLOCK + 1, 2 * CHANNEL_BLOCK + 3]))
    batch = draw(st.integers(0, 4))  # 0: the empty batch, which torch accepts
    spatial = {"1d-NC": (), "1d-NCL": (draw(st.integers(1, 5)),),
               "2d": (draw(st.integers(1, 4)), draw(st.integers(1, 4)))}[kind]
    if batch * int(np.prod(spatial)) == 1:
        batch = 2
    return dict(kind=kind,
                args=dict(num_features=channels, eps=draw(st.sampled_from([1e-5, 1e-3, 0.1])),
                          momentum=draw(st.sampled_from([0.1, 0.0, 0.5, 1.0, None])),
                          affine=draw(st.booleans()), track_running_stats=draw(st.booleans()),
                          bias=draw(st.booleans())),
                shape=(batch, channels, *spatial),
                training=draw(st.booleans()))


@st.composite
def loss_cases(draw):
    """Input shape (N, C), (N, C, d1, ..., dK) or unbatched (C,), reduction, class weights (of either
    sign), ignore_index, and for cross-entropy label smoothing and class-probability targets."""
    c = draw(st.integers(1, 6))
    layout = draw(st.sampled_from(["2d", "2d", "k-dim", "unbatched"]))
    if layout == "unbatched":
        shape = (c,)
    else:
        n = draw(st.integers(0, 6))  # 0: the empty batch
        extra = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))) if layout == "k-dim" else ()
        shape = (n, c, *extra)
    return dict(shape=shape, c=c, reduction=draw(st.sampled_from(["mean", "sum", "none"])),
                weighted=draw(st.sampled_from([None, "positive", "any sign"])), ignore=draw(st.booleans()),
                scale=draw(st.sampled_from([1.0, 10.0, 1000.0])),
                label_smoothing=draw(st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0])),
                probabilities=draw(st.booleans()))
