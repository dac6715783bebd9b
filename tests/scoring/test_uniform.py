"""Tests for keras_guided.scoring._uniform: the same widths in repeated
blocks."""

import re

import keras
import numpy as np
import pytest
from keras import layers

import keras_guided
from keras_guided import stats
from keras_guided.scoring import _uniform
from tests import composite_layers
from tests.helpers import zero_units


def _block_widths(model):
    return [
        tuple(tuple(w.shape) for w in block.weights)
        for block in model.layers
        if block.name.startswith("mixer")
    ]


def test_families_are_one_group_per_block_of_one_class_and_config():
    model = composite_layers.mixer_classifier(blocks=3)
    groups = keras_guided.find_unit_groups(model)
    families = _uniform.find_families(model, groups)
    assert [(f.blocks, f.block_class, f.num_units) for f in families] == [
        (["mixer_0", "mixer_1", "mixer_2"], "MLPMixerLayer", 6)
    ] * 2
    # One member per block, and no group in two families.
    members = [i for f in families for i in f.members]
    assert len(members) == len(set(members)) == 6


def test_blocks_of_other_configs_are_not_one_family():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 5))
    x = layers.Dense(8)(inputs)
    x = composite_layers.MLPMixerLayer(6, 8, 0.1, name="mixer_0")(x)
    x = composite_layers.MLPMixerLayer(6, 8, 0.2, name="mixer_1")(x)
    model = keras.Model(inputs, layers.Dense(3)(x))
    groups = keras_guided.find_unit_groups(model)
    assert _uniform.find_families(model, groups) == []


def test_a_target_cuts_every_block_alike_and_is_met_exactly():
    model = composite_layers.mixer_classifier(blocks=3)
    small, report = keras_guided.prune_model(
        model, target={"flops": 0.5}, uniform_blocks=True, return_report=True
    )
    widths = _block_widths(small)
    assert widths[0] == widths[1] == widths[2]
    assert widths[0] != _block_widths(model)[0]
    kept = stats.count_flops(small) / stats.count_flops(model)
    assert 0.4 <= kept <= 0.5
    assert report.max_abs_diff <= 1e-5 * max(1.0, report.output_scale)
    assert report.notes[-2:] == [
        "uniform_blocks: 3 MLPMixerLayer blocks (mixer_0 ... mixer_2) keep "
        "3 of 6 units of layers ['dense']",
        "uniform_blocks: 3 MLPMixerLayer blocks (mixer_0 ... mixer_2) keep "
        "2 of 6 units of layers ['dense_2']",
    ]


def test_dead_units_keep_the_widest_block_and_stay_exact():
    model = composite_layers.mixer_classifier(blocks=3)
    groups = keras_guided.find_unit_groups(model)
    family = _uniform.find_families(model, groups)[0]
    for index, count in zip(family.members, (1, 3, 2)):
        zero_units(groups[index], list(range(count)))
    small = keras_guided.prune_model(model, uniform_blocks=True)
    uneven = keras_guided.prune_model(model)
    assert {w[2] for w in _block_widths(small)} == {(6, 5)}
    assert sorted(w[2] for w in _block_widths(uneven)) == [
        (6, 3),
        (6, 4),
        (6, 5),
    ]
    x = np.random.default_rng(0).normal(size=(4, 6, 5)).astype("float32")
    np.testing.assert_allclose(small(x), model(x), atol=1e-5)


def test_merged_plans_spread_back_by_rank():
    model = composite_layers.mixer_classifier(blocks=2)
    groups = keras_guided.find_unit_groups(model)
    families = _uniform.find_families(model, groups)
    scores = [np.arange(g.num_units, dtype=float) + 1 for g in groups]
    scores[families[0].members[1]] = scores[families[0].members[1]][::-1]
    merged = _uniform.MergedGroups(groups, families, scores)
    assert len(merged.groups) == len(groups) - 2
    index = len(merged.groups) - 2  # the first family's merged group
    plan = merged.spread({index: [0, 1]})  # its two best units
    assert plan == {
        families[0].members[0]: pytest.approx([4, 5]),
        families[0].members[1]: pytest.approx([0, 1]),
    }


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"threshold": 0.1},
            "`uniform_blocks=True` plans the widths itself: "
            "it works with a `target` or on dead units. Received: "
            "uniform_blocks=True with threshold. Drop one of them.",
        ),
        ({"plan": {}}, "Received: uniform_blocks=True with plan."),
    ],
)
def test_uniform_blocks_refuses_a_threshold_or_a_plan(kwargs, message):
    model = composite_layers.mixer_classifier()
    with pytest.raises(ValueError, match=re.escape(message)):
        keras_guided.prune_model(model, uniform_blocks=True, **kwargs)


def test_uniform_blocks_refuses_a_measured_latency_target():
    model = composite_layers.mixer_classifier()
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`uniform_blocks=True` works with a units, params or FLOPs "
            "target. Received: a latency target. Use target={'flops': ...}"
            ", or uniform_blocks=False."
        ),
    ):
        keras_guided.prune_model(
            model,
            target={"latency": 0.5},
            uniform_blocks=True,
            measure=lambda m: lambda: 1.0,
        )
