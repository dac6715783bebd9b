"""`keras_guided.callbacks`: the `GuidedPruning` callback and its parts.

`GuidedPruning`, `trained_network` and the option constants (`MODES`,
`SCHEDULES`, `ON_TARGET`, ...) are public and live here; the parts are
private to this package: `_group_plan`, `_step_runner`, `_budget_mode`,
`_schedule_mode`, `_coefficients`, `_penalty_mode`, `_live_metrics`,
`_resume`.

`GuidedPruning`: guided group penalties on whole unit groups during `fit`.

A `GuidedRegularizer` sees one kernel. This callback sees the model: it
reads the unit groups of `keras_guided.graph.find_unit_groups` (a unit's
kernel slice, bias, BatchNormalization gamma/beta and the consumers' input
slices) and penalizes each group as one, with one guidance coefficient per
group unit.

The callback is a thin layer of hooks (`on_train_begin`, `on_epoch_begin`,
`on_train_batch_end`, `on_epoch_end`, `on_train_end`) and argument
validation that delegate to small objects it holds, each owning its own
state; each job lives in its own module:

* `keras_guided.proximal`: the pure proximal core,
  `shrink(values, state, ...) -> (values, state)` in `keras.ops`, with the
  budget's death guard; no Python loop over units.
* `_group_plan`: where each unit group's weights are, as int
  index arrays built once per model (one `segment_sum` and one gather per
  weight slice).
* `_step_runner`: `StepRunner` (one per plan and model, with
  the step's state: dead mask and death guard) runs the step inside the
  compiled train step, right after the optimizer's update, for the
  duration of `fit` (TensorFlow and JAX, through the optimizer hook of
  `keras_guided._keras_adapter`, the one module that touches Keras
  internals), else from Python after each batch.
* `keras_guided.schedules`: strength schedules as small callables.
* `_budget_mode`: `BudgetMode` (one per `fit` with a budget
  target), the budget recipe (controller check points, landing,
  importance guidance).
* `_coefficients`: `Coefficients` (one per `fit`), guidance
  coefficients, cost factors, adaptive ranking.
* `_penalty_mode`: `mode="penalty"`, a `PenaltyMode` that
  borrows one variable's `regularizer` for the group penalty during
  `fit`.
* `_live_metrics`: live units and the live network's cost.

No Python runs per batch in the proximal mode on TensorFlow and JAX; the
budget controller reads the small state vectors (dead mask, held units) at
its check points, about ten times per epoch.
"""

import math
import warnings

import keras
import numpy as np
from keras import ops

from keras_guided import _keras_adapter as adapter
from keras_guided import budget as budget_lib
from keras_guided import distill as distill_lib
from keras_guided import guidance as guidance_lib
from keras_guided import proximal
from keras_guided import regularizers as regularizers_lib
from keras_guided.callbacks import _group_plan
from keras_guided.callbacks import _live_metrics
from keras_guided.callbacks import _penalty_mode
from keras_guided.callbacks import _resume
from keras_guided.callbacks import _step_runner
from keras_guided.callbacks._budget_mode import BudgetMode
from keras_guided.callbacks._coefficients import Coefficients
from keras_guided.callbacks._schedule_mode import ScheduleMode

MODES = ("proximal", "penalty")
SCHEDULES = ("constant", "warmup", "ramp", "budget")
COSTS = ("params", "flops", "latency")
TARGET_METRICS = ("units", "params", "flops", "latency")
ON_TARGET = ("hold", "release", "stop")
ON_UNREACHABLE = ("raise", "warn")


def _check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {list(choices)}. "
            f"Received: {name}={value!r}"
        )
    return value


class GuidedPruning(keras.callbacks.Callback):
    """Applies guided group penalties to whole unit groups during `fit`.

    Two recipes. With a budget, `GuidedPruning(target={"flops": 0.5})`
    (or `{"units": 66}`, `{"params": 0.25}`, `{"latency": ...}`), a
    controller steers the strength so that the live network follows a
    cubic path down to the budget in the first `target_epochs`, lands on it
    (zeroing the units the penalty would take next) and releases the
    strength for the remaining epochs; `keras_guided.prune_model(model)`
    then removes exactly the dead units, so the final `live_flops` and
    `live_params` are what the pruned model has. Without one, the strength
    follows `schedule`, and an optional threshold `target` holds, releases
    or stops (`on_target`).

    Each unit group (a unit's kernel slice and bias, the BatchNormalization
    gamma and beta after it, the consumers' input slices) is penalized as
    one: `penalty = strength * sum_u g_u * sqrt(p_u) * ||W_u||_2`, with
    `g_u` the guidance coefficient and `p_u` the count of penalized
    weights. `mode="proximal"` (default) takes a group soft-thresholding
    step after every optimizer step, so units reach exact zero (with Adam
    too); `mode="penalty"` adds the penalty to the loss. Dead units stay
    dead. At every epoch end `logs` receive `live_units`,
    `live_units/<layer>`, `live_params`, `live_flops` (FLOPs budgets and
    costs), `guided_strength` and `guided_penalty`. `fit` on a distiller
    (`keras_guided.Distiller`, `keras.distillation.Distiller`) prunes its
    student. The state rides in the model's weights files, so
    `keras.callbacks.BackupAndRestore` (listed after this callback)
    resumes a run as if uninterrupted.

    How each part works (the budget controller and its guard, importance
    guidance and its floors, adaptive and cost-aware guidance, choosing a
    strength, resuming, backends and distribution) is in
    [Concepts: how GuidedPruning works](concepts.md#how-guidedpruning-works).

    Args:
        strength: non-negative float, the penalty weight. Defaults to
            `None`: `1e-3`, or with a budget target, calibrated at the start
            of `fit` (a given value is then the controller's start).
        guidance: `"importance"` (budget targets only), `"linear"`,
            `"exponential"`, `"uniform"`, a
            `keras_guided.guidance.Guidance`, a dict `{layer_name: scheme or
            coefficients}` (groups produced by unnamed layers are not
            penalized), or `"from_regularizers"` (coefficients of the
            `GuidedRegularizer` on each group's producer kernel; groups
            without one are not penalized). Defaults to `None`:
            `"importance"` with a budget target, else `"linear"`.
        mode: `"proximal"` or `"penalty"`. Defaults to `"proximal"`.
        schedule: `"budget"`, `"constant"`, `"warmup"`, `"ramp"` or a
            callable `epoch -> strength`. Defaults to `None`: `"budget"`
            with a dict `target`, else `"constant"`. With another schedule
            a dict `target` is only a threshold (see `on_target`).
        warmup_epochs: positive int, length of the `"warmup"` schedule.
            Defaults to `5`.
        cost: `None`, `"params"`, `"flops"` or `"latency"` (priced by
            `latency_table`). Defaults to `None`.
        adapt_every: `None` or a positive int (epochs). Defaults to `None`.
        keep_dead: whether dead units are kept at zero. Defaults to `True`.
        target: `None` or a budget in the grammar shared with
            `prune_model`: a dict with one key, `"units"`, `"params"`,
            `"flops"` or `"latency"` (needs `latency_table`), and a
            fraction to keep (float in `(0, 1]`) or a count (int; ms for
            latency). The older forms, a float fraction or an int count
            of `target_metric`, still work as thresholds and warn
            (deprecated). Defaults to `None`.
        target_metric: for the deprecated numeric `target`: `"units"`,
            `"params"`, `"flops"` or `"latency"`. Defaults to `"units"`.
        on_target: what to do once the target is reached: `"hold"` keeps the
            strength at its current value, `"release"` sets it to 0 (dead
            units stay dead, the rest fine-tunes), `"stop"` stops training.
            Defaults to `"hold"`.
        proximal_every: positive int. Take the proximal step every this
            many optimizer steps, with the shrinkage of all of them (a
            coarser step for less overhead; the last step of an epoch always
            takes it). Defaults to `1`.
        on_unsupported: passed to `keras_guided.graph.find_unit_groups`.
            Defaults to `"raise"`.
        target_epochs: positive int, the epochs of the path to a budget
            target (counted from the start of `fit`). Defaults to `None`:
            two thirds of the `fit` epochs.
        latency_table: a `keras_guided.latency.LatencyTable` of the model
            (`keras_guided.latency.build_latency_table`), required by a
            latency target or `cost="latency"` and refused without one
            (an error, not a warning: a table that prices nothing is a
            mistake). The live network is priced as `prune_model` prices a
            latency target: a measured layer at the table's prediction for
            its kept channels, any other layer at its kept FLOPs times the
            table's ms per FLOP; the logs then hold `live_latency` (ms).
            The table is checked against the model at the start of `fit`.
            The callback is not serialized (it has no `get_config`), so it
            holds the table by reference only. Defaults to `None`.
        on_unreachable: what to do when a budget target cannot be reached
            by the prunable groups: `"raise"` a `ValueError` before the
            first step, or `"warn"` and prune as close as they allow.
            Defaults to `"raise"`.

    Examples:
        >>> import keras, numpy as np, keras_guided
        >>> model = keras.Sequential([
        ...     keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
        ...     keras.layers.Dense(2)])
        >>> model.compile("sgd", "mse")
        >>> pruning = keras_guided.GuidedPruning(strength=1e-2)
        >>> history = model.fit(np.ones((8, 8)), np.zeros((8, 2)), epochs=2,
        ...                     verbose=0, callbacks=[pruning])
        >>> history.history["live_units"][-1] <= 16
        True

        The budget recipe: keep 4 of the 16 hidden units.

        >>> budgeted = keras_guided.GuidedPruning(target={"units": 4})
        >>> history = model.fit(np.ones((8, 8)), np.zeros((8, 2)), epochs=3,
        ...                     verbose=0, callbacks=[budgeted])
        >>> history.history["live_units"][-1]
        4

        A latency budget (the table here is built with LiteRT timings):

        >>> table = keras_guided.latency.build_latency_table(
        ...     model, verbose=0)  # doctest: +SKIP
        >>> fast = keras_guided.GuidedPruning(
        ...     target={"latency": 0.5}, latency_table=table)  # doctest: +SKIP

    Raises:
        ValueError: for invalid arguments, a latency target or cost without
            `latency_table` (or a table without one), or (at the start of
            `fit`) a budget out of reach, a `latency_table` of another
            model or a guidance dict naming layers that produce no
            prunable group.

    References:
        Rafid & Sandu, "Neural Network Reduction with Guided Regularizers",
        arXiv:2305.18448, 2023. Zhu & Gupta, "To prune, or not to prune",
        2017 (the cubic path). Li et al., "Pruning Filters for Efficient
        ConvNets", ICLR 2017 (magnitude importance). Yuan & Lin, "Model
        selection and estimation in regression with grouped variables",
        2006 (group lasso).
    """

    def __init__(self, strength=None, guidance=None, mode="proximal",
                 schedule=None, warmup_epochs=5, cost=None,
                 adapt_every=None, keep_dead=True, target=None,
                 target_metric="units", on_target="hold",
                 proximal_every=1, on_unsupported="raise",
                 target_epochs=None, latency_table=None,
                 on_unreachable="raise"):
        super().__init__()
        self.mode = _check_choice(mode, "mode", MODES)
        if schedule is not None and not callable(schedule):
            _check_choice(schedule, "schedule", SCHEDULES)
        self.budget = None
        if isinstance(target, dict) and schedule in (None, "budget"):
            self.budget = budget_lib.parse_budget(target)
            schedule = "budget"
            target = None
        elif isinstance(target, dict):
            target_metric, target = budget_lib.parse_budget(target)
            if isinstance(target, float) and target >= 1.0:
                target = None  # keep everything: nothing to reach
        elif target is not None:
            warnings.warn(
                "GuidedPruning(target=<number>, target_metric=...) is "
                "deprecated: pass the one target grammar shared with "
                "prune_model, e.g. target={'units': 66} or "
                "{'flops': 0.1}, which also turns on the budget "
                "controller.",
                DeprecationWarning,
                stacklevel=2,
            )
        if schedule == "budget":
            if self.budget is None:
                raise ValueError(
                    "schedule='budget' needs a target to land on, e.g. "
                    "target={'flops': 0.1}. Received: target=None"
                )
            if mode != "proximal":
                raise ValueError(
                    "A budget target needs mode='proximal' (the budget is "
                    "reached by units that are exactly zero). "
                    f"Received: mode={mode!r}"
                )
        elif schedule is None:
            schedule = "constant"
        self.schedule = schedule
        if strength is None:
            # In budget mode the strength is calibrated at the start of fit.
            strength = None if self.budget else 1e-3
        if strength is not None:
            strength = regularizers_lib.validate_strength(strength)
        self.base_strength = strength
        if target_epochs is not None:
            target_epochs = _positive_int(target_epochs, "target_epochs")
        self.target_epochs = target_epochs
        if guidance is None:
            guidance = "importance" if self.budget else "linear"
        if guidance == "importance" and self.budget is None:
            raise ValueError(
                "guidance='importance' needs a budget to know which units "
                "to spare: pass target={'units': ...}, {'params': ...} or "
                "{'flops': ...}. Received: target=None"
            )
        self.guidance = _validate_guidance(guidance)
        self.warmup_epochs = _positive_int(warmup_epochs, "warmup_epochs")
        if cost is not None:
            _check_choice(cost, "cost", COSTS)
        self.cost = cost
        self.proximal_every = _positive_int(proximal_every, "proximal_every")
        if adapt_every is not None:
            adapt_every = _positive_int(adapt_every, "adapt_every")
        self.adapt_every = adapt_every
        if not isinstance(keep_dead, bool):
            raise ValueError(
                f"`keep_dead` must be True or False. "
                f"Received: keep_dead={keep_dead!r}"
            )
        self.keep_dead = keep_dead
        self.target = _validate_target(target)
        self.target_metric = _check_choice(
            target_metric, "target_metric", TARGET_METRICS
        )
        self.on_target = _check_choice(on_target, "on_target", ON_TARGET)
        self.latency_table = _check_latency_table(
            latency_table, self.budget, self.target, self.target_metric,
            cost,
        )
        self.on_unsupported = on_unsupported
        self.on_unreachable = _check_choice(
            on_unreachable, "on_unreachable", ON_UNREACHABLE
        )
        self._strength = keras.Variable(
            0.0, dtype="float32", trainable=False, name="guided_strength"
        )
        self._plan = None
        self._cache_key = None
        self._penalty = None
        self._runner = None
        self._in_step = False
        self._budget = None
        self._metrics = None
        self._coefficients = None
        self._restored = None  # (header, arrays) read with the weights
        self._epochs_done = 0
        self.budget_report = None

    # ------------------------------------------------------------ state

    @property
    def strength(self):
        """The strength in effect now (a Python float)."""
        self._sync()
        return float(ops.convert_to_numpy(self._strength.value))

    @property
    def groups(self):
        """The prunable unit groups of the current `fit` (empty before)."""
        return [] if self._plan is None else list(self._plan.groups)

    @property
    def unit_coefficients(self):
        """Coefficients `g_u` in effect, one array per prunable group.

        They include adaptive re-ranking and the cost factor; the empty list
        before the first `fit`.
        """
        if self._plan is None:
            return []
        return [np.array(c) for c in self._coefficients.current]

    def set_model(self, model):
        super().set_model(model)
        # Before any on_train_begin, so that BackupAndRestore's restore
        # finds where to put the state, whatever the callback order.
        adapter.attach_saved_state(
            model, _resume.ATTRIBUTE, self._export_state, self._import_state
        )

    def on_train_begin(self, logs=None):
        model = self.model
        # The units pruned are the network's: a distiller's student.
        network = trained_network(model)
        key = (
            id(model),
            tuple((id(v), tuple(v.shape)) for v in model.weights),
            tuple(id(v) for v in model.trainable_weights),
            id(model.optimizer),
        )
        if self._runner is not None and self._runner.hooked:
            # A previous fit raised before on_train_end: take its step hook
            # and penalty off first so that they do not act twice.
            self._runner.remove_hook()
        if self._penalty is not None:
            self._penalty.detach()
        if self._plan is None or key != self._cache_key:
            # New model (or new weights): read the groups and compile the
            # step again. Same model: reuse both (no retracing per fit).
            from keras_guided import graph

            analysis = graph.analyze(
                network, on_unsupported=self.on_unsupported
            )
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
                    stacklevel=2,
                )
            self._plan = plan
            self._cache_key = key
            per_unit = np.zeros(plan.num_segments, dtype="float32")
            self._unit_weights = _state(per_unit, "guided_unit_weights")
            self._runner = _step_runner.StepRunner(
                model, plan, self._strength, self._unit_weights,
                guarded=self.budget is not None, keep_dead=self.keep_dead,
            )
        plan = self._plan
        prices = None
        if self.latency_table is not None:
            self.latency_table.check_model(network)
            prices = {"latency": self.latency_table.price}
        self._metrics = _live_metrics.LiveMetrics(plan, network, prices)
        self._coefficients = Coefficients(
            plan, self._metrics, self.guidance, self.cost, self._unit_weights
        )
        self._runner.reset()
        self._known_dead = False
        self._strength.assign(0.0)
        self._first_epoch = True
        self._schedule = ScheduleMode(
            self.schedule, self.base_strength, self.warmup_epochs,
            self.target, self.on_target,
        )
        self._epochs_done = 0
        self._last_batch = -1
        self._pending = 0
        self._penalty = None
        self._budget = None
        self.budget_report = None
        if self.mode == "penalty" and isinstance(
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
        if self.mode == "penalty" and plan.variables:
            self._penalty = _penalty_mode.attach_penalty(
                model, plan, self._unit_weights, self._strength
            )
        # On JAX the penalty reads the strength and coefficients inside the
        # loss, where the carried optimizer state is not visible: penalty
        # mode keeps its step (re-zeroing dead units) between batches there.
        self._in_step = (
            bool(plan.variables)
            and self.proximal_every == 1
            and adapter.supports_step_hook(model.optimizer)
            and not (self.mode == "penalty"
                     and keras.backend.backend() == "jax")
        )
        if self._in_step:
            self._runner.install_hook(penalty=self.mode == "penalty")

    def on_train_end(self, logs=None):
        if self._runner is not None and self._runner.hooked:
            self._runner.remove_hook()
        if self._penalty is not None:
            self._penalty.detach()
            self._penalty = None

    def on_epoch_begin(self, epoch, logs=None):
        plan = self._plan
        if plan is None:
            return
        self._last_batch = -1
        self._pending = 0
        self._epochs_done = epoch
        first = self._first_epoch
        if first:
            self._first_epoch = False
            # A resumed run goes on with the state saved with the weights.
            first = not self._resume(epoch)
        if first or self.mode == "penalty":
            # Between fits the weights decide which units are dead; in
            # penalty mode zeros are only looked for at epoch boundaries,
            # to keep the training loop free of syncs.
            self._sync_dead_from_weights()
        if first:
            self._schedule.start(self._measure(self.target_metric))
        adapted = self.adapt_every is not None and (
            first or epoch % self.adapt_every == 0
        )
        if adapted:
            self._coefficients.adapt(self._values())
        if self.budget is not None:
            if first:
                self._budget = self._budget_mode()
                try:
                    self._budget.start(epoch, self.params)
                except ValueError:
                    self.on_train_end()  # a budget out of reach: unhook
                    raise
                self.budget_report = self._budget.report
            else:
                self._budget.begin_epoch(epoch)
            self._strength.assign(self._budget.controller.strength)
            return
        value = self._schedule.strength(epoch)
        changed = np.float32(value) != np.float32(self.strength)
        self._strength.assign(value)
        if (changed or adapted) and self._penalty is not None and (
            keras.backend.backend() == "jax"
        ):
            # JAX freezes variables outside the model state into the
            # compiled step: rebuild it so the new strength is read.
            self.model.make_train_function(force=True)

    def on_train_batch_end(self, batch, logs=None):
        plan = self._plan
        if plan is None or not plan.variables:
            return
        epoch_steps = (self.params or {}).get("steps")
        if not self._in_step:
            self._pending += max(int(batch) - self._last_batch, 1)
            self._last_batch = int(batch)
            last = epoch_steps is not None and int(batch) >= epoch_steps - 1
            if self._pending >= self.proximal_every or last:
                self._flush()
        if self._budget is not None:
            self._budget.batch_end(int(batch), epoch_steps)

    def _flush(self):
        steps, self._pending = self._pending, 0
        if not steps or (self.mode == "penalty" and not self._known_dead):
            return
        self._runner.run(0.0 if self.mode == "penalty" else float(steps))

    def on_epoch_end(self, epoch, logs=None):
        plan = self._plan
        if plan is None or logs is None:
            return
        self._epochs_done = epoch + 1
        if self._pending and plan.variables and not self._in_step:
            self._flush()  # epoch of unknown length
        if self._budget is not None:
            self._budget.epoch_end(epoch, logs)
        live, per_layer = self._live_units()
        logs["live_units"] = int(live.sum())
        for name, count in per_layer.items():
            logs[f"live_units/{name}"] = int(count)
        logs["live_params"] = self._metrics.params(live)
        budget_metric = self.budget[0] if self.budget else None
        if "flops" in (self.target_metric, self.cost, budget_metric):
            logs["live_flops"] = self._metrics.flops(live)
        if self.latency_table is not None:
            logs["live_latency"] = self._metrics.value("latency", live)
        logs["guided_strength"] = self.strength
        logs["guided_penalty"] = self.penalty()
        if self._schedule.epoch_end(
            lambda: self._measure(self.target_metric), self.strength
        ):
            self.model.stop_training = True

    def _budget_mode(self):
        return BudgetMode(
            self.budget, guidance=self.guidance, cost=self.cost,
            target_epochs=self.target_epochs,
            base_strength=self.base_strength, plan=self._plan,
            metrics=self._metrics, coefficients=self._coefficients,
            runner=self._runner, values=self._values,
            on_unreachable=self.on_unreachable,
        )

    # ---------------------------------------------------------- resume

    def _export_state(self):
        """The state a resumed `fit` needs, for the weights file."""
        plan = self._plan
        if plan is None or self._coefficients is None:
            return {}
        self._sync()
        runner = self._runner
        coefficients = self._coefficients
        header = {
            "epoch": int(self._epochs_done),
            "groups": _resume.signature(plan),
            **self._schedule.state(),
            "known_dead": self._known_dead,
            "strength": self.strength,
            "cost_factors": [float(f) for f in coefficients.cost_factors],
            "budget": None if self._budget is None else self._budget.state(),
        }
        active = [np.asarray(c, dtype="float64") for c in coefficients.active]
        arrays = {
            name: ops.convert_to_numpy(variable.value)
            for name, variable in (
                ("dead", runner.dead), ("allowed", runner.allowed),
                ("floor", runner.floor), ("held", runner.held),
                ("unit_weights", self._unit_weights),
            )
        }
        arrays["coefficients"] = (np.concatenate(active) if active
                                  else np.zeros(0))
        return _resume.pack(header, arrays)

    def _import_state(self, stored):
        self._restored = _resume.unpack(stored)

    def _resume(self, epoch):
        """Restores the state read with the weights when this `fit` resumes
        the run that saved it (it starts at the epoch the state was saved
        after, on the same prunable groups); returns whether it did."""
        restored, self._restored = self._restored, None
        if restored is None or epoch == 0:
            return False
        header, arrays = restored
        plan = self._plan
        mismatch = None
        if header["groups"] != _resume.signature(plan):
            mismatch = "for other prunable groups"
        elif (header["budget"] is None) != (self.budget is None):
            mismatch = "of a run with " + (
                "a budget" if self.budget is None else "no budget")
        elif header["epoch"] != epoch:
            mismatch = (
                f"to resume at epoch {header['epoch']}, and this fit "
                f"starts at epoch {epoch} (list GuidedPruning before "
                "BackupAndRestore or ModelCheckpoint in `callbacks`, so "
                "the state saved is that of the epoch's end)"
            )
        if mismatch is not None:
            warnings.warn(
                "GuidedPruning found its state in the restored weights, "
                f"saved {mismatch}; it starts afresh from the restored "
                "weights (its start and budget are measured on them).",
                stacklevel=2,
            )
            return False
        runner = self._runner
        for name, variable in (
            ("dead", runner.dead), ("allowed", runner.allowed),
            ("floor", runner.floor), ("held", runner.held),
        ):
            variable.assign(arrays[name])
        coefficients = self._coefficients
        coefficients.cost_factors = np.asarray(header["cost_factors"])
        flat = arrays["coefficients"]
        coefficients.set([
            flat[start:start + group.num_units]
            for group, start in zip(plan.groups, plan.offsets)
        ])
        self._unit_weights.assign(arrays["unit_weights"])
        self._strength.assign(header["strength"])
        self._schedule.restore(header)
        self._known_dead = header["known_dead"]
        if self.budget is not None:
            self._budget = self._budget_mode()
            self._budget.restore(header["budget"])
            self.budget_report = self._budget.report
        return True

    # -------------------------------------------------------- proximal

    def penalty(self):
        """The current group penalty `strength * sum_u g_u sqrt(p_u) ||W_u||`.

        Returns:
            A Python float (0.0 before the first `fit`).
        """
        plan = self._plan
        if plan is None or not plan.num_units:
            return 0.0
        return _penalty_mode.penalty_value(
            plan, self._values(), self._unit_weights, self.strength
        )

    def _sync_dead_from_weights(self):
        plan = self._plan
        dead = np.zeros(plan.num_segments, dtype="float32")
        if self.keep_dead and plan.num_units:
            norms = proximal.numpy_group_norms(
                self._values(), plan.entries, plan.num_segments
            )
            dead[:-1] = norms[:-1] == 0
        dead_mask = self._runner.dead
        dead = np.maximum(dead, ops.convert_to_numpy(dead_mask.value))
        self._known_dead = bool(dead.any())
        dead_mask.assign(dead)

    # ------------------------------------------------------------ logs

    def _sync(self):
        _step_runner.sync(self.model)

    def _values(self):
        if keras.backend.backend() == "jax":
            self.model.jax_state_sync()
        return [ops.convert_to_numpy(v.value) for v in self._plan.variables]

    def _live_units(self):
        """Boolean live flag per unit, and live counts per producer layer."""
        return self._metrics.live_units(self._values())

    def _measure(self, metric):
        if self._plan is None:
            return 0
        return self._metrics.value(metric, self._live_units()[0])


# ---------------------------------------------------------------- helpers


def trained_network(model):
    """The network whose units `GuidedPruning` prunes when `fit` runs on
    `model`: the student of a distiller (`keras_guided.Distiller` or
    `keras.distillation.Distiller`), else `model` itself.

    Examples:
        >>> import keras, keras_guided
        >>> teacher = keras.Sequential([keras.Input((4,)),
        ...     keras.layers.Dense(3)])
        >>> student = keras.Sequential([keras.Input((4,)),
        ...     keras.layers.Dense(3)])
        >>> distiller = keras_guided.Distiller(student, teacher)
        >>> keras_guided.callbacks.trained_network(distiller) is student
        True
    """
    if isinstance(model, (distill_lib.Distiller,
                          keras.distillation.Distiller)):
        return model.student
    return model


def _state(value, name):
    """A float32 state variable of the callback (not trained)."""
    return keras.Variable(value, trainable=False, dtype="float32", name=name)


def _validate_guidance(guidance):
    if isinstance(guidance, str) and guidance in (
        "from_regularizers", "importance"
    ):
        return guidance
    if isinstance(guidance, dict) and "class_name" not in guidance:
        checked = {}
        for name, spec in guidance.items():
            if not isinstance(name, str):
                raise ValueError(
                    "`guidance` dict keys must be layer names (str). "
                    f"Received key {name!r}."
                )
            checked[name] = guidance_lib.get(spec)
        return checked
    try:
        return guidance_lib.get(guidance)
    except ValueError as error:
        raise ValueError(
            f"{error} GuidedPruning also accepts 'from_regularizers' and a "
            "dict {layer_name: scheme or coefficients}."
        ) from None


def _positive_int(value, name):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < 1
    ):
        raise ValueError(
            f"`{name}` must be a positive int. Received: {name}={value!r}"
        )
    return int(value)


def _check_latency_table(table, budget, target, target_metric, cost):
    """The table, checked against what prices latency (a latency budget,
    threshold target or cost); `None` without one."""
    from keras_guided import latency as latency_lib

    uses = []
    if budget is not None and budget[0] == "latency":
        uses.append(f"target={{'latency': {budget[1]!r}}}")
    if target is not None and target_metric == "latency":
        uses.append(f"target={{'latency': {target!r}}}")
    if cost == "latency":
        uses.append("cost='latency'")
    if table is None:
        if uses:
            raise ValueError(
                f"GuidedPruning({uses[0]}) needs a latency table measured "
                "on the target runtime. Received: latency_table=None. "
                + latency_lib._BUILD_HINT
            )
        return None
    latency_lib._check_is_table(table)
    if not uses:
        raise ValueError(
            "`latency_table` prices latency only, and this GuidedPruning "
            "has no latency target or cost. Received: latency_table="
            f"<LatencyTable of model '{table.model_name}'> with "
            f"target={_describe_target(budget, target, target_metric)}, "
            f"cost={cost!r}. Pass target={{'latency': 0.5}} or "
            "cost='latency', or drop latency_table."
        )
    return table


def _describe_target(budget, target, target_metric):
    if budget is not None:
        return repr({budget[0]: budget[1]})
    if target is not None:
        return repr({target_metric: target})
    return "None"


def _validate_target(target):
    if target is None:
        return None
    if isinstance(target, bool):
        pass
    elif isinstance(target, (int, np.integer)) and target >= 1:
        return int(target)
    elif (
        isinstance(target, (float, np.floating))
        and math.isfinite(target)
        and 0 < target < 1
    ):
        return float(target)
    raise ValueError(
        "`target` must be None, a float in (0, 1) (fraction of the starting "
        "value) or an int >= 1 (absolute count). "
        f"Received: target={target!r}"
    )


__all__ = ["GuidedPruning"]
