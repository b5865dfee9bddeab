"""Process policy: Numba's pool and numpy's BLAS share the cores without fighting, whatever was
imported first, and freed memory is kept for reuse.

Both libraries keep worker threads that spin after each call: Numba's OpenMP workers (unless
``OMP_WAIT_POLICY=PASSIVE``) and OpenBLAS's workers (for about 2^28 cycles, unless
``OPENBLAS_THREAD_TIMEOUT`` is set). On 2 cores a spinning pool steals the core the other one
needs. Each runtime reads its variable once, when it starts, so ``import minicnn`` (through
``configure_at_import``) does this:

* **Numba's pool** is started right away with ``OMP_WAIT_POLICY=PASSIVE`` set only while it
  starts, then the variable is restored. Numba's OpenMP library is its own copy (torch loads
  another), so torch's pool keeps its default, active waiting. This works whether or not numpy,
  Numba or torch were imported before, as long as no Numba parallel kernel has run yet.
* **OpenBLAS**: if numpy is not imported yet, ``OPENBLAS_THREAD_TIMEOUT=4`` is set when this module
  is imported, before it imports Numba (and so numpy) (``setdefault``:
  a value you set wins), so BLAS keeps all threads and they stop spinning at once. If numpy was
  imported first, its OpenBLAS already spins, and BLAS is limited to one thread right at import
  (``set_num_threads(blas_threads=n)`` changes it; numpy's other products in your process are
  affected too).

**Freed memory is kept for reuse** (glibc only): arrays up to 32 MB come from malloc's heap instead of
fresh ``mmap`` pages, and freed memory is not handed back to the kernel at once. A step allocates its
temporaries and outputs again each time, and fresh pages cost a page fault each; measured on the AMD
EPYC machine, article's 16->32 convolution at batch 64 took 723 page faults and 4.5 ms per call, and
3.0 ms with none (``python -m benchmarks.profile_conv`` counts them). The price: the process keeps the memory of its
largest step resident after the step. ``MINICNN_MALLOC=default`` in the environment, or any
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` / ``GLIBC_TUNABLES`` you set, leaves malloc alone.

BLAS threads are set with ``threadpoolctl`` when it is installed (the ``train`` and ``dev``
extras), else directly through OpenBLAS's ``openblas_set_num_threads``; the core needs only numpy
and numba. What each policy costs is measured by ``make bench`` (README, "Benchmarks").
"""
import ctypes
import os
import sys
import types

# Decided before anything here imports numpy (numba does): is numpy's OpenBLAS already running?
BLAS_QUIET = "numpy" not in sys.modules
if BLAS_QUIET:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numba  # noqa: E402

NUMBA_QUIET = False  # set by configure_at_import: did Numba's pool start passive?
MALLOC_TUNED = False  # set by configure_at_import: did it keep freed memory for reuse?
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_THRESHOLD = 1 << 30
_blas_limiter = None


def _start_numba_pool_passive():
    """Start Numba's threads now, with ``OMP_WAIT_POLICY=PASSIVE`` in the environment only meanwhile."""
    try:
        from numba.np.ufunc import parallel
    except ImportError:  # pragma: no cover - Numba without parallel support
        return False
    if getattr(parallel, "_is_initialized", False):
        return os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    previous = os.environ.get("OMP_WAIT_POLICY")
    os.environ["OMP_WAIT_POLICY"] = previous or "PASSIVE"
    try:
        parallel._launch_threads()
    finally:
        if previous is None:
            del os.environ["OMP_WAIT_POLICY"]
    return (previous or "PASSIVE").upper() == "PASSIVE"


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
    """Called once by ``import minicnn``: start Numba's pool passive, limit a spinning BLAS to one
    thread, and keep freed memory for reuse."""
    global NUMBA_QUIET, MALLOC_TUNED
    NUMBA_QUIET = _start_numba_pool_passive()
    MALLOC_TUNED = _keep_freed_memory()
    if not BLAS_QUIET:
        _limit_blas(1)


def _openblas_libraries():
    """The OpenBLAS libraries loaded in this process (Linux: from /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1]}
    except OSError:
        return []
    return sorted(paths)


def _limit_blas(threads):
    """Limit the BLAS behind numpy to ``threads`` threads: threadpoolctl if installed, else OpenBLAS directly."""
    global _blas_limiter
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        if _blas_limiter is not None:
            _blas_limiter.restore_original_limits()
        _blas_limiter = threadpool_limits(limits=threads, user_api="blas")
        return
    for path in _openblas_libraries():
        library = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads"):
            if hasattr(library, name):
                getattr(library, name)(ctypes.c_int(threads))
                break


def set_num_threads(threads=None, blas_threads=None):
    """Use ``threads`` Numba threads (default: all cores) and a BLAS policy that does not fight them.

    ``blas_threads`` defaults to ``threads`` when OpenBLAS started quiet (minicnn imported before
    numpy), else to 1. Returns the Numba thread count.
    """
    threads = numba.config.NUMBA_NUM_THREADS if threads is None else int(threads)
    if not 1 <= threads <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"set_num_threads: threads must be between 1 and {numba.config.NUMBA_NUM_THREADS} "
                         f"(the cores Numba sees), got {threads}")
    numba.set_num_threads(threads)
    if blas_threads is None:
        blas_threads = threads if BLAS_QUIET else 1
    _limit_blas(int(blas_threads))
    return threads


# ---------------------------------------------------------------------------
# Small work runs serially
# ---------------------------------------------------------------------------
# Work below which a kernel runs on the calling thread: element-wise kernels count elements, the
# convolution counts multiply-adds / 32 (it does about 32 per nanosecond, an element-wise pass
# about one element). Starting a parallel region costs tens of microseconds
# (a 5,760-element ReLU: 39 us parallel against 0.7 us serial; README, "Threads").
SERIAL_BELOW = 1 << 16


class ParallelKernel:
    """A kernel written with ``prange``, compiled twice: ``parallel`` (the loop split between the
    threads) and ``serial`` (``prange`` is then ``range``). ``for_work(n)`` picks one by the work's
    size (``SERIAL_BELOW``); calling the object itself runs the parallel one."""

    def __init__(self, function, **options):
        self.py_func = function
        self.parallel = numba.njit(parallel=True, cache=True, **options)(function)
        # Numba's on-disk cache is keyed by the function's qualified name and signature, not by
        # ``parallel``: the serial build gets a copy of the function under its own name.
        serial = types.FunctionType(function.__code__, function.__globals__, function.__name__ + "_serial",
                                    function.__defaults__, function.__closure__)
        serial.__qualname__ = function.__qualname__ + "_serial"
        serial.__doc__ = function.__doc__
        self.serial = numba.njit(cache=True, **options)(serial)

    def for_work(self, work):
        return self.serial if work < SERIAL_BELOW else self.parallel

    def __call__(self, *args):
        return self.parallel(*args)


def parallel_kernel(function, **options):
    """``ParallelKernel(function)``: use it as ``kernel = parallel_kernel(_kernel)`` at module level."""
    return ParallelKernel(function, **options)


def threads_for(work):
    """The threads a kernel given ``work`` runs on: 1 below ``SERIAL_BELOW`` (``ParallelKernel.for_work``
    takes the serial build there), else Numba's thread count."""
    return 1 if work < SERIAL_BELOW else numba.get_num_threads()
