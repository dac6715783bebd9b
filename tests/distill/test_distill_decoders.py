"""Distillation of keras-hub causal LMs: `Distiller` on `(batch, sequence,
vocabulary)` logits with padding-mask weights, and `distill_causal_lm`'s
token budget; the student keeps its class, generates and round-trips
through a preset; the same losses and masks under JAX DataParallel and
ModelParallel."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_guided
from keras_guided.distill import DistillReport
from keras_guided.distill import distill_causal_lm
from tests.helpers import tiny_llama

keras_hub = pytest.importorskip("keras_hub")

SCRIPTS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"
)
SCRIPT = os.path.join(SCRIPTS, "distributed_distill.py")


def _llama(intermediate_dim=32, seed=0, vocabulary_size=64):
    return tiny_llama(
        intermediate_dim,
        seed=seed,
        vocabulary_size=vocabulary_size,
        num_layers=1,
    )


def _tokens(rows=8, length=9, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 64, (rows, length)).astype("int32")
    return {"token_ids": ids, "padding_mask": np.ones_like(ids)}


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


@pytest.fixture(scope="module")
def teacher():
    return _llama(32, seed=0)


def test_loss_decreases_on_a_fixed_batch(teacher):
    report = distill_causal_lm(
        _llama(16, seed=1),
        teacher,
        _tokens(),
        tokens=8 * 8 * 10,
        optimizer=keras.optimizers.Adam(1e-2),
        verbose=0,
    )
    assert report.steps == 10
    assert np.all(np.diff(report.losses) < 0), report.losses
    assert report.losses[-1] < 0.9 * report.losses[0], report.losses


def test_padded_positions_do_not_change_the_loss(teacher):
    plain = _tokens(rows=4, length=6)
    padded = {
        key: np.zeros((6, 9), "int32") for key in ("token_ids", "padding_mask")
    }
    for key in padded:  # two padding rows and three padding columns
        padded[key][:4, :6] = plain[key]
    padded["token_ids"][:, 6:] = 7  # padded ids are ignored, whatever they are
    padded["token_ids"][4:, :] = 9

    def first_loss(data):
        report = distill_causal_lm(
            _llama(16, seed=1), teacher, data, tokens=20, alpha=0.5, verbose=0
        )
        return report.losses[0], report.tokens

    loss, count = first_loss(plain)
    padded_loss, padded_count = first_loss(padded)
    assert count == padded_count == 20
    np.testing.assert_allclose(padded_loss, loss, rtol=1e-5)


def test_token_budget_stops_at_the_count_and_logs(teacher, capsys):
    data = _tokens(rows=8, length=9)
    data["padding_mask"][::2, 5:] = 0  # 4 rows of 4 targets, 4 rows of 8
    report = distill_causal_lm(
        _llama(16, seed=1),
        teacher,
        data,
        tokens=100,
        batch_size=4,
        log_every=2,
        verbose=1,
    )
    assert isinstance(report, DistillReport)
    # 24 target tokens per batch of 4 rows: 4 full batches, then 4 tokens.
    assert report.step_tokens == (24, 24, 24, 24, 4)
    assert report.tokens == 100 and report.steps == 5
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert re.fullmatch(
        r"tokens 48/100 - loss \d+\.\d{4} - [\d,]+ tokens/s", lines[0]
    )
    assert lines[-1].startswith("tokens 100/100 - loss ")
    distill_causal_lm(_llama(16, seed=1), teacher, data, tokens=10, verbose=0)
    assert capsys.readouterr().out == ""


def test_teacher_is_never_modified(teacher):
    before = _weights(teacher)
    flags = [layer.trainable for layer in teacher._flatten_layers()]
    distill_causal_lm(
        _llama(16, seed=1),
        teacher,
        _tokens(),
        tokens=128,
        optimizer=keras.optimizers.Adam(1e-2),
        verbose=0,
    )
    assert teacher.trainable
    assert [layer.trainable for layer in teacher._flatten_layers()] == flags
    for a, b in zip(before, _weights(teacher)):
        np.testing.assert_array_equal(a, b)


def test_pruned_student_keeps_class_generates_and_round_trips(
    teacher, tmp_path
):
    data = _tokens()
    scores = keras_guided.scoring.calibration_scores(
        teacher, data, on_unsupported="keep", verbose=0
    )
    student = keras_guided.prune_model(
        teacher,
        target={"params": 0.9},
        uniform_blocks=True,
        importance=scores,
        on_unsupported="keep",
        protected=["self_attention"],
        sample_inputs=data,
    )
    before = _weights(student)
    distill_causal_lm(student, teacher, data, tokens=64, verbose=0)
    assert type(student) is keras_hub.models.LlamaCausalLM
    assert student.count_params() < teacher.count_params()
    assert any(
        not np.array_equal(a, b) for a, b in zip(before, _weights(student))
    )
    prompt = {
        "token_ids": data["token_ids"][:2],
        "padding_mask": np.zeros((2, 9), "int32"),
    }
    prompt["padding_mask"][:, :3] = 1
    student.compile(sampler="greedy")
    generated = student.generate(prompt, stop_token_ids=None)
    ids = np.asarray(generated["token_ids"])
    assert ids.shape == (2, 9)
    np.testing.assert_array_equal(ids[:, :3], data["token_ids"][:2, :3])
    # Greedy: the first new token is the argmax of the logits.
    logits = keras.ops.convert_to_numpy(student(prompt))
    np.testing.assert_array_equal(ids[:, 3], logits[:, 2].argmax(-1))

    student.save_to_preset(str(tmp_path / "preset"))
    reloaded = keras_hub.models.LlamaCausalLM.from_preset(
        str(tmp_path / "preset")
    )
    assert type(reloaded) is keras_hub.models.LlamaCausalLM
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(prompt)), logits, atol=1e-6
    )


def test_errors(teacher):
    with pytest.raises(
        ValueError,
        match=re.escape("`tokens` must be a positive int. Received: tokens=0"),
    ):
        distill_causal_lm(_llama(16), teacher, _tokens(), tokens=0)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "A causal LM batch needs the inputs {'token_ids', "
            "'padding_mask'}. Received: ['token_ids']."
        ),
    ):
        distill_causal_lm(
            _llama(16), teacher, [{"token_ids": np.ones((2, 4))}], tokens=4
        )
    with pytest.raises(ValueError, match="holds no non-padding target"):
        data = _tokens()
        data["padding_mask"][:, 1:] = 0
        distill_causal_lm(_llama(16), teacher, data, tokens=4, verbose=0)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`student` and `teacher` must have the same outputs "
            "(distillation matches them). Received: student outputs "
            "[(None, 32)], teacher outputs [(None, 64)]."
        ),
    ):
        keras_guided.Distiller(_llama(16, vocabulary_size=32), teacher)


# ------------------------- JAX DataParallel and ModelParallel, 2 devices


@pytest.fixture(scope="module")
def distributed():
    """One JAX process runs every setting: one device, `DataParallel`, and
    `ModelParallel` with keras-hub's Llama layout map on a (1, 2) mesh."""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("needs JAX installed")
    completed = subprocess.run(
        [sys.executable, SCRIPT],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_distillation_under_data_parallel_matches_one_device(distributed):
    assert distributed["devices"] == 2
    single = distributed["distill"]["single"]["loss"]
    multi = distributed["distill"]["data_parallel"]["loss"]
    assert len(single) == len(multi) == 5
    np.testing.assert_allclose(multi, single, rtol=1e-5)
    assert single[-1] < single[0]


@pytest.mark.slow
def test_guided_pruning_under_data_parallel_same_exact_zeros(distributed):
    single = distributed["pruning"]["single"]
    multi = distributed["pruning"]["data_parallel"]
    np.testing.assert_allclose(multi["loss"], single["loss"], rtol=1e-5)
    # Dead units are those whose kernel slices are exactly zero.
    assert sum(len(d) for d in single["dead"]) > 0
    assert multi["dead"] == single["dead"]


def _assert_split_over_the_model_axis(run):
    # The weights stay split over both devices to the end of training, so
    # the comparison below is not one of two unsharded runs.
    assert run["sharded"], "no variable was sharded"
    for layer in ("feedforward_intermediate_dense", "self_attention/query"):
        assert f"transformer_layer_0/{layer}/kernel" in run["sharded"]


@pytest.mark.slow
def test_distillation_under_model_parallel_matches_one_device(distributed):
    assert distributed["devices"] == 2
    assert distributed["distill"]["single"]["sharded"] == []
    run = distributed["distill"]["model_parallel"]
    _assert_split_over_the_model_axis(run)
    single = distributed["distill"]["single"]["loss"]
    assert len(run["loss"]) == len(single) == 5
    np.testing.assert_allclose(run["loss"], single, rtol=1e-5)


@pytest.mark.slow
def test_guided_pruning_under_model_parallel_same_exact_zeros(distributed):
    single = distributed["pruning"]["single"]
    run = distributed["pruning"]["model_parallel"]
    _assert_split_over_the_model_axis(run)
    np.testing.assert_allclose(run["loss"], single["loss"], rtol=1e-5)
    # The proximal step and the dead-mask writes act on sharded kernels;
    # the units they zero must be the ones one device zeroes.
    assert sum(len(d) for d in single["dead"]) > 0
    assert run["dead"] == single["dead"]
