"""Side-by-side timing: warm up both, then alternate A B A B and keep every sample.

The machine is noisy, so the two contenders are always measured in the same
stretch of time, and the report quotes the median with the min and max.

Each sample is a block of calls lasting at least ``min_seconds``. A library's
worker threads keep spinning for a while after its last call (torch's OpenMP
pool does, by default), which slows whatever runs next on the same cores. In a
block that cost falls on one call of many; with single calls it would fall on
every call of whichever contender happens to run second.
"""
import dataclasses
import statistics
import time


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long to measure: ``repeats`` alternating samples, each a block of at least ``min_seconds``."""
    repeats: int = 7
    min_seconds: float = 0.1
    warmup: int = 2

    def fewer(self, repeats):
        return dataclasses.replace(self, repeats=repeats)


FULL = Budget()
QUICK = Budget(repeats=5, min_seconds=0.05)


def _calibrate(fn, min_seconds):
    """How many calls make one sample last at least ``min_seconds``."""
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds or number >= 1 << 16:
            return number
        number = max(number * 2, int(number * min_seconds / max(elapsed, 1e-9)) + 1)


def compare(a, b, budget=FULL):
    """Time ``a()`` and ``b()`` alternately. Returns two dicts of median/min/max milliseconds per call."""
    for _ in range(budget.warmup):
        a()
        b()
    number = max(_calibrate(a, budget.min_seconds), _calibrate(b, budget.min_seconds))
    samples = ([], [])
    for _ in range(budget.repeats):
        for fn, out in zip((a, b), samples):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            out.append((time.perf_counter() - start) / number * 1e3)
    return tuple(dict(median=statistics.median(s), min=min(s), max=max(s)) for s in samples)
