"""What a unit is, for every supported layer type.

A *unit* is one output channel of a layer (a Dense neuron, a Conv filter).
This module is the public front of the unit axes, which the registry
holds (`keras_guided.rules`: every rule, built-in or a user's, declares
them in its `output_weights` and `input_weights` fields). For each layer
we read:

* which weight slices belong to an output unit (`output_slices`): removing
  unit `u` removes position `u` along `axis` of each of these weights;
* which weight slices belong to an input channel (`input_slices`): removing
  input channel `c` of a consumer removes positions
  `c * block ... c * block + block - 1` along `axis`;
* how many units the layer has (`num_units`);
* per-unit norms of a weight (`unit_norms`), written once with the axes
  spelled out, in `keras.ops` so they run on every backend.

The numpy arithmetic on unit axes (normalizing an axis, gathering, taking
or zeroing units) lives once in `keras_guided._axes`; this module builds
its backend-tensor views on `_axes.normalize_axes`.

Depthwise convolutions are *pass-through*: output channel `c * m + k`
(`m` = depth multiplier) is computed from input channel `c` only, so an
input channel and its `m` output channels form one unit.
"""

import numpy as np
from keras import ops

from keras_guided import rules as rules_lib
from keras_guided._axes import normalize_axes
from keras_guided._weights import WeightAxis
from keras_guided._weights import get_weight
from keras_guided._weights import is_input_weight
from keras_guided._weights import weight_key
from keras_guided._weights import weight_keys
from keras_guided.rules import dense_like_einsum
from keras_guided.rules import normalization_axis

NORMS = ("l1", "l2", "group")

__all__ = [
    "NORMS",
    "WeightAxis",
    "dense_like_einsum",
    "get_weight",
    "input_slices",
    "is_input_weight",
    "layer_family",
    "normalization_axis",
    "num_units",
    "output_slices",
    "safe_sqrt",
    "unit_axis_length",
    "unit_matrix",
    "unit_norms",
    "weight_key",
    "weight_keys",
]


def layer_family(layer):
    """Returns the unit family of `layer`, or `None` if it has no units.

    One of `"dense"`, `"conv"`, `"conv_transpose"`, `"depthwise"`,
    `"separable"`, `"normalization"`, `"embedding"`, `None`: the
    descriptive `family` label of its rule in `keras_guided.rules` (the
    axes themselves are the rule's `output_weights` and `input_weights`).
    """
    return rules_lib.unit_family(layer)


def output_slices(layer):
    """Weight slices owned by each output unit of `layer`.

    Args:
        layer: a built Keras layer.

    Returns:
        A list of `WeightAxis`; empty for layers that own no per-unit weights.

    Raises:
        ValueError: for a channels-first layer.
    """
    return rules_lib.output_slices(layer)


def input_slices(layer):
    """Weight slices owned by each input channel of `layer` (as consumer).

    Dense rows, Conv input channels, the depthwise input channel (with its
    `depth_multiplier` outputs, see the module docstring) and, for
    SeparableConv, the depthwise channel plus its pointwise rows.

    Returns:
        A list of `WeightAxis`; empty for layers without input weights.
    """
    return rules_lib.input_slices(layer)


def num_units(layer):
    """Number of output units of a built `layer` (neurons, filters, channels).

    Raises:
        ValueError: if the layer type has no units or is not built.
    """
    slices = output_slices(layer)
    if not slices:
        raise ValueError(
            f"Layer '{layer.name}' ({type(layer).__name__}) has no output "
            "units keras_guided knows about. Supported: Dense, Conv1D/2D/3D, "
            "Conv*Transpose, DepthwiseConv1D/2D, SeparableConv1D/2D, "
            "BatchNormalization, LayerNormalization."
        )
    if not layer.built:
        raise ValueError(
            f"Layer '{layer.name}' ({type(layer).__name__}) is not built. "
            "Call the model on data (or `model.build(shape)`) first."
        )
    first = slices[0]
    shape = tuple(get_weight(layer, first.weight).shape)
    return unit_axis_length(shape, first.axis)


def unit_axis_length(shape, axis):
    """Number of units along `axis` (int or contiguous tuple) of `shape`."""
    axes = normalize_axes(len(shape), axis)
    return int(np.prod([shape[a] for a in axes]))


def unit_matrix(weight, axis):
    """Reshapes `weight` to `(num_units, weights_per_unit)`.

    The unit axis (or contiguous axes, flattened row-major) moves to the
    front; everything else is flattened into one row per unit. Works on
    backend tensors and numpy arrays.
    """
    shape = tuple(weight.shape)
    axes = normalize_axes(len(shape), axis)
    rest = [a for a in range(len(shape)) if a not in axes]
    moved = ops.transpose(weight, list(axes) + rest)
    units = unit_axis_length(shape, axes)
    return ops.reshape(moved, (units, -1))


def unit_norms(weight, axis=-1, norm="group"):
    """Per-unit norms of `weight` along `axis`.

    `"l1"`: sum of |w|; `"l2"`: sum of w**2 (squared L2); `"group"`: the L2
    norm sqrt(sum of w**2), with a gradient that stays finite (zero) at an
    all-zero unit.

    Args:
        weight: tensor or array.
        axis: int or tuple of contiguous ints; the unit axis. Defaults to -1.
        norm: one of `"l1"`, `"l2"`, `"group"`. Defaults to `"group"`.

    Returns:
        A 1-D tensor of length `num_units`.

    Examples:
        >>> import keras, numpy as np, keras_guided
        >>> w = np.array([[3.0, 0.0], [4.0, 0.0]])
        >>> norms = keras_guided.units.unit_norms(w, axis=-1, norm="group")
        >>> keras.ops.convert_to_numpy(norms).tolist()
        [5.0, 0.0]
    """
    if norm not in NORMS:
        raise ValueError(
            f"`norm` must be one of {NORMS}. Received: norm={norm!r}"
        )
    weight = ops.convert_to_tensor(weight)
    if norm == "l1":
        return _reduce_units(ops.abs(weight), axis)
    squared = _reduce_units(ops.square(weight), axis)
    if norm == "l2":
        return squared
    return safe_sqrt(squared)


def _reduce_units(values, axis):
    """Sums `values` over every axis but the unit axis (or axes).

    Reduces in place instead of transposing first (the training-time
    penalty runs every step), then flattens contiguous unit axes row-major.
    """
    shape = tuple(values.shape)
    axes = normalize_axes(len(shape), axis)
    rest = tuple(a for a in range(len(shape)) if a not in axes)
    summed = ops.sum(values, axis=rest) if rest else values
    if len(axes) > 1:
        summed = ops.reshape(summed, (unit_axis_length(shape, axes),))
    return summed


def safe_sqrt(squared):
    """sqrt with a zero (not NaN) gradient at 0.

    `sqrt(x)` has an infinite derivative at 0, which turns into NaN through
    the chain rule at an all-zero unit. We evaluate sqrt on a value that is
    1 where `squared` is 0 and mask the result, so the gradient is exactly 0
    there (the subgradient of the group norm at 0 that keeps the unit at 0).
    """
    positive = ops.greater(squared, 0)
    safe = ops.where(positive, squared, ops.ones_like(squared))
    return ops.where(positive, ops.sqrt(safe), ops.zeros_like(squared))
