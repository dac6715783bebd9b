"""How each layer kind maps the channel atoms: producers, per-channel
layers, attention heads, user rules, unknown layers (a mixin of
`GraphAnalysis`, one `_visit_<kind>` method per `rules` kind)."""

import numpy as np

from keras_guided import rules as rules_lib
from keras_guided import units as units_lib
from keras_guided.graph._groups import describe
from keras_guided.graph._helpers import _blocked
from keras_guided.graph._helpers import _has_weight
from keras_guided.graph._helpers import channel_count


class LayerVisits:
    """The `_visit_<kind>` methods of `GraphAnalysis` for layers that
    create, follow or keep channels."""

    def _visit_elementwise(self, layer, node, in_atoms):
        atoms = in_atoms[0] if in_atoms else None
        rule = rules_lib.rule_for(layer)
        if atoms is not None and channel_count(node.output_tensors[0]) == len(
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
        if name in rules_lib.MIXING_ACTIVATIONS:
            return self._visit_mixing(layer, node, in_atoms)
        return self._pass_through(layer, in_atoms, node.output_tensors)

    def _visit_keep(self, layer, node, in_atoms, reason=None):
        """A known layer whose channels stay: copied unchanged."""
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
        if activation in rules_lib.MIXING_ACTIVATIONS:
            self._flag_all(
                new,
                "mixing",
                f"{describe(layer)} mixes its channels ({activation})",
            )
        self.producer_ids.add(id(layer))
        self._set_output(outputs[0], new, layer, is_producer=True)

    def _visit_grouped(self, layer, node, atoms, groups):
        """Conv with `groups > 1` (see `rules.grouped_conv_rule`)."""
        out = node.output_tensors[0]
        filters = channel_count(out)
        per_group_in = int(units_lib.get_weight(layer, "kernel").shape[-2])
        per_group_out = filters // groups
        if per_group_in == 1 and not self._from_input(atoms):
            # One input channel per group: a depthwise convolution; input
            # channel c and its filters go together, whole groups at once.
            # (On a model input, whose channels stay, the filter slots of
            # the groups are the units instead, as below.)
            return self._visit_depthwise_like(
                layer, atoms, per_group_out, out, (("kernel", -1), ("bias", 0))
            )
        if atoms is not None:
            # Input slot j of every group reads kernel row j: tied.
            self._record(
                layer,
                "kernel",
                -2,
                "consumer",
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
            for a in atoms
            for kind, _ in self._flags.get(int(a), ())
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
                layer,
                slice_.weight,
                slice_.axis,
                "follower",
                enumerate(out_atoms),
            )
        self._set_output(outputs[0], out_atoms, layer)

    def _visit_normalization(self, layer, node, in_atoms):
        outputs = node.output_tensors
        atoms = in_atoms[0] if in_atoms else None
        if atoms is not None:
            for variable in layer.weights:
                role = "follower" if variable.trainable else "statistic"
                self._record(layer, variable.name, 0, role, enumerate(atoms))
            mixes = rules_lib.rule_for(layer).mixes_channels
            if mixes is not None:
                self._flag_all(
                    atoms, "approximate", f"{describe(layer)} {mixes}"
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

    def _visit_grouped_attention(self, layer, node, in_atoms, grouped):
        """Grouped-query attention (`rules.GroupedAttention`): a
        key/value head and the query heads that share it are one unit;
        the channels in and out stay."""
        self._keep_channels(
            layer,
            node,
            in_atoms,
            "its key/value heads (each with the query heads that share it) "
            "are unit groups, but its input and output channels are kept",
        )
        heads = self._uf.make(grouped.num_key_value_heads)
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
            self._record(dense, "kernel", 1, "producer", enumerate(atoms))
            if dense.bias is not None:
                self._record(dense, "bias", 0, "producer", enumerate(atoms))
            self.producer_ids.add(id(dense))
            self._internal_atoms[id(dense)] = atoms
        self._record(
            grouped.output, "kernel", 0, "consumer", enumerate(per_query)
        )
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
                    self._record(
                        layer, weight, axis, "producer", enumerate(new)
                    )
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
