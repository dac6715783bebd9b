"""Unit groups and weight slices (what `find_unit_groups` returns), and the
union-find over channel atoms the analysis builds them with."""

import dataclasses

import numpy as np

ROLES = ("producer", "follower", "consumer", "statistic")
ON_UNSUPPORTED = ("raise", "keep")


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

    def roots(self):
        """The root of every atom as one array (`roots()[a] == find(a)`),
        by pointer jumping: a few vectorized passes instead of a `find`
        per atom."""
        parent = np.asarray(self.parent, dtype=np.int64)
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                return parent
            parent = grand

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
