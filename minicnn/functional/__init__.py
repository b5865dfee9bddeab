"""The kernels: one module per op family, each a functional pair

    out, cache = <op>_forward(x, params..., options...)
    grads      = <op>_backward(dout, cache)

with the cache a documented NamedTuple. Convolution and max-pooling also have a
``*_naive`` pair written to be read; ``sgd_update`` is the optimizer's step.
``import minicnn.functional as F``.

Nothing here knows about Modules or Parameters: the layers in ``minicnn.nn``
own the parameters and call these functions.
"""
from .activation import (DropoutCache, LogSoftmaxCache, ReLUCache, dropout_backward, dropout_forward,
                         log_softmax_backward, log_softmax_forward, relu_backward, relu_forward)
from .conv import (PADDING_MODES, ConvCache, ConvGeometry, ConvNaiveCache, Pad2dCache, conv2d_backward,
                   conv2d_backward_im2col, conv2d_backward_naive, conv2d_forward, conv2d_forward_im2col,
                   conv2d_forward_naive, conv2d_geometry, conv2d_output_size, pad2d_backward, pad2d_forward)
from .linear import LinearCache, linear_backward, linear_forward
from .loss import (REDUCTIONS, CrossEntropyCache, NLLCache, cross_entropy_backward, cross_entropy_forward,
                   nll_backward, nll_forward)
from .norm import BatchNormCache, batchnorm_backward, batchnorm_forward
from .pool import (PoolCache, PoolNaiveCache, maxpool2d_backward, maxpool2d_backward_naive, maxpool2d_forward,
                   maxpool2d_forward_naive, maxpool2d_output_shape, maxpool2d_output_size)
from .sgd import sgd_update

__all__ = [
    "PADDING_MODES", "Pad2dCache", "pad2d_backward", "pad2d_forward",
    "BatchNormCache", "ConvCache", "ConvGeometry", "ConvNaiveCache", "CrossEntropyCache", "DropoutCache",
    "LinearCache", "LogSoftmaxCache", "NLLCache", "PoolCache", "PoolNaiveCache", "REDUCTIONS", "ReLUCache",
    "batchnorm_backward", "batchnorm_forward", "conv2d_backward", "conv2d_backward_im2col", "conv2d_backward_naive",
    "conv2d_forward", "conv2d_forward_im2col", "conv2d_forward_naive", "conv2d_geometry", "conv2d_output_size", "cross_entropy_backward",
    "cross_entropy_forward", "dropout_backward", "dropout_forward", "linear_backward", "linear_forward",
    "log_softmax_backward", "log_softmax_forward", "maxpool2d_backward", "maxpool2d_backward_naive",
    "maxpool2d_forward", "maxpool2d_forward_naive", "maxpool2d_output_shape", "maxpool2d_output_size",
    "nll_backward", "nll_forward", "relu_backward", "relu_forward", "sgd_update",
]
