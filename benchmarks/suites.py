"""The measurements: per layer, per model, scaling with batch and threads, and the thread policies."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import torch

import minicnn as mc
from minicnn.testing.interop import to_torch

from . import probe
from .cases import SEED_MODELS, ModelPair, layer_cases, layer_flops, model_flops
from .timing import compare, compare_in_states


def _inputs(sample_shape, batch, layer, rng):
    if isinstance(layer, (mc.NLLLoss, mc.CrossEntropyLoss)):
        x = rng.standard_normal((batch, *sample_shape)).astype(np.float32)
        return x, rng.integers(0, sample_shape[0], batch)
    return rng.random((batch, *sample_shape), dtype=np.float32), None


def _layer_pair(layer, x, target):
    """Forward and backward callables for a minicnn layer and its torch twin, on the same data."""
    layer.retain_cache()  # backward is timed many times per forward (torch: retain_graph=True)
    if target is not None:  # a loss
        twin = getattr(torch.nn, type(layer).__name__)()
        xt, tt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(target)
        out_t = [twin(xt, tt)]

        def t_forward():
            out_t[0] = twin(xt, tt)

        layer(x, target)
        return ((lambda: layer(x, target), t_forward),
                (lambda: layer.backward(), lambda: out_t[0].backward(retain_graph=True)))
    layer.train()
    twin = to_torch(layer).train()
    xt = torch.from_numpy(x).requires_grad_()
    dout = np.ones_like(layer(x))
    dout_t = torch.from_numpy(dout)
    out_t = [twin(xt)]

    def t_forward():
        out_t[0] = twin(xt)

    return ((lambda: layer(x), t_forward),
            (lambda: layer.backward(dout), lambda: out_t[0].backward(dout_t, retain_graph=True)))


def layer_suite(batches, budget, log):
    rows, rng = [], np.random.default_rng(0)
    for label, layer, shape in layer_cases():
        for batch in batches:
            if batch == 1 and isinstance(layer, mc.BatchNorm1d):
                continue  # training needs more than one value per channel (torch refuses too)
            x, target = _inputs(shape, batch, layer, rng)
            (fa, fb), (ba, bb) = _layer_pair(layer, x, target)
            flops = layer_flops(layer, shape, batch)
            for phase, a, b, f in (("forward", fa, fb, flops[0]), ("backward", ba, bb, flops[1])):
                if phase == "backward":
                    fa(), fb()
                ours, theirs = compare(a, b, budget)
                rows.append(dict(kind="layer", name=label, phase=phase, batch=batch, flops=f,
                                 minicnn=ours, torch=theirs))
                log(rows[-1])
    return rows


def model_suite(batches, budget, log):
    rows, rng = [], np.random.default_rng(0)
    for name in SEED_MODELS:
        for batch in batches:
            pair = ModelPair(name, batch, rng)
            forward, backward = model_flops(name, batch)
            for phase, a, b, f in (("train step", pair.train_step, pair.train_step_torch, forward + backward),
                                   ("inference", pair.infer, pair.infer_torch, forward)):
                if phase == "train step" and batch == 1 and name.endswith("-bn"):
                    continue  # BatchNorm1d cannot train on one sample (torch refuses too)
                ours, theirs = compare(a, b, budget)
                rows.append(dict(kind="model", name=name, phase=phase, batch=batch, flops=f,
                                 minicnn=ours, torch=theirs))
                log(rows[-1])
            if batch == 64:  # the optimizer's step alone (its cost does not depend on the batch)
                pair.train_step(), pair.train_step_torch()  # gradients and momentum buffers in place
                ours, theirs = compare(pair.opt.step, pair.opt_t.step, budget)
                rows.append(dict(kind="model", name=name, phase="SGD step (momentum 0.9)", batch=batch, flops=None,
                                 minicnn=ours, torch=theirs))
                log(rows[-1])
    return rows


def scaling_suite(batches, threads, budget, log):
    """Time per image of an ``article`` training step against batch size, and the 1 -> N thread speed-up."""
    rows, rng = [], np.random.default_rng(1)
    for batch in batches:
        pair = ModelPair("article", batch, rng)
        ours, theirs = compare(pair.train_step, pair.train_step_torch, budget)
        rows.append(dict(kind="scaling", name="article", phase="train step", batch=batch,
                         minicnn=ours, torch=theirs))
        log(rows[-1])
    for name in SEED_MODELS:
        pair = ModelPair(name, 64, rng)
        for n in sorted({1, threads}):
            mc.set_num_threads(n)
            torch.set_num_threads(n)
            ours, theirs = compare(pair.train_step, pair.train_step_torch, budget)
            rows.append(dict(kind="threads", name=name, phase="train step", batch=64, threads=n,
                             minicnn=ours, torch=theirs))
            log(rows[-1])
    mc.set_num_threads(threads)
    torch.set_num_threads(threads)
    return rows


SPINNING = {"OMP_WAIT_POLICY": "ACTIVE", "OPENBLAS_THREAD_TIMEOUT": ""}
# (label, environment for a fresh process, BLAS threads as a function of the thread count or None for
# minicnn's default policy, whether the process imports numpy and torch before minicnn, whether it
# calls set_num_threads)
POLICIES = [
    ("spinning pools, Numba N + BLAS N", SPINNING, lambda threads: threads, False, True),
    ("spinning pools, Numba N + BLAS 1", SPINNING, lambda threads: 1, False, True),
    ("minicnn imported first (default policy)", {}, None, False, True),
    ("numpy and torch imported first (default policy)", {}, None, True, True),
    ("numpy and torch imported first, no set_num_threads call", {}, None, True, False),
    ("minicnn imported first, malloc left alone (MINICNN_MALLOC=default)", {"MINICNN_MALLOC": "default"}, None, False,
     True),
]


def thread_policy_suite(threads, budget, log):
    """The fight between Numba's and BLAS's thread pools, and minicnn's policy (each in a fresh process).

    Spinning pools: OpenMP workers spin without end after a parallel region (OMP_WAIT_POLICY=ACTIVE)
    and OpenBLAS workers spin for its default timeout. minicnn's default leaves the wait policy as
    libgomp's default, runs every product on Numba's threads with one BLAS thread each, and starts its
    pool at the first kernel (see minicnn.runtime).
    """
    rows = []
    for label, env, blas, numpy_first, set_threads in POLICIES:
        args = ["policy", threads if set_threads else 0, budget.repeats]
        args += [] if blas is None else ["--blas-threads", blas(threads)]
        for row in probe.run(*args, env=dict(os.environ, **env), numpy_first=numpy_first):
            rows.append(dict(kind="policy", phase=label, batch=64, **row))
            log(rows[-1])
    return rows


IDLE_POLICIES = [("Numba's workers bound to a core each (default)", 1),
                 ("workers not bound (set_num_threads(bind_workers=False))", 0)]


def idle_suite(repeats, log):
    """Inference at batch 1, one call every 100 ms of sleep, each policy in a fresh process (probe.idle)."""
    rows = []
    for label, bind in IDLE_POLICIES:
        for row in probe.run("idle", bind, repeats):
            rows.append(dict(kind="idle", phase=label, batch=1, **row))
            log(rows[-1])
    return rows


# How long each state of the load suite lasts before its blocks are timed: minicnn's load policy reads
# /proc/stat at most five times a second (runtime.free_threads), so it has seen the new state by then.
SETTLE_SECONDS = 0.3


def _settle(step, seconds=SETTLE_SECONDS):
    """Run ``step`` (untimed) for ``seconds``."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        step()


def load_suite(budget, log, batch=64):
    """Each seed model's training step with and without a busy process pinned to one core.

    The busy process is a pure-Python loop; the slowdown (loaded / idle, per engine) is what a shared
    machine costs each library. Idle and loaded take turns (``compare_in_states``): the busy process
    is stopped (SIGSTOP) for the idle blocks and continued (SIGCONT) for the loaded ones, each state
    held for ``SETTLE_SECONDS`` of minicnn steps before its blocks are timed. So both slowdowns come
    from the same stretch of time, and a disturbance of the machine falls on idle and loaded alike.
    """
    rows = []
    pairs = [ModelPair(name, batch, np.random.default_rng(3)) for name in SEED_MODELS]
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(busy.pid, {max(os.sched_getaffinity(0))})
        for pair in pairs:
            def idle(step=pair.train_step):
                busy.send_signal(signal.SIGSTOP)
                _settle(step)

            def loaded(step=pair.train_step):
                busy.send_signal(signal.SIGCONT)
                _settle(step)

            (ours, theirs), (ours_busy, theirs_busy) = compare_in_states(
                pair.train_step, pair.train_step_torch, [idle, loaded], budget)
            rows.append(dict(kind="load", name=pair.name, phase="train step", batch=batch, minicnn=ours,
                             torch=theirs, minicnn_loaded=ours_busy, torch_loaded=theirs_busy))
            log(rows[-1])
    finally:
        busy.kill()
        busy.wait()
    return rows


def memory_suite(batch=256):
    """Peak memory of one training step per model and engine, each in a fresh process."""
    return {name: {engine: probe.run("memory", engine, name, batch) for engine in ("minicnn", "torch")}
            for name in SEED_MODELS}
