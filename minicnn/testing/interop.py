"""Convert minicnn modules to their torch twins and back, with the same weights.

``to_torch(module)`` builds the torch module layer for layer (same
arguments, same dtype) and loads minicnn's state_dict into it, so the keys
and shapes are identical. ``from_torch(module)`` goes the other way.

This is the one module of the library that imports torch, at its top: nothing
in minicnn imports it except ``minicnn.testing.against_torch``, inside the
functions that need it. ``import minicnn`` never loads torch.
"""
import numpy as np
import torch
from torch import nn

from .. import nn as mc

_TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
_NUMPY_DTYPE = {v: k for k, v in _TORCH_DTYPE.items()}


def _module_dtype(module):
    for p in module.parameters():
        return p.data.dtype
    return getattr(module, "dtype", np.dtype(np.float32))


# Twins of layers defined outside minicnn: {minicnn class: function(layer) -> untrained torch layer}.
_EXTRA_TWINS = {}


def register_twin(minicnn_class, make_torch_layer):
    """Teach ``to_torch`` the torch twin of your own layer class (see docs/extending.md).

    ``make_torch_layer(layer)`` returns an untrained torch module with the same
    hyperparameters; ``to_torch`` then loads the layer's ``state_dict`` into it.
    """
    _EXTRA_TWINS[minicnn_class] = make_torch_layer


def _torch_layer(m):
    """An untrained torch layer with the same hyperparameters as minicnn layer ``m``."""
    for cls in type(m).__mro__:
        if cls in _EXTRA_TWINS:
            return _EXTRA_TWINS[cls](m)
    if isinstance(m, mc.Sequential):
        return nn.Sequential(*(_torch_layer(child) for child in m))
    if isinstance(m, mc.Conv2d):
        return nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                         m.groups, bias=m.bias is not None, padding_mode=m.padding_mode)
    if isinstance(m, mc.MaxPool2d):
        return nn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, m.return_indices, m.ceil_mode)
    if isinstance(m, (mc.BatchNorm1d, mc.BatchNorm2d)):
        cls = nn.BatchNorm2d if isinstance(m, mc.BatchNorm2d) else nn.BatchNorm1d
        return cls(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats,
                   bias=m.bias is not None or not m.affine)
    if isinstance(m, mc.Linear):
        return nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    if isinstance(m, mc.ReLU):  # (subclasses too: a learner's variant is compared with torch's ReLU)
        return nn.ReLU()
    if isinstance(m, mc.Flatten):
        return nn.Flatten(m.start_dim, m.end_dim)
    if isinstance(m, mc.LogSoftmax):
        return nn.LogSoftmax(dim=m.dim)
    if isinstance(m, mc.Dropout):
        return nn.Dropout(m.p)
    if isinstance(m, (mc.NLLLoss, mc.CrossEntropyLoss)):
        weight = None if m.weight is None else torch.from_numpy(np.array(m.weight))
        extra = dict(label_smoothing=m.label_smoothing) if isinstance(m, mc.CrossEntropyLoss) else {}
        return getattr(nn, type(m).__name__)(weight=weight, ignore_index=m.ignore_index, reduction=m.reduction,
                                             **extra)
    raise TypeError(f"to_torch: no torch twin for {type(m).__name__}")


def to_torch(module):
    """The torch twin of a minicnn module: same layers, weights, buffers, dtype and mode."""
    twin = _torch_layer(module).to(_TORCH_DTYPE[np.dtype(_module_dtype(module))])
    if not isinstance(module, (mc.NLLLoss, mc.CrossEntropyLoss)):  # a loss's class weights are its arguments
        twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in module.state_dict().items()})
    return twin.train(module.training)


def _minicnn_layer(t, dtype):
    if isinstance(t, nn.Sequential):
        return mc.Sequential(*(_minicnn_layer(child, dtype) for child in t))
    if isinstance(t, nn.Conv2d):
        return mc.Conv2d(t.in_channels, t.out_channels, t.kernel_size, t.stride, t.padding, t.dilation,
                         t.groups, bias=t.bias is not None, padding_mode=t.padding_mode, dtype=dtype)
    if isinstance(t, nn.MaxPool2d):
        return mc.MaxPool2d(t.kernel_size, t.stride, t.padding, t.dilation, t.return_indices, t.ceil_mode)
    if isinstance(t, (nn.BatchNorm1d, nn.BatchNorm2d)):
        cls = mc.BatchNorm2d if isinstance(t, nn.BatchNorm2d) else mc.BatchNorm1d
        return cls(t.num_features, t.eps, t.momentum, t.affine, t.track_running_stats, dtype=dtype,
                   bias=t.bias is not None or not t.affine)
    if isinstance(t, nn.Linear):
        return mc.Linear(t.in_features, t.out_features, bias=t.bias is not None, dtype=dtype)
    if isinstance(t, nn.ReLU):
        return mc.ReLU()
    if isinstance(t, nn.Flatten):
        return mc.Flatten(t.start_dim, t.end_dim)
    if isinstance(t, nn.LogSoftmax):
        return mc.LogSoftmax(t.dim)
    if isinstance(t, nn.Dropout):
        return mc.Dropout(t.p)
    if isinstance(t, (nn.NLLLoss, nn.CrossEntropyLoss)):
        weight = None if t.weight is None else t.weight.detach().cpu().numpy().copy()
        extra = dict(label_smoothing=t.label_smoothing) if isinstance(t, nn.CrossEntropyLoss) else {}
        return getattr(mc, type(t).__name__)(weight=weight, ignore_index=t.ignore_index, reduction=t.reduction,
                                             **extra)
    raise TypeError(f"from_torch: no minicnn layer for {type(t).__name__}")


def from_torch(module):
    """The minicnn twin of a torch module: same layers, weights, buffers, dtype and mode."""
    tensors = [*module.parameters(), *module.buffers()]
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
    twin = _minicnn_layer(module, _NUMPY_DTYPE[dtype])
    if not isinstance(module, (nn.NLLLoss, nn.CrossEntropyLoss)):  # a loss's class weights are its arguments
        twin.load_state_dict({k: v.detach().cpu().numpy() for k, v in module.state_dict().items()})
    return twin.train(module.training)
