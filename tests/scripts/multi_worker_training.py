"""One worker of a two-worker `tf.distribute.MultiWorkerMirroredStrategy`.

Started twice by tests/callbacks/test_distributed.py, with `TF_CONFIG`
naming two workers on loopback ports and this worker's index. The strategy
is created first (collective ops must be configured before TensorFlow runs
anything), the model is trained with `GuidedPruning` under it, then the same
model is trained again on one device in this process, as the reference.
Prints one JSON line with both runs' losses, live units per epoch and
weights.

Keras itself is tried first, without the callback: where Keras' `fit` cannot
run under this strategy (Keras 3 up to at least 3.15.1 on TensorFlow 2.21:
keras-team/keras#20585), the line says so (`keras_fit_error`) instead.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"

import tensorflow as tf  # noqa: E402

STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()

import keras_guided  # noqa: E402
import parity_model  # noqa: E402  (next to this script)


def train(model, x, y, callbacks=None):
    if callbacks is None:
        callbacks = [
            keras_guided.GuidedPruning(
                strength=0.3, guidance="linear", mode="proximal"
            )
        ]
    history = model.fit(
        x,
        y,
        epochs=3,
        batch_size=32,
        verbose=0,
        shuffle=False,
        callbacks=callbacks,
    )
    if not callbacks:
        return None
    return parity_model.record(history, model)


def main():
    x, y = parity_model.data(64)
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    result = {"task": task, "replicas": STRATEGY.num_replicas_in_sync}
    with STRATEGY.scope():
        plain = parity_model.build()
    try:
        train(plain, x, y, callbacks=[])
    except Exception as error:  # Keras' own fit, without keras_guided
        message = f"{type(error).__name__}: {error}".splitlines()[0]
        result["keras_fit_error"] = message[:300]
        print(json.dumps(result))
        return
    with STRATEGY.scope():
        model = parity_model.build()
    result["multi"] = train(model, x, y)
    result["single"] = train(parity_model.build(), x, y)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
