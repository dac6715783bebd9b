"""The verification's reference: the original model with the removed
units' incoming weights set to zero, run without being built.

A masked copy of the whole model would hold a second copy of every weight
while the pruned model and the original are held too. The reference is
instead the original's graph run again on concrete inputs (Keras' own walk,
`_keras_adapter.replay`), through the same operations a rebuild would
make: a nested model and a traced composite layer run their inner graphs,
a layer with masked weights is re-created by its rule with all its units
(`_rebuild.rule_layer`), given the masked weights, called, and dropped,
and any other layer is the original itself, called as the original model
calls it. At most one masked layer's weights exist at a time."""

from keras_guided import _keras_adapter as adapter
from keras_guided import graph as graph_lib
from keras_guided.surgery._rebuild import _standard_config
from keras_guided.surgery._rebuild import kept_channels
from keras_guided.surgery._rebuild import rule_layer
from keras_guided.surgery._rebuild import set_rule_weights
from keras_guided.surgery._removal import Removal
from keras_guided.surgery._removal import find_masks
from keras_guided.surgery._removal import masked_weights


def masked_reference(analysis, plan):
    """The original model with the removed units' incoming weights set to
    zero, as a `MaskedOriginal`, or `None` when they are all zero
    already."""
    masks, changes = find_masks(analysis, plan)
    if not changes:
        return None
    return MaskedOriginal(Removal.nothing(analysis), masked_weights(masks))


class MaskedOriginal:
    """Called like a model (`reference(inputs, training=False)`), it
    computes the original model with `weights` in place of the weights of
    the layers in `weights.changed`."""

    def __init__(self, removal, weights):
        self.removal = removal
        self.weights = weights

    def __call__(self, inputs, training=False):
        functional = graph_lib.functional_graph(self.removal.analysis.model)
        return self._run(functional, inputs, training)

    def _run(self, functional, inputs, training):
        """`functional`'s outputs (in its structure) on `inputs` (a value
        its call accepts)."""
        flat = adapter.standardize_inputs(functional, inputs)
        return self._run_flat(functional, flat, training)

    def _run_flat(self, functional, flat, training):
        def call(node, args, kwargs, tensors):
            return self._call(node, args, kwargs, tensors, training)

        outputs = adapter.replay(functional, flat, call)
        return adapter.pack_outputs(functional, outputs)

    def _call(self, node, args, kwargs, tensors, training):
        op = node.operation
        inner = graph_lib.inner_graph(op, node)
        if inner is not None:
            given = kwargs.get("training")
            inner_training = training if given is None else given
            if graph_lib.is_traced(op, node):
                # The traced call reads these tensors (inputs, then
                # masks), in order: the inputs of its graph.
                flat = [tensors[id(t)] for t in node.input_tensors]
                return self._run_flat(inner, flat, inner_training)
            return self._run(
                inner, args[0] if args else kwargs["inputs"], inner_training
            )
        kwargs = adapter.with_context_arguments(op, kwargs, training)
        if id(op) not in self.weights.changed:
            return op(*args, **kwargs)
        new, weights = rule_layer(
            op,
            self.removal,
            self.weights,
            [kept_channels(self.removal, t) for t in node.input_tensors],
            kept_channels(self.removal, node.outputs[0]),
            _standard_config,
        )
        new(*args, **kwargs)  # builds it (with its initial weights)
        set_rule_weights(op, new, weights)
        return new(*args, **kwargs)
