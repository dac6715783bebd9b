"""Parameters and FLOPs per layer, and before/after tables.

FLOPs are counted as 2 x multiply-accumulates of the Dense and convolution
layers for one example (batch size 1), the convention of most model-zoo
tables. Element-wise layers (activations, BatchNormalization, pooling, Add)
cost little and fold away on device, so they are not counted. A layer used
several times (a shared layer) is counted once per call.
"""

import numpy as np

from keras_guided import units as units_lib


def _shape(tensor):
    return tuple(tensor.shape)


def _spatial_size(shape):
    """Product of the spatial dimensions of a channels-last shape."""
    spatial = shape[1:-1]
    if any(d is None for d in spatial):
        raise ValueError(
            f"Cannot count FLOPs for a tensor of shape {shape} with unknown "
            "spatial dimensions. Build the model with a fixed input size."
        )
    return int(np.prod(spatial)) if spatial else 1


def _call_flops(layer, input_shape, output_shape):
    family = units_lib.layer_family(layer)
    if family is None or family == "normalization":
        return 0
    if family == "dense":
        kernel = units_lib.get_weight(layer, "kernel")
        # Dense on a rank > 2 input applies the kernel at every position.
        return 2 * _spatial_size(input_shape) * int(np.prod(kernel.shape))
    if family in ("conv", "depthwise"):
        # The kernel holds (C_in / groups) inputs per output: one MAC each.
        kernel = units_lib.get_weight(layer, "kernel")
        return 2 * _spatial_size(output_shape) * int(np.prod(kernel.shape))
    if family == "conv_transpose":
        # Every input position scatters through the whole kernel.
        kernel = units_lib.get_weight(layer, "kernel")
        return 2 * _spatial_size(input_shape) * int(np.prod(kernel.shape))
    if family == "separable":
        depthwise = units_lib.get_weight(layer, "depthwise_kernel")
        pointwise = units_lib.get_weight(layer, "pointwise_kernel")
        return 2 * _spatial_size(output_shape) * (
            int(np.prod(depthwise.shape)) + int(np.prod(pointwise.shape))
        )
    return 0


def _graph_nodes(model):
    """The nodes of `model`'s own graph, or `None` if it has no graph.

    A layer keeps a node for every call ever made (a Sequential rebuilt, a
    layer reused in another model): only the nodes of this graph count.
    """
    graph = getattr(model, "_functional", None) or model
    by_depth = getattr(graph, "_nodes_by_depth", None)
    if not by_depth:
        return None
    return {id(node) for nodes in by_depth.values() for node in nodes}


def _iter_layers(model, prefix=""):
    """Yields `(name, layer, calls)` for every leaf layer.

    Nested models are flattened; `calls` lists the `(input shape, output
    shape)` of each call of the layer inside this model's graph.
    """
    own = _graph_nodes(model)
    for layer in model.layers:
        name = prefix + layer.name
        if hasattr(layer, "layers") and layer.layers:
            yield from _iter_layers(layer, prefix=name + "/")
            continue
        calls = []
        for node in getattr(layer, "_inbound_nodes", []):
            if own is not None and id(node) not in own:
                continue
            if node.input_tensors and node.output_tensors:
                calls.append((_shape(node.input_tensors[0]),
                              _shape(node.output_tensors[0])))
        yield name, layer, calls


def layer_costs(model):
    """Parameters and FLOPs of every layer of a built model.

    Args:
        model: a built Sequential or Functional `keras.Model`. Nested models
            are flattened; their layers are named `"outer/inner"`.

    Returns:
        A dict `{layer_name: {"params": int, "flops": int}}` in layer order.
        `params` counts every weight (trainable or not); `flops` is
        2 x multiply-accumulates per example.

    Raises:
        ValueError: if the model is not built.

    Examples:
        >>> import keras, keras_guided
        >>> model = keras.Sequential(
        ...     [keras.Input((4,)), keras.layers.Dense(3, name="head")])
        >>> keras_guided.stats.layer_costs(model)["head"]
        {'params': 15, 'flops': 24}
    """
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built. Call it on data or "
            "`model.build(input_shape)` before counting its costs."
        )
    costs = {}
    for name, layer, calls in _iter_layers(model):
        params = int(sum(int(np.prod(w.shape)) for w in layer.weights))
        flops = sum(
            _call_flops(layer, input_shape, output_shape)
            for input_shape, output_shape in calls
        )
        costs[name] = {"params": params, "flops": int(flops)}
    return costs


def count_params(model):
    """Total number of weights of `model` (trainable and non-trainable).

    Examples:
        >>> import keras, keras_guided
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> keras_guided.stats.count_params(model)
        15
    """
    return int(sum(c["params"] for c in layer_costs(model).values()))


def count_flops(model):
    """FLOPs of one forward pass for one example (2 x MACs, Dense and Conv).

    Examples:
        >>> import keras, keras_guided
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> keras_guided.stats.count_flops(model)
        24
    """
    return int(sum(c["flops"] for c in layer_costs(model).values()))


def compare(before, after):
    """Per-layer before/after costs of two models, as a list of rows.

    Layers are matched by name; a layer missing from `after` counts as 0.

    Returns:
        A list of dicts with keys `layer`, `params_before`, `params_after`,
        `flops_before`, `flops_after`, and a final `"total"` row.
    """
    costs_before, costs_after = layer_costs(before), layer_costs(after)
    rows = []
    for name, cost in costs_before.items():
        other = costs_after.get(name, {"params": 0, "flops": 0})
        rows.append({
            "layer": name,
            "params_before": cost["params"],
            "params_after": other["params"],
            "flops_before": cost["flops"],
            "flops_after": other["flops"],
        })
    total = {"layer": "total"}
    for key in ("params_before", "params_after", "flops_before",
                "flops_after"):
        total[key] = sum(row[key] for row in rows)
    rows.append(total)
    return rows


def format_table(rows, columns=None):
    """Formats rows (dicts) as a markdown table with aligned columns.

    Examples:
        >>> import keras_guided
        >>> print(keras_guided.stats.format_table([{"a": 1, "b": "x"}]))
        | a | b |
        |---|---|
        | 1 | x |
    """
    if not rows:
        return ""
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(str(c) for c in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append(
            "| " + " | ".join(_format_cell(row.get(c, "")) for c in columns)
            + " |"
        )
    return "\n".join(lines)


def _format_cell(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
