"""``python -m benchmarks``: minicnn (Numba) against torch on this CPU.

    python -m benchmarks [--quick] [--threads N] [--out DIR] [--update-readme]

Runs the per-layer and per-model comparisons, the thread-policy comparison,
inference after idle time, scaling with batch size and threads, peak memory and Numba compile time,
then writes ``results.json``, ``results.md``, ``ratios.png`` and ``scaling.png``.
``--quick`` finishes in about a minute (fewer batch sizes and repeats, no memory
or compile probes).
"""
import argparse
import pathlib
import sys
import time

import torch

import minicnn as mc

from . import machine, report, suites
from .probe import compile_report
from .timing import FULL, QUICK

HERE = pathlib.Path(__file__).resolve().parent


def _log(row):
    ours, theirs = row["minicnn"]["median"], row["torch"]["median"]
    extra = f" threads={row['threads']}" if "threads" in row else ""
    print(f"  {row['kind']:<8} {row['name']:<34} {row['phase']:<38} b={row['batch']:<4}{extra} "
          f"minicnn {ours:8.3f} ms  torch {theirs:8.3f} ms  ratio {ours / theirs:5.2f}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about a minute: fewer sizes and repeats")
    parser.add_argument("--threads", type=int, default=None, help="threads for both (default: all cores)")
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "results")
    parser.add_argument("--update-readme", action="store_true", help="put the table into README.md")
    args = parser.parse_args(argv)

    threads = mc.set_num_threads(args.threads)
    torch.set_num_threads(threads)
    started = time.perf_counter()
    if args.quick:
        budget, layer_batches, model_batches, scaling_batches = QUICK, (64,), (1, 64), (1, 16, 64, 256)
    else:
        budget, layer_batches, model_batches = FULL, (1, 64, 256), (1, 16, 64, 256)
        scaling_batches = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
    rows = []
    print("whole models (training step and inference):")
    rows += suites.model_suite(model_batches, budget, _log)
    print("thread pools (Numba against BLAS):")
    rows += suites.thread_policy_suite(threads, budget, _log)
    print("after idle time (a call every 100 ms):")
    rows += suites.idle_suite(5 if args.quick else 15, _log)
    print("per layer:")
    rows += suites.layer_suite(layer_batches, budget, _log)
    print("under load (a busy process pinned to one core):")
    rows += suites.load_suite(budget, _log)
    print("scaling:")
    rows += suites.scaling_suite(scaling_batches, threads, budget.fewer(max(3, budget.repeats // 2)), _log)
    results = dict(machine=machine.describe(), threads=threads, quick=args.quick, rows=rows)
    if not args.quick:
        print("peak memory (fresh processes) and compile time:")
        results["memory"] = suites.memory_suite(256)
        results["compile"] = compile_report()
    results["seconds"] = time.perf_counter() - started
    text = report.write(results, args.out, HERE.parent / "README.md" if args.update_readme else None)
    print("\n" + text)
    print(f"\nwrote {args.out}/results.json, results.md, ratios.png, scaling.png in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
