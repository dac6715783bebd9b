"""Tests for the `keras-guided` command line (keras_guided/cli/)."""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_guided import cli

Interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter


def _run(*args, cwd=None):
    """Runs `python -m keras_guided.cli ARGS` in a fresh process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "keras_guided.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def _small_cnn():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(8, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(3, name="out")(x)
    model = keras.Model(inputs, outputs)
    # Kill two conv filters and three hidden units exactly (every weight
    # that shapes their output), so `prune` has something to remove.
    kernel, bias = model.get_layer("conv").get_weights()
    kernel[..., 4:] = 0.0
    bias[4:] = 0.0
    model.get_layer("conv").set_weights([kernel, bias])
    gamma, beta, mean, variance = model.get_layer("bn").get_weights()
    gamma[4:] = 0.0
    beta[4:] = 0.0
    model.get_layer("bn").set_weights([gamma, beta, mean, variance])
    kernel, bias = model.get_layer("hidden").get_weights()
    kernel[:, 5:] = 0.0
    bias[5:] = 0.0
    model.get_layer("hidden").set_weights([kernel, bias])
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cli")
    model = _small_cnn()
    path = str(directory / "model.keras")
    model.save(path)
    data = np.random.default_rng(0).random((40, 8, 8, 1)).astype("float32")
    np.save(directory / "data.npy", data)
    return directory, path, model, data


def _litert_predict(path, inputs):
    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    detail_in = interpreter.get_input_details()[0]
    detail_out = interpreter.get_output_details()[0]
    rows = []
    for row in inputs:
        interpreter.set_tensor(detail_in["index"], row[None])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(detail_out["index"])[0])
    return np.stack(rows)


def test_export_end_to_end(saved):
    directory, path, model, data = saved
    out = str(directory / "model.tflite")
    result = _run("export", path, "-o", out, "--latency", "--num-runs", "5")
    assert result.returncode == 0, result.stderr
    assert "converting to TFLite (float32, built-in ops only)" in result.stdout
    assert f"wrote {out}" in result.stdout
    assert "latency:" in result.stdout and ", ok" in result.stdout
    expected = model.predict(data[:8], verbose=0)
    np.testing.assert_allclose(
        _litert_predict(out, data[:8]), expected, atol=1e-5
    )


def test_export_int8_with_calibration(saved):
    directory, path, model, data = saved
    out = str(directory / "model_int8.tflite")
    result = _run(
        "export",
        path,
        "-o",
        out,
        "--quantize",
        "int8",
        "--calibration",
        str(directory / "data.npy"),
    )
    assert result.returncode == 0, result.stderr
    assert "quantization: int8" in result.stdout
    expected = model.predict(data[:8], verbose=0)
    actual = _litert_predict(out, data[:8])
    scale = np.max(np.abs(expected))
    assert np.max(np.abs(actual - expected)) < 0.05 * scale


def test_inspect_end_to_end(saved):
    _, path, _, _ = saved
    result = _run("inspect", path)
    assert result.returncode == 0, result.stderr
    assert "3 unit groups" in result.stdout
    # Group 0: conv + bn, 6 filters of which 2 dead; group 1: 3 of 8 dead.
    assert "| 0 | conv, bn, flatten | 6 | 2 |" in result.stdout
    assert "| 1 | hidden | 8 | 3 |" in result.stdout
    assert "| 2 | out | 3 | 0 |" in result.stdout
    assert "would remove 5 units in 2 groups" in result.stdout


def test_prune_end_to_end(saved):
    directory, path, model, data = saved
    out = str(directory / "pruned.keras")
    result = _run("prune", path, "-o", out)
    assert result.returncode == 0, result.stderr
    assert "Removed 5 units in 2 of 3 unit groups." in result.stdout
    assert f"wrote {out}" in result.stdout
    pruned = keras.saving.load_model(out)
    assert pruned.get_layer("conv").filters == 4
    assert pruned.get_layer("hidden").units == 5
    np.testing.assert_allclose(
        pruned.predict(data, verbose=0),
        model.predict(data, verbose=0),
        atol=1e-5,
    )


def test_prune_target_in_process(saved, capsys):
    directory, path, model, _ = saved
    out = str(directory / "half.keras")
    code = cli.main(
        ["prune", path, "-o", out, "--target", "0.5", "--target-kind", "params"]
    )
    assert code == 0, capsys.readouterr().err
    pruned = keras.saving.load_model(out)
    assert pruned.count_params() < 0.6 * model.count_params()
    os.remove(out)


def test_demo_quick(tmp_path):
    out = tmp_path / "demo"
    result = _run("demo", "--quick", "--out", str(out), "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert "| params |" in result.stdout
    assert "after (pruned + fine-tuned)" in result.stdout
    import json

    summary = json.loads((out / "results.json").read_text())
    before, after = summary["before"], summary["after"]
    assert after["params"] < 0.5 * before["params"]
    assert after["units"] < before["units"]
    assert after["flops"] < before["flops"]
    assert after["tflite_bytes_float32"] < before["tflite_bytes_float32"]
    # Pruning is exact: same predictions right after removal as the
    # budget-trained network ("before" is the plain network).
    assert (
        summary["accuracy_right_after_pruning"]
        == (summary["accuracy_trained_with_budget"])
    )
    assert summary["budget"]["value"] <= summary["budget"]["goal"]
    assert summary["prune_max_abs_diff"] < 1e-4
    assert after["accuracy"] > 0.5
    for name in (
        "before.keras",
        "pruned.keras",
        "before.tflite",
        "pruned.tflite",
        "before_int8.tflite",
        "pruned_int8.tflite",
        "results.md",
    ):
        assert (out / name).is_file(), name
    assert (out / "results.md").read_text().strip() == summary["table"]
    # The fine-tune keeps its best epoch on the validation split, the
    # state right after removal (epoch 0) included: never below it there.
    finetune = summary["finetune"]
    history = [finetune["validation_accuracy_right_after_pruning"]] + (
        finetune["validation_accuracy_per_epoch"]
    )
    assert finetune["validation_accuracy"] == max(history)
    assert finetune["validation_accuracy"] >= history[0]
    assert finetune["validation_accuracy"] == history[finetune["kept_epoch"]]
    # The same seed gives the same numbers (another process, same machine).
    again_out = tmp_path / "again"
    again = _run("demo", "--quick", "--out", str(again_out), "--seed", "1")
    assert again.returncode == 0, again.stderr
    repeat = json.loads((again_out / "results.json").read_text())
    assert _reproducible(repeat) == _reproducible(summary)


def _reproducible(summary):
    """The demo's numbers that do not depend on the clock."""
    rows = {
        name: {
            k: v
            for k, v in summary[name].items()
            if not k.startswith("latency_ms")
        }
        for name in ("before", "after")
    }
    return (
        rows,
        summary["accuracy_right_after_pruning"],
        summary["finetune"],
        summary["budget"]["value"],
        summary["prune_max_abs_diff"],
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["export", "{dir}/missing.keras", "-o", "{dir}/x.tflite"],
            r"model file '.*missing\.keras' does not exist",
        ),
        (
            ["export", "{dir}/data.npy", "-o", "{dir}/x.tflite"],
            r"'.*data\.npy' is not a Keras model file \(expected a \.keras "
            r"archive written by model\.save\('model\.keras'\)\)",
        ),
        (
            ["export", "{dir}/fake.keras", "-o", "{dir}/x.tflite"],
            r"could not load '.*fake\.keras' as a Keras model: ",
        ),
        (
            ["export", "{dir}/lambda.keras", "-o", "{dir}/x.tflite"],
            r"could not load '.*lambda\.keras' as a Keras model: Requested "
            r"the deserialization of a `Lambda` layer",
        ),
        (
            ["export", "{model}", "-o", "{dir}/nodir/x.tflite"],
            r"output directory '.*nodir' does not exist",
        ),
        (
            ["export", "{model}", "-o", "/sys/x.tflite"],
            r"cannot write to output directory '/sys'",
        ),
        (
            ["export", "{model}", "-o", "{dir}/x.onnx"],
            r"the output file must end in '\.tflite'\. Received: '.*x\.onnx'",
        ),
        (
            ["export", "{model}", "-o", "{dir}/x.tflite", "--quantize", "int8"],
            r"--quantize int8 needs --calibration DATA\.npy",
        ),
        (
            ["inspect", "{dir}/missing.keras"],
            r"model file '.*missing\.keras' does not exist",
        ),
        (
            ["prune", "{dir}/data.npy", "-o", "{dir}/p.keras"],
            r"is not a Keras model file",
        ),
        (
            ["prune", "{model}", "-o", "{dir}/p.h5"],
            r"the output file must end in '\.keras'\. Received: '.*p\.h5'",
        ),
        (
            ["prune", "{model}", "-o", "{dir}/p.keras", "--target", "1.5"],
            r"error: --target must be the fraction to keep, a number in "
            r"\(0, 1\], e\.g\. `--target 0\.5 --target-kind flops` to keep "
            r"half of the FLOPs\. Received: --target 1\.5$",
        ),
    ],
)
def test_bad_input_exits_1_with_one_line(saved, capsys, args, message):
    directory, path, _, _ = saved
    fake = directory / "fake.keras"
    if not fake.exists():
        import zipfile

        with zipfile.ZipFile(fake, "w") as archive:
            archive.writestr("config.json", "not json")
    if not (directory / "lambda.keras").exists():
        inputs = keras.Input((3,))
        doubled = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
        keras.Model(inputs, doubled).save(directory / "lambda.keras")
    if "/sys/x.tflite" in args and os.access("/sys", os.W_OK):
        try:
            os.close(os.open("/sys/.probe", os.O_CREAT | os.O_WRONLY))
        except OSError:
            pass  # Writable by mode bits but a read-only file system.
        else:
            os.remove("/sys/.probe")
            pytest.skip("/sys is writable here")
    argv = [a.format(dir=directory, model=path) for a in args]
    before = sorted(os.listdir(directory))
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("keras-guided: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert sorted(os.listdir(directory)) == before


def test_usage_error_exits_2(capsys):
    assert cli.main(["export"]) == 2
    assert "usage: keras-guided" in capsys.readouterr().err
    assert cli.main([]) == 2


def test_export_model_with_several_inputs_and_a_sequence_length(tmp_path):
    # A dict of inputs with a None length: token ids and float features.
    keras.utils.set_random_seed(0)
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    features = keras.Input((None, 3), name="features")
    x = keras.layers.Embedding(30, 4)(ids)
    x = keras.layers.GlobalAveragePooling1D()(x)
    y = keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(4)(features))
    outputs = keras.layers.Dense(2)(keras.layers.Concatenate()([x, y]))
    model = keras.Model({"token_ids": ids, "features": features}, outputs)
    path = str(tmp_path / "two.keras")
    model.save(path)
    rng = np.random.default_rng(0)
    data = {
        "token_ids": rng.integers(0, 30, (16, 6)).astype("int32"),
        "features": rng.normal(size=(16, 6, 3)).astype("float32"),
    }
    np.savez(tmp_path / "data.npz", **data)
    out = str(tmp_path / "two.tflite")
    result = _run(
        "export",
        path,
        "-o",
        out,
        "--quantize",
        "int8",
        "--calibration",
        str(tmp_path / "data.npz"),
        "--sequence-length",
        "6",
    )
    assert result.returncode == 0, result.stderr
    assert "inputs: token_ids (1, 6), features (1, 6, 3)" in result.stdout
    assert "verification on 16 inputs" in result.stdout
    assert ", ok" in result.stdout
    runner = Interpreter(model_path=out).get_signature_runner()
    actual = runner(**{k: v[:1] for k, v in data.items()})["output_0"]
    expected = model.predict({k: v[:1] for k, v in data.items()}, verbose=0)
    assert np.max(np.abs(actual - expected)) < 0.1


# ------------------------------------------------------- quiet by default
NATIVE_LOG = re.compile(
    r"port\.cc|cudart_stub|cpu_feature_guard|flatbuffer_export|"
    r"tf_tfl_flatbuffer_helpers|I0000|W0000|absl::InitializeLog"
)


def _run_as_user(*args):
    """The command as a user runs it: no TF_CPP_MIN_LOG_LEVEL of ours."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY")
    }
    return subprocess.run(
        [sys.executable, "-m", "keras_guided.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_commands_are_quiet_by_default_and_verbose_shows_tensorflow(saved):
    directory, path, _, _ = saved
    verbose = _run_as_user(
        "export", path, "-o", str(directory / "verbose.tflite"), "--verbose"
    )
    assert verbose.returncode == 0, verbose.stderr
    if not NATIVE_LOG.search(verbose.stdout + verbose.stderr):
        pytest.skip("TensorFlow prints no native log lines on this machine")
    quiet = _run_as_user("export", path, "-o", str(directory / "quiet.tflite"))
    assert quiet.returncode == 0, quiet.stderr
    lines = [
        line
        for line in (quiet.stdout + quiet.stderr).splitlines()
        if NATIVE_LOG.search(line)
    ]
    assert not lines, lines
    assert "verification on 32 inputs" in quiet.stdout
    # Our own messages still reach stderr, with the descriptor muted.
    failed = _run_as_user("inspect", str(directory / "missing.keras"))
    assert failed.returncode == 1
    assert failed.stderr.strip().startswith("keras-guided: error: model file")


def test_native_stderr_is_muted_for_the_block_only():
    # A child process, so this test's own descriptors stay untouched.
    script = (
        "import os, sys, warnings\n"
        "from keras_guided import _quiet\n"
        "with _quiet.native_stderr_silenced():\n"
        "    os.write(2, b'native line\\n')\n"
        "    print('python line', file=sys.stderr)\n"
        "    warnings.warn('a warning')\n"
        "os.write(2, b'after the block\\n')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 0, result.stderr
    assert "native line" not in result.stderr
    assert "python line" in result.stderr and "a warning" in result.stderr
    assert result.stderr.rstrip().endswith("after the block")


def test_main_in_process_restores_stderr(capfd):
    assert cli.main(["inspect", "no_such_model.keras"]) == 1
    os.write(2, b"still here\n")
    captured = capfd.readouterr()
    assert "model file 'no_such_model.keras' does not exist" in captured.err
    assert "still here" in captured.err


@pytest.mark.parametrize(
    "orig_argv, argv, expected",
    [
        (["python", "-m", "keras_guided.cli", "inspect"], ["-m"], True),
        (["python", "-X", "dev", "-m", "keras_guided.cli"], ["-m"], True),
        (["python", "-m", "keras_guided", "demo"], ["-m"], True),
        (["python", "-m", "keras_guided.stats"], ["-m"], False),
        (["python", "-m", "pytest", "tests"], ["-m"], False),
        (["python", "-c", "import keras_guided"], ["-c"], False),
        (["python", "train.py", "-m", "keras_guided.cli"], ["train.py"], False),
        (
            ["python", "/venv/bin/keras-guided", "demo"],
            ["/venv/bin/keras-guided"],
            True,
        ),
    ],
)
def test_only_the_command_process_is_made_quiet(orig_argv, argv, expected):
    from keras_guided import _quiet

    assert _quiet.started_as_command(argv, orig_argv) is expected


# ------------------------------------------------------- help is light
def test_help_imports_neither_tensorflow_nor_keras():
    for args in (["--help"], ["prune", "--help"], ["export", "--help"]):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "keras_guided", *args],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert "usage: keras-guided" in result.stdout
        imported = {
            line.split("|")[-1].strip().split(".")[0]
            for line in result.stderr.splitlines()
            if line.startswith("import time:")
        }
        assert "keras_guided" in imported
        assert not imported & {"tensorflow", "keras", "jax", "torch"}, args


def test_the_command_face_gives_what_the_package_imports():
    import keras_guided

    loaded = keras_guided._import_public_api()
    assert set(loaded) == set(keras_guided.__all__) - {"__version__"}
    for name, value in loaded.items():
        assert getattr(keras_guided, name) is value, name
