"""Stochastic gradient descent with torch.optim.SGD's exact update rule, and ExponentialLR."""
import numbers

import numpy as np

from .functional.sgd import sgd_update
from .nn.module import Parameter

HYPERPARAMETERS = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")


def _number(name, value):
    """A float from a Python number or a one-element array (torch accepts a 1-element tensor lr)."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"SGD: {name} given as an array must have 1 element, got shape {value.shape}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"SGD: {name} must be a number, got {value!r}")
    return float(value)


class SGD:
    """``torch.optim.SGD``, step for step and bit for bit.

    For each parameter ``p`` with gradient ``g``, one ``step()`` does::

        g = -g                                        (if maximize)
        g = g + weight_decay * p                      (if weight_decay != 0)
        if momentum != 0:
            buf = g                                   (first step: a copy, no dampening)
            buf = momentum * buf + (1 - dampening) * g   (later steps)
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g

    The learning rate is never folded into the momentum buffer, so changing
    ``lr`` between steps behaves as in torch.

    Parameters
    ----------
    params : iterable of Parameter, of ``(name, Parameter)`` pairs, or of dicts
        Parameter groups as in torch: each dict has ``"params"`` and may override
        any hyperparameter for its parameters. A parameter may appear only once.
    lr, momentum, dampening, weight_decay : float (lr may be a 1-element array)
    nesterov, maximize : bool
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, *,
                 maximize=False):
        self.defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                             nesterov=nesterov, maximize=maximize)
        if isinstance(params, (Parameter, np.ndarray)) or not hasattr(params, "__iter__"):
            raise TypeError("SGD: params argument given to the optimizer should be an iterable of Parameters, "
                            f"(name, Parameter) pairs or dicts, got {type(params).__name__}")
        groups = list(params)
        if not groups:
            raise ValueError("SGD: optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups = []
        for group in groups:
            self.add_param_group(group)
        self.momentum_buffers = [None] * len(self.params)

    def add_param_group(self, group):
        """Add a group ``{"params": [...], **hyperparameters}``; missing hyperparameters take the defaults."""
        if not isinstance(group, dict):
            raise TypeError(f"SGD: a parameter group must be a dict, got {type(group).__name__}")
        unknown = set(group) - {"params", *HYPERPARAMETERS}
        if unknown:
            raise ValueError(f"SGD: unknown parameter-group keys {sorted(unknown)}; known: params, "
                             + ", ".join(HYPERPARAMETERS))
        params = group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        named = [isinstance(p, tuple) for p in params]
        if any(named) and not all(named):
            raise ValueError("SGD: all optimizer params should be with/without names. Some param names are missing")
        if self.param_groups and any(named) != self.param_groups[0]["named"]:
            raise ValueError("SGD: all optimizer param groups should be with/without names; "
                             "cannot mix a group with names and one without")
        names = [p[0] for p in params] if any(named) else None
        params = [p[1] for p in params] if any(named) else params
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(f"SGD: params[{i}] must be a minicnn Parameter, got {type(p).__name__}")
        ids = [id(p) for p in params]
        if len(set(ids)) != len(ids):
            raise ValueError("SGD: a parameter group holds the same parameter twice; each update would be "
                             "applied twice (torch warns; minicnn refuses)")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if seen & set(ids):
            raise ValueError("SGD: some parameters appear in more than one parameter group")
        settings = {k: group.get(k, self.defaults[k]) for k in HYPERPARAMETERS}
        for name in ("lr", "momentum", "dampening", "weight_decay"):
            settings[name] = _number(name, settings[name])
        if settings["lr"] < 0:
            raise ValueError(f"SGD: Invalid learning rate: {settings['lr']}")
        if settings["momentum"] < 0:
            raise ValueError(f"SGD: Invalid momentum value: {settings['momentum']}")
        if settings["weight_decay"] < 0:
            raise ValueError(f"SGD: Invalid weight_decay value: {settings['weight_decay']}")
        settings["nesterov"], settings["maximize"] = bool(settings["nesterov"]), bool(settings["maximize"])
        if settings["nesterov"] and (settings["momentum"] <= 0 or settings["dampening"] != 0):
            raise ValueError(f"SGD: nesterov requires momentum > 0 and dampening = 0, "
                             f"got momentum={settings['momentum']}, dampening={settings['dampening']}")
        self.param_groups.append(dict(params=params, param_names=names, named=any(named), **settings))
        if hasattr(self, "momentum_buffers"):
            self.momentum_buffers += [None] * len(params)

    @property
    def params(self):
        """Every parameter, group after group: the order of the momentum buffers."""
        return [p for g in self.param_groups for p in g["params"]]

    @property
    def lr(self):
        """The first group's learning rate (the only one, unless you made groups)."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value):
        for group in self.param_groups:
            group["lr"] = _number("lr", value)

    def zero_grad(self):
        for p in self.params:
            p.zero_grad()

    def step(self):
        """One update of every parameter: ``functional.sgd.sgd_update``, torch's operations in one pass
        over each parameter's memory, with torch's rounding (its ``add(..., alpha=...)`` fused): given
        the same gradients, parameters and momentum buffers equal torch's to the last bit. A gradient
        of another dtype or layout is first copied to the parameter's (torch's always has it)."""
        i = 0
        for group in self.param_groups:
            settings = [group[k] for k in ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")]
            for p in group["params"]:
                data, buf = p.data, self.momentum_buffers[i]
                if data.dtype.kind != "f":
                    raise TypeError(f"SGD: {p.name} has dtype {data.dtype}; SGD updates float32 and float64 "
                                    f"parameters (torch: only floating-point tensors have gradients)")
                grad = np.ascontiguousarray(p.grad, dtype=data.dtype)
                first = buf is None
                if group["momentum"] != 0 and first:
                    buf = self.momentum_buffers[i] = np.empty_like(data)
                sgd_update(data, grad, data if buf is None else buf, *settings, first)
                i += 1

    def step_numpy(self):
        """The same rule as ``step`` in whole-array NumPy operations: the version to read. NumPy has no
        fused multiply-add, so each product here is rounded before its sum, and a result can differ
        from ``step``'s (and torch's) in the last bit."""
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                self._step_numpy_one(group, p, i)
                i += 1

    def _step_numpy_one(self, group, p, i):
        """``torch.optim.SGD``'s rule for parameter ``p``, the i-th, with NumPy operations."""
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        g = -p.grad if group["maximize"] else p.grad
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * p.data
        if momentum != 0:
            buf = self.momentum_buffers[i]
            if buf is None:
                buf = self.momentum_buffers[i] = np.array(g, dtype=p.data.dtype, copy=True)
            else:
                buf *= momentum
                buf += (1 - dampening) * g
            g = g + momentum * buf if group["nesterov"] else buf
        p.data -= lr * g

    def state_dict(self):
        """The momentum buffers as ``{"momentum_buffer.<i>": array}``, and ``lr`` (one per group in ``group_lr``)."""
        state = {f"momentum_buffer.{i}": buf.copy() for i, buf in enumerate(self.momentum_buffers)
                 if buf is not None}
        state.update(lr=np.array(self.lr), momentum=np.array(self.param_groups[0]["momentum"]),
                     group_lr=np.array([g["lr"] for g in self.param_groups]))
        return state

    def load_state_dict(self, state):
        """Restore what ``state_dict`` returned (shapes are checked)."""
        params = self.params
        buffers = [None] * len(params)
        for key, value in state.items():
            if not key.startswith("momentum_buffer."):
                continue
            index = key.split(".", 1)[1]
            if not index.isdigit() or int(index) >= len(params):
                raise ValueError(f"SGD.load_state_dict: {key!r} names no parameter: expected momentum_buffer.<i> "
                                 f"with i from 0 to {len(params) - 1}")
            i = int(index)
            if np.shape(value) != params[i].shape:
                raise ValueError(f"SGD.load_state_dict: {key} must have shape {params[i].shape}, "
                                 f"got {np.shape(value)}")
            buffers[i] = np.array(value, dtype=params[i].dtype, copy=True)
        self.momentum_buffers = buffers
        if "group_lr" in state and np.shape(state["group_lr"]) == (len(self.param_groups),):
            for group, lr in zip(self.param_groups, np.asarray(state["group_lr"]).tolist()):
                group["lr"] = float(lr)
        elif "lr" in state:
            self.lr = float(state["lr"])

    def __repr__(self):
        g = self.param_groups[0]
        return (f"SGD(lr={g['lr']}, momentum={g['momentum']}, dampening={g['dampening']}, "
                f"weight_decay={g['weight_decay']}, nesterov={g['nesterov']}, maximize={g['maximize']})")


class ExponentialLR:
    """``torch.optim.lr_scheduler.ExponentialLR``: each ``step()`` multiplies every group's learning rate by ``gamma``.

    Call it once per epoch, after the epoch's optimizer steps, as in torch.
    """

    def __init__(self, optimizer, gamma):
        if not isinstance(gamma, numbers.Real) or isinstance(gamma, bool) or not 0 < gamma <= 1:
            raise ValueError(f"ExponentialLR: gamma must be in (0, 1], got {gamma!r}")
        self.optimizer, self.gamma = optimizer, float(gamma)

    def step(self):
        for group in self.optimizer.param_groups:
            group["lr"] *= self.gamma


