"""Limits and plans from masks: what every planner obeys.

A *plan* is a dict `{group index: sorted int array of kept unit indices}`;
groups missing from it keep all their units. Every planner of this package
(threshold, the count and latency greedies, a user's plan checked by
`prune_model`) obeys the same limits: `protected` layers' groups are not
prunable, a group never drops below `min_units` (`floor_units`), kept
counts are rounded up to `round_to` (`apply_limits`). A target out of
reach within them is refused with one message (`unreachable_message`),
shared by `prune_model(target=...)` and `GuidedPruning(target=...)`.
"""

import math
import warnings

import numpy as np

from keras_guided import _keras_adapter as adapter
from keras_guided import graph as graph_lib
from keras_guided import stats as stats_lib
from keras_guided.scoring._importance import default_scores


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
        for layer in graph_lib.all_layers(model)
        for sub in adapter.layer_tree(layer)
    } | {
        layer.name for _, layer, _ in stats_lib.iter_layers(model)
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
