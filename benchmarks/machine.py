"""The machine a benchmark ran on, and its practical fp32 peak.

The peak is measured, not computed from the clock: the nominal clock in
/proc/cpuinfo underestimates what the cores reach (turbo), so the best rate
of a large float32 matrix product (numpy's BLAS and torch's, same threads) is
the practical peak that every "% of peak" in the report refers to. The nominal
estimate (cores x clock x FLOP/cycle) is reported beside it.
"""
import os
import platform
import re
import time

import numba
import numpy as np
import torch
from threadpoolctl import threadpool_info

from minicnn.functional.simd import VECTOR_BYTES


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
    """What the two libraries were limited to, when not this CPU's own widest ISA: minicnn's kernels
    compile for ``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` and torch's oneDNN stops at
    ``ONEDNN_MAX_CPU_ISA`` (how an AVX2 machine is imitated on an AVX-512 one). Empty otherwise."""
    limits = []
    if os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"):
        limits.append(f"minicnn compiled for {os.environ.get('NUMBA_CPU_NAME', 'the host')} "
                      f"({'AVX-512' if VECTOR_BYTES == 64 else 'AVX2'} vectors)")
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        limits.append(f"torch's oneDNN limited to {os.environ['ONEDNN_MAX_CPU_ISA']}")
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


def describe():
    """CPU, cores, clock, vector width, library versions and BLAS, the measured peak and the nominal one."""
    info = _cpuinfo()
    mhz = [float(v) for v in re.findall(r"cpu MHz\s*:\s*([\d.]+)", info)]
    flags = set((re.search(r"flags\s*:\s*(.*)", info) or re.search("()", "")).group(1).split())
    cores = len(os.sched_getaffinity(0))
    lanes = 16 if "avx512f" in flags else 8 if "avx" in flags else 4  # fp32 lanes per vector register
    fma_units = 2 if "fma" in flags else 1
    flops_per_cycle = lanes * fma_units * (2 if "fma" in flags else 1)
    ghz = (max(mhz) if mhz else 2000.0) / 1000
    blas = [f"{i['internal_api']} {i.get('version') or ''} ({i['num_threads']} threads)".replace("  ", " ")
            for i in threadpool_info() if i["user_api"] == "blas"]
    measured = matmul_peak_gflops()
    return dict(
        cpu=cpu_name(info), cores=cores, ghz=round(ghz, 3),
        vector=("AVX-512" if lanes == 16 else "AVX2" if lanes == 8 else "SSE") + (" + FMA" if "fma" in flags else ""),
        flops_per_cycle_per_core=flops_per_cycle,
        nominal_peak_gflops_fp32=round(cores * ghz * flops_per_cycle, 1),
        nominal_peak_formula=f"{cores} cores x {ghz:.2f} GHz x {flops_per_cycle} FLOP/cycle "
                             f"({lanes} fp32 lanes x {fma_units} FMA units x 2)",
        matmul_gflops=measured, peak_gflops_fp32=round(max(measured.values()), 1),
        python=platform.python_version(), numpy=np.__version__, numba=numba.__version__,
        numba_threading_layer=_threading_layer(), torch=torch.__version__, blas=blas, limited_to=compiled_for(),
    )


def _threading_layer():
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return "not yet initialized"
