"""The leaf layers of a model and their calls, for the cost model.

`iter_layers(model)` yields `(name, layer, calls)` for every leaf layer:
nested models are flattened (`"outer/inner"`), a composite layer that
`keras_guided.trace` traced is replaced by the leaf layers of its traced
calls, and `calls` lists the `(input shape, output shape)` of each call of
the layer inside this model's own graph only (a layer keeps a node for
every call it ever made, in other models too). A nested model called k
times in its parent's graph (a shared tower, a block reused across depth)
contributes its layers' calls k times, each at the shapes of that call:
costs are priced per call. The cost model (`stats.model_costs`), the
surgery's report and the latency table walk a model through it, so they
all see the same layers.
"""

from keras_guided import _keras_adapter as adapter
from keras_guided import graph as graph_lib


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
    shape)` of each call of the layer inside this model's graph, a nested
    model's layers once per call of the nested model.
    """
    rows = {}
    _collect(model, prefix, shapes, rows)
    yield from rows.values()


def _collect(model, prefix, shapes, rows):
    """Adds the leaf layers under `model` to `rows` (`{path: (name, layer,
    calls)}`, in walk order), a nested model once per call of it."""
    own = _graph_nodes(model)
    for layer in model.layers:
        path = prefix + layer.name
        if graph_lib.opens(layer):
            for call_shapes in _nested_calls(layer, own, shapes):
                _collect(layer, path + "/", call_shapes, rows)
            continue
        traced = _traced_graphs(layer, own)
        if traced:
            for name, inner, calls in _merged_calls(traced, path + "/", shapes):
                rows.setdefault(name, (name, inner, []))[2].extend(calls)
            continue
        calls = rows.setdefault(path, (path, layer, []))[2]
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


def _nested_calls(nested, own, shapes):
    """One shapes mapping per call of the nested model `nested` in its
    parent's graph (`own`): `shapes` itself where the call's inputs have
    the nested graph's own shapes, else the nested graph's shapes inferred
    for that call's inputs. A nested model no call of which is recorded
    (a parent without a graph) counts once, at its own shapes."""
    if own is None:
        return [shapes]
    nodes = [n for n in adapter.layer_calls(nested) if id(n) in own]
    if not nodes:
        return [shapes]
    inner = graph_lib.inner_graph(nested, nodes[0])
    inner_inputs = [_shape(t, shapes) for t in inner.inputs]
    result = []
    for node in nodes:
        outer = [_shape(t, shapes) for t in node.input_tensors]
        if outer == inner_inputs or len(outer) != len(inner_inputs):
            result.append(shapes)
        else:
            inferred = graph_lib.concrete_shapes(inner, outer)
            result.append({**(shapes or {}), **inferred})
    return result


def _traced_graphs(layer, own):
    """The traced sub-graphs of a composite layer's calls in this graph
    (`keras_guided.trace`), or `[]` for a leaf layer."""
    if not graph_lib.is_composite(layer):
        return []
    graphs = []
    for node in adapter.layer_calls(layer):
        if own is not None and id(node) not in own:
            continue
        graph = graph_lib.traced_graph(layer, node)
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
