"""What a plan removes, and the weights a rebuild gives the changed layers.

Values, made once and only read: a `Removal` says which channels of each
tensor (and which heads of each layer) a plan keeps; a `NewWeights` says
which layers' weights differ from the original and what they are, either
the pruned ones (the original plus the folded bias deltas) or the masked
ones (the original with the removed units' incoming weights set to zero,
the verification's reference)."""

import dataclasses
import functools

import numpy as np
from keras import ops

from keras_guided import _axes
from keras_guided import scoring
from keras_guided import units as units_lib


@dataclasses.dataclass(frozen=True)
class Removal:
    """The unit roots a plan removes from an analysed model.

    `removed` is the sorted array of removed unit roots, or `None` for the
    removal that keeps every unit (the masked reference), whose `kept`
    is `None` for every tensor (the rebuild keeps all its channels).
    """

    analysis: object
    removed: object

    @classmethod
    def of(cls, analysis, plan):
        """The removal of `plan` (`{group index: kept unit indices}`)."""
        unit_root = {
            location: root for root, location in analysis.unit_location.items()
        }
        removed = []
        for index, kept in plan.items():
            group = analysis.groups[index]
            dropped = np.setdiff1d(np.arange(group.num_units), kept)
            removed.extend(unit_root[(index, int(u))] for u in dropped)
        return cls(analysis, np.array(sorted(removed), dtype=np.int64))

    @classmethod
    def nothing(cls, analysis):
        """The removal that keeps every unit."""
        return cls(analysis, None)

    def mask(self, tensor):
        """Which channels of `tensor` are removed, or `None` (untracked)."""
        units = self.analysis.tensor_units.get(id(tensor))
        if units is None or self.removed is None:
            return None
        return np.isin(units, self.removed)

    def kept(self, tensor):
        """The kept channels of `tensor`, or `None` (untracked)."""
        mask = self.mask(tensor)
        if mask is None:
            return None
        return np.flatnonzero(~mask)

    def kept_internal(self, layer):
        """Kept units of `layer` that are not channels (heads), or None."""
        units = self.analysis.internal_units.get(id(layer))
        if units is None:
            return None
        if self.removed is None:
            return np.arange(len(units))
        return np.flatnonzero(~np.isin(units, self.removed))


@dataclasses.dataclass(frozen=True)
class NewWeights:
    """The weights of the layers a rebuild changes.

    `changed` holds the ids of the layers whose weights differ from the
    original (the others are copied with all their state); `of(layer)`
    gives `{weight key: array}` of a layer rebuilt by its rule.
    """

    of: object
    changed: frozenset


def original_weights(layer):
    """`{weight key: a copy of its value}` of `layer`."""
    return {
        units_lib.weight_key(layer, v): ops.convert_to_numpy(v.value).copy()
        for v in layer.weights
    }


def pruned_weights(deltas):
    """The original weights with each folded bias delta added."""
    return NewWeights(
        functools.partial(_with_deltas, deltas), frozenset(deltas)
    )


def _with_deltas(deltas, layer):
    weights = original_weights(layer)
    delta = deltas.get(id(layer))
    if delta is not None:
        bias = weights.get("bias")
        if bias is None:
            bias = np.zeros(delta.shape[-1], dtype="float32")
        weights["bias"] = (bias + delta).astype(bias.dtype)
    return weights


def masked_weights(masks):
    """The original weights with the removed units' inputs set to zero."""
    return NewWeights(functools.partial(_with_masks, masks), frozenset(masks))


def _with_masks(masks, layer):
    weights = original_weights(layer)
    for slice_ in masks.get(id(layer), ()):
        weights[slice_[0]] = _axes.zero_units(
            weights[slice_[0]], slice_[1], slice_[2]
        )
    return weights


def find_masks(analysis, plan):
    """`(masks, changes)`: `{layer id: [(weight, axis, positions), ...]}`
    of the removed units' incoming weights, and whether any is non-zero
    (when none is, the original is its own masked reference)."""
    masks = {}
    changes = False
    for index, kept in plan.items():
        group = analysis.groups[index]
        dropped = np.setdiff1d(np.arange(group.num_units), kept)
        for s in group.slices:
            if s.role != "producer":
                continue
            if not units_lib.is_input_weight(
                s.weight, units_lib.get_weight(s.layer, s.weight).shape
            ):
                continue
            masks.setdefault(id(s.layer), []).append(
                (s.weight, s.axis, s.positions[dropped].ravel())
            )
            rows = _axes.gather_units(
                scoring.weight_value(s.layer, s.weight),
                s.axis,
                s.positions[dropped],
            )
            changes = changes or bool(np.any(rows != 0))
    return masks, changes
