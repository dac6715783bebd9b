"""`AtomState`: what the walk over a graph has found so far, and the moves
every visit makes with it.

The visits (`_visit_layers`, `_visit_structure`) receive one `AtomState`
and read and write only its fields, through the methods here and the
shared moves below (`pass_through`, `unsupported`, `keep_channels`); the
walk (`GraphAnalysis`) hands it to them and groups its records at the end.
"""

import dataclasses

from keras_guided.graph._groups import _Record
from keras_guided.graph._groups import _UnionFind
from keras_guided.graph._groups import describe
from keras_guided.graph._helpers import channel_count


@dataclasses.dataclass
class AtomState:
    """The channel atoms of a graph and what the walk recorded about them.

    Attributes:
        union_find: the `_UnionFind` over atoms (its classes are units).
        flags: `atom -> set of (kind, text)`: why an atom's unit stays
            (`"output"`, `"kept"`, `"unsupported"`, ...) or is only
            approximately removable (`"approximate"`).
        records: `(id(layer), weight, role) -> _Record`: the atom of every
            weight position met.
        tensor_atoms: `id(tensor) -> atoms array` (or `None`: no tracked
            channels) for every tensor walked.
        carriers: `(layer name, atoms, is_producer)` for every layer
            output (and attention heads) that carries atoms.
        producer_ids: `id(layer)` of the layers that create units.
        internal_atoms: `id(layer) -> atoms` of units that are not tensor
            channels (attention heads).
        unsupported: descriptions (`"layer 'x' (Cls)"`) of the unsupported
            layers met, each once.
        unsupported_reasons: `"layer 'x' (Cls) is not supported: ..."`,
            one per entry of `unsupported`.
        nodes: `(functional, node)` in walk order, nested graphs included.
    """

    union_find: _UnionFind = dataclasses.field(default_factory=_UnionFind)
    flags: dict = dataclasses.field(default_factory=dict)
    records: dict = dataclasses.field(default_factory=dict)
    tensor_atoms: dict = dataclasses.field(default_factory=dict)
    carriers: list = dataclasses.field(default_factory=list)
    producer_ids: set = dataclasses.field(default_factory=set)
    internal_atoms: dict = dataclasses.field(default_factory=dict)
    unsupported: list = dataclasses.field(default_factory=list)
    unsupported_reasons: list = dataclasses.field(default_factory=list)
    nodes: list = dataclasses.field(default_factory=list)

    def new_atoms(self, tensor):
        """Fresh atoms, one per channel of `tensor` (`None`: no channel
        axis)."""
        shape = getattr(tensor, "shape", None)
        if shape is None or len(shape) < 2 or shape[-1] is None:
            return None
        return self.union_find.make(int(shape[-1]))

    def flag(self, atom, kind, text):
        self.flags.setdefault(int(atom), set()).add((kind, text))

    def flag_all(self, atoms, kind, text):
        if atoms is not None:
            for a in atoms:
                self.flag(a, kind, text)

    def record(self, layer, weight, axis, role, position_atoms):
        """Records the atom of each `(position, atom)` of `weight` (along
        `axis`, in `role`); a position seen twice ties its two atoms."""
        key = (id(layer), weight, role)
        record = self.records.get(key)
        if record is None:
            record = _Record(layer, weight, axis, role, {})
            self.records[key] = record
        for position, atom in position_atoms:
            position = int(position)
            seen = record.atoms.get(position)
            if seen is None:
                record.atoms[position] = int(atom)
            else:
                # The same weight entry reached twice (shared layer): its
                # channels can only be removed together.
                self.union_find.union(seen, atom)

    def set_output(self, tensor, atoms, layer, is_producer=False):
        """Gives `tensor` (an output of `layer`) its atoms; a tensor met
        before (a shared layer's output) ties the old atoms to the new."""
        previous = self.tensor_atoms.get(id(tensor))
        if previous is not None and atoms is not None:
            if len(previous) == len(atoms):
                for a, b in zip(previous, atoms):
                    self.union_find.union(a, b)
                atoms = previous
        self.tensor_atoms[id(tensor)] = atoms
        if atoms is not None:
            self.carriers.append((layer.name, atoms, is_producer))

    def atoms_of(self, tensors):
        """The atoms of each of `tensors` (`None` where untracked)."""
        return [self.tensor_atoms.get(id(t)) for t in tensors]

    def from_input(self, atoms):
        """Whether `atoms` are untracked or channels of a model input."""
        if atoms is None:
            return True
        return any(
            kind == "input"
            for a in atoms
            for kind, _ in self.flags.get(int(a), ())
        )


def unsupported(state, layer, in_atoms, outputs, reason=None):
    """An unknown layer or configuration: the channels in and out of
    `layer` are flagged with why (`reason`, or how to register a rule)."""
    if reason is None:
        text = (
            f"{describe(layer)} is not supported: register a rule for "
            f"it with `keras_guided.register_rule("
            f"{type(layer).__name__}, ...)`"
        )
    else:
        text = f"{describe(layer)} is not supported: {reason}"
    if describe(layer) not in state.unsupported:
        state.unsupported.append(describe(layer))
        state.unsupported_reasons.append(text)
    for atoms in in_atoms:
        state.flag_all(atoms, "unsupported", text)
    for out in outputs:
        new = state.new_atoms(out)
        state.flag_all(new, "unsupported", text)
        state.set_output(out, new, layer)


def pass_through(state, layer, in_atoms, outputs):
    """`layer`'s output carries its first input's channels, one to one
    (unsupported when the channel count changes)."""
    atoms = in_atoms[0] if in_atoms else None
    out = outputs[0]
    if atoms is not None and channel_count(out) != len(atoms):
        return unsupported(
            state,
            layer,
            in_atoms,
            outputs,
            f"it changes the channel count from {len(atoms)} to "
            f"{channel_count(out)}",
        )
    state.set_output(out, atoms, layer)


def keep_channels(state, layer, node, in_atoms, note):
    """Flags the channels in and out of `layer` as kept, saying why."""
    text = f"{describe(layer)} keeps its channels: {note}"
    for atoms in in_atoms:
        state.flag_all(atoms, "kept", text)
    for out in node.output_tensors:
        new = state.new_atoms(out)
        state.flag_all(new, "kept", text)
        state.set_output(out, new, layer)
