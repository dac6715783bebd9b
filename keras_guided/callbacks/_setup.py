"""What `GuidedPruning.on_train_begin` builds for a `fit`.

Once per model (and again when its weights or optimizer change, as
`cache_key` tells): the `GroupPlan` of the units `prune_model` removes,
read from the graph analysis (`group_plan`), and the `StepRunner` that
compiles the proximal step for it, with the unit-weight variable it reads
(`step_runner`); the same model reuses both, so no `fit` retraces. Once
per `fit` (`fit_parts`): the `LiveMetrics` that price and log the live
network (`live_metrics`), the guidance `Coefficients`, and the mode that
sets the strength each epoch, a `ScheduleMode` or with a budget a
`BudgetMode` (`epoch_mode`); then the penalty of `mode="penalty"`
(`attach_penalty`), and whether the step runs inside the compiled train
step (`runs_in_step`). The callback keeps what
these return and resets its own state around them.

`options` is the callback's validated options: an `_options.Options`, or
the callback itself, which keeps each of its fields as an attribute.
"""

import warnings

import keras
import numpy as np

from keras_guided import _keras_adapter as adapter
from keras_guided import _uniform
from keras_guided import graph
from keras_guided import scoring
from keras_guided import validation
from keras_guided.callbacks import _group_plan
from keras_guided.callbacks import _live_metrics
from keras_guided.callbacks import _penalty_mode
from keras_guided.callbacks import _step_runner
from keras_guided.callbacks._budget_mode import BudgetMode
from keras_guided.callbacks._coefficients import Coefficients
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


def group_plan(network, on_unsupported, protected=(), uniform_blocks=False):
    """The `GroupPlan` of `network`'s prunable unit groups; warns when it
    has none (the callback then only logs live-unit counts).

    The groups of `protected` layers are left out, as `prune_model`
    leaves them whole. With `uniform_blocks`, the groups that play one
    part in repeated blocks are merged (`keras_guided._uniform`): unit `j`
    of a merged group is the `j`-th most important unit of every block, so
    the blocks lose units together and keep the same widths.
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
            for family in _uniform.find_families(network, groups)
            if all(removable(groups[i]) for i in family.members)
        ]
        merged = _uniform.MergedGroups(
            groups, families, scoring.default_scores(groups)
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


def step_runner(model, plan, strength, options):
    """A `StepRunner` for `plan` on `model`, reading the callback's
    `strength` variable and a new unit-weight variable
    (`runner.unit_weights`); the death guard is on with a budget."""
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


def fit_parts(options, plan, network, runner, values, params):
    """The `LiveMetrics`, `Coefficients` and mode (`epoch_mode`) of this
    `fit` of `network`, for the `plan` and `runner` of its model.

    Args:
        options: the callback's validated options.
        plan, runner: the `GroupPlan` and `StepRunner` of the model.
        network: the network pruned (a distiller's student).
        values: callable returning the plan variables as NumPy arrays.
        params: the callback's `params` (`"epochs"`, `"steps"`).

    Returns:
        `(metrics, coefficients, mode)`.
    """
    metrics = live_metrics(plan, network, options)
    coefficients = Coefficients(
        plan,
        metrics,
        options.guidance,
        options.cost,
        runner.unit_weights,
        options.adapt_every,
    )
    mode = epoch_mode(
        options,
        plan=plan,
        metrics=metrics,
        coefficients=coefficients,
        runner=runner,
        values=values,
        params=params,
    )
    return metrics, coefficients, mode


def live_metrics(plan, network, options):
    """The `LiveMetrics` of this `fit`, pricing latency with the
    options' `latency_table` (checked against `network`) where there is
    one.

    The epoch-end logs hold `live_params`, `live_flops` when FLOPs are the
    target metric, the cost or the budget's metric, and `live_latency`
    with a table."""
    budget_metric = options.budget[0] if options.budget else None
    metrics_used = (options.target_metric, options.cost, budget_metric)
    latency_table = options.latency_table
    prices = None
    logged = ["params"]
    if "flops" in metrics_used:
        logged.append("flops")
    if latency_table is not None:
        latency_table.check_model(network)
        prices = {"latency": latency_table.price}
        logged.append("latency")
    return _live_metrics.LiveMetrics(plan, network, prices, logged=logged)


def epoch_mode(options, *, plan, metrics, coefficients, runner, values, params):
    """The mode of this `fit`: a `BudgetMode` with a budget target, else a
    `ScheduleMode`, both setting the strength through `runner`.

    Args:
        options: the callback's validated options.
        plan, metrics, coefficients, runner: the `GroupPlan`,
            `LiveMetrics`, `Coefficients` and `StepRunner` of this `fit`.
        values: callable returning the plan variables as NumPy arrays.
        params: the callback's `params` (`"epochs"`, `"steps"`).
    """
    if options.budget is None:
        return ScheduleMode(
            options.schedule,
            options.base_strength,
            options.warmup_epochs,
            options.target,
            options.on_target,
            metric=options.target_metric,
            metrics=metrics,
            values=values,
            strength=runner.strength,
        )
    return BudgetMode(
        options.budget,
        guidance=options.guidance,
        cost=options.cost,
        target_epochs=options.target_epochs,
        base_strength=options.base_strength,
        plan=plan,
        metrics=metrics,
        coefficients=coefficients,
        runner=runner,
        values=values,
        params=params,
        on_unreachable=options.on_unreachable,
    )


def attach_penalty(model, plan, runner, mode):
    """The `PenaltyMode` attached to `model` for this `fit` in
    `mode="penalty"` (`None` in proximal mode or without variables).

    Raises:
        ValueError: penalty mode through `keras.distillation.Distiller`.
    """
    if mode == "penalty" and isinstance(model, keras.distillation.Distiller):
        raise ValueError(
            "GuidedPruning(mode='penalty') cannot act through "
            "keras.distillation.Distiller: its loss leaves out the "
            "student's regularization losses, where the penalty lives, "
            "so the units would never shrink. Use mode='proximal' (the "
            "default), or train with keras_guided.Distiller, whose loss "
            "includes them."
        )
    if mode == "penalty" and plan.variables:
        return _penalty_mode.attach_penalty(
            model, plan, runner.unit_weights, runner.strength
        )
    return None


def runs_in_step(model, plan, mode, proximal_every):
    """Whether the step runs inside the compiled train step (the runner's
    optimizer hook) rather than from Python after each batch."""
    # On JAX the penalty reads the strength and coefficients inside the
    # loss, where the carried optimizer state is not visible: penalty
    # mode keeps its step (re-zeroing dead units) between batches there.
    return (
        bool(plan.variables)
        and proximal_every == 1
        and adapter.supports_step_hook(model.optimizer)
        and not (mode == "penalty" and keras.backend.backend() == "jax")
    )


def _state(value, name):
    """A float32 state variable of the callback (not trained)."""
    return keras.Variable(value, trainable=False, dtype="float32", name=name)
