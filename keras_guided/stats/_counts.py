"""Whole-model counts: parameters and FLOPs per layer and in total
(`count_flops` says which layers it could not price)."""

import warnings

from keras_guided import rules as rules_lib
from keras_guided.stats._model import model_costs
from keras_guided.stats._model import total
from keras_guided.stats._unpriced import unpriced


def weight_costs(model, shapes=None, flops=True):
    """`model_costs` as plain rows: `(name, layer, {weight key: (shape,
    FLOPs per element)})` per leaf layer."""
    return [
        (row.name, row.layer, {w.key: (w.shape, w.flops) for w in row.weights})
        for row in model_costs(model, shapes=shapes, flops=flops)
    ]


def layer_costs(model, shapes=None):
    """Parameters and FLOPs of every layer of a built model.

    Args:
        model: a built Sequential or Functional `keras.Model`. Nested models
            are flattened; their layers are named `"outer/inner"`.
        shapes: `{id(KerasTensor): shape}` for variable-length models (see
            `weight_costs`). Defaults to `None`.

    Returns:
        A dict `{layer_name: {"params": int, "flops": int}}` in layer order.
        `params` counts every weight (trainable or not); `flops` is
        2 x multiply-accumulates per example.

    Raises:
        ValueError: if the model is not built, or a layer's FLOPs depend on
            an unknown dimension.

    Examples:
        >>> import keras, keras_guided
        >>> model = keras.Sequential(
        ...     [keras.Input((4,)), keras.layers.Dense(3, name="head")])
        >>> keras_guided.stats.layer_costs(model)["head"]
        {'params': 15, 'flops': 24}
    """
    _check_built(model)
    return {
        row.name: {
            "params": total([row], "params"),
            "flops": total([row], "flops"),
        }
        for row in model_costs(model, shapes=shapes)
    }


def _check_built(model):
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built. Call it on data or "
            "`model.build(input_shape)` before counting its costs."
        )


def count_params(model):
    """Total number of weights of `model` (trainable and non-trainable).

    Needs no FLOPs, so it works for variable-length models too.

    Examples:
        >>> import keras, keras_guided
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> keras_guided.stats.count_params(model)
        15
    """
    _check_built(model)
    return total(model_costs(model, flops=False), "params")


def count_flops(model, shapes=None, strict=False):
    """FLOPs of one forward pass for one example (2 x MACs).

    A layer whose FLOPs are unknown (see `unpriced`) counts 0, with a
    warning that names it and the share of the parameters it holds.

    Args:
        model: a built `keras.Model`.
        shapes: concrete tensor shapes for a variable-length model (see
            `model_costs`). Defaults to `None`.
        strict: raise instead of warning when a layer's FLOPs are
            unknown. Defaults to `False`.

    Returns:
        An int.

    Raises:
        ValueError: for an unbuilt model, an unknown dimension, or (with
            `strict=True`) a layer whose FLOPs are unknown.

    Examples:
        >>> import keras, keras_guided
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> keras_guided.stats.count_flops(model)
        24
    """
    _check_built(model)
    try:
        rows = model_costs(model, shapes=shapes)
    except rules_lib.UnknownSizeError as error:
        raise error.with_advice(
            "Pass `shapes=keras_guided.graph.concrete_shapes(model, "
            "input_shapes)` to count them at the input shapes you give "
            "(batch axis included, e.g. [(1, 128)]), or build the model "
            "with a fixed input size."
        ) from None
    missing = unpriced(model, rows)
    if not missing.complete:
        text = missing.describe(model.name)
        if missing.layers and not missing.subclassed:
            them = "them" if len(missing.layers) > 1 else "it"
            text += (
                f" Give {them} a FLOPs rule (`keras_guided."
                "register_rule(cls, rule, flops=...)`)."
            )
        if strict:
            raise ValueError(
                f"{text} Pass strict=False to count them as 0 with a warning."
            )
        warnings.warn(
            f"{text} Pass strict=True to make this an error.", stacklevel=2
        )
    return total(rows, "flops")
