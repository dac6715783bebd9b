"""The one cost model: parameters and FLOPs per weight, per layer, per model.

FLOPs are counted as 2 x multiply-accumulates for one example (batch size
1), the convention of most model-zoo tables. Each layer's rule in
`keras_guided.rules` says what every element of each of its weights costs
per call (a Dense kernel element: one multiply-accumulate per input
position); a layer's FLOPs are that cost times the weight sizes. Pruning
targets (`scoring.plan_from_target`), cost-aware guidance and the tables
here all use these numbers, so "keep 25 % of the FLOPs" means the same
everywhere. Element-wise layers (activations, BatchNormalization, pooling,
Add) cost little and fold away on device, so they are not counted. Costs
are priced per call: a layer used several times (a shared layer) counts
once per call, and so does every layer of a nested model called several
times (a shared tower), each call at its own shapes. Recurrent
layers cost one multiply-accumulate per kernel and recurrent-kernel element
per time step (biases and gate activations are not counted), and their
wrappers are priced through what they wrap: `Bidirectional` is both
directions, `TimeDistributed` its inner layer once per time step.

A layer whose FLOPs cannot be known (no rule prices it: an unknown or
composite layer, attention without a FLOPs rule, a layer of a subclassed
model, whose calls Keras does not record) is *unpriced*: it counts 0, and
`count_flops` says so (a warning, or an error with `strict=True`), with
the share of the model's parameters those layers hold; `unpriced` returns
the same figures for reports, and a FLOPs budget (`prune_model(target=
{"flops": ...})`, `GuidedPruning`) warns when more than
`UNPRICED_BUDGET_SHARE` of the parameters sit in unpriced layers.

`model_costs` is the model as one `LayerCost` per leaf layer (keyed by the
layer object and its variables); `price(layer_cost, metric, kept)` prices
one layer with its weights cut to kept shapes, and `total` a model. The
tables here, the callback's live costs (`live_params`, `live_flops`) and
marginal costs, and the budget controller all go through `price`, so a
non-linear cost (a latency table over kept channel counts) is one more
entry in `PRICES`.

Where each part lives: `_layers` (the leaf layers of a model and their
calls in its graph), `_model` (`LayerCost`, `WeightCost`, `model_costs`,
`price`, `total`, `PRICES`: the cost model itself); this module counts and
compares whole models, formats the tables, and reports unpriced layers.
"""

import dataclasses
import warnings

from keras_guided import _keras_adapter as adapter
from keras_guided import rules as rules_lib
from keras_guided.stats._layers import iter_layers
from keras_guided.stats._model import COUNTS
from keras_guided.stats._model import PRICES
from keras_guided.stats._model import LayerCost
from keras_guided.stats._model import WeightCost
from keras_guided.stats._model import model_costs
from keras_guided.stats._model import price
from keras_guided.stats._model import total

__all__ = [
    "COUNTS",
    "PRICES",
    "UNPRICED_BUDGET_SHARE",
    "LayerCost",
    "Unpriced",
    "WeightCost",
    "compare",
    "count_flops",
    "count_params",
    "format_table",
    "iter_layers",
    "layer_costs",
    "model_costs",
    "price",
    "total",
    "unpriced",
    "warn_unpriced_budget",
    "weight_costs",
]


@dataclasses.dataclass(frozen=True)
class Unpriced:
    """The layers of a model whose FLOPs are unknown (`unpriced`).

    Attributes:
        layers: `(name, class name, reason)` of every unpriced layer.
        params: how many parameters they hold.
        total_params: the model's parameters.
        subclassed: whether the model is a subclassed `keras.Model`.
    """

    layers: tuple
    params: int
    total_params: int
    subclassed: bool = False

    @property
    def share(self):
        """The unpriced layers' share of the model's parameters."""
        return self.params / self.total_params if self.total_params else 0.0

    @property
    def complete(self):
        """Whether every layer is priced (the FLOPs count is the whole
        model's)."""
        return not self.layers and not self.subclassed

    def describe(self, model_name):
        """Which layers, why, and the share they hold, in a sentence or
        two."""
        text = ""
        if self.layers:
            names = [
                f"'{name}' ({cls}: {reason})"
                for name, cls, reason in self.layers[:5]
            ]
            if len(self.layers) > 5:
                names.append(f"and {len(self.layers) - 5} more")
            plural = "s" if len(self.layers) != 1 else ""
            text = (
                f"{len(self.layers)} layer{plural} of model '{model_name}' "
                f"{'have' if plural else 'has'} unknown FLOPs, counted as "
                f"0: {', '.join(names)}; "
                f"{'they hold' if plural else 'it holds'} "
                f"{100 * self.share:.1f} % of its {self.total_params:,} "
                "parameters."
            )
        if self.subclassed:
            text += (" " if text else "") + (
                f"Model '{model_name}' is subclassed: Keras records no "
                "shapes for the layers its `call` uses, so its FLOPs are "
                "unknown. Rebuild it with the Functional API "
                "(`keras.Model(inputs, outputs)`) to count them."
            )
        return text


def unpriced(model, layer_costs=None):
    """The layers of `model` whose FLOPs are unknown, and their share.

    Args:
        model: a built `keras.Model`.
        layer_costs: its `model_costs(model)`, if already computed.
            Defaults to `None`.

    Returns:
        An `Unpriced` (`complete` when every layer is priced).
    """
    rows = model_costs(model) if layer_costs is None else layer_costs
    graph = adapter.sequential_graph(model) or model
    return Unpriced(
        layers=tuple(
            (row.name, type(row.layer).__name__, row.unpriced)
            for row in rows
            if row.unpriced
        ),
        params=total([row for row in rows if row.unpriced], "params"),
        total_params=total(rows, "params"),
        subclassed=not adapter.has_graph(graph),
    )


UNPRICED_BUDGET_SHARE = 0.10
"""Above this share of the parameters in unpriced layers, a FLOPs budget
warns that it counts only part of the model."""


def warn_unpriced_budget(model, layer_costs, stacklevel=2):
    """Warns when a FLOPs budget leaves out more than
    `UNPRICED_BUDGET_SHARE` of `model`'s parameters (unpriced layers);
    returns the `Unpriced`."""
    missing = unpriced(model, layer_costs)
    if missing.layers and missing.share > UNPRICED_BUDGET_SHARE:
        warnings.warn(
            "A FLOPs budget counts only the layers it can price: "
            + missing.describe(model.name)
            + " A FLOPs target can be met while those layers stay whole"
            + ": give them a FLOPs rule (`keras_guided.register_rule(cls, "
            "rule, flops=...)`), or set a 'params' target instead.",
            stacklevel=stacklevel + 1,
        )
    return missing


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


def compare(before, after, shapes_before=None, shapes_after=None):
    """Per-layer before/after costs of two models, as a list of rows.

    Layers are matched by name; a layer missing from `after` counts as 0.
    `shapes_before` / `shapes_after` are the concrete shapes of a
    variable-length model's tensors (`keras_guided.graph.concrete_shapes`).

    Returns:
        A list of dicts with keys `layer`, `params_before`, `params_after`,
        `flops_before`, `flops_after`, and a final `"total"` row.
    """
    costs_before = layer_costs(before, shapes=shapes_before)
    costs_after = layer_costs(after, shapes=shapes_after)
    rows = []
    for name, cost in costs_before.items():
        other = costs_after.get(name, {"params": 0, "flops": 0})
        rows.append(
            {
                "layer": name,
                "params_before": cost["params"],
                "params_after": other["params"],
                "flops_before": cost["flops"],
                "flops_after": other["flops"],
            }
        )
    total = {"layer": "total"}
    for key in ("params_before", "params_after", "flops_before", "flops_after"):
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
    lines = [
        "| " + " | ".join(str(c) for c in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append(
            "| "
            + " | ".join(_format_cell(row.get(c, "")) for c in columns)
            + " |"
        )
    return "\n".join(lines)


def _format_cell(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
