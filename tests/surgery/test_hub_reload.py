"""A pruned Functional model holding layers kept whole reloads with
`keras.saving.load_model`, or `prune_model` says at prune time that it
will not (warning, `PruneReport.loadable`, a note with the fix)."""

import warnings

import keras
import numpy as np
import pytest

import keras_guided

keras_hub = pytest.importorskip("keras_hub")

_FIX = (
    ". To keep it loadable, prune with uniform_blocks=True so a keras-hub "
    "model comes back as its own class (which loads), or save the weights "
    "(`pruned.save_weights(path)`) and rebuild the pruned model by pruning "
    "the original again with the same plan."
)


def _deberta():
    keras.utils.set_random_seed(0)
    model = keras_hub.models.DebertaV3Backbone(
        vocabulary_size=50,
        num_layers=2,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=12,
    )
    inputs = {
        "token_ids": np.random.default_rng(0).integers(1, 50, (2, 12)),
        "padding_mask": np.ones((2, 12), "int32"),
    }
    # Block 0 narrower than block 1: not its keras-hub class.
    return (
        model,
        inputs,
        {"plan": {1: 12}},
        (
            "layer 'rel_embedding' (RelativeEmbedding), re-created from its "
            "config and build config, does not match: its sublayer "
            "'rel_embeddings_layer_norm' is never built"
        ),
    )


def _vit():
    keras.utils.set_random_seed(0)
    model = keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3),
        patch_size=4,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        mlp_dim=16,
    )
    inputs = np.random.default_rng(0).random((2, 16, 16, 3), "float32")
    return (
        model,
        inputs,
        {"target": {"units": 0.8}},
        (
            "re-creating it from its config fails (TypeError: Exception "
            "encountered: Unrecognized keyword arguments passed to "
            "ViTPatchingAndEmbedding: {'num_patches': 16, 'num_positions': 17})"
        ),
    )


@pytest.mark.parametrize("build", [_deberta, _vit], ids=["deberta", "vit"])
def test_a_pruned_model_that_will_not_reload_is_said_at_prune_time(
    build, tmp_path
):
    model, inputs, how, reason = build()
    with pytest.warns(UserWarning) as caught:
        pruned, report = keras_guided.prune_model(
            model, sample_inputs=inputs, return_report=True, **how
        )
    assert isinstance(pruned, keras.Model)
    assert type(pruned) is not type(model)
    expected = (
        f"the pruned model of '{model.name}' saves but will not load with "
        f"keras.saving.load_model: {reason}{_FIX}"
    )
    assert report.loadable is False
    assert expected in report.notes
    assert f"prune_model: {expected}" in [str(w.message) for w in caught]
    # What was said is what happens.
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    with pytest.raises(Exception):  # noqa: B017 (Keras' own error)
        keras.saving.load_model(path)


def test_a_pruned_model_of_keras_layers_reloads(tmp_path):
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(5, name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
    kernel, bias = model.get_layer("hidden").get_weights()
    kernel[:, 1] = 0.0
    model.get_layer("hidden").set_weights([kernel, bias])
    pruned, report = keras_guided.prune_model(model, return_report=True)
    assert report.loadable is True
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x)),
        keras.ops.convert_to_numpy(pruned(x)),
    )


def test_a_model_not_reloading_before_pruning_gets_a_note_not_a_warning():
    class Unregistered(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inputs = keras.Input((6,))
    x = Unregistered(name="twice")(inputs)
    x = keras.layers.Dense(8, name="d1")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
    kernel, bias = model.get_layer("d1").get_weights()
    kernel[:, :3] = 0.0
    bias[:3] = 0.0
    model.get_layer("d1").set_weights([kernel, bias])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruned, report = keras_guided.prune_model(model, return_report=True)
    assert not [w for w in caught if "prune_model" in str(w.message)]
    assert pruned.get_layer("d1").units == 5
    assert report.loadable is False
    assert any("like the original" in note for note in report.notes)
