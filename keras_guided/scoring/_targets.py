"""A target into a plan: the grammar read once, the greedy it goes to.

A target says what the pruned model keeps (`GuidedPruning(target=...)`'s
grammar, `keras_guided.budget.parse_budget`): `0.25` keeps a quarter of
the prunable units, `{"flops": 0.5}` half of the FLOPs, `{"units": 66}`
66 units. `plan_from_target` reads it into a `Target`, gathers the
planning inputs into one `PlanInputs` value, and hands both to one
greedy: the count greedy (`_greedy`: units, params, FLOPs) or the latency
greedy (`_latency_greedy`), each of which returns the plan.
"""

import dataclasses

import numpy as np

from keras_guided import budget as budget_lib
from keras_guided.scoring import _greedy
from keras_guided.scoring import _latency_greedy
from keras_guided.scoring._importance import default_scores
from keras_guided.scoring._limits import check_limits

METRICS = budget_lib.METRICS


@dataclasses.dataclass(frozen=True)
class Target:
    """A target read once: what to keep, as a share or a count.

    Attributes:
        metric: `"units"`, `"params"`, `"flops"` or `"latency"`.
        fraction: the kept share (1.0 for a count, the error messages'
            reference).
        count: the kept count (milliseconds for latency), or `None` for
            a share.
    """

    metric: str
    fraction: float
    count: int = None

    def goal(self, total):
        """What the plan keeps at most, given the full model's `total`."""
        if self.count is None:
            return self.fraction * total
        return float(self.count)


@dataclasses.dataclass(frozen=True)
class PlanInputs:
    """What every planner reads besides the target.

    Attributes:
        groups: `UnitGroup`s of `model`.
        model: the model (for params, FLOPs and latency totals).
        scores: per-group unit scores; `None` means `default_scores`.
        min_units: fewest units kept per group (a count or a share).
        round_to: kept counts rounded up to a multiple, or `None`.
        relative: rank units by their score relative to their group's
            mean.
        shapes: concrete shapes for a variable-length model, or `None`.
        latency_table: the `keras_guided.latency.LatencyTable` of `model`
            (a latency target), or `None`.
    """

    groups: list
    model: object
    scores: list = None
    min_units: object = 1
    round_to: int = None
    relative: bool = True
    shapes: dict = None
    latency_table: object = None

    def __post_init__(self):
        if self.scores is None:
            object.__setattr__(self, "scores", default_scores(self.groups))


def read_target(target):
    """`target` as a `Target` (see the module doc).

    Raises:
        ValueError: unless it is a fraction in (0, 1] or a one-key dict
            `{metric: fraction or count}`.
    """
    count = None
    if isinstance(target, dict):
        try:
            _, amount = budget_lib.parse_budget(target)
        except ValueError:
            amount = None  # parse_target says what is wrong
        if isinstance(amount, int):
            count = amount
            target = {next(iter(target)): 1.0}
    metric, fraction = parse_target(target)
    return Target(metric, fraction, count)


def parse_target(target):
    """Returns `(metric, kept fraction)` from a float or a one-key dict.

    A target says what the pruned model keeps: `0.25` keeps a quarter of
    the prunable units, `{"flops": 0.5}` half of the FLOPs. The same meaning
    as `GuidedPruning(target=...)`: the value to reach.
    """
    if isinstance(target, dict) and len(target) == 1:
        metric, fraction = next(iter(target.items()))
    else:
        metric, fraction = "units", target
    valid = (
        metric in METRICS
        and isinstance(fraction, (int, float, np.floating))
        and not isinstance(fraction, bool)
        and 0 < fraction <= 1
    )
    if not valid:
        raise ValueError(
            "`target` must be the fraction to keep, a float in (0, 1], or "
            f"a dict with one key in {METRICS}, e.g. "
            f"{{'flops': 0.5}} to keep half of the FLOPs. "
            f"Received: target={target!r}"
        )
    return metric, float(fraction)


def plan_for(inputs, target):
    """The plan of `target` (a `Target`) over `inputs` (`PlanInputs`): the
    latency greedy for a latency target or with a table, else the count
    greedy."""
    if target.metric == "latency" or inputs.latency_table is not None:
        return _latency_greedy.plan_for_latency(inputs, target)
    return _greedy.plan_for_count(inputs, target)


def plan_from_target(
    groups,
    model,
    target,
    scores=None,
    min_units=1,
    round_to=None,
    relative=True,
    shapes=None,
    latency_table=None,
):
    """A plan removing the least important units until `target` is met.

    `target` is what the model keeps at most (the value to reach), as in
    `GuidedPruning(target=...)`: units are removed until the exact kept
    cost (`KeptCost`) is at most the target, so the result is within one
    unit of it. Dead units (score 0) are always removed, even when that
    leaves less than the target.

    Units are ranked over all prunable groups together. With
    `relative=True` a unit's score is divided by the mean score of its
    group first, so layers whose weights have a different scale (fan-in,
    initializer) are not emptied wholesale. A `{"latency": ...}` target
    ranks units by score per millisecond its removal saves in the
    `latency_table` (a knapsack greedy, see `keras_guided.latency`), so
    the plan spends its cuts where the measured kernels are slow.

    Args:
        groups: `UnitGroup`s of `model`.
        model: the model (for params and FLOPs totals).
        target: what to keep: a float fraction (of the units of prunable
            groups), or a dict `{"units" | "params" | "flops" |
            "latency": amount}` with a float fraction or an int count (the
            grammar of `GuidedPruning(target=...)`; a latency count is in
            milliseconds).
        scores: per-group unit scores; defaults to `unit_scores(groups)`
            with dead units at 0.
        min_units: fewest units kept per group: an int count, or a float
            in (0, 1] for a share of each group. Defaults to 1.
        round_to: kept counts rounded up to a multiple. Defaults to `None`.
        relative: rank units by their score relative to their group's
            mean. Defaults to `True`.
        shapes: concrete tensor shapes for a variable-length model (see
            `stats.weight_costs`); FLOPs need them. Defaults to `None`.
        latency_table: the `keras_guided.latency.LatencyTable` of `model`;
            required by a latency target, refused otherwise. Defaults to
            `None`.

    Returns:
        A plan `{group index: kept unit indices}`.

    Raises:
        ValueError: for a bad `target`, or one that cannot be reached
            within `min_units`, a latency target without a table (or with
            the table of another model).

    Examples:
        >>> import keras, keras_guided
        >>> model = keras.Sequential([keras.Input((4,)),
        ...     keras.layers.Dense(8), keras.layers.Dense(6),
        ...     keras.layers.Dense(1)])
        >>> groups = keras_guided.find_unit_groups(model)
        >>> plan = keras_guided.scoring.plan_from_target(groups, model, 0.5)
        >>> sum(groups[i].num_units - len(kept) for i, kept in plan.items())
        7
    """
    check_limits(min_units, round_to)
    target = read_target(target)
    inputs = PlanInputs(
        groups,
        model,
        scores=scores,
        min_units=min_units,
        round_to=round_to,
        relative=relative,
        shapes=shapes,
        latency_table=latency_table,
    )
    return plan_for(inputs, target)
