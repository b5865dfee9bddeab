"""``python -m benchmarks.conv_layers [batch] [layer ...]``: the seed models' four convolutions (or the
named ones, e.g. ``"article 16->32"``), forward and backward, minicnn against torch, in a few seconds.

A quick look at the convolution alone (``make bench`` has the full table). Each pass alternates
minicnn and torch call blocks and prints their medians, the ratio of the medians, and the median of
the blocks' ratios (each minicnn block against the torch block right after it, so a slow stretch
of the machine falls on both sides of a ratio). A first layer's backward computes only the weight
and bias gradients, on both sides, as in training. Useful with the environment of another CPU kind,
for example an AVX2 machine imitated on an AVX-512 one::

    NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=+avx2,+fma,...,-avx512f ONEDNN_MAX_CPU_ISA=AVX2 \\
        python -m benchmarks.conv_layers 64

(``ONEDNN_MAX_CPU_ISA=AVX2`` makes torch's oneDNN run its ``jit:avx2`` kernels; ``ONEDNN_VERBOSE=1``
shows it.)
"""
import argparse
import statistics
import time

import numpy as np
import torch

import minicnn as mc
from minicnn.functional.conv import conv2d_backward, conv2d_forward

# name: (C, H, F, K, padding, first layer)
SEED_CONVS = {"article 1->16": (1, 28, 16, 5, 2, True), "article 16->32": (16, 14, 32, 5, 2, False),
              "notebook 1->10": (1, 28, 10, 5, 0, True), "notebook 10->20": (10, 12, 20, 3, 0, False)}


def alternating_medians(ours, theirs, blocks=21, calls=3):
    """(median ms per call of ``ours``, of ``theirs``, median of the blocks' ratios ours / theirs),
    from ``blocks`` alternating blocks of ``calls`` calls."""
    times = ([], [])
    for _ in range(blocks):
        for fn, acc in zip((ours, theirs), times):
            fn()
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            acc.append((time.perf_counter() - start) / calls * 1e3)
    return statistics.median(times[0]), statistics.median(times[1]), statistics.median(a / b for a, b in zip(*times))


def main(N=64, *layers):
    unknown = sorted(set(layers) - set(SEED_CONVS))
    if unknown:
        raise SystemExit(f"conv_layers: unknown layer(s) {unknown}; the layers are {list(SEED_CONVS)}")
    threads = mc.set_num_threads()
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    print(f"batch {N}, {threads} threads; ms per call, minicnn / torch")
    for name, (C, H, F, K, P, first) in SEED_CONVS.items():
        if layers and name not in layers:
            continue
        x = rng.standard_normal((N, C, H, H), dtype=np.float32)
        w = rng.standard_normal((F, C, K, K), dtype=np.float32) / K
        b = np.zeros(F, np.float32)
        out, cache = conv2d_forward(x, w, b, padding=(P,) * 4)
        dout = rng.standard_normal(out.shape, dtype=np.float32)
        tx = torch.from_numpy(x).requires_grad_(not first)
        tw, tb = torch.from_numpy(w).requires_grad_(), torch.from_numpy(b).requires_grad_()
        t_out = torch.nn.functional.conv2d(tx, tw, tb, padding=P)
        wrt = [tw, tb] + ([] if first else [tx])

        def torch_forward():
            with torch.no_grad():
                torch.nn.functional.conv2d(tx, tw, tb, padding=P)

        passes = (("forward", lambda: conv2d_forward(x, w, b, padding=(P,) * 4), torch_forward),
                  ("backward", lambda: conv2d_backward(dout, cache, input_grad=not first),
                   lambda: torch.autograd.grad(t_out, wrt, torch.from_numpy(dout), retain_graph=True)))
        for phase, ours, theirs in passes:
            mine, torchs, per_block = alternating_medians(ours, theirs)
            print(f"  {name:<16} {phase:<8} {mine:8.3f} {torchs:8.3f}  ratio {mine / torchs:.2f}"
                  f"  (per block {per_block:.2f})", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.conv_layers",
                                     description="The seed models' convolutions, forward and backward, minicnn against torch.")
    parser.add_argument("batch", nargs="?", type=int, default=64)
    parser.add_argument("layers", nargs="*", metavar="layer",  # checked by main (argparse's choices refuse an empty list)
                        help="the layers to time (default: all): " + ", ".join(f'"{name}"' for name in SEED_CONVS))
    arguments = parser.parse_args()
    main(arguments.batch, *arguments.layers)
