"""prune_model on the Keras features users combine with pruning: compile
state and user objects that do not serialize, LoRA, quantized layers."""

import keras
import numpy as np
import pytest
from keras import layers

import keras_guided


def _numpy(value):
    return keras.ops.convert_to_numpy(value)


def _mlp(first=None, hidden=None, seed=0):
    """Input(8) -> d1 (6 units, unit 2 dead: zero kernel column, bias 0.5)
    -> d2 (5) -> out (1)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8,), name="x")
    x = (first or layers.Dense(6, name="d1"))(inputs)
    x = (hidden or layers.Dense(5, activation="relu", name="d2"))(x)
    model = keras.Model(inputs, layers.Dense(1, name="out")(x))
    kernel, bias = model.get_layer("d1").get_weights()
    kernel[:, 2] = 0.0
    bias[:] = np.linspace(-0.5, 0.5, bias.size)
    bias[2] = 0.5
    model.get_layer("d1").set_weights([kernel, bias])
    return model


def _inputs(seed=1):
    return np.random.default_rng(seed).normal(size=(7, 8)).astype("float32")


def _assert_same_function(pruned, model, atol=1e-6):
    x = _inputs()
    np.testing.assert_allclose(
        _numpy(pruned(x)), _numpy(model(x)), rtol=0, atol=atol
    )


# ------------------------------------------------- compile state (item 6)
def _contrastive_loss(margin=1.0):
    # keras-io's Siamese network: an unregistered closure.
    def contrastive_loss(y_true, y_pred):
        square = keras.ops.square(y_pred)
        margin_square = keras.ops.square(keras.ops.maximum(margin - y_pred, 0))
        return keras.ops.mean(
            (1 - y_true) * square + y_true * margin_square, axis=-1
        )

    return contrastive_loss


def test_closure_loss_and_metric_are_carried_over_as_the_same_objects():
    model = _mlp()
    loss = _contrastive_loss()
    metric = _contrastive_loss(margin=2.0)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=3e-4),
        loss=loss,
        metrics=[metric],
    )
    pruned, report = keras_guided.prune_model(model, return_report=True)
    assert pruned.get_layer("d1").units == 5
    _assert_same_function(pruned, model)
    assert report.compiled is True
    assert pruned.compiled
    assert pruned.loss is loss
    assert pruned._compile_config.config["metrics"][0] is metric
    optimizer = pruned.optimizer
    assert optimizer is not model.optimizer
    assert isinstance(optimizer, keras.optimizers.Adam)
    assert float(_numpy(optimizer.learning_rate)) == pytest.approx(3e-4)
    x, y = _inputs(), np.ones((7, 1), "float32")
    before = _numpy(model(x))
    pruned.fit(x, y, epochs=1, verbose=0)
    logs = pruned.evaluate(x, y, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "contrastive_loss"}
    np.testing.assert_array_equal(_numpy(model(x)), before)


def test_uncompiled_model_gives_an_uncompiled_model():
    pruned, report = keras_guided.prune_model(_mlp(), return_report=True)
    assert not pruned.compiled
    assert report.compiled is False


class _Schedule(keras.optimizers.schedules.LearningRateSchedule):
    """A schedule without `get_config`: the optimizer cannot be rebuilt."""

    def __call__(self, step):
        return 1e-3


def test_compile_state_that_cannot_be_carried_gives_an_uncompiled_model():
    model = _mlp()
    model.compile(optimizer=keras.optimizers.SGD(_Schedule()), loss="mse")
    with pytest.warns(UserWarning) as caught:
        pruned, report = keras_guided.prune_model(model, return_report=True)
    _assert_same_function(pruned, model)
    assert not pruned.compiled
    assert report.compiled is False
    expected = (
        f"the pruned model is not compiled: model '{model.name}' is, but "
        "its compile state could not be carried over (NotImplementedError: "
    )
    assert report.notes[-1].startswith(expected)
    assert report.notes[-1].endswith(
        "). Call `compile()` on the pruned model before `fit()` or "
        "`evaluate()`."
    )
    messages = [str(w.message) for w in caught]
    assert f"prune_model: {report.notes[-1]}" in messages


# ----------------------------------------- user objects (item 6, PointNet)
class _OrthogonalRegularizer(keras.regularizers.Regularizer):
    """keras-io PointNet's regularizer, without `get_config`."""

    def __init__(self, num_features, l2reg=0.001):
        self.num_features = num_features
        self.l2reg = l2reg

    def __call__(self, x):
        return self.l2reg * keras.ops.sum(keras.ops.square(x))


class _UnitNorm(keras.constraints.Constraint):
    """A constraint without `get_config`, not registered."""

    def __call__(self, w):
        return w


def _swish(x):
    # An unregistered activation function.
    return x * keras.ops.sigmoid(x)


@pytest.mark.parametrize("where", ["pruned", "copied"])
def test_user_objects_without_config_are_reused(where):
    regularizer = _OrthogonalRegularizer(6)
    constraint = _UnitNorm()
    dense = layers.Dense(
        6,
        activation=_swish if where == "pruned" else None,
        activity_regularizer=regularizer,
        kernel_constraint=constraint,
        name="d1",
    )
    hidden = layers.Dense(
        5,
        activation=_swish,
        activity_regularizer=regularizer,
        kernel_constraint=constraint,
        name="d2",
    )
    model = _mlp(first=dense, hidden=hidden)
    if where == "copied":
        # No dead unit: every layer is copied, none pruned.
        kernel, bias = model.get_layer("d1").get_weights()
        kernel[:, 2] = 1.0
        model.get_layer("d1").set_weights([kernel, bias])
    pruned, report = keras_guided.prune_model(model, return_report=True)
    assert pruned.get_layer("d1").units == (5 if where == "pruned" else 6)
    _assert_same_function(pruned, model)
    for name in ("d1", "d2"):
        new, old = pruned.get_layer(name), model.get_layer(name)
        assert new is not old
        assert new.activity_regularizer is regularizer
        assert new.kernel_constraint is constraint
    assert pruned.get_layer("d2").activation is _swish
    assert report.notes == []
    # The activity loss is the user's, on the pruned activations.
    pruned(_inputs())
    assert len(pruned.losses) == 2


# ------------------------------------------------------------ LoRA (item 7)
def _lora_model(kind):
    def layer(units, name, activation=None):
        if kind == "dense":
            return layers.Dense(units, activation=activation, name=name)
        return layers.EinsumDense(
            "ab,bc->ac",
            output_shape=units,
            bias_axes="c",
            activation=activation,
            name=name,
        )

    model = _mlp(first=layer(6, "d1"), hidden=layer(5, "d2", "relu"))
    rng = np.random.default_rng(3)
    for name, rank, alpha in (("d1", 2, 3), ("d2", 4, None), ("out", 2, 5)):
        dense = model.get_layer(name)
        dense.enable_lora(rank, lora_alpha=alpha)
        b = rng.normal(size=dense.lora_kernel_b.shape).astype("float32")
        if name == "d1":
            b[:, 2] = 0.0  # unit 2 of d1 stays dead with its adapter
        dense.lora_kernel_b.assign(b)
    return model


@pytest.mark.parametrize("kind", ["dense", "einsum_dense"])
def test_lora_layers_are_pruned_through_with_their_adapter_sliced(kind):
    model = _lora_model(kind)
    pruned, report = keras_guided.prune_model(model, return_report=True)
    assert report.removed == {0: (6, 5)}
    _assert_same_function(pruned, model, atol=1e-5)
    kept = np.array([0, 1, 3, 4, 5])
    old, new = model.get_layer("d1"), pruned.get_layer("d1")
    expected = {
        "d1": (
            _numpy(old._kernel)[:, kept],
            _numpy(old.lora_kernel_a),
            _numpy(old.lora_kernel_b)[:, kept],
        ),
        "d2": (
            _numpy(model.get_layer("d2")._kernel)[kept],
            _numpy(model.get_layer("d2").lora_kernel_a)[kept],
            _numpy(model.get_layer("d2").lora_kernel_b),
        ),
        "out": tuple(
            _numpy(v)
            for v in (
                model.get_layer("out")._kernel,
                model.get_layer("out").lora_kernel_a,
                model.get_layer("out").lora_kernel_b,
            )
        ),
    }
    for name, (kernel, lora_a, lora_b) in expected.items():
        old, new = model.get_layer(name), pruned.get_layer(name)
        assert new.lora_enabled
        assert (new.lora_rank, new.lora_alpha) == (
            old.lora_rank,
            old.lora_alpha,
        )
        assert not new._kernel.trainable
        assert new.lora_kernel_a.trainable and new.lora_kernel_b.trainable
        np.testing.assert_array_equal(_numpy(new._kernel), kernel)
        np.testing.assert_array_equal(_numpy(new.lora_kernel_a), lora_a)
        np.testing.assert_array_equal(_numpy(new.lora_kernel_b), lora_b)


def test_a_unit_alive_through_its_adapter_is_not_dead():
    model = _lora_model("dense")
    dense = model.get_layer("d1")
    b = _numpy(dense.lora_kernel_b).copy()
    b[:, 2] = 1.0
    dense.lora_kernel_b.assign(b)
    pruned, report = keras_guided.prune_model(model, return_report=True)
    assert report.removed == {}
    _assert_same_function(pruned, model, atol=1e-5)


def test_callback_says_lora_is_why_it_leaves_the_units_alone():
    model = _lora_model("dense")
    model.compile(optimizer="sgd", loss="mse")
    x, y = _inputs(), np.zeros((7, 1), "float32")
    with pytest.warns(UserWarning) as caught:
        model.fit(
            x,
            y,
            epochs=1,
            verbose=0,
            callbacks=[keras_guided.GuidedPruning(strength=1e-3)],
        )
    message = next(
        str(w.message)
        for w in caught
        if "found no prunable unit group" in str(w.message)
    )
    assert (
        "frozen: LoRA is enabled on layer 'd1' (Dense), so Keras trains its "
        "adapter and freezes its kernel, which GuidedPruning does not "
        "change; prune_model(model) prunes through LoRA after training "
        "(dead units, or a target)"
    ) in message


# ---------------------------------------------- quantized layers (item 7)
def _quantized_message(action, model, mode):
    return (
        f"{action} model '{model.name}': layer 'd1' (Dense) is quantized "
        f"(quantization mode '{mode}', from `model.quantize('{mode}')`). "
        "Pruning works on the float model: prune first, quantize after. "
        "Train and prune the model before `quantize()` "
        "(`keras_guided.prune_model`), then call "
        f"`pruned.quantize('{mode}')` on the result, or export it with "
        "`keras_guided.export_tflite(pruned, path, quantization='int8')`."
    )


@pytest.mark.parametrize("mode", ["int8", "float8", "int4"])
def test_quantized_model_is_refused_by_prune_model_naming_the_fix(mode):
    model = _mlp()
    with pytest.warns(UserWarning):  # Keras: InputLayer has no quantize()
        model.quantize(mode)
    with pytest.raises(ValueError) as raised:
        keras_guided.prune_model(model)
    assert str(raised.value) == _quantized_message(
        "prune_model cannot prune", model, mode
    )


def test_quantized_model_is_refused_by_the_callback_naming_the_fix():
    model = _mlp()
    with pytest.warns(UserWarning):
        model.quantize("int8")
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError) as raised:
        model.fit(
            _inputs(),
            np.zeros((7, 1), "float32"),
            verbose=0,
            callbacks=[keras_guided.GuidedPruning(strength=1e-3)],
        )
    assert str(raised.value) == _quantized_message(
        "GuidedPruning cannot train", model, "int8"
    )
