"""Test setup: quiet TensorFlow logs, deterministic seeds per test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_and_clear():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()
