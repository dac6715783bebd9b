"""Guidance coefficients of `GuidedPruning`: per unit group, from the
guidance scheme (or the `GuidedRegularizer`s on the model), times a cost
factor (`cost="params"` or `"flops"`), re-ranked by norm (`adapt_every`),
and written as the unit weights `g_u * sqrt(p_u)` that the proximal step
and the penalty read. `Coefficients` owns these arrays for one `fit`,
reading its options, plan and unit-weight variable from the `fit`'s
`FitContext`; the budget mode hands it live flags.
"""

import numpy as np

from keras_guided import guidance as guidance_lib
from keras_guided import proximal
from keras_guided import regularizers as regularizers_lib
from keras_guided import units as units_lib
from keras_guided.callbacks import _group_plan


class Coefficients:
    """The guidance coefficients of one `fit` and the unit weights they
    make.

    Args:
        context: the `FitContext` of this `fit`: its `plan`, the options
            read here (`guidance`, the validated guidance; `cost`, `None`,
            `"params"`, `"flops"` or `"latency"`; `adapt_every`, `None` or
            the epochs between re-rankings by norm, `begin_epoch`), the
            plan variables (`values`) and the float32 `unit_weights`
            variable that receives `g_u * sqrt(p_u)` (one entry per
            segment, 0 for the last).
        metrics: the `LiveMetrics` of that plan (prices the cost factors).

    Raises:
        ValueError: a guidance dict naming layers that produce no prunable
            group, or `"from_regularizers"` without a `GuidedRegularizer`.
    """

    def __init__(self, context, metrics):
        options = context.options
        self.context = context
        self.plan = context.plan
        self.metrics = metrics
        self.cost = options.cost
        self.adapt_every = options.adapt_every
        self.base = _base_coefficients(context.plan, options.guidance)
        self.cost_factors = self._initial_cost_factors()
        self.active = None  # coefficients before the cost factor
        self.current = []  # coefficients in effect, cost factor included
        self.set(self.base)

    def update_cost_factors(self, live):
        """Cost factors from the *marginal* cost of each group's units in
        the live network: removing a unit also shrinks its consumers, whose
        cost falls as their other inputs die, so a static cost would
        overprice the units of already thin layers."""
        plan = self.plan
        costs = self.metrics.group_marginal_costs(live, self.cost)
        counts = np.zeros(len(plan.groups))
        for g, (group, start) in enumerate(zip(plan.groups, plan.offsets)):
            counts[g] = live[start : start + group.num_units].sum()
        weight = counts.sum()
        mean = float((costs * counts).sum() / weight) if weight else 0.0
        if mean > 0:
            # The square root balances cost against importance: the full
            # ratio makes a costly layer (the first convolutions) die
            # almost whole before cheap ones are touched.
            self.cost_factors = np.sqrt(costs / mean)
            self.set(self.active)

    def set_without_cost(self, coefficients):
        """Sets coefficients that already price the cost (importance
        guidance): the cost factors become 1."""
        self.cost_factors = np.ones(len(self.plan.groups))
        self.set(coefficients)

    def set(self, coefficients):
        """Makes `coefficients` (one array per group) times the cost
        factors the coefficients in effect, and writes the unit weights."""
        plan = self.plan
        weights = np.zeros(plan.num_segments, dtype="float64")
        self.active = coefficients
        self.current = []
        for group, start, coef, factor in zip(
            plan.groups, plan.offsets, coefficients, self.cost_factors
        ):
            stop = start + group.num_units
            self.current.append(coef * factor)
            weights[start:stop] = (
                coef * factor * np.sqrt(plan.per_unit_penalized[start:stop])
            )
        weights[-1] = 0.0
        self.context.unit_weights.assign(weights.astype("float32"))

    def begin_epoch(self, epoch, first):
        """Re-ranks by norm (`adapt`) at the first epoch of a run (`first`)
        and every `adapt_every` epochs; returns whether it did.

        Args:
            epoch: the epoch that begins (0-based).
            first: whether it starts the run (not a resumed one).
        """
        if self.adapt_every is None or not (
            first or epoch % self.adapt_every == 0
        ):
            return False
        self.adapt(self.context.values())
        return True

    def adapt(self, values):
        """Re-assigns the base coefficients by norm rank within each group
        (largest norm, smallest coefficient); `values` are the plan
        variables as NumPy arrays."""
        plan = self.plan
        norms = proximal.numpy_group_norms(
            values, plan.entries, plan.num_segments
        )
        ranked = []
        for group, start, coef in zip(plan.groups, plan.offsets, self.base):
            unit_norms = norms[start : start + group.num_units]
            order = np.argsort(-unit_norms, kind="stable")
            new = np.empty_like(coef)
            new[order] = np.sort(coef)
            ranked.append(new)
        self.set(ranked)

    def _initial_cost_factors(self):
        """Cost factors at the start of `fit`: what one unit of each group
        costs in the whole network (the cost model's marginal cost),
        relative to the mean over all units."""
        plan = self.plan
        factors = np.ones(len(plan.groups))
        if self.cost is None or not plan.groups:
            return factors
        everything = np.ones(plan.num_units, dtype=bool)
        costs = self.metrics.group_marginal_costs(everything, self.cost)
        counts = np.array([g.num_units for g in plan.groups], dtype=float)
        mean = float((costs * counts).sum() / counts.sum())
        if mean > 0:
            factors = costs / mean
        return factors


def _base_coefficients(plan, spec):
    """Per-group base coefficients (mean 1 within each group)."""
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
        elif isinstance(spec, guidance_lib.ScoreGuidance):
            if plan.merged_scores is not None:
                # Merged groups of `uniform_blocks`: ranked by the scores
                # their blocks' units add up to.
                spec = guidance_lib.ScoreGuidance(
                    plan.merged_scores, spec.scheme
                )
            coefficients = spec.coefficients(group.index, n)
        elif isinstance(spec, dict):
            coefficients = np.zeros(n)
            for name in _group_plan.producer_names(group):
                if name in spec:
                    coefficients = guidance_lib.get(spec[name])(n)
                    break
        else:
            coefficients = spec(n)
        result.append(np.asarray(coefficients, dtype="float64"))
    if spec == "from_regularizers" and not any(c.any() for c in result):
        raise ValueError(
            "guidance='from_regularizers' found no GuidedRegularizer on "
            "the producer kernels of the model's prunable groups. Attach "
            "`keras_guided.GuidedRegularizer` to the layers, or pass a "
            "guidance scheme such as 'linear'."
        )
    return result


def _from_regularizers(group, num_units):
    for unit_slice in group.slices:
        if unit_slice.role != "producer":
            continue
        variable = units_lib.get_weight(unit_slice.layer, unit_slice.weight)
        regularizer = getattr(variable, "regularizer", None)
        if isinstance(regularizer, regularizers_lib.GuidedRegularizer):
            return regularizer.coefficients(num_units)
    return np.zeros(num_units)
