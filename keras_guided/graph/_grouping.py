"""From the walk's atoms to unit groups: a pipeline of values.

The walk (`_analysis.GraphAnalysis`) leaves an `AtomState`: weight slices
(records) whose positions are atoms, atoms joined by a union-find, and
flags on atoms. `group_units` turns it into the `UnitGroup`s:

1. `_membership`: for every unit (a union-find root), the positions it
   holds in each record;
2. `_root_flags`: the flags of every unit, gathered from its atoms;
3. `_candidates`: units with the same records and the same flags form one
   group, if a producer creates them;
4. `_build_groups`: the `UnitGroup`s, in a fixed order;
5. `_attach_layers`: the layers carrying each group, producers first;
6. `_tensor_units`: the unit of every channel of every tensor.
"""

import dataclasses

import numpy as np

from keras_guided.graph._groups import ROLES
from keras_guided.graph._groups import UnitGroup
from keras_guided.graph._groups import UnitSlice


@dataclasses.dataclass
class Grouping:
    """What `group_units` finds (see `GraphAnalysis` for each field)."""

    groups: list
    unit_location: dict
    approximate: set
    inexact_groups: dict
    internal_units: dict
    tensor_units: dict


def group_units(state, on_unsupported):
    """The unit groups of a finished walk's `state`; a `Grouping`.

    Raises:
        ValueError: a group touches an unsupported layer and
            `on_unsupported` is `"raise"`.
    """
    roots_of = state.union_find.roots()
    records = list(state.records.values())
    membership = _membership(records, roots_of)
    flags = _root_flags(state.flags, roots_of)
    candidates = _candidates(records, membership, flags)
    groups, unit_location, errors = _build_groups(
        records, membership, candidates
    )
    _attach_layers(groups, unit_location, state.carriers, roots_of)
    if errors and on_unsupported == "raise":
        _raise_unsupported(errors)
    return Grouping(
        groups=groups,
        unit_location=unit_location,
        approximate={
            root
            for root, root_flags in flags.items()
            if any(kind == "approximate" for kind, _ in root_flags)
        },
        # The flags are part of a group's signature: all of its units
        # share them, so removability is decided per group.
        inexact_groups=_inexact_groups(candidates),
        internal_units={
            key: roots_of[np.asarray(atoms, dtype=np.int64)]
            for key, atoms in state.internal_atoms.items()
        },
        tensor_units=_tensor_units(state.tensor_atoms, roots_of, unit_location),
    )


def _membership(records, roots_of):
    """`unit root -> {record index: [positions]}`."""
    membership = {}
    for r_index, record in enumerate(records):
        roots = roots_of[
            np.fromiter(
                record.atoms.values(), dtype=np.int64, count=len(record.atoms)
            )
        ].tolist()
        for position, root in zip(record.atoms, roots):
            slices = membership.get(root)
            if slices is None:
                membership[root] = {r_index: [position]}
            else:
                slices.setdefault(r_index, []).append(position)
    return membership


def _root_flags(atom_flags, roots_of):
    """`unit root -> {(kind, text)}`: the flags of all of its atoms."""
    flags = {}
    for atom, found in atom_flags.items():
        flags.setdefault(int(roots_of[atom]), set()).update(found)
    return flags


def _candidates(records, membership, flags):
    """One `(first position, first record, record ids, roots, flags)` per
    group: the units with the same records (and as many positions in
    each) and the same flags, created by a producer; sorted by the first
    record and position."""
    by_signature = {}
    for root in sorted(membership):
        slices = membership[root]
        signature = (
            tuple(sorted((r, len(p)) for r, p in slices.items())),
            tuple(sorted(flags.get(root, ()))),
        )
        by_signature.setdefault(signature, []).append(root)
    role_order = {role: i for i, role in enumerate(ROLES)}
    candidates = []
    for (slice_sig, flag_sig), roots in by_signature.items():
        record_ids = [r for r, _ in slice_sig]
        if not any(records[r].role == "producer" for r in record_ids):
            continue  # model inputs, untracked channels: not groups
        record_ids.sort(key=lambda r: (role_order[records[r].role], r))
        first = record_ids[0]
        roots.sort(key=lambda u: min(membership[u][first]))
        candidates.append(
            (
                min(membership[roots[0]][first]),
                first,
                record_ids,
                roots,
                flag_sig,
            )
        )
    candidates.sort(key=lambda c: (c[1], c[0]))
    return candidates


def _build_groups(records, membership, candidates):
    """`(groups, unit_location, errors)`: the `UnitGroup`s (no layers yet),
    `unit root -> (group index, unit index)`, and the reasons of groups
    that only an unsupported layer keeps from pruning."""
    groups = []
    unit_location = {}
    errors = []
    for index, (_, _, record_ids, roots, flag_sig) in enumerate(candidates):
        slices = []
        for r in record_ids:
            record = records[r]
            positions = np.array(
                [sorted(membership[u][r]) for u in roots], dtype=np.int64
            )
            slices.append(
                UnitSlice(
                    record.layer,
                    record.weight,
                    record.axis,
                    positions,
                    record.role,
                )
            )
        reasons = sorted(
            {text for kind, text in flag_sig if kind != "approximate"}
        )
        kinds = {kind for kind, _ in flag_sig if kind != "approximate"}
        if kinds and kinds <= {"unsupported"}:
            errors.extend(reasons)
        groups.append(
            UnitGroup(
                index=index,
                num_units=len(roots),
                slices=slices,
                layers=[],
                prunable=not reasons,
                reason="; ".join(reasons) if reasons else None,
            )
        )
        for local, root in enumerate(roots):
            unit_location[root] = (index, local)
    return groups, unit_location, errors


def _attach_layers(groups, unit_location, carriers, roots_of):
    """Fills each group's `layers`: the names of the layers carrying its
    units, producers first (one pass)."""
    for name, atoms, _ in sorted(carriers, key=lambda c: not c[2]):
        for root in set(roots_of[np.asarray(atoms, dtype=np.int64)].tolist()):
            location = unit_location.get(root)
            if location is not None:
                names = groups[location[0]].layers
                if name not in names:
                    names.append(name)


def _inexact_groups(candidates):
    """`{group index: reason}` of the groups flagged approximate."""
    inexact = {}
    for index, (_, _, _, _, flag_sig) in enumerate(candidates):
        notes = sorted(
            {text for kind, text in flag_sig if kind == "approximate"}
        )
        if notes:
            inexact[index] = "; ".join(notes)
    return inexact


def _raise_unsupported(errors):
    first = sorted(set(errors))[0]
    where, _, why = first.partition(" is not supported: ")
    if why.startswith("register a rule"):
        why = "keras_guided has no pruning rule for this layer class"
    raise ValueError(
        f"Cannot prune through {where}: {why}. Register one with "
        "`keras_guided.register_rule(LayerClass, rule)` (see its "
        "docstring), or pass `on_unsupported='keep'` to leave the "
        "unit groups that touch it unpruned (the layer is then "
        "copied unchanged)."
    )


def _tensor_units(tensor_atoms, roots_of, unit_location):
    """`id(tensor) -> np.ndarray`: the unit of each of its channels (`-1`
    for a channel in no group), or `None` for a tensor without channels."""
    located = np.zeros(len(roots_of), dtype=bool)
    located[list(unit_location)] = True
    units = {}
    for key, atoms in tensor_atoms.items():
        if atoms is None:
            units[key] = None
            continue
        roots = roots_of[np.asarray(atoms, dtype=np.int64)]
        units[key] = np.where(located[roots], roots, -1)
    return units
