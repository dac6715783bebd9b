"""The leaf layers of a model and their calls, for the cost model.

`iter_layers(model)` yields `(name, layer, calls)` for every leaf layer:
nested models are flattened (`"outer/inner"`), a composite layer that
`keras_guided.trace` traced is replaced by the leaf layers of its traced
calls, and `calls` lists the `(input shape, output shape)` of each call of
the layer inside this model's own graph only (a layer keeps a node for
every call it ever made, in other models too). The cost model
(`stats.model_costs`), the surgery's report and the latency table walk a
model through it, so they all see the same layers.
"""

from keras_guided import _keras_adapter as adapter
from keras_guided import _walk
from keras_guided import trace as trace_lib


def _shape(tensor, shapes=None):
    if shapes and id(tensor) in shapes:
        return tuple(shapes[id(tensor)])
    return tuple(tensor.shape)


def _graph_nodes(model):
    """The nodes of `model`'s own graph, or `None` if it has no graph.

    A layer keeps a node for every call ever made (a Sequential rebuilt, a
    layer reused in another model): only the nodes of this graph count.
    """
    graph = adapter.sequential_graph(model) or model
    if not adapter.has_graph(graph):
        return None
    return {id(node) for node in adapter.graph_nodes(graph)}


def iter_layers(model, prefix="", shapes=None):
    """Yields `(name, layer, calls)` for every leaf layer.

    Nested models are flattened; `calls` lists the `(input shape, output
    shape)` of each call of the layer inside this model's graph.
    """
    owns = {}  # the graph nodes of each (nested) model, by id
    for name, layer, parent in _walk.leaf_layers(model, prefix):
        if id(parent) not in owns:
            owns[id(parent)] = _graph_nodes(parent)
        own = owns[id(parent)]
        traced = _traced_graphs(layer, own)
        if traced:
            yield from _merged_calls(traced, name + "/", shapes)
            continue
        calls = []
        for node in adapter.layer_calls(layer):
            if own is not None and id(node) not in own:
                continue
            if node.input_tensors and node.output_tensors:
                calls.append(
                    (
                        _shape(adapter.first_input(node), shapes),
                        _shape(node.output_tensors[0], shapes),
                    )
                )
        yield name, layer, calls


def _traced_graphs(layer, own):
    """The traced sub-graphs of a composite layer's calls in this graph
    (`keras_guided.trace`), or `[]` for a leaf layer."""
    if not trace_lib.is_composite(layer):
        return []
    graphs = []
    for node in adapter.layer_calls(layer):
        if own is not None and id(node) not in own:
            continue
        graph = trace_lib.traced_graph(layer, node)
        if graph is None:
            return []  # not traced: a leaf, kept intact
        graphs.append(graph)
    return graphs


def _merged_calls(graphs, prefix, shapes):
    """The leaf layers of several traced calls of one composite layer,
    each once, with the calls of all of them."""
    rows = {}
    for graph in graphs:
        for name, layer, calls in iter_layers(graph, prefix, shapes):
            if id(layer) in rows:
                rows[id(layer)][2].extend(calls)
            else:
                rows[id(layer)] = (name, layer, list(calls))
    yield from rows.values()
