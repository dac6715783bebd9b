"""A layer that no removed unit passes through comes out of `prune_model`
equal to the original: weights, adapted statistics, vocabularies, and
layers whose config does not round-trip (keras_guided/_copies.py)."""

import threading

import keras
import numpy as np
import pytest
from keras import layers
from keras import ops

import keras_guided

_TF_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="string tensors and lookup tables need TensorFlow",
)


class Patches(layers.Layer):
    """keras-io's Vision Transformer example, verbatim: its `__init__`
    takes no `name`, so `from_config(get_config())` fails."""

    def __init__(self, patch_size):
        super().__init__()
        self.patch_size = patch_size

    def call(self, images):
        input_shape = ops.shape(images)
        batch_size = input_shape[0]
        height = input_shape[1]
        width = input_shape[2]
        channels = input_shape[3]
        num_patches_h = height // self.patch_size
        num_patches_w = width // self.patch_size
        patches = keras.ops.image.extract_patches(images, size=self.patch_size)
        patches = ops.reshape(
            patches,
            (
                batch_size,
                num_patches_h * num_patches_w,
                self.patch_size * self.patch_size * channels,
            ),
        )
        return patches

    def get_config(self):
        config = super().get_config()
        config.update({"patch_size": self.patch_size})
        return config


def _through(first, x, vocabulary=None):
    """`first` -> (Embedding) -> Flatten -> Dense(4) with unit 1 dead ->
    Dense(2)."""
    dtype = "string" if x.dtype.kind == "U" else str(x.dtype)
    inputs = keras.Input(x.shape[1:], dtype=dtype)
    hidden = first(inputs)
    if vocabulary is not None:
        hidden = layers.Embedding(vocabulary, 3, name="embedding")(hidden)
    hidden = layers.Flatten()(hidden)
    hidden = layers.Dense(4, name="hidden")(hidden)
    model = keras.Model(inputs, layers.Dense(2, name="out")(hidden))
    kernel, _ = model.get_layer("hidden").get_weights()
    kernel[:, 1] = 0.0
    model.get_layer("hidden").set_weights(
        [kernel, np.linspace(-1, 1, 4).astype("float32")]
    )
    return model


def _assert_same_function(model, x, atol=1e-6):
    small = keras_guided.prune_model(model, sample_inputs=x)
    assert small.get_layer("hidden").units == 3  # the dead unit went
    expected = ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(
        ops.convert_to_numpy(small(x)),
        expected,
        rtol=0,
        atol=atol * max(1.0, float(np.abs(expected).max())),
    )
    return small


def _floats(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) * 3.0 + 7.0).astype("float32")


def test_adapted_normalization_keeps_its_mean_and_variance():
    x = _floats((16, 5))
    normalization = layers.Normalization(name="normalization")
    normalization.adapt(x)
    small = _assert_same_function(_through(normalization, x), x)
    copied = small.get_layer("normalization")
    np.testing.assert_allclose(
        ops.convert_to_numpy(copied.mean),
        ops.convert_to_numpy(normalization.mean),
    )


def test_adapted_discretization_keeps_its_bins():
    x = _floats((16, 5))
    discretization = layers.Discretization(num_bins=4)
    discretization.adapt(x)
    _assert_same_function(_through(discretization, x, vocabulary=4), x)


@_TF_ONLY
def test_integer_lookup_keeps_its_vocabulary():
    x = np.random.default_rng(0).integers(0, 9, size=(16, 5)).astype("int64")
    lookup = layers.IntegerLookup()
    lookup.adapt(x)
    model = _through(lookup, x, vocabulary=lookup.vocabulary_size())
    _assert_same_function(model, x)


@_TF_ONLY
def test_string_lookup_keeps_its_vocabulary():
    words = np.array(["a", "b", "c", "d", "e", "f"])
    x = words[np.random.default_rng(0).integers(0, 6, size=(16, 3))]
    lookup = layers.StringLookup()
    lookup.adapt(x)
    model = _through(lookup, x, vocabulary=lookup.vocabulary_size())
    _assert_same_function(model, x)


@_TF_ONLY
def test_text_vectorization_keeps_its_vocabulary():
    x = np.array(
        [["the cat sat"], ["a dog ran far"], ["the dog sat"], ["a cat ran"]]
    )
    vectorize = layers.TextVectorization(
        max_tokens=12, output_sequence_length=4
    )
    vectorize.adapt(x[:, 0])
    inputs = keras.Input((1,), dtype="string")
    hidden = layers.Embedding(12, 3)(vectorize(inputs))
    hidden = layers.Dense(4, name="hidden")(layers.Flatten()(hidden))
    model = keras.Model(inputs, layers.Dense(2)(hidden))
    kernel, bias = model.get_layer("hidden").get_weights()
    kernel[:, 1] = 0.0
    model.get_layer("hidden").set_weights([kernel, bias + 0.5])
    _assert_same_function(model, x)


def test_hashing_is_copied():
    x = np.random.default_rng(0).integers(0, 50, size=(16, 5)).astype("int64")
    _assert_same_function(
        _through(layers.Hashing(num_bins=6, salt=7), x, vocabulary=6), x
    )


def test_batch_normalization_keeps_its_moving_statistics():
    x = _floats((16, 5))
    normalization = layers.BatchNormalization(name="bn")
    model = _through(normalization, x)
    rng = np.random.default_rng(1)
    normalization.set_weights(
        [
            rng.uniform(0.5, 2.0, 5).astype("float32"),
            rng.normal(size=5).astype("float32"),
            rng.normal(size=5).astype("float32") * 4 + 7,
            rng.uniform(4.0, 16.0, 5).astype("float32"),
        ]
    )
    _assert_same_function(model, x)


def test_a_layer_whose_config_does_not_round_trip_is_created_again():
    x = _floats((2, 4, 4, 3))
    patches = Patches(2)
    model = _through(patches, x)
    with pytest.raises(TypeError, match="name"):
        Patches.from_config(patches.get_config())
    small = _assert_same_function(model, x)
    copied = small.get_layer(patches.name)
    assert copied is not patches and isinstance(copied, Patches)
    assert len(patches._inbound_nodes) == 1  # the original's graph only


def test_the_pruned_model_shares_no_variable_with_the_original():
    x = _floats((16, 5))
    normalization = layers.Normalization()
    normalization.adapt(x)
    inputs = keras.Input((5,))
    hidden = layers.BatchNormalization()(normalization(inputs))
    hidden = Patches(1)(layers.Reshape((1, 1, 5))(hidden))
    hidden = layers.Dense(4, name="hidden")(layers.Flatten()(hidden))
    model = keras.Model(inputs, layers.Dense(2)(hidden))
    kernel, bias = model.get_layer("hidden").get_weights()
    kernel[:, 1] = 0.0
    model.get_layer("hidden").set_weights([kernel, bias])
    small = keras_guided.prune_model(model)
    ids = {id(v) for v in model.weights}
    assert not any(id(v) in ids for v in small.weights)
    before = [ops.convert_to_numpy(v.value).copy() for v in model.weights]
    small.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    small.fit(x, np.ones((16, 2), "float32"), epochs=2, verbose=0)
    for old, variable in zip(before, model.weights):
        np.testing.assert_array_equal(ops.convert_to_numpy(variable.value), old)


class Holder(layers.Layer):
    """Created with an argument that is not a plain value, and no
    `get_config`: neither rebuilt from its config nor created again."""

    def __init__(self, guard):
        super().__init__()
        self.guard = guard

    def call(self, x):
        return x


def test_a_layer_that_cannot_be_copied_is_named():
    x = _floats((4, 5))
    model = _through(Holder(threading.Lock()), x)
    with pytest.raises(ValueError) as info:
        keras_guided.prune_model(model, on_unsupported="keep")
    message = str(info.value)
    assert message.startswith(
        "Cannot copy layer 'holder' (Holder) into the pruned model: "
        "rebuilding it from its config failed (NotImplementedError: "
    )
    assert message.endswith(
        "and so did creating it again with the arguments it was created "
        "with (ValueError: Keras did not record the arguments it was "
        "created with (it records them only when they are plain values)). "
        "No removed unit passes through it, so it only has to be copied: "
        "give Holder a `get_config()` that `Holder.from_config` accepts "
        "(its `__init__` taking every entry, and `**kwargs` passed on to "
        "`super().__init__`)."
    )


class Scale(layers.Layer):
    """A per-channel scale whose `__init__` takes no `name`."""

    def __init__(self):
        super().__init__()

    def build(self, input_shape):
        self.scale = self.add_weight(
            shape=(input_shape[-1],), initializer="ones", name="scale"
        )

    def call(self, x):
        return x * self.scale


def test_a_rebuilt_layer_whose_config_does_not_round_trip_is_named():
    def rule(layer, weights, kept_inputs, kept_outputs):
        return layer.get_config(), [weights["scale"][kept_outputs]]

    keras_guided.register_rule(Scale, rule, output_weights=[("scale", 0)])
    try:
        inputs = keras.Input((5,))
        hidden = layers.Dense(4, name="hidden")(inputs)
        model = keras.Model(inputs, layers.Dense(2)(Scale()(hidden)))
        kernel, bias = model.get_layer("hidden").get_weights()
        kernel[:, 1] = 0.0
        model.get_layer("hidden").set_weights([kernel, bias])
        with pytest.raises(ValueError) as info:
            keras_guided.prune_model(model)
    finally:
        keras_guided.rules.unregister_rule(Scale)
    assert str(info.value).startswith(
        "Cannot rebuild layer 'scale' (Scale) with its kept units: "
        "`Scale.from_config` failed on the config of its rule (TypeError: "
    )
    assert str(info.value).endswith(
        "Make Scale's `get_config()` round-trip (its `__init__` taking "
        "every entry, and `**kwargs` passed on to `super().__init__`), "
        "register a rule that returns a config it accepts "
        "(`keras_guided.register_rule`), or keep its units with "
        "`protected=['scale']`."
    )


def test_a_keras_hub_layer_whose_config_does_not_round_trip_is_copied():
    vit_layers = pytest.importorskip("keras_hub.src.models.vit.vit_layers")
    x = _floats((2, 8, 8, 3))
    patching = vit_layers.ViTPatchingAndEmbedding(
        image_size=(8, 8), patch_size=(4, 4), hidden_dim=6, num_channels=3
    )
    _assert_same_function(_through(patching, x), x)
