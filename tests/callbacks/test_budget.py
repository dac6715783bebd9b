"""The budget recipe: the controller (pure) and `GuidedPruning(target=...)`
landing on units, params and FLOPs budgets."""

import math
import warnings

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

import keras_guided
from keras_guided import budget
from keras_guided.callbacks import _budget_mode

# ------------------------------------------------------------ pure parts


@pytest.mark.parametrize(
    "target,expected",
    [
        ({"units": 66}, ("units", 66)),
        ({"flops": 0.1}, ("flops", 0.1)),
        ({"params": 1.0}, ("params", 1.0)),
        ({"params": np.int64(7)}, ("params", 7)),
        ({"latency": 0.4}, ("latency", 0.4)),
    ],
)
def test_parse_budget_accepts_the_one_grammar(target, expected):
    assert budget.parse_budget(target) == expected


@pytest.mark.parametrize(
    "target",
    [
        0.5,
        {"units": 0},
        {"flops": 1.5},
        {"latency": 0.0},
        {"units": True},
        {"speed": 0.5},
        {"units": 10, "flops": 0.5},
        {"flops": float("nan")},
    ],
)
def test_parse_budget_message(target):
    with pytest.raises(ValueError) as error:
        budget.parse_budget(target)
    assert str(error.value) == (
        "`target` must be a dict with one key in ['units', 'params', "
        "'flops', 'latency'] and a value that is a fraction to keep (a float "
        "in (0, 1]) or a count (an int >= 1), e.g. {'flops': 0.1} or {'units': "
        f"66}}. Received: target={target!r}"
    )


def test_budget_value_fraction_and_count():
    assert budget.budget_value(0.25, 400) == 100.0
    assert budget.budget_value(66, 400) == 66.0


def test_planned_path_is_cubic_from_start_to_goal():
    assert budget.planned_value(400, 66, 0.0) == 400
    assert budget.planned_value(400, 66, 1.0) == 66
    assert budget.planned_value(400, 66, 2.0) == 66  # held after the end
    assert budget.planned_value(400, 66, 0.5) == pytest.approx(66 + 334 * 0.125)
    values = [budget.planned_value(400, 66, p) for p in np.linspace(0, 1, 9)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_initial_strength_zeroes_the_median_unit_in_the_given_steps():
    norms = np.array([1.0, 2.0, 4.0])
    weights = np.array([2.0, 2.0, 2.0])
    strength = budget.initial_strength(norms, weights, 0.01, 50)
    # median(norm / weight) = 1.0; lr * steps * strength * w == norm.
    assert strength == pytest.approx(1.0 / (0.01 * 50))
    assert budget.initial_strength([0.0], [1.0], 0.01, 50) == 1e-3


def test_controller_raises_behind_lowers_ahead_and_releases_on_goal():
    controller = budget.BudgetController(100, 20, strength=1.0)
    behind = controller.update(value=100, progress=0.5)
    assert 1.0 < behind <= 1.25 + 1e-12
    ahead = controller.update(value=21, progress=0.1)
    assert ahead < behind
    assert ahead >= behind / 1.25 - 1e-12
    assert not controller.reached
    assert controller.update(value=20, progress=0.2) == 0.0
    assert controller.reached
    # Once reached, it stays released.
    assert controller.update(value=90, progress=0.3) == 0.0


def test_controller_starting_on_budget_is_released():
    controller = budget.BudgetController(10, 20, strength=1.0)
    assert controller.reached and controller.strength == 0.0


# ----------------------------------------------------------- the callback


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    x = (data.images / 16.0).astype("float32")[:768]
    return x, data.target[:768]


def _mlp(widths=(32, 16)):
    layers = [keras.Input((8, 8)), keras.layers.Flatten()]
    layers += [
        keras.layers.Dense(w, activation="relu", name=f"dense_{i}")
        for i, w in enumerate(widths, 1)
    ]
    model = keras.Sequential(layers + [keras.layers.Dense(10, name="out")])
    model.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _cnn():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(12, 3, name="conv"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.ReLU(),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu", name="dense"),
            keras.layers.Dense(10, name="out"),
        ]
    )
    model.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _hidden_widths(model):
    return [
        layer.units if hasattr(layer, "units") else layer.filters
        for layer in model.layers
        if hasattr(layer, "units") or hasattr(layer, "filters")
    ][:-1]


def _fit(model, data, callback, epochs=6, batch_size=64):
    x, y = data
    if model.input_shape[-1] == 1:
        x = x[..., None]
    return model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=batch_size,
        verbose=0,
        shuffle=False,
        callbacks=[callback],
    )


@pytest.mark.parametrize("guidance", [None, "linear", "uniform"])
def test_units_budget_lands_exactly_and_prunes_to_it(digits, guidance):
    keras.utils.set_random_seed(0)
    model = _mlp()
    pruning = keras_guided.GuidedPruning(
        target={"units": 12}, guidance=guidance
    )
    history = _fit(model, digits, pruning)
    live = history.history["live_units"]
    # Never below the budget on the way (the guard), on it at the end.
    assert min(live) >= 12
    assert live[-1] == 12
    report = pruning.budget_report
    assert report["goal"] == 12 and report["start"] == 48
    assert report["landed_at_epoch"] is not None
    assert report["landed_at_epoch"] < 6
    small = keras_guided.prune_model(model)
    widths = _hidden_widths(small)
    assert sum(widths) == 12
    assert min(widths) >= 1  # no layer emptied
    x = digits[0][:64]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(small(x)),
        keras.ops.convert_to_numpy(model(x)),
        atol=1e-4,
    )


@pytest.mark.parametrize(
    "kwargs", [{}, {"guidance": "linear", "cost": "flops"}]
)
def test_fraction_of_flops_budget_lands_at_or_under_it(digits, kwargs):
    keras.utils.set_random_seed(1)
    model = _cnn()
    start = keras_guided.stats.count_flops(model)
    pruning = keras_guided.GuidedPruning(target={"flops": 0.3}, **kwargs)
    history = _fit(model, digits, pruning)
    report = pruning.budget_report
    assert report["goal"] == pytest.approx(0.3 * report["start"])
    assert history.history["live_flops"][-1] <= report["goal"] + 1e-6
    # Close to it: not more than a few units' worth under.
    assert history.history["live_flops"][-1] >= 0.8 * report["goal"]
    small = keras_guided.prune_model(model)
    assert keras_guided.stats.count_flops(small) <= 0.31 * start
    assert min(_hidden_widths(small)) >= 1


def test_tiny_budget_keeps_one_unit_per_layer(digits):
    keras.utils.set_random_seed(2)
    model = _mlp((16, 8))
    # Out of reach (two layers keep at least one unit each): refused by
    # default, pruned as far as the layers allow on request.
    with pytest.raises(ValueError, match="Cannot keep only 4% of the units"):
        _fit(
            model,
            digits,
            keras_guided.GuidedPruning(target={"units": 1}),
            epochs=3,
        )
    pruning = keras_guided.GuidedPruning(
        target={"units": 1}, on_unreachable="warn"
    )
    with pytest.warns(UserWarning, match="keeps 8.3%"):
        _fit(model, digits, pruning, epochs=3)
    assert _hidden_widths(keras_guided.prune_model(model)) == [1, 1]


def test_importance_guidance_spares_what_the_budget_keeps(digits):
    keras.utils.set_random_seed(3)
    model = _mlp()
    pruning = keras_guided.GuidedPruning(target={"units": 20})
    _fit(model, digits, pruning, epochs=1)
    coefficients = np.concatenate(pruning.unit_coefficients)
    # The units the budget keeps (20) carry no penalty, the rest do.
    assert (coefficients == 0).sum() >= 20
    assert (coefficients > 0).sum() >= 48 - 20 - 2


def test_controller_history_is_reported(digits):
    keras.utils.set_random_seed(4)
    model = _mlp()
    pruning = keras_guided.GuidedPruning(target={"units": 0.5})
    history = _fit(model, digits, pruning, epochs=3)
    trace = pruning.budget_report["trace"]
    assert trace and all(len(t) == 3 for t in trace)
    assert history.history["budget_goal"][-1] == 24
    assert "budget_planned" in history.history


def test_one_instance_serves_two_fits(digits):
    pruning = keras_guided.GuidedPruning(target={"units": 20})
    for seed in (5, 6):
        keras.utils.set_random_seed(seed)
        model = _mlp()
        history = _fit(model, digits, pruning, epochs=3)
        assert history.history["live_units"][-1] == 20
        assert pruning.budget_report["start"] == 48


def test_explicit_strength_is_the_starting_point(digits):
    model = _mlp()
    pruning = keras_guided.GuidedPruning(target={"units": 40}, strength=0.25)
    _fit(model, digits, pruning, epochs=1)
    assert pruning.budget_report["initial_strength"] == 0.25


def test_target_epochs_sets_when_it_lands(digits):
    keras.utils.set_random_seed(7)
    model = _mlp()
    pruning = keras_guided.GuidedPruning(target={"units": 16}, target_epochs=2)
    history = _fit(model, digits, pruning, epochs=5)
    assert history.history["live_units"][1] == 16
    assert pruning.budget_report["landed_at_epoch"] <= 1
    # Released after landing: no more penalty.
    assert history.history["guided_strength"][-1] == 0.0


def test_a_one_epoch_path_gets_at_least_min_checks(digits):
    # 96 batches and a path of one epoch: the controller checks at least
    # MIN_CHECKS times along it (ten per epoch could raise the strength
    # only 1.25 ** 10 = 9.3x; on CIFAR-10 ResNet-20 at 4x fewer FLOPs the
    # network then lagged so far behind that the landing zeroed 94
    # filters), and it lands on the budget.
    keras.utils.set_random_seed(8)
    model = _mlp()
    pruning = keras_guided.GuidedPruning(target={"units": 12})
    _fit(model, digits, pruning, epochs=1, batch_size=8)
    report = pruning.budget_report
    assert report["target_epochs"] == 1
    assert len(report["trace"]) >= _budget_mode.MIN_CHECKS
    assert report["value"] == 12
    assert report["units_masked_at_landing"] <= 3


def test_a_path_can_end_within_an_epoch(digits):
    keras.utils.set_random_seed(9)
    model = _mlp()
    pruning = keras_guided.GuidedPruning(
        target={"units": 12}, target_epochs=0.5
    )
    history = _fit(model, digits, pruning, epochs=2, batch_size=8)
    report = pruning.budget_report
    assert report["target_epochs"] == 0.5
    # Checked along the half epoch, landed there (no check after it).
    checks = [point[0] for point in report["trace"]]
    assert len(checks) >= _budget_mode.MIN_CHECKS
    assert max(checks) <= 0.5 + 2 * _budget_mode.control_interval(96, 0.5) / 96
    assert report["landed_at_epoch"] == 0
    assert history.history["live_units"] == [12, 12]
    assert history.history["guided_strength"][-1] == 0.0


def test_control_interval_and_mean_learning_rate():
    # Ten checks per epoch on long paths, at least MIN_CHECKS on short ones.
    assert _budget_mode.control_interval(400, 10) == 40
    checks = _budget_mode.MIN_CHECKS
    assert _budget_mode.control_interval(400, 1) == 400 // checks
    assert _budget_mode.control_interval(5, 1) == 1
    constant = keras.optimizers.SGD(0.1)
    assert _budget_mode.mean_learning_rate(constant, 100) == pytest.approx(0.1)
    # A cosine decay over the path: half its start on average.
    cosine = keras.optimizers.SGD(
        keras.optimizers.schedules.CosineDecay(0.1, 100)
    )
    assert _budget_mode.mean_learning_rate(cosine, 100) == pytest.approx(
        0.05, rel=0.05
    )


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {"target": {"units": 10}, "mode": "penalty"},
            "A budget target needs mode='proximal' (the budget is reached by "
            "units "
            "that are exactly zero). Received: mode='penalty'",
        ),
        (
            {"schedule": "budget"},
            "schedule='budget' needs a target to land on, e.g. "
            "target={'flops': 0.1}. Received: target=None",
        ),
        (
            {"guidance": "importance"},
            "guidance='importance' needs a budget to know which units to "
            "spare: "
            "pass target={'units': ...}, {'params': ...} or {'flops': ...}. "
            "Received: target=None",
        ),
        (
            {"target": {"units": 10}, "target_epochs": 0},
            "`target_epochs` must be a positive number of epochs: an int, "
            "or a float such as 0.5 for a path that ends halfway through "
            "the first epoch. Received: target_epochs=0",
        ),
    ],
)
def test_budget_argument_errors(kwargs, message):
    with pytest.raises(ValueError) as error:
        keras_guided.GuidedPruning(**kwargs)
    assert str(error.value) == message


def test_numeric_target_is_deprecated_but_works():
    with pytest.warns(DeprecationWarning, match="target={'units': 66}"):
        pruning = keras_guided.GuidedPruning(target=0.5, schedule="ramp")
    assert pruning.target == 0.5 and pruning.budget is None


def test_dict_target_with_explicit_schedule_is_a_threshold():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pruning = keras_guided.GuidedPruning(
            target={"params": 0.5}, schedule="ramp", strength=0.1
        )
    assert pruning.budget is None
    assert (pruning.target, pruning.target_metric) == (0.5, "params")
    assert math.isclose(pruning.base_strength, 0.1)


def test_costly_budget_keeps_a_floor_in_every_layer():
    # LeNet-5's shape: convolutions feeding a wide Dense layer. Priced in
    # the live network, Dense units look cheap (few filters feed them
    # once the convolutions thin) and filters costly (the Dense layer is
    # wide), and at 20x fewer FLOPs the guidance used to keep 480 of 500
    # Dense units and 1 to 3 filters. Every layer now keeps at least half
    # of what the uniform allocation that meets the budget gives it.
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(20, 5, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(50, 5, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(500, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    x = rng.random((128, 28, 28, 1), dtype="float32")
    y = rng.integers(0, 10, 128)
    pruning = keras_guided.GuidedPruning(target={"flops": 0.05})
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[pruning])
    kept = [int((c == 0).sum()) for c in pruning.unit_coefficients]
    sizes = (20, 50, 500)
    fraction, uniform = pruning._budget.allocation.uniform(
        np.ones(sum(sizes), dtype=bool),
        np.arange(sum(sizes), dtype=float),
        pruning._budget.goal,
    )
    # The uniform allocation meets the budget, one step more does not.
    assert pruning._metrics.value("flops", uniform) <= pruning._budget.goal
    assert 0.1 < fraction < 0.5
    floors = [int(np.ceil(0.5 * fraction * n)) for n in sizes]
    assert floors[0] >= 2
    assert all(k >= f for k, f in zip(kept, floors)), (kept, floors)


def test_importance_guidance_keeps_the_same_share_of_every_layer(digits):
    """The default ranking ignores cost: under a FLOPs budget a layer whose
    units cost four times more (64 inputs against 16) keeps the same share
    of its units as the cheap one, instead of giving up more."""
    keras.utils.set_random_seed(3)
    model = _mlp(widths=(16, 16))
    pruning = keras_guided.GuidedPruning(target={"flops": 0.5})
    _fit(model, digits, pruning, epochs=1)
    first, second = (int((c == 0).sum()) for c in pruning.unit_coefficients)
    # Cost-weighted (by the square root of the marginal cost, the former
    # default), the two layers kept 5 units apart.
    assert abs(first - second) <= 1
