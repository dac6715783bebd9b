"""Unit groups over a Keras graph.

A *unit group* is the union of every weight slice and tensor channel that
must be removed together: a Dense unit's kernel column and bias, the
BatchNormalization entries after it, the consumers' input rows, and every
other producer tied to it by an Add, and so on (union-find over the graph).
Penalties, scoring and removal all act on unit groups.

CONTRACT (used by callbacks, scoring, surgery, cli):

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

Where each part lives: `_groups` (`UnitGroup`, `UnitSlice`, the
union-find), `_analysis` (`GraphAnalysis`: the walk, the dispatch on rule
kinds, the grouping), `_visit_layers` and `_visit_structure` (the visits,
mixins of `GraphAnalysis`), `_helpers` (facts about tensors and graphs),
`_shapes` (`concrete_shapes`).
"""

from keras_guided.graph._analysis import GraphAnalysis
from keras_guided.graph._groups import ON_UNSUPPORTED
from keras_guided.graph._groups import ROLES
from keras_guided.graph._groups import UnitGroup
from keras_guided.graph._groups import UnitSlice
from keras_guided.graph._groups import describe
from keras_guided.graph._helpers import _channels  # noqa: F401 (used as graph._channels)
from keras_guided.graph._helpers import _functional_of  # noqa: F401 (used as graph._functional_of)
from keras_guided.graph._helpers import _is_model  # noqa: F401 (used as graph._is_model)
from keras_guided.graph._helpers import inner_graph
from keras_guided.graph._helpers import is_traced
from keras_guided.graph._shapes import concrete_shapes

__all__ = [
    "GraphAnalysis",
    "ON_UNSUPPORTED",
    "ROLES",
    "UnitGroup",
    "UnitSlice",
    "analyze",
    "concrete_shapes",
    "describe",
    "find_unit_groups",
    "inner_graph",
    "is_traced",
]


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
