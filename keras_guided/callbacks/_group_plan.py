"""Where each unit group's weights are: index arrays built once per `fit`.

Every penalized slice of every prunable unit group is turned, once, into an
int index array along its axis that maps each position to a global unit id
(or a sentinel, the last id). The proximal core (`keras_guided.proximal`)
then needs one `segment_sum` and one gather per (weight, axes) pair, and
the live metrics one boolean mask per weight.
"""

import numpy as np
from keras import ops

from keras_guided import _axes
from keras_guided import units as units_lib

PENALIZED_ROLES = ("producer", "follower", "consumer")
OUTPUT_ROLES = ("producer", "follower")


class GroupPlan:
    """Static index arrays built once per `fit` from the unit groups.

    The plan holds the groups training can prune: the ones whose dead units
    `prune_model(model)` removes (`removable(group)`, by default
    `group.prunable`; the callback passes
    `keras_guided.graph.GraphAnalysis.removable_when_dead`) and whose
    penalized weights are all trainable. `fixed` lists the others that are
    prunable, with the reason they stay whole during training.

    `copies` maps a group's index to how many real units each of its
    units stands for (a merged group of `uniform_blocks`: one per block;
    by default 1), so counts of units are those of the model.
    """

    def __init__(self, groups, model, removable=None, copies=None):
        trainable = {id(v) for v in model.trainable_weights}
        if removable is None:
            removable = _is_prunable
        self.groups = []
        self.fixed = []  # (group, reason)
        for group in groups:
            if not group.prunable:
                continue
            if not removable(group):
                self.fixed.append((group, "not removable exactly"))
            elif not _is_trainable(group, trainable):
                self.fixed.append((group, _frozen_reason(group)))
            else:
                self.groups.append(group)
        copies = copies or {}
        self.copies = [int(copies.get(g.index, 1)) for g in self.groups]
        # The merged groups' scores of a `ScoreGuidance` under
        # `uniform_blocks` (set by `_setup.group_plan`), else `None`.
        self.merged_scores = None
        self.offsets = []
        offset = 0
        for group in self.groups:
            self.offsets.append(offset)
            offset += int(group.num_units)
        self.num_units = offset
        self.num_segments = offset + 1
        self.variables = []
        self._variable_ids = {}
        # (variable index, axes, kind) -> list of index arrays
        penalized, output, all_roles = {}, {}, {}
        self.per_unit_penalized = np.zeros(self.num_segments)
        # per group: [(variable index, axes, positions (units, k), layer)]
        self.slice_info = []
        for group, start in zip(self.groups, self.offsets):
            ids = np.arange(start, start + group.num_units)
            info = []
            for unit_slice in group.slices:
                variable = units_lib.get_weight(
                    unit_slice.layer, unit_slice.weight
                )
                index = self._variable_index(variable)
                shape = tuple(variable.shape)
                axes = _axes.normalize_axes(len(shape), unit_slice.axis)
                length = int(np.prod([shape[a] for a in axes]))
                positions = np.asarray(unit_slice.positions, dtype="int64")
                positions = positions.reshape(group.num_units, -1)
                others = int(np.prod(shape)) // max(length, 1)
                per_unit = positions.shape[1] * others
                info.append((index, axes, positions, unit_slice.layer))
                targets = [all_roles]
                if unit_slice.role in PENALIZED_ROLES:
                    self.per_unit_penalized[ids] += per_unit
                    targets.append(penalized)
                if unit_slice.role in OUTPUT_ROLES:
                    targets.append(output)
                for table in targets:
                    _place(
                        table,
                        (index, axes),
                        length,
                        positions,
                        ids,
                        self.num_units,
                    )
            self.slice_info.append(info)
        self.entries = self._entries(penalized)
        self.output_entries = self._entries(output)
        self.all_entries = self._entries(all_roles)
        self.group_ids = np.full(
            self.num_segments, len(self.groups), dtype="int32"
        )
        for g, (group, start) in enumerate(zip(self.groups, self.offsets)):
            self.group_ids[start : start + group.num_units] = g
        is_unit = np.ones(self.num_segments, dtype="float32")
        is_unit[-1] = 0.0
        self.is_unit = is_unit

    def _variable_index(self, variable):
        key = id(variable)
        if key not in self._variable_ids:
            self._variable_ids[key] = len(self.variables)
            self.variables.append(variable)
        return self._variable_ids[key]

    def _entries(self, table):
        entries = []
        for (index, axes), arrays in table.items():
            shape = tuple(self.variables[index].shape)
            rank = len(shape)
            other_axes = tuple(a for a in range(rank) if a not in axes)
            broadcast = tuple(shape[a] if a in axes else 1 for a in range(rank))
            for array in arrays:
                entries.append((index, other_axes, array, broadcast))
        return entries

    def tensor_entries(self, entries):
        return [
            (i, axes, ops.convert_to_tensor(array, dtype="int32"), shape)
            for i, axes, array, shape in entries
        ]


def _is_prunable(group):
    return group.prunable


def _is_trainable(group, trainable):
    """Whether every penalized weight of `group` is trainable.

    Groups that touch a frozen weight (a frozen backbone's kernel, or the
    input slice of a frozen consumer) are left alone: shrinking them would
    change weights the user froze.
    """
    for unit_slice in group.slices:
        if unit_slice.role in PENALIZED_ROLES:
            variable = units_lib.get_weight(unit_slice.layer, unit_slice.weight)
            if id(variable) not in trainable:
                return False
    return True


def _frozen_reason(group):
    """Why a group with a frozen weight stays whole: `"frozen"`, or what
    froze it (Keras' LoRA freezes the kernel and trains the adapter)."""
    for unit_slice in group.slices:
        layer = unit_slice.layer
        if getattr(layer, "lora_enabled", False):
            return (
                f"frozen: LoRA is enabled on layer '{layer.name}' "
                f"({type(layer).__name__}), so Keras trains its adapter and "
                "freezes its kernel, which GuidedPruning does not change; "
                "prune_model(model) prunes through LoRA after training "
                "(dead units, or a target)"
            )
    return "frozen"


def _place(table, key, length, positions, ids, sentinel):
    """Writes unit `ids` at `positions` into a free index array of `key`."""
    arrays = table.setdefault(key, [])
    flat = positions.reshape(-1)
    owners = np.repeat(ids, positions.shape[1])
    for array in arrays:
        if np.all(array[flat] == sentinel):
            array[flat] = owners
            return
    array = np.full(length, sentinel, dtype="int32")
    array[flat] = owners
    arrays.append(array)


def producer_names(group):
    """Names of the layers that produce `group`'s units, in order."""
    names = []
    for unit_slice in group.slices:
        if unit_slice.role == "producer":
            name = unit_slice.layer.name
            if name not in names:
                names.append(name)
    return names
