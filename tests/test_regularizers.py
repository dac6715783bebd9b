import math
import os

import keras
import numpy as np
import pytest

import keras_guided
from keras_guided import guidance as guidance_lib
from tests.helpers import gradient

GUIDANCES = ["uniform", "linear", "exponential"]
NORMS = ["group", "l1", "l2"]

# layer factory, input shape, regularizer argument, unit axis of the kernel
KERNELS = {
    "dense": (
        lambda r: keras.layers.Dense(6, kernel_regularizer=r),
        (None, 5),
        -1,
    ),
    "conv2d": (
        lambda r: keras.layers.Conv2D(4, 3, kernel_regularizer=r),
        (None, 6, 6, 3),
        -1,
    ),
    "depthwise": (
        lambda r: keras.layers.DepthwiseConv2D(
            3, depth_multiplier=2, depthwise_regularizer=r
        ),
        (None, 6, 6, 3),
        (-2, -1),
    ),
    "conv2d_transpose": (
        lambda r: keras.layers.Conv2DTranspose(5, 3, kernel_regularizer=r),
        (None, 6, 6, 3),
        -2,
    ),
}


def numpy_penalty(kernel, axis, strength, norm, coefficients):
    """The guided penalty written directly from the formula."""
    axes = axis if isinstance(axis, tuple) else (axis,)
    axes = tuple(a % kernel.ndim for a in axes)
    rest = tuple(a for a in range(kernel.ndim) if a not in axes)
    matrix = np.transpose(kernel, axes + rest).astype("float64")
    matrix = matrix.reshape(len(coefficients), -1)
    if norm == "l1":
        phi = np.abs(matrix).sum(1)
    elif norm == "l2":
        phi = (matrix**2).sum(1)
    else:
        phi = math.sqrt(matrix.shape[1]) * np.sqrt((matrix**2).sum(1))
    return strength * float(np.sum(coefficients * phi))


def expected_coefficients(name, num_units):
    if name == "uniform":
        raw = np.ones(num_units)
    elif name == "linear":
        raw = np.arange(num_units, dtype="float64")
    else:
        raw = np.exp(3.0 * np.arange(num_units) / (num_units - 1))
    return raw / raw.mean()


@pytest.mark.parametrize("kind", sorted(KERNELS))
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("guidance", GUIDANCES)
def test_penalty_matches_numpy(kind, norm, guidance):
    make, shape, axis = KERNELS[kind]
    regularizer = keras_guided.GuidedRegularizer(
        strength=0.01, norm=norm, guidance=guidance, axis=axis
    )
    layer = make(regularizer)
    layer.build(shape)
    kernel = keras.ops.convert_to_numpy(layer.weights[0])
    num_units = keras_guided.units.num_units(layer)
    expected = numpy_penalty(
        kernel, axis, 0.01, norm, expected_coefficients(guidance, num_units)
    )
    got = float(keras.ops.convert_to_numpy(layer.losses[0]))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_explicit_guidance_penalty_and_wrong_length():
    values = [0.0, 1.0, 5.0]
    regularizer = keras_guided.GuidedRegularizer(
        strength=0.5, norm="l1", guidance=values
    )
    w = np.array([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]], "float32")
    g = np.array(values) / np.mean(values)
    expected = 0.5 * float(np.sum(g * np.abs(w).sum(0)))
    np.testing.assert_allclose(
        float(keras.ops.convert_to_numpy(regularizer(w))), expected, rtol=1e-6
    )
    layer = keras.layers.Dense(4, kernel_regularizer=regularizer)
    with pytest.raises(
        ValueError,
        match=(r"`guidance` has 3 coefficients but the weight has 4 units"),
    ):
        layer.build((None, 2))
        _ = layer.losses


def test_gradient_is_finite_at_all_zero_unit():
    regularizer = keras_guided.GuidedRegularizer(
        strength=1.0, norm="group", guidance="linear"
    )
    kernel = np.ones((3, 4), "float32")
    kernel[:, 2] = 0.0
    grad = gradient(regularizer, kernel)
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[:, 2], 0.0)
    assert np.all(grad[:, 1] > 0)


@pytest.mark.parametrize(
    "guidance",
    ["linear", [1.0, 2.0, 3.0, 0.5], keras_guided.ExponentialGuidance(1.0)],
)
def test_config_round_trip(guidance):
    regularizer = keras_guided.GuidedRegularizer(
        strength=0.25, norm="l2", guidance=guidance, axis=(-2, -1)
    )
    config = regularizer.get_config()
    import json

    json.dumps(config)  # plain JSON values only
    restored = keras_guided.GuidedRegularizer.from_config(config)
    assert restored.get_config() == config
    w = np.random.default_rng(0).normal(size=(2, 2, 2)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(w)),
        keras.ops.convert_to_numpy(regularizer(w)),
        rtol=1e-6,
    )
    serialized = keras.regularizers.serialize(regularizer)
    assert serialized["registered_name"] == "keras_guided>GuidedRegularizer"
    again = keras.regularizers.deserialize(serialized)
    assert isinstance(again, keras_guided.GuidedRegularizer)


def test_keras_file_round_trip(tmp_path):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(
        4,
        3,
        kernel_regularizer=keras_guided.GuidedRegularizer(
            strength=0.01, guidance="exponential"
        ),
    )(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(
        3,
        kernel_regularizer=keras_guided.GuidedRegularizer(
            strength=0.02, norm="l1", guidance=[1.0, 2.0, 3.0]
        ),
    )(x)
    model = keras.Model(inputs, outputs)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    before = [float(keras.ops.convert_to_numpy(v)) for v in model.losses]
    after = [float(keras.ops.convert_to_numpy(v)) for v in loaded.losses]
    np.testing.assert_allclose(after, before, rtol=1e-6)
    regularizer = loaded.layers[-1].kernel_regularizer
    assert isinstance(regularizer, keras_guided.GuidedRegularizer)
    assert regularizer.get_config()["guidance"] == [0.5, 1.0, 1.5]


@pytest.mark.parametrize("how", ["set_strength", "attribute"])
def test_strength_change_takes_effect_inside_compiled_fit(how):
    # With a zero learning rate the weights never move, so the change in the
    # reported loss between epochs is exactly the penalty turned on by the
    # callback. A strength frozen at trace time would leave it unchanged.
    if how == "attribute" and keras.backend.backend() == "jax":
        pytest.skip(
            "on JAX a bare assignment is frozen; set_strength is the "
            "documented way (tested by the other case)"
        )
    regularizer = keras_guided.GuidedRegularizer(
        strength=0.0, guidance="linear"
    )
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, kernel_regularizer=regularizer),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = np.zeros((32, 1), "float32")

    class SetStrength(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            value = [0.0, 2.0, 0.5][epoch]
            if how == "attribute":
                regularizer.strength = value
            else:
                keras_guided.regularizers.set_strength(self.model, value)

    history = model.fit(
        x, y, epochs=3, batch_size=32, verbose=0, callbacks=[SetStrength()]
    )
    kernel = keras.ops.convert_to_numpy(model.layers[0].kernel)
    penalty = numpy_penalty(
        kernel, -1, 1.0, "group", expected_coefficients("linear", 8)
    )
    losses = history.history["loss"]
    np.testing.assert_allclose(losses[1] - losses[0], 2.0 * penalty, rtol=1e-4)
    np.testing.assert_allclose(losses[2] - losses[0], 0.5 * penalty, rtol=1e-4)
    assert regularizer.strength == 0.5


def test_guided_training_shrinks_high_guidance_units():
    from sklearn.datasets import load_digits

    keras.utils.set_random_seed(1)
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target
    regularizer = keras_guided.GuidedRegularizer(
        strength=2e-3, norm="group", guidance="linear"
    )
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(
                32, activation="relu", kernel_regularizer=regularizer
            ),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(x, y, epochs=15, batch_size=128, verbose=0)
    norms = keras.ops.convert_to_numpy(
        keras_guided.units.unit_norms(
            model.layers[0].kernel, axis=-1, norm="group"
        )
    )
    low_guidance, high_guidance = norms[:8], norms[-8:]
    # The method's property: high-guidance units end far smaller.
    assert np.median(high_guidance) < 0.25 * np.median(low_guidance)
    # ... while the network still learns the task.
    assert history.history["accuracy"][-1] > 0.85


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"strength": -1.0},
            r"`strength` must be a non-negative finite float\. "
            r"Received: strength=-1\.0",
        ),
        (
            {"strength": float("nan")},
            r"`strength` must be a non-negative finite float\. "
            r"Received: strength=nan",
        ),
        ({"strength": float("inf")}, r"Received: strength=inf"),
        ({"strength": "0.1"}, r"Received: strength='0\.1'"),
        (
            {"norm": "l3"},
            r"`norm` must be one of \['l1', 'l2', 'group'\]\. "
            r"Received: norm='l3'",
        ),
        ({"guidance": "quadratic"}, r"Unknown guidance 'quadratic'"),
        ({"guidance": [1.0, -2.0]}, r"must be non-negative"),
        (
            {"axis": "last"},
            r"`axis` must be an int or a non-empty tuple of "
            r"contiguous ints\. Received: axis='last'",
        ),
    ],
)
def test_validation_messages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        keras_guided.GuidedRegularizer(**kwargs)


def test_setter_validates_and_axis_errors():
    regularizer = keras_guided.GuidedRegularizer()
    with pytest.raises(ValueError, match=r"Received: strength=-0\.5"):
        regularizer.strength = -0.5
    wrong_axis = keras_guided.GuidedRegularizer(axis=3)
    with pytest.raises(
        ValueError,
        match=(
            r"GuidedRegularizer\(axis=3\) cannot be applied to a weight of "
            r"shape \(2, 2\): `axis`=3 is out of range"
        ),
    ):
        wrong_axis(np.ones((2, 2), "float32"))


def test_guidance_is_serialized_as_plain_values():
    config = keras_guided.GuidedRegularizer(
        guidance=guidance_lib.LinearGuidance(start=1.0, end=2.0)
    ).get_config()
    assert config["guidance"]["class_name"] == "LinearGuidance"
    assert keras_guided.GuidedRegularizer().get_config()["guidance"] == (
        "linear"
    )
