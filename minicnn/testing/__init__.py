"""Learner tools: check a backward pass against finite differences or against PyTorch.

``gradcheck(module, x)`` needs only numpy. ``compare_with_torch(module, x)``
and ``run_with_torch`` import torch when they run; ``minicnn.testing.interop``
(``to_torch`` / ``from_torch``) imports it when it is imported.
"""
from .against_torch import Comparison, compare_with_torch, run_with_torch
from .finite_differences import GradcheckReport, gradcheck, numerical_gradient

__all__ = ["Comparison", "GradcheckReport", "compare_with_torch", "gradcheck", "numerical_gradient",
           "run_with_torch"]
