"""Pictures of what guided regularization does (matplotlib, optional).

Install the extra with `pip install "keras-guided[plot]"`. Every function
returns the matplotlib `Figure`, so you can save it or show it.
"""

import numpy as np

from keras_guided import units as units_lib


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "keras_guided.plots needs matplotlib. Install it with "
            '`pip install "keras-guided[plot]"`.'
        ) from None
    return plt


def unit_norm_matrix(layer, weight="kernel"):
    """Absolute weights of `layer` arranged as (inputs, units) for a heatmap.

    The unit axis comes from `keras_guided.units`; every other axis is
    flattened, so a Conv2D kernel becomes `(kh * kw * C_in, filters)`.

    Returns:
        A numpy array of shape `(weights_per_unit, num_units)`.
    """
    import keras

    slices = units_lib.output_slices(layer)
    axis = next((s.axis for s in slices if s.weight == weight), None)
    if axis is None:
        raise ValueError(
            f"Layer '{layer.name}' ({type(layer).__name__}) has no "
            f"per-unit weight '{weight}'. Per-unit weights: "
            f"{[s.weight for s in slices]}."
        )
    variable = units_lib.get_weight(layer, weight)
    matrix = units_lib.unit_matrix(keras.ops.convert_to_numpy(variable), axis)
    return np.abs(keras.ops.convert_to_numpy(matrix)).T


def plot_unit_heatmaps(
    layers, titles=None, weight="kernel", max_rows=64, threshold=1e-3
):
    """Side-by-side heatmaps of |W| per unit, one panel per layer.

    A column is one unit. Plain L1 leaves scattered zeros; group lasso zeroes
    whole columns; guided group lasso zeroes whole columns from the
    high-guidance end.

    Args:
        layers: a list of built layers with per-unit kernels.
        titles: panel titles; defaults to the layer names.
        weight: which weight to draw. Defaults to `"kernel"`.
        max_rows: draw at most this many input rows (the first ones).
        threshold: a weight is drawn as zero below `threshold` times the
            largest |w| of its layer. Defaults to `1e-3`.

    Returns:
        A matplotlib `Figure`.

    Examples:
        >>> import keras, keras_guided.plots
        >>> layer = keras.layers.Dense(8)
        >>> layer.build((None, 4))
        >>> figure = keras_guided.plots.plot_unit_heatmaps([layer])
        >>> len(figure.axes)
        1
    """
    plt = _pyplot()
    titles = titles or [layer.name for layer in layers]
    figure, axes = plt.subplots(
        1, len(layers), figsize=(3.2 * len(layers), 3.0), squeeze=False
    )
    for ax, layer, title in zip(axes[0], layers, titles):
        matrix = unit_norm_matrix(layer, weight)
        alive = matrix > threshold * max(float(matrix.max()), 1e-30)
        ax.imshow(
            alive[:max_rows],
            aspect="auto",
            cmap="Greys",
            interpolation="nearest",
        )
        dead = int(np.sum(~np.any(alive, axis=0)))
        ax.set_title(
            f"{title}\n{dead}/{matrix.shape[1]} units all-zero", fontsize=9
        )
        ax.set_xlabel("unit (guidance rises ->)")
        ax.set_ylabel("input weight")
    figure.tight_layout()
    return figure


def plot_live_units(history, keys=None):
    """Live-unit curves from a `History` written by `GuidedPruning`.

    Args:
        history: a `keras.callbacks.History` or its `.history` dict.
        keys: which log keys to draw; defaults to every key starting with
            `live_units`.

    Returns:
        A matplotlib `Figure`.

    Raises:
        ValueError: if the history has no live-unit keys.

    Examples:
        >>> import keras_guided.plots
        >>> figure = keras_guided.plots.plot_live_units(
        ...     {"live_units": [10, 6, 4], "loss": [1.0, 0.8, 0.7]})
        >>> figure.axes[0].get_ylabel()
        'live units'
    """
    plt = _pyplot()
    logs = getattr(history, "history", history)
    keys = keys or sorted(k for k in logs if k.startswith("live_units"))
    if not keys:
        raise ValueError(
            "The history has no live-unit keys. Train with "
            "keras_guided.GuidedPruning in the callbacks, or pass `keys`. "
            f"Received keys: {sorted(logs)}"
        )
    figure, ax = plt.subplots(figsize=(5, 3))
    for key in keys:
        ax.plot(np.arange(1, len(logs[key]) + 1), logs[key], label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("live units")
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure
