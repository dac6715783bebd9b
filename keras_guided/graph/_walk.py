"""Walking a model's layers, nested models opened: the one walker.

A layer holding a non-empty `layers` list (a `Sequential` or Functional
model used as a layer) is *opened*: the walk yields it, then its own layers
in its place, depth first, their paths prefixed with its path and `/`
(`"block/dense"`). Every other layer is a *leaf*, including a composite
layer whose sublayers are attributes (`_trace` opens those by tracing,
which is the cost model's business, not the walker's).

The surgery (names a user may protect, the report's rows), the exporter
(the layers named in a converter error) and the cost model (`stats`, one
row per leaf) all walk a model this way, so a path means the same layer in
each; other packages reach it through the face of `keras_guided.graph`
(`all_layers`, `leaf_layers`, `opens`). This module imports nothing of the
package: anything may use it.
"""


def opens(layer):
    """Whether the walk goes inside `layer`: it holds a non-empty `layers`
    list (a nested model)."""
    return bool(getattr(layer, "layers", None))


def walk(model, prefix=""):
    """Yields `(path, layer, parent)` for every layer under `model`.

    Depth first in `model.layers` order; an opened layer (see `opens`)
    comes before its own layers. `parent` is the model whose `layers` hold
    the layer, and `path` is `prefix` plus the names of the opened layers
    above it and its own name, joined by `/`.
    """
    for layer in model.layers:
        path = prefix + layer.name
        yield path, layer, model
        if opens(layer):
            yield from walk(layer, prefix=path + "/")


def all_layers(model):
    """Every layer under `model`, nested models and their layers included,
    in walk order."""
    return [layer for _, layer, _ in walk(model)]


def leaf_layers(model, prefix=""):
    """Yields `(path, layer, parent)` for the layers under `model` that are
    not opened, in walk order."""
    for path, layer, parent in walk(model, prefix):
        if not opens(layer):
            yield path, layer, parent
