"""What each plain `keras.ops` operation (not a layer) means for pruning.

Functional models built with `x + y`, `keras.ops.relu(x)` or `x[..., :n]`
hold operations that are not layers and have no `LayerRule`; the graph
asks `op_kind` how each maps channels. The one table of operation names.
"""

from keras import layers as keras_layers

# Kind -> names of the keras.ops operation classes of that kind.
_OP_KINDS = {
    # Several inputs whose channel c meet (`x + y`, `x * s`).
    "merge": (
        "Add",
        "Subtract",
        "Multiply",
        "Maximum",
        "Minimum",
        "Divide",
        "TrueDivide",
        # Comparisons (`Embedding(mask_zero=True)`'s `NotEqual`): channel c
        # of each input to channel c of a boolean output.
        "Equal",
        "NotEqual",
        "Greater",
        "GreaterEqual",
        "Less",
        "LessEqual",
        "LogicalAnd",
        "LogicalOr",
    ),
    # Element-wise keras.ops / keras.activations: channel c to channel c.
    "elementwise": (
        "Relu",
        "Relu6",
        "ReLU",
        "Sigmoid",
        "SparseSigmoid",
        "Softplus",
        "Softsign",
        "SoftShrink",
        "SparsePlus",
        "Silu",
        "Squareplus",
        "LogSigmoid",
        "LeakyRelu",
        "HardSigmoid",
        "HardSilu",
        "Elu",
        "Selu",
        "Gelu",
        "Celu",
        "TanhShrink",
        "HardTanh",
        "HardShrink",
        "Threshold",
        "Tanh",
        "Exp",
        "Expm1",
        "Log",
        "Log1p",
        "Abs",
        "Absolute",
        "Square",
        "Sqrt",
        "Negative",
        "Sign",
        "Sin",
        "Cos",
        "Clip",
        "Cast",
        "Reciprocal",
        "LogicalNot",
    ),
    # Values that depend only on the input's shape: no channels.
    "shape_only": ("OnesLike", "ZerosLike"),
    "transpose": ("Transpose",),
    # Indexing: channels pass when the last axis is kept whole.
    "getitem": ("GetItem",),
}
_OP_MODULES = (
    "keras.src.ops.numpy",
    "keras.src.ops.nn",
    "keras.src.ops.core",
    "keras.src.activations.activations",
)
_KIND_OF_NAME = {
    name: kind for kind, names in _OP_KINDS.items() for name in names
}
# Activations (layers' `activation`, `Activation` layers) that mix the
# channels they are applied to.
MIXING_ACTIVATIONS = ("softmax", "log_softmax")


def op_kind(operation):
    """The kind of a plain keras op: `"merge"`, `"elementwise"`,
    `"shape_only"`, `"transpose"` or `"getitem"`; `None` for a layer or
    an operation the table does not know."""
    cls = type(operation)
    if isinstance(operation, keras_layers.Layer) or (
        cls.__module__ not in _OP_MODULES
    ):
        return None
    return _KIND_OF_NAME.get(cls.__name__)
