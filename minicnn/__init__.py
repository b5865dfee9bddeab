"""minicnn: a convolutional-network library in NumPy and Numba, with manual backprop.

Every layer does what its torch.nn namesake does, forward and backward, and
the kernels are written to be read. ``import minicnn as mc``.

The package reads bottom-up, each layer importing only the ones below it:

    runtime      the thread policy of Numba's pool and numpy's BLAS
    functional   the kernels: functional forward/backward pairs, one module per op family
    nn           Module, Parameter, Sequential, the layers and losses, init, input checks
    optim        SGD and ExponentialLR
    testing      learner tools: gradcheck, compare_with_torch, torch interop
    training     the Fashion-MNIST app: data, model registry, loop, checkpoints, plots, CLI
"""
from . import runtime as _runtime

_runtime.configure_at_import()  # the thread policy, whatever was imported first: see minicnn.runtime
from . import functional  # noqa: E402,F401
from .nn import (BatchNorm1d, BatchNorm2d, Conv2d, CrossEntropyLoss, Dropout, Flatten, Linear,  # noqa: E402
                 LogSoftmax, MaxPool2d, Module, NLLLoss, Parameter, ReLU, Sequential, default_generator,
                 manual_seed)
from .optim import SGD, ExponentialLR  # noqa: E402
from .runtime import set_num_threads  # noqa: E402
from .testing import gradcheck  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "BatchNorm1d", "BatchNorm2d", "Conv2d", "CrossEntropyLoss", "Dropout", "ExponentialLR", "Flatten", "Linear",
    "LogSoftmax", "MaxPool2d", "Module", "NLLLoss", "Parameter", "ReLU", "SGD", "Sequential",
    "default_generator", "gradcheck", "manual_seed", "set_num_threads",
]
