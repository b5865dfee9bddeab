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
    (ours, theirs), = compare_in_states(a, b, [lambda: None], budget)
    return ours, theirs


def compare_in_states(a, b, states, budget=FULL):
    """``compare`` in each of the machine states that ``states`` enter (callables that put the machine
    in a state and return once it holds), the states taking turns: each of ``budget.repeats`` rounds
    enters every state in order and times a block of ``a()`` then a block of ``b()`` in it. A ratio
    between two states (loaded / idle) is then measured side by side, like the ratio between ``a``
    and ``b``, and a drift of the machine during the run falls on every state alike.

    Returns, for each state, two dicts of median/min/max milliseconds per call (``a``'s, ``b``'s).
    Every block holds the same number of calls, calibrated in the first state.
    """
    for enter in states:
        enter()
        for _ in range(budget.warmup):
            a()
            b()
    states[0]()
    number = max(_calibrate(a, budget.min_seconds), _calibrate(b, budget.min_seconds))
    samples = [([], []) for _ in states]
    for _ in range(budget.repeats):
        for enter, state_samples in zip(states, samples):
            enter()
            for fn, out in zip((a, b), state_samples):
                start = time.perf_counter()
                for _ in range(number):
                    fn()
                out.append((time.perf_counter() - start) / number * 1e3)
    return [tuple(dict(median=statistics.median(s), min=min(s), max=max(s)) for s in pair) for pair in samples]
