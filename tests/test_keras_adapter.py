"""The one module that touches Keras internals: pinned to the Keras versions
it was checked on, and its two hooks tested on their own."""

import warnings

import keras
import numpy as np
import pytest

from keras_guided import _keras_adapter as adapter


def _built_sgd(learning_rate=0.5):
    variable = keras.Variable(np.ones(3, dtype="float32"), name="w")
    optimizer = keras.optimizers.SGD(learning_rate)
    optimizer.build([variable])
    return optimizer, variable


def test_keras_version_was_checked():
    assert adapter.checked(), (
        f"keras {keras.version()} is not in "
        f"{adapter.CHECKED_KERAS_VERSIONS}: re-check the private names in "
        "keras_guided/_keras_adapter/ (tests/test_keras_adapter.py) and "
        "add the version."
    )


def test_private_names_still_mean_what_the_adapter_assumes():
    schedule = keras.optimizers.schedules.ExponentialDecay(
        0.5, decay_steps=1, decay_rate=0.5
    )
    optimizer, _ = _built_sgd(schedule)
    assert isinstance(optimizer._variables, list)
    assert optimizer.variables == optimizer._variables
    assert optimizer._learning_rate is schedule


def test_hook_runs_after_each_apply_with_that_steps_rate():
    schedule = keras.optimizers.schedules.ExponentialDecay(
        0.5, decay_steps=1, decay_rate=0.5
    )
    optimizer, variable = _built_sgd(schedule)
    seen = []

    def hook(learning_rate):
        # After the update: the variable has already moved.
        seen.append(
            (
                float(keras.ops.convert_to_numpy(learning_rate)),
                float(keras.ops.convert_to_numpy(variable.value)[0]),
            )
        )

    remove = adapter.after_optimizer_step(optimizer, hook)
    grads = [keras.ops.ones(3)]
    optimizer.apply(grads, [variable])
    optimizer.apply(grads, [variable])
    assert seen == [(0.5, 0.5), (0.25, 0.25)]
    remove()
    assert "apply" not in optimizer.__dict__
    optimizer.apply(grads, [variable])
    assert len(seen) == 2


@pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="the state rides along only on JAX"
)
def test_carried_state_is_left_out_of_saving_and_loading():
    optimizer, _ = _built_sgd()
    count = len(optimizer.variables)
    extra = keras.Variable(np.zeros(2, dtype="float32"), name="extra")
    remove = adapter.carry_state(optimizer, [extra])
    assert len(optimizer.variables) == count + 1
    store = {}
    optimizer.save_own_variables(store)
    assert len(store) == count
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Skipping variable loading" fails
        optimizer.load_own_variables(store)
    remove()
    assert len(optimizer.variables) == count
    assert "save_own_variables" not in optimizer.__dict__


def _graph_model():
    inputs = {
        "a": keras.Input((4,), name="a"),
        "b": keras.Input((4,), name="b"),
    }
    hidden = keras.layers.Dense(3, name="hidden")(inputs["a"])
    summed = keras.layers.Add(name="add")([hidden, hidden])
    return keras.Model(inputs, [summed, inputs["b"]], name="graph")


def test_graph_walk_names_still_mean_what_the_adapter_assumes():
    model = _graph_model()
    assert adapter.has_graph(model)
    nodes = list(adapter.graph_nodes(model))
    # Inputs first (deepest), every node after the nodes it reads.
    assert [n.operation.name for n in nodes] == ["hidden", "add"]
    hidden = model.get_layer("hidden")
    assert adapter.layer_calls(hidden) == [nodes[0]]
    assert adapter.producer(model.outputs[0]) is model.get_layer("add")
    assert adapter.producer(model.inputs[0]).name in ("a", "b")
    args, kwargs = adapter.call_arguments(
        nodes[1], {id(t): "x" for t in nodes[1].input_tensors}
    )
    assert args == (["x", "x"],) and kwargs == {}
    packed = adapter.pack_inputs(model, [1, 2])
    assert isinstance(packed, dict) and sorted(packed.values()) == [1, 2]
    assert adapter.pack_outputs(model, [1, 2]) == [1, 2]


def test_sequential_graph_is_there_once_built():
    lazy = keras.Sequential([keras.layers.Dense(2)])
    assert adapter.sequential_graph(lazy) is None
    built = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    graph = adapter.sequential_graph(built)
    assert adapter.has_graph(graph)
    assert [n.operation for n in adapter.graph_nodes(graph)] == built.layers

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    assert not adapter.has_graph(Subclassed())


def test_attention_private_attributes():
    layer = keras.layers.MultiHeadAttention(2, 4)
    layer(keras.Input((5, 6)), keras.Input((7, 6)))
    assert adapter.attention_uses_gate(layer) is False
    assert hasattr(layer, "_use_gate")  # the name the adapter reads


def test_composite_layer_private_names():
    from keras_guided import _keras_adapter as adapter

    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.first = keras.layers.Dense(3)
            self.rest = [keras.layers.Dense(2)]

        def call(self, x):
            return self.rest[0](self.first(x))

    block = Block()
    assert adapter.direct_sublayers(block) == [block.first, block.rest[0]]
    query = keras.Input((5, 4))
    mask = keras.Input((5, 5))
    attention = keras.layers.MultiHeadAttention(2, 2)
    attention(query=query, value=query, attention_mask=mask)
    node = adapter.layer_calls(attention)[0]
    assert node.input_tensors[0] is mask  # flattened keyword order
    assert adapter.first_input(node) is query
    args, kwargs = adapter.node_arguments(node)
    assert args == () and sorted(kwargs) == ["attention_mask", "query", "value"]


def test_replay_constructor_creates_the_layer_again_with_its_name():
    class Patches(keras.layers.Layer):
        def __init__(self, patch_size):  # no `name`
            super().__init__()
            self.patch_size = patch_size

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))
    assert [type(x).__name__ for x in adapter.layer_tree(model)][:2] == [
        "Functional",
        "InputLayer",
    ]
    layer = Patches(patch_size=4)
    layer.name = "my_patches"
    again = adapter.replay_constructor(layer)
    assert type(again) is Patches and again is not layer
    assert (again.name, again.patch_size) == ("my_patches", 4)
    dense = adapter.replay_constructor(model.get_layer("dense"))
    assert (dense.name, dense.units, dense.built) == ("dense", 2, False)


def test_saved_state_rides_in_the_weights_file(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    saved = {"x": np.arange(3.0)}
    loaded = []
    adapter.attach_saved_state(model, "_state", lambda: saved, loaded.append)
    path = str(tmp_path / "m.weights.h5")
    model.save_weights(path)
    model.load_weights(path)
    np.testing.assert_array_equal(loaded[-1]["x"], saved["x"])
    assert len(model.weights) == 2 and len(model.layers) == 1


def test_trace_scope_restores_what_it_replaced():
    keras_hub = pytest.importorskip("keras_hub")
    from keras_hub.src.layers.modeling import transformer_decoder
    from keras_hub.src.layers.modeling import transformer_layer_utils

    original = transformer_layer_utils.compute_causal_mask
    decoder = keras_hub.layers.TransformerDecoder(8, 2)
    decoder.build((None, None, 4))
    attention = type(decoder._self_attention_layer)
    sequence = keras.Input((None, 4))
    with adapter.trace_scope(decoder, sequence) as scope:
        assert transformer_decoder.compute_causal_mask is not original
        mask = transformer_decoder.compute_causal_mask(None, None, None)
        assert tuple(mask.shape) == (None, None, None)
        assert "__call__" in attention.__dict__
        # A known length goes to keras-hub's own helper.
        known = transformer_decoder.compute_causal_mask(1, 3, 3)
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(known), np.tril(np.ones((1, 3, 3)))
        )
    assert scope.causal_masks == 1
    assert transformer_decoder.compute_causal_mask is original
    assert transformer_layer_utils.compute_causal_mask is original
    assert "__call__" not in attention.__dict__


def _shared_layer_model():
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(4, name="shared")
    hidden = dense(inputs)
    hidden = keras.ops.relu(hidden) + inputs
    outputs = keras.layers.Dense(2, name="head")(dense(hidden))
    return keras.Model(inputs, outputs)


def test_replay_walks_the_graph_with_the_walk_of_clone_model(monkeypatch):
    model = _shared_layer_model()
    seen = []
    original = type(model)._run_through_graph

    def counting(self, *args, **kwargs):
        seen.append(kwargs.get("call_fn"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "_run_through_graph", counting)
    calls = []

    def call(node, args, kwargs, tensors):
        calls.append(node.operation.name)
        return node.operation(*args, **kwargs)

    inputs = keras.Input((4,))
    outputs = adapter.replay(model, [inputs], call)
    assert len(seen) == 1 and seen[0] is not None
    # Every node once, in graph order; the shared Dense at both its calls.
    assert calls == [node.operation.name for node in adapter.graph_nodes(model)]
    assert calls.count("shared") == 2
    replayed = keras.Model(inputs, outputs[0])
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(
        replayed.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6
    )


def test_replay_of_a_compiled_model_compiles_nothing():
    # clone_model re-compiles its copy from the serialized compile config,
    # which cannot find an unregistered closure loss.
    model = _shared_layer_model()

    def make_loss():
        def closure_loss(y_true, y_pred):
            return keras.ops.mean(keras.ops.square(y_true - y_pred))

        return closure_loss

    model.compile(optimizer="adam", loss=make_loss())
    inputs = keras.Input((4,))
    outputs = adapter.replay(
        model,
        [inputs],
        lambda node, args, kwargs, tensors: node.operation(*args, **kwargs),
    )
    assert outputs[0].shape == model.outputs[0].shape
    assert adapter.compile_arguments(model)["loss"].__name__ == "closure_loss"


def test_replay_refuses_a_node_order_it_does_not_expect(monkeypatch):
    model = _shared_layer_model()
    nodes = list(adapter.graph_nodes(model))
    # `replay` reads the nodes in the module that defines both.
    from keras_guided._keras_adapter import _graphs

    monkeypatch.setattr(
        _graphs, "graph_nodes", lambda functional: iter(nodes[::-1])
    )
    with pytest.raises(
        RuntimeError, match="in an order keras_guided does not expect"
    ):
        adapter.replay(
            model,
            [keras.Input((4,))],
            lambda node, a, k, t: node.operation(*a, **k),
        )


def test_deferred_variables_take_the_storage_of_others():
    source = keras.layers.Dense(3, name="source")
    source.build((None, 4))
    kept_apart = keras.layers.Dense(3, name="kept_apart")
    kept_apart.build((None, 4))
    with adapter.deferred_variables() as created:
        target = keras.layers.Dense(3, name="target")
        target.build((None, 4))
        if keras.backend.backend() != "torch":
            assert not adapter.has_values(target.kernel)
    if keras.backend.backend() == "torch":
        assert created == []  # made with values: copied below
    else:
        assert {id(v) for v in created} == {id(v) for v in target.variables}
    # Nothing waits for a later scope to initialize it behind our back.
    with keras.StatelessScope():
        pass
    adapter.adopt_storage(target.kernel, source.kernel)
    adapter.adopt_storage(target.bias, kept_apart.bias, [kept_apart.bias])
    for variable in created:
        adapter.initialize(variable)
    x = np.ones((2, 4), "float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(target(x)),
        x @ keras.ops.convert_to_numpy(source.kernel),
        rtol=1e-6,
    )
    if keras.backend.backend() != "torch":
        assert target.kernel._value is source.kernel._value  # no copy
    assert target.bias._value is not kept_apart.bias._value
    target.bias.assign(np.ones(3, "float32"))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(kept_apart.bias), np.zeros(3)
    )
