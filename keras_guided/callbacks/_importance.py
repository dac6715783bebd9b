"""Importance guidance of the budget recipe of `GuidedPruning`
(`guidance="importance"`, the default with a budget target).

At the start of `fit` and at every epoch until the landing, an
`ImportanceGuidance` ranks the live units by importance and sets the
guidance coefficients through the `fit`'s `Coefficients`: the
best-ranked units that fit in the budget get coefficient 0 (the penalty
never shrinks what the budget keeps), the others rising coefficients.
`COST_POWER` and `IMPORTANCE` are the recipe's knobs (read at every call,
so the benchmarks can try other values).
"""

import numpy as np

from keras_guided import proximal
from keras_guided.callbacks import _allocation

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


class ImportanceGuidance:
    """Budget-aware, importance-ranked guidance of one `fit`.

    Args:
        context: the `FitContext` of a `fit` with a budget (its `plan`,
            the budget metric, and the plan variables through `values`).
        metrics: the `LiveMetrics` of that plan.
        coefficients: the `fit`'s `Coefficients` (receives the
            coefficients, without the cost factor).
        allocation: the `Allocation` of the plan and metric.
    """

    def __init__(self, context, metrics, coefficients, allocation):
        self.plan = context.plan
        self.metrics = metrics
        self.metric = context.budget[0]
        self.coefficients = coefficients
        self.values = context.values
        self.allocation = allocation

    def update(self, live, goal):
        """Sets the coefficients for the live units and the budget `goal`.

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
          gives it (`_allocation.FLOOR`), or less where that does not fit.
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
        fraction, uniform = self.allocation.uniform(live, norms, goal)
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
            return self.metrics.value(metric, trial) <= goal

        share = _allocation.FLOOR * fraction
        while True:
            # Each layer's best live units are kept first: its floor, and
            # never fewer than one unit.
            first = self.allocation.best_of_each_layer(live, importance, share)
            chosen = set(first)
            order = first + [
                int(u)
                for u in np.argsort(-importance, kind="stable")
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
        self.coefficients.set_without_cost(
            [
                coefficients[start : start + group.num_units]
                for group, start in zip(plan.groups, plan.offsets)
            ]
        )
