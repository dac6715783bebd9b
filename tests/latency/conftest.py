"""The `timer` fixture of the latency tests: synthetic timings, so the tests
are deterministic, fast, and run on every backend."""

import pytest

from keras_guided.latency import _measure as _latency_measure
from tests.helpers import FAKE_OVERHEAD_MS
from tests.helpers import fake_layer_ms


@pytest.fixture
def timer(monkeypatch):
    """Replaces the measurement; returns the list of timed samples."""
    calls = []

    def fake(layer_class, kwargs, input_shape, settings):
        calls.append(
            (layer_class.__name__, dict(kwargs), input_shape, dict(settings))
        )
        if tuple(input_shape) == (1,) and kwargs.get("units") == 1:
            return FAKE_OVERHEAD_MS  # the empty-model probe
        return FAKE_OVERHEAD_MS + fake_layer_ms(
            layer_class, kwargs, input_shape, settings
        )

    monkeypatch.setattr(_latency_measure, "time_layer", fake)
    monkeypatch.setattr(_latency_measure, "check_runtime", lambda: None)
    # The whole model explains nothing more than its layers (no
    # calibration) unless a test says otherwise.
    monkeypatch.setattr(
        _latency_measure, "time_model", lambda model, settings, data=None: 0.0
    )
    return calls
