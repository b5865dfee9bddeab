"""The fast convolution's own machinery: generated microkernels, both CPU kinds, the seed models' shapes,
and skipping the input gradient."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import minicnn as mc
from helpers import assert_close
from minicnn.functional import conv as conv_module, fast_conv, make_microkernels
from minicnn.functional.conv import conv2d_backward, conv2d_backward_naive, conv2d_forward, conv2d_forward_naive

ROOT = Path(__file__).resolve().parents[1]

# The seed models' convolutions: (C, H, F, K, padding)
SEED_CONVS = {"article conv1": (1, 28, 16, 5, 2), "article conv2": (16, 14, 32, 5, 2),
              "notebook conv1": (1, 28, 10, 5, 0), "notebook conv2": (10, 12, 20, 3, 0)}


def test_microkernels_are_what_the_generator_writes():
    """microkernels.py is generated; editing it by hand (or the generator without rerunning it) fails here."""
    assert Path(make_microkernels.__file__).with_name("microkernels.py").read_text() == make_microkernels.source()


@pytest.mark.parametrize("name", sorted(SEED_CONVS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_seed_model_convolutions_equal_naive(name, dtype):
    """At the seed models' real sizes, through the default choice of path (pixel passes for few taps,
    register tiles on gathered rows for many: article conv2's 400 taps and every input gradient
    but notebook conv1's), with a batch that does not split evenly between the threads."""
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


def test_avx2_kernels_in_a_process_compiled_for_avx2(tmp_path):
    """The 16-register kernels (6x2 tiles, 2x4 passes), compiled for an AVX2 CPU in a fresh process
    (``NUMBA_CPU_NAME/FEATURES``), equal the naive loops: every path, both dtypes, groups and strides."""
    script = textwrap.dedent("""
        import numpy as np
        from unittest import mock
        from minicnn.functional import conv, fast_conv
        assert (fast_conv.TILE_A, fast_conv.TILE_B, fast_conv.PASS_ROWS, fast_conv.PASS_TAPS) == (6, 2, 2, 4)
        rng = np.random.default_rng(1)
        cases = [((3, 16, 14, 14), (32, 16, 5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 1),
                 ((2, 1, 28, 28), (10, 1, 5, 5), (1, 1), (0, 0, 0, 0), (1, 1), 1),
                 ((2, 4, 9, 8), (6, 2, 3, 3), (2, 1), (0, 1, 2, 1), (2, 1), 2)]
        for dtype in (np.float32, np.float64):
            rtol = 1e-4 if dtype == np.float32 else 1e-10
            for taps in (0, 10**9):
                with mock.patch.object(conv, "DIRECT_MAX_TAPS", taps):
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
    """)
    features = ("+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+fsgsbase,+lzcnt,+mmx,+movbe,+popcnt,"
                "+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave,-avx512f,-avx512vl,-avx512bw,-avx512dq,-avx512cd")
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=features, NUMBA_CACHE_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_vector_registers_follow_numba_target(monkeypatch):
    """The tile shapes follow the CPU Numba compiles for: AVX-512 has 32 vector registers, AVX2 16."""
    monkeypatch.setattr(fast_conv.config, "CPU_FEATURES", "+avx2,+fma,+avx512f")
    assert fast_conv._vector_registers() == 32
    monkeypatch.setattr(fast_conv.config, "CPU_FEATURES", "+avx2,+fma,-avx512f")
    assert fast_conv._vector_registers() == 16


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
