"""export_tflite on models from real code: an adapted Normalization after
`prune_model`, mixed precision, a subclassed model, an int8 calibration
that crashes the converter, sequence lengths read off the data (TensorFlow
only)."""

import keras
import numpy as np
import pytest

import keras_guided

pytest.importorskip("ai_edge_litert.interpreter")


def _pruned_normalization_model():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(32, 6)) * 4.0 + 9.0).astype("float32")
    normalization = keras.layers.Normalization()
    normalization.adapt(x)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, activation="relu", name="hidden")(
        normalization(inputs)
    )
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(hidden))
    kernel, bias = model.get_layer("hidden").get_weights()
    kernel[:, 2] = 0.0
    model.get_layer("hidden").set_weights([kernel, bias])
    return model, x


def test_pruned_adapted_normalization_exports_what_keras_computes(tmp_path):
    model, x = _pruned_normalization_model()
    small = keras_guided.prune_model(model)
    report = keras_guided.export_tflite(
        small, str(tmp_path / "m.tflite"), sample_inputs=x
    )
    assert report.ok
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tmp_path / "m.tflite"))
    interpreter.allocate_tensors()
    (given,), (taken,) = (
        interpreter.get_input_details(),
        interpreter.get_output_details(),
    )
    interpreter.set_tensor(given["index"], x[:1])
    interpreter.invoke()
    expected = keras.ops.convert_to_numpy(model(x[:1]))
    np.testing.assert_allclose(
        interpreter.get_tensor(taken["index"]), expected, rtol=0, atol=1e-4
    )


@pytest.fixture
def mixed_model():
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = keras.Input((8, 8, 2))
        hidden = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
        hidden = keras.layers.Flatten()(hidden)
        outputs = keras.layers.Dense(3, dtype="float32")(hidden)
        model = keras.Model(inputs, outputs, name="mixed")
    finally:
        keras.mixed_precision.set_global_policy(policy)
    return model


@pytest.mark.parametrize("quantization", [None, "int8", "dynamic", "float16"])
def test_mixed_precision_exports_a_float32_copy(
    mixed_model, tmp_path, quantization
):
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 2)).astype("float32")
    report = keras_guided.export_tflite(
        mixed_model,
        str(tmp_path / "m.tflite"),
        quantization=quantization,
        representative_data=x,
    )
    assert report.ok
    assert report.notes[-1].startswith(
        "model 'mixed' computes in mixed_float16, which TFLite built-in ops "
        "do not: a float32 copy (same weights, float32 compute) was "
        "exported; it differs from the mixed_float16 model by up to "
    )
    # The file matches the mixed-precision model to float16 rounding.
    expected = keras.ops.convert_to_numpy(mixed_model(x)).astype("float32")
    scale = float(np.abs(expected).max())
    allowed = {None: 1e-2, "float16": 2e-2}.get(quantization, 1e-1)
    assert report.max_abs_diff <= allowed * max(1.0, scale)
    difference = float(report.notes[-1].rsplit("up to ", 1)[1].split()[0])
    assert difference <= 1e-2 * max(1.0, scale)
    assert mixed_model.layers[1].dtype_policy.name == "mixed_float16"


class Classifier(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(4, activation="relu")
        self.out = keras.layers.Dense(2)

    def call(self, x):
        return self.out(self.hidden(x))


def test_subclassed_model_message_says_what_works(tmp_path):
    model = Classifier()
    model.build((None, 3))
    with pytest.raises(ValueError) as info:
        keras_guided.export_tflite(model, str(tmp_path / "m.tflite"))
    assert str(info.value) == (
        f"Model '{model.name}' has no defined inputs (a subclassed model), "
        "so the shape of the file's input is unknown. Pass it: "
        "`keras_guided.export_tflite(model, path, input_shape=(...))`, or "
        "export a Functional model around it: `inputs = keras.Input(shape); "
        "keras_guided.export_tflite(keras.Model(inputs, model(inputs)), "
        "path)`."
    )
    report = keras_guided.export_tflite(
        model, str(tmp_path / "m.tflite"), input_shape=(3,)
    )
    assert report.ok and report.max_abs_diff <= report.tolerance
    with pytest.raises(
        ValueError,
        match=r"^`input_shape` must be a tuple of "
        r"positive ints \(the input shape without the batch\)"
        r"\. Received: input_shape=\(3, 0\)$",
    ):
        keras_guided.export_tflite(
            model, str(tmp_path / "m.tflite"), input_shape=(3, 0)
        )


def _conv_lstm_model():
    inputs = keras.Input((3, 6, 6, 2))
    x = keras.layers.ConvLSTM2D(4, 3, padding="same", name="conv_lstm")(inputs)
    outputs = keras.layers.Dense(3, name="head")(keras.layers.Flatten()(x))
    return keras.Model(inputs, outputs, name="video")


def test_int8_calibration_crash_is_a_value_error(tmp_path):
    # TensorFlow 2.21's int8 calibrator ends the process with a segmentation
    # fault on ConvLSTM2D; the conversion runs in a child, so it is an error.
    model = _conv_lstm_model()
    data = np.random.default_rng(0).normal(size=(4, 3, 6, 6, 2))
    path = tmp_path / "video.tflite"
    with pytest.raises(ValueError) as info:
        keras_guided.export_tflite(
            model,
            str(path),
            quantization="int8",
            representative_data=data.astype("float32"),
        )
    assert str(info.value) == (
        "TFLite conversion of model 'video' with quantization='int8' crashed "
        "(SIGSEGV) while converting or calibrating. The model's recurrent "
        "layers are the likely cause (the calibrator runs their loop): layer "
        "'conv_lstm' (ConvLSTM2D). It ran in a child process, so this "
        "Python session is unaffected; no file was written. Export with "
        "quantization='dynamic' (int8 weights, float activations, no "
        "calibration) or quantization=None (float32) instead."
    )
    assert list(tmp_path.iterdir()) == []
    # This process lives on, and the fix the message gives works.
    report = keras_guided.export_tflite(
        model, str(path), quantization="dynamic"
    )
    assert report.ok is not False and path.exists()


def test_int8_conversion_in_a_child_writes_what_keras_export_writes(
    tmp_path,
):
    import tensorflow as tf

    from keras_guided import export

    model = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, name="head"),
        ],
        name="small",
    )
    data = np.random.default_rng(0).normal(size=(8, 6, 6, 3))
    data = data.astype("float32")
    ours = tmp_path / "ours.tflite"
    keras_guided.export_tflite(
        model, str(ours), quantization="int8", representative_data=data
    )
    target_spec, options = export.converter_settings("int8", data)
    plain = tmp_path / "plain.tflite"
    model.export(
        str(plain),
        format="litert",
        verbose=False,
        input_signature=[tf.TensorSpec((1, 6, 6, 3), tf.float32)],
        target_spec=target_spec,
        **options,
    )
    assert ours.read_bytes() == plain.read_bytes()


def _two_sequences(length=None):
    first = keras.Input((length, 3), name="first")
    second = keras.Input((length, 2), name="second")
    x = keras.layers.Concatenate()(
        [keras.layers.Dense(4, name="a")(first), second]
    )
    outputs = keras.layers.Dense(2, name="out")(keras.ops.mean(x, axis=1))
    return keras.Model([first, second], outputs, name="two_sequences")


@pytest.mark.parametrize("quantization", [None, "int8"])
def test_sequence_length_is_read_off_representative_data(
    tmp_path, quantization
):
    model = _two_sequences()
    rng = np.random.default_rng(0)
    data = {
        "first": rng.normal(size=(8, 7, 3)).astype("float32"),
        "second": rng.normal(size=(8, 7, 2)).astype("float32"),
    }
    report = keras_guided.export_tflite(
        model,
        str(tmp_path / "m.tflite"),
        quantization=quantization,
        representative_data=data,
    )
    assert report.input_shapes == {"first": (1, 7, 3), "second": (1, 7, 2)}
    assert report.ok is not False and report.num_samples == 8
    # The same length as `sequence_length=7` gives, to the byte (float32).
    if quantization is None:
        fixed = keras_guided.export_tflite(
            model, str(tmp_path / "fixed.tflite"), sequence_length=7
        )
        assert (tmp_path / "m.tflite").read_bytes() == (
            tmp_path / "fixed.tflite"
        ).read_bytes()
        assert fixed.input_shapes == report.input_shapes


def _deep_resnet(size=32):
    """ResNet50 with random weights and BatchNormalization statistics set
    from random inputs (one training pass with momentum 0): deep and poorly
    conditioned, so float32 rounding is amplified to ~1e-3 at the output."""
    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(
        weights=None, input_shape=(size, size, 3), classifier_activation=None
    )
    x = np.random.default_rng(0).standard_normal((8, size, size, 3))
    batchnorms = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    for layer in batchnorms:
        layer.momentum = 0.0
    model(x.astype("float32"), training=True)
    for layer in batchnorms:
        layer.momentum = 0.99
    return model


@pytest.mark.slow
def test_float32_verification_allows_the_models_own_rounding_noise(tmp_path):
    # A deep float32 model was refused: LiteRT sums in another order, and
    # ResNet50 amplifies that rounding far past 1e-5 x its output scale.
    model = _deep_resnet()
    samples = np.random.default_rng(1).standard_normal((8, 32, 32, 3))
    samples = samples.astype("float32")
    report = keras_guided.export_tflite(
        model, str(tmp_path / "deep.tflite"), sample_inputs=samples
    )
    expected = keras.ops.convert_to_numpy(model(samples, training=False))
    scale = max(1.0, float(np.max(np.abs(expected))))
    assert report.ok and report.max_abs_diff <= report.tolerance
    assert report.max_abs_diff > 1e-5 * scale  # the old bound refused it
    # Keras' own outputs under a one-ulp nudge of the inputs move by the
    # same order as the file differs: that is the noise the bound allows.
    nudged = samples * (1.0 + 2.0**-23)
    moved = keras.ops.convert_to_numpy(model(nudged, training=False))
    noise = float(np.max(np.abs(moved - expected)))
    assert report.max_abs_diff < 10 * noise
    # The bound is still a bound: a tolerance below that difference refuses.
    with pytest.raises(ValueError, match="float32 LiteRT model disagrees"):
        keras_guided.export_tflite(
            model,
            str(tmp_path / "strict.tflite"),
            sample_inputs=samples,
            tolerance=report.max_abs_diff / 2,
        )
    assert not (tmp_path / "strict.tflite").exists()
