"""The count greedy: a units, params or FLOPs target into a plan.

Units are ranked over all prunable groups together, least important
first (relative to their group's mean score with `relative=True`), and
removed until the exact kept cost (`KeptCost`) is at most the goal; the
last step takes, of the next few candidates that reach the goal, the one
that overshoots it least. Dead units (score 0) always go. With `round_to`
the rounded plan is measured again and the greedy cuts further until it
holds.
"""

import numpy as np

from keras_guided import stats
from keras_guided.scoring._cost import KeptCost
from keras_guided.scoring._cost import plan_cost
from keras_guided.scoring._limits import floor_units
from keras_guided.scoring._limits import plan_from_mask
from keras_guided.scoring._limits import unreachable


def plan_for_count(inputs, target):
    """The plan keeping at most `target` (a `Target` of units, params or
    FLOPs) over `inputs` (`PlanInputs`); see the module doc."""
    groups, model, scores = inputs.groups, inputs.model, inputs.scores
    min_units, round_to = inputs.min_units, inputs.round_to
    metric, shapes = target.metric, inputs.shapes
    if metric == "flops":
        stats.warn_unpriced_budget(
            model, stats.model_costs(model, shapes=shapes), stacklevel=5
        )
    cost = KeptCost(groups, model, metric, shapes=shapes)
    goal = target.goal(cost.total)
    candidates = []
    for group in groups:
        if not group.prunable:
            continue
        group_scores = np.asarray(scores[group.index], dtype=np.float64)
        if inputs.relative:
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
        target.fraction,
        metric,
        min_units,
        round_to,
        unrounded,
        stacklevel=6,
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
