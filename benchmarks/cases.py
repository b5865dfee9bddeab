"""What is benchmarked: every distinct layer of the seed models, and the models themselves.

Layer cases are read off the models (the input each layer sees), so a change
to ``minicnn.models`` changes the benchmark with it.
"""
import numpy as np
import torch

import minicnn as mc
from minicnn.testing.interop import to_torch
from minicnn.training import models

SEED_MODELS = tuple(models.MODELS)


def layer_cases():
    """``[(label, layer, per-sample input shape)]`` for each distinct conv, pool, BN, linear layer and loss."""
    seen, cases = set(), []
    for name in SEED_MODELS:
        model = models.build(name, seed=0).eval()
        x = np.zeros((2, *models.INPUT_SHAPE), np.float32)
        for layer in model:
            if isinstance(layer, (mc.Conv2d, mc.MaxPool2d, mc.BatchNorm1d, mc.BatchNorm2d, mc.Linear)):
                key = (layer._name(), x.shape[1:])
                if key not in seen:
                    seen.add(key)
                    cases.append((f"{type(layer).__name__} {_short(layer)} in {'x'.join(map(str, x.shape[1:]))}",
                                  layer, x.shape[1:]))
            x = layer(x)
        loss = models.criterion(name)
        key = (type(loss).__name__, x.shape[1:])
        if key not in seen:
            seen.add(key)
            cases.append((f"{type(loss).__name__} in {x.shape[1]}", loss, x.shape[1:]))
    return cases


def _short(layer):
    if isinstance(layer, mc.Conv2d):
        k = "x".join(map(str, layer.kernel_size))
        pad = f" p{layer.padding[0]}" if layer.padding != (0, 0) else ""
        return f"{layer.in_channels}->{layer.out_channels} {k}{pad}"
    if isinstance(layer, mc.MaxPool2d):
        return "x".join(map(str, layer.kernel_size))
    if isinstance(layer, mc.Linear):
        return f"{layer.in_features}->{layer.out_features}"
    return str(layer.num_features)


def layer_flops(layer, sample_shape, batch):
    """Floating-point operations of (forward, backward) for one call; 0 where memory-bound."""
    if isinstance(layer, mc.Conv2d):
        _, F, OH, OW = layer.output_shape((batch, *sample_shape))
        kh, kw = layer.kernel_size
        forward = 2 * batch * F * OH * OW * (layer.in_channels // layer.groups) * kh * kw
        return forward, 2 * forward  # backward: dx and dw, each a product of the forward's size
    if isinstance(layer, mc.Linear):
        forward = 2 * batch * layer.in_features * layer.out_features
        return forward, 2 * forward
    return 0, 0


def model_flops(name, batch):
    """(forward, backward) FLOPs of a model's conv and linear layers at ``batch``."""
    model = models.build(name, seed=0).eval()
    x = np.zeros((1, *models.INPUT_SHAPE), np.float32)
    forward = backward = 0
    for layer in model:
        f, b = layer_flops(layer, x.shape[1:], batch)
        forward, backward = forward + f, backward + b
        x = layer(x)
    return forward, backward


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
        self.model.backward(self.criterion.backward(), input_grad=False)  # as torch: x needs no gradient
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
