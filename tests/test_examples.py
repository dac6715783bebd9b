"""The scripts in examples/: each runs with --quick and prints its results.

Every example is run as a user would run it, in a fresh Python process, and
its output is parsed: the numbers it prints must say what the example
promises (exact removal, fewer parameters, a verified export).
"""

import gzip
import importlib.util
import os
import re
import struct
import subprocess
import sys

import keras
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
SCRIPTS = (
    "mnist_mlp.py",
    "cnn_digits.py",
    "mobilenet_prune_export.py",
    "custom_layer_rule.py",
)

needs_export = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow"
    or importlib.util.find_spec("ai_edge_litert") is None,
    reason="export_tflite needs the TensorFlow backend and ai-edge-litert",
)

needs_sklearn = pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None,
    reason="the digits examples need scikit-learn",
)


def _run(script, *args, cwd):
    """Runs `python examples/SCRIPT ARGS` in a fresh process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(
        [ROOT] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    result = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, script), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"{script} exited with {result.returncode}\n--- stdout\n"
        f"{result.stdout}\n--- stderr\n{result.stderr[-4000:]}"
    )
    return result.stdout


def _number(text):
    return float(text.replace(",", ""))


def _load(script):
    """Imports an example as a module (its main() does not run)."""
    name = "example_" + script[:-3]
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(EXAMPLES, script)
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_sklearn
def test_mnist_mlp_quick(tmp_path):
    out = tmp_path / "artifacts"
    stdout = _run("mnist_mlp.py", "--quick", "--out", str(out), cwd=tmp_path)
    assert "data: scikit-learn digits (8x8)" in stdout
    units = dict(
        re.findall(
            r"^(hidden\d): kept (\d+) of \d+ hidden units$", stdout, re.M
        )
    )
    assert set(units) == {"hidden1", "hidden2"}
    assert 1 <= int(units["hidden1"]) < 300
    assert 1 <= int(units["hidden2"]) < 100
    # The budget recipe lands on the default budget of 66 hidden units.
    assert int(units["hidden1"]) + int(units["hidden2"]) == 66
    params = re.search(r"^params: ([\d,]+) -> ([\d,]+)", stdout, re.M)
    assert _number(params.group(1)) == 64 * 300 + 300 + 300 * 100 + 100 + (
        100 * 10 + 10
    )
    assert _number(params.group(2)) < _number(params.group(1))
    accuracy = re.search(
        r"^accuracy before removal: ([\d.]+)%, after removal: ([\d.]+)%",
        stdout,
        re.M,
    )
    # Removing dead units is exact: the accuracy does not move.
    assert accuracy.group(1) == accuracy.group(2)
    assert _number(accuracy.group(1)) > 50.0
    assert sorted(os.listdir(out)) == [
        "pruned.keras",
        "results.json",
        "trained.keras",
    ]
    reloaded = keras.saving.load_model(str(out / "pruned.keras"))
    assert reloaded.get_layer("hidden1").units == int(units["hidden1"])


@needs_sklearn
@needs_export
def test_cnn_digits_quick(tmp_path):
    out = tmp_path / "artifacts"
    stdout = _run("cnn_digits.py", "--quick", "--out", str(out), cwd=tmp_path)
    assert re.search(
        r"^Removed \d+ units in \d+ of 4 unit groups\.$", stdout, re.M
    )
    trained, pruned = re.search(
        r"test accuracy: trained ([\d.]+)%, right after pruning ([\d.]+)%",
        stdout,
    ).groups()
    assert trained == pruned
    params = re.search(r"^params: ([\d,]+) -> ([\d,]+);", stdout, re.M)
    assert _number(params.group(2)) < _number(params.group(1))
    # Both exports verified in the LiteRT interpreter.
    assert (
        len(re.findall(r"verification on \d+ inputs: .*, ok$", stdout, re.M))
        == 2
    )
    int8 = re.search(r"int8 \.tflite ([\d.]+)%$", stdout, re.M)
    assert _number(int8.group(1)) > 50.0
    assert {
        "pruned_float32.tflite",
        "pruned_int8.tflite",
        "pruned.keras",
        "trained.keras",
    } <= set(os.listdir(out))


@needs_export
def test_mobilenet_prune_export_quick(tmp_path):
    out = tmp_path / "artifacts"
    stdout = _run(
        "mobilenet_prune_export.py", "--quick", "--out", str(out), cwd=tmp_path
    )
    assert "MobileNetV2 alpha=0.35, 96x96 inputs, random weights" in stdout
    kept = re.search(
        r"^FLOPs kept: ([\d.]+)%, LiteRT latency ([\d.]+) ms "
        r"-> ([\d.]+) ms",
        stdout,
        re.M,
    )
    # Half the FLOPs asked to go; unit granularity and the protected
    # classifier leave a little more.
    assert 40.0 < _number(kept.group(1)) < 70.0
    assert _number(kept.group(2)) > 0 and _number(kept.group(3)) > 0
    rows = re.findall(
        r"^\| (original|pruned) \| ([\d,]+) \| ([\d,]+) \| "
        r"([\d,]+) \|",
        stdout,
        re.M,
    )
    assert [row[0] for row in rows] == ["original", "pruned"]
    (_, params0, flops0, bytes0), (_, params1, flops1, bytes1) = rows
    assert _number(params1) < _number(params0)
    assert _number(bytes1) < _number(bytes0)
    assert os.path.getsize(out / "pruned.tflite") == _number(bytes1)
    diff = re.search(
        r"max \|pruned - masked original\| = (\S+) \(output "
        r"scale (\S+)\)",
        stdout,
    )
    assert _number(diff.group(1)) < 1e-2 * _number(diff.group(2))


@needs_sklearn
def test_custom_layer_rule_quick(tmp_path):
    out = tmp_path / "artifacts"
    stdout = _run(
        "custom_layer_rule.py", "--quick", "--out", str(out), cwd=tmp_path
    )
    assert (
        "before register_rule: ValueError: Cannot prune through layer "
        "'scale' (LayerScale)"
    ) in stdout
    assert "unit group 0: 128 units over layers ['hidden', 'scale']" in (stdout)
    difference = re.search(
        r"max \|pruned - trained\| on 360 test images: "
        r"(\S+)$",
        stdout,
        re.M,
    )
    assert _number(difference.group(1)) <= 1e-5
    reload = re.search(r"max \|reloaded - pruned\| = (\S+)$", stdout, re.M)
    assert _number(reload.group(1)) == 0.0
    params = re.search(r"^params ([\d,]+) -> ([\d,]+),", stdout, re.M)
    assert _number(params.group(2)) < _number(params.group(1))
    assert os.listdir(out) == ["pruned.keras"]


# ------------------------------------------------- mnist_mlp's idx reader
def _write_idx(path, array, compress):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_read_idx_round_trip(tmp_path, compress):
    mnist_mlp = _load("mnist_mlp.py")
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    path = str(tmp_path / "images-idx3-ubyte")
    _write_idx(path, images, compress)
    np.testing.assert_array_equal(mnist_mlp.read_idx(path), images)


def test_read_idx_rejects_other_files(tmp_path):
    mnist_mlp = _load("mnist_mlp.py")
    path = tmp_path / "not-idx"
    path.write_bytes(b"PK\x03\x04rest of a zip file")
    with pytest.raises(
        ValueError,
        match=(
            r"is not a uint8 idx file: expected the header bytes 00 00 08, "
            r"received 50 4b 03\. Pass the MNIST \*-ubyte\(\.gz\) files\."
        ),
    ):
        mnist_mlp.read_idx(str(path))
    _write_idx(str(path), np.zeros((4, 3), np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(
        ValueError,
        match=(
            r"is truncated: its header says shape \(4, 3\) \(12 values\), "
            r"the file holds 10\."
        ),
    ):
        mnist_mlp.read_idx(str(path))


def test_load_mnist_splits_t10k(tmp_path):
    mnist_mlp = _load("mnist_mlp.py")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 28, 28))
    labels = rng.integers(0, 10, (50,))
    _write_idx(str(tmp_path / "t10k-images-idx3-ubyte.gz"), images, True)
    _write_idx(str(tmp_path / "t10k-labels-idx1-ubyte"), labels, False)
    x_train, y_train, x_test, y_test, name = mnist_mlp.load_mnist(
        str(tmp_path), seed=0
    )
    assert name == "MNIST t10k (80/20 split)"
    assert x_train.shape == (40, 784) and x_test.shape == (10, 784)
    assert x_train.dtype == np.float32 and float(x_train.max()) <= 1.0
    # Every example lands on exactly one side, with its own label.
    both = np.concatenate([x_train, x_test]) * 255.0
    flat = images.reshape(50, 784)
    order = [int(np.argmin(np.abs(flat - row).sum(axis=1))) for row in both]
    assert sorted(order) == list(range(50))
    np.testing.assert_array_equal(
        np.concatenate([y_train, y_test]), labels[order]
    )


def test_load_mnist_names_missing_files(tmp_path):
    mnist_mlp = _load("mnist_mlp.py")
    (tmp_path / "readme.txt").write_text("")
    with pytest.raises(
        SystemExit,
        match=(
            r"expected t10k-images-idx3-ubyte\.gz and "
            r"t10k-labels-idx1-ubyte\.gz \(gzipped or not\) there, found "
            r"\['readme\.txt'\]\."
        ),
    ):
        mnist_mlp.load_mnist(str(tmp_path), seed=0)


def test_readme_lists_every_example():
    with open(os.path.join(EXAMPLES, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    on_disk = sorted(
        name for name in os.listdir(EXAMPLES) if name.endswith(".py")
    )
    assert set(SCRIPTS) <= set(on_disk)
    for script in on_disk:
        assert f"python examples/{script}" in readme, script
