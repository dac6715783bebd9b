"""Tests for keras_guided.surgery._masked: the verification's masked
reference is run, not rebuilt, so `prune_model` never holds a second copy
of the model's weights."""

import contextlib

import keras
import numpy as np
import pytest
from keras import layers
from keras import ops

import keras_guided
from keras_guided import graph as graph_lib
from keras_guided.surgery._masked import masked_reference
from keras_guided.surgery._rebuild import rebuild
from keras_guided.surgery._removal import Removal
from keras_guided.surgery._removal import find_masks
from keras_guided.surgery._removal import masked_weights
from tests.helpers import randomize
from tests.helpers import tiny_llama


def _variable_bytes(variables):
    return sum(
        int(np.prod(v.shape))
        * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
        for v in variables
    )


@contextlib.contextmanager
def _created_variables():
    """Collects every `keras.Variable` created inside."""
    created = []
    original_init = keras.Variable.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        created.append(self)

    keras.Variable.__init__ = init
    try:
        yield created
    finally:
        keras.Variable.__init__ = original_init


def _stack(seed=0):
    """Two wide protected layers and a small prunable one after them."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((64,))
    x = layers.Dense(128, activation="relu", name="big")(inputs)
    x = layers.BatchNormalization(name="norm")(x)
    x = layers.Dense(128, activation="relu", name="big2")(x)
    x = layers.Dense(8, activation="relu", name="hidden")(x)
    outputs = layers.Dense(4, name="out")(x)
    return randomize(keras.Model(inputs, outputs))


def _nested(seed=0):
    """A nested model whose inner layer loses units (its inner graph is
    run) beside a layer of the outer graph."""
    keras.utils.set_random_seed(seed)
    inner_in = keras.Input((16,))
    inner = keras.Model(
        inner_in,
        layers.Dense(12, activation="tanh", name="inner_dense")(inner_in),
        name="inner",
    )
    inputs = keras.Input((16,))
    x = inner(inputs)
    x = layers.Dense(6, activation="relu", name="dense")(x)
    outputs = layers.Dense(3, name="out")(x)
    return randomize(keras.Model(inputs, outputs))


def _tokens(batch=2, length=8):
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 100, (batch, length)).astype("int32")
    return {"token_ids": ids, "padding_mask": np.ones_like(ids)}


def _half_plan(groups):
    """Every prunable group keeps its first half (at least one unit)."""
    return {
        i: list(range(max(1, g.num_units // 2)))
        for i, g in enumerate(groups)
        if g.prunable
    }


@pytest.mark.parametrize(
    "build, inputs",
    [
        (_stack, lambda: np.random.default_rng(1).normal(size=(5, 64))),
        (_nested, lambda: np.random.default_rng(1).normal(size=(5, 16))),
        (tiny_llama, _tokens),
    ],
    ids=["stack", "nested", "llama"],
)
def test_masked_reference_computes_what_a_masked_rebuild_computes(
    build, inputs
):
    model = build()
    analysis = graph_lib.analyze(model, on_unsupported="keep")
    plan = _half_plan(analysis.groups)
    masks, _ = find_masks(analysis, plan)
    rebuilt = rebuild(Removal.nothing(analysis), masked_weights(masks)).model
    x = inputs()
    if isinstance(x, np.ndarray):
        x = x.astype("float32")
    reference = masked_reference(analysis, plan)
    expected = keras.tree.flatten(rebuilt(x, training=False))
    got = keras.tree.flatten(reference(x, training=False))
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(
            ops.convert_to_numpy(a), ops.convert_to_numpy(b)
        )
    # The masking changes the outputs: the reference is not the original.
    original = keras.tree.flatten(model(x, training=False))
    assert any(
        not np.array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
        for a, b in zip(got, original)
    )


def test_masked_reference_is_none_when_the_removed_units_are_zero():
    model = _stack()
    analysis = graph_lib.analyze(model)
    (index,) = [
        i for i, g in enumerate(analysis.groups) if "hidden" in g.layers[:1]
    ]
    kernel, bias = model.get_layer("hidden").get_weights()
    kernel[:, 4:] = 0.0
    model.get_layer("hidden").set_weights([kernel, bias])
    assert masked_reference(analysis, {index: [0, 1, 2, 3]}) is None


def test_prune_model_makes_no_second_copy_of_the_weights():
    # The variables made during `prune_model` are the pruned model's,
    # the folding probe's and those of the masked layers of the
    # verification's reference, one layer at a time, never a masked copy
    # of the whole model.
    model = _stack()
    original_bytes = _variable_bytes(model.weights)
    with _created_variables() as created:
        small, report = keras_guided.prune_model(
            model,
            target=0.5,
            protected=["big", "big2"],
            return_report=True,
        )
    assert small.get_layer("hidden").units == 4
    assert report.max_abs_diff <= 1e-6
    masked = _variable_bytes(model.get_layer("hidden").weights)
    # The folding probes the removed units' consumer with a copy of it.
    probe = _variable_bytes(model.get_layer("out").weights)
    pruned = _variable_bytes(small.weights)
    assert masked + probe < original_bytes / 10
    assert _variable_bytes(created) <= pruned + masked + probe


def test_prune_model_of_a_decoder_makes_no_second_copy_of_the_weights():
    # A keras-hub decoder: the pruned Functional model and its keras-hub
    # class (two models of the pruned size), the folding probes and the
    # masked FFN input projections, one at a time; not a masked copy of
    # the original.
    keras_hub = pytest.importorskip("keras_hub")
    model = tiny_llama()
    original_bytes = _variable_bytes(model.weights)
    with _created_variables() as created:
        small, report = keras_guided.prune_model(
            model,
            target={"params": 0.9},
            uniform_blocks=True,
            protected=["token_embedding", "self_attention"],
            on_unsupported="keep",
            sample_inputs=_tokens(),
            return_report=True,
        )
    assert type(small) is keras_hub.models.LlamaCausalLM
    assert report.max_abs_diff <= 1e-5
    masked = _variable_bytes(
        [
            v
            for v in model.weights
            if "feedforward_gate_dense" in v.path
            or "feedforward_intermediate_dense" in v.path
        ]
    )
    # The folding probes each block's FFN output projection (a copy).
    probes = _variable_bytes(
        [v for v in model.weights if "feedforward_output_dense" in v.path]
    )
    pruned = _variable_bytes(small.weights)
    made = _variable_bytes(created)
    # 1 KB: the task's compile state (optimizer step, metric totals).
    assert made <= 2 * pruned + masked + probes + 1024
    assert made < 2 * pruned + original_bytes
