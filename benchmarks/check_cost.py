"""``python -m benchmarks.check_cost``: what the functional API's argument checks cost a repeated call.

Times, with ``timeit`` (the minimum of five runs of 200,000 calls), each family's check of a call
whose shapes, dtypes and arguments passed before (``checks.check_once``: a key and a dict lookup).
For the convolution and the max-pool the lookup also returns the geometry the check derived (the
output size), which the call would otherwise compute; the time of computing it is printed beside.
Batch 1, the seed models' sizes.
"""
import timeit

import numpy as np

from minicnn.functional import checks, conv, linear, norm, pool


def nanoseconds(function, calls=200_000):
    return min(timeit.repeat(function, number=calls, repeat=5)) / calls * 1e9


def main():
    f32 = np.float32
    x, w, b = np.zeros((1, 16, 14, 14), f32), np.zeros((32, 16, 5, 5), f32), np.zeros(32, f32)
    xp = np.zeros((1, 16, 28, 28), f32)
    xl, wl, bl = np.zeros((1, 2000), f32), np.zeros((500, 2000), f32), np.zeros(500, f32)
    xb, gamma, beta, rm, rv = np.zeros((1, 10, 24, 24), f32), np.ones(10, f32), np.zeros(10, f32), np.zeros(10, f32), np.ones(10, f32)
    conv_args = (x, w, b, (1, 1), (2, 2, 2, 2), (1, 1), 1)
    pool_args = (xp, (2, 2), (2, 2), (0, 0), (1, 1), False)
    rows = [
        ("Conv2d 16->32 5x5 p2", nanoseconds(lambda: conv.checked_geometry("f", *conv_args))),
        ("  (its geometry, computed)", nanoseconds(lambda: conv.conv2d_geometry(x.shape, w.shape, *conv_args[3:6]))),
        ("MaxPool2d 2x2", nanoseconds(lambda: pool.checked_output_shape("f", *pool_args))),
        ("  (its output shape, computed)", nanoseconds(lambda: pool.maxpool2d_output_shape(xp.shape, *pool_args[1:]))),
        ("Linear 2000->500", nanoseconds(lambda: checks.check_once(
            linear._ACCEPTED, (xl.shape, xl.dtype, wl.shape, wl.dtype, (bl.shape, bl.dtype)), linear._check_arguments,
            xl, wl, bl))),
        ("BatchNorm2d 10 (eval)", nanoseconds(lambda: checks.check_once(
            norm._ACCEPTED, norm._call_key(xb, gamma, beta, rm, rv, False), norm._check_arguments,
            xb, gamma, beta, rm, rv, False))),
        ("a gradient's shape", nanoseconds(lambda: checks.gradient("f", xp, (1, 16, 28, 28)))),
    ]
    print("check of a repeated call          ns")
    for name, ns in rows:
        print(f"{name:<30} {ns:6.0f}")


if __name__ == "__main__":
    main()
