"""Tests for keras_guided.graph: unit groups over Keras graphs."""

import keras
import numpy as np
import pytest
from keras import layers

import keras_guided
from keras_guided import graph


def _slices(group):
    return {
        (s.layer.name, s.weight, s.role): s.positions.tolist()
        for s in group.slices
    }


def _group_of(groups, layer_name):
    for group in groups:
        if any(
            s.layer.name == layer_name and s.role == "producer"
            for s in group.slices
        ):
            return group
    raise AssertionError(f"no group produced by {layer_name}")


def test_dense_chain_sequential():
    model = keras.Sequential(
        [
            keras.Input((5,)),
            layers.Dense(3, name="d1"),
            layers.Dropout(0.1, name="drop"),
            layers.Dense(2, name="d2"),
        ]
    )
    groups = keras_guided.find_unit_groups(model)
    assert [g.index for g in groups] == [0, 1]
    first, last = groups
    assert first.num_units == 3 and first.prunable and first.reason is None
    assert first.layers == ["d1", "drop"]
    assert _slices(first) == {
        ("d1", "kernel", "producer"): [[0], [1], [2]],
        ("d1", "bias", "producer"): [[0], [1], [2]],
        ("d2", "kernel", "consumer"): [[0], [1], [2]],
    }
    assert [s.axis for s in first.slices] == [-1, 0, 0]
    assert not last.prunable
    assert "model output" in last.reason and "layer 'd2' (Dense)" in last.reason


def test_conv_bn_relu_flatten_dense():
    inputs = keras.Input((3, 3, 2))
    x = layers.Conv2D(4, 2, name="conv")(inputs)  # (2, 2, 4)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.Flatten(name="flat")(x)
    outputs = layers.Dense(3, name="head")(x)
    groups = keras_guided.find_unit_groups(keras.Model(inputs, outputs))
    group = _group_of(groups, "conv")
    assert group.num_units == 4
    assert group.layers == ["conv", "bn", "relu", "flat"]
    found = _slices(group)
    # Channel c owns flattened positions c, c + 4, c + 8, c + 12.
    assert found[("head", "kernel", "consumer")] == [
        [c, c + 4, c + 8, c + 12] for c in range(4)
    ]
    assert found[("bn", "gamma", "follower")] == [[0], [1], [2], [3]]
    assert found[("bn", "moving_mean", "statistic")] == [[0], [1], [2], [3]]
    roles = [s.role for s in group.slices]
    assert roles == sorted(roles, key=graph.ROLES.index)


def test_residual_add_with_identity_shortcut_ties_producers():
    inputs = keras.Input((6,))
    stem = layers.Dense(4, name="stem")(inputs)
    branch = layers.Dense(4, name="branch")(stem)
    added = layers.Add(name="add")([stem, branch])
    outputs = layers.Dense(2, name="out")(added)
    groups = keras_guided.find_unit_groups(keras.Model(inputs, outputs))
    group = _group_of(groups, "stem")
    assert group is _group_of(groups, "branch")
    found = _slices(group)
    assert found[("stem", "kernel", "producer")] == [[0], [1], [2], [3]]
    assert found[("branch", "kernel", "producer")] == [[0], [1], [2], [3]]
    assert found[("branch", "kernel", "consumer")] == [[0], [1], [2], [3]]
    assert found[("out", "kernel", "consumer")] == [[0], [1], [2], [3]]
    assert group.layers[:2] == ["stem", "branch"]


def test_add_with_model_input_is_not_prunable():
    inputs = keras.Input((4,))
    branch = layers.Dense(4, name="branch")(inputs)
    added = layers.Add()([inputs, branch])
    outputs = layers.Dense(1, name="out")(added)
    groups = keras_guided.find_unit_groups(keras.Model(inputs, outputs))
    group = _group_of(groups, "branch")
    assert not group.prunable
    assert "model input" in group.reason


def test_concatenate_offsets_keep_branches_apart():
    inputs = keras.Input((5,))
    a = layers.Dense(2, name="a")(inputs)
    b = layers.Dense(3, name="b")(inputs)
    joined = layers.Concatenate(name="cat")([a, b])
    outputs = layers.Dense(1, name="out")(joined)
    groups = keras_guided.find_unit_groups(keras.Model(inputs, outputs))
    group_a, group_b = _group_of(groups, "a"), _group_of(groups, "b")
    assert group_a is not group_b
    assert _slices(group_a)[("out", "kernel", "consumer")] == [[0], [1]]
    assert _slices(group_b)[("out", "kernel", "consumer")] == [[2], [3], [4]]


def test_add_of_concatenation_splits_the_wide_producer():
    inputs = keras.Input((5,))
    a = layers.Dense(2, name="a")(inputs)
    b = layers.Dense(3, name="b")(inputs)
    wide = layers.Dense(5, name="wide")(inputs)
    added = layers.Add()([layers.Concatenate()([a, b]), wide])
    outputs = layers.Dense(1, name="out")(added)
    groups = keras_guided.find_unit_groups(keras.Model(inputs, outputs))
    group_a, group_b = _group_of(groups, "a"), _group_of(groups, "b")
    assert _slices(group_a)[("wide", "kernel", "producer")] == [[0], [1]]
    assert _slices(group_b)[("wide", "kernel", "producer")] == [[2], [3], [4]]


def test_depthwise_separable_block():
    inputs = keras.Input((6, 6, 2))
    x = layers.Conv2D(3, 1, name="expand")(inputs)
    x = layers.DepthwiseConv2D(
        3, depth_multiplier=2, padding="same", name="dw"
    )(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Conv2D(4, 1, name="project")(x)
    x = layers.SeparableConv2D(5, 3, depth_multiplier=2, name="sep")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(1, name="out")(x)
    groups = keras_guided.find_unit_groups(keras.Model(inputs, outputs))
    expand = _slices(_group_of(groups, "expand"))
    assert expand[("dw", "kernel", "follower")] == [[0, 1], [2, 3], [4, 5]]
    assert expand[("bn", "gamma", "follower")] == [[0, 1], [2, 3], [4, 5]]
    assert expand[("project", "kernel", "consumer")] == [[0, 1], [2, 3], [4, 5]]
    project = _slices(_group_of(groups, "project"))
    assert project[("sep", "depthwise_kernel", "consumer")] == [
        [0],
        [1],
        [2],
        [3],
    ]
    assert project[("sep", "pointwise_kernel", "consumer")] == [
        [0, 1],
        [2, 3],
        [4, 5],
        [6, 7],
    ]
    sep = _group_of(groups, "sep")
    assert sep.num_units == 5
    assert _slices(sep)[("sep", "pointwise_kernel", "producer")][4] == [4]
    dw_axis = [
        s.axis
        for s in _group_of(groups, "expand").slices
        if s.layer.name == "dw" and s.weight == "kernel"
    ]
    assert dw_axis == [(-2, -1)]


def test_squeeze_and_excitation_multiply_ties_scale():
    inputs = keras.Input((4, 4, 3))
    x = layers.Conv2D(6, 1, name="conv")(inputs)
    s = layers.GlobalAveragePooling2D(keepdims=True)(x)
    s = layers.Conv2D(2, 1, activation="relu", name="squeeze")(s)
    s = layers.Conv2D(6, 1, activation="sigmoid", name="excite")(s)
    x = layers.Multiply(name="scale")([x, s])
    outputs = layers.Conv2D(2, 1, name="out")(x)
    groups = keras_guided.find_unit_groups(keras.Model(inputs, outputs))
    group = _group_of(groups, "conv")
    assert group is _group_of(groups, "excite")
    found = _slices(group)
    assert ("squeeze", "kernel", "consumer") in found
    assert ("out", "kernel", "consumer") in found
    assert _group_of(groups, "squeeze").num_units == 2


def test_broadcast_channel_of_one_is_not_tied():
    inputs = keras.Input((4, 4, 3))
    x = layers.Conv2D(6, 1, name="conv")(inputs)
    gate = layers.Conv2D(1, 1, name="gate")(x)
    x = layers.Multiply()([x, gate])
    outputs = layers.Conv2D(2, 1, name="out")(x)
    groups = keras_guided.find_unit_groups(keras.Model(inputs, outputs))
    assert _group_of(groups, "conv") is not _group_of(groups, "gate")
    assert _group_of(groups, "conv").num_units == 6


def test_conv_transpose_axes():
    inputs = keras.Input((4, 4, 3))
    x = layers.Conv2D(2, 1, name="conv")(inputs)
    x = layers.Conv2DTranspose(5, 2, strides=2, name="up")(x)
    outputs = layers.Conv2D(1, 1, name="out")(x)
    groups = keras_guided.find_unit_groups(keras.Model(inputs, outputs))
    conv = [s for s in _group_of(groups, "conv").slices if s.layer.name == "up"]
    assert [(s.weight, s.axis, s.role) for s in conv] == [
        ("kernel", -1, "consumer")
    ]
    up = [s for s in _group_of(groups, "up").slices if s.layer.name == "up"]
    assert [(s.weight, s.axis) for s in up] == [("kernel", -2), ("bias", 0)]


def test_nested_model_is_followed():
    inner_in = keras.Input((4,))
    inner_out = layers.Dense(3, name="inner_dense")(inner_in)
    inner = keras.Model(inner_in, inner_out, name="inner")
    inputs = keras.Input((5,))
    x = layers.Dense(4, name="outer_dense")(inputs)
    x = inner(x)
    outputs = layers.Dense(1, name="out")(x)
    groups = keras_guided.find_unit_groups(keras.Model(inputs, outputs))
    outer = _slices(_group_of(groups, "outer_dense"))
    assert ("inner_dense", "kernel", "consumer") in outer
    inner_group = _group_of(groups, "inner_dense")
    assert inner_group.prunable
    assert ("out", "kernel", "consumer") in _slices(inner_group)
    assert "inner" in inner_group.layers


def test_shared_layer_unions_both_calls():
    inputs_a = keras.Input((4,))
    inputs_b = keras.Input((4,))
    a = layers.Dense(3, name="a")(inputs_a)
    b = layers.Dense(3, name="b")(inputs_b)
    shared = layers.Dense(2, name="shared")
    outputs = layers.Add()([shared(a), shared(b)])
    outputs = layers.Dense(1, name="out")(outputs)
    model = keras.Model([inputs_a, inputs_b], outputs)
    groups = keras_guided.find_unit_groups(model)
    # Row r of the shared kernel is used by a's unit r and b's unit r.
    assert _group_of(groups, "a") is _group_of(groups, "b")
    shared_group = _group_of(groups, "shared")
    assert shared_group.num_units == 2 and shared_group.prunable


def test_prelu_alpha_is_a_follower():
    inputs = keras.Input((4,))
    x = layers.Dense(3, name="hidden")(inputs)
    x = layers.PReLU(name="prelu")(x)
    outputs = layers.Dense(1)(x)
    groups = keras_guided.find_unit_groups(keras.Model(inputs, outputs))
    found = _slices(_group_of(groups, "hidden"))
    assert found[("prelu", "alpha", "follower")] == [[0], [1], [2]]


def test_reshape_preserving_channels_and_scrambling_reshape():
    inputs = keras.Input((4, 4, 1))
    x = layers.Conv2D(3, 1, name="conv")(inputs)
    x = layers.Reshape((16, 3), name="keep")(x)
    outputs = layers.Dense(1, name="out")(x)
    groups = keras_guided.find_unit_groups(keras.Model(inputs, outputs))
    assert _group_of(groups, "conv").prunable

    inputs = keras.Input((4, 4, 1))
    x = layers.Conv2D(3, 1, name="conv")(inputs)
    x = layers.Reshape((3, 16), name="scramble")(x)
    outputs = layers.Dense(1, name="out")(x)
    model = keras.Model(inputs, outputs)
    with pytest.raises(ValueError, match="layer 'scramble' \\(Reshape\\)"):
        keras_guided.find_unit_groups(model)
    groups = keras_guided.find_unit_groups(model, on_unsupported="keep")
    assert not _group_of(groups, "conv").prunable


class Mystery(keras.layers.Layer):
    def call(self, x):
        return x * 2.0


def test_unknown_layer_error_names_layer_and_fix():
    inputs = keras.Input((4,))
    x = layers.Dense(3, name="hidden")(inputs)
    x = Mystery(name="mystery")(x)
    outputs = layers.Dense(1)(x)
    model = keras.Model(inputs, outputs)
    with pytest.raises(
        ValueError,
        match=(
            r"Cannot prune through layer 'mystery' \(Mystery\): keras_guided "
            r"has no pruning rule for this layer class\. Register one with "
            r"`keras_guided\.register_rule\(LayerClass, rule\)`"
        ),
    ):
        keras_guided.find_unit_groups(model)
    groups = keras_guided.find_unit_groups(model, on_unsupported="keep")
    group = _group_of(groups, "hidden")
    assert not group.prunable
    assert "layer 'mystery' (Mystery) is not supported" in group.reason


def test_unknown_layer_on_model_input_is_harmless():
    inputs = keras.Input((4,))
    x = Mystery()(inputs)
    x = layers.Dense(3, name="hidden")(x)
    outputs = layers.Dense(1)(x)
    groups = keras_guided.find_unit_groups(keras.Model(inputs, outputs))
    assert _group_of(groups, "hidden").prunable


def test_softmax_mixes_channels():
    inputs = keras.Input((4,))
    x = layers.Dense(3, name="hidden")(inputs)
    x = layers.Softmax()(x)
    outputs = layers.Dense(1)(x)
    groups = keras_guided.find_unit_groups(keras.Model(inputs, outputs))
    assert "mixes channels" in _group_of(groups, "hidden").reason


def test_subclassed_model_error():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Net()
    model(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="is a subclassed model"):
        keras_guided.find_unit_groups(model)


def test_unbuilt_sequential_and_bad_option():
    model = keras.Sequential([layers.Dense(2)])
    with pytest.raises(ValueError, match="is not built"):
        keras_guided.find_unit_groups(model)
    built = keras.Sequential([keras.Input((2,)), layers.Dense(2)])
    with pytest.raises(ValueError, match="Received: on_unsupported='x'"):
        keras_guided.find_unit_groups(built, on_unsupported="x")


def test_keras_ops_on_symbolic_tensors_are_followed():
    inputs = keras.Input((4,))
    a = layers.Dense(3, name="a")(inputs)
    b = layers.Dense(3, name="b")(inputs)
    x = keras.activations.relu(a) * 2.0 + b
    x = keras.ops.sigmoid(x)
    outputs = layers.Dense(1, name="out")(x)
    groups = keras_guided.find_unit_groups(keras.Model(inputs, outputs))
    group = _group_of(groups, "a")
    assert group is _group_of(groups, "b") and group.prunable
    assert _slices(group)[("out", "kernel", "consumer")] == [[0], [1], [2]]


# ------------------------------------------------ reasons (issue 12)
@pytest.mark.parametrize(
    "build, reason",
    [
        (
            lambda x: layers.Reshape((3, 16), name="scramble")(x),
            r"Cannot prune through layer 'scramble' \(Reshape\): it maps 3 "
            r"input "
            r"channels to a last axis of 16, and neither divides the other",
        ),
        (
            lambda x: layers.Permute((3, 1, 2), name="move")(x),
            r"layer 'move' \(Permute\): dims=\(3, 1, 2\) moves the channel "
            r"axis",
        ),
        (
            lambda x: layers.GlobalAveragePooling2D(
                data_format="channels_first", name="pool"
            )(x),
            r"layer 'pool' \(GlobalAveragePooling2D\): "
            r"data_format='channels_first' puts the channels on axis 1",
        ),
        (
            lambda x: layers.LayerNormalization(axis=(1, 2, 3), name="norm")(x),
            r"layer 'norm' \(LayerNormalization\): axis=\[1, 2, 3\] is not the "
            r"channel axis alone",
        ),
    ],
)
def test_unsupported_configurations_say_why(build, reason):
    inputs = keras.Input((4, 4, 1))
    x = layers.Conv2D(3, 1, name="conv")(inputs)
    x = build(x)
    x = layers.Flatten()(x)
    model = keras.Model(inputs, layers.Dense(1, name="out")(x))
    with pytest.raises(ValueError, match=reason + r".*on_unsupported='keep'"):
        keras_guided.find_unit_groups(model)
    groups = keras_guided.find_unit_groups(model, on_unsupported="keep")
    assert not _group_of(groups, "conv").prunable


def test_attention_keeps_its_channels_without_an_error():
    inputs = keras.Input((5, 6))
    x = layers.Dense(6, name="before")(inputs)
    x = layers.MultiHeadAttention(2, 3, name="attention")(x, x)
    x = layers.Dense(4, name="after")(x)
    model = keras.Model(inputs, layers.Dense(1, name="out")(x))
    groups = keras_guided.find_unit_groups(model)  # no error
    before = _group_of(groups, "before")
    assert not before.prunable
    assert before.reason == (
        "layer 'attention' (MultiHeadAttention) keeps its channels: its "
        "heads are unit groups, but its query, key and value channels and "
        "its output channels are kept"
    )
    assert _group_of(groups, "after").prunable
    assert _group_of(groups, "attention").num_units == 2  # the heads


def test_dense_to_reshape_ties_units_with_the_same_channel():
    inputs = keras.Input((2,))
    x = layers.Dense(12, name="dense")(inputs)
    x = layers.Reshape((4, 3))(x)
    model = keras.Model(inputs, layers.Dense(1, name="out")(x))
    group = _group_of(keras_guided.find_unit_groups(model), "dense")
    assert group.num_units == 3
    assert _slices(group)[("dense", "kernel", "producer")] == [
        [0, 3, 6, 9],
        [1, 4, 7, 10],
        [2, 5, 8, 11],
    ]
    assert _slices(group)[("out", "kernel", "consumer")] == [[0], [1], [2]]


def test_embedding_output_dimension_is_a_unit_group():
    inputs = keras.Input((7,), dtype="int32")
    x = layers.Embedding(10, 4, name="embedding")(inputs)
    x = layers.LayerNormalization(name="norm")(x)
    x = layers.Dense(3, name="dense")(x)
    model = keras.Model(inputs, layers.Dense(1, name="out")(x))
    group = _group_of(keras_guided.find_unit_groups(model), "embedding")
    assert group.prunable and group.num_units == 4
    assert set(_slices(group)) == {
        ("embedding", "embeddings", "producer"),
        ("norm", "gamma", "follower"),
        ("norm", "beta", "follower"),
        ("dense", "kernel", "consumer"),
    }
