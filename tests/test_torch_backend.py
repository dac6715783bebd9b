"""The PyTorch backend end to end: fit with the callback, prune, reload.

CI runs this file with `KERAS_BACKEND=torch` (torch's CPU build installed
for it); on any other backend, or without torch, it is skipped. Export
stays TensorFlow's job and is not part of this file.
"""

import keras
import numpy as np
import pytest

import keras_guided as kg

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="run with KERAS_BACKEND=torch (CI's torch job)",
)


def _data(n=256):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 8, 8, 3)).astype("float32")
    y = (x[:, :4, :4, 0].mean(axis=(1, 2)) > 0).astype("int32")
    return x, y


def _model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(16, 3, name="c2")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(32, activation="relu", name="d1")(x)
    outputs = keras.layers.Dense(2, name="out")(x)
    return keras.Model(inputs, outputs)


def test_fit_with_the_callback_prune_and_reload(tmp_path):
    x, y = _data()
    model = _model()
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    callback = kg.GuidedPruning(target={"flops": 0.5})
    history = model.fit(
        x, y, epochs=4, batch_size=32, verbose=0, callbacks=[callback]
    )
    live = history.history["live_flops"][-1]  # FLOPs per example
    assert live <= 0.5 * kg.stats.count_flops(model)

    small = kg.prune_model(model)
    assert kg.stats.count_flops(small) == live
    expected = keras.ops.convert_to_numpy(model(x[:16], training=False))
    actual = keras.ops.convert_to_numpy(small(x[:16], training=False))
    np.testing.assert_allclose(actual, expected, atol=1e-5)

    path = str(tmp_path / "small.keras")
    small.save(path)
    loaded = keras.saving.load_model(path)
    reloaded = keras.ops.convert_to_numpy(loaded(x[:16], training=False))
    np.testing.assert_allclose(reloaded, actual, atol=1e-6)
