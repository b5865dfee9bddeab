"""``python -m benchmarks.profile_conv``: where the time of article's second convolution goes, piece by piece.

Times the fast path of ``conv2d_forward`` / ``conv2d_backward`` (16->32 channels, 5x5, padding 2, 14x14,
batch 64, float32) stage by stage: the forward kernel (padding + outer-product tiles) on every thread
and on one, the tiles alone on one thread (what the kernel's padding, addresses and stores cost),
the whole forward call, the input gradient (the same kernel on the flipped weights) and
the weight gradient, each beside torch's time for the same operation, and the im2col path's stages
and whole calls for comparison.
GFLOP/s are beside a large float32 matmul's and a loop of vector multiply-adds' (``machine``), measured
in the same run.
Medians of 30 calls, in this process, with minicnn's thread policy and torch on the same threads.
"""
import resource
import statistics
import time

import numba
import numpy as np
import torch
import torch.nn.functional as TF

import minicnn as mc
from minicnn.functional import conv as conv_module
from minicnn.functional import fast_conv

from .machine import fma_peak_gflops, matmul_peak_gflops


def median_ms(fn, calls=30):
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def page_faults_per_call(fn, calls=20):
    """Minor page faults per call: each is a fresh page of memory the kernel had to map and zero."""
    fn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def _report(name, ms, flops=0, torch_ms=None):
    rate = f"  {flops / ms / 1e6:6.1f} GFLOP/s" if flops else " " * 16
    theirs = f"   torch {torch_ms:7.3f} ms  ratio {ms / torch_ms:4.2f}" if torch_ms else ""
    print(f"  {name:<44} {ms:7.3f} ms{rate}{theirs}")


def _pixel_bases(N, C, Hp, OH, OW):
    """base(n, oh, ow) of every output pixel, stride 1 (fast_conv's module docstring)."""
    n, oh, ow = np.meshgrid(np.arange(N), np.arange(OH), np.arange(OW), indexing="ij")
    return ((n * C * Hp + oh) * Hp + ow).reshape(-1).astype(np.int64)


@numba.njit
def _tiles_alone(wide, x, bases, offsets, w, w_stride, F, block, rows, tile):
    """Every full tile of the forward, each block of the F output channels, one after another on one
    thread, results discarded. w : (taps, w_stride) flattened."""
    for k in range(bases.size // rows):
        for f0 in range(0, F, block):
            fast_conv.outer_tile(wide, x, bases[k * rows:(k + 1) * rows], offsets, offsets.size, w, w_stride, f0, tile)


def main(N=64, C=16, H=14, F=32, K=5, P=2):
    threads = mc.set_num_threads()
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.random((N, C, H, H), dtype=np.float32)
    w = rng.random((F, C, K, K), dtype=np.float32)
    b = np.zeros(F, np.float32)
    geo = conv_module.conv2d_geometry(x.shape, w.shape, (1, 1), (P, P, P, P), (1, 1))
    OH, OW = geo.out_h, geo.out_w
    dout = rng.random((N, F, OH, OW), dtype=np.float32)
    xt, wt, dt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(dout)
    flops = 2 * N * F * OH * OW * C * K * K
    peak = matmul_peak_gflops()["numpy"]
    print(f"Conv2d {C}->{F} {K}x{K} p{P} on {N}x{C}x{H}x{H}, float32, {threads} threads; "
          f"a 4096² float32 matmul: {peak:.0f} GFLOP/s; multiply-adds in registers: "
          f"{fma_peak_gflops(threads):.0f} GFLOP/s ({fma_peak_gflops(1):.0f} on one thread)")

    _, cache = conv_module.conv2d_forward(x, w, b, (1, 1), (P,) * 4)
    Hp = H + 2 * P
    wide, rows, block = fast_conv.tile_shape(F, np.float32)
    w_taps = np.ascontiguousarray(conv_module._weight_matrix(w, 1, False, block, 1).transpose(0, 2, 1))
    offsets = conv_module._tap_offsets(C, C, K, K, 1, 1, Hp, Hp, 1)
    xp = np.empty((N, C, Hp, Hp), np.float32)
    out = np.empty((N, F, OH, OW), np.float32)
    kernel_args = (x, P, P, 1, 1, offsets, w_taps, b, 1, 1, wide)
    print(f"fast path (impl='fast'): outer-product tiles of {rows} pixels x {block} channels")
    _report("pad + tiles (conv2d_tiles_forward)",
            median_ms(lambda: fast_conv.conv2d_tiles_forward(*kernel_args, threads, xp, out)), flops)
    _report("the same on one thread (serial build)",
            median_ms(lambda: fast_conv.conv2d_tiles_forward.serial(*kernel_args, 1, xp, out)), flops)
    bases = np.ascontiguousarray(_pixel_bases(N, C, Hp, OH, OW))
    tile = np.empty(rows * block, np.float32)
    _report(f"one thread: the {rows}x{2 if wide else 1} tiles alone",
            median_ms(lambda: _tiles_alone(wide, xp.reshape(-1), bases, offsets, w_taps.reshape(-1), w_taps.shape[2], F,
                                           block, rows, tile)),
            flops)
    print(f"  {'':<44} (precomputed pixel addresses, no padding, no stores)")
    _report("whole forward (conv2d_forward)", median_ms(lambda: conv_module.conv2d_forward(x, w, b, (1, 1), (P,) * 4)),
            flops, median_ms(lambda: TF.conv2d(xt, wt, padding=P)))
    faults = page_faults_per_call(lambda: conv_module.conv2d_forward(x, w, b, (1, 1), (P,) * 4))
    print(f"  {'':<44} ({faults:.0f} page faults per call; minicnn.runtime.MALLOC_TUNED={mc.runtime.MALLOC_TUNED})")
    dw_only = median_ms(lambda: conv_module.conv2d_backward(dout, cache, input_grad=False))
    both = median_ms(lambda: conv_module.conv2d_backward(dout, cache))
    torch_input_grad = median_ms(lambda: torch.nn.grad.conv2d_input(xt.shape, wt, dt, padding=P))
    torch_weight_grad = median_ms(lambda: torch.nn.grad.conv2d_weight(xt, wt.shape, dt, padding=P))
    _report("input gradient (backward minus the next row)", both - dw_only, flops, torch_input_grad)
    _report("weight + bias gradient (input_grad=False)", dw_only, flops, torch_weight_grad)

    print("im2col path (impl='im2col'), for comparison:")
    cols = np.empty((C * K * K, N * OH * OW), np.float32)
    w_mat = w.reshape(F, -1)
    dout_mat = dout.transpose(1, 0, 2, 3).reshape(F, -1).copy()
    dcols = w_mat.T @ dout_mat
    _report("im2col", median_ms(lambda: conv_module.im2col(x, K, K, *geo, cols)))
    _report("forward GEMM  W @ cols", median_ms(lambda: w_mat @ cols), flops)
    _report("dW GEMM  dout @ cols.T", median_ms(lambda: dout_mat @ cols.T), flops)
    _report("dcols GEMM  W.T @ dout", median_ms(lambda: w_mat.T @ dout_mat), flops)
    _report("col2im", median_ms(lambda: conv_module.col2im(dcols, N, C, H, H, K, K, *geo, np.empty_like(x))))
    print(f"  {'':<44} (each GEMM above is numpy's @ on its own, on BLAS's threads)")
    _, im2col_cache = conv_module.conv2d_forward_im2col(x, w, b, (1, 1), (P,) * 4)
    _report("whole forward (conv2d_forward_im2col)",
            median_ms(lambda: conv_module.conv2d_forward_im2col(x, w, b, (1, 1), (P,) * 4)), flops,
            median_ms(lambda: TF.conv2d(xt, wt, padding=P)))
    _report("whole backward (conv2d_backward_im2col)",
            median_ms(lambda: conv_module.conv2d_backward_im2col(dout, im2col_cache)), 2 * flops,
            torch_input_grad + torch_weight_grad)
    print(f"  {'':<44} (torch: its input and weight gradients above, added)")


if __name__ == "__main__":
    main()
