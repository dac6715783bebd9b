"""`LayerRule`: what one layer class means for pruning, and its kinds."""

import dataclasses

KINDS = ("elementwise", "producer")
LATENCY_KINDS = ("dense", "conv", "depthwise")
GRAPH_KINDS = (
    "producer",
    "depthwise",
    "normalization",
    "prelu",
    "elementwise",
    "activation",
    "mixing",
    "reshape",
    "permute",
    "concatenate",
    "merge",
    "keep",
    "attention",
)
# Kinds whose layers have units of their own: their `output_weights` are
# the slices each unit owns (`units.output_slices`); an elementwise
# layer's are the slices that follow the units of its input.
UNIT_KINDS = ("producer", "depthwise", "normalization")
# Kinds whose layers cost nothing when their rule has no FLOPs
# (channel-wise or data movement; an Embedding is a lookup).
FREE_KINDS = tuple(k for k in GRAPH_KINDS if k not in ("keep", "attention"))


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
            layer returning them (a built-in rule's axes may depend on
            the layer's config: its bias, LoRA, an EinsumDense equation).
        input_weights: `(weight name, axis, block)` triples indexed by input
            channels (producers only), or a function of the layer
            returning them.
        flops: `flops(layer, input_shape, output_shape) -> {weight name:
            FLOPs per element}` for one call on one example, or `None` (no
            FLOPs).
        check: `check(layer, input_shape, output_shape) -> str | None`, the
            reason this configuration cannot be pruned through, or `None`.
        note: for `kind="keep"`, why the channels around the layer stay.
        family: a descriptive label of how the layer cuts its units
            (`rules.FAMILIES`: `"dense"`, `"conv"`, ...), or a function of
            the layer returning it, reported by `rules.unit_family` and
            `keras_guided.units.layer_family`; `None` for user rules and
            layers without units of their own. Nothing reads it to find
            axes: those are `output_weights` and `input_weights`.
        mixes_channels: for a normalization layer whose output channel
            depends on the other channels (LayerNormalization normalizes
            over them), the reason, so the graph marks removing a channel
            as approximate; `None` for a per-channel layer.
        latency: how `keras_guided.latency` times the layer in LiteRT:
            `"dense"` (by `units`), `"conv"` (by `filters`) or
            `"depthwise"` (one channel count), each timed as the class the
            rule is registered for; `None` (default) for a layer priced
            from its FLOPs.
        bias_at_zero: whether the layer, called on a zero input, outputs
            `activation(bias)` at every position (Keras' own kernel
            layers, channels last, not quantized), so `prune_model`'s
            constant propagation computes that output instead of calling
            the layer. Honoured only for the class the rule is registered
            for: a subclass may change `call`.
        linear_response: `linear_response(layer, x) -> array`, the
            pre-activation, bias-free response of the layer to an input
            `x` (batch 1, channels last), or `None`: how `prune_model`
            folds the constants of removed input channels into the
            layer's bias (`rules._responses`: a kernel layer's kernels; a
            user's layer `layer(x) - layer(0)`); `None` (default): no
            folding into this layer.
        zero_when_masked: whether a unit whose weights are zero outputs
            zero whatever the input (an Embedding looks its units up), so
            `prune_model`'s constant propagation needs no call.
        grouped: whether the layer's `groups` may make it pass channels
            through (a Conv with one input channel per group is depthwise):
            the graph then says whether a call creates units.
    """

    rewrite: object
    kind: str = "elementwise"
    output_weights: tuple = ()
    input_weights: tuple = ()
    flops: object = None
    check: object = None
    note: str = None
    latency: str = None
    family: object = None
    mixes_channels: str = None
    bias_at_zero: bool = False
    linear_response: object = None
    zero_when_masked: bool = False
    grouped: bool = False

    def output_axes(self, layer):
        """`output_weights` for `layer`: `((weight name, axis), ...)`."""
        weights = self.output_weights
        return tuple(weights(layer) if callable(weights) else weights)

    def input_axes(self, layer):
        """`input_weights` for `layer`: `((weight name, axis, block),
        ...)`."""
        weights = self.input_weights
        return tuple(weights(layer) if callable(weights) else weights)
