"""The seed models as torch.nn.Sequential, layer for layer like ``minicnn.models``.

State-dict keys and shapes are identical, so weights move between the two
with ``load_state_dict`` (see ``reference.interop``).
"""
from torch import nn


def build(name):
    """``article``, ``notebook`` or ``notebook-bn`` as a ``torch.nn.Sequential`` (float32)."""
    if name == "article":
        return nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
    if name in ("notebook", "notebook-bn"):
        bn = name == "notebook-bn"

        def maybe(layer):
            return [layer] if bn else []

        return nn.Sequential(nn.Conv2d(1, 10, 5), *maybe(nn.BatchNorm2d(10)), nn.ReLU(), nn.MaxPool2d(2, 2),
                             nn.Conv2d(10, 20, 3), *maybe(nn.BatchNorm2d(20)), nn.ReLU(), nn.Flatten(),
                             nn.Linear(2000, 500), *maybe(nn.BatchNorm1d(500)), nn.ReLU(),
                             nn.Linear(500, 10), nn.LogSoftmax(dim=1))
    raise ValueError(f"unknown model {name!r}; choose one of article, notebook, notebook-bn")
