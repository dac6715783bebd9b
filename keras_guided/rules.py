"""The one registry of layer knowledge: what each layer class means for pruning.

Every layer class `keras_guided` understands is described here once, as a
`LayerRule`, and the rest of the package dispatches through `rule_for`:

* `kind`: how `graph.py` sees the layer: it creates units (`"producer"`:
  Dense, Conv, Embedding, ...), passes channel `c` to channel `c`
  (`"elementwise"`, `"normalization"`, `"depthwise"`), moves channels
  (`"reshape"`, `"permute"`, `"concatenate"`), ties the channels of its
  inputs (`"merge"`), mixes them (`"mixing"`), or is copied unchanged with
  the channels around it kept (`"keep"`);
* its unit axes come from `keras_guided.units` (`output_slices`,
  `input_slices`), or from the rule's `output_weights` / `input_weights`
  for a user's layer;
* `flops(layer, input_shape, output_shape)`: `{weight name: FLOPs per
  element of that weight}` for one call on one example; `stats.py` (the
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

A layer through which no removed channel passes is copied unchanged,
weights included, whatever its kind. Users add rules for their own layers
with `register_rule`; a user rule wins over a built-in one.
"""

import dataclasses

import numpy as np
from keras import layers as keras_layers

from keras_guided import _axes
from keras_guided import _keras_adapter as adapter
from keras_guided import units as units_lib

KINDS = ("elementwise", "producer")
LATENCY_KINDS = ("dense", "conv", "depthwise")
GRAPH_KINDS = (
    "producer", "depthwise", "normalization", "prelu", "elementwise",
    "activation", "mixing", "reshape", "permute", "concatenate", "merge",
    "keep", "attention",
)


@dataclasses.dataclass(frozen=True)
class LayerRule:
    """What one layer class means for pruning (see the module docstring).

    Attributes:
        rewrite: the rewrite function.
        kind: how the graph sees the layer: `"elementwise"` (output channel
            `c` depends on input channel `c` only) or `"producer"` (creates
            new output units, like Dense) for user rules; built-in rules
            use the other `GRAPH_KINDS` too.
        output_weights: `(weight name, axis)` pairs indexed by output units
            (followers for an elementwise layer), or a function of the
            layer returning them. Built-in producers take their axes from
            `keras_guided.units` instead.
        input_weights: `(weight name, axis, block)` triples indexed by input
            channels (producers only).
        flops: `flops(layer, input_shape, output_shape) -> {weight name:
            FLOPs per element}` for one call on one example, or `None` (no
            FLOPs).
        check: `check(layer, input_shape, output_shape) -> str | None`, the
            reason this configuration cannot be pruned through, or `None`.
        note: for `kind="keep"`, why the channels around the layer stay.
        latency: how `keras_guided.latency` times the layer in LiteRT:
            `"dense"` (by `units`), `"conv"` (by `filters`) or
            `"depthwise"` (one channel count), each timed as the class the
            rule is registered for; `None` (default) for a layer priced
            from its FLOPs.
    """

    rewrite: object
    kind: str = "elementwise"
    output_weights: tuple = ()
    input_weights: tuple = ()
    flops: object = None
    check: object = None
    note: str = None
    latency: str = None


_USER_RULES = {}


def register_rule(
    layer_class, rule, kind="elementwise", output_weights=(), input_weights=(),
    flops=None, latency=None,
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
        (str(t[0]), t[1], int(t[2]) if len(t) > 2 else 1)
        for t in input_weights
    )
    if flops is None and kind == "producer":
        flops = _user_producer_flops(tuple(name for name, _, _ in inputs))
    _USER_RULES[layer_class] = LayerRule(
        rule, kind, outputs, inputs, flops=flops, latency=latency
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
                cls.__name__ in _KERAS_HUB_RULES):
            return cls, _KERAS_HUB_RULES[cls.__name__]
    return None, None


# ------------------------------------------------------------ helpers
def take(array, axis, kept, block=1):
    """Keeps the units `kept` along `axis` (int or contiguous tuple).

    Unit `c` owns positions `c * block ... c * block + block - 1`; a helper
    for rules of your own (`keras_guided._axes.take_units`, which the
    built-in rules use too).
    """
    return _axes.take_units(array, axis, kept, block)


def _weights_list(layer, weights):
    names = units_lib.weight_keys(layer)
    return [weights[name] for name in names if name in weights]


def _first(kept_inputs):
    return kept_inputs[0] if kept_inputs else None


def _bias_config(config, weights):
    if "bias" in weights:
        config["use_bias"] = True
    return config


def _order(layer, weights):
    """Weights in build order: layer.weights order, bias added if new."""
    names = units_lib.weight_keys(layer)
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
                weights[slice_.weight] = _axes.take_units(
                    weights[slice_.weight], slice_.axis, kept_in, slice_.block
                )
        if kept_outputs is not None:
            slices = units_lib.output_slices(layer)
            for slice_ in slices:
                if slice_.weight in weights:
                    weights[slice_.weight] = _axes.take_units(
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




def einsum_dense_rule(layer, weights, kept_inputs, kept_outputs,
                      kept_heads=None):
    """A Dense-like EinsumDense (`"abc,cd->abd"`): the last output axis.

    With `kept_heads`, a head projection of grouped-query attention
    (`keras_guided._grouped_attention`): the kept heads of its kernel (and
    bias), its channels whole.
    """
    if kept_heads is not None:
        return _einsum_heads_rule(layer, weights, kept_heads)
    config, new_weights = _producer_rule("units")(
        layer, weights, kept_inputs, kept_outputs)
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
    from keras_guided import _grouped_attention

    kernel_axis, output_index = _grouped_attention.head_axis(layer)
    config = layer.get_config()
    weights = dict(weights)
    weights["kernel"] = np.take(weights["kernel"], kept_heads,
                                axis=kernel_axis)
    if output_index is not None:
        shape = list(config["output_shape"])
        shape[output_index] = int(len(kept_heads))
        config["output_shape"] = tuple(shape)
        if "bias" in weights:
            weights["bias"] = np.take(weights["bias"], kept_heads, axis=0)
    return config, _order(layer, weights)


def _einsum_flops(layer, input_shape, output_shape):
    """One MAC per kernel element for each combination of the letters the
    kernel does not hold (the batch letter aside): `"bqm,muh->bquh"` costs
    `2 * q` per kernel element, and so does `"bquh,uhm->bqm"`."""
    equation = layer.equation
    if "." in equation:
        return _DENSE_FLOPS(layer, input_shape, output_shape)
    inputs, output = equation.split("->")
    source, kernel = inputs.split(",")
    sizes = {}
    for letters, shape in ((source, input_shape), (output, output_shape)):
        for letter, size in zip(letters, tuple(shape)):
            if sizes.get(letter) is None:
                sizes[letter] = size
    free = [letter for letter in dict.fromkeys(source + output)
            if letter not in kernel and letter != source[0]]
    if any(sizes.get(letter) is None for letter in free):
        raise UnknownSizeError(layer, input_shape)
    return {"kernel": 2 * int(np.prod([sizes[c] for c in free]))}


def _check_einsum(layer, input_shape, output_shape):
    if not units_lib.dense_like_einsum(layer):
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
    ("query/kernel", 1), ("query/bias", 0), ("key/kernel", 1),
    ("key/bias", 0), ("value/kernel", 1), ("value/bias", 0),
)
ATTENTION_OUTPUT_WEIGHT = ("attention_output/kernel", 0)


def attention_rule(layer, weights, kept_inputs, kept_outputs,
                   kept_heads=None):
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


# ------------------------------------------------------------------ FLOPs
class UnknownSizeError(ValueError):
    """A layer's FLOPs depend on a length the model leaves unknown.

    Attributes:
        layer: the layer.
        shape: the tensor shape with the unknown (`None`) lengths.
    """

    def __init__(self, layer, shape):
        self.layer = layer
        self.shape = tuple(shape)
        super().__init__(
            f"Cannot count FLOPs of layer '{layer.name}' "
            f"({type(layer).__name__}): its tensor of shape {self.shape} "
            "has unknown spatial dimensions. Pass `sample_inputs=` to "
            "`prune_model` (their shapes fill in the unknown sizes), build "
            "the model with a fixed input size, or use a 'params' target, "
            "which needs no FLOPs."
        )


def _spatial_size(shape, layer):
    """Product of the spatial dimensions of a channels-last shape."""
    spatial = tuple(shape)[1:-1]
    if any(d is None for d in spatial):
        raise UnknownSizeError(layer, shape)
    return int(np.prod(spatial)) if spatial else 1


def _flops_per_input_position(*names):
    """Each weight element: one MAC per input position (Dense, transpose)."""
    def flops(layer, input_shape, output_shape):
        return {name: 2 * _spatial_size(input_shape, layer)
                for name in names}

    return flops


def _flops_per_output_position(*names):
    """Each weight element: one MAC per output position (Conv)."""
    def flops(layer, input_shape, output_shape):
        return {name: 2 * _spatial_size(output_shape, layer)
                for name in names}

    return flops


def is_reverse_embedding_call(input_shape, output_shape):
    """Whether an Embedding call maps vectors back to the vocabulary
    (keras-hub's `ReversibleEmbedding(x, reverse=True)`, a language
    model's tied output projection) rather than looking ids up: its input
    keeps its rank instead of gaining the embedding axis."""
    return len(tuple(input_shape)) == len(tuple(output_shape))


def _embedding_flops(layer, input_shape, output_shape):
    """A lookup is free; a reverse call is a matrix product: one MAC per
    embedding element (or untied reverse one) per input position."""
    if not is_reverse_embedding_call(input_shape, output_shape):
        return {}
    names = [v.name for v in layer.weights]
    name = "reverse_embeddings" if "reverse_embeddings" in names else (
        "embeddings")
    return {name: 2 * _spatial_size(input_shape, layer)}


def _user_producer_flops(names):
    def flops(layer, input_shape, output_shape):
        spatial = _spatial_size(output_shape, layer)
        return {name: 2 * spatial for name in names}

    return flops


def _recurrent_flops(layer, input_shape, output_shape):
    """One multiply-accumulate per kernel and recurrent-kernel element per
    time step (an LSTM's four gates are the kernels' 4 x units columns);
    biases and gate activations are not counted."""
    steps = tuple(input_shape)[1]
    if steps is None:
        _spatial_size(input_shape, layer)  # raises with advice
    return {"kernel": 2 * steps, "recurrent_kernel": 2 * steps}


def _inner_flops(wrapper, inner, input_shape, output_shape, times=1):
    """The FLOPs of the layer `inner` that `wrapper` calls, keyed by the
    wrapper's weight keys, times `times`; `None` if `inner` is unpriced."""
    rule = rule_for(inner)
    if rule is None or rule.flops is None:
        return None if inner.weights else {}
    costs = rule.flops(inner, input_shape, output_shape)
    if costs is None:
        return None
    keys = {units_lib.weight_key(inner, v): units_lib.weight_key(wrapper, v)
            for v in inner.weights}
    return {keys[key]: times * value for key, value in costs.items()
            if key in keys}


def _bidirectional_flops(layer, input_shape, output_shape):
    """Both directions, each priced as its own recurrent layer on the whole
    input (the merge, a concatenation or a sum, costs nothing here)."""
    costs = {}
    for inner in (layer.forward_layer, layer.backward_layer):
        inner_costs = _inner_flops(
            layer, inner, input_shape, inner.compute_output_shape(
                tuple(input_shape)))
        if inner_costs is None:
            return None
        costs.update(inner_costs)
    return costs


def _time_distributed_flops(layer, input_shape, output_shape):
    """The inner layer on one time step, once per step."""
    steps = tuple(input_shape)[1]
    if steps is None:
        _spatial_size(input_shape, layer)  # raises with advice
    step_input = (tuple(input_shape)[0],) + tuple(input_shape)[2:]
    step_output = (tuple(output_shape)[0],) + tuple(output_shape)[2:]
    return _inner_flops(layer, layer.layer, step_input, step_output,
                        times=steps)


def _no_flops(layer, input_shape, output_shape):
    """Channel-wise arithmetic: not counted (see `keras_guided.stats`)."""
    return {}


def _attention_flops(layer, input_shape, output_shape):
    """Projections, plus the scores and the weighted sum of every head.

    `input_shape` is the query's. The attention itself (2 x Tq x Tk x heads
    x (key_dim + value_dim)) is charged to the query bias entries (heads x
    key_dim), so it shrinks with the heads.
    """
    query_steps = _spatial_size(input_shape, layer)
    # The key's length is not known from the query's shape (Keras keeps no
    # record of it on the layer): priced as self-attention, key length =
    # query length.
    key_steps = query_steps
    key_dim = layer.key_dim
    value_dim = layer.value_dim or key_dim
    costs = {
        "query/kernel": 2 * query_steps,
        "key/kernel": 2 * key_steps,
        "value/kernel": 2 * key_steps,
        "attention_output/kernel": 2 * query_steps,
    }
    attention = 2 * query_steps * key_steps * (key_dim + value_dim)
    if layer.use_bias:
        costs["query/bias"] = attention / key_dim
    else:
        costs["query/kernel"] += attention / key_dim / int(
            tuple(input_shape)[-1])
    return costs


# ------------------------------------------------------------------ checks
def _check_reshape(layer, input_shape, output_shape):
    channels_in, channels_out = tuple(input_shape)[-1], tuple(output_shape)[-1]
    if channels_in is None or channels_out is None:
        return (
            f"its channel counts are unknown (input {tuple(input_shape)}, "
            f"output {tuple(output_shape)})"
        )
    if channels_out % channels_in and channels_in % channels_out:
        return (
            f"it maps {channels_in} input channels to a last axis of "
            f"{channels_out}, and neither divides the other, so channels "
            "are scrambled"
        )
    return None


def _check_permute(layer, input_shape, output_shape):
    if layer.dims[-1] != len(layer.dims):
        return f"dims={tuple(layer.dims)} moves the channel axis"
    return None


def _check_channels_last(layer, input_shape, output_shape):
    data_format = getattr(layer, "data_format", None)
    if data_format == "channels_first":
        return (
            "data_format='channels_first' puts the channels on axis 1; "
            "keras_guided follows the last axis"
        )
    return None


def _check_rescaling(layer, input_shape, output_shape):
    if np.ndim(layer.scale) or np.ndim(layer.offset):
        return "its scale or offset is not a scalar"
    return None


def _check_normalization(layer, input_shape, output_shape):
    axis = units_lib.normalization_axis(layer)
    rank = len(tuple(input_shape))
    if axis is None or axis % rank != rank - 1:
        return f"axis={layer.axis!r} is not the channel axis alone"
    return None


def _keep(note):
    return LayerRule(unchanged_rule, kind="keep", note=note)


_KEEP_RECURRENT = (
    "its units are recurrent (the kernel and recurrent kernel of every "
    "gate would have to be cut together); it is copied unchanged"
)
_ELEMENTWISE_LAYERS = (
    keras_layers.ReLU, keras_layers.LeakyReLU, keras_layers.ELU,
    keras_layers.SpatialDropout1D, keras_layers.SpatialDropout2D,
    keras_layers.SpatialDropout3D, keras_layers.GaussianNoise,
    keras_layers.GaussianDropout, keras_layers.AlphaDropout,
    keras_layers.ActivityRegularization, keras_layers.Identity,
    keras_layers.MaxPooling1D, keras_layers.MaxPooling2D,
    keras_layers.MaxPooling3D, keras_layers.AveragePooling1D,
    keras_layers.AveragePooling2D, keras_layers.AveragePooling3D,
    keras_layers.GlobalMaxPooling1D, keras_layers.GlobalMaxPooling2D,
    keras_layers.GlobalMaxPooling3D, keras_layers.GlobalAveragePooling1D,
    keras_layers.GlobalAveragePooling2D, keras_layers.GlobalAveragePooling3D,
    keras_layers.ZeroPadding1D, keras_layers.ZeroPadding2D,
    keras_layers.ZeroPadding3D, keras_layers.Cropping1D,
    keras_layers.Cropping2D, keras_layers.Cropping3D,
    keras_layers.UpSampling1D, keras_layers.UpSampling2D,
    keras_layers.UpSampling3D,
    # Preprocessing and augmentation: the same transform on every channel
    # (identity at inference for the random ones).
    keras_layers.RandomFlip, keras_layers.RandomRotation,
    keras_layers.RandomZoom, keras_layers.RandomTranslation,
    keras_layers.RandomCrop, keras_layers.Resizing, keras_layers.CenterCrop,
)
_MERGE_LAYERS = (
    keras_layers.Add, keras_layers.Subtract, keras_layers.Multiply,
    keras_layers.Average, keras_layers.Maximum, keras_layers.Minimum,
)
_DENSE_FLOPS = _flops_per_input_position("kernel")
_CONV_FLOPS = _flops_per_output_position("kernel")
_TRANSPOSE_FLOPS = _flops_per_input_position("kernel")
_SEPARABLE_FLOPS = _flops_per_output_position(
    "depthwise_kernel", "pointwise_kernel")

# Most specific class first: the first isinstance match wins.
_BUILTIN = [
    (keras_layers.Dense, LayerRule(
        _producer_rule("units"), "producer", flops=_DENSE_FLOPS,
        latency="dense")),
    (keras_layers.EinsumDense, LayerRule(
        einsum_dense_rule, "producer", flops=_einsum_flops,
        check=_check_einsum,
        note="it is copied unchanged")),
    (keras_layers.Embedding, LayerRule(
        _producer_rule("output_dim"), "producer", flops=_embedding_flops)),
    (keras_layers.Conv1DTranspose, LayerRule(
        _producer_rule("filters"), "producer", flops=_TRANSPOSE_FLOPS)),
    (keras_layers.Conv2DTranspose, LayerRule(
        _producer_rule("filters"), "producer", flops=_TRANSPOSE_FLOPS)),
    (keras_layers.Conv3DTranspose, LayerRule(
        _producer_rule("filters"), "producer", flops=_TRANSPOSE_FLOPS)),
    (keras_layers.SeparableConv1D, LayerRule(
        _producer_rule("filters"), "producer", flops=_SEPARABLE_FLOPS)),
    (keras_layers.SeparableConv2D, LayerRule(
        _producer_rule("filters"), "producer", flops=_SEPARABLE_FLOPS)),
    (keras_layers.DepthwiseConv1D, LayerRule(
        depthwise_rule, "depthwise", flops=_CONV_FLOPS)),
    (keras_layers.DepthwiseConv2D, LayerRule(
        depthwise_rule, "depthwise", flops=_CONV_FLOPS,
        latency="depthwise")),
    (keras_layers.Conv1D, LayerRule(
        grouped_conv_rule, "producer", flops=_CONV_FLOPS, latency="conv")),
    (keras_layers.Conv2D, LayerRule(
        grouped_conv_rule, "producer", flops=_CONV_FLOPS, latency="conv")),
    (keras_layers.Conv3D, LayerRule(
        grouped_conv_rule, "producer", flops=_CONV_FLOPS)),
    (keras_layers.BatchNormalization, LayerRule(
        channel_rule, "normalization", check=_check_normalization)),
    (keras_layers.LayerNormalization, LayerRule(
        channel_rule, "normalization", check=_check_normalization)),
    (keras_layers.PReLU, LayerRule(prelu_rule, "prelu")),
    (keras_layers.Activation, LayerRule(unchanged_rule, "activation")),
    (keras_layers.Softmax, LayerRule(unchanged_rule, "mixing")),
    (keras_layers.UnitNormalization, LayerRule(unchanged_rule, "mixing")),
    (keras_layers.Dropout, LayerRule(dropout_rule, "elementwise")),
    (_ELEMENTWISE_LAYERS, LayerRule(
        unchanged_rule, "elementwise", check=_check_channels_last)),
    (keras_layers.Rescaling, LayerRule(
        unchanged_rule, "elementwise", check=_check_rescaling)),
    (keras_layers.Flatten, LayerRule(unchanged_rule, "reshape")),
    (keras_layers.Reshape, LayerRule(
        reshape_rule, "reshape", check=_check_reshape)),
    (keras_layers.Permute, LayerRule(
        unchanged_rule, "elementwise", check=_check_permute)),
    (keras_layers.Concatenate, LayerRule(unchanged_rule, "concatenate")),
    (_MERGE_LAYERS, LayerRule(unchanged_rule, "merge")),
    (keras_layers.MultiHeadAttention, LayerRule(
        attention_rule, "attention", flops=_attention_flops,
        check=_check_attention,
        note="its heads are unit groups, but its query, key and value "
             "channels and its output channels are kept")),
    (keras_layers.LSTM, LayerRule(
        unchanged_rule, "keep", flops=_recurrent_flops,
        note=_KEEP_RECURRENT)),
    (keras_layers.GRU, LayerRule(
        unchanged_rule, "keep", flops=_recurrent_flops,
        note=_KEEP_RECURRENT)),
    (keras_layers.SimpleRNN, LayerRule(
        unchanged_rule, "keep", flops=_recurrent_flops,
        note=_KEEP_RECURRENT)),
    (keras_layers.Bidirectional, LayerRule(
        unchanged_rule, "keep", flops=_bidirectional_flops,
        note=_KEEP_RECURRENT)),
    (keras_layers.TimeDistributed, LayerRule(
        unchanged_rule, "keep", flops=_time_distributed_flops,
        note="it applies its inner layer to every time step; it is "
             "copied unchanged")),
    (keras_layers.GroupNormalization, LayerRule(
        unchanged_rule, "keep", flops=_no_flops,
        note="it normalizes over groups of channels; it is copied "
             "unchanged")),
    (keras_layers.Attention, _keep(
        "its output mixes the channels of its inputs; it is copied "
        "unchanged")),
    (keras_layers.AdditiveAttention, _keep(
        "its output mixes the channels of its inputs; it is copied "
        "unchanged")),
]


_RMS_NORM = LayerRule(
    unchanged_rule, "keep", flops=_no_flops,
    note="it normalizes over the channels (their root mean square), the "
         "hidden size of the residual stream; it is copied unchanged")
# keras-hub layers by class name (a class of a `keras_hub.` module, or a
# subclass of one): keras-hub is optional, so its classes are not imported.
# Its transformers' RMS norms and position embedding sit on the residual
# stream, whose channels stay; their FLOPs are channel-wise (not counted).
_KERAS_HUB_RULES = {
    name: _RMS_NORM for name in (
        "RMSNormalization", "LlamaLayerNorm", "MistralLayerNormalization",
        "MixtralLayerNormalization", "Phi3LayerNorm", "QwenLayerNorm",
        "Qwen3LayerNorm", "QwenMoeLayerNorm", "Qwen3MoeLayerNorm",
        "T5LayerNorm", "GptOssLayerNormalization")
}
_KERAS_HUB_RULES["PositionEmbedding"] = LayerRule(
    unchanged_rule, "keep", flops=_no_flops,
    note="it adds a learned vector per position to the hidden size, whose "
         "channels stay; it is copied unchanged")
if hasattr(keras_layers, "RMSNormalization"):
    _BUILTIN.append((keras_layers.RMSNormalization, _RMS_NORM))


def _layer_scale_rule(layer, weights, kept_inputs, kept_outputs):
    """ConvNeXt's LayerScale: a per-channel `gamma`."""
    config = layer.get_config()
    gamma = weights[units_lib.weight_keys(layer)[0]]
    if kept_outputs is not None:
        gamma = gamma[kept_outputs]
        config["projection_dim"] = int(len(kept_outputs))
    return config, [gamma]


try:  # A private Keras class: the layer scale of keras.applications.ConvNeXt.
    from keras.src.applications.convnext import LayerScale as _LayerScale
except ImportError:  # pragma: no cover (another Keras layout)
    _LayerScale = None
if _LayerScale is not None:
    _BUILTIN.append((_LayerScale, LayerRule(
        _layer_scale_rule, "elementwise",
        # Its one weight is unnamed ("variable" in Keras 3.15).
        output_weights=lambda layer: ((units_lib.weight_keys(layer)[0], 0),),
    )))


def get_rule(layer):
    """The rewrite function for `layer`: user rule, built-in, or a copy."""
    rule = rule_for(layer)
    return rule.rewrite if rule is not None else unchanged_rule
