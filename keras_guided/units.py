"""What a unit is, for every supported layer type.

This module is the single place that knows weight axes. A *unit* is one
output channel of a layer (a Dense neuron, a Conv filter). For each layer
type we record:

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

import dataclasses

import numpy as np
from keras import layers
from keras import ops

from keras_guided._axes import normalize_axes

NORMS = ("l1", "l2", "group")


@dataclasses.dataclass(frozen=True)
class WeightAxis:
    """One weight of a layer and the axis along which it is cut.

    Attributes:
        weight: the variable's name inside the layer (`"kernel"`, `"bias"`,
            `"gamma"`, ...).
        axis: the axis that indexes units. A tuple of contiguous axes means
            those axes flattened in row-major order (the depthwise kernel's
            `(input_channels, depth_multiplier)` pair).
        block: positions per unit along `axis`: unit `c` owns positions
            `c * block` to `c * block + block - 1`.
    """

    weight: str
    axis: object = -1
    block: int = 1


# Layer families, most specific first (SeparableConv and DepthwiseConv are
# not subclasses of Conv in Keras 3, Conv*Transpose are).
_TRANSPOSE = (
    layers.Conv1DTranspose,
    layers.Conv2DTranspose,
    layers.Conv3DTranspose,
)
_DEPTHWISE = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)
_SEPARABLE = (layers.SeparableConv1D, layers.SeparableConv2D)
_CONV = (layers.Conv1D, layers.Conv2D, layers.Conv3D)
_NORMALIZATION = (layers.BatchNormalization, layers.LayerNormalization)
_EMBEDDING = (layers.Embedding,)


def dense_like_einsum(layer):
    """Whether an EinsumDense computes a Dense over its last axis.

    True for equations like `"abc,cd->abd"`: the kernel has two axes, its
    first contracts the input's last axis, its second is the output's last
    axis, every other input axis passes through, and the bias (if any) is
    on the last axis.
    """
    inputs, _, output = layer.equation.replace(" ", "").partition("->")
    source, _, kernel = inputs.partition(",")
    if "." in layer.equation or len(kernel) != 2 or not source or not output:
        return False
    return (
        kernel[0] == source[-1] and kernel[1] == output[-1]
        and source[:-1] == output[:-1] and kernel[0] not in output
        and kernel[1] not in source
        and (layer.bias_axes or kernel[1]) == kernel[1]
    )


def layer_family(layer):
    """Returns the unit family of `layer`, or `None` if it has no units.

    One of `"dense"`, `"conv"`, `"conv_transpose"`, `"depthwise"`,
    `"separable"`, `"normalization"`, `"embedding"`, `None`.
    """
    if isinstance(layer, layers.Dense):
        return "dense"
    if isinstance(layer, _EMBEDDING):
        return "embedding"
    if isinstance(layer, layers.EinsumDense):
        return "dense" if dense_like_einsum(layer) else None
    if isinstance(layer, _TRANSPOSE):
        return "conv_transpose"
    if isinstance(layer, _DEPTHWISE):
        return "depthwise"
    if isinstance(layer, _SEPARABLE):
        return "separable"
    if isinstance(layer, _CONV):
        return "conv"
    if isinstance(layer, _NORMALIZATION):
        return "normalization"
    return None


def _with_bias(layer, slices):
    if isinstance(layer, layers.EinsumDense):
        has_bias = layer.bias is not None
    else:
        has_bias = getattr(layer, "use_bias", False)
    if has_bias:
        slices.append(WeightAxis("bias", 0))
    return slices


def _depth_multiplier(layer):
    return int(getattr(layer, "depth_multiplier", 1))


def _check_channels_last(layer):
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise ValueError(
            f"keras_guided supports channels-last layers only. Received: "
            f"layer '{layer.name}' ({type(layer).__name__}) with "
            f"data_format='{layer.data_format}'. Build the model with "
            "data_format='channels_last' (the Keras default)."
        )


def normalization_axis(layer):
    """Returns the single feature axis of a normalization layer, or `None`.

    `None` means the layer normalizes over several axes (a LayerNormalization
    over more than the channel axis), so its parameters are not per-channel.
    """
    axis = layer.axis
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return None
        axis = axis[0]
    return int(axis)


def output_slices(layer):
    """Weight slices owned by each output unit of `layer`.

    Args:
        layer: a built Keras layer.

    Returns:
        A list of `WeightAxis`; empty for layers that own no per-unit weights.

    Raises:
        ValueError: for a channels-first layer.
    """
    family = layer_family(layer)
    if family is None:
        return []
    if family not in ("normalization", "dense", "embedding"):
        _check_channels_last(layer)
    if family == "embedding":
        return [WeightAxis("embeddings", -1)]
    if family in ("dense", "conv"):
        return _with_bias(layer, [WeightAxis("kernel", -1)])
    if family == "conv_transpose":
        return _with_bias(layer, [WeightAxis("kernel", -2)])
    if family == "depthwise":
        return _with_bias(layer, [WeightAxis("kernel", (-2, -1))])
    if family == "separable":
        return _with_bias(layer, [WeightAxis("pointwise_kernel", -1)])
    # normalization: every per-channel vector.
    names = [v.name for v in layer.weights]
    return [WeightAxis(name, 0) for name in names]


def input_slices(layer):
    """Weight slices owned by each input channel of `layer` (as consumer).

    Dense rows, Conv input channels, the depthwise input channel (with its
    `depth_multiplier` outputs, see the module docstring) and, for
    SeparableConv, the depthwise channel plus its pointwise rows.

    Returns:
        A list of `WeightAxis`; empty for layers without input weights.
    """
    family = layer_family(layer)
    if family == "dense":
        return [WeightAxis("kernel", 0)]
    if family == "conv":
        return [WeightAxis("kernel", -2)]
    if family == "conv_transpose":
        return [WeightAxis("kernel", -1)]
    if family == "depthwise":
        return [WeightAxis("kernel", -2)]
    if family == "separable":
        multiplier = _depth_multiplier(layer)
        return [
            WeightAxis("depthwise_kernel", -2),
            WeightAxis("pointwise_kernel", -2, block=multiplier),
        ]
    return []


def weight_key(layer, variable):
    """The name `get_weight` finds `variable` of `layer` by.

    The variable's name (`"kernel"`) when no other weight of the layer has
    it, otherwise its path below the layer (`"query/kernel"` in a
    MultiHeadAttention, whose four projections all own a `"kernel"`).
    """
    names = [v.name for v in layer.weights]
    if names.count(variable.name) == 1:
        return variable.name
    path = variable.path
    prefix = layer.path + "/" if getattr(layer, "path", None) else ""
    if prefix and path.startswith(prefix):
        return path[len(prefix):]
    return path


def is_input_weight(name, shape):
    """Whether a producer's weight multiplies its input (not a bias).

    Kernels do; biases only add a constant, even when they have several
    axes (an attention bias of shape `(num_heads, key_dim)`).
    """
    return len(tuple(shape)) >= 2 and not str(name).split("/")[-1].endswith(
        "bias")


def weight_keys(layer):
    """`weight_key` of every weight of `layer`, in `layer.weights` order."""
    return [weight_key(layer, v) for v in layer.weights]


def get_weight(layer, name):
    """Returns the variable of `layer` called `name` (see `weight_key`).

    Raises:
        ValueError: if the layer has no such variable.
    """
    for variable in layer.weights:
        if variable.name == name and weight_key(layer, variable) == name:
            return variable
    for variable in layer.weights:
        if weight_key(layer, variable) == name:
            return variable
    available = weight_keys(layer)
    raise ValueError(
        f"Layer '{layer.name}' ({type(layer).__name__}) has no weight "
        f"'{name}'. Available weights: {available}. Build the layer before "
        "asking for its units."
    )


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
