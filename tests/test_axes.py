"""Tests for keras_guided._axes: unit-axis arithmetic, written once."""

import numpy as np
import pytest

from keras_guided import _axes


def test_normalize_axes_sorts_and_resolves_negative_axes():
    assert _axes.normalize_axes(4, -1) == (3,)
    assert _axes.normalize_axes(4, [-1, -2]) == (2, 3)


@pytest.mark.parametrize(
    "axis, message",
    [
        ((), "`axis` must name at least one axis. Received: ()"),
        (1.5, "`axis` must be an int or a tuple of ints. Received: axis=1.5"),
        (True, "`axis` must be an int or a tuple of ints. Received: axis=True"),
        (
            3,
            "`axis`=3 is out of range for a weight of rank 2. Use an axis in "
            "[-2, 1].",
        ),
        (
            (0, 2),
            "`axis`=(0, 2) must name contiguous axes (they are flattened "
            "into one unit axis). Received non-contiguous axes.",
        ),
    ],
)
def test_normalize_axes_errors(axis, message):
    with pytest.raises(ValueError) as info:
        _axes.normalize_axes(2 if axis == 3 else 3, axis)
    assert str(info.value) == message


def test_gather_take_and_zero_agree_on_a_tuple_axis():
    # A depthwise kernel (3, 3, channels=4, multiplier=2): unit c * 2 + k.
    kernel = np.random.default_rng(0).normal(size=(3, 3, 4, 2))
    flat = kernel.reshape(9, 8)  # column u = unit u
    rows = _axes.gather_units(kernel, (-2, -1), np.array([[1, 6]]))
    np.testing.assert_array_equal(rows[0], flat[:, [1, 6]].T.ravel())
    kept = _axes.take_units(kernel, (2, 3), [1, 3], block=2)
    np.testing.assert_array_equal(kept, kernel[:, :, [1, 3], :])
    zeroed = _axes.zero_units(kernel, (-2, -1), [1, 6])
    expected = flat.copy()
    expected[:, [1, 6]] = 0
    np.testing.assert_array_equal(zeroed.reshape(9, 8), expected)
    assert np.any(kernel.reshape(9, 8)[:, [1, 6]] != 0)  # a copy


def test_take_units_with_blocks_on_one_axis():
    kernel = np.arange(12).reshape(6, 2)
    np.testing.assert_array_equal(
        _axes.take_units(kernel, 0, [0, 2], block=2), kernel[[0, 1, 4, 5]]
    )
