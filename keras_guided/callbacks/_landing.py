"""The landing of the budget recipe of `GuidedPruning`: the cut that ends
the path on the budget.

When the controller reaches the budget (counting units held at their
floor as gone), or the path's last epoch ends, `BudgetMode` releases the
strength and a `Landing` zeroes the live units that the proximal step
would take next (smallest norm per unit of push) until the budget holds.
Each layer keeps at least `_allocation.FLOOR` times its uniform share (or
less where that does not fit), as under importance guidance. The units
are zeroed through the dead mask of the `fit`'s `StepRunner` (the
context's `runner`), so they stay dead while the network recovers.
"""

import numpy as np
from keras import ops

from keras_guided import proximal
from keras_guided.callbacks import _allocation


class Landing:
    """Masks the units that the landing of one `fit` cuts.

    Args:
        context: the `FitContext` of a `fit` with a budget (its `plan`,
            the budget metric, the plan variables through `values`, and
            the `runner`: unit weights, dead mask and the step that zeroes
            the dead units).
        metrics: the `LiveMetrics` of that plan.
        allocation: the `Allocation` of the plan and metric.
    """

    def __init__(self, context, metrics, allocation):
        self.plan = context.plan
        self.metrics = metrics
        self.metric = context.budget[0]
        self.runner = context.runner
        self.values = context.values
        self.allocation = allocation

    def mask(self, live, goal, uniform_goal):
        """Zeroes live units, the weakest per unit of push first, until the
        live metric is at most `goal` (or as close as the layers' floors
        allow); each layer's floor is a share of its allocation at the
        uniform fraction meeting `uniform_goal`.

        Returns:
            The number of units zeroed.
        """
        plan = self.plan
        metric = self.metric
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
        share = (
            _allocation.FLOOR
            * self.allocation.uniform(live, norms, uniform_goal)[0]
        )
        while True:
            kept = set(self.allocation.best_of_each_layer(live, score, share))
            order = sorted(
                (int(u) for u in np.flatnonzero(live) if int(u) not in kept),
                key=lambda u: score[u],
            )
            if share <= 0 or value_without(len(order)) <= goal:
                break
            share = share / 2 if share > 1e-3 else 0.0

        low, high = 1, len(order)
        if not order or value_without(high) > goal:
            low = high  # as close as the layers allow
        while low < high:
            middle = (low + high) // 2
            if value_without(middle) <= goal:
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
            if self.metrics.value(metric, trial) <= goal:
                removed.remove(unit)
            else:
                trial[unit] = False
        dead = ops.convert_to_numpy(self.runner.dead.value).copy()
        dead[removed] = 1.0
        self.runner.dead.assign(dead)
        self.runner.run(0.0)  # threshold 0: only zeroes the dead units
        return len(removed)
