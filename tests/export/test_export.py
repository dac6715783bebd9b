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
from keras_guided.export import _verification as _export_verification

Interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter

# Bytes per weight in the file, by mode (int8 and dynamic store int8 weights;
# int8 biases are int32 but there are few of them).
BYTES_PER_PARAM = {None: 4.0, "float16": 2.0, "dynamic": 1.0, "int8": 1.0}
# What the test accepts as |LiteRT - Keras| on softmax outputs.
TEST_TOLERANCE = {None: 1e-5, "float16": 1e-2, "dynamic": 5e-2, "int8": 1e-1}


def _cnn(filters, units, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(filters, 3, activation="relu", name="conv1")(inputs)
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
            # softmax outputs (scale 1) of a shallow net, whose rounding
            # noise is far below 1e-6: the floor holds
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
        model,
        str(tmp_path / "m.tflite"),
        quantization="int8",
        representative_data=ids,
    )
    assert report.ok and report.max_abs_diff < 0.05
    with pytest.raises(
        ValueError,
        match=r"`sample_inputs` must hold whole "
        r"numbers: the model input has dtype int64",
    ):
        keras_guided.export_tflite(
            model, str(tmp_path / "f.tflite"), sample_inputs=ids + 0.5
        )


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


def test_litert_abort_in_verification_is_a_python_error(tmp_path, monkeypatch):
    # A LiteRT CHECK failing in allocate_tensors aborts its process; the
    # verification runs in a child, so this process gets an error instead.
    script = tmp_path / "abort.py"
    script.write_text("import os\nos.abort()\n")
    monkeypatch.setattr(
        _export_verification,
        "_litert_run",
        type("Stub", (), {"__file__": str(script)}),
    )
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tmp_path / "m.tflite"
    with pytest.raises(
        ValueError,
        match=r"Verification of the converted "
        r"model '.*' failed: the LiteRT runtime crashed "
        r"\(SIGABRT\) .* this Python session is unaffected; "
        r"the file was not written",
    ):
        keras_guided.export_tflite(model, str(path))
    assert not path.exists() and os.listdir(tmp_path) == ["abort.py"]


def test_int8_transformer_export_never_kills_the_interpreter(tmp_path):
    # LiteRT aborted the whole process on this model in int8 (upstream
    # bug). Whatever LiteRT does, we must get back a report or an error.
    model = _timeseries_transformer()
    x = np.random.default_rng(0).normal(size=(16, 12, 1)).astype("float32")
    try:
        report = keras_guided.export_tflite(
            model,
            str(tmp_path / "m.tflite"),
            quantization="int8",
            representative_data=x,
            batch_size=None,
        )
    except ValueError as error:
        assert "this Python session is unaffected" in str(error)
    else:
        assert report.ok


# ------------------------------------ several inputs (issue 19, item 4)
def _signature_outputs(path, inputs):
    """Runs a file through its signature, feeding inputs by name."""
    interpreter = Interpreter(model_path=path)
    runner = interpreter.get_signature_runner()
    rows = []
    count = len(next(iter(inputs.values())))
    for row in range(count):
        outputs = runner(**{k: v[row : row + 1] for k, v in inputs.items()})
        rows.append({k: v[0] for k, v in outputs.items()})
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def _siamese():
    keras.utils.set_random_seed(0)
    left = keras.Input((6,), name="left")
    right = keras.Input((6,), name="right")
    encoder = keras.layers.Dense(8, activation="relu", name="encoder")
    pair = keras.layers.Concatenate()([encoder(left), encoder(right)])
    outputs = keras.layers.Dense(2, name="score")(pair)
    return keras.Model([left, right], outputs)


def test_siamese_list_inputs_export_and_match_by_name(tmp_path):
    model = _siamese()
    rng = np.random.default_rng(0)
    left = rng.normal(size=(24, 6)).astype("float32")
    right = rng.normal(size=(24, 6)).astype("float32")
    expected = model.predict([left, right], verbose=0)
    for quantization, tolerance in ((None, 1e-5), ("int8", 0.1)):
        path = str(tmp_path / f"siamese_{quantization}.tflite")
        report = keras_guided.export_tflite(
            model,
            path,
            quantization=quantization,
            representative_data=[left, right],
            sample_inputs={"right": right, "left": left},
        )
        assert report.ok and report.num_samples == 24
        assert report.input_shape is None
        assert report.input_shapes == {"left": (1, 6), "right": (1, 6)}
        assert "inputs: left (1, 6), right (1, 6)" in report.summary()
        actual = _signature_outputs(path, {"left": left, "right": right})
        difference = np.max(np.abs(actual["output_0"] - expected))
        assert difference <= tolerance
        np.testing.assert_allclose(report.max_abs_diff, difference, atol=1e-6)
    # The pair is ordered (concatenated), so a mix-up of the two inputs
    # would show in the comparisons above.
    swapped = model.predict([right, left], verbose=0)
    assert np.max(np.abs(swapped - expected)) > 1e-2


def _token_model(vocabulary=50, length=None):
    """Token ids + a padding mask in a dict: Embedding, Dense, masking."""
    keras.utils.set_random_seed(0)
    ids = keras.Input((length,), dtype="int32", name="token_ids")
    mask = keras.Input((length,), dtype="int32", name="padding_mask")
    x = keras.layers.Embedding(vocabulary, 8, name="embedding")(ids)
    x = keras.layers.Dense(4, activation="relu", name="dense")(x)
    x = x * keras.ops.expand_dims(keras.ops.cast(mask, "float32"), -1)
    outputs = keras.layers.Dense(3, name="out")(keras.ops.sum(x, axis=1))
    return keras.Model({"token_ids": ids, "padding_mask": mask}, outputs)


def test_dict_inputs_with_token_ids_and_padding_mask(tmp_path):
    model = _token_model()
    with pytest.raises(
        ValueError,
        match=(
            r"^keras_guided\.export_tflite needs a fixed input shape \(apart "
            r"from the batch\)\. Received: model '.*' with input 'token_ids' "
            r"of "
            r"shape \(None, None\)\. Pass the sizes the file should take, "
            r"e\.g\. "
            r"sequence_length=128 \(fills a None sequence length of every "
            r"input\) or input_shapes=\{'token_ids': \(128,\)\}, or rebuild "
            r"the "
            r"model with fixed sizes in keras\.Input\(shape=\.\.\.\)\.$"
        ),
    ):
        keras_guided.export_tflite(model, str(tmp_path / "m.tflite"))
    assert os.listdir(tmp_path) == []
    # The default samples are valid: ids below the vocabulary, 0/1 masks.
    from keras_guided.export import _input_data as _export_input_data
    from keras_guided.export import _inputs as _export_inputs

    inputs = _export_inputs.read(model, sequence_length=10)
    samples = _export_input_data.default_samples(model, inputs)
    assert samples["token_ids"].dtype == np.int32
    assert samples["token_ids"].max() < 50 and samples["token_ids"].max() > 1
    assert set(np.unique(samples["padding_mask"])) == {0, 1}
    assert np.all(samples["padding_mask"][:, 0] == 1)

    path = str(tmp_path / "tokens.tflite")
    report = keras_guided.export_tflite(model, path, sequence_length=10)
    assert report.ok and report.max_abs_diff <= report.tolerance
    assert report.input_shapes == {
        "token_ids": (1, 10),
        "padding_mask": (1, 10),
    }
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 50, size=(16, 10)).astype("int32")
    masks = (np.arange(10) < rng.integers(1, 11, size=(16, 1))).astype("int32")
    expected = model.predict(
        {"token_ids": ids, "padding_mask": masks}, verbose=0
    )
    actual = _signature_outputs(path, {"token_ids": ids, "padding_mask": masks})
    assert np.max(np.abs(actual["output_0"] - expected)) <= 1e-5
    # The mask is used: the same ids with another mask give another answer.
    other = _signature_outputs(
        path, {"token_ids": ids, "padding_mask": np.ones_like(masks)}
    )
    assert np.max(np.abs(other["output_0"] - expected)) > 1e-3
    # int8, calibrated on a dict; input_shapes instead of sequence_length.
    report = keras_guided.export_tflite(
        model,
        str(tmp_path / "tokens8.tflite"),
        quantization="int8",
        representative_data={"token_ids": ids, "padding_mask": masks},
        input_shapes={"token_ids": (10,), "padding_mask": (10,)},
    )
    assert report.ok and report.num_samples == 16
    assert report.max_abs_diff < 0.1 * max(1.0, np.max(np.abs(expected)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"sample_inputs": np.zeros((4, 10), "int32")},
            r"^`sample_inputs` must be a dict keyed by input name, since "
            r"model '.*' has several inputs: 'token_ids': \(num_samples, "
            r"10\) int32, 'padding_mask': \(num_samples, 10\) int32\. "
            r"Received: ndarray\.$",
        ),
        (
            {"sample_inputs": {"token_ids": np.zeros((4, 10))}},
            r"^`sample_inputs` must be a dict with one array per input of "
            r"model '.*': keys \['token_ids', 'padding_mask'\]\. Received "
            r"keys \['token_ids'\]\.$",
        ),
        (
            {
                "sample_inputs": {
                    "token_ids": np.zeros((4, 10)),
                    "padding_mask": np.zeros((3, 10)),
                }
            },
            r"^`sample_inputs` must hold the same number of samples for "
            r"every input\. Received: \{'token_ids': 4, 'padding_mask': "
            r"3\}\.$",
        ),
        (
            {
                "sample_inputs": {
                    "token_ids": np.zeros((4, 9)),
                    "padding_mask": np.zeros((4, 10)),
                }
            },
            r"^`sample_inputs\['token_ids'\]` must have shape "
            r"\(num_samples,\) \+ \(10,\)\. Received shape \(4, 9\)\.$",
        ),
        (
            {"quantization": "int8"},
            r"^`quantization='int8'` needs `representative_data`: typical a "
            r"dict \{'token_ids': \(num_samples, 10\) int32, 'padding_mask': "
            r"\(num_samples, 10\) int32\} to calibrate the int8 ranges\.",
        ),
        (
            {"input_shapes": {"ids": (10,)}},
            r"^`input_shapes` names inputs that model '.*' does not have: "
            r"\['ids'\]\. Its inputs are \['token_ids', 'padding_mask'\]\.$",
        ),
        (
            {"input_shapes": (10,)},
            r"^`input_shapes` must be a dict \{input name: shape without the "
            r"batch\} \(model '.*' has inputs \['token_ids', "
            r"'padding_mask'\]\), or one shape for a one-input model\. "
            r"Received: input_shapes=\(10,\)$",
        ),
        (
            {"input_shapes": {"token_ids": (10, 2)}},
            r"^`input_shapes\['token_ids'\]` must fill the unknown \(None\) "
            r"dimensions of the declared shape \(None,\) with positive sizes "
            r"and keep the others\. Received: \(10, 2\)\.$",
        ),
        (
            {"sequence_length": 0},
            r"^`sequence_length` must be a positive int or None\. "
            r"Received: sequence_length=0$",
        ),
    ],
)
def test_several_inputs_bad_arguments(tmp_path, kwargs, message):
    kwargs = {"sequence_length": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        keras_guided.export_tflite(
            _token_model(), str(tmp_path / "m.tflite"), **kwargs
        )
    assert os.listdir(tmp_path) == []


def test_list_inputs_given_as_a_list_of_the_wrong_length(tmp_path):
    with pytest.raises(
        ValueError,
        match=(
            r"^`representative_data` must hold one array per input of model "
            r"'.*' \(2: \['left', 'right'\]\), in that order, or be a dict "
            r"keyed by those names\. Received 1 arrays\.$"
        ),
    ):
        keras_guided.export_tflite(
            _siamese(),
            str(tmp_path / "m.tflite"),
            quantization="int8",
            representative_data=[np.zeros((4, 6))],
        )


def test_keras_hub_bert_backbone_float32_and_int8(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=200,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=32,
    )
    rng = np.random.default_rng(0)
    length = 16
    data = {
        "token_ids": rng.integers(0, 200, (16, length)).astype("int32"),
        "segment_ids": rng.integers(0, 2, (16, length)).astype("int32"),
        "padding_mask": (
            np.arange(length) < rng.integers(4, length + 1, (16, 1))
        ).astype("int32"),
    }
    expected = backbone.predict(data, verbose=0)
    for quantization, tolerance in ((None, 1e-4), ("int8", 0.5)):
        path = str(tmp_path / f"bert_{quantization}.tflite")
        report = keras_guided.export_tflite(
            backbone,
            path,
            quantization=quantization,
            representative_data=data,
            sequence_length=length,
        )
        assert report.ok and report.num_samples == 16
        assert set(report.input_shapes) == set(data)
        actual = _signature_outputs(path, data)
        assert sorted(actual) == ["pooled_output", "sequence_output"]
        worst = max(
            float(np.max(np.abs(actual[name] - expected[name])))
            for name in actual
        )
        assert worst <= tolerance
        np.testing.assert_allclose(report.max_abs_diff, worst, atol=1e-5)


def test_one_input_with_a_none_length_takes_sequence_length(tmp_path):
    keras.utils.set_random_seed(0)
    ids = keras.Input((None,), dtype="int32", name="ids")
    x = keras.layers.Embedding(30, 4)(ids)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(ids, keras.layers.Dense(2)(x))
    with pytest.raises(
        ValueError,
        match=r"with input 'ids' of shape "
        r"\(None, None\)\. Pass the sizes the file should "
        r"take, e\.g\. sequence_length=128 .* or "
        r"input_shapes=\{'ids': \(128,\)\}",
    ):
        keras_guided.export_tflite(model, str(tmp_path / "m.tflite"))
    for kwargs in ({"sequence_length": 7}, {"input_shapes": (7,)}):
        report = keras_guided.export_tflite(
            model, str(tmp_path / "m.tflite"), **kwargs
        )
        assert report.ok and report.input_shape == (1, 7)
        assert report.input_shapes == {"ids": (1, 7)}
    ids = np.random.default_rng(0).integers(0, 30, size=(4, 7))
    actual, _ = _litert_outputs(str(tmp_path / "m.tflite"), ids.astype("int32"))
    expected = model.predict(ids, verbose=0)
    assert np.max(np.abs(actual - expected)) <= 1e-5
