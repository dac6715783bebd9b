"""Unit groups over a Keras graph.

A *unit group* is the union of every weight slice and tensor channel that
must be removed together: a Dense unit's kernel column and bias, the
BatchNormalization entries after it, the consumers' input rows, and every
other producer tied to it by an Add, and so on (union-find over the graph).
Penalties, scoring and removal all act on unit groups.

CONTRACT (used by callbacks.py, scoring.py, surgery.py, cli.py):

    groups = find_unit_groups(model, on_unsupported="raise")
    groups: list[UnitGroup]

    UnitGroup.index: int            position in the list
    UnitGroup.num_units: int        channels in the group
    UnitGroup.slices: list[UnitSlice]
    UnitGroup.layers: list[str]     names of the layers whose output tensors
                                    carry these channels (producers first)
    UnitGroup.prunable: bool
    UnitGroup.reason: str | None    why not prunable (model output, unknown
                                    layer "layer 'x' (Cls)", protected)

    UnitSlice.layer: keras layer object (inside nested models too)
    UnitSlice.weight: str           variable name in that layer ("kernel")
    UnitSlice.axis: int | tuple     axis of that weight (tuple = contiguous
                                    axes flattened row-major)
    UnitSlice.positions: np.ndarray int, shape (num_units, k): positions
                                    along `axis` owned by each unit
    UnitSlice.role: "producer" | "follower" | "consumer" | "statistic"
        producer:  output slice of a Dense/Conv/... kernel or bias
        follower:  per-channel params after it (BN gamma/beta, depthwise
                   kernel/bias of a pass-through depthwise conv)
        consumer:  input slice of the next Dense/Conv kernel
        statistic: BN moving mean/variance (sliced, never penalized, not
                   counted when deciding that a group is dead)

How it works. Every channel that a layer creates (a Dense unit, a Conv
filter) is an *atom*. We walk the graph in topological order and give each
tensor an array with the atom of each of its channels (its last axis, since
Keras is channels-last): per-channel layers pass the array through,
Concatenate joins arrays, Flatten tiles it (channel `c` owns positions
`c, c + C, c + 2C, ...`), a DepthwiseConv with depth multiplier `m` repeats
each atom `m` times. Add/Multiply/... union the atoms of their inputs
channel by channel, and so does every weight position seen twice (a shared
layer). The union-find classes of atoms are the *units*. Units that occur in
exactly the same weight slices (with the same number of positions each)
form one *group*, so every slice of a group owns the same number of
positions of every one of its units.

What a layer class does to the atoms is looked up in `keras_guided.rules`
(`rules.rule_for(layer).kind` picks one `_visit_<kind>` method here), so
this module holds almost no per-class knowledge. A Reshape whose new last axis
divides the channel count ties the channels it folds together (Dense ->
Reshape); a grouped Conv ties input slot `j` of every group and makes
filter slot `j` of every group one unit; an attention layer's heads are
atoms of their own, not tensor channels (`GraphAnalysis.internal_units`).
A layer whose channels must stay (`kind="keep"`) flags them with its
reason and never raises; only unknown layers and unsupported
configurations do (with `on_unsupported="raise"`).
"""

import dataclasses

import numpy as np
from keras import layers as keras_layers

from keras_guided import _grouped_attention
from keras_guided import _keras_adapter as adapter
from keras_guided import trace as trace_lib
from keras_guided import units as units_lib

ROLES = ("producer", "follower", "consumer", "statistic")
ON_UNSUPPORTED = ("raise", "keep")

# keras.ops used directly on symbolic tensors (`x + y`, `x * s`).
_MERGE_OPS = (
    "Add", "Subtract", "Multiply", "Maximum", "Minimum", "Divide",
    "TrueDivide",
)
# Element-wise keras.ops / keras.activations used on symbolic tensors.
_ELEMENTWISE_OPS = (
    "Relu", "Relu6", "ReLU", "Sigmoid", "SparseSigmoid", "Softplus",
    "Softsign", "SoftShrink", "SparsePlus", "Silu", "Squareplus",
    "LogSigmoid", "LeakyRelu", "HardSigmoid", "HardSilu", "Elu", "Selu",
    "Gelu", "Celu", "TanhShrink", "HardTanh", "HardShrink", "Threshold",
    "Tanh", "Exp", "Expm1", "Log", "Log1p", "Abs", "Absolute", "Square",
    "Sqrt", "Negative", "Sign", "Sin", "Cos", "Clip", "Cast", "Reciprocal",
)
# keras.ops whose values depend only on their input's shape.
_SHAPE_ONLY_OPS = ("OnesLike", "ZerosLike")
_OP_MODULES = (
    "keras.src.ops.numpy", "keras.src.ops.nn", "keras.src.ops.core",
    "keras.src.activations.activations",
)
_MIXING_ACTIVATIONS = ("softmax", "log_softmax")


@dataclasses.dataclass
class UnitSlice:
    """Positions along one axis of one weight owned by the units of a group.

    Attributes:
        layer: the Keras layer that owns the weight (inside nested models
            too).
        weight: the variable's name in that layer (`"kernel"`, `"gamma"`).
        axis: the weight axis that indexes units; a tuple of contiguous axes
            means those axes flattened row-major.
        positions: int array of shape `(num_units, k)`: the `k` positions
            along `axis` owned by each unit of the group.
        role: `"producer"`, `"follower"`, `"consumer"` or `"statistic"`.
    """

    layer: object
    weight: str
    axis: object
    positions: np.ndarray
    role: str


@dataclasses.dataclass
class UnitGroup:
    """Channels that live or die together, with every weight slice tied.

    Attributes:
        index: position of the group in the list `find_unit_groups` returns.
        num_units: number of units (channels) in the group.
        slices: the `UnitSlice`s of the group, producers first, then
            followers, consumers and statistics.
        layers: names of the layers whose output tensors carry these
            channels, producers first.
        prunable: whether units of this group may be removed.
        reason: why the group is not prunable, or `None`.

    Examples:
        >>> import keras, keras_guided
        >>> inputs = keras.Input((3,))
        >>> hidden = keras.layers.Dense(4, name="hidden")(inputs)
        >>> normed = keras.layers.BatchNormalization(name="bn")(hidden)
        >>> model = keras.Model(inputs, keras.layers.Dense(1)(normed))
        >>> group = keras_guided.find_unit_groups(model)[0]
        >>> group.num_units, group.layers
        (4, ['hidden', 'bn'])
        >>> [(s.layer.name, s.weight, s.role) for s in group.slices][2:4]
        [('bn', 'gamma', 'follower'), ('bn', 'beta', 'follower')]
    """

    index: int
    num_units: int
    slices: list
    layers: list
    prunable: bool = True
    reason: str = None


def describe(layer):
    """Returns `"layer 'name' (ClassName)"`, the way errors name a layer."""
    return f"layer '{layer.name}' ({type(layer).__name__})"


class _UnionFind:
    def __init__(self):
        self.parent = []

    def make(self, count):
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        return np.arange(start, start + count, dtype=np.int64)

    def find(self, a):
        parent = self.parent
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:
            parent[a], a = root, parent[a]
        return root

    def union(self, a, b):
        ra, rb = self.find(int(a)), self.find(int(b))
        if ra != rb:
            # The older atom stays the root, so unit order follows the graph.
            if ra < rb:
                self.parent[rb] = ra
            else:
                self.parent[ra] = rb


@dataclasses.dataclass
class _Record:
    """A weight slice seen during the walk: position -> atom."""

    layer: object
    weight: str
    axis: object
    role: str
    atoms: dict


class GraphAnalysis:
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
        functional = _functional_of(model)
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
        from keras_guided import rules as rules_lib

        layer = node.operation
        inputs = node.input_tensors
        outputs = node.output_tensors
        in_atoms = self._inputs_of(node)
        rule = rules_lib.rule_for(layer)
        if rule is not None and rules_lib.user_rule(layer) is rule:
            return self._visit_user(layer, rule, in_atoms, outputs)
        if _is_model(layer):
            grouped = _grouped_attention.layout(layer, _functional_of(layer))
            if grouped is not None:
                # A pruned model's grouped-query attention, rebuilt as a
                # nested model: its heads are found again.
                return self._visit_grouped_attention(layer, node, in_atoms,
                                                     grouped)
            return self._visit_model(layer, node, in_atoms)
        if rule is None and trace_lib.is_composite(layer):
            return self._visit_composite(layer, node, in_atoms)
        if rule is None:
            if not isinstance(layer, keras_layers.Layer) and all(
                a is None for a in in_atoms
            ) and all(_channels(t) is None for t in outputs):
                # An op on tensors without channels (a mask's reshape, a
                # causal mask merged with a padding mask).
                for out in outputs:
                    self._set_output(out, None, layer)
                return
            if _is_op(layer, _SHAPE_ONLY_OPS):
                # Its values do not depend on its input's: no channels
                # (a causal mask built from a sequence's length).
                for out in outputs:
                    self._set_output(out, None, layer)
                return
            if _is_op(layer, _ELEMENTWISE_OPS):
                return self._pass_through(layer, in_atoms, outputs)
            if _is_op(layer, _MERGE_OPS):
                return self._merge(layer, in_atoms, outputs)
            if _is_op(layer, ("Transpose",)):
                return self._visit_transpose(layer, node, in_atoms)
            if _is_op(layer, ("GetItem",)) and _keeps_last_axis(node):
                return self._pass_through(layer, in_atoms, outputs)
            return self._visit_unknown(layer, in_atoms, outputs)
        if units_lib.layer_family(layer) is not None:
            units_lib.output_slices(layer)  # raises for channels-first
        if rule.check is not None and inputs and outputs:
            reason = rule.check(
                layer, adapter.first_input(node).shape, outputs[0].shape)
            if reason is not None and rule.note is not None:
                # Not prunable in this configuration, but safe to keep as
                # is (attention with a gate, an EinsumDense mixing axes).
                return self._visit_keep(layer, node, in_atoms, reason)
            if reason is not None:
                return self._visit_unknown(layer, in_atoms, outputs, reason)
        if rule.kind == "producer" and inputs and outputs and (
            units_lib.layer_family(layer) == "embedding"
        ) and rules_lib.is_reverse_embedding_call(
            adapter.first_input(node).shape, outputs[0].shape
        ):
            return self._visit_keep(layer, node, in_atoms, (
                "it is called in reverse (its embeddings project its input "
                "channels onto the vocabulary, tied weights)"))
        handler = getattr(self, "_visit_" + rule.kind)
        return handler(layer, node, in_atoms)

    def _visit_elementwise(self, layer, node, in_atoms):
        from keras_guided import rules as rules_lib

        atoms = in_atoms[0] if in_atoms else None
        rule = rules_lib.rule_for(layer)
        if atoms is not None and _channels(node.output_tensors[0]) == len(
            atoms
        ):
            weights = rule.output_weights
            if callable(weights):
                weights = weights(layer)
            for weight, axis in weights:
                self._record(layer, weight, axis, "follower", enumerate(atoms))
        return self._pass_through(layer, in_atoms, node.output_tensors)

    def _visit_activation(self, layer, node, in_atoms):
        name = getattr(layer.activation, "__name__", "")
        if name in _MIXING_ACTIVATIONS:
            return self._visit_mixing(layer, node, in_atoms)
        return self._pass_through(layer, in_atoms, node.output_tensors)

    def _visit_keep(self, layer, node, in_atoms, reason=None):
        """A known layer whose channels stay: copied unchanged."""
        from keras_guided import rules as rules_lib

        note = rules_lib.rule_for(layer).note or "it is copied unchanged"
        if reason is not None:
            note = f"{reason}; it is copied unchanged"
        self._keep_channels(layer, node, in_atoms, note)

    def _keep_channels(self, layer, node, in_atoms, note):
        """Flags the channels in and out of `layer` as kept, saying why."""
        text = f"{describe(layer)} keeps its channels: {note}"
        for atoms in in_atoms:
            self._flag_all(atoms, "kept", text)
        for out in node.output_tensors:
            new = self._new_atoms(out)
            self._flag_all(new, "kept", text)
            self._set_output(out, new, layer)

    def _visit_attention(self, layer, node, in_atoms):
        """MultiHeadAttention: its heads are units; its channels stay."""
        from keras_guided import rules as rules_lib

        self._visit_keep(layer, node, in_atoms)
        heads = self._uf.make(int(layer.num_heads))
        for name, axis in rules_lib.ATTENTION_HEAD_WEIGHTS:
            if _has_weight(layer, name):
                self._record(layer, name, axis, "producer", enumerate(heads))
        name, axis = rules_lib.ATTENTION_OUTPUT_WEIGHT
        self._record(layer, name, axis, "consumer", enumerate(heads))
        self.producer_ids.add(id(layer))
        self._internal_atoms[id(layer)] = heads
        self._carriers.append((layer.name, heads, True))

    def _visit_transpose(self, layer, node, in_atoms):
        """`keras.ops.transpose`: channels pass when the last axis stays
        last; otherwise the channels on both sides stay (MLP-Mixer's token
        mixing reads the sequence axis as channels)."""
        out = node.output_tensors[0]
        rank = len(out.shape)
        axes = getattr(layer, "axes", None)
        if axes is not None and int(axes[-1]) % rank == rank - 1:
            return self._pass_through(layer, in_atoms, node.output_tensors)
        text = f"{describe(layer)} moves the channel axis"
        for atoms in in_atoms:
            self._flag_all(atoms, "kept", text)
        new = self._new_atoms(out)
        self._flag_all(new, "kept", text)
        self._set_output(out, new, layer)

    def _pass_through(self, layer, in_atoms, outputs):
        atoms = in_atoms[0] if in_atoms else None
        out = outputs[0]
        if atoms is not None and _channels(out) != len(atoms):
            return self._visit_unknown(
                layer, in_atoms, outputs,
                f"it changes the channel count from {len(atoms)} to "
                f"{_channels(out)}",
            )
        self._set_output(out, atoms, layer)

    def _visit_producer(self, layer, node, in_atoms):
        outputs = node.output_tensors
        atoms = in_atoms[0] if in_atoms else None
        groups = int(getattr(layer, "groups", 1) or 1)
        if groups > 1:
            return self._visit_grouped(layer, node, atoms, groups)
        if atoms is not None:
            for slice_ in units_lib.input_slices(layer):
                self._record(
                    layer,
                    slice_.weight,
                    slice_.axis,
                    "consumer",
                    _blocked(atoms, slice_.block),
                )
        new = self._new_atoms(outputs[0])
        if new is None:
            return
        for slice_ in units_lib.output_slices(layer):
            self._record(
                layer, slice_.weight, slice_.axis, "producer", enumerate(new)
            )
        activation = getattr(getattr(layer, "activation", None), "__name__", "")
        if activation in _MIXING_ACTIVATIONS:
            self._flag_all(
                new, "mixing", f"{describe(layer)} mixes its channels "
                f"({activation})"
            )
        self.producer_ids.add(id(layer))
        self._set_output(outputs[0], new, layer, is_producer=True)

    def _visit_grouped(self, layer, node, atoms, groups):
        """Conv with `groups > 1` (see `rules.grouped_conv_rule`)."""
        out = node.output_tensors[0]
        filters = _channels(out)
        per_group_in = int(units_lib.get_weight(layer, "kernel").shape[-2])
        per_group_out = filters // groups
        if per_group_in == 1 and not self._from_input(atoms):
            # One input channel per group: a depthwise convolution; input
            # channel c and its filters go together, whole groups at once.
            # (On a model input, whose channels stay, the filter slots of
            # the groups are the units instead, as below.)
            return self._visit_depthwise_like(
                layer, atoms, per_group_out, out, (("kernel", -1),
                                                   ("bias", 0)))
        if atoms is not None:
            # Input slot j of every group reads kernel row j: tied.
            self._record(
                layer, "kernel", -2, "consumer",
                [(c % per_group_in, atom) for c, atom in enumerate(atoms)],
            )
        slots = self._uf.make(per_group_out)
        new = np.tile(slots, groups)
        for slice_ in units_lib.output_slices(layer):
            self._record(
                layer, slice_.weight, slice_.axis, "producer", enumerate(new)
            )
        self.producer_ids.add(id(layer))
        self._set_output(out, new, layer, is_producer=True)

    def _from_input(self, atoms):
        """Whether `atoms` are untracked or channels of a model input."""
        if atoms is None:
            return True
        return any(
            kind == "input"
            for a in atoms for kind, _ in self._flags.get(int(a), ())
        )

    def _visit_depthwise_like(self, layer, atoms, multiplier, out, weights):
        out_atoms = np.repeat(atoms, multiplier)
        for name, axis in weights:
            if name == "bias" and not getattr(layer, "use_bias", False):
                continue
            self._record(layer, name, axis, "follower", enumerate(out_atoms))
        self._set_output(out, out_atoms, layer)

    def _visit_depthwise(self, layer, node, in_atoms):
        outputs = node.output_tensors
        atoms = in_atoms[0] if in_atoms else None
        if atoms is None:
            self._set_output(outputs[0], self._new_atoms(outputs[0]), layer)
            return
        multiplier = int(layer.depth_multiplier)
        out_atoms = np.repeat(atoms, multiplier)
        for slice_ in units_lib.output_slices(layer):
            self._record(
                layer, slice_.weight, slice_.axis, "follower",
                enumerate(out_atoms),
            )
        self._set_output(outputs[0], out_atoms, layer)

    def _visit_normalization(self, layer, node, in_atoms):
        outputs = node.output_tensors
        atoms = in_atoms[0] if in_atoms else None
        if atoms is not None:
            for variable in layer.weights:
                role = "follower" if variable.trainable else "statistic"
                self._record(
                    layer, variable.name, 0, role, enumerate(atoms)
                )
            if isinstance(layer, keras_layers.LayerNormalization):
                self._flag_all(
                    atoms, "approximate",
                    f"{describe(layer)} normalizes over the channels",
                )
        self._set_output(outputs[0], atoms, layer)

    def _visit_prelu(self, layer, node, in_atoms):
        outputs = node.output_tensors
        atoms = in_atoms[0] if in_atoms else None
        alpha = units_lib.get_weight(layer, "alpha")
        if atoms is not None and alpha.shape[-1] == len(atoms):
            self._record(layer, "alpha", -1, "follower", enumerate(atoms))
        self._set_output(outputs[0], atoms, layer)

    def _visit_mixing(self, layer, node, in_atoms):
        outputs = node.output_tensors
        atoms = in_atoms[0] if in_atoms else None
        self._flag_all(atoms, "mixing", f"{describe(layer)} mixes channels")
        self._set_output(outputs[0], atoms, layer)

    def _visit_reshape(self, layer, node, in_atoms):
        outputs = node.output_tensors
        atoms = in_atoms[0] if in_atoms else None
        out = outputs[0]
        if atoms is None:
            self._set_output(out, self._new_atoms(out), layer)
            return
        out_channels = _channels(out)
        if out_channels is None:
            return self._visit_unknown(
                layer, in_atoms, outputs,
                f"its output shape {tuple(out.shape)} has an unknown last "
                "axis",
            )
        # Row-major: flat index p holds input channel p % C_in and output
        # channel p % C_out. When C_in divides C_out (Flatten), output
        # channel q holds input channel q % C_in; when C_out divides C_in
        # (Dense -> Reshape), input channels equal modulo C_out meet in one
        # output channel and are tied. Removing such a class everywhere
        # keeps the row-major order of what is left.
        if out_channels % len(atoms) == 0:
            self._set_output(
                out, np.tile(atoms, out_channels // len(atoms)), layer
            )
            return
        for c in range(out_channels, len(atoms)):
            self._uf.union(atoms[c % out_channels], atoms[c])
        self._set_output(out, atoms[:out_channels], layer)

    def _visit_concatenate(self, layer, node, in_atoms):
        outputs = node.output_tensors
        rank = len(outputs[0].shape)
        axis = layer.axis % rank
        if any(a is None for a in in_atoms):
            self._flag_all(
                np.concatenate([a for a in in_atoms if a is not None] or [[]]),
                "untracked", f"{describe(layer)} joins untracked channels",
            )
            self._set_output(outputs[0], self._new_atoms(outputs[0]), layer)
            return
        if axis == rank - 1:
            self._set_output(outputs[0], np.concatenate(in_atoms), layer)
        else:
            self._merge(layer, in_atoms, outputs)

    def _visit_merge(self, layer, node, in_atoms):
        return self._merge(layer, in_atoms, node.output_tensors)

    def _merge(self, layer, in_atoms, outputs):
        out = outputs[0]
        channels = _channels(out)
        full = [a for a in in_atoms if a is not None and len(a) == channels]
        others = [a for a in in_atoms if a is None or len(a) != channels]
        if not full or any(a is not None and len(a) != 1 for a in others):
            counts = [None if a is None else len(a) for a in in_atoms]
            return self._visit_unknown(
                layer, in_atoms, outputs,
                f"it merges inputs with channel counts {counts} into "
                f"{channels}",
            )
        for atoms in full[1:]:
            for a, b in zip(full[0], atoms):
                self._uf.union(a, b)
        if any(a is None for a in others):
            self._flag_all(
                full[0], "untracked",
                f"{describe(layer)} mixes them with untracked channels",
            )
        self._set_output(out, full[0], layer)

    def _visit_model(self, model, node, in_atoms, inner=None):
        inner = inner or _functional_of(model)
        for tensor, atoms in zip(inner.inputs, in_atoms):
            previous = self._tensor_atoms.get(id(tensor))
            if previous is not None and atoms is not None:
                for a, b in zip(previous, atoms):
                    self._uf.union(a, b)
            else:
                self._tensor_atoms[id(tensor)] = atoms
        self._walk(inner)
        for inner_out, outer_out in zip(inner.outputs, node.output_tensors):
            self._set_output(
                outer_out, self._tensor_atoms.get(id(inner_out)), model
            )

    def _visit_composite(self, layer, node, in_atoms):
        """A composite layer: its traced call is walked like a nested
        model (`keras_guided.trace`); the channels of its inputs and
        outputs (a transformer's residual stream) stay."""
        inner = trace_lib.traced_graph(layer, node)
        if inner is None:
            return self._visit_unknown(
                layer, in_atoms, node.output_tensors,
                trace_lib.failure(layer, node),
            )
        grouped = _grouped_attention.layout(layer, inner)
        if grouped is not None:
            return self._visit_grouped_attention(layer, node, in_atoms,
                                                 grouped)
        self._visit_model(layer, node, in_atoms, inner=inner)
        text = (
            f"{describe(layer)} is traced: the channels of its inputs and "
            "outputs (the residual stream) are kept"
        )
        for atoms in in_atoms:
            self._flag_all(atoms, "kept", text)
        for out in node.output_tensors:
            self._flag_all(self._tensor_atoms.get(id(out)), "kept", text)

    def _visit_grouped_attention(self, layer, node, in_atoms, grouped):
        """Grouped-query attention (`keras_guided._grouped_attention`): a
        key/value head and the query heads that share it are one unit;
        the channels in and out stay."""
        self._keep_channels(
            layer, node, in_atoms,
            "its key/value heads (each with the query heads that share it) "
            "are unit groups, but its input and output channels are kept")
        heads = self._uf.make(grouped.num_key_value_heads)
        per_query = [heads[k] for k in range(len(heads))
                     for _ in range(grouped.group_size)]
        for dense, atoms in ((grouped.query, per_query),
                             (grouped.key, heads), (grouped.value, heads)):
            self._record(dense, "kernel", 1, "producer", enumerate(atoms))
            if dense.bias is not None:
                self._record(dense, "bias", 0, "producer", enumerate(atoms))
            self.producer_ids.add(id(dense))
            self._internal_atoms[id(dense)] = atoms
        self._record(grouped.output, "kernel", 0, "consumer",
                     enumerate(per_query))
        self._internal_atoms[id(grouped.output)] = per_query
        self._carriers.append((layer.name, heads, True))

    def _visit_user(self, layer, rule, in_atoms, outputs):
        atoms = in_atoms[0] if in_atoms else None
        if rule.kind == "producer":
            if atoms is not None:
                for weight, axis, block in rule.input_weights:
                    self._record(
                        layer, weight, axis, "consumer", _blocked(atoms, block)
                    )
            new = self._new_atoms(outputs[0])
            if new is not None:
                for weight, axis in rule.output_weights:
                    self._record(layer, weight, axis, "producer",
                                 enumerate(new))
                self.producer_ids.add(id(layer))
            self._set_output(outputs[0], new, layer, is_producer=True)
            return
        if atoms is not None:
            for weight, axis in rule.output_weights:
                self._record(layer, weight, axis, "follower", enumerate(atoms))
        self._pass_through(layer, in_atoms, outputs)

    def _visit_unknown(self, layer, in_atoms, outputs, reason=None):
        if reason is None:
            text = (
                f"{describe(layer)} is not supported: register a rule for "
                f"it with `keras_guided.register_rule("
                f"{type(layer).__name__}, ...)`"
            )
        else:
            text = f"{describe(layer)} is not supported: {reason}"
        if describe(layer) not in self.unsupported:
            self.unsupported.append(describe(layer))
            self.unsupported_reasons.append(text)
        for atoms in in_atoms:
            self._flag_all(atoms, "unsupported", text)
        for out in outputs:
            new = self._new_atoms(out)
            self._flag_all(new, "unsupported", text)
            self._set_output(out, new, layer)

    # ------------------------------------------------------------ finalize
    def _finalize(self):
        find = self._uf.find
        records = list(self._records.values())
        # unit root -> {record index: [positions]}
        membership = {}
        for r_index, record in enumerate(records):
            for position, atom in record.atoms.items():
                root = find(atom)
                membership.setdefault(root, {}).setdefault(
                    r_index, []
                ).append(position)
        flags = {}
        for atom, atom_flags in self._flags.items():
            flags.setdefault(find(atom), set()).update(atom_flags)
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
            candidates.append((min(membership[roots[0]][first]), first,
                               record_ids, roots, flag_sig))
        candidates.sort(key=lambda c: (c[1], c[0]))
        self.groups = []
        self.unit_location = {}
        errors = []
        for index, (_, _, record_ids, roots, flag_sig) in enumerate(
            candidates
        ):
            slices = []
            for r in record_ids:
                record = records[r]
                positions = np.array(
                    [sorted(membership[u][r]) for u in roots], dtype=np.int64
                )
                slices.append(
                    UnitSlice(
                        record.layer, record.weight, record.axis, positions,
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
            for root in {find(int(a)) for a in atoms}:
                location = self.unit_location.get(root)
                if location is not None:
                    names = self.groups[location[0]].layers
                    if name not in names:
                        names.append(name)
        self.approximate = {
            root for root, fl in flags.items()
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
            key: np.array([find(int(a)) for a in atoms], dtype=np.int64)
            for key, atoms in self._internal_atoms.items()
        }
        self.tensor_units = {}
        for key, atoms in self._tensor_atoms.items():
            if atoms is None:
                self.tensor_units[key] = None
                continue
            self.tensor_units[key] = np.array(
                [find(a) if find(a) in self.unit_location else -1
                 for a in atoms],
                dtype=np.int64,
            )

    def removable_when_dead(self, group):
        """Whether `prune_model(model)` removes the dead units of `group`
        (a `UnitGroup` of this analysis): prunable and exactly removable."""
        return group.prunable and group.index not in self.inexact_groups

    def channel_units(self, tensor):
        """Global unit ids of the channels of `tensor` (`-1`: no group)."""
        return self.tensor_units.get(id(tensor))


def _has_weight(layer, name):
    return name in units_lib.weight_keys(layer)


def _blocked(atoms, block):
    """(position, atom) pairs where input channel c owns `block` positions."""
    block = int(block)
    return [
        (c * block + j, atom)
        for c, atom in enumerate(atoms)
        for j in range(block)
    ]


def _channels(tensor):
    shape = getattr(tensor, "shape", None)
    if shape is None or len(shape) < 2 or shape[-1] is None:
        return None
    return int(shape[-1])


def _keeps_last_axis(node):
    """Whether a `GetItem` node (`x[:, 0, :]`) leaves the channel axis
    whole."""
    args, _ = adapter.node_arguments(node)
    if len(args) != 2 or not node.input_tensors:
        return False
    rank = len(node.input_tensors[0].shape)
    key = args[1] if isinstance(args[1], tuple) else (args[1],)
    whole = slice(None, None, None)
    if any(not isinstance(k, (int, slice)) and k is not Ellipsis
           and k is not None for k in key):
        return False  # a tensor index
    if key and key[-1] is Ellipsis:
        return True
    if Ellipsis in key:
        return key[-1] == whole
    indexed = [k for k in key if k is not None]
    return len(indexed) < rank or (
        len(indexed) == rank and indexed[-1] == whole)


def _is_model(layer):
    from keras import Model

    return isinstance(layer, Model)


def _is_op(operation, names):
    """Whether `operation` is a plain keras op (not a layer) in `names`."""
    cls = type(operation)
    return (
        not isinstance(operation, keras_layers.Layer)
        and cls.__name__ in names
        and cls.__module__ in _OP_MODULES
    )


def inner_graph(operation, node):
    """The graph inside `operation` at `node`: a nested model's, or the
    traced call of a composite layer (`keras_guided.trace`); else `None`."""
    if _is_model(operation):
        return _functional_of(operation)
    return trace_lib.traced_graph(operation, node)


def is_traced(operation, node):
    """Whether `operation` at `node` is a traced composite layer."""
    return not _is_model(operation) and (
        trace_lib.traced_graph(operation, node) is not None
    )


def _functional_of(model):
    """The Functional graph behind `model`, or a clear error."""
    from keras import Sequential

    from keras_guided import validation

    validation.check_model(model)
    if isinstance(model, Sequential):
        functional = adapter.sequential_graph(model)
        if functional is None:
            raise ValueError(
                f"Sequential model '{model.name}' is not built, so its graph "
                "is unknown. Start it with `keras.Input(shape)` or call "
                "`model.build(input_shape)` first."
            )
        return functional
    if not adapter.has_graph(model):
        raise ValueError(
            f"Model '{model.name}' ({type(model).__name__}) is a subclassed "
            "model: its graph is Python code keras_guided cannot read. "
            "Rebuild it with the Functional API (`keras.Model(inputs, "
            "outputs)`) or as a `keras.Sequential`."
        )
    return model


def analyze(model, on_unsupported="raise"):
    """Runs the graph analysis and returns a `GraphAnalysis`.

    Args:
        model: a built Sequential or Functional `keras.Model`.
        on_unsupported: `"raise"` (default) or `"keep"`, as in
            `find_unit_groups`.

    Returns:
        A `GraphAnalysis`; its `groups` are what `find_unit_groups` returns.

    Examples:
        >>> import keras, keras_guided
        >>> inputs = keras.Input((3,))
        >>> hidden = keras.layers.Dense(4)(inputs)
        >>> model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
        >>> analysis = keras_guided.graph.analyze(model)
        >>> units = analysis.channel_units(hidden)  # global unit ids
        >>> [analysis.unit_location[int(u)] for u in units]
        [(0, 0), (0, 1), (0, 2), (0, 3)]
    """
    return GraphAnalysis(model, on_unsupported=on_unsupported)


def find_unit_groups(model, on_unsupported="raise"):
    """Computes the unit groups of a built Sequential or Functional model.

    Args:
        model: a built `keras.Sequential` or Functional `keras.Model`
            (nested models used as layers are followed).
        on_unsupported: `"raise"` (default) raises a `ValueError` naming the
            first unsupported layer whose channels could otherwise be
            pruned; `"keep"` marks the groups touching unsupported layers
            unprunable and gives the reason.

    Returns:
        A list of `UnitGroup`, in graph order. Model inputs are not groups;
        groups reaching a model output are `prunable=False` with a reason.

    Raises:
        ValueError: for a subclassed or unbuilt model, a channels-first
            layer, or (with `on_unsupported="raise"`) an unsupported layer.

    Examples:
        >>> import keras, keras_guided
        >>> inputs = keras.Input((8,))
        >>> hidden = keras.layers.Dense(4, name="hidden")(inputs)
        >>> outputs = keras.layers.Dense(2, name="out")(hidden)
        >>> model = keras.Model(inputs, outputs)
        >>> groups = keras_guided.find_unit_groups(model)
        >>> [(g.layers, g.num_units, g.prunable) for g in groups]
        [(['hidden'], 4, True), (['out'], 2, False)]
        >>> [(s.weight, s.role) for s in groups[0].slices]
        [('kernel', 'producer'), ('bias', 'producer'), ('kernel', 'consumer')]
    """
    return analyze(model, on_unsupported=on_unsupported).groups


def concrete_shapes(model, input_shapes):
    """Shapes of every tensor of `model` for inputs of the given shapes.

    Unknown sizes of a variable-length model (`keras.Input((None,))`)
    become the sizes of real inputs, so probes and FLOPs use lengths the
    layers accept. Shapes are inferred symbolically (no computation).

    Args:
        model: a built Sequential or Functional model.
        input_shapes: one shape per model input (batch axis included).

    Returns:
        `{id(KerasTensor): tuple}` for every tensor of the graph, nested
        models included; tensors whose shape could not be inferred keep
        their symbolic shape.
    """
    import keras

    functional = _functional_of(model)
    specs = {}
    for tensor, shape in zip(functional.inputs, input_shapes):
        specs[id(tensor)] = keras.KerasTensor(
            tuple(int(d) for d in shape), dtype=tensor.dtype
        )
    _infer_shapes(functional, specs)
    return {key: tuple(spec.shape) for key, spec in specs.items()}


def _infer_shapes(functional, specs):
    import keras

    for node in adapter.graph_nodes(functional):
        op = node.operation
        if any(id(t) not in specs for t in node.input_tensors):
            continue
        inner = inner_graph(op, node)
        if inner is not None:
            for outer, inner_in in zip(node.input_tensors, inner.inputs):
                specs[id(inner_in)] = specs[id(outer)]
            _infer_shapes(inner, specs)
            for inner_out, outer in zip(inner.outputs, node.outputs):
                if id(inner_out) in specs:
                    specs[id(outer)] = specs[id(inner_out)]
            continue
        args, kwargs = adapter.call_arguments(node, specs)
        try:
            outputs = op.compute_output_spec(*args, **kwargs)
            if isinstance(op, keras_layers.EinsumDense) and args:
                # Its `output_shape` leaves the lengths it passes through
                # unknown; the equation knows them.
                outputs = keras.ops.einsum(
                    op.equation, args[0],
                    keras.KerasTensor(tuple(op.kernel.shape)))
        except Exception:  # noqa: BLE001 (the symbolic shape stays)
            continue
        for tensor, spec in zip(node.outputs, keras.tree.flatten(outputs)):
            specs[id(tensor)] = spec
