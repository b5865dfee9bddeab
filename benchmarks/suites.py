"""The measurements: per layer, per model, scaling with batch and threads, and the thread-policy fix."""
import numba
import numpy as np
import torch
from threadpoolctl import threadpool_limits

import minicnn as mc
from minicnn import models
from reference.interop import to_torch

from .cases import layer_cases, layer_flops, model_flops
from .timing import compare


def _inputs(sample_shape, batch, layer, rng):
    if isinstance(layer, (mc.NLLLoss, mc.CrossEntropyLoss)):
        x = rng.standard_normal((batch, *sample_shape)).astype(np.float32)
        return x, rng.integers(0, sample_shape[0], batch)
    return rng.random((batch, *sample_shape), dtype=np.float32), None


def _layer_pair(layer, x, target):
    """Forward and backward callables for a minicnn layer and its torch twin, on the same data."""
    if target is not None:  # a loss
        twin = getattr(torch.nn, type(layer).__name__)()
        xt, tt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(target)
        out_t = [twin(xt, tt)]

        def t_forward():
            out_t[0] = twin(xt, tt)

        layer(x, target)
        return ((lambda: layer(x, target), t_forward),
                (lambda: layer.backward(), lambda: out_t[0].backward(retain_graph=True)))
    layer.train()
    twin = to_torch(layer).train()
    xt = torch.from_numpy(x).requires_grad_()
    dout = np.ones_like(layer(x))
    dout_t = torch.from_numpy(dout)
    out_t = [twin(xt)]

    def t_forward():
        out_t[0] = twin(xt)

    return ((lambda: layer(x), t_forward),
            (lambda: layer.backward(dout), lambda: out_t[0].backward(dout_t, retain_graph=True)))


def layer_suite(batches, repeats, log):
    rows, rng = [], np.random.default_rng(0)
    for label, layer, shape in layer_cases():
        for batch in batches:
            x, target = _inputs(shape, batch, layer, rng)
            (fa, fb), (ba, bb) = _layer_pair(layer, x, target)
            flops = layer_flops(layer, shape, batch)
            for phase, a, b, f in (("forward", fa, fb, flops[0]), ("backward", ba, bb, flops[1])):
                if phase == "backward":
                    fa(), fb()
                ours, theirs = compare(a, b, repeats)
                rows.append(dict(kind="layer", name=label, phase=phase, batch=batch, flops=f,
                                 minicnn=ours, torch=theirs))
                log(rows[-1])
    return rows


class ModelPair:
    """A seed model in minicnn and its torch twin with the same weights, plus their step functions."""

    def __init__(self, name, batch, rng):
        self.name, self.batch = name, batch
        self.model = models.build(name, seed=0)
        self.twin = to_torch(self.model)
        self.criterion = models.criterion(name)
        self.criterion_t = getattr(torch.nn, type(self.criterion).__name__)()
        self.opt = mc.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)
        self.opt_t = torch.optim.SGD(self.twin.parameters(), lr=1e-3, momentum=0.9)
        self.x = rng.random((batch, *models.INPUT_SHAPE), dtype=np.float32)
        self.y = rng.integers(0, 10, batch)
        self.xt, self.yt = torch.from_numpy(self.x), torch.from_numpy(self.y)

    def train_step(self):
        self.model.train()
        self.opt.zero_grad()
        self.criterion(self.model(self.x), self.y)
        self.model.backward(self.criterion.backward())
        self.opt.step()

    def train_step_torch(self):
        self.twin.train()
        self.opt_t.zero_grad()
        self.criterion_t(self.twin(self.xt), self.yt).backward()
        self.opt_t.step()

    def infer(self):
        self.model.eval()
        return self.model(self.x)

    def infer_torch(self):
        self.twin.eval()
        with torch.no_grad():
            return self.twin(self.xt)


def model_suite(batches, repeats, log):
    rows, rng = [], np.random.default_rng(0)
    for name in ("article", "notebook", "notebook-bn"):
        for batch in batches:
            pair = ModelPair(name, batch, rng)
            forward, backward = model_flops(name, batch)
            for phase, a, b, f in (("train step", pair.train_step, pair.train_step_torch, forward + backward),
                                   ("inference", pair.infer, pair.infer_torch, forward)):
                if phase == "train step" and batch == 1 and name.endswith("-bn"):
                    continue  # BatchNorm1d cannot train on one sample (torch refuses too)
                ours, theirs = compare(a, b, repeats)
                rows.append(dict(kind="model", name=name, phase=phase, batch=batch, flops=f,
                                 minicnn=ours, torch=theirs))
                log(rows[-1])
    return rows


def scaling_suite(batches, threads, repeats, log):
    """Time per image of an ``article`` training step against batch size, and the 1 -> N thread speed-up."""
    rows, rng = [], np.random.default_rng(1)
    for batch in batches:
        pair = ModelPair("article", batch, rng)
        ours, theirs = compare(pair.train_step, pair.train_step_torch, repeats)
        rows.append(dict(kind="scaling", name="article", phase="train step", batch=batch,
                         minicnn=ours, torch=theirs))
        log(rows[-1])
    for name in ("article", "notebook", "notebook-bn"):
        pair = ModelPair(name, 64, rng)
        for n in sorted({1, threads}):
            mc.set_num_threads(n)
            torch.set_num_threads(n)
            ours, theirs = compare(pair.train_step, pair.train_step_torch, repeats)
            rows.append(dict(kind="threads", name=name, phase="train step", batch=64, threads=n,
                             minicnn=ours, torch=theirs))
            log(rows[-1])
    mc.set_num_threads(threads)
    torch.set_num_threads(threads)
    return rows


def thread_policy_suite(threads, repeats, log):
    """The fight between Numba's and BLAS's thread pools, and minicnn's fix, on a batch-64 training step.

    The same minicnn step is timed under each policy (A) beside torch (B).
    """
    rows, rng = [], np.random.default_rng(2)
    policies = [("Numba N + BLAS N (no policy)", threads, threads),
                ("Numba 1 + BLAS N", 1, threads),
                ("Numba N + BLAS 1 (minicnn's policy)", threads, 1)]
    for name in ("article", "notebook-bn"):
        pair = ModelPair(name, 64, rng)
        for label, numba_threads, blas_threads in policies:
            numba.set_num_threads(numba_threads)
            with threadpool_limits(limits=blas_threads, user_api="blas"):
                ours, theirs = compare(pair.train_step, pair.train_step_torch, repeats)
            rows.append(dict(kind="policy", name=name, phase=label, batch=64, minicnn=ours, torch=theirs))
            log(rows[-1])
    mc.set_num_threads(threads)
    return rows
