"""``python -m benchmarks.compile_profile [--most N]``: where Numba's compile time goes, function by function.

Runs what ``make bench``'s "Numba compile time" row times (the first training step and inference of
every seed model, batch 2: ``probe.compile_time``) from an empty cache, a new temporary
``NUMBA_CACHE_DIR``, and prints, from Numba's compile events (``numba.core.event``), the seconds of
each function Numba compiled: inclusive (with what it compiled while typing it: the functions it
calls, Numba's own ``np.empty`` and the like) and exclusive (its own). A function compiled for
several signatures is one row, its count beside it.

A first call compiles; the cache makes every later process fast (``make bench``'s "from cache" row),
so this is what a fresh clone pays once: the first ``make train`` or ``make test``.
"""
import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time

from numba.core import event

CHILD = "MINICNN_COMPILE_PROFILE_CACHE"  # set in the process that compiles: its empty cache folder


class CompileTimes(event.Listener):
    """Seconds per compiled function, inclusive and exclusive of the compiles nested in it.

    Numba compiles a function's callees while it types the function, so ``numba:compile`` events
    nest: a function's exclusive time is its inclusive time less its nested compiles' inclusive times.
    """

    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self.open = []  # [name, started, seconds of the compiles nested in it] of the compiles under way
        self.inclusive = collections.Counter()
        self.exclusive = collections.Counter()
        self.count = collections.Counter()

    @staticmethod
    def name(data):
        function = data["dispatcher"].py_func
        return f"{function.__module__}.{function.__qualname__}"

    def on_start(self, ev):
        self.open.append([self.name(ev.data), self.clock(), 0.0])

    def on_end(self, ev):
        name, started, nested = self.open.pop()
        seconds = self.clock() - started
        self.inclusive[name] += seconds
        self.exclusive[name] += seconds - nested
        self.count[name] += 1
        if self.open:
            self.open[-1][2] += seconds


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compile_profile", description=__doc__.splitlines()[0])
    parser.add_argument("--most", type=int, default=20, help="rows printed, most exclusive seconds first")
    args = parser.parse_args(argv)
    cache = os.environ.get(CHILD)
    if not cache or cache != os.environ.get("NUMBA_CACHE_DIR"):
        # Numba reads its cache folder when it is imported: compile in a new process with an empty one
        with tempfile.TemporaryDirectory(prefix="minicnn-compile-profile-") as cache:
            argv = [sys.executable, "-m", "benchmarks.compile_profile", "--most", str(args.most)]
            return subprocess.run(argv, env=dict(os.environ, NUMBA_CACHE_DIR=cache, **{CHILD: cache})).returncode
    from .probe import compile_time  # imports minicnn, whose kernels compile at their first call
    times = CompileTimes()
    with event.install_listener("numba:compile", times):
        first = compile_time()["first_seconds"]
    print(f"first training step and inference of every seed model, empty cache: {first:.1f} s, "
          f"of which Numba compiling {sum(times.exclusive.values()):.1f} s")
    print(f"{'exclusive':>10} {'inclusive':>10} {'count':>6}  function")
    for name, seconds in times.exclusive.most_common(args.most):
        print(f"{seconds:9.2f}s {times.inclusive[name]:9.2f}s {times.count[name]:6d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
