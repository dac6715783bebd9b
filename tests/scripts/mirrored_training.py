"""Trains the same model on one device and under MirroredStrategy.

Run in a fresh process (logical devices must be configured before
TensorFlow initializes). Prints one JSON line with both runs' losses,
penalties and weights, for tests/callbacks/test_distributed.py.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"

import tensorflow as tf  # noqa: E402

_CPUS = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _CPUS[0], [tf.config.LogicalDeviceConfiguration()] * 2
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_guided  # noqa: E402


def build(use_callback):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(
                16,
                activation="relu",
                kernel_regularizer=keras_guided.GuidedRegularizer(1e-2),
            ),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss="sparse_categorical_crossentropy",
    )
    return model


def train(model, use_callback, x, y):
    callbacks = []
    if use_callback:
        callbacks.append(
            keras_guided.GuidedPruning(
                strength=0.3, guidance="linear", mode="proximal"
            )
        )
    history = model.fit(
        x,
        y,
        epochs=4,
        batch_size=32,
        verbose=0,
        shuffle=False,
        callbacks=callbacks,
    )
    penalty = float(sum(keras.ops.convert_to_numpy(v) for v in model.losses))
    weights = [w.tolist() for w in model.get_weights()]
    return {
        "loss": history.history["loss"],
        "penalty": penalty,
        "weights": weights,
        "live_units": history.history.get("live_units"),
    }


def main():
    use_callback = "--callback" in sys.argv
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 1).astype("int32")
    single = train(build(use_callback), use_callback, x, y)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = build(use_callback)
    multi = train(model, use_callback, x, y)
    print(
        json.dumps(
            {
                "replicas": strategy.num_replicas_in_sync,
                "single": single,
                "multi": multi,
            }
        )
    )


if __name__ == "__main__":
    main()
