"""Unit importance over groups, and plans of kept units.

A *plan* is a dict `{group index: sorted int array of kept unit indices}`;
groups missing from it keep all their units. `prune_model` turns a
threshold, a target or nothing (dead units only) into a plan here.

Importance of a unit is the group norm of every weight tied to it,
sqrt(sum of w**2 over its producer and follower slices), divided by the
square root of the number of those weights when `normalize=True` (a root
mean square), so units of wide and narrow layers compare fairly.
"""

import math

import numpy as np
from keras import ops

METRICS = ("units", "params", "flops")


def weight_value(layer, name):
    """The numpy value of the variable `name` of `layer`."""
    from keras_guided import units as units_lib

    return ops.convert_to_numpy(units_lib.get_weight(layer, name).value)


def gather_units(array, axis, positions):
    """Returns `(num_units, n)`: each row holds every entry of one unit.

    Args:
        array: numpy array of a weight.
        axis: the unit axis (int, or contiguous tuple flattened row-major).
        positions: int array `(num_units, k)` of positions along `axis`.
    """
    array = np.asarray(array)
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    axes = sorted(a % array.ndim for a in axes)
    rest = [a for a in range(array.ndim) if a not in axes]
    moved = np.transpose(array, axes + rest)
    length = int(np.prod([array.shape[a] for a in axes]))
    moved = moved.reshape(length, -1)
    picked = moved[np.asarray(positions, dtype=np.int64)]
    return picked.reshape(picked.shape[0], -1)


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
            if value.ndim < 2:
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


def check_limits(min_units, round_to):
    """Validates `min_units` and `round_to`.

    Raises:
        ValueError: if `min_units` is not a positive int, or `round_to` is
            neither `None` nor a positive int.
    """
    if not isinstance(min_units, (int, np.integer)) or min_units < 1:
        raise ValueError(
            "`min_units` must be a positive int (never a zero-width layer). "
            f"Received: min_units={min_units!r}"
        )
    if round_to is not None and (
        not isinstance(round_to, (int, np.integer)) or round_to < 1
    ):
        raise ValueError(
            "`round_to` must be None or a positive int. "
            f"Received: round_to={round_to!r}"
        )


def _apply_limits(group, keep_mask, scores, min_units, round_to):
    """Raises the kept count to `min_units` and a multiple of `round_to`."""
    count = int(keep_mask.sum())
    wanted = max(count, min(min_units, group.num_units))
    if round_to:
        wanted = min(group.num_units, math.ceil(wanted / round_to) * round_to)
    if wanted > count:
        order = np.argsort(-scores, kind="stable")
        extra = [u for u in order if not keep_mask[u]][: wanted - count]
        keep_mask = keep_mask.copy()
        keep_mask[extra] = True
    return np.flatnonzero(keep_mask)


def plan_from_mask(groups, remove_masks, scores=None, min_units=1,
                   round_to=None):
    """A plan removing the units marked in `remove_masks` (within limits).

    Non-prunable groups and groups with nothing removed are left out.
    """
    check_limits(min_units, round_to)
    plan = {}
    for group, remove in zip(groups, remove_masks):
        if not group.prunable or not np.any(remove):
            continue
        group_scores = (
            scores[group.index] if scores is not None
            else (~remove).astype(float)
        )
        kept = _apply_limits(group, ~remove, group_scores, min_units,
                             round_to)
        if len(kept) < group.num_units:
            plan[group.index] = kept
    return plan


def plan_from_threshold(groups, threshold, scores=None, min_units=1,
                        round_to=None):
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
            "a dict with one key in ('units', 'params', 'flops'), e.g. "
            f"{{'flops': 0.5}} to keep half of the FLOPs. "
            f"Received: target={target!r}"
        )
    return metric, float(fraction)


def unit_costs(groups, model, metric):
    """Cost of each unit (its share of params or FLOPs), one array a group."""
    if metric == "units":
        return [np.ones(g.num_units) for g in groups]
    flops = _layer_flops(model) if metric == "flops" else {}
    costs = []
    for group in groups:
        cost = np.zeros(group.num_units)
        for slice_ in group.slices:
            value = weight_value(slice_.layer, slice_.weight)
            axes = slice_.axis if isinstance(slice_.axis, tuple) else (
                slice_.axis,)
            length = int(np.prod([value.shape[a] for a in axes]))
            k = slice_.positions.shape[1]
            if metric == "params":
                cost += k * (value.size // length)
            elif value.ndim >= 2:
                cost += flops.get(id(slice_.layer), 0) * k / length
        costs.append(cost)
    return costs


def _layer_flops(model):
    from keras_guided import stats

    costs = stats.layer_costs(model)
    by_layer = {}

    def visit(container, prefix):
        for layer in container.layers:
            name = prefix + layer.name
            if hasattr(layer, "layers") and layer.layers:
                visit(layer, name + "/")
            elif name in costs:
                by_layer[id(layer)] = costs[name]["flops"]

    visit(model, "")
    return by_layer


def plan_from_target(groups, model, target, scores=None, min_units=1,
                     round_to=None, relative=True):
    """A plan removing the least important units until `target` is met.

    `target` is what the model keeps at most (the value to reach), as in
    `GuidedPruning(target=...)`. Dead units (score 0) are always removed,
    even when that leaves less than the target.

    Units are ranked over all prunable groups together. With
    `relative=True` a unit's score is divided by the mean score of its
    group first, so layers whose weights have a different scale (fan-in,
    initializer) are not emptied wholesale.

    Args:
        groups: `UnitGroup`s of `model`.
        model: the model (for params and FLOPs totals).
        target: fraction to keep: a float (of the units of prunable
            groups), or `{"params": f}` / `{"flops": f}` (of the model's).
        scores: per-group unit scores; defaults to `unit_scores(groups)`
            with dead units at 0.
        min_units: fewest units kept per group. Defaults to 1.
        round_to: kept counts rounded up to a multiple. Defaults to `None`.
        relative: rank units by their score relative to their group's
            mean. Defaults to `True`.

    Returns:
        A plan `{group index: kept unit indices}`.

    Raises:
        ValueError: for a bad `target`, or one that cannot be reached
            within `min_units`.

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
    metric, kept_fraction = parse_target(target)
    fraction = 1.0 - kept_fraction
    scores = default_scores(groups) if scores is None else scores
    costs = unit_costs(groups, model, metric)
    if metric == "units":
        total = sum(g.num_units for g in groups if g.prunable)
    else:
        from keras_guided import stats

        total = (stats.count_params(model) if metric == "params"
                 else stats.count_flops(model))
    goal = fraction * total
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
        g.index: max(0, g.num_units - min(min_units, g.num_units))
        for g in groups if g.prunable
    }
    masks = [np.zeros(g.num_units, dtype=bool) for g in groups]
    removed = 0.0
    for score, index, unit in candidates:
        # Dead units (score 0) cost nothing to remove: they always go, even
        # past the target, which is an upper bound on what is kept.
        if removed >= goal and score > 0:
            break
        if removable[index] == 0:
            continue
        masks[index][unit] = True
        removable[index] -= 1
        removed += costs[index][unit]
    if removed < goal and goal > 0:
        raise ValueError(
            f"Cannot keep only {kept_fraction:.0%} of the {metric}: removing "
            f"every prunable unit allowed by min_units={min_units} keeps "
            f"{1 - removed / total:.1%}. Raise the target, lower "
            "`min_units`, or make more groups prunable."
        )
    return plan_from_mask(groups, masks, scores, min_units, round_to)
