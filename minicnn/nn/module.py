"""Parameter, Module and Sequential: torch.nn's bookkeeping, without autograd.

A Module's ``forward(x)`` computes its output and caches what its backward
needs; ``backward(grad_output)`` returns the gradient for the input and adds
(``+=``) the gradients of its parameters into ``Parameter.grad``.

The contract, as in torch:

* ``.grad`` accumulates across forward/backward pairs until ``zero_grad()``; one forward allows
  one backward. The backward lets go of the forward's cache, as torch frees its graph, so a
  training step holds no activation longer than torch does; a second backward raises, unless
  ``retain_cache()`` (torch's ``retain_graph=True``).
* The cache holds references, not copies: the layers that need their input or output in
  the backward (the naive convolution and max-pool, ReLU's output, BatchNorm's
  input, Linear's input) read it then. Editing those arrays in place between forward and
  backward changes the gradient. torch detects this with a version counter on tensors;
  numpy arrays have none, so minicnn documents it instead of paying for a copy.
"""
from collections import OrderedDict

import numpy as np


class Parameter:
    """A trainable array. ``data`` holds the values, ``grad`` the accumulated gradient.

    Assigning ``data`` an array of another shape is an error naming the parameter (``0.weight``):
    the layer's kernels and the optimizer's buffers are sized for the original one.
    """

    __slots__ = ("_data", "grad", "name")

    def __init__(self, data):
        data = np.asarray(data)
        self._data = data if data.flags["C_CONTIGUOUS"] else data.copy(order="C")  # (0-d stays 0-d)
        self.grad = np.zeros_like(self._data)
        self.name = "Parameter"  # set to "Layer.attribute" when a Module registers it

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        value = np.asarray(value)
        if value.shape != self._data.shape:
            raise ValueError(f"{self.name}.data: expected an array of shape {self._data.shape}, got {value.shape}")
        self._data = value if value.flags["C_CONTIGUOUS"] else value.copy(order="C")

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def zero_grad(self):
        self.grad.fill(0)

    def __repr__(self):
        return f"Parameter(shape={self._data.shape}, dtype={self._data.dtype})"


# A module's cache after its backward has let go of it (None: no forward has run yet).
FREED = "freed by the backward"


class Module:
    """Base class of every layer. Subclasses implement ``forward`` and ``backward``.

    Attributes that are ``Parameter`` or ``Module`` instances are registered in
    assignment order, which is the order of ``parameters()`` and of the
    ``state_dict`` keys, as in torch. Buffers (non-trainable state such as
    BatchNorm's running statistics) are registered with ``register_buffer``.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_cache", None)  # the last forward's, for its backward; FREED after it
        object.__setattr__(self, "_retain_cache", False)

    # --- registration -----------------------------------------------------
    def __setattr__(self, name, value):
        try:
            registered = name in self._parameters or name in self._buffers or name in self._modules
        except AttributeError:
            raise AttributeError(f"{type(self).__name__}: call Module.__init__() before assigning "
                                 f"attribute {name!r}") from None
        if not registered and not isinstance(value, (Parameter, Module)):
            # a plain attribute (a layer's cache, at every forward): nothing to register or unregister
            object.__setattr__(self, name, value)
            return
        if name in self._buffers and (value is None or isinstance(value, np.ndarray)):
            # reassigning a buffer (e.g. ``self.num_batches_tracked += 1``) keeps it a buffer
            if value is None:
                del self._buffers[name]
            else:
                self._buffers[name] = value
            object.__setattr__(self, name, value)
            return
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
            value.name = f"{type(self).__name__}.{name}"
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, array):
        """Register persistent, non-trainable state (``None`` registers nothing)."""
        object.__setattr__(self, name, array)
        if array is not None:
            self._buffers[name] = array

    # --- forward / backward ----------------------------------------------
    def __call__(self, *inputs):
        return self.forward(*inputs)

    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def backward_parameters(self, grad_output):
        """Add the parameters' gradients without returning the input's; layers whose input gradient
        costs a pass of its own (Conv2d) skip computing it."""
        self.backward(grad_output)

    def _saved(self):
        """The cache of the last forward, for its one backward; a clear error if there is none.

        Unless ``retain_cache()`` was called, the module lets go of the cache here, as torch frees a
        graph's saved tensors in its backward: the arrays a training step keeps for its backward
        (a ReLU's output, a convolution's input) are freed layer by layer as the backward passes,
        not at the next forward. A second backward of the same forward then raises: in a module
        with parameters it would add the same gradients into ``.grad`` again.
        """
        cache = self._cache
        if cache is None:
            raise RuntimeError(f"{self._name()}.backward was called before forward: "
                               f"run the forward pass first")
        if cache is FREED:
            raise RuntimeError(f"{self._name()}.backward was already called for this forward, which let go of "
                               f"what it saved (and added its gradients into .grad); run forward again first "
                               f"(or call retain_cache() to allow it, like torch's retain_graph=True)")
        if not self._retain_cache:
            object.__setattr__(self, "_cache", FREED)
        return cache

    def retain_cache(self, retain=True):
        """Allow several backward passes per forward (torch's ``retain_graph=True``), for this module and
        its children; each one adds its gradients into ``.grad`` again. Returns the module."""
        for m in self.modules():
            object.__setattr__(m, "_retain_cache", bool(retain))
        return self

    def _name(self):
        extra = self.extra_repr()
        return f"{type(self).__name__}({extra})"

    # --- traversal ----------------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, module in self._modules.items():
            yield from module.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return [m for _, m in self.named_modules()]

    def children(self):
        return list(self._modules.values())

    def named_parameters(self, prefix=""):
        for mod_prefix, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix=""):
        for mod_prefix, module in self.named_modules(prefix):
            for name in module._buffers:
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), getattr(module, name)

    def zero_grad(self):
        for p in self.parameters():
            p.zero_grad()

    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    # --- state ------------------------------------------------------------
    def state_dict(self):
        """Copies of every parameter and buffer, under torch's key names."""
        state = OrderedDict()
        for mod_prefix, module in self.named_modules():
            dot = f"{mod_prefix}." if mod_prefix else ""
            for name, p in module._parameters.items():
                state[dot + name] = p.data.copy()
            for name in module._buffers:
                state[dot + name] = np.array(getattr(module, name), copy=True)
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy values from ``state_dict`` into this module's parameters and buffers.

        Values are cast to each target's dtype. With ``strict=True`` (the default)
        missing and unexpected keys are errors; a shape mismatch always is. All
        problems are reported together in one ``ValueError``/``KeyError``.
        """
        targets = OrderedDict()
        for mod_prefix, module in self.named_modules():
            dot = f"{mod_prefix}." if mod_prefix else ""
            for name, p in module._parameters.items():
                targets[dot + name] = p.data
            for name in module._buffers:
                targets[dot + name] = getattr(module, name)
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        mismatched = [f"{k}: expected shape {targets[k].shape}, got {np.shape(state_dict[k])}"
                      for k in targets if k in state_dict and np.shape(state_dict[k]) != targets[k].shape]
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if mismatched:
            problems.append("shape mismatch for " + "; ".join(mismatched))
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + " | ".join(problems))
        # Convert every value first, then copy: a value that cannot be cast fails before anything changed.
        converted = {}
        for key, target in targets.items():
            if key in state_dict:
                try:
                    converted[key] = np.asarray(state_dict[key]).astype(target.dtype, copy=False)
                except (TypeError, ValueError) as e:
                    raise ValueError(f"{type(self).__name__}.load_state_dict: {key} cannot become {target.dtype}: "
                                     f"{e}") from None
        for key, value in converted.items():
            targets[key][...] = value
        return missing, unexpected

    # --- printing -----------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        if not self._modules:
            return self._name()
        lines = [f"{type(self).__name__}("]
        for name, m in self._modules.items():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        lines.append(")")
        return "\n".join(lines)


class Sequential(Module):
    """A chain of modules: forward runs them in order, backward in reverse."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: argument {i} must be a Module, got {type(m).__name__}")
            setattr(self, str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, grad_output, input_grad=True):
        """Backward through every module, last first. ``input_grad=False`` is torch's input with
        ``requires_grad=False``: the first module adds its parameters' gradients but the gradient for
        the input is not computed (``backward_parameters``), and None is returned."""
        modules = list(self._modules.values())
        for i, m in enumerate(reversed(modules)):
            if i == len(modules) - 1 and not input_grad:
                m.backward_parameters(grad_output)
                return None
            grad_output = m.backward(grad_output)
        return grad_output if input_grad else None

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*modules[index])
        try:
            return modules[index]
        except (IndexError, TypeError):
            raise IndexError(f"Sequential: index {index!r} out of range for {len(modules)} modules") from None
