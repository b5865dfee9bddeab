"""Layers with torch.nn's names, arguments and semantics.

Each class is thin: it validates its arguments and input, owns its parameters
and the cache of the last forward, and calls the functional kernels in
``minicnn.functional``. Conv2d and MaxPool2d take ``impl="fast"`` (the default)
or ``impl="naive"``: the readable direct loops, through the same layer code.
"""
import functools
import math
import numbers
import warnings

import numpy as np

from .. import functional as F
from . import _checks as chk
from .init import default_generator, fan_in, kaiming_uniform, uniform
from .module import Module, Parameter

IMPLS = ("fast", "naive")
# Conv2d: each implementation's (forward, backward) functional pair
CONV_IMPLS = {"fast": (F.conv2d_forward, F.conv2d_backward),
              "im2col": (F.conv2d_forward_im2col, F.conv2d_backward_im2col),
              "naive": (F.conv2d_forward_naive, F.conv2d_backward_naive)}


class Conv2d(Module):
    """2-D convolution over (N, C, H, W), like ``torch.nn.Conv2d``.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (kh, kw)
    stride, dilation : int or pair, >= 1
    padding : int or pair (>= 0), or 'valid' (no padding) or 'same'
        (output size equals input size; stride must be 1; an odd total padding
        puts the extra row/column at the bottom/right, as torch does).
    groups : int dividing both in_channels and out_channels
    bias : bool
    padding_mode : 'zeros' (default), 'reflect', 'replicate' or 'circular', as in torch
    dtype : np.float32 (default) or np.float64
    generator : numpy Generator for the initial weights (default: ``minicnn.manual_seed``'s)
    impl : 'fast' (the default: register tiles on blocks of gathered input, ``fast_conv``),
        'im2col' (im2col + one BLAS product, the textbook method, to compare against) or
        'naive' (the direct loops of ``conv2d_forward_naive``: slow, written to be read and
        stepped through)

    Shapes: input (N, in_channels, H, W) or unbatched (in_channels, H, W); N may be 0.
    Output (N, out_channels, OH, OW) (unbatched: without N),
    ``O = floor((I + 2p - d(k-1) - 1) / s) + 1``; weight
    (out_channels, in_channels // groups, kh, kw), bias (out_channels,).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", dtype=np.float32, generator=None, impl="fast"):
        super().__init__()
        name = "Conv2d"
        self.impl = chk.choice(name, "impl", impl, tuple(CONV_IMPLS))
        self.padding_mode = chk.choice(name, "padding_mode", padding_mode, tuple(F.PADDING_MODES))
        self.in_channels = chk.positive_int(name, "in_channels", in_channels)
        self.out_channels = chk.positive_int(name, "out_channels", out_channels)
        self.groups = chk.positive_int(name, "groups", groups)
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if value % groups:
                raise ValueError(f"{name}: {arg} must be divisible by groups, got {arg}={value}, groups={groups}")
        self.kernel_size = chk.pair(name, "kernel_size", kernel_size)
        self.stride = chk.pair(name, "stride", stride)
        self.dilation = chk.pair(name, "dilation", dilation)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"{name}: padding='same' is not supported for strided convolutions, "
                                 f"got stride={self.stride}")
            self.padding = padding
        else:
            self.padding = chk.pair(name, "padding", padding, minimum=0)
        self.dtype = chk.as_dtype(name, dtype)
        rng = generator if generator is not None else default_generator()
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = Parameter(kaiming_uniform(shape, self.dtype, rng))
        self.bias = Parameter(uniform(out_channels, fan_in(shape) ** -0.5, self.dtype, rng)) if bias else None

    def padding_per_side(self):
        """Padding per side, (top, bottom, left, right)."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":
            pads = []
            for k, d in zip(self.kernel_size, self.dilation):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            return tuple(pads)
        ph, pw = self.padding
        return (ph, ph, pw, pw)

    def output_shape(self, input_shape):
        """The output shape for an input of ``input_shape`` (N, C, H, W)."""
        pt, pb, pl, pr = self.padding_per_side()
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation  # kernel, stride, dilation
        return (input_shape[0], self.out_channels,
                F.conv2d_output_size(input_shape[2], kh, sh, pt, pb, dh),
                F.conv2d_output_size(input_shape[3], kw, sw, pl, pr, dw))

    def forward(self, x):
        x = chk.check_input(self, x, (3, 4), self.dtype, channels=self.in_channels,
                            channel_axis=x.ndim - 3 if isinstance(x, np.ndarray) else 1, allow_empty=True)
        self._unbatched = x.ndim == 3
        x = x[None] if self._unbatched else x
        if 0 in x.shape[1:]:
            raise ValueError(f"{self._name()}: input must not be empty, got shape {x.shape[1:]}")
        pads = self.padding_per_side()
        padded = (x.shape[2] + pads[0] + pads[1], x.shape[3] + pads[2] + pads[3])
        (kh, kw), (dh, dw) = self.kernel_size, self.dilation
        extent = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
        if padded[0] < extent[0] or padded[1] < extent[1]:
            raise ValueError(f"{self._name()}: the kernel (extent d*(k-1)+1 = {extent}) is larger than the "
                             f"padded input {padded} of input shape {x.shape}")
        self._pad_cache = None
        if self.padding_mode != "zeros" and any(pads):
            limit = {"reflect": lambda p, size: p < size, "replicate": lambda p, size: True,
                     "circular": lambda p, size: p <= size}[self.padding_mode]
            for p, size in zip(pads, (x.shape[2], x.shape[2], x.shape[3], x.shape[3])):
                if not limit(p, size):
                    raise ValueError(f"{self._name()}: padding {pads} (top, bottom, left, right) is too large for "
                                     f"padding_mode={self.padding_mode!r} and input shape {x.shape}")
            x, self._pad_cache = F.pad2d_forward(x, pads, self.padding_mode)
            pads = (0, 0, 0, 0)
        bias = None if self.bias is None else self.bias.data
        forward = CONV_IMPLS[self.impl][0]
        out, self._cache = forward(x, self.weight.data, bias, self.stride, pads, self.dilation, self.groups)
        out = out[0] if self._unbatched else out
        self._out_shape = out.shape
        return out

    def backward(self, grad_output):
        return self._backward(grad_output, input_grad=True)

    def backward_parameters(self, grad_output):
        """Only the parameters' gradients: the input gradient (a whole transposed convolution) is skipped."""
        self._backward(grad_output, input_grad=False)

    def _backward(self, grad_output, input_grad):
        cache = self._saved()
        dout = chk.check_grad(self, grad_output, self._out_shape, self.dtype)
        dx, dw, db = CONV_IMPLS[self.impl][1](dout[None] if self._unbatched else dout, cache, input_grad=input_grad)
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        if not input_grad:
            return None
        if self._pad_cache is not None:
            dx = F.pad2d_backward(dx, self._pad_cache)
        return dx[0] if self._unbatched else dx

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding!r}")
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        if self.impl != "fast":
            s += f", impl={self.impl!r}"
        return s


# The forward asks for the same output shape at every step: remembered, it costs a lookup (0.2 us
# against 1.2 us to compute it; timeit, AMD EPYC family 25).
_maxpool2d_output_shape = functools.lru_cache(maxsize=256)(F.maxpool2d_output_shape)


class MaxPool2d(Module):
    """2-D max-pooling over (N, C, H, W) or unbatched (C, H, W), like ``torch.nn.MaxPool2d``.

    ``stride`` defaults to ``kernel_size``. ``padding`` (implicit -inf) is at
    most ``kernel_size // 2``. With ``ceil_mode`` the
    output size rounds up, but a last window that would start in the right
    padding is dropped. With ``return_indices`` the forward returns
    ``(out, indices)`` (flat indices into each H*W plane).
    Output size: ``O = floor((I + 2p - d(k-1) - 1) / s) + 1`` (ceil with ceil_mode).
    ``impl='naive'`` runs the direct loops of ``maxpool2d_forward_naive``.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False,
                 impl="fast"):
        super().__init__()
        name = "MaxPool2d"
        self.impl = chk.choice(name, "impl", impl, IMPLS)
        self.kernel_size = chk.pair(name, "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else chk.pair(name, "stride", stride)
        self.padding = chk.pair(name, "padding", padding, minimum=0)
        self.dilation = chk.pair(name, "dilation", dilation)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{name}: padding must be at most half of kernel_size {self.kernel_size}, "
                             f"got padding={self.padding}")
        self.return_indices = bool(return_indices)
        self.ceil_mode = bool(ceil_mode)

    def output_shape(self, input_shape):
        """The output shape for an input of ``input_shape`` (N, C, H, W)."""
        return _maxpool2d_output_shape(tuple(input_shape), self.kernel_size, self.stride, self.padding,
                                       self.dilation, self.ceil_mode)

    def forward(self, x):
        x = chk.check_input(self, x, (3, 4), allow_empty=True)
        self._unbatched = x.ndim == 3
        x = x[None] if self._unbatched else x
        if 0 in x.shape[1:]:
            raise ValueError(f"{self._name()}: input must not be empty, got shape {x.shape[1:]}")
        shape = self.output_shape(x.shape)
        if shape[2] < 1 or shape[3] < 1:
            raise ValueError(f"{self._name()}: input shape {x.shape} is too small: "
                             f"the output would be {shape}")
        if self.impl == "fast" or self.return_indices:  # only the fast kernel records the indices
            out, cache = F.maxpool2d_forward(x, self.kernel_size, self.stride, self.padding, self.dilation,
                                             self.ceil_mode)
        else:
            out, cache = F.maxpool2d_forward_naive(x, self.kernel_size, self.stride, self.padding, self.dilation,
                                                   self.ceil_mode)
        if self._unbatched:
            out = out[0]
        self._cache, self._out_shape, self._dtype = cache, out.shape, x.dtype
        if self.return_indices:
            return out, (cache.indices[0] if self._unbatched else cache.indices).copy()
        return out

    def backward(self, grad_output):
        cache = self._saved()
        dout = chk.check_grad(self, grad_output, self._out_shape, self._dtype)
        dout = dout[None] if self._unbatched else dout
        if isinstance(cache, F.PoolCache):
            dx = F.maxpool2d_backward(dout, cache)
        else:
            dx = F.maxpool2d_backward_naive(dout, cache)
        return dx[0] if self._unbatched else dx

    def extra_repr(self):
        s = (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
             f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")
        return s + (f", impl={self.impl!r}" if self.impl != "fast" else "")


class _BatchNorm(Module):
    """Shared body of BatchNorm1d and BatchNorm2d (statistics over every axis but 1)."""

    _ndims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32, *, bias=True):
        super().__init__()
        name = type(self).__name__
        self.num_features = chk.positive_int(name, "num_features", num_features)
        if not isinstance(eps, numbers.Real) or eps <= 0:
            raise ValueError(f"{name}: eps must be a positive number, got {eps!r}")
        if momentum is not None:
            chk.probability(name, "momentum", momentum)
        self.eps, self.momentum = float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        self.dtype = chk.as_dtype(name, dtype)
        # torch 2.14's keyword-only ``bias``: with affine=True and bias=False only the scale is learned.
        self.weight = Parameter(np.ones(num_features, dtype=self.dtype)) if self.affine else None
        self.bias = Parameter(np.zeros(num_features, dtype=self.dtype)) if self.affine and bias else None
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=self.dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=self.dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def forward(self, x):
        x = chk.check_input(self, x, self._ndims, self.dtype, channels=self.num_features, allow_empty=True)
        batch_stats = self.training or self.running_mean is None
        factor = 0.0
        if batch_stats:
            count = x.size // self.num_features
            if count == 1:  # (an empty batch is allowed, as in torch: it normalizes nothing)
                raise ValueError(f"{self._name()}: expected more than 1 value per channel when training, "
                                 f"got input shape {x.shape}")
            if self.training and self.track_running_stats:
                self.num_batches_tracked += 1
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        gamma = self.weight.data if self.weight is not None else np.ones(self.num_features, self.dtype)
        beta = self.bias.data if self.bias is not None else np.zeros(self.num_features, self.dtype)
        update = self.training and self.track_running_stats
        out, self._cache = F.batchnorm_forward(
            x, gamma, beta, self.eps, batch_stats,
            self.running_mean if (update or not batch_stats) else None,
            self.running_var if (update or not batch_stats) else None, factor)
        return out

    def backward(self, grad_output):
        cache = self._saved()
        dout = chk.check_grad(self, grad_output, cache.x_shape, self.dtype)
        dx, dgamma, dbeta = F.batchnorm_backward(dout, cache)
        if self.weight is not None:
            self.weight.grad += dgamma
        if self.bias is not None:
            self.bias.grad += dbeta
        return dx

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}" + ("" if self.bias is not None or not self.affine
                                                                     else ", bias=False"))


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W), per channel, like ``torch.nn.BatchNorm2d``.

    Training normalizes with the batch's biased variance and updates
    ``running_var`` with the unbiased one: ``r <- (1 - momentum) r + momentum * stat``
    (``momentum=None``: cumulative average). Eval uses the running statistics.
    """

    _ndims = (4,)


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L), per channel, like ``torch.nn.BatchNorm1d``."""

    _ndims = (2, 3)


class Linear(Module):
    """``y = x @ weight.T + bias`` over the last axis, like ``torch.nn.Linear``.

    Shapes: input (*, in_features), output (*, out_features), weight
    (out_features, in_features), bias (out_features,).
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, generator=None):
        super().__init__()
        self.in_features = chk.positive_int("Linear", "in_features", in_features)
        self.out_features = chk.positive_int("Linear", "out_features", out_features)
        self.dtype = chk.as_dtype("Linear", dtype)
        rng = generator if generator is not None else default_generator()
        self.weight = Parameter(kaiming_uniform((out_features, in_features), self.dtype, rng))
        self.bias = Parameter(uniform(out_features, in_features ** -0.5, self.dtype, rng)) if bias else None

    def forward(self, x):
        x = chk.check_input(self, x, range(1, 33), self.dtype, channels=self.in_features, channel_axis=-1,
                            allow_empty=True)
        lead = x.shape[:-1]
        bias = None if self.bias is None else self.bias.data
        out, self._cache = F.linear_forward(x.reshape(-1, self.in_features), self.weight.data, bias)
        self._out_shape = (*lead, self.out_features)
        return out.reshape(self._out_shape)

    def backward(self, grad_output):
        cache = self._saved()
        dout = chk.check_grad(self, grad_output, self._out_shape, self.dtype)
        dx, _, db = F.linear_backward(dout.reshape(-1, self.out_features), cache, dw_into=self.weight.grad)
        if self.bias is not None:
            self.bias.grad += db
        return dx.reshape(*self._out_shape[:-1], self.in_features)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class ReLU(Module):
    """``max(x, 0)`` element-wise, any shape (0-d and empty too)."""

    def forward(self, x):
        x = chk.check_input(self, x, chk.ANY_NDIM, allow_empty=True)
        out, self._cache = F.relu_forward(x)
        return out

    def backward(self, grad_output):
        cache = self._saved()
        return F.relu_backward(chk.check_grad(self, grad_output, cache.out.shape, cache.out.dtype), cache)


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one, like ``torch.nn.Flatten``."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        x = chk.check_input(self, x, range(1, 33), allow_empty=True)
        start, end = (d % x.ndim if -x.ndim <= d < x.ndim else None for d in (self.start_dim, self.end_dim))
        if start is None or end is None or start > end:
            raise ValueError(f"{self._name()}: start_dim={self.start_dim}, end_dim={self.end_dim} do not "
                             f"select dims of an input of shape {x.shape}")
        self._cache = x.shape
        merged = math.prod(x.shape[start:end + 1])
        out = x.reshape(*x.shape[:start], merged, *x.shape[end + 1:])
        self._out_shape = out.shape
        return out

    def backward(self, grad_output):
        shape = self._saved()
        dout = chk.check_grad(self, grad_output, self._out_shape, None)
        return dout.reshape(shape)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class LogSoftmax(Module):
    """``log(softmax(x))`` along ``dim``, computed stably (logits in the thousands stay finite).

    ``dim=None`` is torch's legacy implicit choice (0 for 0-, 1- and 3-D input, else 1), with
    torch's warning. A 0-d input is one logit: its log-softmax is 0.
    """

    def __init__(self, dim=None):
        super().__init__()
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, numbers.Integral)):
            raise TypeError(f"LogSoftmax: dim must be an int or None, got {dim!r}")
        self.dim = None if dim is None else int(dim)

    def forward(self, x):
        x = chk.check_input(self, x, chk.ANY_NDIM, allow_empty=True)
        dim = self.dim
        if dim is None:
            warnings.warn("Implicit dimension choice for log_softmax has been deprecated. Change the call to "
                          "include dim=X as an argument.", UserWarning, stacklevel=2)
            dim = 0 if x.ndim in (0, 1, 3) else 1
        if not -max(x.ndim, 1) <= dim < max(x.ndim, 1):
            raise ValueError(f"{self._name()}: dim {dim} is out of range for input shape {x.shape}")
        out, self._cache = F.log_softmax_forward(x.reshape(1) if x.ndim == 0 else x, dim % max(x.ndim, 1))
        out = out.reshape(x.shape)
        self._out_shape = out.shape
        return out

    def backward(self, grad_output):
        cache = self._saved()
        dout = chk.check_grad(self, grad_output, self._out_shape, cache.out_rows.dtype)
        return F.log_softmax_backward(dout.reshape(cache.moved_shape) if dout.ndim == 0 else dout,
                                      cache).reshape(self._out_shape)

    def extra_repr(self):
        return f"dim={self.dim}"


IDENTITY = "identity"  # Dropout's cache in eval mode (or p = 0): the backward passes dout through


class Dropout(Module):
    """In training, zero each element with probability ``p`` and scale the rest by ``1/(1-p)``.

    In eval it is the identity. Masks come from ``generator`` (default: the
    generator seeded by ``minicnn.manual_seed``).
    """

    def __init__(self, p=0.5, generator=None):
        super().__init__()
        self.p = chk.probability("Dropout", "p", p)
        self.generator = generator

    def forward(self, x):
        x = chk.check_input(self, x, chk.ANY_NDIM, allow_empty=True)
        self._out_shape, self._out_dtype = x.shape, x.dtype
        if not self.training or self.p == 0.0:
            self._cache = IDENTITY  # nothing to remember
            return x.copy()
        out, self._cache = F.dropout_forward(x, self.p, self.generator or default_generator())
        return out

    def backward(self, grad_output):
        cache = self._saved()
        dout = chk.check_grad(self, grad_output, self._out_shape, self._out_dtype)
        return dout.copy() if cache is IDENTITY else F.dropout_backward(dout, cache)

    def extra_repr(self):
        return f"p={self.p}"
