"""`GraphAnalysis`: the walk over a model's graph that finds its unit groups
(see `keras_guided.graph` for how it works).

The walk owns one `AtomState` and hands it to its collaborators, the
`LayerVisits` and `StructureVisits`; `_visits_by_kind` is the one table
from a rule's kind to its visit. Nested models and traced composite layers
are walked in place, by the walk itself. What the walk leaves becomes unit
groups in `_grouping.group_units`."""

from keras import layers as keras_layers

from keras_guided import _keras_adapter as adapter
from keras_guided import rules as rules_lib
from keras_guided import units as units_lib
from keras_guided.graph._grouping import group_units
from keras_guided.graph._groups import ON_UNSUPPORTED
from keras_guided.graph._groups import describe
from keras_guided.graph._helpers import _keeps_last_axis
from keras_guided.graph._helpers import channel_count
from keras_guided.graph._helpers import functional_graph
from keras_guided.graph._helpers import is_model
from keras_guided.graph._state import AtomState
from keras_guided.graph._state import pass_through
from keras_guided.graph._state import unsupported
from keras_guided.graph._trace import failure as trace_failure
from keras_guided.graph._trace import is_composite
from keras_guided.graph._trace import traced_graph
from keras_guided.graph._visit_layers import LayerVisits
from keras_guided.graph._visit_structure import StructureVisits


def _visits_by_kind(layer_visits, structure_visits):
    """The visit of each graph kind a rule names (`rules.GRAPH_KINDS`;
    Permute's rule visits as `"elementwise"`): the one dispatch table."""
    return {
        "producer": layer_visits.producer,
        "depthwise": layer_visits.depthwise,
        "normalization": layer_visits.normalization,
        "prelu": layer_visits.prelu,
        "elementwise": layer_visits.elementwise,
        "activation": layer_visits.activation,
        "mixing": layer_visits.mixing,
        "keep": layer_visits.keep,
        "attention": layer_visits.attention,
        "reshape": structure_visits.reshape,
        "concatenate": structure_visits.concatenate,
        "merge": structure_visits.merge,
    }


class GraphAnalysis:
    """What the walk over a model found; used by surgery and the callback.

    Besides the groups it keeps, for every tensor of the graph, the unit
    of each of its channels, so a rewrite knows which channels to keep.

    Attributes:
        model: the analysed model.
        groups: the list of `UnitGroup`s.
        unsupported: descriptions (`"layer 'x' (Cls)"`) of the unsupported
            layers met (only non-empty with `on_unsupported="keep"`).
        unsupported_reasons: `"layer 'x' (Cls) is not supported: ..."`,
            one per entry of `unsupported`.
        producer_ids: `id(layer)` of the layers that create units.
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
        state = AtomState()
        self._state = state
        self._layer_visits = LayerVisits(state)
        self._structure_visits = StructureVisits(state)
        self._by_kind = _visits_by_kind(
            self._layer_visits, self._structure_visits
        )
        self.producer_ids = state.producer_ids  # layers that create units
        self.unsupported = state.unsupported
        self.unsupported_reasons = state.unsupported_reasons
        self.nodes = state.nodes  # (functional, node) in walk order
        functional = functional_graph(model)
        for tensor in functional.inputs:
            atoms = state.new_atoms(tensor)
            state.flag_all(atoms, "input", "channels of a model input")
            state.tensor_atoms[id(tensor)] = atoms
        self._walk(functional)
        for tensor in functional.outputs:
            atoms = state.tensor_atoms.get(id(tensor))
            if atoms is None:
                continue
            text = (
                f"its channels are a model output (produced by "
                f"{describe(adapter.producer(tensor))})"
            )
            state.flag_all(atoms, "output", text)
        found = group_units(state, on_unsupported)
        self.groups = found.groups
        self.unit_location = found.unit_location
        self.approximate = found.approximate
        self.inexact_groups = found.inexact_groups
        self.internal_units = found.internal_units
        self.tensor_units = found.tensor_units

    # ----------------------------------------------------------------- walk
    def _walk(self, functional):
        for node in adapter.graph_nodes(functional):
            self._state.nodes.append((functional, node))
            self._visit(node)

    def _visit(self, node):
        """Dispatches `node` to its visit: a user rule, a nested graph, a
        plain op, or the visit of its rule's kind."""
        state = self._state
        layer = node.operation
        inputs = node.input_tensors
        outputs = node.output_tensors
        in_atoms = state.atoms_of(inputs)
        rule = rules_lib.rule_for(layer)
        if rule is not None and rules_lib.user_rule(layer) is rule:
            return self._layer_visits.user(layer, rule, in_atoms, outputs)
        if is_model(layer):
            return self._visit_nested(
                layer, node, in_atoms, functional_graph(layer)
            )
        if rule is None and is_composite(layer):
            inner = traced_graph(layer, node)
            if inner is None:
                return unsupported(
                    state, layer, in_atoms, outputs, trace_failure(layer, node)
                )
            return self._visit_nested(layer, node, in_atoms, inner, traced=True)
        if rule is None:
            if (
                not isinstance(layer, keras_layers.Layer)
                and all(a is None for a in in_atoms)
                and all(channel_count(t) is None for t in outputs)
            ):
                # An op on tensors without channels (a mask's reshape, a
                # causal mask merged with a padding mask).
                for out in outputs:
                    state.set_output(out, None, layer)
                return
            kind = rules_lib.op_kind(layer)
            if kind == "shape_only":
                # Its values do not depend on its input's: no channels
                # (a causal mask built from a sequence's length).
                for out in outputs:
                    state.set_output(out, None, layer)
                return
            if kind == "elementwise" or (
                kind == "getitem" and _keeps_last_axis(node)
            ):
                return pass_through(state, layer, in_atoms, outputs)
            if kind == "merge":
                return self._structure_visits.merge(layer, node, in_atoms)
            if kind == "transpose":
                return self._structure_visits.transpose(layer, node, in_atoms)
            return unsupported(state, layer, in_atoms, outputs)
        units_lib.output_slices(layer)  # raises for channels-first
        if rule.check is not None and inputs and outputs:
            reason = rule.check(
                layer, adapter.first_input(node).shape, outputs[0].shape
            )
            if reason is not None and rule.note is not None:
                # Not prunable in this configuration, but safe to keep as
                # is (attention with a gate, an EinsumDense mixing axes).
                return self._layer_visits.keep(layer, node, in_atoms, reason)
            if reason is not None:
                return unsupported(state, layer, in_atoms, outputs, reason)
        return self._by_kind[rule.kind](layer, node, in_atoms)

    def _visit_nested(self, layer, node, in_atoms, inner, traced=False):
        """A nested model, or the traced call of a composite layer
        (`traced`, see `_trace`), walked in place: `inner`'s inputs carry
        the atoms of `node`'s, its outputs give theirs to `node`'s. The
        channels of a traced layer's inputs and outputs (a transformer's
        residual stream) stay."""
        grouped = rules_lib.grouped_attention_layout(layer, inner)
        if grouped is not None:
            # Grouped-query attention (a pruned model's, rebuilt as a
            # nested model, too): its heads are found again.
            return self._layer_visits.grouped_attention(
                layer, node, in_atoms, grouped
            )
        state = self._state
        for tensor, atoms in zip(inner.inputs, in_atoms):
            previous = state.tensor_atoms.get(id(tensor))
            if previous is not None and atoms is not None:
                for a, b in zip(previous, atoms):
                    state.union_find.union(a, b)
            else:
                state.tensor_atoms[id(tensor)] = atoms
        self._walk(inner)
        for inner_out, outer_out in zip(inner.outputs, node.output_tensors):
            state.set_output(
                outer_out, state.tensor_atoms.get(id(inner_out)), layer
            )
        if not traced:
            return
        text = (
            f"{describe(layer)} is traced: the channels of its inputs and "
            "outputs (the residual stream) are kept"
        )
        for atoms in in_atoms:
            state.flag_all(atoms, "kept", text)
        for out in node.output_tensors:
            state.flag_all(state.tensor_atoms.get(id(out)), "kept", text)

    def removable_when_dead(self, group):
        """Whether `prune_model(model)` removes the dead units of `group`
        (a `UnitGroup` of this analysis): prunable and exactly removable."""
        return group.prunable and group.index not in self.inexact_groups

    def channel_units(self, tensor):
        """Global unit ids of the channels of `tensor` (`-1`: no group)."""
        return self.tensor_units.get(id(tensor))
