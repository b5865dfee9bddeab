"""``python -m benchmarks.profile_conv``: where the time of article's second convolution goes, piece by piece.

Times each stage of ``conv2d_forward`` / ``conv2d_backward`` (16->32 channels, 5x5, padding 2, 14x14,
batch 64, float32) for the whole batch at once: im2col, the three matrix products, the layout copy and
col2im, with the GEMMs' GFLOP/s beside a large matmul's (the practical peak) measured in the same run.
Medians of 30 calls, in this process, with minicnn's thread policy.
"""
import statistics
import time

import numpy as np

import minicnn as mc
from minicnn.functional.conv import col2im, conv2d_geometry, gemm_to_nchw, im2col

from .machine import matmul_peak_gflops


def median_ms(fn, calls=30):
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main(N=64, C=16, H=14, F=32, K=5, P=2):
    mc.set_num_threads()
    rng = np.random.default_rng(0)
    x = rng.random((N, C, H, H), dtype=np.float32)
    w = rng.random((F, C, K, K), dtype=np.float32)
    geo = conv2d_geometry(x.shape, w.shape, (1, 1), (P, P, P, P), (1, 1))
    positions = geo.out_h * geo.out_w
    cols = np.empty((C * K * K, N * positions), np.float32)
    w_mat = w.reshape(F, -1)
    out_mat = w_mat @ cols
    dout_mat = rng.random((F, N * positions), dtype=np.float32)
    dcols = w_mat.T @ dout_mat
    gemm_flops = 2 * F * C * K * K * N * positions
    stages = [
        ("im2col", lambda: im2col(x, K, K, *geo, cols), 0),
        ("forward GEMM  W @ cols", lambda: w_mat @ cols, gemm_flops),
        ("GEMM result to NCHW (+bias)", lambda: gemm_to_nchw(out_mat, np.zeros(F, np.float32),
                                                            np.empty((N, F, positions), np.float32)), 0),
        ("dW GEMM  dout @ cols.T", lambda: dout_mat @ cols.T, gemm_flops),
        ("dcols GEMM  W.T @ dout", lambda: w_mat.T @ dout_mat, gemm_flops),
        ("col2im", lambda: col2im(dcols, N, C, H, H, K, K, *geo, np.empty_like(x)), 0),
    ]
    peak = matmul_peak_gflops()["numpy"]
    print(f"Conv2d {C}->{F} {K}x{K} p{P} on {N}x{C}x{H}x{H}, float32; a 4096² float32 matmul: {peak:.0f} GFLOP/s")
    for name, fn, flops in stages:
        ms = median_ms(fn)
        rate = f"  {flops / ms / 1e6:6.1f} GFLOP/s" if flops else ""
        print(f"  {name:<30} {ms:7.3f} ms{rate}")


if __name__ == "__main__":
    main()
