import keras
import numpy as np
import pytest

from keras_guided import units
from tests.helpers import gradient


def _built(layer, shape):
    layer.build(shape)
    return layer


LAYER_CASES = [
    # layer, input shape, expected units, weight, axis
    (lambda: keras.layers.Dense(5), (None, 3), 5, "kernel", -1),
    (lambda: keras.layers.Conv1D(4, 3), (None, 9, 2), 4, "kernel", -1),
    (lambda: keras.layers.Conv2D(6, 3), (None, 9, 9, 2), 6, "kernel", -1),
    (lambda: keras.layers.Conv3D(3, 2), (None, 4, 4, 4, 2), 3, "kernel", -1),
    (lambda: keras.layers.Conv1DTranspose(4, 3), (None, 5, 2), 4, "kernel", -2),
    (
        lambda: keras.layers.Conv2DTranspose(7, 3),
        (None, 5, 5, 2),
        7,
        "kernel",
        -2,
    ),
    (
        lambda: keras.layers.Conv3DTranspose(2, 2),
        (None, 3, 3, 3, 2),
        2,
        "kernel",
        -2,
    ),
    (
        lambda: keras.layers.DepthwiseConv1D(3, depth_multiplier=2),
        (None, 9, 3),
        6,
        "kernel",
        (-2, -1),
    ),
    (
        lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2),
        (None, 9, 9, 3),
        6,
        "kernel",
        (-2, -1),
    ),
    (
        lambda: keras.layers.SeparableConv1D(5, 3),
        (None, 9, 3),
        5,
        "pointwise_kernel",
        -1,
    ),
    (
        lambda: keras.layers.SeparableConv2D(5, 3),
        (None, 9, 9, 3),
        5,
        "pointwise_kernel",
        -1,
    ),
    (lambda: keras.layers.BatchNormalization(), (None, 4, 4, 8), 8, "gamma", 0),
    (lambda: keras.layers.LayerNormalization(), (None, 8), 8, "gamma", 0),
]


@pytest.mark.parametrize("make, shape, count, weight, axis", LAYER_CASES)
def test_num_units_and_output_slices(make, shape, count, weight, axis):
    layer = _built(make(), shape)
    assert units.num_units(layer) == count
    slices = units.output_slices(layer)
    assert slices[0] == units.WeightAxis(weight, axis)
    # Every output slice has exactly `count` units along its axis.
    for item in slices:
        variable = units.get_weight(layer, item.weight)
        assert units.unit_axis_length(tuple(variable.shape), item.axis) == (
            count
        )


def test_depthwise_units_are_channel_major():
    # Output channel c * m + k comes from input channel c: check it against
    # the layer's own computation.
    layer = keras.layers.DepthwiseConv2D(1, depth_multiplier=2, use_bias=False)
    layer.build((None, 1, 1, 3))
    kernel = np.zeros((1, 1, 3, 2), "float32")
    kernel[0, 0, 1, 1] = 1.0  # input channel 1, multiplier index 1
    layer.set_weights([kernel])
    x = np.array([[[[10.0, 20.0, 30.0]]]], "float32")
    y = keras.ops.convert_to_numpy(layer(x))[0, 0, 0]
    expected_channel = 1 * 2 + 1
    assert y[expected_channel] == 20.0
    norms = keras.ops.convert_to_numpy(
        units.unit_norms(kernel, axis=(-2, -1), norm="l1")
    )
    assert np.flatnonzero(norms).tolist() == [expected_channel]


def test_input_slices():
    dense = _built(keras.layers.Dense(4), (None, 3))
    assert units.input_slices(dense) == [units.WeightAxis("kernel", 0)]
    conv = _built(keras.layers.Conv2D(4, 3), (None, 5, 5, 3))
    assert units.input_slices(conv) == [units.WeightAxis("kernel", -2)]
    separable = _built(
        keras.layers.SeparableConv2D(4, 3, depth_multiplier=3), (None, 5, 5, 2)
    )
    assert units.input_slices(separable) == [
        units.WeightAxis("depthwise_kernel", -2),
        units.WeightAxis("pointwise_kernel", -2, block=3),
    ]
    assert units.input_slices(keras.layers.ReLU()) == []


@pytest.mark.parametrize("norm", ["l1", "l2", "group"])
@pytest.mark.parametrize("axis", [-1, 0, 1, (1, 2)])
def test_unit_norms_match_numpy(norm, axis):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 4, 5)).astype("float32")
    axes = axis if isinstance(axis, tuple) else (axis % 3,)
    rest = tuple(a for a in range(3) if a not in axes)
    matrix = np.transpose(w, axes + rest).reshape(
        int(np.prod([w.shape[a] for a in axes])), -1
    )
    expected = {
        "l1": np.abs(matrix).sum(1),
        "l2": (matrix**2).sum(1),
        "group": np.sqrt((matrix**2).sum(1)),
    }[norm]
    got = keras.ops.convert_to_numpy(units.unit_norms(w, axis, norm))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_group_norm_gradient_is_finite_at_zero_unit():
    w = np.array([[0.0, 1.0], [0.0, 2.0]], "float32")
    grad = gradient(
        lambda x: keras.ops.sum(units.unit_norms(x, axis=-1, norm="group")), w
    )
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad[:, 0], 0.0)
    np.testing.assert_allclose(
        grad[:, 1], np.array([1, 2]) / np.sqrt(5), rtol=1e-6
    )


def test_errors():
    with pytest.raises(ValueError, match=r"`norm` must be one of"):
        units.unit_norms(np.ones((2, 2)), norm="l3")
    with pytest.raises(ValueError, match=r"out of range for a weight of rank"):
        units.unit_axis_length((2, 3), 2)
    with pytest.raises(ValueError, match=r"must name contiguous axes"):
        units.unit_axis_length((2, 3, 4), (0, 2))
    with pytest.raises(
        ValueError, match=r"layer|Layer 'relu' \(ReLU\) has no output"
    ):
        units.num_units(keras.layers.ReLU(name="relu"))
    dense = keras.layers.Dense(3, name="d")
    with pytest.raises(ValueError, match=r"Layer 'd' \(Dense\) is not built"):
        units.num_units(dense)
    conv = keras.layers.Conv2D(3, 1, data_format="channels_first", name="cf")
    with pytest.raises(ValueError, match=r"channels-last layers only.*'cf'"):
        units.output_slices(conv)
