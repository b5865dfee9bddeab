"""Measurements that need a fresh process: peak memory of a training step, the thread policies,
inference after idle time, and Numba compile time.

    python -m benchmarks.probe memory ENGINE MODEL BATCH
    python -m benchmarks.probe policy THREADS REPEATS [--blas-threads N]
    python -m benchmarks.probe compile
    python -m benchmarks.probe idle BIND REPEATS

Each prints one JSON line; ``run`` starts one and reads it. Thread policies need a fresh
process because the thread pools read their settings once, when they start.

Peak memory: after warm-up steps at batch 2 and building the model and data at
the measured batch, the kernel's high-water mark of resident memory is reset
(``/proc/self/clear_refs``), one step runs, and the new high water (``VmHWM``)
minus the resident size before the step is the step's peak.
For minicnn, tracemalloc's peak of numpy's allocations is reported beside it.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np
import torch

import minicnn as mc

from .cases import SEED_MODELS, ModelPair
from .timing import Budget, compare


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def memory(engine, model, batch):
    mc.set_num_threads()
    # Warm up on a batch of 2 (compiles kernels, starts the pools), so that the big batch's memory is
    # not already sitting in the allocator's free lists when the measured step runs.
    small = ModelPair(model, 2, np.random.default_rng(0))
    for _ in range(2):
        small.train_step() if engine == "minicnn" else small.train_step_torch()
    pair = ModelPair(model, batch, np.random.default_rng(0))
    step = pair.train_step if engine == "minicnn" else pair.train_step_torch
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = _status_kb("VmRSS")
    if engine == "minicnn":
        tracemalloc.start()
    step()
    result = dict(engine=engine, model=model, batch=batch, peak_mb=(_status_kb("VmHWM") - before) / 1024)
    if engine == "minicnn":
        result["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return result


def policy(threads, repeats, blas_threads=None):
    """minicnn and torch training steps at batch 64 with ``blas_threads`` (None: minicnn's default policy).

    ``threads`` 0: neither ``set_num_threads`` is called, as in a script that never thinks of threads.
    """
    if threads:
        mc.set_num_threads(threads, blas_threads)
        torch.set_num_threads(threads)
    rows = []
    for name in ("article", "notebook-bn"):
        pair = ModelPair(name, 64, np.random.default_rng(2))
        ours, theirs = compare(pair.train_step, pair.train_step_torch, Budget(repeats=repeats))
        rows.append(dict(name=name, minicnn=ours, torch=theirs))
    return rows


def idle(bind, repeats, gap=0.1):
    """Inference at batch 1 with the process asleep ``gap`` seconds before each call, as a server
    between requests or a notebook between cells: minicnn and torch alternate, a sleep before every
    call. ``bind`` 0 calls ``set_num_threads(bind_workers=False)`` before minicnn's first kernel.
    Returns a row per seed model of median/min/max milliseconds per call."""
    mc.set_num_threads(bind_workers=bool(bind))
    rows = []
    for name in SEED_MODELS:
        pair = ModelPair(name, 1, np.random.default_rng(4))
        times = {pair.infer: [], pair.infer_torch: []}
        for _ in range(2):  # warm-up
            pair.infer(), pair.infer_torch()
        for _ in range(repeats):
            for call, samples in times.items():
                time.sleep(gap)
                start = time.perf_counter()
                call()
                samples.append((time.perf_counter() - start) * 1e3)
        ours, theirs = (dict(median=statistics.median(s), min=min(s), max=max(s)) for s in times.values())
        rows.append(dict(name=name, minicnn=ours, torch=theirs))
    return rows


def compile_time():
    """Seconds of the first training step and inference of every seed model in a fresh process
    (Numba compiles, or loads from its cache, at a kernel's first call), then of the same work again."""
    started = time.perf_counter()
    for name in SEED_MODELS:
        pair = ModelPair(name, 2, np.random.default_rng(0))
        pair.train_step()
        pair.infer()
    first = time.perf_counter() - started
    start = time.perf_counter()
    for name in SEED_MODELS:
        pair = ModelPair(name, 2, np.random.default_rng(0))
        pair.train_step()
        pair.infer()
    return dict(first_seconds=first, warm_seconds=time.perf_counter() - start)


def run(*args, env=None, numpy_first=False):
    """Run this module in a subprocess and return its JSON answer.

    ``numpy_first``: the subprocess imports numpy and torch before anything of minicnn, as a user's
    script that starts with ``import numpy`` does.
    """
    argv = [sys.executable, "-m", "benchmarks.probe", *map(str, args)]
    if numpy_first:
        argv = [sys.executable, "-c", "import numpy, torch, runpy, sys; sys.argv = ['probe'] + sys.argv[1:]; "
                "runpy.run_module('benchmarks.probe', run_name='__main__', alter_sys=True)", *map(str, args)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compile_report():
    """Cold (empty Numba cache) and cached first-call times, each in a fresh process."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        cold = run("compile", env=env)
        cached = run("compile", env=env)
    return dict(cold_seconds=cold["first_seconds"], cached_seconds=cached["first_seconds"],
                warm_seconds=cached["warm_seconds"])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probe")
    sub = parser.add_subparsers(dest="probe", required=True)
    mem = sub.add_parser("memory")
    mem.add_argument("engine", choices=["minicnn", "torch"])
    mem.add_argument("model", choices=SEED_MODELS)
    mem.add_argument("batch", type=int)
    pol = sub.add_parser("policy")
    pol.add_argument("threads", type=int, help="0: no set_num_threads call")
    pol.add_argument("repeats", type=int)
    pol.add_argument("--blas-threads", type=int, default=None, help="default: minicnn's policy")
    sub.add_parser("compile")
    idl = sub.add_parser("idle")
    idl.add_argument("bind", type=int, choices=[0, 1], help="0: Numba's workers not bound to cores")
    idl.add_argument("repeats", type=int)
    args = parser.parse_args(argv)
    if args.probe == "memory":
        answer = memory(args.engine, args.model, args.batch)
    elif args.probe == "policy":
        answer = policy(args.threads, args.repeats, args.blas_threads)
    elif args.probe == "idle":
        answer = idle(args.bind, args.repeats)
    else:
        answer = compile_time()
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
