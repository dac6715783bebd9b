"""Opening composite layers: a layer's `call` run on symbolic inputs.

A layer that is not in the rule registry but is made of other layers (a
user's `TransformerBlock`, keras-hub's `TransformerEncoder`, keras-io's
`MLPMixerLayer`) is *traced*: its `call` runs on fresh `keras.Input`s of the
shapes it sees in the graph. In Keras 3 every sublayer call and every
`keras.ops` call on a symbolic tensor records a node, so
`keras.Model(inputs, layer.call(*inputs))` is a Functional sub-graph made of
the layer's own sublayer objects (weights shared, nothing copied). Graph
analysis, the cost model, the callback and surgery treat that sub-graph like
a nested model; the pruned model holds its rebuilt version, a Functional
model of standard layers and ops that loads without the original class.

CONTRACT (used by graph.py, stats.py, surgery.py):

    traced_graph(layer, node) -> keras.Model | None
        the sub-graph of `layer`'s call at `node` (one per node, cached), or
        None when `layer` is not a composite layer or cannot be traced;
    failure(layer, node) -> str | None
        why a composite layer could not be traced (kept intact), or None;
    is_composite(layer) -> bool

The sub-graph's inputs are, in order, the symbolic tensors of the node's
call (`node.input_tensors`: the layer's inputs, then masks passed as
arguments); its outputs are the flattened outputs of the call. A layer whose
`training` argument exists is traced at inference (`training=False`).

A layer is not traced (it stays intact, with the reason) when its call
fails on symbolic tensors (Python control flow on tensor values, a length
the call needs to know), when it owns weights that no sublayer called on
its inputs holds (its own variables, an embedding called on constant
positions), or when it returns something other than tensors.
"""

import inspect
import weakref

import keras

from keras_guided import _keras_adapter as adapter

# node -> (weak reference to the layer, traced sub-graph or None, failure
# reason or None). Nothing in a value refers back to its node, so an entry
# goes with the model that holds the node.
_CACHE = weakref.WeakKeyDictionary()


def is_composite(layer):
    """Whether `layer` is a non-model layer without a rule that holds
    sublayers (the layers traced here)."""
    from keras_guided import rules as rules_lib

    if isinstance(layer, keras.Model) or not isinstance(
        layer, keras.layers.Layer
    ):
        return False
    if rules_lib.rule_for(layer) is not None:
        return False
    return bool(adapter.direct_sublayers(layer))


def traced_graph(layer, node):
    """The Functional sub-graph of `layer`'s call at `node`, or `None`."""
    return _trace(layer, node)[0]


def failure(layer, node):
    """Why composite `layer` was not traced at `node`, or `None`."""
    return _trace(layer, node)[1]


def _trace(layer, node):
    if not is_composite(layer):
        return None, None
    cached = _CACHE.get(node)
    if cached is not None and cached[0]() is layer:
        return cached[1], cached[2]
    try:
        graph, reason = _run_call(layer, node), None
    except _Untraceable as error:
        graph, reason = None, str(error)
    _CACHE[node] = (weakref.ref(layer), graph, reason)
    return graph, reason


class _Untraceable(Exception):
    pass


def _run_call(layer, node):
    inputs = [
        keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype)
        for t in node.input_tensors
    ]
    if not inputs:
        raise _Untraceable("it has no tensor inputs")
    mapping = {id(t): new for t, new in zip(node.input_tensors, inputs)}
    args, kwargs = adapter.call_arguments(node, mapping)
    kwargs = dict(kwargs)
    parameters = inspect.signature(layer.call).parameters
    if "training" in parameters:
        kwargs["training"] = False
    try:
        outputs = layer.call(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 (any call may refuse)
        raise _Untraceable(
            f"its call could not run on symbolic inputs "
            f"({type(error).__name__}: {_short(error)})"
        ) from None
    flat = keras.tree.flatten(outputs)
    if len(flat) != len(node.outputs) or not all(
        isinstance(t, keras.KerasTensor) for t in flat
    ):
        raise _Untraceable(
            "its call does not return symbolic tensors computed from its "
            "inputs"
        )
    try:
        graph = keras.Model(
            inputs[0] if len(inputs) == 1 else inputs,
            flat[0] if len(flat) == 1 else flat,
            name=layer.name,
        )
    except Exception as error:  # noqa: BLE001
        raise _Untraceable(
            f"its traced call is not a graph of its inputs "
            f"({type(error).__name__}: {_short(error)})"
        ) from None
    reached = {id(v) for v in graph.weights}
    missing = [v for v in layer.weights if id(v) not in reached]
    if missing:
        names = ", ".join(sorted({v.path for v in missing})[:3])
        raise _Untraceable(
            f"its call uses weights that no sublayer called on its inputs "
            f"holds ({names}), such as its own variables or an embedding "
            "of constant positions"
        )
    return graph


def _short(error, limit=160):
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
