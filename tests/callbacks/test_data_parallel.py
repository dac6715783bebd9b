"""Training under JAX `keras.distribution.DataParallel` on 2 XLA host
devices matches one device: same losses, same live units, same weights.

The check runs in a subprocess (the device count must be set before JAX
starts), on the JAX backend whatever backend runs the tests."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

SCRIPTS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"
)
SCRIPT = os.path.join(SCRIPTS, "data_parallel_training.py")

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="needs JAX installed"
)


@pytest.fixture(scope="module")
def result():
    completed = subprocess.run(
        [sys.executable, SCRIPT],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("recipe", ["strength", "budget"])
def test_data_parallel_matches_one_device(result, recipe):
    assert result["devices"] == 2
    single, multi = result[recipe]["single"], result[recipe]["multi"]
    np.testing.assert_allclose(multi["loss"], single["loss"], rtol=1e-5)
    assert multi["live_units"] == single["live_units"]
    # Units die during the run (the callback acts under the distribution):
    # the two hidden layers start with 16 + 8 units.
    assert single["live_units"][-1] < 24
    if recipe == "budget":
        assert single["live_units"][-1] == 10
    for a, b in zip(single["weights"], multi["weights"]):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-6)
