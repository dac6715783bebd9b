"""A pruned keras-hub model rebuilt as its own class.

`prune_model` rebuilds a traced keras-hub block from standard layers, which
computes the same function but is not a `TransformerDecoder` any more: a
task's `generate()` (which calls each block with its cache) and
`save_to_preset` need the keras-hub classes. When every block keeps the
same widths (`prune_model(uniform_blocks=True)`) and the backbone's config
can say them, the pruned model is built again from the original backbone's
config with the new widths, wrapped in the original task class, and given
the pruned weights, variable by variable; it is kept only if it computes
what the pruned Functional model computes on the verification inputs.
The class is built without initial values and each of its variables takes
the pruned variable's storage (`_keras_adapter.deferred_variables`), so
the rebuild adds no copy of the weights to the peak memory.

Which config fields a width can change is keras-hub knowledge, so it is
written here, in `WIDTH_FIELDS`, and nowhere else.
"""

import sys

import numpy as np

from keras_guided import _keras_adapter as adapter

# Config field -> ((end of the relative weight path, axis that counts the
# units, config value per unit), ...), the first path a model has wins.
# keras-hub's transformers name their FFN input projection
# `feedforward_intermediate_dense` (Gemma: `ffw_gating`, of
# `intermediate_dim // 2` units) and their attention projections `query`
# and `key` (EinsumDense kernels of shape (hidden, heads, head size)).
WIDTH_FIELDS = {
    "intermediate_dim": (
        ("feedforward_intermediate_dense/kernel", -1, 1),
        ("ffw_gating/kernel", -1, 2),
    ),
    "num_heads": (("query/kernel", None, 1),),
    "num_query_heads": (("query/kernel", None, 1),),
    "num_key_value_heads": (("key/kernel", None, 1),),
}
# An axis of `None`: the axis whose length in the original model is the
# config's value (heads come first in Gemma's kernels, second in BERT's).


def hub_parts(model):
    """`(task, backbone)` of a keras-hub model (`task` is `None` for a
    backbone), or `None` for any other model. keras-hub is not imported
    here: a model of its classes has imported it already."""
    keras_hub = sys.modules.get("keras_hub")
    if keras_hub is None:
        return None
    if isinstance(model, keras_hub.models.Backbone):
        return None, model
    if isinstance(model, keras_hub.models.Task) and isinstance(
        getattr(model, "backbone", None), keras_hub.models.Backbone
    ):
        return model, model.backbone
    return None


def rebuild(model, pruned, make_inputs, predict):
    """`(rebuilt model, note)`, or `(None, note)` saying why it could not
    be rebuilt; `(None, None)` when `model` is not a keras-hub model.

    Args:
        model: the model given to `prune_model`.
        pruned: the pruned Functional model.
        make_inputs: `make_inputs()` -> the sample inputs both run on
            (made only for a keras-hub model).
        predict: `predict(model, inputs)` -> list of float64 arrays.
    """
    parts = hub_parts(model)
    if parts is None:
        return None, None
    task, backbone = parts
    kind = type(model).__name__
    containers = {model.name, backbone.name}
    pruned_weights = _owned_weights(pruned, containers)
    original_weights = _owned_weights(model, containers)
    config = backbone.get_config()
    changes = {}
    for field, places in WIDTH_FIELDS.items():
        if field not in config:
            continue
        widths = {}
        for suffix, axis, per_unit in places:
            for key, variable in pruned_weights.items():
                owner, path = key
                if not (path == suffix or path.endswith("/" + suffix)):
                    continue
                where = axis
                if where is None:
                    if key not in original_weights:
                        continue
                    before = tuple(original_weights[key].shape)
                    where = next(
                        (i for i, n in enumerate(before) if n == config[field]),
                        None,
                    )
                    if where is None:
                        continue
                widths.setdefault(
                    int(variable.shape[where]) * per_unit, []
                ).append(owner)
            if widths:
                break
        if len(widths) > 1:
            listed = ", ".join(
                f"{w} in {owners[0]}" for w, owners in sorted(widths.items())
            )
            return None, (
                f"kept as a Functional model, not {kind}: its blocks keep "
                f"different widths ({field}: {listed}), which one "
                f"{type(backbone).__name__} config cannot say. Pass "
                "uniform_blocks=True to keep the same widths in every block."
            )
        if widths:
            width = next(iter(widths))
            if width != config[field]:
                changes[field] = width
    try:
        candidate, created = _build(task, backbone, {**config, **changes})
    except Exception as error:  # noqa: BLE001 (reported, never raised)
        return None, (
            f"kept as a Functional model, not {kind}: "
            f"{type(backbone).__name__} with {changes} could not be built "
            f"({type(error).__name__}: {error})"
        )
    candidate_weights = _owned_weights(candidate, containers)
    said = _with_changes(changes, config)
    for key, variable in candidate_weights.items():
        source = pruned_weights.get(key)
        name = "/".join(key)
        if source is None:
            return None, (
                f"kept as a Functional model, not {kind}: {name} of "
                f"{type(backbone).__name__}{said} has no counterpart in the "
                "pruned model"
            )
        if tuple(source.shape) != tuple(variable.shape):
            return None, (
                f"kept as a Functional model, not {kind}: "
                f"{type(backbone).__name__}{said} gives {name} the shape "
                f"{tuple(variable.shape)}, the pruned model "
                f"{tuple(source.shape)}: its config cannot say these "
                f"widths. Pass protected=['{_sublayer(key)}'] to keep "
                "them."
            )
    extra = sorted(
        "/".join(k) for k in set(pruned_weights) - set(candidate_weights)
    )
    if extra:
        return None, (
            f"kept as a Functional model, not {kind}: the pruned model has "
            f"weights {type(backbone).__name__}{said} does not "
            f"({', '.join(extra[:3])})"
        )
    # The pruned model is dropped once the class is kept; a variable it
    # still shares with the user's model is copied, never shared.
    forbidden = model.weights
    for key, variable in candidate_weights.items():
        adapter.adopt_storage(variable, pruned_weights[key], forbidden)
    for variable in created:
        adapter.initialize(variable)  # seed generators' states
    inputs = make_inputs()
    try:
        expected, got = predict(pruned, inputs), predict(candidate, inputs)
    except Exception as error:  # noqa: BLE001 (reported, never raised)
        return None, (
            f"kept as a Functional model, not {kind}: the rebuilt "
            f"{type(backbone).__name__} could not be checked on the sample "
            f"inputs ({type(error).__name__}: {error}). Pass "
            "`sample_inputs=` with data the model accepts."
        )
    difference = max(
        float(np.max(np.abs(a - b), initial=0.0)) for a, b in zip(expected, got)
    )
    scale = max(float(np.max(np.abs(a), initial=0.0)) for a in expected)
    if difference > 1e-5 * max(1.0, scale):
        return None, (
            f"kept as a Functional model, not {kind}: rebuilt as "
            f"{type(backbone).__name__}{said} it differs from the pruned "
            f"model by up to {difference:.3g} (output scale {scale:.3g})"
        )
    return candidate, (
        f"rebuilt as {kind}{said}, its pruned weights copied; it matches "
        f"the pruned Functional model to {difference:.2g}"
    )


def _sublayer(key):
    """The name of the layer holding the weight at `key`."""
    owner, path = key
    return path.split("/")[0] if "/" in path else owner


def _with_changes(changes, config):
    if not changes:
        return " with its config unchanged"
    return " with " + ", ".join(
        f"{k} {config[k]} -> {v}" for k, v in changes.items()
    )


def _build(task, backbone, config):
    """`(model, variables made without values)`: the backbone is built
    without values (each variable takes the pruned model's storage later,
    so no second copy of the weights is ever made); the task around it
    the ordinary way (its `__init__` compiles, and an optimizer's
    variables cannot wait)."""
    with adapter.deferred_variables() as created:
        new_backbone = type(backbone).from_config(config)
    if task is None:
        return new_backbone, created
    task_config = dict(task.get_config())
    task_config["backbone"] = new_backbone
    task_config["preprocessor"] = task.preprocessor
    return type(task).from_config(task_config), created


def _owned_weights(model, containers):
    """`{(owner name, weight path inside the owner): variable}`.

    An owner is a layer of `model` (or of a nested model named in
    `containers`, such as the backbone inside a task) that is not opened:
    a keras-hub block and the Functional model it was rebuilt as are both
    owners, named alike, with their weights at the same paths inside.
    """
    owned, seen = {}, set()

    def inside(layer, prefix):
        """`(path inside the owner, variable)` of `layer`'s weights: a
        nested model's layers by their names, a layer's by its weights'
        paths from its own name on."""
        if getattr(layer, "layers", None):
            for sub in layer.layers:
                yield from inside(sub, prefix + sub.name + "/")
            return
        for variable in layer.weights:
            path = variable.path
            start = path.find(layer.name + "/")
            path = (
                path[start + len(layer.name) + 1 :]
                if start >= 0
                else path.rsplit("/", 1)[-1]
            )
            yield prefix + path, variable

    def visit(container):
        for layer in container.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if getattr(layer, "layers", None) and layer.name in containers:
                visit(layer)
                continue
            for path, variable in inside(layer, ""):
                owned[(layer.name, path)] = variable

    visit(model)
    return owned
