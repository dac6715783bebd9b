"""The one registry of layer knowledge: what each layer class means for pruning.

Every layer class `keras_guided` understands is described here once, as a
`LayerRule`, and the rest of the package dispatches through `rule_for`:

* `kind`: how `graph.py` sees the layer: it creates units (`"producer"`:
  Dense, Conv, Embedding, ...), passes channel `c` to channel `c`
  (`"elementwise"`, `"normalization"`, `"depthwise"`), moves channels
  (`"reshape"`, `"permute"`, `"concatenate"`), ties the channels of its
  inputs (`"merge"`), mixes them (`"mixing"`), or is copied unchanged with
  the channels around it kept (`"keep"`);
* `family`: for a built-in producer or normalization layer, its unit
  family (`"dense"`, `"conv"`, ...), which gives its unit axes
  (`keras_guided.units.output_slices`, `input_slices`, written once per
  family in `_units`); a user's layer gives them as the rule's
  `output_weights` / `input_weights`;
* `flops(layer, input_shape, output_shape)`: `{weight name: FLOPs per
  element of that weight}` for one call on one example; `stats` (the
  cost model) multiplies by the kept size of each weight, so the same
  numbers serve cost tables, cost-aware guidance and pruning targets;
* `check(layer, input_shape, output_shape)`: why a configuration cannot be
  pruned through (`"groups=4 with 3 input channels per group"`), or `None`;
* `rewrite(layer, weights, kept_inputs, kept_outputs) -> (config,
  new_weights)`: how the layer is rebuilt for kept channels:

  - `layer`: the original (built) layer, never modified;
  - `weights`: `{weight name: numpy array}` of the layer (names as in
    `units.weight_key`), with the folded constants of removed input
    channels already added to its bias (a `"bias"` entry may be present for
    a layer built with `use_bias=False`, the rule must then switch
    `use_bias` on);
  - `kept_inputs`: for each input tensor, the sorted int array of kept
    channels (last axis; all of them when nothing is removed there), or
    `None` for a tensor without a known last axis;
  - `kept_outputs`: the same for the (first) output tensor;
  - returns the config of the new layer (`type(layer).from_config(config)`)
    and its weights, in the order of `layer.weights`.

The other fields of a rule carry what the rest of the package needs to
know about a layer, so nothing outside `rules/` branches on a layer class
or a family: `linear_response` (how constants of removed inputs fold into
its bias), `bias_at_zero` and `zero_when_masked` (its output when its units
are zero), `grouped` (its `groups` may make it pass channels through),
`latency` (how a latency table times it), `mixes_channels` and `note`. A
new built-in layer class is one entry in `_builtin`.

A layer through which no removed channel passes is copied unchanged,
weights included, whatever its kind. Users add rules for their own layers
with `register_rule`; a user rule wins over a built-in one.

Where each part lives: the registry (`register_rule`, `rule_for`) here;
`_rule` (`LayerRule`), `_builtin` (the table of built-in rules, the one
place a built-in layer class is added), `_units` (the unit axes of each
family), `_ops` (what each plain `keras.ops` operation does to channels),
`_rewrites`, `_flops`, `_responses` and `_checks` (the functions those
rules name).
"""

from keras import layers as keras_layers

from keras_guided.rules import _units
from keras_guided.rules._builtin import _BUILTIN
from keras_guided.rules._builtin import _KERAS_HUB_RULES
from keras_guided.rules._flops import UnknownSizeError
from keras_guided.rules._flops import _user_producer_flops
from keras_guided.rules._flops import is_reverse_embedding_call
from keras_guided.rules._ops import MIXING_ACTIVATIONS
from keras_guided.rules._ops import op_kind
from keras_guided.rules._responses import call_difference
from keras_guided.rules._rewrites import ATTENTION_HEAD_WEIGHTS
from keras_guided.rules._rewrites import ATTENTION_OUTPUT_WEIGHT
from keras_guided.rules._rewrites import grouped_conv_rule
from keras_guided.rules._rewrites import take
from keras_guided.rules._rewrites import unchanged_rule
from keras_guided.rules._rule import FREE_KINDS
from keras_guided.rules._rule import GRAPH_KINDS
from keras_guided.rules._rule import KINDS
from keras_guided.rules._rule import LATENCY_KINDS
from keras_guided.rules._rule import LayerRule
from keras_guided.rules._units import FAMILIES
from keras_guided.rules._units import KERNEL_FAMILIES
from keras_guided.rules._units import dense_like_einsum
from keras_guided.rules._units import normalization_axis
from keras_guided.rules._units import without_bias

__all__ = [
    "ATTENTION_HEAD_WEIGHTS",
    "ATTENTION_OUTPUT_WEIGHT",
    "FAMILIES",
    "FREE_KINDS",
    "GRAPH_KINDS",
    "KERNEL_FAMILIES",
    "KINDS",
    "LATENCY_KINDS",
    "LayerRule",
    "MIXING_ACTIVATIONS",
    "UnknownSizeError",
    "dense_like_einsum",
    "get_rule",
    "grouped_conv_rule",
    "input_slices",
    "is_reverse_embedding_call",
    "normalization_axis",
    "op_kind",
    "output_slices",
    "register_rule",
    "rule_for",
    "ruled_class",
    "take",
    "timed_class",
    "unchanged_rule",
    "unit_family",
    "unregister_rule",
    "user_rule",
    "without_bias",
]


_USER_RULES = {}


def register_rule(
    layer_class,
    rule,
    kind="elementwise",
    output_weights=(),
    input_weights=(),
    flops=None,
    latency=None,
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
        flops: `flops(layer, input_shape, output_shape) -> {weight name:
            FLOPs per element}` for one call on one example (shapes with
            the batch axis first). Defaults to `None`: for a producer, every
            element of its `input_weights` costs one multiply-accumulate (2
            FLOPs) per output position, as in Dense and Conv; an
            elementwise layer costs nothing.
        latency: how a latency table (`keras_guided.latency`) times the
            layer in LiteRT: `"dense"` (rebuilt as `layer_class(units=n,
            ...)`, timed over input and output channels), `"conv"` (the
            same with `filters=n`) or `"depthwise"` (one channel count),
            the other arguments taken from the layer's config
            (`kernel_size`, `strides`, `padding`, `activation`, ...).
            Defaults to `None`: priced from its FLOPs.

    Raises:
        ValueError: for a bad `layer_class`, `rule`, `kind`, `flops` or
            `latency`.

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
    if flops is not None and not callable(flops):
        raise ValueError(
            "`flops` must be None or a function (layer, input_shape, "
            "output_shape) -> {weight name: FLOPs per element}. "
            f"Received: flops={flops!r}"
        )
    if latency is not None and latency not in LATENCY_KINDS:
        raise ValueError(
            f"`latency` must be None or one of {LATENCY_KINDS}. Received: "
            f"latency={latency!r}"
        )
    outputs = tuple((str(w), a) for w, a in output_weights)
    inputs = tuple(
        (str(t[0]), t[1], int(t[2]) if len(t) > 2 else 1) for t in input_weights
    )
    if flops is None and kind == "producer":
        flops = _user_producer_flops(tuple(name for name, _, _ in inputs))
    _USER_RULES[layer_class] = LayerRule(
        rule,
        kind,
        outputs,
        inputs,
        flops=flops,
        latency=latency,
        linear_response=call_difference,
    )


def unregister_rule(layer_class):
    """Removes the rule registered for `layer_class` (no error if none)."""
    _USER_RULES.pop(layer_class, None)


def user_rule(layer):
    """The `LayerRule` registered by the user for `type(layer)` or a base."""
    for cls in type(layer).__mro__:
        if cls in _USER_RULES:
            return _USER_RULES[cls]
    return None


def rule_for(layer):
    """The `LayerRule` of `layer`: the user's, a built-in one, or `None`.

    `None` means an unknown layer: the graph refuses to prune through it
    (or, with `on_unsupported="keep"`, keeps the channels around it).
    """
    return _match(layer)[1]


def unit_family(layer):
    """The unit family of `layer` (`rules.FAMILIES`: `"dense"`, `"conv"`,
    ...) from its rule, or `None` for a layer without units of its own
    (and for a user's layer, whose rule lists its weights instead)."""
    rule = rule_for(layer)
    family = None if rule is None else rule.family
    return family(layer) if callable(family) else family


def output_slices(layer):
    """The `units.WeightAxis` slices each output unit of a built-in
    producer or normalization `layer` owns (`[]` for other layers).

    Raises:
        ValueError: for a channels-first layer.
    """
    return _units.output_slices(layer, unit_family(layer))


def input_slices(layer):
    """The `units.WeightAxis` slices each input channel of a built-in
    producer `layer` owns (`[]` for other layers)."""
    return _units.input_slices(layer, unit_family(layer))


def ruled_class(layer):
    """The class whose rule `rule_for(layer)` returns (`type(layer)` or a
    base of it), or `None` for an unknown layer; a rule registered for
    several classes at once gives the first of them `layer` is."""
    return _match(layer)[0]


def timed_class(name):
    """The layer class a latency table builds for the class name `name`
    (`ruled_class(layer).__name__`): a user's registered class, else the
    `keras.layers` class of that name."""
    for cls in reversed(list(_USER_RULES)):
        if cls.__name__ == name:
            return cls
    return getattr(keras_layers, name)


def _match(layer):
    for cls in type(layer).__mro__:
        if cls in _USER_RULES:
            return cls, _USER_RULES[cls]
    for classes, builtin in _BUILTIN:
        if isinstance(layer, classes):
            if isinstance(classes, tuple):
                classes = next(c for c in classes if isinstance(layer, c))
            return classes, builtin
    for cls in type(layer).__mro__:
        if cls.__module__.startswith("keras_hub.") and (
            cls.__name__ in _KERAS_HUB_RULES
        ):
            return cls, _KERAS_HUB_RULES[cls.__name__]
    return None, None


def get_rule(layer):
    """The rewrite function for `layer`: user rule, built-in, or a copy."""
    rule = rule_for(layer)
    return rule.rewrite if rule is not None else unchanged_rule
