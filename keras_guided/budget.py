"""The budget recipe: a strength controller that lands on a size budget.

Users think in budgets ("keep 10 % of the FLOPs, and get there in 20
epochs"), not in penalty strengths, whose useful scale depends on the
optimizer, the learning rate, the model and the data. `BudgetController`
turns a budget into a strength path:

* a *planned path* for the live metric (units, params or FLOPs), from its
  value at the start of `fit` down to the budget at `target_epochs`,
  following the cubic path of gradual pruning (Zhu & Gupta, 2017): fast
  while there is plenty to remove, slow while landing;
* a *multiplicative controller* on the strength: behind the path, the
  strength grows; ahead of it, it shrinks. A multiplicative law has no
  scale of its own, so the same controller works for SGD and Adam, whose
  useful strengths differ by orders of magnitude;
* an automatic *initial strength*, calibrated from the unit norms and the
  learning rate so that, without any resistance from the loss, the
  proximal step alone would zero a typical unit in about a third of the
  pruning epochs.

The controller is pure Python (no Keras state): `GuidedPruning` feeds it
the measured live metric and reads the strength back, which keeps it easy
to test and to reuse with another training loop.

References:
    Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of
    pruning for model compression", 2017 (the cubic path).
"""

import math

import numpy as np

METRICS = ("units", "params", "flops", "latency")


def parse_budget(target, name="target"):
    """Checks a target in the one grammar `{metric: amount}`.

    `amount` is a fraction of the starting value (a float in `(0, 1]`) or an
    absolute count (an int >= 1).

    Args:
        target: a one-key dict such as `{"flops": 0.1}` or `{"units": 66}`.
        name: the argument name used in error messages.

    Returns:
        `(metric, amount)`.

    Raises:
        ValueError: for anything else.
    """
    valid = isinstance(target, dict) and len(target) == 1
    if valid:
        metric, amount = next(iter(target.items()))
        valid = metric in METRICS and _is_amount(amount)
    if not valid:
        raise ValueError(
            f"`{name}` must be a dict with one key in {list(METRICS)} and a "
            "value that is a fraction to keep (a float in (0, 1]) or a "
            "count (an int >= 1), e.g. {'flops': 0.1} or {'units': 66}. "
            f"Received: {name}={target!r}"
        )
    if isinstance(amount, (float, np.floating)):
        return metric, float(amount)
    return metric, int(amount)


def _is_amount(amount):
    if isinstance(amount, bool):
        return False
    if isinstance(amount, (int, np.integer)):
        return amount >= 1
    if isinstance(amount, (float, np.floating)):
        return math.isfinite(amount) and 0 < amount <= 1
    return False


def budget_value(amount, start_value):
    """The budget as an absolute value: a fraction of `start_value`, or the
    count itself."""
    if isinstance(amount, float):
        return amount * float(start_value)
    return float(amount)


def planned_value(start, goal, progress, exponent=3.0):
    """The live metric planned at `progress` (0 at the start, 1 at the end
    of the pruning epochs): `goal + (start - goal) * (1 - progress)**3`."""
    progress = min(max(float(progress), 0.0), 1.0)
    return goal + (start - goal) * (1.0 - progress) ** exponent


def initial_strength(unit_norms, unit_weights, learning_rate, steps):
    """A strength at which the proximal step alone would zero the median
    unit in `steps` optimizer steps.

    A proximal step shrinks unit `u` by `lr * strength * w_u` (`w_u` its
    guidance coefficient times `sqrt(p_u)`), so `steps` steps remove
    `norm_u` when `strength = norm_u / (lr * steps * w_u)`.

    Args:
        unit_norms: array, the current group norm of every unit.
        unit_weights: array, `g_u * sqrt(p_u)` of every unit.
        learning_rate: the optimizer's learning rate (a positive float).
        steps: the number of optimizer steps to reach zero.

    Returns:
        A positive float (`1e-3` when nothing can be calibrated).
    """
    norms = np.asarray(unit_norms, dtype="float64")
    weights = np.asarray(unit_weights, dtype="float64")
    usable = (norms > 0) & (weights > 0)
    if not usable.any() or learning_rate <= 0 or steps <= 0:
        return 1e-3
    ratios = norms[usable] / weights[usable]
    return float(np.median(ratios) / (float(learning_rate) * steps))


class BudgetController:
    """Steers the strength so the live metric follows the planned path.

    At every check, with `error = (value - planned) / (start - goal)` (the
    lag behind the path as a fraction of what is to be removed), the
    strength is multiplied by `exp(gain * error)`, by at most
    `max_step` (or its inverse) per check. Once the value is at or below
    the goal the strength is 0 (released): removed units stay removed and
    the rest recovers.

    Args:
        start: the live metric at the start of pruning.
        goal: the budget, an absolute value below `start`.
        strength: the initial strength.
        gain: controller gain. Defaults to `2.0`.
        exponent: exponent of the planned path. Defaults to `3.0`.
        max_step: the largest factor applied in one check. Defaults to
            `1.25`.

    Examples:
        >>> from keras_guided.budget import BudgetController
        >>> controller = BudgetController(start=100, goal=20, strength=0.1)
        >>> controller.update(value=100, progress=0.5) > 0.1  # behind
        True
        >>> controller.update(value=20, progress=0.6)  # on budget: release
        0.0
    """

    def __init__(
        self, start, goal, strength, gain=2.0, exponent=3.0, max_step=1.25
    ):
        self.start = float(start)
        self.goal = float(goal)
        self.strength = float(strength)
        self.gain = float(gain)
        self.exponent = float(exponent)
        self.max_step = math.log(float(max_step))
        self.reached = self.start <= self.goal
        if self.reached:
            self.strength = 0.0

    def planned(self, progress):
        """The value planned at `progress` in `[0, 1]`."""
        return planned_value(self.start, self.goal, progress, self.exponent)

    def update(self, value, progress):
        """Reads the live value at `progress` and returns the new strength."""
        if self.reached or value <= self.goal:
            self.reached = True
            self.strength = 0.0
            return self.strength
        span = max(self.start - self.goal, 1e-12)
        error = (float(value) - self.planned(progress)) / span
        factor = math.exp(
            min(max(self.gain * error, -self.max_step), self.max_step)
        )
        self.strength *= factor
        return self.strength


__all__ = [
    "BudgetController",
    "budget_value",
    "initial_strength",
    "parse_budget",
    "planned_value",
]
