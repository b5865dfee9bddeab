"""``python -m benchmarks.tile_asm``: what each generated outer-product tile's inner loop compiles to.

For every ``microkernels.outer_tile_RxV`` (float32), counts in the assembly of its loop over taps:
the multiply-adds (``vfmadd``), how many of them take their broadcast straight from memory
(``{1to16}``/``{1to8}``, AVX-512 only), separate broadcasts (``vbroadcastss``), and operands on the
stack (``rsp``: values the registers could not hold). Compiled for the CPU Numba targets, so with
``NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=...,-avx512f`` it shows the AVX2 build on any machine.
"""
import numpy as np
from numba import njit

from minicnn.functional import make_microkernels, microkernels


def loop_of(asm):
    """The lines of the innermost loop that holds the multiply-adds: from its label to its jump back."""
    lines = asm.splitlines()
    fmas = [n for n, line in enumerate(lines) if "vfmadd" in line]
    start = max(n for n in range(fmas[0]) if lines[n].startswith(".LBB"))
    end = min(n for n in range(fmas[-1], len(lines)) if lines[n].strip().startswith("j"))
    return lines[start:end + 1]


def main():
    x = np.zeros(1 << 16, np.float32)
    offsets = np.zeros(400, np.int64)
    tile = np.zeros(16 * 64, np.float32)
    print("tile    FMAs  from-memory broadcasts  broadcasts  stack operands   (one pass of the unrolled loop)")
    for R, V in make_microkernels.OUTER_TILES:
        fresh = njit(getattr(microkernels, f"_outer_tile_{R}x{V}"))  # not cached, so its assembly can be read
        fresh(x, np.zeros(R, np.int64), offsets, offsets.size, x, 32, 0, tile)
        loop = loop_of(fresh.inspect_asm(fresh.signatures[0]))
        count = lambda text: sum(text in line for line in loop)  # noqa: E731
        print(f"{R:>2}x{V}  {count('vfmadd'):6d}  {count('{1to'):22d}  {count('vbroadcast'):10d}  {count('rsp'):14d}")


if __name__ == "__main__":
    main()
