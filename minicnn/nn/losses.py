"""Losses with torch.nn's names, arguments and semantics: ``NLLLoss`` and ``CrossEntropyLoss``.

``loss = criterion(input, target)`` then ``criterion.backward()`` returns d loss / d input.
"""
import numpy as np

from .. import functional as F
from . import _checks as chk
from .module import Module

class _Loss(Module):
    """``loss = criterion(input, target)``; ``criterion.backward()`` returns d loss / d input."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__()
        name = type(self).__name__
        if reduction not in F.REDUCTIONS:
            raise ValueError(f"{name}: reduction must be one of {F.REDUCTIONS}, got {reduction!r}")
        if weight is not None and (not isinstance(weight, np.ndarray) or weight.ndim != 1):
            raise ValueError(f"{name}: weight must be a 1-D ndarray with one entry per class, got {weight!r}")
        self.weight, self.ignore_index, self.reduction = weight, int(ignore_index), reduction

    def __call__(self, input, target):
        return self.forward(input, target)

    def forward(self, input, target):
        input, target, weight = self._validate(input, target)
        loss, self._cache = self._forward(input, target, weight, self.ignore_index, self.reduction)
        self._loss_shape, self._dtype = loss.shape, input.dtype
        return loss

    def _validate(self, input, target):
        name = self._name()
        input = chk.check_input(name, input, (2,))
        N, C = input.shape
        if not isinstance(target, np.ndarray) or not np.issubdtype(target.dtype, np.integer):
            got = target.dtype if isinstance(target, np.ndarray) else type(target).__name__
            raise TypeError(f"{name}: target must be an integer ndarray of class indices, got {got}")
        if target.shape != (N,):
            raise ValueError(f"{name}: target must have shape ({N},) to match input shape {input.shape}, "
                             f"got {target.shape}")
        target = target.astype(np.int64)
        bad = (target != self.ignore_index) & ((target < 0) | (target >= C))
        if bad.any():
            raise ValueError(f"{name}: target {int(target[bad][0])} is out of range for {C} classes "
                             f"(valid: 0 to {C - 1}, or ignore_index={self.ignore_index})")
        weight = None
        if self.weight is not None:
            if self.weight.shape != (C,):
                raise ValueError(f"{name}: weight must have shape ({C},) for input shape {input.shape}, "
                                 f"got {self.weight.shape}")
            weight = self.weight.astype(input.dtype)
        return input, target, weight

    def backward(self, grad_output=None):
        """Gradient with respect to ``input``; ``grad_output`` defaults to 1 (or ones for 'none')."""
        cache = self._saved()
        loss_shape, dtype = self._loss_shape, self._dtype
        if grad_output is None:
            grad_output = np.ones(loss_shape, dtype=dtype)
        grad_output = np.asarray(grad_output, dtype=dtype)
        if grad_output.shape != loss_shape:
            raise ValueError(f"{self._name()}.backward: grad_output must have the loss's shape {loss_shape}, "
                             f"got {grad_output.shape}")
        return self._backward(grad_output, cache)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities (N, C) for int targets (N,).

    ``reduction``: 'mean' (weighted mean), 'sum' or 'none'. Optional
    per-class ``weight`` (C,) and ``ignore_index``, as in torch.
    """

    _forward, _backward = staticmethod(F.nll_forward), staticmethod(F.nll_backward)


class CrossEntropyLoss(_Loss):
    """Cross-entropy of raw logits (N, C) for int targets (N,): NLL of log_softmax(logits)."""

    _forward, _backward = staticmethod(F.cross_entropy_forward), staticmethod(F.cross_entropy_backward)
