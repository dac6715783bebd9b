"""Tests for keras_guided.surgery.prune_model on hand-built models."""

import contextlib
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers

import keras_guided
from keras_guided import scoring
from tests.helpers import find
from tests.helpers import randomize
from tests.helpers import zero_units


# ------------------------------------------------------------- helpers
def group_of(groups, layer_name):
    for group in groups:
        if any(
            s.layer.name == layer_name and s.role == "producer"
            for s in group.slices
        ):
            return group
    raise AssertionError(f"no group produced by {layer_name}")


def weights_of(model):
    return [np.array(w) for w in model.get_weights()]


def assert_same_function(model, pruned, x, tolerance=1e-5):
    expected = keras.ops.convert_to_numpy(model(x))
    result = keras.ops.convert_to_numpy(pruned(x))
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(result, expected, atol=tolerance * scale, rtol=0)


# ------------------------------------------------------------ builders
def residual_add():
    inputs = keras.Input((6, 6, 3))
    stem = layers.Conv2D(6, 1, name="stem")(inputs)
    x = layers.Conv2D(4, 1, name="inner")(stem)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(6, 1, name="back")(x)
    x = layers.Add()([stem, x])  # identity shortcut
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(2, name="out")(x))


def concatenate_branches():
    inputs = keras.Input((6, 6, 3))
    a = layers.Conv2D(4, 1, activation="relu", name="a")(inputs)
    a = layers.Cropping2D(1)(a)
    b = layers.Conv2D(5, 3, name="b")(inputs)
    x = layers.Concatenate()([a, b])
    x = layers.Conv2D(3, 1, name="mix")(x)
    x = layers.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, layers.Dense(2, name="out")(x))


def conv_bn_relu_flatten_dense():
    inputs = keras.Input((5, 5, 2))
    x = layers.Conv2D(6, 2, name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(5, activation="tanh", name="hidden")(x)
    x = layers.Dropout(0.2)(x)
    return keras.Model(inputs, layers.Dense(2, name="out")(x))


def depthwise_separable():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 1, name="expand")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = layers.BatchNormalization(name="dw_bn")(x)
    x = layers.ReLU(6.0)(x)
    x = layers.Conv2D(5, 1, name="project")(x)
    x = layers.SeparableConv2D(6, 3, name="sep")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(2, name="out")(x))


def squeeze_excitation():
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(6, 1, activation="swish", name="conv")(inputs)
    s = layers.GlobalAveragePooling2D()(x)
    s = layers.Reshape((1, 1, 6))(s)
    s = layers.Conv2D(3, 1, activation="relu", name="squeeze")(s)
    s = layers.Conv2D(6, 1, activation="sigmoid", name="excite")(s)
    x = layers.Multiply()([x, s])
    x = layers.Conv2D(4, 1, name="project")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(2, name="out")(x))


def conv_transpose():
    inputs = keras.Input((4, 4, 3))
    x = layers.Conv2D(5, 1, name="conv")(inputs)
    x = layers.Conv2DTranspose(4, 2, strides=2, name="up")(x)
    x = layers.LeakyReLU(0.1)(x)
    x = layers.Conv2D(3, 1, name="after")(x)
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(2, name="out")(x))


def nested_model():
    inner_in = keras.Input((6,))
    h = layers.Dense(5, activation="relu", name="inner_a")(inner_in)
    h = layers.Dense(4, name="inner_b")(h)
    inner = keras.Model(inner_in, h, name="block")
    inputs = keras.Input((3,))
    x = layers.Dense(6, activation="elu", name="first")(inputs)
    x = inner(x)
    return keras.Model(inputs, layers.Dense(2, name="out")(x))


def shared_layer():
    inputs = keras.Input((4,))
    a = layers.Dense(5, name="a")(inputs)
    b = layers.Dense(5, name="b")(inputs)
    shared = layers.Dense(3, activation="relu", name="shared")
    x = layers.Concatenate()([shared(a), shared(b)])
    return keras.Model(inputs, layers.Dense(2, name="out")(x))


def keras_ops():
    inputs = keras.Input((4,))
    a = layers.Dense(3, name="a")(inputs)
    b = layers.Dense(3, name="b")(inputs)
    x = keras.ops.tanh(keras.activations.relu(a) * 2.0 + b)
    return keras.Model(inputs, layers.Dense(2, name="out")(x))


def nested_sequential():
    inner = keras.Sequential(
        [
            keras.Input((6,)),
            layers.Dense(5, activation="relu", name="seq_a"),
            layers.BatchNormalization(name="seq_bn"),
            layers.Dense(4, name="seq_b"),
        ],
        name="seq",
    )
    inputs = keras.Input((3,))
    x = layers.Dense(6, name="first")(inputs)
    return keras.Model(inputs, layers.Dense(2, name="out")(inner(x)))


CASES = [
    # builder, layer whose group is zeroed, units, {layer: width after}
    # [, the note expected when the removed units emit non-zero constants
    # that no bias can absorb exactly]
    (residual_add, "stem", [0, 3], {"stem": 4, "back": 4, "inner": 4}),
    (concatenate_branches, "b", [1, 4], {"b": 3, "a": 4}),
    (conv_bn_relu_flatten_dense, "conv", [2, 5], {"conv": 4, "bn": 4}),
    (depthwise_separable, "expand", [1], {"expand": 3, "dw": 6}),
    (depthwise_separable, "project", [0, 4], {"project": 3}),
    (squeeze_excitation, "conv", [0, 5], {"conv": 4, "excite": 4}),
    (squeeze_excitation, "squeeze", [1], {"squeeze": 2}),
    (conv_transpose, "conv", [2], {"conv": 4}, "layer 'up'"),
    (conv_transpose, "up", [0, 1], {"up": 2}),
    (nested_model, "inner_a", [0, 2], {"inner_a": 3}),
    (nested_model, "first", [5], {"first": 5}),
    (shared_layer, "a", [0], {"a": 4, "b": 4}, "is shared"),
    (shared_layer, "shared", [2], {"shared": 2}),
    (keras_ops, "a", [1], {"a": 2, "b": 2}),
    (nested_sequential, "seq_a", [0, 3], {"seq_a": 3, "seq_bn": 3}),
    (nested_sequential, "first", [1], {"first": 5}),
]


def _width(layer):
    if isinstance(layer, layers.BatchNormalization):
        return layer.get_weights()[0].shape[0]
    if isinstance(layer, layers.DepthwiseConv2D):
        return layer.get_weights()[0].shape[-2] * layer.depth_multiplier
    return keras_guided.units.num_units(layer)


@pytest.mark.parametrize(
    "inputs_only", [False, True], ids=["all_weights", "constants_folded"]
)
@pytest.mark.parametrize(
    "builder, layer_name, unit_indices, widths, inexact",
    [c if len(c) == 5 else c + (None,) for c in CASES],
    ids=[f"{c[0].__name__}-{c[1]}" for c in CASES],
)
def test_dead_groups_removed_exactly(
    builder, layer_name, unit_indices, widths, inexact, inputs_only
):
    model = randomize(builder())
    groups = keras_guided.find_unit_groups(model)
    zero_units(
        group_of(groups, layer_name), unit_indices, inputs_only=inputs_only
    )
    before = weights_of(model)
    warns = (
        pytest.warns(UserWarning, match="differs from the original")
        if inputs_only and inexact
        else contextlib.nullcontext()
    )
    with warns:
        pruned, report = keras_guided.prune_model(model, return_report=True)
    assert all(
        np.array_equal(a, b) for a, b in zip(before, model.get_weights())
    )
    for name, width in widths.items():
        assert _width(find(pruned, name)) == width, name
    assert report.removed_units == len(unit_indices)
    if inputs_only and inexact:
        assert any(inexact in note for note in report.notes), report.notes
        return
    x = (
        np.random.default_rng(1)
        .normal(size=(3,) + tuple(model.inputs[0].shape[1:]))
        .astype("float32")
    )
    assert_same_function(model, pruned, x)
    assert report.max_abs_diff < 1e-4
    assert report.notes == []


def test_nothing_dead_gives_equal_model_and_fresh_layers():
    model = randomize(residual_add())
    pruned, report = keras_guided.prune_model(model, return_report=True)
    assert report.removed == {}
    assert pruned.count_params() == model.count_params()
    assert all(a is not b for a, b in zip(pruned.weights, model.weights))
    x = np.ones((2, 6, 6, 3), "float32")
    assert_same_function(model, pruned, x)


def test_sequential_stays_sequential():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            layers.Dense(3, name="hidden"),
            layers.Dense(1, name="out"),
        ]
    )
    zero_units(keras_guided.find_unit_groups(model)[0], [1])
    pruned = keras_guided.prune_model(model)
    assert isinstance(pruned, keras.Sequential)
    assert pruned.get_layer("hidden").units == 2


def test_same_padding_fold_is_reported():
    inputs = keras.Input((5, 5, 2))
    x = layers.Conv2D(3, 1, name="conv")(inputs)
    x = layers.Conv2D(2, 3, padding="same", name="same")(x)
    model = randomize(keras.Model(inputs, layers.Flatten()(x)))
    zero_units(keras_guided.find_unit_groups(model)[0], [0], inputs_only=True)
    with pytest.warns(
        UserWarning,
        match=r"differs from the original with "
        r"the removed units masked by up to .*, where the constants of "
        r"removed units are folded approximately: constants folded into "
        r"layer 'same' \(Conv2D\)",
    ):
        pruned, report = keras_guided.prune_model(model, return_report=True)
    assert find(pruned, "conv").filters == 2
    assert any(
        "layer 'same' (Conv2D)" in note and "borders" in note
        for note in report.notes
    )
    assert report.max_abs_diff > 1e-3  # the border residual, reported


def test_plan_target_threshold_and_limits():
    model = randomize(conv_bn_relu_flatten_dense())
    groups = keras_guided.find_unit_groups(model)
    conv, hidden = group_of(groups, "conv"), group_of(groups, "hidden")
    before = weights_of(model)

    pruned = keras_guided.prune_model(
        model, plan={conv.index: [0, 2, 4], hidden.index: 2}
    )
    assert find(pruned, "conv").filters == 3
    assert find(pruned, "hidden").units == 2

    pruned, report = keras_guided.prune_model(
        model, target=0.5, return_report=True
    )
    kept = sum(k for _, k in report.removed.values())
    assert report.removed_units == 6 and kept == 5
    assert pruned.count_params() < model.count_params()

    pruned = keras_guided.prune_model(model, target={"params": 0.7})
    assert pruned.count_params() <= 0.7 * model.count_params()
    pruned = keras_guided.prune_model(model, target={"flops": 0.7})
    assert keras_guided.stats.count_flops(
        pruned
    ) <= 0.7 * keras_guided.stats.count_flops(model)

    with pytest.warns(
        UserWarning,
        match=r"Cannot keep only 20% of the "
        r"units: .* round_to=2 keeps 36\.4%",
    ):
        pruned = keras_guided.prune_model(model, target=0.2, round_to=2)
    assert find(pruned, "conv").filters == 2
    assert find(pruned, "hidden").units == 2

    pruned = keras_guided.prune_model(model, threshold=1e9, min_units=3)
    assert find(pruned, "conv").filters == 3

    pruned = keras_guided.prune_model(model, target=0.5, protected=["conv"])
    assert find(pruned, "conv").filters == 6
    assert all(
        np.array_equal(a, b) for a, b in zip(before, model.get_weights())
    )


def test_plan_keeps_most_important_when_given_a_count():
    model = randomize(nested_model())
    groups = keras_guided.find_unit_groups(model)
    group = group_of(groups, "first")
    zero_units(group, [0, 1, 2])
    pruned = keras_guided.prune_model(model, plan={group.index: 3})
    kernel = find(pruned, "first").get_weights()[0]
    assert kernel.shape == (3, 3) and np.all(np.abs(kernel).sum(axis=0) > 0)
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    assert_same_function(model, pruned, x)


@pytest.mark.parametrize(
    "plan, message",
    [
        (
            {9: [0]},
            r"`plan` refers to group 9, but the model has 4 unit groups "
            r"\(indices 0 to 3\)",
        ),
        (
            {3: [0]},
            r"removes units of group 3 \(layers \['out'\]\), which is not "
            r"prunable: its channels are a model output",
        ),
        (
            {0: []},
            r"`plan` keeps 0 units of group 0 \(layers \['first'\]\); at "
            r"least min_units=1 must stay",
        ),
        (
            {0: [1, 1]},
            r"must list distinct unit indices in \[0, 6\)\. "
            r"Received: \[1, 1\]",
        ),
        (
            {0: 7},
            r"`plan` keeps 7 units of group 0 \(layers \['first'\]\), "
            r"which has 6",
        ),
        ([0], r"`plan` must be a dict"),
    ],
)
def test_impossible_plans(plan, message):
    model = nested_model()
    with pytest.raises(ValueError, match=message):
        keras_guided.prune_model(model, plan=plan)


def test_argument_errors():
    model = nested_model()
    with pytest.raises(
        ValueError,
        match="Pass at most one of `threshold`, "
        "`plan` and `target`. Received: threshold, target",
    ):
        keras_guided.prune_model(model, threshold=0.1, target=0.5)
    with pytest.raises(ValueError, match=r"Received: min_units=0"):
        keras_guided.prune_model(model, min_units=0)
    with pytest.raises(ValueError, match=r"Received: target=1.5"):
        keras_guided.prune_model(model, target=1.5)
    with pytest.raises(ValueError, match=r"Cannot keep only 10% of the units"):
        keras_guided.prune_model(model, target=0.1, min_units=4)
    with pytest.raises(
        ValueError, match=r"not in model 'functional.*\['nope'\]"
    ):
        keras_guided.prune_model(model, protected=["nope"])


class Doubler(keras.layers.Layer):
    def call(self, x):
        return 2.0 * x


def test_unsupported_layer_kept_and_listed():
    inputs = keras.Input((4,))
    x = layers.Dense(3, name="hidden")(inputs)
    x = Doubler(name="doubler")(x)
    x = layers.Dense(3, name="after")(x)
    model = keras.Model(inputs, layers.Dense(1, name="out")(x))
    groups = keras_guided.find_unit_groups(model, on_unsupported="keep")
    zero_units(group_of(groups, "hidden"), [0])
    zero_units(group_of(groups, "after"), [1])
    with pytest.raises(ValueError, match=r"layer 'doubler' \(Doubler\)"):
        keras_guided.prune_model(model)
    pruned, report = keras_guided.prune_model(
        model, on_unsupported="keep", return_report=True
    )
    assert find(pruned, "hidden").units == 3
    assert find(pruned, "after").units == 2
    assert report.unsupported == ["layer 'doubler' (Doubler)"]
    assert (
        "layer 'doubler' (Doubler) is not supported: register a rule "
        "for it with `keras_guided.register_rule(Doubler, ...)`; kept "
        "intact (copied unchanged) and the unit groups that touch it were "
        "not pruned" in report.notes
    )


def test_registered_rule_for_custom_producer():
    class Twice(keras.layers.Layer):
        """Dense-like: y = x @ w."""

        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.w = self.add_weight(
                shape=(input_shape[-1], self.units), name="w"
            )

        def call(self, x):
            return keras.ops.matmul(x, self.w)

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    def twice_rule(layer, weights, kept_inputs, kept_outputs):
        w = weights["w"][kept_inputs[0]][:, kept_outputs]
        return {**layer.get_config(), "units": len(kept_outputs)}, [w]

    keras_guided.register_rule(
        Twice,
        twice_rule,
        kind="producer",
        output_weights=[("w", -1)],
        input_weights=[("w", 0)],
    )
    try:
        inputs = keras.Input((4,))
        x = layers.Dense(3, name="hidden")(inputs)
        x = Twice(5, name="twice")(x)
        model = keras.Model(inputs, layers.Dense(1, name="out")(x))
        groups = keras_guided.find_unit_groups(model)
        zero_units(group_of(groups, "twice"), [1, 3])
        zero_units(group_of(groups, "hidden"), [0], inputs_only=True)
        pruned = keras_guided.prune_model(model)
        assert find(pruned, "twice").get_weights()[0].shape == (2, 3)
        x = np.random.default_rng(0).normal(size=(4, 4)).astype("float32")
        assert_same_function(model, pruned, x)
    finally:
        keras_guided.rules.unregister_rule(Twice)


def test_register_rule_errors():
    with pytest.raises(
        ValueError,
        match="must be a keras.layers.Layer subclass. Received: layer_class=3",
    ):
        keras_guided.register_rule(3, lambda *a: None)
    with pytest.raises(ValueError, match="Received: kind='dense'"):
        keras_guided.register_rule(Doubler, lambda *a: None, kind="dense")


def test_layer_normalization_prune_is_noted():
    inputs = keras.Input((4,))
    x = layers.Dense(5, name="hidden")(inputs)
    x = layers.LayerNormalization(name="ln")(x)
    model = keras.Model(inputs, layers.Dense(1, name="out")(x))
    group = group_of(keras_guided.find_unit_groups(model), "hidden")
    zero_units(group, [0])
    pruned, report = keras_guided.prune_model(model, return_report=True)
    assert find(pruned, "hidden").units == 5  # not exact: not dead-pruned
    with pytest.warns(UserWarning, match="differs from the original"):
        pruned, report = keras_guided.prune_model(
            model, plan={group.index: [1, 2, 3, 4]}, return_report=True
        )
    assert find(pruned, "ln").get_weights()[0].shape == (4,)
    assert any("layer 'ln' (LayerNormalization)" in n for n in report.notes)


def test_report_table_and_summary():
    model = randomize(conv_bn_relu_flatten_dense())
    zero_units(group_of(keras_guided.find_unit_groups(model), "conv"), [0])
    _, report = keras_guided.prune_model(model, return_report=True)
    rows = {row["layer"]: row for row in report.layers}
    assert rows["conv"]["units_before"] == 6
    assert rows["conv"]["units_after"] == 5
    assert (
        rows["hidden"]["params_after"]
        == rows["hidden"]["params_before"] - 4 * 5
    )
    assert rows["total"]["params_after"] < rows["total"]["params_before"]
    text = report.summary()
    assert text.startswith("Removed 1 units in 1 of 3 unit groups.")
    assert "| conv | 6 | 5 |" in text


def test_guided_regularizer_is_dropped_and_file_loads_without_package(
    tmp_path,
):
    inputs = keras.Input((4,))
    x = layers.Dense(
        4,
        name="hidden",
        kernel_regularizer=keras_guided.GuidedRegularizer(strength=1e-3),
    )(inputs)
    model = keras.Model(inputs, layers.Dense(1, name="out")(x))
    zero_units(group_of(keras_guided.find_unit_groups(model), "hidden"), [2])
    pruned, report = keras_guided.prune_model(model, return_report=True)
    assert pruned.get_layer("hidden").kernel_regularizer is None
    assert report.notes == [
        "layer 'hidden' (Dense): dropped kernel_regularizer (not a Keras "
        "object), so the model loads without keras_guided"
    ]
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    x = np.ones((2, 4), "float32")
    np.save(tmp_path / "expected.npy", keras.ops.convert_to_numpy(pruned(x)))
    script = (
        "import sys, numpy as np, keras\n"
        f"m = keras.saving.load_model({path!r})\n"
        "y = keras.ops.convert_to_numpy(m(np.ones((2, 4), 'float32')))\n"
        f"assert np.allclose(y, np.load({str(tmp_path / 'expected.npy')!r}))\n"
        "assert m.get_layer('hidden').units == 3\n"
        "assert not any(k.startswith('keras_guided') for k in sys.modules)\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_scores_used_by_target_are_group_norms():
    model = nested_model()
    groups = keras_guided.find_unit_groups(model)
    group = group_of(groups, "first")
    zero_units(group, [4])
    scores = scoring.unit_scores(groups)
    assert scores[group.index][4] == 0.0
    assert np.argmin(scores[group.index]) == 4


def test_multiple_inputs_and_outputs():
    left = keras.Input((4,), name="left")
    right = keras.Input((3,), name="right")
    a = layers.Dense(5, name="a")(left)
    b = layers.Dense(5, name="b")(right)
    joined = layers.Add()([a, b])
    head_1 = layers.Dense(2, name="head_1")(joined)
    head_2 = layers.Dense(1, name="head_2")(layers.Dense(3, name="c")(joined))
    model = randomize(
        keras.Model({"left": left, "right": right}, [head_1, head_2])
    )
    groups = keras_guided.find_unit_groups(model)
    zero_units(group_of(groups, "a"), [0, 4], inputs_only=True)
    zero_units(group_of(groups, "c"), [1])
    pruned, report = keras_guided.prune_model(model, return_report=True)
    assert find(pruned, "b").units == 3 and find(pruned, "c").units == 2
    rng = np.random.default_rng(0)
    x = {
        "left": rng.normal(size=(3, 4)).astype("float32"),
        "right": rng.normal(size=(3, 3)).astype("float32"),
    }
    for got, want in zip(pruned(x), model(x)):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(got),
            keras.ops.convert_to_numpy(want),
            atol=1e-5,
        )
    assert report.max_abs_diff < 1e-5


def test_verification_error_is_explained():
    inputs = keras.Input((None, 3))
    x = layers.Conv1D(4, 3, name="conv")(inputs)
    x = layers.Conv1D(2, 1, name="out")(x)
    model = keras.Model(inputs, x)
    with pytest.raises(
        ValueError,
        match=r"(?s)Verification could not run model "
        r"'.*' on sample inputs of shapes \[\(1, 2, 3\)\].*"
        r"Pass `sample_inputs=`",
    ):
        keras_guided.prune_model(model, sample_inputs=np.zeros((1, 2, 3)))


def test_unknown_sequence_length():
    inputs = keras.Input((None, 3))
    x = layers.Conv1D(4, 3, name="conv")(inputs)
    x = layers.GlobalAveragePooling1D()(x)
    model = randomize(keras.Model(inputs, layers.Dense(2, name="out")(x)))
    zero_units(keras_guided.find_unit_groups(model)[0], [2], inputs_only=True)
    pruned, report = keras_guided.prune_model(model, return_report=True)
    assert find(pruned, "conv").filters == 3
    x = np.random.default_rng(0).normal(size=(2, 11, 3)).astype("float32")
    assert_same_function(model, pruned, x)
    assert (
        "FLOPs counted for inputs of shapes [(1, 32, 3)] (the model's input "
        "lengths are unknown: the lengths of `sample_inputs`, else 32)"
    ) in report.notes
    assert report.layers[-1]["flops_before"] > 0


def test_nested_model_called_twice_stays_shared():
    inner_in = keras.Input((4,))
    h = layers.Dense(5, activation="relu", name="tower_a")(inner_in)
    tower = keras.Model(
        inner_in, layers.Dense(3, name="tower_b")(h), name="tower"
    )
    left, right = keras.Input((4,)), keras.Input((4,))
    x = layers.Concatenate()([tower(left), tower(right)])
    model = randomize(
        keras.Model([left, right], layers.Dense(1, name="out")(x))
    )
    groups = keras_guided.find_unit_groups(model)
    group = group_of(groups, "tower_b")
    # Each unit of the tower feeds two rows of the head: k = 2.
    assert [
        s.positions.tolist() for s in group.slices if s.role == "consumer"
    ] == [[[0, 3], [1, 4], [2, 5]]]
    zero_units(group_of(groups, "tower_a"), [1, 3], inputs_only=True)
    zero_units(group, [0])
    pruned = keras_guided.prune_model(model)
    towers = [layer for layer in pruned.layers if layer.name == "tower"]
    assert len(towers) == 1
    assert find(pruned, "tower_a").units == 3
    assert find(pruned, "out").get_weights()[0].shape == (4, 1)
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(3, 4)).astype("float32") for _ in range(2)]
    assert_same_function(model, pruned, xs)


# ------------------------------------------- real architectures (issue 12)
def _zero_kernel_units(layer, units, axis=-1, bias=False):
    """Zeroes the incoming weights of `units` (and their bias entries)."""
    weights = layer.get_weights()
    index = [slice(None)] * weights[0].ndim
    index[axis] = list(units)
    weights[0][tuple(index)] = 0.0
    if bias:
        weights[1][list(units)] = 0.0
    layer.set_weights(weights)


@pytest.mark.parametrize("on_unsupported", ["raise", "keep"])
def test_attention_is_copied_when_a_dead_unit_is_elsewhere(on_unsupported):
    # Used to fail in the rebuild: "weight shape (8, 2, 4) is not
    # compatible with provided weight shape (2, 4, 8)" (four "kernel"s).
    inputs = keras.Input((6, 8))
    x = layers.MultiHeadAttention(2, 4, name="attention")(inputs, inputs)
    x = layers.Dense(5, activation="relu", name="hidden")(x)
    model = randomize(keras.Model(inputs, layers.Dense(3, name="out")(x)))
    _zero_kernel_units(find(model, "hidden"), [1, 3])
    before = weights_of(model)
    pruned, report = keras_guided.prune_model(
        model, on_unsupported=on_unsupported, return_report=True
    )
    assert find(pruned, "hidden").units == 3
    attention = find(pruned, "attention")
    for old, new in zip(find(model, "attention").weights, attention.weights):
        np.testing.assert_array_equal(old.numpy(), new.numpy())
    x = np.random.default_rng(0).normal(size=(2, 6, 8)).astype("float32")
    assert_same_function(model, pruned, x, tolerance=1e-6)
    assert report.max_abs_diff <= 1e-6 * report.output_scale
    assert all(
        np.array_equal(a, b) for a, b in zip(before, model.get_weights())
    )


def _transformer(feed_forward=16, use_conv=True):
    """The keras-io timeseries transformer block, shrunk."""
    inputs = keras.Input((10, 4))
    x = layers.MultiHeadAttention(2, 4, name="attention")(inputs, inputs)
    x = layers.Dropout(0.1)(x)
    residual = layers.Add()([x, inputs])
    x = layers.LayerNormalization(epsilon=1e-6, name="norm")(residual)
    if use_conv:
        x = layers.Conv1D(feed_forward, 1, activation="relu", name="ff1")(x)
        x = layers.Dropout(0.1)(x)
        x = layers.Conv1D(4, 1, name="ff2")(x)
    else:
        x = layers.Dense(feed_forward, activation="relu", name="ff1")(x)
        x = layers.Dense(4, name="ff2")(x)
    x = layers.Add()([x, residual])
    x = layers.GlobalAveragePooling1D()(x)
    return randomize(keras.Model(inputs, layers.Dense(2, name="out")(x)))


@pytest.mark.parametrize("use_conv", [True, False], ids=["conv1d", "dense"])
def test_transformer_feed_forward_units_are_pruned_exactly(use_conv):
    model = _transformer(use_conv=use_conv)
    groups = keras_guided.find_unit_groups(model)
    ff = group_of(groups, "ff1")
    assert ff.prunable and ff.num_units == 16
    residual = group_of(groups, "ff2")
    assert not residual.prunable
    assert "'attention' (MultiHeadAttention) keeps its channels" in (
        residual.reason
    )
    assert group_of(groups, "attention").prunable  # its heads
    _zero_kernel_units(find(model, "ff1"), [0, 5, 6])
    pruned, report = keras_guided.prune_model(model, return_report=True)
    assert report.removed == {ff.index: (16, 13)}
    x = np.random.default_rng(0).normal(size=(3, 10, 4)).astype("float32")
    assert_same_function(model, pruned, x, tolerance=1e-6)
    # A target prunes the feed-forward units (and heads), not the
    # residual stream.
    half = keras_guided.prune_model(model, target={"params": 0.8})
    assert find(half, "ff1").get_weights()[0].shape[-1] < 16
    assert find(half, "ff2").get_weights()[0].shape[-1] == 4


def test_grouped_convolutions_keep_channels_divisible_by_groups():
    # Used to be refused mid-network, and to fail with an IndexError in
    # `rules.take` when the grouped conv reads the input.
    inputs = keras.Input((6, 6, 4))
    x = layers.Conv2D(8, 3, groups=4, padding="same", name="first")(inputs)
    x = layers.Conv2D(8, 1, name="mid")(x)
    x = layers.Conv2D(8, 3, groups=2, name="grouped")(x)
    x = layers.Conv2D(8, 3, groups=8, name="depthwise")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = randomize(keras.Model(inputs, layers.Dense(2, name="out")(x)))
    groups = keras_guided.find_unit_groups(model)
    first = group_of(groups, "first")
    # Filter slot j of every group of 2 is one unit: 4 groups x 2 slots.
    assert first.num_units == 2
    assert [
        s.positions.tolist()
        for s in first.slices
        if s.layer.name == "first" and s.weight == "kernel"
    ] == [[[0, 2, 4, 6], [1, 3, 5, 7]]]
    mid = group_of(groups, "mid")
    assert mid.num_units == 4  # input slot j of both groups of 4 is tied
    grouped = group_of(groups, "grouped")
    # The depthwise-style conv (one input channel per group) follows it.
    assert ("depthwise", "kernel", "follower") in {
        (s.layer.name, s.weight, s.role) for s in grouped.slices
    }
    _zero_kernel_units(find(model, "first"), [1, 3, 5, 7])
    _zero_kernel_units(find(model, "mid"), [1, 5])
    _zero_kernel_units(find(model, "grouped"), [2, 6])
    pruned, report = keras_guided.prune_model(model, return_report=True)
    assert find(pruned, "first").filters == 4
    assert find(pruned, "mid").filters == 6
    assert find(pruned, "grouped").filters == 6
    assert find(pruned, "depthwise").groups == 6
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype("float32")
    assert_same_function(model, pruned, x)
    assert report.max_abs_diff <= 1e-5 * report.output_scale


def test_dense_reshape_conv_transpose_decoder():
    # The standard decoder: Dense -> Reshape -> Conv2DTranspose, the inverse
    # of Flatten. Dense unit i feeds channel i % 8 of the reshaped tensor.
    inputs = keras.Input((3,))
    x = layers.Dense(2 * 2 * 8, activation="relu", name="dense")(inputs)
    x = layers.Reshape((2, 2, 8))(x)
    x = layers.Conv2DTranspose(
        6, 3, strides=2, padding="same", activation="relu", name="up"
    )(x)
    x = layers.Conv2DTranspose(1, 3, padding="same", name="pixels")(x)
    model = randomize(keras.Model(inputs, x))
    groups = keras_guided.find_unit_groups(model)
    dense = group_of(groups, "dense")
    assert dense.num_units == 8
    assert [
        s.positions.tolist()[3]
        for s in dense.slices
        if s.weight == "kernel" and s.role == "producer"
    ] == [[3, 11, 19, 27]]
    # Strided transposed convolutions spread a constant unevenly, so the
    # dead units are fully dead (bias 0), as group lasso leaves them.
    _zero_kernel_units(
        find(model, "dense"), [3, 11, 19, 27, 5, 13, 21, 29], bias=True
    )
    _zero_kernel_units(find(model, "up"), [2], axis=-2, bias=True)
    pruned = keras_guided.prune_model(model)
    assert find(pruned, "dense").units == 24
    assert find(pruned, "up").filters == 5
    assert pruned.layers[2].target_shape == (2, 2, 6)
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    assert_same_function(model, pruned, x)


def test_embedding_units_and_variable_length_with_sample_inputs():
    # Input((None,)): the constant-folding probe used to substitute a
    # length of 8, too short for kernel 5 after pooling by 3.
    inputs = keras.Input((None,), dtype="int32")
    x = layers.Embedding(30, 8, name="embedding")(inputs)
    x = layers.Conv1D(12, 5, activation="relu", name="conv")(x)
    x = layers.MaxPooling1D(3)(x)
    x = layers.Conv1D(6, 5, activation="relu", name="conv2")(x)
    x = layers.GlobalMaxPooling1D()(x)
    model = randomize(keras.Model(inputs, layers.Dense(1, name="out")(x)))
    groups = keras_guided.find_unit_groups(model)
    embedding = group_of(groups, "embedding")
    assert embedding.num_units == 8 and embedding.prunable
    _zero_kernel_units(find(model, "embedding"), [2, 7])
    _zero_kernel_units(find(model, "conv"), [4])
    tokens = np.random.default_rng(0).integers(0, 30, size=(4, 40))
    pruned, report = keras_guided.prune_model(
        model, sample_inputs=tokens, return_report=True
    )
    assert find(pruned, "embedding").output_dim == 6
    assert find(pruned, "conv").filters == 11
    assert not [n for n in report.notes if "could not probe" in n]
    assert_same_function(model, pruned, tokens)
    # A params target needs no FLOPs (it used to ask for them).
    small = keras_guided.prune_model(
        model, target={"params": 0.5}, sample_inputs=tokens
    )
    assert small.count_params() <= 0.5 * model.count_params()
    # A FLOPs target takes the lengths from the sample inputs.
    keras_guided.prune_model(model, target={"flops": 0.5}, sample_inputs=tokens)
    with pytest.raises(
        ValueError,
        match=r"Cannot count FLOPs of layer "
        r"'conv' \(Conv1D\).*unknown spatial dimensions",
    ):
        keras_guided.stats.count_flops(model)


class Sampling(keras.layers.Layer):
    """The VAE's reparameterization: random at inference too."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        mean, log_var = inputs
        noise = keras.random.normal(
            keras.ops.shape(mean), seed=self.seed_generator
        )
        return mean + keras.ops.exp(0.5 * log_var) * noise


def test_verification_compares_only_deterministic_outputs():
    inputs = keras.Input((6,))
    x = layers.Dense(8, activation="relu", name="hidden")(inputs)
    mean = layers.Dense(2, name="mean")(x)
    log_var = layers.Dense(2, name="log_var")(x)
    z = Sampling(name="sampling")([mean, log_var])
    model = randomize(keras.Model(inputs, [mean, log_var, z]))
    _zero_kernel_units(find(model, "hidden"), [0, 4])
    with warnings_as_errors():
        pruned, report = keras_guided.prune_model(
            model, on_unsupported="keep", return_report=True
        )
    assert find(pruned, "hidden").units == 6
    assert report.max_abs_diff < 1e-6
    assert any(
        "layer 'sampling' (Sampling) changes from call to call" in note
        and "0 of 8 values repeat" in note
        for note in report.notes
    )
    # Only random outputs: nothing compared, and the report says so.
    only = keras.Model(model.inputs, model.outputs[2])
    with warnings_as_errors():
        _, report = keras_guided.prune_model(
            only, on_unsupported="keep", return_report=True
        )
    assert report.max_abs_diff is None
    assert any("nothing could be compared" in note for note in report.notes)


@contextlib.contextmanager
def warnings_as_errors():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        yield


def test_attention_heads_are_unit_groups_removed_exactly(tmp_path):
    model = _transformer()
    attention = find(model, "attention")
    groups = keras_guided.find_unit_groups(model)
    heads = group_of(groups, "attention")
    assert heads.num_units == 2 and heads.prunable
    assert heads.layers == ["attention"]
    assert [(s.weight, s.axis, s.role) for s in heads.slices] == [
        ("query/kernel", 1, "producer"),
        ("query/bias", 0, "producer"),
        ("key/kernel", 1, "producer"),
        ("key/bias", 0, "producer"),
        ("value/kernel", 1, "producer"),
        ("value/bias", 0, "producer"),
        ("attention_output/kernel", 0, "consumer"),
    ]
    # Head 1 is dead: its projections are zero, its biases are not, so it
    # emits its value bias, which is folded into the output bias.
    weights = attention.get_weights()
    for index in (0, 2, 4):
        weights[index][:, 1, :] = 0.0
    attention.set_weights(weights)
    pruned, report = keras_guided.prune_model(model, return_report=True)
    assert report.removed == {heads.index: (2, 1)}
    new = find(pruned, "attention")
    assert new.num_heads == 1
    assert new.get_weights()[6].shape == (1, 4, 4)
    x = np.random.default_rng(0).normal(size=(3, 10, 4)).astype("float32")
    assert_same_function(model, pruned, x, tolerance=1e-6)
    path = str(tmp_path / "heads.keras")
    pruned.save(path)
    assert_same_function(pruned, keras.saving.load_model(path), x, 1e-7)
    # A FLOPs target may take live heads: exact against the masked model.
    smaller, report = keras_guided.prune_model(
        model, plan={heads.index: [1]}, return_report=True
    )
    assert find(smaller, "attention").num_heads == 1
    assert report.max_abs_diff <= 1e-6 * report.output_scale
    assert report.max_abs_diff_original > 1e-3


def test_einsum_dense_feed_forward_and_non_dense_equations():
    inputs = keras.Input((6, 4))
    x = layers.EinsumDense(
        "abc,cd->abd",
        output_shape=(6, 12),
        bias_axes="d",
        activation="relu",
        name="ff1",
    )(inputs)
    x = layers.EinsumDense("abc,cd->abd", output_shape=(6, 4), name="ff2")(x)
    x = layers.Add()([x, inputs])
    x = layers.EinsumDense(
        "abc,cde->abde", output_shape=(6, 2, 3), name="mixing"
    )(x)
    x = layers.Flatten()(x)
    model = randomize(keras.Model(inputs, layers.Dense(2, name="out")(x)))
    groups = keras_guided.find_unit_groups(model)
    ff = group_of(groups, "ff1")
    assert ff.prunable and ff.num_units == 12
    assert (
        "layer 'mixing' (EinsumDense) keeps its channels: its equation "
        "'abc,cde->abde' (bias_axes=None) is not a Dense over the last "
        "axis; it is copied unchanged" in group_of(groups, "ff2").reason
    )
    _zero_kernel_units(find(model, "ff1"), [2, 7])
    pruned = keras_guided.prune_model(model)
    assert find(pruned, "ff1").get_weights()[0].shape == (4, 10)
    assert find(pruned, "ff2").get_weights()[0].shape == (10, 4)
    x = np.random.default_rng(0).normal(size=(3, 6, 4)).astype("float32")
    assert_same_function(model, pruned, x, tolerance=1e-6)
    assert keras_guided.stats.layer_costs(model)["ff1"]["flops"] == (
        2 * 6 * 4 * 12
    )


class FixedLengthBlind(keras.layers.Layer):
    """Gives no output shape once a length is known (a layer whose shape
    inference fails on concrete sizes)."""

    def compute_output_spec(self, x):
        if x.shape[1] is not None:
            raise TypeError("cannot infer the shape for a known length")
        return keras.KerasTensor(x.shape, dtype=x.dtype)

    def call(self, x):
        return x * 1.0


def test_flops_target_says_which_layer_stops_the_sample_input_sizes():
    inputs = keras.Input((None, 4))
    x = FixedLengthBlind(name="blind")(inputs)
    x = keras.layers.Conv1D(8, 3, name="conv")(x)
    outputs = keras.layers.Conv1D(2, 1, name="head")(x)
    model = keras.Model(inputs, outputs)
    tokens = np.zeros((2, 10, 4), "float32")
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Cannot count FLOPs of layer 'conv' (Conv1D): its tensor of "
            "shape (None, None, 8) has unknown spatial dimensions. The "
            "`sample_inputs` passed (shapes [(2, 10, 4)]) give the model's "
            "inputs their lengths, but layer 'blind' (FixedLengthBlind) "
            "gives no output shape for them symbolically, so the lengths do "
            "not reach this layer. Use a 'units' or 'params' target, which "
            "need no FLOPs, or build the model with fixed input lengths."
        ),
    ):
        keras_guided.prune_model(
            model,
            target={"flops": 0.5},
            sample_inputs=tokens,
            on_unsupported="keep",
        )


def test_an_inexact_fold_is_quoted_in_the_warning():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    x = layers.Conv2D(4, 3, padding="same", name="c2")(x)
    model = keras.Model(inputs, layers.Dense(2)(layers.Flatten()(x)))
    groups = keras_guided.find_unit_groups(model)
    # Unit 0 of c1 keeps its bias: a constant folded into the 'same'
    # convolution after it, exact away from the borders only.
    zero_units(groups[0], [0], inputs_only=True)
    model.get_layer("c1").bias.assign([1.0, 0.0, 0.0, 0.0])
    with pytest.warns(
        UserWarning,
        match=(
            r"^The pruned model differs from the original with the removed "
            r"units masked by up to \S+ \(output scale \S+\), where the "
            r"constants of removed units are folded approximately: "
            r"constants folded into layer 'c2' \(Conv2D\) are exact away "
            r"from the borders only \(padding, strides\); see "
            r"max_abs_diff\.$"
        ),
    ):
        keras_guided.prune_model(model)


@pytest.mark.parametrize("groups", [-1, 6])
def test_group_normalization_with_a_group_per_channel_prunes_exactly(groups):
    inputs = keras.Input((5, 5, 3))
    x = layers.Conv2D(6, 3, name="conv")(inputs)
    x = layers.GroupNormalization(groups=groups, name="norm")(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(4, 1, name="mix")(x)
    outputs = layers.Dense(2, name="out")(layers.Flatten()(x))
    model = randomize(keras.Model(inputs, outputs))
    group = group_of(keras_guided.find_unit_groups(model), "conv")
    assert any(s.layer.name == "norm" for s in group.slices)
    zero_units(group, [1, 4], inputs_only=True)
    pruned = keras_guided.prune_model(model)
    norm = find(pruned, "norm")
    assert find(pruned, "conv").filters == 4
    assert norm.groups == 4
    assert [w.shape for w in norm.get_weights()] == [(4,), (4,)]
    x = np.random.default_rng(0).normal(size=(3, 5, 5, 3))
    np.testing.assert_allclose(pruned(x), model(x), rtol=1e-5, atol=1e-5)


def test_group_normalization_over_groups_of_channels_keeps_them():
    inputs = keras.Input((5, 5, 3))
    x = layers.Conv2D(6, 3, name="conv")(inputs)
    x = layers.GroupNormalization(groups=2, name="norm")(x)
    model = keras.Model(inputs, layers.Conv2D(4, 1, name="mix")(x))
    groups = keras_guided.find_unit_groups(model)
    group = next(
        g for g in groups if any(s.layer.name == "conv" for s in g.slices)
    )
    assert not group.prunable
    assert "groups=2 normalizes over groups of 3 channels" in group.reason
