"""Process policy: minicnn computes on one thread pool, Numba's, the same whatever was imported
first, and freed memory is kept for reuse.

* **One pool.** Every parallel kernel runs on Numba's OpenMP threads, the matrix products of
  ``Linear`` included (``functional.gemm`` calls numpy's own BLAS kernel from a ``prange``). BLAS
  runs on one thread inside them (``blas_threads``, set around each call and restored after it), so
  numpy's BLAS pool never runs beside Numba's inside a step, and numpy's other products in your
  process keep your settings. On 2 cores a second pool beside Numba's steals the core the other
  one needs: with Linear's products split on a Python thread pool instead, notebook's Linear
  2000->500 took 2.6 ms forward inside a training step and 1.3 ms on its own (AMD EPYC, batch 64),
  because Numba's OpenMP worker was still spinning on the other core.
* **Started at the first kernel, with the OpenMP wait policy left alone.** Numba's pool starts at the
  first parallel kernel, ``set_num_threads`` or ``threads_for``, not at import, and with whatever
  wait policy the environment sets (libgomp's default: a worker spins for a while after each
  parallel region, then sleeps; torch's default too). An OpenMP runtime is shared: torch's wheel
  loads its own ``libgomp.so.1`` with global symbols and Numba's ``omppool``, started after it,
  runs on it (``gdb`` shows Numba's worker in ``torch/lib/libgomp.so.1``'s ``gomp_barrier_wait_end``).
  So whenever torch is imported before minicnn first computes, in any order of the imports, one
  OpenMP pool, torch's, runs both. Started before torch is imported, Numba's system ``libgomp.so.1``
  is the one torch then takes (same soname), and torch is slower on it: article's step in torch
  15.7-16.0 ms against 12.5-14.3 ms on its own (AMD EPYC, batch 64, fresh processes); hence not at
  import. Earlier versions started the pool passive (``OMP_WAIT_POLICY=PASSIVE``): torch sharing it
  took 17.8 ms against 13.1, and minicnn's own steps were slower idle (notebook at batch 64, fresh
  processes: 11.1-14.2 ms passive, 8.7-10.6 ms with the default; AMD EPYC). docs/threads.md has
  the measurements under load.

* **Workers bound to a core each.** When the pool starts, each of Numba's worker threads is bound to
  one of the process's cores (the calling thread never is): unbound, a parallel region after the
  process had slept 100 ms took 7.6 ms instead of 0.35 (AMD EPYC; "A core per worker" below).

**Freed memory is kept for reuse** (glibc only): arrays up to 32 MB come from malloc's heap instead of
fresh ``mmap`` pages, and freed memory is not handed back to the kernel at once. A step allocates its
temporaries and outputs again each time, and fresh pages cost a page fault each; measured on the AMD
EPYC machine, article's 16->32 convolution at batch 64 took 723 page faults and 4.5 ms per call, and
3.0 ms with none (``python -m benchmarks.profile_conv`` counts them). The price: the process keeps the memory of its
largest step resident after the step. ``MINICNN_MALLOC=default`` in the environment, or any
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` / ``GLIBC_TUNABLES`` you set, leaves malloc alone.

BLAS threads are set through OpenBLAS's own ``openblas_get_num_threads`` / ``openblas_set_num_threads``
(numpy's wheels ship OpenBLAS); with another BLAS they are left alone. What each policy costs is
measured by ``make bench`` (README, "Benchmarks").
"""
import ctypes
import os
import threading
import time
import types
import warnings

import numba
import numba.core.errors
import numpy as np
from numba import prange

MALLOC_TUNED = False  # set by configure_at_import: did it keep freed memory for reuse?
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_THRESHOLD = 1 << 30
BLAS_THREADS = 1  # the BLAS threads of minicnn's own matrix products (set_num_threads changes it)
_pool_started = False
_openblas = None  # [(get, set)] of the OpenBLAS libraries loaded, found at the first BLAS call


def start_numba_pool():
    """Start Numba's threads, once (the module docstring says why not at import), and bind its
    workers to a core each (``bind_workers``). Every path of minicnn that runs or sizes a parallel
    kernel calls it first."""
    global _pool_started
    if not _pool_started:
        try:
            from numba.np.ufunc import parallel
        except ImportError:  # pragma: no cover - Numba without parallel support
            return
        parallel._launch_threads()
        _pool_started = True
        if BIND_WORKERS:
            _bind_or_warn(True)


# ---------------------------------------------------------------------------
# A core per worker
# ---------------------------------------------------------------------------
# A parallel region after the process slept took a scheduler tick or two: on the 2-core AMD EPYC, a
# 1M-element ReLU as a parallel region took 0.05 ms back to back and 7.6 ms after a 100 ms sleep
# (0.33 ms serially), and torch's own regions did the same; with the worker bound to its own core,
# 0.35 ms (docs/threads.md). `perf sched timehist` showed the woken worker queued on the core of
# the calling thread, which spun at the region's end barrier in its turns, while the other core
# idled. Only Numba's workers are bound: the calling thread, yours, keeps the affinity you gave it.
BIND_WORKERS = True  # set_num_threads(bind_workers=False) turns it off
_workers = {}  # {native thread id: core} of the workers bound


def _worker_thread_ids(gettid, out):
    """out[i] = the native thread id of Numba's thread i (each thread writes its own entry)."""
    for _ in prange(out.size * 64):
        out[numba.get_thread_id()] = gettid()


worker_thread_ids = numba.njit(parallel=True, cache=True)(_worker_thread_ids)


def _native_thread_ids():
    """The native thread ids of Numba's threads, index = ``numba.get_thread_id()`` (0: the caller),
    found by a region on every thread; None where glibc has no ``gettid``."""
    try:
        gettid = ctypes.CDLL(None).gettid
    except AttributeError:
        return None
    gettid.argtypes, gettid.restype = [], ctypes.c_int
    threads = numba.get_num_threads()
    out = np.zeros(numba.config.NUMBA_NUM_THREADS, np.int64)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    try:
        worker_thread_ids(gettid, out)
    finally:
        numba.set_num_threads(threads)
    return [int(tid) for tid in out]


def bind_worker_threads(bind):
    """Bind each of Numba's worker threads to one core of the process's cores (worker i to the i-th,
    wrapping around), or with ``bind=False`` give them back every core of the process. The calling
    thread is never bound. Returns {native thread id: core} of the workers bound."""
    global BIND_WORKERS
    BIND_WORKERS = bool(bind)
    if not _pool_started:
        return {}
    cores = sorted(os.sched_getaffinity(0))
    if bind and not _workers:
        ids = _native_thread_ids() or []
        caller = threading.get_native_id()
        for index, tid in enumerate(ids):
            if index and tid and tid != caller:
                _workers[tid] = cores[index % len(cores)]
    for tid, core in list(_workers.items()):
        try:
            os.sched_setaffinity(tid, {core} if bind else cores)
        except OSError:  # the thread is gone, or the core is not ours any more
            del _workers[tid]
    if not bind:
        _workers.clear()
    return dict(_workers)


def _bind_or_warn(bind):
    """``bind_worker_threads(bind)``; where the workers cannot be found or bound, a warning, and the
    pool computes as it is (the binding is a speed-up only)."""
    try:
        bind_worker_threads(bind)
    except (OSError, numba.core.errors.NumbaError) as error:
        warnings.warn(f"minicnn: Numba's worker threads stay unbound ({error})", RuntimeWarning, stacklevel=3)


def _keep_freed_memory():
    """glibc's ``mallopt``: serve arrays up to MMAP_THRESHOLD from the heap and keep freed memory.

    Returns whether it did; it does not when the user chose (the variables in the module docstring),
    or when the C library is not glibc."""
    if os.environ.get("MINICNN_MALLOC", "").lower() == "default":
        return False
    if any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def configure_at_import():
    """Called once by ``import minicnn``: keep freed memory for reuse. (Thread pools are left alone
    until minicnn first computes; see the module docstring.)"""
    global MALLOC_TUNED
    MALLOC_TUNED = _keep_freed_memory()


def _openblas_libraries():
    """The OpenBLAS libraries loaded in this process (Linux: from /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1]}
    except OSError:
        return []
    return sorted(paths)


def _openblas_controls():
    """[(get_num_threads, set_num_threads)] of each OpenBLAS library numpy loaded (none with another BLAS)."""
    global _openblas
    if _openblas is None:
        import numpy  # noqa: F401 - numpy loads its BLAS
        controls = []
        for path in _openblas_libraries():
            library = ctypes.CDLL(path)
            for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", "64_"), ("openblas", "")):
                get = getattr(library, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(library, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    put.argtypes = [ctypes.c_int]
                    controls.append((get, put))
                    break
        _openblas = controls
    return _openblas


class blas_threads:
    """``with blas_threads(n):`` runs the block's numpy matrix products on ``n`` BLAS threads (default
    ``BLAS_THREADS``), then restores each OpenBLAS's previous count.

    A class rather than a ``contextlib.contextmanager`` generator: it is entered around every small
    product (a Linear layer at batch 1), and the generator's machinery cost more than the rest: enter
    and exit with OpenBLAS on 2 threads took 2.2 us as a generator, 1.2 us as this class, of which
    0.5-0.7 us are OpenBLAS's two ``set_num_threads`` calls (timeit, one process, AMD EPYC family 25).
    """

    __slots__ = ("threads", "previous")

    def __init__(self, threads=None):
        self.threads = BLAS_THREADS if threads is None else threads

    def __enter__(self):
        threads = self.threads
        self.previous = previous = []
        for get, put in _openblas_controls():
            count = get()
            if count != threads:
                put(threads)
                previous.append((count, put))
        return self

    def __exit__(self, *exc_info):
        for count, put in self.previous:
            put(count)
        return False


def set_num_threads(threads=None, blas_threads=None, adapt_to_load=None, bind_workers=None):
    """Use ``threads`` Numba threads (default: all cores); ``blas_threads`` (default: unchanged, 1 at
    first) is what minicnn's own matrix products get; ``adapt_to_load`` (default: unchanged, True at
    first) gives up a thread per core that other processes keep busy (``free_threads``);
    ``bind_workers`` (default: unchanged, True at first) binds each of Numba's worker threads to a
    core (the calling thread never). Returns the Numba thread count.
    """
    global BLAS_THREADS, ADAPT_TO_LOAD, BIND_WORKERS
    if adapt_to_load is not None:
        ADAPT_TO_LOAD = bool(adapt_to_load)
    threads = numba.config.NUMBA_NUM_THREADS if threads is None else int(threads)
    if not 1 <= threads <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"set_num_threads: threads must be between 1 and {numba.config.NUMBA_NUM_THREADS} "
                         f"(the cores Numba sees), got {threads}")
    if blas_threads is not None:
        if int(blas_threads) < 1:
            raise ValueError(f"set_num_threads: blas_threads must be at least 1, got {blas_threads}")
        BLAS_THREADS = int(blas_threads)
    if bind_workers is not None:
        BIND_WORKERS = bool(bind_workers)  # before the pool starts, so that it starts as asked
    started_before = _pool_started
    start_numba_pool()
    if bind_workers is not None and started_before:
        _bind_or_warn(BIND_WORKERS)
    numba.set_num_threads(threads)
    return threads


# ---------------------------------------------------------------------------
# Small work runs serially
# ---------------------------------------------------------------------------
# Work below which a kernel runs on the calling thread: element-wise kernels count elements, the
# convolution counts multiply-adds / 32 (it does about 32 per nanosecond, an element-wise pass
# about one element). A parallel region costs microseconds while the workers spin and tens of them
# once they sleep (a 5,760-element ReLU, session 20: 1.9-3.3 us parallel against 0.7-0.8 us serial
# back to back, 77-117 us against 6-16 us 20 ms after the previous call; docs/threads.md).
SERIAL_BELOW = 1 << 16


class ParallelKernel:
    """A kernel written with ``prange``, compiled twice: ``parallel`` (the loop split between the
    threads) and ``serial`` (``prange`` is then ``range``). ``for_work(n)`` picks one by the work's
    size (``SERIAL_BELOW``); calling the object itself runs the parallel one."""

    def __init__(self, function, **options):
        self.py_func = function
        self._parallel = numba.njit(parallel=True, cache=True, **options)(function)
        # Numba's on-disk cache is keyed by the function's qualified name and signature, not by
        # ``parallel``: the serial build gets a copy of the function under its own name.
        serial = types.FunctionType(function.__code__, function.__globals__, function.__name__ + "_serial",
                                    function.__defaults__, function.__closure__)
        serial.__qualname__ = function.__qualname__ + "_serial"
        serial.__doc__ = function.__doc__
        self.serial = numba.njit(cache=True, **options)(serial)

    @property
    def parallel(self):
        """The parallel build; Numba's pool is started passive first (``start_numba_pool``)."""
        start_numba_pool()
        return self._parallel

    def for_work(self, work):
        """The serial build for work below SERIAL_BELOW or when one thread is free (``threads_for``)."""
        return self.serial if threads_for(work) == 1 else self.parallel

    def __call__(self, *args):
        return self.parallel(*args)


def parallel_kernel(function, **options):
    """``ParallelKernel(function)``: use it as ``kernel = parallel_kernel(_kernel)`` at module level."""
    return ParallelKernel(function, **options)


def threads_for(work):
    """The threads a kernel given ``work`` runs on: 1 below ``SERIAL_BELOW`` (``ParallelKernel.for_work``
    takes the serial build there), else Numba's thread count less the cores that other processes
    keep busy (``free_threads``)."""
    if work < SERIAL_BELOW:
        return 1
    start_numba_pool()
    return free_threads(numba.get_num_threads())


# ---------------------------------------------------------------------------
# Other processes' load
# ---------------------------------------------------------------------------
# A parallel region waits for its slowest thread, and a thread that shares its core with another
# busy process waits for its turn on it: on the 2-core AMD EPYC, with a busy process pinned to one
# core, article's training step at batch 64 took 19-57 ms on 2 threads and 16-23 ms on 1 (idle: 9-11
# ms on 2), torch's 24-78 ms (docs/threads.md). So minicnn gives up a thread per core that other
# processes keep busy: over each LOAD_WINDOW seconds, the busy time of the cores it may run on
# (/proc/stat) less its own CPU time (all its threads', torch's included) is the others' load, in
# cores; from OTHERS_THRESHOLD of a core on, that core is counted as taken.
ADAPT_TO_LOAD = True  # set_num_threads(adapt_to_load=False) turns it off
LOAD_WINDOW = 0.2
OTHERS_THRESHOLD = 0.5
_load = types.SimpleNamespace(checked=None, busy=0.0, own=0.0, taken=0)


def _busy_seconds(cpus):
    """The CPU seconds that the cores in ``cpus`` spent busy since boot (/proc/stat: user, nice,
    system, irq, softirq and steal, the last being time the hypervisor gave to another machine), or
    None where /proc/stat cannot be read."""
    busy = 0
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                if not line.startswith("cpu"):
                    break
                name, *ticks = line.split()
                if name != "cpu" and int(name[3:]) in cpus:
                    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, ticks[:8])
                    busy += user + nice + system + irq + softirq + steal
    except (OSError, ValueError):
        return None
    return busy / os.sysconf("SC_CLK_TCK")


def cores_taken(busy, own, elapsed):
    """The cores other processes kept busy: (``busy`` CPU seconds of our cores - ``own``, the CPU
    seconds of this process) over ``elapsed`` seconds, counted from OTHERS_THRESHOLD of a core up."""
    others = max(0.0, busy - own) / elapsed
    return int(others + 1.0 - OTHERS_THRESHOLD)


def free_threads(threads):
    """``threads``, less the cores that other processes kept busy over the last LOAD_WINDOW (at least 1).

    Measured again when the last measure is older than LOAD_WINDOW (a read of /proc/stat, tens of
    microseconds, at most five times a second); with ADAPT_TO_LOAD off, ``threads``."""
    if not ADAPT_TO_LOAD or threads == 1:
        return threads
    now = time.monotonic()
    if _load.checked is None or now - _load.checked >= LOAD_WINDOW:
        busy, own = _busy_seconds(os.sched_getaffinity(0)), time.process_time()
        if busy is not None and _load.checked is not None:
            _load.taken = cores_taken(busy - _load.busy, own - _load.own, now - _load.checked)
        _load.checked, _load.busy, _load.own = now, busy or 0.0, own
    return max(1, threads - _load.taken)
