"""Rewrite rules: how to slice a layer's config and weights for kept units.

One registry, keyed by layer class. A rule is a function

    rule(layer, weights, kept_inputs, kept_outputs) -> (config, new_weights)

* `layer`: the original (built) layer, never modified;
* `weights`: `{variable name: numpy array}` of the layer, with the folded
  constants of removed input channels already added to its bias (a
  `"bias"` entry may be present for a layer built with `use_bias=False`,
  the rule must then switch `use_bias` on);
* `kept_inputs`: for each input tensor, the sorted int array of kept
  channels (last axis; all of them when nothing is removed there), or
  `None` for a tensor without a known last axis;
* `kept_outputs`: the same for the (first) output tensor;
* returns the config of the new layer (`type(layer).from_config(config)`)
  and its weights, in the order of `layer.weights`.

Built-in rules cover the layers `keras_guided.graph` understands. Users add
rules for their own layers with `register_rule`.
"""

import dataclasses

import numpy as np
from keras import layers as keras_layers

from keras_guided import units as units_lib

KINDS = ("elementwise", "producer")


@dataclasses.dataclass(frozen=True)
class LayerRule:
    """A user rule: how the graph sees a layer class and how to rewrite it.

    Attributes:
        rewrite: the rewrite function (see the module docstring).
        kind: `"elementwise"` (output channel `c` depends on input channel
            `c` only) or `"producer"` (creates new output units, like Dense).
        output_weights: `(weight name, axis)` pairs indexed by output units
            (followers for an elementwise layer).
        input_weights: `(weight name, axis, block)` triples indexed by input
            channels (producers only).
    """

    rewrite: object
    kind: str = "elementwise"
    output_weights: tuple = ()
    input_weights: tuple = ()


_USER_RULES = {}


def register_rule(
    layer_class, rule, kind="elementwise", output_weights=(), input_weights=()
):
    """Registers how `keras_guided` prunes layers of `layer_class`.

    Args:
        layer_class: a `keras.layers.Layer` subclass (subclasses of it are
            covered too, unless they have their own rule).
        rule: `rule(layer, weights, kept_inputs, kept_outputs) ->
            (config, new_weights)`; see `keras_guided.rules`.
        kind: `"elementwise"` (default: channel `c` in, channel `c` out) or
            `"producer"` (new output units, like `Dense`).
        output_weights: `(name, axis)` pairs of weights indexed by the
            output channel. Defaults to `()`.
        input_weights: `(name, axis, block)` triples of weights indexed by
            the input channel (producers). Defaults to `()`.

    Raises:
        ValueError: for a bad `layer_class`, `rule` or `kind`.

    Examples:
        >>> # A per-channel scale layer, registered and pruned.
        >>> import keras, numpy as np, keras_guided
        >>> class ChannelScale(keras.layers.Layer):
        ...     def build(self, input_shape):
        ...         self.scale = self.add_weight(
        ...             shape=(input_shape[-1],), initializer="ones",
        ...             name="scale")
        ...     def call(self, x):
        ...         return x * self.scale
        >>> def scale_rule(layer, weights, kept_inputs, kept_outputs):
        ...     return layer.get_config(), [weights["scale"][kept_outputs]]
        >>> keras_guided.register_rule(
        ...     ChannelScale, scale_rule, output_weights=[("scale", 0)])
        >>> inputs = keras.Input((4,))
        >>> hidden = keras.layers.Dense(3)(inputs)
        >>> outputs = keras.layers.Dense(1)(ChannelScale()(hidden))
        >>> model = keras.Model(inputs, outputs)
        >>> plan = {0: [0, 2]}  # keep units 0 and 2 of group 0
        >>> small = keras_guided.prune_model(model, plan=plan, verify=False)
        >>> small.layers[2].get_weights()[0].shape
        (2,)
        >>> keras_guided.rules.unregister_rule(ChannelScale)
    """
    if not isinstance(layer_class, type) or not issubclass(
        layer_class, keras_layers.Layer
    ):
        raise ValueError(
            "`layer_class` must be a keras.layers.Layer subclass. "
            f"Received: layer_class={layer_class!r}"
        )
    if not callable(rule):
        raise ValueError(
            "`rule` must be a function (layer, weights, kept_inputs, "
            f"kept_outputs) -> (config, weights). Received: rule={rule!r}"
        )
    if kind not in KINDS:
        raise ValueError(
            f"`kind` must be one of {KINDS}. Received: kind={kind!r}"
        )
    outputs = tuple((str(w), a) for w, a in output_weights)
    inputs = tuple(
        (str(t[0]), t[1], int(t[2]) if len(t) > 2 else 1)
        for t in input_weights
    )
    _USER_RULES[layer_class] = LayerRule(rule, kind, outputs, inputs)


def unregister_rule(layer_class):
    """Removes the rule registered for `layer_class` (no error if none)."""
    _USER_RULES.pop(layer_class, None)


def user_rule(layer):
    """The `LayerRule` registered for `type(layer)` or a base class."""
    for cls in type(layer).__mro__:
        if cls in _USER_RULES:
            return _USER_RULES[cls]
    return None


# ------------------------------------------------------------ helpers
def take(array, axis, kept, block=1):
    """Keeps the units `kept` along `axis` (int or contiguous tuple).

    Unit `c` owns positions `c * block ... c * block + block - 1`.
    """
    array = np.asarray(array)
    kept = np.asarray(kept, dtype=np.int64)
    if block != 1:
        kept = (kept[:, None] * block + np.arange(block)[None, :]).ravel()
    if isinstance(axis, (tuple, list)):
        axes = sorted(a % array.ndim for a in axis)
        shape = array.shape
        merged = array.reshape(
            shape[: axes[0]] + (-1,) + shape[axes[-1] + 1:]
        )
        taken = np.take(merged, kept, axis=axes[0])
        # Keep the last axis of the tuple (the depth multiplier) intact when
        # whole blocks are kept, otherwise leave the merged axis.
        inner = shape[axes[-1]]
        if taken.shape[axes[0]] % inner == 0:
            return taken.reshape(
                shape[: axes[0]] + (-1, inner) + shape[axes[-1] + 1:]
            )
        return taken
    return np.take(array, kept, axis=axis)


def _weights_list(layer, weights):
    names = [v.name for v in layer.weights]
    return [weights[name] for name in names if name in weights]


def _first(kept_inputs):
    return kept_inputs[0] if kept_inputs else None


def _bias_config(config, weights):
    if "bias" in weights:
        config["use_bias"] = True
    return config


def _order(layer, weights):
    """Weights in build order: layer.weights order, bias added if new."""
    names = [v.name for v in layer.weights]
    if "bias" in weights and "bias" not in names:
        names.append("bias")
    return [weights[name] for name in names]


def _producer_rule(count_key):
    def rule(layer, weights, kept_inputs, kept_outputs):
        weights = dict(weights)
        kept_in = _first(kept_inputs)
        config = _bias_config(layer.get_config(), weights)
        if kept_in is not None:
            for slice_ in units_lib.input_slices(layer):
                weights[slice_.weight] = take(
                    weights[slice_.weight], slice_.axis, kept_in, slice_.block
                )
        if kept_outputs is not None:
            slices = units_lib.output_slices(layer)
            for slice_ in slices:
                if slice_.weight in weights:
                    weights[slice_.weight] = take(
                        weights[slice_.weight], slice_.axis, kept_outputs
                    )
            if "bias" in weights and "bias" not in {s.weight for s in slices}:
                weights["bias"] = weights["bias"][kept_outputs]
            config[count_key] = int(len(kept_outputs))
        return config, _order(layer, weights)

    return rule


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


_BUILTIN = [
    (keras_layers.Dense, _producer_rule("units")),
    (keras_layers.Conv1DTranspose, _producer_rule("filters")),
    (keras_layers.Conv2DTranspose, _producer_rule("filters")),
    (keras_layers.Conv3DTranspose, _producer_rule("filters")),
    (keras_layers.SeparableConv1D, _producer_rule("filters")),
    (keras_layers.SeparableConv2D, _producer_rule("filters")),
    (keras_layers.DepthwiseConv1D, depthwise_rule),
    (keras_layers.DepthwiseConv2D, depthwise_rule),
    (keras_layers.Conv1D, _producer_rule("filters")),
    (keras_layers.Conv2D, _producer_rule("filters")),
    (keras_layers.Conv3D, _producer_rule("filters")),
    (keras_layers.BatchNormalization, channel_rule),
    (keras_layers.LayerNormalization, channel_rule),
    (keras_layers.PReLU, prelu_rule),
    (keras_layers.Reshape, reshape_rule),
    (keras_layers.Dropout, dropout_rule),
]


def get_rule(layer):
    """The rewrite function for `layer`: user rule, built-in, or a copy."""
    rule = user_rule(layer)
    if rule is not None:
        return rule.rewrite
    for cls, rewrite in _BUILTIN:
        if isinstance(layer, cls):
            return rewrite
    return unchanged_rule
