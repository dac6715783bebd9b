"""The callback's live costs are the cost model's (`keras_guided.stats`):
`live_params` / `live_flops` equal `stats.count_params` / `stats.count_flops`
of the model at the start of `fit`, and of `prune_model(model)` at the end.
"""

import warnings

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

import keras_guided
from keras_guided import graph
from keras_guided import stats
from keras_guided.callbacks import _group_plan
from keras_guided.callbacks import _live_metrics


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    x = (data.images / 16.0).astype("float32")[:512]
    return x, data.target[:512]


def mlp():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(24, activation="relu", name="a"),
            keras.layers.Dense(16, activation="relu", name="b"),
            keras.layers.Dense(10, name="out"),
        ]
    )


def cnn_with_bn_and_flatten():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, name="conv1"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.ReLU(),
            keras.layers.Conv2D(6, 3, name="conv2"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, name="out"),
        ]
    )


def nested_with_duplicated_names():
    # Two inner models each hold a layer called "d": a cost table keyed by
    # the inner name alone prices one of them twice and the other never.
    first = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(16, activation="relu", name="d"),
        ],
        name="first",
    )
    second = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(12, activation="relu", name="d"),
        ],
        name="second",
    )
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            first,
            second,
            keras.layers.Dense(10, name="out"),
        ]
    )


def residual_add():
    inputs = keras.Input((8, 8, 1))
    stem = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    stem = keras.layers.BatchNormalization(name="stem_bn")(stem)
    stem = keras.layers.ReLU()(stem)
    branch = keras.layers.Conv2D(8, 3, padding="same", name="branch")(stem)
    merged = keras.layers.ReLU()(keras.layers.Add()([stem, branch]))
    hidden = keras.layers.Conv2D(6, 1, name="mix")(merged)
    pooled = keras.layers.GlobalAveragePooling2D()(hidden)
    return keras.Model(inputs, keras.layers.Dense(10, name="out")(pooled))


BUILDERS = [
    mlp,
    cnn_with_bn_and_flatten,
    nested_with_duplicated_names,
    residual_add,
]


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_live_costs_equal_the_cost_model_before_and_after_pruning(
    digits, builder
):
    model = builder()
    model.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    params, flops = stats.count_params(model), stats.count_flops(model)
    # Epoch 0 prunes nothing (strength 0); then units die.
    pruning = keras_guided.GuidedPruning(
        strength=1.0,
        cost="flops",
        schedule=lambda epoch: 0.0 if epoch == 0 else 1.0,
    )
    x, y = digits
    history = model.fit(
        x[..., None],
        y,
        epochs=3,
        batch_size=64,
        verbose=0,
        shuffle=False,
        callbacks=[pruning],
    )
    h = history.history
    assert h["live_params"][0] == params
    assert h["live_flops"][0] == flops
    small = keras_guided.prune_model(model)
    assert stats.count_flops(small) < flops  # something was removed
    assert h["live_params"][-1] == stats.count_params(small)
    assert h["live_flops"][-1] == stats.count_flops(small)


def _metrics(model):
    plan = _group_plan.GroupPlan(graph.find_unit_groups(model), model)
    return plan, _live_metrics.LiveMetrics(plan, model)


def test_nested_duplicated_names_priced_per_layer_object():
    model = nested_with_duplicated_names()
    plan, metrics = _metrics(model)
    live = np.ones(plan.num_units, dtype=bool)
    assert metrics.value("flops", live) == stats.count_flops(model)
    assert metrics.value("params", live) == stats.count_params(model)
    # One unit of first/d: its column (64 inputs) and its row of second/d
    # (12 outputs) go, 2 FLOPs each.
    first = next(
        i
        for i, g in enumerate(plan.groups)
        if g.slices[0].layer is model.layers[1].layers[0]
    )
    assert metrics.group_marginal_costs(live, "flops")[first] == 2 * (64 + 12)


def test_marginal_cost_is_what_removing_one_unit_saves():
    model = cnn_with_bn_and_flatten()
    plan, metrics = _metrics(model)
    live = np.ones(plan.num_units, dtype=bool)
    live[[0, 3]] = False  # two filters of conv1 already gone
    for kind in ("params", "flops"):
        marginal = metrics.unit_marginal_costs(live, kind)
        for unit in (1, plan.offsets[1]):
            fewer = live.copy()
            fewer[unit] = False
            saved = metrics.value(kind, live) - metrics.value(kind, fewer)
            assert marginal[unit] == pytest.approx(saved)


def test_a_non_linear_price_plugs_in(monkeypatch):
    # A made-up latency: a Dense costs (kept inputs x kept outputs) ** 2.
    def squared(layer_cost, kept):
        kernel = [
            shape
            for weight, shape in layer_cost.kept_shapes(kept)
            if weight.key == "kernel"
        ]
        return float(np.prod(kernel[0])) ** 2 if kernel else 0.0

    monkeypatch.setitem(stats.PRICES, "latency", squared)
    model = mlp()
    plan, metrics = _metrics(model)
    live = np.ones(plan.num_units, dtype=bool)
    full = (64 * 24) ** 2 + (24 * 16) ** 2 + (16 * 10) ** 2
    assert metrics.value("latency", live) == full
    live[0] = False  # one unit of "a": a's columns and b's rows shrink
    assert metrics.value("latency", live) == (
        (64 * 23) ** 2 + (23 * 16) ** 2 + (16 * 10) ** 2
    )
    marginal = metrics.group_marginal_costs(live, "latency")
    assert marginal[0] == (64 * 23) ** 2 - (64 * 22) ** 2 + (
        (23 * 16) ** 2 - (22 * 16) ** 2
    )


def _fit_with(model, x, callback):
    model.compile(optimizer="adam", loss="mse")
    model.fit(
        x,
        np.zeros((len(x), 2), "float32"),
        epochs=1,
        batch_size=4,
        verbose=0,
        callbacks=[callback],
    )


def test_variable_length_flops_target_says_what_the_callback_takes():
    # The callback takes no sample inputs: it counts FLOPs at the lengths
    # prune_model probes, and says so, with a fix it can follow.
    inputs = keras.Input((None, 4))
    hidden = keras.layers.LSTM(6, name="lstm")(inputs)
    hidden = keras.layers.Dense(8, name="hidden")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    x = np.random.default_rng(0).random((8, 5, 4)).astype("float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit_with(
            model,
            x,
            keras_guided.GuidedPruning(
                target={"flops": 0.5}, on_unreachable="warn"
            ),
        )
    texts = [str(w.message) for w in caught]
    assert (
        f"Model '{model.name}' has inputs of unknown length, so its FLOPs "
        "are counted for inputs of shapes [(1, 32, 4)] (the lengths "
        "`prune_model` probes without `sample_inputs`). Build the model with "
        "fixed input lengths to count them at yours."
    ) in texts
    assert not any("Pass `sample_inputs=`" in text for text in texts)


class Mix(keras.layers.Layer):
    """Weights and no rule: unpriced, and most of the model."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 40), name="w")

    def call(self, x):
        return keras.ops.matmul(x, self.w)


def test_a_flops_budget_warns_once_when_most_of_the_model_is_unpriced():
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, name="hidden")(inputs)
    hidden = keras.layers.Dense(8, name="hidden2")(hidden)
    outputs = keras.layers.Dense(2, name="out")(Mix(name="mix")(hidden))
    model = keras.Model(inputs, outputs, name="mixed")
    x = np.random.default_rng(0).random((8, 6)).astype("float32")
    with pytest.warns(UserWarning) as record:
        _fit_with(
            model,
            x,
            keras_guided.GuidedPruning(
                target={"flops": 0.9}, on_unsupported="keep"
            ),
        )
    budget = [
        str(w.message)
        for w in record
        if str(w.message).startswith("A FLOPs budget")
    ]
    assert budget == [
        "A FLOPs budget counts only the layers it can price: 1 layer of "
        "model 'mixed' has unknown FLOPs, counted as 0: 'mix' (Mix: no rule "
        "prices it); it holds 60.4 % of its 530 parameters. A FLOPs target "
        "can be met while those layers stay whole: give them a FLOPs rule "
        "(`keras_guided.register_rule(cls, rule, flops=...)`), or set a "
        "'params' target instead."
    ]
