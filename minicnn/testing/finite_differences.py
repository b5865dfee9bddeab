"""Check any module's backward pass against central finite differences, in float64.

    >>> import numpy as np, minicnn as mc
    >>> report = mc.gradcheck(mc.Conv2d(2, 3, 3, padding=1), np.random.rand(2, 2, 5, 5))
    >>> report.ok
    True

It works on a learner's own ``Module`` subclass too: all it needs is
``forward``, ``backward`` and ``named_parameters``.
"""
import contextlib

import numpy as np

from ..nn.module import Module


class GradcheckReport:
    """Worst relative error per input and per parameter; ``ok`` if all are below ``tolerance``.

    The relative error of an analytic gradient ``a`` against the numerical one
    ``n`` is ``max|a - n| / max(max|a|, max|n|)``: the worst entry, measured
    against the gradient's own scale, but never against less than 1e-3 of the
    module's largest gradient (a gradient that is zero in theory is only noise).
    """

    def __init__(self, errors, tolerance):
        self.errors, self.tolerance = errors, tolerance

    @property
    def ok(self):
        return all(e <= self.tolerance for e in self.errors.values())

    @property
    def worst(self):
        return max(self.errors.values())

    def __bool__(self):
        return self.ok

    def __str__(self):
        lines = [f"gradcheck {'passed' if self.ok else 'FAILED'} (tolerance {self.tolerance:g}):"]
        lines += [f"  {name:<24} worst relative error {err:.2e}{'' if err <= self.tolerance else '  <-- wrong'}"
                  for name, err in self.errors.items()]
        return "\n".join(lines)

    __repr__ = __str__


@contextlib.contextmanager
def as_float64(module):
    """Run ``module`` in float64 inside the block; its parameters, buffers and dtype are restored after."""
    saved = []
    for m in module.modules():
        params = {n: (p.data, p.grad) for n, p in m._parameters.items() if p is not None}
        buffers = {n: b.copy() for n, b in m._buffers.items()}
        saved.append((m, m.__dict__.get("dtype"), params, buffers))
        if "dtype" in m.__dict__:
            object.__setattr__(m, "dtype", np.dtype(np.float64))
        for name, (data, grad) in params.items():
            m._parameters[name].data, m._parameters[name].grad = data.astype(np.float64), grad.astype(np.float64)
        for name, buf in buffers.items():
            setattr(m, name, buf.astype(np.float64) if buf.dtype.kind == "f" else buf.copy())
    try:
        yield module
    finally:
        for m, dtype, params, buffers in saved:
            if dtype is not None:
                object.__setattr__(m, "dtype", dtype)
            for name, (data, grad) in params.items():
                m._parameters[name].data, m._parameters[name].grad = data, grad
            for name, buf in buffers.items():
                setattr(m, name, buf)
            object.__setattr__(m, "_cache", None)


def _scale(analytic, numeric):
    return max(np.abs(analytic).max(initial=0.0), np.abs(numeric).max(initial=0.0))


def _relative_errors(analytic, numeric, floor=1e-3):
    """Worst error of each gradient over ``max(its own scale, floor * the largest gradient's scale)``.

    The floor matters for gradients that are zero in theory (a bias feeding a
    BatchNorm): both sides are then rounding noise, which must not count as 100%
    wrong. A wrong gradient bigger than ``floor`` of the largest one is still caught.
    """
    largest = max(_scale(analytic[k], numeric[k]) for k in analytic)
    errors = {}
    for name in analytic:
        scale = max(_scale(analytic[name], numeric[name]), floor * largest)
        errors[name] = 0.0 if scale == 0 else float(np.abs(analytic[name] - numeric[name]).max() / scale)
    return errors


def numerical_gradient(f, array, eps=1e-6):
    """Central differences ``(f(a + eps) - f(a - eps)) / 2 eps`` for every entry of ``array`` (perturbed in place)."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + eps
        plus = f()
        array[index] = saved - eps
        minus = f()
        array[index] = saved
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def gradcheck(module, x, eps=1e-6, tolerance=1e-5, seed=0):
    """Compare ``module.backward`` with finite differences of ``L = sum(module(x) * R)``.

    Parameters
    ----------
    module : Module
        Any module; it is run in float64 for the check and restored afterwards.
    x : ndarray
        An input (cast to float64). Keep it small: every entry costs two forwards.
    eps : float
        The finite-difference step.
    tolerance : float
        The largest worst-relative-error that passes.
    seed : int
        Seed of the random upstream gradient ``R`` (uniform in [-1, 1]).

    Returns
    -------
    GradcheckReport
        ``report.errors`` maps ``"input"`` and each parameter name to its worst
        relative error; ``report.ok`` tells whether all pass; ``print(report)``.

    Notes
    -----
    For a random ``R``, ``dL/dx = backward(R)`` exactly, while the numerical
    gradient ``(L(x + eps e_i) - L(x - eps e_i)) / 2 eps`` has an error of order
    ``eps^2`` (plus rounding of order ``1e-16 / eps``), about 1e-10 in float64.
    """
    if not isinstance(module, Module):
        raise TypeError(f"gradcheck: module must be a minicnn Module, got {type(module).__name__}")
    x = np.array(x, dtype=np.float64)
    with as_float64(module):
        # uniform, not normal: an input drawn as default_rng(seed).standard_normal must not equal R
        weights = np.random.default_rng(seed).uniform(-1.0, 1.0, np.shape(module(x)))

        def loss():
            return float(np.sum(module(x) * weights))

        for p in module.parameters():
            p.grad[...] = 0
        module(x)
        analytic = {"input": module.backward(weights)}
        analytic.update({name: p.grad.copy() for name, p in module.named_parameters()})
        arrays = {"input": x, **{name: p.data for name, p in module.named_parameters()}}
        numeric = {name: numerical_gradient(loss, arrays[name], eps) for name in analytic}
    return GradcheckReport(_relative_errors(analytic, numeric), tolerance)
