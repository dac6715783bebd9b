"""`GraphAnalysis`: the walk over a model's graph that finds its unit groups
(see `keras_guided.graph` for how it works)."""

import numpy as np
from keras import layers as keras_layers

from keras_guided import _keras_adapter as adapter
from keras_guided import rules as rules_lib
from keras_guided import units as units_lib
from keras_guided.graph._groups import ON_UNSUPPORTED
from keras_guided.graph._groups import ROLES
from keras_guided.graph._groups import UnitGroup
from keras_guided.graph._groups import UnitSlice
from keras_guided.graph._groups import _Record
from keras_guided.graph._groups import _UnionFind
from keras_guided.graph._groups import describe
from keras_guided.graph._helpers import _keeps_last_axis
from keras_guided.graph._helpers import channel_count
from keras_guided.graph._helpers import functional_graph
from keras_guided.graph._helpers import is_model
from keras_guided.graph._trace import is_composite
from keras_guided.graph._visit_layers import LayerVisits
from keras_guided.graph._visit_structure import StructureVisits


class GraphAnalysis(LayerVisits, StructureVisits):
    """What the walk over a model found; used by surgery and the callback.

    Besides the groups it keeps, for every tensor of the graph, the unit
    of each of its channels, so a rewrite knows which channels to keep.

    Attributes:
        model: the analysed model.
        groups: the list of `UnitGroup`s.
        unsupported: descriptions (`"layer 'x' (Cls)"`) of the unsupported
            layers met (only non-empty with `on_unsupported="keep"`).
        internal_units: `id(layer) -> np.ndarray` of the global unit ids of
            units that are not tensor channels (attention heads).
        tensor_units: `id(KerasTensor) -> np.ndarray` of the global unit id
            of every channel of that tensor (`-1`: not in any group).
        unit_location: `global unit id -> (group index, unit index)`.
        inexact_groups: `{group index: reason}` of the prunable groups
            whose dead units `prune_model` leaves in place, because
            removing them would change the function (a
            LayerNormalization normalizes over their channels). What
            `prune_model(model)` removes is the dead units of the other
            prunable groups (`removable_when_dead`); `GuidedPruning`
            penalizes and counts only those.
    """

    def __init__(self, model, on_unsupported="raise"):
        if on_unsupported not in ON_UNSUPPORTED:
            raise ValueError(
                f"`on_unsupported` must be one of {ON_UNSUPPORTED}. "
                f"Received: on_unsupported={on_unsupported!r}"
            )
        self.model = model
        self.on_unsupported = on_unsupported
        self._uf = _UnionFind()
        self._flags = {}  # atom -> set of (kind, text)
        self._records = {}  # (id(layer), weight, role) -> _Record
        self._tensor_atoms = {}  # id(tensor) -> atoms array or None
        self._carriers = []  # (layer name, atoms, is_producer)
        self.producer_ids = set()  # id(layer) of layers that create units
        self._internal_atoms = {}  # id(layer) -> atoms of its heads
        self.unsupported = []
        self.unsupported_reasons = []  # "layer 'x' (Cls) is not supported: ..."
        self._unsupported_errors = []
        self.nodes = []  # (functional, node) in walk order, nested included
        functional = functional_graph(model)
        inputs = functional.inputs
        for tensor in inputs:
            atoms = self._new_atoms(tensor)
            if atoms is not None:
                for a in atoms:
                    self._flag(a, "input", "channels of a model input")
            self._tensor_atoms[id(tensor)] = atoms
        self._walk(functional)
        for tensor in functional.outputs:
            atoms = self._tensor_atoms.get(id(tensor))
            if atoms is None:
                continue
            text = (
                f"its channels are a model output (produced by "
                f"{describe(adapter.producer(tensor))})"
            )
            for a in atoms:
                self._flag(a, "output", text)
        self._finalize()

    # ----------------------------------------------------------------- walk
    def _new_atoms(self, tensor):
        shape = getattr(tensor, "shape", None)
        if shape is None or len(shape) < 2 or shape[-1] is None:
            return None
        return self._uf.make(int(shape[-1]))

    def _flag(self, atom, kind, text):
        self._flags.setdefault(int(atom), set()).add((kind, text))

    def _flag_all(self, atoms, kind, text):
        if atoms is not None:
            for a in atoms:
                self._flag(a, kind, text)

    def _record(self, layer, weight, axis, role, position_atoms):
        key = (id(layer), weight, role)
        record = self._records.get(key)
        if record is None:
            record = _Record(layer, weight, axis, role, {})
            self._records[key] = record
        for position, atom in position_atoms:
            position = int(position)
            seen = record.atoms.get(position)
            if seen is None:
                record.atoms[position] = int(atom)
            else:
                # The same weight entry reached twice (shared layer): its
                # channels can only be removed together.
                self._uf.union(seen, atom)

    def _set_output(self, tensor, atoms, layer, is_producer=False):
        previous = self._tensor_atoms.get(id(tensor))
        if previous is not None and atoms is not None:
            if len(previous) == len(atoms):
                for a, b in zip(previous, atoms):
                    self._uf.union(a, b)
                atoms = previous
        self._tensor_atoms[id(tensor)] = atoms
        if atoms is not None:
            self._carriers.append((layer.name, atoms, is_producer))

    def _walk(self, functional):
        for node in adapter.graph_nodes(functional):
            self.nodes.append((functional, node))
            self._visit(node)

    def _inputs_of(self, node):
        return [self._tensor_atoms.get(id(t)) for t in node.input_tensors]

    def _visit(self, node):
        layer = node.operation
        inputs = node.input_tensors
        outputs = node.output_tensors
        in_atoms = self._inputs_of(node)
        rule = rules_lib.rule_for(layer)
        if rule is not None and rules_lib.user_rule(layer) is rule:
            return self._visit_user(layer, rule, in_atoms, outputs)
        if is_model(layer):
            grouped = rules_lib.grouped_attention_layout(
                layer, functional_graph(layer)
            )
            if grouped is not None:
                # A pruned model's grouped-query attention, rebuilt as a
                # nested model: its heads are found again.
                return self._visit_grouped_attention(
                    layer, node, in_atoms, grouped
                )
            return self._visit_model(layer, node, in_atoms)
        if rule is None and is_composite(layer):
            return self._visit_composite(layer, node, in_atoms)
        if rule is None:
            if (
                not isinstance(layer, keras_layers.Layer)
                and all(a is None for a in in_atoms)
                and all(channel_count(t) is None for t in outputs)
            ):
                # An op on tensors without channels (a mask's reshape, a
                # causal mask merged with a padding mask).
                for out in outputs:
                    self._set_output(out, None, layer)
                return
            kind = rules_lib.op_kind(layer)
            if kind == "shape_only":
                # Its values do not depend on its input's: no channels
                # (a causal mask built from a sequence's length).
                for out in outputs:
                    self._set_output(out, None, layer)
                return
            if kind == "elementwise" or (
                kind == "getitem" and _keeps_last_axis(node)
            ):
                return self._pass_through(layer, in_atoms, outputs)
            if kind == "merge":
                return self._merge(layer, in_atoms, outputs)
            if kind == "transpose":
                return self._visit_transpose(layer, node, in_atoms)
            return self._visit_unknown(layer, in_atoms, outputs)
        units_lib.output_slices(layer)  # raises for channels-first
        if rule.check is not None and inputs and outputs:
            reason = rule.check(
                layer, adapter.first_input(node).shape, outputs[0].shape
            )
            if reason is not None and rule.note is not None:
                # Not prunable in this configuration, but safe to keep as
                # is (attention with a gate, an EinsumDense mixing axes).
                return self._visit_keep(layer, node, in_atoms, reason)
            if reason is not None:
                return self._visit_unknown(layer, in_atoms, outputs, reason)
        handler = getattr(self, "_visit_" + rule.kind)
        return handler(layer, node, in_atoms)

    # ------------------------------------------------------------ finalize
    def _finalize(self):
        roots_of = self._uf.roots()
        records = list(self._records.values())
        # unit root -> {record index: [positions]}
        membership = {}
        for r_index, record in enumerate(records):
            roots = roots_of[
                np.fromiter(
                    record.atoms.values(),
                    dtype=np.int64,
                    count=len(record.atoms),
                )
            ].tolist()
            for position, root in zip(record.atoms, roots):
                slices = membership.get(root)
                if slices is None:
                    membership[root] = {r_index: [position]}
                else:
                    slices.setdefault(r_index, []).append(position)
        flags = {}
        for atom, atom_flags in self._flags.items():
            flags.setdefault(int(roots_of[atom]), set()).update(atom_flags)
        # Group the units by signature.
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
        self.groups = []
        self.unit_location = {}
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
            group = UnitGroup(
                index=index,
                num_units=len(roots),
                slices=slices,
                layers=[],
                prunable=not reasons,
                reason="; ".join(reasons) if reasons else None,
            )
            self.groups.append(group)
            for local, root in enumerate(roots):
                self.unit_location[root] = (index, local)
        # Layers carrying each group, producers first (one pass).
        for name, atoms, _ in sorted(self._carriers, key=lambda c: not c[2]):
            for root in set(
                roots_of[np.asarray(atoms, dtype=np.int64)].tolist()
            ):
                location = self.unit_location.get(root)
                if location is not None:
                    names = self.groups[location[0]].layers
                    if name not in names:
                        names.append(name)
        self.approximate = {
            root
            for root, fl in flags.items()
            if any(kind == "approximate" for kind, _ in fl)
        }
        # The flags are part of a group's signature: all of its units share
        # them, so removability is decided per group.
        self.inexact_groups = {}
        for index, (_, _, _, _, flag_sig) in enumerate(candidates):
            notes = sorted(
                {text for kind, text in flag_sig if kind == "approximate"}
            )
            if notes:
                self.inexact_groups[index] = "; ".join(notes)
        if errors and self.on_unsupported == "raise":
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
        self.internal_units = {
            key: roots_of[np.asarray(atoms, dtype=np.int64)]
            for key, atoms in self._internal_atoms.items()
        }
        located = np.zeros(len(roots_of), dtype=bool)
        located[list(self.unit_location)] = True
        self.tensor_units = {}
        for key, atoms in self._tensor_atoms.items():
            if atoms is None:
                self.tensor_units[key] = None
                continue
            roots = roots_of[np.asarray(atoms, dtype=np.int64)]
            self.tensor_units[key] = np.where(located[roots], roots, -1)

    def removable_when_dead(self, group):
        """Whether `prune_model(model)` removes the dead units of `group`
        (a `UnitGroup` of this analysis): prunable and exactly removable."""
        return group.prunable and group.index not in self.inexact_groups

    def channel_units(self, tensor):
        """Global unit ids of the channels of `tensor` (`-1`: no group)."""
        return self.tensor_units.get(id(tensor))
