"""The model, data and record shared by the parity scripts
(`data_parallel_training.py`, `multi_worker_training.py`).

Imported by those scripts after they have chosen the backend and set up
their devices or strategy, so importing Keras here is safe.
"""

import keras
import numpy as np


def build():
    """The small classifier every parity run trains (seeded)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss="sparse_categorical_crossentropy",
    )
    return model


def data(num_samples):
    """`(x, y)`: 8 normal features, 3 classes set by the first two."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(num_samples, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 1).astype("int32")
    return x, y


def record(history, model):
    """What a parity test compares: losses, live units, weights."""
    return {
        "loss": history.history["loss"],
        "live_units": history.history["live_units"],
        "weights": [w.tolist() for w in model.get_weights()],
    }
