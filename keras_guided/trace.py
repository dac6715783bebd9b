"""Opening composite layers: a layer's `call` run on symbolic inputs.

A layer that is not in the rule registry but is made of other layers (a
user's `TransformerBlock`, keras-hub's `TransformerEncoder`, keras-io's
`MLPMixerLayer`) is *traced*: its `call` runs on fresh `keras.Input`s of the
shapes it sees in the graph, and the Functional sub-graph that records is
made of the layer's own sublayer objects (weights shared, nothing copied).
Graph analysis, the cost model, the callback and surgery treat that
sub-graph like a nested model; the pruned model holds its rebuilt version,
a Functional model of standard layers and ops that loads without the
original class.

A layer is not traced (it stays intact, with the reason `failure` gives)
when its call fails on symbolic tensors, when it owns weights that no
sublayer called on its inputs holds, when it returns something other than
tensors, when a sublayer would not rebuild from its config, or when its
traced graph differs from its call at a checked shape.

This module is the documented face of the tracing that lives in
`keras_guided.graph` (`keras_guided/graph/_trace.py`, where the contract
is spelled out).
"""

from keras_guided.graph import call_shapes
from keras_guided.graph import is_composite
from keras_guided.graph import trace_failure as failure
from keras_guided.graph import traced_graph

__all__ = ["call_shapes", "failure", "is_composite", "traced_graph"]
