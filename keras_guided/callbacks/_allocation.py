"""How a budget of `GuidedPruning` is shared among the layers of a plan.

Both the importance guidance (`_importance`) and the landing (`_landing`)
of the budget recipe keep, in every layer, a floor of its best units: a
penalty that pushed one stage hardest must not leave it a unit or two.
The floor is a share (`FLOOR`) of what the *uniform* allocation meeting
the budget gives the layer, every layer keeping the same fraction of its
live units. An `Allocation` computes that uniform allocation and each
layer's best units for one plan and budget metric, and checks at the
start of `fit` that the smallest allocation (every group cut to one unit)
meets the budget at all; it reads the plan and budget metric of the
`fit`'s context and the live metrics.
"""

import math
import warnings

import numpy as np

from keras_guided import scoring

#: Under importance guidance, every layer keeps at least this share of the
#: units that a uniform allocation meeting the budget would give it.
FLOOR = 0.5


class Allocation:
    """Per-layer allocations of the units of one plan under a budget, and
    whether the budget is within reach.

    Args:
        context: the `FitContext` of a `fit` with a budget (its `plan`,
            and the budget metric, `"units"`, `"params"`, `"flops"` or
            `"latency"`).
        metrics: the `LiveMetrics` of that plan (prices an allocation).
    """

    def __init__(self, context, metrics):
        self.plan = context.plan
        self.metrics = metrics
        self.metric = context.budget[0]

    def uniform(self, live, norms, goal):
        """The largest fraction `f` for which keeping the `ceil(f * n)`
        largest-norm live units of every layer meets the budget `goal`,
        and that allocation's live flags (at least one unit per layer)."""

        def keep(fraction):
            trial = np.zeros(self.plan.num_units, dtype=bool)
            trial[self.best_of_each_layer(live, norms, fraction)] = True
            return trial

        low, high = 0.0, 1.0
        for _ in range(24):  # bisection to 6e-8
            middle = (low + high) / 2
            if self.metrics.value(self.metric, keep(middle)) <= goal:
                low = middle
            else:
                high = middle
        return low, keep(low)

    def best_of_each_layer(self, live, scores, share):
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

    def check_reachable(self, live, start, goal, on_unreachable):
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
        if on_unreachable == "warn":
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
