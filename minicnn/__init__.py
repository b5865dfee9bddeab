"""minicnn: a convolutional-network library in NumPy and Numba, with manual backprop.

Every layer does what its torch.nn namesake does, forward and backward, and
the kernels are written to be read. ``import minicnn as mc``.
"""
from .gradcheck import gradcheck
from .init import default_generator, manual_seed
from .layers import (BatchNorm1d, BatchNorm2d, Conv2d, CrossEntropyLoss, Dropout, Flatten, Linear,
                     LogSoftmax, MaxPool2d, NLLLoss, ReLU)
from .module import Module, Parameter, Sequential
from .optim import SGD, ExponentialLR
from .threads import set_num_threads

__version__ = "0.1.0"

__all__ = [
    "BatchNorm1d", "BatchNorm2d", "Conv2d", "CrossEntropyLoss", "Dropout", "ExponentialLR", "Flatten", "Linear",
    "LogSoftmax", "MaxPool2d", "Module", "NLLLoss", "Parameter", "ReLU", "SGD", "Sequential",
    "default_generator", "gradcheck", "manual_seed", "set_num_threads",
]
