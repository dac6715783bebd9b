"""The cost model itself: one `LayerCost` per leaf layer, and its prices.

`model_costs(model)` turns every leaf layer (`_layers.iter_layers`) into a
`LayerCost`: its weights, with the FLOPs each element of each weight costs
per example (from the layer's rule in `keras_guided.rules`, summed over
the layer's calls), and why the layer is unpriced when its FLOPs are
unknown. `price` prices one layer under a metric with its weights cut to
kept shapes, `total` a model; `PRICES` holds the built-in metrics. The
names are re-exported by `keras_guided.stats`, whose docstring states the
counting conventions.
"""

import dataclasses
import math

from keras_guided import rules as rules_lib
from keras_guided import units as units_lib
from keras_guided.stats._layers import iter_layers


@dataclasses.dataclass(frozen=True)
class WeightCost:
    """One weight of a layer in the cost model.

    Attributes:
        key: the weight's name in its layer (`units.weight_key`).
        variable: the weight itself.
        shape: its full shape.
        flops: FLOPs per element for one call on one example (summed over
            the layer's calls in the graph; 0 when FLOPs were not asked).
    """

    key: str
    variable: object
    shape: tuple
    flops: float


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """One leaf layer of the cost model (`model_costs`).

    A layer is priced by `price(layer_cost, metric, kept)`, where `kept`
    maps weight keys to the shape each weight keeps (a weight not in it is
    whole). Everything that counts a model or a part of it (the tables
    of `keras_guided.stats`, `scoring`'s targets, the callback's live
    costs and marginal costs) prices layers this way, keyed by the layer
    object (`layer`) and its variables, never by name.

    Attributes:
        name: the layer's path in the model (`"outer/inner"` for nested
            models), for tables only.
        layer: the layer object.
        weights: a tuple of `WeightCost`, in `layer.weights` order.
        unpriced: why the layer's FLOPs are unknown (they count 0), or
            `None` for a priced layer (or when FLOPs were not asked).
    """

    name: str
    layer: object
    weights: tuple
    unpriced: str = None

    def kept_shapes(self, kept=None):
        """`[(WeightCost, kept shape)]` for every weight of the layer."""
        kept = kept or {}
        return [(w, tuple(kept.get(w.key, w.shape))) for w in self.weights]


def _price_params(layer_cost, kept):
    return float(
        sum(math.prod(shape) for _, shape in layer_cost.kept_shapes(kept))
    )


def _price_flops(layer_cost, kept):
    return float(
        sum(
            math.prod(shape) * weight.flops
            for weight, shape in layer_cost.kept_shapes(kept)
        )
    )


PRICES = {"params": _price_params, "flops": _price_flops}
"""How each metric prices one layer: `price(layer_cost, kept) -> float`.

Parameters and FLOPs are linear in the kept weight sizes. A price need not
be: latency, looked up from the kept input and output channels of a
measured kernel (`kept["kernel"][-2:]` of a Dense or Conv), is bound to a
`keras_guided.latency.LatencyTable` and so passed in by the caller
(`prices={"latency": table.price}`) rather than stored here; every caller
(live costs, marginal costs, tables) uses it unchanged.
"""

COUNTS = ("params", "flops")
"""Metrics that count whole things: `total` rounds each layer to an int."""


def price(layer_cost, metric, kept=None, prices=None):
    """What `layer_cost`'s layer costs under `metric` with its weights cut
    to `kept` (`{weight key: kept shape}`; `None`: the whole layer).

    `prices` adds or overrides entries of `PRICES` (e.g. `{"latency":
    table.price}`). Defaults to `None`.

    Raises:
        ValueError: for a metric without a price.
    """
    known = dict(PRICES, **(prices or {}))
    try:
        price_fn = known[metric]
    except KeyError:
        hint = (
            ". A latency price needs a table: pass prices={'latency': "
            "table.price}"
            if metric == "latency"
            else ""
        )
        raise ValueError(
            f"`metric` must be one of {sorted(known)}. "
            f"Received: metric={metric!r}{hint}"
        ) from None
    return price_fn(layer_cost, kept)


def total(layer_costs, metric, kept=None, prices=None):
    """The cost of a model (`model_costs`); `kept` is `None` (everything)
    or a list aligned with `layer_costs` of `{weight key: kept shape}` (or
    `None`) per layer. Counts (`COUNTS`) are ints, each layer rounded as in
    `layer_costs`; another metric (latency in ms) is a float sum.

    A layer in several rows (called by a nested model and by the graph
    around it: a keras-hub language model's tied embedding) costs FLOPs
    per call but holds its parameters once: `"params"` counts its first
    row only, as `model.count_params()` does."""
    kept = kept or [None] * len(layer_costs)
    if metric == "params":
        first = {}
        for index, row in enumerate(layer_costs):
            first.setdefault(id(row.layer), index)
        once = set(first.values())
        layer_costs = [r for i, r in enumerate(layer_costs) if i in once]
        kept = [k for i, k in enumerate(kept) if i in once]
    values = [
        price(row, metric, cut, prices) for row, cut in zip(layer_costs, kept)
    ]
    if metric in COUNTS:
        return int(sum(int(round(value)) for value in values))
    return float(sum(values))


def model_costs(model, shapes=None, flops=True):
    """The cost model behind every count: one `LayerCost` per leaf layer.

    Args:
        model: a built Sequential or Functional `keras.Model`.
        shapes: `{id(KerasTensor): shape}` overriding symbolic shapes (see
            `keras_guided.graph.concrete_shapes`), for variable-length
            models. Defaults to `None`.
        flops: also compute FLOPs per weight element (else they are 0).
            Defaults to `True`.

    Returns:
        A list of `LayerCost`, in layer order (nested models flattened).

    Raises:
        ValueError: with `flops=True`, for a layer whose FLOPs depend on an
            unknown dimension.
    """
    rows = []
    for name, layer, calls in iter_layers(model, shapes=shapes):
        per_element = {}
        rule = rules_lib.rule_for(layer) if flops else None
        unpriced = _why_unpriced(layer, rule, calls) if flops else None
        if unpriced is None and rule is not None and rule.flops is not None:
            for input_shape, output_shape in calls:
                costs = rule.flops(layer, input_shape, output_shape)
                if costs is None:  # a wrapper of an unpriced layer
                    unpriced = "the layer it wraps has no FLOPs rule"
                    per_element = {}
                    break
                for key, value in costs.items():
                    per_element[key] = per_element.get(key, 0) + value
        weights = []
        for variable in layer.weights:
            key = units_lib.weight_key(layer, variable)
            weights.append(
                WeightCost(
                    key,
                    variable,
                    tuple(int(d) for d in variable.shape),
                    per_element.get(key, 0),
                )
            )
        rows.append(LayerCost(name, layer, tuple(weights), unpriced))
    return rows


def _why_unpriced(layer, rule, calls):
    """Why `layer`'s FLOPs are unknown, or `None`."""
    if not layer.weights:
        return None  # nothing to price (its FLOPs, if any, are not ours)
    if rule is None:
        return "no rule prices it"
    if rule.flops is None:
        if rule.kind in rules_lib.FREE_KINDS:
            return None
        return "its rule has no FLOPs"
    if not calls:
        return "no call of it is recorded in the graph"
    return None
