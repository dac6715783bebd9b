"""What `GuidedPruning.on_train_begin` builds for a `fit`.

Once per model (and again when its weights or optimizer change, as
`cache_key` tells): the `GroupPlan` of the units `prune_model` removes,
read from the graph analysis (`group_plan`), and the `StepRunner` that
compiles the proximal step for it, with the unit-weight variable it reads
(`step_runner`); the same model reuses both, so no `fit` retraces. Once
per `fit`: the `LiveMetrics` that price the live network (`live_metrics`),
the penalty of `mode="penalty"` (`attach_penalty`), and whether the step
runs inside the compiled train step (`runs_in_step`). The callback keeps
what these return and resets its own state around them.
"""

import warnings

import keras
import numpy as np

from keras_guided import _keras_adapter as adapter
from keras_guided import graph
from keras_guided.callbacks import _group_plan
from keras_guided.callbacks import _live_metrics
from keras_guided.callbacks import _penalty_mode
from keras_guided.callbacks import _step_runner


def cache_key(model):
    """What the plan and compiled step of `model` depend on: the model,
    its weights and their shapes, which are trainable, its optimizer."""
    return (
        id(model),
        tuple((id(v), tuple(v.shape)) for v in model.weights),
        tuple(id(v) for v in model.trainable_weights),
        id(model.optimizer),
    )


def group_plan(network, on_unsupported):
    """The `GroupPlan` of `network`'s prunable unit groups; warns when it
    has none (the callback then only logs live-unit counts)."""
    analysis = graph.analyze(network, on_unsupported=on_unsupported)
    groups = analysis.groups
    # Only what prune_model(model) removes is penalized and counted.
    plan = _group_plan.GroupPlan(
        groups, network, removable=analysis.removable_when_dead
    )
    if not plan.groups:
        reasons = sorted(
            {str(g.reason) for g in groups if not g.prunable}
            | {str(analysis.inexact_groups[g.index])
               for g, why in plan.fixed if why != "frozen"}
            | {"frozen" for _, why in plan.fixed if why == "frozen"}
        )
        warnings.warn(
            f"GuidedPruning found no prunable unit group in model "
            f"'{network.name}' (reasons: {reasons}); it only logs "
            "live-unit counts. Only hidden units can be pruned (the "
            "model outputs are protected).",
            stacklevel=3,
        )
    return plan


def step_runner(model, plan, strength, guarded, keep_dead):
    """A `StepRunner` for `plan` on `model`, reading the callback's
    `strength` variable and a new unit-weight variable
    (`runner.unit_weights`)."""
    per_unit = np.zeros(plan.num_segments, dtype="float32")
    unit_weights = _state(per_unit, "guided_unit_weights")
    return _step_runner.StepRunner(
        model, plan, strength, unit_weights,
        guarded=guarded, keep_dead=keep_dead,
    )


def live_metrics(plan, network, latency_table):
    """The `LiveMetrics` of this `fit`, pricing latency with the
    `latency_table` (checked against `network`) where there is one."""
    prices = None
    if latency_table is not None:
        latency_table.check_model(network)
        prices = {"latency": latency_table.price}
    return _live_metrics.LiveMetrics(plan, network, prices)


def attach_penalty(model, plan, runner, mode):
    """The `PenaltyMode` attached to `model` for this `fit` in
    `mode="penalty"` (`None` in proximal mode or without variables).

    Raises:
        ValueError: penalty mode through `keras.distillation.Distiller`.
    """
    if mode == "penalty" and isinstance(
        model, keras.distillation.Distiller
    ):
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
        and not (mode == "penalty"
                 and keras.backend.backend() == "jax")
    )


def _state(value, name):
    """A float32 state variable of the callback (not trained)."""
    return keras.Variable(value, trainable=False, dtype="float32", name=name)
