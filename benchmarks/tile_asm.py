"""``python -m benchmarks.tile_asm``: what each generated microkernel's inner loop compiles to.

For every ``microkernels.outer_tile_RxV`` and ``outer_row_tile_RxV`` (float32), counts in the
assembly of its loop over taps (for ``dot_tile_RxC``, over vectors of the reduction):
the multiply-adds (``vfmadd``), how many of them take their broadcast straight from memory
(``{1to16}``/``{1to8}``, AVX-512 only), separate broadcasts (``vbroadcastss``), and operands on the
stack (``rsp``: values the registers could not hold). Then, for every microkernel, which vector
registers its packed multiply-adds write: ``zmm`` (512 bits), ``ymm`` (256) or ``xmm`` (128).

Compiled afresh (not from Numba's cache) for the CPU Numba targets, without running, so any CPU
can be named: ``NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=...,-avx512f`` shows the AVX2 build and
``NUMBA_CPU_NAME=skylake-avx512`` what LLVM emits for an Intel Xeon on any machine.
"""
import inspect
import re

import numpy as np
from numba import njit, typeof, types

from minicnn.functional import make_microkernels, microkernels

# What each microkernel parameter holds, by name (the generator's names): flat float arrays of the
# convolution's dtype, flat int64 arrays of offsets, and otherwise int64 scalars.
FLOAT_ARRAYS = {"x", "w", "tile", "bias", "out", "acc", "d", "a", "b"}
INDEX_ARRAYS = {"fixed", "varying", "x_at", "offsets", "o_at", "o_count", "d_at", "a_at", "b_at"}


def microkernel_names():
    """Every generated microkernel's name in ``microkernels`` (each ``name`` beside its ``_name``)."""
    return sorted(name for name in vars(microkernels) if hasattr(microkernels, "_" + name))


def compiled_assembly(name, dtype=np.float32):
    """The assembly of ``microkernels.<name>`` compiled afresh for arrays of ``dtype``, not run."""
    function = getattr(microkernels, "_" + name)
    float_array, index_array = typeof(np.zeros(1, dtype)), typeof(np.zeros(1, np.int64))
    signature = tuple(float_array if p in FLOAT_ARRAYS else index_array if p in INDEX_ARRAYS else types.int64
                      for p in inspect.signature(function).parameters)
    fresh = njit(function)
    fresh.compile(signature)
    return fresh.inspect_asm(signature)


def fma_registers(asm):
    """The kinds of vector register (``xmm``, ``ymm``, ``zmm``) that packed float32 multiply-adds
    (``vfmadd...ps``) write in ``asm``; AT&T syntax, so the destination is the last register."""
    return sorted(set(re.findall(r"vfmadd\d+ps\s[^\n#]*%([xyz]mm)\d+", asm)))


def loop_of(asm):
    """The lines of the loop that holds the first multiply-add: from its label to the jump back to it
    (the unrolled loop; the remainder after it, when the count is odd, is not counted)."""
    lines = asm.splitlines()
    first = next(n for n, line in enumerate(lines) if "vfmadd" in line)
    start = max(n for n in range(first) if lines[n].startswith(".LBB"))
    label = lines[start].rstrip(":")
    end = next(n for n in range(first, len(lines)) if lines[n].strip().startswith("j") and lines[n].split()[-1] == label)
    return lines[start:end + 1]


def counts(loop):
    """(FMAs, FMAs with a broadcast from memory, separate broadcasts, stack operands) in ``loop``."""
    count = lambda text: sum(text in line for line in loop)  # noqa: E731
    return count("vfmadd"), count("{1to"), count("vbroadcast"), count("rsp")


def main():
    print("tile                FMAs  from-memory broadcasts  broadcasts  stack operands   (one pass of the unrolled loop)")
    for R, V in make_microkernels.OUTER_TILES:
        for kind in ("outer_tile", "outer_row_tile"):
            fmas, from_memory, broadcasts, stack = counts(loop_of(compiled_assembly(f"{kind}_{R}x{V}")))
            print(f"{kind + f'_{R}x{V}':<18}  {fmas:4d}  {from_memory:22d}  {broadcasts:10d}  {stack:14d}")
    for R, C in make_microkernels.DOT_TILES:
        fmas, from_memory, broadcasts, stack = counts(loop_of(compiled_assembly(f"dot_tile_{R}x{C}")))
        print(f"{f'dot_tile_{R}x{C}':<18}  {fmas:4d}  {from_memory:22d}  {broadcasts:10d}  {stack:14d}")
    print("\nmicrokernel              registers its float32 multiply-adds write")
    for name in microkernel_names():
        print(f"{name:<24}  {' '.join(fma_registers(compiled_assembly(name)))}")


if __name__ == "__main__":
    main()
