"""A `fit` interrupted and resumed with `BackupAndRestore` and a fresh
`GuidedPruning` goes on as the uninterrupted run
(keras_guided.callbacks._resume)."""

import re
import warnings

import keras
import numpy as np
import pytest

import keras_guided


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 12)).astype("float32")
    y = (x[:, :4] @ rng.normal(size=(4, 3))).astype("float32")
    return x, y


def _model():
    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [
            keras.Input((12,)),
            keras.layers.Dense(24, activation="relu", name="dense_1"),
            keras.layers.Dense(16, activation="relu", name="dense_2"),
            keras.layers.Dense(3, name="out"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


def _fit(model, pruning, callbacks=(), epochs=6):
    x, y = _data()
    return model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=16,
        shuffle=False,
        verbose=0,
        callbacks=[pruning, *callbacks],
    ).history


def _widths(model):
    pruned = keras_guided.prune_model(model)
    return [layer.units for layer in pruned.layers]


@pytest.mark.parametrize("interrupt_at", [2, 5])
def test_resumed_budget_run_equals_the_uninterrupted_one(
    tmp_path, interrupt_at
):
    target = {"flops": 0.4}
    reference = _model()
    full = _fit(reference, keras_guided.GuidedPruning(target=target))

    model = _model()
    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit(
            model,
            keras_guided.GuidedPruning(target=target),
            [
                keras.callbacks.BackupAndRestore(backup),
                _Interrupt(interrupt_at),
            ],
        )
    # A fresh model, a fresh callback: only the backup carries the run.
    resumed = _model()
    pruning = keras_guided.GuidedPruning(target=target)
    rest = _fit(resumed, pruning, [keras.callbacks.BackupAndRestore(backup)])
    assert len(rest["loss"]) == 6 - interrupt_at  # it resumed
    for key in (
        "live_units",
        "live_units/dense_1",
        "live_units/dense_2",
        "live_flops",
        "guided_strength",
    ):
        assert rest[key] == full[key][interrupt_at:], key
    assert _widths(resumed) == _widths(reference)
    assert pruning.budget_report["start"] == keras_guided.stats.count_flops(
        _model()
    )
    for a, b in zip(reference.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def _checkpoint_of_an_interrupted_fit(tmp_path, target):
    """The weights file `ModelCheckpoint` wrote before a fit with
    `GuidedPruning(target=target)` was interrupted after epoch 3."""
    path = str(tmp_path / "last.weights.h5")
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit(
            _model(),
            keras_guided.GuidedPruning(target=target),
            [
                keras.callbacks.ModelCheckpoint(path, save_weights_only=True),
                _Interrupt(3),
            ],
        )
    return path


def test_resume_from_model_checkpoint_weights(tmp_path):
    target = {"units": 16}
    full = _fit(_model(), keras_guided.GuidedPruning(target=target))
    path = _checkpoint_of_an_interrupted_fit(tmp_path, target)
    model = _model()
    pruning = keras_guided.GuidedPruning(target=target)
    pruning.set_model(model)  # so that load_weights finds its state
    model.optimizer.build(model.trainable_variables)
    model.load_weights(path)
    x, y = _data()
    rest = model.fit(
        x,
        y,
        epochs=6,
        initial_epoch=3,
        batch_size=16,
        shuffle=False,
        verbose=0,
        callbacks=[pruning],
    ).history
    assert rest["live_units"] == full["live_units"][3:]


def _auto_named_model():
    """`_model()` with Keras' own layer names: each one built in this
    process is numbered on (`dense_3` where the first had `dense`)."""
    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [
            keras.Input((12,)),
            keras.layers.Dense(24, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3),
        ]
    )
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


def _ordered(pruning, backup, order, *others):
    if order == "backup_first":
        return [backup, pruning, *others]
    return [pruning, backup, *others]


@pytest.mark.parametrize("order", ["pruning_first", "backup_first"])
def test_a_rebuilt_model_resumes_in_either_callback_order(tmp_path, order):
    target = {"flops": 0.4}
    x, y = _data()

    def fit(model, callbacks):
        return model.fit(
            x,
            y,
            epochs=6,
            batch_size=16,
            shuffle=False,
            verbose=0,
            callbacks=callbacks,
        ).history

    reference = _auto_named_model()
    full = fit(reference, [keras_guided.GuidedPruning(target=target)])
    backup = str(tmp_path / "backup")
    interrupted = _auto_named_model()
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(
            interrupted,
            _ordered(
                keras_guided.GuidedPruning(target=target),
                keras.callbacks.BackupAndRestore(backup),
                order,
                _Interrupt(3),
            ),
        )
    # Rebuilt in the same process: other layer names, same positions.
    resumed = _auto_named_model()
    assert [layer.name for layer in resumed.layers] != [
        layer.name for layer in interrupted.layers
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rest = fit(
            resumed,
            _ordered(
                keras_guided.GuidedPruning(target=target),
                keras.callbacks.BackupAndRestore(backup),
                order,
            ),
        )
    assert not [w for w in caught if "GuidedPruning" in str(w.message)]
    assert len(rest["loss"]) == 3  # it resumed
    assert rest["live_flops"] == full["live_flops"][3:]
    assert rest["guided_strength"] == full["guided_strength"][3:]
    for a, b in zip(reference.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_state_for_another_epoch_is_not_resumed_silently(tmp_path):
    target = {"units": 16}
    path = _checkpoint_of_an_interrupted_fit(tmp_path, target)
    model = _model()
    pruning = keras_guided.GuidedPruning(target=target)
    pruning.set_model(model)
    model.optimizer.build(model.trainable_variables)
    model.load_weights(path)
    with pytest.warns(
        UserWarning,
        match=re.escape(
            "GuidedPruning found its state in the restored weights, saved "
            "to resume at epoch 3, and this fit starts at epoch 2; it starts "
            "afresh from the restored weights (its start and budget are "
            "measured on them)."
        ),
    ):
        model.fit(
            *_data(),
            epochs=4,
            initial_epoch=2,
            batch_size=16,
            verbose=0,
            callbacks=[pruning],
        )


def test_a_new_fit_starts_afresh_after_a_finished_one(tmp_path):
    # One instance, two fits on one model: the second measures its start
    # on the pruned weights (a new budget), even with BackupAndRestore.
    model = _model()
    pruning = keras_guided.GuidedPruning(target={"flops": 0.5})
    first = _fit(model, pruning, epochs=3)
    second = _fit(
        model,
        pruning,
        [keras.callbacks.BackupAndRestore(str(tmp_path / "b"))],
        epochs=3,
    )
    assert pruning.budget_report["start"] == first["live_flops"][-1]
    assert second["live_flops"][-1] <= 0.5 * first["live_flops"][-1] + 1


def test_weights_files_load_with_and_without_the_state(tmp_path):
    model = _model()
    _fit(model, keras_guided.GuidedPruning(target={"units": 20}), epochs=2)
    path = str(tmp_path / "m.weights.h5")
    model.save_weights(path)
    plain = _model()  # never saw GuidedPruning: the state is ignored
    plain.optimizer.build(plain.trainable_variables)
    plain.load_weights(path)
    for a, b in zip(model.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    plain.save_weights(str(tmp_path / "plain.weights.h5"))
    model.load_weights(str(tmp_path / "plain.weights.h5"))  # no state
    assert len(model.weights) == len(plain.weights)
    model.save(str(tmp_path / "m.keras"))  # a plain Keras file still
    loaded = keras.saving.load_model(str(tmp_path / "m.keras"))
    x, _ = _data()
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )
