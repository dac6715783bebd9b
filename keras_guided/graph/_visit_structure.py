"""How the graph's structure maps the channel atoms: reshapes, merges,
concatenation, nested models and traced composite layers (a mixin of
`GraphAnalysis`)."""

import numpy as np

from keras_guided import rules as rules_lib
from keras_guided.graph._groups import describe
from keras_guided.graph._helpers import channel_count
from keras_guided.graph._helpers import functional_graph
from keras_guided.graph._trace import failure as trace_failure
from keras_guided.graph._trace import traced_graph


class StructureVisits:
    """The `_visit_<kind>` methods of `GraphAnalysis` for layers that
    move, join or nest channels."""

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
        if atoms is not None and channel_count(out) != len(atoms):
            return self._visit_unknown(
                layer,
                in_atoms,
                outputs,
                f"it changes the channel count from {len(atoms)} to "
                f"{channel_count(out)}",
            )
        self._set_output(out, atoms, layer)

    def _visit_reshape(self, layer, node, in_atoms):
        outputs = node.output_tensors
        atoms = in_atoms[0] if in_atoms else None
        out = outputs[0]
        if atoms is None:
            self._set_output(out, self._new_atoms(out), layer)
            return
        out_channels = channel_count(out)
        if out_channels is None:
            return self._visit_unknown(
                layer,
                in_atoms,
                outputs,
                f"its output shape {tuple(out.shape)} has an unknown last axis",
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
                "untracked",
                f"{describe(layer)} joins untracked channels",
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
        channels = channel_count(out)
        full = [a for a in in_atoms if a is not None and len(a) == channels]
        others = [a for a in in_atoms if a is None or len(a) != channels]
        if not full or any(a is not None and len(a) != 1 for a in others):
            counts = [None if a is None else len(a) for a in in_atoms]
            return self._visit_unknown(
                layer,
                in_atoms,
                outputs,
                f"it merges inputs with channel counts {counts} into "
                f"{channels}",
            )
        for atoms in full[1:]:
            for a, b in zip(full[0], atoms):
                self._uf.union(a, b)
        if any(a is None for a in others):
            self._flag_all(
                full[0],
                "untracked",
                f"{describe(layer)} mixes them with untracked channels",
            )
        self._set_output(out, full[0], layer)

    def _visit_model(self, model, node, in_atoms, inner=None):
        inner = inner or functional_graph(model)
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
        model (`_trace`); the channels of its inputs and
        outputs (a transformer's residual stream) stay."""
        inner = traced_graph(layer, node)
        if inner is None:
            return self._visit_unknown(
                layer,
                in_atoms,
                node.output_tensors,
                trace_failure(layer, node),
            )
        grouped = rules_lib.grouped_attention_layout(layer, inner)
        if grouped is not None:
            return self._visit_grouped_attention(layer, node, in_atoms, grouped)
        self._visit_model(layer, node, in_atoms, inner=inner)
        text = (
            f"{describe(layer)} is traced: the channels of its inputs and "
            "outputs (the residual stream) are kept"
        )
        for atoms in in_atoms:
            self._flag_all(atoms, "kept", text)
        for out in node.output_tensors:
            self._flag_all(self._tensor_atoms.get(id(out)), "kept", text)
