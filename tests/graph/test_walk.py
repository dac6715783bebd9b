"""Tests for keras_guided.graph._walk: the one walker over nested models."""

import keras

from keras_guided.graph import _walk


def _nested():
    block = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(3, name="inner_a"),
            keras.layers.Dense(3, name="inner_b"),
        ],
        name="block",
    )
    inputs = keras.Input((2,), name="x")
    hidden = keras.layers.Dense(3, name="first")(inputs)
    outputs = keras.layers.Dense(1, name="last")(block(hidden))
    return keras.Model(inputs, outputs, name="outer"), block


def test_walk_opens_nested_models_depth_first_with_paths_and_parents():
    model, block = _nested()
    rows = [
        (path, layer.name, parent.name)
        for path, layer, parent in _walk.walk(model)
    ]
    assert rows == [
        ("x", "x", "outer"),
        ("first", "first", "outer"),
        ("block", "block", "outer"),
        ("block/inner_a", "inner_a", "block"),
        ("block/inner_b", "inner_b", "block"),
        ("last", "last", "outer"),
    ]
    assert [layer.name for layer in _walk.all_layers(model)] == [
        "x",
        "first",
        "block",
        "inner_a",
        "inner_b",
        "last",
    ]
    leaves = [
        (path, parent)
        for path, _, parent in _walk.leaf_layers(model, prefix="top/")
    ]
    assert leaves == [
        ("top/x", model),
        ("top/first", model),
        ("top/block/inner_a", block),
        ("top/block/inner_b", block),
        ("top/last", model),
    ]
