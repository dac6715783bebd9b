"""The budget recipe of `GuidedPruning`: start, control, guard, land.

`GuidedPruning(target={"flops": 0.1})` measures the live network at the
start of `fit`, calibrates a strength, and lets a
`keras_guided.budget.BudgetController` steer it along a cubic path at about
ten check points per epoch. Between check points the death guard of the
proximal step (`keras_guided.proximal`) lets at most `allowed` units die.
At the end of the path the callback lands exactly on the budget and
releases the strength. A `BudgetMode` owns this recipe's state for one
`fit` (goal, controller, landing, `report`); it sets the guidance
coefficients through the callback's `Coefficients` and the strength and
the death guard through its `StepRunner`.
"""

import math
import warnings

import numpy as np
from keras import ops

from keras_guided import budget as budget_lib
from keras_guided import proximal
from keras_guided import scoring
from keras_guided.callbacks import _step_runner

#: Under importance guidance, every layer keeps at least this share of the
#: units that a uniform allocation meeting the budget would give it.
FLOOR = 0.5
#: Under importance guidance with a params, FLOPs or latency budget, a
#: unit's importance is divided by `(marginal cost / mean) ** COST_POWER`.
#: 0 (no cost in the ranking; the budget still decides how many units fit)
#: was chosen on validation images: on CIFAR-10 ResNet-20 it kept 77.0 %
#: at half the FLOPs and 74.2 % at a quarter, against 75.9 % and 70.4 %
#: with 0.5 (72.0 % with 0.25 at a quarter), and on MNIST LeNet-5 it was
#: as good or better at 4x to 20x fewer FLOPs (docs/benchmarks.md).
COST_POWER = 0.0
#: How importance guidance measures a unit within its layer: `"rank"` (the
#: quantile of its group norm) or `"relative"` (its group norm over the
#: layer's mean live norm).
IMPORTANCE = "rank"


class BudgetMode:
    """The budget recipe of one `fit`.

    Args:
        budget: `(metric, amount)` as `keras_guided.budget.parse_budget`
            returns it.
        guidance: the callback's validated `guidance` (`"importance"` or
            a fixed scheme).
        cost: `None`, `"params"`, `"flops"` or `"latency"`.
        target_epochs: `None` (two thirds of the remaining epochs) or the
            epochs of the path.
        base_strength: `None` (calibrated) or the controller's start.
        plan, metrics, coefficients, runner: the callback's `GroupPlan`,
            `LiveMetrics`, `Coefficients` and `StepRunner` of this `fit`.
        values: callable returning the plan variables as NumPy arrays.
        on_unreachable: `"raise"` or `"warn"`, for a budget out of reach
            (`check_reachable`). Defaults to `"raise"`.
    """

    def __init__(self, budget, *, guidance, cost, target_epochs,
                 base_strength, plan, metrics, coefficients, runner, values,
                 on_unreachable="raise"):
        self.on_unreachable = on_unreachable
        self.metric, self.amount = budget
        self.guidance = guidance
        self.cost = cost
        self.target_epochs = target_epochs
        self.base_strength = base_strength
        self.plan = plan
        self.metrics = metrics
        self.coefficients = coefficients
        self.runner = runner
        self.values = values
        self.goal = None
        self.controller = None
        self.landed = False
        self.epoch = 0
        self.control_every = 1
        self.steps_per_epoch = 1
        self.start_epoch = 0
        self.landing_epoch = 0
        self.report = None

    def start(self, epoch, params):
        """Measures the start value, sets the goal, calibrates the strength
        and creates the controller (first epoch of each `fit`)."""
        plan = self.plan
        metric, amount = self.metric, self.amount
        params = params or {}
        total = int(params.get("epochs") or (epoch + 1))
        target_epochs = self.target_epochs
        if target_epochs is None:
            # Two thirds of the epochs to prune, one third to recover.
            target_epochs = max(1, int(round(2 * (total - epoch) / 3)))
        steps = int(params.get("steps") or 1)
        self.control_every = max(1, steps // 10)
        self.start_epoch = epoch
        self.epoch = epoch
        self.landing_epoch = min(epoch + target_epochs, total)
        live, _ = self._live_units()
        if self.cost is not None:
            self.coefficients.update_cost_factors(live)
        start = self.metrics.value(metric, live)
        goal = budget_lib.budget_value(amount, start)
        self.check_reachable(live, start, goal)
        self.goal = goal
        if self.guidance == "importance":
            self.importance_guidance(live)
        strength = self.base_strength
        if strength is None:
            norms = proximal.numpy_group_norms(
                self.values(), plan.entries, plan.num_segments
            )[:-1]
            weights = ops.convert_to_numpy(
                self.runner.unit_weights.value
            )[:-1]
            learning_rate = float(ops.convert_to_numpy(
                self.runner.model.optimizer.learning_rate
            ))
            strength = budget_lib.initial_strength(
                norms, weights, learning_rate, steps * target_epochs
            )
        self.controller = budget_lib.BudgetController(start, goal, strength)
        norms = proximal.numpy_group_norms(
            self.values(), plan.entries, plan.num_segments
        )
        floor = 1e-3 * norms
        floor[-1] = 0.0
        self.runner.floor.assign(floor.astype("float32"))
        self.steps_per_epoch = steps
        self.runner.allowed.assign(float(self.deaths_allowed(
            live, start, self.controller.planned(
                self.control_every / steps / max(target_epochs, 1)
            )
        )))
        if not plan.num_units:
            self.controller.reached = True
            self.controller.strength = 0.0
        self.landed = self.controller.reached
        self.report = {
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

    def state(self):
        """What a resumed `fit` needs of this recipe (JSON values)."""
        controller = self.controller
        return {
            "goal": self.goal,
            "controller": [controller.start, controller.goal,
                           controller.strength, controller.reached],
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
        self.landing_epoch = int(state["landing_epoch"])
        report = dict(state["report"])
        report["trace"] = [tuple(point) for point in report["trace"]]
        self.report = report

    def check_reachable(self, live, start, goal):
        """Raises when the budget is out of reach: with every group of the
        plan cut to one unit (the guard never empties a layer) the model
        still keeps more than `goal`. Frozen groups and groups whose dead
        units `prune_model` leaves in place count whole.

        With `on_unreachable="warn"` it warns instead, and training
        prunes as close to the budget as the layers allow.

        Raises:
            ValueError: the message of `prune_model(target=...)` for a
                target out of reach, with what training can change.
        """
        floor = self.metrics.floor(self.metric, live)
        if floor <= goal * (1 + 1e-9) + 1e-9:
            return
        fixed = {}
        for _, why in self.plan.fixed:
            fixed[why] = fixed.get(why, 0) + 1
        parts = [f"{len(self.plan.groups)} trainable"] + [
            f"{count} {why}" for why, count in sorted(fixed.items())
        ]
        message = (
            scoring.unreachable_message(
                floor, start, goal / start if start else 1.0, self.metric
            )
            + " Training prunes only the trainable groups whose dead units "
            "prune_model removes exactly; the others keep all their units "
            f"(prunable groups: {', '.join(parts)})."
        )
        if self.on_unreachable == "warn":
            warnings.warn(
                message + " Pruning as close to the budget as the layers "
                "allow (on_unreachable='warn').",
                stacklevel=2,
            )
            return
        raise ValueError(
            message + " Raise the target, make more groups prunable, or "
            "pass on_unreachable='warn' to prune as far as they allow."
        )

    def begin_epoch(self, epoch):
        """A later epoch of the `fit`: re-ranks importance guidance until
        the landing."""
        if self.guidance == "importance" and not self.landed:
            self.importance_guidance(self.live_from_dead())
        self.epoch = epoch

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
        _step_runner.sync(self.runner.model)
        live = self.live_from_dead()
        if self.cost is not None and self.guidance != "importance":
            self.coefficients.update_cost_factors(live)
        value = self.metrics.value(metric, live)
        # Units held at their floor count as removed for the controller:
        # they are on their way out, and pushing harder would only shrink
        # the units that stay.
        effective = value
        if self.guidance != "importance":
            held = ops.convert_to_numpy(self.runner.held.value)[:-1] > 0
            effective = self.metrics.value(metric, live & ~held)
        span = max(self.landing_epoch - self.start_epoch, 1)
        progress = (epochs_done - self.start_epoch) / span
        strength = controller.update(effective, progress)
        self.runner.strength.assign(strength)
        step = self.control_every / self.steps_per_epoch / span
        self.runner.allowed.assign(float(self.deaths_allowed(
            live, value, controller.planned(progress + step)
        )))
        self.report["trace"].append(
            (round(float(epochs_done), 3), float(value), float(strength))
        )
        if controller.reached and not self.landed:
            # On budget, counting held units as gone: cut them now (before
            # the released strength lets them grow back) and recover.
            self.land(self.epoch)

    def epoch_end(self, epoch, logs):
        controller = self.controller
        report = self.report
        if not self.landed and epoch + 1 >= self.landing_epoch:
            self.land(epoch)
        live, _ = self._live_units()
        report["value"] = float(self.metrics.value(self.metric, live))
        logs["budget_goal"] = controller.goal
        span = max(self.landing_epoch - self.start_epoch, 1)
        logs["budget_planned"] = controller.planned(
            (epoch + 1 - self.start_epoch) / span
        )

    def land(self, epoch):
        """Ends pruning on the budget: zeroes the live units that the
        proximal step would take next (smallest norm per unit of push) until
        the budget holds, then releases the strength. Each layer keeps at
        least `FLOOR` times its uniform share (or less where that does not
        fit), as under importance guidance."""
        plan = self.plan
        controller = self.controller
        metric = self.metric
        live, _ = self._live_units()
        value = self.metrics.value(metric, live)
        report = self.report
        report["landed_at_epoch"] = int(epoch)
        report["value_before_landing"] = float(value)
        controller.reached = True
        controller.strength = 0.0
        self.landed = True
        self.runner.strength.assign(0.0)
        if value <= controller.goal:
            return
        norms = proximal.numpy_group_norms(
            self.values(), plan.entries, plan.num_segments
        )[:-1]
        weights = ops.convert_to_numpy(self.runner.unit_weights.value)[:-1]
        score = norms / np.maximum(weights, proximal.TINY)

        def value_without(count):
            trial = live.copy()
            trial[order[:count]] = False
            return self.metrics.value(metric, trial)

        # Every layer keeps its best-scored units up to its floor (FLOOR
        # times the share a uniform allocation meeting the budget gives
        # it; halved until the budget fits, down to one unit): a penalty
        # that pushed one stage hardest must not leave it a unit or two.
        share = FLOOR * self.uniform_allocation(live, norms)[0]
        while True:
            kept = set(self._best_of_each_layer(live, score, share))
            order = sorted((int(u) for u in np.flatnonzero(live)
                            if int(u) not in kept), key=lambda u: score[u])
            if share <= 0 or value_without(len(order)) <= controller.goal:
                break
            share = share / 2 if share > 1e-3 else 0.0

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
            if self.metrics.value(metric, trial) <= controller.goal:
                removed.remove(unit)
            else:
                trial[unit] = False
        dead = ops.convert_to_numpy(self.runner.dead.value).copy()
        dead[removed] = 1.0
        self.runner.dead.assign(dead)
        self.runner.run(0.0)  # threshold 0: only zeroes the dead units
        report["units_masked_at_landing"] = len(removed)

    def importance_guidance(self, live):
        """Budget-aware, importance-ranked guidance.

        Units are ranked by importance: the rank of their group norm within
        their layer, as a fraction (the filter-norm criterion of Li et
        al., 2017, made comparable across layers), divided by their
        relative marginal cost to the power `COST_POWER` (0 by default: the
        ranking ignores cost, so every layer gives up the same share of its
        units unless a floor or the budget's fit says otherwise).
        The best-ranked units that fit in the budget get coefficient 0: the
        penalty never shrinks what the budget keeps. The others get
        coefficients rising from 1 to 2 with falling rank, so the weakest
        go first.

        Two guards keep the layer allocation sane under a costly budget:

        * marginal costs are priced at the *uniform* allocation that meets
          the budget (every layer keeping the same fraction of its live
          units), not at the live network. Priced in the live network, the
          units after a wide layer look cheap only because that layer is
          still wide, so at 20x fewer FLOPs LeNet-5 kept 480 of its 500
          Dense units and 1 to 3 of its 50 filters;
        * every layer keeps at least half the units the uniform allocation
          gives it (`FLOOR`), or less where that does not fit.
        """
        plan = self.plan
        metric = self.metric
        norms = proximal.numpy_group_norms(
            self.values(), plan.entries, plan.num_segments
        )[:-1]
        importance = np.zeros(plan.num_units)
        for group, start in zip(plan.groups, plan.offsets):
            part = slice(start, start + group.num_units)
            # Rank within the layer (as a fraction): norms are not
            # comparable across layers, quantiles are.
            if IMPORTANCE == "relative":
                alive = norms[part][live[part]]
                mean = float(alive.mean()) if alive.size else 0.0
                importance[part] = norms[part] / mean if mean > 0 else 0.0
            else:
                ranks = np.argsort(np.argsort(norms[part], kind="stable"))
                importance[part] = (ranks + 1) / group.num_units
        fraction, uniform = self.uniform_allocation(live, norms)
        if metric != "units" and uniform.any() and COST_POWER:
            costs = self.metrics.unit_marginal_costs(uniform, metric)
            mean = float(costs[uniform].mean())
            if mean > 0:
                importance = importance / np.power(
                    np.maximum(costs / mean, 1e-12), COST_POWER
                )
        importance = np.where(live, importance, -np.inf)

        def fits(order, count):
            trial = np.zeros(plan.num_units, dtype=bool)
            trial[order[:count]] = True
            return self.metrics.value(metric, trial) <= self.goal

        share = FLOOR * fraction
        while True:
            # Each layer's best live units are kept first: its floor, and
            # never fewer than one unit.
            first = self._best_of_each_layer(live, importance, share)
            chosen = set(first)
            order = first + [
                int(u) for u in np.argsort(-importance, kind="stable")
                if live[u] and int(u) not in chosen
            ]
            if share <= 0 or fits(order, len(first)):
                break
            share = share / 2 if share > 1e-3 else 0.0
        low, high = len(first), len(order)
        while low < high:  # the largest prefix within the budget
            middle = (low + high + 1) // 2
            if fits(order, middle):
                low = middle
            else:
                high = middle - 1
        coefficients = np.zeros(plan.num_units)
        doomed = order[low:]
        if doomed:
            coefficients[doomed] = 1.0 + np.arange(len(doomed)) / max(
                len(doomed) - 1, 1
            )
        self.coefficients.set_without_cost([
            coefficients[start:start + group.num_units]
            for group, start in zip(plan.groups, plan.offsets)
        ])

    def uniform_allocation(self, live, norms):
        """The largest fraction `f` for which keeping the `ceil(f * n)`
        largest-norm live units of every layer meets the budget, and that
        allocation's live flags (at least one unit per layer)."""

        def keep(fraction):
            trial = np.zeros(self.plan.num_units, dtype=bool)
            trial[self._best_of_each_layer(live, norms, fraction)] = True
            return trial

        low, high = 0.0, 1.0
        for _ in range(24):  # bisection to 6e-8
            middle = (low + high) / 2
            if self.metrics.value(self.metric, keep(middle)) <= self.goal:
                low = middle
            else:
                high = middle
        return low, keep(low)

    def _best_of_each_layer(self, live, scores, share):
        """Unit indices: in every layer, its `ceil(share * n)` live units
        with the highest `scores` (`n` its live units; at least one where
        any is live), best first, layer after layer."""
        chosen = []
        for group, start in zip(self.plan.groups, self.plan.offsets):
            ids = np.arange(start, start + group.num_units)
            ids = ids[live[ids]]
            if len(ids):
                count = max(1, int(math.ceil(share * len(ids))))
                best = np.argsort(-scores[ids], kind="stable")[:count]
                chosen.extend(int(u) for u in ids[best])
        return chosen

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
        if not self.runner.keep_dead:
            return self._live_units()[0]
        _step_runner.sync(self.runner.model)
        dead = ops.convert_to_numpy(self.runner.dead.value)[:-1]
        return dead == 0

    def _live_units(self):
        return self.metrics.live_units(self.values())
