"""Concrete tensor shapes of a variable-length model (`concrete_shapes`),
and the probe shape an unknown length defaults to (`probe_shape`)."""

from keras_guided import _keras_adapter as adapter
from keras_guided import rules as rules_lib
from keras_guided.graph._helpers import functional_graph
from keras_guided.graph._helpers import inner_graph

PROBE_SIZE = 32
"""The length an unknown size is probed at when no sample inputs are given:
long enough for most kernels and pooling windows, small enough to probe
quickly."""


def probe_shape(shape, batch=1):
    """`shape` with a batch of `batch` and `PROBE_SIZE` for every unknown
    length (the shape a variable-length input is probed at)."""
    dims = [batch] + list(shape[1:])
    return tuple(PROBE_SIZE if d is None else int(d) for d in dims)


def concrete_shapes(model, input_shapes, blocked=None):
    """Shapes of every tensor of `model` for inputs of the given shapes.

    Unknown sizes of a variable-length model (`keras.Input((None,))`)
    become the sizes of real inputs, so probes and FLOPs use lengths the
    layers accept. Shapes are inferred symbolically (no computation).

    Args:
        model: a built Sequential or Functional model.
        input_shapes: one shape per model input (batch axis included; a
            `None` size stays unknown).

        blocked: a list that gets every operation whose output shape
            could not be inferred (in graph order), or `None`.

    Returns:
        `{id(KerasTensor): tuple}` for every tensor of the graph, nested
        models included; tensors whose shape could not be inferred keep
        their symbolic shape.
    """
    import keras

    functional = functional_graph(model)
    specs = {}
    for tensor, shape in zip(functional.inputs, input_shapes):
        specs[id(tensor)] = keras.KerasTensor(
            tuple(None if d is None else int(d) for d in shape),
            dtype=tensor.dtype,
        )
    _infer_shapes(functional, specs, blocked)
    return {key: tuple(spec.shape) for key, spec in specs.items()}


def _infer_shapes(functional, specs, blocked=None):
    import keras

    for node in adapter.graph_nodes(functional):
        op = node.operation
        if any(id(t) not in specs for t in node.input_tensors):
            continue
        inner = inner_graph(op, node)
        if inner is not None:
            for outer, inner_in in zip(node.input_tensors, inner.inputs):
                specs[id(inner_in)] = specs[id(outer)]
            _infer_shapes(inner, specs, blocked)
            for inner_out, outer in zip(inner.outputs, node.outputs):
                if id(inner_out) in specs:
                    specs[id(outer)] = specs[id(inner_out)]
            continue
        args, kwargs = adapter.call_arguments(node, specs)
        try:
            outputs = rules_lib.output_spec(op, args, kwargs)
        except Exception:  # noqa: BLE001 (the symbolic shape stays)
            if blocked is not None:
                blocked.append(op)
            continue
        for tensor, spec in zip(node.outputs, keras.tree.flatten(outputs)):
            if getattr(spec, "sparse", False):
                # `ops.multiply` by a recorded constant gives a sparse spec
                # (Keras takes a constant for sparse), and a sparse spec
                # stops the next layer's (RMSNormalization's): only the
                # shape is wanted here.
                spec = keras.KerasTensor(spec.shape, dtype=spec.dtype)
            specs[id(tensor)] = spec
