"""The rewriter of `prune_model`: a plan applied to a model's graph.

Its concepts live in their own modules: constants and folding
(`_constants`), rebuilding (`_rebuild`); the kept channels and the
weights (pruned, masked) are here."""

import numpy as np
from keras import ops

from keras_guided import _axes
from keras_guided import scoring
from keras_guided import units as units_lib
from keras_guided.surgery._constants import Constants
from keras_guided.surgery._rebuild import Rebuilder


class Rewriter(Constants, Rebuilder):
    """Constants, folding and rebuilding for one analysed model."""

    def __init__(self, analysis, shapes=None):
        self.analysis = analysis
        self.shapes = shapes or {}
        self.unit_root = {
            location: root for root, location in analysis.unit_location.items()
        }
        self.notes = []
        self.folding_notes = []  # the notes of `Constants._fold_note`
        self.rng = np.random.default_rng(0)
        self._pool = None  # probe noise (`Constants._noise`)
        self._recent = []  # its last window starts

    # plan -> removed channels
    def set_plan(self, plan):
        self.plan = plan
        removed = []
        for index, kept in plan.items():
            group = self.analysis.groups[index]
            dropped = np.setdiff1d(np.arange(group.num_units), kept)
            removed.extend(self.unit_root[(index, int(u))] for u in dropped)
        self.removed = np.array(sorted(removed), dtype=np.int64)

    def removed_mask(self, tensor):
        units = self.analysis.tensor_units.get(id(tensor))
        if units is None:
            return None
        return np.isin(units, self.removed)

    def kept(self, tensor):
        mask = self.removed_mask(tensor)
        if mask is None:
            return None
        return np.flatnonzero(~mask)

    # ------------------------------------------------------------ weights
    def original_weights(self, layer):
        return {
            units_lib.weight_key(layer, v): ops.convert_to_numpy(v.value).copy()
            for v in layer.weights
        }

    def kept_internal(self, layer):
        """Kept units of `layer` that are not channels (heads), or None."""
        units = self.analysis.internal_units.get(id(layer))
        if units is None:
            return None
        if self._keep_all:
            return np.arange(len(units))
        return np.flatnonzero(~np.isin(units, self.removed))

    def pruned_weights(self, layer):
        weights = self.original_weights(layer)
        delta = self.deltas.get(id(layer))
        if delta is not None:
            bias = weights.get("bias")
            if bias is None:
                bias = np.zeros(delta.shape[-1], dtype="float32")
            weights["bias"] = (bias + delta).astype(bias.dtype)
        return weights

    def masked_weights(self, layer):
        """Original weights with the removed units' inputs set to zero."""
        weights = self.original_weights(layer)
        for slice_ in self._masks.get(id(layer), ()):
            weights[slice_[0]] = _axes.zero_units(
                weights[slice_[0]], slice_[1], slice_[2]
            )
        return weights

    def prepare_masks(self):
        """Finds the weights to zero; returns whether any is non-zero."""
        self._masks = {}
        changes = False
        for index, kept in self.plan.items():
            group = self.analysis.groups[index]
            dropped = np.setdiff1d(np.arange(group.num_units), kept)
            for s in group.slices:
                if s.role != "producer":
                    continue
                if not units_lib.is_input_weight(
                    s.weight, units_lib.get_weight(s.layer, s.weight).shape
                ):
                    continue
                self._masks.setdefault(id(s.layer), []).append(
                    (s.weight, s.axis, s.positions[dropped].ravel())
                )
                rows = _axes.gather_units(
                    scoring.weight_value(s.layer, s.weight),
                    s.axis,
                    s.positions[dropped],
                )
                changes = changes or bool(np.any(rows != 0))
        return changes
