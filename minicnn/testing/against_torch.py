"""``compare_with_torch``: run a module and its torch twin on the same input, report the differences.

    >>> import numpy as np, minicnn as mc
    >>> from minicnn.testing import compare_with_torch
    >>> print(compare_with_torch(mc.MaxPool2d(3, stride=2), np.random.rand(2, 3, 9, 9)))  # doctest: +SKIP

torch is imported only when these functions run (``minicnn.testing.interop``
builds the twin), so ``import minicnn`` and ``import minicnn.testing`` never need it.
"""
import numpy as np


def run_with_torch(module, x, grad_output=None, seed=0, twin=None):
    """Forward and backward through ``module`` and its torch twin.

    Returns ``(pairs, twin, grad_output)`` where ``pairs`` maps "output", "input
    gradient", "gradient of NAME" (each parameter) and "buffer NAME" to
    ``(minicnn array, torch array)``. The twin is built before the forward, so it
    starts from the same state; pass it back in to run several steps side by side.
    """
    import torch

    from .interop import to_torch

    twin = to_torch(module) if twin is None else twin
    out = module(x)
    if grad_output is None:
        grad_output = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    module.zero_grad()
    dx = module.backward(grad_output)
    xt = torch.from_numpy(np.array(x)).requires_grad_()
    twin.zero_grad()
    out_t = twin(xt)
    out_t.backward(torch.from_numpy(np.array(grad_output)))
    pairs = {"output": (out, out_t.detach().numpy()), "input gradient": (dx, xt.grad.numpy())}
    for (name, p), (_, p_t) in zip(module.named_parameters(), twin.named_parameters()):
        pairs[f"gradient of {name}"] = (p.grad, p_t.grad.numpy())
    for (name, b), (_, b_t) in zip(module.named_buffers(), twin.named_buffers()):
        pairs[f"buffer {name}"] = (b, b_t.numpy())
    return pairs, twin, grad_output


class Comparison:
    """Per quantity, the largest absolute difference and the relative one.

    An output or buffer is measured against torch's largest entry of it. Every
    gradient is measured against the largest gradient entry of the whole module:
    a gradient that is mathematically zero (a conv bias feeding a BatchNorm) is
    pure rounding noise on both sides, and its own scale would be meaningless.
    """

    def __init__(self, pairs, tolerance):
        self.tolerance = tolerance
        self.rows = {}
        arrays = {name: tuple(np.asarray(a, dtype=np.float64) for a in pair) for name, pair in pairs.items()}
        gradient_scale = max((np.abs(theirs).max(initial=0.0) for name, (_, theirs) in arrays.items()
                              if "gradient" in name), default=0.0)
        for name, (ours, theirs) in arrays.items():
            diff = float(np.abs(ours - theirs).max(initial=0.0)) if ours.shape == theirs.shape else np.inf
            scale = float(gradient_scale if "gradient" in name else np.abs(theirs).max(initial=0.0))
            self.rows[name] = (diff, diff / scale if scale else diff)

    @property
    def ok(self):
        return all(rel <= self.tolerance for _, rel in self.rows.values())

    def __bool__(self):
        return self.ok

    def __str__(self):
        lines = [f"minicnn against torch: {'equal' if self.ok else 'DIFFERENT'} (relative tolerance {self.tolerance:g})"]
        lines += [f"  {name:<26} max |diff| {d:.2e}   relative {r:.2e}{'' if r <= self.tolerance else '  <-- differs'}"
                  for name, (d, r) in self.rows.items()]
        return "\n".join(lines)

    __repr__ = __str__


def compare_with_torch(module, x, grad_output=None, tolerance=None, seed=0):
    """Run ``module`` and its torch twin on ``x``; report forward and backward differences.

    Parameters
    ----------
    module : minicnn Module with a torch twin (every built-in layer, and Sequentials of them)
    x : ndarray of the module's dtype
    grad_output : ndarray, optional
        The upstream gradient for backward (default: standard normal, seeded).
    tolerance : float, optional
        Relative tolerance for ``ok`` (default 1e-7 in float64, 1e-4 in float32).

    Returns
    -------
    Comparison
        ``ok`` tells whether everything agrees; ``print()`` it for the table.
    """
    x = np.asarray(x)
    if tolerance is None:
        tolerance = 1e-7 if x.dtype == np.float64 else 1e-4
    pairs, _, _ = run_with_torch(module, x, grad_output, seed)
    return Comparison(pairs, tolerance)
