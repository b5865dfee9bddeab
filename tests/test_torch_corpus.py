"""PyTorch's own test corpus, run against minicnn: every case of the installed torch's

* ``common_modules.module_db`` for the modules minicnn has (their ``ModuleInput``s and error inputs),
* ``common_nn``'s ``module_tests``, ``get_new_module_tests()`` and ``criterion_tests`` entries for them,
* ``common_optimizers.optim_db``'s SGD configurations and error inputs,

in float64 (relative tolerance 1e-7) and float32 (1e-4), in training and in eval mode. Each case
compares the forward output, the input gradient for a seeded random upstream gradient, every parameter
gradient and every buffer. Error inputs must raise in minicnn too (at construction or at forward; minicnn
checks its arguments when the module is built, torch sometimes only when it runs).

The cases are read from the installed torch (nothing is copied into this repository). The few that
minicnn does not match are listed in ``DIFFERENCES`` with the reason, and the README's "Differences
from torch" table lists the same; a listed case is still run and must fail the way its entry says.
The summary line of ``pytest`` gives the number of corpus cases per module (tests/conftest.py).
"""
import inspect
import os
import re
from collections import Counter

import numpy as np
import pytest
import torch
from torch.testing._internal import common_nn
from torch.testing._internal.common_modules import ModuleErrorEnum, module_db
from torch.testing._internal.common_optimizers import OptimizerErrorEnum, optim_db

import minicnn as mc
from helpers import RTOL
from minicnn.testing.interop import from_torch

MODULES = ("Conv2d", "MaxPool2d", "BatchNorm1d", "BatchNorm2d", "Linear", "ReLU", "Flatten", "LogSoftmax",
           "Dropout", "NLLLoss", "CrossEntropyLoss")
DTYPES = {torch.float64: np.float64, torch.float32: np.float32}
# Implementation selectors of torch's optimizers: they choose torch's kernel (for-loop, multi-tensor,
# fused, autograd-differentiable), not the update, so the corpus's optimizer cases drop them.
IMPLEMENTATION_ONLY = ("foreach", "fused", "differentiable")

# Listed differences: case id (regular expression) -> why minicnn differs. Each must still fail.
DIFFERENCES = {}

COUNTS = Counter()  # module name -> corpus cases run (read by conftest's summary line)


# ---------------------------------------------------------------------------
# Collecting the corpus
# ---------------------------------------------------------------------------
def _module_db_cases():
    cases = []
    for info in module_db:
        name = info.module_cls.__name__
        if name not in MODULES:
            continue
        for dtype in DTYPES:
            for training in (True, False):
                torch.manual_seed(0)  # the corpus draws its inputs at random: the same ones on every run
                inputs = info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=True,
                                                 training=training)
                for k, mi in enumerate(inputs):
                    case_id = f"module_db-{name}-{mi.desc or k}-{str(dtype)[6:]}-{'train' if training else 'eval'}"
                    cases.append(pytest.param(
                        dict(name=name, make=lambda c=mi.constructor_input: ("args", c.args, c.kwargs),
                             forward=mi.forward_input, dtype=dtype, training=training), id=case_id))
    return cases


def _module_db_error_cases():
    cases = []
    for info in module_db:
        name = info.module_cls.__name__
        if name not in MODULES or info.module_error_inputs_func is None:
            continue
        errors = info.module_error_inputs_func(info, device="cpu", dtype=torch.float64, requires_grad=True,
                                               training=True)
        for k, error in enumerate(errors):
            mi = error.module_error_input
            cases.append(pytest.param(dict(name=name, constructor=mi.constructor_input, forward=mi.forward_input,
                                           error_on=error.error_on, regex=error.error_regex),
                                      id=f"module_db-error-{name}-{k}"))
    return cases


def _common_nn_entries():
    entries = list(common_nn.module_tests) + list(common_nn.get_new_module_tests()) + list(common_nn.criterion_tests)
    for entry in entries:
        name = entry.get("module_name") or entry.get("fullname", "").split("_")[0]
        if name in MODULES:
            yield name, entry


def _common_nn_cases():
    cases = []
    for name, entry in _common_nn_entries():
        label = entry.get("fullname") or f"{name}_{entry.get('desc', '')}".rstrip("_")
        for dtype in DTYPES:
            for training in (True, False):
                cases.append(pytest.param(dict(name=name, entry=entry, dtype=dtype, training=training),
                                          id=f"common_nn-{label}-{str(dtype)[6:]}-{'train' if training else 'eval'}"))
    return cases


def _sgd_info():
    (info,) = [i for i in optim_db if i.optim_cls is torch.optim.SGD]
    return info


def _sgd_cases():
    info = _sgd_info()
    return [pytest.param(dict(kwargs=oi.kwargs, desc=oi.desc, dtype=dtype), id=f"optim_db-SGD-{oi.desc}-{str(dtype)[6:]}")
            for dtype in DTYPES for oi in info.optim_inputs_func(device="cpu", dtype=dtype)]


def _sgd_error_cases():
    errors = _sgd_info().optim_error_inputs_func(device="cpu", dtype=torch.float64)
    return [pytest.param(e, id=f"optim_db-SGD-error-{k}") for k, e in enumerate(errors)]


# ---------------------------------------------------------------------------
# Conversions and comparisons
# ---------------------------------------------------------------------------
def _to_numpy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    return value


def _build_minicnn(name, args, kwargs, np_dtype):
    """minicnn's class of the same name, with torch's constructor arguments (tensors as arrays)."""
    cls = getattr(mc, name)
    kwargs = dict(_to_numpy(kwargs))
    if "dtype" in inspect.signature(cls.__init__).parameters:
        kwargs["dtype"] = np_dtype
    return cls(*_to_numpy(args), **kwargs)


def _assert_close(ours, theirs, what, dtype):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != torch's {theirs.shape}"
    if theirs.dtype.kind in "iub":
        np.testing.assert_array_equal(ours, theirs, err_msg=what)
        return
    rtol = RTOL[np.dtype(DTYPES[dtype])]
    finite = theirs[np.isfinite(theirs)]
    scale = float(np.abs(finite).max(initial=0.0))
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * scale, equal_nan=True, err_msg=what)


def _run_pair(name, ours, theirs, inputs, dtype, training, seed):
    """Forward, backward and state of ``ours`` (minicnn) and ``theirs`` (torch) on the same inputs."""
    ours.train(training)
    theirs.train(training)
    theirs.zero_grad()
    ours.zero_grad()
    is_loss = name in ("NLLLoss", "CrossEntropyLoss")
    leaves = [t.detach().clone().requires_grad_(t.is_floating_point()) if isinstance(t, torch.Tensor) else t
              for t in inputs]
    out_t = theirs(*leaves)
    out = ours(*[_to_numpy(t) for t in inputs])
    outputs_t = out_t if isinstance(out_t, tuple) else (out_t,)
    outputs = out if isinstance(out, tuple) else (out,)
    assert len(outputs) == len(outputs_t)
    for k, (a, b) in enumerate(zip(outputs, outputs_t)):
        _assert_close(a, _to_numpy(b), f"output {k}", dtype)
    rng = np.random.default_rng(seed)
    dout = rng.standard_normal(outputs_t[0].shape).astype(DTYPES[dtype])
    if outputs_t[0].requires_grad:
        outputs_t[0].backward(torch.from_numpy(dout))
        dx = ours.backward(dout.copy())
        if leaves[0].grad is not None or dx is not None:
            _assert_close(dx, _to_numpy(leaves[0].grad) if leaves[0].grad is not None else np.zeros_like(dx),
                          "input gradient", dtype)
    ours_params, theirs_params = dict(ours.named_parameters()), dict(theirs.named_parameters())
    assert list(ours_params) == list(theirs_params)
    for key, p in ours_params.items():
        grad_t = theirs_params[key].grad
        _assert_close(p.grad, np.zeros_like(p.grad) if grad_t is None else _to_numpy(grad_t),
                      f"gradient of {key}", dtype)
    buffers_t = {k: v for k, v in theirs.named_buffers() if not (is_loss and k == "weight")}
    ours_buffers = dict(ours.named_buffers())
    assert list(ours_buffers) == list(buffers_t)
    for key, b in ours_buffers.items():
        _assert_close(b, _to_numpy(buffers_t[key]), f"buffer {key}", dtype)


def _expect_difference(request):
    for pattern, reason in DIFFERENCES.items():
        if re.search(pattern, request.node.callspec.id):
            return reason
    return None


def _check(request, run):
    """Run a case; a listed difference must fail, everything else must pass."""
    reason = _expect_difference(request)
    if reason is None:
        run()
        return
    with pytest.raises(AssertionError):
        run()


# ---------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", _module_db_cases())
def test_module_db(case, request):
    name, dtype, training = case["name"], case["dtype"], case["training"]
    COUNTS[name] += 1
    _, args, kwargs = case["make"]()
    torch.manual_seed(0)
    theirs = getattr(torch.nn, name)(*args, **kwargs).to(dtype)
    ours = _build_minicnn(name, args, kwargs, DTYPES[dtype])
    if list(theirs.state_dict()) and name not in ("NLLLoss", "CrossEntropyLoss"):
        ours.load_state_dict(_to_numpy(dict(theirs.state_dict())))
    forward = case["forward"]
    inputs = list(forward.args) + list(forward.kwargs.values())
    _check(request, lambda: _run_pair(name, ours, theirs, inputs, dtype, training, seed=len(request.node.name)))


@pytest.mark.parametrize("case", _module_db_error_cases())
def test_module_db_error_inputs(case):
    name = case["name"]
    COUNTS[name] += 1
    c, f = case["constructor"], case["forward"]
    with pytest.raises((ValueError, TypeError)):
        module = _build_minicnn(name, c.args, c.kwargs, np.float64)
        assert case["error_on"] == ModuleErrorEnum.FORWARD_ERROR
        module(*_to_numpy(list(f.args) + list(f.kwargs.values())))


def _common_nn_inputs(entry, dtype):
    torch.manual_seed(0)
    if "input_fn" in entry:
        x = entry["input_fn"]()
    elif "input" in entry:
        x = entry["input"]
    else:
        x = torch.randn(entry["input_size"])
    x = x.to(dtype) if x.is_floating_point() else x
    if "target_fn" in entry:
        return [x, entry["target_fn"]()]
    if "target" in entry:
        return [x, entry["target"]]
    return [x]


def _captured_functional(module, inputs):
    """A common_nn criterion written as ``wrap_functional(lambda i: F.nll_loss(i, t, ...))``: run it once with
    F.nll_loss recording its target and options, and return them."""
    seen = {}
    original = torch.nn.functional.nll_loss

    def recording(input, target, *args, **kwargs):
        names = ["weight", "size_average", "ignore_index", "reduce", "reduction"]
        seen.update(target=target, **dict(zip(names, args)), **kwargs)
        return original(input, target, *args, **kwargs)

    torch.nn.functional.nll_loss = recording
    try:
        module(*inputs)
    finally:
        torch.nn.functional.nll_loss = original
    return seen


@pytest.mark.parametrize("case", _common_nn_cases())
def test_common_nn(case, request):
    name, entry, dtype, training = case["name"], case["entry"], case["dtype"], case["training"]
    COUNTS[name] += 1
    torch.manual_seed(0)
    if "constructor" in entry:
        theirs = entry["constructor"]().to(dtype)
    else:
        theirs = getattr(torch.nn, name)(*entry.get("constructor_args", ())).to(dtype)
    inputs = _common_nn_inputs(entry, dtype)
    if not isinstance(theirs, getattr(torch.nn, name)):  # a functional wrapped as a module (NLLLoss_no_reduce_*)
        options = _captured_functional(theirs, inputs)
        target = options.pop("target")
        options = {k: v for k, v in options.items() if k in ("weight", "ignore_index", "reduction")}
        theirs = torch.nn.NLLLoss(**options).to(dtype)
        inputs = [inputs[0], target]
    ours = from_torch(theirs)
    _check(request, lambda: _run_pair(name, ours, theirs, inputs, dtype, training, seed=len(request.node.name)))


class _Model:
    """The parameters of one small model, in torch and in minicnn, with the same gradients at each step."""

    def __init__(self, dtype, seed=0):
        rng = np.random.default_rng(seed)
        self.values = [rng.standard_normal(s) for s in ((4, 3), (4,), (2, 4))]
        self.theirs = [torch.tensor(v, dtype=dtype, requires_grad=True) for v in self.values]
        self.ours = [mc.Parameter(v.astype(DTYPES[dtype])) for v in self.values]
        self.rng = rng

    def set_gradients(self):
        for p, p_t in zip(self.ours, self.theirs):
            g = self.rng.standard_normal(p.shape).astype(p.dtype)
            p.grad[...] = g
            p_t.grad = torch.from_numpy(g.copy())


@pytest.mark.parametrize("case", _sgd_cases())
def test_optim_db_sgd(case, request):
    COUNTS["SGD"] += 1
    dtype = case["dtype"]
    kwargs = {k: v for k, v in case["kwargs"].items() if k not in IMPLEMENTATION_ONLY}
    model = _Model(dtype)
    theirs = torch.optim.SGD(model.theirs, **kwargs)
    ours = mc.SGD(model.ours, **_to_numpy(kwargs))

    def run():
        for step in range(10):
            model.set_gradients()
            theirs.step()
            ours.step()
            for k, (p, p_t) in enumerate(zip(model.ours, model.theirs)):
                _assert_close(p.data, _to_numpy(p_t), f"parameter {k} after step {step}", dtype)

    _check(request, run)


@pytest.mark.parametrize("error", _sgd_error_cases())
def test_optim_db_sgd_error_inputs(error):
    COUNTS["SGD"] += 1
    spec = error.optimizer_error_input
    assert error.error_on == OptimizerErrorEnum.CONSTRUCTION_ERROR

    converted = {}  # the same torch tensor twice must become the same Parameter twice

    def convert(params):
        if isinstance(params, torch.Tensor):
            return converted.setdefault(id(params), mc.Parameter(_to_numpy(params)))
        if isinstance(params, dict):
            return {k: convert(v) if k == "params" else _to_numpy(v) for k, v in params.items()}
        if isinstance(params, tuple) and len(params) == 2 and isinstance(params[0], str):
            return (params[0], convert(params[1]))
        if isinstance(params, (list, tuple)):
            return [convert(p) for p in params]
        return params

    params = [mc.Parameter(np.zeros((1, 1)))] if spec.params is None else convert(spec.params)
    kwargs = {k: v for k, v in spec.kwargs.items() if k not in IMPLEMENTATION_ONLY}
    # torch only warns for a duplicate parameter in one group (and then applies its update twice); minicnn refuses
    with pytest.raises((ValueError, TypeError)):
        mc.SGD(params, **_to_numpy(kwargs))


def test_the_corpus_is_the_installed_torchs_and_covers_every_module():
    """Every module minicnn has appears in the corpus that ran (Dropout has no corpus case in torch 2.14)."""
    names = {info.module_cls.__name__ for info in module_db} | {name for name, _ in _common_nn_entries()}
    assert set(MODULES) - names <= {"Dropout"}
    assert len(_module_db_cases()) > 400 and len(_common_nn_cases()) > 100 and len(_sgd_cases()) == 18
    assert os.path.dirname(common_nn.__file__).endswith(os.path.join("torch", "testing", "_internal"))
