"""Names of a layer's weights, and the weight-and-axis pair a unit owns.

The lowest layer of the package's layer knowledge: `keras_guided.rules`
(which says, per layer class, which weights a unit owns) and
`keras_guided.units` (the public front, with the per-unit maths) both
build on it. It knows no layer class.
"""

import dataclasses


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


# Documented, and imported by users, as `keras_guided.units.WeightAxis`.
WeightAxis.__module__ = "keras_guided.units"


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
        return path[len(prefix) :]
    return path


def is_input_weight(name, shape):
    """Whether a producer's weight multiplies its input (not a bias).

    Kernels do; biases only add a constant, even when they have several
    axes (an attention bias of shape `(num_heads, key_dim)`).
    """
    return len(tuple(shape)) >= 2 and not str(name).split("/")[-1].endswith(
        "bias"
    )


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
