"""The unit axes of the built-in producer and normalization layers, as
the values of their rules' fields.

A rule says which weight slices an output unit owns (`LayerRule.
output_weights`, `(name, axis)` pairs) and which an input channel owns
(`LayerRule.input_weights`, `(name, axis, block)` triples), each a tuple
or a function of the layer returning one: the same fields a user's rule
fills. This module writes those functions once per kind of kernel, and
`unit_axes` returns them as the fields of one built-in entry, with the
descriptive `family` label (`FAMILIES`) that `unit_family` reports:

    LayerRule(rewrite, "producer", **unit_axes("conv"), ...)

Nothing reads the label to find axes: every consumer reads the fields.
"""

FAMILIES = (
    "dense",
    "conv",
    "conv_transpose",
    "depthwise",
    "separable",
    "normalization",
    "embedding",
)
# Families whose output unit is made by a kernel over every input channel
# (folding a removed input channel's constant goes through their kernel).
KERNEL_FAMILIES = ("dense", "conv", "conv_transpose", "separable")


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
        kernel[0] == source[-1]
        and kernel[1] == output[-1]
        and source[:-1] == output[:-1]
        and kernel[0] not in output
        and kernel[1] not in source
        and (layer.bias_axes or kernel[1]) == kernel[1]
    )


def einsum_family(layer):
    """The family label of an EinsumDense: `"dense"` when it is Dense-like."""
    return "dense" if dense_like_einsum(layer) else None


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


# ------------------------------------------------- output unit slices
def dense_outputs(layer):
    """Dense: kernel column `[:, u]`, LoRA's `lora_kernel_b` column, bias."""
    return _with_bias(layer, (("kernel", -1),) + _lora_b(layer))


def einsum_outputs(layer):
    """A Dense-like EinsumDense: as Dense (its bias is `bias_axes`); none
    for another equation."""
    if not dense_like_einsum(layer):
        return ()
    bias = (("bias", 0),) if layer.bias is not None else ()
    return (("kernel", -1),) + _lora_b(layer) + bias


def embedding_outputs(layer):
    """Embedding: column `u` of the table."""
    return (("embeddings", -1),)


def conv_outputs(layer):
    """Conv: filter `[..., u]` and bias."""
    _require_channels_last(layer)
    return _with_bias(layer, (("kernel", -1),))


def conv_transpose_outputs(layer):
    """Conv*Transpose: kernel axis -2 and bias."""
    _require_channels_last(layer)
    return _with_bias(layer, (("kernel", -2),))


def depthwise_outputs(layer):
    """DepthwiseConv: input channel x depth multiplier, and bias."""
    _require_channels_last(layer)
    return _with_bias(layer, (("kernel", (-2, -1)),))


def separable_outputs(layer):
    """SeparableConv: the pointwise filter and bias."""
    _require_channels_last(layer)
    return _with_bias(layer, (("pointwise_kernel", -1),))


def normalization_outputs(layer):
    """A per-channel layer: every vector it holds (gamma, beta, moving
    statistics)."""
    return tuple((variable.name, 0) for variable in layer.weights)


# ------------------------------------------------ input channel slices
def dense_inputs(layer):
    """Dense: kernel row `[c, :]` and LoRA's `lora_kernel_a` row."""
    return (("kernel", 0, 1),) + tuple((n, a, 1) for n, a in _lora_a(layer))


def einsum_inputs(layer):
    """A Dense-like EinsumDense: as Dense; none for another equation."""
    return dense_inputs(layer) if dense_like_einsum(layer) else ()


def conv_inputs(layer):
    """Conv (and DepthwiseConv): kernel input axis -2."""
    return (("kernel", -2, 1),)


def conv_transpose_inputs(layer):
    """Conv*Transpose: kernel axis -1."""
    return (("kernel", -1, 1),)


def separable_inputs(layer):
    """SeparableConv: the depthwise channel and its `depth_multiplier`
    pointwise rows."""
    multiplier = int(getattr(layer, "depth_multiplier", 1))
    return (
        ("depthwise_kernel", -2, 1),
        ("pointwise_kernel", -2, multiplier),
    )


_AXES = {
    "dense": (dense_outputs, dense_inputs),
    "conv": (conv_outputs, conv_inputs),
    "conv_transpose": (conv_transpose_outputs, conv_transpose_inputs),
    "depthwise": (depthwise_outputs, conv_inputs),
    "separable": (separable_outputs, separable_inputs),
    "normalization": (normalization_outputs, ()),
    "embedding": (embedding_outputs, ()),
}


def unit_axes(family):
    """The `output_weights`, `input_weights` and `family` fields of a
    built-in entry whose layer cuts its units like `family` does (a
    shared constructor: the entry then carries the axes itself)."""
    outputs, inputs = _AXES[family]
    return {
        "output_weights": outputs,
        "input_weights": inputs,
        "family": family,
    }


def _lora_b(layer):
    """Keras' LoRA (`layer.enable_lora(rank)`): the kernel is
    `kernel + lora_alpha / lora_rank * lora_kernel_a @ lora_kernel_b`, so
    output unit `u` owns column `u` of `lora_kernel_b` too."""
    if getattr(layer, "lora_enabled", False):
        return (("lora_kernel_b", -1),)
    return ()


def _lora_a(layer):
    """With LoRA, input channel `c` owns row `c` of `lora_kernel_a`."""
    if getattr(layer, "lora_enabled", False):
        return (("lora_kernel_a", 0),)
    return ()


def _with_bias(layer, slices):
    if getattr(layer, "use_bias", False):
        slices = slices + (("bias", 0),)
    return slices


def _require_channels_last(layer):
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise ValueError(
            f"keras_guided supports channels-last layers only. Received: "
            f"layer '{layer.name}' ({type(layer).__name__}) with "
            f"data_format='{layer.data_format}'. Build the model with "
            "data_format='channels_last' (the Keras default)."
        )


def without_bias(layer, config):
    """`config` of `layer` with its bias switched off (a Dense-like
    EinsumDense has `bias_axes`, the other producers `use_bias`)."""
    config = dict(config)
    if "bias_axes" in config:
        config["bias_axes"] = None
    else:
        config["use_bias"] = False
    return config
