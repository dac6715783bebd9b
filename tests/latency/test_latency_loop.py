"""Tests for latency targets held as measured (`prune_model(measure=...)`)
and the interleaved timer.

The "device" is synthetic: a model's true latency is its FLOPs times a
constant plus a fixed cost the table does not know, multiplied by a slow
drift and plus seeded noise, so the table is wrong the way a real table is
on a loaded machine and no test depends on a clock.
"""

import math
import warnings

import keras
import numpy as np
import pytest

import keras_guided
from keras_guided import stats
from tests.helpers import build_table
from tests.helpers import latency_cnn


class Device:
    """True ms = (flops * per_flop + fixed) * (1 + drift) + noise."""

    def __init__(self, base, fixed_share=0.3, drift=0.2, noise=0.01, seed=0):
        self.base_flops = stats.count_flops(base)
        self.fixed = fixed_share / (1 - fixed_share)  # in base-FLOPs units
        self.drift, self.noise = drift, noise
        self.rng = np.random.default_rng(seed)
        self.clock = 0
        self.prepared = 0

    def true_ratio(self, model):
        share = stats.count_flops(model) / self.base_flops
        return (share + self.fixed) / (1 + self.fixed)

    def __call__(self, model):
        self.prepared += 1
        ms = self.true_ratio(model)

        def run():
            self.clock += 1
            drift = self.drift * math.sin(self.clock / 7.0)
            return ms * (1 + drift) + self.noise * ms * float(
                self.rng.standard_normal()
            )

        return run


def _model_and_table(tmp_path):
    model = latency_cnn(filters=32, pointwise=48)
    return model, build_table(model, tmp_path)


def _latency_warnings(caught):
    return [str(w.message) for w in caught if "atency" in str(w.message)]


# ------------------------------------------------------------------ timer
def test_interleaved_rounds_cancel_a_linear_drift():
    clock = iter(range(10**6))

    def time_model(model):
        ms = float(model.count_params())
        return lambda: ms * (1 + 0.05 * next(clock))  # 5 % a timing

    interleaved = keras_guided.latency.InterleavedTimer(
        time_model, num_rounds=5
    )
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    comparison = interleaved.compare(base, small)
    expected = small.count_params() / base.count_params()
    # Timed one after the other, the drift would be 5 % per timing.
    assert comparison.ratios == pytest.approx([expected] * 5, rel=1e-12)
    assert comparison.spread == pytest.approx(0.0, abs=1e-9)
    assert comparison.base_ms > base.count_params()  # it did drift


def test_unstable_timer_warns_with_the_spread():
    rng = np.random.default_rng(0)

    def time_model(model):
        ms = float(model.count_params())
        return lambda: ms * (1 + 0.4 * abs(rng.standard_normal()))

    interleaved = keras_guided.latency.InterleavedTimer(
        time_model, num_rounds=6, max_spread=0.05
    )
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.warns(UserWarning) as caught:
        comparison = interleaved.compare(base, small)
    assert comparison.spread > 0.05
    assert str(caught[0].message) == (
        "Unstable latency timing: the per-round ratios of candidate to base "
        f"spread by {comparison.spread:.1%} (coefficient of variation over "
        "6 rounds; max_spread=5.0%), so the measured share "
        f"{comparison.ratio:.3f} is uncertain. Time on a quieter machine or "
        "raise `num_rounds`."
    )


def test_a_steady_timer_does_not_warn():
    def time_model(model):
        ms = float(model.count_params())
        return lambda: ms

    interleaved = keras_guided.latency.InterleavedTimer(time_model)
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert interleaved.compare(base, base).ratio == 1.0


# ------------------------------------------------------------ closed loop
@pytest.mark.parametrize("asked", [0.5, 0.4])
def test_closed_loop_holds_the_target_under_noise_and_drift(
    timer, tmp_path, asked
):
    model, table = _model_and_table(tmp_path)
    device = Device(model)
    open_loop = keras_guided.prune_model(
        model, target={"latency": asked}, latency_table=table
    )
    # The table does not know the fixed cost: open loop misses.
    assert device.true_ratio(open_loop) / asked - 1 > 0.1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        small, report = keras_guided.prune_model(
            model,
            target={"latency": asked},
            latency_table=table,
            measure=device,
            return_report=True,
        )
    check = report.latency
    assert not _latency_warnings(caught)
    assert check.within and 1 < len(check.tries) <= 5
    assert check.asked == asked
    assert abs(check.measured / asked - 1) <= 0.1
    # Held on the noise-free truth too, not only on a lucky timing.
    assert abs(device.true_ratio(small) / asked - 1) <= 0.12
    assert check.tries[check.chosen].measured == check.measured
    assert check.summary() in report.notes
    # One run per candidate plus the base.
    assert device.prepared == len(check.tries) + 1


def test_closed_loop_returns_the_model_of_the_chosen_plan(timer, tmp_path):
    model, table = _model_and_table(tmp_path)
    small, report = keras_guided.prune_model(
        model,
        target={"latency": 0.5},
        latency_table=table,
        measure=Device(model, noise=0.0),
        return_report=True,
    )
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype("float32")
    assert report.max_abs_diff < 1e-4
    aim = report.latency.tries[report.latency.chosen].aim
    again = keras_guided.prune_model(
        model, target={"latency": aim}, latency_table=table
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(small(x)),
        keras.ops.convert_to_numpy(again(x)),
        atol=1e-6,
    )


def test_a_floor_above_the_target_is_reported_with_the_numbers(timer, tmp_path):
    model, table = _model_and_table(tmp_path)
    # 70 % of the device's time never shrinks: 0.4 cannot be measured.
    device = Device(model, fixed_share=0.7, drift=0.0, noise=0.0)
    with pytest.warns(UserWarning) as caught:
        small, report = keras_guided.prune_model(
            model,
            target={"latency": 0.4},
            latency_table=table,
            measure=device,
            return_report=True,
        )
    check = report.latency
    deepest = check.tries[-1]
    assert not check.within and len(check.tries) < 5
    assert check.reason == (
        "the deepest plan the table allows (within `min_units`) is at "
        f"{deepest.aim:.3f} of the table and still measures "
        f"{deepest.measured:.3f}"
    )
    assert check.measured == min(t.measured for t in check.tries)
    assert _latency_warnings(caught) == [
        "Latency target not met as measured: asked 0.400 of the base's "
        f"latency, measured {check.measured:.3f} "
        f"({check.measured / 0.4 - 1:+.1%}; tolerance 10%) after "
        f"{len(check.tries)} tries: {check.reason}. Returning the closest "
        "candidate; every try is in `PruneReport.latency`."
    ]
    assert "NOT within 10%" in check.summary()


def test_out_of_tries_is_reported(timer, tmp_path):
    model, table = _model_and_table(tmp_path)
    device = Device(model, drift=0.0, noise=0.0)
    with pytest.warns(
        UserWarning,
        match="after 1 tries: stopped after "
        r"max_tries=1\. Returning",
    ):
        _, report = keras_guided.prune_model(
            model,
            target={"latency": 0.5},
            latency_table=table,
            measure=device,
            max_tries=1,
            latency_tolerance=0.05,
            return_report=True,
        )
    assert report.latency.reason == "stopped after max_tries=1"
    assert report.latency.tolerance == 0.05


def test_a_count_target_is_held_in_measured_ms(timer, tmp_path):
    model, table = _model_and_table(tmp_path)
    device = Device(model, drift=0.0, noise=0.0)  # the base runs in 1 ms
    _, report = keras_guided.prune_model(
        model,
        target={"latency": 1},
        latency_table=table,
        measure=device,
        return_report=True,
    )
    assert report.latency.asked == pytest.approx(1.0)
    _, report = keras_guided.prune_model(
        model,
        latency_table=table,
        target={"latency": 0.6},
        measure=keras_guided.latency.InterleavedTimer(device, num_rounds=3),
        return_report=True,
    )
    assert report.latency.within


def test_without_measure_nothing_is_timed(timer, tmp_path):
    model, table = _model_and_table(tmp_path)
    _, report = keras_guided.prune_model(
        model, target={"latency": 0.5}, latency_table=table, return_report=True
    )
    assert report.latency is None


# ----------------------------------------------------------------- errors
def test_measure_without_a_latency_target_is_refused():
    with pytest.raises(ValueError) as error:
        keras_guided.prune_model(
            latency_cnn(), target={"flops": 0.5}, measure="litert"
        )
    assert str(error.value) == (
        "`measure` times the candidates of a latency target. Received: "
        "measure='litert' with target={'flops': 0.5} and latency_table=None."
        " Pass target={'latency': 0.5} and latency_table=table, or drop "
        "measure."
    )


def test_a_bad_measure_is_refused(timer, tmp_path):
    model, table = _model_and_table(tmp_path)
    with pytest.raises(ValueError) as error:
        keras_guided.prune_model(
            model,
            target={"latency": 0.5},
            latency_table=table,
            measure="tflite",
        )
    assert str(error.value) == (
        "`measure` must be 'litert', a keras_guided.latency.InterleavedTimer"
        ", or a callable `measure(model) -> run` (`run()` returns the ms of "
        "one timing). Received: measure='tflite'"
    )


@pytest.mark.parametrize("value", [0, 1.0, -0.1, "0.1", True])
def test_a_bad_tolerance_is_refused(value):
    with pytest.raises(ValueError) as error:
        keras_guided.prune_model(latency_cnn(), latency_tolerance=value)
    assert str(error.value) == (
        "`latency_tolerance` must be a float in (0, 1): the relative "
        "distance allowed between the measured and the asked share, e.g. "
        f"0.1. Received: latency_tolerance={value!r}"
    )


@pytest.mark.parametrize("value", [0, 2.0, True])
def test_bad_max_tries_is_refused(value):
    with pytest.raises(ValueError) as error:
        keras_guided.prune_model(latency_cnn(), max_tries=value)
    assert str(error.value) == (
        "`max_tries` must be an int >= 1 (candidates timed at most). "
        f"Received: max_tries={value!r}"
    )


def test_bad_timer_settings_are_refused():
    timer_class = keras_guided.latency.InterleavedTimer
    with pytest.raises(ValueError) as error:
        timer_class(time_model=3)
    assert str(error.value) == (
        "`time_model` must be a callable `time_model(model) -> run` "
        "(`run()` returns the ms of one timing), or None for LiteRT. "
        "Received: time_model=3"
    )
    with pytest.raises(ValueError) as error:
        timer_class(lambda m: None, num_rounds=0)
    assert str(error.value) == (
        "`num_rounds` must be an int >= 1. Received: num_rounds=0"
    )
    with pytest.raises(ValueError) as error:
        timer_class(lambda m: None, max_spread=-1)
    assert str(error.value) == (
        "`max_spread` must be a float >= 0 (a coefficient of variation, "
        "e.g. 0.05). Received: max_spread=-1"
    )
    with pytest.raises(ValueError) as error:
        timer_class(clock="process")
    assert str(error.value) == (
        "`clock` must be one of ['auto', 'cpu', 'wall']. Received: "
        "clock='process'"
    )
    assert timer_class(num_threads=1).clock == "cpu"
    assert timer_class(num_threads=2).clock == "wall"
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    with pytest.raises(ValueError) as error:
        timer_class(lambda m: 5.0).compare(base, base)
    assert str(error.value) == (
        "`time_model(model)` must return a function of no arguments giving "
        "the ms of one timing. Received: float"
    )
    with pytest.raises(ValueError) as error:
        timer_class(lambda m: lambda: -1.0).compare(base, base)
    assert str(error.value) == (
        "A latency timing must be a positive number of ms. Received: base "
        "-1.0 and -1.0 ms, candidate -1.0 ms per timing."
    )
