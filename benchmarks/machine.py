"""The machine a benchmark ran on, and its fp32 peak, measured two ways.

The peak is measured, not computed from the clock: the nominal clock in
/proc/cpuinfo underestimates what the cores reach (turbo). Two measurements, in
the same run: the best rate of a large float32 matrix product (numpy's BLAS and
torch's, same threads), and the rate of a loop of independent vector
multiply-adds on every thread (``fma_peak_gflops``: no memory, the cores' own
ceiling). Every "% of peak" in the report is of the higher of the two. On AMD's
family 26 (Zen 5) the matrix products reach less than half of the loop's rate
(225 against 477 GFLOP/s), and a convolution more than the matrix products, so
the matmul alone is no ceiling there. The nominal estimate (cores x clock x
FLOP/cycle) is reported beside them.
"""
import os
import platform
import re
import time

import numba
import numpy as np
import torch
from numba import njit, prange
from threadpoolctl import threadpool_info

from minicnn.functional.simd import VECTOR_BYTES, broadcast, fma, lanes, store, zeros


def _cpuinfo():
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def cpu_name(info=None):
    """``"AMD EPYC (family 26, model 2)"``: the model name with the CPUID family and model.

    A virtual machine may show only ``AMD EPYC`` as the model name; the family and model tell
    the generations apart (family 25 is AMD's Zen 3 and Zen 4, family 26 Zen 5)."""
    info = _cpuinfo() if info is None else info
    model = re.search(r"model name\s*:\s*(.*)", info)
    name = model.group(1).strip() if model else platform.processor()
    family = re.search(r"cpu family\s*:\s*(\d+)", info)
    number = re.search(r"^model\s*:\s*(\d+)", info, re.MULTILINE)
    if family and number:
        name += f" (family {family.group(1)}, model {number.group(1)})"
    return name


def cpu_label():
    """``"AMD EPYC (family 26, model 2), 2 cores, AVX-512"``: the CPU, the cores this process may use
    and the widest vector ISA."""
    info = _cpuinfo()
    flags = set((re.search(r"flags\s*:\s*(.*)", info) or re.search("()", "")).group(1).split())
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
    return f"{cpu_name(info)}, {len(os.sched_getaffinity(0))} cores, {vector}"


def compiled_for():
    """What the libraries were limited to, when not this CPU's own widest ISA: minicnn's kernels
    compile for ``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES``, torch's oneDNN stops at
    ``ONEDNN_MAX_CPU_ISA``, its MKL at ``MKL_ENABLE_INSTRUCTIONS``, and numpy's OpenBLAS takes the
    kernels of ``OPENBLAS_CORETYPE`` (how an AVX2 machine is imitated on an AVX-512 one: each library
    otherwise picks its kernels by the CPU it finds, and OpenBLAS and MKL take their AVX-512 ones).
    Empty otherwise."""
    limits = []
    if os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"):
        limits.append(f"minicnn compiled for {os.environ.get('NUMBA_CPU_NAME', 'the host')} "
                      f"({'AVX-512' if VECTOR_BYTES == 64 else 'AVX2'} vectors)")
    for variable, what in (("ONEDNN_MAX_CPU_ISA", "torch's oneDNN limited to"),
                           ("MKL_ENABLE_INSTRUCTIONS", "torch's MKL limited to"),
                           ("OPENBLAS_CORETYPE", "numpy's OpenBLAS on its kernels for")):
        if os.environ.get(variable):
            limits.append(f"{what} {os.environ[variable]}")
    return "; ".join(limits)


def matmul_peak_gflops(n=4096, repeats=5):
    """Best GFLOP/s of an n x n float32 matrix product, over numpy's BLAS and torch, in this process."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    at = torch.from_numpy(a)
    best = {}
    for name, product in (("numpy", lambda: a @ a), ("torch", lambda: at @ at)):
        product()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            product()
            times.append(time.perf_counter() - start)
        best[name] = 2 * n**3 / min(times) / 1e9
    return best


@njit
def _fma_chains(x, steps, out, at):
    """12 independent chains of vector multiply-adds, ``steps`` long, stored so that none is optimized
    away. 12: at least an FMA's latency times its units on x86 cores (4 cycles x 2), and with the two
    operands 14 registers, which AVX2's 16 hold (16 chains spilled there: 73 against 121 GFLOP/s a core, AMD EPYC family 26)."""
    a, b = broadcast(x, 0), broadcast(x, 1)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = s8 = s9 = s10 = s11 = zeros(x)
    for _ in range(steps):
        s0, s1, s2, s3 = fma(a, s0, b), fma(a, s1, b), fma(a, s2, b), fma(a, s3, b)
        s4, s5, s6, s7 = fma(a, s4, b), fma(a, s5, b), fma(a, s6, b), fma(a, s7, b)
        s8, s9, s10, s11 = fma(a, s8, b), fma(a, s9, b), fma(a, s10, b), fma(a, s11, b)
    L = lanes(x)
    for k, s in enumerate((s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11)):
        store(out, at + k * L, s)


@njit(parallel=True)
def _fma_chains_on_threads(x, steps, out, threads):
    for t in prange(threads):
        _fma_chains(x, steps, out, t * CHAINS * lanes(x))


CHAINS = 12


def fma_peak_gflops(threads=None, steps=10_000_000, repeats=5):
    """Best GFLOP/s of float32 vector multiply-adds in registers, on ``threads`` threads (Numba's count
    by default): the cores' fp32 ceiling at the clock they run, with the vectors minicnn compiles for."""
    threads = threads or numba.get_num_threads()
    x = np.array([0.999, 0.001], np.float32)
    out = np.zeros(threads * CHAINS * VECTOR_BYTES // 4, np.float32)
    _fma_chains_on_threads(x, 10, out, threads)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        _fma_chains_on_threads(x, steps, out, threads)
        best = max(best, threads * steps * CHAINS * 2 * (VECTOR_BYTES // 4) / (time.perf_counter() - start) / 1e9)
    return best


def blas_description(info):
    """One BLAS library of ``threadpoolctl.threadpool_info()``: its name, version, the CPU its kernels
    were chosen for (OpenBLAS picks them by the CPU it finds, or by ``OPENBLAS_CORETYPE``: on the
    AMD EPYC of family 25 it reports ``SkylakeX``, its AVX-512 kernels) and its threads."""
    name = " ".join(filter(None, (info["internal_api"], info.get("version"))))
    kernels = f"{info['architecture']} kernels, " if info.get("architecture") else ""
    threads = f"{info['num_threads']} thread" + ("s" if info["num_threads"] != 1 else "")
    return f"{name} ({kernels}{threads})"


def describe():
    """CPU, cores, clock, vector width, library versions and BLAS, the measured peaks and the nominal one."""
    info = _cpuinfo()
    mhz = [float(v) for v in re.findall(r"cpu MHz\s*:\s*([\d.]+)", info)]
    flags = set((re.search(r"flags\s*:\s*(.*)", info) or re.search("()", "")).group(1).split())
    cores = len(os.sched_getaffinity(0))
    lanes = 16 if "avx512f" in flags else 8 if "avx" in flags else 4  # fp32 lanes per vector register
    fma_units = 2 if "fma" in flags else 1
    flops_per_cycle = lanes * fma_units * (2 if "fma" in flags else 1)
    ghz = (max(mhz) if mhz else 2000.0) / 1000
    blas = [blas_description(i) for i in threadpool_info() if i["user_api"] == "blas"]
    measured = matmul_peak_gflops()
    fma_loop = fma_peak_gflops()
    return dict(
        cpu=cpu_name(info), cores=cores, ghz=round(ghz, 3),
        vector=("AVX-512" if lanes == 16 else "AVX2" if lanes == 8 else "SSE") + (" + FMA" if "fma" in flags else ""),
        flops_per_cycle_per_core=flops_per_cycle,
        nominal_peak_gflops_fp32=round(cores * ghz * flops_per_cycle, 1),
        nominal_peak_formula=f"{cores} cores x {ghz:.2f} GHz x {flops_per_cycle} FLOP/cycle "
                             f"({lanes} fp32 lanes x {fma_units} FMA units x 2)",
        matmul_gflops=measured, fma_loop_gflops=round(fma_loop, 1),
        peak_gflops_fp32=round(max(*measured.values(), fma_loop), 1),
        python=platform.python_version(), numpy=np.__version__, numba=numba.__version__,
        numba_threading_layer=_threading_layer(), torch=torch.__version__, blas=blas, limited_to=compiled_for(),
    )


def _threading_layer():
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return "not yet initialized"
