"""Losses with torch.nn's names, arguments and semantics: ``NLLLoss`` and ``CrossEntropyLoss``.

``loss = criterion(input, target)`` then ``criterion.backward()`` returns d loss / d input.

Accepted shapes, as in torch: input (N, C) with target (N,); input (N, C, d1, ..., dK)
with target (N, d1, ..., dK); one unbatched sample (C,) with a 0-d target; N may be 0.
CrossEntropyLoss also takes class probabilities: a float target of the input's shape.
"""
import numbers

import numpy as np

from .. import functional as F
from ..functional.loss import checked_cross_entropy_forward, checked_nll_forward
from . import _checks as chk
from .module import Module


class _Loss(Module):
    """``loss = criterion(input, target)``; ``criterion.backward()`` returns d loss / d input."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__()
        name = type(self).__name__
        if reduction not in F.REDUCTIONS:
            raise ValueError(f"{name}: reduction must be one of {F.REDUCTIONS}, got {reduction!r}")
        if weight is not None and (not isinstance(weight, np.ndarray) or weight.ndim != 1
                                   or weight.dtype.kind != "f"):
            raise ValueError(f"{name}: weight must be a 1-D float ndarray with one entry per class, got {weight!r}")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise TypeError(f"{name}: ignore_index must be an int, got {ignore_index!r}")
        self.weight, self.ignore_index, self.reduction = weight, int(ignore_index), reduction

    def forward(self, input, target):
        input, target, weight = self._validate(input, target)
        loss, self._cache = self._run_forward(input, target, weight)
        self._loss_shape, self._dtype = loss.shape, input.dtype
        return loss

    def _validate(self, input, target):
        name = self  # prints as its name (repr), built only when a message is made
        input = chk.check_input(name, input, range(1, 33), allow_empty=True)
        class_axis = 0 if input.ndim == 1 else 1
        C = input.shape[class_axis]
        if C == 0:
            raise ValueError(f"{name}: input must have at least one class in dim {class_axis}, got shape {input.shape}")
        samples = input.shape[:class_axis] + input.shape[class_axis + 1:]
        if not isinstance(target, np.ndarray):
            raise TypeError(f"{name}: target must be an ndarray, got {type(target).__name__}")
        if target.dtype.kind == "f" and self._takes_probabilities:
            if target.shape != input.shape:
                raise ValueError(f"{name}: a target of class probabilities must have the input's shape "
                                 f"{input.shape}, got {target.shape}")
            if self.ignore_index >= 0:  # torch's rule: a class to ignore means nothing for a distribution
                raise ValueError(f"{name}: ignore_index={self.ignore_index} is not supported for a target of "
                                 f"class probabilities (a float target)")
        else:
            if target.dtype.kind not in "iu":
                raise TypeError(f"{name}: target must be an integer ndarray of class indices"
                                + (" or a float ndarray of class probabilities" if self._takes_probabilities else "")
                                + f", got dtype {target.dtype}")
            if target.shape != samples:
                raise ValueError(f"{name}: target must have shape {samples} to match input shape {input.shape} "
                                 f"(the input without its class dim {class_axis}), got {target.shape}")
            # the targets' range is checked by the kernel, in its loop (checked_nll_forward)
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
        return self._run_backward(grad_output, cache)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities for integer class targets.

    ``reduction``: 'mean' (weighted mean), 'sum' or 'none'. Optional per-class
    ``weight`` (C,) and ``ignore_index``, as in torch. Shapes: see the module docstring.
    """

    _takes_probabilities = False

    def _run_forward(self, input, target, weight):
        return checked_nll_forward(self, input, target, weight, self.ignore_index, self.reduction)

    def _run_backward(self, grad_output, cache):
        return F.nll_backward(grad_output, cache)


class CrossEntropyLoss(_Loss):
    """Cross-entropy of raw logits: NLL of their log-softmax along the class axis.

    ``target`` holds class indices, or class probabilities of the input's shape.
    ``label_smoothing`` in [0, 1] mixes the target with the uniform distribution, as in torch.
    """

    _takes_probabilities = True

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(weight, ignore_index, reduction)
        self.label_smoothing = chk.probability("CrossEntropyLoss", "label_smoothing", label_smoothing)

    def _run_forward(self, input, target, weight):
        return checked_cross_entropy_forward(self, input, target, weight, self.ignore_index, self.reduction,
                                             self.label_smoothing)

    def _run_backward(self, grad_output, cache):
        return F.cross_entropy_backward(grad_output, cache)

    def extra_repr(self):
        s = super().extra_repr()
        return s + (f", label_smoothing={self.label_smoothing}" if self.label_smoothing else "")
