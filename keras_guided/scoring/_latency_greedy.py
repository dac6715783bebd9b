"""The latency greedy: a latency target into a plan (a knapsack greedy).

Units go in order of importance per millisecond: the next unit removed is
the one whose score (relative to its group's mean with `relative=True`)
divided by the latency its removal saves now is smallest. Savings come
from `KeptCost` over a `keras_guided.latency.LatencyTable`, so a
layer whose measured kernel is slow per channel loses channels first and
a flat stretch of the curve (no saving until the next sampled count) is
left alone. Savings change as neighbouring layers shrink, so a unit's
priority is recomputed when it reaches the top of the heap (lazy greedy)
and the unit goes back into the heap if another is now cheaper.
Dead units (score 0) always go, as for every target.
"""

import heapq

import numpy as np

from keras_guided import latency as latency_lib
from keras_guided.scoring._cost import KeptCost
from keras_guided.scoring._cost import plan_cost
from keras_guided.scoring._limits import floor_units
from keras_guided.scoring._limits import plan_from_mask
from keras_guided.scoring._limits import unreachable

_NO_SAVING = 1e-12


def plan_for_latency(inputs, target):
    """The plan keeping at most `target` (a latency `Target`) over
    `inputs` (`PlanInputs`); see the module doc."""
    groups, model, scores = inputs.groups, inputs.model, inputs.scores
    min_units, round_to = inputs.min_units, inputs.round_to
    shapes, table = inputs.shapes, inputs.latency_table
    _check_table(target.metric, table, model, shapes)
    cost = KeptCost(
        groups, model, "latency", shapes=shapes, latency_table=table
    )
    goal = target.goal(cost.total)
    state = _Greedy(groups, cost, scores, min_units, inputs.relative)
    state.remove_dead()
    aim = goal
    for _ in range(32):
        state.run(aim)
        plan = plan_from_mask(groups, state.masks, scores, min_units, round_to)
        kept = (
            plan_cost(groups, model, "latency", shapes, plan, table)
            if round_to
            else cost.kept
        )
        if (
            kept <= goal * (1 + 1e-9) + 1e-12
            or not round_to
            or (not state.heap)
        ):
            break
        aim -= kept - goal  # rounding gave units back: cut deeper
    if kept <= goal * (1 + 1e-9) + 1e-12:
        return plan
    unrounded = bool(round_to) and cost.kept <= goal * (1 + 1e-9) + 1e-12
    return unreachable(
        plan,
        kept,
        cost.total,
        target.fraction,
        "latency",
        min_units,
        round_to,
        unrounded,
        stacklevel=6,
    )


def _check_table(metric, table, model, shapes):
    if metric != "latency":
        raise ValueError(
            "`latency_table` prices a latency target only. Received: "
            f"a {metric!r} target with latency_table=<LatencyTable>. Pass "
            "target={'latency': 0.5}, or drop latency_table."
        )
    if table is None:
        raise ValueError(
            "A latency target needs a latency table measured on the target "
            "runtime. Received: latency_table=None. " + latency_lib.BUILD_HINT
        )
    latency_lib.check_is_table(table)
    table.check_model(model, shapes)


class _Greedy:
    """The removal state: masks, what each group may still lose, a heap."""

    def __init__(self, groups, cost, scores, min_units, relative):
        self.groups, self.cost = groups, cost
        self.masks = [np.zeros(g.num_units, dtype=bool) for g in groups]
        self.scores, self.order, self.next = {}, {}, {}
        self.removable = {}
        for group in groups:
            if not group.prunable:
                continue
            values = np.asarray(scores[group.index], dtype=np.float64)
            mean = float(np.mean(values))
            if relative and mean > 0:
                values = values / mean
            self.scores[group.index] = values
            self.order[group.index] = np.argsort(values, kind="stable")
            self.next[group.index] = 0
            self.removable[group.index] = max(
                0, group.num_units - floor_units(min_units, group.num_units)
            )
        self.heap = []
        for index in self.scores:
            self._push(index)

    def remove_dead(self):
        for index, values in self.scores.items():
            while self.removable[index] and values[self._unit(index)] <= 0:
                self._remove(index, self._unit(index))
        self.heap = []
        for index in self.scores:
            self._push(index)

    def run(self, goal):
        cost = self.cost
        while self.heap and cost.kept > goal * (1 + 1e-12):
            priority, index, unit = heapq.heappop(self.heap)
            fresh = self._priority(index, unit)
            if (
                fresh > priority * (1 + 1e-9)
                and self.heap
                and (fresh > self.heap[0][0])
            ):
                heapq.heappush(self.heap, (fresh, index, unit))
                continue
            self._remove(index, unit)
            self._push(index)

    def _unit(self, index):
        return int(self.order[index][self.next[index]])

    def _priority(self, index, unit):
        saving = self.cost.saving(self.groups[index], unit)
        return float(self.scores[index][unit]) / max(saving, _NO_SAVING)

    def _push(self, index):
        if self.removable[index]:
            unit = self._unit(index)
            heapq.heappush(
                self.heap, (self._priority(index, unit), index, unit)
            )

    def _remove(self, index, unit):
        self.masks[index][unit] = True
        self.removable[index] -= 1
        self.next[index] += 1
        self.cost.remove(self.groups[index], unit)


def deepest_share(inputs):
    """The smallest share of the table's latency a plan over `inputs`
    (`PlanInputs`) can keep: every removable unit gone (within
    `min_units`)."""
    cost = KeptCost(
        inputs.groups,
        inputs.model,
        "latency",
        shapes=inputs.shapes,
        latency_table=inputs.latency_table,
    )
    state = _Greedy(
        inputs.groups, cost, inputs.scores, inputs.min_units, inputs.relative
    )
    state.remove_dead()
    state.run(0.0)
    return cost.kept / cost.total if cost.total else 1.0
