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
(`rules.rule_for(layer).kind` picks one visit in one table), so this
package holds almost no per-class knowledge. A Reshape whose new last axis
divides the channel count ties the channels it folds together (Dense ->
Reshape); a grouped Conv ties input slot `j` of every group and makes
filter slot `j` of every group one unit; an attention layer's heads are
atoms of their own, not tensor channels (`GraphAnalysis.internal_units`).
A layer whose channels must stay (`kind="keep"`) flags them with its
reason and never raises; only unknown layers and unsupported
configurations do (with `on_unsupported="raise"`).

Where each part lives: `_groups` (`UnitGroup`, `UnitSlice`, the
union-find), `_analysis` (`GraphAnalysis`: the walk, the one dispatch on
rule kinds, nested and traced graphs), `_grouping` (`group_units`:
from the walk's atoms to unit groups, a pipeline of functions), `_state`
(`AtomState`: the atoms and records the walk hands to the visits, and the
moves they share), `_visit_layers` and `_visit_structure` (`LayerVisits`,
`StructureVisits`: the visits, collaborators given the state), `_helpers`
(facts about tensors and graphs), `_shapes` (`concrete_shapes`,
`probe_shape`), `_find_groups` (`find_unit_groups`, `analyze`), `_trace`
(composite layers opened by tracing their call; `keras_guided.trace` is
its documented face) and `_walk` (the one walk over a model's layers,
nested models opened).

Other packages use these through this face only: the layer walk
(`all_layers`, `leaf_layers`, `opens`) and tracing (`is_composite`,
`traced_graph`, `trace_failure`, `call_shapes`, `uncopyable`).
"""

from keras_guided.graph._analysis import GraphAnalysis
from keras_guided.graph._find_groups import analyze
from keras_guided.graph._find_groups import find_unit_groups
from keras_guided.graph._groups import ON_UNSUPPORTED
from keras_guided.graph._groups import ROLES
from keras_guided.graph._groups import UnitGroup
from keras_guided.graph._groups import UnitSlice
from keras_guided.graph._groups import describe
from keras_guided.graph._helpers import channel_count
from keras_guided.graph._helpers import functional_graph
from keras_guided.graph._helpers import inner_graph
from keras_guided.graph._helpers import is_model
from keras_guided.graph._helpers import is_traced
from keras_guided.graph._shapes import PROBE_SIZE
from keras_guided.graph._shapes import concrete_shapes
from keras_guided.graph._shapes import probe_shape
from keras_guided.graph._trace import call_shapes
from keras_guided.graph._trace import failure as trace_failure
from keras_guided.graph._trace import is_composite
from keras_guided.graph._trace import traced_graph
from keras_guided.graph._trace import uncopyable
from keras_guided.graph._walk import all_layers
from keras_guided.graph._walk import leaf_layers
from keras_guided.graph._walk import opens

__all__ = [
    "GraphAnalysis",
    "ON_UNSUPPORTED",
    "PROBE_SIZE",
    "ROLES",
    "UnitGroup",
    "UnitSlice",
    "all_layers",
    "analyze",
    "call_shapes",
    "channel_count",
    "concrete_shapes",
    "describe",
    "find_unit_groups",
    "functional_graph",
    "inner_graph",
    "is_composite",
    "is_model",
    "is_traced",
    "leaf_layers",
    "opens",
    "probe_shape",
    "trace_failure",
    "traced_graph",
    "uncopyable",
]
