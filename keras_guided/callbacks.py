"""`GuidedPruning`: guided group penalties on whole unit groups during `fit`.

A `GuidedRegularizer` sees one kernel. This callback sees the model: it
reads the unit groups of `keras_guided.graph.find_unit_groups` (a unit's
kernel slice, bias, BatchNormalization gamma/beta and the consumers' input
slices) and penalizes each group as one, with one guidance coefficient per
group unit.

Implementation notes (why it is built this way):

* Every penalized slice is turned, once, into an int index array along its
  axis that maps each position to a global unit id (or a sentinel). The
  squared norms of all units of all groups are then one `segment_sum` per
  (weight, axis), and the per-unit shrink factor is one gather per
  (weight, axis): no Python loop over units in the training loop.
* The proximal step runs inside the compiled train step, right after the
  optimizer's update, for the duration of `fit`: the callback hooks the
  optimizer's `apply` (`keras_guided._keras_adapter`, the one module that
  touches Keras internals) and takes the hook off in `on_train_end`. No
  Python runs per batch; the budget controller reads the small state
  vectors (dead mask, held units) at its check points, about ten times per
  epoch. Where the hook is not available (`proximal_every > 1`, the torch
  backend, a `LossScaleOptimizer` on JAX) the step runs after each batch
  from Python, compiled once (`tf.function` / `jax.jit`).
* In `mode="penalty"` the group penalty is attached for the duration of
  `fit` as the `regularizer` of one model variable (Keras adds variable
  regularizers to `model.losses`, which the compiled train step reads).
  This is the one loss hook Keras offers after the model is built that
  needs neither `add_loss` in `call` nor a custom train step. The original
  regularizer is put back (and the compiled functions rebuilt) in
  `on_train_end`.
"""

import math
import warnings

import keras
import numpy as np
from keras import ops

from keras_guided import _group_plan
from keras_guided import _keras_adapter as adapter
from keras_guided import _live_metrics
from keras_guided import budget as budget_lib
from keras_guided import guidance as guidance_lib
from keras_guided import proximal
from keras_guided import regularizers as regularizers_lib
from keras_guided import schedules as schedules_lib
from keras_guided import units as units_lib

MODES = ("proximal", "penalty")
SCHEDULES = ("constant", "warmup", "ramp", "budget")
COSTS = ("params", "flops")
TARGET_METRICS = ("units", "params", "flops")
ON_TARGET = ("hold", "release", "stop")


class _GroupPenalty:
    """Variable regularizer carrying the whole-model group penalty.

    Attached to one model variable (`anchor`) during `fit`; reads the other
    variables through `ops.convert_to_tensor`, which returns the traced
    value inside the compiled (stateless on JAX) train step, so gradients
    reach every penalized variable.
    """

    def __init__(self, callback, anchor_index, previous):
        self.callback = callback
        self.anchor_index = anchor_index
        self.previous = previous

    def __call__(self, x):
        plan = self.callback._plan
        values = []
        for i, variable in enumerate(plan.variables):
            if i == self.anchor_index:
                values.append(x)
            else:
                values.append(ops.convert_to_tensor(variable))
        norms = proximal.group_norms(values, plan.entries, plan.num_segments)
        weights = ops.convert_to_tensor(self.callback._unit_weights)
        strength = ops.convert_to_tensor(self.callback._strength)
        penalty = strength * ops.sum(weights * norms)
        penalty = ops.cast(penalty, x.dtype)
        if self.previous is not None:
            penalty = penalty + self.previous(x)
        return penalty


def _check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {list(choices)}. "
            f"Received: {name}={value!r}"
        )
    return value


class GuidedPruning(keras.callbacks.Callback):
    """Applies guided group penalties to whole unit groups during `fit`.

    The budget recipe (recommended): say what to keep and the callback does
    the rest, `GuidedPruning(target={"flops": 0.1})` (or `{"units": 66}`,
    `{"params": 0.25}`: a fraction of the value at the start of `fit`, or a
    count). During the first `target_epochs` (default: two thirds of the
    `fit` epochs) a controller (`keras_guided.budget.BudgetController`)
    steers the strength so that the live network follows a cubic path down
    to the budget; a guard in the proximal step lets units die only as fast
    as the path allows and never empties a layer, so the budget is not
    overshot. At the end of the path the callback *lands*: the live units
    that the penalty would take next are zeroed until the budget holds
    (within one unit of it). The strength is then released (0), dead units
    stay dead, and the remaining epochs let the network recover.
    `keras_guided.prune_model(model)` afterwards removes exactly the dead
    units. The strength is calibrated from the unit norms and the learning
    rate (`strength=None`) and steered multiplicatively, so the same call
    works with SGD and Adam. The default guidance in this mode is
    `"importance"`: each epoch the units are ranked by the rank of their
    norm within their layer (divided by the square root of their marginal
    cost for a params or FLOPs budget); the best-ranked units that fit the
    budget get coefficient 0, the others rising coefficients, so the
    penalty never shrinks what the budget keeps. `budget_report` holds what
    happened (start, goal, landing epoch, the controller trace).

    Each unit group (a unit's kernel slice and bias, the BatchNormalization
    gamma and beta after it, the consumers' input slices, see
    `keras_guided.graph`) is penalized as one:
    `penalty = strength * sum_u g_u * sqrt(p_u) * ||W_u||_2`, with `W_u` every
    penalized weight of unit `u`, `p_u` their count (the convention of
    `GuidedRegularizer(norm="group")`) and `g_u` the guidance coefficient.
    BatchNormalization moving statistics are never penalized. Groups that
    touch a frozen (non-trainable) weight are left alone.

    `mode="proximal"` (default) takes a group soft-thresholding step after
    every optimizer step,
    `W_u <- W_u * max(0, 1 - lr * strength * g_u * sqrt(p_u) / ||W_u||)`,
    with `lr` the optimizer's current learning rate (schedules included).
    Units reach exact zero, which a penalty in the loss does not achieve
    with adaptive optimizers such as Adam. `mode="penalty"` adds the penalty
    to the training loss instead.

    Strength schedules (per epoch, 0-based): `"constant"`; `"warmup"`:
    `strength * min(1, epoch / warmup_epochs)`; `"ramp"`:
    `strength * (1 + epoch)`, rising until a `target` holds it; or a
    callable `epoch -> strength`. The strength lives in a `keras.Variable`.

    Adaptive guidance (`adapt_every=N`): at the first epoch of each `fit`
    and every `N` epochs, the units of each group are ranked by their group
    norm `||W_u||_2` (magnitude importance, as in the filter-norm criterion
    of Li et al., 2017) and the guidance coefficients are re-assigned by
    rank: the largest unit gets the smallest coefficient, the weakest the
    largest.

    Cost-aware guidance (`cost="params"` or `"flops"`): each group's
    coefficients are multiplied by the cost of one of its units (its
    parameters, or the FLOPs of the layers its slices belong to, shared in
    proportion to the slices' sizes) divided by the mean cost over all
    penalized units, so the cheapest architectures are preferred.

    Dead units stay dead: once every penalized weight of a unit is exactly
    zero, it is re-zeroed after every step, so optimizer momentum cannot
    revive it (`keep_dead=False` opts out).

    At every epoch end, `logs` receive `live_units` (prunable units whose
    output weights, kernel slices, bias, gamma and beta, are not all zero),
    `live_units/<layer name>` for each producing layer, `live_params` (the
    parameter count of the model once dead units are removed),
    `guided_strength` and `guided_penalty` (the current group penalty).
    They show in the progress bar, `History.history` and TensorBoard (list
    `GuidedPruning` before `TensorBoard` or `CSVLogger` in `callbacks`:
    callbacks see the logs in list order).

    State (groups, dead mask, strength, target status) is reset at
    `on_train_begin`, so one instance serves several `fit` calls. With
    `keras.callbacks.BackupAndRestore`, the dead mask is re-derived from the
    restored weights and the schedule from the epoch, so a resumed run
    matches an uninterrupted one (with adaptive guidance or a target that
    was already reached, the ranking and the held strength are re-derived
    at the resumed epoch, which can differ). `live_flops` is also logged
    when `cost` or `target_metric` is `"flops"`.

    Choosing `strength`: both modes minimize the same objective, so with SGD
    the strength means what it means for `GuidedRegularizer`. Adam moves
    every weight by about `lr` per step whatever the gradient scale, so in
    proximal mode with Adam a unit shrinks only where
    `strength * g_u` is of order 1 (on a digits MLP, 0.5 removed about half
    the units in 4 epochs).

    Backends and cost: on TensorFlow and JAX the proximal step (with the
    dead mask and the budget guard) runs inside the compiled train step,
    right after the optimizer's update (the callback hooks the optimizer's
    `apply` for the duration of `fit`, and `steps_per_execution` needs
    nothing special); no Python runs per batch except the budget
    controller's check points, about ten per epoch. With
    `proximal_every > 1`, on torch, with a `LossScaleOptimizer` on JAX, or
    in penalty mode on JAX, it is one compiled call from Python after each
    batch instead. The groups
    and compiled step are reused across `fit` calls on the same model. If
    `fit` raises, the hook stays on the optimizer until the next `fit` with
    this callback takes it off. On JAX, in penalty mode a strength or
    coefficient change recompiles the train step (JAX freezes values from
    outside the model state). Under `tf.distribute.MirroredStrategy` and
    JAX `keras.distribution.DataParallel` both modes give the same weights
    as one device.

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
        cost: `None`, `"params"` or `"flops"`. Defaults to `None`.
        adapt_every: `None` or a positive int (epochs). Defaults to `None`.
        keep_dead: whether dead units are kept at zero. Defaults to `True`.
        target: `None` or a budget in the grammar shared with
            `prune_model`: a dict with one key, `"units"`, `"params"` or
            `"flops"`, and a fraction to keep (float in `(0, 1]`) or a
            count (int). The older forms, a float fraction or an int count
            of `target_metric`, still work as thresholds and warn
            (deprecated). Defaults to `None`.
        target_metric: for the deprecated numeric `target`: `"units"`,
            `"params"` or `"flops"`. Defaults to `"units"`.
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

    Raises:
        ValueError: for invalid arguments, or (at the start of `fit`) a
            guidance dict naming layers that produce no prunable group.

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
                 target_epochs=None):
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
        self.on_unsupported = on_unsupported
        self._strength = keras.Variable(
            0.0, dtype="float32", trainable=False, name="guided_strength"
        )
        self._plan = None
        self._cache_key = None
        self._penalty = None
        self._unhook = None
        self._in_step = False
        self._plain_function = None
        self._hooked_function = None  # (plain train function, hooked one)
        self._controller = None
        self._metrics = None
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
        return [np.array(c) for c in self._current_coefficients]

    def on_train_begin(self, logs=None):
        model = self.model
        key = (
            id(model),
            tuple((id(v), tuple(v.shape)) for v in model.weights),
            tuple(id(v) for v in model.trainable_weights),
            id(model.optimizer),
        )
        if self._unhook is not None:
            # A previous fit raised before on_train_end: take its step hook
            # and penalty off first so that they do not act twice.
            self._remove_step_hook()
        if self._penalty is not None:
            self._detach_penalty()
        if self._plan is None or key != self._cache_key:
            # New model (or new weights): read the groups and compile the
            # step again. Same model: reuse both (no retracing per fit).
            from keras_guided import graph

            groups = graph.find_unit_groups(
                model, on_unsupported=self.on_unsupported
            )
            plan = _group_plan.GroupPlan(groups, model)
            if not plan.groups:
                reasons = sorted({str(g.reason) for g in groups})
                warnings.warn(
                    f"GuidedPruning found no prunable unit group in model "
                    f"'{model.name}' (reasons: {reasons}); it only logs "
                    "live-unit counts. Only hidden units can be pruned (the "
                    "model outputs are protected).",
                    stacklevel=2,
                )
            self._plan = plan
            self._cache_key = key
            self._penalized_entries = plan.tensor_entries(plan.entries)
            self._unit_weights = keras.Variable(
                np.zeros(plan.num_segments, dtype="float32"),
                trainable=False, dtype="float32", name="guided_unit_weights",
            )
            self._dead = keras.Variable(
                np.zeros(plan.num_segments, dtype="float32"),
                trainable=False, dtype="float32", name="guided_dead",
            )
            self._allowed = keras.Variable(
                3e38, trainable=False, dtype="float32", name="guided_allowed"
            )
            self._floor = keras.Variable(
                np.zeros(plan.num_segments, dtype="float32"),
                trainable=False, dtype="float32", name="guided_floor",
            )
            self._held = keras.Variable(
                np.zeros(plan.num_segments, dtype="float32"),
                trainable=False, dtype="float32", name="guided_held",
            )
            self._step = self._compile_step()
            self._hooked_function = None  # traced with the old plan
        plan = self._plan
        self._base_coefficients = self._coefficients(plan)
        self._cost_factors = self._cost_factors_for(plan)
        self._set_unit_weights(self._base_coefficients)
        self._dead.assign(np.zeros(plan.num_segments, dtype="float32"))
        self._allowed.assign(3e38)
        self._held.assign(np.zeros(plan.num_segments, dtype="float32"))
        self._known_dead = False
        self._strength.assign(0.0)
        self._first_epoch = True
        self._reached = False
        self._held_strength = None
        self._start_value = None
        self._last_batch = -1
        self._pending = 0
        self._penalty = None
        self._controller = None
        self._metrics = _live_metrics.LiveMetrics(plan, model)
        self._landed = False
        self._epoch = 0
        self._control_every = 1
        self.budget_report = None
        if self.mode == "penalty" and plan.variables:
            self._attach_penalty()
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
            self._install_step_hook()

    def on_train_end(self, logs=None):
        if self._unhook is not None:
            self._remove_step_hook()
        if self._penalty is not None:
            self._detach_penalty()

    def on_epoch_begin(self, epoch, logs=None):
        plan = self._plan
        if plan is None:
            return
        self._last_batch = -1
        self._pending = 0
        first = self._first_epoch
        if first or self.mode == "penalty":
            # After BackupAndRestore (or between fits) the weights decide
            # which units are dead; in penalty mode zeros are only looked for
            # at epoch boundaries, to keep the training loop free of syncs.
            self._sync_dead_from_weights()
        if first:
            self._first_epoch = False
            self._start_value = self._measure(self.target_metric)
        adapted = self.adapt_every is not None and (
            first or epoch % self.adapt_every == 0
        )
        if adapted:
            self._adapt()
        if self.budget is not None:
            if first:
                self._start_budget(epoch)
            elif self.guidance == "importance" and not self._landed:
                self._importance_guidance(self._live_from_dead())
            self._epoch = epoch
            self._strength.assign(self._controller.strength)
            return
        if self._reached and self.on_target == "hold":
            value = self._held_strength
        elif self._reached and self.on_target == "release":
            value = 0.0
        else:
            value = self._scheduled(epoch)
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
        controller = self._controller
        if (
            controller is not None
            and not controller.reached
            and (int(batch) + 1) % self._control_every == 0
        ):
            steps = epoch_steps or (int(batch) + 1)
            self._control(self._epoch + (int(batch) + 1) / steps)

    def _flush(self):
        steps, self._pending = self._pending, 0
        if not steps or (self.mode == "penalty" and not self._known_dead):
            return
        self._run_step(0.0 if self.mode == "penalty" else float(steps))

    def on_epoch_end(self, epoch, logs=None):
        plan = self._plan
        if plan is None or logs is None:
            return
        if self._pending and plan.variables and not self._in_step:
            self._flush()  # epoch of unknown length
        if self._controller is not None:
            self._budget_epoch_end(epoch, logs)
        live, per_layer = self._live_units()
        logs["live_units"] = int(live.sum())
        for name, count in per_layer.items():
            logs[f"live_units/{name}"] = int(count)
        logs["live_params"] = self._metrics.params(live)
        budget_metric = self.budget[0] if self.budget else None
        if "flops" in (self.target_metric, self.cost, budget_metric):
            logs["live_flops"] = self._metrics.flops(live)
        logs["guided_strength"] = self.strength
        logs["guided_penalty"] = self.penalty()
        if self.target is not None and not self._reached:
            value = self._measure(self.target_metric)
            goal = self.target
            if isinstance(goal, float):
                goal = goal * self._start_value
            if value <= goal:
                self._reached = True
                self._held_strength = self.strength
                if self.on_target == "stop":
                    self.model.stop_training = True

    # ----------------------------------------------------------- budget

    def _start_budget(self, epoch):
        """Measures the start value, sets the goal, calibrates the strength
        and creates the controller (first epoch of each `fit`)."""
        plan = self._plan
        metric, amount = self.budget
        params = self.params or {}
        total = int(params.get("epochs") or (epoch + 1))
        target_epochs = self.target_epochs
        if target_epochs is None:
            # Two thirds of the epochs to prune, one third to recover.
            target_epochs = max(1, int(round(2 * (total - epoch) / 3)))
        steps = int(params.get("steps") or 1)
        self._control_every = max(1, steps // 10)
        self._budget_start_epoch = epoch
        self._landing_epoch = min(epoch + target_epochs, total)
        live, _ = self._live_units()
        if self.cost is not None:
            self._update_cost_factors(live)
        start = self._metrics.value(metric, live)
        goal = budget_lib.budget_value(amount, start)
        self._goal = goal
        if self.guidance == "importance":
            self._importance_guidance(live)
        strength = self.base_strength
        if strength is None:
            norms = proximal.numpy_group_norms(
                self._values(), plan.entries, plan.num_segments
            )[:-1]
            weights = ops.convert_to_numpy(self._unit_weights.value)[:-1]
            learning_rate = float(ops.convert_to_numpy(
                self.model.optimizer.learning_rate
            ))
            strength = budget_lib.initial_strength(
                norms, weights, learning_rate, steps * target_epochs
            )
        self._controller = budget_lib.BudgetController(start, goal, strength)
        norms = proximal.numpy_group_norms(self._values(), plan.entries, plan.num_segments)
        floor = 1e-3 * norms
        floor[-1] = 0.0
        self._floor.assign(floor.astype("float32"))
        self._steps_per_epoch = steps
        self._allowed.assign(float(self._deaths_allowed(
            live, start, self._controller.planned(
                self._control_every / steps / max(target_epochs, 1)
            )
        )))
        if not plan.num_units:
            self._controller.reached = True
            self._controller.strength = 0.0
        self._landed = self._controller.reached
        self.budget_report = {
            "metric": metric,
            "start": float(start),
            "goal": float(goal),
            "initial_strength": float(strength),
            "target_epochs": int(target_epochs),
            "landed_at_epoch": None,
            "value_before_landing": None,
            "units_masked_at_landing": 0,
            "value": float(start),
            "trace": [],
        }

    def _control(self, epochs_done):
        """One controller step: measure the live metric, steer the strength."""
        controller = self._controller
        metric = self.budget[0]
        self._sync()  # JAX: the state lives in the train loop until synced
        live = self._live_from_dead()
        if self.cost is not None and self.guidance != "importance":
            self._update_cost_factors(live)
        value = self._metrics.value(metric, live)
        # Units held at their floor count as removed for the controller:
        # they are on their way out, and pushing harder would only shrink
        # the units that stay.
        effective = value
        if self.guidance != "importance":
            held = ops.convert_to_numpy(self._held.value)[:-1] > 0
            effective = self._metrics.value(metric, live & ~held)
        span = max(self._landing_epoch - self._budget_start_epoch, 1)
        progress = (epochs_done - self._budget_start_epoch) / span
        strength = controller.update(effective, progress)
        self._strength.assign(strength)
        step = self._control_every / self._steps_per_epoch / span
        self._allowed.assign(float(self._deaths_allowed(
            live, value, controller.planned(progress + step)
        )))
        self.budget_report["trace"].append(
            (round(float(epochs_done), 3), float(value), float(strength))
        )
        if controller.reached and not self._landed:
            # On budget, counting held units as gone: cut them now (before
            # the released strength lets them grow back) and recover.
            self._land(self._epoch)

    def _budget_epoch_end(self, epoch, logs):
        controller = self._controller
        report = self.budget_report
        if not self._landed and epoch + 1 >= self._landing_epoch:
            self._land(epoch)
        live, _ = self._live_units()
        report["value"] = float(self._metrics.value(self.budget[0], live))
        logs["budget_goal"] = controller.goal
        span = max(self._landing_epoch - self._budget_start_epoch, 1)
        logs["budget_planned"] = controller.planned(
            (epoch + 1 - self._budget_start_epoch) / span
        )

    def _land(self, epoch):
        """Ends pruning on the budget: zeroes the live units that the
        proximal step would take next (smallest norm per unit of push) until
        the budget holds, then releases the strength."""
        plan = self._plan
        controller = self._controller
        metric = self.budget[0]
        live, _ = self._live_units()
        value = self._metrics.value(metric, live)
        report = self.budget_report
        report["landed_at_epoch"] = int(epoch)
        report["value_before_landing"] = float(value)
        controller.reached = True
        controller.strength = 0.0
        self._landed = True
        self._strength.assign(0.0)
        if value <= controller.goal:
            return
        norms = proximal.numpy_group_norms(
            self._values(), plan.entries, plan.num_segments
        )[:-1]
        weights = ops.convert_to_numpy(self._unit_weights.value)[:-1]
        score = norms / np.maximum(weights, proximal.TINY)
        candidates = []
        for group, start in zip(plan.groups, plan.offsets):
            ids = np.arange(start, start + group.num_units)
            ids = ids[live[ids]]
            if len(ids) <= 1:
                continue  # never empty a layer
            keep = ids[np.argmax(score[ids])]
            candidates.extend(int(u) for u in ids if u != keep)
        order = sorted(candidates, key=lambda u: score[u])

        def value_without(count):
            trial = live.copy()
            trial[order[:count]] = False
            return self._metrics.value(metric, trial)

        low, high = 1, len(order)
        if not order or value_without(high) > controller.goal:
            low = high  # as close as the layers allow
        while low < high:
            middle = (low + high) // 2
            if value_without(middle) <= controller.goal:
                high = middle
            else:
                low = middle + 1
        removed = list(order[:low])
        # Units are not equally costly: give back the best-ranked removed
        # units that still fit, so the budget is met as closely as it can.
        trial = live.copy()
        trial[removed] = False
        for unit in reversed(list(removed[-64:])):
            trial[unit] = True
            if self._metrics.value(metric, trial) <= controller.goal:
                removed.remove(unit)
            else:
                trial[unit] = False
        dead = ops.convert_to_numpy(self._dead.value).copy()
        dead[removed] = 1.0
        self._dead.assign(dead)
        self._known_dead = True
        self._run_step(0.0)  # threshold 0: only zeroes the dead units
        report["units_masked_at_landing"] = len(removed)

    def _importance_guidance(self, live):
        """Budget-aware, importance-ranked guidance.

        Units are ranked by importance: the rank of their group norm within
        their layer, as a fraction (the filter-norm criterion of Li et
        al., 2017, made comparable across layers), divided by the square
        root of their relative marginal cost for a params or FLOPs budget.
        The best-ranked units that fit in the budget get coefficient 0: the
        penalty never shrinks what the budget keeps. The others get coefficients rising from 1 to 2 with falling
        rank, so the weakest go first.
        """
        plan = self._plan
        metric = self.budget[0]
        norms = proximal.numpy_group_norms(
            self._values(), plan.entries, plan.num_segments
        )[:-1]
        importance = np.zeros(plan.num_units)
        for group, start in zip(plan.groups, plan.offsets):
            part = slice(start, start + group.num_units)
            # Rank within the layer (as a fraction): norms are not
            # comparable across layers, quantiles are.
            ranks = np.argsort(np.argsort(norms[part], kind="stable"))
            importance[part] = (ranks + 1) / group.num_units
        if metric != "units" and live.any():
            costs = self._metrics.unit_marginal_costs(live, metric)
            mean = float(costs[live].mean())
            if mean > 0:
                importance = importance / np.sqrt(
                    np.maximum(costs / mean, 1e-12)
                )
        importance = np.where(live, importance, -np.inf)
        # Each group's best live unit is kept first: never empty a layer.
        first = []
        for group, start in zip(plan.groups, plan.offsets):
            part = importance[start:start + group.num_units]
            if np.isfinite(part).any():
                first.append(start + int(np.argmax(part)))
        rest = [int(u) for u in np.argsort(-importance, kind="stable")
                if live[u] and int(u) not in set(first)]
        order = first + rest

        def fits(count):
            trial = np.zeros(plan.num_units, dtype=bool)
            trial[order[:count]] = True
            return self._metrics.value(metric, trial) <= self._goal

        low, high = len(first), len(order)
        while low < high:  # the largest prefix within the budget
            middle = (low + high + 1) // 2
            if fits(middle):
                low = middle
            else:
                high = middle - 1
        coefficients = np.zeros(plan.num_units)
        doomed = order[low:]
        if doomed:
            coefficients[doomed] = 1.0 + np.arange(len(doomed)) / max(
                len(doomed) - 1, 1
            )
        self._cost_factors = np.ones(len(plan.groups))
        self._set_unit_weights([
            coefficients[start:start + group.num_units]
            for group, start in zip(plan.groups, plan.offsets)
        ])

    def _deaths_allowed(self, live, value, planned):
        """How many more units may die before the next check without the
        live metric falling below `planned` (counting the costliest units
        first, so the count is safe for params and FLOPs too)."""
        planned = max(planned, self._controller.goal)
        excess = value - planned
        if excess <= 0:
            return 0
        metric = self.budget[0]
        if metric == "units":
            return int(math.floor(excess + 1e-9))
        costs = self._metrics.unit_marginal_costs(live, metric)[live]
        cumulative = np.cumsum(np.sort(costs)[::-1])
        # At least one: with costly units (a convolution's filters) no
        # single death may fit in what is left, and the path would stall;
        # the landing then corrects by at most that one unit.
        return max(1, int(np.searchsorted(cumulative, excess, side="right")))

    def _live_from_dead(self):
        """Live flags from the dead mask the proximal step keeps (no
        weight transfer); from the weights when dead units are not kept."""
        if not self.keep_dead:
            return self._live_units()[0]
        self._sync()
        dead = ops.convert_to_numpy(self._dead.value)[:-1]
        return dead == 0

    def _update_cost_factors(self, live):
        """Cost factors from the *marginal* cost of each group's units in
        the live network: removing a unit also shrinks its consumers, whose
        cost falls as their other inputs die, so a static cost would
        overprice the units of already thin layers."""
        plan = self._plan
        costs = self._metrics.group_marginal_costs(live, self.cost)
        counts = np.zeros(len(plan.groups))
        for g, (group, start) in enumerate(zip(plan.groups, plan.offsets)):
            counts[g] = live[start:start + group.num_units].sum()
        weight = counts.sum()
        mean = float((costs * counts).sum() / weight) if weight else 0.0
        if mean > 0:
            # The square root balances cost against importance: the full
            # ratio makes a costly layer (the first convolutions) die
            # almost whole before cheap ones are touched.
            self._cost_factors = np.sqrt(costs / mean)
            self._set_unit_weights(self._active_coefficients)

    # ------------------------------------------------------ coefficients

    def _coefficients(self, plan):
        """Per-group base coefficients (mean 1 within each group)."""
        spec = self.guidance
        result = []
        if isinstance(spec, dict):
            producers = {}
            for group in plan.groups:
                for name in _group_plan.producer_names(group):
                    producers.setdefault(name, []).append(group.index)
            unknown = sorted(set(spec) - set(producers))
            if unknown:
                raise ValueError(
                    f"`guidance` names layers {unknown} that produce no "
                    "prunable unit group. Layers that do: "
                    f"{sorted(producers)}. Use those names as keys."
                )
        for group in plan.groups:
            n = int(group.num_units)
            if spec == "importance":
                coefficients = np.ones(n)  # set by the budget each epoch
            elif spec == "from_regularizers":
                coefficients = _from_regularizers(group, n)
            elif isinstance(spec, dict):
                coefficients = np.zeros(n)
                for name in _group_plan.producer_names(group):
                    if name in spec:
                        coefficients = guidance_lib.get(spec[name])(n)
                        break
            else:
                coefficients = spec(n)
            result.append(np.asarray(coefficients, dtype="float64"))
        if spec == "from_regularizers" and not any(
            c.any() for c in result
        ):
            raise ValueError(
                "guidance='from_regularizers' found no GuidedRegularizer on "
                "the producer kernels of the model's prunable groups. Attach "
                "`keras_guided.GuidedRegularizer` to the layers, or pass a "
                "guidance scheme such as 'linear'."
            )
        return result

    def _cost_factors_for(self, plan):
        factors = np.ones(len(plan.groups))
        if self.cost is None or not plan.groups:
            return factors
        if self.cost == "params":
            costs = np.array(
                [plan.per_unit_params[o] for o in plan.offsets], dtype=float
            )
        else:
            layer_costs = _live_metrics.layer_costs(self.model)
            costs = []
            for sizes in plan.slice_sizes:
                total = 0.0
                for layer, per_unit in sizes:
                    entry = layer_costs.get(layer.name)
                    params = sum(int(np.prod(v.shape)) for v in layer.weights)
                    if entry and params:
                        total += entry["flops"] * per_unit / params
                costs.append(total)
            costs = np.asarray(costs, dtype=float)
        counts = np.array([g.num_units for g in plan.groups], dtype=float)
        mean = float((costs * counts).sum() / counts.sum())
        if mean > 0:
            factors = costs / mean
        return factors

    def _set_unit_weights(self, coefficients):
        plan = self._plan
        weights = np.zeros(plan.num_segments, dtype="float64")
        self._active_coefficients = coefficients
        self._current_coefficients = []
        for group, start, coef, factor in zip(
            plan.groups, plan.offsets, coefficients, self._cost_factors
        ):
            stop = start + group.num_units
            self._current_coefficients.append(coef * factor)
            weights[start:stop] = coef * factor * np.sqrt(
                plan.per_unit_penalized[start:stop]
            )
        weights[-1] = 0.0
        self._unit_weights.assign(weights.astype("float32"))

    def _adapt(self):
        plan = self._plan
        norms = proximal.numpy_group_norms(self._values(), plan.entries, plan.num_segments)
        ranked = []
        for group, start, coef in zip(
            plan.groups, plan.offsets, self._base_coefficients
        ):
            unit_norms = norms[start:start + group.num_units]
            order = np.argsort(-unit_norms, kind="stable")
            new = np.empty_like(coef)
            new[order] = np.sort(coef)
            ranked.append(new)
        self._set_unit_weights(ranked)

    def _scheduled(self, epoch):
        schedule = schedules_lib.get(
            self.schedule, self.base_strength, self.warmup_epochs
        )
        value = schedule(epoch)
        if callable(self.schedule):
            value = regularizers_lib.validate_strength(
                value, name="schedule(epoch)"
            )
        return value

    # -------------------------------------------------------- proximal

    def _compile_step(self):
        """The pure step for this plan, and its compiled form for the calls
        from Python (landing, and the fallback after each batch)."""
        plan = self._plan
        guarded = self.budget is not None
        layout = proximal.StepLayout(
            entries=self._penalized_entries,
            num_segments=plan.num_segments,
            is_unit=ops.convert_to_tensor(plan.is_unit),
            keep_dead=self.keep_dead,
            group_ids=(ops.convert_to_tensor(plan.group_ids, dtype="int32")
                       if guarded else None),
            num_groups=len(plan.groups),
        )

        def pure(values, state, threshold, unit_weights):
            return proximal.shrink(values, state, threshold, unit_weights,
                                   layout)

        self._pure = pure
        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            optimizer = self.model.optimizer

            def step(steps):
                lr = ops.cast(adapter.step_learning_rate(optimizer),
                              "float32")
                self._assign_step(lr * steps)

            # The step has no tensor-dependent Python control flow (its loops
            # run over a fixed list of variables at trace time): skip
            # AutoGraph, which otherwise warns that it cannot transform it.
            return tf.function(step, reduce_retracing=True, autograph=False)
        if backend == "jax":
            import jax

            return jax.jit(pure)
        return pure

    def _assign_step(self, rate):
        """Reads the variables, takes one step with threshold
        `rate * strength` and writes the results back. Traced into the
        train step (or the `tf.function` above); on JAX inside the train
        step's stateless scope, which carries the callback's state."""
        variables = self._plan.variables
        # Only the penalized weights (all trainable) are read and written:
        # inside JAX's optimizer step the others (BatchNormalization moving
        # statistics) are not part of the state.
        penalized = {index for index, _, _, _ in self._penalized_entries}
        threshold = rate * ops.cast(self._strength.value, "float32")
        values, state = self._pure(
            [v.value if i in penalized else None
             for i, v in enumerate(variables)],
            self._state(), threshold, self._unit_weights.value,
        )
        for index in sorted(penalized):
            variables[index].assign(values[index])
        self._set_state(state)

    def _state(self):
        return proximal.ProximalState(
            dead=self._dead.value, allowed=self._allowed.value,
            held=self._held.value, floor=self._floor.value,
        )

    def _set_state(self, state):
        self._dead.assign(state.dead)
        if self.budget is not None:
            self._allowed.assign(state.allowed)
            self._held.assign(state.held)

    def _install_step_hook(self):
        """Puts the step inside the compiled train step for this `fit`."""
        model = self.model
        optimizer = model.optimizer
        penalty = self.mode == "penalty"

        def hook(learning_rate):
            # Penalty mode: the loss carries the penalty; the step only
            # keeps dead units at zero (threshold 0).
            self._assign_step(0.0 if penalty else learning_rate)

        state = [self._strength, self._unit_weights, self._dead,
                 self._allowed, self._floor, self._held]
        removers = [adapter.carry_state(optimizer, state),
                    adapter.after_optimizer_step(optimizer, hook)]

        def unhook():
            for remove in reversed(removers):
                remove()

        self._unhook = unhook
        # The train function is built (not yet traced) before
        # on_train_begin. Keep it for the fits without this callback, and
        # reuse the hooked one while the model keeps that plain function
        # (no retracing per fit; a `compile` makes a new plain function).
        plain = model.train_function
        cached = self._hooked_function
        if cached is not None and cached[0] is plain and plain is not None:
            model.train_function = cached[1]
        else:
            model.make_train_function(force=True)
        self._plain_function = plain

    def _remove_step_hook(self):
        self._sync()
        unhook, self._unhook = self._unhook, None
        unhook()
        # The compiled train step holds the hook: put the plain one back, so
        # a later fit without this callback trains plainly.
        model = self.model
        plain, self._plain_function = self._plain_function, None
        if plain is not None:
            self._hooked_function = (plain, model.train_function)
            model.train_function = plain
        else:
            self._hooked_function = None
            model.make_train_function(force=True)

    def _sync(self):
        """On JAX, writes the train loop's state back into the variables
        (model and callback state), so that Python reads and writes them."""
        model = self.model
        if model is not None and keras.backend.backend() == "jax":
            model.jax_state_sync()

    def _run_step(self, steps):
        """One step from Python (between batches)."""
        backend = keras.backend.backend()
        if backend == "tensorflow":
            self._step(ops.convert_to_tensor(float(steps), dtype="float32"))
            return
        # JAX: put the step's state back into the variables; the next step
        # reads the variables again because the state is marked synced.
        self._sync()
        lr = float(ops.convert_to_numpy(
            adapter.step_learning_rate(self.model.optimizer)
        ))
        threshold = lr * steps * self.strength
        variables = self._plan.variables
        values, state = self._step(
            [v.value for v in variables], self._state(),
            ops.convert_to_tensor(threshold, dtype="float32"),
            self._unit_weights.value,
        )
        for variable, value in zip(variables, values):
            variable.assign(value)
        self._set_state(state)

    def _sync_dead_from_weights(self):
        plan = self._plan
        dead = np.zeros(plan.num_segments, dtype="float32")
        if self.keep_dead and plan.num_units:
            norms = proximal.numpy_group_norms(
                self._values(), plan.entries, plan.num_segments
            )
            dead[:-1] = norms[:-1] == 0
        dead = np.maximum(dead, ops.convert_to_numpy(self._dead.value))
        self._known_dead = bool(dead.any())
        self._dead.assign(dead)

    # --------------------------------------------------------- penalty

    def _attach_penalty(self):
        plan = self._plan
        trainable = {id(v) for v in self.model.trainable_weights}
        candidates = [
            i for i, v in enumerate(plan.variables) if id(v) in trainable
        ]
        if not candidates:
            return
        free = [i for i in candidates if plan.variables[i].regularizer is None]
        anchor = (free or candidates)[0]
        variable = plan.variables[anchor]
        previous = variable.regularizer
        self._penalty = (variable, previous)
        variable.regularizer = _GroupPenalty(self, anchor, previous)
        self._rebuild_functions()

    def _detach_penalty(self):
        variable, previous = self._penalty
        variable.regularizer = previous
        self._penalty = None
        self._rebuild_functions()

    def _rebuild_functions(self):
        model = self.model
        model.make_train_function(force=True)
        if getattr(model, "test_function", None) is not None:
            model.make_test_function(force=True)

    def penalty(self):
        """The current group penalty `strength * sum_u g_u sqrt(p_u) ||W_u||`.

        Returns:
            A Python float (0.0 before the first `fit`).
        """
        plan = self._plan
        if plan is None or not plan.num_units:
            return 0.0
        norms = proximal.numpy_group_norms(self._values(), plan.entries, plan.num_segments)
        weights = ops.convert_to_numpy(self._unit_weights.value)
        return float(self.strength * np.sum(weights * norms))

    # ------------------------------------------------------------ logs

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


def _from_regularizers(group, num_units):
    for unit_slice in group.slices:
        if unit_slice.role != "producer":
            continue
        variable = units_lib.get_weight(unit_slice.layer, unit_slice.weight)
        regularizer = getattr(variable, "regularizer", None)
        if isinstance(regularizer, regularizers_lib.GuidedRegularizer):
            return regularizer.coefficients(num_units)
    return np.zeros(num_units)


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
