"""Live metrics of a network being pruned: which units are alive, and what
the live network costs (parameters, FLOPs), from the weights.

A unit is live when its output weights (kernel slice, bias, BatchNormalization
gamma and beta) are not all zero. The cost of the live network is the cost
of the model once the dead units (and the weights they make useless in
their consumers) are removed; FLOPs per layer come from
`keras_guided.stats.layer_costs`, scaled by the share of the layer's weights
that survive.
"""

import numpy as np

from keras_guided import _keras_adapter as adapter
from keras_guided import proximal
from keras_guided._group_plan import producer_names


class LiveMetrics:
    """Live units and costs for one `GroupPlan` of `model` (one `fit`: the
    per-layer cost table is computed once and kept)."""

    def __init__(self, plan, model):
        self._plan = plan
        self.model = model
        self._cost_table = None

    def live_units(self, values):
        """Boolean live flag per unit, and live counts per producer layer."""
        plan = self._plan
        norms = proximal.numpy_group_norms(
            values, plan.output_entries, plan.num_segments
        )
        live = norms[:-1] > 0
        per_layer = {}
        for group, start in zip(plan.groups, plan.offsets):
            count = int(live[start:start + group.num_units].sum())
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

    def params(self, live):
        plan = self._plan
        masks = self.masks(live)
        removed = 0
        for index, mask in masks.items():
            shape = tuple(plan.variables[index].shape)
            kept = int(np.broadcast_to(mask, shape).sum())
            removed += int(np.prod(shape)) - kept
        return plan.model_params - removed

    def flops(self, live):
        plan = self._plan
        masks = self.masks(live)
        by_id = {id(v): i for i, v in enumerate(plan.variables)}
        total = 0.0
        for flops, params, weights in self._costs_by_layer().values():
            if not params:
                total += flops
                continue
            kept = 0
            for variable in weights:
                shape = tuple(variable.shape)
                index = by_id.get(id(variable))
                if index in masks:
                    kept += int(np.broadcast_to(masks[index], shape).sum())
                else:
                    kept += int(np.prod(shape))
            total += flops * kept / params
        return total

    def unit_marginal_costs(self, live, kind):
        """Per unit: what removing it alone saves in the live network
        (`kind` "params" or "flops")."""
        plan = self._plan
        group_costs = self.group_marginal_costs(live, kind)
        costs = np.zeros(plan.num_units)
        for group, start, cost in zip(plan.groups, plan.offsets, group_costs):
            costs[start:start + group.num_units] = cost
        return costs

    def value(self, metric, live):
        if metric == "units":
            return int(live.sum())
        if metric == "params":
            return self.params(live)
        return self.flops(live)

    def group_marginal_costs(self, live, kind):
        """Per group: the params or FLOPs one of its live units costs in
        the live network (its live weight slices, priced by layer)."""
        plan = self._plan
        masks = self.masks(live)
        table = self._costs_by_layer()
        costs = np.zeros(len(plan.groups))
        for g, (group, start, info) in enumerate(
            zip(plan.groups, plan.offsets, plan.slice_info)
        ):
            group_live = live[start:start + group.num_units]
            total = 0.0
            for index, axes, positions, layer in info:
                shape = tuple(plan.variables[index].shape)
                if index in masks:
                    full = np.broadcast_to(masks[index], shape)
                else:
                    full = np.ones(shape, dtype=bool)
                other = tuple(a for a in range(len(shape)) if a not in axes)
                per_position = full.sum(axis=other) if other else full
                per_position = np.asarray(per_position).reshape(-1)
                elements = per_position[positions].sum(axis=1)
                chosen = elements[group_live] if group_live.any() else elements
                elements = float(np.mean(chosen))
                if kind == "params":
                    total += elements
                else:
                    flops, params, _ = table.get(id(layer), (0.0, 0, ()))
                    if params:
                        total += flops * elements / params
            costs[g] = total
        return costs

    def _costs_by_layer(self):
        """`{id(layer): (flops, params, weights)}` for every layer with a
        cost, computed once per `fit`."""
        if self._cost_table is None:
            table = {}
            for layer_name, entry in layer_costs(self.model).items():
                layer = adapter.find_layer(self.model, layer_name)
                weights = [] if layer is None else layer.weights
                params = sum(int(np.prod(v.shape)) for v in weights)
                key = id(layer) if layer is not None else layer_name
                table[key] = (float(entry["flops"]), params, weights)
            self._cost_table = table
        return self._cost_table


def layer_costs(model):
    try:
        from keras_guided import stats
    except ImportError:
        raise ValueError(
            "cost='flops' and target_metric='flops' need "
            "keras_guided.stats, which is not available in this install. "
            "Use cost='params' / target_metric='params' instead."
        ) from None
    # Nested models name their layers "outer/inner"; layer objects know
    # only "inner".
    return {
        name.rsplit("/", 1)[-1]: entry
        for name, entry in stats.layer_costs(model).items()
    }
