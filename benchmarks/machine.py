"""The machine a benchmark ran on, and its estimated fp32 peak."""
import os
import platform
import re


def _cpuinfo():
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def describe():
    """CPU, cores, clock, vector width, library versions and BLAS, plus the fp32 peak estimate."""
    import numba
    import numpy as np
    import torch
    from threadpoolctl import threadpool_info

    info = _cpuinfo()
    model = re.search(r"model name\s*:\s*(.*)", info)
    mhz = [float(v) for v in re.findall(r"cpu MHz\s*:\s*([\d.]+)", info)]
    flags = set((re.search(r"flags\s*:\s*(.*)", info) or re.search("()", "")).group(1).split())
    cores = len(os.sched_getaffinity(0))
    lanes = 16 if "avx512f" in flags else 8 if "avx" in flags else 4  # fp32 lanes per vector register
    fma_units = 2 if "fma" in flags else 1
    flops_per_cycle = lanes * fma_units * (2 if "fma" in flags else 1)
    ghz = (max(mhz) if mhz else 2000.0) / 1000
    blas = [f"{i['internal_api']} {i.get('version') or ''} ({i['num_threads']} threads)".replace("  ", " ")
            for i in threadpool_info() if i["user_api"] == "blas"]
    return dict(
        cpu=model.group(1).strip() if model else platform.processor(), cores=cores, ghz=round(ghz, 3),
        vector=("AVX-512" if lanes == 16 else "AVX2" if lanes == 8 else "SSE") + (" + FMA" if "fma" in flags else ""),
        flops_per_cycle_per_core=flops_per_cycle,
        peak_gflops_fp32=round(cores * ghz * flops_per_cycle, 1),
        peak_formula=f"{cores} cores x {ghz:.2f} GHz x {flops_per_cycle} FLOP/cycle "
                     f"({lanes} fp32 lanes x {fma_units} FMA units x 2)",
        python=platform.python_version(), numpy=np.__version__, numba=numba.__version__,
        numba_threading_layer=_threading_layer(), torch=torch.__version__, blas=blas,
    )


def _threading_layer():
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return "not yet initialized"
