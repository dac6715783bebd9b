import keras
import numpy as np
import pytest

pytest.importorskip("matplotlib")

from keras_guided import plots  # noqa: E402


def test_unit_norm_matrix_is_units_in_columns():
    layer = keras.layers.Conv2D(3, 2, use_bias=False)
    layer.build((None, 4, 4, 2))
    kernel = np.arange(2 * 2 * 2 * 3, dtype="float32").reshape(2, 2, 2, 3)
    layer.set_weights([-kernel])
    matrix = plots.unit_norm_matrix(layer)
    assert matrix.shape == (8, 3)
    np.testing.assert_array_equal(matrix[:, 1], kernel[..., 1].reshape(-1))


def test_heatmap_counts_dead_units():
    layer = keras.layers.Dense(4, name="hidden")
    layer.build((None, 3))
    kernel = np.ones((3, 4), "float32")
    kernel[:, [1, 3]] = 0.0
    layer.set_weights([kernel, np.zeros(4, "float32")])
    figure = plots.plot_unit_heatmaps([layer])
    assert figure.axes[0].get_title() == "hidden\n2/4 units all-zero"


def test_errors():
    layer = keras.layers.Dense(2)
    layer.build((None, 2))
    with pytest.raises(ValueError, match=r"has no per-unit weight 'gamma'"):
        plots.unit_norm_matrix(layer, "gamma")
    with pytest.raises(ValueError, match=r"The history has no live-unit keys"):
        plots.plot_live_units({"loss": [1.0]})
