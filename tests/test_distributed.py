"""Training under tf.distribute.MirroredStrategy on 2 logical CPU devices
matches one device: same penalties, same weights, same dead units."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts",
                      "mirrored_training.py")

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="tf.distribute runs on the TensorFlow backend")


def _run(*args):
    result = subprocess.run(
        [sys.executable, SCRIPT, *args], capture_output=True, text=True,
        timeout=300, env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _assert_same(single, multi):
    np.testing.assert_allclose(multi["loss"], single["loss"], rtol=1e-5)
    np.testing.assert_allclose(multi["penalty"], single["penalty"],
                               rtol=1e-5)
    for a, b in zip(single["weights"], multi["weights"]):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5)


def test_regularizer_under_mirrored_strategy():
    result = _run()
    assert result["replicas"] == 2
    _assert_same(result["single"], result["multi"])
    assert result["single"]["penalty"] > 0


def test_proximal_callback_under_mirrored_strategy():
    result = _run("--callback")
    single, multi = result["single"], result["multi"]
    _assert_same(single, multi)
    # Units die during the run, and the same ones on both setups.
    assert single["live_units"] == multi["live_units"]
    assert single["live_units"][-1] < single["live_units"][0]
    for a, b in zip(single["weights"], multi["weights"]):
        a, b = np.asarray(a), np.asarray(b)
        if a.ndim == 2:
            np.testing.assert_array_equal(np.all(a == 0, axis=0),
                                          np.all(b == 0, axis=0))
