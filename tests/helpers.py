"""Tolerances, the minicnn-versus-torch comparison and a run without the JIT, used across the tests."""
import json
import os
import subprocess
import sys

import numpy as np
import torch

from minicnn.testing import run_with_torch

# Relative tolerances per dtype. An entry passes if |actual - expected| <= rtol * max(|expected|, scale),
# where scale is the largest magnitude in the expected array: a sum that cancels to nearly zero is judged
# against the size of its terms, not against its own tiny value.
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-7}


def assert_close(actual, expected, what="", scale=0.0):
    """``scale``: the size of the terms that were summed, when it exceeds the result's own size."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    rtol = RTOL[actual.dtype]
    scale = max(scale, float(np.max(np.abs(expected[np.isfinite(expected)]), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, equal_nan=True, err_msg=what)


def t(array, requires_grad=False):
    return torch.from_numpy(np.array(array)).requires_grad_(requires_grad)


def compare_with_torch(layer, x, rng, steps=1, dx_scale=lambda layer, dout: 0.0):
    """Run ``layer`` and its torch twin on ``x`` and assert that everything observable agrees.

    Compares the forward output, the input gradient for a random upstream
    gradient, every parameter gradient, and every buffer (running statistics)
    after each of ``steps`` forward/backward passes. ``dx_scale(layer, dout)``
    gives the size of the terms summed into the input gradient where that
    gradient cancels to far less (batch norm).
    """
    twin = None
    for step in range(steps):
        pairs, twin, dout = run_with_torch(layer, x, seed=int(rng.integers(2**31)), twin=twin)
        for name, (ours, theirs) in pairs.items():
            if ours.dtype.kind != "f":
                assert int(ours) == int(theirs), f"{name}: {ours} != {theirs} (step {step})"
            else:
                scale = dx_scale(layer, dout) if name == "input gradient" else 0.0
                assert_close(ours, theirs, f"{name} (step {step})", scale)
    return pairs["output"][0]


def printed_without_jit(code):
    """What ``code`` prints (one JSON value), run in a fresh Python with NUMBA_DISABLE_JIT=1: every
    kernel then runs as plain Python, as in a debugger."""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(run.stdout)
