"""Thread policy: Numba's pool and numpy's BLAS share the cores without fighting.

Both libraries keep worker threads that spin after each call: Numba's OpenMP
workers (unless ``OMP_WAIT_POLICY=PASSIVE``) and OpenBLAS's workers (for about
2^28 cycles, unless ``OPENBLAS_THREAD_TIMEOUT`` is set). On 2 cores a spinning
pool steals the core the other one needs. Both runtimes read these variables
once, when they start, so ``import minicnn`` sets them (``setdefault``: a value
you set wins) if neither numpy nor Numba has been imported yet: the pools then
start quiet and ``set_num_threads`` gives BLAS every thread. If numpy was
imported first, its OpenBLAS is already running with the spinning default, and
``set_num_threads`` limits BLAS to one thread instead.

What each policy costs is measured in one place: the thread-policy table of
``make bench`` (README, "Benchmarks"), each policy in a fresh process.

BLAS threads are set with ``threadpoolctl`` when it is installed (it is in the
``train`` and ``dev`` extras); the core library only needs numpy and numba.
"""

import numba

# Set by minicnn/__init__.py: did OpenBLAS and OpenMP start with the quiet settings?
QUIET_POOLS = False
_blas_limiter = None


def set_num_threads(threads=None, blas_threads=None):
    """Use ``threads`` Numba threads (default: all cores) and a BLAS policy that does not fight them.

    ``blas_threads`` defaults to ``threads`` when the pools started quiet (see the
    module docstring), else to 1. Returns the Numba thread count.
    """
    global _blas_limiter
    threads = numba.config.NUMBA_NUM_THREADS if threads is None else int(threads)
    if not 1 <= threads <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"set_num_threads: threads must be between 1 and {numba.config.NUMBA_NUM_THREADS} "
                         f"(the cores Numba sees), got {threads}")
    numba.set_num_threads(threads)
    if blas_threads is None:
        blas_threads = threads if QUIET_POOLS else 1
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return threads
    if _blas_limiter is not None:
        _blas_limiter.restore_original_limits()
    _blas_limiter = threadpool_limits(limits=blas_threads, user_api="blas")
    return threads
