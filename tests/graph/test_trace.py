"""Tests for keras_guided.trace: composite layers opened by tracing their call.

The keras.io layers are in tests/composite_layers.py; keras-hub models are
tiny configs built offline (no presets).
"""

import keras
import numpy as np
import pytest
from keras import layers
from keras import ops

import keras_guided
from keras_guided import trace
from keras_guided.stats._layers import iter_layers
from tests import composite_layers as composite
from tests.helpers import zero_units


def _prunable(groups):
    return [(g.num_units, g.layers[0]) for g in groups if g.prunable]


def _group(groups, layer_name):
    return next(g for g in groups if g.prunable and g.layers[0] == layer_name)


def _relative_difference(a, b, x):
    expected = keras.ops.convert_to_numpy(a(x, training=False))
    got = keras.ops.convert_to_numpy(b(x, training=False))
    return float(np.max(np.abs(expected - got)) / np.max(np.abs(expected)))


def _reloaded(model, tmp_path):
    path = str(tmp_path / "pruned.keras")
    model.save(path)
    return keras.saving.load_model(path)


def _leaf_classes(model):
    return {type(layer).__name__ for _, layer, _ in iter_layers(model)}


# ------------------------------------------------------------ tracing
def test_traced_graph_shares_the_sublayers():
    model = composite.text_classifier()
    block = model.get_layer("block")
    node = keras_guided._keras_adapter.layer_calls(block)[0]
    graph = trace.traced_graph(block, node)
    assert graph is trace.traced_graph(block, node)  # traced once
    assert graph.name == "block"
    assert any(layer is block.att for layer in graph.layers)
    x = np.random.default_rng(0).normal(size=(2, 10, 8)).astype("float32")
    np.testing.assert_allclose(graph(x), block(x, training=False), atol=1e-6)
    assert trace.failure(block, node) is None
    assert not trace.is_composite(model.get_layer("head"))


def test_transformer_block_shows_ffn_units_and_heads():
    model = composite.text_classifier()
    groups = keras_guided.find_unit_groups(model)
    assert _prunable(groups) == [
        (2, "multi_head_attention"),
        (16, "dense"),
        (12, "head"),
    ]
    stream = groups[0]
    assert stream.num_units == 8 and not stream.prunable
    assert stream.reason.startswith(
        "layer 'block' (TransformerBlock) is traced: the channels of its "
        "inputs and outputs (the residual stream) are kept; "
    )


def test_transformer_block_flops_match_a_hand_count():
    model = composite.text_classifier()  # length 10, width 8, 2 heads, 16
    steps, width, heads, ffn = 10, 8, 2, 16
    projections = 4 * (width * heads * width) * 2 * steps
    attention = 2 * steps * steps * (width + width) * heads
    feed_forward = 2 * (width * ffn) * 2 * steps
    classifier = 2 * (width * 12 + 12 * 2)
    assert keras_guided.stats.count_flops(model) == (
        projections + attention + feed_forward + classifier
    )  # 22000


def test_transformer_block_prunes_exactly(tmp_path):
    model = composite.text_classifier()
    groups = keras_guided.find_unit_groups(model)
    zero_units(_group(groups, "dense"), [1, 5, 7], inputs_only=True)
    zero_units(_group(groups, "multi_head_attention"), [0], inputs_only=True)
    pruned, report = keras_guided.prune_model(model, return_report=True)
    assert report.removed == {1: (2, 1), 2: (16, 13)}
    x = np.random.default_rng(1).integers(0, 50, (4, 10)).astype("int32")
    assert _relative_difference(model, pruned, x) <= 1e-5
    assert "TransformerBlock" not in _leaf_classes(pruned)
    reloaded = _reloaded(pruned, tmp_path)  # no custom_objects
    np.testing.assert_allclose(reloaded(x), pruned(x), atol=1e-6)


def test_transformer_block_flops_target_is_met():
    model = composite.text_classifier(ff_dim=64)
    start = keras_guided.stats.count_flops(model)
    pruned = keras_guided.prune_model(model, target={"flops": 0.5})
    kept = keras_guided.stats.count_flops(pruned)
    assert 0.49 * start <= kept <= 0.5 * start


def test_transformer_block_budget_in_fit():
    model = composite.text_classifier()
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, (64, 10)).astype("int32")
    y = (x[:, 0] > 25).astype("int32")
    pruning = keras_guided.GuidedPruning(target={"flops": 0.5})
    history = model.fit(
        x, y, epochs=3, batch_size=16, verbose=0, callbacks=[pruning]
    )
    goal = pruning.budget_report["goal"]
    assert goal == 0.5 * keras_guided.stats.count_flops(model)
    assert history.history["live_flops"][-1] <= goal
    small = keras_guided.prune_model(model)
    assert keras_guided.stats.count_flops(small) <= goal


def test_transformer_block_exports_to_litert(tmp_path):
    pytest.importorskip("ai_edge_litert")
    model = composite.text_classifier()
    pruned = keras_guided.prune_model(model, target={"flops": 0.5})
    x = np.random.default_rng(2).integers(0, 50, (8, 10)).astype("int32")
    report = keras_guided.export_tflite(
        pruned, str(tmp_path / "block.tflite"), representative_data=x
    )
    assert report.max_abs_diff < 1e-4


# ------------------------------------------------------------- mixer
def test_mlp_mixer_layer_prunes_token_and_channel_mixing():
    model = composite.mixer_classifier()
    groups = keras_guided.find_unit_groups(model)
    # Per block: the token-mixing hidden units and the channel-mixing ones;
    # the token-mixing output is transposed back, so it stays.
    assert [n for n, _ in _prunable(groups)] == [6, 6, 6, 6]
    transposed = [g for g in groups if g.num_units == 6 and not g.prunable]
    assert len(transposed) == 2
    assert all(
        g.reason.endswith("(Transpose) moves the channel axis")
        for g in transposed
    )
    token, channel = [g for g in groups if g.prunable][:2]
    zero_units(token, [0, 3], inputs_only=True)
    zero_units(channel, [2], inputs_only=True)
    pruned, report = keras_guided.prune_model(model, return_report=True)
    assert report.removed_units == 3
    x = np.random.default_rng(0).normal(size=(4, 6, 5)).astype("float32")
    assert _relative_difference(model, pruned, x) <= 1e-5


def test_mlp_mixer_flops_target_and_reload(tmp_path):
    model = composite.mixer_classifier(num_patches=32, hidden=32)
    start = keras_guided.stats.count_flops(model)
    pruned = keras_guided.prune_model(model, target={"flops": 0.5})
    assert (
        0.49 * start <= keras_guided.stats.count_flops(pruned) <= (0.5 * start)
    )
    x = np.random.default_rng(0).normal(size=(2, 32, 5)).astype("float32")
    np.testing.assert_allclose(
        _reloaded(pruned, tmp_path)(x), pruned(x), atol=1e-6
    )


# ----------------------------------------------------- kept intact
def _vit_like(patch_encoder=True):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 12))
    if patch_encoder:
        x = composite.PatchEncoder(16, 8, name="patch_encoder")(inputs)
    else:
        x = layers.Dense(8)(inputs)
    x = composite.TransformerBlock(8, 2, 16, name="block")(x)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(3, name="out")(x))


def test_patch_encoder_is_kept_intact_with_the_reason():
    model = _vit_like()
    analysis = keras_guided.graph.analyze(model, on_unsupported="keep")
    assert analysis.unsupported_reasons == [
        "layer 'patch_encoder' (PatchEncoder) is not supported: its call "
        "uses weights that no sublayer called on its inputs holds "
        "(patch_encoder/embedding/embeddings), such as its own variables or "
        "an embedding of constant positions"
    ]
    # The block behind it is still opened; its stream stays anyway.
    assert [n for n, _ in _prunable(analysis.groups)] == [2, 16]
    pruned = keras_guided.prune_model(model, target={"flops": 0.5})
    assert "PatchEncoder" in _leaf_classes(pruned)
    x = np.random.default_rng(0).normal(size=(2, 16, 12)).astype("float32")
    assert pruned(x).shape == (2, 3)


class ValueBranch(layers.Layer):
    """Python control flow on a tensor value: cannot be traced."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(4)

    def build(self, input_shape):
        self.dense.build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (4,)

    def call(self, x):
        if float(ops.convert_to_numpy(ops.sum(x))) > 0:
            return self.dense(x)
        return self.dense(-x)


def test_untraceable_layer_is_kept_or_named_in_the_error():
    inputs = keras.Input((4,))
    x = layers.Dense(6, name="hidden")(inputs)
    x = ValueBranch(name="branch")(x)
    model = keras.Model(inputs, layers.Dense(2)(x))
    with pytest.raises(
        ValueError,
        match=(
            r"^Cannot prune through layer 'branch' \(ValueBranch\): its call "
            r"could not run on symbolic inputs \(.*\)\. Register one with "
            r"`keras_guided.register_rule\(LayerClass, rule\)`"
        ),
    ):
        keras_guided.find_unit_groups(model)
    groups = keras_guided.find_unit_groups(model, on_unsupported="keep")
    assert not groups[0].prunable
    assert groups[0].reason.startswith(
        "layer 'branch' (ValueBranch) is not supported: its call could not "
        "run on symbolic inputs"
    )
    pruned = keras_guided.prune_model(model, on_unsupported="keep")
    assert "ValueBranch" in _leaf_classes(pruned)


def test_user_rule_wins_over_tracing():
    class Scale(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = layers.Dense(3)

        def call(self, x):
            return self.inner(x)

    assert trace.is_composite(Scale())
    keras_guided.register_rule(Scale, keras_guided.rules.unchanged_rule)
    try:
        assert not trace.is_composite(Scale())
    finally:
        keras_guided.rules.unregister_rule(Scale)


# ------------------------------------------------------------ keras-hub
@pytest.fixture(scope="module")
def bert_classifier():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=200,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=32,
    )
    return keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=2, preprocessor=None
    )


def _bert_inputs(batch=4, length=16):
    rng = np.random.default_rng(0)
    mask = np.ones((batch, length), "int32")
    mask[:, length - 3 :] = 0
    return {
        "token_ids": rng.integers(0, 200, (batch, length)).astype("int32"),
        "segment_ids": np.zeros((batch, length), "int32"),
        "padding_mask": mask,
    }


def _bert_flops(model, length=16):
    shapes = keras_guided.graph.concrete_shapes(model, [(1, length)] * 3)
    return keras_guided.stats.count_flops(model, shapes=shapes)


def test_bert_shows_ffn_units_and_heads_of_every_block(bert_classifier):
    groups = keras_guided.find_unit_groups(bert_classifier)
    assert _prunable(groups) == [
        (2, "self_attention_layer"),
        (64, "feedforward_intermediate_dense"),
        (2, "self_attention_layer"),
        (64, "feedforward_intermediate_dense"),
        (32, "pooled_dense"),
    ]
    # Every block is priced: far more than the classifier's 2,176.
    assert _bert_flops(bert_classifier) == 592000


def test_bert_prunes_exactly_and_reloads(bert_classifier, tmp_path):
    model = keras.models.clone_model(bert_classifier)
    model.set_weights(bert_classifier.get_weights())
    groups = [g for g in keras_guided.find_unit_groups(model) if g.prunable]
    zero_units(groups[0], [1], inputs_only=True)  # a head of block 0
    zero_units(groups[1], [0, 10, 63], inputs_only=True)  # FFN of block 0
    zero_units(groups[3], [5], inputs_only=True)  # FFN of block 1
    x = _bert_inputs()
    pruned, report = keras_guided.prune_model(
        model, return_report=True, sample_inputs=x
    )
    assert report.removed_units == 5
    assert _relative_difference(model, pruned, x) <= 1e-5
    assert "TransformerEncoder" not in _leaf_classes(pruned)
    reloaded = _reloaded(pruned, tmp_path)
    np.testing.assert_allclose(reloaded(x), pruned(x), atol=1e-6)


def test_bert_flops_target_is_met(bert_classifier):
    x = _bert_inputs()
    pruned = keras_guided.prune_model(
        bert_classifier, target={"flops": 0.5}, sample_inputs=x
    )
    start, kept = _bert_flops(bert_classifier), _bert_flops(pruned)
    assert 0.49 * start <= kept <= 0.5 * start


def test_vit_encoder_blocks_are_opened():
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3),
        patch_size=4,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
    )
    analysis = keras_guided.graph.analyze(backbone, on_unsupported="keep")
    assert [n for n, _ in _prunable(analysis.groups)] == [2, 32, 2, 32]
    # The patching layer owns the class token: kept intact.
    assert analysis.unsupported == [
        "layer 'vit_patching_and_embedding' (ViTPatchingAndEmbedding)"
    ]


def test_gated_feed_forward_ties_gate_and_up_projections(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 8))
    x = layers.Dense(8, name="embed")(inputs)
    x = composite.GatedFeedForward(8, 12, name="ffn")(x)
    model = keras.Model(
        inputs, layers.Dense(2, name="out")(layers.GlobalAveragePooling1D()(x))
    )
    groups = keras_guided.find_unit_groups(model)
    gated = [g for g in groups if g.prunable]
    assert [(g.num_units, g.layers[:2]) for g in gated] == [
        (12, ["gate", "up"])
    ]
    producers = {(s.layer.name, s.role) for s in gated[0].slices}
    assert producers == {
        ("gate", "producer"),
        ("up", "producer"),
        ("down", "consumer"),
    }
    zero_units(gated[0], [2, 7], inputs_only=True)
    pruned = keras_guided.prune_model(model)
    x = np.random.default_rng(0).normal(size=(3, 6, 8)).astype("float32")
    assert _relative_difference(model, pruned, x) <= 1e-5
    assert _reloaded(pruned, tmp_path)(x).shape == (3, 2)


def test_layers_inside_traced_layers_can_be_protected():
    model = composite.text_classifier()
    groups = keras_guided.find_unit_groups(model)
    dense = _group(groups, "dense")
    zero_units(dense, [0], inputs_only=True)
    _, report = keras_guided.prune_model(
        model, protected=("dense",), return_report=True
    )
    assert dense.index not in report.removed


def test_bert_budget_in_fit_at_the_probe_length(bert_classifier):
    model = keras.models.clone_model(bert_classifier)
    model.set_weights(bert_classifier.get_weights())
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x = _bert_inputs(batch=32, length=32)
    y = (x["token_ids"][:, 1] < 100).astype("int32")
    pruning = keras_guided.GuidedPruning(target={"flops": 0.5})
    with pytest.warns(
        UserWarning,
        match=(
            r"^Model '.*' has inputs of unknown length, so its FLOPs are "
            r"counted "
            r"for inputs of shapes \[\(1, 32\), \(1, 32\), \(1, 32\)\] \(the "
            r"lengths `prune_model` probes without `sample_inputs`\)\. Build "
            r"the "
            r"model with fixed input lengths to count them at yours\.$"
        ),
    ):
        history = model.fit(
            x, y, epochs=3, batch_size=16, verbose=0, callbacks=[pruning]
        )
    goal = pruning.budget_report["goal"]
    assert history.history["live_flops"][-1] <= goal
    small = keras_guided.prune_model(model, sample_inputs=x)
    start = _bert_flops(bert_classifier, length=32)
    assert _bert_flops(small, length=32) <= 0.5 * start


def test_mlp_mixer_exports_to_litert(tmp_path):
    pytest.importorskip("ai_edge_litert")
    model = composite.mixer_classifier()
    pruned = keras_guided.prune_model(model, target={"flops": 0.5})
    x = np.random.default_rng(3).normal(size=(8, 6, 5)).astype("float32")
    report = keras_guided.export_tflite(
        pruned, str(tmp_path / "mixer.tflite"), representative_data=x
    )
    assert report.max_abs_diff < 1e-4


# ------------------------------------------------- several shapes, sizes
def _head(kind):
    """A conv head (8 filters, then 4 outputs) for feature maps of any
    size: a composite layer, or a nested Functional or Sequential model."""
    if kind == "layer":
        return composite.PredictionHead(8, 4, name="head")
    conv = layers.Conv2D(8, 3, padding="same", activation="relu")
    if kind == "sequential":
        return keras.Sequential(
            [keras.Input((None, None, 16)), conv, layers.Conv2D(4, 1)],
            name="head",
        )
    inputs = keras.Input((None, None, 16))
    outputs = layers.Conv2D(4, 1)(conv(inputs))
    return keras.Model(inputs, outputs, name="head")


def _two_level_detector(kind):
    inputs = keras.Input((8, 8, 3))
    p3 = layers.Conv2D(16, 3, padding="same", name="p3")(inputs)
    p4 = layers.Conv2D(16, 3, strides=2, padding="same", name="p4")(p3)
    head = _head(kind)
    outputs = layers.Concatenate()(
        [layers.Flatten()(head(p3)), layers.Flatten()(head(p4))]
    )
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("kind", ["layer", "functional", "sequential"])
def test_head_applied_to_two_feature_map_sizes_prunes_exactly(kind):
    keras.utils.set_random_seed(0)
    model = _two_level_detector(kind)
    groups = keras_guided.find_unit_groups(model)
    head_group = next(g for g in groups if g.prunable and g.num_units == 8)
    zero_units(head_group, [0, 3, 5])
    pruned = keras_guided.prune_model(model)
    x = np.random.default_rng(1).normal(size=(3, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pruned(x)),
        keras.ops.convert_to_numpy(model(x)),
        atol=1e-6,
    )
    # One head, 5 of its 8 filters kept, serving both sizes.
    head = pruned.get_layer("head")
    convs = [
        layer
        for _, layer, _ in iter_layers(head)
        if isinstance(layer, layers.Conv2D)
    ]
    assert [c.filters for c in convs] == [5, 4]


def test_traced_head_is_checked_at_each_shape_it_is_called_at():
    model = _two_level_detector("layer")
    head = model.get_layer("head")
    nodes = keras_guided._keras_adapter.layer_calls(head)
    assert [trace.failure(head, node) for node in nodes] == [None, None]
    assert trace.call_shapes(head, nodes[0]) == [(None, None, None, 16)]


def test_batch_size_read_in_a_user_layer_keeps_it_intact():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 4))
    x = layers.Dense(12, activation="relu", name="hidden")(inputs)
    x = layers.Dense(8, name="embed")(x)
    x = composite.TokenExperts(8, 16, name="switch")(x)
    outputs = layers.Dense(2)(layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    analysis = keras_guided.graph.analyze(model, on_unsupported="keep")
    assert len(analysis.unsupported_reasons) == 1
    assert analysis.unsupported_reasons[0].startswith(
        "layer 'switch' (TokenExperts) is not supported: its traced call "
        "could not run at batch size 2 ("
    )
    zero_units(_group(analysis.groups, "hidden"), [1, 4, 7])
    pruned = keras_guided.prune_model(model, on_unsupported="keep")
    assert "TokenExperts" in _leaf_classes(pruned)
    assert pruned.get_layer("hidden").units == 9
    x = np.random.default_rng(1).normal(size=(5, 6, 4)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pruned(x)),
        keras.ops.convert_to_numpy(model(x)),
        atol=1e-6,
    )
