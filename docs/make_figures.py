"""Regenerates the pictures of docs/concepts.md.

    python docs/make_figures.py

Trains the same 64-64-10 MLP on scikit-learn digits four times (plain L1,
uniform group lasso, guided group lasso with linear guidance, all three as
penalties in the loss; then guided group lasso applied by the GuidedPruning
callback's proximal step) and draws the hidden layer's kernel as a heatmap,
one column per unit.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import keras_guided  # noqa: E402
import keras_guided.plots  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def train(regularizer, seed=0, callbacks=()):
    keras.utils.set_random_seed(seed)
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    hidden = keras.layers.Dense(
        64, activation="relu", kernel_regularizer=regularizer
    )
    model = keras.Sequential(
        [
            keras.Input((64,)),
            hidden,
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="sparse_categorical_crossentropy",
    )
    model.fit(
        x,
        digits.target,
        epochs=30,
        batch_size=64,
        verbose=0,
        callbacks=list(callbacks),
    )
    return hidden


def main():
    layers = [
        train(keras.regularizers.L1(2e-3)),
        train(keras_guided.GuidedRegularizer(2e-3, "group", "uniform")),
        train(keras_guided.GuidedRegularizer(2e-3, "group", "linear")),
        train(
            None,
            callbacks=[
                keras_guided.GuidedPruning(
                    strength=0.3, guidance="linear", mode="proximal"
                )
            ],
        ),
    ]
    figure = keras_guided.plots.plot_unit_heatmaps(
        layers,
        titles=[
            "plain L1",
            "group lasso",
            "guided group lasso",
            "guided, proximal callback",
        ],
    )
    path = os.path.join(HERE, "images", "heatmaps.png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
