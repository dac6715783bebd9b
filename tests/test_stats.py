import keras
import pytest

from keras_guided import stats


def test_flops_by_hand():
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, name="conv"),                  # 6x6x4
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw"),
        keras.layers.SeparableConv2D(5, 1, name="sep"),          # 4x4x5
        keras.layers.Conv2DTranspose(3, 2, strides=2, name="tr"),  # 8x8x3
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(10, name="head"),
    ])
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


def test_nested_model_names_and_compare_table():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3,
                                                                   name="d")],
                             name="inner")
    inputs = keras.Input((4,))
    big = keras.Model(inputs, keras.layers.Dense(2, name="out")(inner(inputs)))
    costs = stats.layer_costs(big)
    assert list(costs)[-2:] == ["inner/d", "out"]
    assert costs["inner/d"]["params"] == 15
    small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2,
                                                                   name="out")])
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
    dynamic = keras.Sequential([keras.Input((None, None, 1)),
                                keras.layers.Conv2D(2, 3)])
    with pytest.raises(ValueError, match=r"unknown spatial dimensions"):
        stats.count_flops(dynamic)


def test_layers_priced_at_kept_shapes():
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(3, name="head")])
    (row,) = stats.model_costs(model)
    assert row.layer is model.layers[0]
    assert [w.key for w in row.weights] == ["kernel", "bias"]
    assert stats.price(row, "params") == 15
    assert stats.price(row, "flops", {"kernel": (2, 3)}) == 2 * 2 * 3
    assert stats.price(row, "params", {"kernel": (2, 1), "bias": (1,)}) == 3
    assert stats.total([row, row], "flops", [None, {"kernel": (1, 1)}]) == (
        24 + 2)
    with pytest.raises(ValueError, match=r"`metric` must be one of "
                       r"\['flops', 'params'\]\. Received: metric='ms'"):
        stats.price(row, "ms")
