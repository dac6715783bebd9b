"""Uniform widths across repeated blocks (`prune_model(uniform_blocks=True)`).

A transformer stacks blocks of one class and one config; a pruned model
whose blocks keep the *same* number of units of each kind (FFN units,
attention heads) can be described by that config again (keras-hub's
`intermediate_dim`), and it runs with the same kernels in every block.

A *family* is a set of unit groups, one per block, that play the same part
in blocks of one class and one config: the same sublayers (by their place
in the block's layer tree), weights, axes and roles, and the same number of
units. Uniform planning merges each family into one *merged group*: its
unit `j` is the `j`-th most important unit of every member, so removing it
shortens every block by one, and the planners (`plan_from_target`,
`KeptCost`) price and rank it with no change. The plan of a merged group is
then spread back over its members. `prune_model(uniform_blocks=True)` and
`GuidedPruning`'s budget plan over the merged groups; `widen_families`
evens out a plan of dead units.
"""

import dataclasses
import json

import numpy as np

from keras_guided import _keras_adapter as adapter
from keras_guided import graph as graph_lib


@dataclasses.dataclass
class Family:
    """Unit groups that play one part in repeated blocks.

    Attributes:
        blocks: names of the blocks, one per member, in model order.
        members: indices of the member groups, in the same order.
        num_units: units of each member.
        block_class: the blocks' class name.
    """

    blocks: list
    members: list
    num_units: int
    block_class: str


def find_families(model, groups):
    """The families of `groups` across repeated composite blocks of `model`
    (blocks of one class and one config, see `_config_key`).

    Returns:
        A list of `Family`, each with two members or more.
    """
    blocks = [
        layer
        for layer in graph_lib.all_layers(model)
        if graph_lib.is_composite(layer)
    ]
    place = {}  # id(sublayer) -> (block, position in the block's tree)
    for block in blocks:
        for position, sub in enumerate(adapter.layer_tree(block)):
            place.setdefault(id(sub), (block, position))
    found = {}
    for group in groups:
        if not group.prunable:
            continue
        owners = {place.get(id(s.layer), (None, None))[0] for s in group.slices}
        if len(owners) != 1 or None in owners:
            continue
        block = owners.pop()
        signature = tuple(
            (
                place[id(s.layer)][1],
                s.weight,
                str(s.axis),
                s.role,
                tuple(s.positions.shape),
            )
            for s in group.slices
        )
        key = (type(block).__name__, _config_key(block), signature)
        found.setdefault(key, []).append((block, group))
    families = []
    for (class_name, _, _), members in found.items():
        names = [block.name for block, _ in members]
        if len(members) < 2 or len(
            set(map(id, (b for b, _ in members)))
        ) != len(members):
            continue
        families.append(
            Family(
                blocks=names,
                members=[g.index for _, g in members],
                num_units=members[0][1].num_units,
                block_class=class_name,
            )
        )
    return families


def _config_key(layer):
    """The layer's config without its name; for a layer whose config does
    not serialize (keras-hub 0.32's Llama blocks), its weights' shapes in
    tree order."""
    try:
        config = dict(layer.get_config())
    except Exception:  # noqa: BLE001 (any get_config may fail)
        return repr([tuple(w.shape) for w in layer.weights])
    config.pop("name", None)
    return json.dumps(config, sort_keys=True, default=str)


class MergedGroups:
    """`groups` with each family merged into one group (see the module).

    Attributes:
        groups: the merged list, indexed from 0 (ordinary groups first, in
            their order, then one merged group per family).
        scores: per-group unit scores of `groups`.
    """

    def __init__(self, groups, families, scores):
        in_family = {i for family in families for i in family.members}
        self.groups, self.scores = [], []
        self._back = []  # per merged group: [(original index, order)]
        for group in groups:
            if group.index in in_family:
                continue
            self._add(
                dataclasses.replace(group, index=len(self.groups)),
                np.asarray(scores[group.index], dtype=np.float64),
                [(group.index, None)],
            )
        for family in families:
            members = [groups[i] for i in family.members]
            orders, merged_scores, slices, layers = [], 0.0, [], []
            for member in members:
                member_scores = np.asarray(
                    scores[member.index], dtype=np.float64
                )
                mean = float(np.mean(member_scores))
                relative = member_scores / mean if mean > 0 else member_scores
                order = np.argsort(-relative, kind="stable")
                orders.append(order)
                merged_scores = merged_scores + relative[order]
                slices += [
                    dataclasses.replace(s, positions=s.positions[order])
                    for s in member.slices
                ]
                layers += member.layers
            merged = graph_lib.UnitGroup(
                index=len(self.groups),
                num_units=family.num_units,
                slices=slices,
                layers=layers,
            )
            self._add(
                merged,
                np.asarray(merged_scores),
                list(zip(family.members, orders)),
            )

    def _add(self, group, scores, back):
        self.groups.append(group)
        self.scores.append(scores)
        self._back.append(back)

    def members(self, index):
        """Indices of the original groups that merged group `index`
        stands for (one for an ordinary group)."""
        return [original for original, _ in self._back[index]]

    def spread(self, plan):
        """The plan of the original groups for a plan of the merged ones."""
        spread = {}
        for index, kept in plan.items():
            kept = np.asarray(kept, dtype=np.int64)
            for original, order in self._back[index]:
                spread[original] = (
                    np.sort(kept) if order is None else np.sort(order[kept])
                )
        return spread


def widen_families(plan, groups, families, scores):
    """`plan` with every family's members kept at their widest member's
    width: each adds back its most important removed units. Exact when the
    plan removes dead units only (the units added back are kept)."""
    plan = dict(plan)
    for family in families:
        kept = {
            i: np.asarray(plan.get(i, np.arange(groups[i].num_units)))
            for i in family.members
        }
        width = max(len(k) for k in kept.values())
        for index, units in kept.items():
            if len(units) == width:
                continue
            removed = np.setdiff1d(np.arange(groups[index].num_units), units)
            order = removed[
                np.argsort(-np.asarray(scores[index])[removed], kind="stable")
            ]
            units = np.sort(
                np.concatenate([units, order[: width - len(units)]])
            )
            if len(units) == groups[index].num_units:
                plan.pop(index, None)
            else:
                plan[index] = units
    return plan


def describe_families(families, groups, plan):
    """One report line per family: its blocks and the width each keeps."""
    lines = []
    for family in families:
        widths = {
            len(plan.get(i, range(groups[i].num_units))) for i in family.members
        }
        lines.append(
            f"uniform_blocks: {len(family.members)} {family.block_class} "
            f"blocks ({family.blocks[0]} ... {family.blocks[-1]}) keep "
            f"{'/'.join(map(str, sorted(widths)))} of {family.num_units} "
            f"units of layers {groups[family.members[0]].layers[:2]}"
        )
    return lines
