"""How each layer kind maps the channel atoms: producers, per-channel
layers, attention heads, user rules (`LayerVisits`: one method per `rules`
kind, each working on the `AtomState` it was given)."""

import numpy as np

from keras_guided import rules as rules_lib
from keras_guided import units as units_lib
from keras_guided.graph._groups import describe
from keras_guided.graph._helpers import _blocked
from keras_guided.graph._helpers import _has_weight
from keras_guided.graph._helpers import channel_count
from keras_guided.graph._state import keep_channels
from keras_guided.graph._state import pass_through


class LayerVisits:
    """The visits of layers that create, follow or keep channels.

    Each `kind(layer, node, in_atoms)` method maps the atoms of `layer`'s
    inputs (`in_atoms`, one array or `None` per input tensor of `node`) to
    its outputs and records its weight slices, in `state` only.

    Args:
        state: the `AtomState` of the walk.
    """

    def __init__(self, state):
        self.state = state

    def elementwise(self, layer, node, in_atoms):
        atoms = in_atoms[0] if in_atoms else None
        rule = rules_lib.rule_for(layer)
        if atoms is not None and channel_count(node.output_tensors[0]) == len(
            atoms
        ):
            weights = rule.output_weights
            if callable(weights):
                weights = weights(layer)
            for weight, axis in weights:
                self.state.record(
                    layer, weight, axis, "follower", enumerate(atoms)
                )
        return pass_through(self.state, layer, in_atoms, node.output_tensors)

    def activation(self, layer, node, in_atoms):
        name = getattr(layer.activation, "__name__", "")
        if name in rules_lib.MIXING_ACTIVATIONS:
            return self.mixing(layer, node, in_atoms)
        return pass_through(self.state, layer, in_atoms, node.output_tensors)

    def keep(self, layer, node, in_atoms, reason=None):
        """A known layer whose channels stay: copied unchanged."""
        note = rules_lib.rule_for(layer).note or "it is copied unchanged"
        if reason is not None:
            note = f"{reason}; it is copied unchanged"
        keep_channels(self.state, layer, node, in_atoms, note)

    def attention(self, layer, node, in_atoms):
        """MultiHeadAttention: its heads are units; its channels stay."""
        self.keep(layer, node, in_atoms)
        heads = self.state.union_find.make(int(layer.num_heads))
        for name, axis in rules_lib.ATTENTION_HEAD_WEIGHTS:
            if _has_weight(layer, name):
                self.state.record(
                    layer, name, axis, "producer", enumerate(heads)
                )
        name, axis = rules_lib.ATTENTION_OUTPUT_WEIGHT
        self.state.record(layer, name, axis, "consumer", enumerate(heads))
        self.state.producer_ids.add(id(layer))
        self.state.internal_atoms[id(layer)] = heads
        self.state.carriers.append((layer.name, heads, True))

    def producer(self, layer, node, in_atoms):
        outputs = node.output_tensors
        atoms = in_atoms[0] if in_atoms else None
        groups = int(getattr(layer, "groups", 1) or 1)
        if groups > 1:
            return self._grouped(layer, node, atoms, groups)
        if atoms is not None:
            for slice_ in units_lib.input_slices(layer):
                self.state.record(
                    layer,
                    slice_.weight,
                    slice_.axis,
                    "consumer",
                    _blocked(atoms, slice_.block),
                )
        new = self.state.new_atoms(outputs[0])
        if new is None:
            return
        for slice_ in units_lib.output_slices(layer):
            self.state.record(
                layer, slice_.weight, slice_.axis, "producer", enumerate(new)
            )
        activation = getattr(getattr(layer, "activation", None), "__name__", "")
        if activation in rules_lib.MIXING_ACTIVATIONS:
            self.state.flag_all(
                new,
                "mixing",
                f"{describe(layer)} mixes its channels ({activation})",
            )
        self.state.producer_ids.add(id(layer))
        self.state.set_output(outputs[0], new, layer, is_producer=True)

    def _grouped(self, layer, node, atoms, groups):
        """Conv with `groups > 1` (see `rules.grouped_conv_rule`)."""
        out = node.output_tensors[0]
        filters = channel_count(out)
        per_group_in = int(units_lib.get_weight(layer, "kernel").shape[-2])
        per_group_out = filters // groups
        if per_group_in == 1 and not self.state.from_input(atoms):
            # One input channel per group: a depthwise convolution; input
            # channel c and its filters go together, whole groups at once.
            # (On a model input, whose channels stay, the filter slots of
            # the groups are the units instead, as below.)
            return self._depthwise_like(
                layer, atoms, per_group_out, out, (("kernel", -1), ("bias", 0))
            )
        if atoms is not None:
            # Input slot j of every group reads kernel row j: tied.
            self.state.record(
                layer,
                "kernel",
                -2,
                "consumer",
                [(c % per_group_in, atom) for c, atom in enumerate(atoms)],
            )
        slots = self.state.union_find.make(per_group_out)
        new = np.tile(slots, groups)
        for slice_ in units_lib.output_slices(layer):
            self.state.record(
                layer, slice_.weight, slice_.axis, "producer", enumerate(new)
            )
        self.state.producer_ids.add(id(layer))
        self.state.set_output(out, new, layer, is_producer=True)

    def _depthwise_like(self, layer, atoms, multiplier, out, weights):
        out_atoms = np.repeat(atoms, multiplier)
        for name, axis in weights:
            if name == "bias" and not getattr(layer, "use_bias", False):
                continue
            self.state.record(
                layer, name, axis, "follower", enumerate(out_atoms)
            )
        self.state.set_output(out, out_atoms, layer)

    def depthwise(self, layer, node, in_atoms):
        outputs = node.output_tensors
        atoms = in_atoms[0] if in_atoms else None
        if atoms is None:
            self.state.set_output(
                outputs[0], self.state.new_atoms(outputs[0]), layer
            )
            return
        multiplier = int(layer.depth_multiplier)
        out_atoms = np.repeat(atoms, multiplier)
        for slice_ in units_lib.output_slices(layer):
            self.state.record(
                layer,
                slice_.weight,
                slice_.axis,
                "follower",
                enumerate(out_atoms),
            )
        self.state.set_output(outputs[0], out_atoms, layer)

    def normalization(self, layer, node, in_atoms):
        outputs = node.output_tensors
        atoms = in_atoms[0] if in_atoms else None
        if atoms is not None:
            for variable in layer.weights:
                role = "follower" if variable.trainable else "statistic"
                self.state.record(
                    layer, variable.name, 0, role, enumerate(atoms)
                )
            mixes = rules_lib.rule_for(layer).mixes_channels
            if mixes is not None:
                self.state.flag_all(
                    atoms, "approximate", f"{describe(layer)} {mixes}"
                )
        self.state.set_output(outputs[0], atoms, layer)

    def prelu(self, layer, node, in_atoms):
        outputs = node.output_tensors
        atoms = in_atoms[0] if in_atoms else None
        alpha = units_lib.get_weight(layer, "alpha")
        if atoms is not None and alpha.shape[-1] == len(atoms):
            self.state.record(layer, "alpha", -1, "follower", enumerate(atoms))
        self.state.set_output(outputs[0], atoms, layer)

    def mixing(self, layer, node, in_atoms):
        outputs = node.output_tensors
        atoms = in_atoms[0] if in_atoms else None
        self.state.flag_all(
            atoms, "mixing", f"{describe(layer)} mixes channels"
        )
        self.state.set_output(outputs[0], atoms, layer)

    def grouped_attention(self, layer, node, in_atoms, grouped):
        """Grouped-query attention (`rules.GroupedAttention`): a
        key/value head and the query heads that share it are one unit;
        the channels in and out stay."""
        keep_channels(
            self.state,
            layer,
            node,
            in_atoms,
            "its key/value heads (each with the query heads that share it) "
            "are unit groups, but its input and output channels are kept",
        )
        heads = self.state.union_find.make(grouped.num_key_value_heads)
        per_query = [
            heads[k]
            for k in range(len(heads))
            for _ in range(grouped.group_size)
        ]
        for dense, atoms in (
            (grouped.query, per_query),
            (grouped.key, heads),
            (grouped.value, heads),
        ):
            self.state.record(dense, "kernel", 1, "producer", enumerate(atoms))
            if dense.bias is not None:
                self.state.record(
                    dense, "bias", 0, "producer", enumerate(atoms)
                )
            self.state.producer_ids.add(id(dense))
            self.state.internal_atoms[id(dense)] = atoms
        self.state.record(
            grouped.output, "kernel", 0, "consumer", enumerate(per_query)
        )
        self.state.internal_atoms[id(grouped.output)] = per_query
        self.state.carriers.append((layer.name, heads, True))

    def user(self, layer, rule, in_atoms, outputs):
        atoms = in_atoms[0] if in_atoms else None
        if rule.kind == "producer":
            if atoms is not None:
                for weight, axis, block in rule.input_weights:
                    self.state.record(
                        layer, weight, axis, "consumer", _blocked(atoms, block)
                    )
            new = self.state.new_atoms(outputs[0])
            if new is not None:
                for weight, axis in rule.output_weights:
                    self.state.record(
                        layer, weight, axis, "producer", enumerate(new)
                    )
                self.state.producer_ids.add(id(layer))
            self.state.set_output(outputs[0], new, layer, is_producer=True)
            return
        if atoms is not None:
            for weight, axis in rule.output_weights:
                self.state.record(
                    layer, weight, axis, "follower", enumerate(atoms)
                )
        pass_through(self.state, layer, in_atoms, outputs)
