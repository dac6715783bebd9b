"""A zoo of keras-io example architectures, shrunk, end to end.

Each model is built as the keras-io example writes it (fewer and narrower
layers, tiny inputs), then: one epoch of `fit` with `GuidedPruning` ->
some units made dead -> `prune_model` (exact, checked numerically) and a
80 % params target -> a plain `keras.saving.load_model` reload -> an
`export_tflite` that is verified against Keras.
"""

import keras
import numpy as np
import pytest
from keras import layers

import keras_guided
from tests.helpers import find
from tests.helpers import randomize
from tests.helpers import zero_units


@keras.saving.register_keras_serializable(package="zoo")
class Sampling(layers.Layer):
    """The VAE's reparameterization trick: random at inference too."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        mean, log_var = inputs
        noise = keras.random.normal(
            keras.ops.shape(mean), seed=self.seed_generator
        )
        return mean + keras.ops.exp(0.5 * log_var) * noise


# ------------------------------------------------------------- models
def mnist_convnet():
    """keras-io mnist_convnet."""
    return keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            layers.Conv2D(8, 3, activation="relu", name="conv1"),
            layers.MaxPooling2D(2),
            layers.Conv2D(12, 3, activation="relu", name="conv2"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(4, activation="softmax", name="predictions"),
        ]
    )


def xception_like():
    """keras-io image_classification_from_scratch (augmentation, residuals)."""
    augmentation = keras.Sequential(
        [layers.RandomFlip("horizontal"), layers.RandomRotation(0.1)],
        name="augmentation",
    )
    inputs = keras.Input((16, 16, 3))
    x = augmentation(inputs)
    x = layers.Rescaling(1.0 / 255)(x)
    x = layers.Conv2D(8, 3, strides=2, padding="same", name="entry")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    previous = x
    for size in (12, 16):
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same", name=f"sep{size}a")(
            x
        )
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same", name=f"sep{size}b")(
            x
        )
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(
            size, 1, strides=2, padding="same", name=f"shortcut{size}"
        )(previous)
        x = layers.add([x, residual])
        previous = x
    x = layers.SeparableConv2D(24, 3, padding="same", name="exit")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.25)(x)
    return keras.Model(inputs, layers.Dense(1, name="predictions")(x))


def timeseries_fcn():
    """keras-io timeseries_classification_from_scratch."""
    inputs = keras.Input((20, 1))
    x = inputs
    for i, filters in enumerate((8, 8, 8)):
        x = layers.Conv1D(filters, 3, padding="same", name=f"conv{i}")(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(
        inputs, layers.Dense(2, activation="softmax", name="predictions")(x)
    )


def conv_autoencoder():
    """keras-io autoencoder (denoising, Conv2DTranspose decoder)."""
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(8, 3, activation="relu", padding="same", name="enc1")(
        inputs
    )
    x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Conv2D(8, 3, activation="relu", padding="same", name="enc2")(x)
    x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Conv2DTranspose(
        8, 3, strides=2, activation="relu", padding="same", name="dec1"
    )(x)
    x = layers.Conv2DTranspose(
        8, 3, strides=2, activation="relu", padding="same", name="dec2"
    )(x)
    outputs = layers.Conv2D(
        1, 3, activation="sigmoid", padding="same", name="pixels"
    )(x)
    return keras.Model(inputs, outputs)


def timeseries_transformer():
    """keras-io timeseries_classification_transformer (channels-first pool)."""
    inputs = keras.Input((12, 1))
    x = inputs
    for block in range(2):
        attention = layers.MultiHeadAttention(
            key_dim=4, num_heads=2, dropout=0.1, name=f"attention{block}"
        )
        y = attention(x, x)
        y = layers.Dropout(0.1)(y)
        y = layers.LayerNormalization(epsilon=1e-6)(y)
        residual = y + x
        y = layers.Conv1D(8, 1, activation="relu", name=f"ff{block}a")(residual)
        y = layers.Dropout(0.1)(y)
        y = layers.Conv1D(1, 1, name=f"ff{block}b")(y)
        y = layers.LayerNormalization(epsilon=1e-6)(y)
        x = y + residual
    x = layers.GlobalAveragePooling1D(data_format="channels_first")(x)
    x = layers.Dense(16, activation="relu", name="mlp")(x)
    x = layers.Dropout(0.1)(x)
    return keras.Model(
        inputs, layers.Dense(2, activation="softmax", name="predictions")(x)
    )


def text_transformer():
    """keras-io text_classification_with_transformer, as a Functional graph."""
    inputs = keras.Input((10,), dtype="int32")
    tokens = layers.Embedding(30, 8, name="tokens")(inputs)
    positions = layers.Embedding(10, 8, name="positions")(keras.ops.arange(10))
    x = tokens + positions
    y = layers.MultiHeadAttention(2, 8, name="attention")(x, x)
    y = layers.Dropout(0.1)(y)
    x = layers.LayerNormalization(epsilon=1e-6)(x + y)
    y = layers.Dense(16, activation="relu", name="ff1")(x)
    y = layers.Dense(8, name="ff2")(y)
    y = layers.Dropout(0.1)(y)
    x = layers.LayerNormalization(epsilon=1e-6)(x + y)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dense(12, activation="relu", name="hidden")(x)
    return keras.Model(
        inputs, layers.Dense(2, activation="softmax", name="predictions")(x)
    )


def text_convnet(length=None):
    """keras-io text_classification_from_scratch (variable-length ids)."""
    inputs = keras.Input((length,), dtype="int64")
    x = layers.Embedding(40, 8, name="embedding")(inputs)
    x = layers.Dropout(0.5)(x)
    x = layers.Conv1D(12, 5, strides=2, activation="relu", name="conv1")(x)
    x = layers.Conv1D(12, 5, strides=2, activation="relu", name="conv2")(x)
    x = layers.GlobalMaxPooling1D()(x)
    x = layers.Dense(12, activation="relu", name="hidden")(x)
    x = layers.Dropout(0.5)(x)
    return keras.Model(
        inputs, layers.Dense(1, activation="sigmoid", name="predictions")(x)
    )


def conv_mixer():
    """keras-io image_classification_with_convmixer (depthwise as groups)."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 2, strides=2, name="patches")(inputs)
    x = layers.Activation("gelu")(x)
    x = layers.BatchNormalization()(x)
    for block in range(2):
        residual = x
        x = layers.Conv2D(
            8, 3, groups=8, padding="same", name=f"depthwise{block}"
        )(x)
        x = layers.Activation("gelu")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Add()([x, residual])
        x = layers.Conv2D(8, 1, name=f"pointwise{block}")(x)
        x = layers.Activation("gelu")(x)
        x = layers.BatchNormalization()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(
        inputs, layers.Dense(3, activation="softmax", name="predictions")(x)
    )


def vae_encoder():
    """keras-io vae encoder: two heads and a Sampling layer."""
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(
        8, 3, strides=2, padding="same", activation="relu", name="conv"
    )(inputs)
    x = layers.Flatten()(x)
    x = layers.Dense(12, activation="relu", name="hidden")(x)
    mean = layers.Dense(2, name="z_mean")(x)
    log_var = layers.Dense(2, name="z_log_var")(x)
    z = Sampling(name="sampling")([mean, log_var])
    return keras.Model(inputs, [mean, log_var, z])


def vae_decoder():
    """keras-io vae decoder: Dense -> Reshape -> Conv2DTranspose."""
    inputs = keras.Input((2,))
    x = layers.Dense(4 * 4 * 8, activation="relu", name="dense")(inputs)
    x = layers.Reshape((4, 4, 8))(x)
    x = layers.Conv2DTranspose(
        8, 3, strides=2, padding="same", activation="relu", name="up"
    )(x)
    outputs = layers.Conv2DTranspose(
        1, 3, padding="same", activation="sigmoid", name="pixels"
    )(x)
    return keras.Model(inputs, outputs)


# ---------------------------------------------------------------- data
def _data(model, rng):
    inputs = model.inputs[0]
    shape = tuple(24 if d is None else d for d in inputs.shape[1:])
    if "int" in str(inputs.dtype):
        x = rng.integers(0, 10, size=(32,) + shape)
    else:
        x = rng.uniform(0, 1, size=(32,) + shape).astype("float32")
    outputs = keras.tree.flatten(model.outputs)
    y = [
        rng.uniform(0, 1, size=(32,) + tuple(o.shape[1:])).astype("float32")
        for o in outputs
    ]
    return x, y if len(y) > 1 else y[0]


# name, builder, layers whose units die, fully dead (bias, BN gamma and
# beta too: needed where a constant would reach a 'same'-padded conv, whose
# borders fold it only approximately), export options
ZOO = [
    ("mnist_convnet", mnist_convnet, ["conv1", "conv2"], False, {}),
    ("xception_like", xception_like, ["entry", "sep12a", "sep16b"], True, {}),
    ("timeseries_fcn", timeseries_fcn, ["conv0", "conv2"], True, {}),
    ("conv_autoencoder", conv_autoencoder, ["enc1", "dec1"], True, {}),
    (
        "timeseries_transformer",
        timeseries_transformer,
        ["ff0a", "mlp"],
        False,
        {"batch_size": None},
    ),
    ("text_transformer", text_transformer, ["ff1", "hidden"], False, {}),
    (
        "text_convnet",
        lambda: text_convnet(24),
        ["embedding", "conv1"],
        False,
        {},
    ),
    ("conv_mixer", conv_mixer, ["patches"], True, {}),
    ("vae_decoder", vae_decoder, ["dense", "up"], True, {}),
]


def _kill(model, names, with_bias, rng):
    """Makes a third of the units of the groups produced by `names` dead.

    `with_bias=False` zeroes only their incoming weights (they still emit a
    constant to fold); `True` zeroes their followers (bias, BN) too.
    """
    groups = keras_guided.find_unit_groups(model)
    removed = 0
    for name in names:
        group = next(
            g
            for g in groups
            if g.prunable
            and any(
                s.layer.name == name and s.role == "producer" for s in g.slices
            )
        )
        count = max(1, group.num_units // 3)
        units = rng.choice(group.num_units, count, replace=False)
        zero_units(group, units, inputs_only=not with_bias)
        removed += count
    return removed


def _predict(model, x):
    return [
        keras.ops.convert_to_numpy(o)
        for o in keras.tree.flatten(model(x, training=False))
    ]


@pytest.mark.parametrize(
    "name, build, dead, with_bias, export_options",
    ZOO,
    ids=[entry[0] for entry in ZOO],
)
def test_zoo_fit_prune_reload_export(
    name, build, dead, with_bias, export_options, tmp_path
):
    rng = np.random.default_rng(0)
    model = build()
    x, y = _data(model, rng)
    model.compile(optimizer="adam", loss="mse")
    model.fit(
        x,
        y,
        epochs=1,
        batch_size=16,
        verbose=0,
        callbacks=[keras_guided.GuidedPruning(strength=1e-4)],
    )
    randomize(model)  # constants to fold: biases, BN statistics
    removed = _kill(model, dead, with_bias, rng)
    before = [np.array(w) for w in model.get_weights()]

    pruned, report = keras_guided.prune_model(
        model, sample_inputs=x[:8], return_report=True
    )
    assert report.removed_units == removed
    assert pruned.count_params() < model.count_params()
    expected = _predict(model, x[:8])
    scale = max(1.0, max(float(np.max(np.abs(e))) for e in expected))
    # float32 through LayerNormalization and softmax: 1e-4 of the scale.
    for result, wanted in zip(_predict(pruned, x[:8]), expected):
        np.testing.assert_allclose(result, wanted, atol=1e-4 * scale, rtol=0)

    smaller = keras_guided.prune_model(
        model, target={"params": 0.8}, sample_inputs=x[:8], verify=False
    )
    assert smaller.count_params() <= 0.8 * model.count_params()

    path = str(tmp_path / f"{name}.keras")
    pruned.save(path)
    reloaded = keras.saving.load_model(path)
    for result, wanted in zip(
        _predict(reloaded, x[:8]), _predict(pruned, x[:8])
    ):
        np.testing.assert_allclose(result, wanted, atol=1e-6)
    assert all(
        np.array_equal(a, b) for a, b in zip(before, model.get_weights())
    )

    export = keras_guided.export_tflite(
        pruned,
        str(tmp_path / f"{name}.tflite"),
        sample_inputs=x[:8],
        **export_options,
    )
    assert export.ok


def test_zoo_vae_encoder_with_sampling_and_text_with_variable_length():
    rng = np.random.default_rng(0)
    # The VAE encoder: Sampling is unknown (kept with on_unsupported), and
    # random at inference, so only z_mean and z_log_var are compared.
    encoder = randomize(vae_encoder())
    x = rng.uniform(0, 1, size=(8, 8, 8, 1)).astype("float32")
    encoder.compile(optimizer="adam", loss=["mse", "mse", "mse"])
    encoder.fit(
        x,
        [np.zeros((8, 2))] * 3,
        epochs=1,
        verbose=0,
        callbacks=[keras_guided.GuidedPruning(on_unsupported="keep")],
    )
    removed = _kill(encoder, ["conv", "hidden"], False, rng)
    pruned, report = keras_guided.prune_model(
        encoder, on_unsupported="keep", return_report=True
    )
    assert report.removed_units == removed
    assert report.max_abs_diff <= 1e-5 * max(1.0, report.output_scale)
    assert report.unsupported == ["layer 'sampling' (Sampling)"]
    assert any(
        "'sampling' (Sampling) changes from call to call" in note
        for note in report.notes
    )
    # text_convnet with Input((None,)): lengths come from sample_inputs.
    model = randomize(text_convnet())
    tokens = rng.integers(0, 40, size=(4, 30))
    removed = _kill(model, ["embedding", "conv2"], False, rng)
    pruned, report = keras_guided.prune_model(
        model, sample_inputs=tokens, return_report=True
    )
    assert report.removed_units == removed
    assert report.max_abs_diff <= 1e-5 * max(1.0, report.output_scale)
    assert find(pruned, "conv2").filters == 8
