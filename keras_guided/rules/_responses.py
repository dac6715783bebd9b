"""Linear responses for folding (`LayerRule.linear_response`).

`linear_response(layer, x)` is the pre-activation, bias-free response of a
consumer to the input `x` (channels last, batch 1): what a removed input
channel's constant `x` adds to the consumer's output, which `prune_model`
folds into its bias. `None` (a rule without it, or a response function
returning `None`) means the layer cannot take such constants.
"""

import numpy as np
from keras import ops

from keras_guided import _copies
from keras_guided.rules._units import dense_like_einsum
from keras_guided.rules._units import without_bias


def kernel_response(layer, x):
    """A kernel layer (Dense, Conv, Conv*Transpose, SeparableConv): the
    layer's kernels applied to `x` by a throwaway copy of it with a linear
    activation and no bias."""
    config = _copies.layer_config(layer)
    config.update(activation="linear", name=layer.name + "_fold_probe")
    config = without_bias(layer, config)
    for key in config:
        if key.endswith("_initializer"):
            # Built without drawing its initial weights.
            config[key] = "zeros"
        elif key.endswith("_regularizer") or key.endswith("_constraint"):
            # No part of the forward pass (and a regularizer may be tied to
            # the original's width).
            config[key] = None
    probe = type(layer).from_config(config)
    probe.build(x.shape)
    weights = [
        ops.convert_to_numpy(v.value) for v in layer.weights if v.name != "bias"
    ]
    probe.set_weights(weights)
    return ops.convert_to_numpy(probe(x)).astype(np.float64)


def einsum_response(layer, x):
    """A Dense-like EinsumDense: its kernel response; `None` otherwise."""
    if not dense_like_einsum(layer):
        return None
    return kernel_response(layer, x)


def call_difference(layer, x):
    """A user's layer: `layer(x) - layer(0)`, exact when the layer is
    affine in its input."""
    response = ops.convert_to_numpy(layer(x))
    base = ops.convert_to_numpy(layer(np.zeros_like(x)))
    return (response - base).astype(np.float64)
