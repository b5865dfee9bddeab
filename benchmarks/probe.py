"""Measurements that need a fresh process: peak memory of a training step, and Numba compile time.

Run as ``python -m benchmarks.probe memory ENGINE MODEL BATCH``, ``... policy THREADS BLAS REPEATS``
or ``... compile``; each prints one JSON line. (Thread policies need a fresh process because
the thread pools read their settings once, when they start.)

Peak memory: after warm-up steps at batch 2 and building the model and data at
the measured batch, the kernel's high-water mark of resident memory is reset
(``/proc/self/clear_refs``), one step runs, and the new high water (``VmHWM``)
minus the resident size before the step is the step's peak.
For minicnn, tracemalloc's peak of numpy's allocations is reported beside it.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def memory(engine, model, batch):
    import numpy as np

    import minicnn as mc
    from benchmarks.suites import ModelPair

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


def compile_time():
    """Seconds from import to the end of the first training step and inference of every seed model."""
    start = time.perf_counter()
    import numpy as np

    from benchmarks.suites import ModelPair

    for name in ("article", "notebook", "notebook-bn"):
        pair = ModelPair(name, 2, np.random.default_rng(0))
        pair.train_step()
        pair.infer()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for name in ("article", "notebook", "notebook-bn"):
        pair = ModelPair(name, 2, np.random.default_rng(0))
        pair.train_step()
        pair.infer()
    return dict(first_seconds=first, warm_seconds=time.perf_counter() - start)


def run(*args, env=None):
    """Run this module in a subprocess and return its JSON answer."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.probe", *map(str, args)], capture_output=True,
                         text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compile_report():
    """Cold (empty Numba cache) and cached first-call times, each in a fresh process."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        cold = run("compile", env=env)
        cached = run("compile", env=env)
    return dict(cold_seconds=cold["first_seconds"], cached_seconds=cached["first_seconds"],
                warm_seconds=cached["warm_seconds"])


if __name__ == "__main__":
    if sys.argv[1] == "memory":
        print(json.dumps(memory(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    elif sys.argv[1] == "policy":
        from benchmarks.suites import policy_rows
        blas = {"None": None, "all": "all"}.get(sys.argv[3], sys.argv[3])
        print(json.dumps(policy_rows(int(sys.argv[2]), blas if blas in (None, "all") else int(blas),
                                     int(sys.argv[4]))))
    else:
        print(json.dumps(compile_time()))
