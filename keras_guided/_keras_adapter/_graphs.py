"""Walking a Functional graph: its nodes, the producer of a tensor, a
node's arguments, and the replay `clone_model` runs."""

import keras


def direct_sublayers(layer):
    """The layers `layer` holds directly (attributes, lists), not itself."""
    return list(layer._flatten_layers(include_self=False, recursive=False))


def sequential_graph(model):
    """The Functional graph Keras keeps behind a built `Sequential`, or
    `None` when it is not built (no input shape yet)."""
    return getattr(model, "_functional", None)


def has_graph(model):
    """Whether `model` is a Functional graph (not subclassed code)."""
    return hasattr(model, "_nodes_by_depth") and hasattr(model, "_operations")


def graph_nodes(functional):
    """The nodes of `functional` that call an operation, inputs first
    (deepest first: every node after the nodes it reads from)."""
    by_depth = functional._nodes_by_depth
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            if node.operation is not None and not node.is_input:
                yield node


def replay(functional, new_inputs, call):
    """Calls `functional`'s graph again on `new_inputs`, node by node.

    `call(node, args, kwargs, tensors)` makes each node's new outputs from
    its call arguments (new tensors in place of the old ones) and
    `tensors`, the new tensor of every old one met so far by `id`. Returns
    the new tensors of `functional.outputs`, in order (a flat list). The
    one graph walk of the surgery's rebuild and of inlining.

    The walk is Keras' own: the one `keras.models.clone_model` runs
    (`Functional._run_through_graph`, every operation kept, each call made
    by `call`, which is handed the node Keras is at; Keras runs the nodes
    in `graph_nodes` order, and a different order is an error, not a wrong
    model). `clone_model` itself is not called: on a compiled model it
    also re-compiles its throwaway copy from the serialized compile config,
    which fails for a loss or metric that is not registered (a closure)
    and builds optimizer slots the size of the model; the compile state is
    carried over by `surgery` instead, with the user's own objects.
    """
    tensors = {id(t): n for t, n in zip(functional.inputs, new_inputs)}
    nodes = graph_nodes(functional)

    def call_node(operation, *args, **kwargs):
        node = next(nodes, None)
        if node is None or node.operation is not operation:
            raise RuntimeError(
                "Keras' graph walk ran the nodes of model "
                f"'{functional.name}' in an order keras_guided does not "
                "expect (this Keras version walks graphs differently); "
                "please report it with your Keras version"
            )
        outputs = call(node, args, kwargs, tensors)
        for tensor, new in zip(node.outputs, keras.tree.flatten(outputs)):
            tensors[id(tensor)] = new
        return outputs

    functional._run_through_graph(
        pack_inputs(functional, new_inputs),
        operation_fn=_same_operation,
        call_fn=call_node,
    )
    if next(nodes, None) is not None:
        raise RuntimeError(
            "Keras' graph walk skipped nodes of model "
            f"'{functional.name}' (a node whose inputs it could not "
            "compute); please report it with your Keras version"
        )
    return [tensors[id(t)] for t in functional.outputs]


def _same_operation(operation):
    return operation


def layer_calls(layer):
    """Every node of `layer` (one per call, in any graph)."""
    return list(getattr(layer, "_inbound_nodes", []))


def producer(tensor):
    """The operation (layer, `InputLayer` or op) that produced the symbolic
    `tensor`."""
    return tensor._keras_history.operation


def call_arguments(node, values):
    """`(args, kwargs)` of `node`'s call with every symbolic tensor
    replaced by `values[id(tensor)]`."""
    return node.arguments.fill_in(values)


def node_arguments(node):
    """`(args, kwargs)` of `node`'s call as recorded (symbolic tensors and
    the constants passed with them, such as an index key)."""
    return node.arguments.args, node.arguments.kwargs


def first_input(node):
    """The tensor a node's call reads first: its first positional tensor,
    else its first tensor keyword in the order of the call's signature
    (`attention(query=x, value=x, attention_mask=m)` reads `x` first,
    though `node.input_tensors` lists the mask first)."""
    args, kwargs = node_arguments(node)
    for value in keras.tree.flatten(args):
        if isinstance(value, keras.KerasTensor):
            return value
    call = getattr(node.operation, "call", None)
    order = {}
    if call is not None:
        import inspect

        order = {
            name: i for i, name in enumerate(inspect.signature(call).parameters)
        }
    for name in sorted(kwargs, key=lambda k: order.get(k, len(order))):
        for value in keras.tree.flatten(kwargs[name]):
            if isinstance(value, keras.KerasTensor):
                return value
    tensors = node.input_tensors
    return tensors[0] if tensors else None


def pack_inputs(functional, flat):
    """`flat` (one value per `functional.inputs`) in the structure the
    model was built with (a dict, a list, a single tensor)."""
    return keras.tree.pack_sequence_as(functional._inputs_struct, flat)


def pack_outputs(functional, flat):
    """`flat` (one value per `functional.outputs`) in the model's output
    structure."""
    return keras.tree.pack_sequence_as(functional._outputs_struct, flat)


def attention_uses_gate(layer):
    """Whether a `MultiHeadAttention` has a gate (Keras' gated variant)."""
    return bool(getattr(layer, "_use_gate", False))


def standardize_inputs(functional, inputs):
    """`inputs` as the flat list of tensors `functional`'s call runs its
    graph on (Keras' `Functional._standardize_inputs`: a dict by input
    names, each converted to its input's dtype)."""
    return functional._standardize_inputs(inputs)


def with_context_arguments(operation, kwargs, training):
    """`kwargs` with `training` added where `operation` takes it, as
    `Functional.call` passes it to each operation of its graph."""
    if training is None or "training" not in getattr(
        operation, "_call_context_args", {}
    ):
        return kwargs
    return {**kwargs, "training": training}
