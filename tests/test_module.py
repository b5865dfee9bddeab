"""Module bookkeeping: parameter order, state_dict keys, loading, modes, Sequential, initialization."""
import numpy as np
import pytest
import torch
from torch import nn

import minicnn as mc
from reference.interop import from_torch, to_torch


def small_model(dtype=np.float32):
    return mc.Sequential(mc.Conv2d(1, 4, 3, padding=1, dtype=dtype), mc.BatchNorm2d(4, dtype=dtype), mc.ReLU(),
                         mc.MaxPool2d(2), mc.Flatten(), mc.Linear(4 * 4 * 4, 10, dtype=dtype),
                         mc.BatchNorm1d(10, dtype=dtype), mc.LogSoftmax(dim=1))


def torch_small_model():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64, 10), nn.BatchNorm1d(10), nn.LogSoftmax(dim=1))


def test_state_dict_keys_shapes_and_parameter_order_match_torch():
    model, twin = small_model(), torch_small_model()
    assert [(k, v.shape) for k, v in model.state_dict().items()] == \
           [(k, tuple(v.shape)) for k, v in twin.state_dict().items()]
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in twin.named_parameters()]
    assert [p.shape for p in model.parameters()] == [tuple(p.shape) for p in twin.parameters()]
    assert model.state_dict()["1.num_batches_tracked"].dtype == np.int64


def test_round_trip_through_torch_preserves_every_value_and_dtype():
    model = small_model(np.float64)
    model.train()
    model(np.random.default_rng(0).standard_normal((3, 1, 8, 8)))  # move the running statistics
    twin = to_torch(model)
    assert next(twin.parameters()).dtype == torch.float64
    back = from_torch(twin)
    for (k, a), (k2, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_load_state_dict_names_every_problem():
    model = small_model()
    state = model.state_dict()
    del state["0.weight"]
    state["9.weight"] = np.zeros(1)
    state["5.bias"] = np.zeros(11)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert "missing keys: 0.weight" in message
    assert "unexpected keys: 9.weight" in message
    assert "5.bias: expected shape (10,), got (11,)" in message


def test_load_state_dict_copies_values_and_casts_dtype():
    a, b = small_model(np.float32), small_model(np.float32)
    state = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in a.state_dict().items()}
    b.load_state_dict(state)
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, a.state_dict()[k])
        assert v.dtype == a.state_dict()[k].dtype


def test_backward_before_forward_is_a_clear_error():
    for layer in (mc.Conv2d(1, 1, 1), mc.MaxPool2d(2), mc.BatchNorm2d(1), mc.Linear(2, 2), mc.ReLU(),
                  mc.Flatten(), mc.LogSoftmax(), mc.Dropout(), mc.NLLLoss(), mc.CrossEntropyLoss()):
        with pytest.raises(RuntimeError, match=r"backward was called before forward"):
            layer.backward(np.zeros(1, np.float32))


def test_assigning_before_module_init_is_a_clear_error():
    """As in torch, a subclass must call Module.__init__() before it assigns attributes (where the
    parameters are registered); the error says so and names the class and the attribute."""
    class Early(mc.Module):
        def __init__(self):
            self.scale = 2.0
            super().__init__()

    with pytest.raises(AttributeError, match=r"^Early: call Module.__init__\(\) before assigning attribute 'scale'$"):
        Early()


def test_registration_follows_each_assignment():
    """A Parameter or Module assigned is registered (in order), a plain value replacing it unregisters
    it, and a buffer reassigned an array stays a buffer: the names state_dict lists."""
    layer = mc.Linear(2, 3)
    layer.extra = mc.Parameter(np.zeros(4, np.float32))
    layer.child = mc.ReLU()
    assert list(dict(layer.named_parameters())) == ["weight", "bias", "extra"]
    assert layer.children() == [layer.child]
    layer.extra, layer.child = None, 5
    assert list(dict(layer.named_parameters())) == ["weight", "bias"] and layer.children() == []
    bn = mc.BatchNorm1d(3)
    bn.running_mean = np.ones(3, np.float32)
    assert "running_mean" in bn.state_dict() and (bn.state_dict()["running_mean"] == 1).all()


def test_train_and_eval_set_the_flag_recursively():
    model = small_model()
    assert all(m.training for m in model.modules())
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_sequential_indexing_and_len():
    model = small_model()
    assert len(model) == 8
    assert isinstance(model[0], mc.Conv2d) and isinstance(model[-1], mc.LogSoftmax)
    assert len(model[1:3]) == 2 and isinstance(model[1:3][0], mc.BatchNorm2d)
    with pytest.raises(IndexError, match="out of range for 8 modules"):
        model[8]


def test_backward_accumulates_until_zero_grad():
    layer = mc.Linear(3, 2, dtype=np.float64)
    x = np.ones((1, 3))
    layer(x)
    layer.backward(np.ones((1, 2)))
    once = layer.weight.grad.copy()
    layer(x)
    layer.backward(np.ones((1, 2)))
    np.testing.assert_array_equal(layer.weight.grad, 2 * once)
    layer.zero_grad()
    assert not layer.weight.grad.any()


@pytest.mark.parametrize("make, fan_in", [(lambda g: mc.Conv2d(3, 8, (5, 3), generator=g), 3 * 5 * 3),
                                          (lambda g: mc.Conv2d(4, 8, 3, groups=2, generator=g), 2 * 3 * 3),
                                          (lambda g: mc.Linear(50, 20, generator=g), 50)])
def test_initialization_follows_torch_bounds_and_is_seedable(make, fan_in):
    """kaiming_uniform(a=sqrt(5)) and the bias rule both give U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    layer = make(np.random.default_rng(1))
    bound = 1 / np.sqrt(fan_in)
    for p in (layer.weight.data, layer.bias.data):
        assert np.abs(p).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.9 * bound
    again = make(np.random.default_rng(1))
    np.testing.assert_array_equal(again.weight.data, layer.weight.data)
    mc.manual_seed(7)
    first = mc.Linear(4, 4).weight.data
    mc.manual_seed(7)
    np.testing.assert_array_equal(mc.Linear(4, 4).weight.data, first)


def test_layers_take_float64():
    model = small_model(np.float64)
    out = model(np.zeros((2, 1, 8, 8)))
    assert out.dtype == np.float64
    assert model.backward(np.ones_like(out)).dtype == np.float64
