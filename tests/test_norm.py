"""BatchNorm1d/2d against torch: outputs, gradients and running statistics over several steps."""
import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

import minicnn as mc
from helpers import compare_with_torch
from strategies import DTYPES, array, batchnorm_cases, generator, seeds

pytestmark = pytest.mark.usefixtures("kernel_build")  # serial and parallel builds (conftest)


def make_bn(case, dtype):
    cls = mc.BatchNorm2d if case["kind"] == "2d" else mc.BatchNorm1d
    return cls(**case["args"], dtype=dtype)


@given(case=batchnorm_cases(), dtype=DTYPES, seed=seeds)
def test_batchnorm_matches_torch(case, dtype, seed):
    rng = generator(seed)
    bn = make_bn(case, dtype)
    if bn.weight is not None:  # non-trivial affine parameters
        bn.weight.data[...] = rng.uniform(0.5, 1.5, bn.num_features)
    if bn.bias is not None:
        bn.bias.data[...] = rng.standard_normal(bn.num_features)
    if bn.track_running_stats:
        bn.running_mean[...] = rng.standard_normal(bn.num_features)
        bn.running_var[...] = rng.uniform(0.5, 2.0, bn.num_features)
    bn.train(case["training"])
    bn.retain_cache()  # term_size reads the forward's cache after the backward
    # Several steps, so the running statistics (and num_batches_tracked) evolve.
    compare_with_torch(bn, array(rng, case["shape"], dtype) * 3 + 1, rng, steps=3, dx_scale=term_size)


@given(dtype=DTYPES, seed=seeds, kind=st.sampled_from(["1d-NC", "1d-NCL", "2d"]), channels=st.integers(1, 9),
       batch=st.integers(1, 64), size=st.integers(1, 12), eps=st.sampled_from([1e-5, 0.1]))
def test_batchnorm_in_eval_mode_equals_torch_bit_for_bit(dtype, seed, kind, channels, batch, size, eps):
    """In eval mode the output is torch's to the last bit, for every shape and both dtypes: invstd,
    the scale and the shift in x's dtype, and the shift and the output each one fused multiply-add,
    as torch's kernel computes them (functional/norm.py)."""
    rng = generator(seed)
    shape = {"1d-NC": (batch, channels), "1d-NCL": (batch, channels, size), "2d": (batch, channels, size, size + 1)}[kind]
    ours = (mc.BatchNorm2d if kind == "2d" else mc.BatchNorm1d)(channels, eps=eps, dtype=dtype)
    theirs = (torch.nn.BatchNorm2d if kind == "2d" else torch.nn.BatchNorm1d)(
        channels, eps=eps, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    values = dict(weight=rng.uniform(0.5, 1.5, channels), bias=rng.standard_normal(channels),
                  running_mean=rng.standard_normal(channels), running_var=rng.uniform(0.5, 2.0, channels))
    ours.weight.data, ours.bias.data = values["weight"].astype(dtype), values["bias"].astype(dtype)
    ours.running_mean[...], ours.running_var[...] = values["running_mean"], values["running_var"]
    with torch.no_grad():
        for name, value in values.items():
            getattr(theirs, name).copy_(torch.from_numpy(value.astype(dtype)))
    ours.eval()
    theirs.eval()
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    with torch.no_grad():
        want = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(ours(x), want)


def term_size(bn, dout):
    """dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)) cancels to almost nothing when a
    channel has only 2 values; the rounding error scales with the terms, gamma * invstd * dy."""
    cache = bn._cache
    return float(np.abs(cache.gamma * cache.invstd).max(initial=0.0) * np.abs(dout).max(initial=0.0))


def test_running_var_is_unbiased_and_normalization_is_biased():
    """Hand-derived: channel values [1, 3]: mean 2, biased var 1, unbiased var 2."""
    bn = mc.BatchNorm1d(1, eps=0.0 + 1e-12, momentum=0.1, dtype=np.float64)
    out = bn(np.array([[1.0], [3.0]]))
    np.testing.assert_allclose(out[:, 0], [-1.0, 1.0], rtol=1e-9)
    np.testing.assert_allclose(bn.running_mean, [0.9 * 0 + 0.1 * 2], rtol=1e-15)
    np.testing.assert_allclose(bn.running_var, [0.9 * 1 + 0.1 * 2], rtol=1e-15)
    assert int(bn.num_batches_tracked) == 1
    bn.eval()
    np.testing.assert_allclose(bn(np.array([[0.2]]))[0, 0], 0.0, atol=1e-12)


def test_one_value_per_channel_in_training_is_an_error():
    with pytest.raises(ValueError, match=r"BatchNorm1d.*more than 1 value per channel.*\(1, 3\)"):
        mc.BatchNorm1d(3)(np.zeros((1, 3), np.float32))
    mc.BatchNorm1d(3).eval()(np.zeros((1, 3), np.float32))  # fine in eval
