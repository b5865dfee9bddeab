"""minicnn: a convolutional-network library in NumPy and Numba, with manual backprop.

Every layer does what its torch.nn namesake does, forward and backward, and
the kernels are written to be read. ``import minicnn as mc``.
"""
import os as _os
import sys as _sys

# Quiet thread pools (see minicnn.threads): OpenBLAS and OpenMP read these once, when they start.
if "numpy" not in _sys.modules and "numba" not in _sys.modules:
    _os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_QUIET_POOLS = (_os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
                and "OPENBLAS_THREAD_TIMEOUT" in _os.environ)

from . import threads as _threads  # noqa: E402

_threads.QUIET_POOLS = _QUIET_POOLS
from .gradcheck import gradcheck  # noqa: E402
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
