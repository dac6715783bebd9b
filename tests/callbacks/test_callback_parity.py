"""`GuidedPruning` penalizes and counts only what `prune_model` removes:
at the end of `fit` its `live_flops` and `live_params` are what
`keras_guided.stats` counts on `prune_model(model)`, and a budget that the
removable groups cannot reach is refused before training."""

import re

import keras
import numpy as np
import pytest

import keras_guided
from keras_guided import stats


def _convnext():
    """Depthwise conv, LayerNormalization, pointwise Dense MLP, residual."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 2, strides=2, name="stem")(inputs)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="stem_norm")(x)
    for i in range(2):
        y = keras.layers.DepthwiseConv2D(3, padding="same", name=f"dw_{i}")(x)
        y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"ln_{i}")(y)
        y = keras.layers.Dense(32, activation="gelu", name=f"up_{i}")(y)
        y = keras.layers.Dense(8, name=f"down_{i}")(y)
        x = keras.layers.Add(name=f"add_{i}")([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.LayerNormalization(name="head_norm")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(x))


def _transformer():
    """Dense embedding, MultiHeadAttention and a feed-forward block, each
    with a residual and a LayerNormalization."""
    inputs = keras.Input((6, 5))
    x = keras.layers.Dense(16, name="embed")(inputs)
    attended = keras.layers.MultiHeadAttention(4, 4, name="mha")(x, x)
    x = keras.layers.LayerNormalization(name="ln_1")(
        keras.layers.Add()([x, attended])
    )
    y = keras.layers.Dense(48, activation="relu", name="ffn_up")(x)
    y = keras.layers.Dense(16, name="ffn_down")(y)
    x = keras.layers.LayerNormalization(name="ln_2")(keras.layers.Add()([x, y]))
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(x))


def _resnet():
    """Conv, BatchNormalization and a residual Add."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(12, 3, padding="same", name="conv_0")(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn_0")(x))
    y = keras.layers.Conv2D(16, 3, padding="same", name="conv_1")(x)
    y = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn_1")(y))
    y = keras.layers.Conv2D(12, 1, name="conv_2")(y)
    y = keras.layers.BatchNormalization(name="bn_2")(y)
    x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(x))


def _fit(model, pruning, epochs=3):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32,) + tuple(model.input_shape[1:]))
    y = rng.normal(size=(32, model.output_shape[-1]))
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model.fit(
        x.astype("float32"),
        y.astype("float32"),
        epochs=epochs,
        batch_size=8,
        shuffle=False,
        verbose=0,
        callbacks=[pruning],
    ).history


@pytest.mark.parametrize(
    "build, target",
    [
        (_convnext, {"flops": 0.5}),
        (_transformer, {"flops": 0.6}),
        (_resnet, {"flops": 0.5}),
    ],
)
def test_live_counts_are_what_prune_model_keeps(build, target):
    keras.utils.set_random_seed(0)
    model = build()
    history = _fit(model, keras_guided.GuidedPruning(target=target))
    pruned = keras_guided.prune_model(model)
    assert history["live_flops"][-1] == stats.count_flops(pruned)
    assert history["live_params"][-1] == stats.count_params(pruned)
    metric, amount = next(iter(target.items()))
    count = stats.count_flops if metric == "flops" else stats.count_params
    assert count(pruned) <= amount * count(model)


def test_units_behind_a_layer_normalization_are_left_alone():
    # The residual stream of the ConvNeXt block is normalized over its
    # channels: prune_model keeps its dead units, so training never
    # penalizes them; the MLP's hidden units are pruned instead.
    keras.utils.set_random_seed(0)
    model = _convnext()
    pruning = keras_guided.GuidedPruning(target={"flops": 0.5})
    history = _fit(model, pruning)
    assert {g.layers[0] for g in pruning.groups} == {"up_0", "up_1"}
    assert history["live_units/up_0"][-1] < 32
    kernel = model.get_layer("stem").get_weights()[0]
    assert np.all(np.abs(kernel).sum(axis=(0, 1, 2)) > 0)


def _frozen_base():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    x = keras.layers.Dense(32, activation="relu", name="base_1")(inputs)
    x = keras.layers.Dense(32, activation="relu", name="base_2")(x)
    x = keras.layers.Dense(4, activation="relu", name="head")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
    model.get_layer("base_1").trainable = False
    model.get_layer("base_2").trainable = False
    return model


def _unreachable(share, groups):
    return re.escape(
        f"Cannot keep only 50% of the flops: removing every prunable unit "
        f"allowed by min_units=1 keeps {share}. Training prunes only the "
        "trainable groups whose dead units prune_model removes exactly; "
        f"the others keep all their units (prunable groups: {groups})."
    )


def test_a_frozen_base_makes_the_budget_unreachable():
    model = _frozen_base()
    pruning = keras_guided.GuidedPruning(target={"flops": 0.5})
    with pytest.raises(
        ValueError,
        match=_unreachable("92.8%", "1 trainable, 2 frozen")
        + re.escape(
            " Raise the target, make more groups prunable, or pass "
            "on_unreachable='warn' to prune as far as they allow."
        ),
    ):
        _fit(model, pruning)
    # Refused before the first step, and the step hook is off again.
    assert model.optimizer.iterations.numpy() == 0
    history = model.fit(np.ones((4, 8)), np.ones((4, 2)), verbose=0)
    assert "live_units" not in history.history


def test_a_floor_above_the_target_is_refused_like_prune_model():
    # Every group already cut to one unit: nothing is left to remove.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    x = keras.layers.Dense(1, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(64, name="out")(x))
    with pytest.raises(ValueError) as from_prune:
        keras_guided.prune_model(model, target={"flops": 0.5})
    with pytest.raises(ValueError) as from_fit:
        _fit(model, keras_guided.GuidedPruning(target={"flops": 0.5}))
    first = str(from_prune.value).split(". ")[0]
    assert first == (
        "Cannot keep only 50% of the flops: removing every "
        "prunable unit allowed by min_units=1 keeps 100.0%"
    )
    assert str(from_fit.value).startswith(first + ". Training prunes")


def test_on_unreachable_warn_prunes_as_far_as_it_can():
    model = _frozen_base()
    pruning = keras_guided.GuidedPruning(
        target={"flops": 0.5}, on_unreachable="warn"
    )
    with pytest.warns(
        UserWarning,
        match=_unreachable("92.8%", "1 trainable, 2 frozen")
        + re.escape(
            " Pruning as close to the budget as the layers allow "
            "(on_unreachable='warn')."
        ),
    ):
        history = _fit(model, pruning)
    assert history["live_units/head"][-1] == 1


def _siamese():
    """One Dense block (a nested model) applied to both inputs."""
    block = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(32, activation="relu")],
        name="tower",
    )
    left, right = keras.Input((6,)), keras.Input((6,))
    merged = keras.layers.Concatenate()([block(left), block(right)])
    return keras.Model([left, right], keras.layers.Dense(2, name="out")(merged))


def test_a_shared_tower_is_counted_per_call_by_the_callback_and_stats():
    keras.utils.set_random_seed(0)
    model = _siamese()
    assert stats.count_flops(model) == 2 * (2 * 6 * 32) + 2 * 64 * 2
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(32, 6)).astype("float32") for _ in range(2)]
    y = rng.normal(size=(32, 2)).astype("float32")
    model.compile(keras.optimizers.Adam(0.01), "mse")
    history = model.fit(
        x,
        y,
        epochs=3,
        batch_size=8,
        verbose=0,
        callbacks=[keras_guided.GuidedPruning(target={"flops": 0.5})],
    ).history
    pruned = keras_guided.prune_model(model)
    assert history["live_flops"][-1] == stats.count_flops(pruned)
    assert stats.count_flops(pruned) <= 0.5 * stats.count_flops(model)


def test_albert_shared_layer_live_flops_are_what_prune_model_keeps():
    # ALBERT shares one transformer layer across its depth: the callback,
    # `count_flops` and the pruned model all price it once per call.
    keras_hub = pytest.importorskip("keras_hub")
    from keras_guided import graph

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.AlbertBackbone(
        vocabulary_size=50,
        num_layers=4,
        num_heads=2,
        num_groups=1,
        num_inner_repetitions=1,
        embedding_dim=8,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=32,
    )
    model = keras_hub.models.AlbertTextClassifier(
        backbone=backbone, num_classes=2, preprocessor=None
    )
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(1, 50, (32, 8)).astype("int32"),
        "segment_ids": np.zeros((32, 8), "int32"),
        "padding_mask": np.ones((32, 8), "int32"),
    }
    model.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    with pytest.warns(UserWarning, match="inputs of unknown length"):
        history = model.fit(
            x,
            rng.integers(0, 2, (32,)),
            epochs=4,
            batch_size=8,
            verbose=0,
            callbacks=[keras_guided.GuidedPruning(target={"flops": 0.5})],
        ).history
    pruned = keras_guided.prune_model(model, on_unsupported="keep")

    def flops(m):  # at the callback's probe length (32)
        inputs = graph.functional_graph(m).inputs
        shapes = graph.concrete_shapes(m, [(1, 32)] * len(inputs))
        return stats.count_flops(m, shapes=shapes)

    assert history["live_flops"][-1] == flops(pruned)
    assert flops(pruned) <= 0.5 * flops(model)
    assert flops(pruned) > 0.4 * flops(model)


def test_groups_behind_a_padding_mask_are_what_prune_model_removes():
    # Embedding(mask_zero=True) adds a NotEqual whose mask reaches the
    # pooling: the dead units of the Dense before it are constant under
    # any mask, so prune_model removes what the callback counted.
    keras.utils.set_random_seed(0)
    tokens = keras.Input((10,), dtype="int32")
    x = keras.layers.Embedding(50, 16, mask_zero=True, name="emb")(tokens)
    x = keras.layers.Dense(32, activation="relu", name="hidden")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(16, activation="relu", name="d2")(x)
    model = keras.Model(tokens, keras.layers.Dense(2, name="out")(x))
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 50, (64, 10)).astype("int32")
    ids[:, 7:] = 0  # padding
    model.compile(keras.optimizers.Adam(0.01), "mse")
    history = model.fit(
        ids,
        rng.normal(size=(64, 2)).astype("float32"),
        epochs=4,
        batch_size=16,
        shuffle=False,
        verbose=0,
        callbacks=[keras_guided.GuidedPruning(target={"flops": 0.5})],
    ).history
    pruned, report = keras_guided.prune_model(model, return_report=True)
    assert history["live_flops"][-1] == stats.count_flops(pruned)
    assert stats.count_flops(pruned) <= 0.5 * stats.count_flops(model)
    assert pruned.get_layer("hidden").units < 32
    assert not any("NotEqual" in note for note in report.notes)
    np.testing.assert_allclose(
        pruned.predict(ids, verbose=0), model.predict(ids, verbose=0), atol=1e-6
    )
