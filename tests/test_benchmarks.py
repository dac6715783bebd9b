"""Smoke test of the benchmark harness (benchmarks/), at toy size.

Keeps `python -m benchmarks` from rotting: the data split, the idx reader,
the reference rebuild against the masked model, and one B1 method end to
end on scikit-learn digits. Speed is measured by the benchmarks, never
asserted here.
"""

import gzip
import os
import struct

import numpy as np
import pytest

from benchmarks import b1_compression
from benchmarks import common
from benchmarks import data as data_lib
from benchmarks import models as models_lib


def test_split_is_fixed_disjoint_and_sized():
    x = np.arange(10000)[:, None].astype("float32")
    y = np.arange(10000)
    first = data_lib.split(x, y, seed=0)
    second = data_lib.split(x, y, seed=0)
    assert [len(first[k]) for k in ("y_train", "y_val", "y_test")] == [
        8000, 1000, 1000]
    np.testing.assert_array_equal(first["y_val"], second["y_val"])
    together = np.concatenate([first["y_train"], first["y_val"],
                               first["y_test"]])
    assert len(np.unique(together)) == 10000
    np.testing.assert_array_equal(first["x_test"][:, 0], first["y_test"])


def test_read_idx_roundtrip_and_bad_magic(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = os.path.join(tmp_path, "images.gz")
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, 3]) + struct.pack(">III", 2, 3, 4)
                + images.tobytes())
    np.testing.assert_array_equal(data_lib.read_idx(path), images)
    bad = os.path.join(tmp_path, "bad")
    with open(bad, "wb") as f:
        f.write(b"\x01\x02\x08\x01")
    with pytest.raises(ValueError, match="is not an idx file"):
        data_lib.read_idx(bad)


def test_missing_mnist_dir_says_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="must hold t10k-images"):
        data_lib.load_mnist(str(tmp_path))


@pytest.mark.parametrize("name", ["lenet300", "lenet5_bn"])
def test_reference_rebuild_matches_masked_model(name):
    model = models_lib.build(name, (8, 8, 1), widths=(6, 5, 7)[
        : 2 if name == "lenet300" else 3])
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    model(x)
    keep = models_lib.keep_by_fraction(models_lib.unit_norms(model), 0.5)
    masked = models_lib.masked_copy(model, keep)
    small = models_lib.reference_rebuild(masked, keep, name, (8, 8, 1))
    assert models_lib.kept_widths(model, keep) == tuple(
        layer.kernel.shape[-1] for layer, _ in
        models_lib.prunable_layers(small))
    np.testing.assert_allclose(common.logits(small, x),
                               common.logits(masked, x), atol=1e-5)


def test_one_method_end_to_end_on_digits():
    data = data_lib.load(None)
    assert data["name"] == "sklearn-digits"
    result = b1_compression.run(data, "toy", log=lambda m: None,
                                methods=["unregularized"])
    block = result["models"]["lenet300"]
    halved = [p for p in block["points"] if p["keep_fraction"] == 0.5][0]
    assert halved["units_kept"] == 200
    assert halved["params"] < halved["params_dense"]
    assert halved["accuracy_removed"] == halved["accuracy_masked"]
    headline = block["headlines"]["unregularized"]
    assert headline["tflite_bytes"] > 0
    assert 0.0 <= headline["test_mean"] <= 1.0
