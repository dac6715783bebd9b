"""Small facts about layers, tensors and graphs the analysis and its
users share (channels, nested and traced graphs, op names)."""

from keras_guided import _keras_adapter as adapter
from keras_guided import units as units_lib
from keras_guided.graph._trace import traced_graph


def _has_weight(layer, name):
    return name in units_lib.weight_keys(layer)


def _blocked(atoms, block):
    """(position, atom) pairs where input channel c owns `block` positions."""
    block = int(block)
    return [
        (c * block + j, atom)
        for c, atom in enumerate(atoms)
        for j in range(block)
    ]


def channel_count(tensor):
    """The size of `tensor`'s last (channel) axis, or `None` when it has
    no known channel axis."""
    shape = getattr(tensor, "shape", None)
    if shape is None or len(shape) < 2 or shape[-1] is None:
        return None
    return int(shape[-1])


def _keeps_last_axis(node):
    """Whether a `GetItem` node (`x[:, 0, :]`) leaves the channel axis
    whole."""
    args, _ = adapter.node_arguments(node)
    if len(args) != 2 or not node.input_tensors:
        return False
    rank = len(node.input_tensors[0].shape)
    key = args[1] if isinstance(args[1], tuple) else (args[1],)
    whole = slice(None, None, None)
    if any(
        not isinstance(k, (int, slice)) and k is not Ellipsis and k is not None
        for k in key
    ):
        return False  # a tensor index
    if key and key[-1] is Ellipsis:
        return True
    if Ellipsis in key:
        return key[-1] == whole
    indexed = [k for k in key if k is not None]
    return len(indexed) < rank or (
        len(indexed) == rank and indexed[-1] == whole
    )


def is_model(layer):
    """Whether `layer` is a `keras.Model` (a nested model used as a
    layer)."""
    from keras import Model

    return isinstance(layer, Model)


def inner_graph(operation, node):
    """The graph inside `operation` at `node`: a nested model's, or the
    traced call of a composite layer (`_trace`); else `None`."""
    if is_model(operation):
        return functional_graph(operation)
    return traced_graph(operation, node)


def is_traced(operation, node):
    """Whether `operation` at `node` is a traced composite layer."""
    return not is_model(operation) and (
        traced_graph(operation, node) is not None
    )


def functional_graph(model):
    """The Functional graph behind `model`, or a clear error."""
    from keras import Sequential

    from keras_guided import validation

    validation.check_model(model)
    if isinstance(model, Sequential):
        functional = adapter.sequential_graph(model)
        if functional is None:
            raise ValueError(
                f"Sequential model '{model.name}' is not built, so its graph "
                "is unknown. Start it with `keras.Input(shape)` or call "
                "`model.build(input_shape)` first."
            )
        return functional
    if not adapter.has_graph(model):
        raise ValueError(
            f"Model '{model.name}' ({type(model).__name__}) is a subclassed "
            "model: its graph is Python code keras_guided cannot read. "
            "Rebuild it with the Functional API (`keras.Model(inputs, "
            "outputs)`) or as a `keras.Sequential`."
        )
    return model
