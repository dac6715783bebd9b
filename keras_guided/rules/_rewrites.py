"""The rewrite functions of the built-in rules: a layer rebuilt for its kept
channels (`rewrite(layer, weights, kept_inputs, kept_outputs)`), and the
checks of the layers whose rewrite needs one."""

import numpy as np

from keras_guided import _axes
from keras_guided import _keras_adapter as adapter
from keras_guided import _weights
from keras_guided.rules import _grouped_attention
from keras_guided.rules import _units


# ------------------------------------------------------------ helpers
def take(array, axis, kept, block=1):
    """Keeps the units `kept` along `axis` (int or contiguous tuple).

    Unit `c` owns positions `c * block ... c * block + block - 1`; a helper
    for rules of your own (`keras_guided._axes.take_units`, which the
    built-in rules use too).
    """
    return _axes.take_units(array, axis, kept, block)


def _weights_list(layer, weights):
    names = _weights.weight_keys(layer)
    return [weights[name] for name in names if name in weights]


def _first(kept_inputs):
    return kept_inputs[0] if kept_inputs else None


def _bias_config(config, weights):
    if "bias" in weights:
        config["use_bias"] = True
    return config


def _order(layer, weights):
    """Weights in build order: layer.weights order, bias added if new
    (built right after the kernel, before LoRA's factors)."""
    names = _weights.weight_keys(layer)
    if "bias" in weights and "bias" not in names:
        at = names.index("kernel") + 1 if "kernel" in names else len(names)
        names.insert(at, "bias")
    return [weights[name] for name in names]


def _producer_rule(count_key, output_weights, input_weights):
    """The rewrite of a producer whose unit count is the config entry
    `count_key` and whose unit axes are its rule's `output_weights` and
    `input_weights` (functions of the layer, `rules._units`)."""

    def rule(layer, weights, kept_inputs, kept_outputs):
        weights = dict(weights)
        kept_in = _first(kept_inputs)
        config = _bias_config(layer.get_config(), weights)
        if kept_in is not None:
            for name, axis, block in _resolve(input_weights, layer):
                weights[name] = _axes.take_units(
                    weights[name], axis, kept_in, block
                )
        if kept_outputs is not None:
            slices = _resolve(output_weights, layer)
            for name, axis in slices:
                if name in weights:
                    weights[name] = _axes.take_units(
                        weights[name], axis, kept_outputs
                    )
            if "bias" in weights and "bias" not in {s[0] for s in slices}:
                weights["bias"] = weights["bias"][kept_outputs]
            config[count_key] = int(len(kept_outputs))
        return config, _order(layer, weights)

    return rule


def _resolve(weights, layer):
    return tuple(weights(layer) if callable(weights) else weights)


def depthwise_rule(layer, weights, kept_inputs, kept_outputs):
    """DepthwiseConv: keeps input channels and their multiplier outputs."""
    kept_in = _first(kept_inputs)
    new = {}
    for name, value in weights.items():
        if name == "kernel" and kept_in is not None:
            new[name] = np.take(value, kept_in, axis=-2)
        elif name == "bias" and kept_outputs is not None:
            new[name] = value[kept_outputs]
        else:
            new[name] = value
    return _bias_config(layer.get_config(), new), _order(layer, new)


def channel_rule(layer, weights, kept_inputs, kept_outputs):
    """Per-channel weights (BatchNormalization, LayerNormalization)."""
    kept = kept_outputs
    new = {}
    for name, value in weights.items():
        if kept is not None and np.ndim(value) >= 1:
            new[name] = value[..., kept] if name == "alpha" else value[kept]
        else:
            new[name] = value
    return layer.get_config(), _weights_list(layer, new)


def group_normalization_rule(layer, weights, kept_inputs, kept_outputs):
    """GroupNormalization with one group per channel (`groups=-1` becomes
    the channel count when built): per-channel weights, and as many groups
    as kept channels."""
    config, new_weights = channel_rule(
        layer, weights, kept_inputs, kept_outputs
    )
    if kept_outputs is not None:
        config = dict(config, groups=int(len(kept_outputs)))
    return config, new_weights


def prelu_rule(layer, weights, kept_inputs, kept_outputs):
    """PReLU: per-channel alpha, unless shared over the channel axis."""
    alpha = weights["alpha"]
    if kept_outputs is not None and alpha.shape[-1] != 1:
        alpha = alpha[..., kept_outputs]
    return layer.get_config(), [alpha]


def reshape_rule(layer, weights, kept_inputs, kept_outputs):
    """Reshape keeping the channel axis: the new last axis shrinks."""
    config = layer.get_config()
    if kept_outputs is not None:
        shape = list(config["target_shape"])
        shape[-1] = int(len(kept_outputs))
        config["target_shape"] = tuple(shape)
    return config, []


def dropout_rule(layer, weights, kept_inputs, kept_outputs):
    """Dropout: a channel entry in `noise_shape` follows the channels."""
    config = layer.get_config()
    noise_shape = config.get("noise_shape")
    if noise_shape is not None and kept_outputs is not None:
        noise_shape = list(noise_shape)
        if noise_shape[-1] not in (None, 1):
            noise_shape[-1] = int(len(kept_outputs))
        config["noise_shape"] = tuple(noise_shape)
    return config, []


def unchanged_rule(layer, weights, kept_inputs, kept_outputs):
    """Layers without per-channel config or weights: a plain copy."""
    return layer.get_config(), _weights_list(layer, weights)


def einsum_dense_rule(
    layer, weights, kept_inputs, kept_outputs, kept_heads=None
):
    """A Dense-like EinsumDense (`"abc,cd->abd"`): the last output axis.

    With `kept_heads`, a head projection of grouped-query attention
    (`rules.GroupedAttention`): the kept heads of its kernel (and
    bias), its channels whole.
    """
    if kept_heads is not None:
        return _einsum_heads_rule(layer, weights, kept_heads)
    config, new_weights = _producer_rule(
        "units", _units.einsum_outputs, _units.einsum_inputs
    )(layer, weights, kept_inputs, kept_outputs)
    config.pop("units", None)
    config.pop("use_bias", None)
    if kept_outputs is not None:
        shape = config["output_shape"]
        shape = list(shape) if isinstance(shape, (list, tuple)) else [shape]
        shape[-1] = int(len(kept_outputs))
        config["output_shape"] = tuple(shape)
    if "bias" in weights and not layer.bias_axes:
        config["bias_axes"] = config["equation"].split("->")[1][-1]
    return config, new_weights


def _einsum_heads_rule(layer, weights, kept_heads):
    kernel_axis, output_index = _grouped_attention.head_axis(layer)
    config = layer.get_config()
    weights = dict(weights)
    weights["kernel"] = np.take(weights["kernel"], kept_heads, axis=kernel_axis)
    if output_index is not None:
        shape = list(config["output_shape"])
        shape[output_index] = int(len(kept_heads))
        config["output_shape"] = tuple(shape)
        if "bias" in weights:
            weights["bias"] = np.take(weights["bias"], kept_heads, axis=0)
    return config, _order(layer, weights)


def _check_einsum(layer, input_shape, output_shape):
    if not _units.dense_like_einsum(layer):
        return (
            f"its equation '{layer.equation}' (bias_axes="
            f"{layer.bias_axes!r}) is not a Dense over the last axis"
        )
    return None


def grouped_conv_rule(layer, weights, kept_inputs, kept_outputs):
    """Conv with `groups > 1`: every group keeps the same channel count.

    The graph ties input channel `c` to the kernel's input slot
    `c % (input channels per group)` in every group, and output filter `o`
    to slot `o % (filters per group)`, so kept channels come as whole slots
    and `filters` stays divisible by `groups`. With one input channel per
    group (a depthwise convolution written as Conv) whole groups are removed
    instead and `groups` shrinks.
    """
    weights = dict(weights)
    kept_in = _first(kept_inputs)
    config = _bias_config(layer.get_config(), weights)
    kernel = weights["kernel"]
    per_group = kernel.shape[-2]
    if kept_in is not None:
        if per_group == 1 and layer.groups > 1:
            config["groups"] = int(len(kept_in))
        else:
            slots = np.unique(np.asarray(kept_in) % per_group)
            kernel = np.take(kernel, slots, axis=-2)
    if kept_outputs is not None:
        kernel = np.take(kernel, kept_outputs, axis=-1)
        if "bias" in weights:
            weights["bias"] = weights["bias"][kept_outputs]
        config["filters"] = int(len(kept_outputs))
    weights["kernel"] = kernel
    return config, _order(layer, weights)


ATTENTION_HEAD_WEIGHTS = (
    ("query/kernel", 1),
    ("query/bias", 0),
    ("key/kernel", 1),
    ("key/bias", 0),
    ("value/kernel", 1),
    ("value/bias", 0),
)
ATTENTION_OUTPUT_WEIGHT = ("attention_output/kernel", 0)


def attention_rule(layer, weights, kept_inputs, kept_outputs, kept_heads=None):
    """MultiHeadAttention without some heads; `num_heads` rewritten.

    A head is its query, key and value projections (`[:, h, :]` of each
    kernel, `[h, :]` of each bias) and its rows of the output projection
    (`[h, :, :]`). A removed head whose projection kernels are zero (or
    masked) attends uniformly to a constant: it emits its value bias, whose
    projection is added to the output bias, so removing it is exact.
    """
    config = layer.get_config()
    weights = dict(weights)
    if kept_heads is not None and len(kept_heads) < layer.num_heads:
        removed = np.setdiff1d(np.arange(layer.num_heads), kept_heads)
        output = weights[ATTENTION_OUTPUT_WEIGHT[0]]
        if "value/bias" in weights and "attention_output/bias" in weights:
            constant = np.einsum(
                "hd,hde->e", weights["value/bias"][removed], output[removed]
            )
            weights["attention_output/bias"] = (
                weights["attention_output/bias"] + constant
            ).astype(output.dtype)
        for name, axis in ATTENTION_HEAD_WEIGHTS + (ATTENTION_OUTPUT_WEIGHT,):
            if name in weights:
                weights[name] = np.take(weights[name], kept_heads, axis=axis)
        config["num_heads"] = int(len(kept_heads))
    return config, _weights_list(layer, weights)


def _check_attention(layer, input_shape, output_shape):
    """Heads are units for the standard layout only."""
    if adapter.attention_uses_gate(layer):
        return "use_gate=True"
    axes = layer.get_config().get("attention_axes")
    if len(tuple(input_shape)) != 3 or axes not in (None, (1,), [1]):
        return "attention over several axes"
    return None


def _layer_scale_rule(layer, weights, kept_inputs, kept_outputs):
    """ConvNeXt's LayerScale: a per-channel `gamma`."""
    config = layer.get_config()
    gamma = weights[_weights.weight_keys(layer)[0]]
    if kept_outputs is not None:
        gamma = gamma[kept_outputs]
        config["projection_dim"] = int(len(kept_outputs))
    return config, [gamma]
