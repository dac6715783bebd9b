"""Tests for keras_guided.scoring._calibration (`calibration_scores`),
`prune_model(importance=...)` and `keras_guided.ScoreGuidance`."""

import re

import keras
import numpy as np
import pytest
from keras import ops

import keras_guided
from keras_guided import scoring
from tests.helpers import tiny_llama

# ------------------------------------------------------------- helpers

DEAD_ON_DATA = (0, 1)  # hidden units fed by the input that is always 0


def _mlp():
    """Input 4 -> hidden Dense(8, relu) -> Dense(2). Hidden units 0 and 1
    read only input 3 with large weights; the calibration data keep input
    3 at zero, so those units never fire on it."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu", name="hidden"),
            keras.layers.Dense(2, name="out"),
        ]
    )
    rng = np.random.default_rng(0)
    kernel = rng.uniform(0.1, 0.5, (4, 8)).astype("float32")
    kernel[3, :] = 0.0
    kernel[:, DEAD_ON_DATA] = 0.0
    kernel[3, DEAD_ON_DATA] = 5.0  # large weights, no input on the data
    model.get_layer("hidden").set_weights([kernel, np.zeros(8, "float32")])
    return model


def _calibration_data(rows=16):
    x = np.random.default_rng(1).uniform(0.0, 1.0, (rows, 4))
    x[:, 3] = 0.0
    return x.astype("float32")


def _masked(model, units):
    """A copy of `model` with hidden `units` zeroed (kernel columns, bias
    and the output layer's rows)."""
    masked = keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    kernel, bias = masked.get_layer("hidden").get_weights()
    kernel[:, list(units)] = 0.0
    bias[list(units)] = 0.0
    masked.get_layer("hidden").set_weights([kernel, bias])
    out_kernel, out_bias = masked.get_layer("out").get_weights()
    out_kernel[list(units), :] = 0.0
    masked.get_layer("out").set_weights([out_kernel, out_bias])
    return masked


def _weights(model):
    return [np.array(ops.convert_to_numpy(w)) for w in model.weights]


def _no_shadowed_calls(model):
    layers = model._flatten_layers(include_self=True, recursive=True)
    return not any("call" in layer.__dict__ for layer in layers)


# ------------------------------------------------- (a) dead on the data


def test_units_dead_on_the_data_score_zero_and_go_first():
    model = _mlp()
    x = _calibration_data()
    groups = keras_guided.find_unit_groups(model)
    by_weights = scoring.default_scores(groups)[0]
    scores = scoring.calibration_scores(model, x, verbose=0)
    # Weight norms rank the two units the most important of the layer;
    # on the data they do nothing.
    assert set(np.argsort(-by_weights)[:2]) == set(DEAD_ON_DATA)
    assert scores[0][list(DEAD_ON_DATA)].tolist() == [0.0, 0.0]
    assert np.all(np.delete(scores[0], DEAD_ON_DATA) > 0)
    # Hand-computed: the mean |relu(x W)| of each hidden unit.
    hidden = np.maximum(x @ model.get_layer("hidden").get_weights()[0], 0)
    np.testing.assert_allclose(scores[0], hidden.mean(axis=0), rtol=1e-6)

    small, report = keras_guided.prune_model(
        model, target=0.75, importance=scores, return_report=True
    )
    assert report.removed == {0: (8, 6)}
    probe = np.random.default_rng(2).normal(size=(32, 4)).astype("float32")
    probe[:, 3] = 1.0  # the removed units fire here: masking matters
    expected = ops.convert_to_numpy(_masked(model, DEAD_ON_DATA)(probe))
    np.testing.assert_allclose(
        ops.convert_to_numpy(small(probe)), expected, atol=1e-5
    )
    # By weight norms the same target removes other units.
    by_norm = keras_guided.prune_model(model, target=0.75)
    assert np.max(np.abs(ops.convert_to_numpy(by_norm(probe)) - expected)) > (
        1e-2
    )
    # A threshold on the calibration scores removes the same two.
    thresholded = keras_guided.prune_model(
        model, threshold=1e-6, importance=scores
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(thresholded(probe)), expected, atol=1e-5
    )


def test_importance_may_be_a_callable_of_the_groups():
    model = _mlp()
    x = _calibration_data()
    seen = []

    def importance(groups):
        seen.append(len(groups))
        return scoring.calibration_scores(model, x, groups=groups, verbose=0)

    small = keras_guided.prune_model(model, target=0.75, importance=importance)
    assert seen == [2]
    assert small.get_layer("hidden").units == 6


def test_wanda_weighs_the_input_norm_by_the_consumer_weights():
    model = _mlp()
    x = _calibration_data()
    scores = scoring.calibration_scores(model, x, method="wanda", verbose=0)
    hidden = np.maximum(x @ model.get_layer("hidden").get_weights()[0], 0)
    out_kernel = model.get_layer("out").get_weights()[0]
    expected = np.sqrt(np.mean(hidden**2, axis=0)) * np.sum(
        np.abs(out_kernel), axis=1
    )
    np.testing.assert_allclose(scores[0], expected, rtol=1e-6)
    assert scores[0][list(DEAD_ON_DATA)].tolist() == [0.0, 0.0]


# ------------------------------------------------------ (b) determinism


@pytest.mark.parametrize("method", ["activation", "wanda"])
def test_scores_are_deterministic_and_do_not_depend_on_batching(method):
    model = _mlp()
    x = np.random.default_rng(3).normal(size=(24, 4)).astype("float32")
    first = scoring.calibration_scores(
        model, x, method=method, batch_size=4, verbose=0
    )
    again = scoring.calibration_scores(
        model, x, method=method, batch_size=4, verbose=0
    )
    rebatched = scoring.calibration_scores(
        model, x, method=method, batch_size=8, verbose=0
    )
    generator = scoring.calibration_scores(
        model,
        (x[i : i + 8] for i in range(0, 24, 8)),
        method=method,
        verbose=0,
    )
    for a, b, c, d in zip(first, again, rebatched, generator):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-6)
        np.testing.assert_allclose(a, d, rtol=1e-6)


def test_max_batches_reads_only_the_first_batches():
    model = _mlp()
    x = _calibration_data(16)
    x[8:] *= 10.0
    first = scoring.calibration_scores(
        model, x, batch_size=8, max_batches=1, verbose=0
    )
    only = scoring.calibration_scores(model, x[:8], verbose=0)
    np.testing.assert_allclose(first[0], only[0], rtol=1e-6)


# ------------------------------------------------ (c) a keras-hub Llama


def _tokens(batch=8, length=10, prompt=7, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.zeros((batch, length), "int32")
    mask[:, :prompt] = 1
    ids = rng.integers(1, 64, (batch, length)).astype("int32") * mask
    return {"token_ids": ids, "padding_mask": mask}


@pytest.fixture(scope="module")
def llama():
    return tiny_llama(vocabulary_size=64)


def test_llama_scores_ffn_units_and_key_value_head_groups(llama):
    data = _tokens()
    groups = keras_guided.find_unit_groups(llama, on_unsupported="keep")
    scores = scoring.calibration_scores(
        llama, data, on_unsupported="keep", batch_size=4, verbose=0
    )
    assert [s.shape for s in scores] == [(g.num_units,) for g in groups]
    prunable = [(g.layers[0], g.num_units) for g in groups if g.prunable]
    assert (
        prunable == [("self_attention", 2), ("feedforward_gate_dense", 32)] * 2
    )
    for group, values in zip(groups, scores):
        if group.prunable:
            assert np.all(values > 0)
    # Padded positions are left out: changing the tokens under a zero mask
    # does not change the scores.
    noisy = dict(data, token_ids=data["token_ids"].copy())
    noisy["token_ids"][:, 7:] = 5
    again = scoring.calibration_scores(
        llama, noisy, on_unsupported="keep", batch_size=8, verbose=0
    )
    for a, b in zip(scores, again):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_llama_pruned_by_calibration_keeps_its_class_and_the_masked_function(
    llama,
):
    keras_hub = pytest.importorskip("keras_hub")
    scores = scoring.calibration_scores(
        llama, _tokens(), on_unsupported="keep", verbose=0
    )
    weights = _weights(llama)
    small, report = keras_guided.prune_model(
        llama,
        target={"params": 0.8},
        importance=scores,
        uniform_blocks=True,
        on_unsupported="keep",
        protected=["self_attention"],
        sample_inputs=_tokens(batch=2, prompt=10),
        return_report=True,
    )
    assert type(small) is keras_hub.models.LlamaCausalLM
    width = small.backbone.get_config()["intermediate_dim"]
    assert width < 32
    # Against the original with the removed units masked.
    assert report.max_abs_diff <= 1e-5 * max(1.0, report.output_scale)
    for a, b in zip(weights, _weights(llama)):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------- (d) model unchanged


def test_the_model_is_unchanged_after_scoring(llama):
    config = llama.get_config()
    before = _weights(llama)
    scoring.calibration_scores(
        llama, _tokens(), method="wanda", on_unsupported="keep", verbose=0
    )
    assert llama.get_config() == config
    for a, b in zip(before, _weights(llama)):
        np.testing.assert_array_equal(a, b)
    assert _no_shadowed_calls(llama)


def test_calls_are_restored_when_a_batch_fails():
    model = _mlp()

    def batches():
        yield _calibration_data(4)
        yield np.zeros((4, 7), "float32")  # not the model's input

    with pytest.raises(ValueError):
        scoring.calibration_scores(model, batches(), verbose=0)
    assert _no_shadowed_calls(model)
    x = _calibration_data()
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(x)),
        ops.convert_to_numpy(_mlp()(x)),
        atol=0,
    )


# ------------------------------------------------------------ (e) errors


def test_unknown_method_is_refused():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`method` must be one of ('activation', 'wanda'). Received: "
            "method='magnitude'"
        ),
    ):
        scoring.calibration_scores(
            _mlp(), _calibration_data(), method="magnitude"
        )


@pytest.mark.parametrize(
    "data, kind",
    [([], "list"), (np.zeros((0, 4), "float32"), "ndarray")],
)
def test_empty_data_is_refused(data, kind):
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`data` gave no batch: calibration_scores needs at least one "
            f"batch of model inputs. Received: data of type {kind} with "
            "nothing in it."
        ),
    ):
        scoring.calibration_scores(_mlp(), data, verbose=0)


def test_bad_batch_size_and_data_are_refused():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`batch_size` must be a positive int. Received: batch_size=0"
        ),
    ):
        scoring.calibration_scores(_mlp(), _calibration_data(), batch_size=0)
    with pytest.raises(
        ValueError, match=re.escape("Received: data of type int.")
    ):
        scoring.calibration_scores(_mlp(), 3, verbose=0)


def test_importance_of_other_groups_is_refused():
    model = _mlp()
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`importance` must have one array of unit scores per unit "
            "group: 2 groups expected, received 1."
        ),
    ):
        keras_guided.prune_model(model, target=0.5, importance=[np.ones(8)])
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`importance` for group 0 (layers ['hidden']) must hold 8 "
            "scores, one per unit. Received: shape (6,)."
        ),
    ):
        keras_guided.prune_model(
            model, target=0.5, importance=[np.ones(6), np.ones(2)]
        )
    with pytest.raises(
        ValueError,
        match=re.escape("`importance` scores must be non-negative and finite"),
    ):
        keras_guided.prune_model(
            model, threshold=0.1, importance=[-np.ones(8), np.ones(2)]
        )


def test_importance_without_a_target_is_refused():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`importance` ranks units for a `target`, a `threshold` or a "
            "`plan` of counts. Received: importance without any of them"
        ),
    ):
        keras_guided.prune_model(_mlp(), importance=[np.ones(8), np.ones(2)])


def test_importance_ranks_a_plan_of_counts():
    model = _mlp()
    scores = scoring.calibration_scores(model, _calibration_data(), verbose=0)
    small = keras_guided.prune_model(model, plan={0: 6}, importance=scores)
    probe = np.random.default_rng(2).normal(size=(8, 4)).astype("float32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(small(probe)),
        ops.convert_to_numpy(_masked(model, DEAD_ON_DATA)(probe)),
        atol=1e-5,
    )


# --------------------------------------------------------- (f) guidance


def test_score_guidance_pulls_less_important_units_harder():
    guidance = keras_guided.ScoreGuidance([[3.0, 0.0, 2.0, 1.0]])
    coefficients = guidance.coefficients(0, 4)
    assert np.argsort(coefficients).tolist() == [0, 2, 3, 1]
    assert coefficients.mean() == pytest.approx(1.0)
    # Equal scores share their coefficients.
    tied = keras_guided.ScoreGuidance([[1.0, 0.0, 0.0]]).coefficients(0, 3)
    assert tied.tolist() == [0.0, 1.5, 1.5]


def test_guided_pruning_takes_calibration_guidance():
    model = _mlp()
    model.compile(optimizer="adam", loss="mse")
    x = _calibration_data(32)
    y = np.zeros((32, 2), "float32")
    scores = scoring.calibration_scores(model, x, verbose=0)
    pruning = keras_guided.GuidedPruning(
        strength=1e-3, guidance=keras_guided.ScoreGuidance(scores)
    )
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[pruning])
    (coefficients,) = pruning.unit_coefficients
    hidden = scores[0]
    # The units dead on the data get the largest pull, the most active
    # unit the smallest.
    assert set(np.argsort(-coefficients)[:2]) == set(DEAD_ON_DATA)
    assert np.argmin(coefficients) == np.argmax(hidden)


def test_score_guidance_errors():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "A ScoreGuidance holds coefficients for every unit group of a "
            "model: pass it to keras_guided.GuidedPruning(guidance=...)."
        ),
    ):
        keras_guided.GuidedRegularizer(
            guidance=keras_guided.ScoreGuidance([[1.0, 2.0]])
        )
    model = _mlp()
    model.compile(optimizer="adam", loss="mse")
    pruning = keras_guided.GuidedPruning(
        guidance=keras_guided.ScoreGuidance([np.ones(6)])
    )
    with pytest.raises(
        ValueError,
        match=re.escape(
            "ScoreGuidance has 6 scores for unit group 0, which has 8 units."
        ),
    ):
        model.fit(
            _calibration_data(8),
            np.zeros((8, 2)),
            epochs=1,
            verbose=0,
            callbacks=[pruning],
        )
    with pytest.raises(
        ValueError, match=re.escape("Received for group 0: [-1.0]")
    ):
        keras_guided.ScoreGuidance([[-1.0]])


def _fit_llama_with(pruning, model):
    x = _tokens()
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(
        x,
        x["token_ids"],
        epochs=1,
        batch_size=4,
        verbose=0,
        callbacks=[pruning],
    )


def test_score_guidance_ranks_the_merged_units_of_uniform_blocks():
    # With uniform_blocks the blocks' FFN groups train as one merged group
    # whose unit j is the j-th most important unit of every block: by the
    # calibration scores here, not by the weight norms.
    model = tiny_llama(vocabulary_size=64)
    scores = scoring.calibration_scores(
        model, _tokens(), on_unsupported="keep", verbose=0
    )
    groups = keras_guided.find_unit_groups(model, on_unsupported="keep")
    ffn = [g for g in groups if "feedforward_gate_dense" in g.layers]
    norms = scoring.unit_scores(groups)
    pruning = keras_guided.GuidedPruning(
        strength=1e-3,
        guidance=keras_guided.ScoreGuidance(scores),
        uniform_blocks=True,
        protected=["self_attention"],
        on_unsupported="keep",
    )
    _fit_llama_with(pruning, model)
    plan = pruning._plan
    (index,) = [
        i
        for i, g in enumerate(plan.groups)
        if "feedforward_gate_dense" in g.layers
    ]
    merged = plan.groups[index]
    assert plan.copies[index] == len(ffn) == 2
    for member, block in zip(ffn, range(2)):
        # The first slice of each block: its units in the merged order.
        (first,) = [
            s
            for s in merged.slices
            if s.layer is member.slices[0].layer
            and s.weight == member.slices[0].weight
        ]
        relative = scores[member.index] / scores[member.index].mean()
        expected = np.argsort(-relative, kind="stable")
        assert first.positions[:, 0].tolist() == expected.tolist()
        by_norm = np.argsort(-norms[member.index], kind="stable")
        assert expected.tolist() != by_norm.tolist()
    coefficients = pruning.unit_coefficients[index]
    assert np.all(np.diff(coefficients) >= 0) and np.ptp(coefficients) > 0


def test_score_guidance_of_another_model_with_uniform_blocks_is_refused():
    pruning = keras_guided.GuidedPruning(
        strength=1e-3,
        guidance=keras_guided.ScoreGuidance([np.ones(6)]),
        uniform_blocks=True,
        protected=["self_attention"],
        on_unsupported="keep",
    )
    with pytest.raises(
        ValueError,
        match=re.escape("ScoreGuidance has scores for 1 unit groups"),
    ):
        _fit_llama_with(pruning, tiny_llama(vocabulary_size=64))


def _mha_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 8))
    x = keras.layers.Dense(16, name="embed")(inputs)
    attended = keras.layers.MultiHeadAttention(4, 4, name="mha")(x, x)
    x = keras.layers.Add()([x, attended])
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x))


def _gpt2():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    return keras_hub.models.GPT2Backbone(
        vocabulary_size=50,
        num_layers=1,
        num_heads=4,
        hidden_dim=16,
        intermediate_dim=24,
        max_sequence_length=16,
    )


def _mha_of(model):
    if "mha" in [layer.name for layer in model.layers]:
        return model.get_layer("mha")
    return model.get_layer("transformer_layer_0")._self_attention_layer


@pytest.mark.parametrize("build", [_mha_model, _gpt2], ids=["mha", "gpt2"])
def test_head_scores_are_the_norm_of_each_heads_attention_output(build):
    # A head's score is the mean norm of its attention output (before the
    # output projection), which is linear in its value projection: double
    # one head's values and its score doubles, zero another's and it
    # scores 0; the other heads do not move.
    model = build()
    rng = np.random.default_rng(0)
    if isinstance(model.input, dict):
        data = {
            "token_ids": rng.integers(1, 50, (8, 10)).astype("int32"),
            "padding_mask": np.ones((8, 10), "int32"),
        }
    else:
        data = rng.normal(size=(8, 6, 8)).astype("float32")
    groups = keras_guided.find_unit_groups(model, on_unsupported="keep")
    (head,) = [g.index for g in groups if g.prunable and g.num_units == 4]

    def head_scores():
        return scoring.calibration_scores(
            model, data, on_unsupported="keep", batch_size=4, verbose=0
        )[head]

    before = head_scores()
    assert np.all(before > 0)
    value = _mha_of(model)._value_dense
    kernel = ops.convert_to_numpy(value.kernel).copy()
    bias = ops.convert_to_numpy(value.bias).copy()
    kernel[:, 1] *= 2.0
    bias[1] *= 2.0
    kernel[:, 3] = 0.0
    bias[3] = 0.0
    value.kernel.assign(kernel)
    value.bias.assign(bias)
    after = head_scores()
    np.testing.assert_allclose(after[1], 2.0 * before[1], rtol=1e-5)
    assert after[3] == 0.0
    np.testing.assert_allclose(after[[0, 2]], before[[0, 2]], rtol=1e-6)
