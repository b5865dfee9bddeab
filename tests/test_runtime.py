"""The load policy of minicnn.runtime: a thread is given up per core that other processes keep busy."""
import json
import os
import subprocess
import sys
import time
import types

import pytest

from minicnn import runtime


@pytest.mark.parametrize("busy, own, elapsed, taken", [
    (0.05, 0.0, 0.2, 0),   # a quarter of a core: below OTHERS_THRESHOLD
    (0.28, 0.2, 0.2, 0),   # 0.4 of a core once this process's own 0.2 s is taken off
    (0.30, 0.2, 0.2, 1),   # half a core: counted
    (0.40, 0.2, 0.2, 1),   # one core busy besides this process's own time
    (0.30, 0.2, 0.1, 1),   # the same share over a shorter window
    (0.60, 0.0, 0.2, 3),   # three busy cores
    (0.10, 0.3, 0.2, 0),   # own time beyond the cores' ticks (tick rounding): none taken
])
def test_cores_taken_counts_other_processes_from_half_a_core(busy, own, elapsed, taken):
    assert runtime.OTHERS_THRESHOLD == 0.5
    assert runtime.cores_taken(busy, own, elapsed) == taken


def test_a_busy_process_takes_a_thread(monkeypatch):
    """With a busy process pinned to one of this process's cores, ``free_threads`` gives up one thread
    after a window, and a kernel then takes its serial build."""
    monkeypatch.setattr(runtime, "ADAPT_TO_LOAD", True)
    monkeypatch.setattr(runtime, "_load", type(runtime._load)(checked=None, busy=0.0, own=0.0, taken=0))
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(busy.pid, {max(os.sched_getaffinity(0))})
        time.sleep(0.3)  # the busy process is running
        runtime.free_threads(4)  # the window starts
        time.sleep(runtime.LOAD_WINDOW * 2)
        assert runtime.free_threads(4) <= 3
        assert runtime.free_threads(2) == 1
        monkeypatch.setattr(runtime.numba, "get_num_threads", lambda: 2)
        kernel = runtime.parallel_kernel(lambda a: a)
        assert kernel.for_work(runtime.SERIAL_BELOW) is kernel.serial
    finally:
        busy.kill()
        busy.wait()


def test_adapt_to_load_off_keeps_every_thread(monkeypatch):
    monkeypatch.setattr(runtime, "_load", type(runtime._load)(checked=0.0, busy=0.0, own=0.0, taken=1))
    monkeypatch.setattr(runtime, "ADAPT_TO_LOAD", False)
    assert runtime.free_threads(2) == 2
    monkeypatch.setattr(runtime, "ADAPT_TO_LOAD", True)
    monkeypatch.setattr(runtime, "time", types.SimpleNamespace(monotonic=lambda: 0.1))  # inside the window
    assert runtime.free_threads(2) == 1


BIND_PROBE = """{first}
import json, os, threading, numba, numpy as np, minicnn
from minicnn import runtime
{before}
minicnn.Conv2d(4, 8, 3)(np.ones((64, 4, 32, 32), np.float32))  # a parallel kernel starts Numba's pool
ids = runtime._native_thread_ids()
def affinity():
    return {{tid: sorted(os.sched_getaffinity(tid)) for tid in ids}}
state = dict(cores=sorted(os.sched_getaffinity(0)), caller=threading.get_native_id(), ids=ids,
             threads=numba.config.NUMBA_NUM_THREADS, tasks=sorted(map(int, os.listdir('/proc/self/task'))),
             at_start=affinity())
minicnn.set_num_threads(bind_workers=False)
state['unbound'] = affinity()
minicnn.set_num_threads(bind_workers=True)
state['bound_again'] = affinity()
print(json.dumps(state))
"""


@pytest.mark.parametrize("first", ["import minicnn, numpy, torch", "import numpy, torch, minicnn"])
@pytest.mark.parametrize("before", ["", "minicnn.set_num_threads(bind_workers=False)"])
def test_numba_workers_are_bound_to_a_core_each_and_the_calling_thread_is_not(first, before):
    """Whichever libgomp runs Numba's pool (torch's, when torch came first), its first parallel kernel
    binds worker i to the i-th of the process's cores and leaves the calling thread alone;
    ``set_num_threads(bind_workers=False)`` gives the workers every core back, or, called first,
    starts them unbound."""
    code = BIND_PROBE.format(first=first, before=before)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    state = json.loads(out.stdout.strip().splitlines()[-1])
    cores, ids = state["cores"], state["ids"]
    affinity = {name: {int(tid): cpus for tid, cpus in state[name].items()} for name in
                ("at_start", "unbound", "bound_again")}
    assert len(ids) == state["threads"] and len(set(ids)) == len(ids) and set(ids) <= set(state["tasks"])
    assert ids[0] == state["caller"]
    bound = {tid: [cores[i % len(cores)]] for i, tid in enumerate(ids) if i}
    everywhere = {tid: cores for tid in ids}
    assert affinity["at_start"] == ({**bound, ids[0]: cores} if not before else everywhere)
    assert affinity["unbound"] == everywhere
    assert affinity["bound_again"] == {**bound, ids[0]: cores}


def test_a_pool_that_cannot_be_bound_computes_unbound_with_a_warning():
    """Binding is a speed-up only: where the workers cannot be found (here: the probe fails as an
    unsupported platform would), the first kernel warns once and computes what the naive kernel does."""
    code = ("import warnings, numpy as np, numba.core.errors, minicnn\n"
            "from minicnn import runtime\n"
            "from minicnn.functional import conv\n"
            "def fail(): raise numba.core.errors.NumbaError('no gettid here')\n"
            "runtime._native_thread_ids = fail\n"
            "x, w, b = np.ones((64, 4, 32, 32)), np.ones((8, 4, 3, 3)), np.zeros(8)\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    out, _ = conv.conv2d_forward(x, w, b, (1, 1), (0, 0, 0, 0))\n"
            "    again, _ = conv.conv2d_forward(x, w, b, (1, 1), (0, 0, 0, 0))\n"
            "ref, _ = conv.conv2d_forward_naive(x, w, b, (1, 1), (0, 0, 0, 0))\n"
            "print([str(c.message) for c in caught], runtime._workers, np.array_equal(out, ref), np.array_equal(again, ref))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ("[\"minicnn: Numba's worker threads stay unbound (no gettid here)\"] {} True True")
