"""Trains the same model on one device and under JAX DataParallel.

Run in a fresh process: XLA's host device count must be set before JAX
starts. Prints one JSON line with, per recipe (a fixed strength, and a
budget target), both runs' losses, live units per epoch and weights, for
tests/callbacks/test_data_parallel.py.
"""

import json
import os

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=2"
).strip()

import jax  # noqa: E402
import keras  # noqa: E402

import keras_guided  # noqa: E402
import parity_model  # noqa: E402  (next to this script)

RECIPES = {
    "strength": {"strength": 0.3, "guidance": "linear"},
    "budget": {"target": {"units": 10}},
}


def train(recipe, x, y):
    model = parity_model.build()
    pruning = keras_guided.GuidedPruning(**RECIPES[recipe])
    history = model.fit(
        x,
        y,
        epochs=4,
        batch_size=32,
        verbose=0,
        shuffle=False,
        callbacks=[pruning],
    )
    return parity_model.record(history, model)


def main():
    x, y = parity_model.data(128)
    result = {"devices": len(jax.devices())}
    for recipe in RECIPES:
        keras.distribution.set_distribution(None)
        single = train(recipe, x, y)
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=jax.devices())
        )
        multi = train(recipe, x, y)
        keras.distribution.set_distribution(None)
        result[recipe] = {"single": single, "multi": multi}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
