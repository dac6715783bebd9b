"""Step 2 of `prune_model`: the plan (kept units per group).

From the user (`plan`, checked in `_plan_checks`), a `threshold`, a
`target` (`keras_guided.scoring`, ranked by the weight norms or by the
user's `importance` scores; with `measure`, the closed latency loop
`scoring.plan_measured`, whose candidates are built by `apply_plan`), or
the dead units (default), with `uniform_blocks` the same widths in
repeated blocks (`scoring.find_families`)."""

import dataclasses

from keras_guided import scoring
from keras_guided.surgery._apply import apply_plan
from keras_guided.surgery._constants import ProbeNoise
from keras_guided.surgery._constants import propagate_constants
from keras_guided.surgery._constants import unfoldable_roots
from keras_guided.surgery._plan_checks import _validate_plan
from keras_guided.surgery._removal import Removal


@dataclasses.dataclass
class Chosen:
    """The plan `prune_model` applies.

    Attributes:
        plan: `{group index: kept unit indices}` of the pruned groups.
        latency_check: the `LatencyCheck` of the closed loop, or `None`.
        notes: the constants' notes of the dead-unit search.
    """

    plan: dict
    latency_check: object = None
    notes: list = dataclasses.field(default_factory=list)


def choose_plan(
    model,
    analysis,
    shapes,
    noise,
    families,
    *,
    threshold,
    plan,
    target,
    min_units,
    round_to,
    tolerance,
    latency_table,
    measure,
    latency_tolerance,
    max_tries,
    importance=None,
):
    """The `Chosen` plan of `prune_model`'s arguments (checked already)."""
    groups = analysis.groups
    scores = importance_scores(importance, groups)
    if plan is not None:
        return Chosen(_validate_plan(plan, groups, min_units, scores))
    if threshold is not None:
        return Chosen(
            scoring.plan_from_threshold(
                groups,
                threshold,
                scores=scores,
                min_units=min_units,
                round_to=round_to,
            )
        )
    if target is None:
        plan, notes = dead_plan(
            analysis, shapes, noise, tolerance, min_units, round_to
        )
        if families:
            plan = scoring.widen_families(
                plan, groups, families, scoring.default_scores(groups)
            )
        return Chosen(plan, notes=notes)
    if families:
        merged = scoring.MergedGroups(
            groups,
            families,
            scoring.default_scores(groups) if scores is None else scores,
        )
        return Chosen(
            merged.spread(
                scoring.plan_from_target(
                    merged.groups,
                    model,
                    target,
                    scores=merged.scores,
                    min_units=min_units,
                    round_to=round_to,
                    shapes=shapes,
                )
            )
        )

    if measure is None:
        return Chosen(
            scoring.plan_from_target(
                groups,
                model,
                target,
                scores=scores,
                min_units=min_units,
                round_to=round_to,
                shapes=shapes,
                latency_table=latency_table,
            )
        )
    plan, latency_check = scoring.plan_measured(
        scoring.PlanInputs(
            groups,
            model,
            scores=scores,
            min_units=min_units,
            round_to=round_to,
            shapes=shapes,
            latency_table=latency_table,
        ),
        target,
        scoring.LatencyLoop(
            # Each candidate with its own probe noise, as if pruned alone.
            lambda candidate: (
                apply_plan(analysis, candidate, shapes, ProbeNoise()).model
            ),
            measure,
            latency_tolerance,
            max_tries,
        ),
    )
    return Chosen(plan, latency_check=latency_check)


def importance_scores(importance, groups):
    """`prune_model(importance=...)` as checked per-group scores, or `None`
    (weight norms): a list of arrays, or a callable `groups -> scores`."""
    if importance is None:
        return None
    if callable(importance):
        importance = importance(groups)
    return scoring.check_scores(importance, groups, name="importance")


def dead_plan(analysis, shapes, noise, tolerance, min_units, round_to):
    """`(plan, notes)`: the dead units removed, except those whose channel
    is not constant where a consumer reads it (multiplied by a live
    broadcast gate), which cannot be folded; the notes of the constants'
    probes, in the order found."""
    groups = analysis.groups
    masks = scoring.dead_units(groups, tolerance=tolerance)
    for group, mask in zip(groups, masks):
        if not analysis.removable_when_dead(group):
            mask[:] = False
    notes = []
    for _ in range(3):
        plan = scoring.plan_from_mask(groups, masks, None, min_units, round_to)
        removal = Removal.of(analysis, plan)
        constants = propagate_constants(removal, shapes, noise)
        notes.extend(constants.notes)
        unfoldable = unfoldable_roots(removal, constants)
        if not unfoldable:
            return plan, notes
        for root in unfoldable:
            index, local = analysis.unit_location[root]
            masks[index][local] = False
    return plan, notes
