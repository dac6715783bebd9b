"""Tests for keras_guided.rules: the one registry of layer knowledge."""

import os
import re

import keras
import numpy as np
import pytest
from keras import layers

import keras_guided
from keras_guided import rules
from keras_guided import stats

ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)


def test_every_built_in_rule_is_in_the_supported_layers_table():
    with open(os.path.join(ROOT, "docs", "supported-layers.md")) as f:
        table = f.read()
    from keras_guided.rules._builtin import _BUILTIN

    missing = []
    for classes, _ in _BUILTIN:
        for cls in classes if isinstance(classes, tuple) else (classes,):
            name = cls.__name__
            stem = re.sub(r"[123]D$", "", name)
            if not re.search(rf"`{name}`|`{stem}[*1]", table):
                missing.append(name)
    assert not missing, f"add to docs/supported-layers.md: {missing}"


@pytest.mark.parametrize(
    "layer, kind",
    [
        (layers.Dense(2), "producer"),
        (layers.Conv2D(2, 1, groups=1), "producer"),
        (layers.Embedding(4, 2), "producer"),
        (layers.DepthwiseConv2D(1), "depthwise"),
        (layers.BatchNormalization(), "normalization"),
        (layers.Flatten(), "reshape"),
        (layers.Add(), "merge"),
        (layers.MultiHeadAttention(2, 2), "attention"),
        (layers.LSTM(2), "keep"),
        (layers.Lambda(lambda x: x), None),
    ],
)
def test_rule_for_dispatches_by_class(layer, kind):
    rule = rules.rule_for(layer)
    assert (rule.kind if rule is not None else None) == kind


class Scale(keras.layers.Layer):
    """y = x @ w, a Dense without bias under another name."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), name="w")

    def call(self, x):
        return keras.ops.matmul(x, self.w)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def _scale_rule(layer, weights, kept_inputs, kept_outputs):
    w = weights["w"][kept_inputs[0]][:, kept_outputs]
    return {**layer.get_config(), "units": len(kept_outputs)}, [w]


def test_user_rules_have_flops_like_built_in_ones():
    # A user's producer used to cost 0 FLOPs. By default every element of
    # its input weights costs one MAC per output position, like Dense.
    inputs = keras.Input((5, 4))
    x = Scale(3, name="scale")(inputs)
    model = keras.Model(inputs, layers.Dense(1, name="out")(x))
    try:
        keras_guided.register_rule(
            Scale,
            _scale_rule,
            kind="producer",
            output_weights=[("w", -1)],
            input_weights=[("w", 0)],
        )
        assert stats.layer_costs(model)["scale"]["flops"] == 2 * 5 * 12
        keras_guided.register_rule(
            Scale,
            _scale_rule,
            kind="producer",
            output_weights=[("w", -1)],
            input_weights=[("w", 0)],
            flops=lambda layer, input_shape, output_shape: {"w": 7},
        )
        assert stats.layer_costs(model)["scale"]["flops"] == 7 * 12
        groups = keras_guided.find_unit_groups(model)
        pruned = keras_guided.prune_model(model, target={"flops": 0.7})
        assert stats.count_flops(pruned) <= 0.7 * stats.count_flops(model)
        assert len(groups) == 2
    finally:
        rules.unregister_rule(Scale)
    with pytest.raises(
        ValueError,
        match=r"`flops` must be None or a "
        r"function .* Received: flops=3",
    ):
        keras_guided.register_rule(Scale, _scale_rule, flops=3)


def test_weight_keys_tell_apart_the_kernels_of_attention():
    inputs = keras.Input((3, 4))
    attention = layers.MultiHeadAttention(2, 2, name="attention")
    attention(inputs, inputs)
    keys = keras_guided.units.weight_keys(attention)
    assert keys[:2] == ["query/kernel", "query/bias"]
    assert len(set(keys)) == len(keys) == 8
    value = keras_guided.units.get_weight(attention, "value/kernel")
    assert value.path.endswith("value/kernel")
    dense = layers.Dense(2)
    dense.build((None, 3))
    assert keras_guided.units.weight_keys(dense) == ["kernel", "bias"]


def test_flops_of_attention_grow_with_the_heads():
    def model(heads):
        inputs = keras.Input((6, 8))
        x = layers.MultiHeadAttention(heads, 4, name="attention")(
            inputs, inputs
        )
        return keras.Model(inputs, x)

    one = stats.layer_costs(model(1))["attention"]["flops"]
    two = stats.layer_costs(model(2))["attention"]["flops"]
    # Per head: q, k, v and output projections (4 x 2 x 6 x 8 x 4) and the
    # scores and weighted sum (2 x 6 x 6 x (4 + 4)).
    assert two - one == 4 * 2 * 6 * 8 * 4 + 2 * 6 * 6 * 8
    assert np.isclose(one, 4 * 2 * 6 * 8 * 4 + 2 * 6 * 6 * 8)


def test_convnext_layer_scale_is_a_per_channel_follower():
    from keras.src.applications.convnext import LayerScale

    inputs = keras.Input((4,))
    x = layers.Dense(5, name="hidden")(inputs)
    x = LayerScale(0.5, 5, name="scale")(x)
    model = keras.Model(inputs, layers.Dense(1, name="out")(x))
    scale = model.get_layer("scale")
    scale.set_weights([np.arange(1, 6, dtype="float32")])
    kernel, bias = model.get_layer("hidden").get_weights()
    kernel[:, 1] = 0.0
    model.get_layer("hidden").set_weights([kernel, bias])
    group = keras_guided.find_unit_groups(model)[0]
    assert ("scale", "follower") in {
        (s.layer.name, s.role) for s in group.slices
    }
    pruned = keras_guided.prune_model(model)
    new = pruned.get_layer("scale")
    assert new.projection_dim == 4
    np.testing.assert_array_equal(new.get_weights()[0], [1, 3, 4, 5])
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(pruned(x), model(x), atol=1e-5)


def test_one_registered_rule_gives_groups_flops_latency_and_a_rebuild(
    monkeypatch, tmp_path
):
    from keras_guided.latency import _measure as _latency_measure

    timed = []

    def fake_time(layer_class, kwargs, input_shape, settings):
        timed.append(layer_class)
        return 1e-3 + 1e-4 * kwargs["units"] * input_shape[-1]

    monkeypatch.setattr(_latency_measure, "time_layer", fake_time)
    monkeypatch.setattr(_latency_measure, "check_runtime", lambda: None)
    monkeypatch.setattr(
        _latency_measure, "time_model", lambda model, settings, data=None: 0.0
    )
    inputs = keras.Input((4,))
    hidden = Scale(6, name="proj")(inputs)
    model = keras.Model(inputs, layers.Dense(1, name="out")(hidden))
    w = model.get_layer("proj").get_weights()[0]
    w[:, [1, 3, 4]] = 0.0  # three dead units
    model.get_layer("proj").set_weights([w])
    try:
        keras_guided.register_rule(
            Scale,
            _scale_rule,
            kind="producer",
            output_weights=[("w", -1)],
            input_weights=[("w", 0)],
            latency="dense",
        )
        groups = keras_guided.find_unit_groups(model)
        group = next(g for g in groups if "proj" in g.layers)
        assert group.prunable and group.num_units == 6
        assert stats.layer_costs(model)["proj"]["flops"] == 2 * 4 * 6
        table = keras_guided.build_latency_table(
            model, cache_dir=str(tmp_path), verbose=0
        )
        assert table.layers["proj"].kind == "measured"
        assert Scale in timed
        small = keras_guided.prune_model(model)
        assert small.get_layer("proj").get_weights()[0].shape == (4, 3)
        x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
        np.testing.assert_allclose(
            small.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
        )
    finally:
        rules.unregister_rule(Scale)
    with pytest.raises(ValueError) as info:
        keras_guided.register_rule(Scale, _scale_rule, latency="fast")
    assert str(info.value) == (
        "`latency` must be None or one of ('dense', 'conv', 'depthwise'). "
        "Received: latency='fast'"
    )


def test_every_built_in_producer_and_normalization_names_its_unit_family():
    # A built-in row without a family would have no unit axes: its units
    # would silently never be found.
    from keras_guided.rules._builtin import _BUILTIN

    for classes, rule in _BUILTIN:
        if rule.kind in ("producer", "depthwise", "normalization"):
            assert rule.family is not None, (classes, rule)
            if not callable(rule.family):
                assert rule.family in rules.FAMILIES, (classes, rule.family)
    assert set(rules.KERNEL_FAMILIES) <= set(rules.FAMILIES)


def _bias_at_zero_layer(cls):
    """A built layer of `cls` with a random bias and a relu, and its input
    shape (batch 1, 5 positions per spatial axis)."""
    name = cls.__name__
    rank = 1 if "1D" in name else 3 if "3D" in name else 2
    if cls is layers.Dense:
        layer, shape = cls(3, activation="relu"), (1, 4)
    elif name.startswith("Depthwise"):
        layer = cls(3, activation="relu", padding="same")
        shape = (1,) + (5,) * rank + (2,)
    else:
        layer = cls(3, 3, activation="relu", padding="same")
        shape = (1,) + (5,) * rank + (2,)
    layer.build(shape)
    rng = np.random.default_rng(0)
    layer.bias.assign(rng.normal(size=layer.bias.shape).astype("float32"))
    return layer, shape


def test_bias_at_zero_rules_give_the_layers_output_on_zeros():
    # `prune_model` trusts `bias_at_zero` instead of calling the layer: a
    # wrong row would fold wrong constants into the consumers.
    from keras_guided.rules._builtin import _BUILTIN
    from keras_guided.surgery import _constants

    flagged = [c for c, rule in _BUILTIN if rule.bias_at_zero]
    assert layers.Conv2D in flagged and layers.Dense in flagged
    for cls in flagged:
        layer, shape = _bias_at_zero_layer(cls)
        assert _constants._bias_only(layer), cls
        expected = keras.ops.convert_to_numpy(layer(np.zeros(shape)))
        np.testing.assert_allclose(
            _constants._bias_response(layer, expected.shape),
            expected,
            atol=1e-6,
            err_msg=cls.__name__,
        )

    class Shifted(layers.Conv2D):
        def call(self, inputs):
            return super().call(inputs + 1.0)

    assert not _constants._bias_only(Shifted(3, 3))
    assert not _constants._bias_only(layers.EinsumDense("ab,bc->ac", 3))


@pytest.mark.parametrize(
    "layer, family, weights",
    [
        (layers.Dense(3), "dense", ["kernel", "bias"]),
        (layers.Conv2D(3, 3), "conv", ["kernel", "bias"]),
        (
            layers.Conv2DTranspose(3, 3, use_bias=False),
            "conv_transpose",
            ["kernel"],
        ),
        (
            layers.SeparableConv2D(3, 3),
            "separable",
            ["pointwise_kernel", "bias"],
        ),
        (layers.DepthwiseConv2D(3), "depthwise", ["kernel", "bias"]),
        (layers.EinsumDense("ab,bc->ac", output_shape=3), "dense", ["kernel"]),
        (
            layers.EinsumDense(
                "abc,cd->abd", output_shape=(None, 3), bias_axes="d"
            ),
            "dense",
            ["kernel", "bias"],
        ),
        (
            layers.EinsumDense("abc,cde->abde", output_shape=(None, 2, 3)),
            None,
            [],
        ),
        (layers.ReLU(), None, []),
    ],
)
def test_unit_axes_come_from_the_rule_family(layer, family, weights):
    shape = (2, 6, 6, 4) if "Conv" in type(layer).__name__ else (2, 5, 4)
    if isinstance(layer, (layers.Dense, layers.ReLU)) or (
        getattr(layer, "equation", "").startswith("ab,")
    ):
        shape = (2, 4)
    layer.build(shape)
    assert keras_guided.units.layer_family(layer) == family
    assert rules.unit_family(layer) == family
    slices = keras_guided.units.output_slices(layer)
    assert [s.weight for s in slices] == weights


def test_a_dense_subclass_gets_the_dense_unit_axes():
    class Scaled(layers.Dense):
        pass

    layer = Scaled(3)
    layer.build((2, 4))
    assert keras_guided.units.layer_family(layer) == "dense"
    assert keras_guided.units.num_units(layer) == 3
    assert [
        (s.weight, s.axis) for s in keras_guided.units.input_slices(layer)
    ] == [("kernel", 0)]


def test_plain_ops_have_kinds_and_layers_have_none():
    inputs = keras.Input((4,))
    other = keras.Input((4,))
    nodes = {
        "merge": inputs + other,
        "elementwise": keras.ops.relu(inputs),
        "transpose": keras.ops.transpose(inputs),
        "shape_only": keras.ops.zeros_like(inputs),
        "getitem": inputs[:, :2],
    }
    for kind, tensor in nodes.items():
        assert rules.op_kind(tensor._keras_history.operation) == kind
    assert rules.op_kind(layers.Add()) is None
    assert rules.op_kind(keras.ops.einsum) is None


def test_no_module_outside_rules_branches_on_a_unit_family():
    root = os.path.dirname(keras_guided.__file__)
    found = []
    for folder, _, files in os.walk(root):
        if os.path.relpath(folder, root).split(os.sep)[0] == "rules":
            continue
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            with open(path) as file:
                text = file.read()
            branches = re.findall(
                r"_family\([^)]*\)\s*(?:==|!=|is|in|not)|FAMILIES"
                r"|startswith\(\"Depthwise",
                text,
            )
            if branches:
                found.append(os.path.relpath(path, root))
    assert found == []


def test_no_module_outside_rules_branches_on_a_layer_class_or_family():
    # Layer knowledge lives in `rules/`: a family label compared, or a
    # `keras.layers` class tested with isinstance, elsewhere is a second
    # dialect. `keras.layers.Layer` (is it a layer at all) and `RNN` in
    # the export's crash message (the calibrator's known crash, not
    # pruning knowledge) are allowed.
    root = os.path.dirname(keras_guided.__file__)
    allowed = {"Layer", "RNN", "InputLayer"}
    found = []
    for folder, _, files in os.walk(root):
        if os.path.relpath(folder, root).split(os.sep)[0] == "rules":
            continue
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            with open(path) as file:
                text = file.read()
            families = re.findall(
                r"(?<!for )\b\w*family\)?\s*(?:==|!=|in\b|not in\b|is\b)"
                r"|rule\.family\b",
                text,
            )
            classes = [
                cls
                for cls in re.findall(
                    r"isinstance\([^)]*?(?:keras\.layers|keras_layers|layers)"
                    r"\.(\w+)",
                    text,
                )
                if cls not in allowed
            ]
            if families or classes:
                found.append((os.path.relpath(path, root), families, classes))
    assert found == []


def test_built_in_rules_carry_their_unit_axes_as_fields():
    # One dialect: `units.output_slices` / `input_slices` are the rule's
    # own `output_weights` / `input_weights`, for every built-in layer
    # with units of its own, and no longer a family look-up.
    from keras_guided.rules._builtin import _BUILTIN

    for classes, rule in _BUILTIN:
        if rule.kind in rules.UNIT_KINDS:
            assert rule.output_weights, classes
    layer = layers.SeparableConv2D(3, 3, depth_multiplier=2)
    layer.build((1, 6, 6, 4))
    rule = rules.rule_for(layer)
    assert rule.output_axes(layer) == (
        ("pointwise_kernel", -1),
        ("bias", 0),
    )
    assert [
        (s.weight, s.axis, s.block)
        for s in keras_guided.units.input_slices(layer)
    ] == [(name, axis, block) for name, axis, block in rule.input_axes(layer)]
    assert rule.input_axes(layer)[1] == ("pointwise_kernel", -2, 2)


@pytest.mark.parametrize(
    "pool, rank",
    [
        ("AdaptiveAverage", 1),
        ("AdaptiveAverage", 2),
        ("AdaptiveMax", 2),
        ("AdaptiveMax", 3),
    ],
)
def test_adaptive_pooling_prunes_exactly(pool, rank):
    # A built-in layer added as one entry of the table: pruned through,
    # and the pruned model equals the original with the removed filters
    # zeroed (their constant, relu(0) = 0, folds away).
    cls = getattr(layers, f"{pool}Pooling{rank}D", None)
    if cls is None:
        pytest.skip(f"keras.layers.{pool}Pooling{rank}D is not in this Keras")
    conv = {1: layers.Conv1D, 2: layers.Conv2D, 3: layers.Conv3D}[rank]
    inputs = keras.Input((6,) * rank + (2,))
    hidden = conv(4, 3, padding="same", activation="relu", name="conv")(inputs)
    hidden = cls((2,) * rank, name="pool")(hidden)
    outputs = layers.Dense(3, name="head")(layers.Flatten()(hidden))
    model = keras.Model(inputs, outputs)
    groups = keras_guided.find_unit_groups(model)
    group = next(g for g in groups if "conv" in g.layers)
    assert group.prunable and group.num_units == 4
    kernel, bias = model.get_layer("conv").get_weights()
    kernel[..., [1, 3]] = 0.0
    bias[[1, 3]] = 0.0
    model.get_layer("conv").set_weights([kernel, bias])
    small = keras_guided.prune_model(model)
    assert small.get_layer("conv").get_weights()[0].shape[-1] == 2
    x = np.random.default_rng(0).normal(size=(3,) + (6,) * rank + (2,))
    np.testing.assert_allclose(
        small.predict(x.astype("float32"), verbose=0),
        model.predict(x.astype("float32"), verbose=0),
        atol=1e-5,
    )
