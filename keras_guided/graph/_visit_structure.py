"""How the graph's structure maps the channel atoms: transposes,
reshapes, merges and concatenation (`StructureVisits`, working on the
`AtomState` it was given). Nested models and traced composite layers are
the walk's own business (`GraphAnalysis`)."""

import numpy as np

from keras_guided.graph._groups import describe
from keras_guided.graph._helpers import channel_count
from keras_guided.graph._state import pass_through
from keras_guided.graph._state import unsupported


class StructureVisits:
    """The visits of layers and ops that move or join channels.

    Each `kind(layer, node, in_atoms)` method maps the atoms of `layer`'s
    inputs (`in_atoms`, one array or `None` per input tensor of `node`) to
    its outputs, in `state` only.

    Args:
        state: the `AtomState` of the walk.
    """

    def __init__(self, state):
        self.state = state

    def transpose(self, layer, node, in_atoms):
        """`keras.ops.transpose`: channels pass when the last axis stays
        last; otherwise the channels on both sides stay (MLP-Mixer's token
        mixing reads the sequence axis as channels)."""
        out = node.output_tensors[0]
        rank = len(out.shape)
        axes = getattr(layer, "axes", None)
        if axes is not None and int(axes[-1]) % rank == rank - 1:
            return pass_through(
                self.state, layer, in_atoms, node.output_tensors
            )
        text = f"{describe(layer)} moves the channel axis"
        for atoms in in_atoms:
            self.state.flag_all(atoms, "kept", text)
        new = self.state.new_atoms(out)
        self.state.flag_all(new, "kept", text)
        self.state.set_output(out, new, layer)

    def reshape(self, layer, node, in_atoms):
        outputs = node.output_tensors
        atoms = in_atoms[0] if in_atoms else None
        out = outputs[0]
        if atoms is None:
            self.state.set_output(out, self.state.new_atoms(out), layer)
            return
        out_channels = channel_count(out)
        if out_channels is None:
            return unsupported(
                self.state,
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
            self.state.set_output(
                out, np.tile(atoms, out_channels // len(atoms)), layer
            )
            return
        for c in range(out_channels, len(atoms)):
            self.state.union_find.union(atoms[c % out_channels], atoms[c])
        self.state.set_output(out, atoms[:out_channels], layer)

    def concatenate(self, layer, node, in_atoms):
        outputs = node.output_tensors
        rank = len(outputs[0].shape)
        axis = layer.axis % rank
        if any(a is None for a in in_atoms):
            self.state.flag_all(
                np.concatenate([a for a in in_atoms if a is not None] or [[]]),
                "untracked",
                f"{describe(layer)} joins untracked channels",
            )
            self.state.set_output(
                outputs[0], self.state.new_atoms(outputs[0]), layer
            )
            return
        if axis == rank - 1:
            self.state.set_output(outputs[0], np.concatenate(in_atoms), layer)
        else:
            self.merge(layer, node, in_atoms)

    def merge(self, layer, node, in_atoms):
        """Add, Multiply, ... (and a concatenation along another axis):
        the channels of the inputs are tied one to one (an input of one
        channel broadcasts)."""
        outputs = node.output_tensors
        out = outputs[0]
        channels = channel_count(out)
        full = [a for a in in_atoms if a is not None and len(a) == channels]
        others = [a for a in in_atoms if a is None or len(a) != channels]
        if not full or any(a is not None and len(a) != 1 for a in others):
            counts = [None if a is None else len(a) for a in in_atoms]
            return unsupported(
                self.state,
                layer,
                in_atoms,
                outputs,
                f"it merges inputs with channel counts {counts} into "
                f"{channels}",
            )
        for atoms in full[1:]:
            for a, b in zip(full[0], atoms):
                self.state.union_find.union(a, b)
        if any(a is None for a in others):
            self.state.flag_all(
                full[0],
                "untracked",
                f"{describe(layer)} mixes them with untracked channels",
            )
        self.state.set_output(out, full[0], layer)
