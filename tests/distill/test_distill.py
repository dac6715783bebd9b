"""`keras_guided.Distiller`: the loss, training the student in place, the
teacher left untouched, plain saving of the student."""

import os

import keras
import numpy as np
import pytest

import keras_guided


def _model(units, softmax=False, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(units, activation="relu"),
            keras.layers.Dense(4, activation="softmax" if softmax else None),
        ]
    )


def _data(n=96):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + 2 * (x[:, 1] > 0).astype("int64")
    return x, y


def _numpy_kd(teacher_logits, student_logits, temperature):
    def softmax(z):
        z = z - z.max(-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(-1, keepdims=True)

    p = softmax(teacher_logits / temperature)
    q = softmax(student_logits / temperature)
    kl = np.sum(p * (np.log(p) - np.log(q)), axis=-1)
    return temperature**2 * kl.mean()


@pytest.mark.parametrize("softmax", [False, True])
def test_loss_equals_numpy_distillation(softmax):
    x, _ = _data(16)
    teacher, student = _model(8, softmax, 1), _model(3, softmax, 2)
    distiller = keras_guided.Distiller(
        student, teacher, alpha=0.0, temperature=3.0, from_logits=not softmax
    )
    loss = keras.ops.convert_to_numpy(distiller.compute_loss(x=x))
    t = keras.ops.convert_to_numpy(teacher(x))
    s = keras.ops.convert_to_numpy(student(x))
    if softmax:
        t, s = np.log(np.clip(t, 1e-7, 1)), np.log(np.clip(s, 1e-7, 1))
    np.testing.assert_allclose(loss, _numpy_kd(t, s, 3.0), rtol=1e-4)


def test_alpha_mixes_in_the_supervised_loss():
    x, y = _data(16)
    teacher, student = _model(8, seed=1), _model(3, seed=2)
    distiller = keras_guided.Distiller(
        student, teacher, alpha=0.25, temperature=2.0
    )
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    distiller.compile("sgd", cross_entropy)
    loss = keras.ops.convert_to_numpy(
        distiller.compute_loss(x=x, y=y, y_pred=student(x))
    )
    t = keras.ops.convert_to_numpy(teacher(x))
    s = keras.ops.convert_to_numpy(student(x))
    supervised = keras.ops.convert_to_numpy(cross_entropy(y, s))
    expected = 0.75 * _numpy_kd(t, s, 2.0) + 0.25 * supervised
    np.testing.assert_allclose(loss, expected, rtol=1e-4)


def test_fit_trains_the_student_toward_the_teacher_and_spares_the_teacher():
    x, y = _data()
    teacher, student = _model(16, seed=1), _model(4, seed=2)
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    distiller = keras_guided.Distiller(student, teacher, alpha=0.0)
    distiller.compile(
        keras.optimizers.Adam(0.02),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )

    def gap():
        return float(
            np.mean(
                np.abs(
                    keras.ops.convert_to_numpy(keras.ops.softmax(teacher(x)))
                    - keras.ops.convert_to_numpy(keras.ops.softmax(student(x)))
                )
            )
        )

    before = gap()
    history = distiller.fit(x, y, epochs=30, batch_size=32, verbose=0)
    assert gap() < 0.5 * before
    assert "accuracy" in history.history
    # The teacher is untouched: same weights, still trainable.
    for old, new in zip(teacher_weights, teacher.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert teacher.trainable and teacher.trainable_weights


def test_unlabeled_data_and_plain_student_save(tmp_path):
    x, _ = _data()
    teacher, student = _model(16, seed=1), _model(4, seed=2)
    distiller = keras_guided.Distiller(student, teacher, alpha=0.5)
    distiller.compile(keras.optimizers.Adam(0.01))
    first = [w.copy() for w in student.get_weights()]
    distiller.fit(x, epochs=2, batch_size=32, verbose=0)
    assert any(
        not np.array_equal(a, b) for a, b in zip(first, student.get_weights())
    )
    path = os.path.join(tmp_path, "student.keras")
    student.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)),
        keras.ops.convert_to_numpy(student(x)),
        atol=1e-6,
    )
    with pytest.raises(NotImplementedError, match="save its student"):
        distiller.get_config()


def test_frozen_teacher_is_used_as_is():
    teacher, student = _model(8, seed=1), _model(3, seed=2)
    teacher.trainable = False
    distiller = keras_guided.Distiller(student, teacher)
    assert distiller.teacher is teacher


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {"alpha": 1.5},
            "`alpha` must be a float in [0, 1]. Received: alpha=1.5",
        ),
        (
            {"temperature": 0},
            "`temperature` must be a positive float. Received: temperature=0",
        ),
        (
            {"from_logits": "yes"},
            "`from_logits` must be True or False. Received: from_logits='yes'",
        ),
    ],
)
def test_argument_errors(kwargs, message):
    with pytest.raises(ValueError) as error:
        keras_guided.Distiller(_model(3), _model(8, seed=1), **kwargs)
    assert str(error.value) == message


def test_model_errors():
    student = _model(3)
    with pytest.raises(ValueError) as error:
        keras_guided.Distiller(student, student)
    assert str(error.value) == (
        "`student` and `teacher` must be different models. Pass the pruned "
        "model as student and the trained model as teacher."
    )
    with pytest.raises(ValueError) as error:
        keras_guided.Distiller(student, "teacher")
    assert str(error.value) == (
        "`teacher` must be a keras.Model. Received: teacher=str"
    )
    other = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5)])
    with pytest.raises(ValueError) as error:
        keras_guided.Distiller(student, other)
    assert str(error.value) == (
        "`student` and `teacher` must have the same outputs (distillation "
        "matches them). Received: student outputs [(4,)], teacher outputs "
        "[(5,)]."
    )


def _wide(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(24, activation="relu"),
            keras.layers.Dense(12, activation="relu"),
            keras.layers.Dense(4),
        ]
    )


@pytest.mark.parametrize("kind", ["keras_guided", "keras"])
def test_guided_pruning_prunes_the_student_of_a_distiller(kind):
    """`fit` on a distiller: the callback prunes the student to the budget
    (the distiller's own weights include the teacher's, which it must not
    count), and `prune_model(student)` removes exactly the dead units."""
    teacher = _wide()
    student = _wide()
    student.set_weights(teacher.get_weights())
    before = [w.copy() for w in teacher.get_weights()]
    if kind == "keras":
        frozen = _wide()
        frozen.set_weights(teacher.get_weights())
        frozen.trainable = False
        distiller = keras.distillation.Distiller(
            frozen, student, keras.distillation.LogitsDistillation()
        )
    else:
        distiller = keras_guided.Distiller(student, teacher)
    distiller.compile(
        keras.optimizers.SGD(0.05),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    callback = keras_guided.GuidedPruning(target={"flops": 0.5})
    x, y = _data(128)
    distiller.fit(
        x, y, epochs=3, batch_size=32, verbose=0, callbacks=[callback]
    )
    assert callback.budget_report["goal"] == pytest.approx(
        0.5 * keras_guided.stats.count_flops(teacher)
    )
    small = keras_guided.prune_model(student)
    kept = keras_guided.stats.count_flops(
        small
    ) / keras_guided.stats.count_flops(teacher)
    assert 0.45 <= kept <= 0.5
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(small(x)),
        keras.ops.convert_to_numpy(student(x)),
        atol=1e-5,
    )
    for old, new in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_trained_network_is_the_model_without_a_distiller():
    model = _wide()
    assert keras_guided.callbacks.trained_network(model) is model


def test_penalty_mode_refuses_keras_distiller_that_drops_the_penalty():
    """keras.distillation.Distiller's loss leaves out the student's
    regularization losses: penalty mode would silently do nothing."""
    teacher, student = _wide(), _wide()
    teacher.trainable = False
    distiller = keras.distillation.Distiller(
        teacher, student, keras.distillation.LogitsDistillation()
    )
    distiller.compile(
        "sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x, y = _data(32)
    with pytest.raises(
        ValueError,
        match=(
            r"GuidedPruning\(mode='penalty'\) cannot act through "
            r"keras.distillation.Distiller: its loss leaves out the "
            r"student's regularization losses"
        ),
    ):
        distiller.fit(
            x,
            y,
            epochs=1,
            verbose=0,
            callbacks=[
                keras_guided.GuidedPruning(strength=1.0, mode="penalty")
            ],
        )


def test_penalty_mode_acts_through_keras_guided_distiller():
    teacher, student = _wide(), _wide()
    distiller = keras_guided.Distiller(student, teacher)
    distiller.compile(
        keras.optimizers.SGD(0.05),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y = _data(64)
    plain = distiller.evaluate(x, y, verbose=0)
    callback = keras_guided.GuidedPruning(strength=10.0, mode="penalty")
    history = distiller.fit(
        x, y, epochs=1, batch_size=64, verbose=0, callbacks=[callback]
    )
    # The penalty (strength 10 over every unit) dominates the loss.
    assert history.history["loss"][0] > plain + 1.0
