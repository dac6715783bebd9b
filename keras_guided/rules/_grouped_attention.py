"""Grouped-query attention inside a traced composite layer.

keras-hub's Llama, Mistral and Qwen attention layers project the hidden
channels with four `EinsumDense`s: queries to `(length, query_heads,
head_dim)` (`"bqm,muh->bquh"`), keys and values to `(length, kv_heads,
head_dim)`, and the heads back to the hidden channels (`"bquh,uhm->bqm"`).
Between them, `ops.repeat(key, query_heads // kv_heads, axis=2)` hands key
and value head `k` to query heads `k * g, ..., k * g + g - 1` (`g` the
group size), and everything else (rotary embedding, the attention einsums,
softmax) acts on each head alone. So one key/value head and its `g` query
heads are one unit: removing it removes its key and value columns, its
query columns and its rows of the output projection, and the repeat count
stays `g`. The hidden channels in and out stay (the residual stream).

It is layer knowledge (which weights of which sublayers are one unit),
so it lives with the rules; the graph calls it on a traced layer:

    grouped_attention_layout(layer, inner) -> GroupedAttention | None
        (public on the `rules` face) the projections of a traced attention
        layer (`inner` is its traced graph) when it has exactly this
        layout, else None (it is then walked op by op like any traced
        layer);
    head_axis(layer) -> (kernel axis, output_shape index) | None
        where an `EinsumDense` of this layout keeps its heads (used by
        the EinsumDense rewrite).
"""

import dataclasses

import keras

from keras_guided import _keras_adapter as adapter

PROJECTION = ("bqm,muh->bquh", "bkm,mvh->bkvh")
OUTPUT = ("bquh,uhm->bqm",)


@dataclasses.dataclass(frozen=True)
class GroupedAttention:
    """The projections of one grouped-query attention layer.

    Attributes:
        query, key, value, output: the four `EinsumDense` sublayers (key
            and value in the order of the traced graph: they are sliced
            alike, so which is which does not matter here).
        num_query_heads, num_key_value_heads: head counts.
    """

    query: object
    key: object
    value: object
    output: object
    num_query_heads: int
    num_key_value_heads: int

    @property
    def group_size(self):
        return self.num_query_heads // self.num_key_value_heads


def head_axis(layer):
    """`(kernel axis, output_shape index)` of the heads of an `EinsumDense`
    in this layout (`None` for the output projection's output), or
    `None` for another equation."""
    equation = getattr(layer, "equation", None)
    if equation in PROJECTION:
        return 1, 1
    if equation in OUTPUT:
        return 0, None
    return None


def grouped_attention_layout(layer, inner):
    """The `GroupedAttention` of traced `layer`, or `None`."""
    dense = [
        op for op in inner.layers if isinstance(op, keras.layers.EinsumDense)
    ]
    projections = [d for d in dense if d.equation in PROJECTION]
    outputs = [d for d in dense if d.equation in OUTPUT]
    if len(dense) != 4 or len(projections) != 3 or len(outputs) != 1:
        return None
    output = outputs[0]
    heads = int(output.kernel.shape[0])
    query = [
        d
        for d in projections
        if d.kernel.shape[1] == heads and d.equation == PROJECTION[0]
    ]
    kv = [d for d in projections if d not in query]
    if len(query) != 1 or len(kv) != 2:
        return None
    kv_heads = int(kv[0].kernel.shape[1])
    if kv[1].kernel.shape[1] != kv_heads or heads % kv_heads:
        return None
    if any(d.bias is not None for d in kv) or output.bias is not None:
        return None  # a constant value bias would need folding
    if not _repeats_heads(inner, heads // kv_heads):
        return None
    return GroupedAttention(query[0], kv[0], kv[1], output, heads, kv_heads)


def _repeats_heads(inner, group):
    """Every `Repeat` op repeats the head axis `group` times; there are
    two (keys and values), or none when each head has its own."""
    repeats = [
        node
        for node in adapter.graph_nodes(inner)
        if type(node.operation).__name__ == "Repeat"
    ]
    if group == 1:
        return not repeats
    if len(repeats) != 2:
        return False
    for node in repeats:
        op = node.operation
        rank = len(node.input_tensors[0].shape)
        if getattr(op, "repeats", None) != group or (
            getattr(op, "axis", None) is None or op.axis % rank != 2
        ):
            return False
    return True
