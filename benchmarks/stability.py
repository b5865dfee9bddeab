"""``python -m benchmarks.stability [--model M] [--batch B] [--windows N] [--pause S]``: how this
machine's speed moves while one process runs.

In one process, window after window (``--pause`` seconds apart): the multiply-add loop's GFLOP/s on
one thread and on every thread (``machine.fma_peak_gflops``, the best of 5 short runs), the medians
of 10 training steps of a seed model in minicnn and 10 in torch, taking turns
(``conv_layers.alternating_medians``), and the steal time that
Linux reports for the machine's vCPUs over the window (``/proc/stat``, in jiffies: time the
hypervisor gave to something else). One line per window, then a summary: each engine's range, the
range of the per-window ratio, and the correlation of the two engines' times across windows.

A correlation near 1 with a steady ratio says that the machine, not either engine, moved; that
is why every comparison in ``make bench`` alternates blocks of the two engines and takes ratios
within one run.
"""
import argparse
import time

import numpy as np
import torch

import minicnn as mc

from .cases import SEED_MODELS, ModelPair
from .conv_layers import alternating_medians
from .machine import fma_peak_gflops


def steal_jiffies(stat_text):
    """The steal time summed over the per-CPU lines (``cpu0``, ``cpu1``, ...) of ``/proc/stat``'s
    text: the 8th number of each line (user nice system idle iowait irq softirq steal ...)."""
    total = 0
    for line in stat_text.splitlines():
        fields = line.split()
        if fields and fields[0].startswith("cpu") and fields[0] != "cpu":
            total += int(fields[8])
    return total


def _read_steal():
    with open("/proc/stat") as stat:
        return steal_jiffies(stat.read())


def measure_window(pair, steps=10, fma_steps=300_000):
    """One window: {"fma_1": GFLOP/s, "fma_all": GFLOP/s, "minicnn": ms, "torch": ms, "steal": jiffies}."""
    before = _read_steal()
    window = {"fma_1": fma_peak_gflops(threads=1, steps=fma_steps), "fma_all": fma_peak_gflops(steps=fma_steps)}
    window["minicnn"], window["torch"], _ = alternating_medians(pair.train_step, pair.train_step_torch,
                                                                blocks=steps, calls=1)
    window["steal"] = _read_steal() - before
    return window


def summarize(windows):
    """Across windows: (min, median, max) of each engine's step, the ratio's (min, quartiles, max),
    the two engines' correlation, the multiply-add loop's (min, median, max) on every thread, and
    the steal time in all."""
    ours = np.array([w["minicnn"] for w in windows])
    theirs = np.array([w["torch"] for w in windows])
    fma = np.array([w["fma_all"] for w in windows])

    def spread(values):
        return float(values.min()), float(np.median(values)), float(values.max())

    return {"minicnn": spread(ours), "torch": spread(theirs),
            "ratio": tuple(float(q) for q in np.percentile(ours / theirs, [0, 25, 50, 75, 100])),
            "correlation": float(np.corrcoef(ours, theirs)[0, 1]) if len(windows) > 1 else float("nan"),
            "fma_all": spread(fma), "steal": sum(w["steal"] for w in windows)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stability",
                                     description="How this machine's speed moves while one process runs.")
    parser.add_argument("--model", choices=SEED_MODELS, default="notebook")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--windows", type=int, default=60)
    parser.add_argument("--pause", type=float, default=5.0, help="seconds between windows")
    args = parser.parse_args(argv)
    if args.windows < 1 or args.batch < 1 or args.pause < 0:
        parser.error(f"--windows and --batch must be at least 1 and --pause not negative, got "
                     f"{args.windows}, {args.batch} and {args.pause}")
    threads = mc.set_num_threads()
    torch.set_num_threads(threads)
    pair = ModelPair(args.model, args.batch, np.random.default_rng(0))
    for _ in range(3):
        pair.train_step()
        pair.train_step_torch()
    print(f"{args.model}, training step at batch {args.batch}, {threads} threads; medians of 10 steps per window, the engines taking turns")
    windows = []
    for index in range(args.windows):
        if index:
            time.sleep(args.pause)
        w = measure_window(pair)
        windows.append(w)
        print(f"{time.strftime('%H:%M:%S')}  multiply-add loop {w['fma_1']:6.1f} GFLOP/s on 1 thread, "
              f"{w['fma_all']:6.1f} on {threads}  |  step minicnn {w['minicnn']:7.2f} ms, torch {w['torch']:7.2f} ms, "
              f"ratio {w['minicnn'] / w['torch']:.2f}  |  steal {w['steal']} jiffies", flush=True)
    s = summarize(windows)
    print(f"{len(windows)} windows: minicnn {s['minicnn'][0]:.2f} / {s['minicnn'][1]:.2f} / {s['minicnn'][2]:.2f} ms "
          f"(min / median / max), torch {s['torch'][0]:.2f} / {s['torch'][1]:.2f} / {s['torch'][2]:.2f}; "
          f"ratio per window {' / '.join(f'{q:.2f}' for q in s['ratio'])} (min, quartiles, max); "
          f"correlation of the two {s['correlation']:.2f}; multiply-add loop on every thread "
          f"{s['fma_all'][0]:.0f} / {s['fma_all'][1]:.0f} / {s['fma_all'][2]:.0f} GFLOP/s; steal {s['steal']} jiffies")
    return s


if __name__ == "__main__":
    main()
