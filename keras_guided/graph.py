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
"""

import dataclasses

import numpy as np


@dataclasses.dataclass
class UnitSlice:
    """Positions along one axis of one weight owned by the units of a group."""

    layer: object
    weight: str
    axis: object
    positions: np.ndarray
    role: str


@dataclasses.dataclass
class UnitGroup:
    """Channels that live or die together, with every weight slice tied."""

    index: int
    num_units: int
    slices: list
    layers: list
    prunable: bool = True
    reason: str = None


def find_unit_groups(model, on_unsupported="raise"):
    """Computes the unit groups of a built Sequential or Functional model."""
    raise NotImplementedError("graph analysis is being written (issue 3)")
