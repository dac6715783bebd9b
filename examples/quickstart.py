"""Quick start: guided group lasso on scikit-learn digits.

Trains a small MLP whose hidden layer carries a GuidedRegularizer with
linear guidance, then shows that the high-guidance units (the last ones)
were pushed towards zero while the first ones carry the model.

    python examples/quickstart.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import keras_guided  # noqa: E402


def main():
    keras.utils.set_random_seed(0)
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target
    hidden = keras.layers.Dense(
        64,
        activation="relu",
        kernel_regularizer=keras_guided.GuidedRegularizer(
            strength=2e-3, norm="group", guidance="linear"
        ),
    )
    model = keras.Sequential(
        [keras.Input((64,)), hidden, keras.layers.Dense(10, "softmax")]
    )
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=20, batch_size=64, validation_split=0.2, verbose=2)
    norms = keras.ops.convert_to_numpy(
        keras_guided.units.unit_norms(hidden.kernel, axis=-1, norm="group")
    )
    print("unit norms, in guidance order (low -> high coefficient):")
    print(np.array2string(norms, precision=2, max_line_width=78))
    print(
        f"units with norm < 1e-2: {int(np.sum(norms < 1e-2))} of {norms.size}"
    )


if __name__ == "__main__":
    main()
