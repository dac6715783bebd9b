"""Draws docs/images/latency_vs_units.png: measured LiteRT latency of one
MobileNetV2 pointwise convolution against its kept output channels, with
the table's interpolation between its sampled counts.

    python docs/make_latency_plot.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import keras_guided as kg  # noqa: E402
from keras_guided.latency import _measure as _latency_measure  # noqa: E402

LAYER = "block_16_project"  # 7x7x960 -> 320, 1x1


def main(
    path=os.path.join(
        os.path.dirname(__file__), "images", "latency_vs_units.png"
    ),
):
    model = keras.applications.MobileNetV2(
        weights=None, input_shape=(224, 224, 3)
    )
    table = kg.build_latency_table(model, verbose=0)
    entry = table.layers[LAYER]
    settings = table.settings
    counts = list(range(8, entry.output_channels + 1, 8))
    layer = model.get_layer(LAYER)
    measured = [
        _latency_measure.time_layer(
            keras.layers.Conv2D,
            {
                "filters": count,
                "kernel_size": layer.kernel_size,
                "use_bias": layer.use_bias,
            },
            (7, 7, entry.input_channels),
            settings,
        )
        for count in counts
    ]
    predicted = [entry.predict(None, count) for count in counts]
    _, grid_outs, _ = entry.grids[0]
    figure, axis = plt.subplots(figsize=(6, 3.6))
    axis.plot(
        counts,
        [1000 * m for m in measured],
        ".",
        label="measured (each width, with the fixed invoke cost)",
    )
    axis.plot(
        counts,
        [1000 * p for p in predicted],
        "-",
        label="table: interpolated (fixed cost removed)",
    )
    axis.plot(
        grid_outs,
        [1000 * entry.predict(None, c) for c in grid_outs],
        "o",
        label="table: sampled counts",
    )
    axis.set_xlabel(f"kept output channels of {LAYER} (7x7, 960 inputs)")
    axis.set_ylabel("LiteRT latency (µs)")
    axis.set_title(
        f"MobileNetV2 pointwise conv, {settings['quantization']}"
        f", {settings['num_threads']} thread"
    )
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
