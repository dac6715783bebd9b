import keras
import numpy as np
import pytest

from keras_guided import stats


def test_flops_by_hand():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, name="conv"),  # 6x6x4
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw"),
            keras.layers.SeparableConv2D(5, 1, name="sep"),  # 4x4x5
            keras.layers.Conv2DTranspose(3, 2, strides=2, name="tr"),  # 8x8x3
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(10, name="head"),
        ]
    )
    costs = stats.layer_costs(model)
    assert costs["conv"] == {"params": 40, "flops": 2 * 36 * 9 * 4}
    assert costs["bn"] == {"params": 16, "flops": 0}
    assert costs["dw"]["flops"] == 2 * 16 * 9 * 4 * 2
    assert costs["sep"]["flops"] == 2 * 16 * (8 + 8 * 5)
    assert costs["tr"]["flops"] == 2 * 16 * (2 * 2 * 3 * 5)
    assert costs["head"] == {"params": 1930, "flops": 2 * 192 * 10}
    assert stats.count_params(model) == model.count_params()
    assert stats.count_flops(model) == sum(c["flops"] for c in costs.values())


def test_shared_layer_counts_each_call_but_reuse_elsewhere_does_not():
    inputs = keras.Input((6,))
    shared = keras.layers.Dense(6, name="shared")
    model = keras.Model(inputs, shared(shared(inputs)))
    assert stats.layer_costs(model)["shared"]["flops"] == 2 * 2 * 36
    # Calling the model inside another graph adds nodes to its layers; the
    # model's own count must not change.
    outer_in = keras.Input((6,))
    keras.Model(outer_in, model(outer_in))
    assert stats.layer_costs(model)["shared"]["flops"] == 2 * 2 * 36


def _tower(block):
    """`block` applied to two inputs (a Siamese tower), then a head."""
    left, right = keras.Input((16,)), keras.Input((16,))
    merged = keras.layers.Concatenate()([block(left), block(right)])
    return keras.Model(
        [left, right], keras.layers.Dense(1, name="head")(merged)
    )


def test_a_nested_model_called_twice_is_priced_twice():
    block = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(64), keras.layers.Dense(32)],
        name="block",
    )
    model = _tower(block)
    per_call = 2 * (16 * 64 + 64 * 32)
    assert stats.count_flops(model) == 2 * per_call + 2 * 64
    costs = stats.layer_costs(model)
    assert costs["block/dense"]["flops"] == 2 * 2 * 16 * 64  # two calls
    assert costs["block/dense"]["params"] == 16 * 64 + 64  # weights once
    assert stats.count_params(model) == model.count_params()


def test_a_nested_model_is_priced_at_the_shapes_of_each_call():
    block = keras.Sequential(
        [keras.Input((None, 8)), keras.layers.Dense(4, name="d")], name="b"
    )
    short, long = keras.Input((3, 8)), keras.Input((5, 8))
    merged = keras.layers.Concatenate(axis=1)([block(short), block(long)])
    model = keras.Model([short, long], merged)
    assert stats.count_flops(model) == 2 * 8 * 4 * (3 + 5)


def test_a_block_reused_in_depth_is_priced_per_call():
    inputs = keras.Input((32,))
    block = keras.Sequential(
        [keras.Input((32,)), keras.layers.Dense(64), keras.layers.Dense(32)]
    )
    outputs = block(keras.layers.Dense(32, name="mid")(block(inputs)))
    model = keras.Model(inputs, outputs)
    assert stats.count_flops(model) == 2 * 2 * (32 * 64 + 64 * 32) + 2 * 32 * 32


def test_a_shared_conv_on_two_inputs_is_priced_twice():
    conv = keras.layers.Conv2D(4, 3, name="conv")
    left, right = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    model = keras.Model(
        [left, right], keras.layers.Add()([conv(left), conv(right)])
    )
    assert stats.count_flops(model) == 2 * (2 * 6 * 6 * 3 * 3 * 3 * 4)


def test_nested_model_names_and_compare_table():
    inner = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, name="d")], name="inner"
    )
    inputs = keras.Input((4,))
    big = keras.Model(inputs, keras.layers.Dense(2, name="out")(inner(inputs)))
    costs = stats.layer_costs(big)
    assert list(costs)[-2:] == ["inner/d", "out"]
    assert costs["inner/d"]["params"] == 15
    small = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(2, name="out")]
    )
    rows = stats.compare(big, small)
    total = rows[-1]
    assert total["layer"] == "total"
    assert total["params_before"] == 15 + 8
    assert total["params_after"] == 10
    table = stats.format_table(rows, ["layer", "params_before"])
    assert table.splitlines()[0] == "| layer | params_before |"
    assert "| inner/d | 15 |" in table


def test_errors():
    model = keras.Sequential([keras.layers.Dense(2)], name="lazy")
    with pytest.raises(ValueError, match=r"Model 'lazy' is not built"):
        stats.layer_costs(model)
    dynamic = keras.Sequential(
        [keras.Input((None, None, 1)), keras.layers.Conv2D(2, 3)]
    )
    with pytest.raises(ValueError, match=r"unknown spatial dimensions"):
        stats.count_flops(dynamic)


def test_layers_priced_at_kept_shapes():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, name="head")]
    )
    (row,) = stats.model_costs(model)
    assert row.layer is model.layers[0]
    assert [w.key for w in row.weights] == ["kernel", "bias"]
    assert stats.price(row, "params") == 15
    assert stats.price(row, "flops", {"kernel": (2, 3)}) == 2 * 2 * 3
    assert stats.price(row, "params", {"kernel": (2, 1), "bias": (1,)}) == 3
    assert stats.total([row, row], "flops", [None, {"kernel": (1, 1)}]) == (
        24 + 2
    )
    with pytest.raises(
        ValueError,
        match=r"`metric` must be one of "
        r"\['flops', 'params'\]\. Received: metric='ms'",
    ):
        stats.price(row, "ms")


# ------------------------------------------- recurrent layers and wrappers
def test_bidirectional_lstm_classifier_counts_both_directions():
    steps, features, units = 200, 128, 64
    inputs = keras.Input((steps,), dtype="int32")
    hidden = keras.layers.Embedding(20000, features)(inputs)
    hidden = keras.layers.Bidirectional(keras.layers.LSTM(units), name="bi")(
        hidden
    )
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(hidden))
    # One MAC (2 FLOPs) per kernel and recurrent-kernel element (4 gates x
    # units columns) per step, in each of the 2 directions.
    lstm = 2 * steps * (features + units) * 4 * units
    assert stats.layer_costs(model)["bi"]["flops"] == 2 * lstm
    assert stats.count_flops(model) == 2 * lstm + 2 * 2 * units
    assert stats.count_flops(model) == 39_321_856


@pytest.mark.parametrize(
    "cell, gates", [(keras.layers.GRU, 3), (keras.layers.SimpleRNN, 1)]
)
def test_bidirectional_sum_merge_and_other_cells(cell, gates):
    inputs = keras.Input((7, 5))
    outputs = keras.layers.Bidirectional(cell(4), merge_mode="sum", name="bi")(
        inputs
    )
    model = keras.Model(inputs, outputs)
    assert stats.count_flops(model) == 2 * (2 * 7 * (5 + 4) * gates * 4)


def test_time_distributed_counts_its_inner_layer_every_step():
    inputs = keras.Input((6, 5))
    outputs = keras.layers.TimeDistributed(keras.layers.Dense(3), name="td")(
        inputs
    )
    model = keras.Model(inputs, outputs)
    assert stats.count_flops(model) == 6 * 2 * 5 * 3


# --------------------------------------------------- unpriced layers
class Mix(keras.layers.Layer):
    """A layer with weights and no rule: its FLOPs are unknown."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 40), name="w")

    def call(self, x):
        return keras.ops.matmul(x, self.w)


def _with_mix():
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, name="hidden")(inputs)
    hidden = keras.layers.Dense(8, name="hidden2")(hidden)
    hidden = Mix(name="mix")(hidden)
    return keras.Model(
        inputs, keras.layers.Dense(2, name="out")(hidden), name="mixed"
    )


_MIX = (
    "1 layer of model 'mixed' has unknown FLOPs, counted as 0: 'mix' "
    "(Mix: no rule prices it); it holds 60.4 % of its 530 parameters."
)


def test_an_unpriced_layer_warns_with_its_share_or_raises_when_strict():
    model = _with_mix()
    with pytest.warns(UserWarning) as record:
        flops = stats.count_flops(model)
    assert flops == 2 * (6 * 8 + 8 * 8 + 40 * 2)
    assert [str(w.message) for w in record] == [
        _MIX + " Give it a FLOPs rule (`keras_guided.register_rule(cls, "
        "rule, flops=...)`). Pass strict=True to make this an error."
    ]
    with pytest.raises(ValueError) as info:
        stats.count_flops(model, strict=True)
    assert str(info.value) == (
        _MIX + " Give it a FLOPs rule (`keras_guided.register_rule(cls, "
        "rule, flops=...)`). Pass strict=False to count them as 0 with a "
        "warning."
    )
    missing = stats.unpriced(model)
    assert (missing.params, missing.total_params) == (320, 530)
    assert missing.layers == (("mix", "Mix", "no rule prices it"),)


def test_a_flops_budget_on_a_mostly_unpriced_model_says_so():
    import keras_guided

    with pytest.warns(UserWarning) as record:
        _, report = keras_guided.prune_model(
            _with_mix(),
            target={"flops": 0.9},
            on_unsupported="keep",
            return_report=True,
        )
    assert (
        "A FLOPs budget counts only the layers it can price: "
        + _MIX
        + " A FLOPs target can be met while those layers stay whole: give "
        "them a FLOPs rule (`keras_guided.register_rule(cls, rule, "
        "flops=...)`), or set a 'params' target instead."
    ) in [str(w.message) for w in record]
    assert (
        "the FLOPs columns leave out what they cannot price: " + _MIX
        in report.notes
    )


class Classifier(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(4, activation="relu")
        self.out = keras.layers.Dense(2)

    def call(self, x):
        return self.out(self.hidden(x))


def test_a_subclassed_model_is_not_counted_as_zero_silently():
    model = Classifier()
    model(np.ones((1, 3), "float32"))
    with pytest.raises(ValueError) as info:
        stats.count_flops(model, strict=True)
    assert str(info.value) == (
        f"2 layers of model '{model.name}' have unknown FLOPs, counted as 0: "
        "'dense' (Dense: no call of it is recorded in the graph), 'dense_1' "
        "(Dense: no call of it is recorded in the graph); they hold 100.0 % "
        f"of its 26 parameters. Model '{model.name}' is subclassed: Keras "
        "records no shapes for the layers its `call` uses, so its FLOPs "
        "are unknown. Rebuild it with the Functional API (`keras.Model("
        "inputs, outputs)`) to count them. Pass strict=False to count them "
        "as 0 with a warning."
    )
    with pytest.warns(UserWarning, match="is subclassed"):
        assert stats.count_flops(model) == 0


def test_count_flops_of_a_variable_length_model_asks_for_its_shapes():
    import re

    import keras_guided

    model = keras.Sequential(
        [keras.Input((None, 4)), keras.layers.Conv1D(2, 3, name="conv")]
    )
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Cannot count FLOPs of layer 'conv' (Conv1D): its tensor of "
            "shape (None, None, 2) has unknown spatial dimensions. Pass "
            "`shapes=keras_guided.graph.concrete_shapes(model, "
            "input_shapes)` to count them at the input shapes you give "
            "(batch axis included, e.g. [(1, 128)]), or build the model "
            "with a fixed input size."
        ),
    ):
        stats.count_flops(model)
    shapes = keras_guided.graph.concrete_shapes(model, [(1, 10, 4)])
    # 8 output steps x 2 filters x (3 x 4) multiply-adds x 2.
    assert stats.count_flops(model, shapes=shapes) == 8 * 2 * 12 * 2
