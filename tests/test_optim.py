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
def test_sgd_matches_torch_step_for_step(options, dtype):
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (5,), (2, 1, 3, 3)]
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
            assert_close(p.data, p_t.detach().numpy(), f"param {i} after step {step}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_sgd_fused_step_equals_numpy_step_bitwise(options, dtype):
    """``step`` (one fused pass per parameter) against ``step_numpy`` (whole-array NumPy), both from
    the same state, to the last bit: parameters and momentum buffers. The shapes include one large
    enough for the parallel build, and a non-contiguous parameter, which takes NumPy's operations."""
    rng = np.random.default_rng(1)
    shapes = [(3, 4), (5,), (300, 400)]
    runs = []
    for _ in range(2):
        params = [mc.Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]
        params.append(mc.Parameter(np.asfortranarray(rng.standard_normal((6, 7)).astype(dtype))))
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
            assert np.array_equal(a.data, b.data), f"param {i} after step {step}"
        for i, (a, b) in enumerate(zip(runs[0][1].momentum_buffers, runs[1][1].momentum_buffers)):
            assert (a is None and b is None) or np.array_equal(a, b), f"momentum buffer {i} after step {step}"


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
