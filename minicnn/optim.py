"""Stochastic gradient descent with torch.optim.SGD's exact update rule."""
import numbers

import numpy as np

from .nn.module import Parameter


class SGD:
    """``torch.optim.SGD``, step for step.

    For each parameter ``p`` with gradient ``g``, one ``step()`` does::

        g = g + weight_decay * p                      (if weight_decay != 0)
        if momentum != 0:
            buf = g                                   (first step: a copy, no dampening)
            buf = momentum * buf + (1 - dampening) * g   (later steps)
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g                                (p + lr * g with maximize=True)

    The learning rate is never folded into the momentum buffer, so changing
    ``lr`` between steps behaves as in torch.
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 maximize=False):
        self.params = list(params)
        if not self.params:
            raise ValueError("SGD: params is an empty list")
        for i, p in enumerate(self.params):
            if not isinstance(p, Parameter):
                raise TypeError(f"SGD: params[{i}] must be a minicnn Parameter, got {type(p).__name__}")
        for name, value in (("lr", lr), ("momentum", momentum), ("dampening", dampening),
                            ("weight_decay", weight_decay)):
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or value < 0:
                raise ValueError(f"SGD: {name} must be a non-negative number, got {value!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"SGD: nesterov requires momentum > 0 and dampening = 0, "
                             f"got momentum={momentum}, dampening={dampening}")
        self.lr, self.momentum, self.dampening = float(lr), float(momentum), float(dampening)
        self.weight_decay, self.nesterov, self.maximize = float(weight_decay), bool(nesterov), bool(maximize)
        self.momentum_buffers = [None] * len(self.params)

    def zero_grad(self):
        for p in self.params:
            p.zero_grad()

    def step(self):
        for i, p in enumerate(self.params):
            g = -p.grad if self.maximize else p.grad
            if self.weight_decay != 0:
                g = g + self.weight_decay * p.data
            if self.momentum != 0:
                buf = self.momentum_buffers[i]
                if buf is None:
                    buf = self.momentum_buffers[i] = np.array(g, dtype=p.data.dtype, copy=True)
                else:
                    buf *= self.momentum
                    buf += (1 - self.dampening) * g
                g = g + self.momentum * buf if self.nesterov else buf
            p.data -= self.lr * g

    def state_dict(self):
        """The momentum buffers as ``{"momentum_buffer.<i>": array}`` plus the hyperparameters."""
        state = {f"momentum_buffer.{i}": buf.copy() for i, buf in enumerate(self.momentum_buffers)
                 if buf is not None}
        state.update(lr=np.array(self.lr), momentum=np.array(self.momentum))
        return state

    def load_state_dict(self, state):
        """Restore what ``state_dict`` returned (shapes are checked)."""
        buffers = [None] * len(self.params)
        for key, value in state.items():
            if not key.startswith("momentum_buffer."):
                continue
            i = int(key.split(".", 1)[1])
            if not 0 <= i < len(self.params) or np.shape(value) != self.params[i].shape:
                want = self.params[i].shape if 0 <= i < len(self.params) else "no such parameter"
                raise ValueError(f"SGD.load_state_dict: {key} must have shape {want}, got {np.shape(value)}")
            buffers[i] = np.array(value, dtype=self.params[i].dtype, copy=True)
        self.momentum_buffers = buffers
        if "lr" in state:
            self.lr = float(state["lr"])

    def __repr__(self):
        return (f"SGD(lr={self.lr}, momentum={self.momentum}, dampening={self.dampening}, "
                f"weight_decay={self.weight_decay}, nesterov={self.nesterov})")


class ExponentialLR:
    """``torch.optim.lr_scheduler.ExponentialLR``: each ``step()`` multiplies the learning rate by ``gamma``.

    Call it once per epoch, after the epoch's optimizer steps, as in torch.
    """

    def __init__(self, optimizer, gamma):
        if not isinstance(gamma, numbers.Real) or isinstance(gamma, bool) or not 0 < gamma <= 1:
            raise ValueError(f"ExponentialLR: gamma must be in (0, 1], got {gamma!r}")
        self.optimizer, self.gamma = optimizer, float(gamma)

    def step(self):
        self.optimizer.lr *= self.gamma
