"""Nested models that share a layer with the graph around them, inlined.

A keras-hub language model (`GPT2CausalLM`) calls its backbone, then the
backbone's token embedding again, in reverse, as its tied output
projection. Rebuilt as a Functional model, that embedding is held by the
nested backbone and called by the outer graph too, and Keras cannot load
such a file: the outer graph's copy of the layer is created anew, without
weights. Inlining the nested model (its nodes called in the outer graph,
on the same layer objects) leaves one owner per layer, so the model saves
and loads with plain `keras.saving.load_model`. It computes the same
function: the same layers, called in the same order on the same tensors.

CONTRACT (used by `_prune`):

    inline_shared(model) -> keras.Model
        `model` itself when no nested model shares a layer with the graph
        around it (or inlining would give two layers one name); else a new
        Functional model of the same layer objects.
"""

import keras

from keras_guided import _keras_adapter as adapter


def inline_shared(model):
    """`model` with every nested model that shares a layer with the graph
    around it inlined (see the module docstring)."""
    if isinstance(model, keras.Sequential) or not adapter.has_graph(model):
        return model
    shared = _sharing(model)
    if not shared:
        return model
    inputs = [
        keras.Input(
            batch_shape=t.shape, dtype=t.dtype, name=adapter.producer(t).name
        )
        for t in model.inputs
    ]
    try:
        outputs = _replay(model, inputs, shared)
        new = keras.Model(
            adapter.pack_inputs(model, inputs),
            adapter.pack_outputs(model, outputs),
            name=model.name,
        )
    except (ValueError, TypeError):
        return model  # two layers of one name, or an unusual call
    return new


def _owned(layer):
    return {id(sub) for sub in adapter.layer_tree(layer)}


def _sharing(model):
    """The nested Functional models of `model` that hold a layer another
    layer of `model` holds or is."""
    nested = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.Model)
        and adapter.has_graph(layer)
        and not isinstance(layer, keras.Sequential)
    ]
    shared = set()
    for inner in nested:
        inside = _owned(inner) - {id(inner)}
        others = set()
        for layer in model.layers:
            if layer is not inner:
                others |= _owned(layer)
        if inside & others:
            shared.add(id(inner))
    return shared


def _replay(functional, inputs, inline):
    def call(node, args, kwargs, tensors):
        op = node.operation
        if id(op) not in inline:
            return op(*args, **kwargs)
        if len(args) != 1 or any(
            value is not None for value in keras.tree.flatten(kwargs)
        ):  # Keras passes `mask={...: None}` along
            raise ValueError("a nested model called with several arguments")
        flat = keras.tree.flatten(args[0])
        if len(flat) != len(op.inputs):
            raise ValueError("a nested model called with other inputs")
        return _replay(op, flat, inline=set())

    return adapter.replay(functional, inputs, call)
