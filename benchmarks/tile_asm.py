"""``python -m benchmarks.tile_asm``: what each generated outer-product tile's inner loop compiles to.

For every ``microkernels.outer_tile_RxV`` and ``outer_row_tile_RxV`` (float32), counts in the
assembly of its loop over taps:
the multiply-adds (``vfmadd``), how many of them take their broadcast straight from memory
(``{1to16}``/``{1to8}``, AVX-512 only), separate broadcasts (``vbroadcastss``), and operands on the
stack (``rsp``: values the registers could not hold). Compiled for the CPU Numba targets, so with
``NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=...,-avx512f`` it shows the AVX2 build on any machine.
"""
import numpy as np
from numba import njit

from minicnn.functional import make_microkernels, microkernels


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
    x = np.zeros(1 << 16, np.float32)
    offsets = np.zeros(400, np.int64)
    tile = np.zeros(16 * 64, np.float32)
    print("tile                FMAs  from-memory broadcasts  broadcasts  stack operands   (one pass of the unrolled loop)")
    for R, V in make_microkernels.OUTER_TILES:
        for kind, first in (("outer_tile", np.zeros(R, np.int64)), ("outer_row_tile", 0)):
            fresh = njit(getattr(microkernels, f"_{kind}_{R}x{V}"))  # not cached, so its assembly can be read
            fresh(x, first, offsets, offsets.size, x, 32, 0, tile)
            fmas, from_memory, broadcasts, stack = counts(loop_of(fresh.inspect_asm(fresh.signatures[0])))
            print(f"{kind + f'_{R}x{V}':<18}  {fmas:4d}  {from_memory:22d}  {broadcasts:10d}  {stack:14d}")


if __name__ == "__main__":
    main()
