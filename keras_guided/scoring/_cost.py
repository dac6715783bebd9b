"""Exact kept costs: what a model keeps of params, FLOPs or latency.

`KeptCost` follows a plan unit by unit over `stats.weight_costs` (the one
cost model), so the greedies price a removal by what it saves now, with
the crossings of two pruned axes in one weight counted once; a latency
cost prices the kernels a `keras_guided.latency.LatencyTable` measured.
"""

import copy
import math

import numpy as np

from keras_guided import _axes
from keras_guided import stats as stats_lib


class KeptCost:
    """The exact params, FLOPs or latency a model keeps as units go.

    Built on `stats.weight_costs` (the one cost model): each weight costs
    its kept size times its cost per element, and its kept size is the
    product of its kept lengths along every axis. Removing a unit shortens
    every axis its slices cut, so a Dense kernel between two pruned layers
    loses rows and columns and the entries at their crossing are counted
    once (adding per-unit shares would count them twice and keep more than
    asked). With `metric="latency"` the kernel of a layer the
    `latency_table` measured costs the table's prediction at its kept
    input and output channels instead, its other weights nothing; a layer
    it estimates costs its FLOPs times the table's ms per FLOP.

    Args:
        groups: `UnitGroup`s of `model`.
        model: the model.
        metric: `"units"`, `"params"`, `"flops"` or `"latency"`.
        shapes: concrete shapes for variable-length models (see
            `stats.weight_costs`). Defaults to `None`.
        latency_table: a `keras_guided.latency.LatencyTable` of `model`,
            needed for `"latency"`. Defaults to `None`.

    Examples:
        >>> import keras, keras_guided
        >>> model = keras.Sequential([keras.Input((4,)),
        ...     keras.layers.Dense(8), keras.layers.Dense(6),
        ...     keras.layers.Dense(1)])
        >>> groups = keras_guided.find_unit_groups(model)
        >>> cost = keras_guided.scoring.KeptCost(groups, model, "params")
        >>> cost.total, cost.remove(groups[0], 0)  # 4 + 1 + 6 weights
        (101.0, 11.0)
        >>> cost.remove(groups[1], 0)  # 7 + 1 + 1: the crossing went before
        9.0
    """

    def __init__(self, groups, model, metric, shapes=None, latency_table=None):
        self.metric = metric
        self._weights = {}  # (id(layer), name) -> [kept dims, unit cost]
        self._curves = {}  # (id(layer), name) -> dims -> ms (latency)
        if metric != "units":
            for layer_name, layer, weights in stats_lib.weight_costs(
                model, shapes=shapes, flops=metric != "params"
            ):
                for name, (shape, per_element) in weights.items():
                    key = (id(layer), name)
                    unit_cost = 1.0 if metric == "params" else per_element
                    if metric == "latency":
                        # The table prices each weight (one function for
                        # prune_model and the callback's live latency).
                        self._curves[key] = latency_table.weight_price(
                            layer_name, layer, name, per_element
                        )
                        unit_cost = 0.0
                    self._weights[key] = [list(shape), float(unit_cost)]
        self._removed = {}  # (id(layer), name, axis) -> removed indices
        if metric == "units":
            self.total = float(sum(g.num_units for g in groups if g.prunable))
        else:
            self.total = float(
                sum(
                    self._value(key, dims, cost)
                    for key, (dims, cost) in self._weights.items()
                )
            )
        self.kept = self.total

    def _value(self, key, dims, cost):
        curve = self._curves.get(key)
        if curve is not None:
            return curve(dims)
        return math.prod(dims) * cost

    def remove(self, group, unit):
        """Removes `unit` of `group`; returns the cost it saved."""
        return self._remove(group, unit, apply=True)

    def saving(self, group, unit):
        """What removing `unit` of `group` now would save (nothing changes)."""
        return self._remove(group, unit, apply=False)

    def _remove(self, group, unit, apply):
        if self.metric == "units":
            if apply:
                self.kept -= 1.0
            return 1.0
        saved = 0.0
        shortened = {}  # (id(layer), name) -> dims after this removal
        pending = {}  # (id(layer), name, axis) -> indices this removal cuts
        for slice_ in group.slices:
            entry = self._weights.get((id(slice_.layer), slice_.weight))
            if entry is None:
                continue
            dims, cost = entry
            dims = shortened.get((id(slice_.layer), slice_.weight), dims)
            axes = _axes.normalize_axes(len(dims), slice_.axis)
            inner = math.prod(dims[a] for a in axes[1:])
            key = (id(slice_.layer), slice_.weight, axes[0])
            removed = self._removed.setdefault(key, set())
            # With a tuple axis, the kept length of its first axis is
            # tracked (the depth multiplier stays whole).
            fresh = {int(p) // max(inner, 1) for p in slice_.positions[unit]}
            fresh -= removed | pending.get(key, set())
            if not fresh:
                continue
            weight = (id(slice_.layer), slice_.weight)
            before = self._value(weight, dims, cost)
            dims = list(dims)
            dims[axes[0]] -= len(fresh)
            shortened[weight] = dims
            saved += before - self._value(weight, dims, cost)
            pending.setdefault(key, set()).update(fresh)
            if apply:
                entry[0] = dims
                removed |= fresh
        if apply:
            self.kept -= saved
        return float(saved)


def plan_cost(groups, model, metric, shapes, plan, latency_table=None):
    """What `model` keeps of `metric` after `plan`, exactly."""
    cost = KeptCost(
        groups, model, metric, shapes=shapes, latency_table=latency_table
    )
    for index, kept in plan.items():
        group = groups[index]
        for unit in np.setdiff1d(np.arange(group.num_units), kept):
            cost.remove(group, int(unit))
    return cost.kept


def unit_costs(groups, model, metric, shapes=None):
    """Cost of removing each unit alone (params or FLOPs), one array a group.

    A unit's cost is what removing only it saves (`KeptCost.remove` from
    the full model); removing several units saves less than the sum when
    their slices cross in one weight.
    """
    if metric == "units":
        return [np.ones(g.num_units) for g in groups]
    base = KeptCost(groups, model, metric, shapes=shapes)
    costs = []
    for group in groups:
        cost = np.zeros(group.num_units)
        for unit in range(group.num_units):
            probe = copy.copy(base)
            probe._weights = {
                k: [list(d), c] for k, (d, c) in base._weights.items()
            }
            probe._removed = {}
            cost[unit] = probe.remove(group, unit)
        costs.append(cost)
    return costs
