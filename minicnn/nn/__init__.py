"""The layers: torch.nn's classes over the kernels of ``minicnn.functional``.

``Module``/``Parameter``/``Sequential`` do torch's bookkeeping (registration
order, ``state_dict`` keys); each layer owns its parameters and the cache of
its last forward, and calls one functional pair. ``init`` holds torch's default
initialization and the seeded generator; ``_checks`` the argument and input
validation every layer shares.
"""
from .init import default_generator, manual_seed
from .layers import BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear, LogSoftmax, MaxPool2d, ReLU
from .losses import CrossEntropyLoss, NLLLoss
from .module import Module, Parameter, Sequential

__all__ = [
    "BatchNorm1d", "BatchNorm2d", "Conv2d", "CrossEntropyLoss", "Dropout", "Flatten", "Linear", "LogSoftmax",
    "MaxPool2d", "Module", "NLLLoss", "Parameter", "ReLU", "Sequential", "default_generator", "manual_seed",
]
