"""prune_model on keras.applications architectures (weights=None, 32x32)."""

import keras
import numpy as np
import pytest

import keras_guided
from tests.helpers import randomize
from tests.helpers import zero_units

APPLICATIONS = [
    pytest.param("MobileNetV2", id="MobileNetV2"),
    pytest.param("ResNet50", id="ResNet50"),
    pytest.param("DenseNet121", id="DenseNet121", marks=pytest.mark.slow),
    pytest.param("EfficientNetB0", id="EfficientNetB0"),
    # Hard-swish as keras.ops, Rescaling, squeeze-and-excitation.
    pytest.param("MobileNetV3Small", id="MobileNetV3Small"),
]


def _build(name):
    model = getattr(keras.applications, name)(
        weights=None,
        input_shape=(32, 32, 3),
        classes=10,
        classifier_activation=None,
    )
    return randomize(model)


def _predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.mark.parametrize("name", APPLICATIONS)
def test_application_dead_groups_and_half_target(name, tmp_path):
    model = _build(name)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    groups = keras_guided.find_unit_groups(model)
    prunable = [g for g in groups if g.prunable]
    unprunable = [g.layers for g in groups if not g.prunable]
    assert len(unprunable) == 1 and unprunable[0][-1] == "predictions"
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(prunable), size=6, replace=False)
    removed = 0
    for index in chosen:
        group = prunable[index]
        count = max(1, group.num_units // 3)
        zero_units(group, rng.choice(group.num_units, count, replace=False))
        removed += count
    before = [np.array(w) for w in model.get_weights()]

    pruned, report = keras_guided.prune_model(model, return_report=True)
    assert report.removed_units == removed
    assert pruned.count_params() < model.count_params()
    expected = _predict(model, x)
    scale = float(np.max(np.abs(expected)))
    np.testing.assert_allclose(
        _predict(pruned, x), expected, atol=1e-5 * scale, rtol=0
    )
    assert report.max_abs_diff <= 1e-5 * report.output_scale

    half = keras_guided.prune_model(model, target=0.5, verify=False)
    assert half.count_params() < 0.5 * model.count_params()
    result = _predict(half, x)
    assert result.shape == expected.shape and np.all(np.isfinite(result))
    path = str(tmp_path / f"{name}.keras")
    half.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(_predict(reloaded, x), result, atol=1e-6)
    assert all(
        np.array_equal(a, b) for a, b in zip(before, model.get_weights())
    )
