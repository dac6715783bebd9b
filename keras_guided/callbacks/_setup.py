"""What `GuidedPruning.on_train_begin` builds for a `fit`.

Once per model (and again when its weights or optimizer change, as
`cache_key` tells): the `GroupPlan` of the units `prune_model` removes,
read from the graph analysis (`group_plan`), and the `StepRunner` that
compiles the proximal step for it, with the unit-weight variable it reads
(`step_runner`); the same model reuses both, so no `fit` retraces. The
callback then makes the `fit`'s `FitContext` (`_context`) of them, and
from it the parts of the `fit` (`fit_parts`): the `LiveMetrics` that
price and log the live network, the guidance `Coefficients`, the mode
that sets the strength each epoch (a `ScheduleMode`, or with a budget a
`BudgetMode`) and the penalty of `mode="penalty"`; and whether the step
runs inside the compiled train step (`runs_in_step`). Every part takes
the context (and the parts it builds on), never the callback.
"""

import warnings

import keras
import numpy as np

from keras_guided import _keras_adapter as adapter
from keras_guided import graph
from keras_guided import scoring
from keras_guided import validation
from keras_guided.callbacks import _group_plan
from keras_guided.callbacks import _live_metrics
from keras_guided.callbacks import _penalty_mode
from keras_guided.callbacks import _step_runner
from keras_guided.callbacks._budget_mode import BudgetMode
from keras_guided.callbacks._coefficients import Coefficients
from keras_guided.callbacks._context import FitParts
from keras_guided.callbacks._schedule_mode import ScheduleMode


def cache_key(model):
    """What the plan and compiled step of `model` depend on: the model,
    its weights and their shapes, which are trainable, its optimizer."""
    return (
        id(model),
        tuple((id(v), tuple(v.shape)) for v in model.weights),
        tuple(id(v) for v in model.trainable_weights),
        id(model.optimizer),
    )


def group_plan(
    network, on_unsupported, protected=(), uniform_blocks=False, scores=None
):
    """The `GroupPlan` of `network`'s prunable unit groups; warns when it
    has none (the callback then only logs live-unit counts).

    The groups of `protected` layers are left out, as `prune_model`
    leaves them whole. With `uniform_blocks`, the groups that play one
    part in repeated blocks are merged (`scoring.find_families`): unit `j`
    of a merged group is the `j`-th most important unit of every block, so
    the blocks lose units together and keep the same widths. Importance
    is `scores` (a `ScoreGuidance`'s, one array per unit group of
    `network`) when given, else the weight norms; the plan then holds the
    merged groups' scores (`GroupPlan.merged_scores`), which a
    `ScoreGuidance` ranks in place of its own.
    """
    validation.check_not_quantized(network, "GuidedPruning cannot train")
    analysis = graph.analyze(network, on_unsupported=on_unsupported)
    groups = analysis.groups
    scoring.protect(network, groups, protected)
    removable = analysis.removable_when_dead
    planned, copies = groups, None
    if uniform_blocks:
        families = [
            family
            for family in scoring.find_families(network, groups)
            if all(removable(groups[i]) for i in family.members)
        ]
        if scores is not None:
            _check_scores(scores, groups)
        merged = scoring.MergedGroups(
            groups,
            families,
            scoring.default_scores(groups) if scores is None else scores,
        )
        planned = merged.groups
        flags = [
            all(removable(groups[i]) for i in merged.members(index))
            for index in range(len(planned))
        ]
        copies = {
            index: len(merged.members(index)) for index in range(len(planned))
        }

        def removable(group):
            return flags[group.index]

    # Only what prune_model(model) removes is penalized and counted.
    plan = _group_plan.GroupPlan(
        planned, network, removable=removable, copies=copies
    )
    if uniform_blocks and scores is not None:
        plan.merged_scores = merged.scores
    if not plan.groups:
        reasons = sorted(
            {str(g.reason) for g in groups if not g.prunable}
            | {
                str(analysis.inexact_groups[g.index])
                for g in groups
                if g.prunable and g.index in analysis.inexact_groups
            }
            | {why for _, why in plan.fixed if why.startswith("frozen")}
        )
        warnings.warn(
            f"GuidedPruning found no prunable unit group in model "
            f"'{network.name}' (reasons: {reasons}); it only logs "
            "live-unit counts. Only hidden units can be pruned (the "
            "model outputs are protected).",
            stacklevel=3,
        )
    return plan


def _check_scores(scores, groups):
    """A `ScoreGuidance`'s scores against the unit groups of the model."""
    if len(scores) != len(groups) or any(
        len(values) != group.num_units for values, group in zip(scores, groups)
    ):
        raise ValueError(
            f"ScoreGuidance has scores for {len(scores)} unit groups of "
            f"sizes {[len(v) for v in scores][:8]}, but the model has "
            f"{len(groups)} groups of sizes "
            f"{[g.num_units for g in groups][:8]}. Compute the scores for "
            "this model with the `on_unsupported` that GuidedPruning gets."
        )


def step_runner(model, plan, strength, options):
    """A `StepRunner` for `plan` on `model`, reading the `strength`
    variable (the callback's, kept across its `fit`s) and a new
    unit-weight variable (`runner.unit_weights`), as the validated
    `options` ask: the death guard is on with a budget."""
    per_unit = np.zeros(plan.num_segments, dtype="float32")
    unit_weights = _state(per_unit, "guided_unit_weights")
    return _step_runner.StepRunner(
        model,
        plan,
        strength,
        unit_weights,
        guarded=options.budget is not None,
        keep_dead=options.keep_dead,
        penalty=options.mode == "penalty",
        proximal_every=options.proximal_every,
    )


def fit_parts(context):
    """The `FitParts` of the `fit` of a `FitContext`: its `LiveMetrics`,
    guidance `Coefficients`, mode (a `BudgetMode` with a budget target,
    else a `ScheduleMode`, both setting the strength through the context's
    runner) and, in `mode="penalty"`, the attached `PenaltyMode`.

    Raises:
        ValueError: a guidance dict naming layers that produce no prunable
            group, or penalty mode through `keras.distillation.Distiller`.
    """
    metrics = _live_metrics.LiveMetrics.for_fit(context)
    coefficients = Coefficients(context, metrics)
    if context.budget is None:
        mode = ScheduleMode(context, metrics)
    else:
        mode = BudgetMode(context, metrics, coefficients)
    return FitParts(
        metrics=metrics,
        coefficients=coefficients,
        mode=mode,
        penalty=_penalty_mode.attach_penalty(context),
    )


def runs_in_step(context):
    """Whether the step of the `fit` of a `FitContext` runs inside the
    compiled train step (the runner's optimizer hook) rather than from
    Python after each batch."""
    model, options = context.model, context.options
    # On JAX the penalty reads the strength and coefficients inside the
    # loss, where the carried optimizer state is not visible: penalty
    # mode keeps its step (re-zeroing dead units) between batches there.
    return (
        bool(context.plan.variables)
        and options.proximal_every == 1
        and adapter.supports_step_hook(model.optimizer)
        and not (options.mode == "penalty" and keras.backend.backend() == "jax")
    )


def _state(value, name):
    """A float32 state variable of the callback (not trained)."""
    return keras.Variable(value, trainable=False, dtype="float32", name=name)
