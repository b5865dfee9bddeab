"""SGD against torch.optim.SGD over many steps, for every option combination."""
import itertools

import numpy as np
import pytest
import torch

import minicnn as mc
from helpers import assert_close

OPTIONS = [dict(momentum=m, dampening=d, weight_decay=w, nesterov=n, maximize=x)
           for m, d, w, n, x in itertools.product([0.0, 0.9], [0.0, 0.3], [0.0, 1e-2], [False, True], [False, True])
           if not (n and (m == 0 or d != 0))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_sgd_equals_torch_bit_for_bit_step_for_step(options, dtype):
    """30 steps from the same gradients, a learning-rate change half way: parameters and momentum
    buffers equal torch's to the last bit (its ``add(..., alpha=...)`` is a fused multiply-add, and
    so is the kernel's). One parameter is large enough for the parallel build."""
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (5,), (2, 1, 3, 3), (300, 400)]
    params = [mc.Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]
    params_t = [torch.from_numpy(p.data.copy()).requires_grad_() for p in params]
    opt = mc.SGD(params, lr=0.05, **options)
    opt_t = torch.optim.SGD(params_t, lr=0.05, **options)
    for step in range(30):
        if step == 15:  # a learning-rate change mid-run must not disturb the momentum buffers
            opt.lr = 0.01
            opt_t.param_groups[0]["lr"] = 0.01
        opt.zero_grad()
        opt_t.zero_grad()
        for p, p_t in zip(params, params_t):
            g = rng.standard_normal(p.shape).astype(dtype)
            p.grad += g
            p_t.grad = torch.from_numpy(g.copy())
        opt.step()
        opt_t.step()
        for i, (p, p_t) in enumerate(zip(params, params_t)):
            np.testing.assert_array_equal(p.data, p_t.detach().numpy(), f"param {i} after step {step}")
            if options["momentum"]:
                np.testing.assert_array_equal(opt.momentum_buffers[i], opt_t.state[p_t]["momentum_buffer"].numpy(),
                                              f"momentum buffer {i} after step {step}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_the_numpy_step_is_the_same_rule(options, dtype):
    """``step_numpy`` (whole-array NumPy, the version to read) against ``step`` from the same state:
    equal but for rounding, since NumPy rounds each product before its sum where ``step`` fuses."""
    rng = np.random.default_rng(1)
    shapes = [(3, 4), (5,), (300, 400)]
    runs = []
    for _ in range(2):
        params = [mc.Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]
        runs.append((params, mc.SGD(params, lr=0.05, **options)))
    for a, b in zip(runs[0][0], runs[1][0]):
        b.data[...] = a.data
    for step in range(4):
        grads = [rng.standard_normal(p.shape).astype(dtype) for p in runs[0][0]]
        for (params, opt), stepper in zip(runs, ("step", "step_numpy")):
            for p, g in zip(params, grads):
                p.grad[...] = g
            getattr(opt, stepper)()
        for i, (a, b) in enumerate(zip(runs[0][0], runs[1][0])):
            assert_close(b.data, a.data, f"param {i} after step {step}")


def test_a_gradient_of_another_dtype_or_layout_is_cast_first():
    """A float64 or Fortran-ordered gradient of a float32 parameter updates it exactly as its
    C-ordered float32 copy does; a parameter of integers is refused, naming it."""
    rng = np.random.default_rng(2)
    start = rng.standard_normal((6, 7)).astype(np.float32)
    grad = rng.standard_normal((6, 7))
    results = []
    for given in (grad.astype(np.float32), grad, np.asfortranarray(grad.astype(np.float32))):
        p = mc.Parameter(start.copy())
        opt = mc.SGD([p], lr=0.1, momentum=0.9)
        for _ in range(2):
            p.grad = given
            opt.step()
        results.append(p.data)
    np.testing.assert_array_equal(results[1], results[0])
    np.testing.assert_array_equal(results[2], results[0])
    layer = mc.Linear(2, 1)
    layer.weight = mc.Parameter(np.zeros((1, 2), np.int64))
    with pytest.raises(TypeError, match=r"SGD: Linear.weight has dtype int64; SGD updates float32 and float64"):
        mc.SGD(layer.parameters(), lr=0.1).step()


def test_sgd_hand_derived_momentum():
    """g = 1 each step, mu = 0.5, lr = 1: buf = 1, 1.5, 1.75; p = -1, -2.5, -4.25."""
    p = mc.Parameter(np.zeros(1))
    opt = mc.SGD([p], lr=1.0, momentum=0.5)
    for expected in (-1.0, -2.5, -4.25):
        p.grad[...] = 1.0
        opt.step()
        assert p.data[0] == expected


def test_sgd_state_dict_round_trip():
    p = mc.Parameter(np.zeros(3))
    opt = mc.SGD([p], lr=0.1, momentum=0.9)
    p.grad[...] = 1.0
    opt.step()
    state = opt.state_dict()
    fresh = mc.SGD([p], lr=0.5, momentum=0.9)
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(fresh.momentum_buffers[0], opt.momentum_buffers[0])
    assert fresh.lr == 0.1


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=-1.0), "Invalid learning rate: -1.0"),
    (dict(lr=0.1, momentum=-0.5), "Invalid momentum value: -0.5"),
    (dict(lr=0.1, weight_decay=-0.5), "Invalid weight_decay value: -0.5"),
    (dict(lr=np.array([0.1, 0.1])), "lr given as an array must have 1 element"),
    (dict(lr=0.1, nesterov=True), "nesterov requires momentum > 0"),
    (dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "dampening = 0"),
])
def test_sgd_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mc.SGD([mc.Parameter(np.zeros(1))], **kwargs)


@pytest.mark.parametrize("gamma", [0.7, 1.0])
def test_exponential_lr_matches_torch(gamma):
    rng = np.random.default_rng(1)
    p = mc.Parameter(rng.standard_normal(5))
    p_t = torch.from_numpy(p.data.copy()).requires_grad_()
    opt, opt_t = mc.SGD([p], lr=0.1, momentum=0.9), torch.optim.SGD([p_t], lr=0.1, momentum=0.9)
    sched, sched_t = mc.ExponentialLR(opt, gamma), torch.optim.lr_scheduler.ExponentialLR(opt_t, gamma)
    for epoch in range(6):
        for _ in range(3):
            g = rng.standard_normal(5)
            p.grad[...] = g
            p_t.grad = torch.from_numpy(g.copy())
            opt.step()
            opt_t.step()
        sched.step()
        sched_t.step()
        assert opt.lr == opt_t.param_groups[0]["lr"]
        assert_close(p.data, p_t.detach().numpy(), f"epoch {epoch}")
    with pytest.raises(ValueError, match=r"ExponentialLR: gamma must be in \(0, 1\], got 0"):
        mc.ExponentialLR(opt, 0)


def test_sgd_defaults_and_param_checks_follow_torch():
    p, q = mc.Parameter(np.ones(2)), mc.Parameter(np.ones(3))
    assert mc.SGD([p]).lr == 1e-3 == torch.optim.SGD([torch.zeros(1, requires_grad=True)]).defaults["lr"]
    with pytest.raises(TypeError, match="params argument given to the optimizer should be an iterable"):
        mc.SGD(p)
    with pytest.raises(ValueError, match="holds the same parameter twice"):
        mc.SGD([p, p])
    with pytest.raises(ValueError, match="appear in more than one parameter group"):
        mc.SGD([{"params": [p]}, {"params": [p, q]}])
    with pytest.raises(ValueError, match="Some param names are missing"):
        mc.SGD([("weight", p), q])
    with pytest.raises(ValueError, match="empty parameter list"):
        mc.SGD([])


def test_sgd_param_groups_and_names_match_torch():
    """Two groups with their own lr and momentum, named parameters, then ExponentialLR on both."""
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(3), rng.standard_normal((2, 2))]
    ours = [mc.Parameter(v.copy()) for v in values]
    theirs = [torch.tensor(v, requires_grad=True) for v in values]
    opt = mc.SGD([{"params": [("a", ours[0])], "lr": 0.1}, {"params": [("b", ours[1])], "momentum": 0.9}], lr=0.01)
    opt_t = torch.optim.SGD([{"params": [theirs[0]], "lr": 0.1}, {"params": [theirs[1]], "momentum": 0.9}], lr=0.01)
    sched, sched_t = mc.ExponentialLR(opt, 0.5), torch.optim.lr_scheduler.ExponentialLR(opt_t, 0.5)
    for step in range(5):
        grads = [rng.standard_normal(v.shape) for v in values]
        for p, p_t, g in zip(ours, theirs, grads):
            p.grad[...] = g
            p_t.grad = torch.tensor(g)
        opt.step()
        opt_t.step()
        sched.step()
        sched_t.step()
        for p, p_t in zip(ours, theirs):
            assert_close(p.data, p_t.detach().numpy(), f"step {step}")
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in opt_t.param_groups]
