"""The graph rebuilt layer by layer for the kept units (step 4 of
`prune_model`, see `keras_guided.surgery`).

`rebuild(removal, weights)` walks the graph through
`keras.models.clone_model`'s replay (`_keras_adapter.replay`): a layer
with removed units, or with new weights, is re-created by its rule
(`keras_guided.rules`) from its sliced config and weights; any other layer
is copied with all its state (`_copies`). Its state lives in one
`_Rebuild` per call, so the pruned model and the masked reference are two
calls that share nothing."""

import dataclasses

import keras
import numpy as np

from keras_guided import _copies
from keras_guided import _keras_adapter as adapter
from keras_guided import graph as graph_lib
from keras_guided import rules as rules_lib

# A layer copied with all its state (`_copies.copy_state`), not given
# sliced weights.
_COPY = object()


@dataclasses.dataclass
class Rebuilt:
    """A rebuilt model, and what the rebuild had to say.

    Attributes:
        model: the new `keras.Model` (a `keras.Sequential` for one).
        notes: config entries dropped so the model loads without
            keras_guided.
        shared: `{layer name: reason}` of keras-hub sublayers that do not
            copy: the new model holds the original layer itself, and is
            kept only once rebuilt as its keras-hub class.
    """

    model: object
    notes: list
    shared: dict


def rebuild(removal, weights):
    """A new model of `removal.analysis.model` without `removal`'s units.

    Args:
        removal: a `Removal`: the analysis and the kept channels
            (`Removal.nothing` keeps them all).
        weights: a `NewWeights`: the layers whose weights change and
            their new weights.

    Returns:
        A `Rebuilt`.
    """
    return _Rebuild(removal, weights).model()


class _Rebuild:
    """The state of one rebuild: the new layers by original id."""

    def __init__(self, removal, weights):
        self.removal = removal
        self.analysis = removal.analysis
        self.weights = weights
        self._cache = {}
        self._new_weights = {}
        self._copied_from = {}
        self.shared = {}
        self.notes = []

    def model(self):
        model = self.analysis.model
        functional = graph_lib.functional_graph(model)
        inputs = [
            keras.Input(
                batch_shape=t.shape,
                dtype=t.dtype,
                name=adapter.producer(t).name,
            )
            for t in functional.inputs
        ]
        outputs = self._rebuild(functional, inputs)
        if isinstance(model, keras.Sequential):
            new = keras.Sequential(
                [adapter.producer(inputs[0])]
                + [self._cache[id(layer)] for layer in model.layers],
                name=model.name,
            )
        else:
            new = keras.Model(
                adapter.pack_inputs(functional, inputs),
                outputs,
                name=model.name,
            )
        return Rebuilt(model=new, notes=self.notes, shared=self.shared)

    def _untouched(self, op, node, kept_inputs, kept_outputs):
        """Whether `op` is rebuilt with its own channels and weights."""
        tensors = list(node.input_tensors) + list(node.outputs[:1])
        kept = list(kept_inputs) + [kept_outputs]
        for tensor, channels in zip(tensors, kept):
            full = graph_lib.channel_count(tensor)
            if channels is not None and len(channels) != full:
                return False
        internal = self.removal.kept_internal(op)
        if internal is not None and len(internal) < len(
            self.analysis.internal_units[id(op)]
        ):
            return False
        return id(op) not in self.weights.changed

    def _kept(self, tensor):
        return kept_channels(self.removal, tensor)

    def _rebuild(self, functional, new_inputs):
        outputs = adapter.replay(functional, new_inputs, self._rebuild_node)
        return adapter.pack_outputs(functional, outputs)

    def _rebuild_node(self, node, args, kwargs, tensors):
        """The new outputs of one node: its operation rebuilt (once) and
        called on the new tensors."""
        op = node.operation
        new_op = self._cache.get(id(op))
        fresh = new_op is None
        traced = graph_lib.is_traced(op, node)
        if fresh:
            new_op = self._new_operation(op, node)
        try:
            if traced:
                # The rebuilt call is a Functional model of the tensors
                # the traced call read (inputs, then masks), in order.
                flat = [tensors[id(t)] for t in node.input_tensors]
                outputs = new_op(flat[0] if len(flat) == 1 else flat)
            else:
                outputs = new_op(*args, **kwargs)
            if (
                fresh
                and isinstance(op, keras.layers.Layer)
                and not (graph_lib.is_model(op) or traced)
            ):
                self._set_state(op, new_op)
        except Exception as error:  # noqa: BLE001 (another copy)
            if not fresh or self._copied_from.get(id(op)) != "config":
                raise
            # Rebuilt from its config, it does not take the original's
            # state (other sublayers) or its inputs: created again.
            new_op = _copies.replayed(op, error)
            self._cache[id(op)] = new_op
            self._copied_from[id(op)] = "constructor"
            try:
                outputs = new_op(*args, **kwargs)
                self._set_state(op, new_op)
            except Exception as second:  # noqa: BLE001
                raise _copies.cannot_copy(op, error, second) from second
        return outputs

    def _new_operation(self, op, node):
        inner = graph_lib.inner_graph(op, node)
        if inner is not None:
            # A nested model, or a traced composite layer (rebuilt as a
            # Functional model of standard layers and ops).
            # A traced layer called at several shapes is built for all of
            # them (`None` where they differ, `trace.call_shapes`).
            shapes = [t.shape for t in inner.inputs]
            if graph_lib.is_traced(op, node):
                shapes = graph_lib.call_shapes(op, node)
            inputs = []
            for t, shape in zip(inner.inputs, shapes):
                kept = self._kept(t)
                shape = list(shape)
                if kept is not None:
                    shape[-1] = len(kept)
                inputs.append(
                    keras.Input(
                        batch_shape=tuple(shape),
                        dtype=t.dtype,
                        name=adapter.producer(t).name,
                    )
                )
            outputs = self._rebuild(inner, inputs)
            if isinstance(op, keras.Sequential):
                new = keras.Sequential(
                    [adapter.producer(inputs[0])]
                    + [self._cache[id(layer)] for layer in op.layers],
                    name=op.name,
                )
            else:
                new = keras.Model(
                    adapter.pack_inputs(inner, inputs),
                    outputs,
                    name=op.name,
                )
            self._cache[id(op)] = new
            return new
        if not isinstance(op, keras.layers.Layer):
            self._cache[id(op)] = op  # a stateless keras.ops operation
            return op
        kept_inputs = [self._kept(t) for t in node.input_tensors]
        kept_outputs = self._kept(node.outputs[0])
        if self._untouched(op, node, kept_inputs, kept_outputs):
            # No removed channel passes through: a copy with all its state
            # (`_copies`), from its config where that round-trips.
            try:
                new, how = _copies.new_copy(
                    op, lambda config: self._standard(op, config)
                )
                self._new_weights[id(op)] = _COPY
            except ValueError:
                reason = graph_lib.uncopyable(op)
                if reason is None:
                    raise
                # A keras-hub sublayer that does not copy: the model built
                # here holds the original layer itself (untouched, never
                # trained through it) and is kept only once rebuilt as its
                # keras-hub class (`prune_model`).
                self.shared[op.name] = reason
                new, how = op, "shared"
                self._new_weights[id(op)] = None
            self._copied_from[id(op)] = how
            self._cache[id(op)] = new
            return new
        new, weights = rule_layer(
            op,
            self.removal,
            self.weights,
            kept_inputs,
            kept_outputs,
            lambda config: self._standard(op, config),
        )
        self._new_weights[id(op)] = weights
        self._cache[id(op)] = new
        return new

    def _standard(self, op, config):
        dropped = []
        config = _standard_config(config, dropped)
        if dropped:
            self.notes.append(
                f"{graph_lib.describe(op)}: dropped {', '.join(dropped)} "
                "(not a Keras object), so the model loads without "
                "keras_guided"
            )
        return config

    def _set_state(self, op, new_op):
        """Gives the new (built) layer its weights and state; the arrays
        are dropped once given (they are the size of the layer)."""
        weights = self._new_weights[id(op)]
        if weights is _COPY:
            _copies.copy_state(op, new_op)
        elif weights is not None:
            set_rule_weights(op, new_op, weights)
        self._new_weights[id(op)] = None


def kept_channels(removal, tensor):
    """The kept channels of `tensor` (all of a tensor with channels that
    `removal` does not track), or `None`."""
    kept = removal.kept(tensor)
    if kept is None:
        channels = graph_lib.channel_count(tensor)
        if channels is not None:
            kept = np.arange(channels)
    return kept


def rule_layer(op, removal, weights, kept_inputs, kept_outputs, standard):
    """`(new layer, its weights)`: `op` re-created by its rule for the kept
    channels of its inputs and outputs (and heads), unbuilt; the weights
    (a list of arrays) are given with `set_rule_weights` once it is built.

    Args:
        op: the original layer.
        removal: the `Removal`.
        weights: the `NewWeights` (`weights.of(op)` is read here).
        kept_inputs: the kept channels of each input tensor.
        kept_outputs: the kept channels of the output tensor.
        standard: `standard(config) -> config`, the config as saved.
    """
    rule = rules_lib.get_rule(op)
    extra = {}
    kept_heads = removal.kept_internal(op)
    if kept_heads is not None:
        extra["kept_heads"] = kept_heads
    config, new_weights = rule(
        _copies.config_view(op),
        weights.of(op),
        kept_inputs,
        kept_outputs,
        **extra,
    )
    config = standard(config)
    try:
        new = type(op).from_config(config)
    except Exception as error:  # noqa: BLE001 (re-raised with advice)
        raise _copies.from_config_error(op, error) from error
    return new, new_weights


def set_rule_weights(op, new_op, weights):
    """Gives `new_op` (built, from `rule_layer(op, ...)`) its weights and
    the state derived from them."""
    new_op.set_weights(weights)
    _copies.reload_state(new_op)
    _copies.keep_lora(op, new_op)


def _is_package_module(module):
    return module == "keras_guided" or module.startswith("keras_guided.")


def _standard_config(config, dropped=None):
    """Drops keras_guided's regularizers and constraints.

    The pruned model must load without keras_guided installed, and a
    GuidedRegularizer's per-unit coefficients no longer match the width.
    The user's own objects stay (as objects: `_copies.layer_config`). The
    names of dropped entries are appended to `dropped`.
    """
    config = dict(config)
    for key, value in list(config.items()):
        if not (key.endswith("_regularizer") or key.endswith("_constraint")):
            continue
        if isinstance(value, dict):
            module = str(value.get("module") or "")
        else:
            module = type(value).__module__
        if value is not None and _is_package_module(module):
            config[key] = None
            if dropped is not None:
                dropped.append(key)
    return config
