"""Latency in `GuidedPruning`: budgets, cost-aware guidance, errors.

Timings are synthetic (`keras_guided.latency._measure.time_layer` replaced by a
bilinear function of the channel counts, as in `test_latency.py`), so the
tests are deterministic, fast, and run on every backend.
"""

import keras
import numpy as np
import pytest

import keras_guided
from keras_guided.latency import _measure as _latency_measure

_HINT = (
    "Build one with table = keras_guided.latency.build_latency_table(model) "
    "and pass latency_table=table."
)


def _timer(monkeypatch, slow=1.0):
    """Synthetic timings; the `tanh` layer (`d1`) is `slow` times slower."""

    def fake(layer_class, kwargs, input_shape, settings):
        if tuple(input_shape) == (1,) and kwargs.get("units") == 1:
            return 1e-3  # the interpreter's fixed cost
        cin, cout = input_shape[-1], kwargs["units"]
        scale = slow if kwargs.get("activation") == "tanh" else 1.0
        return 1e-3 + scale * 1e-4 * (cin + cout + cin * cout)

    monkeypatch.setattr(_latency_measure, "time_layer", fake)
    monkeypatch.setattr(_latency_measure, "check_runtime", lambda: None)
    # The whole model explains nothing more than its layers (no
    # calibration) unless a test says otherwise.
    monkeypatch.setattr(
        _latency_measure, "time_model", lambda model, settings, data=None: 0.0
    )


def _mlp(width=32, name="mlp"):
    return keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(width, activation="tanh", name="d1"),
            keras.layers.Dense(32, activation="relu", name="d2"),
            keras.layers.Dense(4, name="out"),
        ],
        name=name,
    )


def _table(model, tmp_path, monkeypatch, slow=1.0):
    _timer(monkeypatch, slow)
    return keras_guided.build_latency_table(
        model, cache_dir=str(tmp_path / f"slow{slow}"), verbose=0
    )


def _fit(model, callback, epochs):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 16)).astype("float32")
    y = (x[:, :4] * 2.0).astype("float32")
    model.compile(keras.optimizers.SGD(0.05), "mse")
    return model.fit(
        x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=[callback]
    )


def _table_ms(table, model):
    """The table's prediction of a (pruned) model of Dense layers."""
    return sum(
        table.predict(layer.name, *layer.kernel.shape[-2:])
        for layer in model.layers
    )


# ---------------------------------------------------------------- budget
def test_latency_budget_lands_under_the_goal_and_prunes_to_it(
    tmp_path, monkeypatch
):
    model = _mlp()
    table = _table(model, tmp_path, monkeypatch)
    pruning = keras_guided.GuidedPruning(
        target={"latency": 0.5}, latency_table=table
    )
    history = _fit(model, pruning, epochs=6)
    report = pruning.budget_report
    assert report["metric"] == "latency"
    assert report["start"] == pytest.approx(table.total_ms)
    assert report["goal"] == pytest.approx(0.5 * table.total_ms)
    final = history.history["live_latency"][-1]
    assert final <= report["goal"] * (1 + 1e-9)
    assert final < 0.9 * table.total_ms  # something was pruned
    pruned = keras_guided.prune_model(model)
    assert _table_ms(table, pruned) == pytest.approx(final, rel=1e-9)


def test_live_latency_of_the_full_model_is_the_table_total(
    tmp_path, monkeypatch
):
    model = _mlp()
    table = _table(model, tmp_path, monkeypatch)
    pruning = keras_guided.GuidedPruning(
        strength=0.0, cost="latency", latency_table=table
    )
    history = _fit(model, pruning, epochs=1)
    assert history.history["live_units"] == [64]
    assert history.history["live_latency"][0] == pytest.approx(
        table.total_ms, rel=1e-9
    )
    assert "live_flops" not in history.history


# ------------------------------------------------------------------ cost
def _first_over_second(model, callback):
    _fit(model, callback, epochs=1)
    coefficients = callback.unit_coefficients  # groups of d1 and d2
    return float(coefficients[0][0] / coefficients[1][0])


def test_latency_cost_follows_the_table(tmp_path, monkeypatch):
    """`d1` made 50x slower in the table: its units cost more under
    `cost="latency"` than under `cost="flops"` or an even table."""
    ratios = {}
    for slow in (1.0, 50.0):
        model = _mlp()
        table = _table(model, tmp_path, monkeypatch, slow=slow)
        ratios[slow] = _first_over_second(
            model,
            keras_guided.GuidedPruning(
                strength=0.0,
                guidance="uniform",
                cost="latency",
                latency_table=table,
            ),
        )
    flops = _first_over_second(
        _mlp(),
        keras_guided.GuidedPruning(
            strength=0.0, guidance="uniform", cost="flops"
        ),
    )
    assert ratios[50.0] > 5 * ratios[1.0]
    assert ratios[50.0] > 5 * flops


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"target": {"latency": 0.5}}, "target={'latency': 0.5}"),
        (
            {"target": {"latency": 3}, "schedule": "constant"},
            "target={'latency': 3}",
        ),
        ({"cost": "latency"}, "cost='latency'"),
    ],
)
def test_latency_without_a_table_says_how_to_build_one(kwargs, argument):
    with pytest.raises(ValueError) as error:
        keras_guided.GuidedPruning(**kwargs)
    assert str(error.value) == (
        f"GuidedPruning({argument}) needs a latency table measured on the "
        "target runtime. Received: latency_table=None. " + _HINT
    )


def test_a_table_without_latency_is_refused(tmp_path, monkeypatch):
    table = _table(_mlp(), tmp_path, monkeypatch)
    with pytest.raises(ValueError) as error:
        keras_guided.GuidedPruning(target={"flops": 0.5}, latency_table=table)
    assert str(error.value) == (
        "`latency_table` prices latency only, and this GuidedPruning has no "
        "latency target or cost. Received: latency_table=<LatencyTable of "
        "model 'mlp'> with target={'flops': 0.5}, cost=None. Pass "
        "target={'latency': 0.5} or cost='latency', or drop latency_table."
    )


def test_a_table_must_be_a_latency_table():
    with pytest.raises(ValueError) as error:
        keras_guided.GuidedPruning(
            target={"latency": 0.5}, latency_table={"d1": 1.0}
        )
    assert str(error.value) == (
        "`latency_table` must be a keras_guided.latency.LatencyTable. "
        "Received: dict. " + _HINT
    )


def test_table_of_another_model_is_refused_at_fit(tmp_path, monkeypatch):
    table = _table(_mlp(name="first"), tmp_path, monkeypatch)
    model = _mlp(width=24, name="second")
    pruning = keras_guided.GuidedPruning(
        target={"latency": 0.5}, latency_table=table
    )
    with pytest.raises(ValueError) as error:
        _fit(model, pruning, epochs=1)
    assert str(error.value) == (
        "`latency_table` does not match model 'second': it was built for "
        "model 'first'. For layer 'd1' the model has Dense with 16 input "
        "and 24 output channels but the table has Dense with 16 input and "
        "32 output channels. " + _HINT
    )
