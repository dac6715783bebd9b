"""Plans of kept units: limits, exact kept costs, an unreachable target.

The low layer under the target greedies: `scoring.plan_from_target` (unit
counts, params, FLOPs) and `latency._plan` (latency) both build on it and
neither imports the other's module for it, so the greedies and the
dispatcher in `scoring` form no import cycle. A *plan* is a dict
`{group index: sorted int array of kept unit indices}`; groups missing from
it keep all their units. `keras_guided.scoring` re-exports the public
names (`KeptCost`, `check_limits`, `floor_units`, `plan_from_mask`,
`protect`).
"""

import math
import warnings

import numpy as np

from keras_guided import _axes
from keras_guided import _keras_adapter as adapter
from keras_guided import _walk
from keras_guided import stats as stats_lib
from keras_guided import units as units_lib
from keras_guided.stats._layers import iter_layers


def check_protected(protected):
    """`protected` as a tuple of layer names.

    Raises:
        ValueError: if it is neither a layer name nor a list or tuple of
            them.
    """
    if isinstance(protected, str):
        return (protected,)
    if isinstance(protected, (list, tuple, set, frozenset)) and all(
        isinstance(name, str) for name in protected
    ):
        return tuple(protected)
    raise ValueError(
        "`protected` must be a layer name or a list of layer names, e.g. "
        f"protected=['self_attention']. Received: protected={protected!r}"
    )


def protect(model, groups, protected):
    """Marks the groups of `groups` that a layer named in `protected`
    produces or carries as not prunable (`reason`: the layer), the
    meaning of `protected=` in `prune_model` and `GuidedPruning`. Names
    are those of `model.layers`, nested models, composite layers' sublayers
    and traced layers included.

    Raises:
        ValueError: for a name that is not a layer of `model`.
    """
    names = set(check_protected(protected))
    if not names:
        return
    known = {
        sub.name
        for layer in _walk.all_layers(model)
        for sub in adapter.layer_tree(layer)
    } | {
        layer.name for _, layer, _ in iter_layers(model)
    }  # the layers inside composite layers (traced or not) too
    missing = sorted(names - known)
    if missing:
        raise ValueError(
            f"`protected` names layers that are not in model '{model.name}':"
            f" {missing}. Use the names of `model.layers` (nested models "
            "included)."
        )
    for group in groups:
        owners = set(group.layers) | {
            s.layer.name for s in group.slices if s.role == "producer"
        }
        hit = sorted(owners & names)
        if hit and group.prunable:
            group.prunable = False
            group.reason = f"protected layer '{hit[0]}'"


def check_limits(min_units, round_to):
    """Validates `min_units` and `round_to`.

    Raises:
        ValueError: if `min_units` is neither a positive int nor a float in
            (0, 1], or `round_to` is neither `None` nor a positive int.
    """
    is_count = (
        isinstance(min_units, (int, np.integer))
        and not isinstance(min_units, bool)
        and min_units >= 1
    )
    is_share = isinstance(min_units, float) and 0.0 < min_units <= 1.0
    if not (is_count or is_share):
        raise ValueError(
            "`min_units` must be a positive int (the fewest units kept per "
            "group; never a zero-width layer) or a float in (0, 1] (the "
            "smallest share of each group kept, e.g. 0.25). "
            f"Received: min_units={min_units!r}"
        )
    if round_to is not None and (
        not isinstance(round_to, (int, np.integer)) or round_to < 1
    ):
        raise ValueError(
            "`round_to` must be None or a positive int. "
            f"Received: round_to={round_to!r}"
        )


def floor_units(min_units, num_units):
    """The fewest units a group of `num_units` keeps under `min_units` (a
    count, or a share of the group rounded up; at least 1)."""
    if isinstance(min_units, float):
        return max(1, min(num_units, math.ceil(min_units * num_units - 1e-9)))
    return min(int(min_units), num_units)


def apply_limits(group, keep_mask, scores, min_units, round_to):
    """Raises the kept count to `min_units` and a multiple of `round_to`."""
    count = int(keep_mask.sum())
    wanted = max(count, floor_units(min_units, group.num_units))
    if round_to:
        wanted = min(group.num_units, math.ceil(wanted / round_to) * round_to)
    if wanted > count:
        order = np.argsort(-scores, kind="stable")
        extra = [u for u in order if not keep_mask[u]][: wanted - count]
        keep_mask = keep_mask.copy()
        keep_mask[extra] = True
    return np.flatnonzero(keep_mask)


def plan_from_mask(
    groups, remove_masks, scores=None, min_units=1, round_to=None
):
    """A plan removing the units marked in `remove_masks` (within limits).

    Non-prunable groups and groups with nothing removed are left out.
    """
    check_limits(min_units, round_to)
    plan = {}
    for group, remove in zip(groups, remove_masks):
        if not group.prunable or not np.any(remove):
            continue
        group_scores = (
            scores[group.index]
            if scores is not None
            else (~remove).astype(float)
        )
        kept = apply_limits(group, ~remove, group_scores, min_units, round_to)
        if len(kept) < group.num_units:
            plan[group.index] = kept
    return plan


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
        self._units_lib = units_lib
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


def unreachable_message(
    final, total, kept_fraction, metric, min_units=1, round_to=None
):
    """The first sentence of the error for a target out of reach, shared by
    `prune_model(target=...)` and `GuidedPruning(target=...)`: what was
    asked (`kept_fraction` of `total`) and what removing every unit the
    limits allow keeps (`final`)."""
    limits = f"min_units={min_units}"
    if round_to:
        limits += f" and round_to={round_to}"
    share = f"{final / total:.1%}" if total else "all of it"
    if share == f"{kept_fraction:.1%}":
        share = f"{final / total:.3%}"
    return (
        f"Cannot keep only {kept_fraction:.0%} of the {metric}: removing "
        f"every prunable unit allowed by {limits} keeps {share}."
    )


def unreachable(
    plan,
    final,
    total,
    kept_fraction,
    metric,
    min_units,
    round_to,
    unrounded,
    stacklevel=4,
):
    """`plan` with a warning when only rounding missed the goal; raises
    otherwise."""
    message = unreachable_message(
        final, total, kept_fraction, metric, min_units, round_to
    )
    if unrounded:
        # Only the rounding stands in the way: the user asked for it.
        warnings.warn(
            message + " Returning the smallest plan with kept counts "
            "rounded up; lower `round_to` to get closer to the target.",
            stacklevel=stacklevel,
        )
        return plan
    raise ValueError(
        message + " Raise the target, lower `min_units`, or make more "
        "groups prunable."
    )
