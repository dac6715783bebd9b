"""Every use of Keras internals by keras_guided, in one place.

`GuidedPruning` runs its proximal step inside the compiled train step. Keras
has no public hook for "after the optimizer step, inside the step", so this
module provides one, built on two public entry points of every Keras 3
optimizer:

* `optimizer.apply(grads, trainable_variables)` is what the TensorFlow and
  torch train steps call (through `apply_gradients`) and what JAX's
  `stateless_apply` calls inside a `StatelessScope`. Wrapping it on the
  optimizer *instance* (never the class) adds our step after the update, in
  the same compiled function, for the duration of one `fit`.
* On JAX the compiled step is a pure function of the training state
  (trainable, non-trainable, optimizer and metrics variables); a variable
  outside that state is frozen into the trace and cannot be written. The
  callback's few state variables (dead mask, strength, coefficients, the
  budget guard) therefore ride along as extra optimizer variables during
  `fit` (`carry_state`). They are kept out of what the optimizer saves and
  loads, so the optimizer's checkpoint entries are the same with and
  without the callback.
* A weights file (`model.save_weights`, which `BackupAndRestore` and
  `ModelCheckpoint(save_weights_only=True)` call, and `model.save`) holds
  every Keras saveable reachable from the model's attributes. The
  callback's resume state rides in one such object
  (`attach_saved_state`), set on the model as a plain attribute, so it
  joins neither `model.layers` nor `model.weights`; a file without it
  loads as before, and a model without it ignores it.

The graph analysis (`graph/`), the rewrite (`surgery/`) and the cost
model (`stats`) read a model's graph. Keras has public `model.inputs`,
`model.outputs`, `model.layers` and `Layer.compute_output_spec`, but no
public way to walk the nodes of a Functional graph, to find the layer that
produced a symbolic tensor, or to re-call a node on new tensors; the small
functions at the end of this module do that (`graph_nodes`, `producer`,
`call_arguments`, ...).

Private Keras API used here, and nowhere else in the package:
`optimizer._variables` (the list behind `optimizer.variables`),
`optimizer._learning_rate` (a `LearningRateSchedule`, read to evaluate the
rate of the step that just ran), `Layer._flatten_layers` (to find the
sublayers of a composite layer, `direct_sublayers`),
`Sequential._functional`, `Functional._nodes_by_depth`,
`Functional._operations`, `Functional._inputs_struct` /
`_outputs_struct`, `Functional._run_through_graph` (the walk
`clone_model` runs, `replay`), `Trainer._compile_config` (the arguments
`compile` was called with, `compile_arguments`), a layer's `__dict__`
(a shallow view whose `get_config` sees other values, `config_with`),
`KerasTensor._keras_history`, `Operation._inbound_nodes`,
`Node.arguments` (`.fill_in`, `.args`, `.kwargs`),
`MultiHeadAttention._use_gate`, and (to copy a layer with all its state,
`layer_tree` / `replay_constructor`) `Layer._flatten_layers`,
`Operation._auto_config` and `Layer._path`, and
`keras.src.saving.keras_saveable.KerasSaveable` (the base class that the
weights files walk). While a composite layer is traced (`trace_scope`):
keras-hub's `keras_hub.src.layers.modeling.transformer_layer_utils.
compute_causal_mask` (replaced, then restored, in the modules that
imported it) and the classes' `__call__` of sublayers whose
`compute_output_spec` does not take all of their `call`'s arguments.
While calibration statistics are read (`recording_calls`): a layer
instance's `call` attribute (Keras' `Operation.__call__` looks up
`self.call` at each eager call), shadowed on the instance and removed
again. Checked on the Keras versions in `CHECKED_KERAS_VERSIONS`;
`tests/test_keras_adapter.py` pins them.
"""

import keras

CHECKED_KERAS_VERSIONS = ("3.15.1",)


def checked():
    """Whether the installed Keras is one this adapter was checked on."""
    return keras.version() in CHECKED_KERAS_VERSIONS


def supports_step_hook(optimizer):
    """Whether `after_optimizer_step` can hook `optimizer` on this backend.

    Wrapper optimizers (`LossScaleOptimizer`) keep their inner optimizer's
    variables apart, so the JAX state cannot ride along: the callback then
    takes its step from Python after each batch instead.
    """
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        return False
    if hasattr(optimizer, "inner_optimizer"):
        return backend == "tensorflow"
    return isinstance(optimizer, keras.optimizers.Optimizer)


def after_optimizer_step(optimizer, hook):
    """Runs `hook(learning_rate)` after every `optimizer.apply`, inside the
    compiled train step. `learning_rate` is the rate of that step.

    Returns:
        A function that removes the hook.
    """
    original = optimizer.__dict__.get("apply")
    previous = optimizer.apply

    def apply(grads, trainable_variables=None):
        # Read before the update: a schedule is evaluated at the step's own
        # iteration (after it, `iterations` has advanced).
        learning_rate = keras.ops.cast(optimizer.learning_rate, "float32")
        result = previous(grads, trainable_variables)
        _in_cross_replica_context(hook, learning_rate)
        return result

    optimizer.apply = apply

    def remove():
        if original is None:
            optimizer.__dict__.pop("apply", None)
        else:
            optimizer.apply = original

    return remove


def _in_cross_replica_context(hook, learning_rate):
    """Calls `hook` once per step: under a `tf.distribute` strategy the
    optimizer runs per replica, so the hook runs once, in cross-replica
    context, where assigning a mirrored variable updates every replica."""
    if keras.backend.backend() != "tensorflow":
        hook(learning_rate)
        return
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or not tf.distribute.has_strategy():
        hook(learning_rate)
        return

    def merged(strategy, rate):
        hook(strategy.experimental_local_results(rate)[0])

    context.merge_call(merged, args=(learning_rate,))


def carry_state(optimizer, variables):
    """On JAX, threads `variables` through the compiled train step as extra
    optimizer variables, left out of what the optimizer saves and loads.

    Call before the train function is (re)built. No-op on other backends.

    Returns:
        A function that takes them out again.
    """
    if keras.backend.backend() != "jax" or not variables:
        return lambda: None
    extra = list(variables)
    tracked = optimizer._variables
    tracked.extend(extra)
    save = optimizer.__dict__.get("save_own_variables")
    load = optimizer.__dict__.get("load_own_variables")

    def without_extra(method):
        def call(store):
            kept = [v for v in tracked if not any(v is e for e in extra)]
            full = list(tracked)
            tracked[:] = kept
            try:
                return getattr(type(optimizer), method)(optimizer, store)
            finally:
                tracked[:] = full

        return call

    optimizer.save_own_variables = without_extra("save_own_variables")
    optimizer.load_own_variables = without_extra("load_own_variables")

    def remove():
        tracked[:] = [v for v in tracked if not any(v is e for e in extra)]
        for name, previous in (
            ("save_own_variables", save),
            ("load_own_variables", load),
        ):
            if previous is None:
                optimizer.__dict__.pop(name, None)
            else:
                setattr(optimizer, name, previous)

    return remove


def step_learning_rate(optimizer):
    """Learning rate of the optimizer step that just ran (outside the step).

    After the update `optimizer.iterations` has advanced, so a
    `LearningRateSchedule` is evaluated at `iterations - 1`.
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    schedule = getattr(inner, "_learning_rate", None)
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return schedule(keras.ops.maximum(inner.iterations - 1, 0))
    return optimizer.learning_rate


# ------------------------------------------------------------------ graphs


def direct_sublayers(layer):
    """The layers `layer` holds directly (attributes, lists), not itself."""
    return list(layer._flatten_layers(include_self=False, recursive=False))


def sequential_graph(model):
    """The Functional graph Keras keeps behind a built `Sequential`, or
    `None` when it is not built (no input shape yet)."""
    return getattr(model, "_functional", None)


def has_graph(model):
    """Whether `model` is a Functional graph (not subclassed code)."""
    return hasattr(model, "_nodes_by_depth") and hasattr(model, "_operations")


def graph_nodes(functional):
    """The nodes of `functional` that call an operation, inputs first
    (deepest first: every node after the nodes it reads from)."""
    by_depth = functional._nodes_by_depth
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            if node.operation is not None and not node.is_input:
                yield node


def replay(functional, new_inputs, call):
    """Calls `functional`'s graph again on `new_inputs`, node by node.

    `call(node, args, kwargs, tensors)` makes each node's new outputs from
    its call arguments (new tensors in place of the old ones) and
    `tensors`, the new tensor of every old one met so far by `id`. Returns
    the new tensors of `functional.outputs`, in order (a flat list). The
    one graph walk of the surgery's rebuild and of inlining.

    The walk is Keras' own: the one `keras.models.clone_model` runs
    (`Functional._run_through_graph`, every operation kept, each call made
    by `call`, which is handed the node Keras is at; Keras runs the nodes
    in `graph_nodes` order, and a different order is an error, not a wrong
    model). `clone_model` itself is not called: on a compiled model it
    also re-compiles its throwaway copy from the serialized compile config,
    which fails for a loss or metric that is not registered (a closure)
    and builds optimizer slots the size of the model; the compile state is
    carried over by `surgery` instead, with the user's own objects.
    """
    tensors = {id(t): n for t, n in zip(functional.inputs, new_inputs)}
    nodes = graph_nodes(functional)

    def call_node(operation, *args, **kwargs):
        node = next(nodes, None)
        if node is None or node.operation is not operation:
            raise RuntimeError(
                "Keras' graph walk ran the nodes of model "
                f"'{functional.name}' in an order keras_guided does not "
                "expect (this Keras version walks graphs differently); "
                "please report it with your Keras version"
            )
        outputs = call(node, args, kwargs, tensors)
        for tensor, new in zip(node.outputs, keras.tree.flatten(outputs)):
            tensors[id(tensor)] = new
        return outputs

    functional._run_through_graph(
        pack_inputs(functional, new_inputs),
        operation_fn=_same_operation,
        call_fn=call_node,
    )
    if next(nodes, None) is not None:
        raise RuntimeError(
            "Keras' graph walk skipped nodes of model "
            f"'{functional.name}' (a node whose inputs it could not "
            "compute); please report it with your Keras version"
        )
    return [tensors[id(t)] for t in functional.outputs]


def _same_operation(operation):
    return operation


def layer_calls(layer):
    """Every node of `layer` (one per call, in any graph)."""
    return list(getattr(layer, "_inbound_nodes", []))


def producer(tensor):
    """The operation (layer, `InputLayer` or op) that produced the symbolic
    `tensor`."""
    return tensor._keras_history.operation


def call_arguments(node, values):
    """`(args, kwargs)` of `node`'s call with every symbolic tensor
    replaced by `values[id(tensor)]`."""
    return node.arguments.fill_in(values)


def node_arguments(node):
    """`(args, kwargs)` of `node`'s call as recorded (symbolic tensors and
    the constants passed with them, such as an index key)."""
    return node.arguments.args, node.arguments.kwargs


def first_input(node):
    """The tensor a node's call reads first: its first positional tensor,
    else its first tensor keyword in the order of the call's signature
    (`attention(query=x, value=x, attention_mask=m)` reads `x` first,
    though `node.input_tensors` lists the mask first)."""
    args, kwargs = node_arguments(node)
    for value in keras.tree.flatten(args):
        if isinstance(value, keras.KerasTensor):
            return value
    call = getattr(node.operation, "call", None)
    order = {}
    if call is not None:
        import inspect

        order = {
            name: i for i, name in enumerate(inspect.signature(call).parameters)
        }
    for name in sorted(kwargs, key=lambda k: order.get(k, len(order))):
        for value in keras.tree.flatten(kwargs[name]):
            if isinstance(value, keras.KerasTensor):
                return value
    tensors = node.input_tensors
    return tensors[0] if tensors else None


def pack_inputs(functional, flat):
    """`flat` (one value per `functional.inputs`) in the structure the
    model was built with (a dict, a list, a single tensor)."""
    return keras.tree.pack_sequence_as(functional._inputs_struct, flat)


def pack_outputs(functional, flat):
    """`flat` (one value per `functional.outputs`) in the model's output
    structure."""
    return keras.tree.pack_sequence_as(functional._outputs_struct, flat)


def attention_uses_gate(layer):
    """Whether a `MultiHeadAttention` has a gate (Keras' gated variant)."""
    return bool(getattr(layer, "_use_gate", False))


# ------------------------------------------------------------------ copies


def layer_tree(layer):
    """`layer` and every layer it tracks, depth first, in a fixed order
    (the order Keras saves them in)."""
    return list(layer._flatten_layers(include_self=True, recursive=True))


def replay_constructor(layer):
    """A new layer made by calling `layer`'s class again with the arguments
    Keras recorded when `layer` was created (`Operation._auto_config`),
    named like `layer`. Unbuilt, without state: see `_copies.copy_state`.

    For layers whose `get_config()` does not round-trip (an `__init__`
    without `name`, a config with computed entries the class does not take
    back).

    Raises:
        ValueError: when Keras did not record the arguments.
    """
    import inspect

    recorded = getattr(layer, "_auto_config", None)
    if recorded is None:
        raise ValueError(
            "Keras did not record the arguments it was created with (it "
            "records them only when they are plain values)"
        )
    kwargs = dict(recorded.config)
    parameters = inspect.signature(type(layer).__init__).parameters
    if "name" in parameters or any(
        p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    ):
        kwargs["name"] = layer.name
    new = type(layer)(**kwargs)
    if new.name != layer.name:
        if getattr(new, "_path", None) == new.name:
            new._path = layer.name
        new.name = layer.name
    return new


def compile_arguments(model):
    """The arguments `model.compile` was called with, as passed (the
    user's own loss, metric and optimizer objects), or `None` when `model`
    is not compiled or Keras did not record them."""
    if not getattr(model, "compiled", False):
        return None
    recorded = getattr(model, "_compile_config", None)
    config = getattr(recorded, "config", None)
    return dict(config) if isinstance(config, dict) else None


def config_with(layer, values):
    """`layer.get_config()` as it would read with the attributes in
    `values` (`{attribute: value}`) set to those values; `layer` itself is
    not changed.

    Keras' `get_config` reads the layer's attributes (`self.activation`,
    `self.kernel_regularizer`, ...), so a shallow view of the layer (its
    own attribute dict, copied, the few entries replaced) gives the config
    of the layer with other values, without touching the layer.
    """
    return layer_view(layer, values).get_config()


def layer_view(layer, values):
    """A shallow view of `layer`: a new object of its class sharing its
    attributes (variables, sublayers), those in `values` replaced. Reading
    it reads `layer`; `layer` itself is not changed."""
    view = object.__new__(type(layer))
    view.__dict__.update(layer.__dict__)
    view.__dict__.update(values)
    return view


def attach_saved_state(model, name, save, load):
    """Makes the weights files of `model` carry extra state.

    `save()` returns `{key: np.ndarray}`, written with the model's weights
    (`save_weights`, `BackupAndRestore`, `ModelCheckpoint`, `model.save`);
    loading weights (`load_weights`, `BackupAndRestore`) calls `load(state)`
    with the arrays read back (`{}` from a file without them). A second
    call for the same model and `name` re-points the one holder.
    """
    from keras.src.saving.keras_saveable import KerasSaveable

    class _SavedState(KerasSaveable):
        def _obj_type(self):
            # One of the types the weights walk knows; it only picks the
            # attributes to skip, and this object has no saveable ones.
            return "Loss"

        def save_own_variables(self, store):
            for key, value in self.save().items():
                store[key] = value

        def load_own_variables(self, store):
            # A weights store is not a dict: it has keys() but no iterator.
            self.load({key: store[key] for key in store.keys()})  # noqa: SIM118

    holder = model.__dict__.get(name)
    if holder is None:
        holder = _SavedState()
        # A plain attribute: Keras' tracking (layers, weights) never sees it.
        object.__setattr__(model, name, holder)
    holder.save = save
    holder.load = load
    return holder


# ------------------------------------------------------------------ tracing

# keras-hub's causal-mask helper, imported by name into every decoder
# module (`TransformerDecoder`, Llama, Mistral, Qwen, Gemma, ...).
_CAUSAL_MASK_MODULE = "keras_hub.src.layers.modeling.transformer_layer_utils"
_CAUSAL_MASK_NAME = "compute_causal_mask"


class TraceScope:
    """What `trace_scope` changed while a composite layer's call ran on
    symbolic inputs.

    Attributes:
        causal_masks: how many causal masks were built for any length (from
            the length reference) instead of from a length Keras does not
            know on symbolic tensors.
    """

    def __init__(self, length_reference):
        self.length_reference = length_reference
        self.causal_masks = 0


def trace_scope(layer, length_reference):
    """A context in which `layer.call` can run on symbolic inputs of
    unknown sequence length, returning a `TraceScope`.

    Two things stop a keras-hub decoder block there, and both are undone
    when the context ends:

    * keras-hub's `compute_causal_mask(batch, input_length, output_length)`
      calls `ops.arange(None)`: a symbolic tensor has no known length. In
      the context, the helper (in every module that imported it) builds the
      same mask from `length_reference`, a symbolic `(batch, length)`
      tensor of the call (its padding mask), with ops that keep the length
      unknown: `tril(einsum("bi,bj->bij", ones, ones))`. The traced graph
      then computes the mask for any length. Only the no-cache case (start
      index 0, lengths unknown) is replaced; everything else goes to the
      original helper.
    * A sublayer called with keyword arguments set to `None` that its
      `compute_output_spec` does not take (keras-hub's
      `CachedMultiHeadAttention(..., cache=None)`) cannot be called on
      symbolic tensors. In the context, such arguments are left out of the
      call when `None` is also their default in the sublayer's `call`, so
      the call means the same and its recorded node replays.
    """
    import contextlib
    import sys

    scope = TraceScope(length_reference)

    @contextlib.contextmanager
    def context():
        undo = []
        try:
            undo += _replace_causal_mask(scope, sys.modules)
            undo += _drop_unused_none_arguments(layer)
            yield scope
        finally:
            for restore in reversed(undo):
                restore()

    return context()


def _replace_causal_mask(scope, modules):
    helpers = modules.get(_CAUSAL_MASK_MODULE)
    original = getattr(helpers, _CAUSAL_MASK_NAME, None)
    if original is None:
        return []

    def compute_causal_mask(
        batch_size, input_length, output_length, cache_index=0
    ):
        reference = scope.length_reference
        unknown = input_length is None and output_length is None
        if (
            reference is None
            or not unknown
            or not (isinstance(cache_index, int) and cache_index == 0)
        ):
            return original(
                batch_size, input_length, output_length, cache_index
            )
        scope.causal_masks += 1
        ones = keras.ops.ones_like(reference, dtype="float32")
        if len(ones.shape) > 2:
            ones = keras.ops.max(ones, axis=tuple(range(2, len(ones.shape))))
        square = keras.ops.einsum("bi,bj->bij", ones, ones)
        return keras.ops.cast(keras.ops.tril(square), "bool")

    undo = []
    for module in list(modules.values()):
        if getattr(module, _CAUSAL_MASK_NAME, None) is original:
            setattr(module, _CAUSAL_MASK_NAME, compute_causal_mask)
            undo.append(
                lambda m=module: setattr(m, _CAUSAL_MASK_NAME, original)
            )
    return undo


def _drop_unused_none_arguments(layer):
    import inspect

    undo = []
    classes = {type(sub) for sub in layer._flatten_layers(include_self=False)}
    for cls in classes:
        spec = inspect.signature(cls.compute_output_spec).parameters
        if any(p.kind == p.VAR_KEYWORD for p in spec.values()):
            continue
        call = inspect.signature(cls.call).parameters
        droppable = frozenset(
            name
            for name, p in call.items()
            if name not in spec
            and p.default is None
            and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        )
        if not droppable:
            continue
        own = cls.__dict__.get("__call__")
        original = cls.__call__

        def __call__(
            self, *args, _original=original, _droppable=droppable, **kwargs
        ):
            kwargs = {
                k: v
                for k, v in kwargs.items()
                if not (v is None and k in _droppable)
            }
            return _original(self, *args, **kwargs)

        cls.__call__ = __call__
        if own is None:
            undo.append(lambda c=cls: delattr(c, "__call__"))
        else:
            undo.append(lambda c=cls, o=own: setattr(c, "__call__", o))
    return undo


def recording_calls(layers, record):
    """A context in which every eager call of each of `layers` also hands
    `record(layer, args, outputs)` its positional arguments and outputs.

    Keras has no forward hooks; `Operation.__call__` runs `self.call` looked
    up on the instance at each call, so the context shadows `call` on each
    layer *instance* (never its class) with a recording wrapper, and
    removes the wrapper when it ends, even on an error. The layers' weights,
    configs and class are not touched.
    """
    import contextlib

    @contextlib.contextmanager
    def context():
        shadowed = []
        try:
            for layer in layers:
                if "call" in layer.__dict__:
                    raise ValueError(
                        f"Layer '{layer.name}' ({type(layer).__name__}) has "
                        "its `call` replaced on the instance already; its "
                        "calls cannot be recorded."
                    )
                original = layer.call

                def call(*args, _layer=layer, _original=original, **kwargs):
                    outputs = _original(*args, **kwargs)
                    record(_layer, args, outputs)
                    return outputs

                object.__setattr__(layer, "call", call)
                shadowed.append(layer)
            yield
        finally:
            for layer in shadowed:
                object.__delattr__(layer, "call")

    return context()
