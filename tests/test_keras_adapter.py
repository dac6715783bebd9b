"""The one module that touches Keras internals: pinned to the Keras versions
it was checked on, and its two hooks tested on their own."""

import warnings

import keras
import numpy as np
import pytest

from keras_guided import _keras_adapter as adapter


def _built_sgd(learning_rate=0.5):
    variable = keras.Variable(np.ones(3, dtype="float32"), name="w")
    optimizer = keras.optimizers.SGD(learning_rate)
    optimizer.build([variable])
    return optimizer, variable


def test_keras_version_was_checked():
    assert adapter.checked(), (
        f"keras {keras.version()} is not in "
        f"{adapter.CHECKED_KERAS_VERSIONS}: re-check the private names in "
        "keras_guided/_keras_adapter.py (tests/test_keras_adapter.py) and "
        "add the version.")


def test_private_names_still_mean_what_the_adapter_assumes():
    schedule = keras.optimizers.schedules.ExponentialDecay(
        0.5, decay_steps=1, decay_rate=0.5)
    optimizer, _ = _built_sgd(schedule)
    assert isinstance(optimizer._variables, list)
    assert optimizer.variables == optimizer._variables
    assert optimizer._learning_rate is schedule
    model = keras.Sequential([
        keras.Input((2,)),
        keras.Sequential([keras.layers.Dense(2, name="inner")],
                         name="block"),
    ])
    assert adapter.find_layer(model, "inner") is not None
    assert adapter.find_layer(model, "missing") is None


def test_hook_runs_after_each_apply_with_that_steps_rate():
    schedule = keras.optimizers.schedules.ExponentialDecay(
        0.5, decay_steps=1, decay_rate=0.5)
    optimizer, variable = _built_sgd(schedule)
    seen = []

    def hook(learning_rate):
        # After the update: the variable has already moved.
        seen.append((float(keras.ops.convert_to_numpy(learning_rate)),
                     float(keras.ops.convert_to_numpy(variable.value)[0])))

    remove = adapter.after_optimizer_step(optimizer, hook)
    grads = [keras.ops.ones(3)]
    optimizer.apply(grads, [variable])
    optimizer.apply(grads, [variable])
    assert seen == [(0.5, 0.5), (0.25, 0.25)]
    remove()
    assert "apply" not in optimizer.__dict__
    optimizer.apply(grads, [variable])
    assert len(seen) == 2


@pytest.mark.skipif(keras.backend.backend() != "jax",
                    reason="the state rides along only on JAX")
def test_carried_state_is_left_out_of_saving_and_loading():
    optimizer, _ = _built_sgd()
    count = len(optimizer.variables)
    extra = keras.Variable(np.zeros(2, dtype="float32"), name="extra")
    remove = adapter.carry_state(optimizer, [extra])
    assert len(optimizer.variables) == count + 1
    store = {}
    optimizer.save_own_variables(store)
    assert len(store) == count
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Skipping variable loading" fails
        optimizer.load_own_variables(store)
    remove()
    assert len(optimizer.variables) == count
    assert "save_own_variables" not in optimizer.__dict__
