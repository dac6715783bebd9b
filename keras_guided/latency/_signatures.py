"""What a layer's LiteRT timing depends on, as plain JSON values.

A measured layer (its rule, `keras_guided.rules`, has a `latency` kind;
channels-last, `groups=1`) is keyed by its signature: the class its rule
is registered for, the timing-relevant config, the input's spatial size
and the channel counts. Layers with the same signature are measured once,
and `cache_key` (a hash of the JSON) keys them in the cache. `OVERHEAD`
names the interpreter's fixed cost of one `invoke`, timed once per settings
on `OVERHEAD_SIGNATURE` (a one-unit Dense layer).
"""

import hashlib
import json

from keras_guided import rules

_TIMING_KEYS = (
    "kernel_size",
    "strides",
    "padding",
    "data_format",
    "dilation_rate",
    "groups",
    "activation",
    "use_bias",
    "depth_multiplier",
)
OVERHEAD = "interpreter_overhead"
OVERHEAD_SIGNATURE = {
    "class": "Dense",
    "kind": "dense",
    "config": {"use_bias": True},
    "spatial": [],
    "inputs": 1,
    "outputs": 1,
}


def layer_kind(layer):
    """`"conv"`, `"depthwise"`, `"dense"` or `None` (not measured): the
    `latency` of the layer's rule (`keras_guided.rules`), for channels-last
    layers without groups."""
    rule = rules.rule_for(layer)
    if rule is None or rule.latency is None:
        return None
    config = layer.get_config()
    if config.get("data_format", "channels_last") != "channels_last":
        return None
    if config.get("groups", 1) != 1:
        return None
    return rule.latency


def layer_signature(layer, input_shape):
    """What a layer's timing depends on, as plain JSON values."""
    config = layer.get_config()
    timing = {k: config[k] for k in _TIMING_KEYS if k in config}
    activation = timing.get("activation")
    if activation is not None and not isinstance(activation, str):
        timing["activation"] = "linear"  # a custom one: timed without it
    kind = layer_kind(layer)
    output = (
        layer.filters
        if kind == "conv"
        else layer.units
        if kind == "dense"
        else int(input_shape[-1])
    )
    # Timed as the class its rule is registered for: a subclass of Dense is
    # timed (and cached) as a Dense with its config.
    return {
        "class": rules.ruled_class(layer).__name__,
        "kind": kind,
        "config": json.loads(json.dumps(timing)),
        "spatial": [int(d) for d in input_shape[1:-1]],
        "inputs": int(input_shape[-1]),
        "outputs": int(output),
    }


def cache_key(signature):
    text = json.dumps(signature, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]
