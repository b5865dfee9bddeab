"""The fast convolution's own machinery: generated microkernels, both CPU kinds, the seed models' shapes,
and skipping the input gradient."""
import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, Optional

import numba
import numpy as np
import pytest

import minicnn as mc
from helpers import assert_close
from minicnn.functional import conv as conv_module, fast_conv, make_microkernels, simd
from minicnn.functional.conv import conv2d_backward, conv2d_backward_naive, conv2d_forward, conv2d_forward_naive

ROOT = Path(__file__).resolve().parents[1]

# The seed models' convolutions: (C, H, F, K, padding)
SEED_CONVS = {"article conv1": (1, 28, 16, 5, 2), "article conv2": (16, 14, 32, 5, 2),
              "notebook conv1": (1, 28, 10, 5, 0), "notebook conv2": (10, 12, 20, 3, 0)}


def test_microkernels_are_what_the_generator_writes():
    """microkernels.py is generated; editing it by hand (or the generator without rerunning it) fails here."""
    assert Path(make_microkernels.__file__).with_name("microkernels.py").read_text() == make_microkernels.source()


def test_the_generator_finds_the_numba_caches_its_change_makes_stale(tmp_path):
    """Cached builds of microkernels, fast_conv and fast_linear (which inline them) are stale after a
    regeneration; other modules' caches, and Python's own .pyc, are not."""
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    names = ["fast_conv._pad_image-79.py311.nbi", "fast_conv._pad_image-79.py311.1.nbc",
             "microkernels._outer_tile_7x2-112.py311.nbi", "fast_linear._linear_tiles_forward-40.py311.nbi",
             "conv._im2col-171.py311.nbi", "linear._add_outer_kernel-80.py311.nbi", "fast_conv.cpython-311.pyc"]
    for name in names:
        (cache / name).touch()
    assert [p.name for p in make_microkernels.stale_numba_caches(tmp_path)] == sorted(names[:4])


@pytest.mark.parametrize("name", sorted(SEED_CONVS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_seed_model_convolutions_equal_naive(name, dtype):
    """At the seed models' real sizes, through the default choice of path (row tiles for the stride-1
    passes of fewer than DIRECT_MAX_TAPS taps or less than a vector of output channels, as the first
    layers' input gradients, and for the first layers' weight gradients; outer-product tiles for the
    rest), with a batch that does not split evenly between the threads."""
    C, H, F, K, pad = SEED_CONVS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, C, H, H)).astype(dtype)
    w = (rng.standard_normal((F, C, K, K)) / K).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    args = (w, b, (1, 1), (pad,) * 4, (1, 1), 1)
    out, cache = conv2d_forward(x, *args)
    naive, naive_cache = conv2d_forward_naive(x, *args)
    assert_close(out, naive, "forward")
    dout = rng.standard_normal(out.shape).astype(dtype)
    for what, fast, slow in zip(("dx", "dw", "db"), conv2d_backward(dout, cache), conv2d_backward_naive(dout, naive_cache)):
        assert_close(fast, slow, what)


AVX2_FEATURES = ("+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+fsgsbase,+lzcnt,+mmx,+movbe,+popcnt,"
                 "+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave,-avx512f,-avx512vl,-avx512bw,-avx512dq,-avx512cd")

# For every generated microkernel, compiled afresh and not run: which vector registers its packed
# float32 multiply-adds write (benchmarks.tile_asm), and the vector width simd compiled for.
FMA_REGISTERS = """
import json
from benchmarks import tile_asm
from minicnn.functional import simd
registers = {name: tile_asm.fma_registers(tile_asm.compiled_assembly(name)) for name in tile_asm.microkernel_names()}
print(json.dumps({"vector_bytes": simd.VECTOR_BYTES, "fma_registers": registers}))
"""


class Build(NamedTuple):
    """A script run in a fresh process whose Numba compiles for ``cpu_name`` and ``features`` (None: as
    this process's would), with a cache of its own; what it prints is the test's evidence."""
    script: str
    cpu_name: Optional[str] = None
    features: Optional[str] = None


@pytest.fixture(scope="module")
def builds(request, tmp_path_factory):
    """``Build -> CompletedProcess`` for every Build that a test of this session takes as a parameter.

    Numba compiles for one CPU a process, so each build for another CPU is a process of its own: one
    thread compiling for 15-60 s (eight of them took 191 s one after another). The first test that
    asks runs all those the session selected, as many at a time as this process has cores; each test
    then reads its own."""
    wanted = list(dict.fromkeys(value for item in request.session.items if hasattr(item, "callspec")
                                for value in item.callspec.params.values() if isinstance(value, Build)))
    caches = [tmp_path_factory.mktemp("numba-cache") for _ in wanted]

    def run(build, cache):
        env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
        env.update({name: value for name, value in (("NUMBA_CPU_NAME", build.cpu_name),
                                                    ("NUMBA_CPU_FEATURES", build.features)) if value})
        return subprocess.run([sys.executable, "-c", build.script], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)

    with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
        return dict(zip(wanted, pool.map(run, wanted, caches)))


def output_of(builds, build):
    """What ``build``'s process printed; its error output if it failed."""
    result = builds[build]
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


# The kernels of 16 vector registers on every path, compiled for AVX2, against the naive loops.
AVX2_AGAINST_NAIVE = """
import numpy as np
from unittest import mock
from minicnn.functional import conv, fast_conv, simd
assert (fast_conv.NARROW_ROWS, fast_conv.WIDE_ROWS, fast_conv.ROW_FILTERS, fast_conv.ROW_VECTORS) == (8, 6, 4, 3)
assert simd.VECTOR_BYTES == 32
rng = np.random.default_rng(1)
cases = [((3, 16, 14, 14), (32, 16, 5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 1),
         ((2, 1, 28, 28), (10, 1, 5, 5), (1, 1), (0, 0, 0, 0), (1, 1), 1),
         ((2, 4, 9, 8), (6, 2, 3, 3), (2, 1), (0, 1, 2, 1), (2, 1), 2)]
for dtype in (np.float32, np.float64):
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    for taps, plane, aligned, strip in ((0, 0, -1, 0), (0, 0, -1, 10**9), (0, 0, 10**9, 1.0), (10**9, 0, -1, 1.0),
                                        (10**9, 10**9, -1, 1.0)):
        with mock.patch.multiple(conv, DIRECT_MAX_TAPS=taps, WEIGHT_ROWS_MAX_TAPS=taps,
                                 ROWS_BELOW_VECTOR=min(taps, 1), PLANE_VECTORS_MAX_SHARE=plane,
                                 ROW_ALIGNED_MAX_REPEATED=aligned, STRIP_MAX_KERNEL_COLUMNS=strip):
            for xs, ws, stride, pad, dil, groups in cases:
                x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
                b = rng.standard_normal(ws[0]).astype(dtype)
                out, cache = conv.conv2d_forward(x, w, b, stride, pad, dil, groups)
                ref, ref_cache = conv.conv2d_forward_naive(x, w, b, stride, pad, dil, groups)
                dout = rng.standard_normal(out.shape).astype(dtype)
                pairs = [(out, ref)] + list(zip(conv.conv2d_backward(dout, cache),
                                                conv.conv2d_backward_naive(dout, ref_cache)))
                for got, want in pairs:
                    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())
print("ok")
"""


@pytest.mark.parametrize("build", [Build(AVX2_AGAINST_NAIVE, "haswell", AVX2_FEATURES)], ids=["haswell"])
def test_avx2_kernels_in_a_process_compiled_for_avx2(builds, build):
    """The 16-register kernels (8x1 and 6x2 outer-product tiles, across rows, along them and along
    them with a strip, as article's 16->32 takes by default with AVX2, and 4x3 row tiles of 32-byte
    vectors), compiled for an AVX2 CPU in a fresh process (``NUMBA_CPU_NAME/FEATURES``), equal the
    naive loops: every path, both dtypes, groups and strides."""
    assert output_of(builds, build).strip() == "ok"


AVX512_FEATURES = "+avx2,+fma,+avx512f,+avx512vl,+avx512bw,+avx512dq,+avx512cd"


@pytest.mark.parametrize("build, register", [
    (Build(FMA_REGISTERS, "haswell", AVX2_FEATURES), "ymm"),
    (Build(FMA_REGISTERS, "znver4", AVX512_FEATURES), "zmm"),
    (Build(FMA_REGISTERS, "skylake-avx512", AVX512_FEATURES), "zmm"),
    (Build(FMA_REGISTERS, "sapphirerapids", AVX512_FEATURES), "zmm"),
], ids=["haswell", "znver4", "skylake-avx512", "sapphirerapids"])
def test_every_microkernel_multiplies_on_full_width_vector_registers(builds, build, register):
    """Each tile is written for one vector register of 16 float32 (8 with AVX2). LLVM tunes its Intel
    Xeon targets to prefer 256-bit vectors (``prefer-256-bit``); had it split the tiles' ``<16 x float>``
    into halves, each multiply-add instruction would do half the work and the tile would need twice the
    registers. Compiled for AVX2, for AMD's Zen 4 and for the oldest and a recent Intel Xeon with
    AVX-512 (compiled, not run, so on any machine), every packed multiply-add of every microkernel
    writes a register of the full width: ymm for AVX2, zmm for AVX-512."""
    compiled = json.loads(output_of(builds, build))
    assert compiled["vector_bytes"] == {"ymm": 32, "zmm": 64}[register]
    assert len(compiled["fma_registers"]) == make_microkernels.source().count("\ndef _"), compiled["fma_registers"]
    assert all(kinds == [register] for kinds in compiled["fma_registers"].values()), compiled["fma_registers"]


def test_fma_registers_reads_the_destination_of_packed_float32_multiply_adds():
    """AT&T syntax puts the destination last: a broadcast from memory, a masked write, a comment
    naming another register, a scalar (``ss``) and a float64 (``pd``) multiply-add, which do not count."""
    from benchmarks.tile_asm import fma_registers
    asm = "\n".join(["\tvfmadd231ps\t(%rax,%rcx,4){1to16}, %zmm3, %zmm0",
                     "\tvfmadd213ps\t%ymm1, %ymm2, %ymm7 {%k1}",
                     "\tvfmadd231ps\t%zmm1, %zmm2, %zmm9    # 64-byte Folded Reload %xmm4",
                     "\tvfmadd231ss\t%xmm1, %xmm2, %xmm5",
                     "\tvfmadd231pd\t%xmm1, %xmm2, %xmm6"])
    assert fma_registers(asm) == ["ymm", "zmm"]
    assert fma_registers("\tvfmadd231pd\t%zmm1, %zmm2, %zmm6") == []


def test_row_vectors_cover_each_output_row_once():
    """A 3x5 output on a padded width of 7 in vectors of 2 pixels, taken 4 at a time: each row as
    columns 0-1, 2-3 and 4 (a partial vector), then the last repeated up to a multiple of 4."""
    x_at, o_at, count = fast_conv.row_vectors(3, 5, 7, 2, 4)
    rows, columns = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2], [0, 2, 4, 0, 2, 4, 0, 2, 4, 4, 4, 4]
    np.testing.assert_array_equal(x_at, [7 * r + c for r, c in zip(rows, columns)])
    np.testing.assert_array_equal(o_at, [5 * r + c for r, c in zip(rows, columns)])
    np.testing.assert_array_equal(count, [1 if c == 4 else 2 for c in columns])


def test_plane_vectors_run_along_the_padded_plane():
    """notebook's 10->20 at AVX-512's 16 lanes: a 10x10 output on a padded width of 12 spans
    9*12 + 10 = 118 pixels of the plane, 8 vectors (7.4 rounded up), against the 12 that its 10 rows of
    one partial vector each take when rounded up to the tile's 4 vectors."""
    x_at, o_at, count = fast_conv.plane_vectors(10, 10, 12, 16, 4)
    np.testing.assert_array_equal(x_at, 16 * np.arange(8))
    np.testing.assert_array_equal(o_at, 16 * np.arange(8))
    np.testing.assert_array_equal(count, [16] * 8)
    assert fast_conv.row_vectors(10, 10, 12, 16, 4)[0].size == 12
    x_at, _, _ = fast_conv.plane_vectors(2, 3, 5, 2, 4)  # 1*5 + 3 = 8 pixels: 4 vectors, none repeated
    np.testing.assert_array_equal(x_at, [0, 2, 4, 6])
    x_at, _, _ = fast_conv.plane_vectors(2, 3, 5, 4, 4)  # 2 vectors, the last repeated up to 4
    np.testing.assert_array_equal(x_at, [0, 4, 4, 4])


def test_vector_registers_follow_numba_target(monkeypatch):
    """The tile shapes follow the CPU Numba compiles for: AVX-512 has 32 vector registers, AVX2 16."""
    monkeypatch.setattr(simd.config, "CPU_FEATURES", "+avx2,+fma,+avx512f")
    assert simd.vector_registers() == 32
    monkeypatch.setattr(simd.config, "CPU_FEATURES", "+avx2,+fma,-avx512f")
    assert simd.vector_registers() == 16


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_simd_operations_against_numpy(dtype):
    """Each vector operation, compiled, against the NumPy expression it stands for; fma rounds once:
    (1 + 2^-k)^2 - (1 + 2^-(k-1)) is exactly 2^-2k, which two roundings lose (k = 13 in float32, 30 in float64)."""
    from numba import njit

    @njit
    def run(a, b, c, out):
        L = simd.lanes(a)
        simd.store(out, 0, simd.load(a, 1))
        simd.store(out, L, simd.broadcast(b, 2))
        simd.store(out, 2 * L, simd.fma(simd.load(a, 0), simd.load(b, 0), simd.load(c, 0)))
        simd.store(out, 3 * L, simd.zeros(a))
        return L

    rng = np.random.default_rng(0)
    L = simd.VECTOR_BYTES // np.dtype(dtype).itemsize
    a, b, c = (rng.standard_normal(L + 1).astype(dtype) for _ in range(3))
    out = np.full(4 * L, np.nan, dtype)
    assert run(a, b, c, out) == L
    np.testing.assert_array_equal(out[:L], a[1:])
    np.testing.assert_array_equal(out[L:2 * L], np.full(L, b[2]))
    bound = 2 * np.finfo(dtype).eps * (np.abs(a[:L] * b[:L]) + np.abs(c[:L]))  # two roundings at most apart
    assert np.all(np.abs(out[2 * L:3 * L] - (a[:L] * b[:L] + c[:L])) <= bound)
    np.testing.assert_array_equal(out[3 * L:], np.zeros(L, dtype))
    k = 13 if dtype == np.float32 else 30
    x = np.full(L + 1, 1 + 2.0 ** -k, dtype)
    run(x, x, np.full(L + 1, -(1 + 2.0 ** (1 - k)), dtype), out)
    assert x[0] * x[0] - (1 + 2.0 ** (1 - k)) == 0  # separately rounded: the low bits are lost
    np.testing.assert_array_equal(out[2 * L:3 * L], np.full(L, 2.0 ** (-2 * k), dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fma_of_scalars_rounds_once(dtype):
    """``simd.fma`` of three scalars (what the SGD kernel uses for torch's ``add(..., alpha=...)``):
    (1 + 2^-k)^2 - (1 + 2^-(k-1)) is exactly 2^-2k, which a product rounded before the sum loses."""
    from numba import njit

    fused = njit(lambda x, y, a: simd.fma(x, y, a))
    k = 13 if dtype == np.float32 else 30
    x, a = dtype(1 + 2.0 ** -k), dtype(-(1 + 2.0 ** (1 - k)))
    assert x * x + a == 0
    result = fused(x, x, a)
    assert result == 2.0 ** (-2 * k) and fused.nopython_signatures[0].return_type == numba.from_dtype(np.dtype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_masked_vector_operations_touch_only_their_first_lanes(dtype):
    """load_first zero-fills the lanes past ``count``; store_first leaves the elements past ``count`` as
    they were; every count from none to a whole vector (whole vectors take a plain load and store)."""
    from numba import njit

    @njit
    def run(a, count, out):
        simd.store_first(out, 1, simd.load_first(a, 2, count), count)
        simd.store(out, 1 + simd.lanes(a), simd.load_first(a, 2, count))

    L = simd.VECTOR_BYTES // np.dtype(dtype).itemsize
    a = np.arange(1, L + 3, dtype=dtype)
    for count in range(L + 1):
        out = np.full(2 * L + 2, -1.0, dtype)
        run(a, count, out)
        want = np.full(2 * L + 2, -1.0, dtype)
        want[1:1 + count] = a[2:2 + count]
        want[1 + L:1 + 2 * L] = np.where(np.arange(L) < count, a[2:2 + L], 0)
        np.testing.assert_array_equal(out, want, err_msg=f"count {count}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transpose_add_transposes_a_square_and_adds_a_scalar_per_row(dtype):
    """simd.transpose_add, compiled and in NumPy (what NUMBA_DISABLE_JIT runs), against the
    expression it stands for, element by element; with strides that are not multiples of the lanes."""
    from numba import njit

    run = njit(lambda *args: simd.transpose_add(*args))
    L = simd.VECTOR_BYTES // np.dtype(dtype).itemsize
    rng = np.random.default_rng(0)
    src, add = rng.standard_normal(3 * L * L).astype(dtype), rng.standard_normal(2 * L).astype(dtype)
    src_at, src_stride, add_at, dst_at, dst_stride = 3, 2 * L + 1, 5, 7, 3 * L - 2
    want = np.full(dst_at + L * dst_stride, np.nan, dtype)
    for k in range(L):
        for lane in range(L):
            want[dst_at + k * dst_stride + lane] = src[src_at + lane * src_stride + k] + add[add_at + k]
    for transpose_add in (run, simd._transpose_add_py):
        dst = np.full_like(want, np.nan)
        transpose_add(src, src_at, src_stride, add, add_at, dst, dst_at, dst_stride)
        np.testing.assert_array_equal(dst, want)


@pytest.mark.parametrize("channels, pixels", [(16, 32), (20, 196), (7, 5), (33, 17)])
def test_planes_from_staged_copies_every_channel_and_pixel(channels, pixels):
    """fast_conv.planes_from_staged: whole squares transposed in registers, the channels and pixels
    left over one by one; every element of the planes against the expression, nothing else written."""
    block = 48
    rng = np.random.default_rng(1)
    staged = rng.standard_normal((pixels + 3) * block).astype(np.float32)
    bias = rng.standard_normal(channels + 4).astype(np.float32)
    o0, first = 11, 3
    out = np.full(o0 + channels * pixels + 9, np.nan, np.float32)
    fast_conv.planes_from_staged(staged, block, bias, first, channels, out, o0, pixels)
    want = np.full_like(out, np.nan)
    want[o0:o0 + channels * pixels] = (staged.reshape(-1, block)[:pixels, :channels] + bias[first:first + channels]).T.reshape(-1)
    np.testing.assert_array_equal(out, want)


def test_sequential_without_input_gradient():
    """``backward(..., input_grad=False)`` (torch: an input with requires_grad=False) gives every parameter
    the same gradient, returns None, and the first Conv2d skips its input gradient."""
    def run(input_grad):
        model = mc.Sequential(mc.Conv2d(2, 3, 3, padding=1, dtype=np.float64, generator=np.random.default_rng(0)),
                              mc.ReLU(), mc.Flatten(),
                              mc.Linear(3 * 5 * 5, 4, dtype=np.float64, generator=np.random.default_rng(1)))
        x = np.random.default_rng(2).standard_normal((3, 2, 5, 5))
        out = model(x)
        dx = model.backward(np.ones_like(out), input_grad=input_grad)
        return dx, [p.grad.copy() for p in model.parameters()]

    dx, grads = run(True)
    skipped, grads_skipped = run(False)
    assert dx.shape == (3, 2, 5, 5) and skipped is None
    for g, h in zip(grads, grads_skipped):
        np.testing.assert_array_equal(g, h)
    with pytest.raises(RuntimeError, match="before forward"):
        mc.Conv2d(1, 1, 1).backward_parameters(np.zeros((1, 1, 1, 1), np.float32))


def test_conv2d_backward_parameters_skips_the_input_gradient(monkeypatch):
    """Conv2d.backward_parameters never runs the transposed convolution that dx is."""
    calls = []
    original = conv_module._convolve
    monkeypatch.setattr(conv_module, "_convolve", lambda *a, **k: calls.append(k) or original(*a, **k))
    conv = mc.Conv2d(2, 3, 3, dtype=np.float64)
    out = conv(np.ones((1, 2, 5, 5)))
    conv.backward_parameters(np.ones_like(out))
    assert [k.get("transposed", False) for k in calls] == [False]


def test_fast_kernels_run_as_plain_python_with_the_jit_disabled():
    """With NUMBA_DISABLE_JIT=1 the fast path (outer-product and row tiles through ``simd``'s NumPy
    stand-ins) runs as Python, for a debugger, and gives the compiled kernels' numbers."""
    code = textwrap.dedent("""
        import json, numba, numpy as np
        from minicnn.functional.conv import conv2d_forward, conv2d_backward
        assert numba.config.DISABLE_JIT
        rng = np.random.default_rng(0)
        results = []
        for shape, wshape, stride in (((2, 4, 6, 5), (20, 2, 3, 2), (2, 1)), ((2, 1, 6, 6), (3, 1, 3, 3), (1, 1))):
            x, w = rng.standard_normal(shape), rng.standard_normal(wshape)
            out, cache = conv2d_forward(x, w, rng.standard_normal(wshape[0]), stride, (1, 0, 1, 1), (1, 1), shape[1] // wshape[1])
            results.append([out.tolist()] + [g.tolist() for g in conv2d_backward(np.ones_like(out), cache)])
        print(json.dumps(results))
    """)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rng = np.random.default_rng(0)
    for (shape, wshape, stride), python in zip((((2, 4, 6, 5), (20, 2, 3, 2), (2, 1)), ((2, 1, 6, 6), (3, 1, 3, 3), (1, 1))),
                                               json.loads(run.stdout)):
        x, w = rng.standard_normal(shape), rng.standard_normal(wshape)
        out, cache = conv2d_forward(x, w, rng.standard_normal(wshape[0]), stride, (1, 0, 1, 1), (1, 1), shape[1] // wshape[1])
        for name, got, want in zip(("out", "dx", "dw", "db"), python, (out, *conv2d_backward(np.ones_like(out), cache))):
            assert_close(np.array(got), want, name)


def test_row_tap_ranges_leave_out_the_kernel_rows_that_read_only_padding():
    """Hand-derived. Article's 16->32 (14 rows, 5x5, padding 2): output row 0 reads input rows -2..2, so
    its kernel rows 2..4 only; row 13 reads 11..15, kernel rows 0..2; 64 of the 70 row passes remain.
    Counted in entries of 16 channels' taps of a kernel row (16 x 5 = 80 per kernel row). The input
    gradient of a stride-2 convolution (rows put 2 apart, padding 2 before, 4 rows): a 3-row
    kernel at output row 1 reads padded rows 1, 2, 3, of which only row 2 holds an input row."""
    ranges = conv_module._row_tap_ranges(14, 1, 1, 5, 2, 1, 14, 80)
    assert ranges[:, 0].tolist() == [160, 80] + [0] * 12
    assert ranges[:, 1].tolist() == [400] * 12 + [320, 240]
    assert (ranges[:, 1] - ranges[:, 0]).sum() == 64 * 80
    strided = conv_module._row_tap_ranges(9, 1, 1, 3, 2, 2, 4, 1)
    assert strided.tolist() == [[2, 3], [1, 2], [0, 3], [1, 2], [0, 3], [1, 2], [0, 3], [1, 2], [0, 1]]


def test_row_tile_edge_marks_the_tiles_whose_kernel_rows_start_or_end_in_padding():
    """Hand-derived. Article's 16->32 (14 columns, 5x5, padding 2): a tile of 7 from column 0 reads
    padded columns 0..10, of which 0 and 1 are padding (start); one from column 7 reads 7..17, of
    which 16 and 17 are past the last input column, 15 (end); a tile of 14 reads 0..17 (both).
    With padding 1 the first two columns are not both padding. The input gradient of a 3x3
    stride-2 convolution (7 columns spread 2 apart from padded column 1, the last at 13): a tile
    of 7 from column 7 reads 7..15, and 15 is padding; one from column 5 reads 5..13, and 13 is not."""
    edge = fast_conv.row_tile_edge
    none, start, end = fast_conv.EDGE_NONE, fast_conv.EDGE_START, fast_conv.EDGE_END
    assert [edge(0, 7, 5, 2, 14, 1), edge(7, 7, 5, 2, 14, 1), edge(0, 14, 5, 2, 14, 1)] == [start, end, start + end]
    assert [edge(0, 7, 5, 1, 14, 1), edge(4, 7, 5, 2, 14, 1)] == [none, none]
    assert [edge(0, 7, 3, 1, 7, 2), edge(7, 7, 3, 1, 7, 2), edge(5, 7, 3, 1, 7, 2)] == [start, end, none]


# The kernel-row tiles (``outer_row_tile_RxV_kK_at``) the fast path uses on this machine's vector registers.
EDGE_DISPATCHERS = [(fast_conv.narrow_row_tile_k3, fast_conv.NARROW_ROWS, 1, 3),
                    (fast_conv.narrow_row_tile_k5, fast_conv.NARROW_ROWS, 1, 5),
                    (fast_conv.wide_row_tile_k3, fast_conv.WIDE_ROWS, 2, 3),
                    (fast_conv.wide_row_tile_k5, fast_conv.WIDE_ROWS, 2, 5)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tile_function, R, V, K", EDGE_DISPATCHERS, ids=["narrow-k3", "narrow-k5", "wide-k3", "wide-k5"])
def test_kernel_row_tiles_leave_out_exactly_the_taps_of_the_edges_columns(tile_function, R, V, K, dtype):
    """Each tile over kernel rows, for each edge, against its formula (the module docstring of
    microkernels) written element by element: tap j of pixel r reads x[base + varying[k*K + j] + r],
    and a tile at a row's start (end) leaves out the taps that read the first (last) K // 2 of the
    R + K - 1 columns. Small integers, so that every sum is exact and the comparison bitwise."""
    rng = np.random.default_rng(K)
    L, rows = simd.VECTOR_BYTES // np.dtype(dtype).itemsize, 3
    x = rng.integers(-8, 9, 400).astype(dtype)
    starts = rng.choice(np.arange(0, 300, 40), rows, replace=False)
    varying = (starts[:, None] + np.arange(K)).reshape(-1)  # kernel row k starts at starts[k]
    w_stride, w_col = V * L + 3, 2
    w = rng.integers(-8, 9, rows * K * w_stride + 8).astype(dtype)
    base = 11
    for edge in range(4):
        skipped = set(range(K // 2) if edge & fast_conv.EDGE_START else ()) | set(
            range(R + K - 1 - K // 2, R + K - 1) if edge & fast_conv.EDGE_END else ())
        want = np.zeros(R * V * L, dtype)
        for r in range(R):
            for t in range(rows * K):
                if r + t % K not in skipped:
                    want[r * V * L:(r + 1) * V * L] += x[base + varying[t] + r] * w[t * w_stride + w_col:][:V * L]
        tile = np.full(R * V * L, np.nan, dtype)
        tile_function(edge, x, base, varying, rows * K, w, w_stride, w_col, tile)
        np.testing.assert_array_equal(tile, want, err_msg=f"edge {edge}")


# Runs the seed models' convolutions and a strided, grouped one through the fast path, then lists the
# functions of microkernels and fast_conv that each fast_conv kernel's compiled module still holds
# besides itself, pad_image and planes_from_staged: a function LLVM kept there is called, not inlined.
NOT_INLINED = r"""
import json, re
import numpy as np
import minicnn as mc
from minicnn.functional import fast_conv, fast_linear
from minicnn.functional.conv import conv2d_backward, conv2d_forward
from minicnn.functional.linear import linear_forward
mc.set_num_threads(1)
rng = np.random.default_rng(0)
for xs, ws, stride, pad in [((4, 1, 28, 28), (16, 1, 5, 5), (1, 1), (2,) * 4), ((4, 16, 14, 14), (32, 16, 5, 5), (1, 1), (2,) * 4),
                            ((4, 10, 12, 12), (20, 10, 3, 3), (1, 1), (0,) * 4), ((2, 4, 9, 8), (6, 4, 3, 3), (2, 1), (0, 1, 2, 1))]:
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    out, cache = conv2d_forward(x, w, None, stride, pad)
    conv2d_backward(out, cache)
linear_forward(rng.standard_normal((9, 40)).astype(np.float32), rng.standard_normal((7, 40)).astype(np.float32))
called = {}
for module, name in [(fast_conv, "conv2d_rows_forward"), (fast_conv, "conv2d_rows_weight_grad"),
                     (fast_conv, "conv2d_image_tiles_forward"), (fast_conv, "conv2d_tiles_forward"),
                     (fast_conv, "conv2d_tiles_weight_grad"), (fast_conv, "outer_row_tile"),
                     (fast_linear, "linear_tiles_forward")]:
    kernel = getattr(module, name)
    kernel = getattr(kernel, "serial", kernel)
    for sig in kernel.signatures:
        functions = set(re.findall(r"^_ZN7minicnn10functional\d+(microkernels|fast_conv|fast_linear)\d+_?(\w+?)B\d",
                                   kernel.inspect_asm(sig), re.M))
        # pad_image (once an image), planes_from_staged (once an image's block of channels), and
        # outer_row_tile and row_tile_edge (once a tile, fast_conv._outer_row_tile says why) may stay calls
        called[name] = sorted(f"{m}.{f}" for m, f in functions if f not in (
            name, name + "_serial", "pad_image", "planes_from_staged", "outer_row_tile", "row_tile_edge"))
print(json.dumps(called))
"""


@pytest.mark.parametrize("build", [Build(NOT_INLINED), Build(NOT_INLINED, "znver3", AVX2_FEATURES),
                                   Build(NOT_INLINED, "haswell", AVX2_FEATURES)],
                         ids=["this-machine", "znver3-avx2", "haswell-avx2"])
def test_every_tile_is_inlined_into_the_kernels_that_call_it(builds, build):
    """A tile called as a function pays for its arguments (a dozen arrays) at every tile. LLVM's inliner
    decides by the CPU it compiles for (it left row_tile_4x3 as a call for znver3, not for haswell), so
    the tiles carry ``forceinline=True`` (LLVM's ``alwaysinline``); every kernel's module must then
    hold no tile (a tile compiled with plain ``njit`` fails this for znver3, session 21). The
    one exception is ``outer_row_tile``, which picks among 22 tiles along rows: it stays a call, once a
    tile, and holds them all inlined."""
    called = json.loads(output_of(builds, build))
    assert len(called) >= 6 and "outer_row_tile" in called and "linear_tiles_forward" in called, called
    assert all(functions == [] for functions in called.values()), called


def test_tile_row_ranges_keep_every_output_row_at_which_a_tap_reads_data():
    """Hand-derived for article's 16->32 (80 taps a kernel row, tiles of 7): kernel row 0 reads data
    from output row 2 on, row 4 up to row 11; a tile that straddles two kernel rows takes both rows'
    output rows. Brute force for strided, dilated, padded geometries: each tile's range is the span
    of the output rows at which one of its taps reads an input row, and leaves none out."""
    ranges = conv_module._tile_row_ranges(80, 5, 7, 14, 1, 1, 2, 14)
    assert ranges[0].tolist() == [2, 14] and ranges[11].tolist() == [1, 14]  # taps 77..83: kernel rows 0 and 1
    assert ranges[-1].tolist() == [0, 12] and len(ranges) == 58
    for per_row, KH, R, stride, dil, pad, H in [(3, 3, 4, 2, 1, 1, 7), (2, 4, 7, 1, 2, 3, 5), (5, 2, 14, 3, 3, 0, 11),
                                                (1, 5, 3, 1, 1, 6, 2)]:
        OH = (H + 2 * pad - dil * (KH - 1) - 1) // stride + 1
        ranges = conv_module._tile_row_ranges(per_row, KH, R, OH, stride, dil, pad, H)
        for k, (begin, end) in enumerate(ranges):
            kernel_rows = {t // per_row for t in range(k * R, min(k * R + R, per_row * KH))}
            data = [oh for oh in range(OH) if any(0 <= oh * stride + i * dil - pad < H for i in kernel_rows)]
            assert (begin, end) == ((min(data), max(data) + 1) if data else (0, 0)), (k, data)
