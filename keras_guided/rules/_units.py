"""The unit axes of the built-in producer and normalization layers.

A built-in rule names its layer's unit *family* (`LayerRule.family`); this
module says, once per family, which weight slices an output unit owns and
which an input channel owns. A new layer class of a known family is added
by its row in `_builtin` alone.

Families: `"dense"`, `"conv"`, `"conv_transpose"`, `"depthwise"`,
`"separable"`, `"normalization"`, `"embedding"`.
"""

from keras import layers

from keras_guided._weights import WeightAxis

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
    """The family of an EinsumDense: `"dense"` when it is Dense-like."""
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


def output_slices(layer, family):
    """Weight slices owned by each output unit of `layer` of `family`.

    Raises:
        ValueError: for a channels-first layer.
    """
    if family is None:
        return []
    if family not in ("normalization", "dense", "embedding"):
        _check_channels_last(layer)
    if family == "embedding":
        return [WeightAxis("embeddings", -1)]
    if family == "dense":
        return _with_bias(layer, [WeightAxis("kernel", -1)] + _lora_b(layer))
    if family == "conv":
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


def input_slices(layer, family):
    """Weight slices owned by each input channel of `layer` of `family`."""
    if family == "dense":
        return [WeightAxis("kernel", 0)] + _lora_a(layer)
    if family == "conv":
        return [WeightAxis("kernel", -2)]
    if family == "conv_transpose":
        return [WeightAxis("kernel", -1)]
    if family == "depthwise":
        return [WeightAxis("kernel", -2)]
    if family == "separable":
        multiplier = int(getattr(layer, "depth_multiplier", 1))
        return [
            WeightAxis("depthwise_kernel", -2),
            WeightAxis("pointwise_kernel", -2, block=multiplier),
        ]
    return []


def _lora_b(layer):
    """Keras' LoRA (`layer.enable_lora(rank)`): the kernel is
    `kernel + lora_alpha / lora_rank * lora_kernel_a @ lora_kernel_b`, so
    output unit `u` owns column `u` of `lora_kernel_b` too."""
    if getattr(layer, "lora_enabled", False):
        return [WeightAxis("lora_kernel_b", -1)]
    return []


def _lora_a(layer):
    """With LoRA, input channel `c` owns row `c` of `lora_kernel_a`."""
    if getattr(layer, "lora_enabled", False):
        return [WeightAxis("lora_kernel_a", 0)]
    return []


def _with_bias(layer, slices):
    if isinstance(layer, layers.EinsumDense):
        has_bias = layer.bias is not None
    else:
        has_bias = getattr(layer, "use_bias", False)
    if has_bias:
        slices.append(WeightAxis("bias", 0))
    return slices


def _check_channels_last(layer):
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
    if isinstance(layer, layers.EinsumDense):
        config["bias_axes"] = None
    else:
        config["use_bias"] = False
    return config
