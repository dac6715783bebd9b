"""Tests for keras_guided.surgery._inline: a layer shared across a nested
model."""

import keras
import numpy as np
from keras import layers

import keras_guided
from keras_guided.surgery import _inline


def _tied():
    """A nested model whose last layer the outer graph calls again (a tied
    output projection, in miniature)."""
    keras.utils.set_random_seed(0)
    shared = layers.Dense(4, name="shared")
    inner_in = keras.Input((4,))
    hidden = layers.Dense(6, name="hidden")(inner_in)
    inner = keras.Model(
        inner_in,
        shared(layers.Dense(4, name="inner_out")(hidden)),
        name="inner",
    )
    inputs = keras.Input((4,))
    return keras.Model(inputs, shared(inner(inputs)), name="outer")


def test_a_shared_layer_is_inlined_and_the_model_loads(tmp_path):
    model = _tied()
    flat = _inline.inline_shared(model)
    assert [layer.name for layer in flat.layers[1:]] == [
        "hidden",
        "inner_out",
        "shared",
    ]  # after its input
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(flat(x), model(x), atol=1e-6)
    pruned = keras_guided.prune_model(model)
    path = str(tmp_path / "tied.keras")
    pruned.save(path)
    np.testing.assert_allclose(
        keras.saving.load_model(path)(x), model(x), atol=1e-6
    )


def test_a_model_without_shared_layers_is_returned_as_it_is():
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, layers.Dense(4)(inner_in), name="inner")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layers.Dense(2)(inner(inputs)))
    assert _inline.inline_shared(model) is model
