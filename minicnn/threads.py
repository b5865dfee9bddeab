"""Thread policy: Numba's pool gets the cores, BLAS runs single-threaded.

Measured on this project's 2-core machine (``article`` training step, batch 64):
Numba 2 threads + OpenBLAS 2 threads took 132 ms, because OpenBLAS's spinning
workers and Numba's OpenMP workers fight over the same cores; Numba 2 + BLAS 1
took 31 ms; Numba 1 + BLAS 2 took 37 ms. ``benchmarks`` re-measures this.

BLAS threads are limited with ``threadpoolctl`` when it is installed (it is
part of the ``train`` and ``dev`` extras); the core library only needs numpy
and numba, so without it the BLAS setting is left alone.
"""
import os

import numba

_blas_limiter = None


def set_num_threads(threads=None, blas_threads=1):
    """Use ``threads`` Numba threads (default: all cores) and ``blas_threads`` BLAS threads.

    Returns the number of Numba threads in use.
    """
    global _blas_limiter
    threads = numba.config.NUMBA_NUM_THREADS if threads is None else int(threads)
    if not 1 <= threads <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"set_num_threads: threads must be between 1 and {numba.config.NUMBA_NUM_THREADS} "
                         f"(the cores Numba sees), got {threads}")
    numba.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return threads
    if _blas_limiter is not None:
        _blas_limiter.restore_original_limits()
    _blas_limiter = threadpool_limits(limits=blas_threads, user_api="blas")
    return threads


def cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
