"""Live metrics of a network being pruned: which units are alive, and what
the live network costs, priced by the one cost model (`keras_guided.stats`).

A unit is live when its output weights (kernel slice, bias, BatchNormalization
gamma and beta) are not all zero. The live network is the model once the
dead units, and every weight slice tied to them (consumers' input rows,
BatchNormalization statistics), are removed: each weight keeps a shape, and
each layer is priced at its kept shapes by `stats.price`, the function that
prices `stats.count_params`, `stats.count_flops` and `prune_model`'s
targets. So `live_params` and `live_flops` are what `stats` counts on
`prune_model(model)`, and a unit's marginal cost is what removing it saves
under the same prices (a non-linear price, such as a latency table, needs
no change here). `LiveMetrics.log` writes the epoch-end `live_*` logs;
`LiveMetrics.for_fit` builds the one of a `fit` from its `FitContext`.
"""

import warnings

import numpy as np

from keras_guided import graph as graph_lib
from keras_guided import proximal
from keras_guided import rules as rules_lib
from keras_guided import stats
from keras_guided.callbacks._group_plan import producer_names


class LiveMetrics:
    """Live units and costs for one `GroupPlan` of `model` (one `fit`: the
    cost model is read once per metric and kept).

    `prices` adds metrics to `stats.PRICES`, e.g. `{"latency":
    table.price}` for a `keras_guided.latency.LatencyTable` of `model`;
    every value and marginal cost of that metric goes through it. `log`
    writes the live network into an epoch's logs: its units, and each
    metric of `logged` (default `("params",)`) as `live_<metric>`."""

    def __init__(self, plan, model, prices=None, logged=("params",)):
        self._plan = plan
        self.model = model
        self._prices = dict(prices or {})
        self.logged = tuple(logged)
        self._tables = {}  # needs FLOPs -> (layer costs, variable places)

    @classmethod
    def for_fit(cls, context):
        """The `LiveMetrics` of the `fit` of a `FitContext`: its plan and
        network, pricing latency with the options' `latency_table`
        (checked against the network) where there is one.

        The epoch-end logs hold `live_params`, `live_flops` when FLOPs are
        the target metric, the cost or the budget's metric, and
        `live_latency` with a table."""
        options = context.options
        budget_metric = options.budget[0] if options.budget else None
        metrics_used = (options.target_metric, options.cost, budget_metric)
        latency_table = options.latency_table
        prices = None
        logged = ["params"]
        if "flops" in metrics_used:
            logged.append("flops")
        if latency_table is not None:
            latency_table.check_model(context.network)
            prices = {"latency": latency_table.price}
            logged.append("latency")
        return cls(context.plan, context.network, prices, logged=logged)

    def log(self, logs, values):
        """Writes `live_units`, `live_units/<layer name>` and
        `live_<metric>` for each metric of `logged` into `logs`, from the
        plan variables `values` (NumPy arrays)."""
        live, per_layer = self.live_units(values)
        logs["live_units"] = self.value("units", live)
        for name, count in per_layer.items():
            logs[f"live_units/{name}"] = int(count)
        for metric in self.logged:
            logs[f"live_{metric}"] = self.value(metric, live)

    def live_units(self, values):
        """Boolean live flag per unit, and live counts per producer layer."""
        plan = self._plan
        norms = proximal.numpy_group_norms(
            values, plan.output_entries, plan.num_segments
        )
        live = norms[:-1] > 0
        per_layer = {}
        for group, start, copies in zip(plan.groups, plan.offsets, plan.copies):
            count = copies * int(live[start : start + group.num_units].sum())
            for name in producer_names(group):
                per_layer[name] = per_layer.get(name, 0) + count
        return live, per_layer

    def masks(self, live):
        """Per variable index: boolean mask of weights that survive."""
        plan = self._plan
        alive = np.append(live, True)
        masks = {}
        for index, _, array, shape in plan.all_entries:
            mask = alive[array].reshape(shape)
            masks[index] = mask if index not in masks else masks[index] & mask
        return masks

    def kept_shapes(self, live):
        """Per variable index: the shape the variable keeps in the live
        network (its kept length along every axis a unit slice cuts)."""
        plan = self._plan
        shapes = {}
        for index, mask in self.masks(live).items():
            shape = tuple(plan.variables[index].shape)
            kept = []
            for axis, length in enumerate(shape):
                if mask.shape[axis] == 1:
                    kept.append(int(length))
                    continue
                others = tuple(a for a in range(mask.ndim) if a != axis)
                kept.append(int(mask.any(axis=others).sum()))
            shapes[index] = tuple(kept)
        return shapes

    def value(self, metric, live):
        """The live network's `"units"`, `"params"`, `"flops"` (ints) or a
        metric of `prices` (`"latency"`, a float in ms)."""
        if metric == "units":
            return self._units(live)
        layer_costs, _ = self._table(metric)
        kept = self._kept(metric, self.kept_by_prune(live))
        return stats.total(layer_costs, metric, kept, self._prices)

    def kept_by_prune(self, live):
        """The units `prune_model(model)` keeps given the live flags: the
        live ones, and one unit of a group without any (it never makes a
        zero-width layer, `min_units=1`)."""
        plan = self._plan
        kept = None
        for group, start in zip(plan.groups, plan.offsets):
            block = live[start : start + group.num_units]
            if group.num_units and not block.any():
                if kept is None:
                    kept = np.array(live, dtype=bool)
                kept[start] = True
        return live if kept is None else kept

    def floor(self, metric, live):
        """The smallest value training can reach from `live`: one unit of
        every group of the plan, everything else whole."""
        plan = self._plan
        floor = np.zeros(plan.num_units, dtype=bool)
        for group, start in zip(plan.groups, plan.offsets):
            ids = np.flatnonzero(live[start : start + group.num_units])
            floor[start + (ids[0] if len(ids) else 0)] = True
        if metric == "units":
            return self._units(floor)
        return self.value(metric, floor)

    def _units(self, live):
        """The model's units among the `live` flags (a unit of a merged
        group counts once per block it stands for)."""
        plan = self._plan
        return int(
            sum(
                copies * int(live[start : start + group.num_units].sum())
                for group, start, copies in zip(
                    plan.groups, plan.offsets, plan.copies
                )
            )
        )

    def group_marginal_costs(self, live, kind):
        """Per group: what removing one of its live units saves in the live
        network (`kind` `"params"`, `"flops"` or a metric of `prices`),
        priced layer by layer; 0 for a group without live units."""
        plan = self._plan
        layer_costs, places = self._table(kind)
        kept_by_variable = self.kept_shapes(live)
        kept = self._kept(kind, live, kept_by_variable)
        costs = np.zeros(len(plan.groups))
        for g, (group, start, info) in enumerate(
            zip(plan.groups, plan.offsets, plan.slice_info)
        ):
            group_live = np.flatnonzero(live[start : start + group.num_units])
            if not len(group_live):
                continue
            unit = group_live[0]
            shortened = {}  # variable index -> kept shape without the unit
            for index, axes, positions, _ in info:
                full = tuple(plan.variables[index].shape)
                shape = list(shortened.get(index, kept_by_variable[index]))
                inner = int(np.prod([full[a] for a in axes[1:]]))
                cut = len({int(p) // max(inner, 1) for p in positions[unit]})
                shape[axes[0]] = max(shape[axes[0]] - cut, 0)
                shortened[index] = tuple(shape)
            for row in {r for index in shortened for r, _ in places[index]}:
                fewer = dict(kept[row] or {})
                for index, shape in shortened.items():
                    for other, key in places[index]:
                        if other == row:
                            fewer[key] = shape
                costs[g] += stats.price(
                    layer_costs[row], kind, kept[row], self._prices
                ) - stats.price(layer_costs[row], kind, fewer, self._prices)
        return costs

    def unit_marginal_costs(self, live, kind):
        """Per unit: `group_marginal_costs` of its group."""
        plan = self._plan
        group_costs = self.group_marginal_costs(live, kind)
        costs = np.zeros(plan.num_units)
        for group, start, cost in zip(plan.groups, plan.offsets, group_costs):
            costs[start : start + group.num_units] = cost
        return costs

    def _kept(self, metric, live, kept_by_variable=None):
        """Per layer of the cost model: `{weight key: kept shape}`."""
        layer_costs, places = self._table(metric)
        if kept_by_variable is None:
            kept_by_variable = self.kept_shapes(live)
        kept = [None] * len(layer_costs)
        for index, shape in kept_by_variable.items():
            for row, key in places[index]:
                kept[row] = dict(kept[row] or {})
                kept[row][key] = shape
        return kept

    def _table(self, metric):
        """The cost model of the model, and where each plan variable sits
        in it (`[(layer row, weight key)]` per variable index), keyed by the
        variable object, never by layer name."""
        flops = metric != "params"  # latency prices FLOPs where unmeasured
        if flops not in self._tables:
            layer_costs = _model_costs(self.model, flops)
            if metric == "flops":  # a FLOPs count that leaves out much
                stats.warn_unpriced_budget(self.model, layer_costs)
            by_variable = {}
            seen = set()
            for row, layer_cost in enumerate(layer_costs):
                if not flops and id(layer_cost.layer) in seen:
                    continue  # its parameters count once (`stats.total`)
                seen.add(id(layer_cost.layer))
                for weight in layer_cost.weights:
                    by_variable.setdefault(id(weight.variable), []).append(
                        (row, weight.key)
                    )
            places = [by_variable.get(id(v), []) for v in self._plan.variables]
            self._tables[flops] = (layer_costs, places)
        return self._tables[flops]


def _model_costs(model, flops):
    """`stats.model_costs`; a variable-length model's FLOPs are counted at
    `prune_model`'s probe lengths (its default without `sample_inputs`),
    with a warning that says so."""
    try:
        return stats.model_costs(model, flops=flops)
    except ValueError:
        if not flops:
            raise
    inputs = graph_lib.functional_graph(model).inputs
    input_shapes = [graph_lib.probe_shape(t.shape, batch=1) for t in inputs]
    shapes = graph_lib.concrete_shapes(model, input_shapes)
    try:
        costs = stats.model_costs(model, shapes=shapes, flops=True)
    except rules_lib.UnknownSizeError as error:
        raise _unknown_size(error) from None
    warnings.warn(
        f"Model '{model.name}' has inputs of unknown length, so its FLOPs "
        f"are counted for inputs of shapes {input_shapes} (the lengths "
        "`prune_model` probes without `sample_inputs`). Build the model with "
        "fixed input lengths to count them at yours.",
        stacklevel=2,
    )
    return costs


def _unknown_size(error):
    """The callback's own advice for a variable-length model (it takes no
    sample inputs: the FLOPs come from the model's shapes)."""
    layer = error.layer
    dims = list(error.shape[1:])
    unknown = sum(d is None for d in dims)
    names = iter(["T"] if unknown == 1 else ["H", "W", "D"] + ["N"] * unknown)
    steps = (
        "("
        + ", ".join(next(names) if d is None else str(d) for d in dims)
        + (",)" if len(dims) == 1 else ")")
    )
    return ValueError(
        f"GuidedPruning cannot count the FLOPs of layer '{layer.name}' "
        f"({type(layer).__name__}): its input has shape {error.shape}, "
        "with unknown lengths, and the callback prices FLOPs from the "
        "model's own shapes. Build the model with every length fixed (e.g. "
        f"`keras.Input(shape={steps})`, the data padded or cut to those "
        "lengths), or count parameters instead (`target={'params': ...}`, "
        "`cost='params'`), which need no lengths."
    )
