"""Unit importance over groups, and plans of kept units.

A *plan* is a dict `{group index: sorted int array of kept unit indices}`;
groups missing from it keep all their units. `prune_model` turns a
threshold, a target or nothing (dead units only) into a plan here.

Importance of a unit is the group norm of every weight tied to it,
sqrt(sum of w**2 over its producer and follower slices), divided by the
square root of the number of those weights when `normalize=True` (a root
mean square), so units of wide and narrow layers compare fairly.

The exact kept cost (`KeptCost`), the limits (`check_limits`,
`floor_units`), `plan_from_mask`, `plan_cost`, `protect` and the
unreachable-target
message (`unreachable`, `unreachable_message`) live in `_plans`, below
both this module and the latency greedy (`keras_guided.latency._plan`) it
dispatches to; they are re-exported here.
"""

import copy

import numpy as np
from keras import ops

from keras_guided import budget as budget_lib
from keras_guided import stats
from keras_guided import units as units_lib
from keras_guided._axes import gather_units
from keras_guided._plans import KeptCost
from keras_guided._plans import check_limits
from keras_guided._plans import floor_units
from keras_guided._plans import plan_cost
from keras_guided._plans import plan_from_mask
from keras_guided._plans import protect  # noqa: F401 (re-exported)
from keras_guided._plans import unreachable
from keras_guided._plans import unreachable_message  # noqa: F401
from keras_guided.latency import _plan as _latency_plan

METRICS = budget_lib.METRICS


def weight_value(layer, name):
    """The numpy value of the variable `name` of `layer`."""
    return ops.convert_to_numpy(units_lib.get_weight(layer, name).value)


def unit_scores(groups, normalize=True, include_consumers=False):
    """Importance of every unit of every group.

    Args:
        groups: `UnitGroup`s from `keras_guided.find_unit_groups`.
        normalize: divide each norm by sqrt(number of weights of the unit).
            Defaults to `True`.
        include_consumers: also count the consumers' input slices. Defaults
            to `False`.

    Returns:
        A list (one per group) of float arrays of length `num_units`.

    Examples:
        >>> import keras, keras_guided
        >>> model = keras.Sequential([keras.Input((2,)),
        ...     keras.layers.Dense(2, kernel_initializer="ones",
        ...                        bias_initializer="ones"),
        ...     keras.layers.Dense(1)])
        >>> groups = keras_guided.find_unit_groups(model)
        >>> keras_guided.scoring.unit_scores(groups)[0].tolist()
        [1.0, 1.0]
    """
    roles = {"producer", "follower"}
    if include_consumers:
        roles.add("consumer")
    scores = []
    for group in groups:
        squares = np.zeros(group.num_units)
        counts = np.zeros(group.num_units)
        for slice_ in group.slices:
            if slice_.role not in roles:
                continue
            rows = gather_units(
                weight_value(slice_.layer, slice_.weight),
                slice_.axis,
                slice_.positions,
            ).astype(np.float64)
            squares += np.sum(np.square(rows), axis=1)
            counts += rows.shape[1]
        norms = np.sqrt(squares)
        if normalize:
            norms = norms / np.sqrt(np.maximum(counts, 1))
        scores.append(norms)
    return scores


def dead_units(groups, tolerance=1e-8):
    """Units whose output does not depend on the input.

    A unit is dead when every input weight of its producers (kernel
    slices; biases excluded, they only add a constant that surgery folds
    into the consumers) is at most `tolerance` in absolute value.

    Args:
        groups: `UnitGroup`s.
        tolerance: largest |w| still counted as zero. Defaults to `1e-8`.

    Returns:
        A list (one per group) of boolean arrays of length `num_units`.

    Examples:
        >>> import keras, numpy as np, keras_guided
        >>> model = keras.Sequential([keras.Input((2,)),
        ...     keras.layers.Dense(2, kernel_initializer="zeros",
        ...                        bias_initializer="ones"),
        ...     keras.layers.Dense(1)])
        >>> groups = keras_guided.find_unit_groups(model)
        >>> [mask.tolist() for mask in keras_guided.scoring.dead_units(groups)]
        [[True, True], [False]]
    """
    masks = []
    for group in groups:
        dead = np.ones(group.num_units, dtype=bool)
        for slice_ in group.slices:
            if slice_.role != "producer":
                continue
            value = weight_value(slice_.layer, slice_.weight)
            if not units_lib.is_input_weight(slice_.weight, value.shape):
                continue  # a bias
            rows = gather_units(value, slice_.axis, slice_.positions)
            dead &= np.max(np.abs(rows), axis=1, initial=0.0) <= tolerance
        masks.append(dead)
    return masks


def default_scores(groups):
    """`unit_scores`, with 0 for dead units (removing them is exact)."""
    scores = unit_scores(groups)
    for group_scores, dead in zip(scores, dead_units(groups)):
        group_scores[dead] = 0.0
    return scores


def plan_from_threshold(
    groups, threshold, scores=None, min_units=1, round_to=None
):
    """A plan removing the units whose score is below `threshold`.

    Examples:
        >>> import keras, numpy as np, keras_guided
        >>> model = keras.Sequential([keras.Input((2,)),
        ...     keras.layers.Dense(3), keras.layers.Dense(1)])
        >>> groups = keras_guided.find_unit_groups(model)
        >>> scores = [np.array([0.5, 0.01, 2.0]), np.array([1.0])]
        >>> plan = keras_guided.scoring.plan_from_threshold(
        ...     groups, 0.1, scores=scores)
        >>> {k: v.tolist() for k, v in plan.items()}
        {0: [0, 2]}
    """
    if not isinstance(threshold, (int, float, np.floating)) or threshold < 0:
        raise ValueError(
            "`threshold` must be a non-negative float. "
            f"Received: threshold={threshold!r}"
        )
    scores = default_scores(groups) if scores is None else scores
    masks = [np.asarray(s) < threshold for s in scores]
    return plan_from_mask(groups, masks, scores, min_units, round_to)


def _target_count(target):
    """The count of a `{metric: int}` target (the grammar shared with
    `GuidedPruning(target=...)`: an int is a count, a float a fraction), or
    `None`."""
    if not isinstance(target, dict):
        return None
    try:
        _, amount = budget_lib.parse_budget(target)
    except ValueError:
        return None  # parse_target says what is wrong
    return amount if isinstance(amount, int) else None


def parse_target(target):
    """Returns `(metric, kept fraction)` from a float or a one-key dict.

    A target says what the pruned model keeps: `0.25` keeps a quarter of
    the prunable units, `{"flops": 0.5}` half of the FLOPs. The same meaning
    as `GuidedPruning(target=...)`: the value to reach.
    """
    if isinstance(target, dict) and len(target) == 1:
        metric, fraction = next(iter(target.items()))
    else:
        metric, fraction = "units", target
    valid = (
        metric in METRICS
        and isinstance(fraction, (int, float, np.floating))
        and not isinstance(fraction, bool)
        and 0 < fraction <= 1
    )
    if not valid:
        raise ValueError(
            "`target` must be the fraction to keep, a float in (0, 1], or "
            f"a dict with one key in {METRICS}, e.g. "
            f"{{'flops': 0.5}} to keep half of the FLOPs. "
            f"Received: target={target!r}"
        )
    return metric, float(fraction)


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


def plan_from_target(
    groups,
    model,
    target,
    scores=None,
    min_units=1,
    round_to=None,
    relative=True,
    shapes=None,
    latency_table=None,
):
    """A plan removing the least important units until `target` is met.

    `target` is what the model keeps at most (the value to reach), as in
    `GuidedPruning(target=...)`: units are removed until the exact kept
    cost (`KeptCost`) is at most the target, so the result is within one
    unit of it. Dead units (score 0) are always removed, even when that
    leaves less than the target.

    Units are ranked over all prunable groups together. With
    `relative=True` a unit's score is divided by the mean score of its
    group first, so layers whose weights have a different scale (fan-in,
    initializer) are not emptied wholesale. A `{"latency": ...}` target
    ranks units by score per millisecond its removal saves in the
    `latency_table` (a knapsack greedy, see `keras_guided.latency`), so
    the plan spends its cuts where the measured kernels are slow.

    Args:
        groups: `UnitGroup`s of `model`.
        model: the model (for params and FLOPs totals).
        target: what to keep: a float fraction (of the units of prunable
            groups), or a dict `{"units" | "params" | "flops" |
            "latency": amount}` with a float fraction or an int count (the
            grammar of `GuidedPruning(target=...)`; a latency count is in
            milliseconds).
        scores: per-group unit scores; defaults to `unit_scores(groups)`
            with dead units at 0.
        min_units: fewest units kept per group: an int count, or a float
            in (0, 1] for a share of each group. Defaults to 1.
        round_to: kept counts rounded up to a multiple. Defaults to `None`.
        relative: rank units by their score relative to their group's
            mean. Defaults to `True`.
        shapes: concrete tensor shapes for a variable-length model (see
            `stats.weight_costs`); FLOPs need them. Defaults to `None`.
        latency_table: the `keras_guided.latency.LatencyTable` of `model`;
            required by a latency target, refused otherwise. Defaults to
            `None`.

    Returns:
        A plan `{group index: kept unit indices}`.

    Raises:
        ValueError: for a bad `target`, or one that cannot be reached
            within `min_units`, a latency target without a table (or with
            the table of another model).

    Examples:
        >>> import keras, keras_guided
        >>> model = keras.Sequential([keras.Input((4,)),
        ...     keras.layers.Dense(8), keras.layers.Dense(6),
        ...     keras.layers.Dense(1)])
        >>> groups = keras_guided.find_unit_groups(model)
        >>> plan = keras_guided.scoring.plan_from_target(groups, model, 0.5)
        >>> sum(groups[i].num_units - len(kept) for i, kept in plan.items())
        7
    """
    check_limits(min_units, round_to)
    count = _target_count(target)
    if count is not None:
        target = {next(iter(target)): 1.0}
    metric, kept_fraction = parse_target(target)
    scores = default_scores(groups) if scores is None else scores
    if metric == "latency" or latency_table is not None:
        return _latency_plan.plan_for_latency(
            groups,
            model,
            metric,
            kept_fraction,
            count,
            scores,
            min_units,
            round_to,
            relative,
            shapes,
            latency_table,
        )
    if metric == "flops":
        stats.warn_unpriced_budget(
            model, stats.model_costs(model, shapes=shapes), stacklevel=3
        )
    cost = KeptCost(groups, model, metric, shapes=shapes)
    goal = kept_fraction * cost.total if count is None else float(count)
    candidates = []
    for group in groups:
        if not group.prunable:
            continue
        group_scores = np.asarray(scores[group.index], dtype=np.float64)
        if relative:
            mean = float(np.mean(group_scores))
            group_scores = group_scores / mean if mean > 0 else group_scores
        for unit in range(group.num_units):
            candidates.append((group_scores[unit], group.index, unit))
    candidates.sort()
    removable = {
        g.index: max(0, g.num_units - floor_units(min_units, g.num_units))
        for g in groups
        if g.prunable
    }
    masks = [np.zeros(g.num_units, dtype=bool) for g in groups]
    # What one unit of each group saves at most (savings only shrink as
    # more units go, and the units of a group own equal slices).
    bound = {g.index: cost.saving(g, 0) for g in groups if g.prunable}
    position = 0
    while True:
        # Remove units, least important first, until what is kept is at
        # most the goal. Dead units (score 0) cost nothing to remove: they
        # always go, even past the target.
        while position < len(candidates):
            score, index, unit = candidates[position]
            if cost.kept <= goal * (1 + 1e-12) and score > 0:
                break
            if (
                score > 0
                and removable[index]
                and (cost.kept - bound[index] < goal)
                and cost.kept - cost.saving(groups[index], unit) < goal
            ):
                # The last step: of the next few candidates that reach the
                # goal, take the one that overshoots it least (one costly
                # residual unit would otherwise land far below it).
                ahead = _finishing_candidate(
                    candidates, position, removable, groups, cost, goal
                )
                if ahead != position:
                    candidates.insert(position, candidates.pop(ahead))
                    score, index, unit = candidates[position]
            position += 1
            if removable[index] == 0:
                continue
            masks[index][unit] = True
            removable[index] -= 1
            cost.remove(groups[index], unit)
        plan = plan_from_mask(groups, masks, scores, min_units, round_to)
        if not round_to or position >= len(candidates):
            break
        # round_to may give units back: measure the plan, cut further.
        kept = plan_cost(groups, model, metric, shapes, plan)
        if kept <= goal * (1 + 1e-12):
            break
        cost.kept = kept
    # Without rounding, the plan removes exactly what `cost` removed.
    final = (
        plan_cost(groups, model, metric, shapes, plan)
        if round_to
        else cost.kept
    )
    if final <= goal * (1 + 1e-9) + 1e-9:
        return plan
    unrounded = (
        round_to
        and plan_cost(
            groups,
            model,
            metric,
            shapes,
            plan_from_mask(groups, masks, scores, min_units, None),
        )
        <= goal * (1 + 1e-9) + 1e-9
    )
    return unreachable(
        plan,
        final,
        cost.total,
        kept_fraction,
        metric,
        min_units,
        round_to,
        unrounded,
    )


_LOOK_AHEAD = 64


def _finishing_candidate(candidates, position, removable, groups, cost, goal):
    """Index of the candidate (among the next `_LOOK_AHEAD`) whose removal
    reaches `goal` keeping the most."""
    best, best_kept = position, -1.0
    for ahead in range(position, min(len(candidates), position + _LOOK_AHEAD)):
        _, index, unit = candidates[ahead]
        if not removable[index]:
            continue
        kept = cost.kept - cost.saving(groups[index], unit)
        if best_kept < kept <= goal * (1 + 1e-12):
            best, best_kept = ahead, kept
    return best
