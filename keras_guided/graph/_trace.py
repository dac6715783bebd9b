"""Opening composite layers: a layer's `call` run on symbolic inputs.

A layer that is not in the rule registry but is made of other layers (a
user's `TransformerBlock`, keras-hub's `TransformerEncoder`, keras-io's
`MLPMixerLayer`) is *traced*: its `call` runs on fresh `keras.Input`s of the
shapes it sees in the graph. In Keras 3 every sublayer call and every
`keras.ops` call on a symbolic tensor records a node, so
`keras.Model(inputs, layer.call(*inputs))` is a Functional sub-graph made of
the layer's own sublayer objects (weights shared, nothing copied). Graph
analysis, the cost model, the callback and surgery treat that sub-graph like
a nested model; the pruned model holds its rebuilt version, a Functional
model of standard layers and ops that loads without the original class.

CONTRACT (used by the graph analysis, and through the face of
`keras_guided.graph` by stats, scoring and surgery; `keras_guided.trace`
re-exports the documented names):

    traced_graph(layer, node) -> keras.Model | None
        the sub-graph of `layer`'s call at `node` (one per node, cached), or
        None when `layer` is not a composite layer or cannot be traced;
    failure(layer, node) -> str | None      (graph's `trace_failure`)
        why a composite layer could not be traced (kept intact), or None;
    call_shapes(layer, node) -> list[tuple]
        the input shapes its rebuilt version is built for (see below);
    uncopyable(layer) -> str | None
        why a sublayer of a traced keras-hub block cannot be copied;
    is_composite(layer) -> bool

The sub-graph's inputs are, in order, the symbolic tensors of the node's
call (`node.input_tensors`: the layer's inputs, then masks passed as
arguments); its outputs are the flattened outputs of the call. A layer whose
`training` argument exists is traced at inference (`training=False`).

Checked against its call. A traced graph is run against the layer's own
call at two batch sizes and, for an unknown length, two lengths
(`CHECK_BATCH_SIZES`, `CHECK_LENGTHS`) before it is used: a call that
reads a size off a symbolic tensor (`ops.shape(inputs)[0]`, `None` while
tracing) freezes it into the graph, which then fails or differs, and the
layer stays intact with the reason. A layer called at several input shapes
(a detection head applied to each feature-map size) is rebuilt once for
all of them (`call_shapes`: `None` where its calls differ), so it is also
traced at those shared shapes and run against its call at each shape it
is called at.

Decoders. A keras-hub decoder block builds its causal mask with
`ops.arange` of the sequence length, which a symbolic tensor of a
variable-length model does not know. The call therefore runs in
`_keras_adapter.trace_scope`, where that helper builds the same mask from
the sequence itself with ops that keep the length unknown, so the traced
graph (and the pruned block rebuilt from it) computes the mask for every
length, not for one probe length frozen into it; the check at two lengths
catches a block whose mask comes from another length (a pooled sequence),
which stays intact. Tracing at a fixed probe length instead would make the
pruned block a fixed-length layer, which is what this avoids.

A layer is not traced (it stays intact, with the reason) when its call
fails on symbolic tensors (Python control flow on tensor values, a length
the call needs to know), when it owns weights that no sublayer called on
its inputs holds (its own variables, an embedding called on constant
positions), when it returns something other than tensors, when a sublayer
would not rebuild from its config (a saved pruned model holding it would
not load: keras-hub 0.32's Llama attention), or when its traced graph
differs from its call at a checked shape.
"""

import inspect
import weakref

import keras

from keras_guided import _keras_adapter as adapter
from keras_guided import rules as rules_lib

# node -> (weak reference to the layer, traced sub-graph or None, failure
# reason or None, `call_shapes`). Nothing in a value refers back to its
# node, so an entry goes with the model that holds the node.
_CACHE = weakref.WeakKeyDictionary()


def is_composite(layer):
    """Whether `layer` is a non-model layer without a rule that holds
    sublayers (the layers traced here)."""
    if isinstance(layer, keras.Model) or not isinstance(
        layer, keras.layers.Layer
    ):
        return False
    if rules_lib.rule_for(layer) is not None:
        return False
    return bool(adapter.direct_sublayers(layer))


def traced_graph(layer, node):
    """The Functional sub-graph of `layer`'s call at `node`, or `None`."""
    return _trace(layer, node)[0]


def failure(layer, node):
    """Why composite `layer` was not traced at `node`, or `None`."""
    return _trace(layer, node)[1]


def _trace(layer, node):
    if not is_composite(layer):
        return None, None
    cached = _CACHE.get(node)
    if cached is not None and cached[0]() is layer:
        return cached[1], cached[2]
    shapes = _merged_shapes(layer, node)
    try:
        graph, reason = _run_call(layer, node, shapes), None
    except _Untraceable as error:
        graph, reason = None, str(error)
    _CACHE[node] = (weakref.ref(layer), graph, reason, shapes)
    return graph, reason


def call_shapes(layer, node):
    """The input shapes a traced `layer` is rebuilt for at `node`: the
    shapes of its calls, with `None` on every axis where two of its calls
    differ (a head applied to several feature-map sizes), so that one
    rebuilt layer serves every call. Its traced graph was checked at each
    of those shapes (`_check_call`)."""
    _trace(layer, node)
    return list(_CACHE[node][3])


# sublayer of a traced keras-hub block -> why it cannot be copied.
_UNCOPYABLE = weakref.WeakKeyDictionary()


class _Untraceable(Exception):
    pass


def _merged_shapes(layer, node):
    """The shapes of `node`'s input tensors with `None` on every axis where
    another call of `layer` with inputs of the same ranks differs."""
    shapes = [tuple(t.shape) for t in node.input_tensors]
    for other in adapter.layer_calls(layer):
        theirs = [tuple(t.shape) for t in other.input_tensors]
        if len(theirs) != len(shapes) or any(
            len(a) != len(b) for a, b in zip(theirs, shapes)
        ):
            continue
        shapes = [
            tuple(d if d == e else None for d, e in zip(a, b))
            for a, b in zip(shapes, theirs)
        ]
    return shapes


def _run_call(layer, node, wide_shapes):
    shapes = [tuple(t.shape) for t in node.input_tensors]
    graph, causal = _traced_call(layer, node, shapes)
    reached = {id(v) for v in graph.weights}
    missing = [v for v in layer.weights if id(v) not in reached]
    if missing:
        names = ", ".join(sorted({v.path for v in missing})[:3])
        raise _Untraceable(
            f"its call uses weights that no sublayer called on its inputs "
            f"holds ({names}), such as its own variables or an embedding "
            "of constant positions"
        )
    _check_configs(graph, class_only=_from_keras_hub(layer))
    # Every traced graph is run against the layer's own call at two batch
    # sizes (and lengths): a size read off a symbolic tensor (the batch
    # size, `None` while tracing) must not be frozen into it.
    how = "(with the causal mask built for any length) " if causal else ""
    _check_call(layer, node, graph, how, _probe_shapes([shapes]))
    if wide_shapes != shapes:
        # Called at several shapes: rebuilt once for all of them
        # (`call_shapes`), so traced at the shapes they share and run
        # against its call at each.
        how = "(traced for every input shape it is called at) "
        try:
            wide, _ = _traced_call(layer, node, wide_shapes)
        except _Untraceable as error:
            raise _Untraceable(f"{how}{error}") from None
        _check_call(layer, node, wide, how, _probe_shapes(_seen(layer)))
    return graph


def _traced_call(layer, node, shapes):
    """`(graph, causal)`: `layer`'s call at `node` run on `keras.Input`s
    of `shapes`, as a Functional model; whether a causal mask was rebuilt
    for any length."""
    inputs = [
        keras.Input(batch_shape=shape, dtype=t.dtype)
        for t, shape in zip(node.input_tensors, shapes)
    ]
    if not inputs:
        raise _Untraceable("it has no tensor inputs")
    mapping = {id(t): new for t, new in zip(node.input_tensors, inputs)}
    args, kwargs = adapter.call_arguments(node, mapping)
    kwargs = dict(kwargs)
    parameters = inspect.signature(layer.call).parameters
    if "training" in parameters:
        kwargs["training"] = False
    try:
        reference = _length_reference(args, inputs)
        with adapter.trace_scope(layer, reference) as scope:
            outputs = layer.call(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 (any call may refuse)
        raise _Untraceable(
            f"its call could not run on symbolic inputs "
            f"({type(error).__name__}: {_short(error)})"
        ) from None
    flat = keras.tree.flatten(outputs)
    if len(flat) != len(node.outputs) or not all(
        isinstance(t, keras.KerasTensor) for t in flat
    ):
        raise _Untraceable(
            "its call does not return symbolic tensors computed from its inputs"
        )
    try:
        graph = keras.Model(
            inputs[0] if len(inputs) == 1 else inputs,
            flat[0] if len(flat) == 1 else flat,
            name=layer.name,
        )
    except Exception as error:  # noqa: BLE001
        raise _Untraceable(
            f"its traced call is not a graph of its inputs "
            f"({type(error).__name__}: {_short(error)})"
        ) from None
    return graph, bool(scope.causal_masks)


def _seen(layer):
    """The distinct input shapes of `layer`'s calls, in call order."""
    seen = []
    for other in adapter.layer_calls(layer):
        shapes = [tuple(t.shape) for t in other.input_tensors]
        if shapes not in seen:
            seen.append(shapes)
    return seen


def uncopyable(layer):
    """Why `layer`, a sublayer of a traced keras-hub block, cannot be copied
    into a pruned Functional model (see `_check_configs`), or `None`."""
    return _UNCOPYABLE.get(layer)


def _from_keras_hub(layer):
    return type(layer).__module__.startswith("keras_hub.")


def _check_configs(graph, class_only=False):
    """Raises `_Untraceable` when a layer of the traced graph cannot be
    copied into a pruned model: neither its config nor the arguments Keras
    recorded rebuild it (and it is not itself a traced composite layer,
    rebuilt from its sublayers).

    With `class_only` (a keras-hub block) the layer is recorded in
    `_UNCOPYABLE` instead: the block is traced, and a model pruned inside
    it is kept only when it is rebuilt as its keras-hub class
    (`_hub_rebuild`), which builds the layer from the backbone's config."""
    for node in adapter.graph_nodes(graph):
        op = node.operation
        if not isinstance(op, keras.layers.Layer) or isinstance(
            op, keras.Model
        ):
            continue
        if is_composite(op) and traced_graph(op, node) is not None:
            continue
        try:
            type(op).from_config(op.get_config())
        except Exception as error:  # noqa: BLE001 (any config may fail)
            try:  # the other way `_copies` copies a layer
                adapter.replay_constructor(op)
                continue
            except Exception:  # noqa: BLE001
                pass
            reason = (
                f"its sublayer '{op.name}' ({type(op).__name__}) cannot be "
                f"rebuilt "
                f"from its config ({type(error).__name__}: "
                f"{_short(error)}), so a pruned model holding it would not "
                "load"
            )
            if class_only:
                _UNCOPYABLE[op] = reason
                continue
            raise _Untraceable(reason) from None


def _length_reference(args, inputs):
    """The tensor a causal mask takes its length from when that length is
    unknown: the call's first positional argument (a decoder's sequence)
    when it is a symbolic tensor of unknown length and the only input of
    rank 3 or more (the others are masks of its length); else `None`."""
    first = args[0] if args else None
    if not isinstance(first, keras.KerasTensor) or len(first.shape) < 3:
        return None
    sequences = [t for t in inputs if len(t.shape) >= 3]
    if first.shape[1] is not None or len(sequences) != 1:
        return None
    return first


# The sequence lengths (unknown axes) and batch sizes at which a traced
# graph is checked against the layer's own call: two of each, so that no
# size read off a symbolic tensor is frozen into it.
CHECK_LENGTHS = (5, 8)
CHECK_BATCH_SIZES = (2, 3)


def _probe_shapes(calls):
    """`[(shapes, where)]`: concrete input shapes at which to check a
    traced graph, for each of `calls` (the input shapes of one call each),
    at two batch sizes when only one call is given; `where` says which
    in a message."""
    several = len(calls) > 1
    if not several:
        calls = calls * len(CHECK_BATCH_SIZES)
    probes = []
    for index, shapes in enumerate(calls):
        batch = CHECK_BATCH_SIZES[index % len(CHECK_BATCH_SIZES)]
        length = CHECK_LENGTHS[index % len(CHECK_LENGTHS)]
        unknown = any(d is None for shape in shapes for d in shape[1:])
        concrete = [
            tuple(
                (batch if axis == 0 else length) if d is None else int(d)
                for axis, d in enumerate(shape)
            )
            for shape in shapes
        ]
        if unknown:
            where = f"length {length}"
        elif several:
            where = f"input shape {concrete[0]}"
        else:
            where = f"batch size {batch}"
        probes.append((concrete, where))
    return probes


def _check_call(layer, node, graph, how, probes):
    """Raises `_Untraceable` unless `graph` computes what `layer`'s call
    at `node` computes at every probe (`_probe_shapes`)."""
    import numpy as np

    rng = np.random.default_rng(0)
    for shapes, where in probes:
        values = [
            _sample(t.dtype, shape, rng)
            for t, shape in zip(node.input_tensors, shapes)
        ]
        mapping = {id(t): v for t, v in zip(node.input_tensors, values)}
        args, kwargs = adapter.call_arguments(node, mapping)
        # At inference, whether or not its call takes `training`: a layer
        # without it (keras-hub's SpatialPyramidPooling) would otherwise
        # leave its BatchNormalization sublayers to update the user's
        # moving statistics.
        kwargs = dict(kwargs, training=False)
        try:
            expected = keras.tree.flatten(layer(*args, **kwargs))
            got = keras.tree.flatten(
                graph(values[0] if len(values) == 1 else values, training=False)
            )
        except Exception as error:  # noqa: BLE001
            raise _Untraceable(
                f"its traced call {how}could not run at {where} "
                f"({type(error).__name__}: {_short(error)})"
            ) from None
        for want, have in zip(expected, got):
            want = keras.ops.convert_to_numpy(want)
            have = keras.ops.convert_to_numpy(have)
            if want.shape != have.shape:
                raise _Untraceable(
                    f"its traced call {how}differs from its call at {where} "
                    f"(output shape {have.shape}, expected {want.shape})"
                )
            scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
            difference = float(np.max(np.abs(want - have), initial=0.0))
            if difference > 1e-5 * scale:
                raise _Untraceable(
                    f"its traced call {how}differs from its call at {where} "
                    f"(max abs difference {difference:.3g})"
                )


def _sample(dtype, shape, rng):
    """A value of `shape`: normal floats, ones for integers and booleans
    (a padding mask that keeps every position)."""
    import numpy as np

    if "float" in str(dtype):
        return rng.normal(size=shape).astype(dtype)
    return np.ones(shape, dtype=dtype)


def _short(error, limit=160):
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
