"""The budget recipe of `GuidedPruning`: start, control, guard, land.

`GuidedPruning(target={"flops": 0.1})` measures the live network at the
start of `fit`, calibrates a strength, and lets a
`keras_guided.budget.BudgetController` steer it along a cubic path at about
ten check points per epoch (at least `MIN_CHECKS` along the path).
Between check points the death guard of the proximal step
(`keras_guided.proximal`) lets at most `allowed` units die. At
the end of the path the callback lands exactly on the budget and releases
the strength. A `BudgetMode` owns this recipe's state for one
`fit` (goal, controller, landing, `report`) and runs the controller's
check points; it reads the `fit`'s `FitContext` and sets the strength
and the death guard through its `StepRunner`. It has the epoch interface
of `ScheduleMode` (`begin_epoch`, `batch_end`, `end_epoch`, `state`,
`restore`), and composes the recipe's other jobs, each in a module of its own:

* `_importance`: `ImportanceGuidance`, the guidance coefficients
  (through the `fit`'s `Coefficients`) under `guidance="importance"`;
* `_landing`: `Landing`, the cut that ends the path on the budget;
* `_allocation`: `Allocation`, the uniform allocation meeting the budget
  and each layer's best units, the floors both of them keep, and
  whether the budget is within reach.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_guided import budget as budget_lib
from keras_guided import proximal
from keras_guided.callbacks import _step_runner
from keras_guided.callbacks._allocation import Allocation
from keras_guided.callbacks._importance import ImportanceGuidance
from keras_guided.callbacks._landing import Landing

# Check points: about ten per epoch, and at least `MIN_CHECKS` along the
# path. The controller changes the strength by at most 1.25x per check,
# so a path of one or two epochs with ten checks each could raise it only
# 9x or 87x, and the live network would lag far behind the path.
CHECKS_PER_EPOCH = 10
MIN_CHECKS = 40


def control_interval(steps_per_epoch, path_epochs):
    """Batches between two controller check points on a path of
    `path_epochs` epochs (a float for part of an epoch) of
    `steps_per_epoch` batches."""
    per_epoch = steps_per_epoch // CHECKS_PER_EPOCH
    along_path = int(steps_per_epoch * path_epochs) // MIN_CHECKS
    return max(1, min(per_epoch, along_path))


def mean_learning_rate(optimizer, steps):
    """The optimizer's mean learning rate over its next `steps` steps (its
    current rate when it has no schedule): a cosine schedule over the
    path halves what the proximal step removes."""
    schedule = getattr(optimizer, "_learning_rate", None)
    schedules = keras.optimizers.schedules
    if not isinstance(schedule, schedules.LearningRateSchedule):
        return float(ops.convert_to_numpy(optimizer.learning_rate))
    first = int(ops.convert_to_numpy(optimizer.iterations))
    points = np.linspace(first, first + max(int(steps), 1), num=33)
    return float(
        np.mean([float(ops.convert_to_numpy(schedule(int(p)))) for p in points])
    )


class BudgetMode:
    """The budget recipe of one `fit`.

    Args:
        context: the `FitContext` of this `fit`: its budget `(metric,
            amount)` and the options the recipe reads (`guidance`, the
            validated guidance, `"importance"` or a fixed scheme; `cost`;
            `target_epochs`, `None` for two thirds of the remaining
            epochs; `base_strength`, `None` for a calibrated start;
            `on_unreachable`, for a budget out of reach), the `plan`, the
            `runner` (strength and death guard), the plan variables
            (`values`) and `params` (`"epochs"`, `"steps"`).
        metrics: the `LiveMetrics` of this `fit`.
        coefficients: the `Coefficients` of this `fit`.
    """

    def __init__(self, context, metrics, coefficients):
        self.context = context
        self.options = context.options
        self.metric, self.amount = context.budget
        self.metrics = metrics
        self.coefficients = coefficients
        self.allocation = Allocation(context, metrics)
        self.importance = ImportanceGuidance(
            context, metrics, coefficients, self.allocation
        )
        self.landing = Landing(context, metrics, self.allocation)
        self.goal = None
        self.controller = None
        self.landed = False
        self.epoch = 0
        self.control_every = 1
        self.steps_per_epoch = 1
        self.start_epoch = 0
        self.landing_epoch = 0
        self.report = None

    def begin_epoch(self, epoch, first):
        """The strength for `epoch`: with `first` (the epoch starts the run,
        not a resumed one) after `start`, else after re-ranking importance
        guidance until the landing."""
        if first:
            try:
                self.start(epoch)
            except ValueError:
                # A budget out of reach: the fit ends before its first
                # step, without on_train_end; take the step hook off.
                if self.context.runner.hooked:
                    self.context.runner.remove_hook()
                raise
        else:
            if self.options.guidance == "importance" and not self.landed:
                self.importance.update(self.live_from_dead(), self.goal)
            self.epoch = epoch
        return self.controller.strength

    def start(self, epoch):
        """Measures the start value, sets the goal, calibrates the strength
        and creates the controller (first epoch of each `fit`)."""
        plan = self.context.plan
        metric, amount = self.metric, self.amount
        params = self.context.params or {}
        total = int(params.get("epochs") or (epoch + 1))
        target_epochs = self.options.target_epochs
        if target_epochs is None:
            # Two thirds of the epochs to prune, one third to recover.
            target_epochs = max(1, int(round(2 * (total - epoch) / 3)))
        steps = int(params.get("steps") or 1)
        self.start_epoch = epoch
        self.epoch = epoch
        self.landing_epoch = min(epoch + target_epochs, total)
        self.steps_per_epoch = steps
        path_steps = max(1, int(round(steps * self._span())))
        self.control_every = control_interval(steps, self._span())
        live, _ = self._live_units()
        if self.options.cost is not None:
            self.coefficients.update_cost_factors(live)
        start = self.metrics.value(metric, live)
        goal = budget_lib.budget_value(amount, start)
        self.allocation.check_reachable(
            live, start, goal, self.options.on_unreachable
        )
        self.goal = goal
        if self.options.guidance == "importance":
            self.importance.update(live, self.goal)
        strength = self.options.base_strength
        if strength is None:
            norms = proximal.numpy_group_norms(
                self.context.values(), plan.entries, plan.num_segments
            )[:-1]
            weights = ops.convert_to_numpy(
                self.context.runner.unit_weights.value
            )[:-1]
            learning_rate = mean_learning_rate(
                self.context.model.optimizer, path_steps
            )
            strength = budget_lib.initial_strength(
                norms, weights, learning_rate, path_steps
            )
        self.controller = budget_lib.BudgetController(start, goal, strength)
        norms = proximal.numpy_group_norms(
            self.context.values(), plan.entries, plan.num_segments
        )
        floor = 1e-3 * norms
        floor[-1] = 0.0
        self.context.runner.floor.assign(floor.astype("float32"))
        self.context.runner.allowed.assign(
            float(
                self.deaths_allowed(
                    live,
                    start,
                    self.controller.planned(self.control_every / path_steps),
                )
            )
        )
        if not plan.num_units:
            self.controller.reached = True
            self.controller.strength = 0.0
        self.landed = self.controller.reached
        self.report = {
            "metric": metric,
            "start": float(start),
            "goal": float(goal),
            "initial_strength": float(strength),
            "target_epochs": target_epochs,
            "landed_at_epoch": None,
            "value_before_landing": None,
            "units_masked_at_landing": 0,
            "value": float(start),
            "trace": [],
        }

    def state(self):
        """What a resumed `fit` needs of this recipe (JSON values); `None`
        before `start`."""
        controller = self.controller
        if controller is None:
            return None
        return {
            "goal": self.goal,
            "controller": [
                controller.start,
                controller.goal,
                controller.strength,
                controller.reached,
            ],
            "landed": self.landed,
            "epoch": self.epoch,
            "control_every": self.control_every,
            "steps_per_epoch": self.steps_per_epoch,
            "start_epoch": self.start_epoch,
            "landing_epoch": self.landing_epoch,
            "report": self.report,
        }

    def restore(self, state):
        """The recipe as `state` left it (a resumed `fit`, instead of
        `start`)."""
        start, goal, strength, reached = state["controller"]
        self.controller = budget_lib.BudgetController(start, goal, strength)
        self.controller.strength = float(strength)
        self.controller.reached = bool(reached)
        self.goal = state["goal"]
        self.landed = bool(state["landed"])
        self.epoch = int(state["epoch"])
        self.control_every = int(state["control_every"])
        self.steps_per_epoch = int(state["steps_per_epoch"])
        self.start_epoch = int(state["start_epoch"])
        self.landing_epoch = state["landing_epoch"]
        report = dict(state["report"])
        report["trace"] = [tuple(point) for point in report["trace"]]
        self.report = report

    def batch_end(self, batch, epoch_steps):
        """A controller check point every `control_every` batches until the
        budget is reached."""
        if self.controller.reached or (batch + 1) % self.control_every:
            return
        steps = epoch_steps or (batch + 1)
        self.control(self.epoch + (batch + 1) / steps)

    def control(self, epochs_done):
        """One controller step: measure the live metric, steer the strength."""
        controller = self.controller
        metric = self.metric
        # JAX: the state lives in the train loop until synced.
        _step_runner.sync(self.context.model)
        live = self.live_from_dead()
        if (
            self.options.cost is not None
            and self.options.guidance != "importance"
        ):
            self.coefficients.update_cost_factors(live)
        value = self.metrics.value(metric, live)
        # Units held at their floor count as removed for the controller:
        # they are on their way out, and pushing harder would only shrink
        # the units that stay.
        effective = value
        if self.options.guidance != "importance":
            held = ops.convert_to_numpy(self.context.runner.held.value)[:-1] > 0
            effective = self.metrics.value(metric, live & ~held)
        span = self._span()
        progress = (epochs_done - self.start_epoch) / span
        strength = controller.update(effective, progress)
        self.context.runner.strength.assign(strength)
        step = self.control_every / self.steps_per_epoch / span
        self.context.runner.allowed.assign(
            float(
                self.deaths_allowed(
                    live, value, controller.planned(progress + step)
                )
            )
        )
        self.report["trace"].append(
            (round(float(epochs_done), 3), float(value), float(strength))
        )
        if controller.reached and not self.landed:
            # On budget, counting held units as gone: cut them now (before
            # the released strength lets them grow back) and recover.
            self.land(self.epoch)
        elif not self.landed and epochs_done >= self.landing_epoch - 1e-9:
            # The end of a path that ends within an epoch.
            self.land(self.epoch)

    def end_epoch(self, epoch, logs):
        """Lands at the end of the path, and logs `budget_goal` and
        `budget_planned`.

        Returns:
            `False`: the budget recipe never stops training.
        """
        controller = self.controller
        report = self.report
        if not self.landed and epoch + 1 >= self.landing_epoch:
            self.land(epoch)
        live, _ = self._live_units()
        report["value"] = float(self.metrics.value(self.metric, live))
        logs["budget_goal"] = controller.goal
        span = self._span()
        logs["budget_planned"] = controller.planned(
            (epoch + 1 - self.start_epoch) / span
        )
        return False

    def _span(self):
        """The path's length in epochs (at least one step)."""
        return max(
            self.landing_epoch - self.start_epoch, 1 / self.steps_per_epoch
        )

    def land(self, epoch):
        """Ends pruning on the budget: releases the strength and, where the
        live network is still over the budget, has the `Landing` zero the
        units that the proximal step would take next until it holds."""
        controller = self.controller
        live, _ = self._live_units()
        value = self.metrics.value(self.metric, live)
        report = self.report
        report["landed_at_epoch"] = int(epoch)
        report["value_before_landing"] = float(value)
        controller.reached = True
        controller.strength = 0.0
        self.landed = True
        self.context.runner.strength.assign(0.0)
        if value <= controller.goal:
            return
        report["units_masked_at_landing"] = self.landing.mask(
            live, controller.goal, self.goal
        )

    def deaths_allowed(self, live, value, planned):
        """How many more units may die before the next check without the
        live metric falling below `planned` (counting the costliest units
        first, so the count is safe for params and FLOPs too)."""
        planned = max(planned, self.controller.goal)
        excess = value - planned
        if excess <= 0:
            return 0
        metric = self.metric
        if metric == "units":
            return int(math.floor(excess + 1e-9))
        costs = self.metrics.unit_marginal_costs(live, metric)[live]
        cumulative = np.cumsum(np.sort(costs)[::-1])
        # At least one: with costly units (a convolution's filters) no
        # single death may fit in what is left, and the path would stall;
        # the landing then corrects by at most that one unit.
        return max(1, int(np.searchsorted(cumulative, excess, side="right")))

    def live_from_dead(self):
        """Live flags from the dead mask the proximal step keeps (no
        weight transfer); from the weights when dead units are not kept."""
        if not self.context.runner.keep_dead:
            return self._live_units()[0]
        _step_runner.sync(self.context.model)
        dead = ops.convert_to_numpy(self.context.runner.dead.value)[:-1]
        return dead == 0

    def _live_units(self):
        return self.metrics.live_units(self.context.values())
