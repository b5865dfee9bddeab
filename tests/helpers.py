"""Tolerances and the minicnn-versus-torch comparison used across the tests."""
import numpy as np
import torch

from reference.interop import to_torch

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
    """Run ``layer`` and its torch twin on ``x`` and compare everything observable.

    Compares the forward output, the input gradient for a random upstream
    gradient, every parameter gradient, and every buffer (running statistics)
    after ``steps`` forward/backward passes. ``dx_scale(layer, dout)`` gives
    the size of the terms summed into the input gradient where that gradient
    cancels to far less (batch norm).
    """
    twin = to_torch(layer)
    for step in range(steps):
        out = layer(x)
        dout = rng.standard_normal(out.shape).astype(out.dtype)
        layer.zero_grad()
        dx = layer.backward(dout)

        xt = t(x, requires_grad=True)
        twin.zero_grad()
        out_t = twin(xt)
        out_t.backward(t(dout))
        assert_close(out, out_t.detach().numpy(), f"forward output (step {step})")
        assert_close(dx, xt.grad.numpy(), f"input gradient (step {step})", dx_scale(layer, dout))
        for (name, p), (name_t, p_t) in zip(layer.named_parameters(), twin.named_parameters()):
            assert name == name_t
            assert_close(p.grad, p_t.grad.numpy(), f"gradient of {name} (step {step})")
        for (name, b), (name_t, b_t) in zip(layer.named_buffers(), twin.named_buffers()):
            assert name == name_t
            if b.dtype.kind == "f":
                assert_close(b, b_t.numpy(), f"buffer {name} (step {step})")
            else:
                assert int(b) == int(b_t), f"buffer {name}: {b} != {b_t}"
    return out
