"""export_tflite on models from real code: an adapted Normalization after
`prune_model`, mixed precision, a subclassed model (TensorFlow only)."""

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
