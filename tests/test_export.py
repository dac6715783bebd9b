"""Tests for keras_guided.export (`export_tflite`)."""

import os
import sys
import tempfile

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

import keras_guided
from keras_guided import export as export_lib
from keras_guided import stats

Interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter

# Bytes per weight in the file, by mode (int8 and dynamic store int8 weights;
# int8 biases are int32 but there are few of them).
BYTES_PER_PARAM = {None: 4.0, "float16": 2.0, "dynamic": 1.0, "int8": 1.0}
# What the test accepts as |LiteRT - Keras| on softmax outputs.
TEST_TOLERANCE = {None: 1e-5, "float16": 1e-2, "dynamic": 5e-2, "int8": 1e-1}


def _cnn(filters, units, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(filters, 3, activation="relu", name="conv1")(
        inputs
    )
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Conv2D(filters, 3, activation="relu", name="conv2")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(units, activation="relu", name="dense1")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs)


def _zero_units(model, kept_filters, kept_units):
    """Zeroes every weight shaping the units past the kept ones (in place)."""
    f, u = kept_filters, kept_units
    for name in ("conv1", "conv2"):
        kernel, bias = model.get_layer(name).get_weights()
        kernel[..., f:] = 0.0
        bias[f:] = 0.0
        model.get_layer(name).set_weights([kernel, bias])
    gamma, beta, mean, variance = model.get_layer("bn1").get_weights()
    gamma[f:] = 0.0
    beta[f:] = 0.0
    model.get_layer("bn1").set_weights([gamma, beta, mean, variance])
    kernel, bias = model.get_layer("dense1").get_weights()
    kernel[:, u:] = 0.0
    bias[u:] = 0.0
    model.get_layer("dense1").set_weights([kernel, bias])


@pytest.fixture(scope="module")
def digits():
    x = load_digits().images.astype("float32")[..., None] / 16.0
    return x[:128]


@pytest.fixture(scope="module")
def models():
    """A CNN with dead units, and `prune_model`'s version without them."""
    full = _cnn(16, 64)
    _zero_units(full, 8, 24)
    pruned = keras_guided.prune_model(full)
    assert pruned.get_layer("conv2").filters == 8
    assert pruned.get_layer("dense1").units == 24
    return full, pruned


def _litert_outputs(path, inputs):
    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    detail_in = interpreter.get_input_details()[0]
    detail_out = interpreter.get_output_details()[0]
    outputs = []
    for row in inputs:
        x = row[None]
        if detail_in["dtype"] == np.int8:
            scale, zero = detail_in["quantization"]
            x = np.clip(np.round(x / scale + zero), -128, 127).astype("int8")
        interpreter.set_tensor(detail_in["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(detail_out["index"])
        if detail_out["dtype"] == np.int8:
            scale, zero = detail_out["quantization"]
            y = (y.astype("float32") - zero) * scale
        outputs.append(y[0])
    return np.stack(outputs), detail_in["dtype"]


@pytest.mark.parametrize("quantization", [None, "dynamic", "float16", "int8"])
def test_each_mode_matches_keras_and_pruned_is_smaller(
    quantization, models, digits, tmp_path
):
    full, pruned = models
    sizes = {}
    for name, model in (("full", full), ("pruned", pruned)):
        path = str(tmp_path / f"{name}.tflite")
        report = keras_guided.export_tflite(
            model,
            path,
            quantization=quantization,
            representative_data=digits,
            sample_inputs=digits[:16],
        )
        assert isinstance(report, keras_guided.ExportReport)
        assert report.path == path
        assert report.bytes == os.path.getsize(path)
        assert report.quantization == quantization
        assert report.ok is True
        assert report.num_samples == 16
        # Check the file ourselves, independently of the report.
        actual, _ = _litert_outputs(path, digits[:16])
        expected = model.predict(digits[:16], verbose=0)
        difference = np.max(np.abs(actual - expected))
        assert difference <= TEST_TOLERANCE[quantization]
        np.testing.assert_allclose(report.max_abs_diff, difference, atol=1e-6)
        if quantization is None:
            assert report.tolerance == pytest.approx(1e-5)
        sizes[name] = report.bytes
    assert sorted(os.listdir(tmp_path)) == ["full.tflite", "pruned.tflite"]
    # The size saved is about the parameters removed times bytes per weight.
    removed = stats.count_params(full) - stats.count_params(pruned)
    expected_saving = removed * BYTES_PER_PARAM[quantization]
    saving = sizes["full"] - sizes["pruned"]
    assert 0.75 * expected_saving < saving < 1.25 * expected_saving


def test_int8_io_and_dynamic_batch(models, digits, tmp_path):
    _, pruned = models
    path = str(tmp_path / "io.tflite")
    report = keras_guided.export_tflite(
        pruned,
        path,
        quantization="int8",
        representative_data=digits,
        int8_io=True,
        batch_size=None,
    )
    assert report.int8_io and report.ok
    assert report.input_shape == (None, 8, 8, 1)
    assert 0.0 <= report.argmax_agreement <= 1.0
    actual, input_dtype = _litert_outputs(path, digits[:8])
    assert input_dtype == np.int8
    expected = pruned.predict(digits[:8], verbose=0)
    assert np.max(np.abs(actual - expected)) <= TEST_TOLERANCE["int8"]


def test_latency_and_summary(models, tmp_path):
    _, pruned = models
    report = keras_guided.export_tflite(
        pruned,
        str(tmp_path / "m.tflite"),
        measure_latency=True,
        num_runs=5,
        num_threads=1,
    )
    assert report.latency_ms > 0
    text = report.summary()
    assert "quantization: float32" in text and "latency:" in text
    assert ", ok" in text


def test_int8_without_representative_data(models, tmp_path):
    with pytest.raises(
        ValueError,
        match=r"^`quantization='int8'` needs `representative_data`: typical "
        r"inputs of shape \(num_samples,\) \+ \(8, 8, 1\) to calibrate the "
        r"int8 ranges\. Received: representative_data=None\. Pass e\.g\. "
        r"representative_data=x_train\[:256\], or use "
        r"quantization='dynamic', which needs no data\.$",
    ):
        keras_guided.export_tflite(
            models[1], str(tmp_path / "m.tflite"), quantization="int8"
        )
    assert os.listdir(tmp_path) == []


class Erfinv(keras.layers.Layer):
    """A layer whose op has no TFLite built-in kernel."""

    def call(self, x):
        return keras.ops.erfinv(keras.ops.tanh(x) * 0.5)


def _flex_model():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(4)(inputs)
    x = Erfinv(name="needs_flex")(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_flex_op_fails_naming_op_and_layer_and_keeps_existing_file(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"previous model")
    with pytest.raises(
        ValueError,
        match=r"needs TensorFlow ops that are not TFLite built-ins: Erfinv "
        r"\(used by layer 'needs_flex' \(Erfinv\)\)\.",
    ):
        keras_guided.export_tflite(_flex_model(), str(path))
    assert path.read_bytes() == b"previous model"
    assert os.listdir(tmp_path) == ["m.tflite"]


def test_failed_verification_writes_nothing(models, digits, tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"previous model")
    with pytest.raises(
        ValueError,
        match=r"^The int8 LiteRT model disagrees with Keras on 16 sample "
        r"inputs: .* The file was not written\.",
    ):
        keras_guided.export_tflite(
            models[1],
            str(path),
            quantization="int8",
            representative_data=digits,
            sample_inputs=digits[:16],
            tolerance=0.0,
        )
    assert path.read_bytes() == b"previous model"
    assert os.listdir(tmp_path) == ["m.tflite"]


def _unwritable_directory(tmp_path):
    directory = tmp_path / "locked"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        tempfile.mkstemp(dir=directory)
    except OSError:
        return str(directory)
    # Running as root: permissions do not stop us; /sys is read-only.
    try:
        tempfile.mkstemp(dir="/sys")
    except OSError:
        return "/sys"
    pytest.skip("no unwritable directory available")


def test_unwritable_directory(models, tmp_path):
    directory = _unwritable_directory(tmp_path)
    with pytest.raises(OSError, match=r"Cannot write to directory '.*'"):
        keras_guided.export_tflite(
            models[1], os.path.join(directory, "m.tflite")
        )
    assert not os.path.exists(os.path.join(directory, "m.tflite"))


def test_missing_directory(models, tmp_path):
    missing = tmp_path / "nope" / "m.tflite"
    with pytest.raises(
        FileNotFoundError,
        match=r"The output directory '.*nope' does not exist\.",
    ):
        keras_guided.export_tflite(models[1], str(missing))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"quantization": "int4"},
            r"`quantization` must be one of None, 'dynamic', 'float16', "
            r"'int8'\. Received: quantization='int4'",
        ),
        (
            {"int8_io": True},
            r"`int8_io=True` needs `quantization='int8'`",
        ),
        (
            {"num_runs": 0},
            r"`num_runs` must be a positive int\. Received: num_runs=0",
        ),
        (
            {"tolerance": -1.0},
            r"`tolerance` must be a non-negative float or None\. "
            r"Received: tolerance=-1\.0",
        ),
        (
            {"sample_inputs": np.zeros((3, 8, 8))},
            r"`sample_inputs` must have shape \(num_samples,\) \+ "
            r"\(8, 8, 1\)\. Received shape \(3, 8, 8\)\.",
        ),
    ],
)
def test_bad_arguments(models, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        keras_guided.export_tflite(
            models[1], str(tmp_path / "m.tflite"), **kwargs
        )
    assert os.listdir(tmp_path) == []


def test_bad_filepath_and_model(models, tmp_path):
    with pytest.raises(ValueError, match=r"`filepath` must end in '\.tflite'"):
        keras_guided.export_tflite(models[1], str(tmp_path / "m.keras"))
    a, b = keras.Input((2,)), keras.Input((2,))
    two = keras.Model([a, b], keras.layers.Add()([a, b]))
    with pytest.raises(
        ValueError,
        match=r"supports single-input models\. Received: model '.*' with 2 "
        r"inputs\.",
    ):
        keras_guided.export_tflite(two, str(tmp_path / "m.tflite"))


def test_missing_interpreter_names_the_extra(models, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(
        ImportError, match=r"pip install keras-guided\[tflite\]"
    ):
        keras_guided.export_tflite(models[1], str(tmp_path / "m.tflite"))
    assert os.listdir(tmp_path) == []


def test_model_is_not_modified(models, tmp_path):
    _, pruned = models
    before = [w.copy() for w in pruned.get_weights()]
    keras_guided.export_tflite(
        pruned, str(tmp_path / "m.tflite"), quantization="dynamic"
    )
    after = pruned.get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(before, after))
    assert export_lib.QUANTIZATIONS == (None, "dynamic", "float16", "int8")


def test_other_backend_is_refused(models, tmp_path, monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(
        RuntimeError,
        match=r"needs the TensorFlow backend .* Received backend 'jax'\. "
        r"Save the model",
    ):
        keras_guided.export_tflite(models[1], str(tmp_path / "m.tflite"))


# ----------------------------------------------- real models (issue 12)
def test_int8_with_token_id_inputs_keeps_their_dtype(tmp_path):
    # Used to fail: "Got value of type FLOAT32 but expected type INT64".
    inputs = keras.Input((10,), dtype="int64")
    x = keras.layers.Embedding(20, 8)(inputs)
    x = keras.layers.Conv1D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    ids = np.random.default_rng(0).integers(0, 20, size=(32, 10))
    report = keras_guided.export_tflite(
        model, str(tmp_path / "m.tflite"), quantization="int8",
        representative_data=ids)
    assert report.ok and report.max_abs_diff < 0.05
    with pytest.raises(ValueError, match=r"`sample_inputs` must hold whole "
                       r"numbers: the model input has dtype int64"):
        keras_guided.export_tflite(model, str(tmp_path / "f.tflite"),
                                   sample_inputs=ids + 0.5)


def _timeseries_transformer():
    """keras-io's timeseries transformer, shrunk (channels-first pooling)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 1))
    x = keras.layers.MultiHeadAttention(2, 4)(inputs, inputs)
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
    residual = x + inputs
    x = keras.layers.Conv1D(4, 1, activation="relu")(residual)
    x = keras.layers.Conv1D(1, 1)(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x) + residual
    x = keras.layers.GlobalAveragePooling1D(data_format="channels_first")(x)
    x = keras.layers.Dense(8, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def test_failed_batch_one_conversion_retries_with_a_dynamic_batch(tmp_path):
    # The converter refuses this graph at batch 1 ("'tf.Transpose' op x
    # should be of the same rank with y"); a dynamic batch converts.
    model = _timeseries_transformer()
    report = keras_guided.export_tflite(model, str(tmp_path / "m.tflite"))
    assert report.ok and report.input_shape == (None, 12, 1)
    assert len(report.notes) == 1
    assert report.notes[0].startswith("conversion with batch_size=1 failed (")
    assert "dynamic batch (batch_size=None)" in report.summary()


def test_litert_abort_in_verification_is_a_python_error(tmp_path,
                                                        monkeypatch):
    # A LiteRT CHECK failing in allocate_tensors aborts its process; the
    # verification runs in a child, so this process gets an error instead.
    script = tmp_path / "abort.py"
    script.write_text("import os\nos.abort()\n")
    monkeypatch.setattr(export_lib, "_litert_run",
                        type("Stub", (), {"__file__": str(script)}))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tmp_path / "m.tflite"
    with pytest.raises(ValueError, match=r"Verification of the converted "
                       r"model '.*' failed: the LiteRT runtime crashed "
                       r"\(SIGABRT\) .* this Python session is unaffected; "
                       r"the file was not written"):
        keras_guided.export_tflite(model, str(path))
    assert not path.exists() and os.listdir(tmp_path) == ["abort.py"]


def test_int8_transformer_export_never_kills_the_interpreter(tmp_path):
    # LiteRT aborted the whole process on this model in int8 (upstream
    # bug). Whatever LiteRT does, we must get back a report or an error.
    model = _timeseries_transformer()
    x = np.random.default_rng(0).normal(size=(16, 12, 1)).astype("float32")
    try:
        report = keras_guided.export_tflite(
            model, str(tmp_path / "m.tflite"), quantization="int8",
            representative_data=x, batch_size=None)
    except ValueError as error:
        assert "this Python session is unaffected" in str(error)
    else:
        assert report.ok
