"""The registry: user rules over built-in ones, and the look-ups the rest
of the package dispatches through (`rule_for`, `unit_family`, ...)."""

from keras import layers as keras_layers

from keras_guided._weights import WeightAxis
from keras_guided.rules._builtin import _BUILTIN
from keras_guided.rules._builtin import _KERAS_HUB_RULES
from keras_guided.rules._flops import _user_producer_flops
from keras_guided.rules._responses import call_difference
from keras_guided.rules._rewrites import unchanged_rule
from keras_guided.rules._rule import KINDS
from keras_guided.rules._rule import LATENCY_KINDS
from keras_guided.rules._rule import UNIT_KINDS
from keras_guided.rules._rule import LayerRule

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
    """The unit family label of `layer` (`rules.FAMILIES`: `"dense"`,
    `"conv"`, ...): its rule's descriptive `family`, or `None` for a layer
    without units of its own (and for a user's layer, whose rule lists its
    weights without a label)."""
    rule = rule_for(layer)
    family = None if rule is None else rule.family
    return family(layer) if callable(family) else family


def output_slices(layer):
    """The `units.WeightAxis` slices each output unit of `layer` owns: its
    rule's `output_weights`, for a layer with units of its own (a
    producer, depthwise or normalization layer; `[]` for other layers).

    Raises:
        ValueError: for a channels-first layer.
    """
    rule = rule_for(layer)
    if rule is None or rule.kind not in UNIT_KINDS:
        return []
    return [WeightAxis(name, axis) for name, axis in rule.output_axes(layer)]


def input_slices(layer):
    """The `units.WeightAxis` slices each input channel of a producer
    `layer` owns: its rule's `input_weights` (`[]` for other layers)."""
    rule = rule_for(layer)
    if rule is None or rule.kind not in UNIT_KINDS:
        return []
    return [
        WeightAxis(name, axis, block=block)
        for name, axis, block in rule.input_axes(layer)
    ]


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
