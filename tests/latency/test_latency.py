"""Tests for keras_guided.latency and latency targets in prune_model.

Timings are synthetic (`keras_guided.latency._measure.time_layer` replaced by a
bilinear function of the channel counts), so the tests are deterministic,
fast, and run on every backend; one TensorFlow-only test measures for real
and asserts nothing about speed.
"""

import json
import os

import keras
import numpy as np
import pytest

import keras_guided
from keras_guided import scoring
from keras_guided.latency import _interpolation as _latency_interpolation
from keras_guided.latency import _measure as _latency_measure
from keras_guided.latency import _sampling as _latency_sampling
from keras_guided.latency import _settings as _latency_settings
from keras_guided.latency import _signatures as _latency_signatures
from tests.helpers import build_table
from tests.helpers import fake_layer_ms
from tests.helpers import latency_cnn


# --------------------------------------------------------- interpolation
def test_sample_counts_are_quarters_on_multiples_of_8_and_full_width():
    assert _latency_sampling.sample_counts(96, 4) == [24, 48, 72, 96]
    assert _latency_sampling.sample_counts(1280, 4) == [320, 640, 960, 1280]
    assert _latency_sampling.sample_counts(16, 4) == [4, 8, 12, 16]
    assert _latency_sampling.sample_counts(3, 4) == [3]


def test_interpolation_is_exact_on_bilinear_timings(timer, tmp_path):
    table = build_table(latency_cnn(), tmp_path)
    spatial = (8, 8)
    for cin, cout in [(3, 16), (3, 5), (3, 1)]:
        expected = fake_layer_ms(
            keras.layers.Conv2D,
            {"filters": cout, "kernel_size": [3, 3]},
            spatial + (cin,),
            None,
        )
        assert table.predict("c1", cin, cout) == pytest.approx(expected)
    for cin, cout in [(16, 24), (13, 7), (2, 21), (16, 1)]:
        expected = fake_layer_ms(
            keras.layers.Conv2D,
            {"filters": cout, "kernel_size": [1, 1]},
            spatial + (cin,),
            None,
        )
        assert table.predict("c2", cin, cout) == pytest.approx(expected)
    for channels in (16, 11, 3):
        expected = fake_layer_ms(
            keras.layers.DepthwiseConv2D,
            {"kernel_size": [3, 3]},
            spatial + (channels,),
            None,
        )
        assert table.predict("dw", channels) == pytest.approx(expected)
    assert table.total_ms == pytest.approx(
        sum(table.predict(name) for name in ("c1", "dw", "c2", "out"))
    )


def test_noisy_grid_is_made_non_decreasing():
    grid = _latency_interpolation.monotone([[1.0, 0.5], [0.8, 2.0]])
    assert grid == ((1.0, 1.0), (1.0, 2.0))


def test_unmeasured_layers_are_estimated_from_flops(timer, tmp_path):
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(8, 1, name="conv")(inputs)
    outputs = keras.layers.SeparableConv2D(6, 3, name="separable")(x)
    model = keras.Model(inputs, outputs)
    table = build_table(model, tmp_path)
    entry = table.layers["separable"]
    flops = keras_guided.stats.layer_costs(model)["separable"]["flops"]
    conv = table.layers["conv"]
    assert entry.kind == "estimated"
    assert table.ms_per_flop == pytest.approx(conv.predict() / conv.flops)
    assert entry.predict() == pytest.approx(flops * table.ms_per_flop)


# ------------------------------------------------------------------ cache
def test_identical_signatures_are_measured_once(timer, tmp_path):
    inputs = keras.Input((8, 8, 16))
    x = keras.layers.Conv2D(16, 1, name="a")(inputs)
    x = keras.layers.Conv2D(16, 1, name="b")(x)
    outputs = keras.layers.Conv2D(16, 1, name="c")(x)
    table = build_table(keras.Model(inputs, outputs), tmp_path)
    assert len(timer) == 4 * 4 + 1  # one grid for three layers, overhead
    assert table.predict("a") == table.predict("c")


@pytest.mark.parametrize(
    "change",
    [
        {"num_threads": 2},
        {"quantization": "int8"},
        {"quantization": "float16"},
        {"num_runs": 5},
        {"statistic": "median"},
        {"num_samples": 3},
    ],
)
def test_cache_key_holds_every_setting(timer, tmp_path, change):
    model = latency_cnn()
    build_table(model, tmp_path, num_threads=1)
    first = len(timer)
    again = build_table(model, tmp_path, num_threads=1)
    assert len(timer) == first  # a hit: nothing re-measured
    assert (again.num_measured, again.num_cached) == (0, first - 1)
    settings = {"num_threads": 1, **change}
    other = build_table(model, tmp_path, **settings)
    assert other.num_measured > 0 and len(timer) > first  # a miss
    timed = timer[-1][3]
    for key, value in change.items():
        assert timed[key] == value


def test_cache_key_holds_the_runtime_versions(timer, tmp_path, monkeypatch):
    model = latency_cnn()
    build_table(model, tmp_path)
    first = len(timer)
    runtime = _latency_settings.runtime()
    monkeypatch.setattr(
        _latency_settings,
        "runtime",
        lambda: {**runtime, "ai-edge-litert": "0.0.1"},
    )
    assert build_table(model, tmp_path).num_measured == first - 1


def test_interrupted_build_leaves_a_valid_cache_and_resumes(
    timer, tmp_path, monkeypatch
):
    model = latency_cnn()
    full = build_table(model, tmp_path / "reference").num_measured
    tmp_path = tmp_path / "cache"
    timer.clear()
    fake = _latency_measure.time_layer

    def failing(layer_class, kwargs, input_shape, settings):
        if len(timer) == 5:
            raise KeyboardInterrupt
        return fake(layer_class, kwargs, input_shape, settings)

    monkeypatch.setattr(_latency_measure, "time_layer", failing)
    with pytest.raises(KeyboardInterrupt):
        build_table(model, tmp_path)
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].endswith(".json"), files
    with open(tmp_path / files[0]) as f:
        saved = json.load(f)
    done = sum(
        len(e["inputs"]) * len(e["outputs"])
        for k, e in saved["entries"].items()
        if k != _latency_signatures.OVERHEAD
    )
    assert 0 < done <= 5
    monkeypatch.setattr(_latency_measure, "time_layer", fake)
    resumed = build_table(model, tmp_path)
    assert (resumed.num_measured, resumed.num_cached) == (full - done, done)


def test_unreadable_cache_is_rebuilt_with_a_warning(timer, tmp_path):
    model = latency_cnn()
    table = build_table(model, tmp_path)
    (path,) = tmp_path.iterdir()
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable latency cache"):
        again = build_table(model, tmp_path)
    assert again.num_measured == table.num_measured
    with open(path) as f:
        assert json.load(f)["format"] == 1


# ---------------------------------------------------------------- targets
def test_prune_model_reaches_the_latency_target_in_the_table(timer, tmp_path):
    model = latency_cnn(filters=32, pointwise=48)
    table = build_table(model, tmp_path)
    small = keras_guided.prune_model(
        model, target={"latency": 0.5}, latency_table=table
    )
    # The bilinear timings are interpolated exactly, so the pruned model's
    # own table prices its widths as the plan did.
    kept = build_table(small, tmp_path).total_ms
    assert kept <= 0.5 * table.total_ms * (1 + 1e-9)
    largest_unit = max(
        table.predict(name) / table.layers[name].output_channels
        for name in ("c1", "dw", "c2")
    )
    assert kept >= 0.5 * table.total_ms - 2 * largest_unit


def test_latency_count_target_is_in_milliseconds(timer, tmp_path):
    model = latency_cnn(filters=32, pointwise=48)
    table = build_table(model, tmp_path)
    groups = keras_guided.find_unit_groups(model)
    goal_ms = 0.4 * table.total_ms
    plan = scoring.plan_from_target(
        groups, model, {"latency": 1}, latency_table=table
    )
    cost = scoring.plan_cost(groups, model, "latency", None, plan, table)
    assert cost <= 1.0
    plan = scoring.plan_from_target(
        groups, model, {"latency": 0.4}, latency_table=table
    )
    cost = scoring.plan_cost(groups, model, "latency", None, plan, table)
    assert cost <= goal_ms * (1 + 1e-9)


def test_latency_plan_cuts_where_the_table_says_time_goes(timer, tmp_path):
    inputs = keras.Input((8, 8, 8))
    slow = keras.layers.Conv2D(32, 5, padding="same", name="slow")(inputs)
    fast = keras.layers.Conv2D(32, 1, name="fast")(inputs)
    outputs = keras.layers.Concatenate()([slow, fast])
    outputs = keras.layers.Conv2D(4, 1, name="head")(outputs)
    model = keras.Model(inputs, outputs)
    table = build_table(model, tmp_path)
    groups = keras_guided.find_unit_groups(model)
    equal = [np.ones(g.num_units) for g in groups]
    plan = scoring.plan_from_target(
        groups, model, {"latency": 0.6}, scores=equal, latency_table=table
    )
    kept = {groups[i].slices[0].layer.name: len(k) for i, k in plan.items()}
    assert kept.get("slow", 32) < kept.get("fast", 32)


def test_round_to_still_reaches_the_target(timer, tmp_path):
    model = latency_cnn(filters=32, pointwise=48)
    table = build_table(model, tmp_path)
    small = keras_guided.prune_model(
        model, target={"latency": 0.5}, latency_table=table, round_to=8
    )
    assert small.get_layer("c2").filters % 8 == 0
    assert build_table(small, tmp_path).total_ms <= 0.5 * table.total_ms * (
        1 + 1e-9
    )


def test_the_model_is_not_mutated(timer, tmp_path):
    model = latency_cnn()
    before = [w.copy() for w in model.get_weights()]
    config = model.get_config()
    table = build_table(model, tmp_path)
    keras_guided.prune_model(
        model, target={"latency": 0.5}, latency_table=table
    )
    assert model.get_config() == config
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


# ----------------------------------------------------------------- errors
_HINT = (
    "Build one with table = keras_guided.latency.build_latency_table("
    "model) and pass latency_table=table."
)


def test_latency_target_without_a_table_says_how_to_build_one():
    with pytest.raises(ValueError) as error:
        keras_guided.prune_model(latency_cnn(), target={"latency": 0.5})
    assert str(error.value) == (
        "A latency target needs a latency table measured on the target "
        "runtime. Received: latency_table=None. " + _HINT
    )


def test_table_of_another_model_is_refused(timer, tmp_path):
    table = build_table(latency_cnn(filters=16, name="first"), tmp_path)
    with pytest.raises(ValueError) as error:
        keras_guided.prune_model(
            latency_cnn(filters=12, name="second"),
            target={"latency": 0.5},
            latency_table=table,
        )
    assert str(error.value) == (
        "`latency_table` does not match model 'second': it was built for "
        "model 'first'. For layer 'c1' the model has Conv2D with 3 input "
        "and 12 output channels but the table has Conv2D with 3 input and "
        "16 output channels. " + _HINT
    )


def test_table_with_another_target_is_refused(timer, tmp_path):
    model = latency_cnn()
    table = build_table(model, tmp_path)
    with pytest.raises(ValueError) as error:
        keras_guided.prune_model(
            model, target={"flops": 0.5}, latency_table=table
        )
    assert str(error.value) == (
        "`latency_table` prices a latency target only. Received: a 'flops' "
        "target with latency_table=<LatencyTable>. Pass target={'latency': "
        "0.5}, or drop latency_table."
    )
    with pytest.raises(ValueError, match="without a target"):
        keras_guided.prune_model(model, latency_table=table)


def test_a_table_must_be_a_latency_table():
    with pytest.raises(ValueError) as error:
        keras_guided.prune_model(
            latency_cnn(), target={"latency": 0.5}, latency_table={"c1": 1.0}
        )
    assert str(error.value) == (
        "`latency_table` must be a keras_guided.latency.LatencyTable. "
        "Received: dict. " + _HINT
    )


@pytest.mark.parametrize(
    "settings,message",
    [
        (
            {"quantization": "int4"},
            "`quantization` must be one of None, 'dynamic', 'float16', 'int8'. "
            "Received: quantization='int4'",
        ),
        (
            {"num_threads": 0},
            "`num_threads` must be an int >= 1. Received: num_threads=0",
        ),
        (
            {"num_samples": 1},
            "`num_samples` must be an int >= 2. Received: num_samples=1",
        ),
        (
            {"statistic": "mean"},
            "`statistic` must be one of ['min', 'median']. "
            "Received: statistic='mean'",
        ),
    ],
)
def test_bad_settings(settings, message, tmp_path):
    with pytest.raises(ValueError) as error:
        build_table(latency_cnn(), tmp_path, **settings)
    assert str(error.value) == message
    assert not os.listdir(tmp_path)


def test_unreachable_latency_target(timer, tmp_path):
    model = latency_cnn()
    table = build_table(model, tmp_path)
    with pytest.raises(ValueError, match="Cannot keep only 1% of the latency"):
        keras_guided.prune_model(
            model, target={"latency": 0.01}, latency_table=table
        )


# ------------------------------------------------------ real measurement
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="LiteRT conversion needs the TensorFlow backend",
)
def test_real_table_and_whole_model_latency(tmp_path):
    pytest.importorskip("ai_edge_litert.interpreter")
    model = keras.Sequential(
        [
            keras.Input((4, 4, 8)),
            keras.layers.Conv2D(8, 1, name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(4, name="head"),
        ]
    )
    table = build_table(model, tmp_path, num_samples=2, num_runs=2)
    assert table.num_measured == 2 * 2 + 2 * 1  # the head has 4 units
    assert all(table.predict(name) >= 0 for name in table.layers)
    assert "predicted total" in table.summary()
    assert keras_guided.latency.measure_latency(model, num_runs=2) > 0


def _tensor_types(content):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    return sorted({str(d["dtype"]) for d in interpreter.get_tensor_details()})


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="LiteRT conversion needs the TensorFlow backend",
)
@pytest.mark.parametrize("quantization", ["float32", None, "dynamic", "int8"])
def test_whole_model_timing_converts_the_bytes_export_writes(
    tmp_path, quantization
):
    pytest.importorskip("ai_edge_litert.interpreter")
    model = latency_cnn()
    data = np.random.default_rng(0).normal(size=(4, 8, 8, 3))
    data = data.astype("float32") if quantization == "int8" else None
    timed = _latency_measure._model_content(model, quantization, data)
    path = str(tmp_path / "m.tflite")
    keras_guided.export_tflite(
        model, path, quantization=quantization, representative_data=data
    )
    with open(path, "rb") as f:
        assert timed == f.read()


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="LiteRT conversion needs the TensorFlow backend",
)
@pytest.mark.parametrize("quantization", ["float32", "dynamic"])
def test_layer_timing_converts_as_export_does(tmp_path, quantization):
    # A table's sample is converted alone (not byte for byte the exported
    # model's file), with the same settings: the same tensor types.
    pytest.importorskip("ai_edge_litert.interpreter")
    timed = _latency_measure.layer_content(
        keras.layers.Dense, {"units": 64}, (128,), quantization
    )
    model = keras.Sequential([keras.Input((128,)), keras.layers.Dense(64)])
    path = str(tmp_path / "m.tflite")
    keras_guided.export_tflite(model, path, quantization=quantization)
    with open(path, "rb") as f:
        exported = f.read()
    assert _tensor_types(timed) == _tensor_types(exported)
    assert ("<class 'numpy.int8'>" in _tensor_types(timed)) == (
        quantization == "dynamic"
    )


def test_tables_timed_with_the_old_float32_conversion_are_not_reused(
    timer, tmp_path
):
    # Before conversion 2, float32 samples were timed as dynamic-range
    # files; a cache written then (settings without "conversion") is
    # measured again, not read.
    model = latency_cnn()
    full = build_table(model, tmp_path / "reference").num_measured
    settings = _latency_settings.check_settings(None, 1, 4, 20, "min")
    del settings["conversion"]
    key = _latency_signatures.cache_key(settings)
    with open(next((tmp_path / "reference").iterdir())) as f:
        entries = json.load(f)
    (tmp_path / "old").mkdir()
    with open(tmp_path / "old" / f"latency-{key}.json", "w") as f:
        json.dump({**entries, "settings": settings}, f)
    table = build_table(model, tmp_path / "old")
    assert (table.num_measured, table.num_cached) == (full, 0)


# -------------------------------------------------------------------- CLI
def test_cli_latency_prints_the_table_and_prune_uses_it(
    timer, tmp_path, monkeypatch, capsys
):
    from keras_guided import cli

    monkeypatch.setenv("KERAS_GUIDED_CACHE", str(tmp_path / "cache"))
    model = latency_cnn(filters=32, pointwise=48)
    path = str(tmp_path / "model.keras")
    model.save(path)
    assert cli.main(["latency", path, "--no-measure", "--threads", "2"]) == 0
    out = capsys.readouterr().out
    assert "| c2 | Conv2D | measured |" in out
    assert "predicted total:" in out and "2 thread(s)" in out
    measured = len(timer)
    pruned = str(tmp_path / "small.keras")
    assert (
        cli.main(
            [
                "prune",
                path,
                "-o",
                pruned,
                "--target",
                "0.5",
                "--target-kind",
                "latency",
            ]
        )
        == 0
    )
    assert len(timer) == 2 * measured  # 1 thread: another cache entry
    assert (
        cli.main(
            [
                "prune",
                path,
                "-o",
                pruned,
                "--target",
                "0.5",
                "--target-kind",
                "latency",
            ]
        )
        == 0
    )
    assert len(timer) == 2 * measured  # now cached
    assert "building the LiteRT latency table" in capsys.readouterr().out


def test_whole_model_time_the_layers_leave_unexplained_is_spread_per_channel(
    timer, tmp_path, monkeypatch
):
    model = latency_cnn()
    layers_only = build_table(model, tmp_path / "a", whole_model=False)
    assert layers_only.measured_ms is None
    timed = []

    def whole(model, settings, data=None):
        timed.append(model.name)
        return layers_only.total_ms + 1.0

    monkeypatch.setattr(_latency_measure, "time_model", whole)
    table = build_table(model, tmp_path / "b")
    # The total is the whole model's measured time; the 1 ms the layers
    # do not explain is spread in proportion to the activations written
    # (c1, dw and c2 write 8 x 8 positions per channel, out 1).
    assert table.measured_ms == pytest.approx(layers_only.total_ms + 1.0)
    assert table.unexplained_ms == pytest.approx(1.0)
    assert table.total_ms == pytest.approx(table.measured_ms)
    written = {"c1": 64 * 16, "dw": 64 * 16, "c2": 64 * 24, "out": 10}
    for name, values in written.items():
        extra = table.predict(name) - layers_only.predict(name)
        assert extra == pytest.approx(values / sum(written.values()))
    # Linear in the kept output channels (kept inputs for depthwise).
    assert table.predict("c2", 16, 12) - layers_only.predict(
        "c2", 16, 12
    ) == pytest.approx(64 * 12 / sum(written.values()))
    assert table.predict("dw", 8) - layers_only.predict(
        "dw", 8
    ) == pytest.approx(64 * 8 / sum(written.values()))
    # Timed once, then read from the cache.
    again = build_table(model, tmp_path / "b")
    assert timed == [model.name]
    assert again.total_ms == pytest.approx(table.total_ms)


def test_whole_model_that_cannot_be_timed_prices_the_layers_alone(
    timer, tmp_path, monkeypatch
):
    def fails(model, settings, data=None):
        raise ValueError("several inputs")

    monkeypatch.setattr(_latency_measure, "time_model", fails)
    with pytest.warns(
        UserWarning,
        match=r"could not be timed \(ValueError: "
        r"several inputs\); the latency table prices its "
        r"layers alone",
    ):
        table = build_table(latency_cnn(), tmp_path)
    assert table.measured_ms is None and table.unexplained_ms == 0.0


class _SubclassedDense(keras.layers.Dense):
    """A Dense subclass: its rule is Dense's, so is its latency."""


class _SubclassedConv2D(keras.layers.Conv2D):
    pass


def test_subclasses_are_measured_like_their_base_layer(timer, tmp_path):
    def model(dense, conv):
        inputs = keras.Input((8, 8, 3))
        x = conv(8, 1, name="conv")(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, dense(4, name="out")(x))

    base = build_table(
        model(keras.layers.Dense, keras.layers.Conv2D), tmp_path / "base"
    )
    timer.clear()
    sub = build_table(
        model(_SubclassedDense, _SubclassedConv2D), tmp_path / "sub"
    )
    for name in ("conv", "out"):
        assert sub.layers[name].kind == "measured"
        assert sub.layers[name].predict() == base.layers[name].predict()
    assert {call[0] for call in timer} == {"Conv2D", "Dense"}


def test_a_layer_timed_as_depthwise_follows_its_inputs_whatever_its_name():
    grid = ((4, 8), (8,), ((1.0,), (2.0,)))
    entry = keras_guided.latency.LayerLatency(
        "mix", "ChannelMix", "measured", 8, 8, (grid,), timed_as="depthwise"
    )
    assert entry.predict(4, 8) == pytest.approx(1.0)
    assert entry.predict(8, 2) == pytest.approx(2.0)
    named = keras_guided.latency.LayerLatency(
        "dw", "DepthwiseConv2D", "measured", 8, 8, (grid,), timed_as="conv"
    )
    assert named.written(4, 2) == 2  # its rule times it as a conv
