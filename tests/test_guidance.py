import numpy as np
import pytest

import keras_guided
from keras_guided import guidance


@pytest.mark.parametrize("name", ["uniform", "linear", "exponential"])
@pytest.mark.parametrize("num_units", [1, 2, 7, 256])
def test_schemes_are_normalized_and_valid(name, num_units):
    coefficients = guidance.get(name)(num_units)
    assert coefficients.shape == (num_units,)
    assert np.all(np.isfinite(coefficients)) and np.all(coefficients >= 0)
    np.testing.assert_allclose(coefficients.mean(), 1.0)


def test_rising_schemes_rise():
    for name in ("linear", "exponential"):
        g = guidance.get(name)(10)
        assert np.all(np.diff(g) > 0), name
    np.testing.assert_allclose(guidance.get("linear")(3), [0.0, 1.0, 2.0])
    g = keras_guided.ExponentialGuidance(rate=np.log(4.0))(3)
    np.testing.assert_allclose(g / g[0], [1.0, 2.0, 4.0])
    g = keras_guided.LinearGuidance(start=1.0, end=3.0)(3)
    np.testing.assert_allclose(g, [0.5, 1.0, 1.5])


def test_explicit_guidance():
    g = guidance.get([2.0, 0.0, 4.0])
    assert isinstance(g, keras_guided.ExplicitGuidance)
    np.testing.assert_allclose(g(3), [1.0, 0.0, 2.0])
    with pytest.raises(
        ValueError,
        match=(
            r"`guidance` has 3 coefficients but the weight has 4 units\. "
            r"Pass one coefficient per unit \(4 values\)\."
        ),
    ):
        g(4)


@pytest.mark.parametrize(
    "values, message",
    [
        (
            [1.0, -1.0],
            r"must be non-negative\. Received negative values at "
            r"units \[1\]",
        ),
        (
            [1.0, float("nan")],
            r"must be finite\. Received NaN or inf at units "
            r"\[1\]",
        ),
        ([0.0, 0.0], r"must not be all zero"),
        ([], r"non-empty 1-D sequence"),
        ([[1.0], [2.0]], r"non-empty 1-D sequence"),
        (["a", "b"], r"must be a sequence of numbers"),
    ],
)
def test_bad_coefficients(values, message):
    with pytest.raises(ValueError, match=message):
        guidance.get(values)


def test_bad_identifiers():
    with pytest.raises(
        ValueError,
        match=(
            r"Unknown guidance 'quadratic'\. Expected one of \['exponential',"
            r" 'linear', 'uniform'\]"
        ),
    ):
        guidance.get("quadratic")
    with pytest.raises(ValueError, match=r"Received a callable"):
        guidance.get(lambda n: np.ones(n))
    with pytest.raises(ValueError, match=r"Received: guidance=3"):
        guidance.get(3)
    with pytest.raises(
        ValueError,
        match=(
            r"`rate` must be a non-negative finite float\. "
            r"Received: rate=-1\.0"
        ),
    ):
        keras_guided.ExponentialGuidance(rate=-1.0)
    with pytest.raises(ValueError, match=r"must not both be 0"):
        keras_guided.LinearGuidance(start=0.0, end=0.0)
    with pytest.raises(ValueError, match=r"`num_units` must be a positive"):
        keras_guided.UniformGuidance()(0)


@pytest.mark.parametrize(
    "item",
    [
        "uniform",
        "linear",
        "exponential",
        [1.0, 2.0, 3.0],
        keras_guided.LinearGuidance(start=0.5, end=2.0),
        keras_guided.ExponentialGuidance(rate=1.5),
    ],
)
def test_serialize_round_trip(item):
    original = guidance.get(item)
    restored = guidance.get(guidance.serialize(original))
    assert restored == original
    np.testing.assert_allclose(restored(3), original(3))
