"""The model registry: the tutorials' CNNs for 28x28 Fashion-MNIST, and a per-layer summary.

Each entry of ``MODELS`` holds everything about one model: its layers, the loss
it is trained with and its default training settings. ``Config``, the CLI's
choices, the benchmarks and the tests all read the names from here.

``article``      Conv(1,16,5,p=2) ReLU Pool(2) Conv(16,32,5,p=2) ReLU Pool(2) Flatten Linear(1568,10)
                 -> logits, trained with CrossEntropyLoss.
``notebook``     Conv(1,10,5) ReLU Pool(2,2) Conv(10,20,3) ReLU Flatten Linear(2000,500) ReLU
                 Linear(500,10) LogSoftmax -> log-probabilities, trained with NLLLoss.
``notebook-bn``  ``notebook`` with BatchNorm2d after each conv and BatchNorm1d after
                 Linear(2000,500); 10 outputs (the tutorial's 11 was a bug).
"""
import dataclasses
from typing import Callable

import numpy as np

from ..nn import (BatchNorm1d, BatchNorm2d, Conv2d, CrossEntropyLoss, Flatten, Linear, LogSoftmax, MaxPool2d,
                  NLLLoss, ReLU, Sequential, manual_seed)

INPUT_SHAPE = (1, 28, 28)


def _article(dtype, impl):
    return Sequential(Conv2d(1, 16, 5, padding=2, dtype=dtype, impl=impl), ReLU(), MaxPool2d(2, impl=impl),
                      Conv2d(16, 32, 5, padding=2, dtype=dtype, impl=impl), ReLU(), MaxPool2d(2, impl=impl),
                      Flatten(), Linear(32 * 7 * 7, 10, dtype=dtype))


def _notebook(dtype, impl, batch_norm=False):
    def maybe_bn(cls, n):
        return [cls(n, dtype=dtype)] if batch_norm else []

    return Sequential(Conv2d(1, 10, 5, dtype=dtype, impl=impl), *maybe_bn(BatchNorm2d, 10), ReLU(),
                      MaxPool2d(2, 2, impl=impl),
                      Conv2d(10, 20, 3, dtype=dtype, impl=impl), *maybe_bn(BatchNorm2d, 20), ReLU(), Flatten(),
                      Linear(2000, 500, dtype=dtype), *maybe_bn(BatchNorm1d, 500), ReLU(),
                      Linear(500, 10, dtype=dtype), LogSoftmax(dim=1))


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One seed model: how to build it, what it is trained with, and its default settings."""
    name: str
    layers: Callable            # (dtype, impl) -> Sequential
    criterion: type             # the loss class it is trained with
    defaults: dict              # Config fields: each model's defaults reach the README's accuracy
    description: str


MODELS = {spec.name: spec for spec in (
    ModelSpec("article", _article, CrossEntropyLoss,
              dict(epochs=6, batch_size=100, lr=0.02, momentum=0.9, weight_decay=0.0, lr_gamma=1.0),
              "the 2-layer CNN of the article: logits, cross-entropy"),
    ModelSpec("notebook", _notebook, NLLLoss,
              dict(epochs=10, batch_size=64, lr=0.01, momentum=0.5, weight_decay=0.0, lr_gamma=1.0),
              "the notebook's CNN: log-softmax, NLL"),
    ModelSpec("notebook-bn", lambda dtype, impl: _notebook(dtype, impl, batch_norm=True), NLLLoss,
              dict(epochs=10, batch_size=64, lr=0.05, momentum=0.9, weight_decay=0.0, lr_gamma=0.7),
              "the notebook's CNN with batch norm"),
)}


def spec(name):
    """The registry entry of ``name``; a ValueError naming the choices if there is none."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]


def build(name, dtype=np.float32, seed=None, impl="fast"):
    """A freshly initialized model; with ``seed`` its weights are reproducible.

    ``impl='naive'`` builds its convolutions and poolings on the readable direct loops.
    """
    entry = spec(name)
    if seed is not None:
        manual_seed(seed)
    return entry.layers(dtype, impl)


def criterion(name):
    """The loss each model is trained with (CrossEntropyLoss for logits, NLLLoss for log-probs)."""
    return spec(name).criterion()


def _formula(layer, axis, hw):
    """The output-size formula of a conv or pool layer along one axis, numbers filled in."""
    size, k, s, d = hw[axis], layer.kernel_size[axis], layer.stride[axis], layer.dilation[axis]
    if isinstance(layer, Conv2d):
        before, after = layer.padding_per_side()[2 * axis:2 * axis + 2]
        ceil = False
    else:
        before = after = layer.padding[axis]
        ceil = layer.ceil_mode
    pad = f"2·{before}" if before == after else f"{before}+{after}"
    lo, hi = ("⌈", "⌉") if ceil else ("⌊", "⌋")
    span = size + before + after - d * (k - 1) - 1
    out = layer.output_shape((1, 1, *hw))[2 + axis]
    return f"{lo}({size} + {pad} − {d}·({k}−1) − 1)/{s}{hi} + 1 = {lo}{span}/{s}{hi} + 1 = {out}"


def summary(model, input_shape=INPUT_SHAPE, batch=1):
    """A table: each layer, its output shape, its parameter count, and the size formula for conv/pool.

    The shapes are found by running a zero batch through the model in eval mode.
    """
    x = np.zeros((batch, *input_shape), dtype=model.parameters()[0].dtype if model.parameters() else np.float32)
    was_training = model.training
    model.eval()
    rows, total = [], 0
    for i, layer in enumerate(model):
        hw = x.shape[2:]
        x = layer(x)
        count = sum(p.data.size for p in layer.parameters())
        total += count
        note = ""
        if isinstance(layer, (Conv2d, MaxPool2d)):
            note = "H: " + _formula(layer, 0, hw)
            if _formula(layer, 0, hw) != _formula(layer, 1, hw):
                note += "; W: " + _formula(layer, 1, hw)
        elif isinstance(layer, Linear):
            note = f"{layer.in_features} inputs -> {layer.out_features} outputs"
        rows.append((f"{i}: {type(layer).__name__}", str(tuple(x.shape)), f"{count:,}", note))
    model.train(was_training)
    head = ("layer", "output shape", "params", "size")
    widths = [max(len(r[c]) for r in rows + [head]) for c in range(3)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)) + "  " + head[3]]
    lines.append("-" * len(lines[0]))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) + "  " + r[3] for r in rows]
    lines.append(f"total parameters: {total:,}   input: {(batch, *input_shape)}")
    return "\n".join(lines)
