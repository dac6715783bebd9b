"""Test setup: quiet TensorFlow logs, deterministic seeds per test, and the
slow tier (the tests listed in `slow_tests.txt`, chosen from a timed run by
`tools/slow_tests.py`, are marked `slow`: `pytest -m "not slow"` is the
fast tier)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402

# The scripts configure devices before TensorFlow or JAX start, so they run
# in fresh processes (started by the tests that need them); imported here by
# `--doctest-modules` they would configure, or fail in, this process.
collect_ignore = ["scripts"]


@pytest.fixture(autouse=True)
def _seed_and_clear():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


def _slow_tests():
    path = os.path.join(os.path.dirname(__file__), "slow_tests.txt")
    if not os.path.exists(path):
        return frozenset()
    with open(path) as f:
        lines = (line.strip() for line in f)
        return frozenset(line for line in lines if line and line[0] != "#")


_SLOW = _slow_tests()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid in _SLOW:
            item.add_marker(pytest.mark.slow)
