"""ReLU, Linear, Flatten, LogSoftmax and Dropout against torch or hand-derived values."""
import numpy as np
import pytest
import torch
from hypothesis import example, given, strategies as st

import minicnn as mc
from helpers import assert_close, compare_with_torch
from strategies import DTYPES, array, generator, seeds

pytestmark = pytest.mark.usefixtures("kernel_build")  # serial and parallel builds (conftest)

shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)
# also a 0-d array (one number) and empty arrays, which torch accepts for element-wise layers
any_shapes = st.one_of(shapes, st.just(()), st.lists(st.integers(0, 3), min_size=1, max_size=3).map(tuple))


@given(shape=any_shapes, dtype=DTYPES, seed=seeds)
def test_relu_matches_torch(shape, dtype, seed):
    rng = generator(seed)
    x = array(rng, shape, dtype)
    if x.size:
        x.flat[0] = 0.0  # the kink: torch's gradient there is 0
    out = compare_with_torch(mc.ReLU(), x, rng)
    assert out.shape == x.shape  # a 0-d input stays 0-d


@given(n=st.integers(1, 4), lead=st.lists(st.integers(1, 3), max_size=2), fin=st.integers(1, 7),
       fout=st.integers(1, 7), bias=st.booleans(), dtype=DTYPES, seed=seeds)
@example(n=1, lead=[], fin=5, fout=3, bias=True, dtype=np.float32, seed=0)  # one sample: dw as an outer product
@example(n=1, lead=[], fin=5, fout=3, bias=False, dtype=np.float64, seed=1)
def test_linear_matches_torch(n, lead, fin, fout, bias, dtype, seed):
    rng = generator(seed)
    layer = mc.Linear(fin, fout, bias=bias, dtype=dtype, generator=rng)
    compare_with_torch(layer, array(rng, (n, *lead, fin), dtype), rng)


@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=5).map(tuple), data=st.data(),
       dtype=DTYPES, seed=seeds)
def test_flatten_matches_torch(shape, data, dtype, seed):
    rng = generator(seed)
    start = data.draw(st.integers(-len(shape), len(shape) - 1))
    end = data.draw(st.integers(start % len(shape), len(shape) - 1))
    compare_with_torch(mc.Flatten(start, end), array(rng, shape, dtype), rng)


@given(shape=st.one_of(shapes, st.just(())), data=st.data(), scale=st.sampled_from([1.0, 100.0, 5000.0]),
       dtype=DTYPES, seed=seeds)
def test_log_softmax_matches_torch(shape, data, scale, dtype, seed):
    rng = generator(seed)
    dim = data.draw(st.integers(-max(len(shape), 1), max(len(shape), 1) - 1))  # 0-d: dim 0 or -1, as in torch
    x = np.asarray(array(rng, shape, dtype) * scale, dtype=dtype)  # (stays an ndarray when 0-d)
    out = compare_with_torch(mc.LogSoftmax(dim), x, rng)
    assert np.isfinite(out).all()


def test_log_softmax_of_huge_logits_is_finite_and_exact():
    x = np.array([[1000.0, 2000.0, 3000.0]])
    out = mc.LogSoftmax(1)(x)
    np.testing.assert_allclose(out, [[-2000.0, -1000.0, 0.0]], rtol=1e-15)


@given(shape=any_shapes, p=st.sampled_from([0.0, 0.2, 0.5, 0.9, 1.0]), dtype=DTYPES, seed=seeds)
def test_dropout_scales_kept_elements_and_routes_gradient_through_them(shape, p, dtype, seed):
    rng = generator(seed)
    x = np.asarray(array(rng, shape, dtype) + 3.0, dtype=dtype)  # no zeros in x: a zero in the output was dropped
    layer = mc.Dropout(p, generator=np.random.default_rng(seed))
    out = layer(x)
    assert out.shape == x.shape
    kept = out != 0
    expected = np.where(kept, x / (1 - p) if p < 1 else 0, 0).astype(dtype)
    assert_close(out, expected, "forward")
    dout = np.asarray(array(rng, shape, dtype), dtype=dtype)
    assert_close(layer.backward(dout), np.where(kept, dout / (1 - p) if p < 1 else 0, 0).astype(dtype), "dx")
    # torch's dropout is the same function of the same mask
    mask_t = torch.from_numpy(np.asarray(kept.astype(dtype) / (1 - p) if p < 1 else np.zeros_like(x), dtype=dtype))
    assert_close(out, (torch.from_numpy(x) * mask_t).numpy(), "torch's formula")
    layer.eval()
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer.backward(dout), dout)  # the identity passes gradients unchanged


def test_dropout_keeps_about_one_minus_p():
    out = mc.Dropout(0.3, generator=np.random.default_rng(0))(np.ones(200_000, np.float32))
    assert abs((out != 0).mean() - 0.7) < 0.005
    assert abs(out.mean() - 1.0) < 0.01
