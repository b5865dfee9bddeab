"""The load policy of minicnn.runtime: a thread is given up per core that other processes keep busy."""
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
