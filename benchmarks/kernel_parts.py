"""``python -m benchmarks.kernel_parts``: the one-thread cost of each part of the forward's image-tiles kernel.

Runs ``fast_conv._conv2d_image_tiles_forward`` on article's 16->32 convolution (batch 64, float32,
5x5, padding 2, 14x14), serial, with the arguments ``conv2d_forward`` gives it, and beside it
copies of the same kernel with one part left out:

    full         the kernel as it is
    no copy      the staged tiles are not copied into the output planes (bias added)
    no padding   the images are not padded again (xp keeps the last padding)
    only tiles   neither: what the tiles alone cost, over the real pixel addresses and taps
    every tap    the kernel rows that read only padding are not left out (nor, with a strip
                 of columns, any of the strip's kernel columns)

The copies are compiled from the kernel's own source with one line replaced, so they follow it.
Each is called in turn, alternating, ``--repeats`` times; the medians are printed with the
nominal GFLOP/s (every multiply-add of the layer, padding included). With
``NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=...,-avx512f`` it shows the AVX2 build.
"""
import argparse
import inspect
import statistics
import time

import numpy as np
from numba import njit

from minicnn.functional import conv, fast_conv

COPY = "planes_from_staged(staged, block, bias, first, min(block, Fg - f0), o, (n * F + first) * P, P)"
PAD = "pad_image(x, n, pad_top, pad_left, up_h, up_w, xp)"
TAPS = "begin, end = taps[k, 0], taps[k, 1]"
VARIANTS = {
    "full": [],
    "no copy": [(COPY, "pass")],
    "no padding": [(PAD, "pass")],
    "only tiles": [(COPY, "pass"), (PAD, "pass")],
    "every tap": [(TAPS, "begin, end = 0, (T if k < row_tiles else Ts)")],
}


def kernel_arguments(N=64, C=16, H=14, F=32, K=5, P=2):
    """(the arguments ``conv2d_forward`` passes to the image-tiles kernel for this layer, its
    nominal FLOPs, and its inputs x, w, b)."""
    captured = {}

    class Recorder:
        def for_work(self, work):
            def record(*args):
                captured["args"] = args
            return record

    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, H)).astype(np.float32)
    w = rng.standard_normal((F, C, K, K)).astype(np.float32)
    b = rng.standard_normal(F).astype(np.float32)
    saved = conv.conv2d_image_tiles_forward
    conv.conv2d_image_tiles_forward = Recorder()
    try:
        conv.conv2d_forward(x, w, b, (1, 1), (P,) * 4)
    finally:
        conv.conv2d_image_tiles_forward = saved
    if "args" not in captured:
        raise RuntimeError("conv2d_forward did not take the image-tiles kernel for this layer on this CPU")
    return captured["args"], 2 * N * F * H * H * C * K * K, (x, w, b)


def variant_source(name, edits):
    """The kernel's source, renamed, with ``edits`` (old line, new line) applied."""
    source = inspect.getsource(fast_conv._conv2d_image_tiles_forward)
    function_name = "_" + name.replace(" ", "_")
    source = source.replace("def _conv2d_image_tiles_forward(", f"def {function_name}(")
    for old, new in edits:
        if old not in source:
            raise RuntimeError(f"kernel_parts: {old!r} is no longer in the kernel; update VARIANTS")
        source = source.replace(old, new)
    return function_name, source


def variant(name, edits):
    """The kernel compiled from its own source with ``edits`` applied."""
    function_name, source = variant_source(name, edits)
    namespace = dict(vars(fast_conv))
    exec(source, namespace)  # noqa: S102 - the kernel's own source, edited above
    return njit(namespace[function_name])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    repeats = parser.parse_args().repeats
    args, flops, _ = kernel_arguments()
    kernels = {name: variant(name, edits) for name, edits in VARIANTS.items()}
    for kernel in kernels.values():
        kernel(*args)
    seconds = {name: [] for name in kernels}
    for _ in range(repeats):
        for name, kernel in kernels.items():
            start = time.perf_counter()
            kernel(*args)
            seconds[name].append(time.perf_counter() - start)
    print(f"article's 16->32 forward, batch 64, one thread, {fast_conv.WIDE_ROWS}-pixel wide tiles "
          f"({repeats} alternating calls each, median)")
    for name, times in seconds.items():
        median = statistics.median(times)
        print(f"  {name:<12} {median * 1e3:7.3f} ms  {flops / median / 1e9:6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
