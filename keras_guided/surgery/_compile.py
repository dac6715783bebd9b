"""The original's compile state, carried over to the pruned model.

A pruned model of a compiled model comes back compiled the same way: the
loss, metric and loss-weight objects the user passed to `compile` are
reused as they are (a closure such as keras-io's `contrastive_loss`
neither serializes nor deserializes, so nothing is re-created from the
serialized compile config), with a new optimizer of the same class and
config (the original's slots belong to the original's weights; its step
count starts again at 0). Where that fails (an optimizer whose config does
not round-trip, a custom `compile`), the pruned model is returned
uncompiled, and the warning and `PruneReport.compiled` say so.
"""

import keras

from keras_guided import _keras_adapter as adapter


def carry_compile(model, pruned):
    """Compiles `pruned` like `model`; returns a note when `model` is
    compiled and `pruned` could not be, else `None`."""
    arguments = adapter.compile_arguments(model)
    if arguments is None:
        if getattr(model, "compiled", False):
            return _uncompiled(model, "Keras did not record its arguments")
        return None
    optimizer = arguments.get("optimizer")
    try:
        if isinstance(optimizer, keras.optimizers.Optimizer):
            arguments["optimizer"] = type(optimizer).from_config(
                optimizer.get_config()
            )
        pruned.compile(**arguments)
    except Exception as error:  # noqa: BLE001 (reported, not raised)
        return _uncompiled(model, f"{type(error).__name__}: {error}")
    return None


def _uncompiled(model, reason):
    return (
        f"the pruned model is not compiled: model '{model.name}' is, but "
        f"its compile state could not be carried over ({reason}). Call "
        "`compile()` on the pruned model before `fit()` or `evaluate()`."
    )
