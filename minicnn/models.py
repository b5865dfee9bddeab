"""The tutorials' CNNs for 28x28 Fashion-MNIST, and a per-layer summary.

``article``      Conv(1,16,5,p=2) ReLU Pool(2) Conv(16,32,5,p=2) ReLU Pool(2) Flatten Linear(1568,10)
                 -> logits, trained with CrossEntropyLoss.
``notebook``     Conv(1,10,5) ReLU Pool(2,2) Conv(10,20,3) ReLU Flatten Linear(2000,500) ReLU
                 Linear(500,10) LogSoftmax -> log-probabilities, trained with NLLLoss.
``notebook-bn``  ``notebook`` with BatchNorm2d after each conv and BatchNorm1d after
                 Linear(2000,500); 10 outputs (the tutorial's 11 was a bug).
"""
import numpy as np

from .init import manual_seed
from .layers import (BatchNorm1d, BatchNorm2d, Conv2d, CrossEntropyLoss, Flatten, Linear, LogSoftmax,
                     MaxPool2d, NLLLoss, ReLU)
from .module import Sequential

INPUT_SHAPE = (1, 28, 28)


def _article(dtype):
    return Sequential(Conv2d(1, 16, 5, padding=2, dtype=dtype), ReLU(), MaxPool2d(2),
                      Conv2d(16, 32, 5, padding=2, dtype=dtype), ReLU(), MaxPool2d(2),
                      Flatten(), Linear(32 * 7 * 7, 10, dtype=dtype))


def _notebook(dtype, batch_norm=False):
    def maybe_bn(cls, n):
        return [cls(n, dtype=dtype)] if batch_norm else []

    return Sequential(Conv2d(1, 10, 5, dtype=dtype), *maybe_bn(BatchNorm2d, 10), ReLU(), MaxPool2d(2, 2),
                      Conv2d(10, 20, 3, dtype=dtype), *maybe_bn(BatchNorm2d, 20), ReLU(), Flatten(),
                      Linear(2000, 500, dtype=dtype), *maybe_bn(BatchNorm1d, 500), ReLU(),
                      Linear(500, 10, dtype=dtype), LogSoftmax(dim=1))


MODELS = {
    "article": (_article, CrossEntropyLoss),
    "notebook": (_notebook, NLLLoss),
    "notebook-bn": (lambda dtype: _notebook(dtype, batch_norm=True), NLLLoss),
}


def _check_name(name):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


def build(name, dtype=np.float32, seed=None):
    """A freshly initialized model; with ``seed`` its weights are reproducible."""
    _check_name(name)
    if seed is not None:
        manual_seed(seed)
    return MODELS[name][0](dtype)


def criterion(name):
    """The loss each model is trained with (CrossEntropyLoss for logits, NLLLoss for log-probs)."""
    _check_name(name)
    return MODELS[name][1]()


def _formula(layer, axis, hw):
    """The output-size formula of a conv or pool layer along one axis, numbers filled in."""
    size, k, s, d = hw[axis], layer.kernel_size[axis], layer.stride[axis], layer.dilation[axis]
    if isinstance(layer, Conv2d):
        before, after = layer._pads()[2 * axis:2 * axis + 2]
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
